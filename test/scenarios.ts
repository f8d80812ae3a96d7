// Whole-run scenarios shared by the fake-agent and the real-claude suites: the same steps and the same checks,
// run with either executable. (Apart from harness.ts, which the benchmarks import outside vitest.)
import { expect } from "@effect/vitest"
import { Effect } from "effect"
import { execFileSync } from "node:child_process"
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
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
export const orchestratorKilledThenResumed = (claudePath: string, extra: Readonly<Record<string, unknown>>, onFixture?: (fixture: Fixture) => void) =>
  Effect.gen(function*() {
    const mock = yield* startMockModel({ brain: teamScript(), latencyMs: 400 })
    const fixture = yield* useFixture({ workerCount: 2, mockUrl: mock.url, extra: { ...extra, idleAfterSeconds: 2 } })
    onFixture?.(fixture)
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
    return { fixture, log }
  })

/** The merge-gate scenario's project check: fails (exit 3) while a file under src/ holds the line "// BROKEN". */
export const GATE_CHECK = `if grep -rn '^// BROKEN$' src; then echo "FAIL: broken code"; exit 3; fi; echo "all good"`

/** Whether GATE_CHECK passes on `commit` of the bare repository (in a throwaway clone). */
export const gateCheckPasses = (bare: string, commit: string) => {
  const dir = mkdtempSync(path.join(tmpdir(), "cco-gate-verify-"))
  try {
    execFileSync("git", ["clone", "--quiet", "--no-checkout", bare, dir])
    execFileSync("git", ["-C", dir, "checkout", "--quiet", "--detach", commit])
    execFileSync("sh", ["-c", GATE_CHECK], { cwd: dir, stdio: "ignore" })
    return true
  } catch {
    return false
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/**
 * The merge gate in a whole run: worker-1's first change fails the project's check, so em-1's merge is refused
 * with the check's output; em-1 sends it back, worker-1 fixes it and the fix lands. Every commit main pointed at
 * in the origin passes the check (its reflog, pushes included); the broken commit is in its history only.
 */
export const failingChangeRefusedThenFixed = (claudePath: string) =>
  Effect.gen(function*() {
    const mock = yield* startMockModel({ brain: teamScript({ brokenFirst: ["worker-1"] }) })
    const fixture = yield* useFixture({ workerCount: 2, mockUrl: mock.url, extra: { checkCommand: GATE_CHECK, checkTimeoutMinutes: 2 } })
    git(fixture.bare, "config", "core.logAllRefUpdates", "always")
    const summary = yield* runFixture(fixture, claudePath)
    expect(summary.reason).toBe("project-done")
    const log = readLog(summary.runFolder)

    // Refused with the exit code and the check's own lines (retried once first); worker-1 was told.
    const refusal = log.find((l) => l.event === "team.reply" && l.command === "merge" && l.ok === false)
    expect(String(refusal?.text)).toMatch(/^refused: the check \(.*\) failed on worker-1's work merged into main: exit code 3, and again on the retry\. main is unchanged/)
    expect(String(refusal?.text)).toContain("src/em-1/worker-1.js:4:// BROKEN")
    expect(String(refusal?.text)).toContain("FAIL: broken code")
    expect(log.filter((l) => l.event === "check.failed").map((l) => [l.exitCode, l.attempt])).toEqual([[3, 1], [3, 2]])
    // Sent back as a fix; the fix landed.
    expect(log.some((l) => l.event === "task.assigned" && l.instance === "worker-1" && String(l.text).startsWith("fix:"))).toBe(true)
    expect(summary.merges.map((m) => m.from.split("/").at(-1)).sort()).toEqual(["worker-1", "worker-2"])
    const file = fileOn(fixture.bare, "main", "src/em-1/worker-1.js")
    expect(file).toContain("written by worker-1")
    expect(file).not.toContain("BROKEN")

    const tips = git(fixture.bare, "reflog", "show", "--format=%H", "refs/heads/main").split("\n").filter((l) => l !== "")
    expect(tips.length).toBeGreaterThan(2)
    for (const tip of tips) expect(gateCheckPasses(fixture.bare, tip), tip).toBe(true)
    const history = git(fixture.bare, "rev-list", "main").split("\n").filter((l) => l !== "")
    expect(history.some((c) => !gateCheckPasses(fixture.bare, c))).toBe(true)

    // Counted: the two failures and the passing checks, in the summary and in state.json.
    expect(summary.checks.failed).toBe(2)
    expect(summary.checks.passed).toBeGreaterThanOrEqual(2)
    const state = JSON.parse(readFileSync(path.join(summary.runFolder, "state.json"), "utf8")) as { checks?: unknown }
    expect(state.checks).toEqual(summary.checks)
  })
