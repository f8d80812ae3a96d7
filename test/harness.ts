// End-to-end fixtures: a local bare repository with a project direction, a config directory pointing cco
// at it and at the mock model, and a run of the real orchestrator on a private tmux server.
import { NodeContext } from "@effect/platform-node"
import { expect } from "@effect/vitest"
import { Effect } from "effect"
import { execFileSync, spawn } from "node:child_process"
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { loadConfig } from "../src/Config.js"
import * as Orchestrator from "../src/Orchestrator.js"
import type { LogLine } from "../src/RunLog.js"
import { startMockModel } from "../src/MockModel.js"
import { hangCommand, teamScript } from "../src/TeamScript.js"
import { endLeftovers, leftovers, removeSocketFile, uniqueSocket, waitFor } from "./support.js"

export const projectRoot = path.resolve(import.meta.dirname, "..")
export const claudeBin = path.join(projectRoot, "node_modules", ".bin", "claude")
export const fakeClaudeBin = path.join(projectRoot, "test", "fake-agent", "fake-claude.mjs")

export const git = (cwd: string, ...args: Array<string>) =>
  execFileSync("git", args, {
    cwd,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, GIT_AUTHOR_NAME: "t", GIT_AUTHOR_EMAIL: "t@t", GIT_COMMITTER_NAME: "t", GIT_COMMITTER_EMAIL: "t@t" }
  }).trim()

export const DIRECTION = `# Project direction

Build a tiny JavaScript toolkit, one small module per worker under src/, each checked with node --check.
Done when every module is on the target branch.
`

/** A bare repository holding README.md and (unless omitted) PROJECT_DIRECTION.md on main. */
export const makeBareRepo = (root: string, options: { readonly direction?: string | undefined } = {}) => {
  const bare = path.join(root, "origin.git")
  const seed = path.join(root, "seed")
  git(root, "init", "-q", "--bare", "-b", "main", bare)
  git(root, "clone", "-q", bare, seed)
  git(seed, "checkout", "-q", "-b", "main")
  writeFileSync(path.join(seed, "README.md"), "# toolkit\n")
  if (options.direction !== undefined) writeFileSync(path.join(seed, "PROJECT_DIRECTION.md"), options.direction)
  git(seed, "add", "-A")
  git(seed, "commit", "-q", "-m", "initial")
  git(seed, "push", "-q", "origin", "main")
  return bare
}

export interface Fixture {
  readonly root: string
  readonly bare: string
  readonly configDir: string
  readonly socket: string
  readonly cleanup: () => void
}

export const makeFixture = (options: {
  readonly workerCount: number
  readonly groupSize?: number
  readonly mockUrl: string
  readonly keys?: number
  readonly useRunBranch?: boolean
  readonly direction?: string | undefined
  readonly maxRunDurationMinutes?: number
  /** More orchestrator.json options (supervisor thresholds, limits). */
  readonly extra?: Readonly<Record<string, unknown>>
}): Fixture => {
  const root = mkdtempSync(path.join(tmpdir(), "cco-e2e-"))
  const bare = makeBareRepo(root, { direction: "direction" in options ? options.direction : DIRECTION })
  const configDir = path.join(root, "config")
  mkdirSync(configDir)
  const socket = uniqueSocket()
  writeFileSync(path.join(configDir, "orchestrator.json"), JSON.stringify({
    repositoryUrl: bare,
    workerCount: options.workerCount,
    engineerManagerGroupSize: options.groupSize ?? 4,
    useRunBranch: options.useRunBranch ?? false,
    authMode: "api-keys-only",
    logDirectory: "logs",
    maxRunDurationMinutes: options.maxRunDurationMinutes ?? 10,
    tmuxSocket: socket,
    ...options.extra
  }, null, 2))
  const keys = Array.from({ length: options.keys ?? 1 }, (_, i) => ({
    name: `key-${i + 1}`,
    env: { ANTHROPIC_API_KEY: `sk-ant-test-key-${i + 1}-${"x".repeat(24)}`, ANTHROPIC_BASE_URL: options.mockUrl }
  }))
  writeFileSync(path.join(configDir, "api-keys.json"), JSON.stringify(keys, null, 2))
  const cleanup = () => {
    try {
      execFileSync("tmux", ["-L", socket, "kill-server"], { stdio: "ignore" })
    } catch {
      // no server left
    }
    removeSocketFile(socket)
    // CCO_KEEP_E2E=1 keeps the run folder, worktrees and bare repository for inspection.
    if (process.env.CCO_KEEP_E2E === undefined) rmSync(root, { recursive: true, force: true })
  }
  return { root, bare, configDir, socket, cleanup }
}

