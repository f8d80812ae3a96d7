// The merge gate (checkCommand) in a whole run with the fake agent: a worker's change that fails the project's
// check is refused with the check's output, the target branch never points at a failing commit, and the fix the
// lead asks for lands.
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { execFileSync } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { startMockModel } from "../src/MockModel.js"
import { teamScript } from "../src/TeamScript.js"
import { fakeClaudeBin, fileOn, git, readLog, runFixture, useFixture } from "./harness.js"

// The project's check: fails (exit 3) while any file under src/ holds the line "// BROKEN", and says where.
const CHECK = `if grep -rn '^// BROKEN$' src; then echo "FAIL: broken code"; exit 3; fi; echo "all good"`

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

describe("merge gate with the fake agent", () => {
  it.scopedLive("a worker's failing change is refused with the check's output, its fix lands, main never fails the check", () =>
    Effect.gen(function*() {
      const mock = yield* startMockModel({ brain: teamScript({ brokenFirst: ["worker-1"] }) })
      const fixture = yield* useFixture({ workerCount: 2, mockUrl: mock.url, extra: { checkCommand: CHECK, checkTimeoutMinutes: 2 } })
      // Every state main ever had in the origin, pushes included.
      git(fixture.bare, "config", "core.logAllRefUpdates", "always")
      const summary = yield* runFixture(fixture, fakeClaudeBin)
      expect(summary.reason).toBe("project-done")
      const log = readLog(summary.runFolder)

      // em-1's merge of worker-1 was refused with the exit code and the check's own lines; worker-1 was told.
      const refusal = log.find((l) => l.event === "team.reply" && l.command === "merge" && l.ok === false)
      expect(String(refusal?.text)).toMatch(/^refused: the check \(.*\) failed on worker-1's work merged into main: exit code 3, and again on the retry\. main is unchanged/)
      expect(String(refusal?.text)).toContain("src/em-1/worker-1.js:4:// BROKEN")
      expect(String(refusal?.text)).toContain("FAIL: broken code")
      expect(log.filter((l) => l.event === "check.failed").map((l) => [l.exitCode, l.attempt])).toEqual([[3, 1], [3, 2]])
      // The lead sent it back as a fix; worker-1 fixed it and its fix landed.
      expect(log.some((l) => l.event === "task.assigned" && l.instance === "worker-1" && String(l.text).startsWith("fix:"))).toBe(true)
      expect(summary.merges.map((m) => m.from.split("/").at(-1)).sort()).toEqual(["worker-1", "worker-2"])
      const file = fileOn(fixture.bare, "main", "src/em-1/worker-1.js")
      expect(file).toContain("written by worker-1")
      expect(file).not.toContain("BROKEN")

      // Every commit main pointed at in the origin passes the check; the broken one is in its history only.
      const tips = git(fixture.bare, "reflog", "show", "--format=%H", "refs/heads/main").split("\n").filter((l) => l !== "")
      expect(tips.length).toBeGreaterThan(2)
      for (const tip of tips) expect(checkPasses(fixture.bare, tip), tip).toBe(true)
      const history = git(fixture.bare, "rev-list", "main").split("\n").filter((l) => l !== "")
      expect(history.some((c) => !checkPasses(fixture.bare, c))).toBe(true)

      // Counted: two failures (the retry) and the passing checks, in the summary and in state.json.
      expect(summary.checks.failed).toBe(2)
      expect(summary.checks.passed).toBeGreaterThanOrEqual(2)
      const state = JSON.parse(readFileSync(path.join(summary.runFolder, "state.json"), "utf8")) as { checks?: unknown }
      expect(state.checks).toEqual(summary.checks)
    }), { timeout: 180_000 })
})
