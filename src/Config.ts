// The configuration: orchestrator.json and the optional api-keys.json of a config directory, decoded by Schema.
// Every problem becomes one ConfigError naming the file and the field; API keys are Redacted from the moment they are read.
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import { Context, Effect, Either, ParseResult, Redacted, Schema } from "effect"
import { MAX_BYTES, readRegularFile } from "./RegularFile.js"

export type AuthMode = "oauth" | "api-keys-first" | "api-keys-only"

export interface ApiKeyCredential {
  readonly name: string
  readonly env: Readonly<Record<string, Redacted.Redacted<string>>>
}

export interface ResolvedConfig {
  /** Absolute. */
  readonly configDir: string
  /** Anything git can clone; a local path is made absolute against configDir. */
  readonly repositoryUrl: string
  readonly branch: string
  readonly workerCount: number
  readonly useRunBranch: boolean
  readonly authMode: AuthMode
  /** Absolute. */
  readonly logDirectory: string
  readonly model: string | undefined
  readonly engineerManagerGroupSize: number
  readonly maxRunDurationMinutes: number
  /** Name (looked up in PATH) or path of the claude executable. */
  readonly claudeCommand: string
  /** tmux server socket name (tmux -L). */
  readonly tmuxSocket: string
  /** Supervisor: seconds between health checks of each instance. */
  readonly healthCheckIntervalSeconds: number
  /** Busy with no hook event or tool use for this long: stuck. */
  readonly stuckAfterSeconds: number
  /** Idle with an unreported task for this long: nudged. */
  readonly idleAfterSeconds: number
  /** Time between steps of the escalation ladder (nudge, interrupt, restart). */
  readonly escalationIntervalSeconds: number
  /** Restarts allowed per instance within 10 minutes before it is left stopped. */
  readonly maxRestartsPerInstance: number
  /** Cost limits: the run winds down when one is reached (warning at 80 %). */
  readonly maxCostUsd: number | undefined
  readonly maxCostUsdPerInstance: number | undefined
  readonly maxTokens: number | undefined
  readonly apiKeys: ReadonlyArray<ApiKeyCredential>
}

/** Values given at the edge (environment, flags) that win over the files. */
export interface ConfigOverrides {
  readonly claudeCommand?: string | undefined
}

/** The loaded configuration, for services that need it. */
export class Config extends Context.Tag("cco/Config")<Config, ResolvedConfig>() {}

export class ConfigError extends Schema.TaggedError<ConfigError>()("ConfigError", {
  file: Schema.String,
  field: Schema.optional(Schema.String),
  message: Schema.String
}) {
  /** One line for the user: `<file>: <field>: <what is wrong>`. */
  get summary(): string {
    return this.field === undefined ? `${this.file}: ${this.message}` : `${this.file}: ${this.field}: ${this.message}`
  }

  override toString(): string {
    return `ConfigError: ${this.summary}`
  }
}

export const ORCHESTRATOR_FILE = "orchestrator.json"
export const API_KEYS_FILE = "api-keys.json"

// ---------------------------------------------------------------------------------------------------------------
// orchestrator.json

/**
 * Text from a config file made safe to show on one line of a terminal: control, format (bidi, zero-width) and
 * line-separator characters as escapes, long text cut.
 */
export const printable = (text: string, max = 60): string => {
  const escaped = text.replace(
    /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/gu,
    (c) => `\\u{${c.codePointAt(0)!.toString(16)}}`
  )
  return escaped.length > max ? `${escaped.slice(0, max - 3)}...` : escaped
}

const show = (actual: unknown): string => {
  if (actual === undefined) return "nothing"
  // JSON.stringify turns Infinity (what JSON's 1e400 parses to) into null.
  if (typeof actual === "number") return String(actual)
  const json = JSON.stringify(actual)
  return printable(json === undefined ? String(actual) : json)
}

/** A type error that shows the offending value (never used for secrets). */
const expected = (what: string) => (issue: ParseResult.ParseIssue) =>
  `must be ${what}, got ${show(issue.actual)}`

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
  maxTokens: Schema.optional(Tokens)
})

