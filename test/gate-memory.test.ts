// The merge gate (checkCommand) in whole in-memory orchestrations: a worker's change that fails the check is refused
// with the check's output and never reaches the target branch, its fix lands after the lead sends it back, and
// merges into one branch are checked one at a time on the merged result.
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Ref } from "effect"
import { execFileSync } from "node:child_process"
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { filesOn, git } from "./harness.js"
import { isAlive } from "../src/Process.js"
import { memoryRun } from "./memory/MemoryRun.js"
import { team } from "./memory/team.js"

const summaryOf = <A, E>(exit: Exit.Exit<A, E>): A => {
  if (Exit.isFailure(exit)) throw new Error(`the run failed: ${JSON.stringify(exit.cause)}`)
  return exit.value
}

// Fails on any tracked file holding the line "// BROKEN"; prints what it found, as a test runner would.
const CHECK = `echo "checking $(git rev-parse --short HEAD)"; if grep -rn '^// BROKEN' src; then echo "FAIL: broken code"; exit 3; fi; echo ok`

/** Whether CHECK passes on `commit` of the bare repository (in a throwaway worktree-less checkout). */
const checkPasses = (bare: string, commit: string) => {
  const dir = mkdtempSync(path.join(tmpdir(), "cco-gate-verify-"))
  try {
    execFileSync("git", ["clone", "--quiet", "--no-checkout", bare, dir])
    execFileSync("git", ["-C", dir, "checkout", "--quiet", "--detach", commit])
    execFileSync("sh", ["-c", CHECK], { cwd: dir, stdio: "ignore" })
    return true
  } catch {
    return false
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/** Every commit the target branch pointed at: cco merges with --no-ff, so its first-parent line since the start. */
const targetTips = (bare: string, branch: string) => git(bare, "rev-list", "--first-parent", branch).split("\n").filter((c) => c !== "")

describe("merge gate (in memory)", () => {
  it.scoped("a change that fails the check is refused with its output, never reaches the target, and its fix lands", () =>
    Effect.gen(function*() {
      const run = yield* memoryRun({ workerCount: 2, extra: { checkCommand: CHECK } }, team({ breakFirst: ["worker-1"] }))
      const summary = summaryOf(run.exit)
      expect(summary.reason).toBe("project-done")
      // Refused with the exit code and the check's own output; worker-1 was told and fixed it on its next task.
      const replies = run.events("team.reply").filter((l) => l.command === "merge" && l.instance === "em-1")
      const refusal = replies.find((l) => l.ok === false)
      expect(String(refusal?.text)).toMatch(/^refused: the check .* failed on worker-1's work merged into .*exit code 3/)
      expect(String(refusal?.text)).toContain("FAIL: broken code")
      expect(run.events("check.failed").length).toBe(2) // the first failure is retried once
      expect(run.events("check.failed").every((l) => l.exitCode === 3 && typeof l.durationMs === "number")).toBe(true)
      expect(run.events("task.assigned").some((l) => l.instance === "worker-1" && String(l.text).startsWith("fix:"))).toBe(true)
      expect(summary.merges.map((m) => m.from.split("/").at(-1)).sort()).toEqual(["worker-1", "worker-2"])
      expect(filesOn(run.fixture.bare, "main")).toEqual(expect.arrayContaining(["src/em-1/worker-1.js", "src/em-1/worker-2.js"]))
      // The broken commit is in the history (the fix builds on it) but the target branch never pointed at it.
      const tips = targetTips(run.fixture.bare, "main")
      expect(tips.length).toBeGreaterThan(2)
      for (const commit of tips) expect(checkPasses(run.fixture.bare, commit), commit).toBe(true)
      expect(git(run.fixture.bare, "log", "--format=%H", "main").split("\n").filter((c) => c !== "" && !checkPasses(run.fixture.bare, c)).length).toBeGreaterThan(0)
      // Counted in the summary and in state.json (cco status).
      expect(summary.checks.failed).toBe(2)
      expect(summary.checks.passed).toBeGreaterThanOrEqual(2)
      expect(summary.checks.runs).toBe(summary.checks.passed + summary.checks.failed)
      expect(run.events("run.finished")[0]?.checks).toEqual(summary.checks)
      // Nothing of the scratch worktrees is left registered.
      const worktrees = git(path.join(summary.runFolder, "repo"), "worktree", "list", "--porcelain")
      expect(worktrees).not.toContain("/scratch/")
    }), 60_000)

  it.scoped("two merges into the target at once are checked one at a time, each on the merged result, and both land", () =>
    Effect.gen(function*() {
      const slow = `sleep 0.3; ${CHECK}`
      const run = yield* memoryRun({ workerCount: 4, groupSize: 2, extra: { checkCommand: slow } }, team({ parallelMerges: true }))
      const summary = summaryOf(run.exit)
      expect(summary.reason).toBe("project-done")
      const intoMain = (l: Record<string, unknown>) => l.into === "main"
      const started = run.events("check.started").filter(intoMain)
      const passed = run.events("check.passed").filter(intoMain)
      expect(started.map((l) => l.from).sort()).toEqual(["em-1", "em-2"])
      expect(run.events("merge.queued").filter(intoMain).length).toBe(1)
      // One at a time: the second check starts after the first passed.
      const [first, second] = started
      const firstPassed = passed.find((l) => l.from === first!.from)!
      expect(Date.parse(String(second!.time))).toBeGreaterThanOrEqual(Date.parse(String(firstPassed.time)))
      // The second was checked on the first's result: its commit holds both teams' files.
      const secondCommit = String(passed.find((l) => l.from === second!.from)!.commit)
      const files = git(run.fixture.bare, "ls-tree", "-r", "--name-only", secondCommit)
      expect(files).toContain("src/em-1/")
      expect(files).toContain("src/em-2/")
      expect(summary.merges.filter((m) => m.into === "main").map((m) => m.from.split("/").at(-1)).sort()).toEqual(["em-1", "em-2"])
      const tips = targetTips(run.fixture.bare, "main")
      for (const commit of tips) expect(checkPasses(run.fixture.bare, commit), commit).toBe(true)
    }), 60_000)

  it.scoped("a check longer than the command may wait is answered as a [cco] message once it is through", () =>
    Effect.gen(function*() {
      const run = yield* memoryRun({ workerCount: 2, answerWaitMs: 100, extra: { checkCommand: `sleep 2; ${CHECK}` } }, team())
      const summary = summaryOf(run.exit)
      expect(summary.reason).toBe("project-done")
      const replies = run.events("team.reply").filter((l) => l.command === "merge" && l.instance === "em-1")
      expect(replies.filter((l) => l.late !== true).map((l) => String(l.text))).toEqual([
        expect.stringMatching(/^worker-\d's merge into main is being checked \(checkCommand\); cco sends you the result as a \[cco\] message/),
        expect.stringMatching(/^worker-\d's merge into main waits in the merge queue behind 1 other merge \(checkCommand\)/)
      ])
      expect(replies.filter((l) => l.late === true).map((l) => String(l.text))).toEqual([
        expect.stringMatching(/^merged worker-\d into main \(\w+\); the check .* passed/),
        expect.stringMatching(/^merged worker-\d into main \(\w+\); the check .* passed after \d+ s in the merge queue/)
      ])
      expect(summary.merges.map((m) => m.from.split("/").at(-1)).sort()).toEqual(["worker-1", "worker-2"])
      // The results reached em-1 as [cco] messages: pasted as prompts, or (a result that came as the run ended:
      // nothing is pasted during the wind-down) still waiting in its outbox in state.json, or taken for a paste
      // the wind-down stopped (in flight, not pasted: a resume sends it again).
      const prompts = (yield* Ref.get(run.control.prompts)).filter((p) => p.instance === "em-1").map((p) => p.text)
      const state = JSON.parse(readFileSync(path.join(summary.runFolder, "state.json"), "utf8")) as {
        readonly instances: ReadonlyArray<{ readonly name: string; readonly outbox?: ReadonlyArray<string>; readonly inFlight?: ReadonlyArray<string>; readonly inFlightPasted?: boolean }>
      }
      const em1 = state.instances.find((i) => i.name === "em-1")
      const waiting = [...(em1?.outbox ?? []), ...(em1?.inFlightPasted === false ? em1.inFlight ?? [] : [])]
      // (Two messages that arrive while em-1 is busy reach it as one prompt.)
      const results = [...prompts, ...waiting].flatMap((t) => [...t.matchAll(/\[cco\] The result of your cco team merge (worker-\d): merged \1 into main/g)].map((m) => m[1]))
      expect(results.sort()).toEqual(["worker-1", "worker-2"])
    }), 60_000)

  it.scoped("a conflict found in the scratch worktree is left in the lead's worktree; its resolution is checked before it lands", () =>
    Effect.gen(function*() {
      const run = yield* memoryRun({ workerCount: 2, extra: { checkCommand: CHECK } }, team({ conflictDrill: true }))
      const summary = summaryOf(run.exit)
      expect(summary.reason).toBe("project-done")
      expect(run.events("merge.conflict").map((l) => l.files)).toEqual([["src/em-1/shared.js"]])
      const conflicted = String(run.events("merge.conflict")[0]!.from)
      // The resolution the lead committed was checked: a passing check of that merge precedes its merge.done.
      const checkedAt = run.log.findIndex((l) => l.event === "check.passed" && l.from === conflicted)
      const mergedAt = run.log.findIndex((l) => l.event === "merge.done" && l.from === conflicted)
      expect(checkedAt).toBeGreaterThan(run.log.indexOf(run.events("merge.conflict")[0]!))
      expect(checkedAt).toBeLessThan(mergedAt)
      expect(summary.merges.map((m) => m.from.split("/").at(-1)).sort()).toEqual(["worker-1", "worker-2"])
    }), 60_000)

  it.scoped("at the time limit, reported work moves up only where the merged result passes the check", () =>
    Effect.gen(function*() {
      const run = yield* memoryRun(
        { workerCount: 2, maxRunDurationMinutes: 5, extra: { checkCommand: CHECK } },
        team({ idleLeads: ["em-1"], breakFirst: ["worker-1"] })
      )
      const summary = summaryOf(run.exit)
      expect(summary.reason).toBe("time-limit")
      const skipped = run.events("merge.skipped")
      expect(skipped.map((l) => l.from)).toEqual(["worker-1"])
      expect(String((skipped[0]!.problems as Array<string>)[0])).toMatch(/^the check failed: exit code 3/)
      expect(summary.merges.map((m) => m.from.split("/").at(-1))).toEqual(["worker-2"])
      expect(filesOn(run.fixture.bare, "main")).toContain("src/em-1/worker-2.js")
      expect(filesOn(run.fixture.bare, "main")).not.toContain("src/em-1/worker-1.js")
      for (const commit of targetTips(run.fixture.bare, "main")) expect(checkPasses(run.fixture.bare, commit), commit).toBe(true)
    }), 60_000)

  it.scoped("without checkCommand nothing is checked", () =>
    Effect.gen(function*() {
      const run = yield* memoryRun({ workerCount: 2 }, team({ breakFirst: ["worker-1"] }))
      const summary = summaryOf(run.exit)
      expect(summary.reason).toBe("project-done")
      expect(run.events("check.started")).toEqual([])
      expect(summary.checks).toEqual({ runs: 0, passed: 0, failed: 0, totalMs: 0 })
      // The broken change lands: what the gate is for.
      expect(targetTips(run.fixture.bare, "main").some((c) => !checkPasses(run.fixture.bare, c))).toBe(true)
    }), 60_000)

  it.scoped("setupCommand runs in every worktree before any instance starts, with the instance's CCO_PORT", () =>
    Effect.gen(function*() {
      const run = yield* memoryRun({ workerCount: 2, extra: { setupCommand: `echo "set up on $CCO_PORT"; test -e .git || exit 9` } }, team())
      const summary = summaryOf(run.exit)
      expect(summary.reason).toBe("project-done")
      expect(run.events("setup.done").map((l) => l.instance).sort()).toEqual(["em-1", "worker-1", "worker-2"])
      expect(readFileSync(path.join(summary.runFolder, "setup-worker-1.log"), "utf8")).toBe("set up on 20210\n")
      const firstLaunch = run.log.findIndex((l) => l.event === "instance.launched")
      const lastSetup = run.log.map((l) => l.event).lastIndexOf("setup.done")
      expect(lastSetup).toBeGreaterThan(-1)
      expect(lastSetup).toBeLessThan(firstLaunch)
    }), 60_000)

  it.scoped("a failing setupCommand ends the start-up with the command, the instance and its log named; nothing starts", () =>
    Effect.gen(function*() {
      const run = yield* memoryRun({ workerCount: 2, extra: { setupCommand: "echo installing; echo 'npm ERR! broken' >&2; exit 4" } }, team())
      expect(Exit.isFailure(run.exit)).toBe(true)
      const error = JSON.stringify(run.exit)
      expect(error).toMatch(/setupCommand \(echo installing; .*\) failed in (em-1|worker-\d)'s worktree .*: exit code 4; its output is in .*setup-(em-1|worker-\d)\.log/)
      const log = /its output is in ([^"\\]+\.log)/.exec(error)![1]!
      expect(readFileSync(log, "utf8")).toBe("installing\nnpm ERR! broken\n")
      expect(run.events("instance.launched")).toEqual([])
      expect(run.events("setup.failed").length).toBeGreaterThan(0)
    }), 60_000)

  it.scoped("a setupCommand that outlives checkTimeoutMinutes is stopped, its background processes too, and the run fails", () =>
    Effect.gen(function*() {
      const pids = mkdtempSync(path.join(tmpdir(), "cco-setup-pids-"))
      const setup = `sleep 120 & echo $! > ${pids}/$(basename "$PWD").pid; sleep 120`
      const run = yield* memoryRun({ workerCount: 1, extra: { setupCommand: setup, checkTimeoutMinutes: 0.05 } }, team())
      expect(Exit.isFailure(run.exit)).toBe(true)
      expect(JSON.stringify(run.exit)).toMatch(/setupCommand .* failed in em-1's worktree .*: timed out after 3 seconds; its output is in .*setup-em-1\.log/)
      yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 300)))
      const file = path.join(pids, "em-1.pid")
      expect(existsSync(file)).toBe(true)
      expect(isAlive(Number(readFileSync(file, "utf8").trim()))).toBe(false)
      expect(run.events("instance.launched")).toEqual([])
      rmSync(pids, { recursive: true, force: true })
    }), 60_000)
})
