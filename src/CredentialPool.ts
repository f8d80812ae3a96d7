// The credential pool as a pure state machine over an immutable PoolState: which credential each instance runs on,
// which are cooling down after a rate limit, which are invalid for the run. Time comes in as epoch milliseconds.
import { Data, Duration, Either, Schema } from "effect"
import { backoff, defaultPolicy, type PoolPolicy } from "./CoolingPolicy.js"

/** The name of the user's own login in the pool, in logs and in state.json. */
export const OAUTH_CREDENTIAL = "oauth"

/** The user's own login, an API key, a subscription token (CLAUDE_CODE_OAUTH_TOKEN), a subscription login dir. */
export type CredentialKind = "oauth" | "api-key" | "token" | "login"

export class AllCredentialsCooling extends Schema.TaggedError<AllCredentialsCooling>()("AllCredentialsCooling", {
  /** The earliest time a credential becomes usable again. */
  until: Schema.DateFromSelf,
  cooling: Schema.Array(Schema.String),
  /** Every one cools until a reset its limit stated (a usage window), none on a backoff cco chose. */
  stated: Schema.optionalWith(Schema.Boolean, { default: () => false })
}) {
  override get message(): string {
    return `every usable credential is cooling down after a rate limit (${this.cooling.join(", ")}); ` +
      `the first is usable again at ${this.until.toISOString()}`
  }
}

export class NoUsableCredential extends Schema.TaggedError<NoUsableCredential>()("NoUsableCredential", {
  invalid: Schema.Array(Schema.Struct({ name: Schema.String, reason: Schema.String }))
}) {
  override get message(): string {
    return this.invalid.length === 0
      ? "no credential is configured"
      : `no usable credential left: ${this.invalid.map((c) => `${c.name} (${c.reason})`).join(", ")}`
  }
}

export type CredentialStatus = Data.TaggedEnum<{
  Available: {}
  /** Epoch milliseconds; `stated` when the limit named that time (a usage window's reset), not a backoff. */
  Cooling: { readonly until: number; readonly stated?: boolean }
  Invalid: { readonly reason: string }
}>
export const CredentialStatus = Data.taggedEnum<CredentialStatus>()

export interface CredentialState {
  readonly name: string
  readonly kind: CredentialKind
  readonly tier: number
  readonly status: CredentialStatus
  /** Instances running on it, in the order they got it. */
  readonly users: ReadonlyArray<string>
  /** Rate and usage limits hit in this run. */
  readonly rateLimits: number
  /** Rate limits since the last success: the exponent of the backoff when no reset time is known. */
  readonly consecutiveRateLimits: number
  /** Overloads since the last success: the exponent of the retry backoff. */
  readonly consecutiveOverloads: number
  readonly lastError: string | undefined
}

export interface PoolState {
  readonly policy: PoolPolicy
  /** In the mode's order. */
  readonly credentials: ReadonlyArray<CredentialState>
}

/** One credential as shown in state.json, status and logs: its name, never a value. */
export interface CredentialSnapshot {
  readonly name: string
  readonly kind: CredentialKind
  readonly status: "available" | "cooling" | "invalid"
  /** ISO time a cooling credential becomes usable again. */
  readonly until?: string
  /** Why an invalid credential was dropped. */
  readonly reason?: string
  readonly users: ReadonlyArray<string>
  readonly rateLimits: number
  readonly lastError?: string
}

export interface Reported {
  readonly state: PoolState
  /** Instances on the credential that must move to another one. */
  readonly moved: ReadonlyArray<string>
}

const updateCredential = (
  state: PoolState,
  name: string,
  f: (c: CredentialState) => CredentialState
): PoolState => ({ ...state, credentials: state.credentials.map((c) => (c.name === name ? f(c) : c)) })

const withoutUser = (state: PoolState, instance: string): PoolState => ({
  ...state,
  credentials: state.credentials.map((c) =>
    c.users.includes(instance) ? { ...c, users: c.users.filter((u) => u !== instance) } : c
  )
})

