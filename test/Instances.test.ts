import { describe, expect, it } from "vitest"
import * as I from "../src/Instances.js"
import { Limit } from "../src/Limits.js"
import * as Supervisor from "../src/Supervisor.js"

const spec = { name: "w1", role: "worker", lead: "em1", reports: [], branch: "cco/w1", baseBranch: "cco/em1" } as const
const start = I.initial(spec, "/tmp/w1", 1_000)
// A running instance: idle, prompted, on a credential.
const running: I.Instance = { ...start, phase: I.Phase.Idle(), ready: true, prompted: true, generation: 2, credential: "key-a" }

describe("Instances: the initial state", () => {
  it("starts with nothing owed, on no credential, its clocks at the start", () => {
    expect(start).toEqual({
      spec, worktree: "/tmp/w1", phase: I.Phase.Starting(), generation: 0, ready: false, prompted: false, roleQueued: false,
      outbox: [], lastEventAt: 1_000, progressAt: 1_000, restarts: 0, restartHistory: [], inFlight: [],
      inFlightPasted: true, reminded: false, ladder: Supervisor.initialLadder(1_000), credential: ""
    })
  })

  it("resumes what state.json kept, with defaults for older files", () => {
    const saved = { name: "w1", status: "busy", generation: 3, restarts: 1, credential: "key-b" } as unknown as Parameters<typeof I.resumed>[1]
    const r = I.resumed(start, saved)
    expect(r).toEqual({ ...start, generation: 3, restarts: 1, credential: "key-b", prompted: false, roleQueued: false, outbox: [], inFlight: [], inFlightPasted: true })
    const full = { ...saved, prompted: true, roleQueued: true, outbox: ["a"], inFlight: ["b"], inFlightPasted: false } as typeof saved
    expect(I.resumed(start, full)).toMatchObject({ prompted: true, roleQueued: true, outbox: ["a"], inFlight: ["b"], inFlightPasted: false })
    // The status is not taken from the file: a resumed instance starts again.
    expect(I.statusName(r.phase)).toBe("starting")
  })
})

describe("Instances: hook events", () => {
  it("SessionStart makes it ready and idle, with progress now", () => {
    expect(I.sessionStarted(start, 2_000)).toEqual({ ...start, ready: true, phase: I.Phase.Idle(), lastEventAt: 2_000, progressAt: 2_000 })
  })

  it("UserPromptSubmit makes it busy without counting as progress", () => {
    expect(I.promptSubmitted(running, 2_000)).toEqual({ ...running, phase: I.Phase.Busy(), lastEventAt: 2_000 })
  })

  it("a tool use is progress and allows another reminder", () => {
    const after = I.toolUsed({ ...running, phase: I.Phase.Busy(), reminded: true }, 3_000)
    expect(after).toEqual({ ...running, phase: I.Phase.Busy(), reminded: false, lastEventAt: 3_000, progressAt: 3_000 })
  })

  it("Stop ends the turn: done while the task is reported, idle otherwise; in-flight messages are taken", () => {
    const busy: I.Instance = { ...running, phase: I.Phase.Busy(), inFlight: ["task"] }
    expect(I.turnEnded(busy, { rests: true, at: 4_000 })).toEqual({ ...busy, phase: I.Phase.Done(), inFlight: [], lastEventAt: 4_000, progressAt: 4_000 })
    expect(I.statusName(I.turnEnded(busy, { rests: false, at: 4_000 }).phase)).toBe("idle")
  })

  it("Stop after a reminder is no progress", () => {
    const reminded: I.Instance = { ...running, phase: I.Phase.Busy(), reminded: true, progressAt: 1_500 }
    const after = I.turnEnded(reminded, { rests: false, at: 4_000 })
    expect(after.progressAt).toBe(1_500)
    expect(after.lastEventAt).toBe(4_000)
  })

  it("StopFailure: rate and usage limits make it rate-limited, other errors an error", () => {
    const busy: I.Instance = { ...running, phase: I.Phase.Busy() }
    expect(I.apiFailed(busy, Limit.RateLimited({ resetAt: undefined, message: "429" }), 5_000)).toEqual({ ...busy, phase: I.Phase.RateLimited(), lastEventAt: 5_000 })
    expect(I.statusName(I.apiFailed(busy, Limit.UsageLimit({ resetAt: undefined, limit: "x", message: "limit" }), 5_000).phase)).toBe("rate-limited")
    expect(I.statusName(I.apiFailed(busy, Limit.Overloaded({ message: "529" }), 5_000).phase)).toBe("error")
    expect(I.statusName(I.apiFailed(busy, Limit.AuthFailed({ message: "401" }), 5_000).phase)).toBe("error")
    expect(I.statusName(I.apiFailed(busy, Limit.Other({ message: "bad" }), 5_000).phase)).toBe("error")
    // The error is the failure of the session it happened in.
    expect(I.apiFailed(busy, Limit.Other({ message: "bad" }), 5_000).phase).toEqual(I.Phase.Error({ generation: 2 }))
  })

  it("StopFailure is ignored while the session is starting or being replaced", () => {
    const limit = Limit.RateLimited({ resetAt: undefined, message: "429" })
    const starting: I.Instance = { ...running, phase: I.Phase.Starting() }
    expect(I.apiFailed(starting, limit, 5_000)).toBe(starting)
    const restarting: I.Instance = { ...running, phase: I.Phase.Restarting({ during: I.Phase.Busy() }) }
    expect(I.apiFailed(restarting, limit, 5_000)).toBe(restarting)
  })

  it("SessionEnd stops it", () => {
    expect(I.sessionEnded(running, 6_000)).toEqual({ ...running, phase: I.Phase.Stopped(), ready: false, lastEventAt: 6_000 })
  })

  it("a permission question makes it wait for input; other notifications and hooks are signs of life only", () => {
    const busy: I.Instance = { ...running, phase: I.Phase.Busy() }
    expect(I.notified(busy, true, 7_000)).toEqual({ ...busy, phase: I.Phase.WaitingForInput(), lastEventAt: 7_000 })
    expect(I.notified(busy, false, 7_000)).toEqual({ ...busy, lastEventAt: 7_000 })
    expect(I.eventSeen(busy, 7_000)).toEqual({ ...busy, lastEventAt: 7_000 })
  })
})

