// The merge gate (orchestrator.json's checkCommand): a merge into a lead's branch, the target branch included, is
// made in a scratch worktree of that branch, the project's checks run there on the merged result, and only a result
// that passes moves the branch forward. Merges into one branch queue and are checked one at a time. Also the shell
// commands cco runs for the project (setupCommand, checkCommand): in a process group of their own, bounded in time,
// their output in a log file, nothing of them left running.
import { Effect, Ref } from "effect"
import { spawn } from "node:child_process"
import { appendFileSync, closeSync, fstatSync, openSync, readSync } from "node:fs"
import * as H from "./Hierarchy.js"
import type { RunContext } from "./RunContext.js"
import { neutralise, quoteAgentText } from "./Untrusted.js"
import type { GitError } from "./Git.js"
import { ccoOwnedFiles } from "./Vetting.js"

// ---------------------------------------------------------------------------
// Shell commands of the project.

export interface ShellRun {
  /** The exit code; undefined when the command was killed by a signal or could not start. */
  readonly exitCode: number | undefined
  readonly timedOut: boolean
  readonly durationMs: number
  /** Its last lines (at most TAIL_LINES), neutralised: agent-written output shown to agents and terminals. */
  readonly tail: string
  readonly logFile: string
}

export const TAIL_LINES = 60
const TAIL_BYTES = 32 * 1024
const TAIL_CHARS = 8_000
/** After SIGTERM to the group on a timeout, the group gets SIGKILL this much later. */
export const KILL_GRACE_MS = 2_000

export const passed = (r: ShellRun) => r.exitCode === 0 && !r.timedOut

/** "exit code 1", "timed out after 15 minutes", "killed by a signal". */
export const describeRun = (r: ShellRun, timeoutMs: number) =>
  r.timedOut ? `timed out after ${formatDuration(timeoutMs)}` : r.exitCode === undefined ? "killed by a signal" : `exit code ${r.exitCode}`

export const formatDuration = (ms: number) =>
  ms >= 90_000 ? `${Math.round(ms / 60_000)} minutes` : ms >= 60_000 ? "1 minute" : `${Math.max(1, Math.round(ms / 1000))} seconds`

/** The log's last lines as a ShellRun's `tail` gives them. */
export const readTail = (file: string) => {
  try {
    const fd = openSync(file, "r")
    try {
      const size = fstatSync(fd).size
      const length = Math.min(size, TAIL_BYTES)
      const buffer = Buffer.alloc(length)
      readSync(fd, buffer, 0, length, size - length)
      const lines = buffer.toString("utf8").split("\n")
      if (lines.at(-1) === "") lines.pop()
      const text = quoteAgentText(neutralise(lines.slice(-TAIL_LINES).join("\n"), TAIL_BYTES))
      // It goes into a reply of at most REPLY_MAX characters: the end matters most.
      return text.length > TAIL_CHARS ? `…${text.slice(-TAIL_CHARS)}` : text
    } finally {
      closeSync(fd)
    }
  } catch {
    return ""
  }
}

const killGroup = (pid: number | undefined, signal: NodeJS.Signals) => {
  if (pid === undefined) return
  try {
    process.kill(-pid, signal)
  } catch {
    // the group is gone
  }
}

/**
 * `command` run by sh in `cwd`, in a process group of its own, its output (stdout and stderr) appended to
 * `logFile`. Past `timeoutMs` the group gets SIGTERM, then SIGKILL; when sh ends, whatever it left in its group
 * (a server started in the background) is killed too, and so is everything when the caller is interrupted.
 * Real time, not the Clock: the command really runs.
 */
