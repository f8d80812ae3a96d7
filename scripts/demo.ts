// `npm run demo`: a whole cco run on this machine with no account and no network. A local bare repository
// holds a small project, the project's mock model plays every role, and the real `claude` from
// devDependencies runs in tmux, driven by the real `cco run`.
//   npm run demo -- [--workers N] [--keep] [--dashboard]
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Console, Effect } from "effect"
import { execFileSync, spawn } from "node:child_process"
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { startMockModel } from "../src/MockModel.js"
import { rateLimitKey, teamScript } from "../src/TeamScript.js"
import { removeSocketFiles } from "../src/TmuxFiles.js"
import { agentHome } from "../test/harness.js"

const root = path.resolve(import.meta.dirname, "..")
const args = process.argv.slice(2)
const flag = (name: string) => args.includes(name)
const value = (name: string, fallback: string) => {
  const i = args.indexOf(name)
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : fallback
}
if (flag("--help")) {
  console.log("usage: npm run demo -- [--workers N] [--keep] [--dashboard]\n  --workers N  workers in the demo team (default 5: a Director and two EMs)\n  --keep       keep the temp folder, bare repository, worktrees and logs\n  --dashboard  serve the run's dashboard (cco run --dashboard); open the URL it prints")
  process.exit(0)
}
const workers = Number(value("--workers", "5"))
const keep = flag("--keep")
const dashboard = flag("--dashboard")

const git = (cwd: string, ...a: Array<string>) =>
  execFileSync("git", a, {
    cwd,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, GIT_AUTHOR_NAME: "demo", GIT_AUTHOR_EMAIL: "demo@cco.invalid", GIT_COMMITTER_NAME: "demo", GIT_COMMITTER_EMAIL: "demo@cco.invalid" }
  }).trim()

const DIRECTION = `# Project direction

Build "toolkit", a tiny JavaScript library: one small module per worker under src/, each module checked
with \`node --check\`. The project is done when every module is merged on the target branch.
`

const demoKey = (n: number) => `sk-ant-demo-${n}-${String(n).repeat(30)}`

const setup = (dir: string, mockUrl: string, socket: string) => {
  const bare = path.join(dir, "toolkit.git")
  const seed = path.join(dir, "seed")
  git(dir, "init", "-q", "--bare", "-b", "main", bare)
  git(dir, "clone", "-q", bare, seed)
  git(seed, "checkout", "-q", "-B", "main")
  writeFileSync(path.join(seed, "README.md"), "# toolkit\n\nA tiny JavaScript library built by a cco team.\n")
  writeFileSync(path.join(seed, "PROJECT_DIRECTION.md"), DIRECTION)
  writeFileSync(path.join(seed, "package.json"), JSON.stringify({ name: "toolkit", version: "0.0.0", type: "module" }, null, 2) + "\n")
  git(seed, "add", "-A")
  git(seed, "commit", "-q", "-m", "toolkit: project direction")
  git(seed, "push", "-q", "origin", "main")
  const config = path.join(dir, "config")
  mkdirSync(config)
  writeFileSync(path.join(config, "orchestrator.json"), JSON.stringify({
    repositoryUrl: bare,
    workerCount: workers,
    useRunBranch: true,
    authMode: "api-keys-only",
    logDirectory: path.join(dir, "logs"),
    maxRunDurationMinutes: 10,
    // A short run: the supervisor checks often and nudges an idle instance that owes work after 30 s.
    healthCheckIntervalSeconds: 5,
    idleAfterSeconds: 30,
    escalationIntervalSeconds: 30,
    tmuxSocket: socket
  }, null, 2))
  writeFileSync(path.join(config, "api-keys.json"), JSON.stringify([1, 2].map((n) => ({
    name: `demo-key-${n}`,
    env: { ANTHROPIC_API_KEY: demoKey(n), ANTHROPIC_BASE_URL: mockUrl }
  })), null, 2))
  return { bare, config }
}

