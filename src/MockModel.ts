// A scriptable local stand-in for the Anthropic Messages API, spoken the way the real `claude` CLI uses it,
// so end-to-end tests and the demo can drive real Claude Code instances offline with a pure "brain" function.
// This file is the server, its request records and per-key ledger; the brain's vocabulary is MockBrain, the
// wire format MockWire.
import { Effect } from "effect"
import type { Scope } from "effect"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import { type Brain, isRecord, type MockReply, type MockRequest } from "./MockBrain.js"
import {
  apiKeyOf,
  contentOf,
  flattenSystem,
  isSideRequest,
  type MockUsage,
  sideAnswer,
  sseFrames
} from "./MockWire.js"

/**
 * Subscription logins for the mock: OAuth access tokens that expire after `ttlMs`, and refresh tokens that are
 * single-use as the real server's are (a refresh rotates both; the old refresh token is dead from then on). An
 * expired or unknown OAuth access token is answered 401 "OAuth token has expired", as the API answers it.
 */
export interface MockOAuth {
  /** A fresh login for `account`: what `claude /login` leaves in .credentials.json. */
  readonly issue: (account: string) => { readonly accessToken: string; readonly refreshToken: string; readonly expiresAt: number }
  /** The account an access token belongs to; "expired" or undefined (not one of these tokens). */
  readonly check: (accessToken: string) => string | "expired" | undefined
  readonly refresh: (refreshToken: string) => { readonly accessToken: string; readonly refreshToken: string; readonly expiresIn: number } | undefined
  /** Refreshes served, and refresh tokens presented again after they were used (each a logged-out instance). */
  readonly stats: () => { readonly refreshes: number; readonly reused: number; readonly expiredRequests: number }
  /** Every token issued, to check that none shows in logs or state. */
  readonly issued: () => ReadonlyArray<string>
  readonly isOAuthToken: (token: string) => boolean
  readonly noteExpired: () => void
}

const OAUTH_ACCESS = "sk-ant-oat01-mock"
const OAUTH_REFRESH = "sk-ant-ort01-mock"

export const makeMockOAuth = (options: { readonly ttlMs: number; readonly now?: () => number }): MockOAuth => {
  const now = options.now ?? Date.now
  let n = 0
  const access = new Map<string, { readonly account: string; readonly expiresAt: number }>()
  const refresh = new Map<string, { readonly account: string; used: boolean }>()
  const issued: Array<string> = []
  const stats = { refreshes: 0, reused: 0, expiredRequests: 0 }
  const pair = (account: string) => {
    n++
    const random = Math.random().toString(36).slice(2, 12)
    const accessToken = `${OAUTH_ACCESS}-${n}-${random}-${"a".repeat(16)}`
    const refreshToken = `${OAUTH_REFRESH}-${n}-${random}-${"r".repeat(16)}`
    const expiresAt = now() + options.ttlMs
    access.set(accessToken, { account, expiresAt })
    refresh.set(refreshToken, { account, used: false })
    issued.push(accessToken, refreshToken)
    return { accessToken, refreshToken, expiresAt }
  }
  return {
    issue: pair,
    check: (token) => {
      const a = access.get(token)
      return a === undefined ? undefined : a.expiresAt <= now() ? "expired" : a.account
    },
    refresh: (token) => {
      const r = refresh.get(token)
      if (r === undefined) return undefined
      if (r.used) {
        stats.reused++
        return undefined
      }
      r.used = true
      stats.refreshes++
      const next = pair(r.account)
      return { accessToken: next.accessToken, refreshToken: next.refreshToken, expiresIn: options.ttlMs / 1000 }
    },
    stats: () => ({ ...stats }),
    issued: () => [...issued],
    isOAuthToken: (token) => token.startsWith(OAUTH_ACCESS),
    noteExpired: () => void stats.expiredRequests++
  }
}

