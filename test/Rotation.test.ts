import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Queue, Redacted, Ref, TestClock } from "effect"
import type { ApiKeyCredential } from "../src/ApiKeysFile.js"
import * as Auth from "../src/Auth.js"
import type { Credential } from "../src/Agent.js"
import * as I from "../src/Instances.js"
import { Limit } from "../src/Limits.js"
import { type LimitEvent, makeRotation, type RotationContext } from "../src/Rotation.js"

const KEYS: ReadonlyArray<ApiKeyCredential> = [
  { name: "key-1", env: { ANTHROPIC_API_KEY: Redacted.make("sk-ant-api03-ONE-aaaaaaaaaaaaaaaaaaaaaaaa") } },
  { name: "key-2", env: { ANTHROPIC_API_KEY: Redacted.make("sk-ant-api03-TWO-bbbbbbbbbbbbbbbbbbbbbbbb") } }
]
const spec = { name: "w1", role: "worker", lead: "em1", reports: [], branch: "cco/w1", baseBranch: "cco/em1" } as const

const PANE_429 = "● API Error: Request rejected (429) · This request would exceed your organization's rate limit."
const PANE_529 = "● API Error: Repeated 529 Overloaded errors"
const PANE_QUIET = "● Done."

/**
 * A run of one worker, w1, on key-1 (generation 1, its session up), whose pane shows `pane`; key-2 cools for
 * 30 s. What rotation logs, sends and restarts is recorded.
 */
const setup = (pane: string) =>
  Effect.gen(function*() {
    const auth = yield* Auth.make({ authMode: "api-keys-only", apiKeys: KEYS })
    expect((yield* auth.acquire("w1")).name).toBe("key-1")
    yield* auth.reportRateLimit("key-2", { resetAt: new Date(30_000) })
    const instances = yield* Ref.make(new Map([["w1", I.relaunched(I.sessionStarted(I.initial(spec, "/tmp/w1", 0), 0), 1, "key-1", 0)]]))
    const logs: Array<{ readonly event: string; readonly [k: string]: unknown }> = []
    const sent: Array<string> = []
    const restarts: Array<{ readonly reason: string; readonly credential: string | undefined }> = []
    const limitEvents = yield* Queue.unbounded<LimitEvent>()
    const update = (name: string, f: (i: I.Instance) => I.Instance) =>
      Ref.update(instances, (m) => new Map(m).set(name, f(m.get(name)!)))
    const ctx: RotationContext = {
      auth,
      update,
      get: (name) => Effect.map(Ref.get(instances), (m) => m.get(name)!),
      specs: [spec],
      limitEvents,
      runLog: { log: (event, fields) => Effect.sync(() => void logs.push({ event, ...fields })) },
      tmux: { capturePane: () => Effect.succeed(pane) },
      agent: { sessionName: (name) => `cco-test-${name}` }
    }
    const rotation = yield* makeRotation(ctx, {
      send: (_name, text) => Effect.sync(() => void sent.push(text)),
      restart: (_name, reason, next?: Credential) => Effect.sync(() => void restarts.push({ reason, credential: next?.name }))
    })
    // As the StopFailure hook does: the instance rests on the error, and the error goes to rotation.
    const apiError = (limit: Limit) =>
      update("w1", (i) => I.apiFailed(i, limit, 0)).pipe(Effect.zipRight(Queue.offer(limitEvents, { instance: "w1", generation: 1, limit })))
    // Lets the forked fibers run as far as they can without time passing.
    const settle = Effect.repeatN(Effect.yieldNow(), 50)
    const events = () => logs.map((l) => l.event)
    return { rotation, apiError, settle, logs, events, sent, restarts }
  })

const rateLimited = Limit.RateLimited({ resetAt: undefined, message: "API Error: Request rejected (429)" })

