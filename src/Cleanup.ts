// `cco cleanup`: removes what finished or crashed runs leave behind — their tmux sessions (by exact name, on the
// run's own socket), their worktrees and, on request, merged run branches and the clone — never a live run's, and
// nothing that lies outside the run folder whose liveness was checked.
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import { Clock, Effect, Either, Option, Schema } from "effect"
import { Git, type GitOutput } from "./Git.js"
import { LOCK_FILE, type RunState } from "./RunState.js"
import { isRunFolder, LATEST_LINK, readLock, readRunState, RunFolderNotFound } from "./Status.js"
import * as Tmux from "./Tmux.js"

export class CleanupIncomplete extends Schema.TaggedError<CleanupIncomplete>()("CleanupIncomplete", {
  refused: Schema.Array(Schema.Struct({ folder: Schema.String, pid: Schema.Number })),
  problems: Schema.Number
}) {
  override get message() {
    const parts = this.refused.map((r) => `refused ${r.folder}: its orchestrator is alive (pid ${r.pid})`)
    if (this.problems > 0) parts.push(`${this.problems} problem${this.problems === 1 ? "" : "s"} left (see above)`)
    return parts.join("; ")
  }
}

export interface CleanupOptions {
  /** Report what would be removed; change nothing. */
  readonly dryRun: boolean
  /** Also delete the run's local `cco/<runId>/*` branches that are merged into its target branch. */
  readonly branches: boolean
  /** Also remove instances/ (Claude config dirs) and the clone repo/ when nothing in it is unpushed. */
  readonly all: boolean
  /** The tmux socket of runs whose state.json cannot be read (the config's tmuxSocket); default "cco". */
  readonly fallbackSocket?: string
}

/** What was (or, with dryRun, would be) done to one run folder. */
export interface RunCleanup {
  readonly folder: string
  readonly runId: string
  /** Set when the run's orchestrator is alive: then nothing is touched. */
  readonly refusedPid?: number
  readonly socket: string
  readonly sessions: ReadonlyArray<string>
  readonly worktrees: ReadonlyArray<string>
  readonly branches: ReadonlyArray<string>
  /** Directories removed by --all. */
  readonly removed: ReadonlyArray<string>
  /** The pid of a stale cco.lock removed (null: unreadable lock). */
  readonly staleLock?: number | null
  readonly notes: ReadonlyArray<string>
  readonly problems: ReadonlyArray<string>
}

interface RunPlan {
  readonly runId: string
  readonly repoDir: string
  readonly targetBranch: string | undefined
  readonly socket: string
  readonly sessions: ReadonlyArray<string>
  readonly worktrees: ReadonlyArray<string>
  readonly notes: ReadonlyArray<string>
}

const firstLine = (r: GitOutput) => (r.stderr.trim() || r.stdout.trim()).split("\n")[0] ?? ""

/** A glob that matches `text` only as it is (branch --list patterns). */
const globLiteral = (text: string) => text.replace(/[*?[\]\\]/g, "\\$&")

const unique = (items: ReadonlyArray<string>) => [...new Set(items)]

/** Run folders directly under a log directory (the `latest` link excluded), oldest first. */
export const listRunFolders = Effect.fn("Cleanup.listRunFolders")(function*(logDirectory: string) {
  const fs = yield* FileSystem.FileSystem
  const path = yield* Path.Path
  const dir = path.resolve(logDirectory)
  const names = yield* fs.readDirectory(dir).pipe(Effect.orElseSucceed((): ReadonlyArray<string> => []))
  const folders = yield* Effect.filter(
    names.filter((n) => n !== LATEST_LINK).sort().map((n) => path.join(dir, n)),
    (f) => isRunFolder(f),
    { concurrency: 16 }
  )
  // Physical paths: a run reached through a link is the same run, and its state.json names physical paths.
  return yield* Effect.forEach(folders, (f) => fs.realPath(f).pipe(Effect.orElseSucceed(() => f)))
})

