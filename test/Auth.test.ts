import { describe, expect, it } from "@effect/vitest"
import { Chunk, Clock, Duration, Effect, Either, Exit, Fiber, Redacted, TestClock } from "effect"
import * as Auth from "../src/Auth.js"
import { defaultPolicy, waitSlice } from "../src/CoolingPolicy.js"
import type { CredentialSnapshot } from "../src/CredentialPool.js"
import type { ApiKeyCredential } from "../src/ApiKeysFile.js"

const SECRET_1 = "sk-ant-api03-SECRET-ONE-aaaaaaaaaaaaaaaaaaaaaaaa"
const SECRET_2 = "sk-ant-api03-SECRET-TWO-bbbbbbbbbbbbbbbbbbbbbbbb"
const SECRET_3 = "sk-ant-api03-SECRET-THREE-cccccccccccccccccccccc"
const OAUTH_TOKEN = "sk-ant-oat01-OAUTH-TOKEN-dddddddddddddddddddd"

const key = (name: string, secret: string): ApiKeyCredential => ({
  name,
  env: { ANTHROPIC_API_KEY: Redacted.make(secret) }
})
const KEYS = [key("key-1", SECRET_1), key("key-2", SECRET_2)]

const names = (creds: ReadonlyArray<{ readonly name: string }>) => creds.map((c) => c.name)
const minutes = (n: number) => n * 60_000

/** The TestClock starts at 0; cooling ends are epoch ms from there. */
const untilOf = (snapshot: ReadonlyArray<CredentialSnapshot>, name: string) => {
  const until = snapshot.find((c) => c.name === name)?.until
  return until === undefined ? undefined : Date.parse(until)
}
const statusOf = (snapshot: ReadonlyArray<CredentialSnapshot>, name: string) =>
  snapshot.find((c) => c.name === name)?.status

describe("credentials in the mode's order", () => {
  it("oauth: the login first, then the keys", () => {
    const creds = Either.getOrThrow(Auth.credentialsFor("oauth", KEYS))
    expect(names(creds)).toEqual(["oauth", "key-1", "key-2"])
    expect(creds[0]!.env).toEqual({})
    expect(creds.map((c) => c.tier)).toEqual([0, 1, 1])
  })

  it("api-keys-first: the keys, then the login last", () => {
    expect(names(Either.getOrThrow(Auth.credentialsFor("api-keys-first", KEYS)))).toEqual(["key-1", "key-2", "oauth"])
  })

  it("api-keys-only: the keys only; none is an error and the run refuses to start", () =>
    Effect.gen(function*() {
      expect(names(Either.getOrThrow(Auth.credentialsFor("api-keys-only", KEYS)))).toEqual(["key-1", "key-2"])
      const error = yield* Effect.flip(Auth.make({ authMode: "api-keys-only", apiKeys: [] }))
      expect(error._tag).toBe("AuthSetupError")
      expect(error.message).toContain("api-keys-only")
    }).pipe(Effect.runSync))

  it("oauth with no keys is a pool of one; a key named like the login is refused", () => {
    expect(names(Either.getOrThrow(Auth.credentialsFor("oauth", [])))).toEqual(["oauth"])
    const clash = Auth.credentialsFor("oauth", [key("oauth", SECRET_1)])
    expect(Either.isLeft(clash) && clash.left.message).toContain("reserved")
  })

  it("the login can carry a long-lived token in its env", () => {
    const creds = Either.getOrThrow(
      Auth.credentialsFor("oauth", [], { CLAUDE_CODE_OAUTH_TOKEN: Redacted.make(OAUTH_TOKEN) })
    )
    expect(Redacted.value(creds[0]!.env.CLAUDE_CODE_OAUTH_TOKEN!)).toBe(OAUTH_TOKEN)
  })
})

