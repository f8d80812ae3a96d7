// cco as a library: makeConfig and the typed events, whole fake-agent runs through runOrchestration (to the end,
// and aborted midway through an AbortSignal), runWithEvents, and the example scripts.
import { describe, expect, it } from "@effect/vitest"
import { Effect, Redacted, Stream } from "effect"
import { execFile, execFileSync } from "node:child_process"
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import * as path from "node:path"
import {
  type ConfigInput,
  makeConfig,
  RunAborted,
  RunEvent,
  runOrchestration,
  runWithEvents,
  startMockModel,
  teamScript,
  type TeamScriptOptions,
  toRunEvent
} from "../src/index.js"
import type { LogLine } from "../src/RunLog.js"
import { DIRECTION, fakeClaudeBin, git, makeBareRepo, projectRoot, readLog } from "./harness.js"
import { killTmuxServer, uniqueSocket } from "./support.js"

const KEY = `sk-ant-test-key-1-${"x".repeat(24)}`

const killServer = killTmuxServer

/** The sessions on a tmux server ("" when the server is gone). */
const sessionsOn = (socket: string) => {
  try {
    return execFileSync("tmux", ["-L", socket, "list-sessions", "-F", "#{session_name}"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim()
  } catch {
    return ""
  }
}

/** A temp folder with a bare repository, a private tmux socket and the mock model; all removed at the end. */
const fixture = (brain: TeamScriptOptions, extra: Partial<ConfigInput> = {}) =>
  Effect.gen(function*() {
    const mock = yield* startMockModel({ brain: teamScript(brain) })
    const root = mkdtempSync(path.join(tmpdir(), "cco-lib-"))
    const socket = uniqueSocket()
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        killServer(socket)
        rmSync(root, { recursive: true, force: true })
      })
    )
    const bare = makeBareRepo(root, { direction: DIRECTION })
    const input: ConfigInput = {
      repositoryUrl: bare,
      workerCount: 2,
      authMode: "api-keys-only",
      logDirectory: "logs",
      maxRunDurationMinutes: 10,
      tmuxSocket: socket,
      apiKeys: [{ name: "key-1", env: { ANTHROPIC_API_KEY: KEY, ANTHROPIC_BASE_URL: mock.url } }],
      ...extra
    }
    return { root, bare, socket, input }
  })

const line = (event: string, fields: Record<string, unknown> = {}): LogLine => ({ time: "2026-11-25T10:00:00.000Z", event, ...fields })

describe("makeConfig", () => {
  it.effect("applies the defaults of orchestrator.json, resolves paths against baseDir and wraps keys in Redacted", () =>
    Effect.gen(function*() {
      const root = mkdtempSync(path.join(tmpdir(), "cco-lib-"))
      yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(root, { recursive: true, force: true })))
      const bare = makeBareRepo(root, {})
      const config = yield* makeConfig({
        repositoryUrl: path.relative(root, bare),
        workerCount: 3,
        authMode: "api-keys-first",
        logDirectory: "runs",
        claudeCommand: "./bin/claude",
        apiKeys: [
          { name: "a", env: { ANTHROPIC_API_KEY: "sk-plain" } },
          { name: "b", env: { ANTHROPIC_API_KEY: Redacted.make("sk-wrapped") } }
        ]
      }, { baseDir: root })
      expect(config.repositoryUrl).toBe(bare)
      expect(config.logDirectory).toBe(path.join(root, "runs"))
      expect(config.claudeCommand).toBe(path.join(root, "bin", "claude"))
      expect(config.configDir).toBe(root)
      expect([config.branch, config.tmuxSocket, config.engineerManagerGroupSize, config.maxRunDurationMinutes]).toEqual(["main", "cco", 4, 120])
      expect(config.apiKeys.map((k) => k.name)).toEqual(["a", "b"])
      expect(config.apiKeys.map((k) => Redacted.value(k.env.ANTHROPIC_API_KEY!))).toEqual(["sk-plain", "sk-wrapped"])
      expect(JSON.stringify(config)).not.toContain("sk-plain")
    }).pipe(Effect.scoped))

  it.effect("fails with one ConfigError naming the field, never quoting a secret", () =>
    Effect.gen(function*() {
      const remote = { repositoryUrl: "https://example.invalid/x.git" }
      const cases: ReadonlyArray<[unknown, string]> = [
        [{ ...remote, workerCount: 0 }, "config object: workerCount: must be a whole number from 1 to 20, got 0"],
        [{ ...remote }, "config object: workerCount: is required"],
        [{ ...remote, workerCount: 1, wokerCount: 2 }, "config object: wokerCount: unknown option; did you mean workerCount?"],
        [{ ...remote, workerCount: 1, authMode: "api-keys-only" }, "config object: apiKeys: authMode \"api-keys-only\" needs at least one API key"],
        [{ ...remote, workerCount: 1, apiKeys: [{ name: "a", env: { ANTHROPIC_API_KEY: "sk secret" } }] }, "config object: apiKeys[0].env.ANTHROPIC_API_KEY: must not contain spaces or line breaks"],
        [{ repositoryUrl: "./no-such-repo", workerCount: 1 }, "config object: repositoryUrl: no repository at /nowhere/no-such-repo (a relative path is taken from /nowhere)"]
      ]
      for (const [input, summary] of cases) {
        const error = yield* Effect.flip(makeConfig(input as ConfigInput, { baseDir: "/nowhere" }))
        expect(error._tag).toBe("ConfigError")
        expect(error.summary).toBe(summary)
        expect(error.summary).not.toContain("sk secret")
      }
    }))
})

