// Benchmark 1: start-up of workerCount 20 (Director + 5 EMs + 20 workers = 26 instances) in this process, until
// every session has fired SessionStart and until every instance has taken its first prompt, against a bash
// baseline that does the raw work (clone, 26 worktrees and 26 tmux sessions of the fake agent) in parallel.
// Benchmark 2 then runs on the same live team: team messages into the EMs' panes (see delivery.ts).
import { writeFileSync } from "node:fs"
import * as path from "node:path"
import type { LogLine } from "../src/RunLog.js"
import { measureDelivery } from "./delivery.js"
import { makeBareRepo } from "../test/harness.js"
import { BENCH_KEY, DIRECTION, makeFixture, runInProcess } from "./fixture.js"
import type { Measurement } from "./report.js"
import {
  clientScript,
  fakeClaude,
  log,
  hookRecorder,
  newSocket,
  now,
  removeDir,
  runScript,
  stopTmuxServer,
  tempDir,
  waitUntil
} from "./util.js"

const NAMES = ["director", ...[1, 2, 3, 4, 5].map((n) => `em-${n}`), ...Array.from({ length: 20 }, (_, i) => `worker-${i + 1}`)]

/** The baseline: seconds until all 26 fired SessionStart, and until all 26 submitted a pasted prompt. */
const baseline = async (mockUrl: string): Promise<{ readonly ready: number; readonly prompted: number }> => {
  const dir = tempDir("cco-bench-base-")
  const bare = makeBareRepo(dir, { direction: DIRECTION })
  const socket = newSocket()
  const ctl = path.join(dir, "ctl.sock")
  const { seen, server } = await hookRecorder(ctl)
  const count = (hook: string) => NAMES.filter((n) => seen.has(`${hook}:${n}`)).length
  try {
    const started = now()
    const env = { ...process.env, NODE: process.execPath, CLIENT: clientScript, FAKE: fakeClaude, CTL: ctl, ANTHROPIC_API_KEY: BENCH_KEY, ANTHROPIC_BASE_URL: mockUrl }
    await runScript("baseline-startup.sh", [dir, bare, socket, ...NAMES], env)
    await waitUntil("26 SessionStart hooks (baseline)", () => count("SessionStart") === NAMES.length, 120_000, 5)
    const ready = Math.max(...NAMES.map((n) => seen.get(`SessionStart:${n}`)!)) - started
    // A prompt of a role prompt's size, pasted with cco's settle time before Enter.
    const prompt = "You are a worker in a benchmark. ".repeat(40)
    const promptFile = path.join(dir, "prompt.txt")
    writeFileSync(promptFile, prompt)
    const settle = (Math.min(1500, 150 + Math.floor(prompt.length / 20)) / 1000).toFixed(3)
    await runScript("baseline-paste.sh", [socket, promptFile, settle, ...NAMES], env)
    await waitUntil("26 UserPromptSubmit hooks (baseline)", () => count("UserPromptSubmit") === NAMES.length, 60_000, 5)
    const prompted = Math.max(...NAMES.map((n) => seen.get(`UserPromptSubmit:${n}`)!)) - started
    return { ready: ready / 1000, prompted: prompted / 1000 }
  } finally {
    await stopTmuxServer(socket)
    await new Promise<void>((r) => server.close(() => r()))
    server.closeAllConnections()
    removeDir(dir)
  }
}

export interface TeamView {
  readonly status: Map<string, string>
  readonly generation: Map<string, number>
  readonly listeners: Set<(line: LogLine, at: number) => void>
}

interface Round {
  readonly baseline: { readonly ready: number; readonly prompted: number }
  readonly ready: number
  readonly prompted: number
}

