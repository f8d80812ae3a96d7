// The steps of cleaning one run folder, in the order `cleanupRun` takes them: sessions, worktrees, merged branches,
// --all's directories, the stale lock. Each returns what it did (or, dry, would do) and adds its notes and
// problems to the run's; none fails.
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import { Effect, Either, Option } from "effect"
import type { RunInCleanup } from "./CleanupPlan.js"
import { plural } from "./CleanupPlan.js"
import { Git, type GitOutput } from "./Git.js"
import { LOCK_FILE } from "./RunState.js"
import type { LockInfo } from "./Status.js"
import * as TmuxLive from "./TmuxLive.js"

const firstLine = (r: GitOutput) => (r.stderr.trim() || r.stdout.trim()).split("\n")[0] ?? ""

/** A glob that matches `text` only as it is (branch --list patterns). */
const globLiteral = (text: string) => text.replace(/[*?[\]\\]/g, "\\$&")

const registeredWorktrees = (porcelain: string) =>
  new Set(porcelain.split("\n").filter((l) => l.startsWith("worktree ")).map((l) => l.slice("worktree ".length)))

const removeDir = (run: RunInCleanup, dir: string) =>
  Effect.flatMap(FileSystem.FileSystem, (fs) =>
    fs.remove(dir, { recursive: true }).pipe(
      Effect.as(Option.some(dir)),
      Effect.catchAll((e) => Effect.sync(() => run.problems.push(`remove ${dir}: ${e.message}`)).pipe(Effect.as(Option.none<string>())))
    ))

/** 1. Sessions first: nothing keeps writing into a worktree while it is removed. */
export const killSessions = Effect.fn("Cleanup.killSessions")(function*(run: RunInCleanup) {
  const { plan, notes, problems } = run
  const tmux = yield* TmuxLive.makeLive(plan.socket)
  const listed = yield* tmux.sessionPaths(`cco-${plan.runId}-`).pipe(Effect.either)
  if (Either.isLeft(listed)) {
    // Without tmux there are no sessions to leave behind; any other failure is worth a look.
    if (listed.left._tag === "TmuxNotFound") notes.push(`sessions not checked: ${listed.left.message}`)
    else problems.push(`tmux sessions on -L ${plan.socket} not checked: ${listed.left.message}`)
    return []
  }
  // A session started in a directory outside this folder is another run's of the same id (the original of a copy).
  const [foreignSessions, targets] = yield* Effect.partition(plan.sessions.filter((s) => listed.right.has(s)), (s) =>
    Effect.flatMap(run.within(listed.right.get(s)!), (inside) => inside ? Effect.succeed(s) : Effect.fail(s)))
  if (foreignSessions.length > 0) {
    notes.push(`left ${plural(foreignSessions.length, "tmux session")} alone whose directory is outside this run folder: ${foreignSessions.join(", ")}`)
  }
  // One tmux call for all; one by one only if that fails (a session ended meanwhile).
  const batch = run.dry ? false : yield* tmux.killSessions(targets).pipe(Effect.as(true), Effect.orElseSucceed(() => false))
  if (run.dry || batch) return targets
  return (yield* Effect.forEach(targets, (name) =>
    tmux.killSession(name).pipe(
      Effect.as(Option.some(name)),
      // Gone in the meantime (by itself, or by the batch call before it failed) is what was wanted.
      Effect.catchTag("SessionNotFound", () => Effect.succeedSome(name)),
      Effect.catchAll((e) => Effect.sync(() => problems.push(`kill session ${name}: ${e.message}`)).pipe(Effect.as(Option.none<string>())))
    ), { concurrency: 8 })).flatMap(Option.toArray)
})

/** 2. Worktrees: registered ones through git, leftovers inside the folder's worktrees/ by removal. */
export const removeWorktrees = Effect.fn("Cleanup.removeWorktrees")(function*(run: RunInCleanup) {
  const fs = yield* FileSystem.FileSystem
  const path = yield* Path.Path
  const { repoDir, problems } = run
  const worktreesDir = path.join(run.folder, "worktrees") + path.sep
  const repoExists = yield* run.exists(repoDir)
  let registered = new Set<string>()
  if (repoExists) {
    const listing = yield* run.git(repoDir, ["worktree", "list", "--porcelain"])
    if (listing.exitCode === 0) registered = registeredWorktrees(listing.stdout)
    else problems.push(`git worktree list in ${repoDir}: ${firstLine(listing)}`)
  }
  const actions = yield* Effect.forEach(run.ownWorktrees, (wt) =>
    Effect.gen(function*() {
      const onDisk = yield* run.exists(wt)
      const real = onDisk ? yield* fs.realPath(wt).pipe(Effect.orElseSucceed(() => wt)) : wt
      const isRegistered = registered.has(wt) || registered.has(real)
      if (isRegistered) return { wt, how: "git" as const, onDisk }
      if (onDisk && path.resolve(wt).startsWith(worktreesDir)) return { wt, how: "remove" as const, onDisk }
      return { wt, how: "none" as const, onDisk }
    }), { concurrency: 16 })
  const todo = actions.filter((a) => a.how !== "none" && a.onDisk)
  // Registered but deleted from disk: only the prune below is needed to forget it.
  const needPrune = todo.length > 0 || actions.some((a) => a.how === "git" && !a.onDisk)
  if (run.dry) return { worktrees: todo.map((a) => a.wt), repoExists }
  const worktrees = (yield* Effect.forEach(todo, (a) =>
    // A worktree inside the run folder goes with its directory; the prune below forgets its registration,
    // which is what `git worktree remove --force` does, without a git process per worktree.
    path.resolve(a.wt).startsWith(worktreesDir)
      ? removeDir(run, a.wt)
      : run.git(repoDir, ["worktree", "remove", "--force", a.wt]).pipe(
        Effect.flatMap((r) =>
          r.exitCode === 0
            ? Effect.succeed(Option.some(a.wt))
            : Effect.sync(() => problems.push(`git worktree remove ${a.wt}: ${firstLine(r)}`)).pipe(Effect.as(Option.none<string>()))
        )
      ), { concurrency: 8 })).flatMap(Option.toArray)
  if (repoExists && needPrune) {
    const pruned = yield* run.git(repoDir, ["worktree", "prune"])
    if (pruned.exitCode !== 0) problems.push(`git worktree prune in ${repoDir}: ${firstLine(pruned)}`)
  }
  return { worktrees, repoExists }
})

