// What cco owes its instances survives races and crashes, with the fake agent: concurrent assigns to one report.
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { type Brain, type MockReply, type MockRequest, startMockModel } from "../src/MockModel.js"
import { teamScript } from "../src/TeamScript.js"
import { fakeClaudeBin, readLog, runFixture, useFixture } from "./harness.js"

const isFrom = (req: MockRequest, name: string) => JSON.stringify(req.messages).includes(`You are ${name},`)
const commandOf = (reply: MockReply) =>
  reply._tag === "ToolUse" ? String((reply.tools[0]!.input as { command?: string }).command ?? "") : undefined
const withCommand = (reply: MockReply, command: string): MockReply =>
  reply._tag === "ToolUse" ? { ...reply, tools: [{ name: "Bash", input: { command, description: "Run a command" } }] } : reply

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
})