// ---------------------------------------------------------------------------------------------------------------
// api-keys.json — no message here may show a value: any of them can be a secret.

const secretMessage = (what: string) => () => `must be ${what}`

const SecretText = Schema.String.annotations({ message: secretMessage("a string") }).pipe(
  Schema.filter((s) => s.length > 0 || "must not be empty"),
  Schema.filter((s) => !/\s/.test(s) || "must not contain spaces or line breaks")
)

const Secret = Schema.Redacted(SecretText)

const BaseUrl = Schema.Redacted(
  SecretText.pipe(Schema.filter((s) => /^https?:\/\/[^\s/]+/.test(s) || "must be an http:// or https:// URL"))
)

const EnvFields = {
  ANTHROPIC_API_KEY: Schema.optional(Secret),
  ANTHROPIC_AUTH_TOKEN: Schema.optional(Secret),
  ANTHROPIC_BASE_URL: Schema.optional(BaseUrl)
}

const KeyEnv = Schema.Struct(EnvFields).annotations({
  message: secretMessage("an object of environment variables")
}).pipe(
  Schema.filter((env) => {
    const key = env.ANTHROPIC_API_KEY !== undefined
    const token = env.ANTHROPIC_AUTH_TOKEN !== undefined
    if (key && token) return "has both ANTHROPIC_API_KEY and ANTHROPIC_AUTH_TOKEN; give one of them"
    if (token && env.ANTHROPIC_BASE_URL === undefined) return "ANTHROPIC_AUTH_TOKEN needs ANTHROPIC_BASE_URL beside it"
    if (!key && !token) {
      return "needs ANTHROPIC_API_KEY, or ANTHROPIC_AUTH_TOKEN with ANTHROPIC_BASE_URL"
    }
    return true
  })
)

const KeyName = Schema.String.annotations({ message: expected("a name") }).pipe(
  Schema.filter((s) => s.length > 0 || "must not be empty"),
  Schema.filter((s) =>
    /^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(s) ||
    `must start with a letter or digit and use only letters, digits, ".", "_" and "-", got ${show(s)}`
  )
)

const ApiKeyEntry = Schema.Struct({ name: KeyName, env: KeyEnv }).annotations({
  message: secretMessage("an object { \"name\": ..., \"env\": { ... } }")
})

/** api-keys.json as written: a non-empty array of named credentials. */
export const ApiKeysFile = Schema.Array(ApiKeyEntry).annotations({
  message: secretMessage("a JSON array of { \"name\": ..., \"env\": { ... } } entries")
}).pipe(
  Schema.filter((entries) => entries.length > 0 || "must list at least one key"),
  Schema.filter((entries) => {
    const seen = new Map<string, number>()
    for (const [i, entry] of entries.entries()) {
      const first = seen.get(entry.name)
      if (first !== undefined) {
        return { path: [i, "name"], message: `duplicate key name ${show(entry.name)} (also at [${first}])` }
      }
      seen.set(entry.name, i)
    }
    return true
  })
)

// ---------------------------------------------------------------------------------------------------------------
// Turning parse problems into one line

/** Levenshtein distance, for "did you mean". */
export const editDistance = (a: string, b: string): number => {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const current = [i]
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(
        previous[j]! + 1,
        current[j - 1]! + 1,
        previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1)
      )
    }
    previous = current
  }
  return previous[b.length]!
}

/** "unknown option", with the closest known name when it is close enough to be a typo. */
export const unknownOption = (kind: string, name: string, known: ReadonlyArray<string>): string => {
  const ranked = known
    .map((k) => ({ k, d: editDistance(name.toLowerCase(), k.toLowerCase()) }))
    .sort((x, y) => x.d - y.d)
  const best = ranked[0]
  if (best !== undefined && best.d <= Math.max(2, Math.floor(name.length / 2))) {
    return `unknown ${kind}; did you mean ${best.k}?`
  }
  return `unknown ${kind}; known: ${known.join(", ")}`
}