describe("Auth pool", () => {
  it.effect("api-keys-only: new instances spread across the keys (fewest users, ties by order)", () =>
    Effect.gen(function*() {
      const auth = yield* Auth.make({ authMode: "api-keys-only", apiKeys: [...KEYS, key("key-3", SECRET_3)] })
      const got = []
      for (const instance of ["director", "em-1", "worker-1", "worker-2"]) {
        got.push((yield* auth.acquire(instance)).name)
      }
      expect(got).toEqual(["key-1", "key-2", "key-3", "key-1"])
      const credential = yield* auth.acquire("worker-3")
      expect(credential.name).toBe("key-2")
      expect(Redacted.value(credential.env.ANTHROPIC_API_KEY!)).toBe(SECRET_2)

      // Released users free their place: the next instance goes to the emptiest key.
      yield* auth.release("worker-1")
      expect((yield* auth.acquire("worker-4")).name).toBe("key-3")
      expect(yield* auth.credentialOf("worker-4")).toBe("key-3")
      expect(yield* auth.credentialOf("worker-1")).toBeUndefined()
    }))

  it.effect("a restarting instance keeps its credential when it is still available", () =>
    Effect.gen(function*() {
      const auth = yield* Auth.make({ authMode: "api-keys-only", apiKeys: KEYS })
      yield* auth.acquire("worker-1") // key-1
      yield* auth.acquire("worker-2") // key-2
      yield* auth.release("worker-1")
      // key-1 now has no user, yet worker-2 stays on key-2 and is not counted twice.
      expect((yield* auth.acquire("worker-2")).name).toBe("key-2")
      const snapshot = yield* auth.snapshot
      expect(snapshot.find((c) => c.name === "key-2")?.users).toEqual(["worker-2"])
      expect(snapshot.find((c) => c.name === "key-1")?.users).toEqual([])
    }))

  it.effect("oauth: every instance runs on the login while it is available; keys only after a limit", () =>
    Effect.gen(function*() {
      const auth = yield* Auth.make({ authMode: "oauth", apiKeys: KEYS })
      for (const instance of ["director", "worker-1", "worker-2"]) {
        expect((yield* auth.acquire(instance)).name).toBe("oauth")
      }
      const moved = yield* auth.reportRateLimit("oauth", { resetAt: new Date(minutes(30)) })
      expect(moved).toEqual(["director", "worker-1", "worker-2"])
      const now = []
      for (const instance of moved) now.push((yield* auth.acquire(instance)).name)
      expect(now).toEqual(["key-1", "key-2", "key-1"])
      expect((yield* auth.snapshot).find((c) => c.name === "oauth")?.users).toEqual([])

      // After the reset a restarting instance goes back to the login.
      yield* TestClock.adjust(Duration.minutes(30))
      expect((yield* auth.acquire("worker-1")).name).toBe("oauth")
    }))

  it.effect("api-keys-first: the login is used only when every key is cooling", () =>
    Effect.gen(function*() {
      const auth = yield* Auth.make({ authMode: "api-keys-first", apiKeys: KEYS })
      expect((yield* auth.acquire("w1")).name).toBe("key-1")
      expect((yield* auth.acquire("w2")).name).toBe("key-2")
      expect((yield* auth.acquire("w3")).name).toBe("key-1")
      yield* auth.reportRateLimit("key-1")
      expect((yield* auth.acquire("w1")).name).toBe("key-2")
      yield* auth.reportRateLimit("key-2")
      expect((yield* auth.acquire("w1")).name).toBe("oauth")
    }))

  it.effect("a rate limit cools the key until its reset; after TestClock.adjust it is available again", () =>
    Effect.gen(function*() {
      const auth = yield* Auth.make({ authMode: "api-keys-only", apiKeys: KEYS })
      yield* auth.acquire("worker-1") // key-1
      yield* auth.acquire("worker-2") // key-2
      const moved = yield* auth.reportRateLimit("key-1", { resetAt: new Date(minutes(5)) })
      expect(moved).toEqual(["worker-1"])

      let snapshot = yield* auth.snapshot
      expect(statusOf(snapshot, "key-1")).toBe("cooling")
      expect(untilOf(snapshot, "key-1")).toBe(minutes(5))
      expect(snapshot.find((c) => c.name === "key-1")?.rateLimits).toBe(1)
      expect((yield* auth.acquire("worker-1")).name).toBe("key-2")
      expect(yield* auth.nextReset).toEqual(new Date(minutes(5)))

      yield* TestClock.adjust(Duration.minutes(4))
      expect(statusOf(yield* auth.snapshot, "key-1")).toBe("cooling")
      yield* TestClock.adjust(Duration.minutes(1))
      snapshot = yield* auth.snapshot
      expect(statusOf(snapshot, "key-1")).toBe("available")
      expect(untilOf(snapshot, "key-1")).toBeUndefined()
      expect(yield* auth.nextReset).toBeUndefined()
      expect((yield* auth.acquire("worker-3")).name).toBe("key-1")
    }))

  it.effect("without a reset time: 60 s backoff, doubling per consecutive limit, capped at 1 h; success resets it", () =>
    Effect.gen(function*() {
      const auth = yield* Auth.make({ authMode: "api-keys-only", apiKeys: KEYS })
      const cooled: Array<number> = []
      for (let i = 0; i < 8; i++) {
        yield* auth.reportRateLimit("key-1")
        const until = untilOf(yield* auth.snapshot, "key-1")!
        const now = yield* Clock.currentTimeMillis
        cooled.push((until - now) / 1000)
        yield* TestClock.setTime(until)
      }
      expect(cooled).toEqual([60, 120, 240, 480, 960, 1920, 3600, 3600])

      yield* auth.reportSuccess("key-1")
      yield* auth.reportRateLimit("key-1")
      expect(untilOf(yield* auth.snapshot, "key-1")! - (yield* Clock.currentTimeMillis)).toBe(60_000)

      // A reset time already past counts as unknown.
      yield* auth.reportRateLimit("key-2", { resetAt: new Date(0) })
      expect(untilOf(yield* auth.snapshot, "key-2")! - (yield* Clock.currentTimeMillis)).toBe(60_000)
    }))

  it.effect("a limit reported again while the credential cools (its other instances' 429s) neither doubles the backoff nor moves anyone again", () =>
    Effect.gen(function*() {
      const auth = yield* Auth.make({ authMode: "api-keys-only", apiKeys: KEYS })
      yield* auth.acquire("worker-1") // key-1
      yield* auth.acquire("worker-2") // key-2
      yield* auth.acquire("worker-3") // key-1
      expect(yield* auth.reportRateLimit("key-1")).toEqual(["worker-1", "worker-3"])
      const first = untilOf(yield* auth.snapshot, "key-1")!
      yield* TestClock.adjust(Duration.seconds(5))
      expect(yield* auth.reportRateLimit("key-1")).toEqual([])
      expect(untilOf(yield* auth.snapshot, "key-1")).toBe(first)
      // A stated reset further out still extends it.
      yield* auth.reportRateLimit("key-1", { resetAt: new Date(minutes(30)) })
      expect(untilOf(yield* auth.snapshot, "key-1")).toBe(minutes(30))
      // Once it has reset, the next limit is the second in a row: 120 s.
      yield* TestClock.setTime(minutes(30))
      yield* auth.reportRateLimit("key-1")
      expect(untilOf(yield* auth.snapshot, "key-1")! - minutes(30)).toBe(120_000)
    }))

  it.effect("a later cooling in force is kept when a shorter limit is reported", () =>
    Effect.gen(function*() {
      const auth = yield* Auth.make({ authMode: "api-keys-only", apiKeys: KEYS })
      yield* auth.reportRateLimit("key-1", { resetAt: new Date(minutes(30)) })
      yield* auth.reportRateLimit("key-1", { resetAt: new Date(minutes(2)) })
      expect(untilOf(yield* auth.snapshot, "key-1")).toBe(minutes(30))
    }))

  it.effect("invalid keys are skipped for the run and reported by name with their reason", () =>
    Effect.gen(function*() {
      const auth = yield* Auth.make({ authMode: "api-keys-only", apiKeys: KEYS })
      yield* auth.acquire("worker-1") // key-1
      const moved = yield* auth.reportInvalid("key-1", "Invalid API key · Fix external API key")
      expect(moved).toEqual(["worker-1"])
      for (const instance of ["worker-1", "worker-2", "worker-3"]) {
        expect((yield* auth.acquire(instance)).name).toBe("key-2")
      }
      // Time does not bring an invalid key back.
      yield* TestClock.adjust(Duration.hours(5))
      const snapshot = yield* auth.snapshot
      expect(snapshot.find((c) => c.name === "key-1")).toMatchObject({
        status: "invalid",
        reason: "Invalid API key · Fix external API key",
        users: []
      })
      expect((yield* auth.acquire("worker-4")).name).toBe("key-2")
    }))

  it.effect("every credential cooling: AllCredentialsCooling with the earliest until, then wake-up after adjust", () =>
    Effect.gen(function*() {
      const auth = yield* Auth.make({ authMode: "api-keys-only", apiKeys: KEYS })
      yield* auth.reportRateLimit("key-1", { resetAt: new Date(minutes(10)) })
      yield* auth.reportRateLimit("key-2", { resetAt: new Date(minutes(3)) })
      const error = yield* Effect.flip(auth.acquire("worker-1"))
      expect(error._tag).toBe("AllCredentialsCooling")
      expect(error._tag === "AllCredentialsCooling" && error.until).toEqual(new Date(minutes(3)))
      expect(yield* auth.nextReset).toEqual(new Date(minutes(3)))

      yield* TestClock.adjust(Duration.minutes(3))
      expect((yield* auth.acquire("worker-1")).name).toBe("key-2")
    }))

  it.effect("acquireOrWait sleeps until the first credential is usable again", () =>
    Effect.gen(function*() {
      const auth = yield* Auth.make({ authMode: "oauth", apiKeys: [] })
      yield* auth.reportRateLimit("oauth", { resetAt: new Date(minutes(90)) })
      const fiber = yield* Effect.fork(auth.acquireOrWait("worker-1"))
      yield* TestClock.adjust(Duration.minutes(89))
      expect(fiber.unsafePoll()).toBeNull()
      yield* TestClock.adjust(Duration.minutes(1))
      const credential = yield* Fiber.join(fiber)
      expect(credential.name).toBe("oauth")
    }))

  it.effect("a reset stated far ahead (beyond setTimeout's 24.8 days) cools for 8 days at most, and the wait wakes then", () =>
    Effect.gen(function*() {
      const auth = yield* Auth.make({ authMode: "oauth", apiKeys: [] })
      // "Claude AI usage limit reached|9999999999": the year 2286.
      yield* auth.reportRateLimit("oauth", { resetAt: new Date(9_999_999_999_000) })
      const cap = Duration.toMillis(defaultPolicy.maxCooling)
      expect(cap).toBe(8 * 24 * 60 * minutes(1))
      expect(untilOf(yield* auth.snapshot, "oauth")).toBe(cap)
      const fiber = yield* Effect.fork(auth.acquireOrWait("worker-1"))
      yield* TestClock.adjust(Duration.millis(cap - minutes(1)))
      expect(fiber.unsafePoll()).toBeNull()
      yield* TestClock.adjust(Duration.minutes(1))
      expect((yield* Fiber.join(fiber)).name).toBe("oauth")
    }))

  it.effect("a stated reset that is no date at all falls back to the backoff", () =>
    Effect.gen(function*() {
      const auth = yield* Auth.make({ authMode: "oauth", apiKeys: [] })
      yield* auth.reportRateLimit("oauth", { resetAt: new Date(Number.NaN) })
      expect(untilOf(yield* auth.snapshot, "oauth")).toBe(minutes(1))
    }))

  it.effect("waiting for a cooling credential sleeps in slices of at most an hour, never one long timer", () =>
    Effect.gen(function*() {
      const auth = yield* Auth.make({ authMode: "oauth", apiKeys: [] })
      yield* auth.reportRateLimit("oauth", { resetAt: new Date(Duration.toMillis(Duration.days(7))) })
      const fiber = yield* Effect.fork(auth.acquireOrWait("worker-1"))
      for (let hour = 0; hour < 7 * 24; hour++) {
        yield* Effect.yieldNow()
        const now = yield* Clock.currentTimeMillis
        const sleeps = Chunk.toReadonlyArray(yield* TestClock.sleeps())
        expect(sleeps.length).toBe(1)
        expect(sleeps.every((wake) => wake - now <= minutes(60))).toBe(true)
        expect(fiber.unsafePoll()).toBeNull()
        yield* TestClock.adjust(Duration.hours(1))
      }
      expect((yield* Fiber.join(fiber)).name).toBe("oauth")
    }))

  it("waitSlice: the time left, at least the minimum, at most an hour", () => {
    const hour = minutes(60)
    expect(Duration.toMillis(waitSlice(5_000, 0))).toBe(5_000)
    expect(Duration.toMillis(waitSlice(30 * 24 * hour, 0))).toBe(hour)
    expect(Duration.toMillis(waitSlice(-5, 0, 1000))).toBe(1000)
    expect(Duration.toMillis(waitSlice(Number.NaN, 0))).toBe(hour)
    expect(Duration.toMillis(waitSlice(Number.POSITIVE_INFINITY, 0))).toBe(hour)
  })

  it.effect("all invalid: NoUsableCredential naming each credential and why", () =>
    Effect.gen(function*() {
      const auth = yield* Auth.make({ authMode: "api-keys-first", apiKeys: KEYS })
      yield* auth.reportInvalid("key-1", "Invalid API key · Fix external API key")
      yield* auth.reportInvalid("key-2", "Credit balance is too low")
      yield* auth.reportRateLimit("oauth")
      // One credential still cooling: wait, not give up.
      expect((yield* Effect.flip(auth.acquire("w1")))._tag).toBe("AllCredentialsCooling")
      yield* auth.reportInvalid("oauth", "OAuth token has expired · Please run /login")
      const error = yield* Effect.flip(auth.acquire("w1"))
      expect(error._tag).toBe("NoUsableCredential")
      expect(error._tag === "NoUsableCredential" && error.invalid).toEqual([
        { name: "key-1", reason: "Invalid API key · Fix external API key" },
        { name: "key-2", reason: "Credit balance is too low" },
        { name: "oauth", reason: "OAuth token has expired · Please run /login" }
      ])
      expect(error.message).toContain("key-1 (Invalid API key")
      const exit = yield* Effect.exit(auth.acquireOrWait("w1"))
      expect(Exit.isFailure(exit)).toBe(true)
    }))

  it.effect("overloaded: no rotation, a retry backoff of 10 s doubling to 5 min; success resets it", () =>
    Effect.gen(function*() {
      const auth = yield* Auth.make({ authMode: "api-keys-only", apiKeys: KEYS })
      yield* auth.acquire("worker-1")
      const delays: Array<number> = []
      for (let i = 0; i < 7; i++) delays.push(Duration.toSeconds(yield* auth.reportOverloaded("key-1")))
      expect(delays).toEqual([10, 20, 40, 80, 160, 300, 300])
      expect(statusOf(yield* auth.snapshot, "key-1")).toBe("available")
      expect(yield* auth.credentialOf("worker-1")).toBe("key-1")
      yield* auth.reportSuccess("key-1")
      expect(Duration.toSeconds(yield* auth.reportOverloaded("key-1"))).toBe(10)
    }))

  it.effect("an unknown credential name changes nothing", () =>
    Effect.gen(function*() {
      const auth = yield* Auth.make({ authMode: "api-keys-only", apiKeys: KEYS })
      const before = yield* auth.snapshot
      expect(yield* auth.reportRateLimit("nope")).toEqual([])
      expect(yield* auth.reportInvalid("nope", "x")).toEqual([])
      expect(yield* auth.snapshot).toEqual(before)
    }))

  it.effect("secret values never appear in the snapshot, errors or log texts", () =>
    Effect.gen(function*() {
      const auth = yield* Auth.make({
        authMode: "api-keys-first",
        apiKeys: KEYS,
        oauthEnv: { CLAUDE_CODE_OAUTH_TOKEN: Redacted.make(OAUTH_TOKEN) }
      })
      const credential = yield* auth.acquire("worker-1")
      yield* auth.acquire("worker-2")
      // A reason that echoes a key (an API body quoting it) is scrubbed before it is kept.
      yield* auth.reportInvalid("key-1", `Invalid API key ${SECRET_1} · Fix external API key`)
      yield* auth.reportRateLimit("key-2", { message: `429 for ${SECRET_2}` })
      const cooling = yield* Effect.flip(Effect.zipRight(auth.reportRateLimit("oauth"), auth.acquire("worker-3")))
      yield* auth.reportInvalid("key-2", "x")
      yield* auth.reportInvalid("oauth", `token ${OAUTH_TOKEN} expired`)
      const none = yield* Effect.flip(auth.acquire("worker-3"))
      const snapshot = yield* auth.snapshot

      const texts = [
        JSON.stringify(snapshot),
        JSON.stringify(credential),
        String(credential.env.ANTHROPIC_API_KEY),
        JSON.stringify(cooling),
        String(cooling),
        cooling.message,
        JSON.stringify(none),
        String(none),
        none.message
      ]
      for (const text of texts) {
        for (const secret of [SECRET_1, SECRET_2, OAUTH_TOKEN]) expect(text).not.toContain(secret)
      }
      expect(JSON.stringify(snapshot)).toContain("Invalid API key <redacted> · Fix external API key")
      expect(snapshot.find((c) => c.name === "key-2")?.lastError).toBe("x")
    }))
})
