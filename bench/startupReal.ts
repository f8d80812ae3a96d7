// Benchmark 1 with the real `claude` (node_modules/.bin/claude) against the mock model: start-up of workerCount 20
// (Director + 5 EMs + 20 workers = 26 instances) until every session has fired SessionStart, next to a bash floor
// doing the same work with the same CLI in the same run (bench/baseline-startup-real.sh), in alternating rounds;
// then, on the cco run, the time from start to the Director's first `cco team assign` (the bench's scripted team,
// bench/brain.ts) and the wind-down: the run interrupted (what Ctrl-C does) until it has exited, state.json says
// "interrupted", and no tmux session and no process of the run is left.
import { NodeContext } from "@effect/platform-node"
import { Effect, Redacted } from "effect"
import { execFileSync } from "node:child_process"
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs"
import * as path from "node:path"
import { launchCommand, prepareConfigDir, type InstanceLaunch } from "../src/ClaudeCode.js"
import * as Hierarchy from "../src/Hierarchy.js"
import type { LogLine } from "../src/RunLog.js"
import * as Sandbox from "../src/Sandbox.js"
import { shellQuote } from "../src/Shell.js"
import { agentHome, claudeBin, makeBareRepo } from "../test/harness.js"
import { remoteHost, startSshd } from "../test/sshd.js"
import { BENCH_KEY, DIRECTION, makeFixture, runInProcess } from "./fixture.js"
import type { Measurement } from "./report.js"
import {
  clientScript,
  cpuSeconds,
  loadAverage,
  paneTreeCpu,
  log,
  hookRecorder,
  newSocket,
  now,
  removeDir,
  runScript,
  sessionCount,
  sleep,
  stopTmuxServer,
  tempDir,
  waitUntil
} from "./util.js"

/** The instances of workerCount N with the default group size of 4 (as src/Hierarchy.ts lays them out). */
export const teamNames = (workers: number): ReadonlyArray<string> =>
  Hierarchy.instances(Hierarchy.topology(workers, 4), { target: "main", prefix: "cco" }).map((s) => s.name)

/** A round that failed its measure (NaN) makes the median NaN: the verdict is then MISSED, not hidden. */
const median = (xs: ReadonlyArray<number>) => {
  if (xs.length === 0 || xs.some(Number.isNaN)) return NaN
  const sorted = [...xs].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

/** The same hook command as cco's (src/Agent.ts), so both sides' hooks cost the same. */
const hookCommand = ["env", "-u", "NODE_EXTRA_CA_CERTS", shellQuote(process.execPath), shellQuote(clientScript), "hook"].join(" ")

/** Processes whose environment names this run (every instance, and what it starts, has CCO_RUN=<runId>). */
const processesOf = (runId: string): Array<number> => {
  const wanted = `CCO_RUN=${runId}`
  const found: Array<number> = []
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue
    try {
      if (readFileSync(`/proc/${name}/environ`, "latin1").split("\0").includes(wanted)) found.push(Number(name))
    } catch {
      // gone, or not ours to read
    }
  }
  return found
}

interface FloorRound {
  readonly ready: number
  /** tmux kill-server until every claude of the floor has exited (no state to save): the floor under wind-down. */
  readonly down: number
}

/**
 * The floor: seconds from the script's start until all fired SessionStart. The config dirs (ClaudeCode's
 * prepareConfigDir) and environment files are written before the clock starts, so the floor does not pay for
 * them while cco does (inside its start-up, as it must): this side is the stricter one for cco.
 */