describe("Instances: delivery", () => {
  it("enqueued keeps the given outbox and remembers a role prompt", () => {
    expect(I.enqueued(start, ["role"], true)).toEqual({ ...start, outbox: ["role"], roleQueued: true })
    expect(I.enqueued(start, ["msg"], false)).toEqual({ ...start, outbox: ["msg"] })
  })

  it("a prompt taken makes it busy and prompted, with its clocks restarted", () => {
    const owed: I.Instance = { ...running, prompted: false, roleQueued: true, reminded: true, outbox: ["a", "b"] }
    expect(I.promptTaken(owed, ["a"], ["b"], 8_000)).toEqual({
      ...owed, outbox: ["b"], inFlight: ["a"], inFlightPasted: false, reminded: false, phase: I.Phase.Busy(), prompted: true,
      lastEventAt: 8_000, progressAt: 8_000
    })
  })

  it("a pasted batch is marked only if it is still the one in flight", () => {
    const batch = ["a"]
    const taken = I.promptTaken(running, batch, [], 8_000)
    expect(I.promptPasted(taken, batch).inFlightPasted).toBe(true)
    const other = I.promptTaken(running, ["a"], [], 8_000)
    expect(I.promptPasted(other, batch)).toBe(other)
  })

  it("a failed delivery puts the batch back first and keeps a failed role prompt undelivered", () => {
    const taken = { ...I.promptTaken({ ...running, prompted: false, outbox: ["role"] }, ["role"], [], 8_000), outbox: ["later"] }
    expect(I.deliveryFailed(taken, ["role"], false)).toEqual({ ...taken, outbox: ["role", "later"], inFlight: [], phase: I.Phase.Idle(), prompted: false })
    const prompted = I.promptTaken(running, ["task"], [], 8_000)
    expect(I.deliveryFailed(prompted, ["task"], true).prompted).toBe(true)
  })

  it("a reminder moves the ladder and is not given twice", () => {
    const ladder = { step: 1, lastActionAt: 9_000, progressAt: 1_000 }
    expect(I.remindedAfterStop(running, ladder)).toEqual({ ...running, ladder, reminded: true })
  })
})

describe("Instances: supervision", () => {
  const judgedStatus = (phase: I.Phase, seen: I.Seen) => I.statusName(I.judgedPhase(phase, seen))
  const seen = { alive: true, screenBlocked: false, acting: false, quiet: false }
  it("a dead session is crashed, unless stopped", () => {
    expect(judgedStatus(I.Phase.Busy(), { ...seen, alive: false })).toBe("crashed")
    expect(judgedStatus(I.Phase.Stopped(), { ...seen, alive: false })).toBe("stopped")
  })
  it("a blocking screen waits for input; busy and acted on is stuck; a quiet waiting one is idle", () => {
    expect(judgedStatus(I.Phase.Busy(), { ...seen, screenBlocked: true })).toBe("waiting-for-input")
    expect(judgedStatus(I.Phase.Busy(), { ...seen, acting: true })).toBe("stuck")
    expect(judgedStatus(I.Phase.Idle(), { ...seen, acting: true })).toBe("idle")
    expect(judgedStatus(I.Phase.WaitingForInput(), { ...seen, quiet: true })).toBe("idle")
    expect(judgedStatus(I.Phase.WaitingForInput(), seen)).toBe("waiting-for-input")
  })
  it("judged sets the ladder and the status seen", () => {
    const ladder = { step: 2, lastActionAt: 9_000, progressAt: 1_000 }
    expect(I.judged({ ...running, phase: I.Phase.Busy() }, ladder, { ...seen, acting: true })).toEqual({ ...running, phase: I.Phase.Stuck(), ladder })
  })
})

