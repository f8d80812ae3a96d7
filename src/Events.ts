// The control socket: Claude Code hook events and team commands arrive here from every instance,
// authenticated by a per-instance, per-generation token. Everything that arrives is untrusted: requests are
// bounded in size, number and time, and a hook's payload is decoded to the few bounded fields cco reads
// before anything else sees it.
import { Cause, Clock, Context, Effect, Either, Layer, Option, PubSub, Ref, Runtime, Schema, Scope, Stream } from "effect"
import type { ParseResult } from "effect"
import { createHash, randomBytes, timingSafeEqual } from "node:crypto"
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

/** A string cut to `max` characters: a long text costs its tail, never the event. */
const Text = (max: number) =>
  Schema.transform(Schema.String, Schema.String, {
    strict: true,
    decode: (s) => (s.length > max ? s.slice(0, max) : s),
    encode: (s) => s
  })

// Absent or null both mean "not sent"; any other type than a string makes the event undecodable.
const Short = Schema.optionalWith(Text(256), { nullable: true })
const FilePath = Schema.optionalWith(Text(4096), { nullable: true })
const Long = Schema.optionalWith(Text(16_384), { nullable: true })

/**
 * The hook payload fields cco reads (and a few that help a person reading combined.log), each a bounded string.
 * Everything else the CLI sends — tool inputs and responses, nested objects of any depth — is dropped.
 */
export const HookPayload = Schema.Struct({
  session_id: Short,
  transcript_path: FilePath,
  cwd: FilePath,
  hook_event_name: Short,
  /** SessionStart: startup, resume, clear, compact. */
  source: Short,
  model: Short,
  /** UserPromptSubmit. */
  prompt: Long,
  /** PreToolUse, PostToolUse, PostToolUseFailure. */
  tool_name: Short,
  tool_use_id: Short,
  /** StopFailure: rate_limit, authentication_failed, …; PostToolUseFailure: the tool's error text. */
  error: Long,
  /** Stop, SubagentStop, StopFailure: the turn's last text (for StopFailure the CLI's error line). */
  last_assistant_message: Long,
  /** Notification. */
  notification_type: Short,
  message: Long,
  title: Short,
  /** PreCompact. */
  trigger: Short,
  /** SessionEnd. */
  reason: Short
})
export type HookPayload = typeof HookPayload.Type

type PayloadField = keyof typeof HookPayload.fields
const common: ReadonlyArray<PayloadField> = ["session_id", "transcript_path", "cwd", "hook_event_name"]
const fieldsOf: Readonly<Record<HookName, ReadonlyArray<PayloadField>>> = {
  SessionStart: ["source", "model"],
  UserPromptSubmit: ["prompt"],
  PreToolUse: ["tool_name", "tool_use_id"],
  PostToolUse: ["tool_name", "tool_use_id"],
  PostToolUseFailure: ["tool_name", "tool_use_id", "error"],
  Stop: ["last_assistant_message"],
  StopFailure: ["error", "last_assistant_message"],
  SubagentStop: ["last_assistant_message"],
  Notification: ["notification_type", "message", "title"],
  PreCompact: ["trigger"],
  SessionEnd: ["reason"]
}
const payloadOf = (hook: HookName) => HookPayload.pipe(Schema.pick(...common, ...fieldsOf[hook]))

// Names are cco's own (director, em-3, worker-12), commands are short words: anything longer is not a client.
const Envelope = Schema.Struct({
  instance: Schema.String.pipe(Schema.maxLength(64)),
  generation: Schema.Number,
  token: Schema.String.pipe(Schema.maxLength(256))
})

const HookMessage = Schema.Struct({
  ...Envelope.fields,
  hook: HookName,
  payload: Schema.Object
})

const TeamMessage = Schema.Struct({
  ...Envelope.fields,
  command: Schema.String.pipe(Schema.maxLength(64)),
  args: Schema.Array(Schema.String).pipe(Schema.maxItems(1000))
})

