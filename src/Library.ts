// cco as a library: a configuration built in memory, the typed events of a run, and the entries that start a run
// from Effect code or from promises — with the run options computed the way the `cco` command computes them.
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import * as NodeContext from "@effect/platform-node/NodeContext"
import { Cause, Data, Effect, Exit, Fiber, Option, ParseResult, PubSub, Queue, Redacted, Schema, Scope, Stream, Take } from "effect"
import { ApiKeysFile, ENTRY_KEYS, ENV_KEYS, toCredentials } from "./ApiKeysFile.js"
import { decodeOptions, loginDirResolver, type ResolvedConfig, resolveConfig } from "./Config.js"
import { ConfigError, firstProblem } from "./ConfigError.js"
import { knownKeysAt, OrchestratorFile } from "./OrchestratorFile.js"
import * as RunLayers from "./RunLayers.js"
import * as Orchestrator from "./Orchestrator.js"
import type { EndReason, RunError, RunSummary } from "./Orchestrator.js"
import { Host, type RunHost, runOptionsFor } from "./RunHost.js"
import type { LogLine } from "./RunLog.js"

// ---------------------------------------------------------------------------------------------------------------
// A configuration from an object: the fields and defaults of orchestrator.json, plus apiKeys.

/** A secret given in memory: plain text is wrapped in Redacted at once. */
export type SecretInput = string | Redacted.Redacted<string>

/** One entry of api-keys.json, in memory. */
export interface ApiKeyInput {
  readonly name: string
  readonly env: {
    readonly ANTHROPIC_API_KEY?: SecretInput | undefined
    readonly ANTHROPIC_AUTH_TOKEN?: SecretInput | undefined
    readonly ANTHROPIC_BASE_URL?: SecretInput | undefined
  }
}

/** orchestrator.json as an object (same fields, same defaults), plus the credentials of api-keys.json. */
export type ConfigInput = Schema.Schema.Encoded<typeof OrchestratorFile> & {
  readonly apiKeys?: ReadonlyArray<ApiKeyInput> | undefined
}

export interface MakeConfigOptions {
  /** Relative paths (repositoryUrl, logDirectory, claudeCommand) resolve against it; default process.cwd(). */
  readonly baseDir?: string | undefined
}

/** What ConfigError.file says for a configuration given in memory. */
export const CONFIG_INPUT = "config object"

const isPlainObject = (u: unknown): u is Record<string, unknown> =>
  typeof u === "object" && u !== null && !Array.isArray(u) && !Redacted.isRedacted(u)

// The first problem of a parse error as one ConfigError, in the words loadConfig uses for files.
const toConfigError = (
  error: ParseResult.ParseError,
  prefix: ReadonlyArray<PropertyKey>,
  knownKeys: (path: ReadonlyArray<PropertyKey>) => { kind: string; keys: ReadonlyArray<string> } | undefined
): ConfigError => new ConfigError({ file: CONFIG_INPUT, ...firstProblem(error, knownKeys, prefix) })

// Redacted values are opened only to be decoded (and wrapped again) by the same schema as api-keys.json.
const openSecrets = (entries: unknown): unknown =>
  Array.isArray(entries)
    ? entries.map((entry) =>
      isPlainObject(entry) && isPlainObject(entry.env)
        ? {
          ...entry,
          env: Object.fromEntries(Object.entries(entry.env).map(([k, v]) => [k, Redacted.isRedacted(v) ? Redacted.value(v) : v]))
        }
        : entry
    )
    : entries

/**
 * A ResolvedConfig from an object, checked by the schemas of orchestrator.json and api-keys.json; relative paths
 * resolve against `baseDir` (default: the working directory), which also stands in for the config directory.
 */
