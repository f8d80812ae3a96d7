// What a mock-model "brain" sees and answers: one Messages request in the terms a test reasons about (key,
// system prompt, messages), the reply it chooses, helpers to read the request, and errors in the API's own shape.

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

interface Block {
  readonly type?: unknown
  readonly text?: unknown
  readonly content?: unknown
}

export const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null && !Array.isArray(u)

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
