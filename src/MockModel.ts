// A scriptable local stand-in for the Anthropic Messages API, spoken the way the real `claude` CLI uses it,
// so end-to-end tests and the demo can drive real Claude Code instances offline with a pure "brain" function.
import { Effect } from "effect"
import type { Scope } from "effect"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"

export interface MockRequest {
  /** x-api-key header, or the Bearer token of Authorization. */
  readonly apiKey: string | undefined
  readonly model: string
  /** The system prompt flattened to text. */
  readonly system: string
  /** The messages as received. */
  readonly messages: ReadonlyArray<unknown>
  readonly stream: boolean
  /** The CLI's small side requests (titles, summaries, probes): answered without consulting the brain. */
  readonly sideRequest: boolean
}

export type MockReply =
  | { readonly _tag: "Text"; readonly text: string }
  | {
    readonly _tag: "ToolUse"
    readonly text?: string
    readonly tools: ReadonlyArray<{ readonly name: string; readonly input: unknown }>
  }
  | {
    readonly _tag: "Error"
    readonly status: number
    readonly type: string
    readonly message: string
    readonly headers?: Readonly<Record<string, string>>
  }

export type Brain = (req: MockRequest) => MockReply

export interface MockUsage {
  readonly input_tokens: number
  readonly output_tokens: number
  readonly cache_creation_input_tokens: number
  readonly cache_read_input_tokens: number
}

export interface MockModelOptions {
  readonly brain: Brain
  /** Usage reported on every reply; missing fields take the small defaults. */
  readonly usage?: Partial<MockUsage>
  /** Display names for keys, so records and the ledger say "key-1" instead of "…abcd". */
  readonly keyNames?: Readonly<Record<string, string>>
  /**
   * Delay before each reply to a Messages request is sent, to keep an instance visibly busy "thinking":
   * a number for every request, or a function of the request (say, slow for one instance only).
   */
  readonly latencyMs?: number | ((req: MockRequest) => number)
}

/** One request as served. Keys appear only as a name or their last four characters. */
export interface MockRecord {
  readonly at: number
  readonly method: string
  readonly path: string
  readonly key: string
  readonly model: string | undefined
  readonly sideRequest: boolean
  /** The brain's reply tag, "Side" for a side request, or what the server answered on its own. */
  readonly reply: MockReply["_tag"] | "Side" | "CountTokens" | "Probe" | "Unknown" | "BadRequest"
}

export interface LedgerEntry extends MockUsage {
  readonly requests: number
  readonly sideRequests: number
  readonly errors: number
}

export interface MockModelHandle {
  /** http://127.0.0.1:PORT, for ANTHROPIC_BASE_URL. */
  readonly url: string
  readonly requests: Effect.Effect<ReadonlyArray<MockRecord>>
  /** Per key label: what was served and the usage reported for it. */
  readonly ledger: Effect.Effect<Readonly<Record<string, LedgerEntry>>>
  readonly setBrain: (brain: Brain) => Effect.Effect<void>
}

export const defaultUsage: MockUsage = {
  input_tokens: 100,
  output_tokens: 20,
  cache_creation_input_tokens: 10,
  cache_read_input_tokens: 50
}

// ---------------------------------------------------------------------------------------------
// Brain helpers

interface Block {
  readonly type?: unknown
  readonly text?: unknown
  readonly content?: unknown
}

const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null && !Array.isArray(u)

const blocksOf = (message: unknown): ReadonlyArray<Block> => {
  if (!isRecord(message)) return []
  const content = message.content
  if (typeof content === "string") return [{ type: "text", text: content }]
  return Array.isArray(content) ? content.filter(isRecord) : []
}

const userMessages = (req: MockRequest): ReadonlyArray<unknown> =>
  req.messages.filter((m) => isRecord(m) && m.role === "user")

// Text the CLI adds on the user's behalf (context reminders, environment, local command echoes) is not a prompt.
const systemReminder = /<system-reminder>[\s\S]*?<\/system-reminder>/g
const injectedPrefixes = ["# Environment", "Caveat:", "<command-", "<local-command-", "[Request interrupted"]

const authoredText = (block: Block): string | undefined => {
  if (block.type !== "text" || typeof block.text !== "string") return undefined
  const text = block.text.replace(systemReminder, "").trim()
  if (text === "" || injectedPrefixes.some((p) => text.startsWith(p))) return undefined
  return text
}

const toolResultText = (block: Block): string => {
  const content = block.content
  if (typeof content === "string") return content
  if (Array.isArray(content)) {
    return content
      .filter(isRecord)
      .map((c) => (typeof c.text === "string" ? c.text : ""))
      .join("\n")
  }
  return ""
}

/** All user-authored texts in order, without the CLI's injected context blocks and tool results. */
export const userTexts = (req: MockRequest): ReadonlyArray<string> =>
  userMessages(req).flatMap((m) => blocksOf(m).flatMap((b) => authoredText(b) ?? []))

