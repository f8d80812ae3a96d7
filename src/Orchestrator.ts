// The run: clone, branches and worktrees, instances launched in hierarchy order, hook events and team
// commands routed, worker → team → target merges owned by cco, TEAM_STRUCTURE.md kept current, and the end.
// Each concern lives in its own module, all sharing one RunContext (services, instances, board, locks):
// RunSetup → RunFolder, TeamBoard, RolePrompts → Delivery ← Hooks, TeamCommands (→ Merges) → Launch →
// Supervision (→ Restarts) ← Rotation, CostWatch → WindDown. `orchestrate` composes them in that order.
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import { Clock, Effect, FiberMap, Layer, Queue, Ref } from "effect"
import { Agent, type AgentError } from "./Agent.js"
import * as Auth from "./Auth.js"
import type { ResolvedConfig } from "./Config.js"
import { makeCostWatch } from "./CostWatch.js"
import { makeDelivery } from "./Delivery.js"
import { Events } from "./Events.js"
import { makeHooks } from "./Hooks.js"
import { makeLaunch } from "./Launch.js"
import type * as Limits from "./Limits.js"
import { makeMerges } from "./Merges.js"
import { makeRolePrompts } from "./RolePrompts.js"
import { makeCredentialFor, makeRotation } from "./Rotation.js"
import { makeRunContext, RunError, type RunIdentity, type RunOptions, type RunSummary } from "./RunContext.js"
import { holdLock, makeStateWriter } from "./RunFolder.js"
import * as RunLogModule from "./RunLog.js"
import { RunLog } from "./RunLog.js"
import { RunLayers, type RunPlatform } from "./RunLayers.js"
import { preflight, prepareLayout, readResumable } from "./RunSetup.js"
import * as Secrets from "./Secrets.js"
import { makeRestarts } from "./Restarts.js"
import { makePaneSnapshots, makeSupervision } from "./Supervision.js"
import { makeTeamBoard } from "./TeamBoard.js"
import { makeTeamCommands } from "./TeamCommands.js"
import { Tmux } from "./Tmux.js"
import { neutralise, TERMINAL_MAX } from "./Untrusted.js"
import { makeWindDown, addExitFinalizer } from "./WindDown.js"
import { type GitError, Worktree } from "./Worktree.js"

export { RunError, RunErrorReason } from "./RunContext.js"
export type { EndReason, InstanceSummary, RunOptions, RunSummary } from "./RunContext.js"

/** Everything a run needs from the outside world. */
export type RunRequirements = RunLayers | RunPlatform

/** A whole run, on the services the edge provides (RunLayers.Live for `cco run` and the library). */
export const run = (config: ResolvedConfig, options: RunOptions): Effect.Effect<RunSummary, RunError, RunRequirements> =>
  Effect.scoped(
    Effect.gen(function*() {
      // The run's credentials are scrubbed from everything it logs, writes, delivers or fails with.
      for (const key of config.apiKeys) Secrets.rememberEnv(key.name, key.env)
      if (options.oauthEnv !== undefined) Secrets.rememberEnv("oauth", options.oauthEnv)
      const fs = yield* FileSystem.FileSystem
      const path = yield* Path.Path
      const previous = options.resume === undefined ? undefined : yield* readResumable(options.resume, config)
      const startedAt = previous === undefined ? yield* Clock.currentTimeMillis : Date.parse(previous.startedAt)
      const { folder, runId } = previous !== undefined
        ? { folder: previous.runFolder, runId: previous.runId }
        : yield* RunLogModule.createRunFolder(config.logDirectory, new Date(startedAt)).pipe(
          Effect.mapError((e) => new RunError({ reason: "run-folder", message: `cannot create the run folder in ${config.logDirectory}: ${e.message}` }))
        )
      options.onStart?.({ runId, folder })
      const runLog = yield* RunLogModule.make(folder, runId).pipe(Effect.orDie)
      if (options.onLog !== undefined) yield* runLog.listen(options.onLog)
      // The control socket's path must stay under the unix-socket limit (108 bytes). It has a directory to itself,
      // which sandboxes show: a resumed run's new socket there reaches the sessions it re-attaches.
      const controlDir = path.join(folder, "control")
      const socketPath = path.join(controlDir, "control.sock").length < 100
        ? yield* fs.makeDirectory(controlDir, { recursive: true, mode: 0o700 }).pipe(Effect.orDie, Effect.as(path.join(controlDir, "control.sock")))
        : path.join(yield* fs.makeTempDirectoryScoped({ prefix: "cco-" }).pipe(Effect.orDie), "control.sock")
      const layers = yield* RunLayers
      const services = layers.services({ folder, runId, socketPath, config, options, ...(previous === undefined ? {} : { previous }) }).pipe(
        Layer.provideMerge(Layer.succeed(RunLog, runLog))
      )
      return yield* orchestrate(config, options, { folder, runId, startedAt, previous }).pipe(Effect.provide(services))
    })
  ).pipe(
    Effect.mapError((e) => {
      const error = toRunError(e)
      return new RunError({ reason: error.reason, message: neutralise(error.message, TERMINAL_MAX) })
    })
  )

