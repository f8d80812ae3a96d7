// cco status, cco cleanup (and scripts/cleanup.sh) and cco doctor on a run folder built by hand: a real clone with
// real worktrees, real tmux sessions on a private server, plus an unrelated session and worktree that must survive.
import { FileSystem } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Either, Layer, Redacted } from "effect"
import { execFile, execFileSync, spawnSync } from "node:child_process"
import { copyFileSync, mkdirSync, symlinkSync, writeFileSync } from "node:fs"
import * as path from "node:path"
import * as Cleanup from "../src/Cleanup.js"
import * as Doctor from "../src/Doctor.js"
import { Git } from "../src/Git.js"
import { decodeRunState, LOCK_FILE, type RunState, STATE_FILE } from "../src/RunState.js"
import * as Status from "../src/Status.js"
import * as Tmux from "../src/Tmux.js"
import { claudeBin, DIRECTION, git, makeBareRepo, projectRoot } from "./harness.js"
import { privateTmux, tempDir, uniqueSocket } from "./support.js"

/** What the CLI's edge provides. */
const Live = Layer.merge(NodeContext.layer, Git.Default)

const RUN_ID = "2026-11-25_21-28-19"
const branchOf = (name: string) => `cco/${RUN_ID}/${name}`
const sessionOf = (name: string) => `cco-${RUN_ID}-${name}`
const iso = (ms: number) => new Date(ms).toISOString()

