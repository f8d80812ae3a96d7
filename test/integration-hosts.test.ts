// Instances on a remote host over SSH, with the fake agent: an sshd of the test's own on 127.0.0.1 is the "remote"
// host (its own workdir, tmux server and clone), this machine the local one.
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { execFileSync, spawnSync } from "node:child_process"
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs"
import * as path from "node:path"
import { startMockModel } from "../src/MockModel.js"
import { renderStatus, snapshot, statusJson } from "../src/Status.js"
import { parseTranscriptLines, usageOf } from "../src/Transcripts.js"
import { teamScript } from "../src/TeamScript.js"
import * as NodeContext from "@effect/platform-node/NodeContext"
import { ccoRun, fakeClaudeBin, filesOn, git, projectRoot, readLog, runFixture, useFixture } from "./harness.js"
import { remoteHost, useSshd } from "./sshd.js"
import { killTmuxServer } from "./support.js"

/** `cco doctor --config DIR`'s output (it exits 1 when any check fails). */
const doctor = (configDir: string) =>
  spawnSync(process.execPath, [path.join(projectRoot, "bin", "cco.js"), "doctor", "--config", configDir], { encoding: "utf8", env: { ...process.env, CCO_CLAUDE_PATH: fakeClaudeBin } }).stdout


/** The "remote" tmux server, whatever the test did: removed with the scope. */
const useRemoteTmux = (socket: string) => Effect.acquireRelease(Effect.succeed(`${socket}-box`), (s) => Effect.sync(() => killTmuxServer(s)))

