// The Messages API's wire format as the real `claude` CLI speaks it: reading a request (key, system prompt, whether
// it is a side request) and framing a reply as one JSON message or a stream of server-sent events.
import type * as Http from "node:http"
import { isRecord, type MockReply } from "./MockBrain.js"

export interface MockUsage {
  readonly input_tokens: number
  readonly output_tokens: number
  readonly cache_creation_input_tokens: number
  readonly cache_read_input_tokens: number
}

export const flattenSystem = (system: unknown): string => {
  if (typeof system === "string") return system
  if (Array.isArray(system)) {
    return system.filter(isRecord).map((b) => (typeof b.text === "string" ? b.text : "")).join("\n")
  }
  return ""
}

export const apiKeyOf = (req: Http.IncomingMessage): string | undefined => {
  const header = req.headers["x-api-key"]
  if (typeof header === "string" && header !== "") return header
  const auth = req.headers.authorization
  if (typeof auth === "string" && auth.toLowerCase().startsWith("bearer ")) return auth.slice(7).trim()
  return undefined
}

// Side requests are tool-free helpers (session titles, summaries), a 1-token quota probe, or known helper prompts.
const sidePromptMarkers = [/Return JSON with a single "title" field/, /^Summarize this coding conversation/m]

export const isSideRequest = (body: Record<string, unknown>, system: string): boolean => {
  const tools = body.tools
  if (!Array.isArray(tools) || tools.length === 0) return true
  if (typeof body.max_tokens === "number" && body.max_tokens <= 1) return true
  return sidePromptMarkers.some((re) => re.test(system))
}

// A structured-output side request gets a JSON object of its schema's shape; others a short harmless text.
export const sideAnswer = (body: Record<string, unknown>): string => {
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

export type ContentBlock =
  | { readonly type: "text"; readonly text: string }
  | { readonly type: "tool_use"; readonly id: string; readonly name: string; readonly input: unknown }

export const contentOf = (reply: Exclude<MockReply, { _tag: "Error" }>, ids: () => string): ReadonlyArray<ContentBlock> => {
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

export const sseFrames = (
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
