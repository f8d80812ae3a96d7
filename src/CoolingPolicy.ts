// How long a credential cools after a rate limit, how long to wait on an overloaded one, and how a long wait is
// slept: the backoffs of the credential pool, as data (PoolPolicy), pure functions of time and the Schedule that
// waits for a cooling credential.
import { Clock, Duration, Effect, Schedule } from "effect"
import type { AllCredentialsCooling, NoUsableCredential } from "./CredentialPool.js"

export interface Backoff {
  readonly initial: Duration.Duration
  readonly max: Duration.Duration
}

export interface PoolPolicy {
  /** Cooling after a rate limit with no known reset time: 60 s, doubling per consecutive limit, at most 1 h. */
  readonly rateLimit: Backoff
  /** Retry delay on the same credential after a 529: 10 s, doubling, at most 5 min. */
  readonly overload: Backoff
  /**
   * The longest a credential cools, whatever reset time was stated (8 days: a weekly limit's reset fits). A reset
   * further ahead (a misread date, a monthly limit) is tried again then, rather than never.
   */
  readonly maxCooling: Duration.Duration
}

export const defaultPolicy: PoolPolicy = {
  rateLimit: { initial: Duration.seconds(60), max: Duration.hours(1) },
  overload: { initial: Duration.seconds(10), max: Duration.minutes(5) },
  maxCooling: Duration.days(8)
}

/**
 * The longest single sleep while waiting for a cooling credential. A wait is slept in slices of at most this and
 * checked again after each, so no timer is ever asked for more than it can hold (setTimeout's 2^31 ms, about 24.8
 * days, beyond which Effect's sleep never wakes).
 */
export const MAX_WAIT_SLICE: Duration.Duration = Duration.hours(1)

/** How long to sleep now when waiting until `until` (epoch ms): at least `min` ms, at most MAX_WAIT_SLICE. */
export const waitSlice = (until: number, now: number, min = 1): Duration.Duration => {
  const slice = Duration.toMillis(MAX_WAIT_SLICE)
  const left = until - now
  return Duration.millis(Number.isFinite(left) ? Math.min(slice, Math.max(min, left)) : slice)
}

/**
 * While every credential is cooling: try again when the first is usable (the error's `until`), sleeping in
 * slices (waitSlice, each at least `minMs`) and looking again after each. No usable credential ends the wait.
 */
export const untilCredentialResets = (minMs = 1) =>
  Schedule.identity<AllCredentialsCooling | NoUsableCredential>().pipe(
    Schedule.whileInput((e) => e._tag === "AllCredentialsCooling"),
    Schedule.addDelayEffect((e) =>
      Effect.map(Clock.currentTimeMillis, (now) => e._tag === "AllCredentialsCooling" ? waitSlice(e.until.getTime(), now, minMs) : Duration.zero)
    )
  )

/** Retries an acquisition while every credential is cooling (untilCredentialResets): it fails only with NoUsableCredential. */
export const retryWhileCooling = (minMs = 1) =>
<A, R>(self: Effect.Effect<A, AllCredentialsCooling | NoUsableCredential, R>): Effect.Effect<A, NoUsableCredential, R> =>
  self.pipe(
    Effect.retry(untilCredentialResets(minMs)),
    // The schedule ends only on NoUsableCredential: a cooling pool is always waited for.
    Effect.catchTag("AllCredentialsCooling", (e) => Effect.die(e))
  )

/** `initial` doubled per attempt, at most `max`. */
export const backoff = (policy: Backoff, attempt: number): Duration.Duration => {
  const initial = Duration.toMillis(policy.initial)
  const max = Duration.toMillis(policy.max)
  return Duration.millis(Math.min(max, initial * 2 ** Math.min(attempt, 30)))
}
