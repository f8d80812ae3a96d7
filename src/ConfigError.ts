// ConfigError and how a config problem is worded on one line: values shown safely (never a secret), "did you
// mean" for a misspelt key, field paths, and the first problem of a Schema parse error.
import { ParseResult, Schema } from "effect"

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

/** A value as it was written, on one line. */
export const show = (actual: unknown): string => {
  if (actual === undefined) return "nothing"
  // JSON.stringify turns Infinity (what JSON's 1e400 parses to) into null.
  if (typeof actual === "number") return String(actual)
  const json = JSON.stringify(actual)
  return printable(json === undefined ? String(actual) : json)
}

/** A type error that shows the offending value (never used for secrets). */
export const expected = (what: string) => (issue: ParseResult.ParseIssue) =>
  `must be ${what}, got ${show(issue.actual)}`

/** What kind of JSON value `actual` is, never the value: for fields that hold secrets. */
export const kindOf = (actual: unknown): string =>
  actual === null ? "null"
  : Array.isArray(actual) ? "a list"
  : typeof actual === "string" ? "a string"
  : typeof actual === "number" ? "a number"
  : typeof actual === "boolean" ? "true or false"
  : typeof actual === "object" ? "an object"
  : "nothing"

/** A type error that names only the kind of the offending value (for fields that hold secrets). */
export const expectedKind = (what: string) => (issue: ParseResult.ParseIssue) => `must be ${what}, got ${kindOf(issue.actual)}`

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

export const fieldName = (path: ReadonlyArray<PropertyKey>): string =>
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
