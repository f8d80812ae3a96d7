// orchestrator.json: its Schema, with a range and a unit for every number and the defaults of every option.
import { ParseResult, Schema } from "effect"
import { expected, expectedKind, show, unknownOption } from "./ConfigError.js"
import { HOST_KEYS, Hosts } from "./HostsConfig.js"

export const ORCHESTRATOR_FILE = "orchestrator.json"

export type AuthMode = "oauth" | "api-keys-first" | "api-keys-only"

/** Longer than any path, URL or command line cco needs; keeps a pasted blob out of error lines and state. */
const MAX_TEXT = 4096

const NonEmptyText = (what: string) =>
  Schema.String.annotations({ message: expected(what) }).pipe(
    Schema.filter((s) => s.trim().length > 0 || "must not be empty"),
    Schema.filter((s) => s.length <= MAX_TEXT || `must be at most ${MAX_TEXT} characters, got ${s.length}`),
    Schema.filter((s) =>
      !/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/u.test(s) ||
      `must not contain control or invisible formatting characters, got ${show(s)}`
    )
  )

const RepositoryUrl = NonEmptyText("a git URL or a path to a repository")

/** cco names the branches of a run `cco/<runId>/<instance>`; a target branch there would collide with them. */
const RUN_BRANCH_PREFIX = "cco"

/**
 * Why `name` is not a branch git accepts (the rules of git check-ref-format, plus what `git branch` refuses), or
 * undefined when it is one. Anything that is not printable ASCII-or-letters is refused too: a branch name ends up
 * in prompts, terminals and ref files.
 */
export const branchNameProblem = (name: string): string | undefined => {
  if (name.length > 200) return `is longer than 200 characters`
  if (/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}\p{Co}\p{Cn}]/u.test(name)) return "contains control or invisible characters"
  if (/\s/u.test(name)) return "contains white space"
  const bad = /[~^:?*[\\]/.exec(name)
  if (bad) return `contains ${JSON.stringify(bad[0])}`
  if (name.startsWith("-")) return `starts with "-"`
  if (name.startsWith("/") || name.endsWith("/")) return `starts or ends with "/"`
  if (name.includes("//")) return `contains "//"`
  if (name.includes("..")) return `contains ".."`
  if (name.includes("@{")) return `contains "@{"`
  if (name === "@" || name === "HEAD") return `is ${JSON.stringify(name)}, which git reserves`
  if (name.endsWith(".")) return `ends with "."`
  for (const part of name.split("/")) {
    if (part.startsWith(".")) return `has a part starting with "." (${JSON.stringify(part)})`
    if (part.endsWith(".lock")) return `has a part ending in ".lock" (${JSON.stringify(part)})`
  }
  if (name === RUN_BRANCH_PREFIX || name.startsWith(`${RUN_BRANCH_PREFIX}/`)) {
    return `is inside "${RUN_BRANCH_PREFIX}/", where cco keeps the branches of its runs`
  }
  return undefined
}

const BranchName = Schema.String.annotations({ message: expected("a branch name") }).pipe(
  Schema.filter((s) => s.length > 0 || "must not be empty"),
  Schema.filter((s) => {
    const problem = branchNameProblem(s)
    return problem === undefined || `${show(s)} is not a valid git branch name: it ${problem}`
  })
)

const decimal = (n: number) => String(n)

/**
 * A number from `min` to `max` (a whole number when `whole`); every error says the range and the unit. Finite by
 * construction: JSON's 1e400 is Infinity.
 */
const Bounded = (o: {
  readonly min: number
  readonly max: number
  readonly whole?: boolean
  readonly unit?: string
  /** Said after the range: "(7 days)". */
  readonly note?: string
}) => {
  const range = `${o.whole ? "a whole number" : "a number"}${o.unit === undefined ? "" : ` of ${o.unit}`} from ${
    decimal(o.min)
  } to ${decimal(o.max)}${o.note === undefined ? "" : ` ${o.note}`}`
  return Schema.Number.annotations({ message: expected(range) }).pipe(
    Schema.filter((n) =>
      (Number.isFinite(n) && n >= o.min && n <= o.max && (!o.whole || Number.isInteger(n))) ||
      `must be ${range}, got ${show(n)}`
    )
  )
}

const WorkerCount = Bounded({ whole: true, min: 1, max: 20 })
const GroupSize = Bounded({ whole: true, min: 1, max: 20 })
// Below a minute only for tests; a week is the longest a run may be (timers stop at 2^31 ms, 24.8 days).
const RunMinutes = Bounded({ unit: "minutes", min: 0.1, max: 10_080, note: "(7 days)" })
const Seconds = (max: number, note: string) => Bounded({ unit: "seconds", min: 1, max, note })
const Restarts = Bounded({ whole: true, min: 1, max: 100 })
const Dollars = Bounded({ unit: "US dollars", min: 0.01, max: 100_000 })
const Tokens = Bounded({ whole: true, min: 1, max: 1_000_000_000_000 })
// A check longer than a day is a hang, not a check.
const CheckMinutes = Bounded({ unit: "minutes", min: 0.05, max: 1_440, note: "(a day)" })

