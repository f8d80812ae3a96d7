// The real `claude` on a remote host over SSH against the mock model: an sshd of the test's own on 127.0.0.1 is the
// "remote" host (its own workdir, tmux server and clone); workers on both hosts, the run completes.
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { existsSync, readFileSync } from "node:fs"
import * as path from "node:path"
import { startMockModel } from "../src/MockModel.js"
import { teamScript } from "../src/TeamScript.js"
import { claudeBin, filesOn, readLog, runFixture, useFixture } from "./harness.js"
import { orchestratorKilledThenResumed } from "./scenarios.js"
import { remoteHost, useSshd } from "./sshd.js"
import { killTmuxServer } from "./support.js"

describe("real claude on a remote host", () => {
  it.scopedLive("local + one remote host: the remote worker's hooks and team commands come back over SSH, its module lands", () =>
    Effect.gen(function*() {
      const sshd = yield* useSshd
      const mock = yield* startMockModel({ brain: teamScript() })
      // Confined there as here: bubblewrap is required on both.
      const fixture = yield* useFixture({ workerCount: 2, mockUrl: mock.url, extra: { hosts: [{ name: "local" }, remoteHost(sshd, claudeBin)], sandbox: "bwrap" } })
      yield* Effect.acquireRelease(Effect.void, () => Effect.sync(() => killTmuxServer(`${fixture.socket}-box`)))
      const summary = yield* runFixture(fixture, claudeBin)
      expect(summary.reason).toBe("project-done")
      const files = filesOn(fixture.bare, "main")
      expect(files).toContain("src/em-1/worker-1.js")
      expect(files).toContain("src/em-1/worker-2.js")
      const log = readLog(summary.runFolder)
      const launched = log.find((l) => l.event === "instance.launched" && l.instance === "worker-2")
      expect(launched?.attach).toContain(`tmux -L ${fixture.socket}-box `)
      expect(launched?.sandbox).toBe("bwrap")
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

  it.scopedLive("kill -9 of the orchestrator, then cco run --resume: the CLI's session on the remote host re-attached, the run completes", () =>
    Effect.gen(function*() {
      const sshd = yield* useSshd
      let socket = ""
      yield* Effect.acquireRelease(Effect.void, () => Effect.sync(() => socket !== "" && killTmuxServer(`${socket}-box`)))
      const { fixture, log } = yield* orchestratorKilledThenResumed(claudeBin, { hosts: [{ name: "local" }, remoteHost(sshd, claudeBin)] }, (f) => (socket = f.socket))
      const resumed = log.slice(log.findIndex((l) => l.event === "run.resuming"))
      expect(resumed.find((l) => l.event === "instance.attached" && l.instance === "worker-2")).toBeDefined()
      expect(readLog(path.join(fixture.configDir, "logs", "latest")).some((l) => l.event === "instance.moved")).toBe(false)
    }), { timeout: 300_000 })
})
