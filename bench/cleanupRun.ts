// Benchmark 4: `cco cleanup RUN_FOLDER` after its orchestrator was killed (SIGKILL, as a crash), leaving 26 tmux
// sessions with their fake agents and 26 worktrees. Timed as a user sees it, next to the CLI's bare start-up.
import { existsSync, readdirSync } from "node:fs"
import * as path from "node:path"
import type { CcoCopy } from "./build.js"
import type { Leftover } from "./idle.js"
import type { Measurement } from "./report.js"
import { alive, log, panePids, percentile, projectRoot, removeDir, runTimed, sessionCount, sleep, stopTmuxServer, untrackPid, waitUntil } from "./util.js"

export const cleanupRuns = async (leftover: Leftover, copy: CcoCopy): Promise<ReadonlyArray<Measurement>> => {
  const { fixture, folder, pid, child } = leftover
  try {
    const agents = panePids(fixture.socket)
    process.kill(pid, "SIGKILL")
    if (child.pid !== undefined && child.pid !== pid && alive(child.pid)) child.kill("SIGKILL")
    await waitUntil("the orchestrator to die", () => !alive(pid) && (child.exitCode !== null || child.signalCode !== null), 10_000, 20)
    untrackPid(pid)
    untrackPid(child.pid)
    const worktreesDir = path.join(folder, "worktrees")
    const sessionsBefore = sessionCount(fixture.socket)
    const worktreesBefore = readdirSync(worktreesDir).length
    log(`  killed the orchestrator (pid ${pid}); left: ${sessionsBefore} sessions, ${worktreesBefore} worktrees`)
    if (sessionsBefore < 26 || worktreesBefore < 26) throw new Error("the killed run did not leave 26 sessions and 26 worktrees")

    // The CLI's own start-up, the floor under any cco command.
    const version: Array<number> = []
    for (let i = 0; i < 3; i++) version.push((await runTimed(process.execPath, [copy.cli, "--version"])).ms)
    const start = percentile(version, 50)

    const result = await runTimed(process.execPath, [copy.cli, "cleanup", folder])
    if (result.code !== 0) throw new Error(`cco cleanup exited ${result.code}: ${(result.stdout + result.stderr).trim()}`)
    const own = Number(/\(([\d.]+) s\)/.exec(result.stdout)?.[1] ?? NaN)
    const sessionsAfter = sessionCount(fixture.socket)
    const worktreesAfter = existsSync(worktreesDir) ? readdirSync(worktreesDir).length : 0
    log(`  cco cleanup: ${(result.ms / 1000).toFixed(2)} s wall (its own report: ${own} s), cco --version ${(start / 1000).toFixed(2)} s; left: ${sessionsAfter} sessions, ${worktreesAfter} worktrees`)
    if (sessionsAfter !== 0 || worktreesAfter !== 0) throw new Error(`cco cleanup left ${sessionsAfter} sessions and ${worktreesAfter} worktrees`)
    // The agents end on SIGHUP, each firing its SessionEnd hook; how long until the last is gone.
    const t = Date.now()
    while (agents.some(alive) && Date.now() - t < 15_000) await sleep(50)
    const agentsGone = (Date.now() - t + result.ms) / 1000

    // The same command in a dev checkout (bin/cco.js through tsx), for comparison.
    const dev = await runTimed(process.execPath, [path.join(projectRoot, "bin", "cco.js"), "--version"])
    return [
      { id: "4a", name: "cco cleanup of a killed 26-instance run", value: result.ms / 1000, unit: "s", target: 3, baseline: `cco --version ${(start / 1000).toFixed(2)} s; cleanup's own timer ${own} s; agents all exited ${agentsGone.toFixed(1)} s after start` },
      { id: "4b", name: "cco --version in a dev checkout (tsx)", value: dev.ms / 1000, unit: "s", baseline: "start-up cost every cco command pays without dist/" }
    ]
  } finally {
    await stopTmuxServer(fixture.socket)
    removeDir(fixture.root)
  }
}