const fieldName = (path: ReadonlyArray<PropertyKey>): string =>
  path.reduce<string>(
    (acc, key) =>
      typeof key === "number" ? `${acc}[${key}]` : acc === "" ? printable(String(key)) : `${acc}.${printable(String(key))}`,
    ""
  )

/**
 * The first problem of a parse error as {field, message}; `knownKeys` names the options allowed at a path (the
 * decoded value's own path), `prefix` is where that value sits in the whole input (`apiKeys` for its entries).
 */
export const firstProblem = (
  error: ParseResult.ParseError,
  knownKeys: (path: ReadonlyArray<PropertyKey>) => { kind: string; keys: ReadonlyArray<string> } | undefined,
  prefix: ReadonlyArray<PropertyKey> = []
): { field: string | undefined; message: string } => {
  const issues = ParseResult.ArrayFormatter.formatErrorSync(error)
  const first = issues[0]
  const path = [...prefix, ...(first?.path ?? [])]
  const field = path.length === 0 ? undefined : fieldName(path)
  if (first === undefined) return { field, message: "is not valid" }
  switch (first._tag) {
    case "Missing":
      return { field, message: "is required" }
    case "Unexpected": {
      const name = String(first.path[first.path.length - 1])
      const known = knownKeys(first.path.slice(0, -1))
      return { field, message: known ? unknownOption(known.kind, name, known.keys) : "is not allowed here" }
    }
    default:
      return { field, message: first.message }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// JSON text with positions

const lineAndColumn = (text: string, offset: number) => {
  const before = text.slice(0, offset)
  const line = before.split("\n").length
  const column = offset - (before.lastIndexOf("\n") + 1) + 1
  return { line, column }
}

/** A problem found in JSON text: where, why, and (for a duplicate key) the path of the key. */
export interface JsonProblem {
  readonly offset: number
  readonly reason: string
  readonly path?: ReadonlyArray<string | number>
}

/** Deeper nesting than any cco file needs; also keeps the scanner's recursion off the stack limit. */
const MAX_JSON_DEPTH = 256

const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y

/**
 * Where and why JSON text is invalid, or the first key that appears twice in one object (JSON.parse keeps the last
 * one silently). JSON.parse does not always give a position, and its message can quote the text (which may hold a
 * secret), so the position and reason are found here instead.
 */
export const locateJsonError = (text: string): JsonProblem | undefined => {
  let i = 0
  let depth = 0
  const path: Array<string | number> = []
  const fail = (offset: number, reason: string): JsonProblem => ({ offset, reason })
  const ws = () => {
    while (i < text.length && " \t\n\r".includes(text[i]!)) i++
  }
  const value = (): JsonProblem | undefined => {
    ws()
    if (i >= text.length) return fail(i, "unexpected end of file, expected a value")
    const c = text[i]!
    if (c === "{" || c === "[") {
      if (++depth > MAX_JSON_DEPTH) return fail(i, `nested more than ${MAX_JSON_DEPTH} levels deep`)
      const problem = c === "{" ? object() : array()
      depth--
      return problem
    }
    if (c === "\"") return string()
    if (c === "-" || (c >= "0" && c <= "9")) return number()
    for (const word of ["true", "false", "null"]) {
      if (text.startsWith(word, i)) {
        i += word.length
        return undefined
      }
    }
    if (c === "'") return fail(i, "strings must use double quotes")
    return fail(i, "expected a value (a string in double quotes, a number, true, false, null, an object or an array)")
  }
  const object = (): JsonProblem | undefined => {
    i++
    ws()
    if (text[i] === "}") {
      i++
      return undefined
    }
    const seen = new Map<string, number>()
    while (true) {
      ws()
      if (i >= text.length) return fail(i, "unexpected end of file inside an object")
      if (text[i] !== "\"") {
        return fail(i, text[i] === "}" ? "trailing comma before '}'" : "expected a property name in double quotes")
      }
      const keyAt = i
      const s = string()
      if (s) return s
      const key = JSON.parse(text.slice(keyAt, i)) as string
      const first = seen.get(key)
      if (first !== undefined) {
        const { column, line } = lineAndColumn(text, first)
        return { offset: keyAt, reason: `line ${line}, column ${column}`, path: [...path, key] }
      }
      seen.set(key, keyAt)
      ws()
      if (text[i] !== ":") return fail(i, "expected ':' after the property name")
      i++
      path.push(key)
      const v = value()
      path.pop()
      if (v) return v
      const n = next("}", "an object", "a property value")
      if (n !== "more") return n
    }
  }
  // After an item: ',' goes on to the next one, the closing bracket ends the container.
  const next = (close: "}" | "]", inside: string, after: string): JsonProblem | undefined | "more" => {
    ws()
    if (text[i] === ",") {
      i++
      return "more"
    }
    if (text[i] === close) {
      i++
      return undefined
    }
    return fail(i, i >= text.length ? `unexpected end of file inside ${inside}` : `expected ',' or '${close}' after ${after}`)
  }
  const array = (): JsonProblem | undefined => {
    i++
    ws()
    if (text[i] === "]") {
      i++
      return undefined
    }
    for (let index = 0;; index++) {
      ws()
      if (text[i] === "]") return fail(i, "trailing comma before ']'")
      path.push(index)
      const v = value()
      path.pop()
      if (v) return v
      const n = next("]", "an array", "a value")
      if (n !== "more") return n
    }
  }
  const string = (): JsonProblem | undefined => {
    const start = i
    i++
    while (i < text.length) {
      const c = text[i]!
      if (c === "\"") {
        i++
        return undefined
      }
      if (c === "\\") {
        const e = text[i + 1]
        if (e === "u") {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) return fail(i, "bad \\u escape in a string")
          i += 6
          continue
        }
        if (e === undefined || !"\"\\/bfnrt".includes(e)) return fail(i, "bad escape in a string")
        i += 2
        continue
      }
      if (c.charCodeAt(0) < 0x20) {
        return fail(i, c === "\n" ? "line break inside a string (strings must end on the line they start)" : "control character inside a string")
      }
      i++
    }
    return fail(start, "string is never closed")
  }
  const number = (): JsonProblem | undefined => {
    NUMBER.lastIndex = i
    const match = NUMBER.exec(text)
    if (!match) return fail(i, "malformed number")
    i += match[0].length
    return undefined
  }
  const problem = value()
  if (problem) return problem
  ws()
  if (i < text.length) return fail(i, "unexpected text after the end of the JSON value")
  return undefined
}

/** Why JSON text was refused: a message, and the field it is about when there is one (a duplicate key). */
export interface JsonRefusal {
  readonly field?: string
  readonly message: string
}

/**
 * Parses JSON text; failures say line and column but never quote the text. A key given twice in one object is
 * refused (naming its path) rather than resolved silently as JSON.parse does.
 */
export const parseJson = (text: string): Either.Either<unknown, JsonRefusal> => {
  const body = text.startsWith("\uFEFF") ? text.slice(1) : text
  if (body.trim() === "") return Either.left({ message: "file is empty, expected JSON" })
  let parsed: unknown
  try {
    parsed = JSON.parse(body)
  } catch {
    parsed = undefined
  }
  const located = locateJsonError(body)
  if (located === undefined) {
    return parsed === undefined ? Either.left({ message: "is not valid JSON" }) : Either.right(parsed)
  }
  const { column, line } = lineAndColumn(body, located.offset)
  if (located.path !== undefined) {
    // A key given twice: its second place is where the problem is, the reason holds its first.
    return Either.left({
      field: fieldName(located.path),
      message: `duplicate key: given at ${located.reason} and again at line ${line}, column ${column}; give it once`
    })
  }
  return Either.left({ message: `invalid JSON at line ${line}, column ${column}: ${located.reason}` })
}

// ---------------------------------------------------------------------------------------------------------------
// Loading

const isPlainObject = (u: unknown): u is Record<string, unknown> =>
  typeof u === "object" && u !== null && !Array.isArray(u)

const describeJson = (u: unknown) => Array.isArray(u) ? "an array" : u === null ? "null" : `a ${typeof u}`

/** Git treats `scheme://…` and scp-like `host:path` (a colon before any slash) as remote; anything else is a path. */
const isRemoteUrl = (url: string) => /^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(url) || /^[^/]+:/.test(url)

const ORCHESTRATOR_KEYS = Object.keys(OrchestratorFile.fields)
const ENTRY_KEYS = ["name", "env"]
const ENV_KEYS = Object.keys(EnvFields)

const readJson = (file: string, notFound: string) =>
  readRegularFile(file, MAX_BYTES.config).pipe(
    Effect.mapError((e) => new ConfigError({ file, message: e.reason === "NotFound" ? notFound : e.message })),
    Effect.flatMap((text) =>
      Either.match(parseJson(text), {
        onLeft: ({ field, message }) => Effect.fail(new ConfigError({ file, message, ...(field === undefined ? {} : { field }) })),
        onRight: Effect.succeed
      })
    )
  )

/** How config files and in-memory configs are decoded: the first problem, unknown keys refused. */
export const decodeOptions = { errors: "first", onExcessProperty: "error" } as const

/**
 * Loads and checks the config directory. Fails with one ConfigError for the first problem found; reads nothing
 * else and creates nothing.
 */
export const loadConfig = Effect.fn("Config.load")(function*(configDir: string, overrides?: ConfigOverrides) {
  const fs = yield* FileSystem.FileSystem
  const path = yield* Path.Path
  const dir = path.resolve(configDir)

  const info = yield* fs.stat(dir).pipe(
    Effect.mapError((e) =>
      new ConfigError({
        file: dir,
        message: e._tag === "SystemError" && e.reason === "NotFound"
          ? "config directory does not exist"
          : `config directory cannot be read (${e.message})`
      })
    )
  )
  if (info.type !== "Directory") {
    return yield* new ConfigError({ file: dir, message: "is not a directory; --config takes the directory holding orchestrator.json" })
  }

  const orchestratorPath = path.join(dir, ORCHESTRATOR_FILE)
  const raw = yield* readJson(orchestratorPath, "file not found; every config directory needs one")
  if (!isPlainObject(raw)) {
    return yield* new ConfigError({
      file: orchestratorPath,
      message: `must be a JSON object like {"repositoryUrl": "...", "workerCount": 2}, got ${describeJson(raw)}`
    })
  }
  const file = yield* Schema.decodeUnknown(OrchestratorFile, decodeOptions)(raw).pipe(
    Effect.mapError((error) => {
      const { field, message } = firstProblem(
        error,
        (p) => p.length === 0 ? { kind: "option", keys: ORCHESTRATOR_KEYS } : undefined
      )
      return new ConfigError({ file: orchestratorPath, field, message })
    })
  )

  const apiKeys = yield* loadApiKeys(fs, path.join(dir, API_KEYS_FILE), file.authMode)
  return yield* resolveConfig(file, apiKeys, {
    dir,
    source: orchestratorPath,
    ...(overrides?.claudeCommand !== undefined && overrides.claudeCommand !== "" ? { claudeCommand: overrides.claudeCommand } : {})
  })
})

/**
 * The decoded options made whole: a local repository path made absolute (and checked), paths resolved
 * against `dir`, the keys attached. Shared by config directories and in-memory configurations.
 */
export const resolveConfig = (
  file: typeof OrchestratorFile.Type,
  apiKeys: ReadonlyArray<ApiKeyCredential>,
  where: { readonly dir: string; readonly source: string; readonly claudeCommand?: string }
): Effect.Effect<ResolvedConfig, ConfigError, FileSystem.FileSystem | Path.Path> =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const { dir } = where
    let repositoryUrl = file.repositoryUrl.trim()
    if (!isRemoteUrl(repositoryUrl)) {
      repositoryUrl = path.resolve(dir, repositoryUrl)
      if (!(yield* fs.exists(repositoryUrl).pipe(Effect.orElseSucceed(() => false)))) {
        return yield* new ConfigError({
          file: where.source,
          field: "repositoryUrl",
          message: `no repository at ${repositoryUrl} (a relative path is taken from ${dir})`
        })
      }
    }
    return {
      configDir: dir,
      repositoryUrl,
      branch: file.branch,
      workerCount: file.workerCount,
      useRunBranch: file.useRunBranch,
      authMode: file.authMode,
      logDirectory: file.logDirectory === undefined ? dir : path.resolve(dir, file.logDirectory),
      model: file.model,
      engineerManagerGroupSize: file.engineerManagerGroupSize,
      maxRunDurationMinutes: file.maxRunDurationMinutes,
      // The edge's override wins; a path (not a bare name looked up in PATH) is taken from `dir`.
      claudeCommand: where.claudeCommand ?? (file.claudeCommand.includes("/") ? path.resolve(dir, file.claudeCommand) : file.claudeCommand),
      tmuxSocket: file.tmuxSocket,
      healthCheckIntervalSeconds: file.healthCheckIntervalSeconds,
      stuckAfterSeconds: file.stuckAfterSeconds,
      idleAfterSeconds: file.idleAfterSeconds,
      escalationIntervalSeconds: file.escalationIntervalSeconds,
      maxRestartsPerInstance: file.maxRestartsPerInstance,
      maxCostUsd: file.maxCostUsd,
      maxCostUsdPerInstance: file.maxCostUsdPerInstance,
      maxTokens: file.maxTokens,
      apiKeys
    }
  })

