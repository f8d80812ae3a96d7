// Whole orchestrations in memory: Orchestrator.run on TmuxTest, the in-memory Events and scripted agents (git and
// the run folder are real, in a temp dir), with time on the TestClock. A driver moves the clock to the next thing
// waiting on it (at most a second at a time) whenever no git call and no agent's turn is under way, so
// supervision, reminders, cool-downs, the deadline and cost polling run in virtual time: hours in a second or two.
import * as NodeContext from "@effect/platform-node/NodeContext"
import { Chunk, Clock, Effect, Exit, Fiber, Layer, Ref, TestClock } from "effect"
import * as path from "node:path"
import { loadConfig } from "../../src/Config.js"
import * as EventsModule from "../../src/Events.js"
import { Git } from "../../src/Git.js"
import * as Orchestrator from "../../src/Orchestrator.js"
import { Agent } from "../../src/Agent.js"
import { RunLayers, type RunServices, type RunSite } from "../../src/RunLayers.js"
import { TmuxTest } from "../../src/TmuxTest.js"
import { Worktree } from "../../src/Worktree.js"
import { type Fixture, makeFixture, projectRoot, readLog } from "../harness.js"
import { type Behaviour, makeControl, makeScriptedAgent, type ScriptedAgentsShape } from "./ScriptedAgent.js"

/** Real git, each call counted as work under way: the clock waits for cco's git as it waits for the agents'. */
const trackedGit = (busy: Ref.Ref<number>) =>
  Layer.effect(
    Git,
    Effect.map(Git, (git) => {
      const t = <A, E, R>(self: Effect.Effect<A, E, R>) =>
        Effect.acquireUseRelease(Ref.update(busy, (n) => n + 1), () => self, () => Ref.update(busy, (n) => n - 1))
      return Git.make({
        run: (...args) => t(git.run(...args)),
        output: (...args) => t(git.output(...args)),
        status: (...args) => t(git.status(...args)),
        branches: (...args) => t(git.branches(...args)),
        version: () => t(git.version()),
        withInput: (...args) => t(git.withInput(...args))
      })
    })
  ).pipe(Layer.provide(Git.Default))

/** The in-memory run services: TmuxTest, Events without a socket, scripted agents; real git. */
export const memoryServices = (behaviour: Behaviour, control: ScriptedAgentsShape) => (site: RunSite) => {
  const git = trackedGit(control.busy)
  const base = Layer.mergeAll(TmuxTest, Worktree.DefaultWithoutDependencies.pipe(Layer.provide(git)), git)
  const events = EventsModule.layerInMemory
  const agent = Layer.scoped(Agent, makeScriptedAgent(site, behaviour, control)).pipe(Layer.provide(Layer.merge(base, events)))
  return Layer.mergeAll(base, events, agent) satisfies Layer.Layer<RunServices, unknown, unknown>
}

// A few turns of Node's event loop (timers, I/O callbacks such as a file written or a git process ending): what
// cco does in reaction to an event, without waiting on the clock, is done before the clock moves.
const realPause = Effect.promise(() => new Promise<void>((resolve) => setImmediate(() => setImmediate(() => setImmediate(resolve)))))

/** The most the clock moves at once: what is not counted as work under way (file writes) gets a chance between. */
const MAX_STEP_MS = 1_000

/** How long agents may hold real work before the driver gives up: a scripted turn takes milliseconds. */
const BUSY_LIMIT_MS = 20_000

export interface MemoryRun {
  readonly exit: Exit.Exit<Orchestrator.RunSummary, Orchestrator.RunError>
  readonly fixture: Fixture
  readonly log: ReadonlyArray<Record<string, unknown>>
  readonly events: (event: string) => ReadonlyArray<Record<string, unknown>>
  readonly control: ScriptedAgentsShape
  /** Virtual time the run took, from this virtual start. */
  readonly virtualMs: number
  readonly startedAt: number
  readonly realMs: number
}

export interface MemoryRunOptions {
  readonly workerCount: number
  readonly groupSize?: number
  readonly keys?: number
  readonly accounts?: ReadonlyArray<object>
  readonly maxRunDurationMinutes?: number
  readonly extra?: Readonly<Record<string, unknown>>
  /** RunOptions.answerWaitMs: how long a gated merge command holds its request. */
  readonly answerWaitMs?: number
}

/** Runs an orchestration in memory under the TestClock; the fixture is removed when the scope closes. */
export const memoryRun = (options: MemoryRunOptions, behaviour: Behaviour) =>
  Effect.gen(function*() {
    const fixture = yield* Effect.acquireRelease(
      Effect.sync(() => makeFixture({ mockUrl: "http://127.0.0.1:9", maxRunDurationMinutes: 60, ...options })),
      (f) => Effect.sync(() => f.cleanup())
    )
    const config = yield* loadConfig(fixture.configDir).pipe(Effect.provide(NodeContext.layer))
    const control = yield* makeControl
    const layers = Layer.succeed(RunLayers, RunLayers.of({ services: memoryServices(behaviour, control) }))
    // Virtual time starts now, so that the run folder and branches carry a plausible date.
    yield* TestClock.setTime(Date.now())
    const startedReal = performance.now()
    const startedVirtual = yield* Clock.currentTimeMillis
    const fiber = yield* Orchestrator.run(config, {
      claudePath: "scripted-agent",
      clientCommand: [process.execPath, path.join(projectRoot, "bin", "cco-client.mjs")],
      projectRoot,
      basePath: process.env.PATH ?? "/usr/bin:/bin",
      ...(options.answerWaitMs === undefined ? {} : { answerWaitMs: options.answerWaitMs })
    }).pipe(Effect.provide(Layer.merge(layers, NodeContext.layer)), Effect.fork)
    let busySince: number | undefined
    let steps = 0
    while (fiber.unsafePoll() === null) {
      yield* realPause
      if ((yield* Ref.get(control.busy)) > 0) {
        busySince ??= performance.now()
        if (performance.now() - busySince > BUSY_LIMIT_MS) {
          yield* Fiber.interrupt(fiber)
          return yield* Effect.die(new Error(`scripted agents held real work for ${BUSY_LIMIT_MS} ms`))
        }
        continue
      }
      busySince = undefined
      const now = yield* Clock.currentTimeMillis
      const next = Chunk.reduce(yield* TestClock.sleeps(), Infinity, (a, b) => Math.min(a, b))
      steps++
      yield* TestClock.adjust(Math.max(1, Math.min(next - now, MAX_STEP_MS)))
    }
    const exit = yield* Fiber.await(fiber)
    if (process.env.CCO_MEMORY_TIMING !== undefined) console.log(`real ${Math.round(performance.now() - startedReal)} ms, virtual ${(yield* Clock.currentTimeMillis) - startedVirtual} ms, ${steps} steps`)
    const log = readLog(path.join(fixture.configDir, "logs", "latest"))
    return {
      exit,
      fixture,
      log,
      events: (event: string) => log.filter((l) => l.event === event),
      control,
      virtualMs: (yield* Clock.currentTimeMillis) - startedVirtual,
      startedAt: startedVirtual,
      realMs: performance.now() - startedReal
    } satisfies MemoryRun
  })
