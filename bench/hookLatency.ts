// Benchmark 0: a Claude Code hook reaching the orchestrator. Every event but SessionStart is an http hook: the
// CLI itself posts the event JSON to cco's loopback port, the sender in headers (timed here as a fresh connection
// from this process, and its CPU as this process's own, poster and server together). SessionStart is the hook
// command (`node bin/cco-client.mjs hook SessionStart`, run through `sh -c` with the event JSON on stdin, as Claude
// Code runs it), timed against a bare `node -e ""` and `sh -c true` (a plain process spawn, the floor of any
// command hook), interleaved; the CPU of a command is that of the children this process waited for. Then the
// in-process part alone: HTTP over the unix socket with a persistent client.
import { NodeContext } from "@effect/platform-node"
import { Effect, Exit, PubSub, Queue, Scope } from "effect"
import { execFileSync, spawn } from "node:child_process"
import { readFileSync } from "node:fs"
import * as http from "node:http"
import * as path from "node:path"
import * as EventsModule from "../src/Events.js"
import * as RunLogModule from "../src/RunLog.js"
import { RunLog } from "../src/RunLog.js"
import { shellQuote } from "../src/Shell.js"
import type { Measurement } from "./report.js"
import { clientScript, fmtSummary, log, now, summarize, tempDir, trackPid, untrackPid } from "./util.js"

// The hook command exactly as Agent writes it into an instance's settings.json.
const hookCommand = `${[process.execPath, clientScript].map(shellQuote).join(" ")} hook`

const payloadFor = (id: string, cwd: string) => JSON.stringify({
  session_id: "5f0c2a3e-7c1b-4d7e-9d1a-2b9c0f1e4a11",
  transcript_path: path.join(cwd, ".claude", "projects", "x", "5f0c2a3e.jsonl"),
  cwd,
  permission_mode: "bypassPermissions",
  hook_event_name: "PostToolUse",
  tool_name: "Bash",
  tool_input: { command: "npm test -- --run test/widget.test.ts", description: "Run the widget tests" },
  tool_response: { stdout: "✓ test/widget.test.ts (12 tests) 41ms\n".repeat(12), stderr: "", interrupted: false, isImage: false },
  tool_use_id: id,
  duration_ms: 1834
})

/** Spawns `sh -c command`, feeds stdin, resolves at exit with the wall time from spawn. */
const shell = (command: string, env: NodeJS.ProcessEnv, stdin: string) =>
  new Promise<{ readonly started: number; readonly exited: number }>((resolve, reject) => {
    const started = now()
    const child = spawn("sh", ["-c", command], { env, stdio: ["pipe", "ignore", "ignore"] })
    trackPid(child.pid)
    child.on("error", reject)
    child.on("close", () => {
      untrackPid(child.pid)
      resolve({ started, exited: now() })
    })
    child.stdin.on("error", () => {})
    child.stdin.end(stdin)
  })

// CPU time (ms) of the children this process has waited for: /proc/self/stat cutime + cstime, in clock ticks.
const ticksPerSecond = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100
  } catch {
    return 100
  }
})()
const childrenCpuMs = () => {
  const fields = readFileSync("/proc/self/stat", "utf8").split(") ")[1]!.split(" ")
  return ((Number(fields[13]) + Number(fields[14])) * 1000) / ticksPerSecond
}
const ownCpuMs = () => {
  const { user, system } = process.cpuUsage()
  return (user + system) / 1000
}

/** Runs `f`, adding the CPU it cost (as `cpu` measures it) to `total`. */
const withCpu = async <A>(cpu: () => number, total: { ms: number }, f: () => Promise<A>): Promise<A> => {
  const before = cpu()
  const a = await f()
  total.ms += cpu() - before
  return a
}

/** One http hook as Claude Code sends it: a POST of the event JSON, the sender in headers, a connection of its own. */
const postHttpHook = (url: string, event: string, body: string, headers: Readonly<Record<string, string>>) =>
  new Promise<number>((resolve, reject) => {
    const target = new URL(`${url}/hook/${event}`)
    const req = http.request(
      {
        host: target.hostname,
        port: target.port,
        path: target.pathname,
        method: "POST",
        agent: false,
        headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body), ...headers }
      },
      (res) => {
        res.resume()
        res.on("end", () => resolve(res.statusCode ?? 0))
      }
    )
    req.on("error", reject)
    req.end(body)
  })

