// Whole-run scenarios shared by the fake-agent and the real-claude suites: the same steps and the same checks,
// run with either executable. (Apart from harness.ts, which the benchmarks import outside vitest.)
import { expect } from "@effect/vitest"
import { Effect } from "effect"
import { existsSync, readFileSync, writeFileSync } from "node:fs"
import * as path from "node:path"
import { startMockModel } from "../src/MockModel.js"
import type * as Orchestrator from "../src/Orchestrator.js"
import { hangCommand, teamScript } from "../src/TeamScript.js"
import { ccoRun, fileOn, filesOn, type Fixture, git, latestRun, panePid, readLog, runFixture, useFixture } from "./harness.js"
import { endLeftovers, leftovers, waitFor } from "./support.js"

/**
 * Waits until worker-1 has made its first tool call (its file is written, not yet committed), then kills the
 * program in its pane with SIGKILL, as if in the middle of a commit: git's index.lock is left behind in its
 * worktree. Returns its pid and command line (Linux).
 */
export const killWorkerAfterFirstTool = (fixture: Fixture) =>
  Effect.gen(function*() {
    const log = yield* waitFor("worker-1's first tool call", Effect.sync(() => {
      const lines = readLog(latestRun(fixture))
      return lines.some((l) => l.instance === "worker-1" && l.hook === "PostToolUse") ? lines : undefined
    }), 90_000, 20)
    expect(existsSync(path.join(latestRun(fixture), "worktrees", "worker-1", "src/em-1/worker-1.js"))).toBe(true)
    const pid = panePid(fixture, `cco-${String(log[0]!.runId)}-worker-1`)
    const command = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ")
    const worktree = path.join(latestRun(fixture), "worktrees", "worker-1")
    writeFileSync(path.join(git(worktree, "rev-parse", "--path-format=absolute", "--git-dir"), "index.lock"), "")
    process.kill(pid, "SIGKILL")
    return { pid, command }
  })

/**
 * What a crash of worker-1 must leave once the run is over: one restart with --continue, the stale git lock
 * removed (or the worker could not commit), and its file on main.
 */
export const expectCrashRecovered = (fixture: Fixture, summary: Orchestrator.RunSummary) => {
  expect(summary.reason).toBe("project-done")
  const log = readLog(summary.runFolder)
  expect(log.some((l) => l.event === "instance.restarting" && l.instance === "worker-1" && String(l.reason).startsWith("crashed"))).toBe(true)
  expect(log.some((l) => l.event === "instance.launched" && l.instance === "worker-1" && l.resume === true)).toBe(true)
  expect(summary.instances.find((i) => i.name === "worker-1")?.restarts).toBe(1)
  expect(log.filter((l) => l.event === "worktree.lock-removed").map((l) => l.instance)).toEqual(["worker-1"])
  // The file written before the crash survived the restart and landed.
  expect(fileOn(fixture.bare, "main", "src/em-1/worker-1.js")).toContain("written by worker-1")
}

/**
 * One worker whose tool hangs until cco restarts it, run to the end with the given CLI: the stuck ladder runs in
 * order (nudge, interrupt, restart), the hanging process does not outlive the instance, and the work lands.
 */
export const hungWorkerRecovers = (claudePath: string, extra: Readonly<Record<string, unknown>>) =>
  Effect.gen(function*() {
    const mock = yield* startMockModel({ brain: teamScript({ hangUntilRestart: ["worker-1"] }) })
    const fixture = yield* useFixture({ workerCount: 1, mockUrl: mock.url, extra })
    yield* endLeftovers(fixture.root, hangCommand)
    const summary = yield* runFixture(fixture, claudePath)
    expect(summary.reason).toBe("project-done")
    // The hanging command did not outlive the instance that ran it (nor the restart, nor the run).
    expect(leftovers(fixture.root, hangCommand)).toEqual([])
    const steps = readLog(summary.runFolder)
      .filter((l) => l.instance === "worker-1" && ["supervisor.nudge", "supervisor.interrupt", "instance.restarting"].includes(String(l.event)))
      .map((l) => String(l.event))
    // The ladder in order; after the restart the supervisor may still nudge an idle worker along.
    expect(steps.slice(0, 3)).toEqual(["supervisor.nudge", "supervisor.interrupt", "instance.restarting"])
    expect(filesOn(fixture.bare, "main")).toContain("src/em-1/worker-1.js")
  })

/**
 * Two workers busy, then the orchestrator is killed with SIGKILL and `cco run --resume` takes over: the live
 * sessions are re-attached and the run completes with both workers' files on main.
 */
export const orchestratorKilledThenResumed = (claudePath: string, extra: Readonly<Record<string, unknown>>) =>
  Effect.gen(function*() {
    const mock = yield* startMockModel({ brain: teamScript(), latencyMs: 400 })
    const fixture = yield* useFixture({ workerCount: 2, mockUrl: mock.url, extra: { ...extra, idleAfterSeconds: 2 } })
    const first = ccoRun(fixture.configDir, claudePath)
    yield* Effect.addFinalizer(() => Effect.sync(() => first.child.exitCode === null && first.child.kill("SIGKILL")))
    yield* waitFor("both workers busy", Effect.sync(() => {
      const busy = new Set(readLog(latestRun(fixture)).filter((l) => l.hook === "UserPromptSubmit").map((l) => l.instance))
      return busy.has("worker-1") && busy.has("worker-2") ? true : undefined
    }), 90_000, 20)
    // The orchestrator itself (bin/cco.js may be a wrapper around it): its pid is in cco.lock.
    const orchestratorPid = Number(readFileSync(path.join(latestRun(fixture), "cco.lock"), "utf8").trim())
    process.kill(orchestratorPid, "SIGKILL")
    yield* Effect.promise(() => first.exited)

    const second = ccoRun(fixture.configDir, claudePath, ["--resume"])
    yield* Effect.addFinalizer(() => Effect.sync(() => second.child.exitCode === null && second.child.kill("SIGKILL")))
    const code = yield* Effect.promise(() => second.exited)
    expect(code, second.output()).toBe(0)
    const log = readLog(latestRun(fixture))
    expect(log.some((l) => l.event === "run.resuming")).toBe(true)
    expect(log.filter((l) => l.event === "instance.attached").length).toBeGreaterThan(0)
    expect(log.at(-1)).toMatchObject({ event: "run.finished", reason: "project-done" })
    const files = filesOn(fixture.bare, "main")
    expect(files).toContain("src/em-1/worker-1.js")
    expect(files).toContain("src/em-1/worker-2.js")
  })
