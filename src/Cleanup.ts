// `cco cleanup`: removes what finished or crashed runs leave behind — their tmux sessions (by exact name, on the
// run's own socket), their worktrees and, on request, merged run branches and the clone — never a live run's, and
// nothing that lies outside the run folder whose liveness was checked (CleanupPlan; the steps are CleanupSteps).
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import { Clock, Effect, Schema } from "effect"
import { makePlan, ownedByRun, plural } from "./CleanupPlan.js"
import { deleteMergedBranches, killSessions, removeRunDirectories, removeStaleLock, removeWorktrees } from "./CleanupSteps.js"
import { cleanHosts } from "./HostsCleanup.js"
import { LOCK_FILE } from "./RunState.js"
import { isRunFolder, LATEST_LINK, readLock, readRunState, RunFolderNotFound } from "./Status.js"

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

/** Cleans one run folder (or, with dryRun, reports what that would do). Never fails: problems are reported. */
export const cleanupRun = Effect.fn("Cleanup.run")(function*(folder: string, options: CleanupOptions) {
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

  const run = yield* ownedByRun(folder, plan, options.dryRun)
  const sessions = yield* killSessions(run)
  const { repoExists, worktrees } = yield* removeWorktrees(run)
  const branches = options.branches ? yield* deleteMergedBranches(run, repoExists) : []
  const removed = options.all ? yield* removeRunDirectories(run, repoExists) : []
  // Remote hosts (config `hosts`): their sessions and worktrees, named `<host>:<what>`.
  const hosts = state._tag === "Right" && state.right.hosts !== undefined
    ? yield* cleanHosts(state.right, { dry: options.dryRun, all: options.all })
    : { sessions: [], worktrees: [], removed: [], problems: [] }
  const staleLock = yield* removeStaleLock(run, lock)
  const result: RunCleanup = {
    ...base,
    sessions: [...sessions, ...hosts.sessions],
    worktrees: [...worktrees, ...hosts.worktrees],
    branches,
    removed: [...removed, ...hosts.removed],
    notes: run.notes,
    problems: [...run.problems, ...hosts.problems],
    ...(staleLock === undefined ? {} : { staleLock })
  }
  return result
})

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