export const runShell = (
  command: string,
  options: { readonly cwd: string; readonly env: Readonly<Record<string, string>>; readonly logFile: string; readonly timeoutMs: number }
): Effect.Effect<ShellRun> =>
  Effect.async<ShellRun>((resume) => {
    const started = Date.now()
    let timedOut = false
    let fd: number | undefined
    let pid: number | undefined
    let finished = false
    const timers: Array<NodeJS.Timeout> = []
    const done = (exitCode: number | undefined) => {
      if (finished) return
      finished = true
      for (const t of timers) clearTimeout(t)
      killGroup(pid, "SIGKILL")
      resume(Effect.sync(() => ({ exitCode, timedOut, durationMs: Date.now() - started, tail: readTail(options.logFile), logFile: options.logFile })))
    }
    try {
      fd = openSync(options.logFile, "a", 0o600)
      const child = spawn("/bin/sh", ["-c", command], { cwd: options.cwd, env: options.env, detached: true, stdio: ["ignore", fd, fd] })
      pid = child.pid
      child.once("error", (e) => {
        try {
          appendFileSync(options.logFile, `cco: cannot run ${command}: ${e.message}\n`)
        } catch {
          // the log file is not writable; the tail says nothing then
        }
        done(undefined)
      })
      child.once("exit", (code) => done(code ?? undefined))
      timers.push(setTimeout(() => {
        timedOut = true
        killGroup(pid, "SIGTERM")
        timers.push(setTimeout(() => killGroup(pid, "SIGKILL"), KILL_GRACE_MS))
      }, options.timeoutMs))
    } catch (e) {
      try {
        appendFileSync(options.logFile, `cco: cannot run ${command}: ${e instanceof Error ? e.message : String(e)}\n`)
      } catch {
        // nowhere to say it
      }
      done(undefined)
    } finally {
      if (fd !== undefined) closeSync(fd)
    }
    return Effect.sync(() => {
      for (const t of timers) clearTimeout(t)
      if (!finished) killGroup(pid, "SIGKILL")
      finished = true
    })
  })

// Variables of the orchestrator's environment a project's command does not get: credentials, cco's identity, tmux.
export const withheld = /^(ANTHROPIC_|CLAUDE_|CCO_|TMUX)/

/** The environment of setupCommand and checkCommand: cco's, without credentials, with CCO_PORT. */
export const commandEnv = (port: number): Record<string, string> => {
  const env: Record<string, string> = {}
  for (const [name, value] of Object.entries(process.env)) if (value !== undefined && !withheld.test(name)) env[name] = value
  env.CCO_PORT = String(port)
  return env
}

// ---------------------------------------------------------------------------
// The gate.

export interface CheckStats {
  /** Checks run (a retry counts). */
  readonly runs: number
  readonly passed: number
  readonly failed: number
  readonly totalMs: number
}

export const noChecks: CheckStats = { runs: 0, passed: 0, failed: 0, totalMs: 0 }

export type GateOutcome =
  /** The branch moved forward to `commit` (or was there already) and was pushed. */
  | { readonly _tag: "Landed"; readonly commit: string; readonly upToDate: boolean; readonly waitedMs: number; readonly attempts: number }
  /** Nothing was merged: `text` says why (vetting, a branch that moved, git refusing the fast-forward). */
  | { readonly _tag: "Refused"; readonly text: string }
  /** The merge conflicts; `inWorktree`: the conflict was left in the lead's worktree to resolve. */
  | { readonly _tag: "Conflict"; readonly files: ReadonlyArray<string>; readonly inWorktree: boolean }
  /** The check failed on the merged result (after the retry); the branch is untouched. */
  | { readonly _tag: "Failed"; readonly run: ShellRun; readonly attempts: number; readonly waitedMs: number }

const only = (files: ReadonlyArray<string>, allowed: ReadonlyArray<string>) => files.every((f) => allowed.includes(f))

