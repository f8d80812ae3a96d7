// The credential pool: which credential (the user's OAuth login or an API key) each instance runs on, which are
// cooling down after a rate limit or invalid for the run, and a restart budget so that no instance loops.
// A pure state machine over an immutable PoolState, wrapped in the Auth service (a Ref, time from Clock).
import { Clock, Context, Data, Duration, Effect, Either, Layer, Redacted, Ref, Schema } from "effect"
import type { Credential } from "./Agent.js"
import type { ApiKeyCredential } from "./ApiKeysFile.js"
import type { AuthMode } from "./OrchestratorFile.js"

/** The name of the user's own login in the pool, in logs and in state.json. */
export const OAUTH_CREDENTIAL = "oauth"

export type CredentialKind = "oauth" | "api-key"

export class AllCredentialsCooling extends Schema.TaggedError<AllCredentialsCooling>()("AllCredentialsCooling", {
  /** The earliest time a credential becomes usable again. */
  until: Schema.DateFromSelf,
  cooling: Schema.Array(Schema.String)
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

export class AuthSetupError extends Schema.TaggedError<AuthSetupError>()("AuthSetupError", {
  message: Schema.String
}) {}

// ---------------------------------------------------------------------------------------------------------------
// Credentials in the mode's order

/** A credential with its kind and tier: lower tiers are used first, higher ones only when none below is available. */
export interface PoolCredential extends Credential {
  readonly kind: CredentialKind
  readonly tier: number
}

/**
 * The pool's credentials in the mode's order:
 * - `oauth`: the user's login first (tier 0), then the keys in file order (tier 1);
 * - `api-keys-first`: the keys (tier 0), the user's login last (tier 1);
 * - `api-keys-only`: the keys; none is an error, the run refuses to start.
 * The login's env is empty (the CLI finds the login in its config dir) unless `oauthEnv` is given, e.g. a
 * long-lived CLAUDE_CODE_OAUTH_TOKEN.
 */
export const credentialsFor = (
  mode: AuthMode,
  keys: ReadonlyArray<ApiKeyCredential>,
  oauthEnv: Readonly<Record<string, Redacted.Redacted<string>>> = {}
): Either.Either<ReadonlyArray<PoolCredential>, AuthSetupError> => {
  if (mode === "api-keys-only" && keys.length === 0) {
    return Either.left(
      new AuthSetupError({ message: "authMode \"api-keys-only\" needs at least one key in api-keys.json; none is configured" })
    )
  }
  if (mode !== "api-keys-only" && keys.some((k) => k.name === OAUTH_CREDENTIAL)) {
    return Either.left(
      new AuthSetupError({
        message: `api-keys.json: the key name "${OAUTH_CREDENTIAL}" is reserved for your own login; rename that key`
      })
    )
  }
  const oauth = (tier: number): PoolCredential => ({ name: OAUTH_CREDENTIAL, env: oauthEnv, kind: "oauth", tier })
  const asKeys = (tier: number) => keys.map((k): PoolCredential => ({ name: k.name, env: k.env, kind: "api-key", tier }))
  switch (mode) {
    case "oauth":
      return Either.right([oauth(0), ...asKeys(1)])
    case "api-keys-first":
      return Either.right([...asKeys(0), oauth(1)])
    case "api-keys-only":
      return Either.right(asKeys(0))
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The pure state machine

export type CredentialStatus = Data.TaggedEnum<{
  Available: {}
  /** Epoch milliseconds. */
  Cooling: { readonly until: number }
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

const backoff = (policy: Backoff, attempt: number): Duration.Duration => {
  const initial = Duration.toMillis(policy.initial)
  const max = Duration.toMillis(policy.max)
  return Duration.millis(Math.min(max, initial * 2 ** Math.min(attempt, 30)))
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
      return Either.left(new AllCredentialsCooling({ until: new Date(until), cooling: cooling.map((c) => c.name) }))
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
      const until = reset !== undefined && reset > c.status.until ? reset : c.status.until
      const next = updateCredential(state, name, (x) => ({ ...x, status: CredentialStatus.Cooling({ until }) }))
      return { state: next, moved: [], until }
    }
    const computed = reset !== undefined && reset > now
      ? reset
      : now + Duration.toMillis(backoff(state.policy.rateLimit, c.consecutiveRateLimits))
    const until = c.status._tag === "Cooling" && c.status.until > computed ? c.status.until : computed
    const next = updateCredential(state, name, (x) => ({
      ...x,
      status: CredentialStatus.Cooling({ until }),
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

// ---------------------------------------------------------------------------------------------------------------
// The Auth service

export interface AuthShape {
  readonly mode: AuthMode
  /** Names in the mode's order. */
  readonly names: ReadonlyArray<string>
  /** A credential for a new or restarting instance (see Pool for the choice); the instance leaves its old one. */
  readonly acquire: (instance: string) => Effect.Effect<Credential, AllCredentialsCooling | NoUsableCredential>
  /** As acquire, but while every credential is cooling, sleeps until the first is usable again and retries. */
  readonly acquireOrWait: (instance: string) => Effect.Effect<Credential, NoUsableCredential>
  readonly release: (instance: string) => Effect.Effect<void>
  /** Cools the credential (until resetAt, or by backoff); returns the instances that must move. */
  readonly reportRateLimit: (
    credential: string,
    options?: { readonly resetAt?: Date | undefined; readonly message?: string | undefined }
  ) => Effect.Effect<ReadonlyArray<string>>
  /** Drops the credential for the run; returns the instances that must move. */
  readonly reportInvalid: (credential: string, reason: string) => Effect.Effect<ReadonlyArray<string>>
  /** No rotation: how long to wait before retrying on the same credential. */
  readonly reportOverloaded: (credential: string) => Effect.Effect<Duration.Duration>
  readonly reportSuccess: (credential: string) => Effect.Effect<void>
  readonly credentialOf: (instance: string) => Effect.Effect<string | undefined>
  /** When the next cooling credential becomes usable, if any is cooling. */
  readonly nextReset: Effect.Effect<Date | undefined>
  /** Names, statuses and counters only. */
  readonly snapshot: Effect.Effect<ReadonlyArray<CredentialSnapshot>>
}

export class Auth extends Context.Tag("cco/Auth")<Auth, AuthShape>() {}

export interface AuthOptions {
  readonly authMode: AuthMode
  readonly apiKeys: ReadonlyArray<ApiKeyCredential>
  /** Environment for the OAuth credential, e.g. CLAUDE_CODE_OAUTH_TOKEN from `claude setup-token`. */
  readonly oauthEnv?: Readonly<Record<string, Redacted.Redacted<string>>>
  readonly policy?: Partial<PoolPolicy>
}

/** Every secret value in the pool, longest first, to scrub from the texts the pool keeps (reasons, last errors). */
const secretsOf = (credentials: ReadonlyArray<PoolCredential>): ReadonlyArray<string> =>
  credentials
    .flatMap((c) => Object.values(c.env).map((v) => Redacted.value(v)))
    .filter((v) => v.length >= 8)
    .sort((a, b) => b.length - a.length)

export const make = Effect.fn("Auth.make")(function*(options: AuthOptions) {
  const credentials = yield* credentialsFor(options.authMode, options.apiKeys, options.oauthEnv)
  const byName = new Map(credentials.map((c) => [c.name, c]))
  const secrets = secretsOf(credentials)
  // Reasons come from CLI output and API bodies; a key echoed there must not reach state.json or logs.
  const scrub = (text: string) => secrets.reduce((t, s) => t.split(s).join("<redacted>"), text)
  const policy: PoolPolicy = { ...defaultPolicy, ...options.policy }
  const ref = yield* Ref.make(Pool.make(credentials, policy))

  const toCredential = (name: string): Credential => {
    const c = byName.get(name)!
    return { name: c.name, env: c.env }
  }

  const acquire = Effect.fn("Auth.acquire")(function*(instance: string) {
    const now = yield* Clock.currentTimeMillis
    const result = yield* Ref.modify(
      ref,
      (state): readonly [Either.Either<string, AllCredentialsCooling | NoUsableCredential>, PoolState] => {
        const r = Pool.acquire(state, instance, now)
        return Either.isRight(r) ? [Either.right(r.right.credential), r.right.state] : [Either.left(r.left), state]
      }
    )
    const name = yield* result
    return toCredential(name)
  })

  const acquireOrWait = (instance: string): Effect.Effect<Credential, NoUsableCredential> =>
    acquire(instance).pipe(
      Effect.catchTag("AllCredentialsCooling", (cooling) =>
        Effect.gen(function*() {
          const now = yield* Clock.currentTimeMillis
          // In slices: a far reset never becomes one timer too long to fire.
          yield* Effect.sleep(waitSlice(cooling.until.getTime(), now))
          return yield* acquireOrWait(instance)
        }))
    )

  return Auth.of({
    mode: options.authMode,
    names: credentials.map((c) => c.name),
    acquire,
    acquireOrWait: Effect.fn("Auth.acquireOrWait")(function*(instance: string) {
      return yield* acquireOrWait(instance)
    }),
    release: Effect.fn("Auth.release")(function*(instance: string) {
      yield* Ref.update(ref, (state) => Pool.release(state, instance))
    }),
    reportRateLimit: Effect.fn("Auth.reportRateLimit")(function*(
      credential: string,
      report?: { readonly resetAt?: Date | undefined; readonly message?: string | undefined }
    ) {
      const now = yield* Clock.currentTimeMillis
      const message = report?.message === undefined ? undefined : scrub(report.message)
      return yield* Ref.modify(ref, (state) => {
        const r = Pool.reportRateLimit(state, credential, now, { resetAt: report?.resetAt, message })
        return [r.moved, r.state] as const
      })
    }),
    reportInvalid: Effect.fn("Auth.reportInvalid")(function*(credential: string, reason: string) {
      return yield* Ref.modify(ref, (state) => {
        const r = Pool.reportInvalid(state, credential, scrub(reason))
        return [r.moved, r.state] as const
      })
    }),
    reportOverloaded: Effect.fn("Auth.reportOverloaded")(function*(credential: string) {
      return yield* Ref.modify(ref, (state) => {
        const r = Pool.reportOverloaded(state, credential)
        return [r.retryAfter, r.state] as const
      })
    }),
    reportSuccess: Effect.fn("Auth.reportSuccess")(function*(credential: string) {
      yield* Ref.update(ref, (state) => Pool.reportSuccess(state, credential))
    }),
    credentialOf: Effect.fn("Auth.credentialOf")(function*(instance: string) {
      return Pool.credentialOf(yield* Ref.get(ref), instance)
    }),
    nextReset: Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      const at = Pool.nextReset(yield* Ref.get(ref), now)
      return at === undefined ? undefined : new Date(at)
    }),
    snapshot: Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      return Pool.snapshot(yield* Ref.get(ref), now)
    })
  })
})

export const layer = (options: AuthOptions) => Layer.effect(Auth, make(options))

// ---------------------------------------------------------------------------------------------------------------
// Restart budget

export interface RestartBudgetState {
  readonly max: number
  readonly windowMillis: number
  /** Per instance, the epoch ms of its restarts still inside the window. */
  readonly restarts: ReadonlyMap<string, ReadonlyArray<number>>
}

export type RestartDecision = Data.TaggedEnum<{
  /** The restart is counted; `used` includes it. */
  Allowed: { readonly used: number; readonly max: number }
  /** Over budget: nothing is counted; the next restart is allowed at `retryAt`. */
  Exhausted: { readonly used: number; readonly max: number; readonly retryAt: Date }
}>
export const RestartDecision = Data.taggedEnum<RestartDecision>()

/**
 * At most `max` restarts of one instance within a sliding `window` (default 5 per 10 minutes), shared by rotation
 * and crash recovery so that no instance loops. Pure; `makeRestartLimiter` wraps it with a Ref and the Clock.
 */
export const RestartBudget = {
  make: (options: { readonly max?: number; readonly window?: Duration.DurationInput } = {}): RestartBudgetState => ({
    max: options.max ?? 5,
    windowMillis: Duration.toMillis(Duration.decode(options.window ?? Duration.minutes(10))),
    restarts: new Map()
  }),

  tryRestart: (
    state: RestartBudgetState,
    instance: string,
    now: number
  ): { readonly decision: RestartDecision; readonly state: RestartBudgetState } => {
    const recent = (state.restarts.get(instance) ?? []).filter((t) => t > now - state.windowMillis)
    if (recent.length >= state.max) {
      return {
        decision: RestartDecision.Exhausted({
          used: recent.length,
          max: state.max,
          retryAt: new Date(recent[0]! + state.windowMillis)
        }),
        state: { ...state, restarts: new Map(state.restarts).set(instance, recent) }
      }
    }
    const used = [...recent, now]
    return {
      decision: RestartDecision.Allowed({ used: used.length, max: state.max }),
      state: { ...state, restarts: new Map(state.restarts).set(instance, used) }
    }
  },

  forget: (state: RestartBudgetState, instance: string): RestartBudgetState => {
    if (!state.restarts.has(instance)) return state
    const restarts = new Map(state.restarts)
    restarts.delete(instance)
    return { ...state, restarts }
  }
}

export interface RestartLimiter {
  /** Counts a restart of the instance if the budget allows it. */
  readonly tryRestart: (instance: string) => Effect.Effect<RestartDecision>
  /** Clears the instance's history (e.g. when it is retired). */
  readonly forget: (instance: string) => Effect.Effect<void>
}

export const makeRestartLimiter = (
  options: { readonly max?: number; readonly window?: Duration.DurationInput } = {}
): Effect.Effect<RestartLimiter> =>
  Effect.map(Ref.make(RestartBudget.make(options)), (ref) => ({
    tryRestart: Effect.fn("RestartLimiter.tryRestart")(function*(instance: string) {
      const now = yield* Clock.currentTimeMillis
      return yield* Ref.modify(ref, (state) => {
        const r = RestartBudget.tryRestart(state, instance, now)
        return [r.decision, r.state] as const
      })
    }),
    forget: (instance) => Ref.update(ref, (state) => RestartBudget.forget(state, instance))
  }))