/** Loads the fixture's config and runs the orchestrator with the given claude executable. */
export const runFixture = (
  fixture: Fixture,
  claudePath: string,
  onLog?: (line: LogLine) => void,
  extraEnv: Readonly<Record<string, string>> = {}
) =>
  Effect.gen(function*() {
    const config = yield* loadConfig(fixture.configDir)
    return yield* Orchestrator.run(config, {
      claudePath,
      clientCommand: [process.execPath, path.join(projectRoot, "bin", "cco-client.mjs")],
      projectRoot,
      basePath: process.env.PATH ?? "/usr/bin:/bin",
      extraEnv: { CLAUDE_CODE_MAX_RETRIES: "0", ...extraEnv },
      ...(onLog === undefined ? {} : { onLog })
    })
  }).pipe(Effect.provide(NodeContext.layer))

/** Files on a branch of the bare repository. */
export const filesOn = (bare: string, branch: string) => git(bare, "ls-tree", "-r", "--name-only", branch).split("\n")
export const fileOn = (bare: string, branch: string, file: string) => git(bare, "show", `${branch}:${file}`)

/** combined.log of a run folder as parsed lines (what has been written so far). */
export const readLog = (runFolder: string): Array<Record<string, unknown>> => {
  try {
    return readFileSync(path.join(runFolder, "combined.log"), "utf8").trim().split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as Record<string, unknown>)
  } catch {
    return []
  }
}

/** The newest run folder under a fixture's logs. */
export const latestRun = (fixture: Fixture) => path.join(fixture.configDir, "logs", "latest")

/** The pid of the program in an instance's pane. */
export const panePid = (fixture: Fixture, session: string) =>
  Number(execFileSync("tmux", ["-L", fixture.socket, "display-message", "-p", "-t", `=${session}:`, "#{pane_pid}"], { encoding: "utf8" }).trim())

/**
 * Waits until worker-1 has made its first tool call (its file is written, not yet committed), then kills the
 * program in its pane with SIGKILL. Returns its pid and command line (Linux).
 */
export const killWorkerAfterFirstTool = (fixture: Fixture) =>
  Effect.gen(function*() {
    const log = yield* waitFor("worker-1's first tool call", Effect.sync(() => {
      const lines = readLog(latestRun(fixture))
      return lines.some((l) => l.instance === "worker-1" && l.hook === "PostToolUse") ? lines : undefined
    }), 90_000, 20)
    expect(existsSync(path.join(latestRun(fixture), "worktrees", "worker-1", "src/em-1/worker-1.js"))).toBe(true)
    const pid = panePid(fixture, `cco-${String(log[0]!.runId)}-worker-1`)
    const command = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ")
    process.kill(pid, "SIGKILL")
    return { pid, command }
  })

/** What a crash of worker-1 must leave once the run is over: one restart with --continue, and its file on main. */
export const expectCrashRecovered = (fixture: Fixture, summary: Orchestrator.RunSummary) => {
  expect(summary.reason).toBe("project-done")
  const log = readLog(summary.runFolder)
  expect(log.some((l) => l.event === "instance.restarting" && l.instance === "worker-1" && String(l.reason).startsWith("crashed"))).toBe(true)
  expect(log.some((l) => l.event === "instance.launched" && l.instance === "worker-1" && l.resume === true)).toBe(true)
  expect(summary.instances.find((i) => i.name === "worker-1")?.restarts).toBe(1)
  // The file written before the crash survived the restart and landed.
  expect(fileOn(fixture.bare, "main", "src/em-1/worker-1.js")).toContain("written by worker-1")
}

/**
 * One worker whose tool hangs until cco restarts it, run to the end with the given CLI: the stuck ladder runs in
 * order (nudge, interrupt, restart), the hanging process does not outlive the instance, and the work lands.
 */