/** Decoded api-keys entries as credentials (only the variables that are set). */
export const toCredentials = (entries: typeof ApiKeysFile.Type): ReadonlyArray<ApiKeyCredential> =>
  entries.map((entry): ApiKeyCredential => {
    const env: Record<string, Redacted.Redacted<string>> = {}
    for (const [name, value] of Object.entries(entry.env)) {
      if (value !== undefined) env[name] = value
    }
    return { name: entry.name, env }
  })

const loadApiKeys = (fs: FileSystem.FileSystem, file: string, authMode: AuthMode) =>
  Effect.gen(function*() {
    const present = yield* fs.exists(file).pipe(Effect.orElseSucceed(() => true))
    if (!present) {
      if (authMode === "oauth") return []
      return yield* new ConfigError({
        file,
        message: `file not found; authMode "${authMode}" in ${ORCHESTRATOR_FILE} needs at least one API key here`
      })
    }
    const raw = yield* readJson(file, "file not found")
    const entries = yield* Schema.decodeUnknown(ApiKeysFile, decodeOptions)(raw).pipe(
      Effect.mapError((error) => {
        const { field, message } = firstProblem(error, (p) =>
          p.length === 1
            ? { kind: "field", keys: ENTRY_KEYS }
            : p.length === 2 && p[1] === "env"
            ? { kind: "variable", keys: ENV_KEYS }
            : undefined)
        return new ConfigError({ file, field, message })
      })
    )
    return toCredentials(entries)
  })

