// Exact detection of the limits and credential failures Claude Code reports: the StopFailure hook payload, the
// CLI's own final error line in a pane, subscription usage-limit wordings with their reset times, and API headers.
// Nothing here matches broad words ("429", "rate limit") in arbitrary text: only the CLI's own error line is read.
import { Data, Duration, Effect } from "effect"
import { withoutEscapes } from "./Untrusted.js"

/** What a failed turn means for the credential it ran on. */
export type Limit = Data.TaggedEnum<{
  /** 429 on an API key (or a subscription without a usage-limit wording): rotate, cool the credential. */
  RateLimited: { readonly resetAt: Date | undefined; readonly message: string }
  /** Subscription usage limit ("You've hit your limit · resets 8pm (Africa/Cairo)"): cool until the reset. */
  UsageLimit: { readonly resetAt: Date | undefined; readonly limit: string; readonly message: string }
  /** 401, expired or revoked OAuth login, a key of a disabled organization, no credit: unusable for the run. */
  AuthFailed: { readonly message: string }
  /** 529, 5xx, transient capacity limits: retry on the same credential after a backoff, no rotation. */
  Overloaded: { readonly message: string }
  /** Any other failure (bad request, prompt too long, …): nothing to do with the credential. */
  Other: { readonly message: string }
}>
export const Limit = Data.taggedEnum<Limit>()

export interface ParseOptions {
  /**
   * IANA zone for reset times printed without one ("resets 3pm"). The CLI prints those in its machine's local
   * zone, which is this machine's; defaults to the zone of this process.
   */
  readonly timeZone?: string
}

// ---------------------------------------------------------------------------------------------------------------
// Usage-limit wordings

export interface UsageLimitPattern {
  readonly name: string
  /** Anchored on the whole trimmed line; named groups: `limit`, `reset` (text after "resets"), `epoch` (seconds). */
  readonly pattern: RegExp
  /** A line as the CLI printed it; the tests run every example. */
  readonly example: string
  /** Where the wording was seen. */
  readonly source: string
}

const SEP = String.raw`\s*[·∙•–]\s*`
const APOS = "['’]"
const RESET = String.raw`(?<reset>[^·∙•–]+?)`

/**
 * Subscription usage-limit lines. Matched only against the CLI's own final error line (the StopFailure
 * `last_assistant_message`, or the line `findCliErrorLine` takes from a pane), never against pane text at large.
 */
export const USAGE_LIMIT_PATTERNS: ReadonlyArray<UsageLimitPattern> = [
  {
    // Built by the CLI as `You've hit your ${limit}${" · resets " + time}${suffixes}` (claude 2.1.332), where limit
    // is "limit", "usage limit", "session limit", "5-hour limit", "weekly limit", "Opus limit", "Sonnet limit",
    // "monthly spend limit", …; times look like "8pm (Africa/Cairo)", "May 5 at 9pm (America/New_York)" (older),
    // "Jul 31, 2am (UTC)" (newer, anthropics/claude-code#81647), or carry no zone ("Sep 15 at 7pm", #92834).
    // "fast limit" is a status notice of fast mode, which falls back to normal speed: not a stop.
    name: "hit-your-limit",
    pattern: new RegExp(
      String.raw`^You${APOS}ve hit your (?!fast limit)(?<limit>[^·∙•–]+?)(?:${SEP}resets ${RESET})?(?:${SEP}.*)?$`
    ),
    example: "You've hit your limit · resets 8pm (Africa/Cairo)",
    source: "anthropics/claude-code#54698, #74079, #79765, #93340, #81647, #55876; claude 2.1.332"
  },
  {
    name: "out-of-usage",
    pattern: new RegExp(
      String.raw`^You${APOS}re out of (?<limit>extra usage|usage credits)(?:${SEP}resets ${RESET})?(?:${SEP}.*)?$`
    ),
    example: "You're out of extra usage · resets 5pm (America/Los_Angeles)",
    source: "anthropics/claude-code#38240, #60271, #55114 (\"resets May 2, 2pm (Asia/Jerusalem)\"); claude 2.1.332"
  },
  {
    name: "org-out-of-usage",
    pattern: /^Your org is out of usage(?<limit>)(?:\s*[·∙•–]\s*.*)?$/,
    example: "Your org is out of usage · add funds to continue",
    source: "claude 2.1.332"
  },
  {
    // Older status-line wording: "5-hour limit reached ∙ resets 12pm", "Opus weekly limit reached ∙ resets Oct 31,
    // 9am", "Session limit reached ∙ resets 8pm", "5-hour limit reached · resets 2am (America/Toronto) · /upgrade …".
    name: "limit-reached",
    pattern: new RegExp(
      String.raw`^(?<limit>(?:[A-Za-z0-9-]+ ){0,2}limit) reached${SEP}resets ${RESET}(?:${SEP}.*)?$`,
      "i"
    ),
    example: "5-hour limit reached ∙ resets 12pm",
    source: "anthropics/claude-code#7641, #10333, #11577; RooCodeInc/Roo-Code#9767"
  },
  {
    name: "usage-limit-epoch",
    pattern: /^Claude AI usage limit reached\|(?<epoch>\d{9,11})(?<limit>)$/,
    example: "Claude AI usage limit reached|1750708800",
    source: "anthropics/claude-code#2087, #8835, #9046, #11429"
  },
  {
    // Shown under the prompt as "⎿  Claude usage limit reached. Your limit will reset at 9am (America/Chicago)."
    // (anthropics/claude-code#15064), wrapped at narrow widths (#9236); zones include "Etc/GMT+5" (#2087).
    name: "usage-limit-sentence",
    pattern: /^Claude usage limit reached\.(?<limit>)(?:\s+Your limit will reset at (?<reset>.+?)\.?)?$/,
    example: "Claude usage limit reached. Your limit will reset at 3pm (America/Bogota).",
    source: "anthropics/claude-code#9236, #15064, #2087; aniketkarne/CCAutoRenew#3"
  }
]

