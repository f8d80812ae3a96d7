// Health decisions for one instance: crashed, stuck while busy, idle with work pending, or held by a dialog,
// and the escalation ladder (nudge → interrupt → restart), restart bounds and the run deadline.
// The decisions are pure: the orchestrator observes and acts.
import { Duration, Effect } from "effect"
import type { Status } from "./Instances.js"
import { withoutEscapes } from "./Untrusted.js"

export interface Thresholds {
  readonly stuckAfterMs: number
  readonly idleAfterMs: number
  readonly escalationIntervalMs: number
  /** A launched instance that has not fired SessionStart by then is restarted. */
  readonly startupTimeoutMs: number
}

export interface Observation {
  readonly now: number
  readonly sessionAlive: boolean
  readonly status: Status
  readonly lastEventAt: number
  /** The last sign of real work (a tool finished, a turn ended, a session started); resets the ladder. */
  readonly progressAt: number
  /** What this instance still owes (an unreported task, reports to merge); undefined when it may rest. */
  readonly pendingWork: string | undefined
  /** A dialog or question on screen that swallows input (see BLOCKING_SCREENS). */
  readonly blockingScreen: BlockingScreen | undefined
  /** cco holds prompts for this instance that it will deliver as soon as it can: a resting instance is not idle. */
  readonly deliveryPending?: boolean
}

export interface Ladder {
  /** 0: all well; 1: nudged; 2: interrupted. */
  readonly step: number
  readonly lastActionAt: number
  /** The last progress seen; newer progress resets the ladder. */
  readonly progressAt: number
}

export const initialLadder = (now: number): Ladder => ({ step: 0, lastActionAt: 0, progressAt: now })

export type Action =
  | { readonly _tag: "None" }
  | { readonly _tag: "Restart"; readonly reason: string }
  | { readonly _tag: "Nudge"; readonly reason: string; readonly message: string }
  | { readonly _tag: "Interrupt"; readonly reason: string; readonly message: string }
  | { readonly _tag: "Dismiss"; readonly reason: string; readonly keys: ReadonlyArray<string> }

export interface BlockingScreen {
  readonly name: string
  /** The dialog's question: matched at the start of a line of the dialog (after its frame), never inside other text. */
  readonly pattern: RegExp
  /** A line below the question that the dialog draws too (one of its options). */
  readonly option?: RegExp
  readonly keys: ReadonlyArray<string>
  /** The credential is unusable (a login prompt): rotate rather than dismiss. */
  readonly authProblem?: boolean
}

/** Screens of the claude CLI that wait for a person. Matched only where the CLI draws them: see detectBlockingScreen. */
export const BLOCKING_SCREENS: ReadonlyArray<BlockingScreen> = [
  { name: "rate-limit menu", pattern: /^What do you want to do\?/, option: /Stop and wait for limit to reset/, keys: ["Escape"] },
  { name: "permission prompt", pattern: /^Do you want to (proceed|make this edit|create)[^\n]*\?/, option: /^❯\s*1\. Yes/, keys: ["Escape"] },
  {
    name: "folder trust dialog",
    pattern: /^(?:Do you trust the files in this folder\?|(?:Quick safety check: )?Is this a project you created or one you trust)/,
    keys: ["Enter"]
  },
  { name: "API key question", pattern: /^Do you want to use this API key\?/, keys: ["Escape"] },
  { name: "login prompt", pattern: /^Select login method/, keys: ["Escape"], authProblem: true },
  { name: "bypass-permissions warning", pattern: /^(?:WARNING: )?Claude Code running in Bypass Permissions mode|^Bypass Permissions mode/, option: /Yes, I accept/, keys: ["Down", "Enter"] }
]

// A dialog line's text: without colour, its frame (│ … │) and indentation.
const content = (line: string) => withoutEscapes(line).replace(/^[\s│┃║]+/, "").replace(/[\s│┃║]+$/, "")
const isOption = (text: string) => /^(?:❯\s*)?\d+\.\s/.test(text)
// How a dialog's last line looks: its key hints, its frame's bottom, or its last option.
const isDialogEnd = (text: string) =>
  /\b(?:Enter to (?:confirm|select|continue)|Esc to (?:cancel|exit|go back|reject))\b/.test(text) || /^╰[─━]+╯$/.test(text) || isOption(text)
