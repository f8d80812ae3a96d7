import { NodeContext } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, PubSub, Queue, Stream, TestClock } from "effect"
import { execFile } from "node:child_process"
import { readFileSync, statSync } from "node:fs"
import * as http from "node:http"
import * as net from "node:net"
import * as os from "node:os"
import type { ControlLimits } from "../src/ControlServer.js"
import * as Events from "../src/Events.js"
import * as RunLog from "../src/RunLog.js"
import { tempDir } from "./support.js"

const client = (env: Record<string, string>, args: Array<string>, stdin = "") =>
  Effect.async<{ code: number; stdout: string; stderr: string }>((resume) => {
    const child = execFile("node", ["bin/cco-client.mjs", ...args], { env: { ...process.env, ...env } }, (err, stdout, stderr) =>
      resume(Effect.succeed({ code: err ? (typeof err.code === "number" ? err.code : 1) : 0, stdout, stderr })))
    child.stdin?.end(stdin)
  })

const rawPost = (socketPath: string, path: string, body: string) =>
  Effect.async<{ status: number; text: string }>((resume) => {
    const req = http.request({ socketPath, path, method: "POST" }, (res) => {
      let text = ""
      res.on("data", (c) => (text += c))
      res.on("end", () => resume(Effect.succeed({ status: res.statusCode ?? 0, text })))
    })
    req.end(body)
  })

const setup = Effect.gen(function*() {
  const dir = yield* tempDir()
  const runLog = yield* RunLog.make(dir, "test")
  const events = yield* Events.make(`${dir}/control.sock`).pipe(Effect.provideService(RunLog.RunLog, runLog))
  return { dir, events }
})

const logLines = (dir: string) =>
  readFileSync(`${dir}/combined.log`, "utf8").trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>)

describe("Events control socket", () => {
  it.scoped("delivers hook events from the client, with instance and generation, on a 0600 socket", () =>
    Effect.gen(function*() {
      const { events } = yield* setup
      expect(statSync(events.socketPath).mode & 0o777).toBe(0o600)
      const token = yield* events.register("worker-1")
      const sub = yield* PubSub.subscribe(events.hooks)
      const env = { CCO_SOCKET: events.socketPath, CCO_INSTANCE: "worker-1", CCO_TOKEN: token, CCO_GENERATION: "0" }
      const r = yield* client(env, ["hook", "Stop"], JSON.stringify({ session_id: "s1", hook_event_name: "Stop" }))
      expect(r.code).toBe(0)
      const ev = yield* Queue.take(sub)
      expect(ev).toMatchObject({ instance: "worker-1", generation: 0, hook: "Stop", payload: { session_id: "s1" } })
    }).pipe(Effect.provide(NodeContext.layer)))

  it.scoped("rejects wrong tokens, stale generations and malformed JSON, logs them, and keeps serving", () =>
    Effect.gen(function*() {
      const { dir, events } = yield* setup
      const token = yield* events.register("worker-2")
      const received = yield* Stream.fromPubSub(events.hooks).pipe(Stream.runCollect, Effect.fork)
      const base = { CCO_SOCKET: events.socketPath, CCO_INSTANCE: "worker-2" }

      // A hook always exits 0 (never breaks Claude Code), but nothing is published.
      expect((yield* client({ ...base, CCO_TOKEN: "wrong", CCO_GENERATION: "0" }, ["hook", "Stop"], "{}")).code).toBe(0)
      yield* events.setGeneration("worker-2", 3)
      expect((yield* client({ ...base, CCO_TOKEN: token, CCO_GENERATION: "2" }, ["hook", "Stop"], "{}")).code).toBe(0)
      const bad = yield* rawPost(events.socketPath, "/hook", "{not json")
      expect(bad.status).toBe(400)
      const invalid = yield* rawPost(events.socketPath, "/hook", JSON.stringify({ instance: "worker-2", hook: "Nope" }))
      expect(invalid.status).toBe(400)

      // Still serving: a current event goes through.
      const sub = yield* PubSub.subscribe(events.hooks)
      yield* client({ ...base, CCO_TOKEN: token, CCO_GENERATION: "3" }, ["hook", "PostToolUse"], "{\"tool_name\":\"Bash\"}")
      const ev = yield* Queue.take(sub)
      expect(ev).toMatchObject({ hook: "PostToolUse", generation: 3 })
      yield* Fiber.interrupt(received)

      const lines = logLines(dir)
      expect(lines.filter((l) => l.event === "control.rejected").map((l) => l.reason)).toEqual([
        "bad token",
        "malformed JSON",
        "invalid hook message"
      ])
      expect(lines.find((l) => l.event === "control.stale")).toMatchObject({ instance: "worker-2", generation: 2, current: 3 })
      // The token is never logged.
      expect(readFileSync(`${dir}/combined.log`, "utf8")).not.toContain(token)
    }).pipe(Effect.provide(NodeContext.layer)))

  it.scoped("answers team commands through the handler; refusals exit 1", () =>
    Effect.gen(function*() {
      const { events } = yield* setup
      const token = yield* events.register("em-1")
      const env = { CCO_SOCKET: events.socketPath, CCO_INSTANCE: "em-1", CCO_TOKEN: token, CCO_GENERATION: "0" }
      const early = yield* client(env, ["team", "status"])
      expect(early.code).toBe(1)
      expect(early.stdout).toContain("not ready")
      yield* events.setTeamHandler((req) =>
        Effect.succeed(
          req.command === "assign"
            ? { ok: true, text: `assigned to ${req.args[0]}: ${req.args.slice(1).join(" ")}` }
            : { ok: false, text: `refused: ${req.instance} may not ${req.command}` }
        )
      )
      const ok = yield* client(env, ["team", "assign", "worker-1", "write the parser"])
      expect(ok).toMatchObject({ code: 0, stdout: "assigned to worker-1: write the parser\n" })
      const no = yield* client(env, ["team", "merge", "worker-9"])
      expect(no).toMatchObject({ code: 1, stdout: "refused: em-1 may not merge\n" })
      const outside = yield* client({}, ["team", "status"])
      expect(outside.code).toBe(1)
      expect(outside.stderr).toContain("not inside a cco instance")
    }).pipe(Effect.provide(NodeContext.layer)))
})

