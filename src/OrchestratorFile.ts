// orchestrator.json: its Schema, with a range and a unit for every number and the defaults of every option.
import { ParseResult, Schema } from "effect"
import { expected, show } from "./ConfigError.js"
import { Hosts } from "./HostsConfig.js"

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
  /** The machines instances run on (see HostsConfig.ts); absent: this machine only. */
  hosts: Schema.optional(Hosts)
})
