// An instance's state and the named transitions that change it: each a pure function from the state before to the
// state after, so that what a hook, a delivery, a health check or a restart does to an instance reads in one place.
// Its phase is a tagged enum that only these transitions construct; users see it as a status (statusName).
// RunContext.update applies them and logs every status change as `instance.state`.
import { Data } from "effect"
import type * as H from "./Hierarchy.js"
import type * as Limits from "./Limits.js"
import type { RunState } from "./RunState.js"
import * as Supervisor from "./Supervisor.js"

/** An instance's state as users see it: state.json, `cco status`, `instance.state` lines, the run summary. */
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

/**
 * What an instance is doing. Only the transitions in this file construct phases; what users see of one is
 * `statusName(phase)`.
 */
export type Phase = Data.TaggedEnum<{
  /** Its session is launched (or about to be) and has not said SessionStart yet. */
  Starting: {}
  /** Its turn ended; it waits for a prompt. */
  Idle: {}
  /** A turn is under way. */
  Busy: {}
  /** A question or dialog on its screen waits for an answer. */
  WaitingForInput: {}
  /** Its credential hit a rate or usage limit: it waits for a reset or another credential. */
  RateLimited: {}
  /** Busy without progress, and acted on by the supervisor. */
  Stuck: {}
  /** Its session is gone, and nobody stopped it. */
  Crashed: {}
  /** A turn of the session of `generation` ended on an API error that was no (confirmed) limit. */
  Error: { readonly generation: number }
  /** Its turn ended with its task reported. */
  Done: {}
  /** Its session ended, or it is stopped for good (restart budget spent, no usable credential). */
  Stopped: {}
  /**
   * A restart is under way: nothing else may restart or judge the instance meanwhile. The instance goes through
   * phases during it (starting, rate-limited, idle once the new session is up…): `during` is the one it is in,
   * and the one it shows.
   */
  Restarting: { readonly during: Phase }
}>

export const Phase = Data.taggedEnum<Phase>()

/** A phase other than Restarting: what an instance is in, and shows, under a restart too. */
export type ShownPhase = Exclude<Phase, { readonly _tag: "Restarting" }>

/** The phase an instance shows: under a restart, the one it is in. */
export const shown = (phase: Phase): ShownPhase =>
  Phase.$is("Restarting")(phase) ? shown(phase.during) : phase

/** The status users see of a phase. */
export const statusName = (phase: Phase): Status =>
  Phase.$match(phase, {
    Starting: () => "starting" as const,
    Idle: () => "idle" as const,
    Busy: () => "busy" as const,
    WaitingForInput: () => "waiting-for-input" as const,
    RateLimited: () => "rate-limited" as const,
    Stuck: () => "stuck" as const,
    Crashed: () => "crashed" as const,
    Error: () => "error" as const,
    Done: () => "done" as const,
    Stopped: () => "stopped" as const,
    Restarting: ({ during }) => statusName(during)
  })

/** A restart is under way. */
export const isRestarting = Phase.$is("Restarting")

/** Its session is starting or being replaced: an API error from it says nothing about the session to come. */
export const startingOrRestarting = (phase: Phase) => Phase.$is("Restarting")(phase) || Phase.$is("Starting")(phase)

/** Phases in which a prompt can be pasted and taken as the next turn. */
export const acceptsPrompt = (phase: Phase) => {
  const p = shown(phase)
  return Phase.$is("Idle")(p) || Phase.$is("Done")(p) || Phase.$is("Error")(p)
}

// A phase change goes on under a restart: the instance stays claimed by it.
const within = (phase: Phase, f: (p: ShownPhase) => Phase): Phase =>
  Phase.$is("Restarting")(phase) ? Phase.Restarting({ during: within(phase.during, f) }) : f(phase)

const enter = (i: Instance, next: Phase): Phase => within(i.phase, () => next)

