import { describe, expect, it } from "@effect/vitest"
import * as H from "../src/Hierarchy.js"

describe("topology", () => {
  it("has no Director when W ≤ G, one EM leading everyone", () => {
    expect(H.topology(2, 4)).toEqual({ director: false, teams: [{ em: "em-1", workers: ["worker-1", "worker-2"] }] })
    expect(H.topology(4, 4).director).toBe(false)
    expect(H.topology(1, 1)).toEqual({ director: false, teams: [{ em: "em-1", workers: ["worker-1"] }] })
  })

  it("spreads workers evenly when W > G (10, 4 → 4, 3, 3)", () => {
    const t = H.topology(10, 4)
    expect(t.director).toBe(true)
    expect(t.teams.map((x) => x.workers.length)).toEqual([4, 3, 3])
    expect(t.teams[1]!.workers).toEqual(["worker-5", "worker-6", "worker-7"])
    expect(H.topology(5, 4).teams.map((x) => x.workers.length)).toEqual([3, 2])
    expect(H.topology(20, 4).teams.length).toBe(5)
  })

  it("holds its invariants over the whole range W 1–20 × G 1–20", () => {
    for (let w = 1; w <= 20; w++) {
      for (let g = 1; g <= 20; g++) {
        const t = H.topology(w, g)
        const sizes = t.teams.map((x) => x.workers.length)
        const all = t.teams.flatMap((x) => x.workers)
        expect(all).toEqual(Array.from({ length: w }, (_, i) => `worker-${i + 1}`))
        expect(Math.max(...sizes)).toBeLessThanOrEqual(g)
        expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1)
        expect(t.director).toBe(w > g)
        expect(t.teams.length).toBe(w > g ? Math.ceil(w / g) : 1)
      }
    }
  })

  it("rejects nonsense", () => {
    expect(() => H.topology(0, 4)).toThrow(RangeError)
    expect(() => H.topology(3, 0)).toThrow(RangeError)
  })
})

describe("instances and branches", () => {
  const branches = { target: "run/2026-11-25-10-00", prefix: "cco/r1" }

  it("Director mode: Director on target, EMs on team branches, workers from their team branch", () => {
    const specs = H.instances(H.topology(5, 4), branches)
    expect(specs.map((s) => s.name)).toEqual(["director", "em-1", "em-2", "worker-1", "worker-2", "worker-3", "worker-4", "worker-5"])
    const by = Object.fromEntries(specs.map((s) => [s.name, s]))
    expect(by.director).toMatchObject({ branch: branches.target, reports: ["em-1", "em-2"], lead: undefined })
    expect(by["em-2"]).toMatchObject({ branch: "cco/r1/em-2", baseBranch: branches.target, lead: "director", reports: ["worker-4", "worker-5"] })
    expect(by["worker-4"]).toMatchObject({ branch: "cco/r1/worker-4", baseBranch: "cco/r1/em-2", lead: "em-2" })
  })

  it("single-EM mode: the EM works on the target branch", () => {
    const specs = H.instances(H.topology(2, 4), branches)
    expect(specs.map((s) => s.name)).toEqual(["em-1", "worker-1", "worker-2"])
    expect(specs[0]).toMatchObject({ branch: branches.target, lead: undefined, baseBranch: undefined })
    expect(specs[1]).toMatchObject({ baseBranch: branches.target, lead: "em-1" })
  })
})

describe("message scope", () => {
  const specs = H.instances(H.topology(5, 2), { target: "main", prefix: "cco/r1" })
  const scope = (name: string) => H.messageable(specs.find((s) => s.name === name)!, specs)

  it("an instance may message its lead, its reports and its siblings, nobody else", () => {
    // director → em-1 (worker-1, worker-2), em-2 (worker-3, worker-4), em-3 (worker-5)
    expect(scope("director")).toEqual(["em-1", "em-2", "em-3"])
    expect(scope("em-2")).toEqual(["director", "worker-3", "worker-4", "em-1", "em-3"])
    expect(scope("worker-1")).toEqual(["em-1", "worker-2"])
    expect(scope("worker-5")).toEqual(["em-3"])
  })

  it("without a Director the EM reaches its workers, and workers their EM and each other", () => {
    const single = H.instances(H.topology(2, 4), { target: "main", prefix: "cco/r1" })
    expect(H.messageable(single[0]!, single)).toEqual(["worker-1", "worker-2"])
    expect(H.messageable(single[2]!, single)).toEqual(["em-1", "worker-1"])
  })
})

