// The supervisor with the fake agent: crash recovery, the stuck ladder, the run's time limit, and Ctrl-C; and
// that no process an instance started outlives it.
import { NodeContext } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, Layer } from "effect"
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import * as path from "node:path"
import * as Agent from "../src/Agent.js"
import * as Events from "../src/Events.js"
import { type Brain, type MockRequest } from "../src/MockBrain.js"
import { startMockModel } from "../src/MockModel.js"
import * as RunLog from "../src/RunLog.js"
import { hangCommand, teamScript } from "../src/TeamScript.js"
import { Tmux } from "../src/Tmux.js"
import { ccoRun, fakeClaudeBin, filesOn, latestRun, panePid, projectRoot, readLog, runFixture, useFixture } from "./harness.js"
import { expectCrashRecovered, hungWorkerRecovers, killWorkerAfterFirstTool, orchestratorKilledThenResumed } from "./scenarios.js"
import { endLeftovers, leftovers, privateTmux, tempDir, waitFor } from "./support.js"

const fast = { healthCheckIntervalSeconds: 1, stuckAfterSeconds: 3, idleAfterSeconds: 5, escalationIntervalSeconds: 2 }

describe("supervisor with the fake agent", () => {
  it.scopedLive("kill -9 of a worker mid-task: restarted with --continue, its uncommitted file kept, its work lands", () =>
    Effect.gen(function*() {
      const mock = yield* startMockModel({ brain: teamScript(), latencyMs: 300 })
      const fixture = yield* useFixture({ workerCount: 1, mockUrl: mock.url, extra: fast })
      const run = yield* Effect.fork(runFixture(fixture, fakeClaudeBin))
      yield* killWorkerAfterFirstTool(fixture)
      expectCrashRecovered(fixture, yield* Fiber.join(run))
    }), { timeout: 120_000 })

  it.scopedLive("a hung worker is nudged, interrupted, then restarted, and its work still lands", () => hungWorkerRecovers(fakeClaudeBin, fast), { timeout: 120_000 })

  it.scopedLive("a lead restarted in the middle of its assignments is told which reports have no task yet, and gives them one", () =>
    Effect.gen(function*() {
      const script = teamScript()
      const seen: Array<MockRequest> = []
      let cut = false
      // em-1's first command assigns worker-1, then hangs before assigning worker-2: the restart cuts it there.
      const brain: Brain = (req) => {
        seen.push(req)
        const reply = script(req)
        if (cut || reply._tag !== "ToolUse") return reply
        const command = String((reply.tools[0]!.input as { command: string }).command)
        if (!command.includes("cco team assign worker-2")) return reply
        cut = true
        return { ...reply, tools: [{ name: "Bash", input: { command: `${command.split("; cco team assign worker-2")[0]}; sleep 31` } }] }
      }
      const mock = yield* startMockModel({ brain })
      // No idle nudge and, on a loaded machine, no stuck nudge of a slow turn: the restart notice alone must do.
      const fixture = yield* useFixture({ workerCount: 2, mockUrl: mock.url, extra: { ...fast, idleAfterSeconds: 60, stuckAfterSeconds: 30 } })
      const run = yield* Effect.fork(runFixture(fixture, fakeClaudeBin))
      const log = yield* waitFor("worker-1's assignment", Effect.sync(() => {
        const lines = readLog(latestRun(fixture))
        return lines.some((l) => l.event === "task.assigned" && l.instance === "worker-1") ? lines : undefined
      }), 60_000, 20)
      process.kill(panePid(fixture, `cco-${String(log[0]!.runId)}-em-1`), "SIGKILL")
      const summary = yield* Fiber.join(run)
      expect(summary.reason).toBe("project-done")
      const notice = seen.map((r) => JSON.stringify(r.messages)).find((m) => m.includes("cco restarted you"))
      expect(notice).toContain("worker-2 has no task yet")
      expect(filesOn(fixture.bare, "main")).toEqual(expect.arrayContaining(["src/em-1/worker-1.js", "src/em-1/worker-2.js"]))
      // Without an idle nudge: the restart notice was enough.
      expect(readLog(summary.runFolder).filter((l) => l.event === "supervisor.nudge")).toEqual([])
    }), { timeout: 120_000 })

  it.scopedLive("a lead that waited longer than stuckAfterSeconds is not called stuck when its next prompt goes in", () =>
    Effect.gen(function*() {
      // The worker takes its time (well within stuckAfterSeconds between steps) while em-1 idles.
      const mock = yield* startMockModel({
        brain: teamScript(),
        latencyMs: (req) => JSON.stringify(req.messages).includes("You are worker-1,") ? 2_500 : 0
      })
      const fixture = yield* useFixture({ workerCount: 1, mockUrl: mock.url, extra: { ...fast, stuckAfterSeconds: 5, idleAfterSeconds: 60 } })
      // Each prompt takes a few health rounds to reach UserPromptSubmit, as with the real CLI under load.
      const summary = yield* runFixture(fixture, fakeClaudeBin, undefined, { FAKE_CLAUDE_SUBMIT_DELAY_MS: "2500" })
      expect(summary.reason).toBe("project-done")
      const log = readLog(summary.runFolder)
      const delivered = log.filter((l) => l.event === "prompt.delivered" && l.instance === "em-1")
      // em-1 waited on worker-1 longer than stuckAfterSeconds before the report came in.
      const assigned = Date.parse(String(log.find((l) => l.event === "task.assigned")!.time))
      const reported = Date.parse(String(log.find((l) => l.event === "task.done" && l.instance === "worker-1")!.time))
      expect(reported - assigned).toBeGreaterThan(5_000)
      expect(delivered.length).toBeGreaterThanOrEqual(2)
      expect(log.filter((l) => l.instance === "em-1" && String(l.reason ?? "").startsWith("stuck"))).toEqual([])
    }), { timeout: 120_000 })

  it.scopedLive("at maxRunDurationMinutes the run winds down: reported work merged where clean, sessions stopped", () =>
    Effect.gen(function*() {
      const mock = yield* startMockModel({ brain: teamScript({ idleLeads: ["em-1"] }) })
      const fixture = yield* useFixture({ workerCount: 2, mockUrl: mock.url, maxRunDurationMinutes: 0.25, extra: fast })
      const summary = yield* runFixture(fixture, fakeClaudeBin)
      expect(summary.reason).toBe("time-limit")
      const log = readLog(summary.runFolder)
      expect(log.some((l) => l.event === "run.time-warning")).toBe(true)
      expect(log.find((l) => l.event === "run.ending")?.reason).toBe("time-limit")
      // The EM never merged; cco merged both reported tasks into the target branch at the end.
      const files = filesOn(fixture.bare, "main")
      expect(files).toContain("src/em-1/worker-1.js")
      expect(files).toContain("src/em-1/worker-2.js")
      const state = JSON.parse(readFileSync(path.join(summary.runFolder, "state.json"), "utf8")) as { endReason: string }
      expect(state.endReason).toBe("time-limit")
      expect(existsSync(path.join(summary.runFolder, "cco.lock"))).toBe(false)
    }), { timeout: 120_000 })

  it.scopedLive("the wind-down merges no reported branch that holds committed conflict markers, and pushes no huge file", () =>
    Effect.gen(function*() {
      const mock = yield* startMockModel({ brain: teamScript({ idleLeads: ["em-1"], markersAfterDone: ["worker-2"], largeFileAtTheEnd: ["worker-1"] }) })
      const fixture = yield* useFixture({ workerCount: 2, mockUrl: mock.url, maxRunDurationMinutes: 0.25, extra: fast })
      const summary = yield* runFixture(fixture, fakeClaudeBin)
      expect(summary.reason).toBe("time-limit")
      const log = readLog(summary.runFolder)
      // worker-2 committed markers after its report was accepted: its branch stays unmerged, logged with the file.
      const skipped = log.find((l) => l.event === "merge.skipped" && l.from === "worker-2")
      expect(skipped?.problems).toEqual([expect.stringMatching(/^conflict markers .* committed in notes\.txt:/)])
      expect(log.some((l) => l.event === "merge.done" && l.from === "worker-2")).toBe(false)
      const files = filesOn(fixture.bare, "main")
      expect(files).toContain("src/em-1/worker-1.js")
      expect(files).not.toContain("notes.txt")
      expect(files).not.toContain("src/em-1/worker-2.js")
      // worker-1 left a file above 50 MiB in its worktree: saved as work in progress in the run's clone, never pushed.
      const kept = log.find((l) => l.event === "wip.not-pushed" && l.instance === "worker-1")
      expect(kept?.large).toEqual([{ file: "big.bin", bytes: 50 * 1024 * 1024 + 1024 }])
      expect(files).not.toContain("big.bin")
      expect(filesOn(fixture.bare, `cco/${summary.runId}/worker-1`)).not.toContain("big.bin")
      expect(filesOn(path.join(summary.runFolder, "repo"), `cco/${summary.runId}/worker-1`)).toContain("big.bin")
    }), { timeout: 120_000 })

  it.scopedLive("a target branch whose own commits hold conflict markers is neither reported done nor pushed at the end", () =>
    Effect.gen(function*() {
      const mock = yield* startMockModel({ brain: teamScript({ markersBeforeDone: ["em-1"] }) })
      // Time enough for em-1 to report (and be refused) before the deadline, also on a loaded machine.
      const fixture = yield* useFixture({ workerCount: 1, mockUrl: mock.url, maxRunDurationMinutes: 0.5, extra: fast })
      const summary = yield* runFixture(fixture, fakeClaudeBin)
      expect(summary.reason).toBe("time-limit")
      const log = readLog(summary.runFolder)
      expect(log.find((l) => l.event === "task.done-refused" && l.instance === "em-1")?.reason)
        .toMatch(/^your branch main brings conflict markers .* committed in notes\.txt: edit them/)
      expect(log.find((l) => l.event === "push.refused")?.problems).toEqual([expect.stringMatching(/committed in notes\.txt:/)])
      // worker-1's merge was pushed when it was made; the markers never were.
      const files = filesOn(fixture.bare, "main")
      expect(files).toContain("src/em-1/worker-1.js")
      expect(files).not.toContain("notes.txt")
    }), { timeout: 120_000 })

  it.scopedLive("Ctrl-C (SIGINT) to cco run: graceful wind-down, state written, exit code 130", () =>
    Effect.gen(function*() {
      const mock = yield* startMockModel({ brain: teamScript({ hangUntilRestart: ["worker-1"] }) })
      const fixture = yield* useFixture({ workerCount: 1, mockUrl: mock.url, extra: { ...fast, stuckAfterSeconds: 600 } })
      yield* endLeftovers(fixture.root, hangCommand)
      const { child, exited, output } = ccoRun(fixture.configDir, fakeClaudeBin)
      yield* Effect.addFinalizer(() => Effect.sync(() => child.exitCode === null && child.kill("SIGKILL")))
      yield* waitFor("worker-1 busy", Effect.sync(() =>
        readLog(latestRun(fixture)).some((l) => l.instance === "worker-1" && l.hook === "UserPromptSubmit") ? true : undefined), 60_000)
      child.kill("SIGINT")
      const code = yield* Effect.promise(() => exited)
      expect(code).toBe(130)
      const state = JSON.parse(readFileSync(path.join(latestRun(fixture), "state.json"), "utf8")) as { endReason: string }
      expect(state.endReason).toBe("interrupted")
      const log = readLog(latestRun(fixture))
      expect(log.some((l) => l.event === "run.interrupted")).toBe(true)
      expect(log.find((l) => l.event === "run.ending")?.reason).toBe("interrupted")
      // Sessions stopped; worktrees kept for inspection.
      expect(existsSync(path.join(latestRun(fixture), "worktrees", "worker-1"))).toBe(true)
      // ...and nothing their tools started is left running.
      expect(leftovers(fixture.root, hangCommand)).toEqual([])
      expect(output()).not.toContain("internal error")
    }), { timeout: 120_000 })

  it.scopedLive("kill -9 of the orchestrator, then cco run --resume: live sessions re-attached, the run completes", () =>
    orchestratorKilledThenResumed(fakeClaudeBin, fast), { timeout: 150_000 })
})

