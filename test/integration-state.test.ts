// What cco owes its instances survives races and crashes, with the fake agent: concurrent assigns to one report,
// state.json kept current, the outbox carried over a kill -9 of the orchestrator, and the reminder after a Stop
// with work pending.
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { readFileSync } from "node:fs"
import * as path from "node:path"
import { type Brain, type MockReply, type MockRequest } from "../src/MockBrain.js"
import { startMockModel } from "../src/MockModel.js"
import { teamScript } from "../src/TeamScript.js"
import { ccoRun, fakeClaudeBin, latestRun, readLog, runFixture, useFixture } from "./harness.js"
import { waitFor } from "./support.js"

const isFrom = (req: MockRequest, name: string) => JSON.stringify(req.messages).includes(`You are ${name},`)
const commandOf = (reply: MockReply) =>
  reply._tag === "ToolUse" ? String((reply.tools[0]!.input as { command?: string }).command ?? "") : undefined
const withCommand = (reply: MockReply, command: string): MockReply =>
  reply._tag === "ToolUse" ? { ...reply, tools: [{ name: "Bash", input: { command, description: "Run a command" } }] } : reply

interface SavedInstance {
  readonly name: string
  readonly status: string
  readonly outbox?: ReadonlyArray<string>
}
const stateOf = (folder: string): ReadonlyArray<SavedInstance> | undefined => {
  try {
    return (JSON.parse(readFileSync(path.join(folder, "state.json"), "utf8")) as { instances: ReadonlyArray<SavedInstance> }).instances
  } catch {
    return undefined
  }
}

// Slow supervision and cost polls: nothing but the change itself writes state.json, and no idle nudge helps.
const calm = { healthCheckIntervalSeconds: 10, stuckAfterSeconds: 120, idleAfterSeconds: 60, escalationIntervalSeconds: 60 }