const runCco = (config: string) =>
  Effect.async<number>((resume) => {
    const child = spawn(process.execPath, [path.join(root, "bin", "cco.js"), "run", "--config", config, ...(dashboard ? ["--dashboard"] : [])], {
      stdio: ["ignore", "inherit", "inherit"],
      // A group of its own: Ctrl-C reaches cco once, forwarded by this script, not twice.
      detached: true,
      // The agents get a home of their own (they inherit cco's): this machine's shell start-up files neither slow
      // the demo down nor get disturbed by it.
      env: { ...process.env, CCO_CLAUDE_PATH: path.join(root, "node_modules", ".bin", "claude"), CLAUDE_CODE_MAX_RETRIES: "0", HOME: agentHome(path.dirname(config)) }
    })
    const exited = new Promise<void>((r) => child.on("exit", () => r()))
    child.on("exit", (code, signal) => resume(Effect.succeed(code ?? (signal ? 128 : 1))))
    // Interrupted (Ctrl-C): let cco wind down once, and wait for it before anything is removed.
    return Effect.promise(() => {
      if (child.exitCode === null) child.kill("SIGINT")
      return Promise.race([exited, new Promise<void>((r) => setTimeout(r, 30_000))])
    })
  })

const main = Effect.gen(function*() {
  const started = Date.now()
  const dir = mkdtempSync(path.join(tmpdir(), "cco-demo-"))
  const socket = `cco-demo-${process.pid}`
  yield* Effect.addFinalizer(() =>
    Effect.sync(() => {
      try {
        execFileSync("tmux", ["-L", socket, "kill-server"], { stdio: "ignore" })
      } catch {
        // the run stopped its sessions already
      }
      removeSocketFiles(socket)
      if (keep) console.log(`\nkept: ${dir}`)
      else rmSync(dir, { recursive: true, force: true })
    })
  )
  // demo-key-1 hits its rate limit after a few requests, so rotation to demo-key-2 is seen.
  const brain = rateLimitKey(teamScript(), { apiKey: demoKey(1), afterRequests: 4, retryAfterSeconds: 600 })
  const mock = yield* startMockModel({ brain, keyNames: Object.fromEntries([1, 2].map((n) => [demoKey(n), `demo-key-${n}`])) })
  const { bare, config } = setup(dir, mock.url, socket)
  yield* Console.log(`cco demo: ${workers} workers, mock model at ${mock.url}, repository ${bare}\n`)
  const code = yield* runCco(config)
  if (code !== 0) return yield* Effect.fail(`cco run exited with code ${code}; logs: ${path.join(dir, "logs", "latest")}`)

  const target = git(bare, "for-each-ref", "--format=%(refname:short)", "refs/heads/run/")
  const files = git(bare, "ls-tree", "-r", "--name-only", target).split("\n")
  const missing = Array.from({ length: workers }, (_, i) => `worker-${i + 1}`).filter((w) => !files.some((f) => f.endsWith(`/${w}.js`)))
  yield* Console.log(`\nWhat landed on ${target} in ${bare}:`)
  yield* Console.log(git(bare, "log", "--graph", "--oneline", "--decorate=short", target, "-n", "25"))
  const ledger = yield* mock.ledger
  yield* Console.log(`\nmock model served: ${Object.entries(ledger).map(([k, e]) => `${k}: ${e.requests} requests, ${e.input_tokens + e.output_tokens} tokens`).join("; ")}`)
  if (missing.length > 0) return yield* Effect.fail(`work of ${missing.join(", ")} is missing on ${target}`)
  const log = readFileSync(path.join(dir, "logs", "latest", "combined.log"), "utf8")
  if (!log.includes('"event":"credential.rotated"')) return yield* Effect.fail("no instance was moved off the rate-limited key")
  yield* Console.log(`\ndemo finished in ${Math.round((Date.now() - started) / 1000)} s: every worker's module is on ${target}.`)
}).pipe(
  Effect.scoped,
  Effect.tapError((e) => Console.error(`\ndemo FAILED: ${e}`)),
  Effect.provide(NodeContext.layer)
)

NodeRuntime.runMain(main)
