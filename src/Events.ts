// The control socket: Claude Code hook events and team commands arrive here from every instance,
// authenticated by a per-instance token and tagged with the instance's generation.
import { Context, Effect, Layer, Option, PubSub, Ref, Runtime, Schema, Scope } from "effect"
import { randomBytes, timingSafeEqual } from "node:crypto"
import { chmodSync, rmSync } from "node:fs"
import * as http from "node:http"
import { RunLog } from "./RunLog.js"
import { neutralise, REPLY_MAX } from "./Untrusted.js"

export const HookName = Schema.Literal(
  "SessionStart",
  "UserPromptSubmit",
  "PreToolUse",
  "PostToolUse",
  "PostToolUseFailure",
  "Stop",
  "StopFailure",
  "SubagentStop",
  "Notification",
  "PreCompact",
  "SessionEnd"
)
export type HookName = typeof HookName.Type

const Envelope = Schema.Struct({
  instance: Schema.String,
  generation: Schema.Number,
  token: Schema.String
})

const HookMessage = Schema.Struct({
  ...Envelope.fields,
  hook: HookName,
  payload: Schema.Record({ key: Schema.String, value: Schema.Unknown })
})

const TeamMessage = Schema.Struct({
  ...Envelope.fields,
  command: Schema.String,
  args: Schema.Array(Schema.String)
})

export interface HookEvent {
  readonly instance: string
  readonly generation: number
  readonly hook: HookName
  readonly payload: Readonly<Record<string, unknown>>
  readonly receivedAt: number
}

export interface TeamRequest {
  readonly instance: string
  readonly generation: number
  readonly command: string
  readonly args: ReadonlyArray<string>
}

export interface TeamReply {
  readonly ok: boolean
  readonly text: string
}

export type TeamHandler = (request: TeamRequest) => Effect.Effect<TeamReply>

export interface EventsShape {
  readonly socketPath: string
  /** Registers an instance (or returns its existing token); generation starts at 0. A known token re-attaches a resumed instance. */
  readonly register: (instance: string, token?: string) => Effect.Effect<string>
  readonly setGeneration: (instance: string, generation: number) => Effect.Effect<void>
  readonly generation: (instance: string) => Effect.Effect<number>
  readonly hooks: PubSub.PubSub<HookEvent>
  readonly setTeamHandler: (handler: TeamHandler) => Effect.Effect<void>
}

export class Events extends Context.Tag("cco/Events")<Events, EventsShape>() {}

interface Registration {
  readonly token: Buffer
  readonly generation: number
}

const sameToken = (a: Buffer, b: string) => {
  const bb = Buffer.from(b)
  return a.length === bb.length && timingSafeEqual(a, bb)
}

const readBody = (req: http.IncomingMessage, limit: number) =>
  new Promise<string>((resolve, reject) => {
    let size = 0
    const chunks: Array<Buffer> = []
    req.on("data", (c: Buffer) => {
      size += c.length
      if (size > limit) {
        reject(new Error("body too large"))
        req.destroy()
      } else chunks.push(c)
    })
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")))
    req.on("error", reject)
  })

