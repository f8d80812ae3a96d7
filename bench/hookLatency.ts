// Benchmark 0: a Claude Code hook reaching the orchestrator. The hook command (`node bin/cco-client.mjs hook
// PostToolUse`, run through `sh -c` with the event JSON on stdin, as Claude Code runs it) against a bare
// `node -e ""`, interleaved; then the in-process part alone: HTTP over the unix socket with a persistent client.
import { NodeContext } from "@effect/platform-node"
import { Effect, Exit, PubSub, Queue, Scope } from "effect"
import { spawn } from "node:child_process"
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
  const setup = Effect.gen(function*() {
    const runLog = yield* RunLogModule.make(dir, "bench")
    const events = yield* EventsModule.make(socketPath).pipe(Effect.provideService(RunLog, runLog))
    const token = yield* events.register("worker-1")
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
    const hookOnce = async (env: NodeJS.ProcessEnv) => {
      const id = `toolu_bench_${++seq}`
      const arrived = arrival(id)
      const run = await shell(`${hookCommand} PostToolUse`, env, payloadFor(id, dir))
      const at = await arrived
      return { toReceipt: at - run.started, toExit: run.exited - run.started }
    }
    const bareNode = async (env: NodeJS.ProcessEnv) => {
      const run = await shell(`${shellQuote(process.execPath)} -e ''`, env, "")
      return run.exited - run.started
    }

    type Variant = { readonly name: string; readonly run: () => Promise<void> }
    const hook: Array<number> = []
    const hookExit: Array<number> = []
    const node: Array<number> = []
    const hookNoCa: Array<number> = []
    const nodeNoCa: Array<number> = []
    const variants: Array<Variant> = [
      { name: "hook", run: async () => void (await hookOnce(withCa).then((r) => (hook.push(r.toReceipt), hookExit.push(r.toExit)))) },
      { name: "node", run: async () => void node.push(await bareNode(withCa)) }
    ]
    if (caSet) {
      variants.push(
        { name: "hook-no-ca", run: async () => void hookNoCa.push((await hookOnce(withoutCa)).toReceipt) },
        { name: "node-no-ca", run: async () => void nodeNoCa.push(await bareNode(withoutCa)) }
      )
    }
    // Warm the page cache and the server; then interleave, rotating the order so no variant always goes first.
    for (let i = 0; i < 5; i++) for (const v of variants) await v.run()
    for (const arr of [hook, hookExit, node, hookNoCa, nodeNoCa]) arr.length = 0
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
    log(`  hook → PubSub      ${fmtSummary(h)}`)
    log(`  hook → exit        ${fmtSummary(he)}`)
    log(`  node -e ""         ${fmtSummary(n)}`)
    log(`  in-process HTTP    ${fmtSummary(ip)}`)
    const results: Array<Measurement> = [
      { id: "0a", name: "hook → orchestrator p50", value: h.p50, unit: "ms", baseline: `node -e "" p50 ${n.p50.toFixed(0)} ms (${(h.p50 / n.p50).toFixed(2)}×)` },
      { id: "0b", name: "hook → orchestrator p95", value: h.p95, unit: "ms", baseline: `node -e "" p95 ${n.p95.toFixed(0)} ms (${(h.p95 / n.p95).toFixed(2)}×)` },
      { id: "0c", name: "in-process HTTP → PubSub p50", value: ip.p50, unit: "ms", baseline: `persistent client, unix socket` },
      { id: "0d", name: "in-process HTTP → PubSub p95", value: ip.p95, unit: "ms" }
    ]
    if (caSet) {
      const hn = summarize(hookNoCa)
      const nn = summarize(nodeNoCa)
      log(`  hook, no CA file   ${fmtSummary(hn)}`)
      log(`  node, no CA file   ${fmtSummary(nn)}`)
      results.push(
        { id: "0e", name: "hook → orchestrator p50, NODE_EXTRA_CA_CERTS unset", value: hn.p50, unit: "ms", baseline: `node -e "" p50 ${nn.p50.toFixed(0)} ms` },
        { id: "0f", name: "hook → orchestrator p95, NODE_EXTRA_CA_CERTS unset", value: hn.p95, unit: "ms", baseline: `node -e "" p95 ${nn.p95.toFixed(0)} ms` }
      )
    }
    return results
  } finally {
    await Effect.runPromise(Scope.close(scope, Exit.void))
  }
}