export interface UsageLimitMatch {
  readonly pattern: string
  /** The limit's name as printed ("session limit", "weekly limit", "extra usage"), or "usage limit". */
  readonly limit: string
  readonly resetAt: Date | undefined
}

/** The usage-limit reading of one CLI error line, or undefined when it is not a usage-limit line. */
export const matchUsageLimit = (line: string, now: Date, options: ParseOptions = {}): UsageLimitMatch | undefined => {
  const text = stripMarker(line)
  for (const { name, pattern } of USAGE_LIMIT_PATTERNS) {
    const m = pattern.exec(text)
    if (m === null) continue
    const groups = m.groups ?? {}
    const resetAt = groups.epoch !== undefined
      ? new Date(Number(groups.epoch) * 1000)
      : groups.reset !== undefined
      ? parseResetTime(groups.reset, now, options)
      : undefined
    const limit = groups.limit !== undefined && groups.limit.trim() !== "" ? groups.limit.trim() : "usage limit"
    return { pattern: name, limit, resetAt }
  }
  return undefined
}

// ---------------------------------------------------------------------------------------------------------------
// Reset times: "8pm (Africa/Cairo)", "5:10pm (Europe/Paris)", "Feb 17 at 2pm (Asia/Seoul)", "Jul 31, 2am (UTC)",
// "Jan 3, 2027, 2am (UTC)", "Oct 24", "3pm", "9:30 AM", "in 2h 30m".

const MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]

const RESET_TIME = new RegExp(
  String.raw`^(?:(?<month>${MONTHS.join("|")})[a-z]*\.?\s+(?<day>\d{1,2})(?:,\s*(?<year>\d{4}))?(?:,?\s+at\s+|,\s*|\s+)?)?` +
    String.raw`(?:(?<hour>\d{1,2})(?::(?<minute>\d{2}))?\s*(?<ampm>[ap])\.?m\.?|(?<hour24>\d{1,2}):(?<minute24>\d{2}))?` +
    String.raw`\s*(?:\((?<zone>[A-Za-z][A-Za-z0-9_+\-/]*)\))?\s*\.?$`,
  "i"
)

const RELATIVE = /^in\s+((?:\d+\s*[a-z]+\s*)+)$/i
const UNIT_MS: ReadonlyArray<readonly [RegExp, number]> = [
  [/^(d|days?)$/, 86_400_000],
  [/^(h|hrs?|hours?)$/, 3_600_000],
  [/^(m|mins?|minutes?)$/, 60_000],
  [/^(s|secs?|seconds?)$/, 1000]
]