export interface Instance {
  readonly spec: H.InstanceSpec
  readonly worktree: string
  /** What it is doing; every change of what it shows (statusName) is logged as `instance.state`. */
  readonly phase: Phase
  readonly generation: number
  /**
   * Its session said SessionStart (or was re-attached) and has not ended: prompts may be pasted. The session's,
   * not the phase's: a session being replaced can show rate-limited, or idle, before its SessionStart.
   */
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
  phase: Phase.Starting(),
  generation: 0,
  ready: false,
  prompted: false,
  roleQueued: false,
  outbox: [],
  lastEventAt: now,
  progressAt: now,
  restarts: 0,
  restartHistory: [],
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
export const sessionStarted = (i: Instance, at: number): Instance => ({ ...i, ready: true, phase: enter(i, Phase.Idle()), lastEventAt: at, progressAt: at })

/** UserPromptSubmit: a turn began. */
export const promptSubmitted = (i: Instance, at: number): Instance => ({ ...i, phase: enter(i, Phase.Busy()), lastEventAt: at })

/** PostToolUse(Failure): progress, and a reminder may be given again. */
export const toolUsed = (i: Instance, at: number): Instance => ({ ...i, lastEventAt: at, progressAt: at, reminded: false })

/**
 * Stop: the turn ended; done while its task is reported (`rests`). The end of a turn that only answered a
 * reminder is no progress: the ladder goes on from the reminder.
 */
export const turnEnded = (i: Instance, turn: { readonly rests: boolean; readonly at: number }): Instance => ({
  ...i,
  phase: enter(i, turn.rests ? Phase.Done() : Phase.Idle()),
  inFlight: [],
  lastEventAt: turn.at,
  progressAt: i.reminded ? i.progressAt : turn.at
})

/** StopFailure: a turn ended on an API error; ignored while the session is starting or being replaced. */
export const apiFailed = (i: Instance, limit: Limits.Limit, at: number): Instance =>
  startingOrRestarting(i.phase)
    ? i
    : {
      ...i,
      phase: limit._tag === "RateLimited" || limit._tag === "UsageLimit" ? Phase.RateLimited() : Phase.Error({ generation: i.generation }),
      lastEventAt: at
    }

/** SessionEnd: the session is gone. */
export const sessionEnded = (i: Instance, at: number): Instance => ({ ...i, phase: enter(i, Phase.Stopped()), ready: false, lastEventAt: at })

/** Notification: a question for a person (`waiting`) makes it wait for input; any other is just a sign of life. */
export const notified = (i: Instance, waiting: boolean, at: number): Instance => ({
  ...i,
  lastEventAt: at,
  ...(waiting ? { phase: enter(i, Phase.WaitingForInput()) } : {})
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
  phase: enter(i, Phase.Busy()),
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
  phase: enter(i, Phase.Idle()),
  prompted: wasPrompted && i.prompted
})

/** Reminded after a Stop: the ladder moves on. */
export const remindedAfterStop = (i: Instance, ladder: Supervisor.Ladder): Instance => ({ ...i, ladder, reminded: true })

// --- supervision

/** What a health check saw of an instance. */
export interface Seen {
  readonly alive: boolean
  readonly screenBlocked: boolean
  readonly acting: boolean
  readonly quiet: boolean
}

/** The phase a health check gives an instance from what it saw (under a restart, the phase it is in). */
export const judgedPhase = (phase: Phase, seen: Seen): Phase =>
  within(phase, (p) =>
    !seen.alive && !Phase.$is("Stopped")(p)
      ? Phase.Crashed()
      : seen.screenBlocked
      ? Phase.WaitingForInput()
      : Phase.$is("Busy")(p) && seen.acting
      ? Phase.Stuck()
      : Phase.$is("WaitingForInput")(p) && !seen.screenBlocked && seen.quiet
      ? Phase.Idle()
      : p)

/** A health check judged the instance: its ladder and the phase it saw. */
export const judged = (i: Instance, ladder: Supervisor.Ladder, seen: Seen): Instance => ({ ...i, ladder, phase: judgedPhase(i.phase, seen) })

// --- restarts, launches, credentials

/** Claim the instance for a restart; undefined when one is already under way. */
export const restartClaimed = (i: Instance): Instance | undefined =>
  isRestarting(i.phase) ? undefined : { ...i, phase: Phase.Restarting({ during: i.phase }) }

/** The restart is over, however it went: the instance is in the phase it reached during it. */
export const restartReleased = (i: Instance): Instance => isRestarting(i.phase) ? { ...i, phase: shown(i.phase) } : i

/** Stopped for good: the restart budget is spent, or no credential is usable. */
export const stopped = (i: Instance): Instance => ({ ...i, phase: enter(i, Phase.Stopped()) })

/**
 * A restart begins: the old session goes; a message pasted into it and never taken goes to the new one; the
 * supervisor's clocks and ladder start over.
 */
export const restartBegun = (i: Instance, history: ReadonlyArray<number>, at: number): Instance => ({
  ...i,
  phase: enter(i, Phase.Starting()),
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
  phase: enter(i, Phase.Idle()),
  lastEventAt: at,
  ...(i.inFlightPasted ? {} : { outbox: [...i.inFlight, ...i.outbox], inFlight: [], inFlightPasted: true })
})

/** Waiting for a credential to cool down. */
export const rateLimited = (i: Instance): Instance => ({ ...i, phase: enter(i, Phase.RateLimited()) })

/** Its credential's limit has reset: the session goes on. */
export const limitReset = (i: Instance): Instance => ({ ...i, phase: enter(i, Phase.Idle()) })

/** An API error the pane did not confirm: a rate-limited session of that generation rests on an error instead. */
export const errorUnconfirmed = (i: Instance, generation: number): Instance =>
  i.generation === generation && Phase.$is("RateLimited")(shown(i.phase)) ? { ...i, phase: enter(i, Phase.Error({ generation })) } : i

/** It still rests on the API error of the session of `generation`, and no restart is under way. */
export const restsOnError = (i: Instance, generation: number): boolean =>
  i.generation === generation && Phase.$is("Error")(i.phase) && i.phase.generation === generation
