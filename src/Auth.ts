// The Auth service: the credentials of the run (the user's OAuth login and API keys) in the mode's order, handed to
// instances from the CredentialPool held in a Ref, with time from Clock; reasons it keeps are scrubbed of secrets.
import { Clock, Context, Duration, Effect, Either, Layer, Redacted, Ref, Schema } from "effect"
import type { Credential } from "./Agent.js"
import { type ApiKeyCredential, kindOf } from "./ApiKeysFile.js"
import { defaultPolicy, type PoolPolicy, retryWhileCooling } from "./CoolingPolicy.js"
import {
  type AllCredentialsCooling,
  type CredentialKind,
  type CredentialSnapshot,
  type NoUsableCredential,
  OAUTH_CREDENTIAL,
  Pool,
  type PoolState
} from "./CredentialPool.js"
import type { AuthMode } from "./OrchestratorFile.js"

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
 * The pool's credentials in the mode's order. Subscriptions (the user's own login, and api-keys.json's tokens and
 * login dirs) form one tier, API keys another; instances spread over the usable credentials of the lowest tier.
 * - `oauth`: the subscriptions first (tier 0: the user's login, then api-keys.json's in file order), then the keys
 *   in file order (tier 1);
 * - `api-keys-first`: the keys (tier 0), the subscriptions last (tier 1);
 * - `api-keys-only`: only what api-keys.json lists (the user's own login is not used): its subscriptions (tier 0),
 *   then its keys (tier 1); none is an error, the run refuses to start.
 * The user's own login is left out when it is not there (`ownLogin: false`) and api-keys.json lists subscriptions.
 * The login's env is empty (the CLI finds the login in its config dir) unless `oauthEnv` is given, e.g. a
 * long-lived CLAUDE_CODE_OAUTH_TOKEN.
 */
export const credentialsFor = (
  mode: AuthMode,
  keys: ReadonlyArray<ApiKeyCredential>,
  oauthEnv: Readonly<Record<string, Redacted.Redacted<string>>> = {},
  ownLogin = true
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
  const apiKeys = keys.filter((k) => kindOf(k) === "api-key")
  const subscriptions = keys.filter((k) => kindOf(k) !== "api-key")
  const own = ownLogin || subscriptions.length === 0
  const oauth = (tier: number): ReadonlyArray<PoolCredential> =>
    own ? [{ name: OAUTH_CREDENTIAL, env: oauthEnv, kind: "oauth", tier }] : []
  const entries = (list: ReadonlyArray<ApiKeyCredential>, tier: number) =>
    list.map((k): PoolCredential => ({
      name: k.name,
      env: k.env,
      kind: kindOf(k),
      tier,
      ...(k.loginDir === undefined ? {} : { loginDir: k.loginDir })
    }))
  switch (mode) {
    case "oauth":
      return Either.right([...oauth(0), ...entries(subscriptions, 0), ...entries(apiKeys, 1)])
    case "api-keys-first":
      return Either.right([...entries(apiKeys, 0), ...oauth(1), ...entries(subscriptions, 1)])
    case "api-keys-only":
      return Either.right(subscriptions.length === 0 ? entries(apiKeys, 0) : [...entries(subscriptions, 0), ...entries(apiKeys, 1)])
  }
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
  /** Whether the user's own login is there (a credentials file or oauthEnv); see credentialsFor. */
  readonly ownLogin?: boolean
  readonly policy?: Partial<PoolPolicy>
}

/** Every secret value in the pool, longest first, to scrub from the texts the pool keeps (reasons, last errors). */
const secretsOf = (credentials: ReadonlyArray<PoolCredential>): ReadonlyArray<string> =>
  credentials
    .flatMap((c) => Object.values(c.env).map((v) => Redacted.value(v)))
    .filter((v) => v.length >= 8)
    .sort((a, b) => b.length - a.length)

/** Taking a credential from the pool, at once or, while every credential is cooling, after waiting for one. */
const acquiring = (ref: Ref.Ref<PoolState>, toCredential: (name: string) => Credential) => {
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

  // In slices: a far reset never becomes one timer too long to fire.
  const acquireOrWait = (instance: string): Effect.Effect<Credential, NoUsableCredential> =>
    retryWhileCooling()(acquire(instance))

  return { acquire, acquireOrWait }
}

export const make = Effect.fn("Auth.make")(function*(options: AuthOptions) {
  const credentials = yield* credentialsFor(options.authMode, options.apiKeys, options.oauthEnv, options.ownLogin ?? true)
  const byName = new Map(credentials.map((c) => [c.name, c]))
  const secrets = secretsOf(credentials)
  // Reasons come from CLI output and API bodies; a key echoed there must not reach state.json or logs.
  const scrub = (text: string) => secrets.reduce((t, s) => t.split(s).join("<redacted>"), text)
  const policy: PoolPolicy = { ...defaultPolicy, ...options.policy }
  const ref = yield* Ref.make(Pool.make(credentials, policy))

  const toCredential = (name: string): Credential => {
    const c = byName.get(name)!
    return { name: c.name, env: c.env, ...(c.loginDir === undefined ? {} : { loginDir: c.loginDir }) }
  }
  const { acquire, acquireOrWait } = acquiring(ref, toCredential)

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