// The CLI's input prompt ("> " or "❯ " with no option number): where it shows, no dialog holds the screen.
const isInputPrompt = (text: string) => /^[❯>](?:[\s\u00a0]|$)/.test(text) && !isOption(text)

/**
 * The dialog the CLI shows, if any. A dialog takes the place of the input box at the bottom of the screen, so the
 * screen must end with a dialog's last line (key hints, frame bottom or an option), the question must start a line
 * of that bottom block, with no input prompt between them. Text anywhere else — a message or tool output quoting a
 * dialog's question, in the transcript above the input box — is not a dialog.
 */
export const detectBlockingScreen = (screen: string): BlockingScreen | undefined => {
  const lines = screen.split("\n").map(content)
  let end = lines.length
  while (end > 0 && lines[end - 1] === "") end--
  if (end === 0 || !isDialogEnd(lines[end - 1]!)) return undefined
  // Only the last lines: a dialog sits at the bottom, while the scrollback may quote anything.
  const bottom = lines.slice(Math.max(0, end - 25), end)
  for (const dialog of BLOCKING_SCREENS) {
    let at = bottom.length - 1
    while (at >= 0 && !dialog.pattern.test(bottom[at]!)) at--
    if (at < 0) continue
    const below = bottom.slice(at + 1)
    if (below.some(isInputPrompt)) continue
    if (dialog.option !== undefined && !below.some((l) => dialog.option!.test(l))) continue
    return dialog
  }
  return undefined
}

const minutes = (ms: number) => {
  const m = Math.round(ms / 60_000)
  return m >= 1 ? `${m} minute${m === 1 ? "" : "s"}` : `${Math.round(ms / 1000)} seconds`
}

const none: Action = { _tag: "None" }

/** One health check: what to do now, and the ladder afterwards. */
export const decide = (obs: Observation, ladder: Ladder, t: Thresholds): { readonly action: Action; readonly ladder: Ladder } => {
  const { now } = obs
  if (!obs.sessionAlive) {
    return { action: { _tag: "Restart", reason: "crashed: its tmux session or claude process is gone" }, ladder: initialLadder(now) }
  }
  if (obs.status === "stopped" || obs.status === "rate-limited") return { action: none, ladder }
  if (obs.status === "starting") {
    return now - obs.lastEventAt > t.startupTimeoutMs
      ? { action: { _tag: "Restart", reason: `did not start within ${minutes(t.startupTimeoutMs)}` }, ladder: initialLadder(now) }
      : { action: none, ladder }
  }
  // Only real work resets the ladder: a prompt submitted because of a nudge is not progress.
  const fresh = obs.progressAt > ladder.progressAt ? initialLadder(obs.progressAt) : ladder
  const quiet = now - obs.lastEventAt

  if (obs.blockingScreen !== undefined) {
    // A dialog that survives being dismissed twice is cured by a restart.
    if (fresh.step >= 2 && now - fresh.lastActionAt >= t.escalationIntervalMs) {
      return { action: { _tag: "Restart", reason: `${obs.blockingScreen.name} would not go away` }, ladder: initialLadder(now) }
    }
    if (fresh.step >= 1 && now - fresh.lastActionAt < t.escalationIntervalMs) return { action: none, ladder: fresh }
    return {
      action: { _tag: "Dismiss", reason: `${obs.blockingScreen.name} on screen`, keys: obs.blockingScreen.keys },
      ladder: { ...fresh, step: fresh.step + 1, lastActionAt: now }
    }
  }

  let problem: { readonly reason: string; readonly nudge: string; readonly interrupt: string } | undefined
  const busy = obs.status === "busy" || obs.status === "stuck"
  const resting = obs.status === "idle" || obs.status === "error" || obs.status === "done" || obs.status === "waiting-for-input"
  if (busy && quiet > t.stuckAfterMs) {
    problem = {
      reason: `stuck: busy with no progress for ${minutes(quiet)}`,
      nudge: `[cco] cco has seen no progress from you for ${minutes(quiet)}. If a command hangs, stop it and try a smaller step; if you are blocked, say what blocks you with cco team message; otherwise finish and report with cco team done.`,
      interrupt: `[cco] cco interrupted you: no progress for ${minutes(quiet)}. Continue your work in smaller steps (no long-running or interactive commands), commit, and report with cco team done.`
    }
  } else if (resting && obs.pendingWork !== undefined && obs.deliveryPending !== true && quiet > t.idleAfterMs) {
    problem = {
      reason: `idle for ${minutes(quiet)} with ${obs.pendingWork}`,
      nudge: `[cco] You have been idle for ${minutes(quiet)}, but ${obs.pendingWork}. Continue now; if you are blocked, say what blocks you with cco team message.`,
      interrupt: `[cco] Still idle with ${obs.pendingWork}. Continue now.`
    }
  }
  if (problem === undefined) return { action: none, ladder: fresh }
  if (fresh.step === 0) {
    return { action: { _tag: "Nudge", reason: problem.reason, message: problem.nudge }, ladder: { ...fresh, step: 1, lastActionAt: now } }
  }
  if (now - fresh.lastActionAt < t.escalationIntervalMs) return { action: none, ladder: fresh }
  if (fresh.step === 1) {
    return { action: { _tag: "Interrupt", reason: problem.reason, message: problem.interrupt }, ladder: { ...fresh, step: 2, lastActionAt: now } }
  }
  return { action: { _tag: "Restart", reason: problem.reason }, ladder: initialLadder(now) }
}

