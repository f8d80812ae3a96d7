// Files cco reads or rewrites where an agent can reach (its config dir, the run folder) are taken only as regular
// files: a FIFO put there must cost an error or be replaced, never hang cco.
import { FileSystem } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import { execFileSync, spawn } from "node:child_process"
import { lstatSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs"
import * as path from "node:path"
import { prepareConfigDir } from "../src/ClaudeCode.js"
import { makeCostTracker } from "../src/CostTracker.js"
import { Worktree } from "../src/Worktree.js"
import { tempDir } from "./support.js"

const mkfifo = (file: string) => execFileSync("mkfifo", [file])
const withNode = <A, E, R>(effect: Effect.Effect<A, E, R>) => effect.pipe(Effect.provide(NodeContext.layer))

describe("files an agent can reach are read as regular files only", () => {
  it.scoped("the cost tracker skips a FIFO among the transcripts", () =>
    withNode(Effect.gen(function*() {
      const configDir = yield* tempDir("cco-costs-")
      const project = path.join(configDir, "projects", "-work-x")
      mkdirSync(project, { recursive: true })
      mkfifo(path.join(project, "not-a-transcript.jsonl"))
      const tracker = yield* makeCostTracker([{ name: "worker-1", role: "worker", configDir }])
      expect((yield* tracker.poll).total.responses).toBe(0)
    })), 15_000)

  it.scoped("preparing a config dir replaces a FIFO, a directory or a link where .claude.json and settings.json go", () =>
    withNode(Effect.gen(function*() {
      const fs = yield* FileSystem.FileSystem
      const root = yield* tempDir("cco-prepare-")
      const configDir = path.join(root, "config")
      mkdirSync(configDir)
      mkfifo(path.join(configDir, ".claude.json"))
      mkdirSync(path.join(configDir, "settings.json"))
      const launch = {
        configDir,
        worktree: path.join(root, "worktree"),
        claudePath: "/bin/false",
        continueSession: false,
        credentialEnv: { ANTHROPIC_API_KEY: Redacted.make("sk-ant-test") },
        hookCommand: "true",
        extraEnv: {}
      }
      yield* prepareConfigDir(launch)
      for (const name of [".claude.json", "settings.json"]) {
        expect(lstatSync(path.join(configDir, name)).isFile(), name).toBe(true)
        expect(() => JSON.parse(readFileSync(path.join(configDir, name), "utf8"))).not.toThrow()
      }
      // A link is replaced, not written through: what it pointed at stays as it was.
      const elsewhere = path.join(root, "elsewhere.json")
      writeFileSync(elsewhere, "{\"keep\": true}\n")
      yield* fs.remove(path.join(configDir, ".claude.json"))
      symlinkSync(elsewhere, path.join(configDir, ".claude.json"))
      yield* prepareConfigDir(launch)
      expect(readFileSync(elsewhere, "utf8")).toBe("{\"keep\": true}\n")
      expect(lstatSync(path.join(configDir, ".claude.json")).isFile()).toBe(true)
    })), 15_000)

  it.scoped("a worktree whose .git is a FIFO: removing a stale lock fails instead of waiting", () =>
    withNode(Effect.gen(function*() {
      const dir = yield* tempDir("cco-worktree-")
      mkfifo(path.join(dir, ".git"))
      const worktree = yield* Worktree
      const error = yield* worktree.removeStaleLock(dir).pipe(Effect.flip)
      expect(error.message).toContain("not a regular file")
    }).pipe(Effect.provide(Worktree.Default))), 15_000)

  it.scoped("an env file that is a FIFO is not copied into a worktree", () =>
    withNode(Effect.gen(function*() {
      const repo = yield* tempDir("cco-repo-")
      const worktreeDir = yield* tempDir("cco-worktree-")
      execFileSync("git", ["init", "-q", worktreeDir])
      mkfifo(path.join(repo, ".env"))
      writeFileSync(path.join(repo, ".env.local"), "A=1\n")
      const worktree = yield* Worktree
      expect(yield* worktree.copyEnvFiles(repo, worktreeDir)).toEqual([".env.local"])
      expect(readFileSync(path.join(worktreeDir, ".env.local"), "utf8")).toBe("A=1\n")
    }).pipe(Effect.provide(Worktree.Default))), 15_000)

  it.scoped("scripts/cleanup.sh without the CLI does not wait on a FIFO state.json", () =>
    withNode(Effect.gen(function*() {
      const folder = yield* tempDir("cco-run-")
      mkfifo(path.join(folder, "state.json"))
      writeFileSync(path.join(folder, "combined.log"), "")
      // In a process group of its own, so that the whole group (the script, its subshells, their node) is
      // killed when it hangs.
      const result = yield* Effect.async<{ code: number | null; signal: string | null; out: string }>((resume) => {
        const child = spawn("scripts/cleanup.sh", ["--dry-run", folder], {
          env: { ...process.env, CCO_CLEANUP_STANDALONE: "1", CCO_CLEANUP_JSON: "node" },
          detached: true
        })
        let out = ""
        child.stdout.on("data", (d: Buffer) => (out += d.toString()))
        child.stderr.on("data", (d: Buffer) => (out += d.toString()))
        const timer = setTimeout(() => process.kill(-child.pid!, "SIGKILL"), 10_000)
        child.on("close", (code, signal) => {
          clearTimeout(timer)
          resume(Effect.succeed({ code, signal, out }))
        })
        return Effect.sync(() => {
          clearTimeout(timer)
          try {
            process.kill(-child.pid!, "SIGKILL")
          } catch {
            // already gone
          }
        })
      })
      expect(result.signal, result.out).toBeNull()
      expect(result.out).toContain("state.json missing or unreadable")
    })), 20_000)
})
