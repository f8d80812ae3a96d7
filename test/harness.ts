// End-to-end fixtures: a local bare repository with a project direction, a config directory pointing cco
// at it and at the mock model, and a run of the real orchestrator on a private tmux server.
import { Effect, Exit } from "effect"
import { execFileSync, spawn } from "node:child_process"
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { loadConfig } from "../src/Config.js"
import * as Orchestrator from "../src/Orchestrator.js"
import * as RunLayers from "../src/RunLayers.js"
import type { LogLine } from "../src/RunLog.js"
import { killTmuxServer, uniqueSocket } from "./support.js"

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
  /** HOME for the agents (see agentHome). */
  readonly home: string
  readonly socket: string
  readonly cleanup: () => void
}

/**
 * A home directory of their own for the agents a test or the demo starts, beside the config directory: an
 * empty .bashrc and a git identity. Claude Code's Bash tool snapshots the user's interactive shell; the
 * machine's own start-up files (say, `pyenv init`, whose rehash lock a killed shell can leave behind, making
 * every later shell wait 60 s) must not decide how long a test's commands take.
 */
export const agentHome = (root: string) => {
  const home = path.join(root, "home")
  mkdirSync(home, { recursive: true })
  writeFileSync(path.join(home, ".bashrc"), "")
  writeFileSync(path.join(home, ".gitconfig"), "[user]\n\tname = cco test\n\temail = test@cco.invalid\n")
  return home
}

export const makeFixture = (options: {
  readonly workerCount: number
  readonly groupSize?: number
  readonly mockUrl: string
  readonly keys?: number
  /** api-keys.json as given (subscription accounts), instead of `keys` generated API keys. */
  readonly accounts?: ReadonlyArray<object>
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
  writeFileSync(path.join(configDir, "api-keys.json"), JSON.stringify(options.accounts ?? keys, null, 2))
  const cleanup = () => {
    killTmuxServer(socket)
    // CCO_KEEP_E2E=1 keeps the run folder, worktrees and bare repository for inspection.
    if (process.env.CCO_KEEP_E2E === undefined) rmSync(root, { recursive: true, force: true })
  }
  return { root, bare, configDir, home: agentHome(root), socket, cleanup }
}

/**
 * A fixture for the current scope: removed when the scope closes. When the test fails or times out, the tail
 * of the newest run's combined.log goes to stderr first, so a stall on a CI machine can be read afterwards.
 */
export const useFixture = (options: Parameters<typeof makeFixture>[0]) =>
  Effect.acquireRelease(Effect.sync(() => makeFixture(options)), (fixture, exit) =>
    Effect.sync(() => {
      if (Exit.isFailure(exit)) {
        const tail = readLog(latestRun(fixture)).slice(-60).map((l) => JSON.stringify(l).slice(0, 300))
        process.stderr.write(`--- last ${tail.length} lines of ${latestRun(fixture)}/combined.log\n${tail.join("\n")}\n---\n`)
      }
      fixture.cleanup()
    }))

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
      extraEnv: { CLAUDE_CODE_MAX_RETRIES: "0", HOME: fixture.home, ...extraEnv },
      ...(onLog === undefined ? {} : { onLog })
    })
  }).pipe(Effect.provide(RunLayers.Live))

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

/** `cco run --config DIR` as a user starts it (bin/cco.js), with the given claude executable. */
export const ccoRun = (configDir: string, claudePath: string, extraArgs: ReadonlyArray<string> = []) => {
  const child = spawn(process.execPath, [path.join(projectRoot, "bin", "cco.js"), "run", "--config", configDir, ...extraArgs], {
    // The agents inherit cco's HOME: the fixture's agent home, beside the config directory.
    env: { ...process.env, CCO_CLAUDE_PATH: claudePath, CLAUDE_CODE_MAX_RETRIES: "0", HOME: agentHome(path.dirname(configDir)) },
    stdio: ["ignore", "pipe", "pipe"]
  })
  let output = ""
  child.stdout.on("data", (d) => (output += d))
  child.stderr.on("data", (d) => (output += d))
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code, signal) => resolve(code ?? (signal === null ? null : 128))))
  return { child, exited, output: () => output }
}