export const makeConfig = Effect.fn("Library.makeConfig")(
  function*(input: ConfigInput, options: MakeConfigOptions = {}) {
    const path = yield* Path.Path
    const dir = path.resolve(options.baseDir ?? process.cwd())
    const raw: unknown = input
    if (!isPlainObject(raw)) {
      return yield* new ConfigError({ file: CONFIG_INPUT, message: "must be an object like {repositoryUrl: \"...\", workerCount: 2}" })
    }
    const { apiKeys: rawKeys, ...rawFile } = raw
    const file = yield* Schema.decodeUnknown(OrchestratorFile, decodeOptions)(rawFile).pipe(
      Effect.mapError((e) => toConfigError(e, [], knownKeysAt(["apiKeys"])))
    )

    // No keys at all is fine under oauth; an empty list means the same as none.
    const entries = rawKeys === undefined || (Array.isArray(rawKeys) && rawKeys.length === 0)
      ? []
      : yield* Schema.decodeUnknown(ApiKeysFile, decodeOptions)(openSecrets(rawKeys)).pipe(
        Effect.mapError((e) =>
          toConfigError(e, ["apiKeys"], (p) =>
            p.length === 1
              ? { kind: "field", keys: ENTRY_KEYS }
              : p.length === 2 && p[1] === "env"
              ? { kind: "variable", keys: ENV_KEYS }
              : undefined)
        )
      )
    if (file.authMode !== "oauth" && entries.length === 0) {
      return yield* new ConfigError({ file: CONFIG_INPUT, field: "apiKeys", message: `authMode "${file.authMode}" needs at least one API key` })
    }
    return yield* resolveConfig(file, toCredentials(entries, loginDirResolver(path, dir)), { dir, source: CONFIG_INPUT })
  },
  Effect.provide(NodeContext.layer)
)

// ---------------------------------------------------------------------------------------------------------------
// Events: the run's combined.log lines, typed.

/** What happens in a run, derived from its combined.log lines; anything without its own variant is a `Log`. */
export type RunEvent = Data.TaggedEnum<{
  /** The run folder exists (log `run.starting`). */
  Starting: { readonly time: string; readonly runId: string; readonly folder: string }
  /** A tmux session started for an instance (log `instance.launched`); `resumed` means started with --continue. */
  InstanceStarted: {
    readonly time: string
    readonly instance: string
    readonly generation: number
    readonly resumed: boolean
    readonly credential: string
  }
  /** The instance's Claude Code session is up (its SessionStart hook). */
  InstanceReady: { readonly time: string; readonly instance: string; readonly generation: number }
  /** `by` gave `instance` task number `task` (log `task.assigned`). */
  TaskAssigned: { readonly time: string; readonly instance: string; readonly by: string; readonly task: number; readonly text: string }
  /** An instance's report was accepted (log `task.done`); the top instance's report ends the run. */
  TaskDone: { readonly time: string; readonly instance: string; readonly summary: string }
  /** cco merged instance `from` into branch `into` (log `merge.done`). */
  Merged: { readonly time: string; readonly from: string; readonly into: string; readonly commit: string }
  /** Merging instance `from` into branch `into` conflicted in `files`; the lead is resolving it (log `merge.conflict`). */
  MergeConflict: { readonly time: string; readonly from: string; readonly into: string; readonly files: ReadonlyArray<string> }
  /** The supervisor is restarting an instance (log `instance.restarting`). */
  Restarted: { readonly time: string; readonly instance: string; readonly reason: string }
  /** An instance moved from credential `from` to `to` (log `credential.rotated`). */
  Rotated: { readonly time: string; readonly instance: string; readonly from: string; readonly to: string }
  /** The run's cost so far (log `cost.update`). */
  Cost: { readonly time: string; readonly totalUsd: number }
  /** The run ended and its summary is ready (log `run.finished`). */
  Finished: { readonly time: string; readonly reason: EndReason }
  /** Any other combined.log line, as written. */
  Log: { readonly time: string; readonly line: LogLine }
}>

/** Constructors, `$is` and `$match` for RunEvent. */
export const RunEvent = Data.taggedEnum<RunEvent>()

