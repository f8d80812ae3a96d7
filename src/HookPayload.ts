// The hook payloads Claude Code sends over the control socket, decoded to the few bounded fields cco reads: a
// payload is untrusted, so nothing else of it reaches the run.
import { Either, Schema } from "effect"
import type { ParseResult } from "effect"

export const HookName = Schema.Literal(
  "SessionStart",
  "UserPromptSubmit",
  "PreToolUse",
  "PostToolUse",
  "PostToolUseFailure",
  "Stop",
  "StopFailure",
  "SubagentStop",
  "Notification",
  "PreCompact",
  "SessionEnd"
)
export type HookName = typeof HookName.Type

/**
 * Claude Code's http hooks post an event to `<hookUrl>/hook/<HookName>` with the payload as the body and the
 * sender in these headers, which the CLI fills from the instance's environment (CCO_INSTANCE, CCO_GENERATION,
 * CCO_TOKEN): the token reaches the header and nothing else.
 */
export const hookHeaders = {
  instance: "x-cco-instance",
  generation: "x-cco-generation",
  token: "x-cco-token"
} as const

/** A string cut to `max` characters: a long text costs its tail, never the event. */
const Text = (max: number) =>
  Schema.transform(Schema.String, Schema.String, {
    strict: true,
    decode: (s) => (s.length > max ? s.slice(0, max) : s),
    encode: (s) => s
  })

// Absent or null both mean "not sent"; any other type than a string makes the event undecodable.
const Short = Schema.optionalWith(Text(256), { nullable: true })
const FilePath = Schema.optionalWith(Text(4096), { nullable: true })
const Long = Schema.optionalWith(Text(16_384), { nullable: true })

/**
 * The hook payload fields cco reads (and a few that help a person reading combined.log), each a bounded string.
 * Everything else the CLI sends — tool inputs and responses, nested objects of any depth — is dropped.
 */
export const HookPayload = Schema.Struct({
  session_id: Short,
  transcript_path: FilePath,
  cwd: FilePath,
  hook_event_name: Short,
  /** SessionStart: startup, resume, clear, compact. */
  source: Short,
  model: Short,
  /** UserPromptSubmit. */
  prompt: Long,
  /** PreToolUse, PostToolUse, PostToolUseFailure. */
  tool_name: Short,
  tool_use_id: Short,
  /** StopFailure: rate_limit, authentication_failed, …; PostToolUseFailure: the tool's error text. */
  error: Long,
  /** Stop, SubagentStop, StopFailure: the turn's last text (for StopFailure the CLI's error line). */
  last_assistant_message: Long,
  /** Notification. */
  notification_type: Short,
  message: Long,
  title: Short,
  /** PreCompact. */
  trigger: Short,
  /** SessionEnd. */
  reason: Short
})
export type HookPayload = typeof HookPayload.Type

type PayloadField = keyof typeof HookPayload.fields
const common: ReadonlyArray<PayloadField> = ["session_id", "transcript_path", "cwd", "hook_event_name"]
const fieldsOf: Readonly<Record<HookName, ReadonlyArray<PayloadField>>> = {
  SessionStart: ["source", "model"],
  UserPromptSubmit: ["prompt"],
  PreToolUse: ["tool_name", "tool_use_id"],
  PostToolUse: ["tool_name", "tool_use_id"],
  PostToolUseFailure: ["tool_name", "tool_use_id", "error"],
  Stop: ["last_assistant_message"],
  StopFailure: ["error", "last_assistant_message"],
  SubagentStop: ["last_assistant_message"],
  Notification: ["notification_type", "message", "title"],
  PreCompact: ["trigger"],
  SessionEnd: ["reason"]
}
const payloadOf = (hook: HookName) => HookPayload.pipe(Schema.pick(...common, ...fieldsOf[hook]))

/** The path (field names) of the first problem in a failed decode, without formatting the offending value. */
const firstPath = (issue: ParseResult.ParseIssue): ReadonlyArray<PropertyKey> => {
  switch (issue._tag) {
    case "Pointer":
      return [...(Array.isArray(issue.path) ? issue.path : [issue.path as PropertyKey]), ...firstPath(issue.issue)]
    case "Composite": {
      const inner = Array.isArray(issue.issues) ? issue.issues[0] : issue.issues as ParseResult.ParseIssue
      return inner === undefined ? [] : firstPath(inner)
    }
    case "Refinement":
    case "Transformation":
      return firstPath(issue.issue)
    default:
      return []
  }
}

/** Decodes one hook's payload, or says which field is wrong. */
export const decodeHookPayload = (hook: HookName, payload: unknown): Either.Either<Partial<HookPayload>, string> =>
  Either.mapLeft(
    Schema.decodeUnknownEither(payloadOf(hook), { errors: "first", onExcessProperty: "ignore" })(payload),
    (e) => {
      const where = firstPath(e.issue).map((k) => String(k).slice(0, 64)).join(".")
      return `invalid ${hook} payload${where === "" ? "" : `: ${where} is not a string`}`
    }
  )
