// The run: clone, branches and worktrees, instances launched in hierarchy order, hook events and team
// commands routed, worker → team → target merges owned by cco, TEAM_STRUCTURE.md kept current, and the end.
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import type { CommandExecutor } from "@effect/platform/CommandExecutor"
import * as NodeContext from "@effect/platform-node/NodeContext"
import { Deferred, Duration, Effect, FiberMap, Layer, Option, Queue, Redacted, Ref, Schedule, Schema } from "effect"
import * as AgentModule from "./Agent.js"
import { Agent, type Credential } from "./Agent.js"
import * as Auth from "./Auth.js"
import * as ClaudeCode from "./ClaudeCode.js"
import * as Costs from "./Costs.js"
import type { ResolvedConfig } from "./Config.js"
import * as EventsModule from "./Events.js"
import { Events, type HookEvent, type TeamReply, type TeamRequest } from "./Events.js"
import { exec } from "./Exec.js"
import * as Debounce from "./Debounce.js"
import * as H from "./Hierarchy.js"
import * as Limits from "./Limits.js"
import * as Outbox from "./Outbox.js"
import { MAX_BYTES, readRegularFile } from "./RegularFile.js"
import * as RunLogModule from "./RunLog.js"
import * as Secrets from "./Secrets.js"
import * as Supervisor from "./Supervisor.js"
import { type LogLine, RunLog } from "./RunLog.js"
import * as TmuxModule from "./Tmux.js"
import { Tmux } from "./Tmux.js"
import { decodeRunState, LOCK_FILE, type RunState, STATE_FILE } from "./RunState.js"
import { neutralise, PANE_MAX, quoteAgentText, TERMINAL_MAX } from "./Untrusted.js"
import { type GitError, runBranchName, Worktree } from "./Worktree.js"

/** The step a run failed at; `interrupted`/`failed` are end reasons that `cco run` reports as a failure. */
export const RunErrorReason = Schema.Literal(
  "run-folder", "resume", "preflight", "auth", "branch", "no-direction", "agent", "git", "startup", "config", "interrupted", "failed"
)

export class RunError extends Schema.TaggedError<RunError>()("RunError", {
  reason: RunErrorReason,
  message: Schema.String
}) {}

export type EndReason = "project-done" | "time-limit" | "cost-limit" | "interrupted" | "failed"

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
  readonly costs: Costs.CostSnapshot
}

/** An instance's state; every change is logged as `instance.state`. */
type Status =
  | "starting"
  | "idle"
  | "busy"
  | "waiting-for-input"
  | "rate-limited"
  | "stuck"
  | "crashed"
  | "error"
  | "done"
  | "stopped"

/** States in which a prompt can be pasted and taken as the next turn. */
const acceptsPrompt = (status: Status) => status === "idle" || status === "done" || status === "error"

interface Instance {
  readonly spec: H.InstanceSpec
  readonly worktree: string
  readonly status: Status
  readonly generation: number
  readonly ready: boolean
  /** Whether the role prompt has been delivered. */
  readonly prompted: boolean
  /** Whether the role prompt waits in the outbox. */
  readonly roleQueued: boolean
  readonly outbox: ReadonlyArray<string>
  readonly lastEventAt: number
  readonly progressAt: number
  readonly restarts: number
  readonly restartHistory: ReadonlyArray<number>
  /** A restart is under way: nothing else may restart or judge the instance meanwhile. */
  readonly restarting: boolean
  /** Messages pasted whose turn has not completed (no Stop yet): queued again if the session is replaced. */
  readonly inFlight: ReadonlyArray<string>
  /** Whether inFlight has reached the pane (a resumed run re-sends it to a surviving session otherwise). */
  readonly inFlightPasted: boolean
  /** Reminded after a Stop, and nothing done since (no tool, no new message): no second reminder. */
  readonly reminded: boolean
  readonly ladder: Supervisor.Ladder
  readonly credential: string
}

const fill = (template: string, values: Readonly<Record<string, string>>) =>
  template.replace(/\{\{(\w+)\}\}/g, (_, key: string) => values[key] ?? "")

const list = (names: ReadonlyArray<string>) => names.join(", ")

/** Everything a run needs from the outside world. */
export type RunRequirements = FileSystem.FileSystem | Path.Path | CommandExecutor

export const run = (config: ResolvedConfig, options: RunOptions): Effect.Effect<RunSummary, RunError> =>
  Effect.scoped(
    Effect.gen(function*() {
      // The run's credentials are scrubbed from everything it logs, writes, delivers or fails with.
      for (const key of config.apiKeys) Secrets.rememberEnv(key.name, key.env)
      if (options.oauthEnv !== undefined) Secrets.rememberEnv("oauth", options.oauthEnv)
      const fs = yield* FileSystem.FileSystem
      const path = yield* Path.Path
      const previous = options.resume === undefined ? undefined : yield* readResumable(options.resume)
      const startedAt = previous === undefined ? Date.now() : Date.parse(previous.startedAt)
      const { folder, runId } = previous !== undefined
        ? { folder: previous.runFolder, runId: previous.runId }
        : yield* RunLogModule.createRunFolder(config.logDirectory, new Date(startedAt)).pipe(
          Effect.mapError((e) => new RunError({ reason: "run-folder", message: `cannot create the run folder in ${config.logDirectory}: ${e.message}` }))
        )
      options.onStart?.({ runId, folder })
      const runLog = yield* RunLogModule.make(folder, runId).pipe(Effect.orDie)
      if (options.onLog !== undefined) yield* runLog.listen(options.onLog)
      // The control socket's path must stay under the unix-socket limit (108 bytes).
      const socketPath = path.join(folder, "control.sock").length < 100
        ? path.join(folder, "control.sock")
        : path.join(yield* fs.makeTempDirectoryScoped({ prefix: "cco-" }).pipe(Effect.orDie), "control.sock")
      const base = Layer.mergeAll(
        Layer.succeed(RunLog, runLog),
        TmuxModule.layer(config.tmuxSocket, { hiddenEnv: config.apiKeys.flatMap((k) => Object.keys(k.env)) }),
        Worktree.Default
      )
      const events = EventsModule.layer(socketPath).pipe(Layer.provide(base))
      const agent = AgentModule.layer({
        runFolder: folder,
        runId,
        sessionPrefix: `cco-${runId}-`,
        claudePath: options.claudePath,
        model: config.model,
        clientCommand: options.clientCommand,
        basePath: options.basePath,
        ...(options.oauthCredentialsFile === undefined ? {} : { oauthCredentialsFile: options.oauthCredentialsFile }),
        ...(options.extraEnv === undefined ? {} : { extraEnv: options.extraEnv })
      }).pipe(Layer.provide(Layer.mergeAll(base, events)))
      const services = Layer.mergeAll(base, events, agent).pipe(Layer.provide(NodeContext.layer))
      return yield* orchestrate(config, options, { folder, runId, startedAt, previous }).pipe(Effect.provide(services))
    })
  ).pipe(
    Effect.provide(NodeContext.layer),
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
      const a = e as AgentModule.AgentError
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

/** A run folder that can be resumed: its state readable, its orchestrator gone, not finished. */
const readResumable = (folder: string) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const fail = (message: string) => new RunError({ reason: "resume", message: `cannot resume ${folder}: ${message}` })
    const text = yield* readRegularFile(path.join(folder, STATE_FILE), MAX_BYTES.state).pipe(Effect.mapError(() => fail("it has no readable state.json")))
    const state = yield* decodeRunState(text).pipe(Effect.mapError(() => fail("its state.json is unreadable")))
    if (state.endedAt !== undefined) return yield* fail(`it already ended (${state.endReason ?? "unknown"}) at ${state.endedAt}`)
    const lock = yield* readRegularFile(path.join(folder, LOCK_FILE), MAX_BYTES.lock).pipe(Effect.option)
    const pid = Option.isSome(lock) ? Number(lock.value.trim()) : NaN
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid) {
      const alive = (() => {
        try {
          process.kill(pid, 0)
          return true
        } catch {
          return false
        }
      })()
      if (alive) return yield* fail(`its orchestrator is still running (pid ${pid})`)
    }
    return state
  })

const preflight = (config: ResolvedConfig, options: RunOptions) =>
  Effect.gen(function*() {
    const tool = (name: string, args: ReadonlyArray<string>, fix: string) =>
      exec(name, args).pipe(
        Effect.flatMap((r) => r.exitCode === 0 ? Effect.succeed(r.stdout.trim()) : Effect.fail(r.stderr.trim())),
        Effect.mapError((detail) => new RunError({ reason: "preflight", message: `${name} is not usable (${typeof detail === "string" ? detail : detail.message}). ${fix}` }))
      )
    yield* tool("tmux", ["-V"], "Install tmux (apt-get install tmux).")
    yield* tool("git", ["--version"], "Install git.")
    yield* tool(options.claudePath, ["--version"], "Install Claude Code (npm install -g @anthropic-ai/claude-code) or set claudeCommand / CCO_CLAUDE_PATH.")
    if (config.authMode === "api-keys-only" && config.apiKeys.length === 0) {
      return yield* new RunError({ reason: "preflight", message: "authMode api-keys-only needs at least one key in api-keys.json" })
    }
  })