export interface HookEvent {
  readonly instance: string
  readonly generation: number
  readonly hook: HookName
  /** Decoded: only the fields of HookPayload that this hook sends, each a bounded string. */
  readonly payload: Partial<HookPayload>
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

/** What the socket accepts. Team commands may wait long for their answer; only receiving a request is bounded. */
export interface ControlLimits {
  /** Largest request body; a larger one is answered 413 and the connection closed. */
  readonly maxBodyBytes: number
  /** Connections open at once; more are closed as they arrive. */
  readonly maxConnections: number
  /** Time to send the request's headers, from the moment the connection opens. */
  readonly headersTimeoutMs: number
  /** Time to send the whole request (headers and body). The handler's own time does not count. */
  readonly requestTimeoutMs: number
}

/** Team commands one instance may have waiting for their answers at once; more are refused (429) at once. */
export const MAX_COMMANDS_IN_FLIGHT = 4

// Refusals anyone can cause (no valid token needed) must not fill combined.log: at most this many lines per
// window; the number left out goes with the next line written.
const REFUSAL_LOG_BURST = 20
const REFUSAL_LOG_WINDOW_MS = 10_000

interface RefusalWindow {
  readonly windowStart: number
  readonly written: number
  readonly suppressed: number
}

export const defaultLimits: ControlLimits = {
  maxBodyBytes: 256 * 1024,
  maxConnections: 128,
  headersTimeoutMs: 5_000,
  requestTimeoutMs: 10_000
}

export interface EventsShape {
  readonly socketPath: string
  /**
   * Issues a fresh token for an instance's next generation; every token issued before stops working. Only the
   * token's digest is kept: the token itself goes to the instance's environment and nowhere else.
   */
  readonly register: (instance: string) => Effect.Effect<string>
  /** Accepts again the token whose digest (tokenDigest) was saved, for a live session of a resumed run. */
  readonly restore: (instance: string, digest: string, generation: number) => Effect.Effect<void>
  readonly setGeneration: (instance: string, generation: number) => Effect.Effect<void>
  readonly generation: (instance: string) => Effect.Effect<number>
  readonly hooks: PubSub.PubSub<HookEvent>
  readonly setTeamHandler: (handler: TeamHandler) => Effect.Effect<void>
}

export class Events extends Context.Tag("cco/Events")<Events, EventsShape>() {}

interface Registration {
  /** sha256 of the token. */
  readonly digest: Buffer
  readonly generation: number
}

/** The hex sha256 of a token: what is kept in memory and on disk instead of the token. */
export const tokenDigest = (token: string) => createHash("sha256").update(token, "utf8").digest("hex")

const sameToken = (digest: Buffer, presented: string) => {
  const given = createHash("sha256").update(presented, "utf8").digest()
  return digest.length === given.length && timingSafeEqual(digest, given)
}

/** The path (field names) of the first problem in a failed decode, without formatting the offending value. */
const firstPath = (issue: ParseResult.ParseIssue): ReadonlyArray<PropertyKey> => {
  switch (issue._tag) {
    case "Pointer":
      return [...(Array.isArray(issue.path) ? issue.path : [issue.path as PropertyKey]), ...firstPath(issue.issue)]
    case "Composite": {
      const inner = Array.isArray(issue.issues) ? issue.issues[0] : issue.issues as ParseResult.ParseIssue
      return inner === undefined ? [] : firstPath(inner)
    }
    case "Refinement":
    case "Transformation":
      return firstPath(issue.issue)
    default:
      return []
  }
}

/** Decodes one hook's payload, or says which field is wrong. */
export const decodeHookPayload = (hook: HookName, payload: unknown): Either.Either<Partial<HookPayload>, string> =>
  Either.mapLeft(
    Schema.decodeUnknownEither(payloadOf(hook), { errors: "first", onExcessProperty: "ignore" })(payload),
    (e) => {
      const where = firstPath(e.issue).map((k) => String(k).slice(0, 64)).join(".")
      return `invalid ${hook} payload${where === "" ? "" : `: ${where} is not a string`}`
    }
  )

/** A cause as text for the log, bounded; a defect that cannot even be printed (too deep, say) is named as such. */
export const describeCause = (cause: Cause.Cause<unknown>): string => {
  try {
    return Cause.pretty(cause).slice(0, 2000)
  } catch {
    return "a failure that cannot be printed"
  }
}

/**
 * Runs `handle` for every hook event, for as long as the scope lives. A failure or defect in handling one event
 * is logged (`hook.failed`) and costs that event only: the next one is handled as usual.
 */
export const consumeHooks = <R>(
  hooks: PubSub.PubSub<HookEvent>,
  handle: (event: HookEvent) => Effect.Effect<void, unknown, R>
): Effect.Effect<void, never, R | RunLog> =>
  Effect.flatMap(RunLog, (runLog) =>
    Stream.fromPubSub(hooks).pipe(
      Stream.runForEach((event) =>
        Effect.suspend(() => handle(event)).pipe(
          Effect.catchAllCause((cause) =>
            Cause.isInterruptedOnly(cause) ? Effect.interrupt : runLog.log("hook.failed", {
              instance: event.instance,
              generation: event.generation,
              hook: event.hook,
              cause: describeCause(cause)
            })
          )
        )
      )
    ))

/** Arguments of a team command as combined.log keeps them: at most 10, each cut to 200 characters. */
export const argsForLog = (args: ReadonlyArray<string>): ReadonlyArray<string> => [
  ...args.slice(0, 10).map((a) => (a.length > 200 ? `${a.slice(0, 200)}… (${a.length} chars)` : a)),
  ...(args.length > 10 ? [`… (${args.length - 10} more)`] : [])
]

class BodyTooLarge {
  readonly _tag = "BodyTooLarge"
}

const readBody = (req: http.IncomingMessage, limit: number) =>
  new Promise<string>((resolve, reject) => {
    let size = 0
    let over = false
    const chunks: Array<Buffer> = []
    req.on("data", (c: Buffer) => {
      if (over) return
      size += c.length
      if (size > limit) {
        over = true
        chunks.length = 0
        reject(new BodyTooLarge())
      } else chunks.push(c)
    })
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")))
    req.on("error", reject)
  })

export const make = (
  socketPath: string,
  limits: ControlLimits = defaultLimits
): Effect.Effect<EventsShape, Error, RunLog | Scope.Scope> =>
  Effect.gen(function*() {
    const runLog = yield* RunLog
    const registry = yield* Ref.make<ReadonlyMap<string, Registration>>(new Map())
    const hooks = yield* Effect.acquireRelease(PubSub.unbounded<HookEvent>(), PubSub.shutdown)
    const teamHandler = yield* Ref.make<Option.Option<TeamHandler>>(Option.none())
    const runtime = yield* Effect.runtime<never>()
    const inFlight = yield* Ref.make<ReadonlyMap<string, number>>(new Map())
    const refusals = yield* Ref.make<RefusalWindow>({ windowStart: 0, written: 0, suppressed: 0 })

    const logRefusal = (event: string, fields: Readonly<Record<string, unknown>>) =>
      Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        const before = yield* Ref.modify(refusals, (r): readonly [number | undefined, RefusalWindow] => {
          const current = now - r.windowStart >= REFUSAL_LOG_WINDOW_MS ? { ...r, windowStart: now, written: 0 } : r
          if (current.written >= REFUSAL_LOG_BURST) return [undefined, { ...current, suppressed: current.suppressed + 1 }]
          return [current.suppressed, { ...current, written: current.written + 1, suppressed: 0 }]
        })
        if (before === undefined) return
        yield* runLog.log(event, before > 0 ? { ...fields, suppressedBefore: before } : fields)
      })