const median = (xs: ReadonlyArray<number>) => {
  const sorted = [...xs].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

/**
 * One cco start-up of the 26-instance team in this process: seconds until all fired SessionStart and until all
 * submitted their first prompt; then, while the team rests, `whileLive` (benchmark 2); then the run is stopped.
 */
const ccoStartup = async (mockUrl: string, whileLive?: (folder: string, socket: string, view: TeamView) => Promise<void>) => {
  const fixture = makeFixture(mockUrl)
  const view: TeamView = { status: new Map(), generation: new Map(), listeners: new Set() }
  const ready = new Map<string, number>()
  const prompted = new Map<string, number>()
  const marks = new Map<string, number>()
  let launched = 0
  const onLog = (line: LogLine) => {
    const at = now()
    const instance = typeof line.instance === "string" ? line.instance : undefined
    switch (line.event) {
      case "hook":
        if (instance !== undefined && line.hook === "SessionStart" && !ready.has(instance)) ready.set(instance, at)
        if (instance !== undefined && line.hook === "UserPromptSubmit" && !prompted.has(instance)) prompted.set(instance, at)
        break
      case "instance.state":
        if (instance !== undefined) view.status.set(instance, String(line.to))
        break
      case "instance.launched":
        if (instance !== undefined) view.generation.set(instance, Number(line.generation))
        if (++launched === NAMES.length) marks.set("launched", at)
        break
      case "worktree.ready":
        if (line.progress === `${NAMES.length}/${NAMES.length}`) marks.set("worktrees", at)
        break
    }
    for (const l of view.listeners) l(line, at)
  }
  const started = now()
  const run = runInProcess(fixture, onLog)
  let failed: unknown
  void run.done.then((exit) => {
    if (exit._tag === "Failure") failed = exit.cause
  })
  const check = (what: string, f: () => boolean) => () => {
    if (failed !== undefined) throw new Error(`the run ended while waiting for ${what}: ${String(failed)}`)
    return f()
  }
  try {
    await waitUntil("26 SessionStart hooks", check("SessionStart", () => ready.size === NAMES.length), 180_000, 10)
    const readyS = (Math.max(...ready.values()) - started) / 1000
    await waitUntil("26 first prompts", check("first prompts", () => prompted.size === NAMES.length), 180_000, 10)
    const promptedS = (Math.max(...prompted.values()) - started) / 1000
    const at = (t: number | undefined) => t === undefined ? "?" : `${((t - started) / 1000).toFixed(2)} s`
    const first = (prefix: string) => Math.min(...NAMES.filter((n) => n.startsWith(prefix)).map((n) => prompted.get(n)!))
    log(`  cco: worktrees ${at(marks.get("worktrees"))}, launched ${at(marks.get("launched"))}, ready ${readyS.toFixed(2)} s; ` +
      `prompted: director ${at(prompted.get("director"))}, first EM ${at(first("em-"))}, first worker ${at(first("worker-"))}, all ${promptedS.toFixed(2)} s`)
    if (whileLive !== undefined) {
      // The team comes to rest: everyone idle, workers holding their tasks.
      await waitUntil("all 26 idle", check("idle", () => NAMES.every((n) => view.status.get(n) === "idle")), 120_000, 50)
      await whileLive(run.folder()!, fixture.socket, view)
    }
    return { ready: readyS, prompted: promptedS }
  } finally {
    await run.stop(60_000)
    await stopTmuxServer(fixture.socket)
    removeDir(fixture.root)
  }
}

export const startupAndDelivery = async (
  mockUrl: string,
  options: {
    readonly startup: boolean
    readonly rounds: number
    readonly deliveries: number
    /** Beside the real-claude start-up: ids 1d and 1e, named as the fake agent's, for information (no target). */
    readonly secondary?: boolean
  }
): Promise<ReadonlyArray<Measurement>> => {
  const results: Array<Measurement> = []
  const rounds: Array<Round> = []
  const deliver = options.deliveries <= 0 ? undefined : async (folder: string, socket: string, view: TeamView) => {
    results.push(...await measureDelivery({ folder, socket, view, events: options.deliveries }))
  }
  // Baseline and cco in turn, each cco start-up right after its own baseline; the last run hosts benchmark 2.
  const count = options.startup ? Math.max(1, options.rounds) : 0
  for (let r = 0; r < count; r++) {
    const b = await baseline(mockUrl)
    log(`  round ${r + 1}: baseline ready ${b.ready.toFixed(2)} s, prompted ${b.prompted.toFixed(2)} s`)
    const c = await ccoStartup(mockUrl, r === count - 1 ? deliver : undefined)
    rounds.push({ baseline: b, ...c })
  }
  if (count === 0) await ccoStartup(mockUrl, deliver)
  if (rounds.length > 0) {
    const readyRatio = median(rounds.map((r) => r.ready / r.baseline.ready))
    const promptedRatio = median(rounds.map((r) => r.prompted / r.baseline.prompted))
    const list = (f: (r: Round) => number) => rounds.map((r) => f(r).toFixed(2)).join(", ")
    results.unshift(
      {
        id: options.secondary ? "1d" : "1a",
        name: `start-up${options.secondary ? ", fake agent" : ""}: 26 ready (SessionStart), × baseline`,
        value: readyRatio,
        unit: "x",
        ...(options.secondary ? {} : { target: 1.3 }),
        baseline: `median of ${rounds.length} rounds; cco ${list((r) => r.ready)} s vs bash ${list((r) => r.baseline.ready)} s`
      },
      {
        id: options.secondary ? "1e" : "1b",
        name: `start-up${options.secondary ? ", fake agent" : ""}: 26 have first prompt, × baseline`,
        value: promptedRatio,
        unit: "x",
        baseline: `cco ${list((r) => r.prompted)} s vs bash ${list((r) => r.baseline.prompted)} s (bash pastes to all at once; cco goes Director → EMs → workers)`
      }
    )
  }
  return results
}
