// Subscription usage-limit wordings as the CLI prints them, each with an example and where it was seen, and the
// limit and reset time one of them names.
import { type ParseOptions, parseResetTime } from "./ResetTimes.js"

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
    // The notice 2.1.332 leaves as the last block of an interactive pane after a usage-limit reply, under the
    // "❯ prompt / ⎿ You've hit your 5-hour limit · resets 12:57am (UTC)" lines; the CLI then waits for the reset by
    // itself ("Continuing automatically at 12:57am · Esc to cancel"). The time is the CLI's local time, no zone.
    name: "usage-limit-auto-continue",
    pattern: new RegExp(String.raw`^Usage limit reached(?<limit>)${SEP}set to continue automatically at ${RESET}\.?$`),
    example: "Usage limit reached · set to continue automatically at 12:57am",
    source: "claude 2.1.332 in tmux with CLAUDE_CODE_OAUTH_TOKEN, against a local mock answering 429 with the unified rate-limit headers (2026-11-28)"
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

/** The line without the pane's leading markers: "● ", "⏺ ", "⎿ ". */
export const stripMarker = (line: string): string => line.trim().replace(/^(?:[●⏺]|⎿)\s*/, "").trim()