const floor = async (mockUrl: string, names: ReadonlyArray<string>): Promise<FloorRound> => {
  const dir = tempDir("cco-bench-floor-")
  const bare = makeBareRepo(dir, { direction: DIRECTION })
  const home = agentHome(dir)
  const socket = newSocket()
  const ctl = path.join(dir, "ctl.sock")
  const { seen, server } = await hookRecorder(ctl)
  try {
    mkdirSync(path.join(dir, "env"))
    await Effect.runPromise(Effect.forEach(names, (name) =>
      Effect.gen(function*() {
        const spec: InstanceLaunch = {
          configDir: path.join(dir, "instances", name, "claude"),
          worktree: path.join(dir, "worktrees", name),
          claudePath: claudeBin,
          continueSession: false,
          credentialEnv: { ANTHROPIC_API_KEY: Redacted.make(BENCH_KEY), ANTHROPIC_BASE_URL: Redacted.make(mockUrl) },
          hookCommand,
          extraEnv: {
            CLAUDE_CODE_MAX_RETRIES: "0",
            HOME: home,
            PATH: process.env.PATH ?? "/usr/bin:/bin",
            CCO_SOCKET: ctl,
            CCO_INSTANCE: name,
            CCO_GENERATION: "0",
            CCO_TOKEN: "bench"
          }
        }
        yield* prepareConfigDir(spec)
        const env = Object.entries(launchCommand(spec).env).map(([k, v]) => `export ${k}=${shellQuote(typeof v === "string" ? v : Redacted.value(v))}`)
        writeFileSync(path.join(dir, "env", name), `${env.join("\n")}\n`, { mode: 0o600 })
      })).pipe(Effect.provide(NodeContext.layer)))
    const started = now()
    const cpu0 = cpuSeconds()
    await runScript("baseline-startup-real.sh", [dir, bare, socket, claudeBin, ...names], process.env)
    await waitUntil(`${names.length} SessionStart hooks (floor)`, () => names.every((n) => seen.has(`SessionStart:${n}`)), 180_000, 10)
    const ready = (Math.max(...names.map((n) => seen.get(`SessionStart:${n}`)!)) - started) / 1000
    const cpu1 = cpuSeconds()
    const tree = paneTreeCpu(socket)
    const ago = (now() - started) / 1000
    const starts = tree.claudeStarts.map((a) => ago - a).sort((a, b) => a - b)
    log(`  floor: claude processes started at ${starts[0]?.toFixed(2)}–${starts.at(-1)?.toFixed(2)} s (median ${median(starts).toFixed(2)})`)
    log(`  floor: instances' processes ${tree.processes} (${tree.kinds}), their CPU ${tree.seconds.toFixed(1)} s; half ready ${((median(names.map((n) => seen.get(`SessionStart:${n}`)!)) - started) / 1000).toFixed(2)} s, all ${ready.toFixed(2)} s; CPU ${(cpu1.machine - cpu0.machine).toFixed(1)} s (bench process ${(cpu1.own - cpu0.own).toFixed(1)} s)`)
    const t = now()
    await stopTmuxServer(socket, 30_000)
    return { ready, down: (now() - t) / 1000 }
  } finally {
    await stopTmuxServer(socket)
    await new Promise<void>((r) => server.close(() => r()))
    server.closeAllConnections()
    removeDir(dir)
  }
}

interface CcoRound {
  readonly ready: number
  readonly firstAssign: number
  /** All have their first prompt (NaN if not within the wait). */
  readonly prompted: number
  /** Interrupt until the run has exited (state saved). */
  readonly exited: number
  /** Interrupt until the run has exited and no session and no process of it is left. */
  readonly down: number
  readonly endReason: string
  readonly left: string
}

