// setupCommand in a run over several hosts, with the fake agent: an sshd of the test's own on 127.0.0.1 is the
// "remote" host (its own workdir, tmux server and clone). The command runs in each worktree on that worktree's host
// (over the host's SSH connection), with the instance's CCO_PORT, its output in the run folder here; a failure or a
// timeout there ends the start-up with the instance and the log named, nothing started and nothing left running.
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { execFileSync, spawnSync } from "node:child_process"
import { randomInt } from "node:crypto"
import { readFileSync } from "node:fs"
import * as path from "node:path"
import * as H from "../src/Hierarchy.js"
import { startMockModel } from "../src/MockModel.js"
import { teamScript } from "../src/TeamScript.js"
import { fakeClaudeBin, filesOn, readLog, runFixture, useFixture } from "./harness.js"
import { remoteHost, type Sshd, useSshd } from "./sshd.js"
import { killTmuxServer } from "./support.js"

/** The "remote" tmux server, whatever the test did: removed with the scope. */
const useRemoteTmux = (socket: string) => Effect.acquireRelease(Effect.succeed(`${socket}-box`), (s) => Effect.sync(() => killTmuxServer(s)))

/** cco's sessions on a tmux server. */
const sessionsOn = (socket: string) => spawnSync("tmux", ["-L", socket, "list-sessions", "-F", "#{session_name}"], { encoding: "utf8" }).stdout.trim()

/**
 * A `sleep` with an argument of its own (`sleep 600.123456`): the pids of the processes running it, and a
 * finalizer that ends them by pid should the test fail with one left.
 */
const useTaggedSleep = Effect.acquireRelease(
  Effect.sync(() => {
    const tag = `600.${String(randomInt(100_000, 999_999))}`
    const pids = () =>
      execFileSync("ps", ["-eo", "pid=,args="], { encoding: "utf8" }).split("\n").map((l) => l.trim().split(/\s+/))
        .filter(([, cmd, arg]) => cmd === "sleep" && arg === tag).map(([pid]) => Number(pid))
    return { command: `sleep ${tag}`, pids }
  }),
  (sleep) =>
    Effect.sync(() =>
      sleep.pids().forEach((pid) => {
        try {
          process.kill(pid, "SIGKILL")
        } catch { /* gone */ }
      })
    )
)

/** Waits up to `ms` for `check` to hold; whether it did. */
const eventually = (check: () => boolean, ms = 5_000) =>
  Effect.gen(function*() {
    for (let waited = 0; waited < ms; waited += 100) {
      if (check()) return true
      yield* Effect.sleep(100)
    }
    return check()
  })

/** A shell test that holds only in a command run over the test's sshd (its SSH_CONNECTION names its port). */
const overSsh = (sshd: Sshd) => `case "$SSH_CONNECTION" in *" ${sshd.port}") true;; *) false;; esac`

