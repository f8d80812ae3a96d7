// Credentials for instances and what an API error does: a limited credential cools and its instances move on
// to another with --continue; an overload waits and goes on; an unconfirmed claim changes nothing in the pool.
// Each instance's API errors are handled under its own fiber (a FiberMap), which the wind-down interrupts: no
// rotation relaunches an instance once the run ends.
import { Clock, Deferred, Duration, Effect, Fiber, FiberMap, Queue } from "effect"
import type { AgentShape, Credential } from "./Agent.js"
import { retryWhileCooling } from "./CoolingPolicy.js"
import type { AllCredentialsCooling } from "./CredentialPool.js"
import type { Delivery } from "./Delivery.js"
import * as EventsModule from "./Events.js"
import * as Instances from "./Instances.js"
import type * as Limits from "./Limits.js"
import * as PaneErrorLine from "./PaneErrorLine.js"
import { RunError, type RunContext } from "./RunContext.js"
import type { RunLogShape } from "./RunLog.js"
import * as StopFailure from "./StopFailure.js"
import type { TmuxShape } from "./Tmux.js"

/** What rotation uses of the run; with `end`, `run` and `config` it ends a run whose every credential cools past its deadline. */
export type RotationContext = Pick<RunContext, "auth" | "update" | "get" | "specs" | "limitEvents"> & Partial<Pick<RunContext, "end" | "run" | "config">> & {
  readonly runLog: Pick<RunLogShape, "log">
  readonly tmux: Pick<TmuxShape, "capturePane">
  readonly agent: Pick<AgentShape, "sessionName">
}

/** An API error a hook reported for one session (generation) of an instance. */
export interface LimitEvent {
  readonly instance: string
  readonly generation: number
  readonly limit: Limits.Limit
}

/**
 * Every credential is cooling: the instance waits in rate-limited for the earliest reset. When every one is in a
 * usage window whose stated reset lies at or after the run's deadline, nothing can work again in this run: it winds
 * down now (end reason usage-limit) and says why, rather than sit idle until its time limit. (A backoff cco chose
 * after a bare 429 is no such promise: the run then waits, and its time limit ends it.)
 */
const exhausted = (
  ctx: Pick<RotationContext, "update" | "end" | "run" | "config"> & { readonly runLog: Pick<RunLogShape, "log"> },
  name: string,
  e: AllCredentialsCooling
) =>
  Effect.gen(function*() {
    yield* ctx.update(name, Instances.rateLimited)
    yield* ctx.runLog.log("credentials.exhausted", { instance: name, until: e.until.toISOString(), cooling: e.cooling })
    if (ctx.end === undefined || ctx.run === undefined || ctx.config === undefined) return
    const deadline = ctx.run.startedAt + ctx.config.maxRunDurationMinutes * 60_000
    if (!e.stated || e.until.getTime() < deadline) return
    // Said before the end is signalled: the wind-down then interrupts this fiber.
    if (!(yield* Deferred.isDone(ctx.end))) {
      yield* ctx.runLog.log("run.usage-limit", {
        until: e.until.toISOString(),
        deadline: new Date(deadline).toISOString(),
        cooling: e.cooling,
        message: `every credential is in its usage window; the earliest reset (${e.until.toISOString()}) is after the run's time limit (${
          new Date(deadline).toISOString()
        }), so the run winds down now`
      })
      yield* Deferred.succeed(ctx.end, "usage-limit")
    }
  })