describe("run state with the fake agent", () => {
  it.scopedLive("four concurrent assigns to one report: exactly one is accepted, the others are told it is still working", () =>
    Effect.gen(function*() {
      const script = teamScript()
      let burst = false
      // Once worker-1's first task is merged, em-1 assigns it four tasks at once instead of reporting done.
      const brain: Brain = (req) => {
        const reply = script(req)
        if (burst || !isFrom(req, "em-1") || !/cco team done/.test(commandOf(reply) ?? "")) return reply
        burst = true
        const assigns = ["a", "b", "c", "d"].map((t) => `cco team assign worker-1 'Create \`src/em-1/extra-${t}.js\`, check it, commit and report done.' &`)
        return withCommand(reply, `${assigns.join(" ")} wait`)
      }
      const mock = yield* startMockModel({ brain })
      const fixture = yield* useFixture({ workerCount: 1, mockUrl: mock.url, extra: calm })
      const summary = yield* runFixture(fixture, fakeClaudeBin)
      expect(summary.reason).toBe("project-done")
      expect(burst).toBe(true)
      const replies = readLog(summary.runFolder).filter((l) => l.event === "team.reply" && l.command === "assign")
      expect(replies.length).toBe(5)
      expect(replies.filter((r) => r.ok === true).map((r) => r.text)).toEqual(["assigned task #1 to worker-1", "assigned task #2 to worker-1"])
      const refused = replies.filter((r) => r.ok !== true).map((r) => r.text)
      expect(refused).toEqual(Array.from({ length: 3 }, () => "refused: worker-1 is still working on task #2; wait for its report"))
      expect(readLog(summary.runFolder).filter((l) => l.event === "task.assigned").length).toBe(2)
    }), { timeout: 120_000 })

  it.scopedLive("a worker reporting twice at once and its lead merging twice at once: one report reaches the lead, one merge is recorded", () =>
    Effect.gen(function*() {
      const script = teamScript()
      const doubled = { done: false, merge: false }
      // Each of worker-1's done and em-1's merge runs twice in parallel.
      const brain: Brain = (req) => {
        const reply = script(req)
        const command = commandOf(reply)
        if (command === undefined) return reply
        // The team command at the end of the command line runs twice at once: `{ X & X & wait; }`.
        const twice = (kind: "done" | "merge", pattern: RegExp) => {
          doubled[kind] = true
          return withCommand(reply, command.replace(pattern, (c: string) => `{ ${c} & ${c} & wait; }`))
        }
        if (!doubled.done && isFrom(req, "worker-1") && /cco team done '[^']*'$/.test(command)) return twice("done", /cco team done '[^']*'$/)
        if (!doubled.merge && isFrom(req, "em-1") && /^cco team merge worker-1$/.test(command.trim())) return twice("merge", /cco team merge worker-1$/)
        return reply
      }
      const mock = yield* startMockModel({ brain })
      const fixture = yield* useFixture({ workerCount: 1, mockUrl: mock.url, extra: calm })
      const summary = yield* runFixture(fixture, fakeClaudeBin)
      expect(summary.reason).toBe("project-done")
      expect(doubled).toEqual({ done: true, merge: true })
      const log = readLog(summary.runFolder)
      expect(log.filter((l) => l.event === "task.done" && l.instance === "worker-1").length).toBe(1)
      const merged = log.filter((l) => l.event === "merge.done" && l.from === "worker-1")
      expect(merged.length).toBe(1)
      expect(summary.merges.filter((m) => m.from.endsWith("/worker-1")).length).toBe(1)
    }), { timeout: 120_000 })

  it.scopedLive("kill -9 right after a report is accepted: state.json held it, and after --resume the lead hears of it at once", () =>
    Effect.gen(function*() {
      const script = teamScript()
      const toLead: Array<{ readonly at: number; readonly report: boolean }> = []
      let slowed = false
      // em-1 stays busy a while after assigning (a long command), so worker-1's report waits in its outbox.
      const brain: Brain = (req) => {
        const reply = script(req)
        if (!isFrom(req, "em-1")) return reply
        toLead.push({ at: Date.now(), report: JSON.stringify(req.messages).includes("[cco] worker-1 reports done") })
        const command = commandOf(reply)
        if (slowed || command === undefined || !command.includes("cco team assign worker-1")) return reply
        slowed = true
        return withCommand(reply, `${command}; sleep 12`)
      }
      const mock = yield* startMockModel({ brain })
      const fixture = yield* useFixture({ workerCount: 1, mockUrl: mock.url, extra: calm })
      const first = ccoRun(fixture.configDir, fakeClaudeBin)
      yield* Effect.addFinalizer(() => Effect.sync(() => first.child.exitCode === null && first.child.kill("SIGKILL")))
      const folder = latestRun(fixture)

      // The worker's turn ends after its accepted report: its status "done" reaches state.json within the debounce.
      const stop = yield* waitFor("worker-1's Stop after its report", Effect.sync(() => {
        const log = readLog(folder)
        const done = log.findIndex((l) => l.event === "task.done" && l.instance === "worker-1")
        return done < 0 ? undefined : log.slice(done).find((l) => l.hook === "Stop" && l.instance === "worker-1")
      }), 60_000, 20)
      const saved = yield* waitFor("state.json to show it", Effect.sync(() => {
        const s = stateOf(folder)
        const worker = s?.find((i) => i.name === "worker-1")
        const lead = s?.find((i) => i.name === "em-1")
        return worker?.status === "done" && lead?.outbox?.some((m) => m.includes("[cco] worker-1 reports done")) === true ? Date.now() : undefined
      }), 5_000, 20)
      expect(saved - Date.parse(String(stop.time))).toBeLessThan(2_000)
      // The lead was busy all along: the report had not reached it.
      expect(toLead.some((r) => r.report)).toBe(false)

      process.kill(Number(readFileSync(path.join(folder, "cco.lock"), "utf8").trim()), "SIGKILL")
      yield* Effect.promise(() => first.exited)

      const resumedAt = Date.now()
      const second = ccoRun(fixture.configDir, fakeClaudeBin, ["--resume"])
      yield* Effect.addFinalizer(() => Effect.sync(() => second.child.exitCode === null && second.child.kill("SIGKILL")))
      const heard = yield* waitFor("em-1 to receive worker-1's report", Effect.sync(() => toLead.find((r) => r.report)?.at), 40_000, 50)
      // Well before any idle nudge (60 s): it was delivered from the saved outbox.
      expect(heard - resumedAt).toBeLessThan(25_000)
      const code = yield* Effect.promise(() => second.exited)
      expect(code, second.output()).toBe(0)
      const log = readLog(folder)
      expect(log.some((l) => l.event === "instance.attached" && l.instance === "em-1")).toBe(true)
      // The attached lead's hooks reach the resumed orchestrator, which listens on a new hook port.
      expect(log.some((l) => l.instance === "em-1" && l.hook === "UserPromptSubmit" && Date.parse(String(l.time)) > resumedAt)).toBe(true)
      expect(log.at(-1)).toMatchObject({ event: "run.finished", reason: "project-done" })
      expect(log.filter((l) => l.event === "supervisor.nudge")).toEqual([])
    }), { timeout: 150_000 })

  it.scopedLive("a worker floods its busy lead with cco team message: the outbox keeps the newest, with a notice, and the report still lands", () =>
    Effect.gen(function*() {
      const script = teamScript()
      const toLead: Array<string> = []
      let slowed = false
      let flooded = false
      const brain: Brain = (req) => {
        const reply = script(req)
        const command = commandOf(reply)
        if (isFrom(req, "em-1")) {
          toLead.push(JSON.stringify(req.messages))
          if (slowed || command === undefined || !command.includes("cco team assign worker-1")) return reply
          slowed = true
          return withCommand(reply, `${command}; sleep 20`)
        }
        if (flooded || command === undefined || !command.includes("cco team done")) return reply
        flooded = true
        // 30 notes of 3,900 characters (each under the 4,000 a message may have) before the report: more than the outbox keeps by size, so the oldest give way before the count of waiting messages refuses any.
        return withCommand(reply, `for i in $(seq 1 30); do cco team message em-1 "note $i $(printf '%3900s' | tr ' ' n)" >/dev/null; done; ${command}`)
      }
      const mock = yield* startMockModel({ brain })
      const fixture = yield* useFixture({ workerCount: 1, mockUrl: mock.url, extra: calm })
      const summary = yield* runFixture(fixture, fakeClaudeBin)
      expect(summary.reason).toBe("project-done")
      expect(flooded).toBe(true)
      const log = readLog(summary.runFolder)
      const trimmed = log.filter((l) => l.event === "outbox.trimmed" && l.instance === "em-1")
      expect(trimmed.length).toBeGreaterThan(0)
      expect(trimmed.every((l) => Number(l.waiting) <= 20)).toBe(true)
      // What em-1 was handed after its long command: the notice, the newest notes, and the report.
      const batch = toLead.find((m) => m.includes("[cco] worker-1 reports done"))!
      expect(batch).toMatch(/\[cco\] \d+ older messages to you were dropped/)
      expect(batch).toContain("note 30 ")
      expect(batch).not.toContain("note 1 ")
      expect(batch.length).toBeLessThan(80_000)
    }), { timeout: 120_000 })

  it.scopedLive("a lead that ends its turn with a report waiting is reminded within seconds, once, naming the report", () =>
    Effect.gen(function*() {
      const script = teamScript({ idleLeads: ["em-1"] })
      const toLead: Array<string> = []
      const brain: Brain = (req) => {
        if (isFrom(req, "em-1")) toLead.push(JSON.stringify(req.messages))
        return script(req)
      }
      const mock = yield* startMockModel({ brain })
      const fixture = yield* useFixture({ workerCount: 1, mockUrl: mock.url, extra: calm })
      const run = yield* Effect.fork(runFixture(fixture, fakeClaudeBin))
      const folder = latestRun(fixture)
      // em-1 takes the report in, notes it, and ends its turn without merging.
      const stop = yield* waitFor("em-1's Stop after taking the report in", Effect.sync(() => {
        const log = readLog(folder)
        const done = log.findIndex((l) => l.event === "task.done" && l.instance === "worker-1")
        const delivered = log.findIndex((l, i) => done >= 0 && i > done && l.event === "prompt.delivered" && l.instance === "em-1")
        return delivered < 0 ? undefined : log.slice(delivered).find((l) => l.hook === "Stop" && l.instance === "em-1")
      }), 60_000, 20)
      const reminder = yield* waitFor("the reminder", Effect.sync(() => readLog(folder).find((l) => l.event === "supervisor.reminder" && l.instance === "em-1")), 15_000, 50)
      const after = Date.parse(String(reminder.time)) - Date.parse(String(stop.time))
      expect(after).toBeGreaterThanOrEqual(4_500)
      expect(after).toBeLessThan(9_000)
      expect(reminder.reason).toBe("ended its turn with worker-1 reported done and wait for cco team merge")
      // The reminder's turn ends without work: no second reminder (the ladder takes over after idleAfter).
      yield* waitFor("em-1's turn after the reminder", Effect.sync(() => {
        const log = readLog(folder)
        return log.slice(log.indexOf(log.find((l) => l.event === "supervisor.reminder")!)).some((l) => l.hook === "Stop" && l.instance === "em-1") ? true : undefined
      }), 15_000, 50)
      expect(toLead.at(-1)).toContain("[cco] You ended your turn, but worker-1 reported done and wait for cco team merge.")
      yield* Effect.sleep("8 seconds")
      expect(readLog(folder).filter((l) => l.event === "supervisor.reminder").length).toBe(1)
      expect(readLog(folder).filter((l) => l.event === "supervisor.nudge")).toEqual([])
      yield* Fiber.interrupt(run)
    }), { timeout: 120_000 })
})