/** Instance names the folder itself shows: worktrees/<name>/ and session-<name>.log. */
const namesInFolder = Effect.fn("Cleanup.namesInFolder")(function*(folder: string) {
  const fs = yield* FileSystem.FileSystem
  const path = yield* Path.Path
  const worktrees = yield* fs.readDirectory(path.join(folder, "worktrees")).pipe(Effect.orElseSucceed((): ReadonlyArray<string> => []))
  const logs = (yield* fs.readDirectory(folder).pipe(Effect.orElseSucceed((): ReadonlyArray<string> => [])))
    .flatMap((n) => {
      const m = /^session-(.+)\.log$/.exec(n)
      return m === null ? [] : [m[1]!]
    })
  return { worktrees, logs }
})

const makePlan = Effect.fn("Cleanup.plan")(function*(folder: string, state: Either.Either<RunState, { readonly reason: string }>, fallbackSocket: string) {
  const path = yield* Path.Path
  const found = yield* namesInFolder(folder)
  const layoutWorktrees = found.worktrees.map((n) => path.join(folder, "worktrees", n))
  if (Either.isRight(state)) {
    const s = state.right
    const prefix = `cco-${s.runId}-`
    return {
      runId: s.runId,
      repoDir: s.repoDir,
      targetBranch: s.targetBranch,
      socket: s.tmuxSocket,
      // The folder's own worktrees/ and session logs name instances too (e.g. one launched before state.json caught up).
      sessions: unique([...s.instances.map((i) => i.session), ...[...found.worktrees, ...found.logs].map((n) => prefix + n)]),
      worktrees: unique([...s.instances.map((i) => path.resolve(i.worktree)), ...layoutWorktrees]),
      notes: []
    } satisfies RunPlan
  }
  const runId = path.basename(folder)
  return {
    runId,
    repoDir: path.join(folder, "repo"),
    targetBranch: undefined,
    socket: fallbackSocket,
    sessions: unique([...found.worktrees, ...found.logs]).map((n) => `cco-${runId}-${n}`),
    worktrees: layoutWorktrees,
    notes: [`${state.left.reason}; using the folder's layout (sessions on tmux -L ${fallbackSocket})`]
  } satisfies RunPlan
})

const registeredWorktrees = (porcelain: string) =>
  new Set(porcelain.split("\n").filter((l) => l.startsWith("worktree ")).map((l) => l.slice("worktree ".length)))