/** At most `max` restarts within `windowMs`: returns the kept history and whether one more is allowed. */
export const allowRestart = (history: ReadonlyArray<number>, now: number, max: number, windowMs: number) => {
  const recent = history.filter((t) => now - t < windowMs)
  return { allowed: recent.length < max, history: recent.length < max ? [...recent, now] : recent }
}

/** How long before the run's time limit instances are told to commit and report: 10 % of the run, 1–5 minutes (at most half a short run). */
export const warningLead = (durationMs: number) => Math.min(5 * 60_000, Math.max(60_000, durationMs / 10), durationMs / 2)

/**
 * Sleeps until shortly before the time limit, runs `onWarn`, then sleeps until the limit and completes.
 * Runs on the Clock, so tests drive it with TestClock.
 */
export const watchDeadline = <E, R>(durationMs: number, onWarn: Effect.Effect<void, E, R>): Effect.Effect<void, E, R> => {
  const lead = warningLead(durationMs)
  return Effect.sleep(Duration.millis(durationMs - lead)).pipe(
    Effect.zipRight(onWarn),
    Effect.zipRight(Effect.sleep(Duration.millis(lead)))
  )
}

/** How soon after a Stop with work pending the instance is reminded: a few seconds, never later than the idle nudge. */
export const reminderDelayMs = (idleAfterMs: number) => Math.max(0, Math.min(5_000, idleAfterMs))

export interface StopObservation {
  readonly now: number
  /** When the Stop came in that ended the instance's turn. */
  readonly stoppedAt: number
  readonly status: Status
  readonly lastEventAt: number
  readonly progressAt: number
  /** What this instance still owes (Hierarchy.pendingWork); undefined when it may rest. */
  readonly pendingWork: string | undefined
  /** cco holds messages for it (the outbox): they go in instead. */
  readonly deliveryPending: boolean
  /** The turn that ended answered a reminder without doing anything (no tool, no new message): not again. */
  readonly remindedWithoutWork: boolean
}

/**
 * A turn ended while the instance still owes work (a report waiting to be merged, a task not reported): it is
 * reminded within seconds instead of after idleAfter, once per Stop and never twice in a row without work in
 * between. The reminder is the ladder's first step: what follows (interrupt, restart) runs as for any idle nudge.
 */
export const remindAfterStop = (obs: StopObservation, ladder: Ladder, delayMs: number): { readonly action: Action; readonly ladder: Ladder } => {
  const resting = obs.status === "idle" || obs.status === "done" || obs.status === "error"
  if (
    !resting || obs.pendingWork === undefined || obs.deliveryPending || obs.remindedWithoutWork ||
    obs.lastEventAt !== obs.stoppedAt || obs.now - obs.stoppedAt < delayMs
  ) return { action: none, ladder }
  return {
    action: {
      _tag: "Nudge",
      reason: `ended its turn with ${obs.pendingWork}`,
      message: `[cco] You ended your turn, but ${obs.pendingWork}. Continue now; if you are blocked, say what blocks you with cco team message.`
    },
    ladder: { step: 1, lastActionAt: obs.now, progressAt: Math.max(ladder.progressAt, obs.progressAt) }
  }
}