/** One cco start-up with the real claude, in this process; then its wind-down. `hosts`: the config's `hosts`. */
const ccoRound = async (
  mockUrl: string,
  workers: number,
  names: ReadonlyArray<string>,
  promptWaitMs: number,
  sandbox: string | undefined,
  work: boolean,
  hosts?: ReadonlyArray<Record<string, unknown>>
): Promise<CcoRound> => {
  const fixture = makeFixture(mockUrl, workers, { ...(sandbox === undefined ? {} : { sandbox }), ...(hosts === undefined ? {} : { hosts }) })
  const home = agentHome(fixture.root)
  const ready = new Map<string, number>()
  const prompted = new Map<string, number>()
  const marks = new Map<string, number>()
  let launched = 0
  // combined.log events after the interrupt: when each kind came first and last, for the wind-down's breakdown.
  let downSince: number | undefined
  const downEvents = new Map<string, { first: number; last: number; count: number }>()
  const onLog = (line: LogLine) => {
    const at = now()
    if (downSince !== undefined) {
      const e = downEvents.get(line.event)
      downEvents.set(line.event, e === undefined ? { first: at, last: at, count: 1 } : { ...e, last: at, count: e.count + 1 })
    }
    const instance = typeof line.instance === "string" ? line.instance : undefined
    switch (line.event) {
      case "hook":
        if (instance !== undefined && line.hook === "SessionStart" && !ready.has(instance)) ready.set(instance, at)
        if (instance !== undefined && line.hook === "UserPromptSubmit" && !prompted.has(instance)) prompted.set(instance, at)
        break
      case "team.command":
        if (line.command === "assign" && !marks.has("assign")) marks.set("assign", at)
        break
      case "instance.launched":
        if (++launched === names.length) marks.set("launched", at)
        if (!marks.has("first launch")) marks.set("first launch", at)
        break
      case "worktree.ready":
        if (line.progress === `${names.length}/${names.length}`) marks.set("worktrees", at)
        break
    }
  }
  const started = now()
  const cpu0 = cpuSeconds()
  const run = runInProcess(fixture, onLog, { claudePath: claudeBin, extraEnv: { HOME: home } })
  let failed: unknown
  let finished = false
  void run.done.then((exit) => {
    finished = true
    if (exit._tag === "Failure") failed = exit.cause
  })
  const check = (what: string, f: () => boolean) => () => {
    if (failed !== undefined) throw new Error(`the run ended while waiting for ${what}: ${String(failed)}`)
    return f()
  }
  const at = (t: number | undefined) => t === undefined ? "?" : `${((t - started) / 1000).toFixed(2)} s`
  try {
    await waitUntil(`${names.length} SessionStart hooks`, check("SessionStart", () => ready.size === names.length), 180_000, 10)
    const readyS = (Math.max(...ready.values()) - started) / 1000
    const cpu1 = cpuSeconds()
    const tree = paneTreeCpu(fixture.socket)
    const ago = (now() - started) / 1000
    const starts = tree.claudeStarts.map((a) => ago - a).sort((a, b) => a - b)
    log(`  cco: claude processes started at ${starts[0]?.toFixed(2)}–${starts.at(-1)?.toFixed(2)} s (median ${median(starts).toFixed(2)})`)
    log(`  cco: instances' processes ${tree.processes} (${tree.kinds}), their CPU ${tree.seconds.toFixed(1)} s; half ready ${((median([...ready.values()]) - started) / 1000).toFixed(2)} s, all ${readyS.toFixed(2)} s; CPU ${(cpu1.machine - cpu0.machine).toFixed(1)} s (bench process with the orchestrator ${(cpu1.own - cpu0.own).toFixed(1)} s)`)
    // (A round for the start-up alone goes to its wind-down at once.)
    if (work) await waitUntil("the first cco team assign", check("the first assign", () => marks.has("assign")), 180_000, 10)
    const firstAssign = work ? (marks.get("assign")! - started) / 1000 : NaN
    // The team at work: wait (bounded) until everyone has its first prompt, so the wind-down meets busy instances.
    if (work) await waitUntil("first prompts", check("first prompts", () => prompted.size === names.length), promptWaitMs, 10).catch(() => undefined)
    const promptedS = prompted.size === names.length ? (Math.max(...prompted.values()) - started) / 1000 : NaN
    log(`  cco: director ready ${at(ready.get("director"))}, first launch ${at(marks.get("first launch"))}, worktrees ${at(marks.get("worktrees"))}, ` +
      `launched ${at(marks.get("launched"))}, all ready ${readyS.toFixed(2)} s; director prompted ${at(prompted.get("director"))}, ` +
      `first assign ${firstAssign.toFixed(2)} s, ${prompted.size}/${names.length} prompted ${Number.isNaN(promptedS) ? `(not all within ${promptWaitMs / 1000} s)` : `at ${promptedS.toFixed(2)} s`}`)

    // Wind-down: interrupt the run (as Ctrl-C does in `cco run`) and time it until nothing of it is left.
    const folder = run.folder()!
    const runId = run.runId()!
    const t0 = now()
    downSince = t0
    await run.stop(60_000)
    const exited = finished ? (now() - t0) / 1000 : NaN
    const gone = () => sessionCount(fixture.socket) === 0 && processesOf(runId).length === 0
    const deadline = now() + 30_000
    while (!gone() && now() < deadline) await sleep(20)
    const down = gone() && finished ? (now() - t0) / 1000 : NaN
    const stateFile = path.join(folder, "state.json")
    const endReason = existsSync(stateFile) ? String((JSON.parse(readFileSync(stateFile, "utf8")) as { endReason?: unknown }).endReason) : "no state.json"
    const left = `${sessionCount(fixture.socket)} sessions, ${processesOf(runId).length} processes`
    log(`  cco wind-down: exited ${exited.toFixed(2)} s after the interrupt, nothing left at ${down.toFixed(2)} s; endReason ${endReason}; left ${left}`)
    const s = (t: number) => ((t - t0) / 1000).toFixed(2)
    log(`    log after the interrupt: ${[...downEvents].map(([k, e]) => e.count === 1 ? `${k} ${s(e.first)}` : `${k} ×${e.count} ${s(e.first)}–${s(e.last)}`).join(", ")} s`)
    return { ready: readyS, firstAssign, prompted: promptedS, exited, down: endReason === "interrupted" ? down : NaN, endReason, left }
  } catch (e) {
    log(`  cco: SessionStart from ${[...ready.keys()].join(", ") || "none"}; prompted ${[...prompted.keys()].join(", ") || "none"}`)
    // What the run was doing, and what the director's pane shows, for the error report.
    const folder = run.folder()
    if (folder !== undefined && existsSync(path.join(folder, "combined.log"))) {
      log(`  --- last lines of ${folder}/combined.log`)
      for (const l of readFileSync(path.join(folder, "combined.log"), "utf8").trim().split("\n").slice(-25)) log(`  ${l.slice(0, 300)}`)
    }
    try {
      const sessions = execFileSync("tmux", ["-L", fixture.socket, "list-sessions", "-F", "#{session_name}"], { encoding: "utf8" }).split("\n").filter((x) => x !== "")
      const director = sessions.find((x) => x.endsWith("-director"))
      if (director !== undefined) log(`  --- ${director}:\n${execFileSync("tmux", ["-L", fixture.socket, "capture-pane", "-p", "-t", `=${director}:`], { encoding: "utf8" }).trimEnd()}`)
    } catch {
      // no server
    }
    throw e
  } finally {
    if (!finished) await run.stop(60_000)
    await stopTmuxServer(fixture.socket)
    if (hosts !== undefined) await stopTmuxServer(`${fixture.socket}-box`)
    removeDir(fixture.root)
  }
}