/** The newest user-authored text. */
export const lastUserText = (req: MockRequest): string | undefined => userTexts(req).at(-1)

/** All tool_result contents as text, in order. */
export const toolResults = (req: MockRequest): ReadonlyArray<string> =>
  userMessages(req).flatMap((m) => blocksOf(m).filter((b) => b.type === "tool_result").map(toolResultText))

export const lastToolResult = (req: MockRequest): string | undefined => toolResults(req).at(-1)

/** The tool results carried by the newest user message: empty when it is a fresh prompt, not a tool round trip. */
export const pendingToolResults = (req: MockRequest): ReadonlyArray<string> => {
  const last = userMessages(req).at(-1)
  return last === undefined ? [] : blocksOf(last).filter((b) => b.type === "tool_result").map(toolResultText)
}

// ---------------------------------------------------------------------------------------------
// Error replies in the API's own shape

/** A 429 as the API sends it; `retry-after` over 60 s makes the CLI stop retrying at once. */
export const rateLimitError = (options: {
  readonly retryAfterSeconds: number
  readonly now?: number
  readonly message?: string
}): MockReply => ({
  _tag: "Error",
  status: 429,
  type: "rate_limit_error",
  message: options.message ??
    "This request would exceed your account's rate limit. Please try again later.",
  headers: {
    "retry-after": String(options.retryAfterSeconds),
    "anthropic-ratelimit-requests-reset": new Date((options.now ?? Date.now()) + options.retryAfterSeconds * 1000)
      .toISOString()
  }
})

export const authenticationError = (message = "invalid x-api-key"): MockReply => ({
  _tag: "Error",
  status: 401,
  type: "authentication_error",
  message
})

export const overloadedError = (message = "Overloaded"): MockReply => ({
  _tag: "Error",
  status: 529,
  type: "overloaded_error",
  message
})

// ---------------------------------------------------------------------------------------------
// Request decoding

const flattenSystem = (system: unknown): string => {
  if (typeof system === "string") return system
  if (Array.isArray(system)) {
    return system.filter(isRecord).map((b) => (typeof b.text === "string" ? b.text : "")).join("\n")
  }
  return ""
}

const apiKeyOf = (req: Http.IncomingMessage): string | undefined => {
  const header = req.headers["x-api-key"]
  if (typeof header === "string" && header !== "") return header
  const auth = req.headers.authorization
  if (typeof auth === "string" && auth.toLowerCase().startsWith("bearer ")) return auth.slice(7).trim()
  return undefined
}

// Side requests are tool-free helpers (session titles, summaries), a 1-token quota probe, or known helper prompts.
const sidePromptMarkers = [/Return JSON with a single "title" field/, /^Summarize this coding conversation/m]

const isSideRequest = (body: Record<string, unknown>, system: string): boolean => {
  const tools = body.tools
  if (!Array.isArray(tools) || tools.length === 0) return true
  if (typeof body.max_tokens === "number" && body.max_tokens <= 1) return true
  return sidePromptMarkers.some((re) => re.test(system))
}

// A structured-output side request gets a JSON object of its schema's shape; others a short harmless text.
const sideAnswer = (body: Record<string, unknown>): string => {
  const config = isRecord(body.output_config) ? body.output_config : undefined
  const format = config && isRecord(config.format) ? config.format : isRecord(body.output_format) ? body.output_format : undefined
  const schema = format && isRecord(format.schema) ? format.schema : undefined
  if (schema === undefined || !isRecord(schema.properties)) return "OK"
  const value = Object.fromEntries(
    Object.entries(schema.properties).map(([name, prop]) => {
      const type = isRecord(prop) ? prop.type : undefined
      return [name, type === "boolean" ? false : type === "number" || type === "integer" ? 0 : type === "array" ? [] : "Mock session"]
    })
  )
  return JSON.stringify(value)
}

// ---------------------------------------------------------------------------------------------
// Response encoding

type ContentBlock =
  | { readonly type: "text"; readonly text: string }
  | { readonly type: "tool_use"; readonly id: string; readonly name: string; readonly input: unknown }

const contentOf = (reply: Exclude<MockReply, { _tag: "Error" }>, ids: () => string): ReadonlyArray<ContentBlock> => {
  if (reply._tag === "Text") return [{ type: "text", text: reply.text }]
  const text: ReadonlyArray<ContentBlock> = reply.text === undefined || reply.text === "" ? [] : [{ type: "text", text: reply.text }]
  return [...text, ...reply.tools.map((t): ContentBlock => ({ type: "tool_use", id: ids(), name: t.name, input: t.input }))]
}