describe("message and done refusals", () => {
  const specs = H.instances(H.topology(4, 2), { target: "main", prefix: "cco/r1" })
  const spec = (name: string) => specs.find((s) => s.name === name)!

  it("a message goes to the team only, is short, and waits behind at most a few others", () => {
    expect(H.messageRefusal(spec("worker-1"), "em-1", "hi", specs, 0)).toBeUndefined()
    expect(H.messageRefusal(spec("worker-1"), "worker-3", "hi", specs, 0)).toBe("worker-1 can message only its lead, reports and siblings: em-1, worker-2")
    expect(H.messageRefusal(spec("worker-1"), "worker-2", "x".repeat(H.MAX_MESSAGE_CHARS + 1), specs, 0)).toMatch(/at most 4000 characters \(this one has 4001\)/)
    expect(H.messageRefusal(spec("em-1"), "director", "hi", specs, H.MAX_WAITING_MESSAGES)).toBe("director has 20 messages waiting; send yours once it has read them")
    expect(H.messageRefusal(spec("em-1"), "director", "hi", specs, H.MAX_WAITING_MESSAGES - 1)).toBeUndefined()
  })

  it("only the top may report done without a task", () => {
    const board = H.assign(H.emptyBoard, "worker-1", "em-1", "write a.js", "t0")
    expect(H.doneRefusal(spec("worker-1"), board)).toBeUndefined()
    expect(H.doneRefusal(spec("worker-2"), board)).toBe("worker-2 has no task to report on; wait for one from em-1")
    expect(H.doneRefusal(spec("director"), H.emptyBoard)).toBeUndefined()
  })
})

