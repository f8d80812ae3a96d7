// The sandbox on a remote host, with the fake agent: the run's `sandbox` mode applies on every host, decided there.
// The "remote" host is this machine through an sshd of the test's own on 127.0.0.1 (its own workdir, tmux server
// and clone); a host "without bubblewrap" is the same sshd giving its sessions a PATH where bwrap is not.
import { describe, expect, it } from "@effect/vitest"
import { NodeContext } from "@effect/platform-node"
import { Effect } from "effect"
import { spawnSync } from "node:child_process"
import { existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync } from "node:fs"
import * as path from "node:path"
import { startMockModel } from "../src/MockModel.js"
import { makeProgress } from "../src/Progress.js"
import type { LogLine } from "../src/RunLog.js"
import * as Sandbox from "../src/Sandbox.js"
import * as Status from "../src/Status.js"
import { teamScript } from "../src/TeamScript.js"
import { ccoRun, fakeClaudeBin, fileOn, type Fixture, git, projectRoot, readLog, runFixture, useFixture } from "./harness.js"
import { remoteHost, useSshd, useSshdWith } from "./sshd.js"
import { killTmuxServer } from "./support.js"

const PATH = process.env.PATH ?? "/usr/bin:/bin"
const probed = await Effect.runPromise(Sandbox.probe(PATH).pipe(Effect.provide(NodeContext.layer)))
// CI installs bubblewrap (.ci/run): there a machine that cannot confine is a failure, not a skip.
const canConfine = probed._tag === "Usable" || process.env.CI !== undefined

const ATTEMPTS = ["write home", "write other worktree", "write run folder", "read other token", "read run state", "move target branch", "write git config"]

/** The "remote" tmux server, whatever the test did: removed with the scope. */
const useRemoteTmux = (socket: string) => Effect.acquireRelease(Effect.succeed(`${socket}-box`), (s) => Effect.sync(() => killTmuxServer(s)))

/** A PATH for the host's sessions with every program of this machine but bubblewrap (links in `dir`). */
const pathWithoutBwrap = (dir: string) => {
  mkdirSync(dir, { recursive: true })
  for (const from of ["/usr/bin", "/usr/sbin"]) {
    for (const name of readdirSync(from)) {
      if (name === "bwrap" || existsSync(path.join(dir, name))) continue
      symlinkSync(path.join(from, name), path.join(dir, name))
    }
  }
  return `${dir}:/usr/local/bin`
}

/** `cco run` with the fake agent; when the test ends with it still running (a failure), it and its orchestrator are killed. */
const useCcoRun = (configDir: string) =>
  Effect.acquireRelease(Effect.sync(() => ccoRun(configDir, fakeClaudeBin)), (run) =>
    Effect.sync(() => {
      if (run.child.exitCode !== null || run.child.signalCode !== null) return
      try {
        process.kill(Number(readFileSync(path.join(configDir, "logs", "latest", "cco.lock"), "utf8").trim()), "SIGKILL")
      } catch { /* no orchestrator yet, or gone */ }
      run.child.kill("SIGKILL")
    }))

/** `cco doctor --config DIR`'s output (it exits 1 when any check fails). */
const doctor = (configDir: string) =>
  spawnSync(process.execPath, [path.join(projectRoot, "bin", "cco.js"), "doctor", "--config", configDir], { encoding: "utf8", env: { ...process.env, CCO_CLAUDE_PATH: fakeClaudeBin } }).stdout

/** state.json's remote hosts. */
/** The run, and the lines its terminal shows (as `cco run` prints them). */
const runShowing = (fixture: Fixture) =>
  Effect.gen(function*() {
    const progress = makeProgress()
    const shown: Array<string> = []
    const summary = yield* runFixture(fixture, fakeClaudeBin, (line: LogLine) => {
      const text = progress(line)
      if (text !== undefined) shown.push(text)
    })
    return { summary, shown }
  })

