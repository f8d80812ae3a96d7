import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, Ref, TestClock } from "effect"
import * as S from "../src/Supervisor.js"

const t: S.Thresholds = { stuckAfterMs: 600_000, idleAfterMs: 300_000, escalationIntervalMs: 120_000, startupTimeoutMs: 120_000 }
const base: S.Observation = { now: 0, sessionAlive: true, status: "busy", lastEventAt: 0, progressAt: 0, pendingWork: "task #1 is not reported done", blockingScreen: undefined }

/**
 * Runs health checks every `step` ms from `from` to `to` with no progress (a restart counts as a fresh start,
 * as the orchestrator records it); returns the actions taken, with times.
 */
const simulate = (start: Omit<S.Observation, "now">, from: number, to: number, step = 15_000) => {
  let obs = start
  let ladder = S.initialLadder(obs.lastEventAt)
  const actions: Array<string> = []
  for (let now = from; now <= to; now += step) {
    const r = S.decide({ ...obs, now }, ladder, t)
    ladder = r.ladder
    if (r.action._tag === "Restart") obs = { ...obs, lastEventAt: now, progressAt: now }
    if (r.action._tag !== "None") actions.push(`${r.action._tag}@${now / 1000}`)
  }
  return actions
}

describe("Supervisor escalation ladder", () => {
  it("a busy instance with no progress is nudged after stuckAfter, interrupted, then restarted, an interval apart", () => {
    expect(simulate(base, 0, 900_000)).toEqual(["Nudge@615", "Interrupt@735", "Restart@855"])
  })

  it("progress resets the ladder", () => {
    let ladder = S.initialLadder(0)
    const at = (now: number, lastEventAt: number) => {
      const r = S.decide({ ...base, now, lastEventAt, progressAt: lastEventAt }, ladder, t)
      ladder = r.ladder
      return r.action._tag
    }
    expect(at(601_000, 0)).toBe("Nudge")
    expect(at(650_000, 640_000)).toBe("None") // a tool ran: well again
    expect(ladder.step).toBe(0)
    expect(at(1_241_000, 640_000)).toBe("Nudge") // stuck again later: starts from the first step
  })

  it("a prompt submitted after a nudge is not progress: the ladder goes on to a restart", () => {
    let ladder = S.initialLadder(0)
    const step = (now: number, lastEventAt: number) => {
      const r = S.decide({ ...base, now, lastEventAt, progressAt: 0 }, ladder, t)
      ladder = r.ladder
      return r.action._tag
    }
    expect(step(601_000, 0)).toBe("Nudge")
    expect(step(721_000, 0)).toBe("Interrupt")
    expect(step(722_000, 721_500)).toBe("None") // the interrupt message was submitted: busy again
    expect(step(1_322_000, 721_500)).toBe("Restart") // and stuck again: the next step, not a new nudge
  })

  it("an idle instance that owes work is nudged; one that owes nothing is left alone", () => {
    expect(simulate({ ...base, status: "idle" }, 0, 600_000)).toEqual(["Nudge@315", "Interrupt@435", "Restart@555"])
    expect(simulate({ ...base, status: "idle", pendingWork: undefined }, 0, 3_600_000)).toEqual([])
    // A task just assigned and still waiting to be pasted in: the instance is about to work, not idling.
    expect(simulate({ ...base, status: "idle", deliveryPending: true }, 0, 3_600_000)).toEqual([])
    // Busy with no progress is still stuck, whatever waits for it.
    expect(simulate({ ...base, status: "busy", deliveryPending: true }, 0, 900_000)[0]).toMatch(/^Nudge@/)
  })

  it("a crashed instance is restarted at once; a slow start is restarted after the start-up timeout", () => {
    expect(S.decide({ ...base, now: 1000, sessionAlive: false }, S.initialLadder(0), t).action._tag).toBe("Restart")
    expect(simulate({ ...base, status: "starting" }, 0, 200_000)).toEqual(["Restart@135"])
  })

  it("a blocking dialog is dismissed, and a dialog that stays is cured by a restart", () => {
    const screen = S.detectBlockingScreen("…\n What do you want to do?\n ❯ 1. Stop and wait for limit to reset\n   2. Request more\n Enter to confirm · Esc to cancel")
    expect(screen?.name).toBe("rate-limit menu")
    const actions = simulate({ ...base, status: "idle", lastEventAt: 0, blockingScreen: screen }, 15_000, 260_000)
    expect(actions).toEqual(["Dismiss@15", "Dismiss@135", "Restart@255"])
  })

  it("detects dialogs only at the bottom of the screen, not in scrollback an agent printed", () => {
    const quoted = ["Do you want to use this API key?", ...Array.from({ length: 40 }, (_, i) => `line ${i}`), "❯ "].join("\n")
    expect(S.detectBlockingScreen(quoted)).toBeUndefined()
    expect(S.detectBlockingScreen("x\nSelect login method:\n❯ 1. Claude account")?.authProblem).toBe(true)
  })

  it("a dialog's question quoted in a message, tool output or the input line is not a dialog; the CLI's own layouts are", () => {
    const inputBox = ["╭──────────────────────────────────────╮", "│ >                                    │", "╰──────────────────────────────────────╯", "  ⏵⏵ bypass permissions on (shift+tab to cycle)"]
    const newInputBox = ["──────────────────────────────────────", "❯ ", "──────────────────────────────────────", "  ? for shortcuts"]
    // A message that quotes the question, even with the dialog's options and hints in it, above the input box.
    const quoted = [
      "> [cco] Message from worker-1: Do you trust the files in this folder?",
      "  Do you trust the files in this folder?",
      "  ❯ 1. Yes, proceed",
      "  Enter to confirm · Esc to exit",
      "",
      "● Noted.",
      ""
    ]
    expect(S.detectBlockingScreen([...quoted, ...inputBox].join("\n"))).toBeUndefined()
    expect(S.detectBlockingScreen([...quoted, ...newInputBox].join("\n"))).toBeUndefined()
    // Tool output that prints the question, while the instance works.
    expect(S.detectBlockingScreen(["● Bash(cat notes.md)", "  ⎿  Do you trust the files in this folder?", "✻ Working… (esc to interrupt)", ...newInputBox].join("\n"))).toBeUndefined()
    // The fake agent's footer: the message is still in its input line.
    expect(S.detectBlockingScreen("● Done.\n> [cco] Message from worker-1: Do you trust the files in this folder? ⏎ ❯ 1. Yes ⏎ Enter to confirm")).toBeUndefined()
    // The question inside a line of other text, even as the screen's last lines.
    expect(S.detectBlockingScreen("worker-1 says: Do you trust the files in this folder?\n❯ 1. Yes, proceed\nEnter to confirm · Esc to exit")).toBeUndefined()

    // The dialog as the CLI draws it: framed with hints below, or unframed.
    const framed = [
      "╭──────────────────────────────────────────────────────────────╮",
      "│                                                              │",
      "│ Do you trust the files in this folder?                       │",
      "│                                                              │",
      "│ /tmp/run/worktrees/worker-1                                  │",
      "│                                                              │",
      "│ Claude Code may read files in this folder.                   │",
      "│                                                              │",
      "│ ❯ 1. Yes, proceed                                            │",
      "│   2. No, exit                                                │",
      "│                                                              │",
      "╰──────────────────────────────────────────────────────────────╯",
      "   Enter to confirm · Esc to exit",
      "",
      ""
    ]
    expect(S.detectBlockingScreen(framed.join("\n"))?.name).toBe("folder trust dialog")
    expect(S.detectBlockingScreen(framed.slice(0, -3).join("\n"))?.name).toBe("folder trust dialog")
    const unframed = [
      "────────────────────────────────────────",
      " Accessing workspace:",
      "",
      " /tmp/run/worktrees/worker-1",
      "",
      " Quick safety check: Is this a project you created or one you trust? (Like your own code.)",
      "",
      " ❯ 1. Yes, I trust this folder",
      "   2. No, exit",
      "",
      " Enter to confirm · Esc to cancel"
    ]
    expect(S.detectBlockingScreen(unframed.join("\n"))?.name).toBe("folder trust dialog")
    // Below a transcript that quoted it: the dialog at the bottom still counts.
    expect(S.detectBlockingScreen([...quoted, ...unframed].join("\n"))?.name).toBe("folder trust dialog")
    expect(S.detectBlockingScreen(" Bash command\n\n   rm -rf build\n\n Do you want to proceed?\n ❯ 1. Yes\n   2. No, and tell Claude what to do differently (esc)")?.name).toBe("permission prompt")
  })

  it("bounds restarts within a window", () => {
    let history: ReadonlyArray<number> = []
    const tries = [0, 10, 20, 30, 40, 50].map((s) => {
      const r = S.allowRestart(history, s * 1000, 5, 600_000)
      history = r.history
      return r.allowed
    })
    expect(tries).toEqual([true, true, true, true, true, false])
    expect(S.allowRestart(history, 601_000, 5, 600_000).allowed).toBe(true)
  })
})

