// The control socket: Claude Code hook events and team commands arrive here from every instance,
// authenticated by a per-instance, per-generation token. Everything that arrives is untrusted: requests are
// bounded in size, number and time (ControlServer), and a hook's payload is decoded to the few bounded fields cco
// reads (HookPayload) before anything else sees it.
import { Cause, Clock, Context, Effect, Either, Layer, Option, PubSub, Ref, Schema, Stream } from "effect"
import type { Scope } from "effect"
import { createHash, randomBytes, timingSafeEqual } from "node:crypto"
import {
  type Answer,
  type ControlLimits,
  defaultLimits,
  type Headers,
  type LogRefusal,
  type LoopbackHandler,
  makeRefusalLog,
  serve,
  serveLoopback
} from "./ControlServer.js"
import { decodeHookPayload, hookHeaders, HookName, type HookPayload } from "./HookPayload.js"
import { RunLog, type RunLogShape } from "./RunLog.js"

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

/** Team commands one instance may have waiting for their answers at once; more are refused (429) at once. */
export const MAX_COMMANDS_IN_FLIGHT = 4

export interface EventsShape {
  readonly socketPath: string
  /**
   * Where Claude Code's http hooks post (`http://127.0.0.1:PORT`; see hookHeaders), authenticated like the socket;
   * undefined when there is no such listener (in memory), and then hooks go through the socket.
   */
  readonly hookUrl: string | undefined
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
  /**
   * One request as the control socket takes it (path `/hook` or `/team`, a JSON body): decoded, authenticated
   * and handled exactly as one that arrived over the socket. The in-memory run services send through it.
   */
  readonly receive: (path: string, body: string) => Effect.Effect<Answer>
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

interface Control {
  readonly runLog: RunLogShape
  readonly registry: Ref.Ref<ReadonlyMap<string, Registration>>
  readonly hooks: PubSub.PubSub<HookEvent>
  readonly teamHandler: Ref.Ref<Option.Option<TeamHandler>>
  readonly inFlight: Ref.Ref<ReadonlyMap<string, number>>
  readonly logRefusal: LogRefusal
}

// Checks token and generation; answers [status, reason] on refusal.
const authenticate = (c: Control, msg: typeof Envelope.Type, kind: string) =>
  Effect.gen(function*(): Effect.fn.Return<Option.Option<Answer>> {
    const reg = (yield* Ref.get(c.registry)).get(msg.instance)
    if (reg === undefined || !sameToken(reg.digest, msg.token)) {
      yield* c.logRefusal("control.rejected", { instance: msg.instance, kind, reason: "bad token" })
      return Option.some([403, "refused: unknown instance or wrong token"] as const)
    }
    if (msg.generation !== reg.generation) {
      yield* c.runLog.log("control.stale", { instance: msg.instance, kind, generation: msg.generation, current: reg.generation })
      return Option.some([409, `ignored: generation ${msg.generation} is not current (${reg.generation})`] as const)
    }
    return Option.none()
  })

const receiveHook = (c: Control, json: unknown) =>
  Effect.gen(function*(): Effect.fn.Return<Answer> {
    const decoded = Schema.decodeUnknownOption(HookMessage)(json)
    if (Option.isNone(decoded)) {
      yield* c.logRefusal("control.rejected", { path: "/hook", reason: "invalid hook message" })
      return [400, "refused: invalid hook message"] as const
    }
    const msg = decoded.value
    const refusal = yield* authenticate(c, msg, `hook:${msg.hook}`)
    if (Option.isSome(refusal)) return refusal.value
    const payload = decodeHookPayload(msg.hook, msg.payload)
    if (Either.isLeft(payload)) {
      yield* c.logRefusal("control.rejected", { instance: msg.instance, kind: `hook:${msg.hook}`, reason: payload.left })
      return [400, `refused: ${payload.left}`] as const
    }
    yield* PubSub.publish(c.hooks, {
      instance: msg.instance,
      generation: msg.generation,
      hook: msg.hook,
      payload: payload.right,
      receivedAt: yield* Clock.currentTimeMillis
    })
    return [200, "ok"] as const
  })

const receiveTeamCommand = (c: Control, json: unknown) =>
  Effect.gen(function*(): Effect.fn.Return<Answer> {
    const decoded = Schema.decodeUnknownOption(TeamMessage)(json)
    if (Option.isNone(decoded)) {
      yield* c.logRefusal("control.rejected", { path: "/team", reason: "invalid team message" })
      return [400, "refused: invalid team command"] as const
    }
    const msg = decoded.value
    const refusal = yield* authenticate(c, msg, `team:${msg.command}`)
    if (Option.isSome(refusal)) return refusal.value
    const handler = yield* Ref.get(c.teamHandler)
    if (Option.isNone(handler)) return [503, "refused: the orchestrator is not ready yet, try again in a moment"] as const
    const request = { instance: msg.instance, generation: msg.generation, command: msg.command, args: msg.args }
    // Each waiting command holds a connection: one instance may not hold them all.
    const admitted = yield* Ref.modify(c.inFlight, (m) => {
      const n = m.get(msg.instance) ?? 0
      return n >= MAX_COMMANDS_IN_FLIGHT ? [false, m] as const : [true, new Map(m).set(msg.instance, n + 1)] as const
    })
    if (!admitted) {
      yield* c.runLog.log("control.busy", { instance: msg.instance, command: msg.command })
      return [429, `refused: ${MAX_COMMANDS_IN_FLIGHT} of your cco team commands are still waiting for their answers; wait for them`] as const
    }
    const reply = yield* handler.value(request).pipe(
      Effect.catchAllDefect((d) => Effect.succeed({ ok: false, text: `error: ${describeCause(Cause.die(d)).slice(0, 500)}` })),
      Effect.ensuring(Ref.update(c.inFlight, (m) => new Map(m).set(msg.instance, (m.get(msg.instance) ?? 1) - 1)))
    )
    return [reply.ok ? 200 : 422, reply.text] as const
  })

const answer = (c: Control) => (path: string, body: string): Effect.Effect<Answer> =>
  Effect.gen(function*() {
    const json = yield* Effect.try(() => JSON.parse(body) as unknown).pipe(Effect.option)
    if (Option.isNone(json)) {
      yield* c.logRefusal("control.rejected", { path: path.slice(0, 64), reason: "malformed JSON" })
      return [400, "refused: malformed JSON"] as const
    }
    if (path === "/hook") return yield* receiveHook(c, json.value)
    if (path === "/team") return yield* receiveTeamCommand(c, json.value)
    return [404, "unknown path"] as const
  })

const hookPath = /^\/hook\/([A-Za-z]{1,32})$/
const decodeHookName = Schema.decodeUnknownOption(HookName)
const decodeEnvelope = Schema.decodeUnknownOption(Envelope)

// The sender of an http hook, from its path and headers; a generation is a decimal number or nothing.
const httpHookSender = (path: string, headers: Headers) => {
  const hook = Option.flatMap(Option.fromNullable(hookPath.exec(path)?.[1]), decodeHookName)
  const generation = headers[hookHeaders.generation] ?? ""
  const envelope = /^\d{1,9}$/.test(generation)
    ? decodeEnvelope({ instance: headers[hookHeaders.instance], generation: Number(generation), token: headers[hookHeaders.token] })
    : Option.none()
  return Option.all({ hook, envelope })
}

/** Claude Code's http hooks on the loopback port: sender checked on the headers, then the body is the payload. */
const httpHooks = (c: Control): LoopbackHandler => ({
  admit: (path, headers) =>
    Effect.gen(function*() {
      const sender = httpHookSender(path, headers)
      if (Option.isNone(sender)) {
        yield* c.logRefusal("control.rejected", { path: path.slice(0, 64), reason: "invalid hook request" })
        return hookPath.test(path) ? [400, "refused: invalid hook request"] as const : [404, "unknown path"] as const
      }
      return Option.getOrUndefined(yield* authenticate(c, sender.value.envelope, `hook:${sender.value.hook}`))
    }),
  handle: (path, headers, body) =>
    Effect.gen(function*() {
      const sender = httpHookSender(path, headers)
      if (Option.isNone(sender)) return [400, "refused: invalid hook request"] as const
      // Larger than a request may be: the event still counts (a long tool output is a sign of life), without its payload.
      const payload = body === undefined
        ? Option.some({})
        : yield* Effect.try(() => JSON.parse(body) as unknown).pipe(Effect.option)
      if (Option.isNone(payload)) {
        yield* c.logRefusal("control.rejected", { path: path.slice(0, 64), reason: "malformed JSON" })
        return [400, "refused: malformed JSON"] as const
      }
      return yield* receiveHook(c, { ...sender.value.envelope, hook: sender.value.hook, payload: payload.value })
    })
})

const makeEvents = <E>(
  socketPath: string,
  listen: (control: Control) => Effect.Effect<string | undefined, E, Scope.Scope>
) =>
  Effect.gen(function*() {
    const registry = yield* Ref.make<ReadonlyMap<string, Registration>>(new Map())
    const teamHandler = yield* Ref.make<Option.Option<TeamHandler>>(Option.none())
    const control: Control = {
      runLog: yield* RunLog,
      registry,
      hooks: yield* Effect.acquireRelease(PubSub.unbounded<HookEvent>(), PubSub.shutdown),
      teamHandler,
      inFlight: yield* Ref.make<ReadonlyMap<string, number>>(new Map()),
      logRefusal: yield* makeRefusalLog
    }
    const hookUrl = yield* listen(control)

    const register = (instance: string) =>
      Effect.sync(() => randomBytes(24).toString("hex")).pipe(
        Effect.tap((token) =>
          Ref.update(registry, (m) =>
            new Map(m).set(instance, { digest: Buffer.from(tokenDigest(token), "hex"), generation: m.get(instance)?.generation ?? 0 })))
      )

    return Events.of({
      socketPath,
      hookUrl,
      register,
      restore: (instance, digest, generation) =>
        Ref.update(registry, (m) => new Map(m).set(instance, { digest: Buffer.from(digest.trim(), "hex"), generation })),
      setGeneration: (instance, generation) =>
        Ref.update(registry, (m) => {
          const reg = m.get(instance)
          return reg === undefined ? m : new Map(m).set(instance, { ...reg, generation })
        }),
      generation: (instance) => Effect.map(Ref.get(registry), (m) => m.get(instance)?.generation ?? 0),
      hooks: control.hooks,
      setTeamHandler: (handler) => Ref.set(teamHandler, Option.some(handler)),
      receive: answer(control)
    })
  })

/**
 * The control socket at socketPath and the loopback port for http hooks, serving the run's instances until the
 * scope closes.
 */
export const make = (
  socketPath: string,
  limits: ControlLimits = defaultLimits
): Effect.Effect<EventsShape, Error, RunLog | Scope.Scope> =>
  makeEvents(socketPath, (control) =>
    serve(socketPath, limits, answer(control), control.logRefusal).pipe(
      Effect.zipRight(serveLoopback(limits, httpHooks(control), control.logRefusal)),
      Effect.map((port) => `http://127.0.0.1:${port}`)
    ))

export const layer = (socketPath: string, limits?: ControlLimits) => Layer.scoped(Events, make(socketPath, limits))

/** No socket: requests reach the run only through `receive` (the in-memory run services). */
export const layerInMemory: Layer.Layer<Events, never, RunLog> = Layer.scoped(Events, makeEvents("(in memory)", () => Effect.succeed(undefined)))
export type { Answer }
