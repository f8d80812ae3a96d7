// The sandbox with the fake agent: a confined worker that tries to reach beyond its own worktree is stopped at
// every attempt while its own work commits and lands; `sandbox: "bwrap"` without bubblewrap refuses to start.
import { describe, expect, it } from "@effect/vitest"
import { NodeContext } from "@effect/platform-node"
import { Effect } from "effect"
import { spawn, spawnSync } from "node:child_process"
import { existsSync, mkdirSync, symlinkSync } from "node:fs"
import * as path from "node:path"
import { startMockModel } from "../src/MockModel.js"
import * as Sandbox from "../src/Sandbox.js"
import * as Status from "../src/Status.js"
import { teamScript } from "../src/TeamScript.js"
import { fakeClaudeBin, fileOn, git, projectRoot, readLog, runFixture, useFixture } from "./harness.js"

const PATH = process.env.PATH ?? "/usr/bin:/bin"
const probed = await Effect.runPromise(Sandbox.probe(PATH).pipe(Effect.provide(NodeContext.layer)))
// CI installs bubblewrap (.ci/run): there a machine that cannot confine is a failure, not a skip.
const canConfine = probed._tag === "Usable" || process.env.CI !== undefined

const ATTEMPTS = ["write home", "write other worktree", "write run folder", "read other token", "read run state", "move target branch", "write git config"]

describe("sandbox with the fake agent", () => {
  it.scopedLive.skipIf(!canConfine)("a confined worker cannot write home, another worktree or the run folder, nor read a token; its work lands", () =>
    Effect.gen(function*() {
      // The user's home is the fixture's, known once it exists (the script reads it when the worker asks).
      const probe = { worker: "worker-1", other: "worker-2", home: "" }
      const mock = yield* startMockModel({ brain: teamScript({ sandboxProbe: probe }) })
      const fixture = yield* useFixture({ workerCount: 2, mockUrl: mock.url, extra: { sandbox: "bwrap" } })
      probe.home = fixture.home
      const summary = yield* runFixture(fixture, fakeClaudeBin)
      expect(summary.reason).toBe("project-done")
      const folder = summary.runFolder

      // Every attempt failed inside, as the worker saw it, and left nothing outside.
      const report = fileOn(fixture.bare, "main", "sandbox-probe-worker-1.txt").trim().split("\n")
      expect(report).toEqual(ATTEMPTS.map((a) => `${a}: blocked`))
      expect(existsSync(path.join(fixture.home, "escaped-by-worker-1"))).toBe(false)
      expect(existsSync(path.join(folder, "worktrees", "worker-2", "escaped-by-worker-1"))).toBe(false)
      expect(existsSync(path.join(folder, "escaped-by-worker-1"))).toBe(false)
      expect(spawnSync("git", ["-C", path.join(folder, "repo"), "config", "--get-all", "core.fsmonitor"], { encoding: "utf8" }).stdout).toBe("")

      // Its own work committed on its branch and merged into the target branch.
      expect(fileOn(fixture.bare, "main", "src/em-1/worker-1.js")).toContain("written by worker-1")
      const commit = git(fixture.bare, "log", "--format=%H", "-n", "1", `cco/${summary.runId}/worker-1`).trim()
      expect(git(fixture.bare, "merge-base", "--is-ancestor", commit, "main")).toBe("")

      // Every instance ran confined: combined.log, the note status reads, and status itself say so.
      const log = readLog(folder)
      expect(log.find((l) => l.event === "run.sandbox")).toMatchObject({ sandbox: "bwrap", sandboxMode: "bwrap" })
      const launched = log.filter((l) => l.event === "instance.launched")
      expect(launched.map((l) => l.instance).sort()).toEqual(["em-1", "worker-1", "worker-2"])
      for (const l of launched) expect(l.sandbox).toBe("bwrap")
      const snapshot = yield* Status.snapshot(folder).pipe(Effect.provide(NodeContext.layer))
      expect([...(snapshot.sandboxes ?? new Map()).entries()].sort()).toEqual([["em-1", "bwrap"], ["worker-1", "bwrap"], ["worker-2", "bwrap"]])
      const table = Status.renderStatus(snapshot).split("\n")
      const header = table.findIndex((l) => l.startsWith("NAME"))
      expect(table[header]).toContain("SANDBOX")
      // The instance rows: up to the blank line before the next table (credentials).
      const rows = table.slice(header + 1, table.findIndex((l, i) => i > header && l.trim() === "") >>> 0)
      expect(rows).toHaveLength(3)
      for (const row of rows) expect(row).toMatch(/\bbwrap\b/)
      // The private home holds what the instance wrote there; the real one nothing.
      expect(existsSync(path.join(folder, "instances", "worker-1", "home"))).toBe(true)
    }), { timeout: 120_000 })

  it.scopedLive('sandbox "bwrap" on a PATH without bubblewrap: a clear error, exit 2, nothing started', () =>
    Effect.gen(function*() {
      const fixture = yield* useFixture({ workerCount: 1, mockUrl: "http://127.0.0.1:9", extra: { sandbox: "bwrap" } })
      // A PATH with what a run needs (node, git, tmux, sh) but no bwrap.
      const bin = path.join(fixture.root, "bin-without-bwrap")
      mkdirSync(bin)
      for (const tool of ["node", "git", "tmux", "sh", "env"]) {
        const found = spawnSync("sh", ["-c", `command -v ${tool}`], { encoding: "utf8" }).stdout.trim()
        if (found !== "") symlinkSync(found, path.join(bin, tool))
      }
      const child = spawn(process.execPath, [path.join(projectRoot, "bin", "cco.js"), "run", "--config", fixture.configDir], {
        env: { ...process.env, PATH: bin, CCO_CLAUDE_PATH: fakeClaudeBin, HOME: fixture.home },
        stdio: ["ignore", "pipe", "pipe"]
      })
      let output = ""
      child.stdout.on("data", (d) => (output += d))
      child.stderr.on("data", (d) => (output += d))
      const code = yield* Effect.promise(() => new Promise<number | null>((resolve) => child.on("exit", (c) => resolve(c))))
      expect(output).toContain('orchestrator.json: sandbox "bwrap" is required but bubblewrap (bwrap) is not on PATH')
      expect(output).toContain("apt-get install bubblewrap")
      expect(code).toBe(2)
      // Nothing started: no run folder, no tmux server.
      expect(existsSync(path.join(fixture.configDir, "logs"))).toBe(false)
      expect(spawnSync("tmux", ["-L", fixture.socket, "list-sessions"]).status).not.toBe(0)
    }), { timeout: 60_000 })
})
