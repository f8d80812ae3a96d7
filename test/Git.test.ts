// The Git port against real git: the hardening every call carries, its errors, and that simple-git adds no wait.
import { FileSystem } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Layer } from "effect"
import { spawnSync } from "node:child_process"
import { Git } from "../src/Git.js"

const TestLayer = Layer.merge(Git.Default, NodeContext.layer)

/** A fresh repository with one commit, removed with the scope. */
const repository = Effect.gen(function*() {
  const fs = yield* FileSystem.FileSystem
  const dir = yield* fs.makeTempDirectoryScoped({ prefix: "cco-git-test-" }).pipe(Effect.orDie)
  const git = (...args: Array<string>) => spawnSync("git", args, { cwd: dir, encoding: "utf8", env: { ...process.env, LC_ALL: "C" } })
  git("init", "--quiet", "--initial-branch=main")
  git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "--quiet", "--allow-empty", "-m", "first")
  return dir
})

/** Sets environment variables for the duration of an effect. */
const withEnv = <A, E, R>(vars: Record<string, string>, effect: Effect.Effect<A, E, R>) =>
  Effect.acquireUseRelease(
    Effect.sync(() => {
      const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]))
      Object.assign(process.env, vars)
      return saved
    }),
    () => effect,
    (saved) =>
      Effect.sync(() => {
        for (const [k, v] of Object.entries(saved)) {
          if (v === undefined) delete process.env[k]
          else process.env[k] = v
        }
      })
  )

describe("Git", () => {
  it.layer(TestLayer)((it) => {
    it.scoped("every call runs without hooks, fsmonitor, prompts or editor; per-call config travels in the environment", () =>
      Effect.gen(function*() {
        const git = yield* Git
        const dir = yield* repository
        const value = (key: string, options?: { readonly config?: Record<string, string> }) =>
          git.output(dir, ["config", "--get", key], options).pipe(Effect.map((s) => s.trim()))
        expect(yield* value("core.hooksPath")).toBe("/dev/null")
        expect(yield* value("core.fsmonitor")).toBe("false")
        expect(yield* value("remote.cco-origin.url", { config: { "remote.cco-origin.url": "https://u:secret@example.invalid/r.git" } }))
          .toBe("https://u:secret@example.invalid/r.git")
        expect((yield* git.output(dir, ["var", "GIT_EDITOR"])).trim()).toBe(":")
        // What only argv could bring stays refused by simple-git: an alias that runs a program.
        const alias = yield* Effect.flip(git.output(dir, ["-c", "alias.e=!env", "e"]))
        expect(alias.message).toContain("allowUnsafeAlias")
      }))

    it.scoped("the hardening is in the environment git inherits, and the user's own environment still reaches it", () =>
      Effect.gen(function*() {
        const git = yield* Git
        const dir = yield* repository
        // Variables simple-git refuses unless allowed: a user's editor, pager, ssh command and global config.
        const env = yield* withEnv(
          { EDITOR: "vi", PAGER: "less", GIT_SSH_COMMAND: "ssh -o BatchMode=yes", GIT_CONFIG_GLOBAL: "/dev/null", CCO_TEST_MARK: "1" },
          git.output(dir, ["var", "-l"])
        )
        expect(env).toContain("core.hookspath=/dev/null")
        expect(env).toContain("GIT_EDITOR=:")
        const identity = yield* git.output(dir, ["var", "GIT_COMMITTER_IDENT"], { identity: true })
        expect(identity).toMatch(/^cco <cco@localhost> /)
      }))

    it.scoped("failures: a missing directory, a non-zero exit (run returns it, output fails with what git said), no git at all", () =>
      Effect.gen(function*() {
        const git = yield* Git
        const dir = yield* repository
        const missing = yield* Effect.flip(git.output(`${dir}/not-there`, ["status"]))
        expect(missing._tag).toBe("GitError")
        expect(missing.message).toBe(`directory ${dir}/not-there does not exist`)

        const result = yield* git.run(dir, ["rev-parse", "--verify", "--quiet", "refs/heads/nope"])
        expect(result.exitCode).toBe(1)
        const failed = yield* Effect.flip(git.output(dir, ["rev-parse", "--verify", "refs/heads/nope"]))
        expect(failed).toMatchObject({ operation: "git rev-parse --verify refs/heads/nope", repo: dir })
        expect(failed.message).toContain("fatal: Needed a single revision")
        const statusFailed = yield* Effect.flip(git.status(dir, ["--no-such-option"]))
        expect(statusFailed.message).toContain("unknown option")

        const noGit = yield* Effect.flip(withEnv({ PATH: "/nonexistent" }, git.run(dir, ["status"])))
        expect(noGit.message).toMatch(/^cannot run git: spawn git ENOENT/)
      }))

    it.scoped("a call that prints nothing costs no more than git itself (simple-git would wait 50 ms after each)", () =>
      Effect.gen(function*() {
        const git = yield* Git
        const dir = yield* repository
        const rounds = 20
        const silent = ["update-ref", "refs/heads/x", "HEAD"]
        const baselineStart = Date.now()
        for (let i = 0; i < rounds; i++) spawnSync("git", silent, { cwd: dir })
        const baseline = Date.now() - baselineStart
        const serviceStart = Date.now()
        for (let i = 0; i < rounds; i++) expect(yield* git.output(dir, silent)).toBe("")
        const service = Date.now() - serviceStart
        // With the 50 ms wait the service would need at least baseline + 20 × 50 ms.
        expect(service).toBeLessThan(baseline + rounds * 25)
      }))
  })
  it.scopedLive("an interrupted call stops at once (the git process is stopped with it)", () =>
    Effect.gen(function*() {
      const git = yield* Git
      const dir = yield* repository
      // Waits for input that never comes.
      const started = Date.now()
      const result = yield* git.run(dir, ["cat-file", "--batch"]).pipe(Effect.timeout(Duration.millis(300)), Effect.either)
      expect(result._tag).toBe("Left")
      expect(Date.now() - started).toBeLessThan(5000)
      // Our own child only; it gets SIGINT and may take a moment to go.
      const alive = () => spawnSync("pgrep", ["-P", String(process.pid), "-f", "cat-file --batch"], { encoding: "utf8" }).stdout.trim() !== ""
      for (let i = 0; i < 20 && alive(); i++) yield* Effect.sleep(Duration.millis(100))
      expect(alive()).toBe(false)
    }).pipe(Effect.provide(TestLayer)))
})
