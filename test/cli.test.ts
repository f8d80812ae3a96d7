import { FileSystem } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { execFile, execFileSync, spawnSync } from "node:child_process"
import { copyFileSync, mkdirSync, readFileSync, rmSync, symlinkSync, utimesSync, writeFileSync } from "node:fs"
import * as path from "node:path"
import { killTmuxServer, tempDir, uniqueSocket } from "./support.js"

const SECRET = "sk-ant-CLITESTSECRET-0123456789"
const version = (JSON.parse(readFileSync("package.json", "utf8")) as { version: string }).version

interface Result {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

/** Runs a command to completion; never fails, the exit code is part of the result. */
const spawnCli = (
  file: string,
  args: ReadonlyArray<string>,
  env: Record<string, string> = {},
  timeout = 60_000,
  killSignal: NodeJS.Signals = "SIGTERM"
) =>
  Effect.async<Result>((resume) => {
    const child = execFile(file, args, { env: { ...process.env, NO_COLOR: "1", ...env }, timeout, killSignal }, (error, stdout, stderr) =>
      resume(Effect.succeed({ code: error ? (typeof error.code === "number" ? error.code : -1) : 0, stdout, stderr })))
    child.stdin?.end()
  })

/** `cco` from source, as `npm run dev` runs it. */
const cco = (args: ReadonlyArray<string>, env?: Record<string, string>) =>
  spawnCli(process.execPath, ["--import", "tsx", "src/bin.ts", ...args], env)

/**
 * `cco` from source, killed after `seconds`: for what must fail at once rather than hang. SIGKILL, because a cco
 * blocked opening a FIFO cannot finish the interruption SIGTERM starts.
 */
const ccoQuick = (args: ReadonlyArray<string>, seconds = 45) =>
  spawnCli(process.execPath, ["--import", "tsx", "src/bin.ts", ...args], {}, seconds * 1000, "SIGKILL")

/** `cco` through the published executable. */
const ccoBin = (args: ReadonlyArray<string>) =>
  spawnCli("bin/cco.js", args, { CCO_SOCKET: "", CCO_INSTANCE: "", CCO_TOKEN: "" })

const configDir = (orchestrator: unknown, apiKeys?: unknown) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const dir = yield* tempDir("cco-cli-")
    yield* fs.writeFileString(`${dir}/orchestrator.json`, JSON.stringify(orchestrator))
    if (apiKeys !== undefined) yield* fs.writeFileString(`${dir}/api-keys.json`, JSON.stringify(apiKeys))
    return dir
  })

const good = { repositoryUrl: "https://example.test/org/repo.git", workerCount: 3, logDirectory: "logs" }
const keys = [{ name: "key-1", env: { ANTHROPIC_API_KEY: SECRET } }]