// Splits a string into a few pieces so the client's delta accumulation is exercised.
const chunks = (s: string, size: number): ReadonlyArray<string> => {
  const out: Array<string> = []
  for (let i = 0; i < s.length; i += size) out.push(s.slice(i, i + size))
  return out.length === 0 ? [""] : out
}

const sseFrames = (
  message: { readonly id: string; readonly model: string; readonly usage: MockUsage },
  content: ReadonlyArray<ContentBlock>,
  stopReason: string
): string => {
  const frame = (type: string, data: Record<string, unknown>) => `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`
  const frames: Array<string> = [
    frame("message_start", {
      message: {
        id: message.id,
        type: "message",
        role: "assistant",
        model: message.model,
        content: [],
        stop_reason: null,
        stop_sequence: null,
        usage: { ...message.usage, output_tokens: 1 }
      }
    }),
    frame("ping", {})
  ]
  content.forEach((block, index) => {
    if (block.type === "text") {
      frames.push(frame("content_block_start", { index, content_block: { type: "text", text: "" } }))
      for (const piece of chunks(block.text, 40)) {
        frames.push(frame("content_block_delta", { index, delta: { type: "text_delta", text: piece } }))
      }
    } else {
      frames.push(frame("content_block_start", {
        index,
        content_block: { type: "tool_use", id: block.id, name: block.name, input: {} }
      }))
      for (const piece of chunks(JSON.stringify(block.input ?? {}), 24)) {
        frames.push(frame("content_block_delta", { index, delta: { type: "input_json_delta", partial_json: piece } }))
      }
    }
    frames.push(frame("content_block_stop", { index }))
  })
  frames.push(
    frame("message_delta", { delta: { stop_reason: stopReason, stop_sequence: null }, usage: message.usage }),
    frame("message_stop", {})
  )
  return frames.join("")
}

const label = (key: string | undefined, names: Readonly<Record<string, string>>): string =>
  key === undefined ? "(none)" : names[key] ?? `…${key.slice(-4)}`

const emptyEntry: LedgerEntry = {
  requests: 0,
  sideRequests: 0,
  errors: 0,
  input_tokens: 0,
  output_tokens: 0,
  cache_creation_input_tokens: 0,
  cache_read_input_tokens: 0
}

// ---------------------------------------------------------------------------------------------
// The server

