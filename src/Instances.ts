// An instance's state and the named transitions that change it: each a pure function from the state before to the
// state after, so that what a hook, a delivery, a health check or a restart does to an instance reads in one place.
// RunContext.update applies them and logs every status change as `instance.state`.
import type * as H from "./Hierarchy.js"
import type * as Limits from "./Limits.js"
import type { RunState } from "./RunState.js"
import * as Supervisor from "./Supervisor.js"

/** An instance's state; every change is logged as `instance.state`. */
export type Status =
  | "starting"
  | "idle"
  | "busy"
  | "waiting-for-input"
  | "rate-limited"
  | "stuck"
  | "crashed"
  | "error"
  | "done"
  | "stopped"

/** States in which a prompt can be pasted and taken as the next turn. */
export const acceptsPrompt = (status: Status) => status === "idle" || status === "done" || status === "error"

export interface Instance {
  readonly spec: H.InstanceSpec
  readonly worktree: string
  readonly status: Status
  readonly generation: number
  readonly ready: boolean
  /** Whether the role prompt has been delivered. */
  readonly prompted: boolean
  /** Whether the role prompt waits in the outbox. */
  readonly roleQueued: boolean
  readonly outbox: ReadonlyArray<string>
  readonly lastEventAt: number
  readonly progressAt: number
  readonly restarts: number
  readonly restartHistory: ReadonlyArray<number>
  /** A restart is under way: nothing else may restart or judge the instance meanwhile. */
  readonly restarting: boolean
  /** Messages pasted whose turn has not completed (no Stop yet): queued again if the session is replaced. */
  readonly inFlight: ReadonlyArray<string>
  /** Whether inFlight has reached the pane (a resumed run re-sends it to a surviving session otherwise). */
  readonly inFlightPasted: boolean
  /** Reminded after a Stop, and nothing done since (no tool, no new message): no second reminder. */
  readonly reminded: boolean
  readonly ladder: Supervisor.Ladder
  readonly credential: string
}

/** A new instance, before its session is launched. */
export const initial = (spec: H.InstanceSpec, worktree: string, now: number): Instance => ({
  spec,
  worktree,
  status: "starting",
  generation: 0,
  ready: false,
  prompted: false,
  roleQueued: false,
  outbox: [],
  lastEventAt: now,
  progressAt: now,
  restarts: 0,
  restartHistory: [],
  restarting: false,
  inFlight: [],
  inFlightPasted: true,
  reminded: false,
  ladder: Supervisor.initialLadder(now),
  credential: ""
})

/** As a resumed run's state.json left it: what it was owed when the orchestrator died (older files have less). */
export const resumed = (i: Instance, saved: RunState["instances"][number]): Instance => ({
  ...i,
  generation: saved.generation,
  restarts: saved.restarts,
  prompted: saved.prompted ?? false,
  roleQueued: saved.roleQueued ?? false,
  outbox: saved.outbox ?? [],
  inFlight: saved.inFlight ?? [],
  inFlightPasted: saved.inFlightPasted ?? true,
  credential: saved.credential
})

// --- hook events

/** SessionStart: the session is up and waits for a prompt. */
export const sessionStarted = (i: Instance, at: number): Instance => ({ ...i, ready: true, status: "idle", lastEventAt: at, progressAt: at })

/** UserPromptSubmit: a turn began. */
export const promptSubmitted = (i: Instance, at: number): Instance => ({ ...i, status: "busy", lastEventAt: at })

/** PostToolUse(Failure): progress, and a reminder may be given again. */
export const toolUsed = (i: Instance, at: number): Instance => ({ ...i, lastEventAt: at, progressAt: at, reminded: false })

/**
 * Stop: the turn ended; "done" while its task is reported (`rests`). The end of a turn that only answered a
 * reminder is no progress: the ladder goes on from the reminder.
 */
export const turnEnded = (i: Instance, turn: { readonly rests: boolean; readonly at: number }): Instance => ({
  ...i,
  status: turn.rests ? "done" : "idle",
  inFlight: [],
  lastEventAt: turn.at,
  progressAt: i.reminded ? i.progressAt : turn.at
})

/** StopFailure: a turn ended on an API error; ignored while the session is starting or being replaced. */
export const apiFailed = (i: Instance, limit: Limits.Limit, at: number): Instance =>
  i.restarting || i.status === "starting"
    ? i
    : { ...i, status: limit._tag === "RateLimited" || limit._tag === "UsageLimit" ? "rate-limited" : "error", lastEventAt: at }

/** SessionEnd: the session is gone. */
export const sessionEnded = (i: Instance, at: number): Instance => ({ ...i, status: "stopped", ready: false, lastEventAt: at })

/** Notification: a question for a person (`waiting`) makes it wait for input; any other is just a sign of life. */
export const notified = (i: Instance, waiting: boolean, at: number): Instance => ({
  ...i,
  lastEventAt: at,
  ...(waiting ? { status: "waiting-for-input" as Status } : {})
})