// A time printed without a date is the next such time after `now`, except that one up to this long ago is taken
// as just passed (the CLI prints whole minutes, and the hook can arrive a moment after the reset).
const JUST_PASSED_MS = 10 * 60_000
// A date printed without a year more than this far in the past means next year ("Jan 2" read on Dec 30).
const DATE_PASSED_MS = 7 * 86_400_000

const systemTimeZone = (): string => Intl.DateTimeFormat().resolvedOptions().timeZone

const formatters = new Map<string, Intl.DateTimeFormat | undefined>()

/** A formatter giving wall-clock parts in `zone`, or undefined for a zone this runtime does not know. */
const wallClockFormatter = (zone: string): Intl.DateTimeFormat | undefined => {
  if (formatters.has(zone)) return formatters.get(zone)
  let formatter: Intl.DateTimeFormat | undefined
  try {
    formatter = new Intl.DateTimeFormat("en-US", {
      timeZone: zone,
      hourCycle: "h23",
      year: "numeric",
      month: "numeric",
      day: "numeric",
      hour: "numeric",
      minute: "numeric",
      second: "numeric"
    })
  } catch {
    formatter = undefined
  }
  formatters.set(zone, formatter)
  return formatter
}

interface WallClock {
  readonly year: number
  readonly month: number
  readonly day: number
  readonly hour: number
  readonly minute: number
  readonly second: number
}

const wallClock = (instant: number, formatter: Intl.DateTimeFormat): WallClock => {
  const parts: Record<string, number> = {}
  for (const p of formatter.formatToParts(new Date(instant))) {
    if (p.type !== "literal") parts[p.type] = Number(p.value)
  }
  return {
    year: parts.year ?? 1970,
    month: parts.month ?? 1,
    day: parts.day ?? 1,
    hour: (parts.hour ?? 0) % 24,
    minute: parts.minute ?? 0,
    second: parts.second ?? 0
  }
}

/** The zone's offset from UTC at an instant, in milliseconds. */
const offsetAt = (instant: number, formatter: Intl.DateTimeFormat): number => {
  const w = wallClock(instant, formatter)
  const asUtc = Date.UTC(w.year, w.month - 1, w.day, w.hour, w.minute, w.second)
  return asUtc - Math.floor(instant / 1000) * 1000
}

/** The instant at which the wall clock in the formatter's zone shows the given time (month 1-12; day may overflow). */
const zonedInstant = (
  formatter: Intl.DateTimeFormat,
  year: number,
  month: number,
  day: number,
  hour: number,
  minute: number
): number => {
  const guess = Date.UTC(year, month - 1, day, hour, minute)
  const first = guess - offsetAt(guess, formatter)
  // Near a DST change the offset at the result can differ from the offset at the guess.
  const second = guess - offsetAt(first, formatter)
  return second
}

/**
 * The absolute time of a reset as the CLI prints it, after "resets " or "reset at ": the given wall-clock time in
 * the given IANA zone (else `options.timeZone`, else this process's zone), the next such time after `now`, on the
 * given day and month when there is one. Undefined when the text is not a time or the zone is unknown.
 */