export const make = (socketPath: string): Effect.Effect<EventsShape, Error, RunLog | Scope.Scope> =>
  Effect.gen(function*() {
    const runLog = yield* RunLog
    const registry = yield* Ref.make<ReadonlyMap<string, Registration>>(new Map())
    const hooks = yield* Effect.acquireRelease(PubSub.unbounded<HookEvent>(), PubSub.shutdown)
    const teamHandler = yield* Ref.make<Option.Option<TeamHandler>>(Option.none())
    const runtime = yield* Effect.runtime<never>()

    // Checks token and generation; answers [status, reason] on refusal.
    const authenticate = (msg: typeof Envelope.Type, kind: string) =>
      Effect.gen(function*(): Effect.fn.Return<Option.Option<readonly [number, string]>> {
        const reg = (yield* Ref.get(registry)).get(msg.instance)
        if (reg === undefined || !sameToken(reg.token, msg.token)) {
          yield* runLog.log("control.rejected", { instance: msg.instance, kind, reason: "bad token" })
          return Option.some([403, "refused: unknown instance or wrong token"] as const)
        }
        if (msg.generation !== reg.generation) {
          yield* runLog.log("control.stale", { instance: msg.instance, kind, generation: msg.generation, current: reg.generation })
          return Option.some([409, `ignored: generation ${msg.generation} is not current (${reg.generation})`] as const)
        }
        return Option.none()
      })

    const handle = (path: string, body: string): Effect.Effect<readonly [number, string]> =>
      Effect.gen(function*() {
        const json = yield* Effect.try(() => JSON.parse(body) as unknown).pipe(Effect.option)
        if (Option.isNone(json)) {
          yield* runLog.log("control.rejected", { path, reason: "malformed JSON" })
          return [400, "refused: malformed JSON"] as const
        }
        if (path === "/hook") {
          const decoded = Schema.decodeUnknownOption(HookMessage)(json.value)
          if (Option.isNone(decoded)) {
            yield* runLog.log("control.rejected", { path, reason: "invalid hook message" })
            return [400, "refused: invalid hook message"] as const
          }
          const msg = decoded.value
          const refusal = yield* authenticate(msg, `hook:${msg.hook}`)
          if (Option.isSome(refusal)) return refusal.value
          yield* PubSub.publish(hooks, {
            instance: msg.instance,
            generation: msg.generation,
            hook: msg.hook,
            payload: msg.payload,
            receivedAt: Date.now()
          })
          return [200, "ok"] as const
        }
        if (path === "/team") {
          const decoded = Schema.decodeUnknownOption(TeamMessage)(json.value)
          if (Option.isNone(decoded)) {
            yield* runLog.log("control.rejected", { path, reason: "invalid team message" })
            return [400, "refused: invalid team command"] as const
          }
          const msg = decoded.value
          const refusal = yield* authenticate(msg, `team:${msg.command}`)
          if (Option.isSome(refusal)) return refusal.value
          const handler = yield* Ref.get(teamHandler)
          if (Option.isNone(handler)) return [503, "refused: the orchestrator is not ready yet, try again in a moment"] as const
          const request = { instance: msg.instance, generation: msg.generation, command: msg.command, args: msg.args }
          const reply = yield* handler.value(request).pipe(
            Effect.catchAllDefect((d) => Effect.succeed({ ok: false, text: `error: ${String(d)}` }))
          )
          return [reply.ok ? 200 : 422, reply.text] as const
        }
        return [404, "unknown path"] as const
      })

    const server = http.createServer((req, res) => {
      // Answers reach the calling agent's terminal and context: they quote other agents' texts, so neutralised.
      const respond = (status: number, raw: string) => {
        const text = neutralise(raw, REPLY_MAX)
        res.writeHead(status, { "content-type": "text/plain; charset=utf-8" })
        res.end(text.endsWith("\n") ? text : text + "\n")
      }
      if (req.method !== "POST") return respond(405, "POST only")
      readBody(req, 4 * 1024 * 1024).then(
        (body) =>
          Runtime.runPromise(runtime)(handle(req.url ?? "/", body)).then(
            ([status, text]) => respond(status, text),
            (e) => respond(500, `error: ${String(e)}`)
          ),
        () => respond(413, "refused: body too large")
      )
    })

    yield* Effect.acquireRelease(
      Effect.async<void, Error>((resume) => {
        rmSync(socketPath, { force: true })
        server.once("error", (e) => resume(Effect.fail(new Error(`control socket ${socketPath}: ${e.message}`))))
        server.listen(socketPath, () => {
          chmodSync(socketPath, 0o600)
          resume(Effect.void)
        })
      }),
      () =>
        Effect.async<void>((resume) => {
          server.close(() => resume(Effect.void))
          server.closeAllConnections()
        }).pipe(Effect.ensuring(Effect.sync(() => rmSync(socketPath, { force: true }))))
    )

    const register = (instance: string, known?: string) =>
      Ref.modify(registry, (m) => {
        const existing = m.get(instance)
        if (existing !== undefined && known === undefined) return [existing.token.toString(), m] as const
        const token = known ?? randomBytes(24).toString("hex")
        return [token, new Map(m).set(instance, { token: Buffer.from(token), generation: 0 })] as const
      })

    return {
      socketPath,
      register,
      setGeneration: (instance, generation) =>
        Ref.update(registry, (m) => {
          const reg = m.get(instance)
          return reg === undefined ? m : new Map(m).set(instance, { ...reg, generation })
        }),
      generation: (instance) => Effect.map(Ref.get(registry), (m) => m.get(instance)?.generation ?? 0),
      hooks,
      setTeamHandler: (handler) => Ref.set(teamHandler, Option.some(handler))
    }
  })

export const layer = (socketPath: string) => Layer.scoped(Events, make(socketPath))
