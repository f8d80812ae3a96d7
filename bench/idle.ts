// Benchmark 3: what an idle orchestrator costs with 26 live instances. `cco run` runs as a child process
// (the installed-like copy); once the whole team rests, the process named in cco.lock is sampled from /proc:
// CPU time (its own, and with its reaped children: the tmux and git calls it makes) and RSS.
import { type ChildProcess, spawn } from "node:child_process"
import { closeSync, existsSync, openSync, readFileSync, realpathSync } from "node:fs"
import * as path from "node:path"
import type { CcoCopy } from "./build.js"
import { type Fixture, followLog, makeFixture } from "./fixture.js"
import { monotonicMicros } from "./profile.js"
import type { Measurement } from "./report.js"
import { fakeClaude, log, now, removeDir, sleep, stopTmuxServer, trackPid, waitUntil } from "./util.js"

const INSTANCES = 26
const CLK_TCK = 100 // USER_HZ on Linux

/** utime, stime, cutime, cstime in clock ticks (fields 14–17 of /proc/<pid>/stat). */
const cpuTicks = (pid: number) => {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  // fields[0] is field 3 (state); field n is fields[n - 3].
  const n = (i: number) => Number(fields[i - 3])
  return { own: n(14) + n(15), children: n(16) + n(17) }
}

const rssMb = (pid: number) => {
  const status = readFileSync(`/proc/${pid}/status`, "utf8")
  const kb = Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? NaN)
  return kb / 1024
}

export interface Leftover {
  readonly fixture: Fixture
  readonly folder: string
  /** The orchestrator (cco.lock) and the process this bench started (the same one when cco is built). */
  readonly pid: number
  readonly child: ChildProcess
}

/** Ends the run as Ctrl-C would (so that a --cpu-prof profile is written), then removes everything. */
export const stopGracefully = async (leftover: Leftover) => {
  const { child, fixture } = leftover
  try {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((r) => child.once("exit", () => r()))
      child.kill("SIGINT")
      await Promise.race([exited, sleep(90_000)])
    }
  } finally {
    await stopTmuxServer(fixture.socket)
    removeDir(fixture.root)
  }
}

export const idleCost = async (
  mockUrl: string,
  copy: CcoCopy,
  options: { readonly seconds: number; readonly profileDir: string | undefined }
): Promise<{
  readonly measurements: ReadonlyArray<Measurement>
  readonly leftover: Leftover
  /** The sampled window in CLOCK_MONOTONIC µs, to read a --cpu-prof profile over it. */
  readonly window?: { readonly from: number; readonly to: number }
}> => {
  const fixture = makeFixture(mockUrl)
  const out = openSync(path.join(fixture.root, "cco-run.out"), "a")
  const nodeArgs = options.profileDir === undefined ? [] : ["--cpu-prof", "--cpu-prof-dir", path.resolve(options.profileDir)]
  const child = spawn(process.execPath, [...nodeArgs, copy.cli, "run", "--config", fixture.configDir], {
    env: { ...process.env, CCO_CLAUDE_PATH: fakeClaude },
    stdio: ["ignore", out, out]
  })
  closeSync(out)
  trackPid(child.pid)
  let exited: number | null | undefined
  child.on("exit", (code) => {
    exited = code
  })
  const alive = (what: string) => () => {
    if (exited !== undefined) throw new Error(`cco run exited (${exited}) while waiting for ${what}; see ${path.join(fixture.root, "cco-run.out")}`)
    return true
  }
  const lock = path.join(fixture.logDirectory, "latest", "cco.lock")
  await waitUntil("cco.lock", () => alive("cco.lock")() && existsSync(lock) && readFileSync(lock, "utf8").trim() !== "", 60_000, 20)
  const pid = Number(readFileSync(lock, "utf8").trim())
  trackPid(pid)
  const folder = realpathSync(path.join(fixture.logDirectory, "latest"))
  const combined = followLog(path.join(folder, "combined.log"))
  const leftover: Leftover = { fixture, folder, pid, child }

  const prompted = new Set<string>()
  const status = new Map<string, string>()
  let consumed = 0
  const update = () => {
    const lines = combined.poll()
    for (; consumed < lines.length; consumed++) {
      const l = lines[consumed]!
      const instance = typeof l.instance === "string" ? l.instance : undefined
      if (instance === undefined) continue
      if (l.event === "hook" && l.hook === "UserPromptSubmit") prompted.add(instance)
      if (l.event === "instance.state") status.set(instance, String(l.to))
    }
    return lines.length
  }
  const started = now()
  await waitUntil("26 prompted and idle", () => {
    alive("the team to rest")()
    update()
    return prompted.size === INSTANCES && status.size === INSTANCES && [...status.values()].every((s) => s === "idle")
  }, 240_000, 100)
  log(`  team at rest after ${((now() - started) / 1000).toFixed(1)} s`)
  if (options.seconds <= 0) return { measurements: [], leftover }

  // Settle: the last hooks and state writes of the start-up are done (no log line for 5 s; at most 30 s).
  let lastCount = update()
  let quietSince = now()
  const settleDeadline = now() + 30_000
  while (now() - quietSince < 5000 && now() < settleDeadline) {
    await sleep(250)
    const count = update()
    if (count !== lastCount) {
      lastCount = count
      quietSince = now()
    }
  }

  const linesBefore = update()
  const from = monotonicMicros()
  const t0 = now()
  const c0 = cpuTicks(pid)
  const rss: Array<number> = [rssMb(pid)]
  while (now() - t0 < options.seconds * 1000) {
    await sleep(1000)
    alive("the idle window")()
    rss.push(rssMb(pid))
  }
  const c1 = cpuTicks(pid)
  const to = monotonicMicros()
  const elapsed = (now() - t0) / 1000
  const linesDuring = update() - linesBefore
  const events = combined.lines.slice(linesBefore).reduce((m, l) => m.set(String(l.event), (m.get(String(l.event)) ?? 0) + 1), new Map<string, number>())
  const own = ((c1.own - c0.own) / CLK_TCK / elapsed) * 100
  const withChildren = ((c1.own - c0.own + c1.children - c0.children) / CLK_TCK / elapsed) * 100
  const rssMax = Math.max(...rss)
  const rssMean = rss.reduce((a, b) => a + b, 0) / rss.length
  log(`  ${elapsed.toFixed(1)} s idle: CPU ${own.toFixed(2)} % own, ${withChildren.toFixed(2)} % with its tmux/git children; RSS mean ${rssMean.toFixed(0)} MB, max ${rssMax.toFixed(0)} MB`)
  log(`  log lines meanwhile: ${linesDuring} (${[...events].map(([k, v]) => `${k} ${v}`).join(", ") || "none"})`)
  return {
    measurements: [
      { id: "3a", name: "idle orchestrator CPU (% of one core)", value: own, unit: "%", target: 1, baseline: `${withChildren.toFixed(2)} % with the tmux/git processes it spawns; ${elapsed.toFixed(0)} s window` },
      { id: "3b", name: "idle orchestrator RSS (max)", value: rssMax, unit: "MB", target: 150, baseline: `mean ${rssMean.toFixed(0)} MB` }
    ],
    leftover,
    window: { from, to }
  }
}
