import { FileSystem } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { execFile } from "node:child_process"
import { copyFileSync, mkdirSync, readFileSync, rmSync, symlinkSync, utimesSync, writeFileSync } from "node:fs"
import * as path from "node:path"
import { tempDir } from "./support.js"

const SECRET = "sk-ant-CLITESTSECRET-0123456789"
const version = (JSON.parse(readFileSync("package.json", "utf8")) as { version: string }).version

interface Result {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

/** Runs a command to completion; never fails, the exit code is part of the result. */
const spawnCli = (file: string, args: ReadonlyArray<string>, env: Record<string, string> = {}) =>
  Effect.async<Result>((resume) => {
    const child = execFile(file, args, { env: { ...process.env, NO_COLOR: "1", ...env }, timeout: 60_000 }, (error, stdout, stderr) =>
      resume(Effect.succeed({ code: error ? (typeof error.code === "number" ? error.code : -1) : 0, stdout, stderr })))
    child.stdin?.end()
  })

/** `cco` from source, as `npm run dev` runs it. */
const cco = (args: ReadonlyArray<string>, env?: Record<string, string>) =>
  spawnCli(process.execPath, ["--import", "tsx", "src/bin.ts", ...args], env)

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
})
