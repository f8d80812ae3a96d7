import { describe, expect, it } from "vitest"
import * as I from "../src/Instances.js"
import { Limit } from "../src/Limits.js"
import * as Supervisor from "../src/Supervisor.js"

const spec = { name: "w1", role: "worker", lead: "em1", reports: [], branch: "cco/w1", baseBranch: "cco/em1" } as const
const start = I.initial(spec, "/tmp/w1", 1_000)
// A running instance: idle, prompted, on a credential.
const running: I.Instance = { ...start, status: "idle", ready: true, prompted: true, generation: 2, credential: "key-a" }

describe("Instances: the initial state", () => {
  it("starts with nothing owed, on no credential, its clocks at the start", () => {
    expect(start).toEqual({
      spec, worktree: "/tmp/w1", status: "starting", generation: 0, ready: false, prompted: false, roleQueued: false,
      outbox: [], lastEventAt: 1_000, progressAt: 1_000, restarts: 0, restartHistory: [], restarting: false, inFlight: [],
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
    expect(r.status).toBe("starting")
  })
})

describe("Instances: hook events", () => {
  it("SessionStart makes it ready and idle, with progress now", () => {
    expect(I.sessionStarted(start, 2_000)).toEqual({ ...start, ready: true, status: "idle", lastEventAt: 2_000, progressAt: 2_000 })
  })

  it("UserPromptSubmit makes it busy without counting as progress", () => {
    expect(I.promptSubmitted(running, 2_000)).toEqual({ ...running, status: "busy", lastEventAt: 2_000 })
  })

  it("a tool use is progress and allows another reminder", () => {
    const after = I.toolUsed({ ...running, status: "busy", reminded: true }, 3_000)
    expect(after).toEqual({ ...running, status: "busy", reminded: false, lastEventAt: 3_000, progressAt: 3_000 })
  })

  it("Stop ends the turn: done while the task is reported, idle otherwise; in-flight messages are taken", () => {
    const busy: I.Instance = { ...running, status: "busy", inFlight: ["task"] }
    expect(I.turnEnded(busy, { rests: true, at: 4_000 })).toEqual({ ...busy, status: "done", inFlight: [], lastEventAt: 4_000, progressAt: 4_000 })
    expect(I.turnEnded(busy, { rests: false, at: 4_000 }).status).toBe("idle")
  })

  it("Stop after a reminder is no progress", () => {
    const reminded: I.Instance = { ...running, status: "busy", reminded: true, progressAt: 1_500 }
    const after = I.turnEnded(reminded, { rests: false, at: 4_000 })
    expect(after.progressAt).toBe(1_500)
    expect(after.lastEventAt).toBe(4_000)
  })

  it("StopFailure: rate and usage limits make it rate-limited, other errors an error", () => {
    const busy: I.Instance = { ...running, status: "busy" }
    expect(I.apiFailed(busy, Limit.RateLimited({ resetAt: undefined, message: "429" }), 5_000)).toEqual({ ...busy, status: "rate-limited", lastEventAt: 5_000 })
    expect(I.apiFailed(busy, Limit.UsageLimit({ resetAt: undefined, limit: "x", message: "limit" }), 5_000).status).toBe("rate-limited")
    expect(I.apiFailed(busy, Limit.Overloaded({ message: "529" }), 5_000).status).toBe("error")
    expect(I.apiFailed(busy, Limit.AuthFailed({ message: "401" }), 5_000).status).toBe("error")
    expect(I.apiFailed(busy, Limit.Other({ message: "bad" }), 5_000).status).toBe("error")
  })

  it("StopFailure is ignored while the session is starting or being replaced", () => {
    const limit = Limit.RateLimited({ resetAt: undefined, message: "429" })
    const starting: I.Instance = { ...running, status: "starting" }
    expect(I.apiFailed(starting, limit, 5_000)).toBe(starting)
    const restarting: I.Instance = { ...running, status: "busy", restarting: true }
    expect(I.apiFailed(restarting, limit, 5_000)).toBe(restarting)
  })

  it("SessionEnd stops it", () => {
    expect(I.sessionEnded(running, 6_000)).toEqual({ ...running, status: "stopped", ready: false, lastEventAt: 6_000 })
  })

  it("a permission question makes it wait for input; other notifications and hooks are signs of life only", () => {
    const busy: I.Instance = { ...running, status: "busy" }
    expect(I.notified(busy, true, 7_000)).toEqual({ ...busy, status: "waiting-for-input", lastEventAt: 7_000 })
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
      ...owed, outbox: ["b"], inFlight: ["a"], inFlightPasted: false, reminded: false, status: "busy", prompted: true,
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
    expect(I.deliveryFailed(taken, ["role"], false)).toEqual({ ...taken, outbox: ["role", "later"], inFlight: [], status: "idle", prompted: false })
    const prompted = I.promptTaken(running, ["task"], [], 8_000)
    expect(I.deliveryFailed(prompted, ["task"], true).prompted).toBe(true)
  })

  it("a reminder moves the ladder and is not given twice", () => {
    const ladder = { step: 1, lastActionAt: 9_000, progressAt: 1_000 }
    expect(I.remindedAfterStop(running, ladder)).toEqual({ ...running, ladder, reminded: true })
  })
})

describe("Instances: supervision", () => {
  const seen = { alive: true, screenBlocked: false, acting: false, quiet: false }
  it("a dead session is crashed, unless stopped", () => {
    expect(I.judgedStatus("busy", { ...seen, alive: false })).toBe("crashed")
    expect(I.judgedStatus("stopped", { ...seen, alive: false })).toBe("stopped")
  })
  it("a blocking screen waits for input; busy and acted on is stuck; a quiet waiting one is idle", () => {
    expect(I.judgedStatus("busy", { ...seen, screenBlocked: true })).toBe("waiting-for-input")
    expect(I.judgedStatus("busy", { ...seen, acting: true })).toBe("stuck")
    expect(I.judgedStatus("idle", { ...seen, acting: true })).toBe("idle")
    expect(I.judgedStatus("waiting-for-input", { ...seen, quiet: true })).toBe("idle")
    expect(I.judgedStatus("waiting-for-input", seen)).toBe("waiting-for-input")
  })
  it("judged sets the ladder and the status seen", () => {
    const ladder = { step: 2, lastActionAt: 9_000, progressAt: 1_000 }
    expect(I.judged({ ...running, status: "busy" }, ladder, { ...seen, acting: true })).toEqual({ ...running, status: "stuck", ladder })
  })
})

describe("Instances: restarts and credentials", () => {
  it("one restart at a time", () => {
    const claimed = I.restartClaimed(running)
    expect(claimed).toEqual({ ...running, restarting: true })
    expect(I.restartClaimed(claimed!)).toBeUndefined()
    expect(I.restartReleased(claimed!)).toEqual(running)
  })

  it("a restart requeues what was in flight and starts its clocks and ladder over", () => {
    const busy: I.Instance = { ...running, status: "stuck", inFlight: ["a"], outbox: ["b"], restarts: 1, ladder: { step: 3, lastActionAt: 5, progressAt: 5 } }
    expect(I.restartBegun(busy, [10_000], 10_000)).toEqual({
      ...busy, status: "starting", ready: false, outbox: ["a", "b"], inFlight: [], restarts: 2, restartHistory: [10_000],
      lastEventAt: 10_000, progressAt: 10_000, ladder: Supervisor.initialLadder(10_000)
    })
  })

  it("a launch records its generation and credential", () => {
    expect(I.relaunched(start, 4, "key-b", 11_000)).toEqual({ ...start, generation: 4, credential: "key-b", lastEventAt: 11_000 })
  })

  it("re-attached sessions are ready and get back what never reached their pane", () => {
    const unpasted: I.Instance = { ...start, inFlight: ["a"], inFlightPasted: false, outbox: ["b"] }
    expect(I.reattached(unpasted, 12_000)).toEqual({ ...unpasted, ready: true, status: "idle", lastEventAt: 12_000, outbox: ["a", "b"], inFlight: [], inFlightPasted: true })
    const pasted: I.Instance = { ...start, inFlight: ["a"], inFlightPasted: true, outbox: ["b"] }
    expect(I.reattached(pasted, 12_000)).toEqual({ ...pasted, ready: true, status: "idle", lastEventAt: 12_000 })
    expect(I.inFlightRequeued(pasted)).toEqual({ ...pasted, outbox: ["a", "b"], inFlight: [], inFlightPasted: true })
  })

  it("credential states: stopped, rate-limited, reset", () => {
    expect(I.stopped(running).status).toBe("stopped")
    expect(I.rateLimited(running).status).toBe("rate-limited")
    expect(I.limitReset({ ...running, status: "rate-limited" }).status).toBe("idle")
  })

  it("an unconfirmed API error turns only that generation's rate-limited status into an error", () => {
    const limited: I.Instance = { ...running, status: "rate-limited" }
    expect(I.errorUnconfirmed(limited, 2)).toEqual({ ...limited, status: "error" })
    expect(I.errorUnconfirmed(limited, 1)).toBe(limited)
    const busy: I.Instance = { ...running, status: "busy" }
    expect(I.errorUnconfirmed(busy, 2)).toBe(busy)
  })
})
