// Rotation and crash recovery for an instance on a remote host, with the fake agent: an sshd of the test's own on
// 127.0.0.1 is the "remote" host "box" (its own workdir, tmux server and clone, in files of its own), this machine the
// local one. The worker placed there hits a rate limit and is moved to another key, or waits for its only key to cool,
// or has its claude killed on the host: it goes on there, in its session there, with its conversation, and its work
// lands.
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { spawnSync } from "node:child_process"
import { createHash } from "node:crypto"
import { readdirSync, readFileSync, realpathSync } from "node:fs"
import * as path from "node:path"
import { type Brain, type MockRequest, rateLimitError, toolResults, userTexts } from "../src/MockBrain.js"
import { startMockModel } from "../src/MockModel.js"
import { shellQuote } from "../src/Shell.js"
import { teamScript } from "../src/TeamScript.js"
import { parseTranscriptLines, usageOf } from "../src/Transcripts.js"
import { fakeClaudeBin, fileOn, filesOn, latestRun, readLog, runFixture, useFixture } from "./harness.js"
import { onHost, remoteHost, type Sshd, useSshdWithOwnFiles } from "./sshd.js"
import { killTmuxServer, waitFor } from "./support.js"

// The fixture's keys (see makeFixture).
const key = (n: number) => `sk-ant-test-key-${n}-${"x".repeat(24)}`
const keyNames: Record<string, string> = { [key(1)]: "key-1", [key(2)]: "key-2", [key(3)]: "key-3" }
const keyNamed = (name: string) => key(Number(name.slice("key-".length)))
const sha256 = (s: string) => createHash("sha256").update(s).digest("hex")

/** The "remote" tmux server, whatever the test did: removed with the scope. */
const useRemoteTmux = (socket: string) => Effect.acquireRelease(Effect.succeed(`${socket}-box`), (s) => Effect.sync(() => killTmuxServer(s)))

/** The pid of the program in a session's pane on the host's own tmux server (empty when there is none). */
const panePidThere = (sshd: Sshd, tmuxSocket: string, session: string) =>
  onHost(sshd, `tmux -L ${shellQuote(tmuxSocket)} display-message -p -t ${shellQuote(`=${session}:`)} '#{pane_pid}' 2>/dev/null || true`)

const hasSessionHere = (socket: string, session: string) => spawnSync("tmux", ["-L", socket, "has-session", "-t", `=${session}`]).status === 0

/** Who sent a request: the instance named by its role prompt. */
const senderOf = (req: MockRequest) => userTexts(req).map((t) => /^You are ((?:em|worker)-\d+|the Director)\b/m.exec(t)?.[1]).find((n) => n !== undefined)

interface Seen {
  readonly who: string | undefined
  readonly key: string
  readonly toolResults: number
  readonly limited: boolean
  readonly at: number
}

/**
 * worker-2's second request (its first tool has run: its file is written, not committed) finds its key at its rate
 * limit: from then on that key is answered 429 for `limitSeconds` (ten minutes unless given), whoever uses it. Every
 * request is noted (sender, key name, how much conversation it carried, when) — keys only by name.
 */
const limitWorker2sKey = (brain: Brain, seen: Array<Seen>, limitSeconds = 600): { brain: Brain; limitedKey: () => string | undefined } => {
  let limited: string | undefined
  let until = 0
  return {
    limitedKey: () => limited === undefined ? undefined : keyNames[limited],
    brain: (req) => {
      const who = senderOf(req)
      const at = Date.now()
      const note = (isLimited: boolean) => seen.push({ who, key: keyNames[req.apiKey ?? ""] ?? "(other)", toolResults: toolResults(req).length, limited: isLimited, at })
      if (limited === undefined && who === "worker-2" && toolResults(req).length >= 1) {
        limited = req.apiKey
        until = at + limitSeconds * 1000
      }
      if (limited !== undefined && req.apiKey === limited && at < until) {
        note(true)
        return rateLimitError({ retryAfterSeconds: Math.ceil((until - at) / 1000) })
      }
      note(false)
      return brain(req)
    }
  }
}

