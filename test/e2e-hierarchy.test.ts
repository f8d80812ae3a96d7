// The real `claude` driven by cco in tmux against the mock model: whole runs in both topologies.
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { readFileSync, writeFileSync } from "node:fs"
import * as path from "node:path"
import { startMockModel } from "../src/MockModel.js"
import { teamScript } from "../src/TeamScript.js"
import { claudeBin, fileOn, filesOn, runFixture, useFixture } from "./harness.js"

describe("real claude, end to end", () => {
  it.scopedLive("W=2: one EM and two workers; every worker's module lands on the target branch", () =>
    Effect.gen(function*() {
      const mock = yield* startMockModel({ brain: teamScript() })
      const fixture = yield* useFixture({ workerCount: 2, mockUrl: mock.url })
      const lines: Array<string> = []
      const summary = yield* runFixture(fixture, claudeBin, (l) => lines.push(`${l.event} ${JSON.stringify(l)}`))
      expect(summary.reason).toBe("project-done")
      const files = filesOn(fixture.bare, "main")
      expect(files).toContain("src/em-1/worker-1.js")
      expect(files).toContain("src/em-1/worker-2.js")
      const team = fileOn(fixture.bare, "main", "TEAM_STRUCTURE.md")
      for (const name of ["em-1", "worker-1", "worker-2"]) expect(team).toContain(`| ${name} |`)
      // The terminal log holds what the worker's pane showed, from the first byte.
      const terminal = readFileSync(path.join(summary.runFolder, "session-worker-1.log"), "utf8")
      expect(terminal).toContain("Claude Code")
      expect(terminal).toContain("src/em-1/worker-1.js")
      // The orchestrator saw the worker's hooks and its done command, in order.
      const events = readFileSync(path.join(summary.runFolder, "combined.log"), "utf8").trim().split("\n")
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .filter((l) => l.instance === "worker-1")
        .map((l) => l.event === "hook" ? `hook:${String(l.hook)}` : String(l.event))
      const order = ["hook:SessionStart", "hook:UserPromptSubmit", "hook:PostToolUse", "task.done", "hook:Stop"]
      const positions = order.map((e) => events.indexOf(e))
      expect(positions.every((p) => p >= 0)).toBe(true)
      expect([...positions].sort((a, b) => a - b)).toEqual(positions)
    }), { timeout: 300_000 })

  it.scopedLive("W=5: a Director and two EMs; team branches merge into a run branch", () =>
    Effect.gen(function*() {
      const mock = yield* startMockModel({ brain: teamScript() })
      const fixture = yield* useFixture({ workerCount: 5, mockUrl: mock.url, useRunBranch: true })
      const summary = yield* runFixture(fixture, claudeBin)
      expect(summary.reason).toBe("project-done")
      expect(summary.targetBranch).toMatch(/^run\/\d{4}-\d{2}-\d{2}-\d{2}-\d{2}$/)
      const files = filesOn(fixture.bare, summary.targetBranch)
      for (const [em, workers] of [["em-1", [1, 2, 3]], ["em-2", [4, 5]]] as const) {
        for (const w of workers) expect(files).toContain(`src/${em}/worker-${w}.js`)
      }
      // main is untouched when the run has its own branch.
      expect(filesOn(fixture.bare, "main")).not.toContain("src/em-1/worker-1.js")
      const team = fileOn(fixture.bare, summary.targetBranch, "TEAM_STRUCTURE.md")
      for (const name of ["director", "em-1", "em-2", "worker-1", "worker-2", "worker-3", "worker-4", "worker-5"]) {
        expect(team).toContain(`| ${name} |`)
      }
      expect(summary.merges.map((m) => m.into)).toContain(summary.targetBranch)
    }), { timeout: 300_000 })

  it.scopedLive("cco stays on the Bash tool's PATH when Claude Code falls back to a login shell (no shell snapshot)", () =>
    Effect.gen(function*() {
      // A shell start-up file that fails: Claude Code cannot snapshot the shell and runs commands in a login shell,
      // whose profile resets PATH (as under heavy load, when the snapshot times out).
      const mock = yield* startMockModel({ brain: teamScript() })
      // Unconfined: a sandbox gives the CLI a private home, where the failing start-up file below would not be.
      const fixture = yield* useFixture({ workerCount: 1, mockUrl: mock.url, maxRunDurationMinutes: 1, extra: { sandbox: "none" } })
      writeFileSync(path.join(fixture.home, ".bashrc"), "exit 1\n")
      const summary = yield* runFixture(fixture, claudeBin)
      expect(summary.reason).toBe("project-done")
      expect(filesOn(fixture.bare, "main")).toContain("src/em-1/worker-1.js")
    }), { timeout: 300_000 })
})
