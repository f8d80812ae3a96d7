// The supervisor with the real `claude` against the mock model: a CLI killed with SIGKILL mid-task is
// restarted with --continue and finishes its task; a CLI whose tool hangs is nudged, interrupted and restarted,
// and the hanging tool does not outlive it.
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { existsSync, readdirSync, readFileSync } from "node:fs"
import * as path from "node:path"
import { type MockRequest, startMockModel } from "../src/MockModel.js"
import { hangCommand, teamScript } from "../src/TeamScript.js"
import { claudeBin, fileOn, filesOn, latestRun, makeFixture, panePid, readLog, runFixture } from "./harness.js"
import { waitFor } from "./support.js"

const fast = { healthCheckIntervalSeconds: 1, stuckAfterSeconds: 4, idleAfterSeconds: 6, escalationIntervalSeconds: 3 }

/** Live `sleep 601` processes started by an instance of the run under `root` (its control socket is there). */
const hanging = (root: string): Array<number> =>
  readdirSync("/proc").filter((name) => /^\d+$/.test(name)).filter((pid) => {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter((s) => s !== "").join(" ")
      return cmd === hangCommand && readFileSync(`/proc/${pid}/environ`, "utf8").includes(`CCO_SOCKET=${root}/`)
    } catch {
      return false
    }
  }).map(Number)

describe.skipIf(process.platform !== "linux")("real claude under the supervisor", () => {
  it.scopedLive("kill -9 of the CLI mid-task: restarted with --continue, the conversation goes on, the work lands", () =>
    Effect.gen(function*() {
      const brain = teamScript()
      const seen: Array<MockRequest> = []
      const mock = yield* startMockModel({ brain: (req) => (seen.push(req), brain(req)), latencyMs: 500 })
      const fixture = makeFixture({ workerCount: 1, mockUrl: mock.url, extra: fast })
      yield* Effect.addFinalizer(() => Effect.sync(fixture.cleanup))
      const run = yield* Effect.fork(runFixture(fixture, claudeBin))
      // The worker has written its file (its first tool call) and not committed it yet.
      const log = yield* waitFor("worker-1's first tool call", Effect.sync(() => {
        if (!existsSync(latestRun(fixture))) return undefined
        const lines = readLog(latestRun(fixture))
        return lines.some((l) => l.instance === "worker-1" && l.hook === "PostToolUse") ? lines : undefined
      }), 90_000, 20)
      const runId = String(log[0]!.runId)
      const pid = panePid(fixture, `cco-${runId}-worker-1`)
      // The pane's process is the CLI itself (the launcher execs it).
      expect(readFileSync(`/proc/${pid}/cmdline`, "utf8")).toMatch(/claude/)
      process.kill(pid, "SIGKILL")

      const summary = yield* Fiber.join(run)
      expect(summary.reason).toBe("project-done")
      const after = readLog(summary.runFolder)
      expect(after.some((l) => l.event === "instance.restarting" && l.instance === "worker-1" && String(l.reason).startsWith("crashed"))).toBe(true)
      expect(after.some((l) => l.event === "instance.launched" && l.instance === "worker-1" && l.resume === true)).toBe(true)
      expect(summary.instances.find((i) => i.name === "worker-1")?.restarts).toBe(1)
      // --continue restored the conversation: the worker's request after the restart still carried its task.
      const resumed = seen.filter((r) => r.messages.some((m) => JSON.stringify(m).includes("cco restarted you")))
      expect(resumed.length).toBeGreaterThan(0)
      expect(JSON.stringify(resumed[0]!.messages)).toContain("src/em-1/worker-1.js")
      expect(fileOn(fixture.bare, "main", "src/em-1/worker-1.js")).toContain("written by worker-1")
    }), { timeout: 300_000 })

  it.scopedLive("a hung tool: nudged, interrupted, restarted; the hanging process ends with it and the work lands", () =>
    Effect.gen(function*() {
      const mock = yield* startMockModel({ brain: teamScript({ hangUntilRestart: ["worker-1"] }) })
      const fixture = makeFixture({ workerCount: 1, mockUrl: mock.url, extra: fast })
      yield* Effect.addFinalizer(() => Effect.sync(fixture.cleanup))
      yield* Effect.addFinalizer(() => Effect.sync(() => hanging(fixture.root).forEach((pid) => process.kill(pid, "SIGKILL"))))
      const summary = yield* runFixture(fixture, claudeBin)
      expect(summary.reason).toBe("project-done")
      expect(hanging(fixture.root)).toEqual([])
      const steps = readLog(summary.runFolder)
        .filter((l) => l.instance === "worker-1" && ["supervisor.nudge", "supervisor.interrupt", "instance.restarting"].includes(String(l.event)))
        .map((l) => String(l.event))
      expect(steps.slice(0, 3)).toEqual(["supervisor.nudge", "supervisor.interrupt", "instance.restarting"])
      expect(filesOn(fixture.bare, "main")).toContain("src/em-1/worker-1.js")
    }), { timeout: 300_000 })
})