/** Any other hook: a sign of life. */
export const eventSeen = (i: Instance, at: number): Instance => ({ ...i, lastEventAt: at })

// --- delivery

/** Messages wait in the outbox (already trimmed); a role prompt among them is remembered. */
export const enqueued = (i: Instance, outbox: ReadonlyArray<string>, role: boolean): Instance => ({
  ...i,
  outbox,
  ...(role ? { roleQueued: true } : {})
})

/**
 * A batch is taken from the outbox to be pasted as the next turn; the supervisor's clocks start over from now,
 * and the reminder may be given again.
 */
export const promptTaken = (i: Instance, batch: ReadonlyArray<string>, rest: ReadonlyArray<string>, at: number): Instance => ({
  ...i,
  outbox: rest,
  inFlight: batch,
  inFlightPasted: false,
  reminded: false,
  status: "busy",
  prompted: true,
  lastEventAt: at,
  progressAt: at
})

/** The batch reached the pane (unless a newer one was taken meanwhile). */
export const promptPasted = (i: Instance, batch: ReadonlyArray<string>): Instance =>
  i.inFlight === batch ? { ...i, inFlightPasted: true } : i

/** The batch did not go in: it goes back to the head of the outbox; a role prompt that failed is not delivered. */
export const deliveryFailed = (i: Instance, batch: ReadonlyArray<string>, wasPrompted: boolean): Instance => ({
  ...i,
  outbox: [...batch, ...i.outbox],
  inFlight: [],
  status: "idle",
  prompted: wasPrompted && i.prompted
})

/** Reminded after a Stop: the ladder moves on. */
export const remindedAfterStop = (i: Instance, ladder: Supervisor.Ladder): Instance => ({ ...i, ladder, reminded: true })

// --- supervision

/** The status a health check gives an instance from what it saw. */
export const judgedStatus = (
  status: Status,
  seen: { readonly alive: boolean; readonly screenBlocked: boolean; readonly acting: boolean; readonly quiet: boolean }
): Status =>
  !seen.alive && status !== "stopped"
    ? "crashed"
    : seen.screenBlocked
    ? "waiting-for-input"
    : status === "busy" && seen.acting
    ? "stuck"
    : status === "waiting-for-input" && !seen.screenBlocked && seen.quiet
    ? "idle"
    : status

/** A health check judged the instance: its ladder and the status it saw. */
export const judged = (
  i: Instance,
  ladder: Supervisor.Ladder,
  seen: { readonly alive: boolean; readonly screenBlocked: boolean; readonly acting: boolean; readonly quiet: boolean }
): Instance => ({ ...i, ladder, status: judgedStatus(i.status, seen) })

// --- restarts, launches, credentials

/** Claim the instance for a restart; undefined when one is already under way. */
export const restartClaimed = (i: Instance): Instance | undefined => i.restarting ? undefined : { ...i, restarting: true }

/** The restart is over, however it went. */
export const restartReleased = (i: Instance): Instance => ({ ...i, restarting: false })

/** Stopped for good: the restart budget is spent, or no credential is usable. */
export const stopped = (i: Instance): Instance => ({ ...i, status: "stopped" })

/**
 * A restart begins: the old session goes; a message pasted into it and never taken goes to the new one; the
 * supervisor's clocks and ladder start over.
 */
export const restartBegun = (i: Instance, history: ReadonlyArray<number>, at: number): Instance => ({
  ...i,
  status: "starting",
  ready: false,
  outbox: [...i.inFlight, ...i.outbox],
  inFlight: [],
  restarts: i.restarts + 1,
  restartHistory: history,
  lastEventAt: at,
  progressAt: at,
  ladder: Supervisor.initialLadder(at)
})

/** A session was launched on a credential. */
export const relaunched = (i: Instance, generation: number, credential: string, at: number): Instance => ({
  ...i,
  generation,
  credential,
  lastEventAt: at
})

/** What was taken but never pasted goes back to the head of the outbox. */
export const inFlightRequeued = (i: Instance): Instance => ({ ...i, outbox: [...i.inFlight, ...i.outbox], inFlight: [], inFlightPasted: true })

/** A resumed run re-attached to a session that survived: it is ready, and owed what it never got pasted. */
export const reattached = (i: Instance, at: number): Instance => ({
  ...i,
  ready: true,
  status: "idle",
  lastEventAt: at,
  ...(i.inFlightPasted ? {} : { outbox: [...i.inFlight, ...i.outbox], inFlight: [], inFlightPasted: true })
})

/** Waiting for a credential to cool down. */
export const rateLimited = (i: Instance): Instance => ({ ...i, status: "rate-limited" })

/** Its credential's limit has reset: the session goes on. */
export const limitReset = (i: Instance): Instance => ({ ...i, status: "idle" })

/** An API error the pane did not confirm: a rate-limited session of that generation rests on an error instead. */
export const errorUnconfirmed = (i: Instance, generation: number): Instance =>
  i.generation === generation && i.status === "rate-limited" ? { ...i, status: "error" } : i