export const parseResetTime = (text: string, now: Date, options: ParseOptions = {}): Date | undefined => {
  const trimmed = text.trim()
  const relative = RELATIVE.exec(trimmed)
  if (relative !== null) {
    let total = 0
    for (const [, amount, unit] of relative[1]!.matchAll(/(\d+)\s*([a-z]+)/gi)) {
      const ms = UNIT_MS.find(([re]) => re.test(unit!.toLowerCase()))?.[1]
      if (ms === undefined) return undefined
      total += Number(amount) * ms
    }
    return new Date(now.getTime() + total)
  }

  const m = RESET_TIME.exec(trimmed)
  if (m === null || m.groups === undefined) return undefined
  const g = m.groups
  const hasDate = g.month !== undefined
  const hasTime = g.hour !== undefined || g.hour24 !== undefined
  if (!hasDate && !hasTime) return undefined

  const formatter = wallClockFormatter(g.zone ?? options.timeZone ?? systemTimeZone())
  if (formatter === undefined) return undefined

  let hour = 0
  let minute = 0
  if (g.hour !== undefined) {
    const h = Number(g.hour)
    if (h < 1 || h > 12) return undefined
    hour = (h % 12) + (g.ampm!.toLowerCase() === "p" ? 12 : 0)
    minute = g.minute === undefined ? 0 : Number(g.minute)
  } else if (g.hour24 !== undefined) {
    hour = Number(g.hour24)
    minute = Number(g.minute24)
  }
  if (hour > 23 || minute > 59) return undefined

  const nowMs = now.getTime()
  const today = wallClock(nowMs, formatter)
  if (hasDate) {
    const month = MONTHS.indexOf(g.month!.slice(0, 3).toLowerCase()) + 1
    const day = Number(g.day)
    if (day < 1 || day > 31) return undefined
    if (g.year !== undefined) return new Date(zonedInstant(formatter, Number(g.year), month, day, hour, minute))
    const thisYear = zonedInstant(formatter, today.year, month, day, hour, minute)
    return new Date(
      thisYear < nowMs - DATE_PASSED_MS ? zonedInstant(formatter, today.year + 1, month, day, hour, minute) : thisYear
    )
  }
  const todayAt = zonedInstant(formatter, today.year, today.month, today.day, hour, minute)
  return new Date(
    todayAt >= nowMs - JUST_PASSED_MS
      ? todayAt
      : zonedInstant(formatter, today.year, today.month, today.day + 1, hour, minute)
  )
}

// ---------------------------------------------------------------------------------------------------------------
// Classifying the CLI's error line and the StopFailure hook

/**
 * Authentication failures as the CLI words them (claude 2.1.332 and earlier), each anchored on the start of the
 * error line. An OAuth 401 reads "OAuth token has expired" / "Please run /login"; an API key 401 "Invalid API key".
 */
export const AUTH_FAILURE_PATTERNS: ReadonlyArray<RegExp> = [
  /^Invalid API key\b/,
  /^(?:Not logged in|Login expired|OAuth token revoked|Login reached its time limit)\b.*(?:\/login|sign in)/i,
  /^Authentication required\s*[·∙•]\s*Sign in again/,
  /^Failed to authenticate\b/,
  /^(?:Anthropic profile )?login expired\b/i,
  /^Your ANTHROPIC_API_KEY belongs to a disabled organization\b/,
  /^Credit balance is too low\b/,
  /^API Error: 401\b/,
  /^API Error:.*\bOAuth token has expired\b/,
  /^API Error:.*"type":"authentication_error"/,
  /^OAuth token has expired\b/,
  /^Please run \/login\b/
]

// 429s that are about capacity, not the account: rotating would not help, retrying later will.
const TRANSIENT_RATE_LIMIT: ReadonlyArray<RegExp> = [
  /^API Error: Server is temporarily limiting requests\b/,
  /^(?:Opus|Sonnet|Fable|Haiku|Claude)[\w .-]* is experiencing high load\b/
]

