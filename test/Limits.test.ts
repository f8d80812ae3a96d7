import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Fiber, TestClock } from "effect"
import { classifyErrorLine } from "../src/Limits.js"
import { awaitCliErrorLine, findCliErrorLine, isUsageLimitMenu } from "../src/PaneErrorLine.js"
import { parseResetTime, parseRetryAfter, resetFromHeaders } from "../src/ResetTimes.js"
import { classifyStopFailure, confirmStopFailure } from "../src/StopFailure.js"
import { matchUsageLimit, USAGE_LIMIT_PATTERNS } from "../src/UsageLimits.js"

const at = (iso: string) => new Date(iso)
const iso = (d: Date | undefined) => d?.toISOString()

// Panes as the real claude 2.1.332 drew them in tmux (200 columns), rules shortened.
const RULE = "─".repeat(60)
const BANNER = [" ▐▛███▛█   Claude Code v2.1.332", "▝▜██████▀  Opus 5.5 · API Usage Billing", " ▝▝   ▝▝   /work/wt", ""]
const inputBox = (placeholder = "") => [RULE, `❯\u00a0${placeholder}`, RULE, "  ⏵⏵ bypass permissions on (shift+tab to cycle)", ""]

const pane429 = [
  ...BANNER,
  "❯ add the parser",
  "",
  "● API Error: Request rejected (429) · This request would exceed your account's rate limit. Please try again later.",
  "",
  ...inputBox("Resend your message to try again")
].join("\n")

const pane401 = [
  ...BANNER,
  "❯ add the parser",
  "  ⎿  Invalid API key · Fix external API key",
  "",
  ...inputBox("Once fixed, resend your message")
].join("\n")

const pane529 = [
  ...BANNER,
  "❯ add the parser",
  "",
  "● API Error: 529 Overloaded. This is a server-side issue, usually temporary — try again in a moment. If it persists,",
  "  check your inference gateway (127.0.0.1:37149).",
  "",
  ...inputBox("Resend your message to try again")
].join("\n")

