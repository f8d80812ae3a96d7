// What every part of a run shares: its services, its settings, its instances' state and the locks that keep
// concurrent changes apart. Built once by Orchestrator.orchestrate and handed to each concern's module.
import type * as FileSystem from "@effect/platform/FileSystem"
import type * as Path from "@effect/platform/Path"
import { Clock, Deferred, Effect, Queue, type Redacted, Ref, Schema, type Scope } from "effect"
import type { AgentShape } from "./Agent.js"
import type { AuthShape } from "./Auth.js"
import type { CredentialSnapshot } from "./CredentialPool.js"
import type { ResolvedConfig } from "./Config.js"
import { type CostSnapshot, type CostTracker, makeCostTracker } from "./CostTracker.js"
import * as Debounce from "./Debounce.js"
import type { EventsShape } from "./Events.js"
import { type CheckStats, noChecks } from "./Gate.js"
import * as H from "./Hierarchy.js"
import * as Instances from "./Instances.js"
import type { Instance } from "./Instances.js"
import type * as Limits from "./Limits.js"
import type { LogLine, RunLogShape } from "./RunLog.js"
import type { RunState } from "./RunState.js"
import type { Sandbox } from "./Sandbox.js"
import type { TmuxShape } from "./Tmux.js"
import type { Worktree } from "./Worktree.js"

/** The step a run failed at; `interrupted`/`failed` are end reasons that `cco run` reports as a failure. */
export const RunErrorReason = Schema.Literal(
  "run-folder", "resume", "preflight", "auth", "branch", "no-direction", "agent", "git", "startup", "config", "interrupted", "failed"
)

export class RunError extends Schema.TaggedError<RunError>()("RunError", {
  reason: RunErrorReason,
  message: Schema.String
}) {}

/** `usage-limit`: every credential was in its usage window until after the run's time limit. */
export type EndReason = "project-done" | "time-limit" | "cost-limit" | "usage-limit" | "interrupted" | "failed"

export interface RunOptions {
  /** Absolute path of the claude executable (resolved at the edge). */
  readonly claudePath: string
  /** `<node> <root>/bin/cco-client.mjs`: what hooks and the agents' `cco` run. */
  readonly clientCommand: ReadonlyArray<string>
  /** Where prompts/ lives. */
  readonly projectRoot: string
  /** PATH given to agents after the run's bin/. */
  readonly basePath: string
  /** The user's Claude login, for authMode oauth. */
  readonly oauthCredentialsFile?: string
  readonly extraEnv?: Readonly<Record<string, string>>
  /** The OAuth credential's environment, e.g. CLAUDE_CODE_OAUTH_TOKEN from `claude setup-token`. */
  readonly oauthEnv?: Readonly<Record<string, Redacted.Redacted<string>>>
  /** Progress: every combined.log line as it is written. */
  readonly onLog?: (line: LogLine) => void
  /** Resume this run folder after the orchestrator died: live sessions are re-attached, dead ones restarted. */
  readonly resume?: string
  /** How long a `cco team merge` through the merge gate holds its request before it answers "cco tells you" (100 s). */
  readonly answerWaitMs?: number
  /** How instances are confined, when the edge has already looked (Sandbox.resolve); otherwise looked up at start. */
  readonly sandbox?: Sandbox
  /** Called once the run folder exists, before anything slow. */
  readonly onStart?: (info: { readonly runId: string; readonly folder: string }) => void
}

export interface InstanceSummary {
  readonly name: string
  readonly role: H.Role
  readonly branch: string
  readonly status: string
  readonly restarts: number
  readonly session: string
  /** The credential it ran on last ("" when it never got one). */
  readonly credential: string
}

export interface RunSummary {
  readonly runId: string
  readonly runFolder: string
  readonly reason: EndReason
  readonly repositoryUrl: string
  readonly targetBranch: string
  readonly merges: ReadonlyArray<{ readonly from: string; readonly into: string; readonly commit: string }>
  readonly commitsOnTarget: number
  readonly durationMs: number
  readonly instances: ReadonlyArray<InstanceSummary>
  readonly tmuxSocket: string
  /** Tokens and dollars per instance, role and credential, from the instances' transcripts. */
  readonly costs: CostSnapshot
  /** The merge gate's checks (checkCommand): how many ran, passed and failed, and their time. */
  readonly checks: CheckStats
  /** Each credential at the end: its kind, state, the instances on it (the spread) and the limits it hit. */
  readonly credentials: ReadonlyArray<CredentialSnapshot>
}

export { acceptsPrompt, type Instance, type Status, statusName } from "./Instances.js"

export type Merge = { from: string; into: string; commit: string }

export const list = (names: ReadonlyArray<string>) => names.join(", ")

/** The time now as an ISO string, from the Clock. */
export const isoNow = Effect.map(Clock.currentTimeMillis, (ms) => new Date(ms).toISOString())

/** The run as identified on disk: its folder, id, start, and the state it resumes from. */
export interface RunIdentity {
  readonly folder: string
  readonly runId: string
  readonly startedAt: number
  readonly previous: RunState | undefined
}

/** What RunSetup found and made: the clone, the target branch, the hierarchy and its worktrees. */
export interface RunLayout {
  readonly repoDir: string
  readonly direction: string
  readonly target: string
  readonly topo: H.Topology
  readonly specs: ReadonlyArray<H.InstanceSpec>
  readonly top: H.InstanceSpec
  readonly specOf: ReadonlyMap<string, H.InstanceSpec>
  readonly startCommit: string
  readonly worktrees: ReadonlyMap<string, string>
  readonly topWorktree: string
}