/** 3. Merged run branches (after the worktrees that had them checked out are gone). */
export const deleteMergedBranches = Effect.fn("Cleanup.deleteMergedBranches")(function*(run: RunInCleanup, repoExists: boolean) {
  const port = yield* Git
  const { plan, repoDir, notes, problems } = run
  if (plan.targetBranch === undefined) {
    notes.push("branches not checked: the target branch is unknown without state.json")
    return []
  }
  if (!repoExists) {
    notes.push(`branches not checked: no clone at ${repoDir}`)
    return []
  }
  // The run's branches only (cco/<runId>/…), those whose commits the target branch has.
  const runBranches = `cco/${globLiteral(plan.runId)}/*`
  const merged = yield* port.branches(repoDir, ["--list", "--merged", `refs/heads/${plan.targetBranch}`, runBranches]).pipe(Effect.either)
  if (Either.isLeft(merged)) {
    problems.push(`listing branches merged into ${plan.targetBranch}: ${merged.left.message.split("\n")[0]}`)
    return []
  }
  const names = merged.right.all
  if (run.dry || names.length === 0) return names
  // -D: merged into the target was checked above; -d would check against the clone's HEAD instead.
  const deleted = yield* run.git(repoDir, ["branch", "-D", "--", ...names])
  if (deleted.exitCode === 0) return names
  const left = yield* port.branches(repoDir, ["--list", runBranches]).pipe(Effect.map((b) => b.all), Effect.orElseSucceed(() => []))
  const remaining = new Set(left)
  problems.push(`git branch -D: ${firstLine(deleted)}`)
  return names.filter((n) => !remaining.has(n))
})

/** 4. --all: the Claude config dirs, and the clone unless it holds commits that exist nowhere else. */
export const removeRunDirectories = Effect.fn("Cleanup.removeRunDirectories")(function*(run: RunInCleanup, repoExists: boolean) {
  const path = yield* Path.Path
  const { repoDir, notes, problems } = run
  const removed: Array<string> = []
  const instancesDir = path.join(run.folder, "instances")
  if (yield* run.exists(instancesDir)) removed.push(instancesDir)
  if (repoExists) {
    if (!(yield* run.within(repoDir))) notes.push(`kept ${repoDir}: it is outside the run folder`)
    else {
      const unpushed = yield* run.git(repoDir, ["rev-list", "--count", "--branches", "--not", "--remotes"])
      const count = Number(unpushed.stdout.trim())
      if (unpushed.exitCode !== 0) problems.push(`kept ${repoDir}: cannot tell whether it holds unpushed commits (${firstLine(unpushed)})`)
      else if (count > 0) notes.push(`kept ${repoDir}: ${count} commit${count === 1 ? "" : "s"} on local branches are on no remote; push them or remove it by hand`)
      else removed.push(repoDir)
    }
  }
  if (run.dry) return removed
  const done = yield* Effect.forEach(removed, (dir) => removeDir(run, dir), { concurrency: "unbounded" })
  return done.flatMap(Option.toArray)
})

/** 5. A lock whose process is gone says nothing any more. Answers its pid (null: unreadable), if there was one. */
export const removeStaleLock = Effect.fn("Cleanup.removeStaleLock")(function*(run: RunInCleanup, lock: LockInfo) {
  if (lock._tag !== "Lock") return undefined
  const fs = yield* FileSystem.FileSystem
  const path = yield* Path.Path
  if (!run.dry) {
    yield* fs.remove(path.join(run.folder, LOCK_FILE)).pipe(
      Effect.catchAll((e) => Effect.sync(() => run.problems.push(`remove ${LOCK_FILE}: ${e.message}`)))
    )
  }
  return lock.pid ?? null
})
