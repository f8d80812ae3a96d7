// Text from agents (team command arguments, summaries, hook payloads, commits) crosses into panes, terminals and
// logs only through `neutralise`: it can show there, never act there, and never carry a credential.
import { scrub } from "./Secrets.js"

/** Bounds, in characters, per boundary. */
export const PANE_MAX = 50_000
export const TERMINAL_MAX = 2_000
export const LOG_MAX = 8_000
export const STATE_MAX = 20_000
/** Answers to `cco team` commands: the team status of a large run fits. */
export const REPLY_MAX = 16_000

/* eslint-disable no-control-regex */
// Whole escape sequences first, so that none leaves its parameters behind as text: CSI (ESC [ or the C1 CSI),
// OSC/DCS/APC/PM/SOS strings up to their terminator, and two-character escapes.
const CSI = /(?:\u001b\[|\u009b)[\x20-\x3f]*[\x40-\x7e]?/g
const STRING = /(?:\u001b[\]P_^X]|[\u0090\u0098\u009d-\u009f])[^\u0007\u001b\u009c]*(?:\u0007|\u001b\\|\u009c)?/g
const ESCAPE = /\u001b[\x20-\x2f]*[\x30-\x7e]?/g
// Bracketed-paste markers whose ESC was already lost on the way.
const PASTE_MARKER = /\[20[01]~/g
// C0 other than tab and newline, DEL, C1.
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g
// Format characters (bidi embeddings, overrides and isolates, zero-width characters, invisible tags): text that
// reads differently from what it is. Line and paragraph separators become newlines.
const FORMAT = /\p{Cf}/gu
const LINE_SEPARATOR = /[\u2028\u2029]/g
// Colour and cursor escapes and OSC strings, as a pane capture taken with -e holds them.
const PANE_ESCAPES = /\u001b\[[0-9;?]*[ -/]*[@-~]|\u001b\][^\u0007]*(?:\u0007|\u001b\\)/g
/* eslint-enable no-control-regex */

/** A pane line without colour and cursor escapes, for matching what it says (not for showing it anywhere). */
export const withoutEscapes = (line: string): string => line.replace(PANE_ESCAPES, "")

const strip = (text: string): string => {
  let out = text.replace(/\r\n?/g, "\n").replace(LINE_SEPARATOR, "\n")
  // Until nothing changes: removing one sequence must not join the pieces of another.
  for (let previous = ""; previous !== out;) {
    previous = out
    out = out.replace(STRING, "").replace(CSI, "").replace(ESCAPE, "").replace(PASTE_MARKER, "").replace(CONTROL, "").replace(FORMAT, "")
  }
  return out
}

// Room for the marker within the bound, so that neutralising twice cuts nothing more.
const MARKER_ROOM = 48

const bound = (text: string, max: number): string => {
  if (text.length <= max) return text
  let cut = Math.max(0, max - MARKER_ROOM)
  // Never split a surrogate pair.
  if (cut > 0 && cut < text.length && /[\ud800-\udbff]/.test(text[cut - 1]!)) cut--
  return `${text.slice(0, cut)}… [cco: ${text.length - cut} more characters cut]`
}

/**
 * Text safe to paste into a pane, print on a terminal or write to a log: no ESC or escape sequences, no C0
 * controls but newline and tab (CR and CRLF become newline), no C1 controls, no bracketed-paste markers, no
 * format characters (bidi overrides, zero-width characters), no credential, and at most `max` characters (the
 * rest replaced by a marker saying how much was cut).
 */
export const neutralise = (text: string, max: number = PANE_MAX): string => bound(scrub(strip(text)), max)

/** One terminal line: neutralised, with newlines and tabs shown as spaces. */
export const neutraliseLine = (text: string, max: number = TERMINAL_MAX): string =>
  neutralise(text, max).replace(/[\n\t]+/g, " ")

const MAX_DEPTH = 24

/**
 * A JSON-able value with every string (and object key) in it neutralised, for logs and state files. Only plain
 * data is walked: nesting deeper than a log needs is cut, and no method of the value is called but `toJSON`
 * of the dates cco logs.
 */
export const neutraliseValue = (value: unknown, max: number = LOG_MAX, depth = 0): unknown => {
  if (typeof value === "string") return neutralise(value, max)
  if (value === null || typeof value !== "object") return typeof value === "bigint" ? String(value) : value
  if (depth >= MAX_DEPTH) return "[cco: nested too deep]"
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? null : value.toISOString()
  if (Array.isArray(value)) return value.map((v) => neutraliseValue(v, max, depth + 1))
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(value)) {
    if (typeof v === "function" || typeof v === "symbol" || v === undefined) continue
    out[neutralise(k, 200)] = neutraliseValue(v, max, depth + 1)
  }
  return out
}

/** neutraliseValue for plain JSON data (no dates, no methods), whose shape it keeps. */
export const neutraliseJson = <A>(value: A, max: number = LOG_MAX): A => neutraliseValue(value, max) as A

/**
 * An agent's text quoted inside a prompt cco composes (a task, a report's summary, a message): cco's own voice,
 * "[cco]", is taken out of it, so that no line of it can pass for a notice from cco (a forged "[cco] New task …").
 */
export const quoteAgentText = (text: string): string => text.replace(/\[\s*cco\s*\]/gi, "(cco)")