describe("hosts: setupCommand on every worktree's host", () => {
  it.scopedLive("runs in each worktree on its host, with its CCO_PORT, its output in setup-<instance>.log here; the run completes", () =>
    Effect.gen(function*() {
      const sshd = yield* useSshd
      const mock = yield* startMockModel({ brain: teamScript() })
      // A marker in the worktree (kept out of git by the clone's info/exclude, as node_modules would be by a
      // .gitignore) with the instance's port and the SSH connection it ran over, if any.
      const setup = [
        `printf 'port=%s ssh=%s\\n' "$CCO_PORT" "$SSH_CONNECTION" > .setup-marker`,
        `x="$(git rev-parse --git-common-dir)/info/exclude" && mkdir -p "$(dirname "$x")" && { grep -qxF /.setup-marker "$x" || echo /.setup-marker >> "$x"; }`,
        `echo "set up $(basename "$PWD") on port $CCO_PORT"`
      ].join(" && ")
      const fixture = yield* useFixture({
        workerCount: 2,
        mockUrl: mock.url,
        extra: { setupCommand: setup, hosts: [{ name: "local" }, remoteHost(sshd, fakeClaudeBin)] }
      })
      const remoteTmux = yield* useRemoteTmux(fixture.socket)
      const summary = yield* runFixture(fixture, fakeClaudeBin)
      expect(summary.reason).toBe("project-done")

      const remoteWorktree = path.join(sshd.dir, "box", summary.runId, "worktrees", "worker-2")
      const worktreeOf = (name: string) => name === "worker-2" ? remoteWorktree : path.join(summary.runFolder, "worktrees", name)
      const sshPart = new RegExp(`^127\\.0\\.0\\.1 \\d+ 127\\.0\\.0\\.1 ${sshd.port}$`)
      for (const name of ["em-1", "worker-1", "worker-2"]) {
        const marker = readFileSync(path.join(worktreeOf(name), ".setup-marker"), "utf8")
        const [, port, ssh] = /^port=(\d+) ssh=(.*)\n$/.exec(marker) ?? []
        expect(Number(port), `${name}: ${marker}`).toBe(H.instancePort(name))
        // worker-2's ran on the box, over its SSH connection; the others here.
        expect(sshPart.test(ssh ?? ""), `${name}: ${marker}`).toBe(name === "worker-2")
        // Its output is in the run folder here.
        expect(readFileSync(path.join(summary.runFolder, `setup-${name}.log`), "utf8")).toBe(`set up ${name} on port ${H.instancePort(name)}\n`)
      }
      // Every worktree set up before any instance started; the marker never reached a branch.
      const log = readLog(summary.runFolder)
      expect(log.filter((l) => l.event === "setup.done").map((l) => l.instance).sort()).toEqual(["em-1", "worker-1", "worker-2"])
      expect(log.map((l) => l.event).lastIndexOf("setup.done")).toBeLessThan(log.findIndex((l) => l.event === "instance.launched"))
      expect(filesOn(fixture.bare, "main")).toContain("src/em-1/worker-2.js")
      expect(filesOn(fixture.bare, "main")).not.toContain(".setup-marker")
      expect(sessionsOn(remoteTmux)).toBe("")
    }), { timeout: 180_000 })

  it.scopedLive("a setupCommand failing on the remote host fails the start-up naming the instance and its log; nothing starts or stays there", () =>
    Effect.gen(function*() {
      const sshd = yield* useSshd
      const sleep = yield* useTaggedSleep
      // There it leaves a process in the background and fails; here it passes.
      const setup = `if ${overSsh(sshd)}; then (${sleep.command} &); echo installing; echo 'npm ERR! broken on the box' >&2; exit 3; fi; echo fine`
      const fixture = yield* useFixture({
        workerCount: 2,
        mockUrl: "http://127.0.0.1:9",
        extra: { setupCommand: setup, hosts: [{ name: "local" }, remoteHost(sshd, fakeClaudeBin)] }
      })
      const remoteTmux = yield* useRemoteTmux(fixture.socket)
      let folder = ""
      const error = yield* runFixture(fixture, fakeClaudeBin, (line) => {
        if (line.event === "run.starting") folder = String(line.folder)
      }).pipe(Effect.flip)
      const runId = path.basename(folder)
      const logFile = path.join(folder, "setup-worker-2.log")
      expect(error.message).toBe(
        `setupCommand (${setup}) failed in worker-2's worktree ${path.join(sshd.dir, "box", runId, "worktrees", "worker-2")}: exit code 3; its output is in ${logFile}`
      )
      expect(readFileSync(logFile, "utf8")).toBe("installing\nnpm ERR! broken on the box\n")
      const log = readLog(folder)
      expect(log.filter((l) => l.event === "setup.failed")).toMatchObject([{ instance: "worker-2", reason: "exit code 3", log: logFile }])
      expect(log.filter((l) => l.event === "instance.launched")).toEqual([])
      // No session on either tmux server; what the command left in the background there is gone.
      expect(sessionsOn(fixture.socket)).toBe("")
      expect(sessionsOn(remoteTmux)).toBe("")
      expect(yield* eventually(() => sleep.pids().length === 0)).toBe(true)
    }), { timeout: 120_000 })

  it.scopedLive("a setupCommand still running there after checkTimeoutMinutes is stopped on the host, its background processes too", () =>
    Effect.gen(function*() {
      const sshd = yield* useSshd
      const sleep = yield* useTaggedSleep
      const setup = `if ${overSsh(sshd)}; then ${sleep.command} & ${sleep.command}; fi`
      const fixture = yield* useFixture({
        workerCount: 2,
        mockUrl: "http://127.0.0.1:9",
        extra: { setupCommand: setup, checkTimeoutMinutes: 0.05, hosts: [{ name: "local" }, remoteHost(sshd, fakeClaudeBin)] }
      })
      const remoteTmux = yield* useRemoteTmux(fixture.socket)
      // While it runs there, both sleeps are up.
      let running = 0
      const sampler = yield* Effect.sync(() => void (running = Math.max(running, sleep.pids().length))).pipe(
        Effect.zipRight(Effect.sleep(100)),
        Effect.forever,
        Effect.fork
      )
      const error = yield* runFixture(fixture, fakeClaudeBin).pipe(Effect.flip)
      yield* Fiber.interrupt(sampler)
      expect(running).toBe(2)
      expect(error.message).toMatch(/^setupCommand \(.*\) failed in worker-2's worktree \S+\/box\/\S+\/worktrees\/worker-2: timed out after 3 seconds; its output is in \S+\/setup-worker-2\.log$/)
      // Stopped by the host on time (SIGTERM, SIGKILL 2 s later), not by this machine giving up on it later.
      const failed = readLog(path.join(fixture.configDir, "logs", "latest")).find((l) => l.event === "setup.failed")
      expect(failed).toMatchObject({ instance: "worker-2", reason: "timed out after 3 seconds" })
      expect(Number(failed?.durationMs)).toBeLessThan(9_000)
      expect(yield* eventually(() => sleep.pids().length === 0)).toBe(true)
      expect(sessionsOn(fixture.socket)).toBe("")
      expect(sessionsOn(remoteTmux)).toBe("")
    }), { timeout: 120_000 })

  it.scopedLive("a setupCommand failing here stops the one still running there: nothing of it stays on the host", () =>
    Effect.gen(function*() {
      const sshd = yield* useSshd
      const sleep = yield* useTaggedSleep
      // There it would run for 10 minutes; here it fails once it has started there.
      const setup = `if ${overSsh(sshd)}; then ${sleep.command}; else i=0; while ! pgrep -fx '${sleep.command}' >/dev/null && [ $i -lt 200 ]; do i=$((i+1)); sleep 0.1; done; exit 5; fi`
      const fixture = yield* useFixture({
        workerCount: 2,
        mockUrl: "http://127.0.0.1:9",
        extra: { setupCommand: setup, hosts: [{ name: "local" }, remoteHost(sshd, fakeClaudeBin)] }
      })
      const remoteTmux = yield* useRemoteTmux(fixture.socket)
      const error = yield* runFixture(fixture, fakeClaudeBin).pipe(Effect.flip)
      expect(error.message).toMatch(/^setupCommand \(.*\) failed in (em-1|worker-1)'s worktree .*: exit code 5; its output is in .*\/setup-(em-1|worker-1)\.log$/)
      expect(yield* eventually(() => sleep.pids().length === 0)).toBe(true)
      expect(sessionsOn(fixture.socket)).toBe("")
      expect(sessionsOn(remoteTmux)).toBe("")
    }), { timeout: 120_000 })
})