const toRunError = (e: { readonly _tag?: string; readonly message: string }): RunError => {
  switch (e._tag) {
    case "RunError":
      return e as RunError
    case "AgentError": {
      const a = e as AgentError
      return new RunError({ reason: "agent", message: `${a.instance}: ${a.operation}: ${a.message}` })
    }
    case "GitError": {
      const g = e as GitError
      return new RunError({ reason: "git", message: `${g.operation} in ${g.repo}: ${g.message}` })
    }
    default:
      return new RunError({ reason: "startup", message: e.message })
  }
}

const orchestrate = (config: ResolvedConfig, options: RunOptions, run: RunIdentity) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const runLog = yield* RunLog
    const git = yield* Worktree
    const tmux = yield* Tmux
    const events = yield* Events
    const agent = yield* Agent
    const scope = yield* Effect.scope

    yield* holdLock(fs, path, run.folder)
    yield* runLog.log("run.starting", { runId: run.runId, folder: run.folder, repositoryUrl: config.repositoryUrl, workerCount: config.workerCount })
    yield* preflight(config, options)
    const auth = yield* Auth.make({
      authMode: config.authMode,
      apiKeys: config.apiKeys,
      ...(options.oauthEnv === undefined ? {} : { oauthEnv: options.oauthEnv }),
      ownLogin: options.oauthCredentialsFile !== undefined || options.oauthEnv !== undefined
    }).pipe(Effect.mapError((e) => new RunError({ reason: "auth", message: e.message })))
    // API errors reported by hooks, handled by the rotation fiber (Rotation).
    const limitEvents = yield* Queue.unbounded<{ readonly instance: string; readonly generation: number; readonly limit: Limits.Limit }>()
    const { layout, makeWorktree } = yield* prepareLayout(config, run, runLog, git)
    const services = { fs, path, runLog, git, tmux, events, agent, auth, scope }
    const ctx = yield* makeRunContext(config, options, run, services, layout, limitEvents)
    // Before the exit finalizer: its run.finished goes out in the alerts' grace at the end. Loaded only when
    // configured, so that the HTTP client stays out of every other command's start-up.
    if (config.notify.length > 0) {
      const Notify = yield* Effect.promise(() => import("./Notify.js"))
      yield* Notify.start({ webhooks: config.notify, runLog, run: { runId: run.runId, target: layout.target, top: layout.top.name } }).pipe(
        Effect.provide(Notify.layer)
      )
    }

    const costWatch = makeCostWatch(ctx)
    const writeState = yield* makeStateWriter(ctx)
    const { writeTeamStructure, boardChanged } = yield* makeTeamBoard(ctx, writeState)
    const rolePrompt = yield* makeRolePrompts(ctx)
    const delivery = yield* makeDelivery(ctx)
    const { send } = delivery
    yield* makeHooks(ctx, delivery, costWatch.spendWatch).consume
    const merges = makeMerges(ctx)
    const teamCommands = makeTeamCommands(ctx, { send, merges, rolePrompt, boardChanged, writeTeamStructure })
    yield* events.setTeamHandler(teamCommands.onTeam)
    const allStopped = yield* Ref.make(false)
    yield* addExitFinalizer(ctx, writeState, allStopped)

    const credentialFor = makeCredentialFor(ctx)
    yield* makeLaunch(ctx, { makeWorktree, credentialFor, delivery, rolePrompt, writeState, writeTeamStructure }).launchAll(layout.direction)

    const snapshots = yield* makePaneSnapshots(ctx)
    const { restart, stopInstances } = makeRestarts(ctx, { send, credentialFor, writeState, dropSnapshots: snapshots.dropSnapshots, rolePrompt })
    const rotation = yield* makeRotation(ctx, { send, restart })
    const supervision = yield* makeSupervision(ctx, snapshots, restart)
    const supervisors = yield* FiberMap.make<string>()
    yield* supervision.superviseAll(supervisors)
    yield* costWatch.startPolling(writeState)

    const { awaitEnd, windDown, finish } = makeWindDown(ctx, {
      send,
      merges,
      stopInstances,
      stopHealthChecks: supervision.stopHealthChecks(supervisors),
      stopRotation: rotation.stop,
      stopDeliveries: delivery.stop,
      allStopped,
      writeState,
      writeTeamStructure,
      pollCosts: costWatch.pollCosts
    })
    const reason = yield* awaitEnd
    yield* windDown(reason)
    return yield* finish(reason)
  })
