// `cco run --resume` of a run with instances on a remote host (the fake agent; the "remote" host is an sshd of the
// test's own on 127.0.0.1 with its own workdir, files and tmux server): the orchestrator is killed with -9, then
// resumed. The host's files are its own (useSshdWithOwnFiles): they are looked at over SSH only.
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { spawnSync } from "node:child_process"
import { existsSync, readFileSync, realpathSync } from "node:fs"
import * as path from "node:path"
import { userTexts } from "../src/MockBrain.js"
import { startMockModel } from "../src/MockModel.js"
import { shellQuote } from "../src/Shell.js"
import { teamScript } from "../src/TeamScript.js"
import { ccoRun, fakeClaudeBin, filesOn, git, latestRun, readLog, useFixture } from "./harness.js"
import { onHost, remoteHost, type Sshd, useSshdWithOwnFiles } from "./sshd.js"
import { killTmuxServer, waitFor } from "./support.js"

const useRemoteTmux = (socket: string) => Effect.acquireRelease(Effect.succeed(`${socket}-box`), (s) => Effect.sync(() => killTmuxServer(s)))

/** A branch's commit in a repository here, or "" when it has none. */
const tipOf = (repo: string, branch: string) =>
  spawnSync("git", ["-C", repo, "rev-parse", "--verify", "--quiet", `refs/heads/${branch}^{commit}`], { encoding: "utf8" }).stdout.trim()

/** A branch's commit in a repository on the host, or "" when it (or the repository) is not there. */
const tipThere = (sshd: Sshd, repo: string, branch: string) =>
  onHost(sshd, `git -C ${shellQuote(repo)} rev-parse --verify --quiet ${shellQuote(`refs/heads/${branch}^{commit}`)} 2>/dev/null || true`)

/** The processes whose command line names `text` (the SSH connections of one run: their control path). */
const processesNaming = (text: string) =>
  spawnSync("ps", ["-eo", "pid=,args="], { encoding: "utf8" }).stdout.split("\n").filter((l) => l.includes(text) && !l.includes("ps -eo"))

/**
 * A run with worker-2 on the remote host, its orchestrator killed (-9) while worker-2 is at its task; worker-2 then
 * commits on its branch there, which the run's clone here does not have; `between` runs before the resume.
 */
const killedWithUnfetchedWork = (between: (s: { sshd: { drop: () => void } }) => void = () => {}) =>
  Effect.gen(function*() {
    const sshd = yield* useSshdWithOwnFiles
    // What the instances were told, as the model received it.
    const prompts: Array<string> = []
    const brain = teamScript()
    // Each answer takes 1.5 s: worker-2 commits well after state.json says it is at its task.
    const mock = yield* startMockModel({ brain: (req) => (prompts.push(...userTexts(req)), brain(req)), latencyMs: 1_500 })
    const fixture = yield* useFixture({
      workerCount: 2,
      mockUrl: mock.url,
      extra: { hosts: [{ name: "local" }, remoteHost(sshd, fakeClaudeBin)], idleAfterSeconds: 2, healthCheckIntervalSeconds: 2 }
    })
    const remoteTmux = yield* useRemoteTmux(fixture.socket)
    const first = ccoRun(fixture.configDir, fakeClaudeBin)
    yield* Effect.addFinalizer(() => Effect.sync(() => first.child.exitCode === null && first.child.kill("SIGKILL")))
    const folder = latestRun(fixture)
    const runId = yield* waitFor("the run's id", Effect.sync(() => readLog(folder).find((l) => l.event === "run.starting")?.runId as string | undefined), 60_000)
    const branch = `cco/${runId}/worker-2`
    const there = path.join(sshd.dir, "box", runId, "repo")
    // worker-2 at its task there, as state.json says (what a resume goes by): cco is killed before it commits (two
    // model answers later), so what it commits then is on its branch there only.
    yield* waitFor("worker-2 at its task", Effect.try(() => {
      const state = JSON.parse(readFileSync(path.join(folder, "state.json"), "utf8")) as { instances: Array<{ name: string; prompted?: boolean; currentTask?: string }> }
      const worker = state.instances.find((i) => i.name === "worker-2")
      return worker?.prompted === true && worker.currentTask !== undefined ? true : undefined
    }).pipe(Effect.orElseSucceed(() => undefined)), 90_000, 10)
    process.kill(Number(readFileSync(path.join(folder, "cco.lock"), "utf8").trim()), "SIGKILL")
    first.child.kill("SIGKILL")
    yield* Effect.promise(() => first.exited)
    const here = tipOf(path.join(folder, "repo"), branch)
    const unfetched = yield* waitFor("worker-2's commit there", Effect.sync(() => {
      const tip = tipThere(sshd, there, branch)
      return tip !== "" && tip !== here ? tip : undefined
    }), 60_000, 100)
    const controlPath = (JSON.parse(readFileSync(path.join(folder, "state.json"), "utf8")) as { hosts: Array<{ controlPath: string }> }).hosts[0]!.controlPath
    between({ sshd })

    const resumedAt = readLog(folder).length
    const second = ccoRun(fixture.configDir, fakeClaudeBin, ["--resume"])
    yield* Effect.addFinalizer(() => Effect.sync(() => second.child.exitCode === null && second.child.kill("SIGKILL")))
    const code = yield* Effect.promise(() => second.exited)
    expect(code, second.output()).toBe(0)
    const log = readLog(folder)
    expect(log.some((l) => l.event === "run.resuming")).toBe(true)
    expect(log.at(-1)).toMatchObject({ event: "run.finished", reason: "project-done" })
    const files = filesOn(fixture.bare, "main")
    expect(files).toContain("src/em-1/worker-1.js")
    expect(files).toContain("src/em-1/worker-2.js")
    return { fixture, folder: realpathSync(folder), runId, prompts, log, unfetched, remoteTmux, controlPath, resumedAt }
  })

