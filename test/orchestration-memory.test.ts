// Whole orchestrations in memory (TmuxTest, in-memory Events, scripted agents, TestClock): the run's logic end
// to end — hierarchy, merges, conflicts, rotation, crash and stuck recovery, deadline and cost limit — in well
// under a second each, with no tmux and no agent processes.
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import { filesOn } from "./harness.js"
import { memoryRun } from "./memory/MemoryRun.js"
import { team } from "./memory/team.js"

const summaryOf = <A, E>(exit: Exit.Exit<A, E>): A => {
  if (Exit.isFailure(exit)) throw new Error(`the run failed: ${JSON.stringify(exit.cause)}`)
  return exit.value
}

describe("in-memory orchestration", () => {
  it.scoped("W=2: one EM, two workers, to the end", () =>
    Effect.gen(function*() {
      const run = yield* memoryRun({ workerCount: 2 }, team())
      const summary = summaryOf(run.exit)
      console.log(run.realMs, run.virtualMs)
      expect(summary.reason).toBe("project-done")
      expect(summary.merges.map((m) => m.from.split("/").at(-1)).sort()).toEqual(["worker-1", "worker-2"])
      expect(filesOn(run.fixture.bare, "main")).toEqual(expect.arrayContaining(["src/em-1/worker-1.js", "src/em-1/worker-2.js"]))
    }), 30_000)
})