    // Checks token and generation; answers [status, reason] on refusal.
    const authenticate = (msg: typeof Envelope.Type, kind: string) =>
      Effect.gen(function*(): Effect.fn.Return<Option.Option<readonly [number, string]>> {
        const reg = (yield* Ref.get(registry)).get(msg.instance)
        if (reg === undefined || !sameToken(reg.digest, msg.token)) {
          yield* logRefusal("control.rejected", { instance: msg.instance, kind, reason: "bad token" })
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
          yield* logRefusal("control.rejected", { path: path.slice(0, 64), reason: "malformed JSON" })
          return [400, "refused: malformed JSON"] as const
        }
        if (path === "/hook") {
          const decoded = Schema.decodeUnknownOption(HookMessage)(json.value)
          if (Option.isNone(decoded)) {
            yield* logRefusal("control.rejected", { path, reason: "invalid hook message" })
            return [400, "refused: invalid hook message"] as const
          }
          const msg = decoded.value
          const refusal = yield* authenticate(msg, `hook:${msg.hook}`)
          if (Option.isSome(refusal)) return refusal.value
          const payload = decodeHookPayload(msg.hook, msg.payload)
          if (Either.isLeft(payload)) {
            yield* logRefusal("control.rejected", { instance: msg.instance, kind: `hook:${msg.hook}`, reason: payload.left })
            return [400, `refused: ${payload.left}`] as const
          }
          yield* PubSub.publish(hooks, {
            instance: msg.instance,
            generation: msg.generation,
            hook: msg.hook,
            payload: payload.right,
            receivedAt: Date.now()
          })
          return [200, "ok"] as const
        }
        if (path === "/team") {
          const decoded = Schema.decodeUnknownOption(TeamMessage)(json.value)
          if (Option.isNone(decoded)) {
            yield* logRefusal("control.rejected", { path, reason: "invalid team message" })
            return [400, "refused: invalid team command"] as const
          }
          const msg = decoded.value
          const refusal = yield* authenticate(msg, `team:${msg.command}`)
          if (Option.isSome(refusal)) return refusal.value
          const handler = yield* Ref.get(teamHandler)
          if (Option.isNone(handler)) return [503, "refused: the orchestrator is not ready yet, try again in a moment"] as const
          const request = { instance: msg.instance, generation: msg.generation, command: msg.command, args: msg.args }
          // Each waiting command holds a connection: one instance may not hold them all.
          const admitted = yield* Ref.modify(inFlight, (m) => {
            const n = m.get(msg.instance) ?? 0
            return n >= MAX_COMMANDS_IN_FLIGHT ? [false, m] as const : [true, new Map(m).set(msg.instance, n + 1)] as const
          })
          if (!admitted) {
            yield* runLog.log("control.busy", { instance: msg.instance, command: msg.command })
            return [429, `refused: ${MAX_COMMANDS_IN_FLIGHT} of your cco team commands are still waiting for their answers; wait for them`] as const
          }
          const reply = yield* handler.value(request).pipe(
            Effect.catchAllDefect((d) => Effect.succeed({ ok: false, text: `error: ${describeCause(Cause.die(d)).slice(0, 500)}` })),
            Effect.ensuring(Ref.update(inFlight, (m) => new Map(m).set(msg.instance, (m.get(msg.instance) ?? 1) - 1)))
          )
          return [reply.ok ? 200 : 422, reply.text] as const
        }
        return [404, "unknown path"] as const
      })