const makeServer = (options: MockModelOptions) => {
  const usage: MockUsage = { ...defaultUsage, ...options.usage }
  const names = options.keyNames ?? {}
  const latency = options.latencyMs
  const latencyOf = typeof latency === "function" ? latency : () => latency ?? 0
  const records: Array<MockRecord> = []
  const ledger = new Map<string, LedgerEntry>()
  let brain = options.brain
  let counter = 0
  const nextId = (prefix: string) => `${prefix}_mock${String(++counter).padStart(6, "0")}`

  const account = (key: string, side: boolean, error: boolean) => {
    const e = ledger.get(key) ?? emptyEntry
    ledger.set(key, {
      requests: e.requests + 1,
      sideRequests: e.sideRequests + (side ? 1 : 0),
      errors: e.errors + (error ? 1 : 0),
      input_tokens: e.input_tokens + (error ? 0 : usage.input_tokens),
      output_tokens: e.output_tokens + (error ? 0 : usage.output_tokens),
      cache_creation_input_tokens: e.cache_creation_input_tokens + (error ? 0 : usage.cache_creation_input_tokens),
      cache_read_input_tokens: e.cache_read_input_tokens + (error ? 0 : usage.cache_read_input_tokens)
    })
  }

  const sendJson = (
    res: Http.ServerResponse,
    status: number,
    body: unknown,
    headers: Readonly<Record<string, string>> = {}
  ) => {
    res.writeHead(status, { "content-type": "application/json", "request-id": nextId("req"), ...headers })
    res.end(JSON.stringify(body))
  }

  // A brain that breaks answers like a failing API (500) instead of leaving the CLI waiting on a dead request.
  const consult = (req: MockRequest): MockReply => {
    try {
      return brain(req)
    } catch (e) {
      return { _tag: "Error", status: 500, type: "api_error", message: `mock brain failed: ${String(e)}` }
    }
  }

  const apiError = (type: string, message: string) => ({ type: "error", error: { type, message } })

  const answerMessages = (req: Http.IncomingMessage, res: Http.ServerResponse, raw: string) => {
    const apiKey = apiKeyOf(req)
    const key = label(apiKey, names)
    const path = (req.url ?? "/").split("?")[0] ?? "/"
    let parsed: unknown
    try {
      parsed = JSON.parse(raw)
    } catch {
      parsed = undefined
    }
    if (!isRecord(parsed) || !Array.isArray(parsed.messages)) {
      records.push({ at: Date.now(), method: "POST", path, key, model: undefined, sideRequest: false, reply: "BadRequest" })
      return sendJson(res, 400, apiError("invalid_request_error", "messages: field required"))
    }
    const body = parsed
    const model = typeof body.model === "string" ? body.model : "claude-mock"
    const system = flattenSystem(body.system)
    const stream = body.stream === true
    const mockRequest: MockRequest = {
      apiKey,
      model,
      system,
      messages: parsed.messages as ReadonlyArray<unknown>,
      stream,
      sideRequest: isSideRequest(body, system)
    }
    const delayMs = latencyOf(mockRequest)
    if (delayMs > 0) setTimeout(() => answer(res, path, key, body, mockRequest), delayMs)
    else answer(res, path, key, body, mockRequest)
  }

  // The reply to one parsed Messages request, recorded and accounted when it is sent.
  const answer = (res: Http.ServerResponse, path: string, key: string, body: Record<string, unknown>, mockRequest: MockRequest) => {
    const { model, stream } = mockRequest
    const reply: MockReply = mockRequest.sideRequest ? { _tag: "Text", text: sideAnswer(body) } : consult(mockRequest)
    records.push({
      at: Date.now(),
      method: "POST",
      path,
      key,
      model,
      sideRequest: mockRequest.sideRequest,
      reply: mockRequest.sideRequest ? "Side" : reply._tag
    })
    account(key, mockRequest.sideRequest, reply._tag === "Error")

    if (reply._tag === "Error") {
      return sendJson(res, reply.status, apiError(reply.type, reply.message), reply.headers)
    }
    const content = contentOf(reply, () => nextId("toolu"))
    const stopReason = reply._tag === "ToolUse" ? "tool_use" : "end_turn"
    const id = nextId("msg")
    if (!stream) {
      return sendJson(res, 200, {
        id,
        type: "message",
        role: "assistant",
        model,
        content,
        stop_reason: stopReason,
        stop_sequence: null,
        usage
      })
    }
    res.writeHead(200, {
      "content-type": "text/event-stream",
      "cache-control": "no-cache",
      "request-id": nextId("req")
    })
    res.end(sseFrames({ id, model, usage }, content, stopReason))
  }

  const handle = (req: Http.IncomingMessage, res: Http.ServerResponse, raw: string) => {
    const method = req.method ?? "GET"
    const path = (req.url ?? "/").split("?")[0] ?? "/"
    const other = (reply: MockRecord["reply"]) =>
      records.push({ at: Date.now(), method, path, key: label(apiKeyOf(req), names), model: undefined, sideRequest: false, reply })
    if ((method === "HEAD" || method === "GET") && path === "/") {
      other("Probe")
      res.writeHead(200, { "content-type": "text/plain" })
      return res.end(method === "HEAD" ? undefined : "ok")
    }
    if (method === "POST" && path === "/v1/messages") return answerMessages(req, res, raw)
    if (method === "POST" && path === "/v1/messages/count_tokens") {
      other("CountTokens")
      return sendJson(res, 200, { input_tokens: Math.max(1, Math.ceil(raw.length / 4)) })
    }
    // Anything else the CLI asks for is recorded, so tests can see new traffic after an upgrade.
    other("Unknown")
    return sendJson(res, 404, apiError("not_found_error", `Not found: ${method} ${path}`))
  }

  const server = Http.createServer((req, res) => {
    const parts: Array<Buffer> = []
    req.on("data", (c: Buffer) => parts.push(c))
    req.on("end", () => {
      const body = Buffer.concat(parts).toString("utf8")
      handle(req, res, body)
    })
  })

  return {
    server,
    requests: Effect.sync((): ReadonlyArray<MockRecord> => [...records]),
    ledger: Effect.sync((): Readonly<Record<string, LedgerEntry>> => Object.fromEntries(ledger)),
    setBrain: (next: Brain) => Effect.sync(() => {
      brain = next
    })
  }
}

const listen = (server: Http.Server): Effect.Effect<number> =>
  Effect.async<number, Error>((resume) => {
    server.once("error", (e) => resume(Effect.fail(e)))
    server.listen(0, "127.0.0.1", () => resume(Effect.succeed((server.address() as AddressInfo).port)))
  }).pipe(Effect.orDie)

// The CLI keeps connections alive; without closing them `close` would wait for their idle timeout.
const close = (server: Http.Server): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    server.close(() => resume(Effect.void))
    server.closeAllConnections()
  })

/** Starts the mock on an ephemeral loopback port; it closes when the scope ends. */
export const startMockModel = (options: MockModelOptions): Effect.Effect<MockModelHandle, never, Scope.Scope> =>
  Effect.gen(function*() {
    const mock = makeServer(options)
    const port = yield* Effect.acquireRelease(listen(mock.server), () => close(mock.server))
    return {
      url: `http://127.0.0.1:${port}`,
      requests: mock.requests,
      ledger: mock.ledger,
      setBrain: mock.setBrain
    }
  })