export const hungWorkerRecovers = (claudePath: string, extra: Readonly<Record<string, unknown>>) =>
  Effect.gen(function*() {
    const mock = yield* startMockModel({ brain: teamScript({ hangUntilRestart: ["worker-1"] }) })
    const fixture = makeFixture({ workerCount: 1, mockUrl: mock.url, extra })
    yield* Effect.addFinalizer(() => Effect.sync(fixture.cleanup))
    yield* endLeftovers(fixture.root, hangCommand)
    const summary = yield* runFixture(fixture, claudePath)
    expect(summary.reason).toBe("project-done")
    // The hanging command did not outlive the instance that ran it (nor the restart, nor the run).
    expect(leftovers(fixture.root, hangCommand)).toEqual([])
    const steps = readLog(summary.runFolder)
      .filter((l) => l.instance === "worker-1" && ["supervisor.nudge", "supervisor.interrupt", "instance.restarting"].includes(String(l.event)))
      .map((l) => String(l.event))
    // The ladder in order; after the restart the supervisor may still nudge an idle worker along.
    expect(steps.slice(0, 3)).toEqual(["supervisor.nudge", "supervisor.interrupt", "instance.restarting"])
    expect(filesOn(fixture.bare, "main")).toContain("src/em-1/worker-1.js")
  })

/** `cco run --config DIR` as a user starts it (bin/cco.js), with the given claude executable. */
export const ccoRun = (configDir: string, claudePath: string, extraArgs: ReadonlyArray<string> = []) => {
  const child = spawn(process.execPath, [path.join(projectRoot, "bin", "cco.js"), "run", "--config", configDir, ...extraArgs], {
    env: { ...process.env, CCO_CLAUDE_PATH: claudePath, CLAUDE_CODE_MAX_RETRIES: "0" },
    stdio: ["ignore", "pipe", "pipe"]
  })
  let output = ""
  child.stdout.on("data", (d) => (output += d))
  child.stderr.on("data", (d) => (output += d))
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code, signal) => resolve(code ?? (signal === null ? null : 128))))
  return { child, exited, output: () => output }
}

/**
 * Two workers busy, then the orchestrator is killed with SIGKILL and `cco run --resume` takes over: the live
 * sessions are re-attached and the run completes with both workers' files on main.
 */
export const orchestratorKilledThenResumed = (claudePath: string, extra: Readonly<Record<string, unknown>>) =>
  Effect.gen(function*() {
    const mock = yield* startMockModel({ brain: teamScript(), latencyMs: 400 })
    const fixture = makeFixture({ workerCount: 2, mockUrl: mock.url, extra: { ...extra, idleAfterSeconds: 2 } })
    yield* Effect.addFinalizer(() => Effect.sync(fixture.cleanup))
    const first = ccoRun(fixture.configDir, claudePath)
    yield* Effect.addFinalizer(() => Effect.sync(() => first.child.exitCode === null && first.child.kill("SIGKILL")))
    yield* waitFor("both workers busy", Effect.sync(() => {
      const busy = new Set(readLog(latestRun(fixture)).filter((l) => l.hook === "UserPromptSubmit").map((l) => l.instance))
      return busy.has("worker-1") && busy.has("worker-2") ? true : undefined
    }), 90_000, 20)
    // The orchestrator itself (bin/cco.js may be a wrapper around it): its pid is in cco.lock.
    const orchestratorPid = Number(readFileSync(path.join(latestRun(fixture), "cco.lock"), "utf8").trim())
    process.kill(orchestratorPid, "SIGKILL")
    yield* Effect.promise(() => first.exited)

    const second = ccoRun(fixture.configDir, claudePath, ["--resume"])
    yield* Effect.addFinalizer(() => Effect.sync(() => second.child.exitCode === null && second.child.kill("SIGKILL")))
    const code = yield* Effect.promise(() => second.exited)
    expect(code, second.output()).toBe(0)
    const log = readLog(latestRun(fixture))
    expect(log.some((l) => l.event === "run.resuming")).toBe(true)
    expect(log.filter((l) => l.event === "instance.attached").length).toBeGreaterThan(0)
    expect(log.at(-1)).toMatchObject({ event: "run.finished", reason: "project-done" })
    const files = filesOn(fixture.bare, "main")
    expect(files).toContain("src/em-1/worker-1.js")
    expect(files).toContain("src/em-1/worker-2.js")
  })