const RATE_LIMIT: ReadonlyArray<RegExp> = [
  /^API Error: (?:Request rejected \()?429\b/,
  /^API Error:.*"type":"rate_limit_error"/
]

const OVERLOADED: ReadonlyArray<RegExp> = [
  /^API Error: (?:Repeated )?529\b/,
  /^API Error:.*"type":"overloaded_error"/,
  /^API Error: 5\d\d\b/
]

/** The line without the pane's leading markers: "● ", "⏺ ", "⎿ ". */
const stripMarker = (line: string): string => line.trim().replace(/^(?:[●⏺]|⎿)\s*/, "").trim()

const matchesAny = (patterns: ReadonlyArray<RegExp>, text: string) => patterns.some((re) => re.test(text))

/**
 * Classifies one line that is known to be the CLI's own final error line (not arbitrary output). Undefined when the
 * line is none of the CLI's error wordings.
 */
export const classifyErrorLine = (line: string, now: Date, options: ParseOptions = {}): Limit | undefined => {
  const message = stripMarker(line)
  if (message === "") return undefined
  const usage = matchUsageLimit(message, now, options)
  if (usage !== undefined) return Limit.UsageLimit({ resetAt: usage.resetAt, limit: usage.limit, message })
  if (matchesAny(AUTH_FAILURE_PATTERNS, message)) return Limit.AuthFailed({ message })
  if (matchesAny(TRANSIENT_RATE_LIMIT, message)) return Limit.Overloaded({ message })
  if (matchesAny(RATE_LIMIT, message)) return Limit.RateLimited({ resetAt: undefined, message })
  if (matchesAny(OVERLOADED, message)) return Limit.Overloaded({ message })
  if (message.startsWith("API Error:")) return Limit.Other({ message })
  return undefined
}

/** The StopFailure fields this module reads; the hook also sends session_id, transcript_path, cwd, … */
export interface StopFailurePayload {
  /** rate_limit, authentication_failed, billing_error, server_error, overloaded, invalid_request, … */
  readonly error?: unknown
  /** The CLI's final error text, e.g. "API Error: Request rejected (429) · This request would exceed …". */
  readonly last_assistant_message?: unknown
}

const AUTH_ERRORS: ReadonlySet<string> = new Set([
  "authentication_failed",
  "oauth_org_not_allowed",
  "account_on_hold",
  "billing_error",
  "cloud_credential_error"
])
const SERVER_ERRORS: ReadonlySet<string> = new Set(["server_error", "overloaded"])

/**
 * What a StopFailure hook event means. The hook's `error` kind decides, refined by its message: a rate_limit whose
 * message is a usage-limit wording is a UsageLimit with its reset time; one that is a capacity notice is Overloaded.
 * billing_error ("Credit balance is too low") counts as AuthFailed: the key cannot be used again in this run.
 */
export const classifyStopFailure = (
  payload: StopFailurePayload | Readonly<Record<string, unknown>>,
  now: Date,
  options: ParseOptions = {}
): Limit => {
  const error = typeof payload.error === "string" ? payload.error : "unknown"
  const text = typeof payload.last_assistant_message === "string" ? payload.last_assistant_message.trim() : ""
  const lines = text.split("\n").map((l) => l.trim()).filter((l) => l !== "")
  const message = lines.join(" ") || error
  const byLine = lines.map((l) => classifyErrorLine(l, now, options)).find((c) => c !== undefined)

  if (error === "rate_limit") {
    if (byLine !== undefined && (byLine._tag === "UsageLimit" || byLine._tag === "Overloaded")) return byLine
    return Limit.RateLimited({ resetAt: undefined, message })
  }
  if (AUTH_ERRORS.has(error)) return Limit.AuthFailed({ message })
  if (SERVER_ERRORS.has(error)) return Limit.Overloaded({ message })
  return byLine ?? Limit.Other({ message })
}

// ---------------------------------------------------------------------------------------------------------------
// The CLI's own error line in a pane

const isRule = (line: string) => /^\s*[─━]{3,}\s*$/.test(line) || /^\s*╭─/.test(line)
const isPromptLine = (line: string) => /^(?:│\s*)?[❯>](?:[\s\u00a0]|$)/.test(line)
const isTopLevel = (line: string) => line !== "" && !/^\s/.test(line)
/** Right-aligned notices ("tmux focus-events off · …") sit far from the left edge; they belong to no block. */
const isFarIndented = (line: string) => /^\s{20,}/.test(line)

/** True for the CLI's own error wordings; the rest of a block (agent text, tool output) never counts. */
const isCliErrorText = (text: string) =>
  text.startsWith("API Error:") ||
  USAGE_LIMIT_PATTERNS.some(({ pattern }) => pattern.test(text)) ||
  AUTH_FAILURE_PATTERNS.some((re) => re.test(text)) ||
  TRANSIENT_RATE_LIMIT.some((re) => re.test(text))

/**
 * The CLI's final error line in a pane capture, or undefined. Only the last output block above the input prompt is
 * read, and only where the CLI prints its own errors:
 * - a top-level `● API Error: …` (or `● <usage-limit wording>`) line: how 429/529 end a turn
 *   ("● API Error: Request rejected (429) · …");
 * - a `⎿  …` line directly under the user's own prompt line: how 401s and usage limits end a turn
 *   ("❯ fix it" / "  ⎿  Invalid API key · Fix external API key").
 * Tool output (`⎿` under a `● Bash(…)` line), agent text and code never count, whatever "429" or "rate limit"
 * they contain; a block that ended normally ("✻ Baked for 3s") or is still running gives undefined.
 * Lines the terminal wrapped are joined back.
 */
export const findCliErrorLine = (pane: string | ReadonlyArray<string>): string | undefined => {
  const lines = (typeof pane === "string" ? pane.split("\n") : [...pane]).map((l) => withoutEscapes(l).trimEnd())

  // The input box: a prompt line right under a rule. Without one (a menu, an exited CLI) the whole capture is read.
  let end = lines.length
  for (let i = lines.length - 1; i > 0; i--) {
    if (isPromptLine(lines[i]!) && isRule(lines[i - 1]!)) {
      end = i - 1
      break
    }
  }

  let top = end - 1
  while (top >= 0 && !isTopLevel(lines[top]!) || (top >= 0 && isRule(lines[top]!))) top--
  if (top < 0) return undefined
  const block = lines.slice(top, end).filter((l) => l !== "" && !isFarIndented(l))
  const head = block[0]!

  const bullet = /^[●⏺]\s+(.*)$/.exec(head)
  if (bullet !== null) {
    const continuation = []
    for (const l of block.slice(1)) {
      if (!/^ {2}\S/.test(l) || l.trimStart().startsWith("⎿")) break
      continuation.push(l.trim())
    }
    const text = [bullet[1]!.trim(), ...continuation].join(" ")
    return isCliErrorText(text) ? text : undefined
  }

  // A bash-mode prompt ("❯ !curl …") shows the command's own output under ⎿: not the CLI's.
  if (isPromptLine(head) && !/^(?:│\s*)?[❯>][\s\u00a0]+!/.test(head)) {
    const at = block.findIndex((l) => /^\s+⎿\s/.test(l))
    if (at < 0) return undefined
    const continuation = []
    for (const l of block.slice(at + 1)) {
      if (!/^ {5}\S/.test(l) || l.trimStart().startsWith("⎿")) break
      continuation.push(l.trim())
    }
    const text = [block[at]!.replace(/^\s+⎿\s+/, "").trim(), ...continuation].join(" ")
    return isCliErrorText(text) ? text : undefined
  }
  return undefined
}

// ---------------------------------------------------------------------------------------------------------------
// Confirming a StopFailure hook against the pane

/**
 * What cco acts on after a StopFailure hook. A hook's payload is written by whatever runs in the agent's
 * environment, so an agent can forge one; the CLI's own error line on the instance's pane is what decides:
 * - `Confirmed`: the pane's line names the failure (its kind and reset time come from the line, not the hook);
 * - `Unconfirmed`: the hook claims a limit, an authentication failure or an overload the pane does not show.
 *   Nothing in the credential pool changes on it: no credential is cooled, retired or backed off.
 * A claim of `Other` needs no confirmation: cco only logs it.
 */
export type StopFailureVerdict = Data.TaggedEnum<{
  Confirmed: { readonly limit: Limit; readonly line: string | undefined }
  Unconfirmed: { readonly claimed: Limit }
}>
export const StopFailureVerdict = Data.taggedEnum<StopFailureVerdict>()

/**
 * After an unconfirmed claim, how long cco waits before telling the instance (if it still rests on the error) to
 * go on: a genuine failure whose wording cco does not know is retried on the same credential at this pace.
 */
export const UNCONFIRMED_RETRY: Duration.Duration = Duration.seconds(30)

/** The verdict on a hook's claimed limit, given the CLI error line found on the pane (if any). */
export const confirmStopFailure = (
  claimed: Limit,
  paneLine: string | undefined,
  now: Date,
  options: ParseOptions = {}
): StopFailureVerdict => {
  const shown = paneLine === undefined ? undefined : classifyErrorLine(paneLine, now, options)
  if (shown !== undefined && shown._tag !== "Other") return StopFailureVerdict.Confirmed({ limit: shown, line: paneLine })
  if (claimed._tag === "Other") return StopFailureVerdict.Confirmed({ limit: claimed, line: paneLine })
  return StopFailureVerdict.Unconfirmed({ claimed })
}

/**
 * Reads the pane until it shows the CLI's final error line: the CLI may draw it a moment after its hook fired.
 * Undefined when none appears within `attempts` reads `interval` apart, or the pane cannot be read.
 */
export const awaitCliErrorLine = <E, R>(
  capture: Effect.Effect<string, E, R>,
  options: { readonly attempts?: number; readonly interval?: Duration.DurationInput } = {}
): Effect.Effect<string | undefined, never, R> => {
  const attempts = Math.max(1, options.attempts ?? 12)
  const interval = options.interval ?? Duration.millis(250)
  const attempt = (n: number): Effect.Effect<string | undefined, never, R> =>
    capture.pipe(
      Effect.map(findCliErrorLine),
      Effect.orElseSucceed(() => undefined),
      Effect.flatMap((line) =>
        line !== undefined || n + 1 >= attempts ? Effect.succeed(line) : Effect.zipRight(Effect.sleep(interval), attempt(n + 1))
      )
    )
  return attempt(0)
}

/**
 * True when the pane shows the CLI's usage-limit menu (`/rate-limit-options`: "What do you want to do?  1. Stop and
 * wait for limit to reset …"), which swallows pasted input until dismissed with Escape.
 */
export const isUsageLimitMenu = (pane: string | ReadonlyArray<string>): boolean => {
  const lines = typeof pane === "string" ? pane.split("\n") : pane
  return lines.some((l) => /\bStop and wait for limit to reset\b/.test(withoutEscapes(l)))
}

// ---------------------------------------------------------------------------------------------------------------
// Rate-limit response headers

export type HeaderSource =
  | { readonly get: (name: string) => string | null }
  | Readonly<Record<string, string | ReadonlyArray<string> | undefined>>

const header = (headers: HeaderSource, name: string): string | undefined => {
  if (typeof headers.get === "function") {
    const value = (headers as { readonly get: (name: string) => string | null }).get(name)
    return value === null ? undefined : value
  }
  const record = headers as Readonly<Record<string, string | ReadonlyArray<string> | undefined>>
  for (const [key, value] of Object.entries(record)) {
    if (key.toLowerCase() !== name) continue
    const first = typeof value === "string" ? value : value?.[0]
    return first
  }
  return undefined
}

/** `retry-after`: whole or fractional seconds, or an HTTP date. */
export const parseRetryAfter = (value: string, now: Date): Date | undefined => {
  const v = value.trim()
  if (/^\d+(?:\.\d+)?$/.test(v)) return new Date(now.getTime() + Math.ceil(Number(v) * 1000))
  const at = Date.parse(v)
  return Number.isNaN(at) ? undefined : new Date(at)
}

/** An `anthropic-ratelimit-*-reset` value: RFC 3339, or epoch seconds (the subscription `unified` headers). */
const parseResetHeader = (value: string): Date | undefined => {
  const v = value.trim()
  if (/^\d{9,11}(?:\.\d+)?$/.test(v)) return new Date(Math.round(Number(v)) * 1000)
  const at = Date.parse(v)
  return Number.isNaN(at) ? undefined : new Date(at)
}

const LIMIT_FAMILIES = ["requests", "tokens", "input-tokens", "output-tokens"]

/**
 * When a rate-limited credential may be used again, from a response's headers: `retry-after` when present (the
 * server's own answer); else the latest reset of the API limits that are used up (`anthropic-ratelimit-<family>-
 * remaining: 0`), or of all those given when none says how much remains; else the subscription's
 * `anthropic-ratelimit-unified-reset` (epoch seconds). Undefined when no header tells.
 */
export const resetFromHeaders = (headers: HeaderSource, now: Date): Date | undefined => {
  const retryAfter = header(headers, "retry-after")
  if (retryAfter !== undefined) {
    const at = parseRetryAfter(retryAfter, now)
    if (at !== undefined) return at
  }
  const resets: Array<{ readonly at: Date; readonly exhausted: boolean | undefined }> = []
  for (const family of LIMIT_FAMILIES) {
    const reset = header(headers, `anthropic-ratelimit-${family}-reset`)
    const at = reset === undefined ? undefined : parseResetHeader(reset)
    if (at === undefined) continue
    const remaining = header(headers, `anthropic-ratelimit-${family}-remaining`)
    resets.push({ at, exhausted: remaining === undefined ? undefined : Number(remaining) <= 0 })
  }
  const exhausted = resets.filter((r) => r.exhausted === true)
  const considered = exhausted.length > 0 ? exhausted : resets.filter((r) => r.exhausted === undefined)
  if (considered.length > 0) return new Date(Math.max(...considered.map((r) => r.at.getTime())))
  const unified = header(headers, "anthropic-ratelimit-unified-reset")
  return unified === undefined ? undefined : parseResetHeader(unified)
}