/** Cleans one run folder (or, with dryRun, reports what that would do). Never fails: problems are reported. */
export const cleanupRun = Effect.fn("Cleanup.run")(function*(folder: string, options: CleanupOptions) {
  const fs = yield* FileSystem.FileSystem
  const path = yield* Path.Path
  const port = yield* Git
  // Never fails: what git could not do is a problem reported with the rest.
  const git = (repoDir: string, args: ReadonlyArray<string>) =>
    port.run(repoDir, args).pipe(Effect.catchTag("GitError", (e) => Effect.succeed<GitOutput>({ stdout: "", stderr: e.message, exitCode: 127 })))
  const lock = yield* readLock(folder)
  const state = yield* readRunState(folder).pipe(Effect.either)
  const plan = yield* makePlan(folder, state, options.fallbackSocket ?? "cco")
  const base = {
    folder,
    runId: plan.runId,
    socket: plan.socket,
    sessions: [] as ReadonlyArray<string>,
    worktrees: [] as ReadonlyArray<string>,
    branches: [] as ReadonlyArray<string>,
    removed: [] as ReadonlyArray<string>,
    notes: plan.notes,
    problems: [] as ReadonlyArray<string>
  }
  if (lock._tag === "Lock" && lock.alive) {
    const refused: RunCleanup = { ...base, refusedPid: lock.pid! }
    return refused
  }

  const problems: Array<string> = []
  const notes: Array<string> = [...plan.notes]
  const dry = options.dryRun
  const exists = (p: string) => fs.exists(p).pipe(Effect.orElseSucceed(() => false))
  const worktreesDir = path.join(folder, "worktrees") + path.sep

  // Only what lies inside this folder (real paths: no link leads out) belongs to the run whose liveness was
  // checked above. A copied run folder's state.json names the original's worktrees, clone and sessions.
  const realFolder = yield* fs.realPath(folder).pipe(Effect.orElseSucceed(() => path.resolve(folder)))
  const under = (p: string, dir: string) => p.startsWith(dir + path.sep)
  const within = (p: string) =>
    fs.realPath(p).pipe(
      Effect.map((real) => under(real, realFolder)),
      // Gone from disk: its path as written decides.
      Effect.orElseSucceed(() => under(path.resolve(p), realFolder) || under(path.resolve(p), path.resolve(folder)))
    )
  const insideFolder = within
  const layoutRepo = path.join(folder, "repo")
  const repoDir = plan.repoDir === layoutRepo || (yield* within(plan.repoDir)) ? plan.repoDir : layoutRepo
  if (repoDir !== plan.repoDir) notes.push(`left ${plan.repoDir} alone: state.json names it, but it is outside this run folder (a copied folder?)`)
  const [foreignWorktrees, ownWorktrees] = yield* Effect.partition(plan.worktrees, (wt) =>
    Effect.flatMap(within(wt), (inside) => inside ? Effect.succeed(wt) : Effect.fail(wt)))
  if (foreignWorktrees.length > 0) {
    notes.push(`left ${plural(foreignWorktrees.length, "worktree")} alone that state.json names outside this run folder: ${foreignWorktrees.join(", ")}`)
  }

  // 1. Sessions first: nothing keeps writing into a worktree while it is removed.
  const tmux = yield* Tmux.makeLive(plan.socket)
  const listed = yield* tmux.sessionPaths(`cco-${plan.runId}-`).pipe(Effect.either)
  let sessions: ReadonlyArray<string> = []
  if (Either.isLeft(listed)) {
    // Without tmux there are no sessions to leave behind; any other failure is worth a look.
    if (listed.left._tag === "TmuxNotFound") notes.push(`sessions not checked: ${listed.left.message}`)
    else problems.push(`tmux sessions on -L ${plan.socket} not checked: ${listed.left.message}`)
  } else {
    // A session started in a directory outside this folder is another run's of the same id (the original of a copy).
    const [foreignSessions, targets] = yield* Effect.partition(plan.sessions.filter((s) => listed.right.has(s)), (s) =>
      Effect.flatMap(within(listed.right.get(s)!), (inside) => inside ? Effect.succeed(s) : Effect.fail(s)))
    if (foreignSessions.length > 0) {
      notes.push(`left ${plural(foreignSessions.length, "tmux session")} alone whose directory is outside this run folder: ${foreignSessions.join(", ")}`)
    }
    // One tmux call for all; one by one only if that fails (a session ended meanwhile).
    const batch = dry ? false : yield* tmux.killSessions(targets).pipe(Effect.as(true), Effect.orElseSucceed(() => false))
    sessions = dry || batch ? targets : (yield* Effect.forEach(targets, (name) =>
      tmux.killSession(name).pipe(
        Effect.as(Option.some(name)),
        // Gone in the meantime (by itself, or by the batch call before it failed) is what was wanted.
        Effect.catchTag("SessionNotFound", () => Effect.succeedSome(name)),
        Effect.catchAll((e) => Effect.sync(() => problems.push(`kill session ${name}: ${e.message}`)).pipe(Effect.as(Option.none<string>())))
      ), { concurrency: 8 })).flatMap(Option.toArray)
  }

  // 2. Worktrees: registered ones through git, leftovers inside the folder's worktrees/ by removal.
  const repoExists = yield* exists(repoDir)
  let registered = new Set<string>()
  if (repoExists) {
    const listing = yield* git(repoDir, ["worktree", "list", "--porcelain"])
    if (listing.exitCode === 0) registered = registeredWorktrees(listing.stdout)
    else problems.push(`git worktree list in ${repoDir}: ${firstLine(listing)}`)
  }
  const actions = yield* Effect.forEach(ownWorktrees, (wt) =>
    Effect.gen(function*() {
      const onDisk = yield* exists(wt)
      const real = onDisk ? yield* fs.realPath(wt).pipe(Effect.orElseSucceed(() => wt)) : wt
      const isRegistered = registered.has(wt) || registered.has(real)
      if (isRegistered) return { wt, how: "git" as const, onDisk }
      if (onDisk && path.resolve(wt).startsWith(worktreesDir)) return { wt, how: "remove" as const, onDisk }
      return { wt, how: "none" as const, onDisk }
    }), { concurrency: 16 })
  const removeDir = (wt: string) =>
    fs.remove(wt, { recursive: true }).pipe(
      Effect.as(Option.some(wt)),
      Effect.catchAll((e) => Effect.sync(() => problems.push(`remove ${wt}: ${e.message}`)).pipe(Effect.as(Option.none<string>())))
    )
  const todo = actions.filter((a) => a.how !== "none" && a.onDisk)
  // Registered but deleted from disk: only the prune below is needed to forget it.
  const needPrune = todo.length > 0 || actions.some((a) => a.how === "git" && !a.onDisk)
  let worktrees: ReadonlyArray<string> = todo.map((a) => a.wt)
  if (!dry) {
    worktrees = (yield* Effect.forEach(todo, (a) =>
      // A worktree inside the run folder goes with its directory; the prune below forgets its registration,
      // which is what `git worktree remove --force` does, without a git process per worktree.
      path.resolve(a.wt).startsWith(worktreesDir)
        ? removeDir(a.wt)
        : git(repoDir, ["worktree", "remove", "--force", a.wt]).pipe(
          Effect.flatMap((r) =>
            r.exitCode === 0
              ? Effect.succeed(Option.some(a.wt))
              : Effect.sync(() => problems.push(`git worktree remove ${a.wt}: ${firstLine(r)}`)).pipe(Effect.as(Option.none<string>()))
          )
        ), { concurrency: 8 })).flatMap(Option.toArray)
    if (repoExists && needPrune) {
      const pruned = yield* git(repoDir, ["worktree", "prune"])
      if (pruned.exitCode !== 0) problems.push(`git worktree prune in ${repoDir}: ${firstLine(pruned)}`)
    }
  }

  // 3. Merged run branches (after the worktrees that had them checked out are gone).
  let branches: ReadonlyArray<string> = []
  if (options.branches) {
    if (plan.targetBranch === undefined) notes.push("branches not checked: the target branch is unknown without state.json")
    else if (!repoExists) notes.push(`branches not checked: no clone at ${repoDir}`)
    else {
      // The run's branches only (cco/<runId>/…), those whose commits the target branch has.
      const runBranches = `cco/${globLiteral(plan.runId)}/*`
      const merged = yield* port.branches(repoDir, ["--list", "--merged", `refs/heads/${plan.targetBranch}`, runBranches]).pipe(Effect.either)
      if (Either.isLeft(merged)) {
        problems.push(`listing branches merged into ${plan.targetBranch}: ${merged.left.message.split("\n")[0]}`)
      } else {
        const names = merged.right.all
        if (dry || names.length === 0) branches = names
        else {
          // -D: merged into the target was checked above; -d would check against the clone's HEAD instead.
          const deleted = yield* git(repoDir, ["branch", "-D", "--", ...names])
          if (deleted.exitCode === 0) branches = names
          else {
            const left = yield* port.branches(repoDir, ["--list", runBranches]).pipe(Effect.map((b) => b.all), Effect.orElseSucceed(() => []))
            const remaining = new Set(left)
            branches = names.filter((n) => !remaining.has(n))
            problems.push(`git branch -D: ${firstLine(deleted)}`)
          }
        }
      }
    }
  }

  // 4. --all: the Claude config dirs, and the clone unless it holds commits that exist nowhere else.
  const removed: Array<string> = []
  if (options.all) {
    const instancesDir = path.join(folder, "instances")
    if (yield* exists(instancesDir)) removed.push(instancesDir)
    if (repoExists) {
      if (!(yield* insideFolder(repoDir))) notes.push(`kept ${repoDir}: it is outside the run folder`)
      else {
        const unpushed = yield* git(repoDir, ["rev-list", "--count", "--branches", "--not", "--remotes"])
        const count = Number(unpushed.stdout.trim())
        if (unpushed.exitCode !== 0) problems.push(`kept ${repoDir}: cannot tell whether it holds unpushed commits (${firstLine(unpushed)})`)
        else if (count > 0) notes.push(`kept ${repoDir}: ${count} commit${count === 1 ? "" : "s"} on local branches are on no remote; push them or remove it by hand`)
        else removed.push(repoDir)
      }
    }
    if (!dry) {
      const done = yield* Effect.forEach(removed, removeDir, { concurrency: "unbounded" })
      removed.splice(0, removed.length, ...done.flatMap(Option.toArray))
    }
  }

  // 5. A lock whose process is gone says nothing any more.
  let staleLock: number | null | undefined
  if (lock._tag === "Lock") {
    staleLock = lock.pid ?? null
    if (!dry) {
      yield* fs.remove(path.join(folder, LOCK_FILE)).pipe(
        Effect.catchAll((e) => Effect.sync(() => problems.push(`remove ${LOCK_FILE}: ${e.message}`)))
      )
    }
  }

  const result: RunCleanup = {
    ...base,
    sessions,
    worktrees,
    branches,
    removed,
    notes,
    problems,
    ...(staleLock === undefined ? {} : { staleLock })
  }
  return result
})

