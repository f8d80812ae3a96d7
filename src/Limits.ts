// What a failed turn means for its credential (`Limit`), from the CLI's own final error line: usage limits,
// authentication failures, rate limits, overloads. The hook is read in StopFailure.ts, the pane in PaneErrorLine.ts.
// Nothing here matches broad words ("429", "rate limit") in arbitrary text: only the CLI's own error line is read.
import { Schema } from "effect"
import type { ParseOptions } from "./ResetTimes.js"
import { matchUsageLimit, stripMarker, USAGE_LIMIT_PATTERNS } from "./UsageLimits.js"

// Each kind is a tagged error: Rotation fails with the confirmed one and recovers by tag (Effect.catchTags).

/** 429 on an API key (or a subscription without a usage-limit wording): rotate, cool the credential. */
export class RateLimited extends Schema.TaggedError<RateLimited>()("RateLimited", {
  resetAt: Schema.UndefinedOr(Schema.DateFromSelf),
  message: Schema.String
}) {}

/** Subscription usage limit ("You've hit your limit · resets 8pm (Africa/Cairo)"): cool until the reset. */
export class UsageLimit extends Schema.TaggedError<UsageLimit>()("UsageLimit", {
  resetAt: Schema.UndefinedOr(Schema.DateFromSelf),
  limit: Schema.String,
  message: Schema.String
}) {}

/** 401, expired or revoked OAuth login, a key of a disabled organization, no credit: unusable for the run. */
export class AuthFailed extends Schema.TaggedError<AuthFailed>()("AuthFailed", { message: Schema.String }) {}

/** 529, 5xx, transient capacity limits: retry on the same credential after a backoff, no rotation. */
export class Overloaded extends Schema.TaggedError<Overloaded>()("Overloaded", { message: Schema.String }) {}

/** Any other failure (bad request, prompt too long, …): nothing to do with the credential. */
export class OtherApiError extends Schema.TaggedError<OtherApiError>()("Other", { message: Schema.String }) {}

/** What a failed turn means for the credential it ran on. */
export type Limit = RateLimited | UsageLimit | AuthFailed | Overloaded | OtherApiError

/** Constructors by tag. */
export const Limit = {
  RateLimited: (args: ConstructorParameters<typeof RateLimited>[0]): Limit => new RateLimited(args),
  UsageLimit: (args: ConstructorParameters<typeof UsageLimit>[0]): Limit => new UsageLimit(args),
  AuthFailed: (args: ConstructorParameters<typeof AuthFailed>[0]): Limit => new AuthFailed(args),
  Overloaded: (args: ConstructorParameters<typeof Overloaded>[0]): Limit => new Overloaded(args),
  Other: (args: ConstructorParameters<typeof OtherApiError>[0]): Limit => new OtherApiError(args)
} as const

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

/** True for the CLI's own error wordings; the rest of a block (agent text, tool output) never counts. */
export const isCliErrorText = (text: string) =>
  text.startsWith("API Error:") ||
  USAGE_LIMIT_PATTERNS.some(({ pattern }) => pattern.test(text)) ||
  AUTH_FAILURE_PATTERNS.some((re) => re.test(text)) ||
  TRANSIENT_RATE_LIMIT.some((re) => re.test(text))