describe("board and TEAM_STRUCTURE.md", () => {
  it("tracks the current task per instance and renders every instance", () => {
    const specs = H.instances(H.topology(2, 4), { target: "main", prefix: "cco/r1" })
    let b = H.assign(H.emptyBoard, "worker-1", "em-1", "Write the parser | fast", "t1")
    b = H.assign(b, "worker-2", "em-1", "Write the printer", "t1")
    b = H.markDone(b, "worker-1", "parser written", "t2")
    b = H.markMerged(b, "worker-1", "t3")
    expect(H.currentTask(b, "worker-1")).toMatchObject({ status: "merged", summary: "parser written" })
    expect(H.currentTask(b, "worker-2")?.status).toBe("assigned")
    const md = H.renderTeamStructure(specs, b, { runId: "r1", target: "main" })
    for (const s of specs) expect(md).toContain(`| ${s.name} |`)
    expect(md).toContain("Write the parser \\| fast")
    expect(md).toContain("| worker-2 | Worker | — | em-1 | `cco/r1/worker-2` | assigned |")
  })

  it("TEAM_STRUCTURE.md shows agents' task texts and summaries as neutral one-line cells", () => {
    const specs = H.instances(H.topology(1, 4), { target: "main", prefix: "cco/r1" })
    let b = H.assign(H.emptyBoard, "worker-1", "em-1", "\u001b]0;pwned\u0007Write\u001b[2J the parser\r| forged | row |\u202e", "t1")
    b = H.markDone(b, "worker-1", "ok\u009b31m done\u0007", "t2")
    const md = H.renderTeamStructure(specs, b, { runId: "r1", target: "main" })
    // eslint-disable-next-line no-control-regex
    expect(md).not.toMatch(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]|\p{Cf}/u)
    expect(md).toContain("| Write the parser |")
    expect(md).toContain("| ok done |")
    expect(md).not.toContain("forged")
  })

  it("pendingWork: what a worker, an EM or the top still owes, naming reports that have no task", () => {
    const specs = H.instances(H.topology(6, 3), { target: "main", prefix: "cco/r" })
    const spec = (name: string) => specs.find((s) => s.name === name)!
    const now = "2026-11-26T00:00:00.000Z"
    let b = H.emptyBoard
    expect(H.pendingWork(spec("director"), b)).toBe("the project is not reported done and em-1, em-2 have no task yet")
    expect(H.pendingWork(spec("worker-1"), b)).toBeUndefined()
    b = H.assign(b, "em-1", "director", "goal 1", now)
    b = H.assign(b, "em-2", "director", "goal 2", now)
    expect(H.pendingWork(spec("director"), b)).toBeUndefined() // its EMs are working
    // An assignment cut short: worker-3 never got its task.
    b = H.assign(b, "worker-1", "em-1", "task a", now)
    b = H.assign(b, "worker-2", "em-1", "task b", now)
    expect(H.pendingWork(spec("em-1"), b)).toBeUndefined()
    // What a restart notice to em-1 names, even while others work.
    expect(H.reportsWithoutTask(spec("em-1"), b)).toEqual(["worker-3"])
    expect(H.noTaskYet(H.reportsWithoutTask(spec("em-1"), b))).toBe("worker-3 has no task yet")
    expect(H.noTaskYet(H.reportsWithoutTask(spec("em-2"), b))).toBe("worker-4, worker-5, worker-6 have no task yet")
    expect(H.noTaskYet(H.reportsWithoutTask(spec("worker-1"), b))).toBeUndefined()
    expect(H.pendingWork(spec("worker-1"), b)).toBe(`task #${H.currentTask(b, "worker-1")!.id} is not reported done`)
    b = H.markDone(b, "worker-1", "done a", now)
    expect(H.pendingWork(spec("em-1"), b)).toBe("worker-1 reported done and wait for cco team merge")
    b = H.markMerged(H.markDone(H.markMerged(b, "worker-1", now), "worker-2", "done b", now), "worker-2", now)
    const goal = H.currentTask(b, "em-1")!.id
    expect(H.pendingWork(spec("em-1"), b)).toBe(`your goal (task #${goal}) is not reported done and worker-3 has no task yet`)
  })

  it("workAfterStop: what owes, and also the reports a lead left without a task while others work", () => {
    const specs = H.instances(H.topology(6, 3), { target: "main", prefix: "cco/r" })
    const spec = (name: string) => specs.find((s) => s.name === name)!
    const now = "2026-11-26T00:00:00.000Z"
    let b = H.assign(H.assign(H.emptyBoard, "em-1", "director", "goal 1", now), "em-2", "director", "goal 2", now)
    b = H.assign(b, "worker-1", "em-1", "task a", now)
    // worker-1 works, worker-2 and worker-3 have nothing: the idle ladder leaves em-1 alone, the reminder names them.
    expect(H.pendingWork(spec("em-1"), b)).toBeUndefined()
    expect(H.workAfterStop(spec("em-1"), b)).toBe("worker-2, worker-3 have no task yet")
    expect(H.workAfterStop(spec("director"), b)).toBeUndefined()
    b = H.markDone(b, "worker-1", "done a", now)
    expect(H.workAfterStop(spec("em-1"), b)).toBe("worker-1 reported done and wait for cco team merge")
    expect(H.workAfterStop(spec("worker-1"), b)).toBeUndefined()
    expect(H.workAfterStop(spec("worker-4"), b)).toBeUndefined()
    // A lead that reported its own goal done owes nothing more.
    b = H.markDone(H.markMerged(b, "worker-1", now), "em-1", "goal done", now)
    expect(H.workAfterStop(spec("em-1"), b)).toBeUndefined()
  })
})