describe("Rotation", () => {
  it.scoped("a rate limit while every credential cools: the instance waits for the earliest reset, then moves to it", () =>
    Effect.gen(function*() {
      const run = yield* setup(PANE_429)
      yield* run.apiError(rateLimited)
      yield* run.settle
      expect(run.events()).toEqual(["credential.cooling", "credentials.exhausted"])
      expect(run.logs[1]).toMatchObject({ instance: "w1", until: new Date(30_000).toISOString(), cooling: ["key-1", "key-2"] })
      yield* TestClock.adjust(Duration.millis(29_999))
      expect(run.restarts).toEqual([])
      yield* TestClock.adjust(Duration.millis(1))
      yield* run.settle
      expect(run.restarts).toEqual([{ reason: "rate limit on credential key-1; moved to key-2", credential: "key-2" }])
      expect(run.logs.at(-1)).toMatchObject({ event: "credential.rotated", instance: "w1", from: "key-1", to: "key-2", reason: "rate limit" })
    }))

  it.scoped("the wind-down interrupts a rotation waiting for a reset: nothing relaunches the instance afterwards", () =>
    Effect.gen(function*() {
      const run = yield* setup(PANE_429)
      yield* run.apiError(rateLimited)
      yield* run.settle
      expect(run.events()).toEqual(["credential.cooling", "credentials.exhausted"])
      yield* run.rotation.stop
      yield* TestClock.adjust(Duration.hours(2))
      yield* run.settle
      expect(run.restarts).toEqual([])
      expect(run.sent).toEqual([])
      expect(run.events()).toEqual(["credential.cooling", "credentials.exhausted"])
      // Nor does an API error reported after the wind-down began.
      yield* run.apiError(rateLimited)
      yield* TestClock.adjust(Duration.hours(2))
      yield* run.settle
      expect(run.events()).toEqual(["credential.cooling", "credentials.exhausted"])
    }))

  it.scoped("an overload: no rotation, the instance is told to go on after the pool's backoff", () =>
    Effect.gen(function*() {
      const run = yield* setup(PANE_529)
      yield* run.apiError(Limit.Overloaded({ message: "529" }))
      yield* run.settle
      expect(run.logs).toEqual([{ event: "api.overloaded", instance: "w1", credential: "key-1", retryInMs: 10_000 }])
      yield* TestClock.adjust(Duration.millis(9_999))
      expect(run.sent).toEqual([])
      yield* TestClock.adjust(Duration.millis(1))
      yield* run.settle
      expect(run.sent).toEqual(["[cco] The API was overloaded; it should answer again now. Continue your task; resend what failed."])
      expect(run.restarts).toEqual([])
    }))

  it.scoped("an error the pane does not show: nothing in the pool changes; the instance is told to go on 30 s later", () =>
    Effect.gen(function*() {
      const run = yield* setup(PANE_QUIET)
      yield* run.apiError(rateLimited)
      // The pane is read for 2.75 s (12 reads, 250 ms apart) before the claim counts as unconfirmed.
      yield* TestClock.adjust(Duration.millis(2_750))
      yield* run.settle
      expect(run.logs).toEqual([{ event: "api.error-unconfirmed", instance: "w1", credential: "key-1", claimed: "RateLimited", retryInMs: 30_000 }])
      yield* TestClock.adjust(Duration.millis(29_999))
      expect(run.sent).toEqual([])
      yield* TestClock.adjust(Duration.millis(1))
      yield* run.settle
      expect(run.sent).toEqual(["[cco] Your last turn ended on an API error. Continue your task; resend what failed."])
    }))

  it.scoped("an instance's API errors are each handled at once, beside one still waiting", () =>
    Effect.gen(function*() {
      const run = yield* setup(PANE_529)
      yield* run.apiError(Limit.Overloaded({ message: "529" }))
      yield* run.apiError(Limit.Overloaded({ message: "529" }))
      yield* run.settle
      // The second overload in a row on key-1: the pool's backoff doubles.
      expect(run.logs.map((l) => l.retryInMs)).toEqual([10_000, 20_000])
      yield* TestClock.adjust(Duration.seconds(10))
      yield* run.settle
      expect(run.sent.length).toBe(1)
      yield* TestClock.adjust(Duration.seconds(10))
      yield* run.settle
      expect(run.sent.length).toBe(2)
      // The wind-down interrupts every one of them.
      yield* run.apiError(Limit.Overloaded({ message: "529" }))
      yield* run.settle
      yield* run.rotation.stop
      yield* TestClock.adjust(Duration.minutes(10))
      yield* run.settle
      expect(run.sent.length).toBe(2)
    }))
})
