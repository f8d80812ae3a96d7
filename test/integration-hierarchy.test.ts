// Whole runs with the fake agent (fast): both topologies, a merge conflict resolved by the EM,
// and a worker whose report without commits is refused.
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { execFileSync, spawnSync } from "node:child_process"
import { readFileSync, writeFileSync } from "node:fs"
import * as path from "node:path"
import { startMockModel } from "../src/MockModel.js"
import { teamScript } from "../src/TeamScript.js"
import { fakeClaudeBin, fileOn, filesOn, git, useFixture, runFixture } from "./harness.js"

const logOf = (runFolder: string) =>
  readFileSync(path.join(runFolder, "combined.log"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>)

describe("hierarchy with the fake agent", () => {
  it.scopedLive("W=2: a conflict between two workers is resolved by the EM and lands; a report without commits is refused", () =>
    Effect.gen(function*() {
      const mock = yield* startMockModel({ brain: teamScript({ conflictDrill: true, lazyWorkers: ["worker-2"] }) })
      const fixture = yield* useFixture({ workerCount: 2, mockUrl: mock.url })
      // The user's local env file (the repository is remote here, so it sits in the config directory).
      writeFileSync(path.join(fixture.configDir, ".env"), "DATABASE_URL=postgres://local\n")
      const summary = yield* runFixture(fixture, fakeClaudeBin)
      expect(summary.reason).toBe("project-done")
      const log = logOf(summary.runFolder)

      // worker-2 reported before committing anything: refused, told why, and not merged then.
      const refused = log.find((l) => l.event === "task.done-refused" && l.instance === "worker-2")
      expect(refused?.reason).toMatch(/no new commits/)
      const firstMerge2 = log.findIndex((l) => l.event === "merge.done" && l.from === "worker-2")
      expect(log.indexOf(refused!)).toBeLessThan(firstMerge2)

      // Both wrote src/em-1/shared.js: the second merge conflicted, the EM resolved it, cco verified it.
      expect(log.some((l) => l.event === "merge.conflict" && (l.files as Array<string>).includes("src/em-1/shared.js"))).toBe(true)
      const shared = fileOn(fixture.bare, "main", "src/em-1/shared.js")
      expect(shared).toContain("written by worker-1")
      expect(shared).toContain("written by worker-2")
      expect(shared).not.toMatch(/^(<<<<<<<|=======|>>>>>>>)/m)

      // Every worker's commit is reachable from the target branch in the bare repository.
      for (const w of ["worker-1", "worker-2"]) {
        const commit = git(fixture.bare, "log", "--format=%H", "-n", "1", `cco/${summary.runId}/${w}`)
        expect(git(fixture.bare, "merge-base", "--is-ancestor", commit, "main") === "").toBe(true)
      }
      const team = fileOn(fixture.bare, "main", "TEAM_STRUCTURE.md")
      for (const name of ["em-1", "worker-1", "worker-2"]) expect(team).toContain(`| ${name} |`)

      // .env reached every worktree, and no commit took it (the workers ran `git add -A`).
      for (const name of ["em-1", "worker-1", "worker-2"]) {
        expect(readFileSync(path.join(summary.runFolder, "worktrees", name, ".env"), "utf8")).toContain("DATABASE_URL")
      }
      expect(filesOn(fixture.bare, "main")).not.toContain(".env")
      expect(filesOn(fixture.bare, `cco/${summary.runId}/worker-1`)).not.toContain(".env")
    }), { timeout: 120_000 })

  it.scopedLive("W=2: a lead that commits a conflict with its markers is refused; the target branch never holds them", () =>
    Effect.gen(function*() {
      const mock = yield* startMockModel({ brain: teamScript({ conflictDrill: true, markerLeads: ["em-1"] }) })
      const fixture = yield* useFixture({ workerCount: 2, mockUrl: mock.url })
      // Every state main ever had in the origin, pushes included.
      git(fixture.bare, "config", "core.logAllRefUpdates", "always")
      const summary = yield* runFixture(fixture, fakeClaudeBin)
      expect(summary.reason).toBe("project-done")
      const log = logOf(summary.runFolder)

      // em-1 committed the merge with the markers in (git add -A && git commit --no-edit): refused, told which file.
      // (The second of the two workers to be merged conflicts; which one that is depends on who reported first.)
      const refused = log.find((l) => l.event === "merge.refused")
      expect(refused?.problems).toEqual([expect.stringMatching(/^conflict markers .* committed in src\/em-1\/shared\.js:/)])
      const reply = log.find((l) => l.event === "team.reply" && l.command === "merge" && l.ok === false && /conflict markers/.test(String(l.text)))
      expect(reply?.text).toMatch(/^refused: your branch main brings conflict markers .* committed in src\/em-1\/shared\.js: edit them .* Nothing was pushed\. Then run cco team merge worker-\d again\.$/)
      // It fixed them and merged again; the work of both workers landed.
      const merged = log.findIndex((l) => l.event === "merge.done" && l.from === refused?.from)
      expect(log.indexOf(refused!)).toBeLessThan(merged)
      const shared = fileOn(fixture.bare, "main", "src/em-1/shared.js")
      expect(shared).toContain("written by worker-1")
      expect(shared).toContain("written by worker-2")

      // No state main ever had in the origin holds a conflict marker.
      const tips = git(fixture.bare, "reflog", "show", "--format=%H", "refs/heads/main").split("\n").filter((l) => l !== "")
      expect(tips.length).toBeGreaterThan(2)
      for (const tip of tips) {
        const grep = spawnSync("git", ["grep", "-l", "-e", "^<<<<<<< ", tip, "--"], { cwd: fixture.bare, encoding: "utf8" })
        expect(grep.status, `main at ${tip}: ${grep.stdout}${grep.stderr}`).toBe(1)
      }
    }), { timeout: 120_000 })

  it.scopedLive("W=2: a worker whose commit rewrites TEAM_STRUCTURE.md is refused at done; only cco's version ever reaches the target", () =>
    Effect.gen(function*() {
      const mock = yield* startMockModel({ brain: teamScript({ rogueWorkers: ["worker-1"] }) })
      const fixture = yield* useFixture({ workerCount: 2, mockUrl: mock.url })
      git(fixture.bare, "config", "core.logAllRefUpdates", "always")
      const summary = yield* runFixture(fixture, fakeClaudeBin)
      expect(summary.reason).toBe("project-done")
      const log = logOf(summary.runFolder)
      const refused = log.find((l) => l.event === "task.done-refused" && l.instance === "worker-1")
      expect(refused?.reason).toMatch(/brings a change to TEAM_STRUCTURE\.md, which only cco writes: undo it/)
      expect(log.some((l) => l.event === "merge.done" && l.from === "worker-1")).toBe(true)
      expect(filesOn(fixture.bare, "main")).toContain("src/em-1/worker-1.js")
      const tips = git(fixture.bare, "reflog", "show", "--format=%H", "refs/heads/main").split("\n").filter((l) => l !== "")
      for (const tip of tips) {
        const team = spawnSync("git", ["show", `${tip}:TEAM_STRUCTURE.md`], { cwd: fixture.bare, encoding: "utf8" })
        expect(team.stdout, `main at ${tip}`).not.toContain("in charge")
      }
    }), { timeout: 120_000 })

  it.scopedLive("W=6: a Director and two EMs of three; every worker's commit reaches the target branch", () =>
    Effect.gen(function*() {
      const mock = yield* startMockModel({ brain: teamScript() })
      const fixture = yield* useFixture({ workerCount: 6, mockUrl: mock.url })
      const summary = yield* runFixture(fixture, fakeClaudeBin)
      expect(summary.reason).toBe("project-done")
      expect(summary.instances.map((i) => i.name)).toEqual(["director", "em-1", "em-2", ...[1, 2, 3, 4, 5, 6].map((n) => `worker-${n}`)])
      const files = filesOn(fixture.bare, "main")
      for (const [em, ws] of [["em-1", [1, 2, 3]], ["em-2", [4, 5, 6]]] as const) {
        for (const w of ws) expect(files).toContain(`src/${em}/worker-${w}.js`)
      }
      for (let w = 1; w <= 6; w++) {
        const commit = git(fixture.bare, "log", "--format=%H", "-n", "1", `cco/${summary.runId}/worker-${w}`)
        expect(git(fixture.bare, "merge-base", "--is-ancestor", commit, "main")).toBe("")
      }
      expect(summary.merges.filter((m) => m.into === "main").map((m) => m.from).sort()).toEqual([`cco/${summary.runId}/em-1`, `cco/${summary.runId}/em-2`])
    }), { timeout: 120_000 })

  it.scopedLive("refuses to start without PROJECT_DIRECTION.md, saying how to write one, and starts no session", () =>
    Effect.gen(function*() {
      const mock = yield* startMockModel({ brain: teamScript() })
      const fixture = yield* useFixture({ workerCount: 1, mockUrl: mock.url, direction: undefined })
      const error = yield* Effect.flip(runFixture(fixture, fakeClaudeBin))
      expect(error._tag).toBe("RunError")
      expect(error.message).toMatch(/PROJECT_DIRECTION\.md is missing.*Add one at the repository root/)
      const sessions = (() => {
        try {
          return execFileSync("tmux", ["-L", fixture.socket, "ls"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] })
        } catch {
          return "" // no server: nothing was started
        }
      })()
      expect(sessions).toBe("")
    }), { timeout: 60_000 })
})
