// The CLI's own final error line on an instance's pane, read only where the CLI prints its errors, and its
// usage-limit menu.
import { Duration, Effect, Schedule } from "effect"
import { isCliErrorText } from "./Limits.js"
import { withoutEscapes } from "./Untrusted.js"

const isRule = (line: string) => /^\s*[─━]{3,}\s*$/.test(line) || /^\s*╭─/.test(line)
const isPromptLine = (line: string) => /^(?:│\s*)?[❯>](?:[\s\u00a0]|$)/.test(line)
const isTopLevel = (line: string) => line !== "" && !/^\s/.test(line)
/** Right-aligned notices ("tmux focus-events off · …") sit far from the left edge; they belong to no block. */
const isFarIndented = (line: string) => /^\s{20,}/.test(line)

/**
 * The CLI's final error line in a pane capture, or undefined. Only the last output block above the input prompt is
 * read, and only where the CLI prints its own errors:
 * - a top-level `● API Error: …` (or `● <usage-limit wording>`) line: how 429/529 end a turn
 *   ("● API Error: Request rejected (429) · …");
 * - a `⎿  …` line directly under the user's own prompt line: how 401s and usage limits end a turn
 *   ("❯ fix it" / "  ⎿  Invalid API key · Fix external API key").
 * Tool output (`⎿` under a `● Bash(…)` line), agent text and code never count, whatever "429" or "rate limit"
 * they contain; a block that ended normally ("✻ Baked for 3s") or is still running gives undefined.
 * Lines the terminal wrapped are joined back.
 */
export const findCliErrorLine = (pane: string | ReadonlyArray<string>): string | undefined => {
  const lines = (typeof pane === "string" ? pane.split("\n") : [...pane]).map((l) => withoutEscapes(l).trimEnd())

  // The input box: a prompt line right under a rule. Without one (a menu, an exited CLI) the whole capture is read.
  let end = lines.length
  for (let i = lines.length - 1; i > 0; i--) {
    if (isPromptLine(lines[i]!) && isRule(lines[i - 1]!)) {
      end = i - 1
      break
    }
  }

  let top = end - 1
  while (top >= 0 && !isTopLevel(lines[top]!) || (top >= 0 && isRule(lines[top]!))) top--
  if (top < 0) return undefined
  const block = lines.slice(top, end).filter((l) => l !== "" && !isFarIndented(l))
  const head = block[0]!

  const bullet = /^[●⏺]\s+(.*)$/.exec(head)
  if (bullet !== null) {
    const continuation = []
    for (const l of block.slice(1)) {
      if (!/^ {2}\S/.test(l) || l.trimStart().startsWith("⎿")) break
      continuation.push(l.trim())
    }
    const text = [bullet[1]!.trim(), ...continuation].join(" ")
    return isCliErrorText(text) ? text : undefined
  }

  // A bash-mode prompt ("❯ !curl …") shows the command's own output under ⎿: not the CLI's.
  if (isPromptLine(head) && !/^(?:│\s*)?[❯>][\s\u00a0]+!/.test(head)) {
    const at = block.findIndex((l) => /^\s+⎿\s/.test(l))
    if (at < 0) return undefined
    const continuation = []
    for (const l of block.slice(at + 1)) {
      if (!/^ {5}\S/.test(l) || l.trimStart().startsWith("⎿")) break
      continuation.push(l.trim())
    }
    const text = [block[at]!.replace(/^\s+⎿\s+/, "").trim(), ...continuation].join(" ")
    return isCliErrorText(text) ? text : undefined
  }
  return undefined
}

/**
 * Reads the pane until it shows the CLI's final error line: the CLI may draw it a moment after its hook fired.
 * Undefined when none appears within `attempts` reads `interval` apart, or the pane cannot be read.
 */
export const awaitCliErrorLine = <E, R>(
  capture: Effect.Effect<string, E, R>,
  options: { readonly attempts?: number; readonly interval?: Duration.DurationInput } = {}
): Effect.Effect<string | undefined, never, R> => {
  const attempts = Math.max(1, options.attempts ?? 12)
  const interval = options.interval ?? Duration.millis(250)
  // Read again `interval` apart while no line shows, `attempts` reads in all; the last read is the answer.
  const untilLineShows = Schedule.spaced(interval).pipe(
    Schedule.intersect(Schedule.recurs(attempts - 1)),
    Schedule.whileInput((line: string | undefined) => line === undefined),
    Schedule.passthrough
  )
  return capture.pipe(
    Effect.map(findCliErrorLine),
    Effect.orElseSucceed(() => undefined),
    Effect.repeat(untilLineShows)
  )
}

/**
 * True when the pane shows the CLI's usage-limit menu (`/rate-limit-options`: "What do you want to do?  1. Stop and
 * wait for limit to reset …"), which swallows pasted input until dismissed with Escape.
 */
export const isUsageLimitMenu = (pane: string | ReadonlyArray<string>): boolean => {
  const lines = typeof pane === "string" ? pane.split("\n") : pane
  return lines.some((l) => /\bStop and wait for limit to reset\b/.test(withoutEscapes(l)))
}