/**
 * Rounds of floor, cco unconfined (sandbox "none": the floor confines nothing either) and, where bubblewrap works,
 * cco confined (its default here), in turn. 1a compares unconfined cco with the floor, 1f confined with
 * unconfined cco; first assignment (1b) and wind-down (1c) are measured on the default (confined) rounds.
 * `--sandbox MODE` measures cco with that setting alone. With `hosts`, each round ends with a cco start-up of the
 * same team with half its workers on a remote host (an sshd of the bench's own on 127.0.0.1 with a workdir of its
 * own, test/sshd.ts): 1g compares it with the default round, all here. It measures what SSH adds (one master per
 * host, files copied over, tmux and git through it), not another machine's speed.
 */
export const realStartup = async (
  mockUrl: string,
  options: { readonly rounds: number; readonly workers: number; readonly promptWaitSeconds: number; readonly sandbox?: string; readonly hosts?: boolean }
): Promise<ReadonlyArray<Measurement>> => {
  const names = teamNames(options.workers)
  const confinable = (await Effect.runPromise(Sandbox.probe(process.env.PATH ?? "/usr/bin:/bin").pipe(Effect.provide(NodeContext.layer))))._tag === "Usable"
  const variants: ReadonlyArray<string> = options.sandbox !== undefined ? [options.sandbox] : confinable ? ["none", "auto"] : ["none"]
  if (options.sandbox === undefined && !confinable) log("  bubblewrap does not work here: cco runs unconfined, and the cost of confinement is not measured")
  const rounds: Array<{ readonly floor: FloorRound; readonly cco: ReadonlyMap<string, CcoRound>; readonly hosts?: CcoRound }> = []
  const sshd = options.hosts === true ? await startSshd() : undefined
  // Half the workers there: "local" has room for the leads and the other half.
  const leads = names.length - options.workers
  const hosts = sshd === undefined ? undefined : [{ name: "local", maxInstances: leads + Math.ceil(options.workers / 2) }, remoteHost(sshd, claudeBin)]
  try {
    for (let r = 0; r < Math.max(1, options.rounds); r++) {
      const f = await floor(mockUrl, names)
      log(`  round ${r + 1}: floor ready ${f.ready.toFixed(2)} s (down ${f.down.toFixed(2)} s); load average ${loadAverage()}`)
      const cco = new Map<string, CcoRound>()
      for (const [i, sandbox] of variants.entries()) {
        const c = await ccoRound(mockUrl, options.workers, names, options.promptWaitSeconds * 1000, sandbox, i === variants.length - 1)
        log(`  round ${r + 1}: cco (sandbox ${sandbox}) ready ${c.ready.toFixed(2)} s = ${(c.ready / f.ready).toFixed(2)}× the floor; load average ${loadAverage()}`)
        cco.set(sandbox, c)
      }
      const h = hosts === undefined ? undefined : await ccoRound(mockUrl, options.workers, names, 0, variants.at(-1), false, hosts)
      if (h !== undefined) log(`  round ${r + 1}: cco with ${Math.floor(options.workers / 2)} workers over SSH ready ${h.ready.toFixed(2)} s = ${(h.ready / cco.get(variants.at(-1)!)!.ready).toFixed(2)}× all here; load average ${loadAverage()}`)
      rounds.push({ floor: f, cco, ...(h === undefined ? {} : { hosts: h }) })
    }
  } finally {
    sshd?.stop()
  }
  const [plain, main] = [variants[0]!, variants.at(-1)!]
  const list = (f: (r: typeof rounds[number]) => number) => rounds.map((r) => Number.isNaN(f(r)) ? "—" : f(r).toFixed(2)).join(", ")
  const n = names.length
  const of = (r: typeof rounds[number], sandbox: string) => r.cco.get(sandbox)!
  return [
    {
      id: "1a",
      name: `start-up, real claude: ${n} ready (SessionStart), × floor${plain === "none" ? " (unconfined)" : ` (sandbox ${plain})`}`,
      value: median(rounds.map((r) => of(r, plain).ready / r.floor.ready)),
      unit: "x",
      target: 1.15,
      baseline: `median of ${rounds.length} rounds; cco ${list((r) => of(r, plain).ready)} s vs bash ${list((r) => r.floor.ready)} s`
    },
    {
      id: "1b",
      name: "start → first cco team assign, real claude",
      value: median(rounds.map((r) => of(r, main).firstAssign)),
      unit: "s",
      baseline: `sandbox ${main}; rounds ${list((r) => of(r, main).firstAssign)} s; all ${n} have their first prompt at ${list((r) => of(r, main).prompted)} s${rounds.some((r) => Number.isNaN(of(r, main).prompted)) ? " (— not within --prompt-wait)" : ""}`
    },
    {
      id: "1c",
      name: `wind-down of ${n} real instances (interrupt → exited, nothing left)`,
      value: median(rounds.map((r) => of(r, main).down)),
      unit: "s",
      target: 5,
      baseline: `sandbox ${main}; rounds ${list((r) => of(r, main).down)} s (exited ${list((r) => of(r, main).exited)} s; endReason ${[...new Set(rounds.map((r) => of(r, main).endReason))].join("/")}); ` +
        `floor: tmux kill-server until its claudes exited ${list((r) => r.floor.down)} s`
    },
    ...(variants.length < 2 ? [] : [{
      id: "1f",
      name: `cost of confinement: start-up confined (bwrap) × unconfined`,
      value: median(rounds.map((r) => of(r, main).ready / of(r, plain).ready)),
      unit: "x" as const,
      target: 1.1,
      baseline: `median of ${rounds.length} rounds; confined ${list((r) => of(r, main).ready)} s vs unconfined ${list((r) => of(r, plain).ready)} s`
    }]),
    ...(hosts === undefined ? [] : [{
      id: "1g",
      name: `start-up with ${Math.floor(options.workers / 2)} of ${options.workers} workers on a remote host over SSH × all here`,
      value: median(rounds.map((r) => r.hosts!.ready / of(r, main).ready)),
      unit: "x" as const,
      baseline: `sandbox ${main}; median of ${rounds.length} rounds; over SSH ${list((r) => r.hosts!.ready)} s vs all here ${list((r) => of(r, main).ready)} s (the "remote" host is this machine through an sshd on 127.0.0.1)`
    }])
  ]
}
