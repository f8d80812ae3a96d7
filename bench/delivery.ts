// Benchmark 2: an agent's team command → the orchestrator's decision → the message pasted into an EM's pane, with
// 26 live instances. A worker's identity runs the run's own `cco` shim (`cco team message em-N …`, as an agent's
// Bash tool would); the paste is seen in the EM's session log (pipe-pane output) the moment the pane draws it.
// Messages rotate over the five EMs and go only to an idle one, so delivery never waits for a turn to end.
import { NodeContext } from "@effect/platform-node"
import { Effect } from "effect"
import { spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import { closeSync, existsSync, fstatSync, openSync, readdirSync, readFileSync, readSync, watch } from "node:fs"
import * as path from "node:path"
import { exec } from "../src/Exec.js"
import type { Measurement } from "./report.js"
import type { TeamView } from "./startup.js"
import { fmtSummary, log, now, summarize, trackPid, untrackPid, waitUntil } from "./util.js"

interface Delivery {
  readonly em: string
  readonly marker: string
  readonly spawned: number
  command?: number
  pasted?: number
  delivered?: number
  exitCode?: number
}

/**
 * An instance's control token, which cco keeps in no file (only its digest): read from the environment of the
 * instance's own processes, as the benchmark plays that instance's `cco team` calls.
 */
const tokenOf = (controlSocket: string, instance: string): string => {
  for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    let env: Array<string>
    try {
      env = readFileSync(`/proc/${pid}/environ`, "utf8").split("\0")
    } catch {
      continue
    }
    if (!env.includes(`CCO_SOCKET=${controlSocket}`) || !env.includes(`CCO_INSTANCE=${instance}`)) continue
    const token = env.find((e) => e.startsWith("CCO_TOKEN="))
    if (token !== undefined) return token.slice("CCO_TOKEN=".length)
  }
  throw new Error(`no process of ${instance} carries its control token`)
}

