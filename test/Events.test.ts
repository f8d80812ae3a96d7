import { NodeContext } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, Layer, PubSub, Queue, Stream } from "effect"
import { execFile } from "node:child_process"
import { readFileSync, statSync } from "node:fs"
import * as http from "node:http"
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