export const makeGate = (
  ctx: RunContext,
  recordMerge: (lead: H.InstanceSpec, report: H.InstanceSpec, worktree: string) => Effect.Effect<string, GitError>
) => {
  const { config, git, runLog, run, repoDir, worktrees, locked, startCommit, target, path, fs } = ctx
  const command = config.checkCommand
  const timeoutMs = config.checkTimeoutMinutes * 60_000
  const queues = new Map<string, { readonly lock: Effect.Semaphore; waiting: number }>()
  // The last commit of each branch whose check passed (the target's start is the user's, taken as it is).
  const lastPassed = new Map<string, string>([[target, startCommit]])
  let serial = 0
  // A resumed run does not reuse the names of its predecessor's scratch worktrees and logs (one may be left over).
  const prefix = run.previous === undefined ? "" : `r${Date.now().toString(36)}-`
  const checksDir = path.join(run.folder, "checks")

  /** `self` once the merges into `branch` queued before it are through; it learns how long it waited. */
  const inQueue = <A, E, R>(branch: string, from: string, self: (waitedMs: number) => Effect.Effect<A, E, R>) =>
    Effect.suspend(() => {
      let q = queues.get(branch)
      if (q === undefined) {
        q = { lock: Effect.unsafeMakeSemaphore(1), waiting: 0 }
        queues.set(branch, q)
      }
      const queue = q
      const ahead = queue.waiting
      queue.waiting++
      const queuedAt = Date.now()
      return (ahead > 0 ? runLog.log("merge.queued", { from, into: branch, ahead }) : Effect.void).pipe(
        Effect.zipRight(queue.lock.withPermits(1)(Effect.suspend(() => self(Date.now() - queuedAt)))),
        Effect.ensuring(Effect.sync(() => queue.waiting--))
      )
    })

  /** How many merges into `branch` are queued or being checked. */
  const queued = (branch: string) => queues.get(branch)?.waiting ?? 0

  /** The check on `dir` (a scratch worktree at `commit`), retried once after a failure that is not a timeout. */
  const check = (into: H.InstanceSpec, from: string, dir: string, commit: string) =>
    Effect.gen(function*() {
      const n = ++serial
      yield* fs.makeDirectory(checksDir, { recursive: true }).pipe(Effect.ignore)
      let last: ShellRun | undefined
      for (let attempt = 1; attempt <= 2; attempt++) {
        const logFile = path.join(checksDir, `${prefix}${n}-${into.name}-${attempt}.log`)
        yield* runLog.log("check.started", { into: into.branch, from, commit, attempt, log: logFile })
        const result = yield* runShell(command!, { cwd: dir, env: commandEnv(H.checkPort(into.name)), logFile, timeoutMs })
        const ok = passed(result)
        yield* Ref.update(ctx.checks, (s) => ({ runs: s.runs + 1, passed: s.passed + (ok ? 1 : 0), failed: s.failed + (ok ? 0 : 1), totalMs: s.totalMs + result.durationMs }))
        if (ok) {
          yield* runLog.log("check.passed", { into: into.branch, from, commit, attempt, durationMs: result.durationMs })
          lastPassed.set(into.branch, commit)
          return { ok: true as const, run: result, attempts: attempt }
        }
        yield* runLog.log("check.failed", {
          into: into.branch, from, commit, attempt, durationMs: result.durationMs, exitCode: result.exitCode ?? null, timedOut: result.timedOut, log: logFile
        })
        last = result
        if (result.timedOut) break
      }
      return { ok: false as const, run: last!, attempts: last!.timedOut ? 1 : 2 }
    })

  /** A scratch worktree at `commit`, removed (forcibly) when `use` is through, whatever happened. */
  const withScratch = <A, E, R>(lead: H.InstanceSpec, commit: string, use: (dir: string) => Effect.Effect<A, E, R>) =>
    Effect.acquireUseRelease(
      Effect.suspend(() => {
        const dir = path.join(run.folder, "scratch", `${prefix}${lead.name}-${++serial}`)
        return Effect.as(git.addDetachedWorktree(repoDir, dir, commit), dir)
      }),
      use,
      (dir) => git.removeWorktree(repoDir, dir, { force: true }).pipe(
        Effect.catchAll((e) => runLog.log("scratch.remove-failed", { dir, message: e.message }))
      )
    )

  /**
   * `report`'s branch merged into `lead`'s through the gate: queued behind earlier merges into that branch, made
   * in a scratch worktree, checked, and landed (fast-forward of the lead's branch in its worktree, pushed) only
   * when the check passes. `handConflict`: a conflict is left in the lead's (clean) worktree to resolve there.
   */
  const land = (lead: H.InstanceSpec, report: H.InstanceSpec, options: { readonly message: string; readonly handConflict: boolean }) =>
    inQueue(lead.branch, report.name, (waitedMs) =>
      Effect.gen(function*() {
        const leadDir = worktrees.get(lead.name)!
        const prepared = yield* locked(Effect.gen(function*() {
          if (yield* git.mergeInProgress(leadDir)) {
            return { _tag: "Refused", text: `a merge is still in progress in your worktree; resolve it, git add, git commit, then run cco team merge ${report.name} again` } as const
          }
          const theirs = yield* git.vetCommits(leadDir, lead.branch, report.branch)
          if (theirs.length > 0) {
            yield* runLog.log("merge.refused", { from: report.name, into: lead.branch, problems: theirs })
            return { _tag: "Refused", text: `${report.name}'s branch ${report.branch} brings ${theirs.join("; ")}. Nothing was merged. Tell ${report.name} (cco team message ${report.name} …) to fix it and report again.` } as const
          }
          const base = yield* git.headCommit(repoDir, `refs/heads/${lead.branch}`)
          return { _tag: "Ready", base } as const
        }))
        if (prepared._tag === "Refused") return prepared
        const { base } = prepared
        return yield* withScratch(lead, base, (dir) =>
          Effect.gen(function*() {
            const merged = yield* locked(Effect.gen(function*() {
              const result = yield* git.merge(dir, report.branch, { message: options.message })
              if (result._tag === "Conflict") {
                // Handed to the lead as without the gate: the conflict in its worktree, checked when it merges again.
                const inWorktree = options.handConflict && (yield* git.isClean(leadDir)) &&
                  (yield* git.merge(leadDir, report.branch, { message: options.message, keepConflict: true }))._tag === "Conflict"
                yield* runLog.log("merge.conflict", { from: report.name, into: lead.branch, files: result.files })
                return { _tag: "Conflict", files: result.files, inWorktree } as const
              }
              const ours = yield* git.vetCommits(dir, startCommit, "HEAD", { ccoOwned: false })
              if (ours.length > 0) {
                yield* runLog.log("merge.refused", { from: report.name, into: lead.branch, problems: ours })
                return { _tag: "Refused", text: `your branch ${lead.branch} brings ${ours.join("; ")}. Nothing was pushed. Then run cco team merge ${report.name} again.` } as const
              }
              return { _tag: "Merged", commit: yield* git.headCommit(dir), upToDate: result._tag === "AlreadyUpToDate" } as const
            }))
            if (merged._tag !== "Merged") return merged
            const checked = yield* check(lead, report.name, dir, merged.commit)
            if (!checked.ok) return { _tag: "Failed", run: checked.run, attempts: checked.attempts, waitedMs } as const
            return yield* locked(Effect.gen(function*() {
              const now = yield* git.headCommit(repoDir, `refs/heads/${lead.branch}`)
              if (now !== merged.commit) {
                if (now === base) {
                  const refused = yield* git.fastForward(leadDir, merged.commit)
                  if (refused !== undefined) {
                    return { _tag: "Refused", text: `the check passed, but git could not move ${lead.branch} forward in your worktree: ${refused.split("\n").slice(0, 5).join(" ")}. Commit or stash your changes, then run cco team merge ${report.name} again.` } as const
                  }
                } else if (only(yield* git.changedFiles(repoDir, base, now), ccoOwnedFiles)) {
                  // Only cco's own files moved meanwhile (TEAM_STRUCTURE.md): the checked tree lands beside them.
                  const result = yield* git.merge(leadDir, merged.commit, { message: `cco: land the checked merge of ${report.name}` })
                  // (git.merge has aborted the conflicting merge: the lead's worktree is as it was.)
                  if (result._tag === "Conflict") {
                    return { _tag: "Refused", text: `the check passed, but the result conflicts with cco's own files on ${lead.branch}; run cco team merge ${report.name} again.` } as const
                  }
                } else {
                  return { _tag: "Refused", text: `your branch ${lead.branch} got new commits while the check ran; nothing was merged. Run cco team merge ${report.name} again (it is checked with them).` } as const
                }
              }
              const commit = yield* recordMerge(lead, report, leadDir)
              lastPassed.set(lead.branch, commit)
              return { _tag: "Landed", commit, upToDate: merged.upToDate && now === merged.commit, waitedMs, attempts: checked.attempts } as const
            }))
          })
        )
      })
    ) as Effect.Effect<GateOutcome, GitError>

  /**
   * Whether the top's branch may be pushed as it is now: its content (cco's own files aside) is that of a commit
   * whose check passed, or the check passes on it now. Only for the end of a run, when nothing else merges.
   */
  const verifyForPush = (top: H.InstanceSpec, options: { readonly checkNow: boolean }) =>
    inQueue(top.branch, top.name, () =>
      Effect.gen(function*() {
        const head = yield* git.headCommit(repoDir, `refs/heads/${top.branch}`)
        const good = lastPassed.get(top.branch)
        if (good !== undefined && only(yield* git.changedFiles(repoDir, good, head), ccoOwnedFiles)) return undefined
        // An interrupted run does not wait minutes for a check: what was not checked is not pushed.
        if (!options.checkNow) return "not checked" as const
        const checked = yield* withScratch(top, head, (dir) => check(top, top.name, dir, head))
        return checked.ok ? undefined : checked.run
      }))

  return { enabled: command !== undefined, land, verifyForPush, queued, timeoutMs }
}

export type Gate = ReturnType<typeof makeGate>