describe("toRunEvent", () => {
  it("types the log lines a user acts on and keeps the rest as Log", () => {
    expect(toRunEvent(line("instance.launched", { instance: "em-1", generation: 0, credential: "key-1", resume: false, session: "s" })))
      .toEqual(RunEvent.InstanceStarted({ time: "2026-11-25T10:00:00.000Z", instance: "em-1", generation: 0, resumed: false, credential: "key-1" }))
    expect(toRunEvent(line("hook", { instance: "em-1", generation: 1, hook: "SessionStart" }))._tag).toBe("InstanceReady")
    expect(toRunEvent(line("hook", { instance: "em-1", generation: 1, hook: "Stop" }))._tag).toBe("Log")
    expect(toRunEvent(line("task.assigned", { instance: "worker-1", by: "em-1", task: 3, text: "do it" })))
      .toMatchObject({ _tag: "TaskAssigned", instance: "worker-1", by: "em-1", task: 3, text: "do it" })
    expect(toRunEvent(line("task.done", { instance: "worker-1", summary: "did it" }))).toMatchObject({ _tag: "TaskDone", summary: "did it" })
    expect(toRunEvent(line("merge.done", { from: "worker-1", branch: "cco/r/worker-1", into: "main", commit: "abc" })))
      .toMatchObject({ _tag: "Merged", from: "worker-1", into: "main", commit: "abc" })
    expect(toRunEvent(line("merge.conflict", { from: "worker-2", into: "main", files: ["a.js"] }))).toMatchObject({ _tag: "MergeConflict", files: ["a.js"] })
    expect(toRunEvent(line("instance.restarting", { instance: "worker-1", reason: "crashed", restarts: 1 }))).toMatchObject({ _tag: "Restarted", reason: "crashed" })
    expect(toRunEvent(line("credential.rotated", { instance: "worker-1", from: "key-1", to: "key-2" }))).toMatchObject({ _tag: "Rotated", from: "key-1", to: "key-2" })
    expect(toRunEvent(line("cost.update", { totalUsd: 0.25, tokens: 10 }))).toMatchObject({ _tag: "Cost", totalUsd: 0.25 })
    expect(toRunEvent(line("run.finished", { reason: "time-limit", merges: 0 }))).toMatchObject({ _tag: "Finished", reason: "time-limit" })
    // A line without the fields its kind promises is passed on untyped rather than guessed at.
    const odd = line("run.finished", { reason: "no-such-reason" })
    expect(toRunEvent(odd)).toEqual(RunEvent.Log({ time: odd.time, line: odd }))
    expect(toRunEvent(line("wip.saved", { instance: "worker-1" }))._tag).toBe("Log")
  })
})