const Flag = Schema.Boolean.annotations({ message: expected("true or false") })

export const AUTH_MODES: ReadonlyArray<AuthMode> = ["oauth", "api-keys-first", "api-keys-only"]

const isAuthMode = (s: string): s is AuthMode => (AUTH_MODES as ReadonlyArray<string>).includes(s)
const authModeMessage = (issue: ParseResult.ParseIssue) =>
  `must be one of ${AUTH_MODES.map((m) => `"${m}"`).join(", ")}, got ${show(issue.actual)}`

const AuthModeSchema = Schema.String.annotations({ message: authModeMessage }).pipe(
  Schema.filter(isAuthMode, { message: authModeMessage })
)

const MODEL_ALIASES = ["haiku", "sonnet", "opus"]
// Full ids: claude-sonnet-4-5, claude-opus-4-1-20250805, claude-3-5-haiku-20241022.
const MODEL_ID = /^claude-[a-z0-9]+(?:[-.][a-z0-9]+)*$/

const Model = Schema.String.annotations({ message: expected("a model name") }).pipe(
  Schema.filter((s) =>
    MODEL_ALIASES.includes(s) || MODEL_ID.test(s) ||
    `must be "haiku", "sonnet", "opus" or a full model id like "claude-sonnet-4-5", got ${show(s)}`
  )
)

const SANDBOX_MODES = ["auto", "bwrap", "none"] as const
const sandboxMessage = (issue: ParseResult.ParseIssue) =>
  `must be one of ${SANDBOX_MODES.map((m) => `"${m}"`).join(", ")}, got ${show(issue.actual)}`

/** How instances are confined: "auto" (bubblewrap when it works here), "bwrap" (required), "none". */
const SandboxSchema = Schema.String.annotations({ message: sandboxMessage }).pipe(
  Schema.filter((s): s is typeof SANDBOX_MODES[number] => (SANDBOX_MODES as ReadonlyArray<string>).includes(s), { message: sandboxMessage })
)

const SocketName = NonEmptyText("a tmux socket name").pipe(
  Schema.filter((s) => /^[A-Za-z0-9._-]+$/.test(s) || `must use only letters, digits, ".", "_" and "-", got ${show(s)}`)
)

// ---------------------------------------------------------------------------------------------------------------
// notify: webhooks told when a run needs a person (Notify.ts delivers them).

/** What an alert can be about; a webhook gets all of them unless it lists some. */
export const ALERT_EVENTS = [
  "instance-stopped",
  "credentials-exhausted",
  "check-failed",
  "cost-80",
  "cost-100",
  "run-finished"
] as const

export type AlertEvent = typeof ALERT_EVENTS[number]

export const WEBHOOK_FORMATS = ["json", "slack"] as const

/** The most webhooks a run tells. */
const MAX_WEBHOOKS = 10
const MAX_URL = 2048

const LOOPBACK_HOSTS = /^(localhost|127(?:\.\d{1,3}){3}|\[::1\])$/i

/**
 * Why `url` is no webhook cco posts to, or undefined when it is one. https anywhere; http only to this machine
 * (a loopback address), since the URL's path is the webhook's secret and the alert is sent in the clear. The
 * messages never show the URL: only its scheme and host.
 */
export const webhookUrlProblem = (url: string): string | undefined => {
  if (url.length > MAX_URL) return `must be at most ${MAX_URL} characters, got ${url.length}`
  if (/[\s\p{Cc}\p{Cf}]/u.test(url)) return "must not contain spaces, control or invisible characters"
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    return "must be an https:// URL"
  }
  if (parsed.protocol !== "https:" && parsed.protocol !== "http:") return `must be an https:// URL, got ${show(parsed.protocol.slice(0, 20))}`
  if (parsed.username !== "" || parsed.password !== "") return "must not hold a user name or password (the secret goes in the path)"
  if (parsed.protocol === "http:" && !LOOPBACK_HOSTS.test(parsed.hostname)) {
    return `must be an https:// URL (http:// only to this machine: localhost, 127.0.0.1 or [::1]), got an http:// URL to another host`
  }
  return undefined
}

// The URL is a secret (a Slack webhook's path is its key): no message shows it.
const WebhookUrl = Schema.Redacted(
  Schema.String.annotations({ message: () => "must be an https:// URL in a string" }).pipe(
    Schema.filter((s) => webhookUrlProblem(s) ?? true)
  )
)

const webhookFormatMessage = (issue: ParseResult.ParseIssue) =>
  `must be one of ${WEBHOOK_FORMATS.map((f) => `"${f}"`).join(", ")}, got ${show(issue.actual)}`

const WebhookFormat = Schema.String.annotations({ message: webhookFormatMessage }).pipe(
  Schema.filter((s): s is typeof WEBHOOK_FORMATS[number] => (WEBHOOK_FORMATS as ReadonlyArray<string>).includes(s), {
    message: webhookFormatMessage
  })
)