const orchestrate = (
  config: ResolvedConfig,
  options: RunOptions,
  run: { readonly folder: string; readonly runId: string; readonly startedAt: number; readonly previous: RunState | undefined }
) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const runLog = yield* RunLog
    const git = yield* Worktree
    const tmux = yield* Tmux
    const events = yield* Events
    const agent = yield* Agent
    const scope = yield* Effect.scope

    // cco.lock says this run's orchestrator is alive (cleanup leaves such a run alone); removed at the end.
    const lockFile = path.join(run.folder, LOCK_FILE)
    yield* Effect.acquireRelease(
      fs.writeFileString(lockFile, `${process.pid}\n`).pipe(Effect.orDie),
      () => fs.remove(lockFile).pipe(Effect.ignore)
    )
    yield* runLog.log("run.starting", { runId: run.runId, folder: run.folder, repositoryUrl: config.repositoryUrl, workerCount: config.workerCount })
    yield* preflight(config, options)
    const auth = yield* Auth.make({
      authMode: config.authMode,
      apiKeys: config.apiKeys,
      ...(options.oauthEnv === undefined ? {} : { oauthEnv: options.oauthEnv })
    }).pipe(Effect.mapError((e) => new RunError({ reason: "auth", message: e.message })))
    // API errors reported by hooks, handled by the rotation fiber below.
    const limitEvents = yield* Queue.unbounded<{ readonly instance: string; readonly generation: number; readonly limit: Limits.Limit }>()

    // --- repository, target branch, direction
    const repoDir = path.join(run.folder, "repo")
    yield* runLog.log("git.cloning", { repositoryUrl: config.repositoryUrl })
    yield* git.prepareClone(config.repositoryUrl, repoDir, config.branch)
    const direction = yield* git.readFileAt(repoDir, `origin/${config.branch}`, "PROJECT_DIRECTION.md").pipe(
      Effect.catchTag("GitError", (e) =>
        Effect.fail(new RunError({ reason: "branch", message: `branch ${config.branch} cannot be read from ${config.repositoryUrl}: ${e.message}` })))
    )
    if (direction === undefined || direction.trim() === "") {
      return yield* new RunError({
        reason: "no-direction",
        message: `PROJECT_DIRECTION.md is missing on branch ${config.branch} of ${config.repositoryUrl}. ` +
          "Add one at the repository root: the project's goals, what done looks like, and any constraints; the Director (or the single Engineering Manager) plans the work from it."
      })
    }
    const target = run.previous?.targetBranch ?? (config.useRunBranch ? runBranchName(new Date(run.startedAt)) : config.branch)
    const prefix = `cco/${run.runId}`
    const topo = H.topology(config.workerCount, config.engineerManagerGroupSize)
    const specs = H.instances(topo, { target, prefix })
    const top = specs[0]!
    const specOf = new Map(specs.map((s) => [s.name, s]))
    yield* git.ensureBranch(repoDir, target, `origin/${config.branch}`)
    const startCommit = run.previous?.startCommit ??
      (yield* exec("git", ["rev-parse", `refs/heads/${target}`], { cwd: repoDir }).pipe(Effect.orDie)).stdout.trim()

    // .env / .env.local are the user's local files: from a local working copy of the repository when that is
    // what repositoryUrl names, otherwise from the config directory.
    const envSource = (yield* fs.exists(path.join(config.repositoryUrl, ".git")).pipe(Effect.orElseSucceed(() => false)))
      ? config.repositoryUrl
      : config.configDir

    // --- branches, all at once (one ref transaction); worktrees in launch order
    yield* git.ensureBranches(repoDir, specs.map((s) => ({ branch: s.branch, base: s.baseBranch ?? target })))
    const worktrees = new Map(specs.map((spec) => [spec.name, path.join(run.folder, "worktrees", spec.name)]))
    let made = 0
    const makeWorktree = (spec: H.InstanceSpec) =>
      Effect.gen(function*() {
        const dir = worktrees.get(spec.name)!
        yield* git.addWorktree(repoDir, dir, spec.branch)
        yield* git.copyEnvFiles(envSource, dir)
        made++
        yield* runLog.log("worktree.ready", { instance: spec.name, branch: spec.branch, progress: `${made}/${specs.length}` })
      })
    // The top's worktree now (TEAM_STRUCTURE.md lives there); every other one just before its instance starts,
    // so git work overlaps the start-up of the instances already launched.
    yield* makeWorktree(top)
    const topWorktree = worktrees.get(top.name)!
    if (config.useRunBranch) yield* git.push(topWorktree, target)

    // --- state
    const instances = yield* Ref.make<ReadonlyMap<string, Instance>>(
      new Map(specs.map((spec) => [spec.name, {
        spec,
        worktree: worktrees.get(spec.name)!,
        status: "starting" as Status,
        generation: 0,
        ready: false,
        prompted: false,
        roleQueued: false,
        outbox: [],
        lastEventAt: Date.now(),
        progressAt: Date.now(),
        restarts: 0,
        restartHistory: [],
        restarting: false,
        inFlight: [],
        inFlightPasted: true,
        reminded: false,
        ladder: Supervisor.initialLadder(Date.now()),
        credential: ""
      }]))
    )
    const board = yield* Ref.make<H.Board>(run.previous?.board ?? H.emptyBoard)
    const merges = yield* Ref.make<ReadonlyArray<{ from: string; into: string; commit: string }>>(run.previous?.merges ?? [])
    for (const saved of run.previous?.instances ?? []) {
      yield* Ref.update(instances, (m) => {
        const i = m.get(saved.name)
        return i === undefined ? m : new Map(m).set(saved.name, {
          ...i,
          generation: saved.generation,
          restarts: saved.restarts,
          prompted: saved.prompted ?? false,
          // What it was owed when the orchestrator died (older state files have none).
          roleQueued: saved.roleQueued ?? false,
          outbox: saved.outbox ?? [],
          inFlight: saved.inFlight ?? [],
          inFlightPasted: saved.inFlightPasted ?? true,
          credential: saved.credential
        })
      })
    }
    const end = yield* Deferred.make<EndReason>()
    const gitLock = yield* Effect.makeSemaphore(1)
    const deliveryLocks = new Map(specs.map((s) => [s.name, Effect.unsafeMakeSemaphore(1)]))
    const locked = <A, E, R>(self: Effect.Effect<A, E, R>) => gitLock.withPermits(1)(self)
    const now = () => new Date().toISOString()
    // state.json follows what cco status and --resume need (status, generation, credential, what is owed), coalesced.
    const stateChanged = yield* Debounce.makeSignal
    const signalState = Queue.offer(stateChanged, undefined)
    const persisted = (a: Instance, b: Instance) =>
      a.status === b.status && a.generation === b.generation && a.credential === b.credential && a.outbox === b.outbox &&
      a.inFlight === b.inFlight && a.inFlightPasted === b.inFlightPasted && a.prompted === b.prompted &&
      a.roleQueued === b.roleQueued && a.restarts === b.restarts
    const update = (name: string, f: (i: Instance) => Instance) =>
      Ref.modify(instances, (m) => {
        const i = m.get(name)
        if (i === undefined) return [undefined, m] as const
        const next = f(i)
        const change = next.status === i.status ? undefined : { from: i.status, to: next.status, generation: next.generation }
        return [{ change, dirty: !persisted(i, next) }, new Map(m).set(name, next)] as const
      }).pipe(Effect.flatMap((r) =>
        Effect.zipRight(
          r?.dirty === true ? signalState : Effect.void,
          r?.change === undefined ? Effect.void : runLog.log("instance.state", { instance: name, ...r.change })
        )
      ))
    const get = (name: string) => Effect.map(Ref.get(instances), (m) => m.get(name)!)

    const ended = yield* Ref.make<{ readonly at: string; readonly reason: EndReason } | undefined>(undefined)
    const costTracker = yield* Costs.makeCostTracker(specs.map((spec) => ({ name: spec.name, role: spec.role, configDir: agent.configDir(spec.name) })))
    // Limits warn at 80 % and end the run at 100 %, checked when spending happens (each Stop and tool use reads
    // that instance's new transcript lines) and by the timed poll below.
    const budget = Costs.makeBudget({
      ...(config.maxCostUsd === undefined ? {} : { maxCostUsd: config.maxCostUsd }),
      ...(config.maxCostUsdPerInstance === undefined ? {} : { maxCostUsdPerInstance: config.maxCostUsdPerInstance }),
      ...(config.maxTokens === undefined ? {} : { maxTokens: config.maxTokens })
    })
    const checkCosts = (snapshot: Costs.CostSnapshot) =>
      Effect.gen(function*() {
        for (const model of snapshot.newUnknownModels) {
          yield* runLog.log("cost.unknown-model", { model, pricedAs: Costs.UNKNOWN_MODEL_FAMILY })
        }
        const check = budget.check(snapshot)
        for (const w of check.warnings) {
          yield* runLog.log("cost.warning", { limit: w.limit, subject: w.subject, value: w.value, max: w.max, message: w.message })
        }
        // Whichever check sees the limit first ends the run; the others find it ended.
        if (check.exceeded.length > 0 && (yield* Deferred.succeed(end, "cost-limit"))) {
          yield* runLog.log("cost.limit", { limits: check.exceeded.map((e) => e.message) })
        }
      })
    const spendWatch = Costs.makeSpendWatch(costTracker, checkCosts, scope)
    // One writer at a time, from reading the state to renaming the file: a write that read the state earlier
    // can never land after one that read it later (say, the end of the run).
    const stateLock = yield* Effect.makeSemaphore(1)
    const writeState = stateLock.withPermits(1)(Effect.gen(function*() {
      const costs = yield* costTracker.snapshot
      const costOf = new Map(costs.instances.map((c) => [c.name, c.usd]))
      const all = yield* Ref.get(instances)
      const b = yield* Ref.get(board)
      const end = yield* Ref.get(ended)
      const state: RunState = {
        runId: run.runId,
        runFolder: run.folder,
        repositoryUrl: config.repositoryUrl,
        repoDir,
        targetBranch: target,
        startCommit,
        startedAt: new Date(run.startedAt).toISOString(),
        deadline: new Date(run.startedAt + config.maxRunDurationMinutes * 60_000).toISOString(),
        ...(end === undefined ? {} : { endedAt: end.at, endReason: end.reason }),
        tmuxSocket: tmux.socket,
        pid: process.pid,
        instances: [...all.values()].map((i) => {
          const task = H.currentTask(b, i.spec.name)
          return {
            name: i.spec.name,
            role: i.spec.role,
            ...(i.spec.lead === undefined ? {} : { lead: i.spec.lead }),
            branch: i.spec.branch,
            worktree: i.worktree,
            session: agent.sessionName(i.spec.name),
            status: i.status,
            generation: i.generation,
            restarts: i.restarts,
            credential: i.credential,
            lastEventAt: new Date(i.lastEventAt).toISOString(),
            costUsd: costOf.get(i.spec.name) ?? 0,
            prompted: i.prompted,
            ...(i.roleQueued ? { roleQueued: true } : {}),
            ...(i.outbox.length === 0 ? {} : { outbox: i.outbox }),
            ...(i.inFlight.length === 0 ? {} : { inFlight: i.inFlight, inFlightPasted: i.inFlightPasted }),
            ...(task === undefined ? {} : { currentTask: `#${task.id} ${task.status}: ${task.text.split("\n")[0]!.slice(0, 120)}` })
          }
        }),
        board: b,
        merges: yield* Ref.get(merges),
        credentials: (yield* auth.snapshot).map((c) => ({
          name: c.name,
          status: c.status,
          ...(c.until === undefined ? {} : { until: c.until }),
          users: c.users.length
        })),
        costUsd: costs.total.usd
      }
      yield* runLog.writeState(state)
    }))
    yield* Effect.forkIn(Debounce.coalesce(stateChanged, writeState, Duration.seconds(1)), scope)

    // TEAM_STRUCTURE.md lives on the target branch; only cco writes it.
    const structureDirty = yield* Ref.make(false)
    const writeTeamStructure = (reason: string) =>
      locked(Effect.gen(function*() {
        yield* Ref.set(structureDirty, false)
        if (yield* git.mergeInProgress(topWorktree)) return
        const content = H.renderTeamStructure(specs, yield* Ref.get(board), { runId: run.runId, target })
        yield* git.commitFile(topWorktree, "TEAM_STRUCTURE.md", content, `cco: update TEAM_STRUCTURE.md (${reason})`)
      })).pipe(
        Effect.catchAll((e) => runLog.log("team-structure.failed", { message: e.message })),
        Effect.zipRight(writeState)
      )

    // Board changes reach TEAM_STRUCTURE.md in batches, so the target branch is not one commit per event.
    const boardChanged = Ref.set(structureDirty, true).pipe(Effect.zipRight(writeState))
    yield* Ref.getAndSet(structureDirty, false).pipe(
      Effect.flatMap((dirty) => dirty ? writeTeamStructure("team progress") : Effect.void),
      Effect.catchAllCause((cause) => runLog.log("team-structure.failed", { message: EventsModule.describeCause(cause) })),
      Effect.repeat(Schedule.spaced(Duration.seconds(10))),
      Effect.forkIn(scope)
    )

    // --- prompts
    const templates = new Map<string, string>()
    for (const name of ["director", "engineering-manager", "worker"]) {
      templates.set(name, yield* fs.readFileString(path.join(options.projectRoot, "prompts", `${name}.md`)).pipe(Effect.orDie))
    }
    const teamsLine = topo.teams.map((t) => `${t.em} leads ${list(t.workers)}.`).join(" ")
    const rolePrompt = (spec: H.InstanceSpec, assignment: string) => {
      switch (spec.role) {
        case "director":
          return fill(templates.get("director")!, { branch: spec.branch, reports: list(spec.reports), teams: teamsLine, direction: assignment })
        case "em":
          return fill(templates.get("engineering-manager")!, {
            name: spec.name,
            branch: spec.branch,
            reports: list(spec.reports),
            leadLine: spec.lead === undefined
              ? "There is no Director: you lead the whole project, and what you merge lands on the target branch."
              : `You report to the ${spec.lead === "director" ? "Director" : spec.lead}, who gave you the goal below.`,
            doneLine: spec.lead === undefined ? " That ends the run." : " The Director then merges your team branch.",
            goal: assignment
          })
        case "worker":
          return fill(templates.get("worker")!, { name: spec.name, branch: spec.branch, lead: spec.lead ?? "", task: assignment })
      }
    }

    // --- delivery: prompts go in only when the instance is idle; otherwise they wait in its outbox
    const awaitIdleTitle = (name: string) =>
      Effect.gen(function*() {
        for (let i = 0; i < 100; i++) {
          const info = yield* tmux.paneInfo(agent.sessionName(name)).pipe(Effect.option)
          if (Option.isSome(info) && ClaudeCode.isIdleTitle(info.value.title)) return
          yield* Effect.sleep(Duration.millis(100))
        }
      })

    const flush = (name: string): Effect.Effect<void> =>
      deliveryLocks.get(name)!.withPermits(1)(Effect.gen(function*() {
        const taken = yield* Ref.modify(instances, (m) => {
          const i = m.get(name)
          // Nothing reaches an instance before its role prompt: that is what tells it who it is.
          if (i === undefined || !i.ready || !acceptsPrompt(i.status) || i.outbox.length === 0 || !(i.prompted || i.roleQueued)) {
            return [undefined, m] as const
          }
          // New work going in restarts the supervisor's clocks: "busy with no progress" counts from now, not
          // from the instance's last hook (the CLI may take seconds to submit it), and the ladder starts over.
          const at = Date.now()
          // One paste carries at most PANE_MAX characters: what does not fit waits for the next turn, uncut.
          const [batch, rest] = Outbox.nextBatch(i.outbox, PANE_MAX)
          const next = {
            ...i,
            outbox: rest,
            inFlight: batch,
            inFlightPasted: false,
            reminded: false,
            status: "busy" as Status,
            prompted: true,
            lastEventAt: at,
            progressAt: at
          }
          return [{ texts: batch, from: i.status, generation: i.generation, prompted: i.prompted }, new Map(m).set(name, next)] as const
        })
        if (taken === undefined) return
        yield* signalState
        yield* runLog.log("instance.state", { instance: name, from: taken.from, to: "busy", generation: taken.generation })
        yield* awaitIdleTitle(name)
        const text = taken.texts.join(Outbox.SEPARATOR)
        yield* agent.deliver(name, text).pipe(
          Effect.tap(() => update(name, (i) => i.inFlight === taken.texts ? { ...i, inFlightPasted: true } : i)),
          Effect.tap(() => runLog.log("prompt.delivered", { instance: name, chars: text.length, messages: taken.texts.length })),
          Effect.catchAll((e) =>
            // A role prompt that did not go in is not delivered: the instance is not "prompted" by it.
            update(name, (i) => ({ ...i, outbox: [...taken.texts, ...i.outbox], inFlight: [], status: "idle", prompted: taken.prompted && i.prompted })).pipe(
              Effect.zipRight(runLog.log("prompt.failed", { instance: name, message: e.message }))
            ))
        )
      }))

    // Each outbox is bounded (Outbox.OUTBOX_LIMITS): the oldest messages give way, never the role prompt.
    const send = (name: string, text: string, options: { readonly role?: boolean } = {}) => {
      let trimmed: Outbox.Enqueued | undefined
      return update(name, (i) => {
        const role = options.role === true
        trimmed = Outbox.enqueue(i.outbox, text, { role, roleFirst: i.roleQueued && !i.prompted })
        return { ...i, outbox: trimmed.outbox, ...(role ? { roleQueued: true } : {}) }
      }).pipe(
        Effect.zipRight(Effect.suspend(() =>
          trimmed !== undefined && (trimmed.dropped > 0 || trimmed.truncated)
            ? runLog.log("outbox.trimmed", { instance: name, dropped: trimmed.dropped, droppedChars: trimmed.droppedChars, cut: trimmed.truncated, waiting: trimmed.outbox.length })
            : Effect.void
        )),
        Effect.zipRight(Effect.forkIn(flush(name), scope)),
        Effect.asVoid
      )
    }

    // A turn that ends with work pending (a report to merge, a task not reported) is followed by a reminder within
    // seconds, if the instance still rests then and nothing waits in its outbox; see Supervisor.remindAfterStop.
    const remindAfterStop = (name: string, stoppedAt: number) =>
      Effect.gen(function*() {
        const delay = Supervisor.reminderDelayMs(config.idleAfterSeconds * 1000)
        yield* Effect.sleep(Duration.millis(delay))
        if (yield* Deferred.isDone(end)) return
        // Under the delivery lock: never in the middle of a prompt being pasted.
        yield* deliveryLocks.get(name)!.withPermits(1)(Effect.gen(function*() {
          const inst = yield* get(name)
          if (inst.restarting) return
          const decision = Supervisor.remindAfterStop({
            now: Date.now(),
            stoppedAt,
            status: inst.status,
            lastEventAt: inst.lastEventAt,
            progressAt: inst.progressAt,
            pendingWork: H.workAfterStop(inst.spec, yield* Ref.get(board)),
            deliveryPending: inst.outbox.length > 0,
            remindedWithoutWork: inst.reminded
          }, inst.ladder, delay)
          if (decision.action._tag !== "Nudge") return
          const { message, reason } = decision.action
          let claimed = false
          yield* update(name, (i) => {
            if (i.lastEventAt !== stoppedAt || i.generation !== inst.generation || i.restarting || i.outbox.length > 0) return i
            claimed = true
            return { ...i, ladder: decision.ladder, reminded: true }
          })
          if (!claimed) return
          yield* runLog.log("supervisor.reminder", { instance: name, reason })
          yield* agent.deliver(name, message).pipe(Effect.ignore)
        }))
      }).pipe(Effect.catchAllCause((cause) => runLog.log("supervisor.error", { instance: name, cause: String(cause) })))

    // --- hook events
    const onHook = (event: HookEvent) =>
      Effect.gen(function*() {
        const name = event.instance
        const at = event.receivedAt
        const fields: Record<string, unknown> = { instance: name, generation: event.generation, hook: event.hook }
        switch (event.hook) {
          case "SessionStart":
            yield* update(name, (i) => ({ ...i, ready: true, status: "idle", lastEventAt: at, progressAt: at }))
            fields.source = event.payload.source
            break
          case "UserPromptSubmit":
            yield* update(name, (i) => ({ ...i, status: "busy", lastEventAt: at }))
            break
          case "PostToolUse":
          case "PostToolUseFailure":
            yield* update(name, (i) => ({ ...i, lastEventAt: at, progressAt: at, reminded: false }))
            fields.tool = event.payload.tool_name
            break
          case "Stop":
            {
              // A reported task makes the instance "done" until it gets new work.
              const task = H.currentTask(yield* Ref.get(board), name)
              const rests = task !== undefined && task.status !== "assigned" && task.assignee === name
              // The end of a turn that only answered a reminder is no progress: the ladder goes on from the reminder.
              yield* update(name, (i) => ({ ...i, status: rests ? "done" : "idle", inFlight: [], lastEventAt: at, progressAt: i.reminded ? i.progressAt : at }))
              const inst = yield* get(name)
              if (inst.credential !== "") yield* auth.reportSuccess(inst.credential)
              yield* Effect.forkIn(remindAfterStop(name, at), scope)
            }
            break
          case "StopFailure": {
            const limit = Limits.classifyStopFailure(event.payload, new Date(at))
            yield* update(name, (i) =>
              i.restarting || i.status === "starting"
                ? i
                : { ...i, status: limit._tag === "RateLimited" || limit._tag === "UsageLimit" ? "rate-limited" : "error", lastEventAt: at })
            fields.error = event.payload.error
            fields.limit = limit._tag
            yield* Queue.offer(limitEvents, { instance: name, generation: event.generation, limit })
            break
          }
          case "SessionEnd":
            yield* update(name, (i) => ({ ...i, status: "stopped", ready: false, lastEventAt: at }))
            fields.reason = event.payload.reason
            break
          default:
            if (event.hook === "Notification") {
              fields.notification = event.payload.notification_type ?? event.payload.message
              // A permission or other question waits for a person; the supervisor answers it.
              // (The idle notice, "Claude is waiting for your input", is just idle.)
              const waiting = event.payload.notification_type === "permission_prompt" || /permission/i.test(String(event.payload.message ?? ""))
              yield* update(name, (i) => ({ ...i, lastEventAt: at, ...(waiting ? { status: "waiting-for-input" as Status } : {}) }))
            } else {
              yield* update(name, (i) => ({ ...i, lastEventAt: at }))
            }
        }
        yield* runLog.log("hook", fields)
        if (event.hook === "SessionStart" || event.hook === "Stop") yield* Effect.forkIn(flush(name), scope)
        if (event.hook === "Stop" || event.hook === "PostToolUse" || event.hook === "PostToolUseFailure") yield* spendWatch.spent(name)
      })

    // A bad event costs that event only: the loop outlives any failure in handling one.
    yield* EventsModule.consumeHooks(events.hooks, onHook).pipe(Effect.forkIn(scope))

    // --- team commands
    const reply = (ok: boolean, text: string): TeamReply => ({ ok, text })
    const refuse = (text: string) => Effect.succeed(reply(false, `refused: ${text}`))

    // Before new work, a branch catches up with the branch it merges into, so merges stay small.
    const catchUp = (spec: H.InstanceSpec, worktree: string) =>
      spec.baseBranch === undefined
        ? Effect.succeed("")
        : git.isClean(worktree).pipe(
          Effect.flatMap((clean) =>
            clean
              ? git.merge(worktree, spec.baseBranch!, { message: `cco: catch up with ${spec.baseBranch}` }).pipe(
                Effect.map((r) =>
                  r._tag === "Conflict"
                    ? `\n\n(Note: your branch could not catch up with ${spec.baseBranch} automatically: conflict in ${list(r.files)}. Run \`git merge ${spec.baseBranch}\` and resolve it before you start.)`
                    : ""
                )
              )
              : Effect.succeed(`\n\n(Note: your worktree has uncommitted changes, so it did not catch up with ${spec.baseBranch}; commit first.)`)
          )
        )

    // One change to an instance's task at a time (assign to it, its done, its merge), from the check of the task to
    // its new state on the board: of two concurrent assigns to one report exactly one is accepted, a report is not
    // passed on twice, and a merge is not recorded twice. Taken before the git lock, never inside it.
    const taskLocks = new Map(specs.map((s) => [s.name, Effect.unsafeMakeSemaphore(1)]))
    const oneTaskChangeAtATime = <A, E, R>(owner: string | undefined, self: Effect.Effect<A, E, R>) => {
      const lock = owner === undefined ? undefined : taskLocks.get(owner)
      return lock === undefined ? self : lock.withPermits(1)(self)
    }
    const assign = (from: H.InstanceSpec, args: ReadonlyArray<string>) =>
      oneTaskChangeAtATime(args[0], Effect.gen(function*() {
        const [targetName, ...words] = args
        const text = quoteAgentText(words.join(" ").trim())
        if (targetName === undefined || text === "") return reply(false, "usage: cco team assign <instance> <task>")
        const to = specOf.get(targetName)
        if (to === undefined || !from.reports.includes(targetName)) {
          return reply(false, `refused: ${from.name} can assign only to its reports (${list(from.reports) || "none"})`)
        }
        const current = H.currentTask(yield* Ref.get(board), targetName)
        if (current !== undefined && current.status === "assigned") {
          return reply(false, `refused: ${targetName} is still working on task #${current.id}; wait for its report`)
        }
        if (current !== undefined && current.status === "done") {
          return reply(false, `refused: ${targetName} reported task #${current.id} done; merge it first (cco team merge ${targetName})`)
        }
        const inst = yield* get(targetName)
        const note = inst.prompted ? yield* locked(catchUp(to, inst.worktree)) : ""
        yield* Ref.update(board, (b) => H.assign(b, targetName, from.name, text, now()))
        const task = H.currentTask(yield* Ref.get(board), targetName)!
        yield* runLog.log("task.assigned", { instance: targetName, by: from.name, task: task.id, text })
        yield* send(targetName, inst.prompted || inst.roleQueued
            ? `[cco] New task #${task.id} from ${from.name}:\n\n${text}${note}`
            : rolePrompt(to, text), { role: !(inst.prompted || inst.roleQueued) })
        yield* boardChanged
        return reply(true, `assigned task #${task.id} to ${targetName}`)
      }))

    const done = (from: H.InstanceSpec, args: ReadonlyArray<string>) =>
      oneTaskChangeAtATime(from.name, Effect.gen(function*() {
        const summary = quoteAgentText(args.join(" ").trim())
        if (summary === "") return reply(false, "usage: cco team done <summary>")
        const taskless = H.doneRefusal(from, yield* Ref.get(board))
        if (taskless !== undefined) return reply(false, `refused: ${taskless}`)
        // Reported already and not merged yet: the lead has it once; it merges the branch as it is then.
        const reported = H.currentTask(yield* Ref.get(board), from.name)
        if (from.lead !== undefined && reported?.status === "done") {
          return reply(true, `already reported: task #${reported.id} waits for ${from.lead} to merge it (your branch as it is then); wait for your next task`)
        }
        const inst = yield* get(from.name)
        const unmerged = (yield* Ref.get(board)).tasks.filter((t) => from.reports.includes(t.assignee) && t.status === "done")
        if (unmerged.length > 0) {
          const who = [...new Set(unmerged.map((t) => t.assignee))]
          return reply(false, `refused: ${list(who)} reported work that is not merged yet; run cco team merge ${who[0]} first`)
        }
        const checked = yield* locked(Effect.gen(function*() {
          if (yield* git.mergeInProgress(inst.worktree)) return "a merge is in progress in your worktree; resolve it and commit first"
          if (!(yield* git.isClean(inst.worktree))) return "your worktree has uncommitted changes; commit them (git add -A && git commit) and report again"
          if (from.baseBranch !== undefined && (yield* git.commitsAhead(inst.worktree, from.baseBranch, from.branch)) === 0) {
            return `your branch ${from.branch} has no new commits since ${from.baseBranch}; commit your work, then report again`
          }
          // The top's branch is the target, where cco writes TEAM_STRUCTURE.md itself.
          const problems = yield* git.vetCommits(inst.worktree, from.baseBranch ?? startCommit, from.branch, { ccoOwned: from.baseBranch !== undefined })
          if (problems.length > 0) return `your branch ${from.branch} brings ${problems.join("; ")}. Then report again`
          if (from.lead !== undefined) yield* git.push(inst.worktree, from.branch)
          return undefined
        }))
        if (checked !== undefined) {
          yield* runLog.log("task.done-refused", { instance: from.name, reason: checked })
          return reply(false, `refused: ${checked}`)
        }
        yield* Ref.update(board, (b) => H.markDone(b, from.name, summary, now()))
        yield* runLog.log("task.done", { instance: from.name, summary })
        if (from.lead === undefined) {
          yield* Deferred.succeed(end, "project-done")
          return reply(true, "accepted: the project is done; cco is merging, pushing and stopping the run")
        }
        const stat = yield* git.diffStat(inst.worktree, from.baseBranch!, from.branch).pipe(Effect.orElseSucceed(() => ""))
        yield* send(from.lead, `[cco] ${from.name} reports done: ${summary}\n\n${stat}\n\nReview it, then run: cco team merge ${from.name}`)
        yield* boardChanged
        return reply(true, `accepted: ${from.lead} is notified; wait for your next task`)
      }))

    // A merge that landed in the lead's worktree: pushed, recorded, and the report's task marked merged.
    const recordMerge = (lead: H.InstanceSpec, report: H.InstanceSpec, worktree: string) =>
      Effect.gen(function*() {
        const commit = yield* git.headCommit(worktree)
        yield* git.push(worktree, lead.branch)
        yield* Ref.update(merges, (m) => [...m, { from: report.branch, into: lead.branch, commit }])
        yield* Ref.update(board, (b) => H.markMerged(b, report.name, now()))
        yield* runLog.log("merge.done", { from: report.name, branch: report.branch, into: lead.branch, commit })
        return commit
      })

    const merge = (from: H.InstanceSpec, args: ReadonlyArray<string>) =>
      oneTaskChangeAtATime(args[0], Effect.gen(function*() {
        const name = args[0]
        if (name === undefined) return reply(false, "usage: cco team merge <instance>")
        const report = specOf.get(name)
        if (report === undefined || !from.reports.includes(name)) {
          return reply(false, `refused: ${from.name} can merge only its reports (${list(from.reports) || "none"})`)
        }
        const task = H.currentTask(yield* Ref.get(board), name)
        if (task === undefined || task.status === "assigned") return reply(false, `refused: ${name} has not reported done`)
        const worktree = (yield* get(from.name)).worktree
        const answer = yield* locked(Effect.gen(function*() {
          if (yield* git.mergeInProgress(worktree)) {
            const markers = yield* git.conflictMarkers(worktree)
            return reply(false, `refused: a merge is still in progress in your worktree${markers.length > 0 ? ` (conflict markers in ${list(markers)})` : ""}; resolve it, git add, git commit, then run cco team merge ${name} again`)
          }
          // Committed conflict markers, changes to cco's files, huge files on the report's branch never enter the lead's.
          const theirs = yield* git.vetCommits(worktree, "HEAD", report.branch)
          if (theirs.length > 0) {
            yield* runLog.log("merge.refused", { from: name, into: from.branch, problems: theirs })
            return reply(false, `refused: ${name}'s branch ${report.branch} brings ${theirs.join("; ")}. Nothing was merged. Tell ${name} (cco team message ${name} …) to fix it and report again.`)
          }
          const result = yield* git.merge(worktree, report.branch, { message: `Merge ${name} (${report.branch}) into ${from.branch}`, keepConflict: true })
          if (result._tag === "Conflict") {
            yield* runLog.log("merge.conflict", { from: name, into: from.branch, files: result.files })
            return reply(false, `conflict merging ${name} into ${from.branch}: ${list(result.files)}. Resolve them in your worktree (edit, git add, git commit), then run cco team merge ${name} again.`)
          }
          const markers = yield* git.conflictMarkers(worktree)
          if (markers.length > 0) return reply(false, `refused: conflict markers remain in ${list(markers)}; fix and commit them first`)
          // A resolution committed with the markers still in (git add -A && git commit) is refused too: nothing is pushed.
          const ours = yield* git.vetCommits(worktree, startCommit, "HEAD", { ccoOwned: false })
          if (ours.length > 0) {
            yield* runLog.log("merge.refused", { from: name, into: from.branch, problems: ours })
            return reply(false, `refused: your branch ${from.branch} brings ${ours.join("; ")}. Nothing was pushed. Then run cco team merge ${name} again.`)
          }
          if (task.status === "merged" && result._tag === "AlreadyUpToDate") return reply(true, `merged ${name} already; nothing new`)
          const commit = yield* recordMerge(from, report, worktree)
          return reply(true, `merged ${name} into ${from.branch} (${commit.slice(0, 10)})${result._tag === "AlreadyUpToDate" ? " — your resolution commit already holds it" : ""}`)
        }))
        // Merges into the target branch show in TEAM_STRUCTURE.md at once; the rest is batched.
        if (answer.ok) yield* from === top ? writeTeamStructure(`merged ${name}`) : boardChanged
        return answer
      }))

    const message = (from: H.InstanceSpec, args: ReadonlyArray<string>) =>
      Effect.gen(function*() {
        const [to, ...words] = args
        const text = quoteAgentText(words.join(" ").trim())
        if (to === undefined || text === "") return reply(false, `usage: cco team message <instance> <text> (your team: ${list(H.messageable(from, specs))})`)
        const refusal = H.messageRefusal(from, to, text, specs, specOf.has(to) ? (yield* get(to)).outbox.length : 0)
        if (refusal !== undefined) return reply(false, `refused: ${refusal}`)
        yield* send(to, `[cco] Message from ${from.name}: ${text}`)
        return reply(true, `sent to ${to}`)
      })

    const status = Effect.gen(function*() {
      const all = yield* Ref.get(instances)
      const b = yield* Ref.get(board)
      const rows = [...all.values()].map((i) => {
        const t = H.currentTask(b, i.spec.name)
        return `${i.spec.name.padEnd(10)} ${i.spec.role.padEnd(8)} ${i.status.padEnd(12)} ${i.spec.branch}  ${t ? `#${t.id} ${t.status}: ${t.text.split("\n")[0]!.slice(0, 60)}` : "no task"}`
      })
      return reply(true, [`target branch: ${target}`, ...rows].join("\n"))
    })

    const onTeam = (request: TeamRequest): Effect.Effect<TeamReply> => {
      const from = specOf.get(request.instance)
      if (from === undefined) return refuse("unknown instance")
      const handled: Effect.Effect<TeamReply, GitError> = (() => {
        switch (request.command) {
          case "assign":
            return assign(from, request.args)
          case "done":
            return done(from, request.args)
          case "merge":
            return merge(from, request.args)
          case "message":
            return message(from, request.args)
          case "status":
            return status
          default:
            return Effect.succeed(reply(false, `unknown command "${request.command}"; try: assign, done, merge, message, status`))
        }
      })()
      return runLog.log("team.command", { instance: from.name, command: request.command, args: EventsModule.argsForLog(request.args) }).pipe(
        Effect.zipRight(handled),
        Effect.catchTag("GitError", (e) => Effect.succeed(reply(false, `error: git failed: ${e.message}`))),
        Effect.tap((r) => runLog.log("team.reply", { instance: from.name, command: request.command, ok: r.ok, text: r.text.slice(0, 500) }))
      )
    }
    yield* events.setTeamHandler(onTeam)

    // Whatever ends this run — even an interrupt during start-up — no session of it is left running,
    // and state.json says how it ended.
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        yield* Effect.forEach(specs, (spec) => agent.stop(spec.name), { discard: true, concurrency: "unbounded" })
        if ((yield* Ref.get(ended)) !== undefined) return
        yield* Ref.set(ended, { at: new Date().toISOString(), reason: "interrupted" as EndReason })
        yield* writeState
        yield* runLog.log("run.finished", { reason: "interrupted", durationMs: Date.now() - run.startedAt })
      })
    )

    // --- launch, top first
    yield* writeTeamStructure("run start")
    if (top.role === "director" || top.lead === undefined) yield* git.push(topWorktree, target)
    // A credential for an instance; while every one is cooling, the instance waits for the earliest reset.
    const credentialFor = (name: string): Effect.Effect<Credential, RunError> =>
      auth.acquire(name).pipe(
        Effect.catchTag("AllCredentialsCooling", (e) =>
          runLog.log("credentials.exhausted", { instance: name, until: e.until.toISOString(), cooling: e.cooling }).pipe(
            Effect.zipRight(update(name, (i) => ({ ...i, status: "rate-limited" }))),
            Effect.zipRight(auth.acquireOrWait(name))
          )),
        Effect.catchTag("NoUsableCredential", (e) =>
          Effect.fail(new RunError({ reason: "auth", message: `no usable credential left: ${e.invalid.map((i) => `${i.name} (${i.reason})`).join(", ")}` })))
      )
    // A resumed run takes over the sessions that survived and restarts the others where they left off.
    const startInstance = (spec: H.InstanceSpec) =>
      Effect.gen(function*() {
        if (spec !== top && run.previous === undefined) yield* makeWorktree(spec)
        const inst = yield* get(spec.name)
        if (run.previous !== undefined && (yield* agent.isAlive(spec.name)) && (yield* agent.attach(spec.name, inst.generation))) {
          // What it was owed when the orchestrator died goes in at once; a message taken but never pasted, too.
          yield* update(spec.name, (i) => ({
            ...i,
            ready: true,
            status: "idle",
            lastEventAt: Date.now(),
            ...(i.inFlightPasted ? {} : { outbox: [...i.inFlight, ...i.outbox], inFlight: [], inFlightPasted: true })
          }))
          yield* Effect.forkIn(flush(spec.name), scope)
          return
        }
        // A session that did not survive takes what its predecessor was given and never finished, as after a restart.
        if (run.previous !== undefined) {
          yield* update(spec.name, (i) => ({ ...i, outbox: [...i.inFlight, ...i.outbox], inFlight: [], inFlightPasted: true }))
        }
        const credential = yield* credentialFor(spec.name)
        const generation = yield* agent.launch({
          instance: spec.name,
          worktree: worktrees.get(spec.name)!,
          credential,
          continueSession: run.previous !== undefined && inst.prompted
        })
        yield* update(spec.name, (i) => ({ ...i, generation, credential: credential.name, lastEventAt: Date.now() }))
        yield* costTracker.setCredential(spec.name, credential.name)
        if (run.previous !== undefined && inst.prompted) {
          yield* send(spec.name, "[cco] The orchestrator was restarted and your session with it; your conversation is restored. Go on where you left off; if a cco team command failed meanwhile, run it again.")
        }
      })
    if (run.previous !== undefined) {
      yield* runLog.log("run.resuming", { runId: run.runId })
      // Sessions that survived may run team commands at once: every worktree is there before any is attached.
      yield* Effect.forEach(specs.filter((s) => s !== top), makeWorktree, { concurrency: 8, discard: true })
    }
    // In hierarchy order, eight at a time: the registration of one worktree overlaps the launch of others.
    yield* Effect.forEach(specs, startInstance, { concurrency: 8, discard: true })
    yield* writeState
    // (A resumed run may hold the top's role prompt in its outbox already.)
    const topNow = yield* get(top.name)
    if (!topNow.prompted && !topNow.roleQueued) yield* send(top.name, rolePrompt(top, direction), { role: true })
    yield* runLog.log("run.started", { instances: specs.length, target, attach: `tmux -L ${tmux.socket} attach -t ${agent.sessionName(top.name)}` })

    // --- supervision: one fiber per instance, a health check every interval
    const windingDown = yield* Ref.make(false)
    // One tmux call a round for all instances' panes and one for their screens: the supervisors of all
    // instances run together, so a snapshot younger than half an interval serves the whole round. A restart
    // drops it, so that no check sees the session it replaced.
    const sessionPrefix = agent.sessionName("")
    const snapshotTtl = Duration.millis(Math.min(2000, config.healthCheckIntervalSeconds * 500))
    // A failed batch call is no answer (None), never "no panes": each check then asks tmux about its own session.
    const [panesNow, dropPanes] = yield* Effect.cachedInvalidateWithTTL(Effect.option(tmux.paneInfos(sessionPrefix)), snapshotTtl)
    const [screensNow, dropScreens] = yield* Effect.cachedInvalidateWithTTL(
      panesNow.pipe(
        Effect.flatMap(Option.match({
          onNone: () => Effect.succeed(Option.none<ReadonlyMap<string, string>>()),
          onSome: (panes) => Effect.option(tmux.capturePanes([...panes].filter(([, p]) => !p.dead).map(([n]) => n)))
        }))
      ),
      snapshotTtl
    )
    const dropSnapshots = Effect.zipRight(dropPanes, dropScreens)
    const isAlive = (name: string) =>
      Effect.flatMap(panesNow, Option.match({
        onNone: () => agent.isAlive(name),
        onSome: (panes) => {
          const pane = panes.get(agent.sessionName(name))
          return Effect.succeed(pane !== undefined && !pane.dead)
        }
      }))
    const screenOf = (name: string) =>
      Effect.flatMap(screensNow, (screens) => {
        const screen = Option.flatMap(screens, (m) => Option.fromNullable(m.get(agent.sessionName(name))))
        return Option.isSome(screen) ? Effect.succeed(screen.value) : tmux.capturePane(agent.sessionName(name)).pipe(Effect.orElseSucceed(() => ""))
      })

    // Stops an instance's session and every process it started; then a git lock one of them left in its
    // worktree (a commit cut short) is stale, and removed so that git works there again.
    const stopInstance = (name: string) =>
      agent.stop(name).pipe(
        Effect.zipRight(git.removeStaleLock(worktrees.get(name)!)),
        Effect.flatMap((lock) => lock === undefined ? Effect.void : runLog.log("worktree.lock-removed", { instance: name, file: lock })),
        Effect.catchAll((e) => runLog.log("worktree.lock-check-failed", { instance: name, message: e.message }))
      )

    const restart = (name: string, reason: string, next?: Credential) =>
      Effect.gen(function*() {
        // One restart at a time per instance: a rotation and a crash check must not both relaunch it.
        const claimed = yield* Ref.modify(instances, (m) => {
          const i = m.get(name)
          if (i === undefined || i.restarting) return [false, m] as const
          return [true, new Map(m).set(name, { ...i, restarting: true })] as const
        })
        if (!claimed) return yield* runLog.log("instance.restart-skipped", { instance: name, reason, why: "a restart is already under way" })
        yield* restartClaimed(name, reason, next).pipe(Effect.ensuring(update(name, (i) => ({ ...i, restarting: false }))))
      })

    const restartClaimed = (name: string, reason: string, next?: Credential) =>
      Effect.gen(function*() {
        const inst = yield* get(name)
        const budget = Supervisor.allowRestart(inst.restartHistory, Date.now(), config.maxRestartsPerInstance, 10 * 60_000)
        if (!budget.allowed) {
          yield* update(name, (i) => ({ ...i, status: "stopped" }))
          yield* runLog.log("instance.restart-refused", { instance: name, reason, limit: `${config.maxRestartsPerInstance} per 10 minutes` })
          return
        }
        yield* update(name, (i) => ({
          ...i,
          status: "starting",
          ready: false,
          // A message pasted into the session being replaced, and never taken, goes to the new one.
          outbox: [...i.inFlight, ...i.outbox],
          inFlight: [],
          restarts: i.restarts + 1,
          restartHistory: budget.history,
          lastEventAt: Date.now(),
          progressAt: Date.now(),
          ladder: Supervisor.initialLadder(Date.now())
        }))
        yield* runLog.log("instance.restarting", { instance: name, reason, restarts: inst.restarts + 1 })
        yield* stopInstance(name)
        // --continue needs a conversation; before its first prompt an instance simply starts afresh.
        const credential = next ?? (yield* credentialFor(name))
        yield* costTracker.setCredential(name, credential.name)
        const generation = yield* agent.launch({ instance: name, worktree: inst.worktree, credential, continueSession: inst.prompted })
        yield* dropSnapshots
        yield* update(name, (i) => ({ ...i, generation, credential: credential.name, lastEventAt: Date.now() }))
        if (inst.prompted) {
          const b = yield* Ref.get(board)
          const task = H.currentTask(b, name)
          // A lead cut off in the middle of its assignments is told who still has nothing to do.
          const idle = H.noTaskYet(H.reportsWithoutTask(inst.spec, b))
          yield* send(name, `[cco] cco restarted you (${reason}); your conversation is restored. ${task !== undefined && task.status === "assigned" ? `Go on with task #${task.id}: commit your work and report with cco team done when it is finished.` : "Go on where you left off."}${idle === undefined ? "" : ` Note: ${idle}.`}`)
        }
        yield* writeState
      }).pipe(Effect.catchAll((e) => runLog.log("instance.restart-failed", { instance: name, reason, message: e.message })))

    // --- rate limits and rotation: a limited credential cools, its instances move on with --continue
    const moveOff = (name: string, from: string, why: string): Effect.Effect<void> =>
      Effect.gen(function*() {
        const next = yield* auth.acquire(name).pipe(Effect.either)
        if (next._tag === "Left") {
          if (next.left._tag === "NoUsableCredential") {
            yield* runLog.log("credentials.none-usable", { instance: name })
            return yield* update(name, (i) => ({ ...i, status: "stopped" }))
          }
          // Every credential is cooling: wait for the earliest reset, then go on.
          const until = next.left.until
          yield* update(name, (i) => ({ ...i, status: "rate-limited" }))
          yield* runLog.log("credentials.exhausted", { instance: name, until: until.toISOString(), cooling: next.left.cooling })
          yield* Effect.sleep(Auth.waitSlice(until.getTime(), Date.now(), 1000))
          return yield* moveOff(name, from, why)
        }
        const credential = next.right
        if (credential.name === from) {
          // The same credential is usable again (its reset passed): the session can simply go on.
          yield* update(name, (i) => ({ ...i, status: "idle" }))
          return yield* send(name, "[cco] The API limit has reset. Continue your task; resend what failed.")
        }
        yield* runLog.log("credential.rotated", { instance: name, from, to: credential.name, reason: why })
        yield* restart(name, `${why} on credential ${from}; moved to ${credential.name}`, credential)
      })

    const onLimit = (name: string, generation: number, claimed: Limits.Limit) =>
      Effect.gen(function*() {
        // A hook can be forged by the agent: the CLI's own error line on the pane decides (see Limits.confirmStopFailure).
        const line = claimed._tag === "Other" ? undefined : yield* Limits.awaitCliErrorLine(tmux.capturePane(agent.sessionName(name)))
        const verdict = Limits.confirmStopFailure(claimed, line, new Date())
        const inst = yield* get(name)
        // A failure of a session being replaced (or already replaced) says nothing about the new credential.
        if (generation !== inst.generation || inst.status === "starting" || inst.restarting) {
          return yield* runLog.log("api.error-ignored", { instance: name, generation, current: inst.generation, limit: claimed._tag })
        }
        const from = inst.credential
        if (verdict._tag === "Unconfirmed") {
          // Nothing in the pool changes; only this instance is told to go on, later, if it still rests on the error.
          yield* runLog.log("api.error-unconfirmed", { instance: name, credential: from, claimed: claimed._tag, retryInMs: Duration.toMillis(Limits.UNCONFIRMED_RETRY) })
          yield* update(name, (i) => i.generation === generation && i.status === "rate-limited" ? { ...i, status: "error" } : i)
          yield* Effect.sleep(Limits.UNCONFIRMED_RETRY)
          const later = yield* get(name)
          if (later.generation !== generation || later.status !== "error" || later.restarting) return
          return yield* send(name, "[cco] Your last turn ended on an API error. Continue your task; resend what failed.")
        }
        const limit = verdict.limit
        switch (limit._tag) {
          case "RateLimited":
          case "UsageLimit": {
            const movers = yield* auth.reportRateLimit(from, { resetAt: limit.resetAt, message: limit.message })
            const until = (yield* auth.snapshot).find((c) => c.name === from)?.until
            yield* runLog.log("credential.cooling", { credential: from, until, reason: limit._tag === "UsageLimit" ? "usage limit" : "rate limit", instances: movers })
            yield* Effect.forEach(new Set([name, ...movers]), (m) => moveOff(m, from, limit._tag === "UsageLimit" ? "usage limit" : "rate limit"), { discard: true, concurrency: "unbounded" })
            return
          }
          case "AuthFailed": {
            const movers = yield* auth.reportInvalid(from, limit.message)
            yield* runLog.log("credential.invalid", { credential: from, reason: limit.message, instances: movers })
            yield* Effect.forEach(new Set([name, ...movers]), (m) => moveOff(m, from, "authentication failed"), { discard: true, concurrency: "unbounded" })
            return
          }
          case "Overloaded": {
            // Not the credential's fault: retry on the same one after a backoff.
            const wait = yield* auth.reportOverloaded(from)
            yield* runLog.log("api.overloaded", { instance: name, credential: from, retryInMs: Duration.toMillis(wait) })
            yield* Effect.sleep(wait)
            return yield* send(name, "[cco] The API was overloaded; it should answer again now. Continue your task; resend what failed.")
          }
          case "Other":
            return yield* runLog.log("api.error", { instance: name, credential: from, message: limit.message })
        }
      })
    yield* Queue.take(limitEvents).pipe(
      Effect.flatMap(({ generation, instance, limit }) =>
        Effect.forkIn(
          onLimit(instance, generation, limit).pipe(
            Effect.catchAllCause((cause) => runLog.log("limit.failed", { instance, limit: limit._tag, cause: EventsModule.describeCause(cause) }))
          ),
          scope
        )),
      Effect.forever,
      Effect.forkIn(scope)
    )

    const thresholds: Supervisor.Thresholds = {
      stuckAfterMs: config.stuckAfterSeconds * 1000,
      idleAfterMs: config.idleAfterSeconds * 1000,
      escalationIntervalMs: config.escalationIntervalSeconds * 1000,
      startupTimeoutMs: Math.max(120_000, config.healthCheckIntervalSeconds * 4000)
    }

    // Something happened to an instance between two looks at it: a hook, a prompt taken, a restart.
    const movedOn = (before: Instance, after: Instance) =>
      after.lastEventAt !== before.lastEventAt || after.generation !== before.generation || after.restarting

    const healthCheck = (name: string) =>
      Effect.gen(function*() {
        if (yield* Ref.get(windingDown)) return
        const inst = yield* get(name)
        if (inst.restarting) return
        const nowMs = Date.now()
        const alive = yield* isAlive(name)
        // The screen is read only when an instance has been quiet for a while: idle runs stay cheap.
        const quiet = nowMs - inst.lastEventAt > config.healthCheckIntervalSeconds * 2000
        const screen = alive && quiet && inst.status !== "starting"
          ? yield* screenOf(name)
          : ""
        const decision = Supervisor.decide({
          now: nowMs,
          sessionAlive: alive,
          status: inst.status,
          lastEventAt: inst.lastEventAt,
          progressAt: inst.progressAt,
          pendingWork: H.pendingWork(inst.spec, yield* Ref.get(board)),
          blockingScreen: Supervisor.detectBlockingScreen(screen),
          // A task just assigned waits in the outbox until the instance takes it: that is not idling.
          deliveryPending: inst.outbox.length > 0 && (inst.prompted || inst.roleQueued)
        }, inst.ladder, thresholds)
        const action = decision.action
        const screenBlocked = Supervisor.detectBlockingScreen(screen) !== undefined
        // The instance may have moved on while it was looked at (a hook came in, a prompt was taken): then this
        // round's judgement is stale, and the next round judges it afresh. A dead session is acted on regardless.
        let stale = false
        yield* update(name, (i) => {
          stale = alive && movedOn(inst, i)
          if (stale) return i
          return {
            ...i,
            ladder: decision.ladder,
            status: !alive && i.status !== "stopped"
              ? "crashed"
              : screenBlocked
              ? "waiting-for-input"
              : i.status === "busy" && action._tag !== "None"
              ? "stuck"
              : i.status === "waiting-for-input" && !screenBlocked && quiet
              ? "idle"
              : i.status
          }
        })
        if (stale) return
        // Nudges and interrupts go under the instance's delivery lock, so that they never land in the middle of a
        // prompt being pasted, and only if no prompt went in (nor hook came) while they waited for it.
        const unlessMovedOn = (act: Effect.Effect<void>) =>
          deliveryLocks.get(name)!.withPermits(1)(Effect.flatMap(get(name), (i) => movedOn(inst, i) ? Effect.void : act))
        switch (action._tag) {
          case "None":
            return
          case "Restart":
            return yield* restart(name, action.reason)
          case "Nudge":
            // A busy instance queues pasted text itself; an idle one takes it as its next prompt.
            return yield* unlessMovedOn(
              runLog.log("supervisor.nudge", { instance: name, reason: action.reason }).pipe(
                Effect.zipRight(agent.deliver(name, action.message).pipe(Effect.ignore))
              )
            )
          case "Interrupt":
            return yield* unlessMovedOn(Effect.gen(function*() {
              yield* runLog.log("supervisor.interrupt", { instance: name, reason: action.reason })
              yield* agent.interrupt(name).pipe(Effect.ignore)
              yield* Effect.sleep(Duration.seconds(1))
              yield* agent.deliver(name, action.message).pipe(Effect.ignore)
            }))
          case "Dismiss":
            yield* runLog.log("supervisor.dismiss", { instance: name, reason: action.reason, keys: action.keys })
            return yield* tmux.sendKeys(agent.sessionName(name), action.keys).pipe(Effect.ignore)
        }
      })

    const supervisors = yield* FiberMap.make<string>()
    for (const spec of specs) {
      yield* FiberMap.run(
        supervisors,
        spec.name,
        healthCheck(spec.name).pipe(
          Effect.catchAllCause((cause) => runLog.log("supervisor.error", { instance: spec.name, cause: EventsModule.describeCause(cause) })),
          Effect.repeat(Schedule.spaced(Duration.seconds(config.healthCheckIntervalSeconds))),
          Effect.delay(Duration.seconds(config.healthCheckIntervalSeconds))
        )
      )
    }

    // --- costs: transcripts read incrementally; all of them on a timer (besides each instance as it spends)
    const pollCosts = Effect.tap(costTracker.poll, checkCosts)
    let lastCostLog = 0
    yield* pollCosts.pipe(
      Effect.flatMap((snapshot) => {
        if (snapshot.total.usd === lastCostLog) return Effect.void
        lastCostLog = snapshot.total.usd
        return runLog.log("cost.update", {
          totalUsd: snapshot.total.usd,
          tokens: snapshot.total.tokens,
          byInstance: Object.fromEntries(snapshot.instances.map((c) => [c.name, c.usd]))
        }).pipe(Effect.zipRight(writeState))
      }),
      Effect.catchAllCause((cause) => runLog.log("cost.error", { cause: EventsModule.describeCause(cause) })),
      Effect.repeat(Schedule.spaced(Duration.seconds(Math.min(15, config.healthCheckIntervalSeconds * 2)))),
      Effect.forkIn(scope)
    )

    // --- wind down: nothing in a worktree is lost, the target branch holds what was merged
    const saveWork = (spec: H.InstanceSpec) =>
      Effect.gen(function*() {
        const dir = worktrees.get(spec.name)!
        if (yield* git.mergeInProgress(dir)) return
        if (yield* git.commitAll(dir, `cco: work in progress of ${spec.name} at the end of run ${run.runId}`)) {
          // `git add -A` takes whatever lies in the worktree: a huge file stays in the run's clone, never pushed.
          const large = yield* git.largeFiles(dir, spec.baseBranch ?? startCommit, spec.branch)
          if (large.length > 0) return yield* runLog.log("wip.not-pushed", { instance: spec.name, branch: spec.branch, large })
          yield* git.push(dir, spec.branch)
          yield* runLog.log("wip.saved", { instance: spec.name, branch: spec.branch })
        }
      }).pipe(Effect.catchAll((e) => runLog.log("wip.failed", { instance: spec.name, message: e.message })))

    // Reported work merges upward where it merges cleanly; conflicts are left for a person, logged.
    const mergeClean = (lead: H.InstanceSpec, report: H.InstanceSpec) =>
      Effect.gen(function*() {
        const dir = worktrees.get(lead.name)!
        if (yield* git.mergeInProgress(dir)) return
        if ((yield* git.commitsAhead(dir, lead.branch, report.branch)) === 0) return
        // Committed conflict markers (either side), changes to cco's files, huge files stay where they are, for a person.
        const problems = [
          ...(yield* git.vetCommits(dir, lead.branch, report.branch)),
          ...(yield* git.vetCommits(dir, startCommit, lead.branch, { ccoOwned: false }))
        ]
        if (problems.length > 0) return yield* runLog.log("merge.skipped", { from: report.name, into: lead.branch, problems })
        const result = yield* git.merge(dir, report.branch, { message: `Merge ${report.name} (${report.branch}) into ${lead.branch} at the end of the run` })
        if (result._tag === "Conflict") return yield* runLog.log("merge.skipped", { from: report.name, into: lead.branch, files: result.files })
        if (result._tag === "Merged") yield* recordMerge(lead, report, dir)
      }).pipe(Effect.catchAll((e) => runLog.log("merge.failed", { from: report.name, into: lead.branch, message: e.message })))

    const windDown = (reason: EndReason) =>
      Effect.gen(function*() {
        yield* Ref.set(windingDown, true)
        yield* FiberMap.clear(supervisors)
        yield* runLog.log("run.ending", { reason })
        yield* Effect.forEach(specs, (spec) => stopInstance(spec.name), { discard: true, concurrency: "unbounded" })
        yield* locked(Effect.gen(function*() {
          // At a limit, reported work moves up first; uncommitted work is then saved on each instance's own
          // branch only, so it never reaches the target branch unreviewed.
          if (reason !== "project-done" && reason !== "interrupted") {
            const b = yield* Ref.get(board)
            for (const em of specs.filter((s) => s.role === "em")) {
              for (const w of em.reports) {
                if (H.currentTask(b, w)?.status === "done") yield* mergeClean(em, specOf.get(w)!)
              }
              if (em.lead !== undefined) yield* mergeClean(specOf.get(em.lead)!, em)
            }
          }
          yield* Effect.forEach(specs.filter((s) => s !== top), saveWork, { discard: true })
        }))
        yield* writeTeamStructure(`run ended: ${reason}`)
        // Never a target branch whose new commits add conflict markers or huge files: origin keeps the last good push.
        yield* locked(Effect.gen(function*() {
          const problems = yield* git.vetCommits(topWorktree, startCommit, target, { ccoOwned: false })
          if (problems.length > 0) return yield* runLog.log("push.refused", { branch: target, problems })
          yield* git.push(topWorktree, target)
        })).pipe(
          Effect.catchAll((e) => runLog.log("push.failed", { branch: target, message: e.message }))
        )
      })

    // --- until done, the run's time limit, or an interrupt (Ctrl-C / SIGTERM)
    const warnAll = Effect.gen(function*() {
      const leadMs = Supervisor.warningLead(config.maxRunDurationMinutes * 60_000)
      const left = leadMs >= 90_000 ? `${Math.round(leadMs / 60_000)} minutes` : leadMs >= 60_000 ? "1 minute" : `${Math.round(leadMs / 1000)} seconds`
      yield* runLog.log("run.time-warning", { left })
      const prompted = [...(yield* Ref.get(instances)).values()].filter((i) => i.prompted || i.roleQueued).map((i) => i.spec)
      yield* Effect.forEach(prompted, (spec) => send(spec.name, `[cco] The run ends in about ${left}. Commit your work now; if your task is finished, report it with cco team done.`), { discard: true })
    })
    const reason = yield* Effect.raceFirst(
      Deferred.await(end),
      Supervisor.watchDeadline(Math.max(1000, run.startedAt + config.maxRunDurationMinutes * 60_000 - Date.now()), warnAll).pipe(Effect.as<EndReason>("time-limit"))
    ).pipe(
      // The scope's finalizer then records the end (state.json, run.finished), as for any unfinished run.
      Effect.onInterrupt(() => runLog.log("run.interrupted").pipe(Effect.zipRight(windDown("interrupted"))))
    )
    yield* windDown(reason)
    // Sessions are stopped and their processes gone: the transcripts are complete.
    const costs = yield* pollCosts
    const commitsOnTarget = yield* git.commitsAhead(topWorktree, startCommit, target).pipe(Effect.orElseSucceed(() => 0))
    const finalInstances = yield* Ref.get(instances)
    const summary: RunSummary = {
      runId: run.runId,
      runFolder: run.folder,
      reason,
      repositoryUrl: config.repositoryUrl,
      targetBranch: target,
      merges: yield* Ref.get(merges),
      commitsOnTarget,
      durationMs: Date.now() - run.startedAt,
      tmuxSocket: tmux.socket,
      instances: specs.map((s) => ({
        name: s.name,
        role: s.role,
        branch: s.branch,
        status: finalInstances.get(s.name)!.status,
        restarts: finalInstances.get(s.name)!.restarts,
        session: agent.sessionName(s.name)
      })),
      costs
    }
    yield* Ref.set(ended, { at: new Date().toISOString(), reason })
    yield* writeState
    yield* runLog.log("run.finished", { reason, commitsOnTarget, merges: summary.merges.length, durationMs: summary.durationMs, costUsd: costs.total.usd })
    return summary
  })