describe("hosts: rotation and crash recovery for a remote instance", () => {
  it.scopedLive("the remote worker hits a rate limit: moved to another key and restarted on its host with --continue, the key in its environment there, the switch in state, log and costs", () =>
    Effect.gen(function*() {
      const sshd = yield* useSshdWithOwnFiles
      const seen: Array<Seen> = []
      const limiting = limitWorker2sKey(teamScript(), seen)
      // Slow enough answers that worker-2's new session is still there to be looked at after its move; the lead's
      // first answer at once, while the remote host's session may still be starting.
      const latencyMs = (req: MockRequest) => senderOf(req) === "em-1" && toolResults(req).length === 0 ? 0 : 400
      const mock = yield* startMockModel({ brain: limiting.brain, keyNames, latencyMs })
      const fixture = yield* useFixture({
        workerCount: 2,
        mockUrl: mock.url,
        // Dealt in order: em-1 on key-1, worker-1 on key-2, worker-2 (there) alone on key-3.
        keys: 3,
        extra: { hosts: [{ name: "local" }, remoteHost(sshd, fakeClaudeBin)], healthCheckIntervalSeconds: 1 },
        maxRunDurationMinutes: 3
      })
      const remoteTmux = yield* useRemoteTmux(fixture.socket)

      // Once worker-2 is relaunched on another credential: what runs in its session on the host, looked at there.
      const watcher = Effect.gen(function*() {
        const relaunch = yield* waitFor("worker-2 relaunched on another key", Effect.sync(() =>
          readLog(latestRun(fixture)).find((l) =>
            l.event === "instance.launched" && l.instance === "worker-2" && Number(l.generation) > 0 && l.credential !== limiting.limitedKey()
          )), 90_000, 50)
        const session = String(relaunch.session)
        return yield* waitFor("worker-2's claude running in its session on the host", Effect.sync(() => {
          const pid = panePidThere(sshd, remoteTmux, session)
          if (pid === "") return undefined
          // Only digests and paths leave the host: never the key itself.
          const there = onHost(sshd, [
            `p=${shellQuote(pid)}`,
            `tr '\\0' ' ' < /proc/$p/cmdline; echo`,
            `readlink /proc/$p/cwd`,
            `tr '\\0' '\\n' < /proc/$p/environ | sed -n 's/^ANTHROPIC_API_KEY=//p' | tr -d '\\n' | sha256sum | cut -d' ' -f1`
          ].join("; ")).split("\n")
          if (!(there[0] ?? "").includes("fake-claude")) return undefined
          return { relaunch, session, pid, cmdline: there[0]!, cwd: there[1], keyDigest: there[2], here: hasSessionHere(fixture.socket, session) }
        }), 30_000, 100)
      })

      // The run and the look at the host together: when the look fails, the run is not waited for.
      const [summary, there] = yield* Effect.all([runFixture(fixture, fakeClaudeBin), watcher], { concurrency: "unbounded" })
      expect(summary.reason).toBe("project-done")
      const log = readLog(summary.runFolder)
      const from = limiting.limitedKey()
      expect(from).toBeDefined()
      expect(log.find((l) => l.event === "instance.launched" && l.instance === "worker-2")).toMatchObject({ generation: 0, credential: "key-3" })
      expect(from).toBe("key-3")
      const to = String(there.relaunch.credential)
      expect(["key-1", "key-2"]).toContain(to)

      // The rate limit confirmed on worker-2's pane (on the host): its key cools, worker-2 moves to another.
      expect(log.filter((l) => l.event === "api.error-unconfirmed" && l.instance === "worker-2")).toEqual([])
      expect(log.filter((l) => l.event === "credential.cooling")).toEqual([expect.objectContaining({ credential: from, reason: "rate limit", instances: ["worker-2"] })])
      expect(log.find((l) => l.event === "credential.rotated" && l.instance === "worker-2")).toMatchObject({ from, to, reason: "rate limit" })
      expect(log.some((l) => l.event === "instance.restarting" && l.instance === "worker-2" && String(l.reason).startsWith(`rate limit on credential ${from}; moved to ${to}`))).toBe(true)

      // Relaunched on its host: its session there (not here), --continue, on the new key, its worktree there.
      const workdir = path.join(sshd.dir, "box", summary.runId)
      expect(there.relaunch).toMatchObject({ credential: to, resume: true })
      expect(String(there.relaunch.attach)).toContain(`tmux -L ${remoteTmux} `)
      expect(there.here).toBe(false)
      expect(there.cwd).toBe(path.join(workdir, "worktrees", "worker-2"))
      expect(there.cmdline).toContain("--continue")
      // The new key is in the environment of the claude process there (compared by digest).
      expect(there.keyDigest).toBe(sha256(keyNamed(to)))
      expect(log.some((l) => l.event === "instance.moved" || l.event === "host.down")).toBe(false)

      // Its conversation went on: its first request on the new key carried what it had done before the limit.
      const mine = seen.filter((s) => s.who === "worker-2")
      const limitedAt = mine.findIndex((s) => s.limited)
      expect(limitedAt).toBeGreaterThan(0)
      const after = mine.slice(limitedAt + 1)
      expect(after.length).toBeGreaterThan(0)
      expect(after.every((s) => s.key === to && !s.limited)).toBe(true)
      expect(after[0]!.toolResults).toBeGreaterThanOrEqual(1)

      // state.json: worker-2 on the new key, on the host; the old key cooling, with its limit counted.
      const state = JSON.parse(readFileSync(path.join(summary.runFolder, "state.json"), "utf8")) as {
        instances: Array<{ name: string; host?: string; credential: string; restarts: number; worktree: string }>
        credentials: Array<{ name: string; status: string; limits?: number; instances?: Array<string> }>
      }
      expect(state.instances.find((i) => i.name === "worker-2")).toMatchObject({ host: "box", credential: to, worktree: path.join(workdir, "worktrees", "worker-2") })
      expect(state.credentials.find((c) => c.name === from)).toMatchObject({ status: "cooling", limits: 1 })
      expect(state.credentials.find((c) => c.name === to)?.status).toBe("available")

      // Costs: the limited key is charged exactly what was served on it (the mock's ledger): worker-2's answers there
      // before the limit, read from its transcripts as copied back from its host. Its answers after the move count on
      // the new key; every answer in its transcripts on the host is counted. Nothing is left without a credential.
      const ledger = yield* mock.ledger
      const servedOn = (k: string) => (ledger[k]?.requests ?? 0) - (ledger[k]?.errors ?? 0) - (ledger[k]?.sideRequests ?? 0)
      expect(servedOn(from!)).toBe(limitedAt)
      expect(summary.costs.byCredential[from!]?.responses).toBe(limitedAt)
      expect(summary.costs.byCredential["(none)"]).toBeUndefined()
      const worker2Cost = summary.costs.instances.find((i) => i.name === "worker-2")
      expect(worker2Cost?.credential).toBe(to)
      const transcriptsThere = onHost(sshd, `find ${shellQuote(path.join(workdir, "instances", "worker-2", "claude", "projects"))} -name '*.jsonl' -exec cat {} +`)
      // (onHost trims its output: the last line's newline given back, or it would be taken for a line being written.)
      const spentThere = usageOf(parseTranscriptLines(`${transcriptsThere}\n`), new Set())
      expect(spentThere.responses).toBeGreaterThan(limitedAt)
      expect(worker2Cost?.responses).toBe(spentThere.responses)
      expect(worker2Cost?.usd).toBeCloseTo(spentThere.usd, 9)

      // Its work landed, committed on its host after the move.
      expect(filesOn(fixture.bare, "main")).toEqual(expect.arrayContaining(["src/em-1/worker-1.js", "src/em-1/worker-2.js"]))
      expect(fileOn(fixture.bare, "main", "src/em-1/worker-2.js")).toContain("written by worker-2")
      // No key in what cco wrote here or there (the run folder, the host's run folder), worktrees and transcripts
      // aside (the keys given to grep on its stdin, not in its argv).
      const grep = `grep -rlF --exclude=*.jsonl --exclude-dir=worktrees --exclude-dir=repo -f -`
      const keys = `${key(1)}\n${key(2)}\n${key(3)}\n`
      expect(spawnSync("sh", ["-c", `${grep} ${shellQuote(summary.runFolder)}`], { encoding: "utf8", input: keys }).stdout).toBe("")
      expect(onHost(sshd, `${grep} ${shellQuote(workdir)} || true`, keys)).toBe("")
      // The host's workdir is its own: nothing of it here.
      expect(readdirSync(path.join(sshd.dir, "box"))).toEqual([])
    }), { timeout: 240_000 })

  it.scopedLive("the remote worker's claude is killed on its host: the crash is noticed, it is restarted there with --continue, its stale git lock removed, its work lands", () =>
    Effect.gen(function*() {
      const sshd = yield* useSshdWithOwnFiles
      // Slow answers: worker-2 is still at its task when its claude is killed.
      const mock = yield* startMockModel({ brain: teamScript(), latencyMs: 700 })
      const fixture = yield* useFixture({
        workerCount: 2,
        mockUrl: mock.url,
        extra: { hosts: [{ name: "local" }, remoteHost(sshd, fakeClaudeBin)], healthCheckIntervalSeconds: 1 },
        maxRunDurationMinutes: 3
      })
      const remoteTmux = yield* useRemoteTmux(fixture.socket)

      // After worker-2's first tool call (its file written there, not committed): its claude killed on the host by
      // its pid on the host's tmux server, as if in the middle of a commit (git's index.lock left in its worktree).
      const killer = Effect.gen(function*() {
        yield* waitFor("worker-2's first tool call", Effect.sync(() =>
          readLog(latestRun(fixture)).some((l) => l.instance === "worker-2" && l.hook === "PostToolUse") ? true : undefined), 120_000, 20)
        const runId = path.basename(realpathSync(latestRun(fixture)))
        const session = `cco-${runId}-worker-2`
        const worktree = path.join(sshd.dir, "box", runId, "worktrees", "worker-2")
        const pid = panePidThere(sshd, remoteTmux, session)
        const q = shellQuote
        const killed = onHost(sshd, [
          `tr '\\0' ' ' < /proc/${q(pid)}/cmdline; echo`,
          `touch "$(git -C ${q(worktree)} rev-parse --path-format=absolute --git-path index.lock)"`,
          `test -f ${q(`${worktree}/src/em-1/worker-2.js`)} && echo written`,
          `kill -KILL ${q(pid)} && echo killed`
        ].join("; "))
        return { pid, killed, session }
      })

      const [summary, kill] = yield* Effect.all([runFixture(fixture, fakeClaudeBin), killer], { concurrency: "unbounded" })
      expect(kill.killed.split("\n")).toEqual([expect.stringContaining("fake-claude"), "written", "killed"])
      expect(summary.reason).toBe("project-done")
      const log = readLog(summary.runFolder)

      // Noticed as a crash (not a host that dropped), restarted once, on its host, continuing its conversation.
      expect(log.some((l) => l.event === "instance.restarting" && l.instance === "worker-2" && String(l.reason).startsWith("crashed"))).toBe(true)
      expect(log.some((l) => l.event === "host.down" || l.event === "instance.moved")).toBe(false)
      const launches = log.filter((l) => l.event === "instance.launched" && l.instance === "worker-2")
      expect(launches.length).toBe(2)
      expect(launches[1]).toMatchObject({ resume: true, session: kill.session })
      expect(String(launches[1]!.attach)).toContain(`tmux -L ${remoteTmux} `)
      expect(summary.instances.find((i) => i.name === "worker-2")?.restarts).toBe(1)
      expect(summary.instances.find((i) => i.name === "worker-1")?.restarts).toBe(0)
      // The git lock the killed claude left in its worktree there was removed (or it could not have committed).
      const workdir = path.join(sshd.dir, "box", summary.runId)
      expect(log.filter((l) => l.event === "worktree.lock-removed")).toEqual([
        expect.objectContaining({ instance: "worker-2", file: path.join(workdir, "repo", ".git", "worktrees", "worker-2", "index.lock") })
      ])
      // The file written there before the crash survived the restart, was committed there and landed.
      expect(fileOn(fixture.bare, "main", "src/em-1/worker-2.js")).toContain("written by worker-2")
      expect(filesOn(fixture.bare, "main")).toContain("src/em-1/worker-1.js")
      const state = JSON.parse(readFileSync(path.join(summary.runFolder, "state.json"), "utf8")) as {
        instances: Array<{ name: string; host?: string; restarts: number }>
      }
      expect(state.instances.find((i) => i.name === "worker-2")).toMatchObject({ host: "box", restarts: 1 })
      // Its sessions ended with the run, there as here.
      expect(spawnSync("tmux", ["-L", remoteTmux, "list-sessions"], { encoding: "utf8" }).stdout.trim()).toBe("")
    }), { timeout: 240_000 })
  it.scopedLive("the remote worker's only key is at its limit: it waits in its session there until the key cools down, then goes on with its conversation", () =>
    Effect.gen(function*() {
      const sshd = yield* useSshdWithOwnFiles
      const seen: Array<Seen> = []
      // The key's limit lasts 20 s; cco, told no reset time, lets it cool for its first backoff (60 s).
      const limiting = limitWorker2sKey(teamScript(), seen, 20)
      const mock = yield* startMockModel({ brain: limiting.brain, keyNames })
      const fixture = yield* useFixture({
        workerCount: 2,
        mockUrl: mock.url,
        keys: 1,
        extra: { hosts: [{ name: "local" }, remoteHost(sshd, fakeClaudeBin)], healthCheckIntervalSeconds: 1 },
        maxRunDurationMinutes: 4
      })
      const remoteTmux = yield* useRemoteTmux(fixture.socket)
      const summary = yield* runFixture(fixture, fakeClaudeBin)
      expect(summary.reason).toBe("project-done")
      const log = readLog(summary.runFolder)

      // Confirmed on its pane there; the only key cools; worker-2 waits for it, paused (rate-limited), not moved.
      expect(limiting.limitedKey()).toBe("key-1")
      expect(log.filter((l) => l.event === "api.error-unconfirmed")).toEqual([])
      const cooling = log.find((l) => l.event === "credential.cooling")
      expect(cooling).toMatchObject({ credential: "key-1", reason: "rate limit" })
      const until = Date.parse(String(cooling!.until))
      expect(log.find((l) => l.event === "credentials.exhausted" && l.instance === "worker-2")).toMatchObject({ until: cooling!.until, cooling: ["key-1"] })
      expect(log.some((l) => l.event === "instance.state" && l.instance === "worker-2" && l.to === "rate-limited")).toBe(true)
      expect(log.filter((l) => l.event === "credential.rotated" || l.event === "host.down" || l.event === "instance.moved")).toEqual([])
      expect(log.filter((l) => l.event === "instance.restarting" && l.instance === "worker-2")).toEqual([])

      // Once the key is usable again, told so in its session there (the same one: launched once, on the host).
      const launches = log.filter((l) => l.event === "instance.launched" && l.instance === "worker-2")
      expect(launches).toEqual([expect.objectContaining({ generation: 0, credential: "key-1" })])
      expect(String(launches[0]!.attach)).toContain(`tmux -L ${remoteTmux} `)
      const resumed = log.find((l) => l.event === "prompt.delivered" && l.instance === "worker-2" && Date.parse(String(l.time)) >= until)
      expect(resumed).toBeDefined()

      // It sent nothing while it waited; after the reset it went on with its conversation, on the same key.
      const mine = seen.filter((s) => s.who === "worker-2")
      const limitedAt = mine.findIndex((s) => s.limited)
      expect(limitedAt).toBeGreaterThan(0)
      expect(mine.filter((s) => s.limited)).toHaveLength(1)
      const after = mine.slice(limitedAt + 1)
      expect(after.length).toBeGreaterThan(0)
      expect(after.every((s) => s.key === "key-1" && s.at >= until - 1000)).toBe(true)
      expect(after[0]!.toolResults).toBeGreaterThanOrEqual(1)

      expect(fileOn(fixture.bare, "main", "src/em-1/worker-2.js")).toContain("written by worker-2")
      expect(filesOn(fixture.bare, "main")).toContain("src/em-1/worker-1.js")
      const state = JSON.parse(readFileSync(path.join(summary.runFolder, "state.json"), "utf8")) as {
        instances: Array<{ name: string; host?: string; restarts: number; credential: string }>
        credentials: Array<{ name: string; limits?: number }>
      }
      expect(state.instances.find((i) => i.name === "worker-2")).toMatchObject({ host: "box", restarts: 0, credential: "key-1" })
      expect(state.credentials.find((c) => c.name === "key-1")?.limits).toBe(1)
    }), { timeout: 300_000 })
})