describe("reminder after a Stop with work pending", () => {
  const delay = S.reminderDelayMs(t.idleAfterMs)
  const stop: S.StopObservation = {
    now: 100_000,
    stoppedAt: 100_000,
    status: "idle",
    lastEventAt: 100_000,
    progressAt: 100_000,
    pendingWork: "worker-1 reported done and wait for cco team merge",
    deliveryPending: false,
    remindedWithoutWork: false
  }
  const remind = (obs: Partial<S.StopObservation>) => S.remindAfterStop({ ...stop, ...obs }, S.initialLadder(0), delay)

  it("a lead that ends its turn with a report waiting is reminded within seconds, naming the work, not after idleAfter", () => {
    expect(delay).toBe(5_000)
    expect(remind({ now: 102_000 }).action._tag).toBe("None")
    const r = remind({ now: 105_000 })
    expect(r.action).toMatchObject({ _tag: "Nudge", reason: "ended its turn with worker-1 reported done and wait for cco team merge" })
    expect(r.action._tag === "Nudge" && r.action.message).toContain("worker-1 reported done and wait for cco team merge")
    expect(r.ladder).toEqual({ step: 1, lastActionAt: 105_000, progressAt: 100_000 })
    // A worker that stops without reporting, an instance marked done with work of its own: the same.
    expect(remind({ now: 105_000, status: "done", pendingWork: "task #3 is not reported done" }).action._tag).toBe("Nudge")
  })

  it("no reminder when nothing is owed, something happened since, messages wait for delivery, or the turn answered a reminder without work", () => {
    const at = 106_000
    expect(remind({ now: at, pendingWork: undefined }).action._tag).toBe("None")
    expect(remind({ now: at, lastEventAt: 103_000 }).action._tag).toBe("None") // a prompt went in, a hook came
    expect(remind({ now: at, status: "busy" }).action._tag).toBe("None")
    expect(remind({ now: at, status: "waiting-for-input" }).action._tag).toBe("None")
    expect(remind({ now: at, deliveryPending: true }).action._tag).toBe("None")
    expect(remind({ now: at, remindedWithoutWork: true }).action._tag).toBe("None")
  })

  it("the ladder goes on from the reminder: an instance that still idles is interrupted, then restarted", () => {
    let ladder = remind({ now: 105_000 }).ladder
    // The reminder's turn ends at 110 s without work: that Stop is not progress (progressAt stays at 100 s).
    const idle = { ...base, status: "idle" as const, lastEventAt: 110_000, progressAt: 100_000 }
    const actions: Array<string> = []
    for (let now = 110_000; now <= 110_000 + 600_000; now += 15_000) {
      const r = S.decide({ ...idle, now }, ladder, t)
      ladder = r.ladder
      if (r.action._tag !== "None") actions.push(`${r.action._tag}@${now / 1000}`)
      if (r.action._tag === "Restart") break
    }
    expect(actions).toEqual(["Interrupt@425", "Restart@545"])
  })
})

describe("run deadline", () => {
  it.effect("warns shortly before the limit and ends at the limit (TestClock)", () =>
    Effect.gen(function*() {
      const warned = yield* Ref.make<number | undefined>(undefined)
      const fiber = yield* Effect.fork(S.watchDeadline(60 * 60_000, Effect.flatMap(Effect.clockWith((c) => c.currentTimeMillis), (n) => Ref.set(warned, n))))
      yield* TestClock.adjust("54 minutes")
      expect(yield* Ref.get(warned)).toBeUndefined()
      yield* TestClock.adjust("1 minute")
      expect(yield* Ref.get(warned)).toBe(55 * 60_000)
      expect(fiber.unsafePoll()).toBeNull()
      yield* TestClock.adjust("5 minutes")
      yield* Fiber.join(fiber)
    }))

  it("the warning lead is 10 % of the run, between one and five minutes", () => {
    expect(S.warningLead(120 * 60_000)).toBe(5 * 60_000)
    expect(S.warningLead(20 * 60_000)).toBe(2 * 60_000)
    expect(S.warningLead(3 * 60_000)).toBe(60_000)
    expect(S.warningLead(60_000)).toBe(30_000)
  })
})
