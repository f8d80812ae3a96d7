// cco from a plain TypeScript program (no CLI, no Effect in the caller): a temp bare repository, the project's
// mock model playing the team, and runOrchestration printing the run's events as they come. Ctrl-C aborts the
// run through its AbortSignal, which winds it down.
//   node --import tsx scripts/example-run.ts [--fake] [--workers N] [--socket NAME] [--keep]
//   --fake  the fast stand-in test/fake-agent/fake-claude.mjs instead of the real claude from devDependencies
import { Effect, Exit, Scope } from "effect"
import { execFileSync } from "node:child_process"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { runOrchestration, RunEvent, startMockModel, teamScript } from "../src/index.js"

const root = path.resolve(import.meta.dirname, "..")
const args = process.argv.slice(2)
const value = (name: string, fallback: string) => {
  const i = args.indexOf(name)
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : fallback
}
const fake = args.includes("--fake")
const keep = args.includes("--keep")
const workers = Number(value("--workers", "2"))
const socket = value("--socket", `cco-example-${process.pid}`)

const git = (cwd: string, ...a: Array<string>) =>
  execFileSync("git", a, {
    cwd,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, GIT_AUTHOR_NAME: "example", GIT_AUTHOR_EMAIL: "example@cco.invalid", GIT_COMMITTER_NAME: "example", GIT_COMMITTER_EMAIL: "example@cco.invalid" }
  }).trim()

/** A bare repository whose main branch holds a README and the project direction. */
const makeRepository = (dir: string) => {
  const bare = path.join(dir, "toolkit.git")
  const seed = path.join(dir, "seed")
  git(dir, "init", "-q", "--bare", "-b", "main", bare)
  git(dir, "clone", "-q", bare, seed)
  git(seed, "checkout", "-q", "-B", "main")
  writeFileSync(path.join(seed, "README.md"), "# toolkit\n")
  writeFileSync(path.join(seed, "PROJECT_DIRECTION.md"), "# Project direction\n\nBuild a tiny JavaScript toolkit: one small module per worker under src/, each checked with `node --check`.\n")
  git(seed, "add", "-A")
  git(seed, "commit", "-q", "-m", "initial")
  git(seed, "push", "-q", "origin", "main")
  return bare
}

/** One line per event; the raw log lines (Log) stay quiet. */
const describe = (event: RunEvent): string | undefined =>
  RunEvent.$match(event, {
    Starting: (e) => `Starting run ${e.runId} in ${e.folder}`,
    InstanceStarted: (e) => `InstanceStarted ${e.instance} (generation ${e.generation}${e.resumed ? ", resumed" : ""}, credential ${e.credential})`,
    InstanceReady: (e) => `InstanceReady ${e.instance}`,
    TaskAssigned: (e) => `TaskAssigned #${e.task} ${e.by} -> ${e.instance}: ${e.text.split("\n")[0]}`,
    TaskDone: (e) => `TaskDone ${e.instance}: ${e.summary}`,
    Merged: (e) => `Merged ${e.from} into ${e.into} (${e.commit.slice(0, 10)})`,
    MergeConflict: (e) => `MergeConflict ${e.from} into ${e.into}: ${e.files.join(", ")}`,
    Restarted: (e) => `Restarted ${e.instance}: ${e.reason}`,
    Rotated: (e) => `Rotated ${e.instance}: ${e.from} -> ${e.to}`,
    Cost: (e) => `Cost $${e.totalUsd.toFixed(4)}`,
    Finished: (e) => `Finished ${e.reason}`,
    Log: () => undefined
  })

const main = async (): Promise<number> => {
  const dir = mkdtempSync(path.join(tmpdir(), "cco-example-"))
  // The mock model is an Effect resource; this program holds its scope and closes it at the end.
  const scope = Effect.runSync(Scope.make())
  const controller = new AbortController()
  const onInterrupt = () => controller.abort(new Error("Ctrl-C"))
  process.once("SIGINT", onInterrupt)
  try {
    const mock = await Effect.runPromise(Scope.extend(startMockModel({ brain: teamScript() }), scope))
    const bare = makeRepository(dir)
    console.log(`example: ${workers} workers, ${fake ? "fake" : "real"} claude, mock model at ${mock.url}, tmux -L ${socket}`)
    const summary = await runOrchestration({
      repositoryUrl: bare,
      workerCount: workers,
      authMode: "api-keys-only",
      logDirectory: "logs",
      maxRunDurationMinutes: 10,
      tmuxSocket: socket,
      apiKeys: [{ name: "example-key", env: { ANTHROPIC_API_KEY: `sk-ant-example-${"0".repeat(32)}`, ANTHROPIC_BASE_URL: mock.url } }]
    }, {
      baseDir: dir,
      claudePath: fake ? path.join(root, "test", "fake-agent", "fake-claude.mjs") : path.join(root, "node_modules", ".bin", "claude"),
      // The mock answers at once; retries would only hide a mistake in the script.
      extraEnv: { CLAUDE_CODE_MAX_RETRIES: "0" },
      signal: controller.signal,
      onEvent: (event) => {
        const line = describe(event)
        if (line !== undefined) console.log(`  ${line}`)
      }
    })
    console.log(`example: run ${summary.runId} ended (${summary.reason}) after ${Math.round(summary.durationMs / 1000)} s; ${summary.merges.length} merges, ${summary.commitsOnTarget} new commits on ${summary.targetBranch}`)
    return summary.reason === "project-done" ? 0 : 1
  } catch (error) {
    console.error(`example: ${error instanceof Error ? error.message : String(error)}`)
    return error instanceof Error && error.name === "AbortError" ? 130 : 1
  } finally {
    process.off("SIGINT", onInterrupt)
    await Effect.runPromise(Scope.close(scope, Exit.void))
    try {
      execFileSync("tmux", ["-L", socket, "kill-server"], { stdio: "ignore" })
    } catch {
      // the run stopped its sessions, and with the last one the server
    }
    if (keep) console.log(`example: kept ${dir}`)
    else rmSync(dir, { recursive: true, force: true })
  }
}

process.exitCode = await main()