/** One request on a fresh connection; `body` may be any bytes, the headers are what `headers` says. */
const post = (socketPath: string, path: string, body: string | Buffer, headers: http.OutgoingHttpHeaders = {}) =>
  Effect.async<{ status: number; text: string }>((resume) => {
    const req = http.request({ socketPath, path, method: "POST", headers, agent: false }, (res) => {
      let text = ""
      res.on("data", (c) => (text += c))
      res.on("end", () => resume(Effect.succeed({ status: res.statusCode ?? 0, text })))
    })
    // The server may close while the rest of an oversize body is still being written: its answer counts.
    req.on("error", (e) => resume(Effect.succeed({ status: 0, text: e.message })))
    req.end(body)
  })

const hookBody = (instance: string, token: string, hook: string, payload: unknown, generation = 0) =>
  JSON.stringify({ instance, generation, token, hook, payload })

// Nesting JSON.stringify cannot serialise, spliced in as text: `{"<field>":[[[…]]],…}`.
const DEEP = "[".repeat(20_000) + "]".repeat(20_000)
const withDeep = (body: string, field: string) => body.replace(/"payload":\{/, `"payload":{"${field}":${DEEP},`)

describe("hook payloads are decoded before anyone sees them", () => {
  it.scoped("garbage is refused and logged with its field; the next good event is delivered, trimmed to the fields cco reads", () =>
    Effect.gen(function*() {
      const { dir, events } = yield* setup
      const token = yield* events.register("worker-1")
      const sub = yield* PubSub.subscribe(events.hooks)
      const send = (hook: string, payload: unknown, deepField?: string) => {
        const body = hookBody("worker-1", token, hook, payload)
        return post(events.socketPath, "/hook", deepField === undefined ? body : withDeep(body, deepField))
      }

      // What threw in the orchestrator's hook loop: a message whose toString is not callable.
      expect((yield* send("Notification", { message: { toString: 1 }, notification_type: "permission_prompt" })).status).toBe(400)
      // The same through the agents' client, which exits 0 whatever happens.
      const env = { CCO_SOCKET: events.socketPath, CCO_INSTANCE: "worker-1", CCO_TOKEN: token, CCO_GENERATION: "0" }
      expect((yield* client(env, ["hook", "Notification"], "{\"message\":{\"toString\":1}}")).code).toBe(0)
      // Deep nesting in a field cco reads; wrong types; a payload that is no object.
      expect((yield* send("StopFailure", { last_assistant_message: "API Error" }, "error")).status).toBe(400)
      expect((yield* send("PostToolUse", { tool_name: 5 })).status).toBe(400)
      expect((yield* send("SessionEnd", { reason: ["logout"] })).status).toBe(400)
      expect((yield* send("Stop", "not an object")).status).toBe(400)

      // Good events: unknown and nested fields dropped (however deep), long texts cut, null taken as absent.
      const huge = "x".repeat(150_000)
      expect((yield* send("Notification", { message: huge, notification_type: null, extra: { toString: 1 } }, "deep")).status).toBe(200)
      expect((yield* send("PostToolUse", { tool_name: "Bash", tool_input: { command: "ls" }, tool_response: { stdout: "a" } })).status).toBe(200)
      const first = yield* Queue.take(sub)
      expect(first.hook).toBe("Notification")
      expect(Object.keys(first.payload)).toEqual(["message"])
      expect(first.payload.message).toHaveLength(16_384)
      const second = yield* Queue.take(sub)
      expect(second).toMatchObject({ hook: "PostToolUse", payload: { tool_name: "Bash" } })
      expect(Object.keys(second.payload)).toEqual(["tool_name"])
      // Nothing else was published.
      expect(yield* Queue.size(sub)).toBe(0)

      const reasons = logLines(dir).filter((l) => l.event === "control.rejected").map((l) => l.reason)
      expect(reasons).toEqual([
        "invalid Notification payload: message is not a string",
        "invalid Notification payload: message is not a string",
        "invalid StopFailure payload: error is not a string",
        "invalid PostToolUse payload: tool_name is not a string",
        "invalid SessionEnd payload: reason is not a string",
        "invalid hook message"
      ])
    }).pipe(Effect.provide(NodeContext.layer)))

  it.scopedLive("the hook consumer survives a defect in handling one event and handles the next", () =>
    Effect.gen(function*() {
      const { dir, events } = yield* setup
      const runLog = yield* RunLog.make(dir, "test")
      const handled: Array<string> = []
      const handle = (event: Events.HookEvent) =>
        Effect.sync(() => {
          // What the orchestrator did with an unchecked payload: String() of an object with a non-callable toString.
          if (event.payload.message === "boom") String({ toString: 1 } as unknown as string)
          // A defect too deep to print.
          if (event.payload.message === "deep") throw JSON.parse("[".repeat(20_000) + "]".repeat(20_000))
          handled.push(event.payload.message ?? event.hook)
        })
      yield* Events.consumeHooks(events.hooks, handle).pipe(Effect.provideService(RunLog.RunLog, runLog), Effect.forkScoped)
      const event = (message: string): Events.HookEvent => ({ instance: "em-1", generation: 0, hook: "Notification", payload: { message }, receivedAt: 0 })
      // The pair goes out until the consumer (subscribed once its fiber runs) has handled the good one.
      yield* Effect.gen(function*() {
        while (!handled.includes("after")) {
          yield* PubSub.publish(events.hooks, event("boom"))
          yield* PubSub.publish(events.hooks, event("deep"))
          yield* PubSub.publish(events.hooks, event("after"))
          yield* Effect.sleep("100 millis")
        }
      }).pipe(Effect.timeoutFail({ duration: "5 seconds", onTimeout: () => new Error(`handled only ${JSON.stringify(handled)}`) }))
      expect(handled.every((h) => h === "after")).toBe(true)
      const failed = logLines(dir).find((l) => l.event === "hook.failed")
      expect(failed).toMatchObject({ instance: "em-1", hook: "Notification" })
      expect(String(failed?.cause)).toContain("TypeError")
    }).pipe(Effect.provide(NodeContext.layer)), { timeout: 10_000 })
})

describe("tokens", () => {
  it.scoped("each generation gets a fresh token and the old one stops working; only a digest is kept, and the digest is no token", () =>
    Effect.gen(function*() {
      const { dir, events } = yield* setup
      const send = (token: string, generation: number) => post(events.socketPath, "/hook", hookBody("em-1", token, "Stop", {}, generation))
      const first = yield* events.register("em-1")
      expect((yield* send(first, 0)).status).toBe(200)
      // A restart: generation 1 with a new token.
      const second = yield* events.register("em-1")
      yield* events.setGeneration("em-1", 1)
      expect(second).not.toBe(first)
      expect((yield* send(first, 1)).status).toBe(403)
      expect((yield* send(first, 0)).status).toBe(403)
      expect((yield* send(second, 1)).status).toBe(200)
      // What a resumed orchestrator gets from disk: the digest. It re-admits the live session's token ...
      const digest = Events.tokenDigest(second)
      const resumed = yield* setup
      yield* resumed.events.restore("em-1", digest, 1)
      const again = (token: string) => post(resumed.events.socketPath, "/hook", hookBody("em-1", token, "Stop", {}, 1))
      expect((yield* again(second)).status).toBe(200)
      // ... and is worth nothing to an agent that reads it.
      expect((yield* again(digest)).status).toBe(403)
      expect((yield* send(digest, 1)).status).toBe(403)
      expect(readFileSync(`${dir}/combined.log`, "utf8")).not.toContain(second)
    }).pipe(Effect.provide(NodeContext.layer)))
})

describe("control socket limits", () => {
  const limits: ControlLimits = { maxBodyBytes: 256 * 1024, maxConnections: 8, headersTimeoutMs: 500, requestTimeoutMs: 1000 }
  const limitedSetup = Effect.gen(function*() {
    const dir = yield* tempDir()
    const runLog = yield* RunLog.make(dir, "test")
    const events = yield* Events.make(`${dir}/control.sock`, limits).pipe(Effect.provideService(RunLog.RunLog, runLog))
    return { dir, events }
  })

  /** A raw connection that writes `first` and then, every `everyMs`, one more byte; resolves when the server closes it. */
  const slow = (socketPath: string, first: string, everyMs: number) =>
    Effect.async<{ closedAfterMs: number; received: string }>((resume) => {
      const started = Date.now()
      let received = ""
      const socket = net.createConnection(socketPath, () => socket.write(first))
      const drip = setInterval(() => socket.writable && socket.write("a"), everyMs)
      socket.on("data", (d) => (received += d))
      socket.on("error", () => {})
      socket.on("close", () => {
        clearInterval(drip)
        resume(Effect.succeed({ closedAfterMs: Date.now() - started, received }))
      })
      return Effect.sync(() => {
        clearInterval(drip)
        socket.destroy()
      })
    })

  it.scopedLive("an oversize body is answered 413, announced or not, and nothing is published", () =>
    Effect.gen(function*() {
      const { dir, events } = yield* limitedSetup
      const token = yield* events.register("worker-1")
      const sub = yield* PubSub.subscribe(events.hooks)
      const big = hookBody("worker-1", token, "Notification", { message: "x".repeat(300 * 1024) })
      const announced = yield* post(events.socketPath, "/hook", big, { "content-length": Buffer.byteLength(big) })
      expect(announced.status).toBe(413)
      expect(announced.text).toContain("larger than 256 KiB")
      const chunked = yield* post(events.socketPath, "/hook", big, { "transfer-encoding": "chunked" })
      expect(chunked.status).toBe(413)
      expect(yield* Queue.size(sub)).toBe(0)
      // Still serving.
      expect((yield* post(events.socketPath, "/hook", hookBody("worker-1", token, "Stop", {}))).status).toBe(200)
      yield* Effect.sleep("200 millis")
      expect(logLines(dir).filter((l) => l.reason === "body too large")).toHaveLength(2)
    }).pipe(Effect.provide(NodeContext.layer)), { timeout: 20_000 })

  it.scopedLive("slow connections are cut (headers and body), extra ones refused, and a good request still goes through", () =>
    Effect.gen(function*() {
      const { events } = yield* limitedSetup
      const token = yield* events.register("worker-1")
      // Twenty connections that never finish their headers: eight are held, the others closed at once; after
      // the header timeout none is left.
      const stalled = yield* Effect.all(
        Array.from({ length: 20 }, () => slow(events.socketPath, "POST /hook HTTP/1.1\r\nHost: x\r\nX-Slow: ", 100)),
        { concurrency: "unbounded" }
      ).pipe(Effect.fork)
      // A slowloris body: complete headers, then a byte every 100 ms of a 100 KiB body.
      const body = yield* slow(events.socketPath, "POST /hook HTTP/1.1\r\nHost: x\r\nContent-Length: 102400\r\n\r\n{", 100).pipe(Effect.fork)
      const cut = yield* Fiber.join(stalled)
      expect(cut.every((c) => c.closedAfterMs < 3000)).toBe(true)
      const loris = yield* Fiber.join(body)
      expect(loris.closedAfterMs).toBeLessThan(3000)
      expect(loris.received).not.toContain("200 OK")
      expect((yield* post(events.socketPath, "/hook", hookBody("worker-1", token, "Stop", {}))).status).toBe(200)
    }).pipe(Effect.provide(NodeContext.layer)), { timeout: 20_000 })

  it.scopedLive("a team command whose answer takes longer than the request timeout still gets it", () =>
    Effect.gen(function*() {
      const { events } = yield* limitedSetup
      const token = yield* events.register("em-1")
      yield* events.setTeamHandler(() => Effect.succeed({ ok: true, text: "merged" }).pipe(Effect.delay("2500 millis")))
      const r = yield* post(events.socketPath, "/team", JSON.stringify({ instance: "em-1", generation: 0, token, command: "merge", args: ["worker-1"] }))
      expect(r).toEqual({ status: 200, text: "merged\n" })
    }).pipe(Effect.provide(NodeContext.layer)), { timeout: 20_000 })

  it.scoped("the client trims a hook payload too large for the socket, so the event still arrives", () =>
    Effect.gen(function*() {
      const { events } = yield* setup
      const token = yield* events.register("worker-1")
      const sub = yield* PubSub.subscribe(events.hooks)
      const env = { CCO_SOCKET: events.socketPath, CCO_INSTANCE: "worker-1", CCO_TOKEN: token, CCO_GENERATION: "0" }
      const payload = { tool_name: "Read", tool_use_id: "t1", tool_input: { file_path: "/big" }, tool_response: { content: "y".repeat(1024 * 1024) } }
      expect((yield* client(env, ["hook", "PostToolUse"], JSON.stringify(payload))).code).toBe(0)
      const ev = yield* Queue.take(sub)
      expect(ev).toMatchObject({ hook: "PostToolUse", payload: { tool_name: "Read", tool_use_id: "t1" } })
    }).pipe(Effect.provide(NodeContext.layer)))
})

describe("what one instance or a stranger can cost", () => {
  it.scoped("a team command whose handling dies, even with a value too deep to print, is answered and the socket serves on", () =>
    Effect.gen(function*() {
      const { events } = yield* setup
      const token = yield* events.register("em-1")
      yield* events.setTeamHandler((req) =>
        req.command === "status" ? Effect.succeed({ ok: true, text: "fine" }) : Effect.die(JSON.parse("[".repeat(20_000) + "]".repeat(20_000))))
      const command = (name: string) => post(events.socketPath, "/team", JSON.stringify({ instance: "em-1", generation: 0, token, command: name, args: [] }))
      expect(yield* command("merge")).toEqual({ status: 422, text: "error: a failure that cannot be printed\n" })
      expect(yield* command("status")).toEqual({ status: 200, text: "fine\n" })
    }).pipe(Effect.provide(NodeContext.layer)))

  it.scoped("refusals anyone can cause write at most 20 lines per 10 s; the count left out goes with the next line", () =>
    Effect.gen(function*() {
      const { dir, events } = yield* setup
      for (let i = 0; i < 50; i++) {
        expect((yield* post(events.socketPath, "/hook", hookBody("worker-1", "guess", "Stop", {}))).status).toBe(403)
      }
      expect(logLines(dir).filter((l) => l.event === "control.rejected")).toHaveLength(20)
      yield* TestClock.adjust("10 seconds")
      expect((yield* post(events.socketPath, "/team", "{")).status).toBe(400)
      const last = logLines(dir).filter((l) => l.event === "control.rejected").at(-1)
      expect(last).toMatchObject({ reason: "malformed JSON", suppressedBefore: 30 })
    }).pipe(Effect.provide(NodeContext.layer)))

  it.scoped("one instance may have at most 4 team commands waiting; a fifth is refused at once, and others go on", () =>
    Effect.gen(function*() {
      const { events } = yield* setup
      const em1 = yield* events.register("em-1")
      const em2 = yield* events.register("em-2")
      const release = yield* Deferred.make<void>()
      let entered = 0
      yield* events.setTeamHandler((req) =>
        req.command === "merge"
          ? Effect.sync(() => entered++).pipe(Effect.zipRight(Deferred.await(release)), Effect.as({ ok: true, text: "merged" }))
          : Effect.succeed({ ok: true, text: "status" }))
      const command = (instance: string, token: string, name: string) =>
        post(events.socketPath, "/team", JSON.stringify({ instance, generation: 0, token, command: name, args: [] }))
      const waiting = yield* Effect.all(Array.from({ length: 4 }, () => command("em-1", em1, "merge")), { concurrency: "unbounded" }).pipe(Effect.fork)
      while (entered < 4) yield* Effect.promise(() => new Promise((r) => setTimeout(r, 10)))
      const fifth = yield* command("em-1", em1, "merge")
      expect(fifth.status).toBe(429)
      expect(fifth.text).toContain("4 of your cco team commands are still waiting")
      expect(yield* command("em-2", em2, "status")).toEqual({ status: 200, text: "status\n" })
      yield* Deferred.succeed(release, undefined)
      expect((yield* Fiber.join(waiting)).map((r) => r.status)).toEqual([200, 200, 200, 200])
      // Answered commands free their places.
      expect((yield* command("em-1", em1, "merge")).status).toBe(200)
    }).pipe(Effect.provide(NodeContext.layer)))
})

// Claude Code's http hooks: the CLI posts the event JSON to <hookUrl>/hook/<Event>, the sender in headers.
describe("http hooks on the loopback port", () => {
  const hookPost = (
    url: string,
    path: string,
    body: string,
    headers: http.OutgoingHttpHeaders,
    options: { readonly method?: string; readonly host?: string } = {}
  ) =>
    Effect.async<{ status: number; text: string }>((resume) => {
      const target = new URL(url)
      const req = http.request(
        { host: options.host ?? target.hostname, port: target.port, path, method: options.method ?? "POST", agent: false, headers: { "content-type": "application/json", ...headers } },
        (res) => {
          let text = ""
          res.on("data", (c) => (text += c))
          res.on("end", () => resume(Effect.succeed({ status: res.statusCode ?? 0, text })))
        }
      )
      req.on("error", (e) => resume(Effect.succeed({ status: 0, text: e.message })))
      req.end(body)
    })
  const sender = (instance: string, token: string, generation = 0) => ({
    "x-cco-instance": instance,
    "x-cco-generation": String(generation),
    "x-cco-token": token
  })

  it.scoped("an event posted with the sender's headers is published with instance and generation; the answer is an empty 200", () =>
    Effect.gen(function*() {
      const { events } = yield* setup
      expect(events.hookUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)
      const token = yield* events.register("worker-1")
      yield* events.setGeneration("worker-1", 2)
      const sub = yield* PubSub.subscribe(events.hooks)
      const payload = { session_id: "s1", hook_event_name: "PostToolUse", tool_name: "Bash", tool_input: { command: "ls" }, tool_use_id: "t1" }
      const r = yield* hookPost(events.hookUrl!, "/hook/PostToolUse", JSON.stringify(payload), sender("worker-1", token, 2))
      expect(r).toEqual({ status: 200, text: "" })
      const ev = yield* Queue.take(sub)
      expect(ev).toMatchObject({ instance: "worker-1", generation: 2, hook: "PostToolUse", payload: { session_id: "s1", tool_name: "Bash", tool_use_id: "t1" } })
      expect(ev.payload).not.toHaveProperty("tool_input")
    }).pipe(Effect.provide(NodeContext.layer)))

  it.scoped("wrong token, stale generation, missing or bad headers, unknown paths, other methods and web pages are refused and logged; nothing is published", () =>
    Effect.gen(function*() {
      const { dir, events } = yield* setup
      const url = events.hookUrl!
      const token = yield* events.register("worker-2")
      yield* events.setGeneration("worker-2", 3)
      const sub = yield* PubSub.subscribe(events.hooks)
      const stop = JSON.stringify({ hook_event_name: "Stop" })
      const status = (path: string, headers: http.OutgoingHttpHeaders, options?: { readonly method?: string }) =>
        hookPost(url, path, stop, headers, options).pipe(Effect.map((r) => r.status))
      expect(yield* status("/hook/Stop", sender("worker-2", "wrong", 3))).toBe(403)
      expect(yield* status("/hook/Stop", sender("worker-1", token, 3))).toBe(403)
      expect(yield* status("/hook/Stop", sender("worker-2", token, 2))).toBe(409)
      expect(yield* status("/hook/Stop", { "x-cco-instance": "worker-2", "x-cco-token": token })).toBe(400)
      expect(yield* status("/hook/Stop", sender("worker-2", token, -1))).toBe(400)
      expect(yield* status("/hook/Nope", sender("worker-2", token, 3))).toBe(400)
      expect(yield* status("/team", sender("worker-2", token, 3))).toBe(404)
      expect(yield* status("/hook/Stop", sender("worker-2", token, 3), { method: "GET" })).toBe(405)
      expect(yield* status("/hook/Stop", { ...sender("worker-2", token, 3), origin: "http://evil.example" })).toBe(403)
      expect((yield* hookPost(url, "/hook/Stop", "{not json", sender("worker-2", token, 3))).status).toBe(400)
      expect(yield* Queue.size(sub)).toBe(0)
      // Still serving: the current generation with its token goes through.
      expect(yield* status("/hook/Stop", sender("worker-2", token, 3))).toBe(200)
      expect(yield* Queue.take(sub)).toMatchObject({ instance: "worker-2", generation: 3, hook: "Stop" })
      const lines = logLines(dir)
      expect(lines.filter((l) => l.event === "control.rejected").map((l) => l.reason)).toEqual([
        "bad token",
        "bad token",
        "invalid hook request",
        "invalid hook request",
        "invalid hook request",
        "invalid hook request",
        "request from a web page",
        "malformed JSON"
      ])
      expect(lines.find((l) => l.event === "control.stale")).toMatchObject({ instance: "worker-2", generation: 2, current: 3 })
      expect(readFileSync(`${dir}/combined.log`, "utf8")).not.toContain(token)
    }).pipe(Effect.provide(NodeContext.layer)))

  it.scoped("listens on loopback only", () =>
    Effect.gen(function*() {
      const { events } = yield* setup
      const token = yield* events.register("worker-1")
      const others = Object.values(os.networkInterfaces()).flat()
        .filter((a) => a !== undefined && !a.internal && a.family === "IPv4")
        .map((a) => a!.address)
      for (const host of others) {
        const r = yield* hookPost(events.hookUrl!, "/hook/Stop", "{}", sender("worker-1", token), { host })
        expect(r.status, `reached on ${host}`).toBe(0)
      }
      expect((yield* hookPost(events.hookUrl!, "/hook/Stop", "{}", sender("worker-1", token))).status).toBe(200)
    }).pipe(Effect.provide(NodeContext.layer)))
})

describe("the loopback port's limits", () => {
  const limits: ControlLimits = { maxBodyBytes: 64 * 1024, maxConnections: 8, headersTimeoutMs: 500, requestTimeoutMs: 1000 }
  const limitedSetup = Effect.gen(function*() {
    const dir = yield* tempDir()
    const runLog = yield* RunLog.make(dir, "test")
    const events = yield* Events.make(`${dir}/control.sock`, limits).pipe(Effect.provideService(RunLog.RunLog, runLog))
    return { dir, events, port: Number(new URL(events.hookUrl!).port) }
  })
  const raw = (port: number, request: string, dripMs?: number) =>
    Effect.async<{ closedAfterMs: number; received: string }>((resume) => {
      const started = Date.now()
      let received = ""
      const socket = net.createConnection({ host: "127.0.0.1", port }, () => socket.write(request))
      const drip = dripMs === undefined ? undefined : setInterval(() => socket.writable && socket.write("a"), dripMs)
      socket.on("data", (d) => (received += d))
      socket.on("error", () => {})
      socket.on("close", () => {
        clearInterval(drip)
        resume(Effect.succeed({ closedAfterMs: Date.now() - started, received }))
      })
      return Effect.sync(() => {
        clearInterval(drip)
        socket.destroy()
      })
    })
  const headers = (instance: string, token: string, extra = "") =>
    `x-cco-instance: ${instance}\r\nx-cco-generation: 0\r\nx-cco-token: ${token}\r\n${extra}`

  it.scopedLive("a sender's oversize event arrives without its payload; a stranger's is refused before its body is read", () =>
    Effect.gen(function*() {
      const { events, port } = yield* limitedSetup
      const token = yield* events.register("worker-1")
      const sub = yield* PubSub.subscribe(events.hooks)
      const big = JSON.stringify({ tool_name: "Read", tool_response: { content: "y".repeat(200 * 1024) } })
      const ok = yield* raw(port, `POST /hook/PostToolUse HTTP/1.1\r\nHost: x\r\nConnection: close\r\n${headers("worker-1", token)}Content-Length: ${big.length}\r\n\r\n${big}`)
      expect(ok.received).toMatch(/^HTTP\/1\.1 200/)
      expect(yield* Queue.take(sub)).toMatchObject({ instance: "worker-1", hook: "PostToolUse", payload: {} })
      // A wrong token is answered at once, with the body never sent.
      const stranger = yield* raw(port, `POST /hook/PostToolUse HTTP/1.1\r\nHost: x\r\n${headers("worker-1", "wrong")}Content-Length: ${big.length}\r\n\r\n`)
      expect(stranger.received).toMatch(/^HTTP\/1\.1 403/)
      expect(stranger.closedAfterMs).toBeLessThan(500)
      expect(yield* Queue.size(sub)).toBe(0)
    }).pipe(Effect.provide(NodeContext.layer)), { timeout: 20_000 })

  it.scopedLive("slow connections are cut, extra ones refused, and a good request still goes through", () =>
    Effect.gen(function*() {
      const { events, port } = yield* limitedSetup
      const token = yield* events.register("worker-1")
      const stalled = yield* Effect.all(
        Array.from({ length: 20 }, () => raw(port, "POST /hook/Stop HTTP/1.1\r\nHost: x\r\nX-Slow: ", 100)),
        { concurrency: "unbounded" }
      ).pipe(Effect.fork)
      const loris = yield* raw(port, `POST /hook/Stop HTTP/1.1\r\nHost: x\r\n${headers("worker-1", token)}Content-Length: 102400\r\n\r\n{`, 100).pipe(Effect.fork)
      expect((yield* Fiber.join(stalled)).every((c) => c.closedAfterMs < 3000)).toBe(true)
      const cut = yield* Fiber.join(loris)
      expect(cut.closedAfterMs).toBeLessThan(3000)
      expect(cut.received).not.toContain("200 OK")
      const good = yield* raw(port, `POST /hook/Stop HTTP/1.1\r\nHost: x\r\nConnection: close\r\n${headers("worker-1", token)}Content-Length: 2\r\n\r\n{}`)
      expect(good.received).toMatch(/^HTTP\/1\.1 200/)
    }).pipe(Effect.provide(NodeContext.layer)), { timeout: 20_000 })
})