describe("usage-limit wordings", () => {
  it("every pattern in the table matches its own example, and no earlier pattern takes it", () => {
    const now = at("2026-03-10T12:00:00Z")
    for (const p of USAGE_LIMIT_PATTERNS) {
      expect(p.pattern.test(p.example), p.name).toBe(true)
      expect(matchUsageLimit(p.example, now, { timeZone: "UTC" })?.pattern, p.name).toBe(p.name)
    }
  })

  // now = 2026-03-10 12:00 UTC: Cairo 14:00 (UTC+2), Paris 13:00 (CET), Los Angeles 05:00 (PDT since Mar 8),
  // Bogota 07:00, Toronto 08:00 (EDT).
  const now = at("2026-03-10T12:00:00Z")
  const cases: ReadonlyArray<readonly [string, string | undefined, string]> = [
    ["You've hit your limit · resets 8pm (Africa/Cairo)", "2026-03-10T18:00:00.000Z", "limit"],
    ["You've hit your session limit · resets 5:10pm (Europe/Paris)", "2026-03-10T16:10:00.000Z", "session limit"],
    ["You're out of extra usage · resets 5pm (America/Los_Angeles)", "2026-03-11T00:00:00.000Z", "extra usage"],
    ["Claude AI usage limit reached|1750708800", "2025-06-23T20:00:00.000Z", "usage limit"],
    ["Claude usage limit reached. Your limit will reset at 3pm (America/Bogota).", "2026-03-10T20:00:00.000Z", "usage limit"],
    ["Claude usage limit reached. Your limit will reset at 1pm (Etc/GMT+5).", "2026-03-10T18:00:00.000Z", "usage limit"],
    ["Claude usage limit reached.", undefined, "usage limit"],
    ["You've hit your weekly limit · resets 4am (Europe/Madrid)", "2026-03-11T03:00:00.000Z", "weekly limit"],
    ["You've hit your limit · resets 1:30am (Asia/Dhaka) · progress saved", "2026-03-10T19:30:00.000Z", "limit"],
    ["You've hit your weekly limit · resets Jan 3, 2027, 2am (UTC)", "2027-01-03T02:00:00.000Z", "weekly limit"],
    ["You've hit your monthly spend limit · /usage-credits to raise it", undefined, "monthly spend limit"],
    ["You're out of usage credits", undefined, "usage credits"],
    ["Your org is out of usage · add funds to continue", undefined, "usage limit"],
    ["5-hour limit reached · resets 2am (America/Toronto) · /upgrade to Max 20x or turn on /extra-usage", "2026-03-11T06:00:00.000Z", "5-hour limit"],
    ["Session limit reached ∙ resets 8pm (UTC)", "2026-03-10T20:00:00.000Z", "Session limit"],
    // With the typographic apostrophe and the ⎿ marker of older releases.
    ["  ⎿  You’ve hit your limit · resets 8pm (Africa/Cairo)", "2026-03-10T18:00:00.000Z", "limit"]
  ]
  for (const [line, expected, limit] of cases) {
    it(`reads "${line.trim()}"`, () => {
      const m = matchUsageLimit(line, now)
      expect(m).toBeDefined()
      expect(iso(m?.resetAt)).toBe(expected)
      expect(m?.limit).toBe(limit)
    })
  }

  it("dated resets: the day and month given, this year or the next", () => {
    expect(iso(matchUsageLimit("You've hit your limit · resets Feb 17 at 2pm (Asia/Seoul)", at("2026-02-15T00:00:00Z"))?.resetAt))
      .toBe("2026-02-17T05:00:00.000Z")
    // Read in March, "Feb 17" is next year's.
    expect(iso(matchUsageLimit("You've hit your limit · resets Feb 17 at 2pm (Asia/Seoul)", at("2026-03-10T00:00:00Z"))?.resetAt))
      .toBe("2027-02-17T05:00:00.000Z")
    expect(iso(matchUsageLimit("You've hit your weekly limit · resets Jul 31, 2am (UTC)", at("2026-07-27T09:00:00Z"))?.resetAt))
      .toBe("2026-07-31T02:00:00.000Z")
    expect(iso(matchUsageLimit("You've hit your limit · resets May 5 at 9pm (America/New_York)", at("2026-05-03T20:54:00Z"))?.resetAt))
      .toBe("2026-05-06T01:00:00.000Z")
    expect(iso(matchUsageLimit("You've hit your weekly limit · resets Jul 27 at 4:30am (Asia/Calcutta)", at("2026-07-24T00:00:00Z"))?.resetAt))
      .toBe("2026-07-26T23:00:00.000Z")
    // No zone printed: the zone given (the CLI's machine is this one).
    expect(iso(matchUsageLimit("Opus weekly limit reached ∙ resets Oct 31, 9am", at("2025-10-25T12:00:00Z"), { timeZone: "America/New_York" })?.resetAt))
      .toBe("2025-10-31T13:00:00.000Z")
    expect(iso(matchUsageLimit("You've hit your weekly limit · resets Sep 15 at 7pm", at("2026-09-08T00:00:00Z"), { timeZone: "Asia/Tokyo" })?.resetAt))
      .toBe("2026-09-15T10:00:00.000Z")
  })

  it("a time without a date is the next such time; one just passed stays today", () => {
    const line = "You've hit your limit · resets 8pm (Africa/Cairo)"
    // 20:30 in Cairo: tomorrow's 8pm.
    expect(iso(matchUsageLimit(line, at("2026-03-10T18:30:00Z"))?.resetAt)).toBe("2026-03-11T18:00:00.000Z")
    // 20:05 in Cairo: printed at 7:59pm, read a moment late: today's (already past) 8pm, not tomorrow's.
    expect(iso(matchUsageLimit(line, at("2026-03-10T18:05:00Z"))?.resetAt)).toBe("2026-03-10T18:00:00.000Z")
  })

  it("computes zone offsets across a DST change", () => {
    // Saturday 2026-03-07 12:00 PST: 5pm is still PST.
    expect(iso(parseResetTime("5pm (America/Los_Angeles)", at("2026-03-07T20:00:00Z")))).toBe("2026-03-08T01:00:00.000Z")
    // Saturday 18:00 PST: the next 5pm is Sunday, after the switch to PDT.
    expect(iso(parseResetTime("5pm (America/Los_Angeles)", at("2026-03-08T02:00:00Z")))).toBe("2026-03-09T00:00:00.000Z")
    // Hours next to a change, where the offset at the first guess is the wrong one.
    expect(iso(parseResetTime("Mar 8 at 3am (America/Los_Angeles)", at("2026-03-07T20:00:00Z")))).toBe("2026-03-08T10:00:00.000Z")
    expect(iso(parseResetTime("Oct 25 at 1am (Europe/Paris)", at("2026-10-20T00:00:00Z")))).toBe("2026-10-24T23:00:00.000Z")
    expect(iso(parseResetTime("12am (UTC)", at("2026-03-10T12:00:00Z")))).toBe("2026-03-11T00:00:00.000Z")
    expect(iso(parseResetTime("12pm (UTC)", at("2026-03-10T08:00:00Z")))).toBe("2026-03-10T12:00:00.000Z")
    expect(iso(parseResetTime("9:30 AM", at("2026-03-10T08:00:00Z"), { timeZone: "UTC" }))).toBe("2026-03-10T09:30:00.000Z")
    expect(iso(parseResetTime("in 2h 30m", at("2026-03-10T08:00:00Z")))).toBe("2026-03-10T10:30:00.000Z")
  })

  it("an unknown zone or a time that is not one gives no reset, but still a usage limit", () => {
    const m = matchUsageLimit("You've hit your limit · resets 8pm (Mars/Olympus_Mons)", at("2026-03-10T12:00:00Z"))
    expect(m?.limit).toBe("limit")
    expect(m?.resetAt).toBeUndefined()
    expect(parseResetTime("soon", at("2026-03-10T12:00:00Z"))).toBeUndefined()
    expect(parseResetTime("13pm (UTC)", at("2026-03-10T12:00:00Z"))).toBeUndefined()
  })

  it("warnings, fast mode and other text are not usage limits", () => {
    const now = at("2026-03-10T12:00:00Z")
    for (
      const line of [
        "Approaching usage limit · resets 8pm (Africa/Cairo)",
        "You've used 90% of your session limit · resets 8pm (Africa/Cairo)",
        "You've hit your fast limit · resets in 5m",
        "We should handle the case where you've hit your limit in the client.",
        "if (res.status === 429) throw new Error('usage limit reached')"
      ]
    ) {
      expect(matchUsageLimit(line, now), line).toBeUndefined()
    }
  })
})

