// The services a run is made of, composed at the edge. A run's own services (its tmux server, git, control
// socket and agents) exist only once its folder and id do, so the edge provides a factory: RunLayers.Live for
// `cco run` and the library (the same graph for both), an in-memory one for the orchestration tests.
import type { CommandExecutor } from "@effect/platform/CommandExecutor"
import type * as FileSystem from "@effect/platform/FileSystem"
import type * as Path from "@effect/platform/Path"
import * as NodeContext from "@effect/platform-node/NodeContext"
import { Context, Effect, Layer } from "effect"
import * as AgentModule from "./Agent.js"
import type { Agent } from "./Agent.js"
import type { ResolvedConfig } from "./Config.js"
import * as EventsModule from "./Events.js"
import type { Events } from "./Events.js"
import { Git } from "./Git.js"
import { withHosts } from "./Hosts.js"
import { RunError, type RunOptions } from "./RunContext.js"
import { Host } from "./RunHost.js"
import type { RunLog } from "./RunLog.js"
import type { RunState } from "./RunState.js"
import * as Sandbox from "./Sandbox.js"
import type { Tmux } from "./Tmux.js"
import * as TmuxLive from "./TmuxLive.js"
import { Worktree } from "./Worktree.js"

/** A run as its services need to know it: where it lives, its id, its control socket, its settings. */
export interface RunSite {
  readonly folder: string
  readonly runId: string
  readonly socketPath: string
  readonly config: ResolvedConfig
  readonly options: RunOptions
  /** The state of the run being resumed (`--resume`); absent for a new run. */
  readonly previous?: RunState
}

/** What a run uses from its own services; RunLog (made by the run itself) and the platform come in. */
export type RunServices = Tmux | Worktree | Git | Events | Agent

export type RunPlatform = FileSystem.FileSystem | Path.Path | CommandExecutor

export interface RunLayersShape {
  readonly services: (site: RunSite) => Layer.Layer<RunServices, Error, RunLog | RunPlatform>
}

export class RunLayers extends Context.Tag("cco/RunLayers")<RunLayers, RunLayersShape>() {}

/** The agent's settings for a run: its folder, its session names, the claude it starts and how hooks reach cco. */
export const agentSettings = (site: RunSite): AgentModule.AgentSettings => ({
  runFolder: site.folder,
  runId: site.runId,
  sessionPrefix: `cco-${site.runId}-`,
  claudePath: site.options.claudePath,
  model: site.config.model,
  clientCommand: site.options.clientCommand,
  basePath: site.options.basePath,
  ...(site.options.oauthCredentialsFile === undefined ? {} : { oauthCredentialsFile: site.options.oauthCredentialsFile }),
  ...(site.options.extraEnv === undefined ? {} : { extraEnv: site.options.extraEnv })
})

/** Real tmux on the run's own server, git, the control socket and `claude` in tmux sessions. */
export const liveServices = (site: RunSite): Layer.Layer<RunServices, Error, RunLog | RunPlatform> => {
  const base = Layer.mergeAll(
    TmuxLive.layer(site.config.tmuxSocket, { hiddenEnv: site.config.apiKeys.flatMap((k) => Object.keys(k.env)) }),
    Worktree.Default,
    Git.Default
  )
  const events = EventsModule.layer(site.socketPath)
  // The sandbox as the edge found it, or looked for now (the library); a required one missing is a config error.
  const sandbox = site.options.sandbox !== undefined ? Effect.succeed(site.options.sandbox) : Sandbox.resolve(site.config.sandbox, site.options.basePath).pipe(
    Effect.mapError((e) => new RunError({ reason: "config", message: e.message }))
  )
  const agent = Layer.unwrapEffect(Effect.map(sandbox, (s) => AgentModule.layer({ ...agentSettings(site), sandbox: s }))).pipe(
    Layer.provide(Layer.merge(base, events))
  )
  // Instances placed on remote hosts (config `hosts`) run there: see Hosts.ts.
  return withHosts(site, agentSettings(site), Layer.mergeAll(base, events, agent))
}

/**
 * The live graph: real run services, the Node platform and this host (PATH, ~/.claude, the OAuth token). What
 * bin.ts and the library's entry points provide, so that `cco run` and the library run the same thing.
 */
export const Live: Layer.Layer<RunLayers | NodeContext.NodeContext | Host> = Layer.mergeAll(
  Layer.succeed(RunLayers, RunLayers.of({ services: liveServices })),
  NodeContext.layer,
  Host.layer
)
