// The package entry (`import … from "cco"`): running an orchestration from a program, its configuration and
// events, the services a run is made of, and the mock model and scripted team for users' own tests.

// --- running

/** Runs a whole orchestration and resolves with its summary; an AbortSignal winds it down and rejects with RunAborted. */
export { runOrchestration } from "./Library.js"
/** Options of runOrchestration: onEvent, signal, claudePath, baseDir, extraEnv, onLog, host. */
export type { RunOrchestrationOptions } from "./Library.js"
/** The Effect-native run: the same Orchestrator.run as `cco run`, with the same options; interruption winds it down. */
export { runEffect } from "./Library.js"
/** Options of runEffect: claudePath, events (callback or PubSub), onLog, extraEnv, host. */
export type { RunEffectOptions } from "./Library.js"
/** Starts a run in a Scope and returns its events as a Stream and its summary as an Effect. */
export { runWithEvents } from "./Library.js"
/** What runWithEvents returns: events, summary, interrupt. */
export type { RunHandle } from "./Library.js"
/** Where runEffect sends events: a callback or a PubSub<RunEvent>. */
export type { RunEventSink } from "./Library.js"
/** A ResolvedConfig, or an effect producing one (makeConfig, loadConfig). */
export type { ConfigSource } from "./Library.js"
/** How a run ended: "project-done", "time-limit", "cost-limit", "usage-limit", "interrupted" or "failed". */
export type { EndReason } from "./Orchestrator.js"
/** The end of a run: reason, target branch, merges, instances, costs, run folder. */
export type { InstanceSummary, RunSummary } from "./Orchestrator.js"
/** A run that could not start or failed; `reason` names the step (preflight, git, no-direction, …). */
export { RunError } from "./Orchestrator.js"
/** The rejection of runOrchestration after its AbortSignal fired (name "AbortError"). */
export { RunAborted } from "./Library.js"

// --- configuration

/** A ResolvedConfig from an object with the fields and defaults of orchestrator.json plus apiKeys. */
export { makeConfig } from "./Library.js"
/** The input of makeConfig and of runOrchestration: orchestrator.json as an object, plus apiKeys. */
export type { ApiKeyInput, ConfigInput, MakeConfigOptions, SecretInput } from "./Library.js"
/** Loads a config directory (orchestrator.json and api-keys.json), as `cco run --config DIR` does. */
export { loadConfig } from "./Config.js"
/** A bad configuration: names the file (or "config object") and the field. */
export { ConfigError } from "./ConfigError.js"
/** A validated configuration, secrets Redacted. */
export type { ResolvedConfig } from "./Config.js"
export type { ApiKeyCredential } from "./ApiKeysFile.js"
export type { AuthMode } from "./OrchestratorFile.js"

// --- events

/** What happens in a run, as a tagged union (with constructors, $is and $match). */
export { RunEvent } from "./Library.js"
/** The typed event of one combined.log line. */
export { toRunEvent } from "./Library.js"
/** One line of a run's combined.log: {time, event, ...fields}. */
export type { LogLine } from "./RunLog.js"

// --- the host (shared with the `cco` command)

/** What a run needs from the process that starts it: cco's install folder, node, PATH, the Claude login and OAuth token. */
export type { RunExtras, RunHost } from "./RunHost.js"
/** The host as this process sees it. */
export { hostEnvironment } from "./RunHost.js"
/** The host as a service, with the live layer that `cco` and the library's run entries provide. */
export { Host } from "./RunHost.js"
/** cco's install folder and version, found from the module's location. */
export { findPackageRoot } from "./RunHost.js"
/** A claude command resolved to an executable path (bare names looked up on a PATH). */
export { resolveOnPath } from "./RunHost.js"
/** The orchestrator's run options for a config and host, as `cco run` computes them. */
export { runOptionsFor } from "./RunHost.js"

// --- services and their layers

/** The tmux port (sessions, input, capture) on cco's private server. */
export { Tmux } from "./Tmux.js"
/** Live tmux on the server `tmux -L socket`. */
export { layer as tmuxLayer } from "./TmuxLive.js"
/** An in-memory tmux for unit tests, with TmuxTestControl to inspect its sessions. */
export { TmuxTest, TmuxTestControl } from "./TmuxTest.js"
/** Errors of the Tmux service. */
export { SessionNotFound, TmuxCommandFailed, type TmuxError, TmuxNotFound } from "./Tmux.js"
/** Git: clone, branches, worktrees, merges, pushes (Worktree.Default is its live layer). */
export { GitError, Worktree } from "./Worktree.js"
/** The control socket for hook events and team commands. */
export { Events } from "./Events.js"
/** The Events service on a unix socket (needs RunLog). */
export { layer as eventsLayer } from "./Events.js"
/** One Claude Code instance per tmux session: launch, deliver prompts, stop. */
export { Agent, AgentError } from "./Agent.js"
/** The Agent service for a run's settings (needs Tmux, Events, RunLog). */
export { layer as agentLayer } from "./Agent.js"
/** A run folder's combined.log, session logs and state.json. */
export { RunLog } from "./RunLog.js"
/** The RunLog service for a run folder. */
export { layer as runLogLayer } from "./RunLog.js"

// --- testing

/** A local stand-in for the Anthropic Messages API, scripted by a brain function; closes with its scope. */
export { startMockModel } from "./MockModel.js"
/** Types of the mock model: its brain, requests, replies and handle. */
export type { Brain, MockReply, MockRequest } from "./MockBrain.js"
export type { MockModelHandle, MockModelOptions } from "./MockModel.js"
/** A brain that plays a whole cco team (Director, EMs, workers) against the mock model. */
export { teamScript } from "./TeamScript.js"
/** Options of teamScript: conflict drill, lazy workers, hanging workers, idle leads. */
export type { TeamScriptOptions } from "./TeamScript.js"