export interface MockModelOptions {
  readonly brain: Brain
  /** Subscription logins (see MockOAuth); without it, OAuth tokens are keys like any other. */
  readonly oauth?: MockOAuth
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
  readonly reply: MockReply["_tag"] | "Side" | "CountTokens" | "Probe" | "Unknown" | "BadRequest" | "OAuth"
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

/** The server's state: what it served, to whom, and the brain answering now. */
interface Mock {
  readonly usage: MockUsage
  readonly names: Readonly<Record<string, string>>
  readonly latencyOf: (req: MockRequest) => number
  readonly records: Array<MockRecord>
  readonly ledger: Map<string, LedgerEntry>
  brain: Brain
  readonly nextId: (prefix: string) => string
  readonly oauth: MockOAuth | undefined
}

const makeMock = (options: MockModelOptions): Mock => {
  const latency = options.latencyMs
  let counter = 0
  return {
    usage: { ...defaultUsage, ...options.usage },
    names: options.keyNames ?? {},
    latencyOf: typeof latency === "function" ? latency : () => latency ?? 0,
    records: [],
    ledger: new Map(),
    brain: options.brain,
    oauth: options.oauth,
    nextId: (prefix) => `${prefix}_mock${String(++counter).padStart(6, "0")}`
  }
}

const account = (mock: Mock, key: string, side: boolean, error: boolean) => {
  const { usage } = mock
  const e = mock.ledger.get(key) ?? emptyEntry
  mock.ledger.set(key, {
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
  mock: Mock,
  res: Http.ServerResponse,
  status: number,
  body: unknown,
  headers: Readonly<Record<string, string>> = {}
) => {
  res.writeHead(status, { "content-type": "application/json", "request-id": mock.nextId("req"), ...headers })
  res.end(JSON.stringify(body))
}

// A brain that breaks answers like a failing API (500) instead of leaving the CLI waiting on a dead request.
const consult = (mock: Mock, req: MockRequest): MockReply => {
  try {
    return mock.brain(req)
  } catch (e) {
    return { _tag: "Error", status: 500, type: "api_error", message: `mock brain failed: ${String(e)}` }
  }
}

const apiError = (type: string, message: string) => ({ type: "error", error: { type, message } })

const answerMessages = (mock: Mock, req: Http.IncomingMessage, res: Http.ServerResponse, raw: string) => {
  const apiKey = apiKeyOf(req)
  const key = label(apiKey, mock.names)
  const path = (req.url ?? "/").split("?")[0] ?? "/"
  if (mock.oauth !== undefined && apiKey !== undefined && mock.oauth.isOAuthToken(apiKey) && typeof mock.oauth.check(apiKey) !== "string") {
    mock.oauth.noteExpired()
    mock.records.push({ at: Date.now(), method: "POST", path, key, model: undefined, sideRequest: false, reply: "Error" })
    return sendJson(mock, res, 401, apiError("authentication_error", "OAuth token has expired. Please obtain a new token or refresh your existing token."))
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(raw)
  } catch {
    parsed = undefined
  }
  if (!isRecord(parsed) || !Array.isArray(parsed.messages)) {
    mock.records.push({ at: Date.now(), method: "POST", path, key, model: undefined, sideRequest: false, reply: "BadRequest" })
    return sendJson(mock, res, 400, apiError("invalid_request_error", "messages: field required"))
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
  const delayMs = mock.latencyOf(mockRequest)
  if (delayMs > 0) setTimeout(() => answer(mock, res, path, key, body, mockRequest), delayMs)
  else answer(mock, res, path, key, body, mockRequest)
}

// The reply to one parsed Messages request, recorded and accounted when it is sent.
const answer = (
  mock: Mock,
  res: Http.ServerResponse,
  path: string,
  key: string,
  body: Record<string, unknown>,
  mockRequest: MockRequest
) => {
  const { model, stream } = mockRequest
  const { nextId, usage } = mock
  const reply: MockReply = mockRequest.sideRequest ? { _tag: "Text", text: sideAnswer(body) } : consult(mock, mockRequest)
  mock.records.push({
    at: Date.now(),
    method: "POST",
    path,
    key,
    model,
    sideRequest: mockRequest.sideRequest,
    reply: mockRequest.sideRequest ? "Side" : reply._tag
  })
  account(mock, key, mockRequest.sideRequest, reply._tag === "Error")

  if (reply._tag === "Error") {
    return sendJson(mock, res, reply.status, apiError(reply.type, reply.message), reply.headers)
  }
  const content = contentOf(reply, () => nextId("toolu"))
  const stopReason = reply._tag === "ToolUse" ? "tool_use" : "end_turn"
  const id = nextId("msg")
  if (!stream) {
    return sendJson(mock, res, 200, {
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

const handle = (mock: Mock, req: Http.IncomingMessage, res: Http.ServerResponse, raw: string) => {
  const method = req.method ?? "GET"
  const path = (req.url ?? "/").split("?")[0] ?? "/"
  const other = (reply: MockRecord["reply"]) =>
    mock.records.push({ at: Date.now(), method, path, key: label(apiKeyOf(req), mock.names), model: undefined, sideRequest: false, reply })
  if ((method === "HEAD" || method === "GET") && path === "/") {
    other("Probe")
    res.writeHead(200, { "content-type": "text/plain" })
    return res.end(method === "HEAD" ? undefined : "ok")
  }
  if (method === "POST" && path === "/v1/messages") return answerMessages(mock, req, res, raw)
  if (method === "POST" && path === "/v1/oauth/token" && mock.oauth !== undefined) {
    other("OAuth")
    let token: unknown
    try {
      token = (JSON.parse(raw) as { refresh_token?: unknown }).refresh_token
    } catch {
      token = undefined
    }
    const next = typeof token === "string" ? mock.oauth.refresh(token) : undefined
    return next === undefined
      ? sendJson(mock, res, 400, { error: "invalid_grant", error_description: "Refresh token not found or invalid" })
      : sendJson(mock, res, 200, { token_type: "Bearer", access_token: next.accessToken, refresh_token: next.refreshToken, expires_in: next.expiresIn })
  }
  if (method === "POST" && path === "/v1/messages/count_tokens") {
    other("CountTokens")
    return sendJson(mock, res, 200, { input_tokens: Math.max(1, Math.ceil(raw.length / 4)) })
  }
  // Anything else the CLI asks for is recorded, so tests can see new traffic after an upgrade.
  other("Unknown")
  return sendJson(mock, res, 404, apiError("not_found_error", `Not found: ${method} ${path}`))
}

const makeServer = (mock: Mock) =>
  Http.createServer((req, res) => {
    const parts: Array<Buffer> = []
    req.on("data", (c: Buffer) => parts.push(c))
    req.on("end", () => {
      const body = Buffer.concat(parts).toString("utf8")
      handle(mock, req, res, body)
    })
  })

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
    const mock = makeMock(options)
    const server = makeServer(mock)
    const port = yield* Effect.acquireRelease(listen(server), () => close(server))
    return {
      url: `http://127.0.0.1:${port}`,
      requests: Effect.sync((): ReadonlyArray<MockRecord> => [...mock.records]),
      ledger: Effect.sync((): Readonly<Record<string, LedgerEntry>> => Object.fromEntries(mock.ledger)),
      setBrain: (next: Brain) =>
        Effect.sync(() => {
          mock.brain = next
        })
    }
  })
