// Shared pieces of `npm run bench`: everything the bench starts (private tmux servers, temp dirs, child
// processes) is registered here and removed on exit, also on failure or Ctrl-C; plus timing and statistics.
import { execFileSync, spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import * as http from "node:http"
import * as path from "node:path"
import { performance } from "node:perf_hooks"
import { alive, killTmuxServer } from "../test/support.js"

export const projectRoot = path.resolve(import.meta.dirname, "..")
export const clientScript = path.join(projectRoot, "bin", "cco-client.mjs")
export const fakeClaude = path.join(projectRoot, "test", "fake-agent", "fake-claude.mjs")

export const now = () => performance.now()

// ---------------------------------------------------------------------------------------------
// Resources removed at exit, whatever happens

const sockets = new Set<string>()
const dirs = new Set<string>()
const pids = new Set<number>()
const finalizers: Array<() => void> = []


/** A private tmux server name, killed at exit. */
export const newSocket = () => {
  const name = `cco-bench-${randomBytes(4).toString("hex")}`
  sockets.add(name)
  return name
}


/** Pids of the programs in every pane of a private tmux server. */
export const panePids = (socket: string): Array<number> => {
  try {
    return execFileSync("tmux", ["-L", socket, "list-panes", "-a", "-F", "#{pane_pid}"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] })
      .split("\n").filter((l) => l.trim() !== "").map(Number)
  } catch {
    return []
  }
}

/**
 * CPU seconds (user + system, their reaped children's included) of the processes under every pane of a private
 * tmux server, with the count of processes: what the instances themselves have spent so far.
 */
export const paneTreeCpu = (socket: string): { readonly seconds: number; readonly processes: number; readonly kinds: string; readonly claudeStarts: ReadonlyArray<number> } => {
  const stats = new Map<number, { readonly comm: string; readonly ppid: number; readonly ticks: number; readonly start: number }>()
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8")
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
      stats.set(Number(name), { comm: stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")")), ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]), start: Number(f[19]) / 100 })
    } catch {
      // gone
    }
  }
  const children = new Map<number, Array<number>>()
  for (const [pid, s] of stats) children.set(s.ppid, [...(children.get(s.ppid) ?? []), pid])
  let ticks = 0
  let processes = 0
  const kinds = new Map<string, number>()
  const claudeStarts: Array<number> = []
  const uptime = Number(readFileSync("/proc/uptime", "utf8").split(" ")[0])
  const todo = [...panePids(socket)]
  while (todo.length > 0) {
    const pid = todo.pop()!
    const s = stats.get(pid)
    if (s === undefined) continue
    ticks += s.ticks
    processes++
    const kind = s.comm
    kinds.set(kind, (kinds.get(kind) ?? 0) + 1)
    if (s.comm.startsWith("claude")) claudeStarts.push(uptime - s.start)
    todo.push(...(children.get(pid) ?? []))
  }
  return { seconds: ticks / 100, processes, kinds: [...kinds].map(([k, n]) => `${k} ×${n}`).join(", "), claudeStarts }
}

export const sessionCount = (socket: string): number => {
  try {
    return execFileSync("tmux", ["-L", socket, "list-sessions", "-F", "#{session_name}"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] })
      .split("\n").filter((l) => l.trim() !== "").length
  } catch {
    return 0
  }
}

/** Kills a private tmux server and waits (bounded) until the programs of its panes have exited. */
export const stopTmuxServer = async (socket: string, timeoutMs = 15_000) => {
  const programs = panePids(socket)
  killTmuxServer(socket)
  const deadline = Date.now() + timeoutMs
  while (programs.some(alive) && Date.now() < deadline) await sleep(50)
  for (const pid of programs.filter(alive)) {
    try {
      process.kill(pid, "SIGKILL")
    } catch {
      // gone meanwhile
    }
  }
  sockets.delete(socket)
}

export const tempDir = (prefix: string) => {
  const dir = mkdtempSync(path.join(tmpdir(), prefix))
  dirs.add(dir)
  return dir
}

export const removeDir = (dir: string) => {
  rmSync(dir, { recursive: true, force: true })
  dirs.delete(dir)
}

/** A child process to kill (SIGKILL, by pid) at exit if it still runs. */
export const trackPid = (pid: number | undefined) => {
  if (pid !== undefined) pids.add(pid)
}
export const untrackPid = (pid: number | undefined) => {
  if (pid !== undefined) pids.delete(pid)
}

export const onExit = (f: () => void) => void finalizers.push(f)

let cleaned = false
/** Synchronous: usable from process "exit" and signal handlers. */
export const cleanupAll = () => {
  if (cleaned) return
  cleaned = true
  for (const f of finalizers.splice(0).reverse()) {
    try {
      f()
    } catch {
      // keep cleaning
    }
  }
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL")
    } catch {
      // gone
    }
  }
  for (const socket of sockets) killTmuxServer(socket)
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
}