export const measureDelivery = async (options: {
  readonly folder: string
  readonly socket: string
  readonly view: TeamView
  readonly events: number
}): Promise<ReadonlyArray<Measurement>> => {
  const { folder, view } = options
  const shim = path.join(folder, "bin", "cco")
  const controlSocket = path.join(folder, "control.sock")
  if (!existsSync(controlSocket)) throw new Error(`no control socket at ${controlSocket}`)
  const ems = [1, 2, 3, 4, 5].map((n) => `em-${n}`)
  const senderOf = (em: string) => `worker-${(Number(em.slice(3)) - 1) * 4 + 1}`
  const envOf = (em: string): NodeJS.ProcessEnv => {
    const worker = senderOf(em)
    return {
      ...process.env,
      PATH: `${path.join(folder, "bin")}:${process.env.PATH ?? ""}`,
      CCO_SOCKET: controlSocket,
      CCO_INSTANCE: worker,
      CCO_TOKEN: tokenOf(controlSocket, worker),
      CCO_GENERATION: String(options.view.generation.get(worker) ?? 0)
    }
  }
  const envs = new Map(ems.map((em) => [em, envOf(em)]))

  const deliveries: Array<Delivery> = []
  const byMarker = new Map<string, Delivery>()
  const lastOf = new Map<string, Delivery>()

  // The EM panes' output, read as it is appended.
  const logs = new Map(ems.map((em) => [em, { file: path.join(folder, `session-${em}.log`), offset: 0, tail: "" }]))
  const scan = (em: string) => {
    const l = logs.get(em)!
    const last = lastOf.get(em)
    if (last === undefined || last.pasted !== undefined) {
      // Nothing awaited: skip ahead cheaply.
      try {
        const fd = openSync(l.file, "r")
        l.offset = fstatSync(fd).size
        closeSync(fd)
      } catch {
        // not there yet
      }
      l.tail = ""
      return
    }
    const fd = openSync(l.file, "r")
    try {
      const size = fstatSync(fd).size
      if (size <= l.offset) return
      const buffer = Buffer.alloc(size - l.offset)
      readSync(fd, buffer, 0, buffer.length, l.offset)
      l.offset = size
      const text = l.tail + buffer.toString("utf8")
      if (text.includes(last.marker)) last.pasted = now()
      l.tail = text.slice(-128)
    } finally {
      closeSync(fd)
    }
  }
  const watchers = ems.map((em) => watch(logs.get(em)!.file, () => scan(em)))

  const onLine = (line: Record<string, unknown>, at: number) => {
    if (line.event === "team.command" && line.command === "message" && Array.isArray(line.args)) {
      const d = byMarker.get(String(line.args[1] ?? ""))
      if (d !== undefined && d.command === undefined) d.command = at
    }
    if (line.event === "prompt.delivered" && typeof line.instance === "string") {
      const d = lastOf.get(line.instance)
      if (d !== undefined && d.delivered === undefined) d.delivered = at
    }
  }
  view.listeners.add(onLine)

  const idle = (em: string) => {
    const last = lastOf.get(em)
    return view.status.get(em) === "idle" && (last === undefined || last.delivered !== undefined)
  }

  let failures = 0
  try {
    for (const em of ems) scan(em)
    const nonce = randomBytes(3).toString("hex")
    for (let i = 0; i < options.events + 10; i++) {
      const em = ems[i % ems.length]!
      await waitUntil(`${em} idle`, () => idle(em), 30_000, 2)
      const marker = `bench-${nonce}-${i}`
      scan(em)
      const spawned = now()
      const child = spawn(shim, ["team", "message", em, marker, "ping"], { env: envs.get(em)!, stdio: "ignore" })
      const d: Delivery = { em, marker, spawned }
      trackPid(child.pid)
      child.on("close", (code) => {
        untrackPid(child.pid)
        d.exitCode = code ?? 1
      })
      byMarker.set(marker, d)
      lastOf.set(em, d)
      // The first ten warm up (page cache, JIT in the orchestrator); they are not counted.
      if (i >= 10) deliveries.push(d)
      try {
        await waitUntil(`message ${i} pasted into ${em}`, () => {
          if (d.pasted === undefined) scan(em)
          return d.pasted !== undefined
        }, 10_000, 2)
      } catch (e) {
        failures++
        log(`  ${(e as Error).message}`)
        if (failures > 5) throw new Error("too many messages never reached their EM's pane")
      }
      if ((i + 1) % 100 === 0) log(`  ${i + 1} messages`)
    }
    await waitUntil("the last deliveries", () => ems.every(idle), 30_000, 10)
  } finally {
    view.listeners.delete(onLine)
    for (const w of watchers) w.close()
  }

  // What one tmux call costs the orchestrator with 26 sessions live: through its Exec helper, and raw.
  const viaEffect: Array<number> = []
  const raw: Array<number> = []
  const target = `=cco-${path.basename(folder)}-em-1:`
  const tmuxArgs = ["-L", options.socket, "-f", "/dev/null", "display-message", "-p", "-t", target, "#{session_name}\t#{pane_pid}\t#{pane_dead}\t#{pane_title}"]
  for (let i = 0; i < 60; i++) {
    const a = now()
    await Effect.runPromise(exec("tmux", tmuxArgs).pipe(Effect.provide(NodeContext.layer)))
    viaEffect.push(now() - a)
    const b = now()
    await new Promise<void>((r) => spawn("tmux", tmuxArgs, { stdio: "ignore" }).on("close", () => r()))
    raw.push(now() - b)
  }

  const done = deliveries.filter((d) => d.pasted !== undefined)
  const total = summarize(done.map((d) => d.pasted! - d.spawned))
  const withCommand = done.filter((d) => d.command !== undefined)
  const client = summarize(withCommand.map((d) => d.command! - d.spawned))
  const orchestrator = summarize(withCommand.map((d) => d.pasted! - d.command!))
  const delivered = summarize(done.filter((d) => d.delivered !== undefined).map((d) => d.delivered! - d.spawned))
  const effectCall = summarize(viaEffect)
  const rawCall = summarize(raw)
  const refused = deliveries.filter((d) => d.exitCode !== undefined && d.exitCode !== 0).length
  log(`  spawn → pasted     ${fmtSummary(total)}`)
  log(`    client (spawn → team.command logged)   ${fmtSummary(client)}`)
  log(`    orchestrator (team.command → pasted)   ${fmtSummary(orchestrator)}`)
  log(`  spawn → prompt.delivered (Enter sent)    ${fmtSummary(delivered)}`)
  log(`  one tmux call: via Exec ${fmtSummary(effectCall)}; raw spawn ${fmtSummary(rawCall)}`)
  if (refused > 0 || failures > 0) log(`  ${refused} commands refused, ${failures} never pasted`)
  return [
    { id: "2a", name: "team message → pasted in EM pane p50", value: total.p50, unit: "ms", baseline: `n=${total.n}; ${failures} lost, ${refused} refused` },
    { id: "2b", name: "team message → pasted in EM pane p95", value: total.p95, unit: "ms", target: 150 },
    { id: "2c", name: "  of which client start + HTTP, p95", value: client.p95, unit: "ms", baseline: `p50 ${client.p50.toFixed(0)} ms; spawn of the run's cco shim to team.command logged` },
    { id: "2d", name: "  of which orchestrator, p95", value: orchestrator.p95, unit: "ms", baseline: `p50 ${orchestrator.p50.toFixed(0)} ms; team.command → pane shows the text (flush: title check, paste)` },
    { id: "2e", name: "team message → prompt.delivered p95", value: delivered.p95, unit: "ms", baseline: `p50 ${delivered.p50.toFixed(0)} ms; includes the settle sleep before Enter` },
    { id: "2f", name: "one tmux call via Exec p50", value: effectCall.p50, unit: "ms", baseline: `raw child_process spawn p50 ${rawCall.p50.toFixed(1)} ms, p95 ${rawCall.p95.toFixed(1)} ms` }
  ]
}