const END_REASONS = ["project-done", "time-limit", "cost-limit", "usage-limit", "interrupted", "failed"] as const satisfies ReadonlyArray<EndReason>
// Fails to compile when EndReason gains a value this list does not know.
const everyEndReason: [Exclude<EndReason, typeof END_REASONS[number]>] extends [never] ? true : false = true
void everyEndReason

const starting = Schema.decodeUnknownOption(Schema.Struct({ runId: Schema.String, folder: Schema.String }))
const launched = Schema.decodeUnknownOption(Schema.Struct({ instance: Schema.String, generation: Schema.Number, resume: Schema.Boolean, credential: Schema.String }))
const sessionStart = Schema.decodeUnknownOption(Schema.Struct({ instance: Schema.String, generation: Schema.Number, hook: Schema.Literal("SessionStart") }))
const assigned = Schema.decodeUnknownOption(Schema.Struct({ instance: Schema.String, by: Schema.String, task: Schema.Number, text: Schema.String }))
const done = Schema.decodeUnknownOption(Schema.Struct({ instance: Schema.String, summary: Schema.String }))
const merged = Schema.decodeUnknownOption(Schema.Struct({ from: Schema.String, into: Schema.String, commit: Schema.String }))
const conflict = Schema.decodeUnknownOption(Schema.Struct({ from: Schema.String, into: Schema.String, files: Schema.Array(Schema.String) }))
const restarting = Schema.decodeUnknownOption(Schema.Struct({ instance: Schema.String, reason: Schema.String }))
const rotated = Schema.decodeUnknownOption(Schema.Struct({ instance: Schema.String, from: Schema.String, to: Schema.String }))
const cost = Schema.decodeUnknownOption(Schema.Struct({ totalUsd: Schema.Number }))
const finished = Schema.decodeUnknownOption(Schema.Struct({ reason: Schema.Literal(...END_REASONS) }))

