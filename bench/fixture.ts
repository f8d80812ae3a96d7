// A benchmark run's world: a local bare repository with a project direction, a config directory on a private
// tmux server (cco-bench-<random>), the mock model, and the orchestrator run in this process or as `cco run`.
import { Effect, Exit, Fiber, Scope } from "effect"
import { closeSync, existsSync, mkdirSync, openSync, readSync, fstatSync, writeFileSync } from "node:fs"
import * as path from "node:path"
import { loadConfig } from "../src/Config.js"
import { makeBareRepo } from "../test/harness.js"
import { type MockModelHandle, startMockModel } from "../src/MockModel.js"
import * as Orchestrator from "../src/Orchestrator.js"
import * as RunLayers from "../src/RunLayers.js"
import type { LogLine } from "../src/RunLog.js"
import { benchBrain } from "./brain.js"
import { clientScript, fakeClaude, newSocket, projectRoot, tempDir } from "./util.js"

export const DIRECTION = `# Project direction

Build a tiny JavaScript toolkit, one small module per worker under src/. Done when every module is on main.
`

export interface Fixture {
  readonly root: string
  readonly bare: string
  readonly configDir: string
  readonly logDirectory: string
  readonly socket: string
}

export const BENCH_KEY = `sk-ant-bench-key-${"x".repeat(24)}`

/** workerCount 20 with the default group size of 4: Director + 5 EMs + 20 workers = 26 instances. */
export const makeFixture = (mockUrl: string, workerCount = 20, extra: Readonly<Record<string, unknown>> = {}): Fixture => {
  const root = tempDir("cco-bench-")
  const bare = makeBareRepo(root, { direction: DIRECTION })
  const configDir = path.join(root, "config")
  mkdirSync(configDir)
  const socket = newSocket()
  writeFileSync(path.join(configDir, "orchestrator.json"), JSON.stringify({
    repositoryUrl: bare,
    workerCount,
    useRunBranch: false,
    authMode: "api-keys-only",
    logDirectory: "logs",
    maxRunDurationMinutes: 60,
    tmuxSocket: socket,
    ...extra
  }, null, 2))
  writeFileSync(path.join(configDir, "api-keys.json"), JSON.stringify([
    { name: "bench-key", env: { ANTHROPIC_API_KEY: BENCH_KEY, ANTHROPIC_BASE_URL: mockUrl } }
  ], null, 2))
  return { root, bare, configDir, logDirectory: path.join(configDir, "logs"), socket }
}

/** The mock model for every benchmark, on its own scope (closed by `close`). */
export const startMock = async (): Promise<{ readonly mock: MockModelHandle; readonly close: () => Promise<void> }> => {
  const scope = Effect.runSync(Scope.make())
  const mock = await Effect.runPromise(Scope.extend(startMockModel({ brain: benchBrain, keyNames: { [BENCH_KEY]: "bench-key" } }), scope))
  return { mock, close: () => Effect.runPromise(Scope.close(scope, Exit.void)) }
}

export interface InProcessRun {
  readonly folder: () => string | undefined
  readonly runId: () => string | undefined
  /** Interrupts the run (cco winds down: sessions stopped, work saved); bounded. */
  readonly stop: (timeoutMs: number) => Promise<void>
  readonly done: Promise<Exit.Exit<Orchestrator.RunSummary, Orchestrator.RunError>>
}

/**
 * `cco run` in this process, as the tests' harness runs it, with every combined.log line handed to onLog; the
 * fake agent unless another claude (and e.g. HOME for it) is given.
 */
export const runInProcess = (
  fixture: Fixture,
  onLog: (line: LogLine) => void,
  options: { readonly claudePath?: string; readonly extraEnv?: Readonly<Record<string, string>> } = {}
): InProcessRun => {
  let folder: string | undefined
  let runId: string | undefined
  const program = Effect.gen(function*() {
    const config = yield* loadConfig(fixture.configDir)
    return yield* Orchestrator.run(config, {
      claudePath: options.claudePath ?? fakeClaude,
      clientCommand: [process.execPath, clientScript],
      projectRoot,
      basePath: process.env.PATH ?? "/usr/bin:/bin",
      extraEnv: { CLAUDE_CODE_MAX_RETRIES: "0", ...options.extraEnv },
      onLog,
      onStart: (info) => {
        folder = info.folder
        runId = info.runId
      }
    })
  }).pipe(
    Effect.mapError((e) => e._tag === "RunError" ? e : new Orchestrator.RunError({ reason: "config", message: e.message })),
    Effect.provide(RunLayers.Live)
  )
  const fiber = Effect.runFork(program)
  const done = Effect.runPromise(Fiber.await(fiber))
  return {
    folder: () => folder,
    runId: () => runId,
    done,
    stop: async (timeoutMs) => {
      const interrupted = Effect.runPromise(Fiber.interrupt(fiber))
      await Promise.race([interrupted, new Promise((r) => setTimeout(r, timeoutMs))])
    }
  }
}

/** Follows a combined.log written by another process: parsed lines, as they come. */
export const followLog = (file: string) => {
  let offset = 0
  let rest = ""
  const lines: Array<Record<string, unknown>> = []
  const poll = () => {
    if (!existsSync(file)) return lines
    const fd = openSync(file, "r")
    try {
      const size = fstatSync(fd).size
      if (size > offset) {
        const buffer = Buffer.alloc(size - offset)
        readSync(fd, buffer, 0, buffer.length, offset)
        offset = size
        const text = rest + buffer.toString("utf8")
        const parts = text.split("\n")
        rest = parts.pop() ?? ""
        for (const p of parts) {
          if (p.trim() === "") continue
          try {
            lines.push(JSON.parse(p) as Record<string, unknown>)
          } catch {
            // a torn line cannot happen with whole-line appends; ignore anything odd
          }
        }
      }
    } finally {
      closeSync(fd)
    }
    return lines
  }
  return { poll, lines }
}