/** An Agent of its own run (folder dir, sessions cco-<name>-…) that launches `cli`; its log lines go to `lines`. */
const makeAgent = (dir: string, name: string, cli: string, lines: Array<RunLog.LogLine> = []) =>
  Effect.gen(function*() {
    const runLog = yield* RunLog.make(dir, `${name}-test`)
    yield* runLog.listen((line) => lines.push(line))
    const events = yield* Events.make(path.join(dir, "control.sock")).pipe(Effect.provideService(RunLog.RunLog, runLog))
    return yield* Agent.make({
      runFolder: dir,
      runId: `${name}-test`,
      sessionPrefix: `cco-${name}-`,
      claudePath: cli,
      model: undefined,
      clientCommand: [process.execPath, path.join(projectRoot, "bin", "cco-client.mjs")],
      basePath: process.env.PATH ?? "/usr/bin:/bin"
    }).pipe(Effect.provideService(RunLog.RunLog, runLog), Effect.provideService(Events.Events, events))
  })

describe.skipIf(process.platform !== "linux")("stopping an instance", () => {
  // A stand-in CLI that leaves processes behind as an agent's Bash tool can: a server started in the background
  // (orphaned at once, so never below the CLI in the process tree) and a tool started as the CLI exits.
  const leaky = [
    "#!/bin/sh",
    "(setsid sleep 602 </dev/null >/dev/null 2>&1 &)",
    // It waits a moment so the tool has its own session before the CLI's exit hangs up the terminal.
    "trap 'setsid sleep 602 </dev/null >/dev/null 2>&1 & sleep 0.3; exit 0' HUP TERM",
    "while :; do sleep 1; done"
  ].join("\n") + "\n"

  it.scopedLive("Agent.stop ends the instance's processes, also those already orphaned or started as it exits", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("cco-stop-")
      yield* endLeftovers(dir, "sleep 602")
      const cli = path.join(dir, "leaky-claude")
      writeFileSync(cli, leaky, { mode: 0o755 })
      const worktree = path.join(dir, "worktree")
      mkdirSync(worktree)
      const lines: Array<RunLog.LogLine> = []
      const agent = yield* makeAgent(dir, "stop", cli, lines)
      yield* agent.launch({ instance: "worker-1", worktree, credential: { name: "none", env: {} }, continueSession: false })
      const background = yield* waitFor("the background server", Effect.sync(() => leftovers(dir, "sleep 602")[0]), 10_000)
      // Orphaned: its parent is no longer the CLI, so only its environment ties it to the instance.
      const cliPid = (yield* (yield* Tmux).paneInfo(agent.sessionName("worker-1"))).pid
      const parentOf = (pid: number) => Number(readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")[1])
      expect(parentOf(background)).not.toBe(cliPid)

      yield* agent.stop("worker-1")
      expect(leftovers(dir, "sleep 602")).toEqual([])
      const ended = lines.find((l) => l.event === "instance.children-ended")
      expect(ended?.pids).toContain(background)
      // The one started on SIGHUP was ended too, not only the one seen before.
      expect((ended?.pids as ReadonlyArray<number>).length).toBeGreaterThanOrEqual(2)
    }).pipe(Effect.provide(Layer.merge(privateTmux(), NodeContext.layer))), { timeout: 60_000 })

  it.scopedLive("Agent.launch replaces a session of the same name that is still there", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("cco-relaunch-")
      const cli = path.join(dir, "idle-claude")
      writeFileSync(cli, "#!/bin/sh\nexec sleep 603\n", { mode: 0o755 })
      const agent = yield* makeAgent(dir, "relaunch", cli)
      const tmux = yield* Tmux
      const session = agent.sessionName("worker-1")
      const launch = agent.launch({ instance: "worker-1", worktree: dir, credential: { name: "none", env: {} }, continueSession: false })
      expect(yield* launch).toBe(0)
      const first = (yield* tmux.paneInfo(session)).pid
      expect(yield* launch).toBe(1)
      const second = (yield* tmux.paneInfo(session)).pid
      expect(second).not.toBe(first)
      expect(yield* tmux.listSessions("cco-relaunch-")).toEqual([session])
      yield* agent.stop("worker-1")
    }).pipe(Effect.provide(Layer.merge(privateTmux(), NodeContext.layer))), { timeout: 60_000 })

  it.scopedLive("Agent.launch continues a conversation only when there is one, and its pane knows no tmux server", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("cco-continue-")
      const cli = path.join(dir, "recording-claude")
      // Records its arguments and environment, then stays up as a session would.
      // Each file appears whole (written aside, then renamed), so a reader never sees it half written.
      writeFileSync(cli, `#!/bin/sh\nenv > ${dir}/env.part && mv ${dir}/env.part ${dir}/env\necho "$@" > ${dir}/argv.part && mv ${dir}/argv.part ${dir}/argv\nexec sleep 604\n`, { mode: 0o755 })
      const agent = yield* makeAgent(dir, "continue", cli)
      const launch = agent.launch({ instance: "worker-1", worktree: dir, credential: { name: "none", env: {} }, continueSession: true })
      const recorded = (file: string) => waitFor(file, Effect.sync(() => existsSync(path.join(dir, file)) ? readFileSync(path.join(dir, file), "utf8") : undefined))
      // Stopped before its first prompt went in: nothing to continue, so it starts afresh.
      yield* launch
      expect(yield* recorded("argv")).not.toContain("--continue")
      const env = yield* recorded("env")
      expect(env).toContain("CCO_INSTANCE=worker-1")
      expect(env).not.toMatch(/^TMUX(_PANE)?=/m)
      // A transcript of only the session's settings lines (its first prompt refused, say) is no conversation yet.
      const project = path.join(agent.configDir("worker-1"), "projects", "-work")
      mkdirSync(project, { recursive: true })
      writeFileSync(path.join(project, "a1b2.jsonl"), `{"type":"mode","mode":"normal","sessionId":"a1b2"}\n{"type":"permission-mode","permissionMode":"bypassPermissions","sessionId":"a1b2"}\n`)
      yield* Effect.sync(() => rmSync(path.join(dir, "argv")))
      yield* launch
      expect(yield* recorded("argv")).not.toContain("--continue")
      // Once the transcript holds a message, a restart picks the conversation up.
      writeFileSync(path.join(project, "a1b2.jsonl"), `{"type":"mode","mode":"normal","sessionId":"a1b2"}\n{"type":"user","message":{"role":"user","content":"hello"},"sessionId":"a1b2"}\n`)
      yield* Effect.sync(() => writeFileSync(path.join(dir, "argv"), ""))
      yield* launch
      yield* waitFor("--continue", Effect.sync(() => readFileSync(path.join(dir, "argv"), "utf8").includes("--continue") ? true : undefined))
      yield* agent.stop("worker-1")
    }).pipe(Effect.provide(Layer.merge(privateTmux(), NodeContext.layer))), { timeout: 60_000 })
})