describe("hosts: instances on a remote host over SSH", () => {
  it.scopedLive("local + one remote host: workers on both, the run completes, its work lands, the placement is shown", () =>
    Effect.gen(function*() {
      const sshd = yield* useSshd
      const mock = yield* startMockModel({ brain: teamScript() })
      const fixture = yield* useFixture({
        workerCount: 2,
        mockUrl: mock.url,
        extra: { hosts: [{ name: "local" }, remoteHost(sshd, fakeClaudeBin)] }
      })
      const remoteTmux = yield* useRemoteTmux(fixture.socket)
      // The user's env file reaches the worktrees on both hosts, never a commit.
      writeFileSync(path.join(fixture.configDir, ".env"), "TOOL_TOKEN=for-the-project-tools\n")
      // `cco status --json` while worker-2 has its task: its session is up on the remote host's tmux server.
      let folder: string | undefined
      let during: { instances: Array<{ name: string; sessionAlive: boolean | null }> } | undefined
      const summary = yield* runFixture(fixture, fakeClaudeBin, (line) => {
        if (line.event === "run.starting") folder = String(line.folder)
        if (during === undefined && folder !== undefined && line.event === "prompt.delivered" && line.instance === "worker-2") {
          const status = spawnSync(process.execPath, [path.join(projectRoot, "bin", "cco.js"), "status", folder, "--json"], { encoding: "utf8" })
          during = JSON.parse(status.stdout) as typeof during
        }
      })
      expect(summary.reason).toBe("project-done")
      expect(during?.instances.find((i) => i.name === "worker-2")?.sessionAlive).toBe(true)
      const workdir = path.join(sshd.dir, "box", summary.runId)
      expect(readFileSync(path.join(workdir, "worktrees", "worker-2", ".env"), "utf8")).toBe("TOOL_TOKEN=for-the-project-tools\n")
      expect(readFileSync(path.join(workdir, "repo", ".git", "info", "exclude"), "utf8")).toContain("/.env")
      expect(filesOn(fixture.bare, "main")).not.toContain(".env")

      // Placement: the lead and worker-1 here, worker-2 there (state.json).
      const state = JSON.parse(readFileSync(path.join(summary.runFolder, "state.json"), "utf8")) as {
        instances: Array<{ name: string; host?: string; worktree: string }>
      }
      const hostOf = Object.fromEntries(state.instances.map((i) => [i.name, i.host]))
      expect(hostOf).toEqual({ "em-1": "local", "worker-1": "local", "worker-2": "box" })
      const worktreeOf = Object.fromEntries(state.instances.map((i) => [i.name, i.worktree]))
      expect(worktreeOf["worker-2"]).toBe(path.join(workdir, "worktrees", "worker-2"))
      expect(worktreeOf["worker-1"]).toBe(path.join(summary.runFolder, "worktrees", "worker-1"))

      // Its worktree belongs to cco's own clone under the workdir there, not to the run's clone here.
      expect(existsSync(path.join(summary.runFolder, "worktrees", "worker-2"))).toBe(false)
      expect(readFileSync(path.join(workdir, "worktrees", "worker-2", ".git"), "utf8")).toContain(path.join(workdir, "repo", ".git", "worktrees"))
      // Its config dir and the client there too (copied over); its session log written there.
      expect(existsSync(path.join(workdir, "instances", "worker-2", "claude", "settings.json"))).toBe(true)
      expect(existsSync(path.join(workdir, "bin", "cco-client.mjs"))).toBe(true)
      expect(readFileSync(path.join(workdir, "instances", "worker-2", "claude", "settings.json"), "utf8")).toContain(path.join(workdir, "bin", "cco-client.mjs"))

      // Launched on the remote tmux server, its hooks and team commands back over the forwarded socket.
      const log = readLog(summary.runFolder)
      const launched = log.find((l) => l.event === "instance.launched" && l.instance === "worker-2")
      expect(launched?.attach).toContain(`tmux -L ${remoteTmux} `)
      expect(log.find((l) => l.event === "instance.launched" && l.instance === "worker-1")?.attach).toContain(`tmux -L ${fixture.socket} `)
      expect(log.some((l) => l.event === "hosts.connected")).toBe(true)
      // Seen alive and idle there all along: never taken for crashed, never restarted.
      expect(log.filter((l) => l.event === "instance.restarting" || l.event === "supervisor.error")).toEqual([])
      expect(log.some((l) => l.event === "task.done" && l.instance === "worker-2") || log.some((l) => l.event === "merge.done" && l.from === "worker-2")).toBe(true)

      // Both workers' work is on the target branch, pushed by the orchestrator.
      const files = filesOn(fixture.bare, "main")
      expect(files).toContain("src/em-1/worker-1.js")
      expect(files).toContain("src/em-1/worker-2.js")
      const commit = git(fixture.bare, "log", "--format=%H", "-n", "1", `cco/${summary.runId}/worker-2`)
      expect(git(fixture.bare, "merge-base", "--is-ancestor", commit, "main")).toBe("")

      // Its transcripts came over SSH: its cost is counted (from their copy here), like the others'.
      const costOf = (name: string) => summary.costs.instances.find((i) => i.name === name)?.usd ?? 0
      expect(costOf("worker-2")).toBeGreaterThan(0)
      expect(costOf("worker-2")).toBeCloseTo(costOf("worker-1"), 6)

      // `cco status` shows where each instance ran.
      const snap = yield* snapshot(summary.runFolder).pipe(Effect.provide(NodeContext.layer))
      const text = renderStatus(snap)
      expect(text).toMatch(/NAME\s+ROLE\s+HOST/)
      // The remote host's tmux server was asked (over SSH): worker-2's session is gone there, as worker-1's is here.
      const alive = (statusJson(snap) as { instances: Array<{ name: string; sessionAlive: boolean | null }> }).instances
      expect(alive.filter((i) => i.name.startsWith("worker-")).map((i) => [i.name, i.sessionAlive])).toEqual([["worker-1", false], ["worker-2", false]])
      expect(text).toMatch(/worker-2\s+worker\s+box/)
      expect(text).toMatch(/worker-1\s+worker\s+local/)

      // Nothing left running there: the sessions ended with the run, the SSH master closed.
      const sessions = spawnSync("tmux", ["-L", remoteTmux, "list-sessions"], { encoding: "utf8" })
      expect(sessions.stdout.trim()).toBe("")
    }), { timeout: 180_000 })

  it.scopedLive("the remote host drops mid-run: detected, its worker restarted here from its branch, the loss reported, the run completes", () =>
    Effect.gen(function*() {
      const sshd = yield* useSshd
      // Each model answer takes a while: worker-2 is still at its task when its host drops.
      const mock = yield* startMockModel({ brain: teamScript(), latencyMs: 1_500 })
      const fixture = yield* useFixture({
        workerCount: 2,
        mockUrl: mock.url,
        extra: { hosts: [{ name: "local" }, remoteHost(sshd, fakeClaudeBin)], healthCheckIntervalSeconds: 2 }
      })
      yield* useRemoteTmux(fixture.socket)
      let dropped = false
      const summary = yield* runFixture(fixture, fakeClaudeBin, (line) => {
        if (!dropped && line.event === "prompt.delivered" && line.instance === "worker-2") {
          dropped = true
          sshd.drop()
        }
      })
      expect(dropped).toBe(true)
      expect(summary.reason).toBe("project-done")
      const log = readLog(summary.runFolder)
      expect(log.find((l) => l.event === "host.down")).toMatchObject({ host: "box", instances: ["worker-2"] })
      const moved = log.find((l) => l.event === "instance.moved")
      expect(moved).toMatchObject({ instance: "worker-2", from: "box", to: "local", worktree: path.join(summary.runFolder, "worktrees", "worker-2") })
      expect(String(moved?.lost)).toMatch(/uncommitted changes/)
      // Restarted here, told its task again; its work reached the target branch.
      const launches = log.filter((l) => l.event === "instance.launched" && l.instance === "worker-2")
      expect(launches.at(-1)?.attach).toContain(`tmux -L ${fixture.socket} `)
      expect(filesOn(fixture.bare, "main")).toContain("src/em-1/worker-2.js")
      const state = JSON.parse(readFileSync(path.join(summary.runFolder, "state.json"), "utf8")) as {
        instances: Array<{ name: string; host?: string; worktree: string }>
      }
      expect(state.instances.find((i) => i.name === "worker-2")).toMatchObject({ host: "local", worktree: path.join(summary.runFolder, "worktrees", "worker-2") })
      // Its cost: what it spent there (its transcripts as last copied back) and what it spent here after the move.
      const transcripts = (dir: string) =>
        existsSync(dir) ? readdirSync(dir, { recursive: true, encoding: "utf8" }).filter((f) => f.endsWith(".jsonl")).map((f) => readFileSync(path.join(dir, f), "utf8")) : []
      const there = transcripts(path.join(summary.runFolder, "hosts", "box", "instances", "worker-2", "claude", "projects"))
      const here = transcripts(path.join(summary.runFolder, "instances", "worker-2", "claude", "projects"))
      expect(usageOf(parseTranscriptLines(here.join("")), new Set()).responses).toBeGreaterThan(0)
      const spent = usageOf(parseTranscriptLines([...there, ...here].join("")), new Set())
      const costs = JSON.parse(readFileSync(path.join(summary.runFolder, "state.json"), "utf8")) as { instances: Array<{ name: string; costUsd?: number }> }
      expect(costs.instances.find((i) => i.name === "worker-2")?.costUsd).toBeCloseTo(spent.usd, 9)
    }), { timeout: 180_000 })

  it.scopedLive("cco cleanup after a kill -9 of the orchestrator removes the sessions and worktrees on both hosts", () =>
    Effect.gen(function*() {
      const sshd = yield* useSshd
      // Slow answers: the team is still at work when the orchestrator is killed.
      const mock = yield* startMockModel({ brain: teamScript(), latencyMs: 3_000 })
      const fixture = yield* useFixture({ workerCount: 2, mockUrl: mock.url, extra: { hosts: [{ name: "local" }, remoteHost(sshd, fakeClaudeBin)] } })
      const remoteTmux = yield* useRemoteTmux(fixture.socket)
      const run = ccoRun(fixture.configDir, fakeClaudeBin)
      const folder = path.join(fixture.configDir, "logs", "latest")
      const launched = () => readLog(folder).some((l) => l.event === "run.started")
      for (let i = 0; i < 600 && !launched() && run.child.exitCode === null; i++) yield* Effect.sleep(100)
      expect(launched()).toBe(true)
      yield* Effect.sleep(500)
      // The orchestrator (the pid in cco.lock; bin/cco.js may run it in a child process) dies at once.
      process.kill(Number(readFileSync(path.join(folder, "cco.lock"), "utf8").trim()), "SIGKILL")
      run.child.kill("SIGKILL")
      yield* Effect.promise(() => run.exited)
      const runId = path.basename(readFileSync(path.join(folder, "state.json"), "utf8").match(/"runFolder": "([^"]+)"/)![1]!)
      const workdir = path.join(sshd.dir, "box", runId)
      const sessionsOn = (socket: string) =>
        spawnSync("tmux", ["-L", socket, "list-sessions", "-F", "#{session_name}"], { encoding: "utf8" }).stdout.split("\n").filter((s) => s.startsWith(`cco-${runId}-`))
      // Left behind: sessions and worktrees here and there, and the SSH master connection.
      expect(sessionsOn(fixture.socket).sort()).toEqual([`cco-${runId}-em-1`, `cco-${runId}-worker-1`])
      expect(sessionsOn(remoteTmux)).toEqual([`cco-${runId}-worker-2`])
      expect(existsSync(path.join(workdir, "worktrees", "worker-2"))).toBe(true)

      // Resumed with hosts the run did not start with, it is refused, nothing touched.
      const config = JSON.parse(readFileSync(path.join(fixture.configDir, "orchestrator.json"), "utf8")) as Record<string, unknown>
      writeFileSync(path.join(fixture.configDir, "orchestrator.json"), JSON.stringify({ ...config, hosts: undefined }))
      const resume = spawnSync(process.execPath, [path.join(projectRoot, "bin", "cco.js"), "run", "--config", fixture.configDir, "--resume", folder], {
        encoding: "utf8",
        env: { ...process.env, CCO_CLAUDE_PATH: fakeClaudeBin }
      })
      expect(resume.status).not.toBe(0)
      expect(resume.stderr).toContain("worker-2 ran on host box, and the config now places it on this machine; resume with the `hosts` the run started with")
      expect(sessionsOn(remoteTmux)).toEqual([`cco-${runId}-worker-2`])
      writeFileSync(path.join(fixture.configDir, "orchestrator.json"), JSON.stringify(config))

      const cleanup = spawnSync(process.execPath, [path.join(projectRoot, "bin", "cco.js"), "cleanup", "--config", fixture.configDir], { encoding: "utf8" })
      expect(cleanup.status, cleanup.stdout + cleanup.stderr).toBe(0)
      expect(cleanup.stdout).toContain(`box:cco-${runId}-worker-2`)
      expect(sessionsOn(fixture.socket)).toEqual([])
      expect(sessionsOn(remoteTmux)).toEqual([])
      expect(existsSync(path.join(workdir, "worktrees", "worker-2"))).toBe(false)
      expect(existsSync(path.join(folder, "worktrees", "worker-1"))).toBe(false)
      // The master connection the dead orchestrator left is gone too.
      const state = JSON.parse(readFileSync(path.join(folder, "state.json"), "utf8")) as { hosts: Array<{ controlPath: string }> }
      expect(existsSync(state.hosts[0]!.controlPath)).toBe(false)
    }), { timeout: 180_000 })

  it.scopedLive("a login kept in a file is not copied to a remote host: its instance is refused with the reason", () =>
    Effect.gen(function*() {
      const sshd = yield* useSshd
      const fixture = yield* useFixture({ workerCount: 2, mockUrl: "http://127.0.0.1:9", extra: { authMode: "oauth", hosts: [{ name: "local" }, remoteHost(sshd, fakeClaudeBin)] } })
      const remoteTmux = yield* useRemoteTmux(fixture.socket)
      const error = yield* runFixture(fixture, fakeClaudeBin).pipe(Effect.flip)
      expect(error.message).toContain("worker-2: launch: credential oauth is a login kept in a file, which cco does not copy to box; instances there need an API key or a CLAUDE_CODE_OAUTH_TOKEN")
      const sessions = spawnSync("tmux", ["-L", remoteTmux, "list-sessions"], { encoding: "utf8" })
      expect(sessions.stdout.trim()).toBe("")
    }), { timeout: 120_000 })

  it.scopedLive("a host without claude (or tmux, git, node) is a config error before anything starts", () =>
    Effect.gen(function*() {
      const sshd = yield* useSshd
      const fixture = yield* useFixture({ workerCount: 2, mockUrl: "http://127.0.0.1:9", extra: { hosts: [{ name: "local" }, remoteHost(sshd, "/nonexistent/claude")] } })
      const error = yield* runFixture(fixture, fakeClaudeBin).pipe(Effect.flip)
      expect(error._tag === "RunError" && error.reason).toBe("config")
      expect(error.message).toMatch(/^host box \(.*, port \d+\) cannot be used over SSH: missing on the host: \/nonexistent\/claude$/)
      expect(existsSync(path.join(fixture.configDir, "logs", "latest", "repo"))).toBe(false)
    }), { timeout: 60_000 })

  it.scopedLive("an unreachable host is a clear error at start, exit 2, nothing started", () =>
    Effect.gen(function*() {
      const sshd = yield* useSshd
      const fixture = yield* useFixture({ workerCount: 2, mockUrl: "http://127.0.0.1:9" })
      const config = JSON.parse(readFileSync(path.join(fixture.configDir, "orchestrator.json"), "utf8")) as Record<string, unknown>
      execFileSync("sh", ["-c", `cat > ${JSON.stringify(path.join(fixture.configDir, "orchestrator.json"))}`], {
        input: JSON.stringify({ ...config, hosts: [{ name: "local" }, remoteHost(sshd, fakeClaudeBin)] })
      })
      // `cco doctor` checks the host: reachable with its key, tmux, git and node there.
      expect(doctor(fixture.configDir)).toMatch(new RegExp(`ok +host box +${sshd.destination} port ${sshd.port}: reachable`))
      // The server stopped: its port refuses.
      sshd.kill()
      yield* Effect.sleep(200)
      expect(doctor(fixture.configDir)).toMatch(/FAIL +host box +.*port \d+: .*refused/)
      const run = ccoRun(fixture.configDir, fakeClaudeBin)
      const code = yield* Effect.promise(() => run.exited)
      expect(code).toBe(2)
      expect(run.output()).toMatch(/host box \(.*127\.0\.0\.1, port \d+\) cannot be used over SSH: .*(refused|closed)/i)
      const folder = path.join(fixture.configDir, "logs", "latest")
      expect(existsSync(path.join(folder, "repo"))).toBe(false)
      const sessions = spawnSync("tmux", ["-L", fixture.socket, "list-sessions"], { encoding: "utf8" })
      expect(sessions.stdout.trim()).toBe("")
    }), { timeout: 60_000 })
})