describe("hosts: resuming a run", () => {
  it.scopedLive("kill -9, then cco run --resume: the session there re-attached, its unfetched commit kept and merged, nothing left behind", () =>
    Effect.gen(function*() {
      const { fixture, folder, runId, log, unfetched, remoteTmux, controlPath, resumedAt } = yield* killedWithUnfetchedWork()
      const after = log.slice(resumedAt)
      // The host reached again over a new master connection; worker-2's session there taken over, not restarted.
      expect(after.some((l) => l.event === "hosts.connected")).toBe(true)
      expect(after.find((l) => l.event === "instance.attached" && l.instance === "worker-2")).toBeDefined()
      expect(after.filter((l) => l.event === "instance.launched" && l.instance === "worker-2")).toEqual([])
      expect(after.some((l) => l.event === "host.down" || l.event === "instance.moved")).toBe(false)
      // What it committed there while cco was down was taken from there, never pushed over (which the clone there
      // refuses, failing its report): it reached the target branch.
      expect(after.filter((l) => l.event === "team.reply" && l.ok === false).map((l) => l.text)).toEqual([])
      expect(git(fixture.bare, "merge-base", "--is-ancestor", unfetched, "main")).toBe("")
      // Still placed there (state.json), and nothing left running: sessions there, SSH connections here.
      const state = JSON.parse(readFileSync(path.join(folder, "state.json"), "utf8")) as { instances: Array<{ name: string; host?: string }> }
      expect(state.instances.find((i) => i.name === "worker-2")?.host).toBe("box")
      expect(spawnSync("tmux", ["-L", remoteTmux, "list-sessions", "-F", "#{session_name}"], { encoding: "utf8" }).stdout.split("\n").filter((s) => s.startsWith(`cco-${runId}-`))).toEqual([])
      expect(processesNaming(controlPath)).toEqual([])
      expect(existsSync(controlPath)).toBe(false)
    }), { timeout: 240_000 })

  it.scopedLive("kill -9, the host gone when the run resumes: its worker started here from its branch, told its task again, the run completes", () =>
    Effect.gen(function*() {
      const { fixture, folder, log, resumedAt, prompts } = yield* killedWithUnfetchedWork(({ sshd }) => sshd.drop())
      const after = log.slice(resumedAt)
      expect(after.find((l) => l.event === "host.down")).toMatchObject({ host: "box", instances: ["worker-2"] })
      const moved = after.find((l) => l.event === "instance.moved")
      expect(moved).toMatchObject({ instance: "worker-2", from: "box", to: "local", worktree: path.join(folder, "worktrees", "worker-2") })
      expect(String(moved?.lost)).toMatch(/uncommitted changes/)
      // Started here, afresh: its role and its task once more (its conversation stayed there).
      expect(after.find((l) => l.event === "instance.launched" && l.instance === "worker-2")?.attach).toContain(`tmux -L ${fixture.socket} `)
      expect(prompts.some((t) => t.startsWith("You are worker-2") && t.includes("cco restarted you on another machine (the orchestrator was restarted and your host could not be reached)"))).toBe(true)
      const state = JSON.parse(readFileSync(path.join(folder, "state.json"), "utf8")) as { instances: Array<{ name: string; host?: string; worktree: string }> }
      expect(state.instances.find((i) => i.name === "worker-2")).toMatchObject({ host: "local", worktree: path.join(folder, "worktrees", "worker-2") })
    }), { timeout: 240_000 })
})