describe("Instances: restarts and credentials", () => {
  it("one restart at a time", () => {
    const claimed = I.restartClaimed(running)
    expect(claimed).toEqual({ ...running, phase: I.Phase.Restarting({ during: I.Phase.Idle() }) })
    expect(I.restartClaimed(claimed!)).toBeUndefined()
    expect(I.restartReleased(claimed!)).toEqual(running)
  })

  it("a restart requeues what was in flight and starts its clocks and ladder over", () => {
    const busy: I.Instance = { ...running, phase: I.Phase.Stuck(), inFlight: ["a"], outbox: ["b"], restarts: 1, ladder: { step: 3, lastActionAt: 5, progressAt: 5 } }
    expect(I.restartBegun(busy, [10_000], 10_000)).toEqual({
      ...busy, phase: I.Phase.Starting(), ready: false, outbox: ["a", "b"], inFlight: [], restarts: 2, restartHistory: [10_000],
      lastEventAt: 10_000, progressAt: 10_000, ladder: Supervisor.initialLadder(10_000)
    })
  })

  it("a launch records its generation and credential", () => {
    expect(I.relaunched(start, 4, "key-b", 11_000)).toEqual({ ...start, generation: 4, credential: "key-b", lastEventAt: 11_000 })
  })

  it("re-attached sessions are ready and get back what never reached their pane", () => {
    const unpasted: I.Instance = { ...start, inFlight: ["a"], inFlightPasted: false, outbox: ["b"] }
    expect(I.reattached(unpasted, 12_000)).toEqual({ ...unpasted, ready: true, phase: I.Phase.Idle(), lastEventAt: 12_000, outbox: ["a", "b"], inFlight: [], inFlightPasted: true })
    const pasted: I.Instance = { ...start, inFlight: ["a"], inFlightPasted: true, outbox: ["b"] }
    expect(I.reattached(pasted, 12_000)).toEqual({ ...pasted, ready: true, phase: I.Phase.Idle(), lastEventAt: 12_000 })
    expect(I.inFlightRequeued(pasted)).toEqual({ ...pasted, outbox: ["a", "b"], inFlight: [], inFlightPasted: true })
  })

  it("credential states: stopped, rate-limited, reset", () => {
    expect(I.statusName(I.stopped(running).phase)).toBe("stopped")
    expect(I.statusName(I.rateLimited(running).phase)).toBe("rate-limited")
    expect(I.statusName(I.limitReset({ ...running, phase: I.Phase.RateLimited() }).phase)).toBe("idle")
  })

  it("an unconfirmed API error turns only that generation's rate-limited status into an error", () => {
    const limited: I.Instance = { ...running, phase: I.Phase.RateLimited() }
    expect(I.errorUnconfirmed(limited, 2)).toEqual({ ...limited, phase: I.Phase.Error({ generation: 2 }) })
    expect(I.errorUnconfirmed(limited, 1)).toBe(limited)
    const busy: I.Instance = { ...running, phase: I.Phase.Busy() }
    expect(I.errorUnconfirmed(busy, 2)).toBe(busy)
  })
})

describe("Instances: phases and the status users see", () => {
  const all: ReadonlyArray<readonly [I.Phase, I.Status]> = [
    [I.Phase.Starting(), "starting"],
    [I.Phase.Idle(), "idle"],
    [I.Phase.Busy(), "busy"],
    [I.Phase.WaitingForInput(), "waiting-for-input"],
    [I.Phase.RateLimited(), "rate-limited"],
    [I.Phase.Stuck(), "stuck"],
    [I.Phase.Crashed(), "crashed"],
    [I.Phase.Error({ generation: 1 }), "error"],
    [I.Phase.Done(), "done"],
    [I.Phase.Stopped(), "stopped"]
  ]

  it("each phase shows the status state.json, cco status and the instance.state lines have always shown", () => {
    expect(all.map(([phase]) => I.statusName(phase))).toEqual(all.map(([, name]) => name))
  })

  it("a restart under way shows the phase it is in", () => {
    for (const [phase, name] of all) expect(I.statusName(I.Phase.Restarting({ during: phase }))).toBe(name)
    expect(I.shown(I.Phase.Restarting({ during: I.Phase.RateLimited() }))).toEqual(I.Phase.RateLimited())
  })

  it("a prompt goes in only while idle, done or resting on an error, restart or not", () => {
    const accepting = all.filter(([phase]) => I.acceptsPrompt(phase)).map(([, name]) => name)
    expect(accepting).toEqual(["idle", "error", "done"])
    const underRestart = all.filter(([phase]) => I.acceptsPrompt(I.Phase.Restarting({ during: phase }))).map(([, name]) => name)
    expect(underRestart).toEqual(["idle", "error", "done"])
  })

  it("an API error says nothing while the session is starting or being replaced", () => {
    expect(all.filter(([phase]) => I.startingOrRestarting(phase)).map(([, name]) => name)).toEqual(["starting"])
    expect(I.startingOrRestarting(I.Phase.Restarting({ during: I.Phase.Idle() }))).toBe(true)
  })
})