// --- rate limits and rotation: a limited credential cools, its instances move on with --continue
const moveOff = (env: RotationEnv, name: string, from: string, why: string): Effect.Effect<void> => {
  const { auth, runLog, update, send, restart } = env
  return Effect.gen(function*() {
    const credential = yield* auth.acquire(name).pipe(
      // Every credential is cooling: wait for the earliest reset, then go on (or end a run that cannot go on).
      Effect.tapErrorTag("AllCredentialsCooling", (e) => exhausted(env, name, e)),
      retryWhileCooling(1000)
    )
    if (credential.name === from) {
      // The same credential is usable again (its reset passed): the session can simply go on.
      yield* update(name, Instances.limitReset)
      return yield* send(name, "[cco] The API limit has reset. Continue your task; resend what failed.")
    }
    yield* runLog.log("credential.rotated", { instance: name, from, to: credential.name, reason: why })
    yield* restart(name, `${why} on credential ${from}; moved to ${credential.name}`, credential)
  }).pipe(
    Effect.catchTag("NoUsableCredential", () =>
      runLog.log("credentials.none-usable", { instance: name }).pipe(Effect.zipRight(update(name, Instances.stopped))))
  )
}

/** What each confirmed kind of API error does, on the credential `from` the failed session ran on. */
const onConfirmed = (env: RotationEnv, name: string, from: string) => {
  const { auth, runLog, send } = env
  // A limited credential cools; the instance and every other on it move off.
  const cool = (limit: Limits.RateLimited | Limits.UsageLimit, why: string) =>
    Effect.gen(function*() {
      const movers = yield* auth.reportRateLimit(from, { resetAt: limit.resetAt, message: limit.message })
      const until = (yield* auth.snapshot).find((c) => c.name === from)?.until
      yield* runLog.log("credential.cooling", { credential: from, until, reason: why, instances: movers })
      yield* Effect.forEach(new Set([name, ...movers]), (m) => moveOff(env, m, from, why), { discard: true, concurrency: "unbounded" })
    })
  return {
    RateLimited: (limit: Limits.RateLimited) => cool(limit, "rate limit"),
    UsageLimit: (limit: Limits.UsageLimit) => cool(limit, "usage limit"),
    AuthFailed: (limit: Limits.AuthFailed) =>
      Effect.gen(function*() {
        const movers = yield* auth.reportInvalid(from, limit.message)
        yield* runLog.log("credential.invalid", { credential: from, reason: limit.message, instances: movers })
        yield* Effect.forEach(new Set([name, ...movers]), (m) => moveOff(env, m, from, "authentication failed"), { discard: true, concurrency: "unbounded" })
      }),
    Overloaded: () =>
      Effect.gen(function*() {
        // Not the credential's fault: retry on the same one after a backoff (the pool's, doubling per overload).
        const overloadBackoff = yield* auth.reportOverloaded(from)
        yield* runLog.log("api.overloaded", { instance: name, credential: from, retryInMs: Duration.toMillis(overloadBackoff) })
        yield* send(name, "[cco] The API was overloaded; it should answer again now. Continue your task; resend what failed.").pipe(
          Effect.delay(overloadBackoff)
        )
      }),
    Other: (limit: Limits.OtherApiError) => runLog.log("api.error", { instance: name, credential: from, message: limit.message })
  }
}

const onLimit = (env: RotationEnv, name: string, generation: number, claimed: Limits.Limit) => {
  const { runLog, update, get, tmux, agent, send } = env
  return Effect.gen(function*() {
    // A hook can be forged by the agent: the CLI's own error line on the pane decides (see StopFailure.confirmStopFailure).
    const line = claimed._tag === "Other" ? undefined : yield* PaneErrorLine.awaitCliErrorLine(tmux.capturePane(agent.sessionName(name)))
    const verdict = StopFailure.confirmStopFailure(claimed, line, new Date(yield* Clock.currentTimeMillis))
    const inst = yield* get(name)
    // A failure of a session being replaced (or already replaced) says nothing about the new credential.
    if (generation !== inst.generation || Instances.startingOrRestarting(inst.phase)) {
      return yield* runLog.log("api.error-ignored", { instance: name, generation, current: inst.generation, limit: claimed._tag })
    }
    const from = inst.credential
    if (verdict._tag === "Unconfirmed") {
      // Nothing in the pool changes; only this instance is told to go on, later, if it still rests on the error.
      yield* runLog.log("api.error-unconfirmed", { instance: name, credential: from, claimed: claimed._tag, retryInMs: Duration.toMillis(StopFailure.UNCONFIRMED_RETRY) })
      yield* update(name, (i) => Instances.errorUnconfirmed(i, generation))
      return yield* Effect.gen(function*() {
        const later = yield* get(name)
        if (!Instances.restsOnError(later, generation)) return
        yield* send(name, "[cco] Your last turn ended on an API error. Continue your task; resend what failed.")
      }).pipe(Effect.delay(StopFailure.UNCONFIRMED_RETRY))
    }
    // The confirmed error fails the turn; its tag chooses what happens.
    return yield* Effect.fail(verdict.limit).pipe(Effect.catchTags(onConfirmed(env, name, from)))
  })
}

