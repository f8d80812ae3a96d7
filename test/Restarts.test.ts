import { describe, expect, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Fiber, Ref, TestClock } from "effect"
import { AgentError, type LaunchRequest } from "../src/Agent.js"
import * as H from "../src/Hierarchy.js"
import * as I from "../src/Instances.js"
import { makeRestarts } from "../src/Restarts.js"

const spec = { name: "w1", role: "worker", lead: "em1", reports: [], branch: "cco/w1", baseBranch: "cco/em1" } as const

/** w1 on key-1 (generation 1, its session up), at most 3 restarts in 10 minutes; launches and logs are recorded. */
const setup = (launch: (request: LaunchRequest) => Effect.Effect<number, AgentError>) =>
  Effect.gen(function*() {
    const instances = yield* Ref.make<ReadonlyMap<string, I.Instance>>(
      new Map([["w1", I.relaunched(I.sessionStarted(I.initial(spec, "/tmp/w1", 0), 0), 1, "key-1", 0)]])
    )
    const logs: Array<{ readonly event: string; readonly [k: string]: unknown }> = []
    const launches: Array<LaunchRequest> = []
    const { restart } = makeRestarts({
      config: { maxRestartsPerInstance: 3 },
      update: (name, f) => Ref.update(instances, (m) => new Map(m).set(name, f(m.get(name)!))),
      get: (name) => Effect.map(Ref.get(instances), (m) => m.get(name)!),
      instances,
      board: yield* Ref.make(H.emptyBoard),
      worktrees: new Map([["w1", "/tmp/w1"]]),
      agent: { launch: (request) => Effect.zipRight(Effect.sync(() => launches.push(request)), launch(request)), stop: () => Effect.void, stopMany: () => Effect.void },
      git: { removeStaleLock: () => Effect.succeed(undefined) },
      runLog: { log: (event, fields) => Effect.sync(() => void logs.push({ event, ...fields })) },
      costTracker: { setCredential: () => Effect.void }
    }, {
      send: () => Effect.void,
      credentialFor: () => Effect.succeed({ name: "key-1", env: {} }),
      writeState: Effect.void,
      dropSnapshots: Effect.void
    })
    const events = () => logs.map((l) => l.event)
    const status = Effect.map(Ref.get(instances), (m) => I.statusName(m.get("w1")!.phase))
    return { restart, logs, events, launches, status }
  })

describe("Restarts", () => {
  it.effect("at most maxRestartsPerInstance restarts in 10 minutes; one more leaves the instance stopped", () =>
    Effect.gen(function*() {
      let generation = 1
      const run = yield* setup(() => Effect.succeed(++generation))
      for (let i = 0; i < 3; i++) {
        yield* run.restart("w1", "session exited")
        yield* TestClock.adjust(Duration.minutes(1))
      }
      expect(run.launches.length).toBe(3)
      expect(yield* run.status).not.toBe("stopped")
      yield* run.restart("w1", "session exited")
      expect(run.launches.length).toBe(3)
      expect(run.logs.at(-1)).toEqual({ event: "instance.restart-refused", instance: "w1", reason: "session exited", limit: "3 per 10 minutes" })
      expect(yield* run.status).toBe("stopped")
      // Health checks go on asking while its session stays gone: the refusal is logged once.
      for (let i = 0; i < 3; i++) {
        yield* TestClock.adjust(Duration.seconds(30))
        yield* run.restart("w1", "session exited")
      }
      expect(run.events().filter((e) => e === "instance.restart-refused")).toHaveLength(1)
      // Ten minutes after the first, the window has room again.
      yield* TestClock.adjust(Duration.minutes(6))
      yield* run.restart("w1", "session exited")
      expect(run.launches.length).toBe(4)
      // That session, gone too with the window full again, is refused anew: logged again, once.
      yield* run.restart("w1", "session exited")
      yield* run.restart("w1", "session exited")
      expect(run.launches.length).toBe(4)
      expect(run.events().filter((e) => e === "instance.restart-refused")).toHaveLength(2)
    }))

  it.effect("one restart at a time: a second while one is under way is skipped", () =>
    Effect.gen(function*() {
      const launched = yield* Deferred.make<number>()
      const run = yield* setup(() => Deferred.await(launched))
      const first = yield* Effect.fork(run.restart("w1", "stuck"))
      yield* Effect.repeatN(Effect.yieldNow(), 20)
      yield* run.restart("w1", "rate limit on credential key-1; moved to key-2")
      expect(run.logs.at(-1)).toEqual({ event: "instance.restart-skipped", instance: "w1", reason: "rate limit on credential key-1; moved to key-2", why: "a restart is already under way" })
      yield* Deferred.succeed(launched, 2)
      yield* Fiber.join(first)
      expect(run.launches.length).toBe(1)
    }))

  it.effect("a launch that fails is logged, and the next restart may go ahead", () =>
    Effect.gen(function*() {
      let fail = true
      const run = yield* setup(() => fail ? Effect.fail(new AgentError({ instance: "w1", operation: "launch", message: "tmux said no" })) : Effect.succeed(2))
      yield* run.restart("w1", "session exited")
      expect(run.logs.at(-1)).toEqual({ event: "instance.restart-failed", instance: "w1", reason: "session exited", message: "tmux said no" })
      fail = false
      yield* run.restart("w1", "session exited")
      expect(run.events().filter((e) => e === "instance.restarting").length).toBe(2)
      expect(run.launches.length).toBe(2)
    }))
})