describe("runOrchestration with the fake agent", () => {
  it.scopedLive("W=2 to the end: every event in a sensible order, and the summary", () =>
    Effect.gen(function*() {
      const f = yield* fixture({})
      const config = yield* makeConfig(f.input, { baseDir: f.root })
      const events: Array<RunEvent> = []
      const summary = yield* Effect.promise(() => runOrchestration(config, { claudePath: fakeClaudeBin, onEvent: (e) => events.push(e) }))

      expect(summary.reason).toBe("project-done")
      expect(summary.instances.map((i) => i.name)).toEqual(["em-1", "worker-1", "worker-2"])
      const of = <T extends RunEvent["_tag"]>(tag: T) => events.filter((e): e is Extract<RunEvent, { _tag: T }> => e._tag === tag)
      const at = (predicate: (e: RunEvent) => boolean) => {
        const i = events.findIndex(predicate)
        expect(i).toBeGreaterThanOrEqual(0)
        return i
      }

      expect(events[0]).toMatchObject({ _tag: "Starting", runId: summary.runId, folder: summary.runFolder })
      // Instances launch four at a time, so their order among themselves is not fixed.
      expect(of("InstanceStarted").map((e) => [e.instance, e.generation, e.resumed, e.credential]).sort()).toEqual([
        ["em-1", 0, false, "key-1"],
        ["worker-1", 0, false, "key-1"],
        ["worker-2", 0, false, "key-1"]
      ])
      expect(of("InstanceReady").map((e) => e.instance).sort()).toEqual(["em-1", "worker-1", "worker-2"])
      expect(of("TaskAssigned").map((e) => [e.by, e.instance, e.task])).toEqual([["em-1", "worker-1", 1], ["em-1", "worker-2", 2]])
      expect(of("TaskDone").map((e) => e.instance)).toEqual(expect.arrayContaining(["worker-1", "worker-2"]))
      expect(of("TaskDone").at(-1)?.instance).toBe("em-1")
      expect(of("Merged").map((e) => [e.from, e.into]).sort()).toEqual([["worker-1", "main"], ["worker-2", "main"]])
      expect(events.at(-1)).toMatchObject({ _tag: "Finished", reason: "project-done" })
      expect(of("Finished")).toHaveLength(1)

      // Per worker: started, assigned, done, merged; the EM reports the project done only after both merges.
      const emDone = at((e) => e._tag === "TaskDone" && e.instance === "em-1")
      for (const w of ["worker-1", "worker-2"]) {
        const started = at((e) => e._tag === "InstanceStarted" && e.instance === w)
        const assigned = at((e) => e._tag === "TaskAssigned" && e.instance === w)
        const done = at((e) => e._tag === "TaskDone" && e.instance === w)
        const merged = at((e) => e._tag === "Merged" && e.from === w)
        expect([started < assigned, assigned < done, done < merged, merged < emDone]).toEqual([true, true, true, true])
      }

      // The summary and the events tell the same story, and both match combined.log line for line.
      expect(summary.merges.map((m) => m.commit)).toEqual(of("Merged").map((e) => e.commit))
      const fromFile = readLog(summary.runFolder).map((l) => toRunEvent(l as LogLine))
      expect(events).toEqual(fromFile)
      for (const w of ["worker-1", "worker-2"]) expect(git(f.bare, "ls-tree", "-r", "--name-only", "main")).toContain(`src/em-1/${w}.js`)
      expect(sessionsOn(f.socket)).toBe("")
    }), { timeout: 120_000 })

  it.scopedLive("an AbortSignal winds the run down: rejected with RunAborted, state interrupted, sessions gone, worktrees kept", () =>
    Effect.gen(function*() {
      // Workers hang in their first command; nothing restarts them within the test.
      const f = yield* fixture({ hangUntilRestart: ["worker-1", "worker-2"] }, { stuckAfterSeconds: 600, idleAfterSeconds: 600 })
      const controller = new AbortController()
      const stop = new Error("enough for this test")
      const events: Array<RunEvent> = []
      const outcome = yield* Effect.promise(() =>
        runOrchestration(f.input, {
          baseDir: f.root,
          claudePath: fakeClaudeBin,
          signal: controller.signal,
          onEvent: (e) => {
            events.push(e)
            if (e._tag === "TaskAssigned") controller.abort(stop)
          }
        }).then((summary) => ({ summary }), (error: unknown) => ({ error }))
      )

      expect("error" in outcome).toBe(true)
      const error = (outcome as { error: unknown }).error
      expect(error).toBeInstanceOf(RunAborted)
      const aborted = error as RunAborted
      expect(aborted.name).toBe("AbortError")
      expect(aborted.reason).toBe(stop)
      const started = events.find((e) => e._tag === "Starting")
      expect(started).toBeDefined()
      const folder = (started as Extract<RunEvent, { _tag: "Starting" }>).folder
      expect(aborted.runFolder).toBe(folder)
      expect(aborted.message).toContain("enough for this test")

      // The promise settled only after the wind-down: state written, lock gone, sessions stopped, worktrees kept.
      const state = JSON.parse(readFileSync(path.join(folder, "state.json"), "utf8")) as { endReason?: string }
      expect(state.endReason).toBe("interrupted")
      expect(existsSync(path.join(folder, "cco.lock"))).toBe(false)
      expect(sessionsOn(f.socket)).toBe("")
      for (const name of ["em-1", "worker-1", "worker-2"]) expect(existsSync(path.join(folder, "worktrees", name))).toBe(true)
      const log = readLog(folder)
      expect(log.some((l) => l.event === "run.interrupted")).toBe(true)
      expect(log.find((l) => l.event === "run.ending")?.reason).toBe("interrupted")
      // The wind-down's own lines reached the caller too.
      expect(events.some((e) => e._tag === "Log" && e.line.event === "run.ending")).toBe(true)
      expect(events.at(-1)).toMatchObject({ _tag: "Finished", reason: "interrupted" })
    }), { timeout: 120_000 })

  it.scopedLive("runWithEvents: the events as a Stream, the summary as an Effect", () =>
    Effect.gen(function*() {
      const f = yield* fixture({}, { workerCount: 1 })
      const run = yield* runWithEvents(makeConfig(f.input, { baseDir: f.root }), { claudePath: fakeClaudeBin })
      const merges = yield* run.events.pipe(Stream.filter(RunEvent.$is("Merged")), Stream.runCollect)
      const summary = yield* run.summary
      expect(summary.reason).toBe("project-done")
      expect([...merges].map((m) => m.commit)).toEqual(summary.merges.map((m) => m.commit))
      expect([...merges].map((m) => m.from)).toEqual(["worker-1"])
    }), { timeout: 120_000 })
})