describe("classifying the StopFailure hook", () => {
  const now = at("2026-03-10T12:00:00Z")

  it("a 429 on a key (the payload the real CLI sent) is RateLimited", () => {
    const c = classifyStopFailure({
      hook_event_name: "StopFailure",
      error: "rate_limit",
      last_assistant_message:
        "API Error: Request rejected (429) · This request would exceed your account's rate limit. Please try again later."
    }, now)
    expect(c._tag).toBe("RateLimited")
  })

  it("a subscription usage limit is UsageLimit with its reset in the given zone", () => {
    const c = classifyStopFailure({
      error: "rate_limit",
      last_assistant_message: "You've hit your session limit · resets 5:10pm (Europe/Paris)"
    }, now)
    expect(c._tag).toBe("UsageLimit")
    expect(c._tag === "UsageLimit" && c.resetAt?.toISOString()).toBe("2026-03-10T16:10:00.000Z")
  })

  it("a capacity 429 for subscribers, or a model under high load, is Overloaded: no rotation", () => {
    expect(classifyStopFailure({
      error: "rate_limit",
      last_assistant_message:
        "API Error: Server is temporarily limiting requests (not your usage limit) · this may be a temporary capacity issue."
    }, now)._tag).toBe("Overloaded")
    expect(classifyStopFailure({
      error: "rate_limit",
      last_assistant_message: "Opus is experiencing high load, please use /model to switch to Sonnet"
    }, now)._tag).toBe("Overloaded")
  })

  it("401s, expired OAuth logins and billing errors are AuthFailed", () => {
    expect(classifyStopFailure({ error: "authentication_failed", last_assistant_message: "Invalid API key · Fix external API key" }, now)._tag)
      .toBe("AuthFailed")
    expect(classifyStopFailure({
      error: "authentication_failed",
      last_assistant_message:
        `API Error: 401 {"type":"error","error":{"type":"authentication_error","message":"OAuth token has expired. Please obtain a new token or refresh your existing token."}}`
    }, now)._tag).toBe("AuthFailed")
    expect(classifyStopFailure({ error: "billing_error", last_assistant_message: "Credit balance is too low" }, now)._tag)
      .toBe("AuthFailed")
    // Whatever kind the hook names, the CLI's own login wording decides.
    expect(classifyStopFailure({ error: "unknown", last_assistant_message: "Login expired · Please run /login" }, now)._tag)
      .toBe("AuthFailed")
    expect(classifyStopFailure({ last_assistant_message: "OAuth token revoked · Please run /login" }, now)._tag)
      .toBe("AuthFailed")
  })

  it("529 and other server errors are Overloaded; the rest is Other", () => {
    expect(classifyStopFailure({
      error: "server_error",
      last_assistant_message: "API Error: 529 Overloaded. This is a server-side issue, usually temporary — try again in a moment."
    }, now)._tag).toBe("Overloaded")
    expect(classifyStopFailure({ error: "overloaded" }, now)._tag).toBe("Overloaded")
    expect(classifyStopFailure({ error: "invalid_request", last_assistant_message: "Prompt is too long" }, now)._tag).toBe("Other")
    expect(classifyStopFailure({}, now)._tag).toBe("Other")
  })

  it("classifies single CLI error lines and ignores lines that are not the CLI's", () => {
    expect(classifyErrorLine("● API Error: Request rejected (429) · This request would exceed your organization's rate limit.", now)?._tag)
      .toBe("RateLimited")
    expect(classifyErrorLine("API Error: Repeated 529 Overloaded errors", now)?._tag).toBe("Overloaded")
    expect(classifyErrorLine("API Error: Connection error.", now)?._tag).toBe("Other")
    expect(classifyErrorLine("HTTP 429 Too Many Requests", now)).toBeUndefined()
    expect(classifyErrorLine("rate limit exceeded, retrying", now)).toBeUndefined()
  })
})