export const installExitCleanup = () => {
  process.on("exit", cleanupAll)
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.on(signal, () => {
      process.stderr.write(`\nbench: ${signal}, cleaning up\n`)
      cleanupAll()
      process.exit(130)
    })
  }
  process.on("uncaughtException", (e) => {
    process.stderr.write(`bench: uncaught ${e.stack ?? String(e)}\n`)
    cleanupAll()
    process.exit(1)
  })
}

// ---------------------------------------------------------------------------------------------
// Time

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

export const waitUntil = async (what: string, check: () => boolean, timeoutMs: number, intervalMs = 20) => {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${Math.round(timeoutMs / 1000)} s waiting for ${what}`)
    await sleep(intervalMs)
  }
}

/** Runs a program to its exit; resolves with the exit code and the wall time from spawn (ms). */
export const runTimed = (
  program: string,
  args: ReadonlyArray<string>,
  options: { readonly env?: NodeJS.ProcessEnv; readonly stdin?: string; readonly cwd?: string } = {}
) =>
  new Promise<{ readonly code: number; readonly ms: number; readonly stdout: string; readonly stderr: string }>((resolve, reject) => {
    const started = now()
    const child = spawn(program, args, { env: options.env ?? process.env, cwd: options.cwd, stdio: ["pipe", "pipe", "pipe"] })
    trackPid(child.pid)
    const out: Array<Buffer> = []
    const err: Array<Buffer> = []
    child.stdout.on("data", (c: Buffer) => out.push(c))
    child.stderr.on("data", (c: Buffer) => err.push(c))
    child.on("error", reject)
    child.on("close", (code, signal) => {
      untrackPid(child.pid)
      resolve({
        code: code ?? (signal === null ? 1 : 128),
        ms: now() - started,
        stdout: Buffer.concat(out).toString("utf8"),
        stderr: Buffer.concat(err).toString("utf8")
      })
    })
    child.stdin.on("error", () => {})
    child.stdin.end(options.stdin ?? "")
  })

// ---------------------------------------------------------------------------------------------
// Statistics

/** Nearest-rank percentile of a sample. */
export const percentile = (values: ReadonlyArray<number>, p: number) => {
  if (values.length === 0) return NaN
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!
}

export interface Summary {
  readonly n: number
  readonly p50: number
  readonly p95: number
  readonly mean: number
  readonly min: number
  readonly max: number
}

export const summarize = (values: ReadonlyArray<number>): Summary => ({
  n: values.length,
  p50: percentile(values, 50),
  p95: percentile(values, 95),
  mean: values.reduce((a, b) => a + b, 0) / Math.max(1, values.length),
  min: Math.min(...values),
  max: Math.max(...values)
})

export const fmtMs = (ms: number) => (ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(ms < 10 ? 2 : 1)} ms`)
export const fmtSummary = (s: Summary) => `p50 ${fmtMs(s.p50)}, p95 ${fmtMs(s.p95)} (n=${s.n}, min ${fmtMs(s.min)}, max ${fmtMs(s.max)})`

/** Load average of the machine (1, 5, 15 minutes): other work on it skews every number. */
export const loadAverage = () => readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")

/** Non-idle CPU seconds of the whole machine so far (/proc/stat), and this process's own: for a phase's CPU cost. */
export const cpuSeconds = () => {
  const fields = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number)
  const busy = fields.reduce((a, b) => a + b, 0) - (fields[3] ?? 0) - (fields[4] ?? 0)
  const own = process.cpuUsage()
  return { machine: busy / 100, own: (own.user + own.system) / 1e6 }
}

export const log = (text: string) => process.stderr.write(`${text}\n`)

export { alive, killTmuxServer }

/** A control socket for the bash floors: when each `<hook>:<instance>` first arrived (the client's POST body). */
export const hookRecorder = async (ctl: string) => {
  const seen = new Map<string, number>()
  const server = http.createServer((req, res) => {
    const chunks: Array<Buffer> = []
    req.on("data", (c: Buffer) => chunks.push(c))
    req.on("end", () => {
      const at = now()
      try {
        const msg = JSON.parse(Buffer.concat(chunks).toString("utf8")) as { instance?: string; hook?: string }
        const key = `${msg.hook}:${msg.instance}`
        if (!seen.has(key)) seen.set(key, at)
      } catch {
        // not ours
      }
      res.end("ok\n")
    })
  })
  await new Promise<void>((r) => server.listen(ctl, r))
  return { seen, server }
}

/** Runs one of bench/'s bash scripts; fails with its stderr when it exits non-zero. */
export const runScript = (script: string, args: ReadonlyArray<string>, env: NodeJS.ProcessEnv) =>
  new Promise<void>((resolve, reject) => {
    const child = spawn("bash", [path.join(projectRoot, "bench", script), ...args], { env, stdio: ["ignore", "ignore", "pipe"] })
    trackPid(child.pid)
    const err: Array<Buffer> = []
    child.stderr.on("data", (c: Buffer) => err.push(c))
    child.on("error", reject)
    child.on("close", (code) => {
      untrackPid(child.pid)
      if (code === 0) resolve()
      else reject(new Error(`${script} exited ${code}: ${Buffer.concat(err).toString("utf8").trim()}`))
    })
  })