// A credential for an instance; while every one is cooling, the instance waits for the earliest reset.
export const makeCredentialFor = (ctx: Pick<RotationContext, "auth" | "runLog" | "update" | "end" | "run" | "config">) => {
  const { auth } = ctx
  return (name: string): Effect.Effect<Credential, RunError> =>
    auth.acquire(name).pipe(
      Effect.catchTag("AllCredentialsCooling", (e) => exhausted(ctx, name, e).pipe(Effect.zipRight(auth.acquireOrWait(name)))),
      Effect.catchTag("NoUsableCredential", (e) =>
        Effect.fail(new RunError({ reason: "auth", message: `no usable credential left: ${e.invalid.map((i) => `${i.name} (${i.reason})`).join(", ")}` })))
    )
}

export interface RotationDeps {
  readonly send: Delivery["send"]
  readonly restart: (name: string, reason: string, next?: Credential) => Effect.Effect<void>
}

type RotationEnv = RotationContext & RotationDeps

/**
 * Rotation: each API error goes to its instance's fiber, which handles it at once, beside any earlier one still
 * waiting (a forged claim must not delay a real one); `stop` (the wind-down) interrupts them all, waits included.
 */
export const makeRotation = (ctx: RotationContext, deps: RotationDeps) =>
  Effect.gen(function*() {
    const { runLog } = ctx
    const env: RotationEnv = { ...ctx, ...deps }
    const handlers = yield* FiberMap.make<string>()
    const inboxes = new Map(yield* Effect.forEach(ctx.specs, (spec) => Effect.map(Queue.unbounded<LimitEvent>(), (q) => [spec.name, q] as const)))
    const handle = ({ generation, instance, limit }: LimitEvent) =>
      onLimit(env, instance, generation, limit).pipe(
        Effect.catchAllCause((cause) => runLog.log("limit.failed", { instance, limit: limit._tag, cause: EventsModule.describeCause(cause) }))
      )
    const dispatch = Queue.take(ctx.limitEvents).pipe(
      Effect.flatMap((event) => {
        const inbox = inboxes.get(event.instance)
        return inbox === undefined
          ? runLog.log("limit.failed", { instance: event.instance, limit: event.limit._tag, cause: "unknown instance" })
          : Queue.offer(inbox, event)
      }),
      Effect.forever
    )
    // Each error is handled at once, beside any still being handled (their waits, too), by a child of the
    // instance's fiber: interrupting that fiber interrupts them all, and waits for them.
    const instanceFiber = (inbox: Queue.Queue<LimitEvent>) => Effect.forever(Effect.flatMap(Queue.take(inbox), (event) => Effect.fork(handle(event))))
    yield* Effect.forEach(inboxes, ([name, inbox]) => FiberMap.run(handlers, name, instanceFiber(inbox)), { discard: true })
    const dispatcher = yield* Effect.forkScoped(dispatch)
    // Nothing takes API errors any more, and no handler (nor its wait for a credential) goes on to relaunch anything.
    const stop = Fiber.interrupt(dispatcher).pipe(Effect.zipRight(FiberMap.clear(handlers)))
    return { stop }
  })

export type Rotation = Effect.Effect.Success<ReturnType<typeof makeRotation>>
