// Credentials for instances and what an API error does: a limited credential cools and its instances move on
// to another with --continue; an overload waits and goes on; an unconfirmed claim changes nothing in the pool.
import { Clock, Duration, Effect, Queue } from "effect"
import type { Credential } from "./Agent.js"
import { waitSlice } from "./CoolingPolicy.js"
import type { Delivery } from "./Delivery.js"
import * as EventsModule from "./Events.js"
import * as Instances from "./Instances.js"
import type * as Limits from "./Limits.js"
import * as PaneErrorLine from "./PaneErrorLine.js"
import { RunError, type RunContext } from "./RunContext.js"
import * as StopFailure from "./StopFailure.js"

// --- rate limits and rotation: a limited credential cools, its instances move on with --continue
const moveOff = (env: RotationEnv, name: string, from: string, why: string): Effect.Effect<void> => {
  const { auth, runLog, update, send, restart } = env
  return Effect.gen(function*() {
    const next = yield* auth.acquire(name).pipe(Effect.either)
    if (next._tag === "Left") {
      if (next.left._tag === "NoUsableCredential") {
        yield* runLog.log("credentials.none-usable", { instance: name })
        return yield* update(name, Instances.stopped)
      }
      // Every credential is cooling: wait for the earliest reset, then go on.
      const until = next.left.until
      yield* update(name, Instances.rateLimited)
      yield* runLog.log("credentials.exhausted", { instance: name, until: until.toISOString(), cooling: next.left.cooling })
      yield* Effect.sleep(waitSlice(until.getTime(), yield* Clock.currentTimeMillis, 1000))
      return yield* moveOff(env, name, from, why)
    }
    const credential = next.right
    if (credential.name === from) {
      // The same credential is usable again (its reset passed): the session can simply go on.
      yield* update(name, Instances.limitReset)
      return yield* send(name, "[cco] The API limit has reset. Continue your task; resend what failed.")
    }
    yield* runLog.log("credential.rotated", { instance: name, from, to: credential.name, reason: why })
    yield* restart(name, `${why} on credential ${from}; moved to ${credential.name}`, credential)
  })
}

const onLimit = (env: RotationEnv, name: string, generation: number, claimed: Limits.Limit) => {
  const { auth, runLog, update, get, tmux, agent, send } = env
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
      yield* Effect.sleep(StopFailure.UNCONFIRMED_RETRY)
      const later = yield* get(name)
      if (!Instances.restsOnError(later, generation)) return
      return yield* send(name, "[cco] Your last turn ended on an API error. Continue your task; resend what failed.")
    }
    const limit = verdict.limit
    switch (limit._tag) {
      case "RateLimited":
      case "UsageLimit": {
        const movers = yield* auth.reportRateLimit(from, { resetAt: limit.resetAt, message: limit.message })
        const until = (yield* auth.snapshot).find((c) => c.name === from)?.until
        yield* runLog.log("credential.cooling", { credential: from, until, reason: limit._tag === "UsageLimit" ? "usage limit" : "rate limit", instances: movers })
        yield* Effect.forEach(new Set([name, ...movers]), (m) => moveOff(env, m, from, limit._tag === "UsageLimit" ? "usage limit" : "rate limit"), { discard: true, concurrency: "unbounded" })
        return
      }
      case "AuthFailed": {
        const movers = yield* auth.reportInvalid(from, limit.message)
        yield* runLog.log("credential.invalid", { credential: from, reason: limit.message, instances: movers })
        yield* Effect.forEach(new Set([name, ...movers]), (m) => moveOff(env, m, from, "authentication failed"), { discard: true, concurrency: "unbounded" })
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
}

// A credential for an instance; while every one is cooling, the instance waits for the earliest reset.
export const makeCredentialFor = (ctx: RunContext) => {
  const { auth, runLog, update } = ctx
  return (name: string): Effect.Effect<Credential, RunError> =>
    auth.acquire(name).pipe(
      Effect.catchTag("AllCredentialsCooling", (e) =>
        runLog.log("credentials.exhausted", { instance: name, until: e.until.toISOString(), cooling: e.cooling }).pipe(
          Effect.zipRight(update(name, Instances.rateLimited)),
          Effect.zipRight(auth.acquireOrWait(name))
        )),
      Effect.catchTag("NoUsableCredential", (e) =>
        Effect.fail(new RunError({ reason: "auth", message: `no usable credential left: ${e.invalid.map((i) => `${i.name} (${i.reason})`).join(", ")}` })))
    )
}

export interface RotationDeps {
  readonly send: Delivery["send"]
  readonly restart: (name: string, reason: string, next?: Credential) => Effect.Effect<void>
}

type RotationEnv = RunContext & RotationDeps

export const makeRotation = (ctx: RunContext, deps: RotationDeps) => {
  const { runLog } = ctx
  const env: RotationEnv = { ...ctx, ...deps }
  const consume = Queue.take(ctx.limitEvents).pipe(
    Effect.flatMap(({ generation, instance, limit }) =>
      Effect.forkIn(
        onLimit(env, instance, generation, limit).pipe(
          Effect.catchAllCause((cause) => runLog.log("limit.failed", { instance, limit: limit._tag, cause: EventsModule.describeCause(cause) }))
        ),
        ctx.scope
      )),
    Effect.forever,
    Effect.forkIn(ctx.scope)
  )
  return { consume }
}
