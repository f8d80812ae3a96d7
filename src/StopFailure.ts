// The StopFailure hook: what its payload claims, and the verdict once the CLI's own error line on the pane has
// been read (a hook can be forged by the agent; the pane decides).
import { Data, Duration } from "effect"
import { classifyErrorLine, Limit } from "./Limits.js"
import type { ParseOptions } from "./ResetTimes.js"

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