const hostsInState = (folder: string) => (JSON.parse(readFileSync(path.join(folder, "state.json"), "utf8")) as { hosts?: Array<Record<string, unknown>> }).hosts

/** The instance rows of `cco status`: NAME … up to the blank line before the next table. */
const statusRows = (table: ReadonlyArray<string>) => {
  const header = table.findIndex((l) => l.startsWith("NAME"))
  return { header: table[header] ?? "", rows: table.slice(header + 1, table.findIndex((l, i) => i > header && l.trim() === "") >>> 0) }
}

describe("sandbox on a remote host", () => {
  it.scopedLive.skipIf(!canConfine)('sandbox "bwrap": the workers on the remote host run confined there, with its paths; their work lands', () =>
    Effect.gen(function*() {
      const sshd = yield* useSshd
      const probe = { worker: "worker-1", other: "worker-2", home: "" }
      const mock = yield* startMockModel({ brain: teamScript({ sandboxProbe: probe }) })
      // Without "local" in `hosts` only the lead runs here: both workers run on "box".
      const fixture = yield* useFixture({ workerCount: 2, mockUrl: mock.url, extra: { sandbox: "bwrap", hosts: [remoteHost(sshd, fakeClaudeBin)] } })
      probe.home = fixture.home
      const remoteTmux = yield* useRemoteTmux(fixture.socket)
      expect(doctor(fixture.configDir)).toMatch(/ok +sandbox box +bubblewrap [\d.]+ \(\/usr\/bin\/bwrap\): instances confined to their own worktree \(sandbox "bwrap"\)/)
      const { summary, shown } = yield* runShowing(fixture)
      expect(summary.reason).toBe("project-done")
      const folder = summary.runFolder
      const workdir = path.join(sshd.dir, "box", summary.runId)
      const log = readLog(folder)
      const hostOf = Object.fromEntries(log.filter((l) => l.event === "hosts.connected").flatMap((l) => Object.entries(l.placement as Record<string, string>)))
      expect(hostOf).toEqual({ "em-1": "local", "worker-1": "box", "worker-2": "box" })

      // Every attempt failed inside, as the worker saw it on the host, and left nothing outside.
      const report = fileOn(fixture.bare, "main", "sandbox-probe-worker-1.txt").trim().split("\n")
      expect(report).toEqual(ATTEMPTS.map((a) => `${a}: blocked`))
      expect(existsSync(path.join(fixture.home, "escaped-by-worker-1"))).toBe(false)
      expect(existsSync(path.join(workdir, "worktrees", "worker-2", "escaped-by-worker-1"))).toBe(false)
      expect(existsSync(path.join(workdir, "escaped-by-worker-1"))).toBe(false)
      // What it could not read is there (outside its sandbox): the other worker's token digest on that host.
      expect(existsSync(path.join(workdir, "instances", "worker-2", "token.sha256"))).toBe(true)
      expect(spawnSync("git", ["-C", path.join(workdir, "repo"), "config", "--get-all", "core.fsmonitor"], { encoding: "utf8" }).stdout).toBe("")
      // Its private home is on the host, with the identity its commits carry.
      expect(existsSync(path.join(workdir, "instances", "worker-1", "home", ".gitconfig"))).toBe(true)
      expect(existsSync(path.join(folder, "instances", "worker-1", "home"))).toBe(false)
      // The control socket there has a directory to itself (what the sandbox shows of the run's folder there).
      expect(existsSync(path.join(workdir, "control"))).toBe(true)
      expect(existsSync(path.join(workdir, "control.sock"))).toBe(false)

      // Both workers' work committed on their branches there and merged into the target branch.
      expect(fileOn(fixture.bare, "main", "src/em-1/worker-1.js")).toContain("written by worker-1")
      expect(fileOn(fixture.bare, "main", "src/em-1/worker-2.js")).toContain("written by worker-2")
      const commit = git(fixture.bare, "log", "--format=%H", "-n", "1", `cco/${summary.runId}/worker-1`).trim()
      expect(git(fixture.bare, "merge-base", "--is-ancestor", commit, "main")).toBe("")

      // The host's choice: logged when it was connected, shown on the terminal, on each launch, and by status.
      expect(log.find((l) => l.event === "run.sandbox")).toMatchObject({ sandbox: "bwrap", sandboxMode: "bwrap" })
      expect(log.filter((l) => l.event === "run.sandbox")).toHaveLength(1)
      expect(log.find((l) => l.event === "host.sandbox")).toMatchObject({ host: "box", sandbox: "bwrap", sandboxMode: "bwrap" })
      expect(shown).toContain("instances on host box confined with bubblewrap")
      const launched = log.filter((l) => l.event === "instance.launched")
      expect(launched.map((l) => [l.instance, l.sandbox]).sort()).toEqual([["em-1", "bwrap"], ["worker-1", "bwrap"], ["worker-2", "bwrap"]])
      expect(launched.find((l) => l.instance === "worker-1")?.attach).toContain(`tmux -L ${remoteTmux} `)
      expect(hostsInState(folder)).toEqual([expect.objectContaining({ name: "box", sandbox: "bwrap" })])
      const snapshot = yield* Status.snapshot(folder).pipe(Effect.provide(NodeContext.layer))
      expect([...(snapshot.sandboxes ?? new Map()).entries()].sort()).toEqual([["em-1", "bwrap"], ["worker-1", "bwrap"], ["worker-2", "bwrap"]])
      const { header, rows } = statusRows(Status.renderStatus(snapshot).split("\n"))
      expect(header).toMatch(/HOST.*SANDBOX/)
      expect(rows.filter((r) => /^worker-\d/.test(r))).toHaveLength(2)
      for (const row of rows.filter((r) => /^worker-\d/.test(r))) expect(row).toMatch(/\bbox\b.*\bbwrap\b/)
    }), { timeout: 180_000 })

  it.scopedLive('sandbox "bwrap" and a host without bubblewrap: a config error naming the host, exit 2, nothing started', () =>
    Effect.gen(function*() {
      const fixture = yield* useFixture({ workerCount: 2, mockUrl: "http://127.0.0.1:9" })
      const sshd = yield* useSshdWith({ path: pathWithoutBwrap(path.join(fixture.root, "host-bin")) })
      const remoteTmux = yield* useRemoteTmux(fixture.socket)
      const config = JSON.parse(readFileSync(path.join(fixture.configDir, "orchestrator.json"), "utf8")) as Record<string, unknown>
      spawnSync("sh", ["-c", `cat > ${JSON.stringify(path.join(fixture.configDir, "orchestrator.json"))}`], {
        input: JSON.stringify({ ...config, sandbox: "bwrap", hosts: [{ name: "local" }, remoteHost(sshd, fakeClaudeBin)] })
      })
      // `cco doctor` looks there too: the host is reachable, but would refuse the run.
      const checked = doctor(fixture.configDir)
      expect(checked).toMatch(/ok +host box +/)
      expect(checked).toMatch(/FAIL +sandbox box +sandbox "bwrap" is required but bubblewrap \(bwrap\) is not on PATH on host box: cco run will refuse to start/)
      expect(checked).toMatch(/fix: install bubblewrap there \(apt-get install bubblewrap\)/)
      // This machine has bubblewrap (the run gets past its own check): only the host lacks it.
      const run = yield* useCcoRun(fixture.configDir)
      const code = yield* Effect.promise(() => run.exited).pipe(Effect.timeoutFail({ duration: "40 seconds", onTimeout: () => new Error(`cco run did not end: ${run.output()}`) }))
      expect(run.output()).toMatch(
        /host box \(.*@127\.0\.0\.1, port \d+\): sandbox "bwrap" is required but bubblewrap \(bwrap\) is not on PATH on host box; install bubblewrap there \(apt-get install bubblewrap\)/
      )
      expect(code).toBe(2)
      // Nothing started: no clone, no worktree, no session here or there.
      const folder = path.join(fixture.configDir, "logs", "latest")
      expect(existsSync(path.join(folder, "repo"))).toBe(false)
      expect(readLog(folder).filter((l) => l.event === "instance.launched")).toEqual([])
      expect(spawnSync("tmux", ["-L", fixture.socket, "list-sessions"], { encoding: "utf8" }).stdout.trim()).toBe("")
      expect(spawnSync("tmux", ["-L", remoteTmux, "list-sessions"], { encoding: "utf8" }).stdout.trim()).toBe("")
    }), { timeout: 60_000 })

  it.scopedLive.skipIf(!canConfine)('sandbox "auto" and a host without bubblewrap: unconfined there (said loudly), confined here; the run completes', () =>
    Effect.gen(function*() {
      const mock = yield* startMockModel({ brain: teamScript() })
      const fixture = yield* useFixture({ workerCount: 2, mockUrl: mock.url })
      const sshd = yield* useSshdWith({ path: pathWithoutBwrap(path.join(fixture.root, "host-bin")) })
      yield* useRemoteTmux(fixture.socket)
      const config = JSON.parse(readFileSync(path.join(fixture.configDir, "orchestrator.json"), "utf8")) as Record<string, unknown>
      spawnSync("sh", ["-c", `cat > ${JSON.stringify(path.join(fixture.configDir, "orchestrator.json"))}`], {
        input: JSON.stringify({ ...config, sandbox: "auto", hosts: [{ name: "local" }, remoteHost(sshd, fakeClaudeBin)] })
      })
      expect(doctor(fixture.configDir)).toMatch(/warn +sandbox box +bubblewrap \(bwrap\) is not on PATH on host box: instances would run UNCONFINED \(sandbox "auto"\)/)
      const { summary, shown } = yield* runShowing(fixture)
      expect(summary.reason).toBe("project-done")
      const log = readLog(summary.runFolder)
      expect(log.find((l) => l.event === "run.sandbox")).toMatchObject({ sandbox: "bwrap", sandboxMode: "auto" })
      expect(log.find((l) => l.event === "host.sandbox")).toMatchObject({
        host: "box",
        sandbox: "none",
        sandboxMode: "auto",
        sandboxReason: "bubblewrap (bwrap) is not on PATH on host box"
      })
      expect(shown.some((t) => t.startsWith("WARNING: instances on host box run UNCONFINED") && t.includes("not on PATH on host box"))).toBe(true)
      expect(shown).toContain("instances confined with bubblewrap (sandbox: each writes only its own worktree)")
      const launched = log.filter((l) => l.event === "instance.launched")
      expect(launched.map((l) => [l.instance, l.sandbox]).sort()).toEqual([["em-1", "bwrap"], ["worker-1", "bwrap"], ["worker-2", "none"]])
      expect(hostsInState(summary.runFolder)).toEqual([expect.objectContaining({ name: "box", sandbox: "none", sandboxReason: "bubblewrap (bwrap) is not on PATH on host box" })])
      const snapshot = yield* Status.snapshot(summary.runFolder).pipe(Effect.provide(NodeContext.layer))
      expect([...(snapshot.sandboxes ?? new Map()).entries()].sort()).toEqual([["em-1", "bwrap"], ["worker-1", "bwrap"], ["worker-2", "none"]])
      const { rows } = statusRows(Status.renderStatus(snapshot).split("\n"))
      expect(rows.find((r) => r.startsWith("worker-2"))).toMatch(/\bbox\b.*\bnone\b/)
      // Both workers' work landed.
      expect(fileOn(fixture.bare, "main", "src/em-1/worker-2.js")).toContain("written by worker-2")
    }), { timeout: 180_000 })
})