const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`

/** The lines printed for one run. `explicit`: the user named this run (a live one is then refused, not skipped). */
export const formatRunCleanup = (r: RunCleanup, options: { readonly dryRun: boolean; readonly explicit: boolean }): string => {
  const lines = [`${r.runId}  ${r.folder}`]
  const rel = (p: string) => p.startsWith(r.folder + "/") ? p.slice(r.folder.length + 1) : p
  if (r.refusedPid !== undefined) {
    lines.push(options.explicit
      ? `  refused: its orchestrator is alive (pid ${r.refusedPid}); stop it first (Ctrl-C where it runs, or kill ${r.refusedPid})`
      : `  skipped: its orchestrator is alive (pid ${r.refusedPid})`)
    return lines.join("\n")
  }
  const verb = (done: string, would: string) => options.dryRun ? would : done
  for (const note of r.notes) lines.push(`  note: ${note}`)
  if (r.sessions.length > 0) {
    lines.push(`  ${verb("killed", "would kill")} ${plural(r.sessions.length, "tmux session")} on tmux -L ${r.socket}: ${r.sessions.join(", ")}`)
  }
  if (r.worktrees.length > 0) {
    lines.push(`  ${verb("removed", "would remove")} ${plural(r.worktrees.length, "worktree")}: ${r.worktrees.map(rel).join(", ")}`)
  }
  if (r.branches.length > 0) {
    lines.push(`  ${verb("deleted", "would delete")} ${plural(r.branches.length, "merged branch", "merged branches")}: ${r.branches.join(", ")}`)
  }
  if (r.removed.length > 0) lines.push(`  ${verb("removed", "would remove")} ${r.removed.map(rel).join(", ")}`)
  if (r.staleLock !== undefined) {
    lines.push(`  ${verb("removed", "would remove")} a stale ${LOCK_FILE} (${r.staleLock === null ? "unreadable" : `pid ${r.staleLock} is not running`})`)
  }
  for (const problem of r.problems) lines.push(`  problem: ${problem}`)
  if (lines.length === 1 + r.notes.length && r.problems.length === 0) lines.push("  nothing to clean")
  return lines.join("\n")
}

export interface CleanupRequest {
  /** Run folders (or log directories, whose runs are all taken) named by the user. */
  readonly folders: ReadonlyArray<string>
  /** Without folders: every run under this log directory (the config's). */
  readonly logDirectory?: string
  readonly options: CleanupOptions
  readonly write: (text: string) => Effect.Effect<void>
}

/**
 * Cleans the requested runs concurrently and prints what happened. Fails when a named run was refused (its
 * orchestrator is alive) or something could not be removed; a live run found by scanning is only skipped.
 */
export const cleanup = Effect.fn("Cleanup.cleanup")(function*(request: CleanupRequest) {
  const path = yield* Path.Path
  const fs = yield* FileSystem.FileSystem
  const started = yield* Clock.currentTimeMillis
  const targets: Array<{ readonly folder: string; readonly explicit: boolean }> = []
  if (request.folders.length > 0) {
    for (const given of request.folders) {
      const dir = yield* fs.realPath(path.resolve(given)).pipe(
        Effect.mapError(() => new RunFolderNotFound({ path: path.resolve(given), reason: "no such directory" }))
      )
      if (yield* isRunFolder(dir)) targets.push({ folder: dir, explicit: true })
      else {
        const inside = yield* listRunFolders(dir)
        if (inside.length === 0) return yield* new RunFolderNotFound({ path: dir, reason: "not a run folder, and no run folders in it" })
        targets.push(...inside.map((folder) => ({ folder, explicit: false })))
      }
    }
  } else if (request.logDirectory !== undefined) {
    const inside = yield* listRunFolders(request.logDirectory)
    if (inside.length === 0) {
      yield* request.write(`no runs in ${path.resolve(request.logDirectory)}`)
      return
    }
    targets.push(...inside.map((folder) => ({ folder, explicit: false })))
  } else {
    return yield* new RunFolderNotFound({ path: "", reason: "nothing to clean: give --config DIR or one or more RUN_FOLDERs" })
  }
  // A run named twice (say, as its folder and through `latest`) is cleaned once.
  const runs = [...new Map(targets.map((t) => [t.folder, t])).values()]
  const results = yield* Effect.forEach(runs, (t) => cleanupRun(t.folder, request.options), { concurrency: 4 })
  for (const [i, r] of results.entries()) {
    yield* request.write(formatRunCleanup(r, { dryRun: request.options.dryRun, explicit: runs[i]!.explicit }))
  }
  const sum = (f: (r: RunCleanup) => number) => results.reduce((n, r) => n + f(r), 0)
  const elapsed = ((yield* Clock.currentTimeMillis) - started) / 1000
  yield* request.write(
    `${request.options.dryRun ? "would clean" : "cleaned"} ${plural(results.filter((r) => r.refusedPid === undefined).length, "run")}: ` +
      `${plural(sum((r) => r.sessions.length), "session")}, ${plural(sum((r) => r.worktrees.length), "worktree")}` +
      (request.options.branches ? `, ${plural(sum((r) => r.branches.length), "branch", "branches")}` : "") +
      ` (${elapsed.toFixed(1)} s)${request.options.dryRun ? "; nothing was changed" : ""}`
  )
  const refused = results.flatMap((r, i) => r.refusedPid !== undefined && runs[i]!.explicit ? [{ folder: r.folder, pid: r.refusedPid }] : [])
  const problems = sum((r) => r.problems.length)
  if (refused.length > 0 || problems > 0) return yield* new CleanupIncomplete({ refused, problems })
})