const AlertEventName = Schema.String.annotations({ message: expected("an alert event name") }).pipe(
  Schema.filter((s): s is AlertEvent => (ALERT_EVENTS as ReadonlyArray<string>).includes(s), {
    message: (issue) => `${show(issue.actual)}: ${unknownOption("event", String(issue.actual), ALERT_EVENTS)}`
  })
)

const AlertEvents = Schema.Array(AlertEventName).annotations({ message: expected("a list of alert event names") }).pipe(
  Schema.filter((a) => a.length > 0 || `must name at least one event (leave it out for all of them)`),
  Schema.filter((a) => new Set(a).size === a.length || "must not name an event twice")
)

/** One webhook of `notify`: where, in which body, for which events (default: all). */
const WebhookFields = Schema.Struct({
  url: WebhookUrl,
  format: Schema.optionalWith(WebhookFormat, { default: () => "json" as const }),
  events: Schema.optionalWith(AlertEvents, { default: () => [...ALERT_EVENTS] })
})

/**
 * One webhook of `notify`: where, in which body, for which events (default: all). Anything but an object in its
 * place is named by its kind only: a URL given there is the secret itself.
 */
export const Webhook = Schema.Record({ key: Schema.String, value: Schema.Unknown }).annotations({ message: expectedKind("a webhook like {\"url\": \"https://…\"}") }).pipe(
  Schema.compose(WebhookFields, { strict: false })
)

export type Webhook = typeof WebhookFields.Type

export const WEBHOOK_KEYS = Object.keys(WebhookFields.fields)

const Webhooks = Schema.Array(Webhook).annotations({ message: expectedKind("a list of webhooks like [{\"url\": \"https://…\"}]") }).pipe(
  Schema.filter((a) => a.length <= MAX_WEBHOOKS || `must list at most ${MAX_WEBHOOKS} webhooks, got ${a.length}`)
)

/**
 * The keys allowed at a path of orchestrator.json (for "did you mean"): the options at the top (with `extra`, the
 * library's own), a webhook's fields inside `notify`, a host's inside `hosts`.
 */
export const knownKeysAt = (extra: ReadonlyArray<string> = []) => (path: ReadonlyArray<PropertyKey>) =>
  path.length === 0
    ? { kind: "option", keys: [...Object.keys(OrchestratorFile.fields), ...extra] }
    : path.length === 2 && path[0] === "notify" && typeof path[1] === "number"
    ? { kind: "field", keys: WEBHOOK_KEYS }
    : path.length === 2 && path[0] === "hosts" && typeof path[1] === "number"
    ? { kind: "host option", keys: HOST_KEYS }
    : undefined

/** orchestrator.json as written; defaults live here. `logDirectory` defaults to the config directory (resolved later). */
export const OrchestratorFile = Schema.Struct({
  repositoryUrl: RepositoryUrl,
  branch: Schema.optionalWith(BranchName, { default: () => "main" }),
  workerCount: WorkerCount,
  useRunBranch: Schema.optionalWith(Flag, { default: () => false }),
  authMode: Schema.optionalWith(AuthModeSchema, { default: () => "oauth" as const }),
  logDirectory: Schema.optional(NonEmptyText("a directory path")),
  model: Schema.optional(Model),
  engineerManagerGroupSize: Schema.optionalWith(GroupSize, { default: () => 4 }),
  maxRunDurationMinutes: Schema.optionalWith(RunMinutes, { default: () => 120 }),
  claudeCommand: Schema.optionalWith(NonEmptyText("the name or path of the claude executable"), {
    default: () => "claude"
  }),
  tmuxSocket: Schema.optionalWith(SocketName, { default: () => "cco" }),
  healthCheckIntervalSeconds: Schema.optionalWith(Seconds(600, "(10 minutes)"), { default: () => 15 }),
  stuckAfterSeconds: Schema.optionalWith(Seconds(86_400, "(a day)"), { default: () => 600 }),
  idleAfterSeconds: Schema.optionalWith(Seconds(86_400, "(a day)"), { default: () => 300 }),
  escalationIntervalSeconds: Schema.optionalWith(Seconds(3_600, "(an hour)"), { default: () => 120 }),
  maxRestartsPerInstance: Schema.optionalWith(Restarts, { default: () => 5 }),
  maxCostUsd: Schema.optional(Dollars),
  maxCostUsdPerInstance: Schema.optional(Dollars),
  maxTokens: Schema.optional(Tokens),
  /** Run by sh in every new worktree before its instance starts (e.g. `npm ci`). */
  setupCommand: Schema.optional(NonEmptyText("a shell command")),
  /** The project's checks (e.g. `npm test`), run by sh on the merged result before a merge lands. */
  checkCommand: Schema.optional(NonEmptyText("a shell command")),
  checkTimeoutMinutes: Schema.optionalWith(CheckMinutes, { default: () => 15 }),
  sandbox: Schema.optionalWith(SandboxSchema, { default: () => "auto" as const }),
  /** Webhooks told when the run needs a person (Notify.ts). */
  notify: Schema.optionalWith(Webhooks, { default: () => [] }),
  /** The machines instances run on (see HostsConfig.ts); absent: this machine only. */
  hosts: Schema.optional(Hosts)
})
