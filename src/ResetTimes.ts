// When a limited credential may be used again: reset times as the CLI prints them, and from the rate-limit headers
// of an API response.

export interface ParseOptions {
  /**
   * IANA zone for reset times printed without one ("resets 3pm"). The CLI prints those in its machine's local
   * zone, which is this machine's; defaults to the zone of this process.
   */
  readonly timeZone?: string
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