describe("finding the CLI's own error line in a pane", () => {
  const now = at("2026-03-10T12:00:00Z")

  it("finds the 429 a turn ended on", () => {
    const line = findCliErrorLine(pane429)
    expect(line).toBe(
      "API Error: Request rejected (429) · This request would exceed your account's rate limit. Please try again later."
    )
    expect(classifyErrorLine(line!, now)?._tag).toBe("RateLimited")
  })

  it("finds a 401 printed under the user's prompt", () => {
    const line = findCliErrorLine(pane401)
    expect(line).toBe("Invalid API key · Fix external API key")
    expect(classifyErrorLine(line!, now)?._tag).toBe("AuthFailed")
  })

  it("joins a wrapped error line", () => {
    const line = findCliErrorLine(pane529)
    expect(line).toContain("If it persists, check your inference gateway (127.0.0.1:37149).")
    expect(classifyErrorLine(line!, now)?._tag).toBe("Overloaded")
  })

  it("finds an older release's usage limit under the prompt, wrapped, with its reset", () => {
    const pane = [
      "> keep going",
      "  ⎿  Claude usage limit reached. Your limit will reset",
      "     at 3pm (America/Santiago).",
      "",
      "╭──────────────────────────────────────╮",
      "│ >                                    │",
      "╰──────────────────────────────────────╯"
    ]
    const line = findCliErrorLine(pane)
    expect(line).toBe("Claude usage limit reached. Your limit will reset at 3pm (America/Santiago).")
    const c = classifyErrorLine(line!, now)
    expect(c?._tag).toBe("UsageLimit")
    // Santiago is UTC-3 in March (summer time until April).
    expect(c?._tag === "UsageLimit" && c.resetAt?.toISOString()).toBe("2026-03-10T18:00:00.000Z")
  })

  it("finds a usage-limit line that ends the turn", () => {
    const pane = [...BANNER, "❯ next task", "", "● You've hit your session limit · resets 5:10pm (Europe/Paris)", "", ...inputBox()]
    expect(findCliErrorLine(pane.join("\n"))).toBe("You've hit your session limit · resets 5:10pm (Europe/Paris)")
  })

  it("does NOT take '429' or 'rate limit' printed by a tool or written in code (real 2.1.332 pane)", () => {
    const pane = [
      ...BANNER,
      "❯ STEP1 again",
      "",
      "● Running it.",
      "",
      "  Ran 1 shell command",
      "",
      "● The server said HTTP 429 Too Many Requests; rate limit handling:",
      "",
      "  if (status === 429) retry() // rate limit",
      "",
      "✻ Brewed for 0s · done 9:52 PM",
      "",
      ...inputBox()
    ].join("\n")
    expect(findCliErrorLine(pane)).toBeUndefined()
  })

  it("does NOT take tool output under ⎿, even when it looks like the CLI's own error", () => {
    const pane = [
      "> check the API",
      "",
      "⏺ Bash(curl -si https://api.example.com/v1/items)",
      "  ⎿  HTTP/1.1 429 Too Many Requests",
      "     retry-after: 30",
      "     API Error: Request rejected (429) · rate limit",
      "",
      ...inputBox()
    ].join("\n")
    expect(findCliErrorLine(pane)).toBeUndefined()
    const withText = pane.replace(
      "\n" + RULE,
      "\n⏺ The endpoint is rate limited (429). I will add a retry with backoff:\n\n  if (res.status === 429) await sleep(retryAfter)\n\n" + RULE
    )
    expect(findCliErrorLine(withText)).toBeUndefined()
  })

  it("does NOT take the output of a bash-mode command run from the prompt", () => {
    const pane = [...BANNER, "❯ !curl -si localhost:8080", "  ⎿  API Error: Request rejected (429) · slow down", "", ...inputBox()]
    expect(findCliErrorLine(pane)).toBeUndefined()
  })

  it("does NOT take an earlier error once a later turn finished, nor a turn still running", () => {
    const later = [
      ...BANNER,
      "❯ add the parser",
      "● API Error: Request rejected (429) · This request would exceed your account's rate limit. Please try again later.",
      "❯ add the parser again",
      "● Done: the parser is in src/parser.ts.",
      "✻ Baked for 12s · done 9:52 PM",
      "",
      ...inputBox()
    ].join("\n")
    expect(findCliErrorLine(later)).toBeUndefined()
    const running = [...BANNER, "❯ add the parser", "", "✶ Thinking… (esc to interrupt)", "", ...inputBox()].join("\n")
    expect(findCliErrorLine(running)).toBeUndefined()
  })

  it("does NOT take agent text that mentions a rate limit", () => {
    const pane = [...BANNER, "❯ why did it fail?", "● It failed on a 429 rate limit from the upstream API.", "", ...inputBox()]
    expect(findCliErrorLine(pane)).toBeUndefined()
  })

  it("recognises the usage-limit menu that swallows input", () => {
    expect(isUsageLimitMenu([
      "  What do you want to do?",
      "  ❯ 1. Stop and wait for limit to reset",
      "    2. Upgrade your plan"
    ])).toBe(true)
    expect(isUsageLimitMenu(pane429)).toBe(false)
  })
})