/** Runs a script under tsx and returns its exit code and output. */
const runScript = (script: string, args: ReadonlyArray<string>) =>
  Effect.async<{ code: number; out: string }>((resume) => {
    const child = execFile(
      process.execPath,
      ["--import", "tsx", path.join(projectRoot, "scripts", script), ...args],
      { cwd: projectRoot, timeout: 150_000, maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) => resume(Effect.succeed({ code: error ? (typeof error.code === "number" ? error.code : 1) : 0, out: stdout + stderr }))
    )
    return Effect.sync(() => child.kill("SIGKILL"))
  })

describe("example scripts", () => {
  it.scopedLive("example-run.ts --fake runs a whole team in-process and prints its events", () =>
    Effect.gen(function*() {
      const socket = uniqueSocket()
      yield* Effect.addFinalizer(() => Effect.sync(() => killServer(socket)))
      const result = yield* runScript("example-run.ts", ["--fake", "--socket", socket])
      expect(result.out).toMatch(/TaskAssigned #1 em-1 -> worker-1/)
      expect(result.out).toMatch(/Merged worker-2 into main/)
      expect(result.out).toContain("Finished project-done")
      expect(result.code).toBe(0)
    }), { timeout: 180_000 })

  it.scopedLive("example-layers.ts --fake prints the merges from its own subscriber and leaves no session", () =>
    Effect.gen(function*() {
      const socket = uniqueSocket()
      yield* Effect.addFinalizer(() => Effect.sync(() => killServer(socket)))
      const result = yield* runScript("example-layers.ts", ["--fake", "--socket", socket])
      expect(result.out).toMatch(/merged worker-1 into main \([0-9a-f]{10}\)/)
      expect(result.out).toMatch(/merged worker-2 into main \([0-9a-f]{10}\)/)
      expect(result.out).toMatch(/ended: project-done; 2 merges; sessions left on the server: 0/)
      expect(result.code).toBe(0)
    }), { timeout: 180_000 })
})
