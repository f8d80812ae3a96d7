// JSON read strictly: a key given twice in one object is refused, and every failure says line and column without
// quoting the text (it may hold a secret).
import { Either } from "effect"
import { fieldName } from "./ConfigError.js"

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

/** Where the scanner stands in the text: the offset, the nesting depth and the path of the value being read. */
interface Scan {
  readonly text: string
  i: number
  depth: number
  readonly path: Array<string | number>
}

const fail = (offset: number, reason: string): JsonProblem => ({ offset, reason })

const skipWhiteSpace = (s: Scan) => {
  while (s.i < s.text.length && " \t\n\r".includes(s.text[s.i]!)) s.i++
}

const scanValue = (s: Scan): JsonProblem | undefined => {
  skipWhiteSpace(s)
  if (s.i >= s.text.length) return fail(s.i, "unexpected end of file, expected a value")
  const c = s.text[s.i]!
  if (c === "{" || c === "[") {
    if (++s.depth > MAX_JSON_DEPTH) return fail(s.i, `nested more than ${MAX_JSON_DEPTH} levels deep`)
    const problem = c === "{" ? scanObject(s) : scanArray(s)
    s.depth--
    return problem
  }
  if (c === "\"") return scanString(s)
  if (c === "-" || (c >= "0" && c <= "9")) return scanNumber(s)
  for (const word of ["true", "false", "null"]) {
    if (s.text.startsWith(word, s.i)) {
      s.i += word.length
      return undefined
    }
  }
  if (c === "'") return fail(s.i, "strings must use double quotes")
  return fail(s.i, "expected a value (a string in double quotes, a number, true, false, null, an object or an array)")
}

const scanObject = (s: Scan): JsonProblem | undefined => {
  s.i++
  skipWhiteSpace(s)
  if (s.text[s.i] === "}") {
    s.i++
    return undefined
  }
  const seen = new Map<string, number>()
  while (true) {
    skipWhiteSpace(s)
    if (s.i >= s.text.length) return fail(s.i, "unexpected end of file inside an object")
    if (s.text[s.i] !== "\"") {
      return fail(s.i, s.text[s.i] === "}" ? "trailing comma before '}'" : "expected a property name in double quotes")
    }
    const keyAt = s.i
    const problem = scanString(s)
    if (problem) return problem
    const key = JSON.parse(s.text.slice(keyAt, s.i)) as string
    const first = seen.get(key)
    if (first !== undefined) {
      const { column, line } = lineAndColumn(s.text, first)
      return { offset: keyAt, reason: `line ${line}, column ${column}`, path: [...s.path, key] }
    }
    seen.set(key, keyAt)
    skipWhiteSpace(s)
    if (s.text[s.i] !== ":") return fail(s.i, "expected ':' after the property name")
    s.i++
    s.path.push(key)
    const v = scanValue(s)
    s.path.pop()
    if (v) return v
    const n = scanNext(s, "}", "an object", "a property value")
    if (n !== "more") return n
  }
}

// After an item: ',' goes on to the next one, the closing bracket ends the container.
const scanNext = (s: Scan, close: "}" | "]", inside: string, after: string): JsonProblem | undefined | "more" => {
  skipWhiteSpace(s)
  if (s.text[s.i] === ",") {
    s.i++
    return "more"
  }
  if (s.text[s.i] === close) {
    s.i++
    return undefined
  }
  return fail(
    s.i,
    s.i >= s.text.length ? `unexpected end of file inside ${inside}` : `expected ',' or '${close}' after ${after}`
  )
}

const scanArray = (s: Scan): JsonProblem | undefined => {
  s.i++
  skipWhiteSpace(s)
  if (s.text[s.i] === "]") {
    s.i++
    return undefined
  }
  for (let index = 0;; index++) {
    skipWhiteSpace(s)
    if (s.text[s.i] === "]") return fail(s.i, "trailing comma before ']'")
    s.path.push(index)
    const v = scanValue(s)
    s.path.pop()
    if (v) return v
    const n = scanNext(s, "]", "an array", "a value")
    if (n !== "more") return n
  }
}

const scanString = (s: Scan): JsonProblem | undefined => {
  const start = s.i
  s.i++
  while (s.i < s.text.length) {
    const c = s.text[s.i]!
    if (c === "\"") {
      s.i++
      return undefined
    }
    if (c === "\\") {
      const e = s.text[s.i + 1]
      if (e === "u") {
        if (!/^[0-9a-fA-F]{4}$/.test(s.text.slice(s.i + 2, s.i + 6))) return fail(s.i, "bad \\u escape in a string")
        s.i += 6
        continue
      }
      if (e === undefined || !"\"\\/bfnrt".includes(e)) return fail(s.i, "bad escape in a string")
      s.i += 2
      continue
    }
    if (c.charCodeAt(0) < 0x20) {
      return fail(
        s.i,
        c === "\n" ? "line break inside a string (strings must end on the line they start)" : "control character inside a string"
      )
    }
    s.i++
  }
  return fail(start, "string is never closed")
}

const scanNumber = (s: Scan): JsonProblem | undefined => {
  NUMBER.lastIndex = s.i
  const match = NUMBER.exec(s.text)
  if (!match) return fail(s.i, "malformed number")
  s.i += match[0].length
  return undefined
}

/**
 * Where and why JSON text is invalid, or the first key that appears twice in one object (JSON.parse keeps the last
 * one silently). JSON.parse does not always give a position, and its message can quote the text (which may hold a
 * secret), so the position and reason are found here instead.
 */
export const locateJsonError = (text: string): JsonProblem | undefined => {
  const s: Scan = { text, i: 0, depth: 0, path: [] }
  const problem = scanValue(s)
  if (problem) return problem
  skipWhiteSpace(s)
  if (s.i < text.length) return fail(s.i, "unexpected text after the end of the JSON value")
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
