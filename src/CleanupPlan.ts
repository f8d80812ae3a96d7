// What one run folder's cleanup may touch: the sessions, worktrees and clone its state.json (or, without one, its
// layout) names, narrowed to what lies inside the folder whose liveness was checked.
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import { Effect, Either } from "effect"
import { Git, type GitOutput } from "./Git.js"
import type { RunState } from "./RunState.js"

export interface RunPlan {
  readonly runId: string
  readonly repoDir: string
  readonly targetBranch: string | undefined
  readonly socket: string
  readonly sessions: ReadonlyArray<string>
  readonly worktrees: ReadonlyArray<string>
  readonly notes: ReadonlyArray<string>
}

export const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`

const unique = (items: ReadonlyArray<string>) => [...new Set(items)]

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

export const makePlan = Effect.fn("Cleanup.plan")(function*(folder: string, state: Either.Either<RunState, { readonly reason: string }>, fallbackSocket: string) {
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
      // Those on remote hosts are cleaned there (HostsCleanup.cleanHosts).
      worktrees: unique([...s.instances.filter((i) => i.host === undefined || i.host === "local").map((i) => path.resolve(i.worktree)), ...layoutWorktrees]),
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

/** One run's cleanup as it goes: its plan narrowed to the folder, and the notes and problems gathered so far. */
export interface RunInCleanup {
  readonly folder: string
  readonly plan: RunPlan
  readonly dry: boolean
  /** The clone to work in: the plan's, or the folder's own repo/ when the plan's lies outside the folder. */
  readonly repoDir: string
  /** The plan's worktrees that lie inside the folder. */
  readonly ownWorktrees: ReadonlyArray<string>
  readonly notes: Array<string>
  readonly problems: Array<string>
  /** Whether a path lies inside the run folder (real paths: no link leads out). */
  readonly within: (p: string) => Effect.Effect<boolean>
  readonly exists: (p: string) => Effect.Effect<boolean>
  /** Never fails: what git could not do is a problem reported with the rest. */
  readonly git: (repoDir: string, args: ReadonlyArray<string>) => Effect.Effect<GitOutput>
}

/** Narrows a plan to the run folder; what it leaves alone is noted. */
export const ownedByRun = Effect.fn("Cleanup.ownedByRun")(function*(folder: string, plan: RunPlan, dry: boolean) {
  const fs = yield* FileSystem.FileSystem
  const path = yield* Path.Path
  const port = yield* Git
  const git = (repoDir: string, args: ReadonlyArray<string>) =>
    port.run(repoDir, args).pipe(Effect.catchTag("GitError", (e) => Effect.succeed<GitOutput>({ stdout: "", stderr: e.message, exitCode: 127 })))
  const notes: Array<string> = [...plan.notes]
  const exists = (p: string) => fs.exists(p).pipe(Effect.orElseSucceed(() => false))

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
  const layoutRepo = path.join(folder, "repo")
  const repoDir = plan.repoDir === layoutRepo || (yield* within(plan.repoDir)) ? plan.repoDir : layoutRepo
  if (repoDir !== plan.repoDir) notes.push(`left ${plan.repoDir} alone: state.json names it, but it is outside this run folder (a copied folder?)`)
  const [foreignWorktrees, ownWorktrees] = yield* Effect.partition(plan.worktrees, (wt) =>
    Effect.flatMap(within(wt), (inside) => inside ? Effect.succeed(wt) : Effect.fail(wt)))
  if (foreignWorktrees.length > 0) {
    notes.push(`left ${plural(foreignWorktrees.length, "worktree")} alone that state.json names outside this run folder: ${foreignWorktrees.join(", ")}`)
  }
  const run: RunInCleanup = { folder, plan, dry, repoDir, ownWorktrees, notes, problems: [], within, exists, git }
  return run
})