interface Result {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

/** Runs a program to completion; never fails, the exit code is part of the result. */
const spawn = (file: string, args: ReadonlyArray<string>, env: Record<string, string> = {}) =>
  Effect.async<Result>((resume) => {
    const child = execFile(file, args, {
      cwd: projectRoot,
      env: { ...process.env, NO_COLOR: "1", ...env },
      timeout: 90_000
    }, (error, stdout, stderr) =>
      resume(Effect.succeed({ code: error ? (typeof error.code === "number" ? error.code : -1) : 0, stdout, stderr })))
    child.stdin?.end()
  })

/** The real CLI, through the published executable. */
const cco = (args: ReadonlyArray<string>, env?: Record<string, string>) =>
  spawn(process.execPath, [path.join(projectRoot, "bin", "cco.js"), ...args], env)

const cleanupScript = (args: ReadonlyArray<string>, env?: Record<string, string>) =>
  spawn(path.join(projectRoot, "scripts", "cleanup.sh"), args, env)

const sessionsOn = (socket: string): ReadonlyArray<string> => {
  const r = spawnSync("tmux", ["-L", socket, "list-sessions", "-F", "#{session_name}"], { encoding: "utf8" })
  return r.status === 0 ? r.stdout.split("\n").filter((s) => s !== "").sort() : []
}
const worktreesOf = (repoDir: string) =>
  git(repoDir, "worktree", "list", "--porcelain").split("\n").filter((l) => l.startsWith("worktree ")).map((l) => l.slice(9)).sort()
const branchesOf = (repoDir: string) => git(repoDir, "for-each-ref", "--format=%(refname:short)", "refs/heads").split("\n").sort()
const exists = (p: string) => Effect.flatMap(FileSystem.FileSystem, (fs) => fs.exists(p))

/** A process id that is certainly not running: a child that has already exited. */
const deadPid = () => spawnSync("true").pid!

interface FakeRun {
  readonly root: string
  readonly bare: string
  readonly configDir: string
  readonly logDir: string
  readonly folder: string
  readonly repoDir: string
  readonly socket: string
  readonly names: ReadonlyArray<string>
  readonly sessions: ReadonlyArray<string>
  readonly worktrees: ReadonlyArray<string>
  /** Left alone by cleanup: a session on the same server, one whose name only extends the run's, and their worktree. */
  readonly unrelatedSessions: ReadonlyArray<string>
  readonly unrelatedWorktree: string
  readonly state: RunState
}

/**
 * A run folder as a finished (or, with `lockPid`, live) orchestrator leaves it. em-1 and worker-1 are merged into main,
 * worker-2 has a commit of its own; `cco/other-run/worker-1` belongs to another run. The tmux server is killed and
 * the temp dir removed when the test's scope closes.
 */
const makeRun = (options: { readonly workers?: number; readonly lockPid?: number; readonly live?: boolean } = {}) =>
  Effect.gen(function*() {
    const root = yield* tempDir("cco-ops-")
    const socket = uniqueSocket()
    const tmux = Context.get(yield* Layer.build(privateTmux(socket)), Tmux.Tmux)
    const bare = makeBareRepo(root, { direction: DIRECTION })
    const logDir = path.join(root, "logs")
    const folder = path.join(logDir, RUN_ID)
    const repoDir = path.join(folder, "repo")
    mkdirSync(folder, { recursive: true })
    symlinkSync(RUN_ID, path.join(logDir, "latest"))
    git(root, "clone", "-q", bare, repoDir)
    const names = ["em-1", ...Array.from({ length: options.workers ?? 2 }, (_, i) => `worker-${i + 1}`)]
    const worktrees = names.map((n) => path.join(folder, "worktrees", n))
    for (const [i, name] of names.entries()) git(repoDir, "worktree", "add", "-q", "-b", branchOf(name), worktrees[i]!, "main")
    git(worktrees[1]!, "commit", "-q", "--allow-empty", "-m", "worker-1 work")
    git(repoDir, "merge", "-q", "--ff-only", branchOf("worker-1"))
    git(worktrees[2]!, "commit", "-q", "--allow-empty", "-m", "worker-2 work, not merged")
    git(repoDir, "branch", "cco/other-run/worker-1", "main")
    const unrelatedWorktree = path.join(root, "unrelated-worktree")
    git(repoDir, "worktree", "add", "-q", "-b", "unrelated", unrelatedWorktree, "main")
    for (const name of names) writeFileSync(path.join(folder, `session-${name}.log`), "")
    writeFileSync(path.join(folder, "combined.log"), JSON.stringify({ time: iso(Date.now()), event: "run.starting" }) + "\n")

    const sessions = names.map(sessionOf)
    const unrelatedSessions = ["unrelated", sessionOf("em-10")]
    yield* Effect.forEach(
      [...sessions.map((name, i) => ({ name, cwd: worktrees[i]! })), ...unrelatedSessions.map((name) => ({ name, cwd: root }))],
      ({ cwd, name }) => tmux.newSession({ name, cwd, command: ["sleep", "600"] }),
      { concurrency: 8, discard: true }
    )

    const now = Date.now()
    const state: RunState = {
      runId: RUN_ID,
      runFolder: folder,
      repositoryUrl: bare,
      repoDir,
      targetBranch: "main",
      startedAt: iso(now - 10 * 60_000),
      deadline: iso(now + 110 * 60_000),
      ...(options.live === true ? {} : { endedAt: iso(now - 60_000), endReason: "project-done" }),
      tmuxSocket: socket,
      pid: options.lockPid ?? deadPid(),
      instances: names.map((name, i) => ({
        name,
        role: i === 0 ? "em" as const : "worker" as const,
        ...(i === 0 ? {} : { lead: "em-1", currentTask: `#${i} done: build module ${i}` }),
        branch: branchOf(name),
        worktree: worktrees[i]!,
        session: sessionOf(name),
        status: "stopped",
        generation: 1,
        restarts: i === 2 ? 1 : 0,
        credential: "key-1",
        lastEventAt: iso(now - 90_000),
        costUsd: 0.25 * (i + 1)
      })),
      board: {
        tasks: names.slice(1).map((name, i) => ({
          id: i + 1,
          assignee: name,
          assignedBy: "em-1",
          text: `build module ${i + 1}`,
          status: "done" as const,
          assignedAt: iso(now - 500_000),
          updatedAt: iso(now - 90_000)
        }))
      },
      merges: [{ from: branchOf("worker-1"), into: "main", commit: git(repoDir, "rev-parse", "main") }],
      costUsd: 1.5
    }
    const text = JSON.stringify(state, null, 2) + "\n"
    // The fixture is what the orchestrator would write: it decodes with the real schema.
    yield* decodeRunState(text)
    writeFileSync(path.join(folder, STATE_FILE), text)
    if (options.lockPid !== undefined) writeFileSync(path.join(folder, LOCK_FILE), `${options.lockPid}\n`)

    const configDir = path.join(root, "config")
    mkdirSync(configDir)
    writeFileSync(path.join(configDir, "orchestrator.json"), JSON.stringify({
      repositoryUrl: bare,
      workerCount: names.length - 1,
      authMode: "api-keys-only",
      logDirectory: "../logs",
      tmuxSocket: socket
    }))
    writeFileSync(path.join(configDir, "api-keys.json"), JSON.stringify([{ name: "key-1", env: { ANTHROPIC_API_KEY: "sk-ant-ops-test-0000000000000000" } }]))
    return { root, bare, configDir, logDir, folder, repoDir, socket, names, sessions, worktrees, unrelatedSessions, unrelatedWorktree, state } satisfies FakeRun
  })

/** Everything cleanup may touch, for before/after comparisons. */
const inventory = (run: FakeRun) => ({
  sessions: sessionsOn(run.socket),
  worktrees: worktreesOf(run.repoDir),
  branches: branchesOf(run.repoDir)
})

const sorted = (items: ReadonlyArray<string>) => [...items].sort()

describe("cco status", () => {
  it.scopedLive("--json and the table show every instance of a finished run, found through --config or the folder", () =>
    Effect.gen(function*() {
      const run = yield* makeRun({ lockPid: deadPid() })
      const [json, table] = yield* Effect.all([cco(["status", "--json", "--config", run.configDir]), cco(["status", run.folder])], {
        concurrency: "unbounded"
      })
      expect(json.stderr).toBe("")
      expect(json.code).toBe(0)
      const doc = JSON.parse(json.stdout)
      expect(doc).toMatchObject({
        runId: RUN_ID,
        folder: run.folder,
        targetBranch: "main",
        endReason: "project-done",
        alive: false,
        timeLeftSeconds: null,
        sessionsAlive: 3,
        costUsd: 1.5,
        tmuxSocket: run.socket
      })
      expect(doc.instances.map((i: { name: string }) => i.name)).toEqual(run.names)
      for (const i of doc.instances) {
        expect(i.sessionAlive).toBe(true)
        expect(i.secondsSinceLastEvent).toBeGreaterThanOrEqual(90)
      }

      expect(table.stderr).toBe("")
      expect(table.code).toBe(0)
      const lines = table.stdout.split("\n")
      for (const name of run.names) {
        const row = lines.find((l) => l.startsWith(`${name} `))
        expect(row, name).toBeDefined()
        expect(row).toContain(branchOf(name))
        expect(row).toMatch(/ stopped +up +key-1 /)
      }
      expect(table.stdout).toMatch(/^orchestrator +not running \(pid \d+ is gone, stale cco\.lock; run cco cleanup\)$/m)
      expect(table.stdout).toMatch(/^ended +.*\(project-done\)$/m)
      expect(table.stdout).toMatch(/^merges +1$/m)
      expect(table.stdout).toMatch(/^cost +\$1\.50$/m)
      expect(table.stdout).toMatch(new RegExp(`^sessions +3 of 3 up on tmux -L ${run.socket}$`, "m"))
      expect(table.stdout).toContain("#2 done: build module 2")
      expect(table.stdout).toMatch(/^worker-2 .* 1 +\$0\.75$/m)
    }).pipe(Effect.provide(Live)))

  it.scopedLive("a live run: orchestrator alive, time left, sessions that went away", () =>
    Effect.gen(function*() {
      const run = yield* makeRun({ lockPid: process.pid, live: true })
      execFileSync("tmux", ["-L", run.socket, "kill-session", "-t", `=${sessionOf("worker-2")}`])
      const snap = yield* Status.snapshot(run.folder)
      const doc = Status.statusJson(snap)
      expect(doc.alive).toBe(true)
      expect(doc.lockPid).toBe(process.pid)
      expect(doc.timeLeftSeconds).toBeGreaterThan(109 * 60)
      expect(doc.timeLeftSeconds).toBeLessThanOrEqual(110 * 60)
      expect(doc.sessionsAlive).toBe(2)
      expect(doc.instances.find((i) => i.name === "worker-2")!.sessionAlive).toBe(false)
      const text = Status.renderStatus(snap)
      expect(text).toMatch(new RegExp(`^orchestrator +alive \\(pid ${process.pid}\\)$`, "m"))
      expect(text).toMatch(/^time left +1h(49|50)m \(deadline .*\)$/m)
      expect(text).toMatch(/^worker-2 .* stopped +gone /m)
    }).pipe(Effect.provide(Live)))

  it.scopedLive("explains a missing or corrupt state.json and a log directory without runs", () =>
    Effect.gen(function*() {
      const fs = yield* FileSystem.FileSystem
      const root = yield* tempDir("cco-ops-")
      const write = () => Effect.void
      const show = (target: string) => Status.status({ target, json: false, watch: false, write }).pipe(Effect.flip)

      const empty = yield* show(root)
      expect(empty._tag).toBe("RunFolderNotFound")
      expect(empty.message).toBe(`${root}: not a run folder (no state.json) and no latest run in it; start one with cco run --config DIR`)

      const folder = path.join(root, RUN_ID)
      yield* fs.makeDirectory(folder)
      yield* fs.writeFileString(path.join(folder, "combined.log"), "")
      yield* fs.symlink(RUN_ID, path.join(root, "latest"))
      const missing = yield* show(root)
      expect(missing._tag).toBe("RunStateUnreadable")
      expect(missing.message).toBe(`${folder}/state.json: missing: the run stopped before its instances were set up; see combined.log there`)

      yield* fs.writeFileString(path.join(folder, STATE_FILE), `{"runId": "${RUN_ID}", "instances": [`)
      const corrupt = yield* show(folder)
      expect(corrupt._tag).toBe("RunStateUnreadable")
      expect(corrupt.message).toMatch(new RegExp(`^${folder}/state\\.json: corrupt: `))

      yield* fs.writeFileString(path.join(folder, STATE_FILE), JSON.stringify({ runId: RUN_ID }))
      const incomplete = yield* show(folder)
      expect(incomplete.message).toMatch(/state\.json: corrupt: .*runFolder/)

      const gone = yield* show(path.join(root, "nowhere"))
      expect(gone.message).toBe(`${path.join(root, "nowhere")}: no such directory`)
    }).pipe(Effect.provide(Live)))
})

describe("cco cleanup", () => {
  it.scopedLive("--dry-run changes nothing; cleanup removes exactly the run's sessions and worktrees and a stale lock", () =>
    Effect.gen(function*() {
      const run = yield* makeRun({ lockPid: deadPid() })
      const before = inventory(run)
      expect(before.sessions).toEqual(sorted([...run.sessions, ...run.unrelatedSessions]))

      const dry = yield* cco(["cleanup", "--dry-run", "--branches", "--config", run.configDir])
      expect(dry.stderr).toBe("")
      expect(dry.code).toBe(0)
      expect(dry.stdout).toContain(`would kill 3 tmux sessions on tmux -L ${run.socket}: ${run.sessions.join(", ")}`)
      expect(dry.stdout).toContain("would remove 3 worktrees: worktrees/em-1, worktrees/worker-1, worktrees/worker-2")
      expect(dry.stdout).toContain(`would delete 2 merged branches: ${branchOf("em-1")}, ${branchOf("worker-1")}`)
      expect(dry.stdout).toMatch(/would remove a stale cco\.lock \(pid \d+ is not running\)/)
      expect(dry.stdout).toContain("nothing was changed")
      expect(inventory(run)).toEqual(before)
      expect(yield* exists(path.join(run.folder, LOCK_FILE))).toBe(true)

      const done = yield* cco(["cleanup", run.folder])
      expect(done.stderr).toBe("")
      expect(done.code).toBe(0)
      expect(done.stdout).toContain(`killed 3 tmux sessions on tmux -L ${run.socket}`)
      expect(done.stdout).toContain("removed 3 worktrees")
      expect(done.stdout).toMatch(/cleaned 1 run: 3 sessions, 3 worktrees \(\d+\.\d s\)/)
      const after = inventory(run)
      expect(after.sessions).toEqual(sorted(run.unrelatedSessions))
      expect(after.worktrees).toEqual(sorted([run.repoDir, run.unrelatedWorktree]))
      // Without --branches every branch stays.
      expect(after.branches).toEqual(before.branches)
      for (const wt of run.worktrees) expect(yield* exists(wt)).toBe(false)
      expect(yield* exists(run.unrelatedWorktree)).toBe(true)
      expect(yield* exists(path.join(run.folder, LOCK_FILE))).toBe(false)
      expect(yield* exists(path.join(run.folder, STATE_FILE))).toBe(true)
      expect(yield* exists(path.join(run.folder, "combined.log"))).toBe(true)

      // A second cleanup finds nothing left.
      const again = yield* Cleanup.cleanupRun(run.folder, { dryRun: false, branches: false, all: false })
      expect(again).toMatchObject({ sessions: [], worktrees: [], problems: [] })
    }).pipe(Effect.provide(Live)))

  it.scopedLive("a copy of a run folder: cleanup touches only the copy, never the original's worktrees, clone or sessions", () =>
    Effect.gen(function*() {
      const run = yield* makeRun()
      const copy = path.join(run.root, "copied-logs", RUN_ID)
      mkdirSync(path.dirname(copy))
      execFileSync("cp", ["-a", run.folder, copy])
      const before = inventory(run)

      // Its state.json names the original's paths: none of them is planned.
      const dry = yield* Cleanup.cleanupRun(copy, { dryRun: true, branches: true, all: true })
      expect(dry.problems).toEqual([])
      expect(dry.sessions).toEqual([])
      expect(sorted(dry.worktrees)).toEqual(sorted(run.names.map((n) => path.join(copy, "worktrees", n))))
      for (const p of [...dry.worktrees, ...dry.removed]) expect(p.startsWith(copy + path.sep), p).toBe(true)
      const notes = dry.notes.join("\n")
      expect(notes).toContain(`left ${run.repoDir} alone`)
      expect(notes).toContain(`left 3 worktrees alone that state.json names outside this run folder: ${run.worktrees.join(", ")}`)
      expect(notes).toContain(`left 3 tmux sessions alone whose directory is outside this run folder`)
      const shown = Cleanup.formatRunCleanup(dry, { dryRun: true, explicit: true })
      for (const wt of run.worktrees) expect(shown).not.toMatch(new RegExp(`would remove.*${wt}`))
      expect(inventory(run)).toEqual(before)

      // The real thing: the copy's worktrees go, the original keeps everything.
      const done = yield* cco(["cleanup", copy])
      expect(done.stderr).toBe("")
      expect(done.code).toBe(0)
      expect(done.stdout).toContain("removed 3 worktrees: worktrees/em-1, worktrees/worker-1, worktrees/worker-2")
      expect(done.stdout).not.toContain("killed")
      expect(inventory(run)).toEqual(before)
      for (const wt of run.worktrees) expect(yield* exists(path.join(wt, "README.md"))).toBe(true)
      for (const n of run.names) expect(yield* exists(path.join(copy, "worktrees", n))).toBe(false)

      // scripts/cleanup.sh on another copy, with each state.json reader.
      for (const reader of ["node", "sed"]) {
        const other = path.join(run.root, `copied-${reader}`, RUN_ID)
        mkdirSync(path.dirname(other))
        execFileSync("cp", ["-a", run.folder, other])
        const script = yield* cleanupScript([other], { CCO_CLEANUP_STANDALONE: "1", CCO_CLEANUP_JSON: reader })
        expect(script.stderr, reader).toBe("")
        expect(script.code, reader).toBe(0)
        expect(script.stdout, reader).toContain("removed 3 worktree(s): worktrees/em-1, worktrees/worker-1, worktrees/worker-2")
        expect(script.stdout, reader).toContain(`left ${run.repoDir} alone`)
        expect(script.stdout, reader).not.toContain("killed")
        expect(inventory(run), reader).toEqual(before)
        for (const wt of run.worktrees) expect(yield* exists(path.join(wt, "README.md"))).toBe(true)
      }
    }).pipe(Effect.provide(Live)))

  it.scopedLive("a run whose orchestrator is alive is refused when named and skipped when scanned", () =>
    Effect.gen(function*() {
      const run = yield* makeRun({ lockPid: process.pid, live: true })
      const before = inventory(run)
      const r = yield* cco(["cleanup", run.folder])
      expect(r.code).toBe(1)
      expect(r.stdout).toContain(`refused: its orchestrator is alive (pid ${process.pid}); stop it first`)
      expect(r.stderr).toBe(`cco: refused ${run.folder}: its orchestrator is alive (pid ${process.pid})\n`)
      expect(inventory(run)).toEqual(before)

      const lines: Array<string> = []
      yield* Cleanup.cleanup({
        folders: [],
        logDirectory: run.logDir,
        options: { dryRun: false, branches: true, all: true },
        write: (text) => Effect.sync(() => void lines.push(text))
      })
      expect(lines.join("\n")).toContain(`skipped: its orchestrator is alive (pid ${process.pid})`)
      expect(inventory(run)).toEqual(before)
      expect(yield* exists(path.join(run.folder, LOCK_FILE))).toBe(true)
    }).pipe(Effect.provide(Live)))

  it.scopedLive("--branches deletes the run's merged branches only; --all removes the clone when nothing is unpushed", () =>
    Effect.gen(function*() {
      const run = yield* makeRun()
      const result = yield* Cleanup.cleanupRun(run.folder, { dryRun: false, branches: true, all: false })
      expect(result.problems).toEqual([])
      expect(sorted(result.branches)).toEqual([branchOf("em-1"), branchOf("worker-1")])
      expect(branchesOf(run.repoDir)).toEqual(sorted(["cco/other-run/worker-1", branchOf("worker-2"), "main", "unrelated"]))
      expect(sessionsOn(run.socket)).toEqual(sorted(run.unrelatedSessions))

      // main's merge of worker-1 and worker-2's commit are on no remote: --all keeps the clone and says why.
      mkdirSync(path.join(run.folder, "instances", "em-1", "claude"), { recursive: true })
      const kept = yield* Cleanup.cleanupRun(run.folder, { dryRun: false, branches: false, all: true })
      expect(kept.removed).toEqual([path.join(run.folder, "instances")])
      expect(kept.notes.join("\n")).toMatch(/kept .*repo: 2 commits on local branches are on no remote/)
      expect(yield* exists(run.repoDir)).toBe(true)

      git(run.repoDir, "push", "-q", "origin", "main", branchOf("worker-2"), "unrelated")
      const all = yield* Cleanup.cleanupRun(run.folder, { dryRun: false, branches: false, all: true })
      expect(all.removed).toEqual([run.repoDir])
      expect(yield* exists(run.repoDir)).toBe(false)
    }).pipe(Effect.provide(Live)))

  it.scopedLive("a 26-instance run is cleaned completely, leaving what is not its own", () =>
    Effect.gen(function*() {
      const run = yield* makeRun({ workers: 25 })
      expect(run.sessions.length).toBe(26)
      // Its speed is measured by `npm run bench` (BENCHMARKS.md), not asserted here.
      const result = yield* Cleanup.cleanupRun(run.folder, { dryRun: false, branches: true, all: false })
      expect(result.problems).toEqual([])
      expect(result.sessions.length).toBe(26)
      expect(result.worktrees.length).toBe(26)
      expect(sessionsOn(run.socket)).toEqual(sorted(run.unrelatedSessions))
      expect(worktreesOf(run.repoDir)).toEqual(sorted([run.repoDir, run.unrelatedWorktree]))
    }).pipe(Effect.provide(Live)))

  it.scopedLive("scripts/cleanup.sh: the CLI, the fallback when the CLI does not start, and each state.json reader", () =>
    Effect.gen(function*() {
      const run = yield* makeRun({ lockPid: deadPid() })
      const before = inventory(run)

      const viaCli = yield* cleanupScript(["--dry-run", run.folder])
      expect(viaCli.code).toBe(0)
      expect(viaCli.stdout).toContain(`would kill 3 tmux sessions on tmux -L ${run.socket}`)
      expect(viaCli.stdout).not.toContain("standalone")

      for (const reader of ["sed", "python3", "node"]) {
        const dry = yield* cleanupScript(["--dry-run", "--branches", run.folder], { CCO_CLEANUP_STANDALONE: "1", CCO_CLEANUP_JSON: reader })
        expect(dry.stderr, reader).toBe("")
        expect(dry.code, reader).toBe(0)
        expect(dry.stdout, reader).toContain(`would kill 3 tmux session(s) on tmux -L ${run.socket}: ${run.sessions.join(", ")}`)
        expect(dry.stdout, reader).toContain("would remove 3 worktree(s): worktrees/em-1, worktrees/worker-1, worktrees/worker-2")
        expect(dry.stdout, reader).toContain(`would delete 2 merged branch(es): ${branchOf("em-1")}, ${branchOf("worker-1")}`)
        expect(dry.stdout, reader).toContain("(standalone cleanup)")
        expect(inventory(run), reader).toEqual(before)
      }

      // An install whose CLI does not start (here: a bin/cco.js that throws) falls back by itself.
      const broken = path.join(run.root, "broken-install")
      mkdirSync(path.join(broken, "scripts"), { recursive: true })
      mkdirSync(path.join(broken, "bin"))
      copyFileSync(path.join(projectRoot, "scripts", "cleanup.sh"), path.join(broken, "scripts", "cleanup.sh"))
      writeFileSync(path.join(broken, "bin", "cco.js"), "throw new Error(\"Cannot find package 'effect'\")\n")
      const fallback = yield* spawn("bash", [path.join(broken, "scripts", "cleanup.sh"), "--dry-run", run.folder])
      expect(fallback.code).toBe(0)
      expect(fallback.stderr).toContain("cleanup.sh: the cco CLI does not start (broken build or dependencies?); cleaning up without it")
      expect(fallback.stdout).toContain(`would kill 3 tmux session(s) on tmux -L ${run.socket}`)
      expect(fallback.stdout).toContain("(standalone cleanup)")
      expect(inventory(run)).toEqual(before)

      const done = yield* cleanupScript(["--branches", "--config", run.configDir], { CCO_CLEANUP_STANDALONE: "1" })
      expect(done.stderr).toBe("")
      expect(done.code).toBe(0)
      expect(done.stdout).toContain("killed 3 tmux session(s)")
      expect(done.stdout).toMatch(/removed a stale cco\.lock \(pid \d+ is not running\)/)
      const after = inventory(run)
      expect(after.sessions).toEqual(sorted(run.unrelatedSessions))
      expect(after.worktrees).toEqual(sorted([run.repoDir, run.unrelatedWorktree]))
      expect(after.branches).toEqual(sorted(["cco/other-run/worker-1", branchOf("worker-2"), "main", "unrelated"]))
      expect(yield* exists(path.join(run.folder, LOCK_FILE))).toBe(false)

      // A live orchestrator: refused, nothing touched.
      writeFileSync(path.join(run.folder, LOCK_FILE), `${process.pid}\n`)
      execFileSync("tmux", ["-L", run.socket, "new-session", "-d", "-s", sessionOf("em-1"), "sleep", "600"])
      const refused = yield* cleanupScript([run.folder], { CCO_CLEANUP_STANDALONE: "1" })
      expect(refused.code).toBe(1)
      expect(refused.stdout).toContain(`refused: its orchestrator is alive (pid ${process.pid})`)
      expect(sessionsOn(run.socket)).toContain(sessionOf("em-1"))
    }).pipe(Effect.provide(Live)))
})

describe("cco doctor", () => {
  it.scopedLive("with a PATH lacking tmux it reports tmux FAIL with a fix and exits 1", () =>
    Effect.gen(function*() {
      const bin = yield* tempDir("cco-ops-path-")
      symlinkSync(execFileSync("sh", ["-c", "command -v git"], { encoding: "utf8" }).trim(), path.join(bin, "git"))
      const r = yield* cco(["doctor"], { PATH: bin, CCO_CLAUDE_PATH: claudeBin })
      expect(r.code).toBe(1)
      const lines = r.stdout.split("\n")
      const tmuxLine = lines.findIndex((l) => /^FAIL +tmux +tmux not found on PATH$/.test(l))
      expect(tmuxLine, r.stdout).toBeGreaterThanOrEqual(0)
      expect(lines[tmuxLine + 1]).toMatch(/^ +fix: install tmux 3\.0 or newer/)
      expect(r.stdout).toMatch(/^ok +git +git version \d+\.\d+/m)
      expect(r.stdout).toMatch(/^ok +claude +\d+\.\d+\.\d+ \(Claude Code\)/m)
      expect(r.stdout).toMatch(/^ok +node +v\d+/m)
      expect(r.stderr).toBe("cco: doctor: 1 check failed (tmux)\n")
    }).pipe(Effect.provide(Live)))

  it.scopedLive("with --config it checks the config, credentials, repository, PROJECT_DIRECTION.md and disk", () =>
    Effect.gen(function*() {
      const root = yield* tempDir("cco-ops-doctor-")
      const withDirection = makeBareRepo(path.join(root, mkdir(root, "a")), { direction: DIRECTION })
      const without = makeBareRepo(path.join(root, mkdir(root, "b")))
      const config = (name: string, fields: object, keys?: unknown) => {
        const dir = path.join(root, name)
        mkdirSync(dir)
        writeFileSync(path.join(dir, "orchestrator.json"), JSON.stringify({ workerCount: 2, logDirectory: "logs", ...fields }))
        if (keys !== undefined) writeFileSync(path.join(dir, "api-keys.json"), JSON.stringify(keys))
        return dir
      }
      const secret = "sk-ant-doctor-secret-000000000000"
      const check = (configDir: string) =>
        Doctor.runChecks({ configDir, resolveClaude: () => claudeBin, nodeVersion: "20.11.0", timeout: "10 seconds" })
      const byName = (checks: ReadonlyArray<Doctor.Check>) => Object.fromEntries(checks.map((c) => [c.name, c]))

      const good = byName(yield* check(config("good", { repositoryUrl: withDirection, authMode: "api-keys-only" }, [
        { name: "key-1", env: { ANTHROPIC_API_KEY: secret } }
      ])))
      expect(Object.values(good).filter((c) => c.level !== "ok")).toEqual([])
      expect(good.credentials!.detail).toBe("authMode api-keys-only: 1 API key in api-keys.json")
      expect(good.repository!.detail).toMatch(new RegExp(`^${withDirection}: branch main at [0-9a-f]{12}$`))
      expect(good.direction!.detail).toBe("PROJECT_DIRECTION.md is on main")
      expect(good.disk!.detail).toMatch(/GB free in /)
      expect(JSON.stringify(good)).not.toContain(secret)

      const noDirection = byName(yield* check(config("nodir", { repositoryUrl: without, authMode: "oauth" })))
      expect(noDirection.direction).toMatchObject({ level: "fail", detail: "PROJECT_DIRECTION.md is missing on branch main" })
      expect(noDirection.direction!.fix).toContain("commit a PROJECT_DIRECTION.md")
      // No login file and no token given by the host: oauth cannot start.
      expect(noDirection.credentials).toMatchObject({ level: "fail" })
      expect(noDirection.credentials!.fix).toContain("/login")
      // The host's CLAUDE_CODE_OAUTH_TOKEN (the one cco run would give instances) is a login; its value is not shown.
      const withToken = byName(yield* Doctor.runChecks({
        configDir: path.join(root, "nodir"),
        resolveClaude: () => claudeBin,
        nodeVersion: "20.11.0",
        timeout: "10 seconds",
        oauthToken: Redacted.make(secret)
      }))
      expect(withToken.credentials).toMatchObject({ level: "ok", detail: "authMode oauth: CLAUDE_CODE_OAUTH_TOKEN is set" })
      expect(JSON.stringify(withToken)).not.toContain(secret)

      const noBranch = byName(yield* check(config("nobranch", { repositoryUrl: withDirection, branch: "develop", authMode: "oauth" })))
      expect(noBranch.repository).toMatchObject({ level: "fail", detail: `${withDirection} is reachable but has no branch develop` })

      const broken = yield* check(config("broken", { repositoryUrl: withDirection, workerCount: 0 }))
      const configCheck = byName(broken).config!
      expect(configCheck.level).toBe("fail")
      expect(configCheck.detail).toContain("workerCount")
      expect(Doctor.formatChecks(broken)).toMatch(/^FAIL +config +.*workerCount.*\n +fix: /m)

      const old = yield* Doctor.runChecks({ resolveClaude: () => path.join(root, "no-claude"), nodeVersion: "18.19.0" })
      expect(byName(old).node).toMatchObject({ level: "fail", detail: "v18.19.0 is too old" })
      expect(byName(old).claude).toMatchObject({ level: "fail", detail: `${path.join(root, "no-claude")} not found` })
      expect(Either.isLeft(yield* Doctor.doctor({ resolveClaude: () => claudeBin, nodeVersion: "18.0.0" }, () => Effect.void).pipe(Effect.either)))
        .toBe(true)
    }).pipe(Effect.provide(Live)))
})

const mkdir = (root: string, name: string) => {
  mkdirSync(path.join(root, name))
  return name
}
