// The mock Messages API: wire format (SSE and JSON), errors with headers, the ledger, and the brain helpers.
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import {
  type Brain,
  lastToolResult,
  lastUserText,
  type MockRequest,
  pendingToolResults,
  rateLimitError,
  toolResults,
  userTexts
} from "../src/MockBrain.js"
import { startMockModel } from "../src/MockModel.js"

const KEY = "sk-ant-test-aaaaaaaaaaaaaaaaaaaaaaaaaaaa1234"
const OTHER = "sk-ant-test-bbbbbbbbbbbbbbbbbbbbbbbbbbbb9876"

const tools = [{ name: "Bash", description: "run", input_schema: { type: "object" } }]

const post = (url: string, body: unknown, headers: Record<string, string> = { "x-api-key": KEY }) =>
  Effect.promise(() =>
    fetch(`${url}/v1/messages?beta=true`, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: JSON.stringify(body)
    })
  )

interface SseEvent {
  readonly event: string
  readonly data: {
    readonly type: string
    readonly index?: number
    readonly message?: { readonly model: string; readonly usage: Record<string, number> }
    readonly content_block?: Record<string, unknown>
    readonly delta?: { readonly type?: string; readonly text?: string; readonly partial_json?: string; readonly stop_reason?: string }
    readonly usage?: Record<string, number>
  }
}

const parseSse = (text: string): ReadonlyArray<SseEvent> =>
  text.split("\n\n").filter((f) => f.trim() !== "").map((frame) => {
    const lines = frame.split("\n")
    const event = lines.find((l) => l.startsWith("event: "))?.slice(7) ?? ""
    const data = JSON.parse(lines.find((l) => l.startsWith("data: "))?.slice(6) ?? "{}")
    return { event, data }
  })

const request = (messages: ReadonlyArray<unknown>): MockRequest => ({
  apiKey: KEY,
  model: "claude-test",
  system: "",
  messages,
  stream: true,
  sideRequest: false
})

// Shaped like what claude 2.1.x sends in interactive mode: context reminders before the prompt, an
// "# Environment" block in a system-role message, then tool round trips.
const conversation: ReadonlyArray<unknown> = [
  {
    role: "user",
    content: [
      { type: "text", text: "<system-reminder>\n# gitStatus\nCurrent branch: main\n</system-reminder>" },
      { type: "text", text: "Create hello.txt and commit it" }
    ]
  },
  { role: "system", content: [{ type: "text", text: "# Environment\nYou have been invoked in the following environment" }] },
  {
    role: "assistant",
    content: [{ type: "tool_use", id: "toolu_1", name: "Bash", input: { command: "echo hi > hello.txt" } }]
  },
  {
    role: "user",
    content: [{ type: "tool_result", tool_use_id: "toolu_1", content: "first result", is_error: false }]
  },
  { role: "assistant", content: [{ type: "tool_use", id: "toolu_2", name: "Bash", input: { command: "git commit" } }] },
  {
    role: "user",
    content: [
      { type: "tool_result", tool_use_id: "toolu_2", content: [{ type: "text", text: "[main abc123] add hello" }] },
      { type: "text", text: "<system-reminder>a todo list reminder</system-reminder>" }
    ]
  }
]

describe("brain helpers", () => {
  it("skip injected context and tool results when reading user texts", () => {
    const req = request(conversation)
    expect(userTexts(req)).toEqual(["Create hello.txt and commit it"])
    expect(lastUserText(req)).toBe("Create hello.txt and commit it")
    expect(toolResults(req)).toEqual(["first result", "[main abc123] add hello"])
    expect(lastToolResult(req)).toBe("[main abc123] add hello")
    expect(pendingToolResults(req)).toEqual(["[main abc123] add hello"])
  })

  it("see a new prompt after tool round trips, and the first user message when it is a plain string", () => {
    const req = request([
      { role: "user", content: "# Environment\nWorking directory: /x" },
      ...conversation,
      { role: "assistant", content: [{ type: "text", text: "done" }] },
      { role: "user", content: "now push it" }
    ])
    expect(userTexts(req)).toEqual(["Create hello.txt and commit it", "now push it"])
    expect(lastUserText(req)).toBe("now push it")
    expect(pendingToolResults(req)).toEqual([])
    expect(lastToolResult(request([]))).toBeUndefined()
  })
})