    const tooLarge = `refused: the request is larger than ${Math.round(limits.maxBodyBytes / 1024)} KiB; send less text`
    // Node checks the header and request timeouts on this interval; its default (30 s) would let a slow sender
    // hold its connection that much longer.
    const server = http.createServer({
      connectionsCheckingInterval: Math.min(1000, limits.headersTimeoutMs),
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      maxHeaderSize: 8 * 1024
    }, (req, res) => {
      // Answers reach the calling agent's terminal and context: they quote other agents' texts, so neutralised.
      const respond = (status: number, raw: string, close = false) => {
        if (res.headersSent || res.destroyed) return
        const text = neutralise(raw, REPLY_MAX)
        res.writeHead(status, { "content-type": "text/plain; charset=utf-8", ...(close ? { connection: "close" } : {}) })
        res.end(text.endsWith("\n") ? text : text + "\n")
      }
      const refuseLarge = () => {
        Runtime.runFork(runtime)(logRefusal("control.rejected", { path: (req.url ?? "/").slice(0, 64), reason: "body too large" }))
        respond(413, tooLarge, true)
      }
      if (req.method !== "POST") return respond(405, "POST only", true)
      // Announced too large: answered before a byte of the body is read.
      if (Number(req.headers["content-length"] ?? 0) > limits.maxBodyBytes) return refuseLarge()
      readBody(req, limits.maxBodyBytes).then(
        (body) =>
          Runtime.runPromise(runtime)(handle(req.url ?? "/", body)).then(
            ([status, text]) => respond(status, text),
            () => respond(500, "error: cco failed to handle this request")
          ),
        (e) => (e instanceof BodyTooLarge ? refuseLarge() : req.destroy())
      )
    })
    server.maxConnections = limits.maxConnections
    server.keepAliveTimeout = 1000
    server.on("drop", () => Runtime.runFork(runtime)(logRefusal("control.dropped", { reason: `more than ${limits.maxConnections} connections` })))

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

    const register = (instance: string) =>
      Effect.sync(() => randomBytes(24).toString("hex")).pipe(
        Effect.tap((token) =>
          Ref.update(registry, (m) =>
            new Map(m).set(instance, { digest: Buffer.from(tokenDigest(token), "hex"), generation: m.get(instance)?.generation ?? 0 })))
      )

    return {
      socketPath,
      register,
      restore: (instance, digest, generation) =>
        Ref.update(registry, (m) => new Map(m).set(instance, { digest: Buffer.from(digest.trim(), "hex"), generation })),
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

export const layer = (socketPath: string, limits?: ControlLimits) => Layer.scoped(Events, make(socketPath, limits))
