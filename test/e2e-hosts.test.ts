// The real `claude` on a remote host over SSH against the mock model: an sshd of the test's own on 127.0.0.1 is the
// "remote" host (its own workdir, tmux server and clone); workers on both hosts, the run completes.
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { existsSync, readFileSync } from "node:fs"
import * as path from "node:path"
import { startMockModel } from "../src/MockModel.js"
import { teamScript } from "../src/TeamScript.js"
import { claudeBin, filesOn, readLog, runFixture, useFixture } from "./harness.js"
import { remoteHost, useSshd } from "./sshd.js"
import { killTmuxServer } from "./support.js"

describe("real claude on a remote host", () => {
  it.scopedLive("local + one remote host: the remote worker's hooks and team commands come back over SSH, its module lands", () =>
    Effect.gen(function*() {
      const sshd = yield* useSshd
      const mock = yield* startMockModel({ brain: teamScript() })
      const fixture = yield* useFixture({ workerCount: 2, mockUrl: mock.url, extra: { hosts: [{ name: "local" }, remoteHost(sshd, claudeBin)] } })
      yield* Effect.acquireRelease(Effect.void, () => Effect.sync(() => killTmuxServer(`${fixture.socket}-box`)))
      const summary = yield* runFixture(fixture, claudeBin)
      expect(summary.reason).toBe("project-done")
      const files = filesOn(fixture.bare, "main")
      expect(files).toContain("src/em-1/worker-1.js")
      expect(files).toContain("src/em-1/worker-2.js")
      const log = readLog(summary.runFolder)
      expect(log.find((l) => l.event === "instance.launched" && l.instance === "worker-2")?.attach).toContain(`tmux -L ${fixture.socket}-box `)
      const events = log.filter((l) => l.instance === "worker-2").map((l) => l.event === "hook" ? `hook:${String(l.hook)}` : String(l.event))
      const order = ["hook:SessionStart", "hook:UserPromptSubmit", "hook:PostToolUse", "task.done", "hook:Stop"]
      const positions = order.map((e) => events.indexOf(e))
      expect(positions.every((p) => p >= 0), events.join(" ")).toBe(true)
      // The CLI ran there: its transcript in its config dir under the workdir, its terminal log there too.
      const workdir = path.join(sshd.dir, "box", summary.runId)
      expect(existsSync(path.join(workdir, "instances", "worker-2", "claude", "projects"))).toBe(true)
      expect(readFileSync(path.join(workdir, "session-worker-2.log"), "utf8")).toContain("Claude Code")
      expect(summary.costs.instances.find((i) => i.name === "worker-2")?.usd ?? 0).toBeGreaterThan(0)
    }), { timeout: 300_000 })
})
