// The control socket's HTTP server and its limits: what anyone who can reach the socket may send, and how
// refusals are logged without letting them fill combined.log. What a request means is Events' business.
import { Clock, Effect, Ref, Runtime } from "effect"
import type { Scope } from "effect"
import { chmodSync, rmSync } from "node:fs"
import * as http from "node:http"
import { RunLog } from "./RunLog.js"
import { neutralise, REPLY_MAX } from "./Untrusted.js"

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

export const defaultLimits: ControlLimits = {
  maxBodyBytes: 256 * 1024,
  maxConnections: 128,
  headersTimeoutMs: 5_000,
  requestTimeoutMs: 10_000
}

/** An answer to a request: HTTP status and the text the calling instance sees. */
export type Answer = readonly [number, string]

export type LogRefusal = (event: string, fields: Readonly<Record<string, unknown>>) => Effect.Effect<void>

// Refusals anyone can cause (no valid token needed) must not fill combined.log: at most this many lines per
// window; the number left out goes with the next line written.
const REFUSAL_LOG_BURST = 20
const REFUSAL_LOG_WINDOW_MS = 10_000

interface RefusalWindow {
  readonly windowStart: number
  readonly written: number
  readonly suppressed: number
}

/** Logs a refusal unless this window's burst is spent; then counts it for the next line written. */
export const makeRefusalLog: Effect.Effect<LogRefusal, never, RunLog> = Effect.gen(function*() {
  const runLog = yield* RunLog
  const refusals = yield* Ref.make<RefusalWindow>({ windowStart: 0, written: 0, suppressed: 0 })
  return (event, fields) =>
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
})

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

const createServer = (
  limits: ControlLimits,
  handle: (path: string, body: string) => Effect.Effect<Answer>,
  logRefusal: LogRefusal,
  runtime: Runtime.Runtime<never>
) => {
  const tooLarge = `refused: the request is larger than ${Math.round(limits.maxBodyBytes / 1024)} KiB; send less text`
  const server = http.createServer(serverOptions(limits), (req, res) => {
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
  return server
}

/** A request's headers as the loopback listener passes them on: lower-case names, one value each. */
export type Headers = Readonly<Record<string, string | undefined>>

/**
 * The loopback listener's two steps: `admit` sees a request's path and headers before a byte of its body is read
 * (a refusal here costs the sender's body nothing); `handle` gets the body, or undefined when it was larger than
 * the limit: then it was drained unread, so an admitted sender's oversize event still counts, as an event alone.
 */
export interface LoopbackHandler {
  readonly admit: (path: string, headers: Headers) => Effect.Effect<Answer | undefined>
  readonly handle: (path: string, headers: Headers, body: string | undefined) => Effect.Effect<Answer>
}

const headerValues = (req: http.IncomingMessage): Headers =>
  Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, Array.isArray(v) ? v[0] : v]))

// Drains a body without keeping it: resolves with the body, or undefined once it passes the limit.
const readBodyOrDrain = (req: http.IncomingMessage, limit: number) =>
  new Promise<string | undefined>((resolve, reject) => {
    let size = 0
    const chunks: Array<Buffer> = []
    req.on("data", (c: Buffer) => {
      size += c.length
      if (size > limit) chunks.length = 0
      else chunks.push(c)
    })
    req.on("end", () => resolve(size > limit ? undefined : Buffer.concat(chunks).toString("utf8")))
    req.on("error", reject)
  })

const serverOptions = (limits: ControlLimits): http.ServerOptions => ({
  // Node checks the header and request timeouts on this interval; its default (30 s) would let a slow sender
  // hold its connection that much longer.
  connectionsCheckingInterval: Math.min(1000, limits.headersTimeoutMs),
  headersTimeout: limits.headersTimeoutMs,
  requestTimeout: limits.requestTimeoutMs,
  maxHeaderSize: 8 * 1024
})

/**
 * Serves `handler` on 127.0.0.1, an ephemeral port, for as long as the scope lives; yields the port. Claude Code's
 * http hooks post here: the answers carry a status and no body (a 2xx with an empty body is a hook's success).
 * Any local user can reach a loopback port, so the same limits hold as on the socket, and a request that a web
 * page could send (it carries an Origin) is refused.
 */
export const serveLoopback = (
  limits: ControlLimits,
  handler: LoopbackHandler,
  logRefusal: LogRefusal
): Effect.Effect<number, Error, Scope.Scope> =>
  Effect.gen(function*() {
    const runtime = yield* Effect.runtime<never>()
    const run = <A>(effect: Effect.Effect<A>) => Runtime.runPromise(runtime)(effect)
    const server = http.createServer(serverOptions(limits), (req, res) => {
      const respond = (status: number) => {
        if (res.headersSent || res.destroyed) return
        res.writeHead(status, { "content-length": "0", ...(status >= 300 ? { connection: "close" } : {}) })
        res.end()
      }
      const path = (req.url ?? "/").slice(0, 256)
      const headers = headerValues(req)
      if (req.method !== "POST") return respond(405)
      if (headers.origin !== undefined) {
        Runtime.runFork(runtime)(logRefusal("control.rejected", { path: path.slice(0, 64), reason: "request from a web page" }))
        return respond(403)
      }
      run(handler.admit(path, headers)).then(
        (refusal) => {
          if (refusal !== undefined) return respond(refusal[0])
          return readBodyOrDrain(req, limits.maxBodyBytes).then(
            (body) => run(handler.handle(path, headers, body)).then(([status]) => respond(status)),
            () => req.destroy()
          )
        },
        () => respond(500)
      ).catch(() => respond(500))
    })
    server.maxConnections = limits.maxConnections
    server.keepAliveTimeout = 1000
    server.on("drop", () => Runtime.runFork(runtime)(logRefusal("control.dropped", { reason: `more than ${limits.maxConnections} connections`, port: "loopback" })))
    return yield* Effect.acquireRelease(
      Effect.async<number, Error>((resume) => {
        server.once("error", (e) => resume(Effect.fail(new Error(`control port on 127.0.0.1: ${e.message}`))))
        server.listen(0, "127.0.0.1", () => {
          const address = server.address()
          resume(typeof address === "object" && address !== null ? Effect.succeed(address.port) : Effect.fail(new Error("control port: no address")))
        })
      }),
      () =>
        Effect.async<void>((resume) => {
          server.close(() => resume(Effect.void))
          server.closeAllConnections()
        })
    )
  })

/** Serves `handle` on a 0600 unix socket for as long as the scope lives; the socket file is removed after. */
export const serve = (
  socketPath: string,
  limits: ControlLimits,
  handle: (path: string, body: string) => Effect.Effect<Answer>,
  logRefusal: LogRefusal
): Effect.Effect<void, Error, Scope.Scope> =>
  Effect.gen(function*() {
    const server = createServer(limits, handle, logRefusal, yield* Effect.runtime<never>())
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
  })