describe("a StopFailure hook is confirmed by the pane, never taken on its word", () => {
  const now = at("2026-03-10T12:00:00Z")
  const forgedAuth = classifyStopFailure({ error: "authentication_failed", last_assistant_message: "Invalid API key · Fix external API key" }, now)
  const forgedRate = classifyStopFailure({ error: "rate_limit", last_assistant_message: "API Error: Request rejected (429) · slow down" }, now)
  // The pane of an agent that forges the hook from a Bash command: its tool is still running.
  const runningTool = [
    ...BANNER,
    "❯ add the parser",
    "",
    "● Bash(echo '{\"error\":\"authentication_failed\"}' | cco hook StopFailure)",
    "",
    "✶ Working… (esc to interrupt)",
    "",
    ...inputBox()
  ].join("\n")
  // The fake agent's pane (test/fake-agent): the input line between two rules, the hint under them.
  const fakePane = (line: string) =>
    ["✻ Welcome to Claude Code (fake 2.1.332)", "> add the parser", `● ${line}`, "─".repeat(80), ">", "─".repeat(80), "  Resend your message to try again"].join("\n")

  it("forged authentication_failed and rate_limit hooks: unconfirmed when the pane shows no CLI error line", () => {
    expect(forgedAuth._tag).toBe("AuthFailed")
    expect(forgedRate._tag).toBe("RateLimited")
    for (const pane of [runningTool, "", [...BANNER, "❯ hi", "● Done.", "", ...inputBox()].join("\n")]) {
      expect(confirmStopFailure(forgedAuth, findCliErrorLine(pane), now)._tag).toBe("Unconfirmed")
      expect(confirmStopFailure(forgedRate, findCliErrorLine(pane), now)._tag).toBe("Unconfirmed")
    }
    expect(confirmStopFailure(classifyStopFailure({ error: "overloaded" }, now), undefined, now)._tag).toBe("Unconfirmed")
  })

  it("a genuine failure: the pane's own line confirms it, from the real CLI's pane or the fake agent's", () => {
    const v401 = confirmStopFailure(forgedAuth, findCliErrorLine(pane401), now)
    expect(v401._tag === "Confirmed" && v401.limit._tag).toBe("AuthFailed")
    const fake401 = confirmStopFailure(forgedAuth, findCliErrorLine(fakePane("Invalid API key · Fix external API key")), now)
    expect(fake401._tag === "Confirmed" && fake401.limit._tag).toBe("AuthFailed")
    const v429 = confirmStopFailure(forgedRate, findCliErrorLine(pane429), now)
    expect(v429._tag === "Confirmed" && v429.limit._tag).toBe("RateLimited")
  })

  it("the pane decides the kind and the reset time, not the hook", () => {
    // The hook claims an auth failure (or a usage limit centuries away); the pane shows a plain 429.
    const v = confirmStopFailure(forgedAuth, findCliErrorLine(pane429), now)
    expect(v._tag === "Confirmed" && v.limit._tag).toBe("RateLimited")
    const farClaim = classifyStopFailure({ error: "rate_limit", last_assistant_message: "Claude AI usage limit reached|9999999999" }, now)
    expect(farClaim._tag === "UsageLimit" && farClaim.resetAt?.getUTCFullYear()).toBe(2286)
    const far = confirmStopFailure(farClaim, findCliErrorLine(pane429), now)
    expect(far._tag === "Confirmed" && far.limit._tag === "RateLimited" && far.limit.resetAt).toBeUndefined()
    // A usage limit on the pane brings its own reset.
    const usage = confirmStopFailure(forgedRate, "You've hit your session limit · resets 5:10pm (Europe/Paris)", now)
    expect(usage._tag === "Confirmed" && usage.limit._tag === "UsageLimit" && usage.limit.resetAt?.toISOString()).toBe("2026-03-10T16:10:00.000Z")
  })

  it("a claim of Other needs no confirmation (cco only logs it)", () => {
    const other = classifyStopFailure({ error: "invalid_request", last_assistant_message: "Prompt is too long" }, now)
    expect(confirmStopFailure(other, undefined, now)._tag).toBe("Confirmed")
  })

  it.effect("awaitCliErrorLine reads the pane until the CLI has drawn its line (TestClock)", () =>
    Effect.gen(function*() {
      let reads = 0
      const capture = Effect.sync(() => ++reads < 3 ? runningTool : pane429)
      const fiber = yield* Effect.fork(awaitCliErrorLine(capture, { attempts: 12, interval: Duration.millis(250) }))
      yield* TestClock.adjust(Duration.millis(250))
      expect(fiber.unsafePoll()).toBeNull()
      yield* TestClock.adjust(Duration.millis(250))
      expect(yield* Fiber.join(fiber)).toContain("API Error: Request rejected (429)")
      expect(reads).toBe(3)
    }))

  it.effect("awaitCliErrorLine gives up after its attempts, and on a pane that cannot be read", () =>
    Effect.gen(function*() {
      let reads = 0
      const fiber = yield* Effect.fork(awaitCliErrorLine(Effect.sync(() => (reads++, runningTool)), { attempts: 4, interval: Duration.seconds(1) }))
      yield* TestClock.adjust(Duration.seconds(3))
      expect(yield* Fiber.join(fiber)).toBeUndefined()
      expect(reads).toBe(4)
      expect(yield* awaitCliErrorLine(Effect.fail("no such session"), { attempts: 1 })).toBeUndefined()
    }))
})