export const hookLatency = async (events: number): Promise<ReadonlyArray<Measurement>> => {
  const dir = tempDir("cco-bench-hook-")
  const socketPath = path.join(dir, "control.sock")
  const received = new Map<string, number>()
  const waiting = new Map<string, (at: number) => void>()
  const onHook = (id: string, at: number) => {
    received.set(id, at)
    waiting.get(id)?.(at)
  }
  const scope = Effect.runSync(Scope.make())
  let hookUrl = ""
  const setup = Effect.gen(function*() {
    const runLog = yield* RunLogModule.make(dir, "bench")
    const events = yield* EventsModule.make(socketPath).pipe(Effect.provideService(RunLog, runLog))
    const token = yield* events.register("worker-1")
    hookUrl = events.hookUrl ?? ""
    const subscription = yield* PubSub.subscribe(events.hooks)
    // Timestamped where the orchestrator's own subscriber would see the event.
    yield* Queue.take(subscription).pipe(
      Effect.flatMap((event) => Effect.sync(() => onHook(String(event.payload.tool_use_id), now()))),
      Effect.forever,
      Effect.forkScoped
    )
    return token
  }).pipe(Effect.provide(NodeContext.layer))
  const token = await Effect.runPromise(Scope.extend(setup, scope))
  try {
    const identity = { CCO_SOCKET: socketPath, CCO_INSTANCE: "worker-1", CCO_TOKEN: token, CCO_GENERATION: "0" }
    const withCa: NodeJS.ProcessEnv = { ...process.env, ...identity }
    const withoutCa: NodeJS.ProcessEnv = { ...withCa }
    delete withoutCa.NODE_EXTRA_CA_CERTS
    const caSet = process.env.NODE_EXTRA_CA_CERTS !== undefined

    const arrival = (id: string) =>
      new Promise<number>((resolve, reject) => {
        const seen = received.get(id)
        if (seen !== undefined) return resolve(seen)
        const timer = setTimeout(() => reject(new Error(`hook ${id} never reached the orchestrator`)), 10_000)
        waiting.set(id, (at) => {
          clearTimeout(timer)
          waiting.delete(id)
          resolve(at)
        })
      })

    let seq = 0
    const commandCpu = { ms: 0 }
    const commandNoCaCpu = { ms: 0 }
    const nodeCpu = { ms: 0 }
    const spawnCpu = { ms: 0 }
    const httpCpu = { ms: 0 }
    const hookOnce = async (env: NodeJS.ProcessEnv, cpu = { ms: 0 }) => {
      const id = `toolu_bench_${++seq}`
      const arrived = arrival(id)
      const run = await withCpu(childrenCpuMs, cpu, () => shell(`${hookCommand} PostToolUse`, env, payloadFor(id, dir)))
      const at = await arrived
      return { toReceipt: at - run.started, toExit: run.exited - run.started }
    }
    const bareNode = async (env: NodeJS.ProcessEnv) => {
      const run = await withCpu(childrenCpuMs, nodeCpu, () => shell(`${shellQuote(process.execPath)} -e ''`, env, ""))
      return run.exited - run.started
    }
    const bareSpawn = async (env: NodeJS.ProcessEnv) => {
      const run = await withCpu(childrenCpuMs, spawnCpu, () => shell("true", env, ""))
      return run.exited - run.started
    }
    const sender = { "x-cco-instance": "worker-1", "x-cco-generation": "0", "x-cco-token": token }
    const httpOnce = async () => {
      const id = `toolu_http_${++seq}`
      const started = now()
      const arrived = arrival(id)
      const { status, at } = await withCpu(ownCpuMs, httpCpu, async () => {
        const status = await postHttpHook(hookUrl, "PostToolUse", payloadFor(id, dir), sender)
        return { status, at: await arrived }
      })
      if (status !== 200) throw new Error(`http hook answered ${status}`)
      return at - started
    }

    type Variant = { readonly name: string; readonly run: () => Promise<void> }
    const hook: Array<number> = []
    const hookExit: Array<number> = []
    const node: Array<number> = []
    const hookNoCa: Array<number> = []
    const nodeNoCa: Array<number> = []
    const viaHttp: Array<number> = []
    const spawnOnly: Array<number> = []
    const variants: Array<Variant> = [
      { name: "hook", run: async () => void (await hookOnce(withCa, commandCpu).then((r) => (hook.push(r.toReceipt), hookExit.push(r.toExit)))) },
      { name: "node", run: async () => void node.push(await bareNode(withCa)) },
      { name: "http", run: async () => void viaHttp.push(await httpOnce()) },
      { name: "spawn", run: async () => void spawnOnly.push(await bareSpawn(withCa)) }
    ]
    if (caSet) {
      variants.push(
        { name: "hook-no-ca", run: async () => void hookNoCa.push((await hookOnce(withoutCa, commandNoCaCpu)).toReceipt) },
        { name: "node-no-ca", run: async () => void nodeNoCa.push(await bareNode(withoutCa)) }
      )
    }
    // Warm the page cache and the server; then interleave, rotating the order so no variant always goes first.
    for (let i = 0; i < 5; i++) for (const v of variants) await v.run()
    for (const arr of [hook, hookExit, node, hookNoCa, nodeNoCa, viaHttp, spawnOnly]) arr.length = 0
    for (const cpu of [commandCpu, commandNoCaCpu, nodeCpu, spawnCpu, httpCpu]) cpu.ms = 0
    for (let i = 0; i < events; i++) {
      for (let k = 0; k < variants.length; k++) await variants[(i + k) % variants.length]!.run()
    }

    // The in-process part: one keep-alive connection, POST /hook, until the event is on the PubSub.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
    const post = (body: string) =>
      new Promise<void>((resolve, reject) => {
        const req = http.request({ socketPath, path: "/hook", method: "POST", agent, headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) } }, (res) => {
          res.resume()
          res.on("end", () => resolve())
        })
        req.on("error", reject)
        req.end(body)
      })
    const inProcess: Array<number> = []
    for (let i = 0; i < events + 20; i++) {
      const id = `toolu_inproc_${i}`
      const arrived = arrival(id)
      const started = now()
      const body = JSON.stringify({ instance: "worker-1", generation: 0, token, hook: "PostToolUse", payload: JSON.parse(payloadFor(id, dir)) as unknown })
      await post(body)
      const at = await arrived
      if (i >= 20) inProcess.push(at - started)
    }
    agent.destroy()

    const h = summarize(hook)
    const he = summarize(hookExit)
    const n = summarize(node)
    const ip = summarize(inProcess)
    const hh = summarize(viaHttp)
    const sp = summarize(spawnOnly)
    const perEvent = (cpu: { ms: number }, n: number) => cpu.ms / Math.max(1, n)
    // As cco runs it: without the CA bundle when one is set (see 0e).
    const cpuCommand = caSet ? perEvent(commandNoCaCpu, hookNoCa.length) : perEvent(commandCpu, hook.length)
    const cpuNode = perEvent(nodeCpu, node.length)
    const cpuSpawn = perEvent(spawnCpu, spawnOnly.length)
    const cpuHttp = perEvent(httpCpu, viaHttp.length)
    log(`  http hook → PubSub ${fmtSummary(hh)}`)
    log(`  hook → PubSub      ${fmtSummary(h)}`)
    log(`  hook → exit        ${fmtSummary(he)}`)
    log(`  node -e ""         ${fmtSummary(n)}`)
    log(`  sh -c true         ${fmtSummary(sp)}`)
    log(`  in-process HTTP    ${fmtSummary(ip)}`)
    log(`  CPU per event      http hook ${cpuHttp.toFixed(2)} ms, command hook ${cpuCommand.toFixed(1)} ms, node -e "" ${cpuNode.toFixed(1)} ms, sh -c true ${cpuSpawn.toFixed(1)} ms`)
    const results: Array<Measurement> = [
      { id: "0g", name: "http hook → orchestrator p50 (every event but SessionStart)", value: hh.p50, unit: "ms", baseline: `sh -c true p50 ${sp.p50.toFixed(1)} ms` },
      { id: "0h", name: "http hook → orchestrator p95 (every event but SessionStart)", value: hh.p95, unit: "ms", baseline: `sh -c true p95 ${sp.p95.toFixed(1)} ms` },
      // The floor is a plain process spawn (~2 ms); a node process costs ~50–100 ms.
      { id: "0i", name: "CPU per hook event, http hook (poster and cco)", value: cpuHttp, unit: "ms", target: 10, baseline: `sh -c true ${cpuSpawn.toFixed(1)} ms (a plain process spawn)` },
      { id: "0j", name: "CPU per hook event, command hook (SessionStart)", value: cpuCommand, unit: "ms", baseline: `node -e "" ${cpuNode.toFixed(1)} ms, sh -c true ${cpuSpawn.toFixed(1)} ms${caSet ? `; with the CA bundle ${perEvent(commandCpu, hook.length).toFixed(1)} ms` : ""}` },
      { id: "0a", name: "command hook → orchestrator p50 (SessionStart)", value: h.p50, unit: "ms", baseline: `node -e "" p50 ${n.p50.toFixed(0)} ms (${(h.p50 / n.p50).toFixed(2)}×)` },
      { id: "0b", name: "command hook → orchestrator p95 (SessionStart)", value: h.p95, unit: "ms", baseline: `node -e "" p95 ${n.p95.toFixed(0)} ms (${(h.p95 / n.p95).toFixed(2)}×)` },
      { id: "0c", name: "in-process HTTP → PubSub p50", value: ip.p50, unit: "ms", baseline: `persistent client, unix socket` },
      { id: "0d", name: "in-process HTTP → PubSub p95", value: ip.p95, unit: "ms" }
    ]
    if (caSet) {
      const hn = summarize(hookNoCa)
      const nn = summarize(nodeNoCa)
      log(`  hook, no CA file   ${fmtSummary(hn)}`)
      log(`  node, no CA file   ${fmtSummary(nn)}`)
      results.push(
        { id: "0e", name: "command hook → orchestrator p50, NODE_EXTRA_CA_CERTS unset", value: hn.p50, unit: "ms", baseline: `node -e "" p50 ${nn.p50.toFixed(0)} ms` },
        { id: "0f", name: "command hook → orchestrator p95, NODE_EXTRA_CA_CERTS unset", value: hn.p95, unit: "ms", baseline: `node -e "" p95 ${nn.p95.toFixed(0)} ms` }
      )
    }
    return results
  } finally {
    await Effect.runPromise(Scope.close(scope, Exit.void))
  }
}