describe("Instances: through a restart", () => {
  it("the claim holds while the instance goes from stuck through starting and rate-limited to idle, and is released there", () => {
    const stuck: I.Instance = { ...running, phase: I.Phase.Stuck(), inFlight: ["a"] }
    const claimed = I.restartClaimed(stuck)!
    const seen: Array<string> = [I.statusName(claimed.phase)]
    const begun = I.restartBegun(claimed, [10_000], 10_000)
    seen.push(I.statusName(begun.phase))
    const waiting = I.rateLimited(begun)
    seen.push(I.statusName(waiting.phase))
    const launched = I.relaunched(waiting, 3, "key-b", 11_000)
    const up = I.sessionStarted(launched, 12_000)
    seen.push(I.statusName(up.phase))
    expect(seen).toEqual(["stuck", "starting", "rate-limited", "idle"])
    // Still claimed: no second restart, no API error taken, until it is released.
    for (const i of [claimed, begun, waiting, launched, up]) {
      expect(I.isRestarting(i.phase)).toBe(true)
      expect(I.restartClaimed(i)).toBeUndefined()
    }
    expect(I.apiFailed(up, Limit.Other({ message: "bad" }), 12_500)).toBe(up)
    const released = I.restartReleased(up)
    expect(released.phase).toEqual(I.Phase.Idle())
    expect(released).toMatchObject({ ready: true, generation: 3, credential: "key-b", outbox: ["a"], inFlight: [] })
    expect(I.restartReleased(released)).toBe(released)
  })

  it("a restart refused by its budget is released stopped", () => {
    const claimed = I.restartClaimed({ ...running, phase: I.Phase.Crashed() })!
    expect(I.restartReleased(I.stopped(claimed)).phase).toEqual(I.Phase.Stopped())
  })

  it("a health check that finds the session dead during a restart judges the phase it is in", () => {
    const claimed = I.restartClaimed({ ...running, phase: I.Phase.Busy() })!
    const ladder = Supervisor.initialLadder(9_000)
    const after = I.judged(claimed, ladder, { alive: false, screenBlocked: false, acting: true, quiet: false })
    expect(after.phase).toEqual(I.Phase.Restarting({ during: I.Phase.Crashed() }))
    expect(I.statusName(after.phase)).toBe("crashed")
  })

  it("hook events during a restart change the phase it is in, not the claim", () => {
    const claimed = I.restartClaimed({ ...running, phase: I.Phase.Idle() })!
    expect(I.promptSubmitted(claimed, 1).phase).toEqual(I.Phase.Restarting({ during: I.Phase.Busy() }))
    expect(I.turnEnded(claimed, { rests: true, at: 1 }).phase).toEqual(I.Phase.Restarting({ during: I.Phase.Done() }))
    expect(I.sessionEnded(claimed, 1).phase).toEqual(I.Phase.Restarting({ during: I.Phase.Stopped() }))
    expect(I.notified(claimed, true, 1).phase).toEqual(I.Phase.Restarting({ during: I.Phase.WaitingForInput() }))
    expect(I.limitReset(I.rateLimited(claimed)).phase).toEqual(I.Phase.Restarting({ during: I.Phase.Idle() }))
  })

  it("the error a session rests on is that session's: a later one does not rest on it, nor one being restarted", () => {
    const failed = I.apiFailed({ ...running, phase: I.Phase.Busy() }, Limit.Overloaded({ message: "529" }), 5_000)
    expect(I.restsOnError(failed, 2)).toBe(true)
    expect(I.restsOnError(failed, 1)).toBe(false)
    expect(I.restsOnError(I.relaunched(failed, 3, "key-a", 6_000), 2)).toBe(false)
    expect(I.restsOnError(I.restartClaimed(failed)!, 2)).toBe(false)
    expect(I.restsOnError(I.promptTaken(failed, ["go on"], [], 6_000), 2)).toBe(false)
    const unconfirmed = I.errorUnconfirmed({ ...running, phase: I.Phase.RateLimited() }, 2)
    expect(I.restsOnError(unconfirmed, 2)).toBe(true)
  })
})
