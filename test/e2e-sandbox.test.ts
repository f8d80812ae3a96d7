// The real `claude` confined by bubblewrap, against the mock model: a worker's commands that reach beyond its
// worktree fail, its own work commits and lands, and the run completes (the fast twin: integration-sandbox).
import { describe, expect, it } from "@effect/vitest"
import { NodeContext } from "@effect/platform-node"
import { Effect } from "effect"
import { spawnSync } from "node:child_process"
import { existsSync } from "node:fs"
import * as path from "node:path"
import { startMockModel } from "../src/MockModel.js"
import * as Sandbox from "../src/Sandbox.js"
import { teamScript } from "../src/TeamScript.js"
import { claudeBin, fileOn, readLog, runFixture, useFixture } from "./harness.js"

const probed = await Effect.runPromise(Sandbox.probe(process.env.PATH ?? "/usr/bin:/bin").pipe(Effect.provide(NodeContext.layer)))
const canConfine = probed._tag === "Usable" || process.env.CI !== undefined

describe("real claude, confined", () => {
  it.scopedLive.skipIf(!canConfine)("W=2 in bwrap: every escape of worker-1 fails, its module lands, the run completes", () =>
    Effect.gen(function*() {
      const probe = { worker: "worker-1", other: "worker-2", home: "" }
      const mock = yield* startMockModel({ brain: teamScript({ sandboxProbe: probe }) })
      const fixture = yield* useFixture({ workerCount: 2, mockUrl: mock.url, extra: { sandbox: "bwrap" } })
      probe.home = fixture.home
      const summary = yield* runFixture(fixture, claudeBin)
      expect(summary.reason).toBe("project-done")
      const folder = summary.runFolder
      expect(fileOn(fixture.bare, "main", "sandbox-probe-worker-1.txt").trim().split("\n")).toEqual([
        "write home: blocked",
        "write other worktree: blocked",
        "write run folder: blocked",
        "read other token: blocked",
        "read run state: blocked",
        "move target branch: blocked",
        "write git config: blocked"
      ])
      expect(existsSync(path.join(fixture.home, "escaped-by-worker-1"))).toBe(false)
      expect(existsSync(path.join(folder, "worktrees", "worker-2", "escaped-by-worker-1"))).toBe(false)
      expect(existsSync(path.join(folder, "escaped-by-worker-1"))).toBe(false)
      expect(spawnSync("git", ["-C", path.join(folder, "repo"), "config", "--get-all", "core.fsmonitor"], { encoding: "utf8" }).stdout).toBe("")
      expect(fileOn(fixture.bare, "main", "src/em-1/worker-1.js")).toContain("written by worker-1")
      expect(fileOn(fixture.bare, "main", "src/em-1/worker-2.js")).toContain("written by worker-2")
      const launched = readLog(folder).filter((l) => l.event === "instance.launched")
      expect(launched.length).toBeGreaterThanOrEqual(3)
      for (const l of launched) expect(l.sandbox).toBe("bwrap")
    }), { timeout: 300_000 })
})