/** The configuration as plain JSON, every secret shown as "<redacted>" (what `cco validate` prints). */
export const redactedView = (c: ResolvedConfig): object => ({
  configDir: c.configDir,
  repositoryUrl: c.repositoryUrl,
  branch: c.branch,
  workerCount: c.workerCount,
  useRunBranch: c.useRunBranch,
  authMode: c.authMode,
  logDirectory: c.logDirectory,
  model: c.model ?? null,
  engineerManagerGroupSize: c.engineerManagerGroupSize,
  maxRunDurationMinutes: c.maxRunDurationMinutes,
  claudeCommand: c.claudeCommand,
  tmuxSocket: c.tmuxSocket,
  healthCheckIntervalSeconds: c.healthCheckIntervalSeconds,
  stuckAfterSeconds: c.stuckAfterSeconds,
  idleAfterSeconds: c.idleAfterSeconds,
  escalationIntervalSeconds: c.escalationIntervalSeconds,
  maxRestartsPerInstance: c.maxRestartsPerInstance,
  maxCostUsd: c.maxCostUsd ?? null,
  maxCostUsdPerInstance: c.maxCostUsdPerInstance ?? null,
  maxTokens: c.maxTokens ?? null,
  apiKeys: c.apiKeys.map((k) => ({
    name: k.name,
    env: Object.fromEntries(Object.keys(k.env).map((name) => [name, "<redacted>"]))
  }))
})