/**
 * The pool's transitions. Every function is pure: time comes in as epoch milliseconds, a new state goes out.
 *
 * Choosing a credential (`acquire`): cooling credentials whose time has passed are available again; among the
 * available ones, the lowest tier wins (the mode's order: OAuth before keys in `oauth` mode, keys before OAuth in
 * `api-keys-first`); within it, the credential with the fewest users (not counting the instance itself), ties by
 * the mode's order — so new instances spread across the keys. An instance that restarts keeps its credential when
 * that one is available and in the winning tier.
 */
export const Pool = {
  make: (credentials: ReadonlyArray<{ readonly name: string; readonly kind: CredentialKind; readonly tier: number }>, policy: PoolPolicy = defaultPolicy): PoolState => ({
    policy,
    credentials: credentials.map((c): CredentialState => ({
      name: c.name,
      kind: c.kind,
      tier: c.tier,
      status: CredentialStatus.Available(),
      users: [],
      rateLimits: 0,
      consecutiveRateLimits: 0,
      consecutiveOverloads: 0,
      lastError: undefined
    }))
  }),

  /** Cooling credentials whose time has come are available again. */
  refresh: (state: PoolState, now: number): PoolState =>
    state.credentials.some((c) => c.status._tag === "Cooling" && c.status.until <= now)
      ? {
        ...state,
        credentials: state.credentials.map((c) =>
          c.status._tag === "Cooling" && c.status.until <= now ? { ...c, status: CredentialStatus.Available() } : c
        )
      }
      : state,

  credentialOf: (state: PoolState, instance: string): string | undefined =>
    state.credentials.find((c) => c.users.includes(instance))?.name,

  acquire: (
    state: PoolState,
    instance: string,
    now: number
  ): Either.Either<{ readonly state: PoolState; readonly credential: string }, AllCredentialsCooling | NoUsableCredential> => {
    const fresh = Pool.refresh(state, now)
    const available = fresh.credentials.filter((c) => c.status._tag === "Available")
    if (available.length === 0) {
      const cooling = fresh.credentials.filter((c) => c.status._tag === "Cooling")
      if (cooling.length === 0) {
        return Either.left(
          new NoUsableCredential({
            invalid: fresh.credentials.map((c) => ({
              name: c.name,
              reason: c.status._tag === "Invalid" ? c.status.reason : "unavailable"
            }))
          })
        )
      }
      const until = Math.min(...cooling.map((c) => (c.status._tag === "Cooling" ? c.status.until : Infinity)))
      const stated = cooling.every((c) => c.status._tag === "Cooling" && c.status.stated === true)
      return Either.left(new AllCredentialsCooling({ until: new Date(until), cooling: cooling.map((c) => c.name), stated }))
    }
    const tier = Math.min(...available.map((c) => c.tier))
    const candidates = available.filter((c) => c.tier === tier)
    const current = candidates.find((c) => c.users.includes(instance))
    const others = (c: CredentialState) => c.users.filter((u) => u !== instance).length
    // Array order is the mode's order, and reduce keeps the first of equals.
    const chosen = current ?? candidates.reduce((best, c) => (others(c) < others(best) ? c : best))
    const released = withoutUser(fresh, instance)
    return Either.right({
      credential: chosen.name,
      state: updateCredential(released, chosen.name, (c) => ({ ...c, users: [...c.users, instance] }))
    })
  },

  release: (state: PoolState, instance: string): PoolState => withoutUser(state, instance),

  /**
   * A rate or usage limit on a credential: it cools until `resetAt` when that is known and ahead (at most
   * `maxCooling` from now), else for the backoff (60 s, doubling per limit since the last success, at most 1 h). All its users must move. Reported
   * again while it cools (its other instances' 429s), it only takes a later stated reset; nobody moves again.
   * An unknown or invalid credential changes nothing.
   */
  reportRateLimit: (
    state: PoolState,
    name: string,
    now: number,
    options: { readonly resetAt?: Date | undefined; readonly message?: string | undefined } = {}
  ): Reported & { readonly until: number | undefined } => {
    const c = state.credentials.find((x) => x.name === name)
    if (c === undefined || c.status._tag === "Invalid") {
      return { state, moved: [], until: undefined }
    }
    // A stated reset beyond maxCooling (or an unreadable one) is cut to maxCooling.
    const stated = options.resetAt?.getTime()
    const latest = now + Duration.toMillis(state.policy.maxCooling)
    const reset = stated === undefined || Number.isNaN(stated) ? undefined : Math.min(stated, latest)
    if (c.status._tag === "Cooling" && c.status.until > now) {
      // Already cooling: another of its instances met the same limit. That is not a further limit (no doubling),
      // and its users are already moving; only a later stated reset extends the cooling.
      const extended = reset !== undefined && reset > c.status.until
      const until = extended ? reset : c.status.until
      const named = extended || c.status.stated === true
      const next = updateCredential(state, name, (x) => ({ ...x, status: CredentialStatus.Cooling({ until, ...(named ? { stated: true } : {}) }) }))
      return { state: next, moved: [], until }
    }
    const computed = reset !== undefined && reset > now
      ? reset
      : now + Duration.toMillis(backoff(state.policy.rateLimit, c.consecutiveRateLimits))
    const until = c.status._tag === "Cooling" && c.status.until > computed ? c.status.until : computed
    const named = reset !== undefined && until === reset
    const next = updateCredential(state, name, (x) => ({
      ...x,
      status: CredentialStatus.Cooling({ until, ...(named ? { stated: true } : {}) }),
      rateLimits: x.rateLimits + 1,
      consecutiveRateLimits: x.consecutiveRateLimits + 1,
      lastError: options.message ?? `rate limited until ${new Date(until).toISOString()}`
    }))
    return { state: next, moved: c.users, until }
  },

  /** A 401 or an unusable login: the credential is out for the run (the first reason is kept); all its users move. */
  reportInvalid: (state: PoolState, name: string, reason: string): Reported => {
    const c = state.credentials.find((x) => x.name === name)
    if (c === undefined) return { state, moved: [] }
    const next = updateCredential(state, name, (x) => ({
      ...x,
      status: x.status._tag === "Invalid" ? x.status : CredentialStatus.Invalid({ reason }),
      lastError: reason
    }))
    return { state: next, moved: c.users }
  },

  /** A 529: no rotation; how long to wait before retrying on the same credential (10 s, doubling, at most 5 min). */
  reportOverloaded: (
    state: PoolState,
    name: string
  ): { readonly state: PoolState; readonly retryAfter: Duration.Duration } => {
    const c = state.credentials.find((x) => x.name === name)
    if (c === undefined) return { state, retryAfter: state.policy.overload.initial }
    return {
      retryAfter: backoff(state.policy.overload, c.consecutiveOverloads),
      state: updateCredential(state, name, (x) => ({
        ...x,
        consecutiveOverloads: x.consecutiveOverloads + 1,
        lastError: "overloaded"
      }))
    }
  },

  /**
   * A turn succeeded on the credential: the backoffs start over. A cooling credential stays cooling (another
   * instance may have finished a turn just before the limit).
   */
  reportSuccess: (state: PoolState, name: string): PoolState => {
    const c = state.credentials.find((x) => x.name === name)
    if (c === undefined || (c.consecutiveRateLimits === 0 && c.consecutiveOverloads === 0)) return state
    return updateCredential(state, name, (x) => ({ ...x, consecutiveRateLimits: 0, consecutiveOverloads: 0 }))
  },

  /** When the next cooling credential becomes available (epoch ms), for waking instances that wait. */
  nextReset: (state: PoolState, now: number): number | undefined => {
    const untils = Pool.refresh(state, now).credentials.flatMap((c) => (c.status._tag === "Cooling" ? [c.status.until] : []))
    return untils.length === 0 ? undefined : Math.min(...untils)
  },

  snapshot: (state: PoolState, now: number): ReadonlyArray<CredentialSnapshot> =>
    Pool.refresh(state, now).credentials.map((c): CredentialSnapshot => ({
      name: c.name,
      kind: c.kind,
      status: c.status._tag === "Available" ? "available" : c.status._tag === "Cooling" ? "cooling" : "invalid",
      ...(c.status._tag === "Cooling" ? { until: new Date(c.status.until).toISOString() } : {}),
      ...(c.status._tag === "Invalid" ? { reason: c.status.reason } : {}),
      users: c.users,
      rateLimits: c.rateLimits,
      ...(c.lastError === undefined ? {} : { lastError: c.lastError })
    }))
}