describe("startMockModel", () => {
  it.scoped("streams text with usage and records the request under the key's last 4 characters", () =>
    Effect.gen(function*() {
      const seen: Array<MockRequest> = []
      const brain: Brain = (req) => {
        seen.push(req)
        return { _tag: "Text", text: `you said: ${lastUserText(req)}` }
      }
      const mock = yield* startMockModel({ brain, usage: { input_tokens: 7, output_tokens: 3 } })
      expect(mock.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)

      const res = yield* post(mock.url, {
        model: "claude-opus-test",
        stream: true,
        max_tokens: 1000,
        tools,
        system: [{ type: "text", text: "You are Claude Code" }],
        messages: [{ role: "user", content: [{ type: "text", text: "hello there" }] }]
      })
      expect(res.status).toBe(200)
      expect(res.headers.get("content-type")).toBe("text/event-stream")
      expect(res.headers.get("request-id")).toMatch(/^req_/)
      const events = parseSse(yield* Effect.promise(() => res.text()))
      expect(events.map((e) => e.event)).toEqual([
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop"
      ])
      for (const e of events) expect(e.data.type).toBe(e.event)
      const start = events[0]!.data
      expect(start.message?.model).toBe("claude-opus-test")
      expect(start.message?.usage.input_tokens).toBe(7)
      const text = events.filter((e) => e.event === "content_block_delta")
        .map((e) => e.data.delta?.text).join("")
      expect(text).toBe("you said: hello there")
      const delta = events.find((e) => e.event === "message_delta")!.data
      expect(delta.delta?.stop_reason).toBe("end_turn")
      expect(delta.usage).toEqual({
        input_tokens: 7,
        output_tokens: 3,
        cache_creation_input_tokens: 10,
        cache_read_input_tokens: 50
      })

      expect(seen).toHaveLength(1)
      expect(seen[0]!.system).toBe("You are Claude Code")
      expect(seen[0]!.apiKey).toBe(KEY)
      const records = yield* mock.requests
      expect(records).toMatchObject([{ method: "POST", path: "/v1/messages", key: "…1234", reply: "Text", sideRequest: false }])
      expect(JSON.stringify(records)).not.toContain(KEY)
    }))

  it.scoped("streams tool_use input as input_json_delta pieces that join to the input", () =>
    Effect.gen(function*() {
      const input = { command: "echo 'a fairly long command line' > file.txt && git add file.txt", description: "write" }
      const mock = yield* startMockModel({
        brain: () => ({ _tag: "ToolUse", text: "Let me do that.", tools: [{ name: "Bash", input }] })
      })
      const res = yield* post(mock.url, { model: "m", stream: true, tools, messages: [{ role: "user", content: "go" }] })
      const events = parseSse(yield* Effect.promise(() => res.text()))
      const starts = events.filter((e) => e.event === "content_block_start").map((e) => e.data.content_block)
      expect(starts).toMatchObject([{ type: "text" }, { type: "tool_use", name: "Bash", input: {} }])
      expect((starts[1] as { id: string }).id).toMatch(/^toolu_/)
      const pieces = events.filter((e) => e.event === "content_block_delta" && e.data.index === 1)
        .map((e) => e.data.delta ?? {})
      expect(pieces.length).toBeGreaterThan(1)
      expect(pieces.every((p) => p.type === "input_json_delta")).toBe(true)
      expect(JSON.parse(pieces.map((p) => p.partial_json).join(""))).toEqual(input)
      expect(events.find((e) => e.event === "message_delta")!.data.delta?.stop_reason).toBe("tool_use")
    }))

  it.scoped("answers non-streamed requests as one JSON message, and side requests without the brain", () =>
    Effect.gen(function*() {
      let brainCalls = 0
      const mock = yield* startMockModel({
        brain: () => {
          brainCalls++
          return { _tag: "ToolUse", tools: [{ name: "Read", input: { file_path: "/tmp/x" } }] }
        }
      })
      const res = yield* post(mock.url, { model: "m", stream: false, tools, messages: [{ role: "user", content: "go" }] })
      const body = (yield* Effect.promise(() => res.json())) as Record<string, unknown>
      expect(body).toMatchObject({
        type: "message",
        role: "assistant",
        stop_reason: "tool_use",
        content: [{ type: "tool_use", name: "Read", input: { file_path: "/tmp/x" } }],
        usage: { input_tokens: 100, output_tokens: 20 }
      })

      // A session-title helper: no tools, structured output.
      const side = yield* post(mock.url, {
        model: "m",
        max_tokens: 512,
        system: [{ type: "text", text: "Return JSON with a single \"title\" field." }],
        messages: [{ role: "user", content: "<session>fix the bug</session>" }],
        output_config: {
          format: { type: "json_schema", schema: { type: "object", properties: { title: { type: "string" } } } }
        }
      })
      const sideBody = (yield* Effect.promise(() => side.json())) as { content: Array<{ text: string }> }
      expect(JSON.parse(sideBody.content[0]!.text)).toEqual({ title: "Mock session" })
      expect(brainCalls).toBe(1)
      expect((yield* mock.requests).map((r) => [r.reply, r.sideRequest])).toEqual([["ToolUse", false], ["Side", true]])
    }))

  it.scoped("returns errors in the API's shape with their headers, and answers probes and count_tokens", () =>
    Effect.gen(function*() {
      const mock = yield* startMockModel({
        brain: () => rateLimitError({ retryAfterSeconds: 120, now: Date.UTC(2026, 0, 1, 12, 0, 0) })
      })
      const res = yield* post(mock.url, { model: "m", stream: true, tools, messages: [{ role: "user", content: "go" }] })
      expect(res.status).toBe(429)
      expect(res.headers.get("retry-after")).toBe("120")
      expect(res.headers.get("anthropic-ratelimit-requests-reset")).toBe("2026-01-01T12:02:00.000Z")
      expect(yield* Effect.promise(() => res.json())).toEqual({
        type: "error",
        error: {
          type: "rate_limit_error",
          message: "This request would exceed your account's rate limit. Please try again later."
        }
      })

      yield* mock.setBrain(() => ({ _tag: "Error", status: 401, type: "authentication_error", message: "invalid x-api-key" }))
      const denied = yield* post(mock.url, { model: "m", tools, messages: [] }, { authorization: `Bearer ${OTHER}` })
      expect(denied.status).toBe(401)
      expect(yield* Effect.promise(() => denied.json())).toMatchObject({ error: { type: "authentication_error" } })

      const head = yield* Effect.promise(() => fetch(`${mock.url}/`, { method: "HEAD" }))
      expect(head.status).toBe(200)
      const count = yield* Effect.promise(() =>
        fetch(`${mock.url}/v1/messages/count_tokens?beta=true`, { method: "POST", body: JSON.stringify({ messages: [] }) })
      )
      expect(yield* Effect.promise(() => count.json())).toMatchObject({ input_tokens: expect.any(Number) })
      yield* mock.setBrain(() => {
        throw new Error("brain bug")
      })
      const broken = yield* post(mock.url, { model: "m", tools, messages: [] })
      expect(broken.status).toBe(500)
      expect(yield* Effect.promise(() => broken.json())).toMatchObject({ error: { type: "api_error" } })
      const unknown = yield* Effect.promise(() => fetch(`${mock.url}/api/something`))
      expect(unknown.status).toBe(404)
      expect((yield* mock.requests).map((r) => `${r.reply} ${r.key} ${r.path}`)).toEqual([
        "Error …1234 /v1/messages",
        "Error …9876 /v1/messages",
        "Probe (none) /",
        "CountTokens (none) /v1/messages/count_tokens",
        "Error …1234 /v1/messages",
        "Unknown (none) /api/something"
      ])
    }))

  it.scoped("keeps a ledger of requests and usage per key, by name where one is given", () =>
    Effect.gen(function*() {
      const mock = yield* startMockModel({
        brain: (req) => (lastUserText(req) === "fail" ? rateLimitError({ retryAfterSeconds: 5 }) : { _tag: "Text", text: "ok" }),
        usage: { input_tokens: 11, output_tokens: 2, cache_creation_input_tokens: 3, cache_read_input_tokens: 5 },
        keyNames: { [KEY]: "key-1" }
      })
      const ask = (text: string, key: string) =>
        post(mock.url, { model: "m", stream: true, tools, messages: [{ role: "user", content: text }] }, { "x-api-key": key })
          .pipe(Effect.flatMap((r) => Effect.promise(() => r.text())))
      yield* ask("a", KEY)
      yield* ask("b", KEY)
      yield* ask("fail", KEY)
      yield* ask("c", OTHER)
      expect(yield* mock.ledger).toEqual({
        "key-1": {
          requests: 3,
          sideRequests: 0,
          errors: 1,
          input_tokens: 22,
          output_tokens: 4,
          cache_creation_input_tokens: 6,
          cache_read_input_tokens: 10
        },
        "…9876": {
          requests: 1,
          sideRequests: 0,
          errors: 0,
          input_tokens: 11,
          output_tokens: 2,
          cache_creation_input_tokens: 3,
          cache_read_input_tokens: 5
        }
      })
    }))

  it.scopedLive("delays replies by the configured latency", () =>
    Effect.gen(function*() {
      const mock = yield* startMockModel({ brain: () => ({ _tag: "Text", text: "slow" }), latencyMs: 300 })
      const started = Date.now()
      const res = yield* post(mock.url, { model: "m", stream: false, tools, messages: [{ role: "user", content: "go" }] })
      yield* Effect.promise(() => res.json())
      expect(Date.now() - started).toBeGreaterThanOrEqual(290)
    }))

  it.effect("closes the server when its scope ends", () =>
    Effect.gen(function*() {
      const url = yield* Effect.scoped(startMockModel({ brain: () => ({ _tag: "Text", text: "x" }) }).pipe(Effect.map((m) => m.url)))
      const result = yield* Effect.tryPromise(() => fetch(`${url}/`)).pipe(Effect.either)
      expect(result._tag).toBe("Left")
    }))
})