describe("cco command line", () => {
  it.scoped("validate prints the resolved configuration with secrets redacted", () =>
    Effect.gen(function*() {
      const dir = yield* configDir(good, keys)
      const r = yield* cco(["validate", "--config", dir], { CCO_CLAUDE_PATH: "/opt/claude/bin/claude" })
      expect(r.stderr).toBe("")
      expect(r.code).toBe(0)
      expect(r.stdout).toContain("<redacted>")
      expect(r.stdout).not.toContain("CLITESTSECRET")
      expect(JSON.parse(r.stdout)).toMatchObject({
        configDir: dir,
        repositoryUrl: good.repositoryUrl,
        workerCount: 3,
        logDirectory: `${dir}/logs`,
        branch: "main",
        authMode: "oauth",
        claudeCommand: "/opt/claude/bin/claude",
        apiKeys: [{ name: "key-1", env: { ANTHROPIC_API_KEY: "<redacted>" } }]
      })
    }).pipe(Effect.provide(NodeContext.layer)))

  it.scoped("a bad config prints one line on stderr, exits 2 and creates nothing", () =>
    Effect.gen(function*() {
      const fs = yield* FileSystem.FileSystem
      const dir = yield* configDir({ ...good, workerCount: 0 }, keys)
      const argvs = [["run", "--config", dir], ["--config", dir], ["validate", "--config", dir]]
      const results = yield* Effect.forEach(argvs, (args) => cco(args), { concurrency: "unbounded" })
      for (const [i, r] of results.entries()) {
        expect(r.code, argvs[i]!.join(" ")).toBe(2)
        expect(r.stdout).toBe("")
        expect(r.stderr).toBe(`cco: ${dir}/orchestrator.json: workerCount: must be a whole number from 1 to 20, got 0\n`)
      }
      expect(yield* fs.exists(`${dir}/logs`)).toBe(false)
      expect((yield* fs.readDirectory(dir)).sort()).toEqual(["api-keys.json", "orchestrator.json"])
    }).pipe(Effect.provide(NodeContext.layer)))

  it.scoped("a broken api-keys.json is reported without its secret", () =>
    Effect.gen(function*() {
      const dir = yield* configDir(good, [{ name: "key-1", env: { ANTHROPIC_API_KY: SECRET } }])
      const r = yield* cco(["validate", "--config", dir])
      expect(r.code).toBe(2)
      expect(r.stderr).toBe(`cco: ${dir}/api-keys.json: [0].env.ANTHROPIC_API_KY: unknown variable; did you mean ANTHROPIC_API_KEY?\n`)
      expect(r.stderr + r.stdout).not.toContain("CLITESTSECRET")
    }).pipe(Effect.provide(NodeContext.layer)))

  it.effect("--help lists the subcommands", () =>
    Effect.gen(function*() {
      const r = yield* cco(["--help"])
      expect(r.code).toBe(0)
      for (const name of ["run", "validate", "status", "cleanup", "doctor"]) {
        expect(r.stdout).toMatch(new RegExp(`- ${name} `))
      }
      expect(r.stdout).toContain("--config")
      expect(r.stdout).not.toMatch(/- (team|hook) /)
    }))

  it.effect("--version prints the package version", () =>
    Effect.gen(function*() {
      const [r, short] = yield* Effect.all([cco(["--version"]), cco(["-v"])], { concurrency: "unbounded" })
      expect(r.code).toBe(0)
      // Exactly one line, for scripts that read it.
      expect(r.stdout).toBe(`${version}\n`)
      expect(short.stdout).toBe(`${version}\n`)
    }))

  it.effect("status without a run to show says which run it needs", () =>
    Effect.gen(function*() {
      const r = yield* cco(["status"])
      expect(r.code).toBe(1)
      expect(r.stderr).toContain("which run?")
    }))

  it.effect("a usage error exits 2", () =>
    Effect.gen(function*() {
      const r = yield* cco(["validate"])
      expect(r.code).toBe(2)
      expect(r.stderr).toContain("--config")
    }))

  it.effect("bin/cco.js runs the CLI from a checkout and hands team/hook to the agent client", () =>
    Effect.gen(function*() {
      const [v, s, t] = yield* Effect.all([ccoBin(["--version"]), ccoBin(["status"]), ccoBin(["team", "status"])], {
        concurrency: "unbounded"
      })
      expect(v.code).toBe(0)
      expect(v.stdout.trim()).toBe(version)
      expect(s.code).toBe(1)
      expect(s.stderr).toContain("which run?")
      // Without the identity cco gives its agents, the client refuses; what matters is that the client answered.
      expect(t.code).not.toBe(0)
      expect(t.stderr + t.stdout).not.toContain("Invalid subcommand")
      expect(t.stderr + t.stdout).toMatch(/CCO_|cco team|not started by cco/i)
    }))

  it.scoped("bin/cco.js runs dist/ when it is built and not older than src/, else the sources", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("cco-bin-")
      for (const sub of ["bin", "dist", "src"]) mkdirSync(path.join(dir, sub))
      copyFileSync("bin/cco.js", path.join(dir, "bin", "cco.js"))
      copyFileSync("bin/cco-client.mjs", path.join(dir, "bin", "cco-client.mjs"))
      // tsx resolves from the copy's own node_modules, as in a checkout.
      symlinkSync(path.resolve("node_modules"), path.join(dir, "node_modules"))
      writeFileSync(path.join(dir, "dist", "bin.js"), 'console.log("from dist")\n')
      writeFileSync(path.join(dir, "src", "bin.ts"), 'console.log("from src")\n')
      const run = () => spawnCli(process.execPath, [path.join(dir, "bin", "cco.js"), "--version"])
      const at = (file: string, seconds: number) => utimesSync(path.join(dir, file), seconds, seconds)
      const now = Math.floor(Date.now() / 1000)
      at("src/bin.ts", now - 100)
      at("dist/bin.js", now - 50)
      expect((yield* run()).stdout.trim()).toBe("from dist")
      // An edited (or pulled) source file makes the build stale.
      at("src/bin.ts", now - 10)
      expect((yield* run()).stdout.trim()).toBe("from src")
      // No src/ (an installed package): dist/ whatever its age.
      rmSync(path.join(dir, "src"), { recursive: true })
      expect((yield* run()).stdout.trim()).toBe("from dist")
    }).pipe(Effect.provide(NodeContext.layer)))

  it.effect("npm run bench loads outside vitest (its modules share the test harness)", () =>
    Effect.gen(function*() {
      const r = yield* spawnCli(process.execPath, ["--import", "tsx", "scripts/bench.ts", "--help"])
      expect(r.stderr).toBe("")
      expect(r.code).toBe(0)
      expect(r.stdout).toContain("usage: npm run bench")
    }))

  it.scoped("an unknown option or command is refused by name, with the nearest known one, exit 2, before anything runs", () =>
    Effect.gen(function*() {
      const fs = yield* FileSystem.FileSystem
      const socket = uniqueSocket()
      yield* Effect.addFinalizer(() => Effect.sync(() => killTmuxServer(socket)))
      // A valid config whose repository is a local directory that is not one: a run that did start would create
      // its run folder under logs/ and fail at the clone, with no network and no claude.
      const dir = yield* tempDir("cco-cli-")
      mkdirSync(path.join(dir, "not-a-repo"))
      writeFileSync(path.join(dir, "orchestrator.json"), JSON.stringify({
        repositoryUrl: "not-a-repo",
        workerCount: 1,
        logDirectory: "logs",
        tmuxSocket: socket,
        claudeCommand: "/bin/false"
      }))
      const cases: Array<[ReadonlyArray<string>, string]> = [
        [["run", "--config", dir, "--resmue"], "cco run: unknown option --resmue; did you mean --resume?"],
        [["cleanup", "--config", dir, "--dryrun"], "cco cleanup: unknown option --dryrun; did you mean --dry-run?"],
        [["status", "--config", dir, "--jsn"], "cco status: unknown option --jsn; did you mean --json?"],
        [["run", "--verbose", "--config", dir], "cco run: unknown option --verbose; its options are --config, --resume, --dashboard (see cco run --help)"],
        [["--config", dir, "--dashboard"], "cco: unknown option --dashboard; it is an option of cco run"],
        [["dashboard", "--config", dir, "--prot", "8080"], "cco dashboard: unknown option --prot; did you mean --port?"],
        [["--config", dir, "--resume"], "cco: unknown option --resume; it is an option of cco run"],
        [["validate", "--cnofig", dir], "cco validate: unknown option --cnofig; did you mean --config?"],
        [["doctor", "--config", dir, "-x"], "cco doctor: unknown option -x; its options are --config (see cco doctor --help)"],
        [["run", "--config", dir, "--hlep"], "cco run: unknown option --hlep; did you mean --help?"],
        [["status", "--config", dir, "--watch=3"], "cco status: --watch takes no value (got --watch=3)"],
        [["rnu", "--config", dir], "cco: unknown command rnu; did you mean run?"],
        [["status", "--config", dir, "--\u001b[2J"], "cco status: unknown option --\\u{1b}[2J; its options are --config, --watch, --json (see cco status --help)"]
      ]
      const results = yield* Effect.forEach(cases, ([args]) => ccoQuick(args), { concurrency: 4 })
      for (const [i, r] of results.entries()) {
        const [args, message] = cases[i]!
        expect(r.stderr, args.join(" ")).toBe(`${message}\n`)
        expect(r.code, args.join(" ")).toBe(2)
        expect(r.stdout, args.join(" ")).toBe("")
      }
      expect((yield* fs.readDirectory(dir)).sort()).toEqual(["not-a-repo", "orchestrator.json"])
      // Known options, in any order, with = or a separate value, and after "--" anything, still work.
      const ok = yield* Effect.all([
        ccoQuick(["validate", `--config=${dir}`]),
        ccoQuick(["validate", "-c", dir, "--help"]),
        ccoQuick(["run", "--config", dir, "-h"]),
        ccoQuick(["status", "--json", "--config", dir, "--", "--no-such-folder"])
      ], { concurrency: "unbounded" })
      expect(ok.map((r) => r.code)).toEqual([0, 0, 0, 1])
      expect(ok[2]!.stdout).toContain("--resume")
      expect(ok[3]!.stderr).toContain("--no-such-folder: no such directory")
    }).pipe(Effect.provide(NodeContext.layer)), 120_000)

  it.effect("--help piped (not a terminal) is plain text, as are usage errors", () =>
    Effect.gen(function*() {
      // NO_COLOR empty counts as unset.
      const env = { NO_COLOR: "" }
      const [root, run, usage] = yield* Effect.all([cco(["--help"], env), cco(["run", "--help"], env), cco(["validate"], env)], {
        concurrency: "unbounded"
      })
      expect(root.code).toBe(0)
      expect(root.stdout).toContain("--config")
      expect(run.stdout).toContain("--resume")
      expect(usage.code).toBe(2)
      expect(usage.stderr).toContain("--config")
      for (const r of [root, run, usage]) expect(r.stdout + r.stderr).not.toContain("\u001b")
    }), 60_000)

  const hasScript = spawnSync("script", ["--version"]).status === 0
  it.effect.skipIf(!hasScript)("--help on a terminal is in colour, unless NO_COLOR is set", () =>
    Effect.gen(function*() {
      // script(1) gives the command a pseudo-terminal.
      const onTerminal = (noColor: string) =>
        spawnCli("script", ["-qec", `${process.execPath} --import tsx src/bin.ts --help`, "/dev/null"], { NO_COLOR: noColor })
      const [coloured, plain] = yield* Effect.all([onTerminal(""), onTerminal("1")], { concurrency: "unbounded" })
      expect(coloured.code).toBe(0)
      expect(coloured.stdout).toContain("\u001b[")
      expect(plain.code).toBe(0)
      expect(plain.stdout).toContain("--config")
      expect(plain.stdout).not.toContain("\u001b")
    }), 60_000)

  it.scoped("a FIFO in place of orchestrator.json, state.json or cco.lock fails at once (or is ignored), never hangs; status --watch piped clears no screen", () =>
    Effect.gen(function*() {
      const config = yield* tempDir("cco-cli-")
      execFileSync("mkfifo", [path.join(config, "orchestrator.json")])
      const run = yield* tempDir("cco-run-")
      execFileSync("mkfifo", [path.join(run, "state.json")])
      // A run folder whose state.json is fine and whose cco.lock is a FIFO.
      const locked = yield* tempDir("cco-run-")
      const now = new Date().toISOString()
      writeFileSync(path.join(locked, "state.json"), JSON.stringify({
        runId: "r1", runFolder: locked, repositoryUrl: "x", repoDir: path.join(locked, "repo"), targetBranch: "main",
        startedAt: now, deadline: now, endedAt: now, endReason: "project-done", tmuxSocket: uniqueSocket(), pid: 1,
        instances: [], board: { tasks: [] }, merges: []
      }))
      execFileSync("mkfifo", [path.join(locked, "cco.lock")])
      const [validate, status, cleanup, lockStatus, watch] = yield* Effect.all([
        ccoQuick(["validate", "--config", config]),
        ccoQuick(["status", run]),
        ccoQuick(["cleanup", "--dry-run", run]),
        ccoQuick(["status", "--json", locked]),
        // Watching until killed; piped, it does not clear a screen it does not have.
        ccoQuick(["status", "--watch", locked], 25)
      ], { concurrency: "unbounded" })
      expect(watch.stdout).toContain("refreshing every 2 s")
      expect(watch.stdout).not.toContain("\u001b")
      expect(validate.stderr).toBe(`cco: ${config}/orchestrator.json: is a FIFO (named pipe), not a regular file\n`)
      expect(validate.code).toBe(2)
      expect(status.stderr).toBe(`cco: ${run}/state.json: is a FIFO (named pipe), not a regular file\n`)
      expect(status.code).toBe(1)
      // cleanup reports it and goes on with the folder's layout.
      expect(cleanup.code, cleanup.stderr).not.toBe(-1)
      expect(cleanup.stdout + cleanup.stderr).toContain("is a FIFO (named pipe), not a regular file")
      expect(lockStatus.stderr).toBe("")
      expect(lockStatus.code).toBe(0)
      expect(JSON.parse(lockStatus.stdout)).toMatchObject({ alive: false, lockPid: null })
    }).pipe(Effect.provide(NodeContext.layer)), 120_000)
})