describe("rate-limit headers", () => {
  const now = at("2026-03-10T12:00:00Z")

  it("retry-after in seconds or as an HTTP date", () => {
    expect(iso(parseRetryAfter("120", now))).toBe("2026-03-10T12:02:00.000Z")
    expect(iso(parseRetryAfter("Tue, 10 Mar 2026 12:05:00 GMT", now))).toBe("2026-03-10T12:05:00.000Z")
    expect(parseRetryAfter("later", now)).toBeUndefined()
    expect(iso(resetFromHeaders({ "Retry-After": "30" }, now))).toBe("2026-03-10T12:00:30.000Z")
  })

  it("the reset of the limit that is used up (RFC 3339), from a Headers object or a plain record", () => {
    const record = {
      "anthropic-ratelimit-requests-remaining": "0",
      "anthropic-ratelimit-requests-reset": "2026-03-10T12:00:40Z",
      "anthropic-ratelimit-tokens-remaining": "5000",
      "anthropic-ratelimit-tokens-reset": "2026-03-10T12:09:00Z"
    }
    expect(iso(resetFromHeaders(record, now))).toBe("2026-03-10T12:00:40.000Z")
    expect(iso(resetFromHeaders(new Headers(record), now))).toBe("2026-03-10T12:00:40.000Z")
    // Nothing says what remains: the latest reset.
    expect(iso(resetFromHeaders({
      "anthropic-ratelimit-requests-reset": "2026-03-10T12:00:40Z",
      "anthropic-ratelimit-output-tokens-reset": "2026-03-10T12:01:10Z"
    }, now))).toBe("2026-03-10T12:01:10.000Z")
  })

  it("the subscription's unified reset in epoch seconds; nothing when no header tells", () => {
    expect(iso(resetFromHeaders({ "anthropic-ratelimit-unified-reset": "1750708800" }, now))).toBe("2025-06-23T20:00:00.000Z")
    expect(resetFromHeaders({ "content-type": "application/json" }, now)).toBeUndefined()
  })
})
