// The run folder's bookkeeping: cco.lock while the orchestrator lives, state.json (what cco status and
// --resume read) rewritten as the run changes.
import type * as FileSystem from "@effect/platform/FileSystem"
import type * as Path from "@effect/platform/Path"
import { Duration, Effect, Ref } from "effect"
import * as Debounce from "./Debounce.js"
import * as H from "./Hierarchy.js"
import { hostNow, hostStates, movedWorktree } from "./HostsPlacement.js"
import { type Instance, type RunContext, statusName } from "./RunContext.js"
import { LOCK_FILE, type RunState } from "./RunState.js"
import { taskLine } from "./Status.js"

// cco.lock says this run's orchestrator is alive (cleanup leaves such a run alone); removed at the end.
export const holdLock = (fs: FileSystem.FileSystem, path: Path.Path, folder: string) => {
  const lockFile = path.join(folder, LOCK_FILE)
  return Effect.acquireRelease(
    fs.writeFileString(lockFile, `${process.pid}\n`).pipe(Effect.orDie),
    () => fs.remove(lockFile).pipe(Effect.ignore)
  )
}

const instanceState = (ctx: RunContext, b: H.Board, costOf: ReadonlyMap<string, number>) => (i: Instance) => {
  const task = H.currentTask(b, i.spec.name)
  const host = hostNow(ctx.config, ctx.run.folder, i.spec.name)
  return {
    name: i.spec.name,
    role: i.spec.role,
    ...(i.spec.lead === undefined ? {} : { lead: i.spec.lead }),
    branch: i.spec.branch,
    worktree: movedWorktree(ctx.run.folder, i.spec.name) ?? i.worktree,
    session: ctx.agent.sessionName(i.spec.name),
    status: statusName(i.phase),
    generation: i.generation,
    restarts: i.restarts,
    credential: i.credential,
    lastEventAt: new Date(i.lastEventAt).toISOString(),
    costUsd: costOf.get(i.spec.name) ?? 0,
    prompted: i.prompted,
    ...(i.roleQueued ? { roleQueued: true } : {}),
    ...(i.outbox.length === 0 ? {} : { outbox: i.outbox }),
    ...(i.inFlight.length === 0 ? {} : { inFlight: i.inFlight, inFlightPasted: i.inFlightPasted }),
    ...(task === undefined ? {} : { currentTask: taskLine(task, 120) }),
    ...(host === undefined ? {} : { host })
  }
}

/** `writeState` writes state.json now; changes signalled through the context are written coalesced, in the background. */
export const makeStateWriter = (ctx: RunContext) =>
  Effect.gen(function*() {
    const { config, run, runLog } = ctx
    // One writer at a time, from reading the state to renaming the file: a write that read the state earlier
    // can never land after one that read it later (say, the end of the run).
    const stateLock = yield* Effect.makeSemaphore(1)
    const writeState = stateLock.withPermits(1)(Effect.gen(function*() {
      const costs = yield* ctx.costTracker.snapshot
      const costOf = new Map(costs.instances.map((c) => [c.name, c.usd]))
      const all = yield* Ref.get(ctx.instances)
      const b = yield* Ref.get(ctx.board)
      const end = yield* Ref.get(ctx.ended)
      const state: RunState = {
        runId: run.runId,
        runFolder: run.folder,
        repositoryUrl: config.repositoryUrl,
        repoDir: ctx.repoDir,
        targetBranch: ctx.target,
        startCommit: ctx.startCommit,
        startedAt: new Date(run.startedAt).toISOString(),
        deadline: new Date(run.startedAt + config.maxRunDurationMinutes * 60_000).toISOString(),
        ...(end === undefined ? {} : { endedAt: end.at, endReason: end.reason }),
        tmuxSocket: ctx.tmux.socket,
        pid: process.pid,
        instances: [...all.values()].map(instanceState(ctx, b, costOf)),
        board: b,
        merges: yield* Ref.get(ctx.merges),
        ...(ctx.config.checkCommand === undefined ? {} : { checks: yield* Ref.get(ctx.checks) }),
        credentials: (yield* ctx.auth.snapshot).map((c) => ({
          name: c.name,
          kind: c.kind,
          status: c.status,
          ...(c.until === undefined ? {} : { until: c.until }),
          ...(c.reason === undefined ? {} : { reason: c.reason }),
          users: c.users.length,
          instances: c.users,
          limits: c.rateLimits
        })),
        costUsd: costs.total.usd,
        ...(ctx.config.hosts === undefined ? {} : { hosts: hostStates(ctx.config, run.folder, run.runId) })
      }
      yield* runLog.writeState(state)
    }))
    yield* Effect.forkIn(Debounce.coalesce(ctx.stateChanged, writeState, Duration.seconds(1)), ctx.scope)
    return writeState
  })
