// The supervisor with the real `claude` against the mock model: a CLI killed with SIGKILL mid-task is
// restarted with --continue and finishes its task; a CLI whose tool hangs is nudged, interrupted and restarted,
// and the hanging tool does not outlive it.
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { type MockRequest } from "../src/MockBrain.js"
import { startMockModel } from "../src/MockModel.js"
import { teamScript } from "../src/TeamScript.js"
import { claudeBin, useFixture, runFixture } from "./harness.js"
import { expectCrashRecovered, hungWorkerRecovers, killWorkerAfterFirstTool, orchestratorKilledThenResumed } from "./scenarios.js"

const fast = { healthCheckIntervalSeconds: 1, stuckAfterSeconds: 4, idleAfterSeconds: 6, escalationIntervalSeconds: 3 }

describe.skipIf(process.platform !== "linux")("real claude under the supervisor", () => {
  it.scopedLive("kill -9 of the CLI mid-task: restarted with --continue, the conversation goes on, the work lands", () =>
    Effect.gen(function*() {
      const brain = teamScript()
      const seen: Array<MockRequest> = []
      const mock = yield* startMockModel({ brain: (req) => (seen.push(req), brain(req)), latencyMs: 500 })
      const fixture = yield* useFixture({ workerCount: 1, mockUrl: mock.url, extra: fast })
      const run = yield* Effect.fork(runFixture(fixture, claudeBin))
      const killed = yield* killWorkerAfterFirstTool(fixture)
      // The pane's process was the CLI itself (the launcher execs it), so the CLI is what died.
      expect(killed.command).toMatch(/claude/)
      const summary = yield* Fiber.join(run)
      expectCrashRecovered(fixture, summary)
      // --continue restored the conversation: the worker's request after the restart still carried its task.
      const resumed = seen.filter((r) => r.messages.some((m) => JSON.stringify(m).includes("cco restarted you")))
      expect(resumed.length).toBeGreaterThan(0)
      expect(JSON.stringify(resumed[0]!.messages)).toContain("src/em-1/worker-1.js")
    }), { timeout: 300_000 })

  it.scopedLive("kill -9 of the orchestrator, then cco run --resume: the live CLIs are re-attached and the run completes", () =>
    orchestratorKilledThenResumed(claudeBin, fast), { timeout: 300_000 })

  it.scopedLive("a hung tool: nudged, interrupted, restarted; the hanging process ends with it and the work lands", () => hungWorkerRecovers(claudeBin, fast), { timeout: 300_000 })
})