/** The typed event for one combined.log line; a line without the expected fields stays a `Log`. */
export const toRunEvent = (line: LogLine): RunEvent => {
  const time = line.time
  const typed = <A>(decoded: Option.Option<A>, make: (a: A) => RunEvent): RunEvent =>
    Option.match(decoded, { onNone: () => RunEvent.Log({ time, line }), onSome: make })
  switch (line.event) {
    case "run.starting":
      return typed(starting(line), (l) => RunEvent.Starting({ time, runId: l.runId, folder: l.folder }))
    case "instance.launched":
      return typed(launched(line), (l) =>
        RunEvent.InstanceStarted({ time, instance: l.instance, generation: l.generation, resumed: l.resume, credential: l.credential }))
    case "hook":
      return typed(sessionStart(line), (l) => RunEvent.InstanceReady({ time, instance: l.instance, generation: l.generation }))
    case "task.assigned":
      return typed(assigned(line), (l) => RunEvent.TaskAssigned({ time, instance: l.instance, by: l.by, task: l.task, text: l.text }))
    case "task.done":
      return typed(done(line), (l) => RunEvent.TaskDone({ time, instance: l.instance, summary: l.summary }))
    case "merge.done":
      return typed(merged(line), (l) => RunEvent.Merged({ time, from: l.from, into: l.into, commit: l.commit }))
    case "merge.conflict":
      return typed(conflict(line), (l) => RunEvent.MergeConflict({ time, from: l.from, into: l.into, files: l.files }))
    case "instance.restarting":
      return typed(restarting(line), (l) => RunEvent.Restarted({ time, instance: l.instance, reason: l.reason }))
    case "credential.rotated":
      return typed(rotated(line), (l) => RunEvent.Rotated({ time, instance: l.instance, from: l.from, to: l.to }))
    case "cost.update":
      return typed(cost(line), (l) => RunEvent.Cost({ time, totalUsd: l.totalUsd }))
    case "run.finished":
      return typed(finished(line), (l) => RunEvent.Finished({ time, reason: l.reason }))
    default:
      return RunEvent.Log({ time, line })
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Running

/** Where a run's events go: a callback, or a PubSub (subscribe to it before the run starts). */
export type RunEventSink = ((event: RunEvent) => void) | PubSub.PubSub<RunEvent>

/** A configuration, or an effect that produces one (makeConfig(...), loadConfig(dir)). */
export type ConfigSource =
  | ResolvedConfig
  | Effect.Effect<ResolvedConfig, ConfigError, FileSystem.FileSystem | Path.Path>

export interface RunEffectOptions {
  /** The claude executable; by default `config.claudeCommand` looked up on PATH. */
  readonly claudePath?: string | undefined
  /** Every event of the run, in order, delivered on a fiber of its own: a slow or failing callback never stalls the run. */
  readonly events?: RunEventSink | undefined
  /** Every combined.log line as written, delivered like `events`. */
  readonly onLog?: ((line: LogLine) => void) | undefined
  /** Extra environment for every instance (e.g. CLAUDE_CODE_MAX_RETRIES). */
  readonly extraEnv?: Readonly<Record<string, string>> | undefined
  /** Parts of the host to replace; the rest comes from hostEnvironment. */
  readonly host?: Partial<RunHost> | undefined
}

const isResolvedConfig = (source: ConfigSource): source is ResolvedConfig => !Effect.isEffect(source)

const callSafely = (what: string, f: () => void) =>
  Effect.try(f).pipe(Effect.catchAll((e) => Effect.logWarning(`cco: ${what} failed; the run goes on`, e.error)))

/**
 * Runs a whole orchestration: the Effect-native entry, the same `Orchestrator.run` the `cco run` command calls,
 * with the same options. Ends with the run's summary (whatever its reason); interrupting it winds the run down
 * (sessions stopped, work in progress saved, state.json written with endReason "interrupted").
 */
export const runEffect = (config: ConfigSource, options: RunEffectOptions = {}): Effect.Effect<RunSummary, RunError | ConfigError> =>
  Effect.scoped(Effect.gen(function*() {
    const resolved = isResolvedConfig(config) ? config : yield* config
    const host: RunHost = { ...(yield* Host), ...options.host }
    const { events, onLog } = options
    if (events === undefined && onLog === undefined) {
      return yield* Orchestrator.run(resolved, runOptionsFor(resolved, host, options))
    }
    // Log lines are written from the orchestrator's fibers; the caller's code runs on this consumer instead.
    const lines = yield* Queue.unbounded<Take.Take<LogLine>>()
    const deliver = (line: LogLine) =>
      Effect.gen(function*() {
        if (onLog !== undefined) yield* callSafely("onLog", () => onLog(line))
        if (events === undefined) return
        const event = toRunEvent(line)
        if (typeof events === "function") yield* callSafely("the event callback", () => events(event))
        else yield* PubSub.publish(events, event)
      })
    const consumer = yield* Stream.fromQueue(lines).pipe(Stream.flattenTake, Stream.runForEach(deliver), Effect.forkScoped)
    return yield* Orchestrator.run(resolved, runOptionsFor(resolved, host, {
      claudePath: options.claudePath,
      extraEnv: options.extraEnv,
      onLog: (line) => void Queue.unsafeOffer(lines, Take.of(line))
    })).pipe(
      // Every line, the wind-down's too, reaches the caller before the run's result does.
      Effect.ensuring(Queue.offer(lines, Take.end).pipe(Effect.zipRight(Fiber.await(consumer))))
    )
  })).pipe(Effect.provide(RunLayers.Live))

/** A run started by runWithEvents. */
export interface RunHandle {
  /** Every event of the run from its start, in order; ends when the run ends. Run it once (buffered, single consumer). */
  readonly events: Stream.Stream<RunEvent>
  /** The summary, once the run has ended; fails as the run fails. */
  readonly summary: Effect.Effect<RunSummary, RunError | ConfigError>
  /** Interrupts the run and waits until it has wound down. */
  readonly interrupt: Effect.Effect<void>
}

/**
 * Starts a run in the current scope and hands back its events as a Stream and its summary as an Effect.
 * Closing the scope before the run ends interrupts it, which winds it down gracefully.
 */
export const runWithEvents = (
  config: ConfigSource,
  options: Omit<RunEffectOptions, "events"> = {}
): Effect.Effect<RunHandle, never, Scope.Scope> =>
  Effect.gen(function*() {
    const queue = yield* Queue.unbounded<Take.Take<RunEvent>>()
    const fiber = yield* runEffect(config, { ...options, events: (event) => void Queue.unsafeOffer(queue, Take.of(event)) }).pipe(
      Effect.ensuring(Queue.offer(queue, Take.end)),
      Effect.forkScoped
    )
    return {
      events: Stream.fromQueue(queue).pipe(Stream.flattenTake),
      summary: Fiber.join(fiber),
      interrupt: Fiber.interrupt(fiber).pipe(Effect.asVoid)
    }
  })

/** A run stopped through its AbortSignal; `name` is "AbortError", `reason` is the signal's reason. */
export class RunAborted extends Schema.TaggedError<RunAborted>()("RunAborted", {
  reason: Schema.Unknown,
  runId: Schema.optional(Schema.String),
  runFolder: Schema.optional(Schema.String)
}) {
  override readonly name = "AbortError"

  override get message() {
    const why = this.reason instanceof Error ? `: ${this.reason.message}` : typeof this.reason === "string" ? `: ${this.reason}` : ""
    return this.runFolder === undefined
      ? `the run was aborted${why}`
      : `run ${this.runId ?? ""} was aborted${why}; it wound down (state in ${this.runFolder}/state.json)`
  }
}

export interface RunOrchestrationOptions extends Omit<RunEffectOptions, "events"> {
  /** Every event of the run, in order. */
  readonly onEvent?: ((event: RunEvent) => void) | undefined
  /** Aborting winds the run down; the promise then rejects with RunAborted. */
  readonly signal?: AbortSignal | undefined
  /** For a ConfigInput: where relative paths resolve (default: the working directory). */
  readonly baseDir?: string | undefined
}

const isConfigInput = (config: ResolvedConfig | ConfigInput): config is ConfigInput => !("configDir" in config)

/**
 * Runs a whole orchestration for code without Effect. Resolves with the summary whatever the run's end reason
 * ("project-done", "time-limit", "cost-limit", "usage-limit"); rejects with ConfigError for a bad configuration, RunError when
 * the run cannot start or fails, and RunAborted once an aborted run has wound down (sessions stopped, work in
 * progress saved, state.json written with endReason "interrupted").
 */
export const runOrchestration = (
  config: ResolvedConfig | ConfigInput,
  options: RunOrchestrationOptions = {}
): Promise<RunSummary> => {
  let started: { readonly runId: string; readonly folder: string } | undefined
  const { baseDir, onEvent, signal, ...rest } = options
  const program = runEffect(isConfigInput(config) ? makeConfig(config, { baseDir }) : config, {
    ...rest,
    events: (event) => {
      if (event._tag === "Starting") started = { runId: event.runId, folder: event.folder }
      onEvent?.(event)
    }
  })
  // The promise edge of the library, as bin.ts is the command's.
  return Effect.runPromiseExit(program, signal === undefined ? undefined : { signal }).then((exit) =>
    Exit.isSuccess(exit)
      ? exit.value
      : Promise.reject(
        Cause.isInterruptedOnly(exit.cause)
          ? new RunAborted({ reason: signal?.reason, ...(started === undefined ? {} : { runId: started.runId, runFolder: started.folder }) })
          : Option.getOrElse(Cause.failureOption(exit.cause), () => Cause.squash(exit.cause))
      )
  )
}