/** The services a run uses, resolved once by Orchestrator. */
export interface RunServices {
  readonly fs: FileSystem.FileSystem
  readonly path: Path.Path
  readonly runLog: RunLogShape
  readonly git: Worktree
  readonly tmux: TmuxShape
  readonly events: EventsShape
  readonly agent: AgentShape
  readonly auth: AuthShape
  readonly scope: Scope.Scope
}

export interface RunContext extends RunLayout, RunServices {
  readonly config: ResolvedConfig
  readonly options: RunOptions
  readonly run: RunIdentity
  readonly instances: Ref.Ref<ReadonlyMap<string, Instance>>
  readonly update: (name: string, f: (i: Instance) => Instance) => Effect.Effect<void>
  readonly get: (name: string) => Effect.Effect<Instance>
  readonly board: Ref.Ref<H.Board>
  readonly merges: Ref.Ref<ReadonlyArray<Merge>>
  /** The merge gate's checks so far. */
  readonly checks: Ref.Ref<CheckStats>
  readonly end: Deferred.Deferred<EndReason>
  readonly ended: Ref.Ref<{ readonly at: string; readonly reason: EndReason } | undefined>
  /** One git operation at a time in the run's clone and worktrees. */
  readonly locked: <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  readonly deliveryLocks: ReadonlyMap<string, Effect.Semaphore>
  /** Something state.json shows changed (written coalesced by RunFolder). */
  readonly signalState: Effect.Effect<boolean>
  readonly stateChanged: Queue.Queue<void>
  /** API errors reported by hooks, handled by the rotation fiber (Rotation). */
  readonly limitEvents: Queue.Queue<{ readonly instance: string; readonly generation: number; readonly limit: Limits.Limit }>
  readonly costTracker: CostTracker
}

/** Instances as a resumed run left them: what each was owed when the orchestrator died. */
const resumeInstances = (instances: Ref.Ref<ReadonlyMap<string, Instance>>, previous: RunState | undefined) =>
  Effect.forEach(previous?.instances ?? [], (saved) =>
    Ref.update(instances, (m) => {
      const i = m.get(saved.name)
      return i === undefined ? m : new Map(m).set(saved.name, Instances.resumed(i, saved))
    }), { discard: true })

// state.json follows what cco status and --resume need (status, generation, credential, what is owed), coalesced.
const persisted = (a: Instance, b: Instance) =>
  Instances.statusName(a.phase) === Instances.statusName(b.phase) && a.generation === b.generation && a.credential === b.credential && a.outbox === b.outbox &&
  a.inFlight === b.inFlight && a.inFlightPasted === b.inFlightPasted && a.prompted === b.prompted &&
  a.roleQueued === b.roleQueued && a.restarts === b.restarts

export const makeRunContext = (
  config: ResolvedConfig,
  options: RunOptions,
  run: RunIdentity,
  services: RunServices,
  layout: RunLayout,
  limitEvents: RunContext["limitEvents"]
) =>
  Effect.gen(function*() {
    const { agent, runLog } = services
    const { specs, worktrees } = layout
    const startNow = yield* Clock.currentTimeMillis
    const instances = yield* Ref.make<ReadonlyMap<string, Instance>>(
      new Map(specs.map((spec) => [spec.name, Instances.initial(spec, worktrees.get(spec.name)!, startNow)]))
    )
    const board = yield* Ref.make<H.Board>(run.previous?.board ?? H.emptyBoard)
    const merges = yield* Ref.make<ReadonlyArray<Merge>>(run.previous?.merges ?? [])
    const checks = yield* Ref.make<CheckStats>(run.previous?.checks ?? noChecks)
    yield* resumeInstances(instances, run.previous)
    const end = yield* Deferred.make<EndReason>()
    const gitLock = yield* Effect.makeSemaphore(1)
    const deliveryLocks = new Map(specs.map((s) => [s.name, Effect.unsafeMakeSemaphore(1)]))
    const locked = <A, E, R>(self: Effect.Effect<A, E, R>) => gitLock.withPermits(1)(self)
    const stateChanged = yield* Debounce.makeSignal
    const signalState = Queue.offer(stateChanged, undefined)
    const update = (name: string, f: (i: Instance) => Instance) =>
      Ref.modify(instances, (m) => {
        const i = m.get(name)
        if (i === undefined) return [undefined, m] as const
        const next = f(i)
        const [from, to] = [Instances.statusName(i.phase), Instances.statusName(next.phase)]
        const change = to === from ? undefined : { from, to, generation: next.generation }
        return [{ change, dirty: !persisted(i, next) }, new Map(m).set(name, next)] as const
      }).pipe(Effect.flatMap((r) =>
        Effect.zipRight(
          r?.dirty === true ? signalState : Effect.void,
          r?.change === undefined ? Effect.void : runLog.log("instance.state", { instance: name, ...r.change })
        )
      ))
    const get = (name: string) => Effect.map(Ref.get(instances), (m) => m.get(name)!)
    const ended = yield* Ref.make<{ readonly at: string; readonly reason: EndReason } | undefined>(undefined)
    // The config dir is asked at every poll: an instance moved off a host that dropped is read where it runs now.
    const costTracker = yield* makeCostTracker(specs.map((spec) => ({
      name: spec.name,
      role: spec.role,
      get configDir() {
        return agent.configDir(spec.name)
      }
    })))
    const ctx: RunContext = {
      ...services,
      ...layout,
      config,
      options,
      run,
      instances,
      update,
      get,
      board,
      merges,
      checks,
      end,
      ended,
      locked,
      deliveryLocks,
      signalState,
      stateChanged,
      limitEvents,
      costTracker
    }
    return ctx
  })
