// Claude Code's JSONL transcripts: the usage of their assistant lines, each API response counted once, and reading
// only the complete lines appended to a transcript since a byte offset.
import type * as FileSystem from "@effect/platform/FileSystem"
import type * as Path from "@effect/platform/Path"
import { Effect, Option, Schema } from "effect"
import { addTokens, familyOf, priceOf, type ResponseUsage, type TokenCounts, zeroTokens } from "./Prices.js"

/** One assistant line of a transcript: a content block of an API response and that response's usage. */
export interface TranscriptEntry {
  readonly messageId: string | undefined
  readonly requestId: string | undefined
  readonly model: string
  readonly usage: ResponseUsage
}

// Counts are lenient (missing or null = 0) so one odd field does not hide a whole response.
const Count = Schema.optional(Schema.NullOr(Schema.Number))

const AssistantLine = Schema.Struct({
  type: Schema.Literal("assistant"),
  requestId: Schema.optional(Schema.NullOr(Schema.String)),
  message: Schema.Struct({
    id: Schema.optional(Schema.NullOr(Schema.String)),
    model: Schema.optional(Schema.NullOr(Schema.String)),
    usage: Schema.Struct({
      input_tokens: Count,
      output_tokens: Count,
      cache_creation_input_tokens: Count,
      cache_read_input_tokens: Count,
      cache_creation: Schema.optional(Schema.NullOr(Schema.Struct({ ephemeral_1h_input_tokens: Count })))
    })
  })
})

const decodeAssistantLine = Schema.decodeUnknownOption(Schema.parseJson(AssistantLine))

const count = (n: number | null | undefined): number => (typeof n === "number" && Number.isFinite(n) && n > 0 ? n : 0)

// Claude Code writes "<synthetic>" assistant lines (API error texts, interruptions) that no API call produced.
const syntheticModel = "<synthetic>"

/**
 * The assistant entries of transcript text. Malformed lines are skipped, and so is text after the last newline:
 * a line still being written.
 */
export const parseTranscriptLines = (text: string): ReadonlyArray<TranscriptEntry> => {
  const end = text.lastIndexOf("\n")
  if (end < 0) return []
  const entries: Array<TranscriptEntry> = []
  for (const line of text.slice(0, end).split("\n")) {
    // Most lines (prompts, attachments, request shapes) are large and carry no usage: skip them unparsed.
    if (!line.includes("\"usage\"") || !line.includes("\"assistant\"")) continue
    const decoded = decodeAssistantLine(line)
    if (Option.isNone(decoded)) continue
    const { message, requestId } = decoded.value
    const model = message.model ?? "unknown"
    if (model === syntheticModel) continue
    const usage = message.usage
    const cacheWrite = count(usage.cache_creation_input_tokens)
    entries.push({
      messageId: message.id ?? undefined,
      requestId: requestId ?? undefined,
      model,
      usage: {
        input: count(usage.input_tokens),
        output: count(usage.output_tokens),
        cacheWrite,
        cacheRead: count(usage.cache_read_input_tokens),
        cacheWrite1h: Math.min(count(usage.cache_creation?.ephemeral_1h_input_tokens), cacheWrite)
      }
    })
  }
  return entries
}

export interface CostTotals {
  readonly tokens: TokenCounts
  readonly usd: number
  /** Distinct API responses counted. */
  readonly responses: number
  /** Models of the counted responses, in order of first appearance. */
  readonly models: ReadonlyArray<string>
}

export interface UsageSummary extends CostTotals {
  /** Those of `models` that have no price row. */
  readonly unknownModels: ReadonlyArray<string>
}

const responseKey = (entry: TranscriptEntry): string | undefined =>
  entry.messageId === undefined && entry.requestId === undefined
    ? undefined
    : `${entry.messageId ?? ""}\u0000${entry.requestId ?? ""}`

/**
 * Sums usage over entries, counting each response (message.id, requestId) once: one response spans one line per
 * content block, each with the same usage. `seen` is the caller's memory of counted responses and is updated,
 * so the same response read again later (another poll, a copied history) is not counted twice.
 */
export const usageOf = (entries: ReadonlyArray<TranscriptEntry>, seen: Set<string>): UsageSummary => {
  let tokens = zeroTokens
  let usd = 0
  let responses = 0
  const models: Array<string> = []
  for (const entry of entries) {
    const key = responseKey(entry)
    if (key !== undefined) {
      if (seen.has(key)) continue
      seen.add(key)
    }
    tokens = addTokens(tokens, entry.usage)
    usd += priceOf(entry.model, entry.usage)
    responses += 1
    if (!models.includes(entry.model)) models.push(entry.model)
  }
  return { tokens, usd, responses, models, unknownModels: models.filter((m) => familyOf(m) === undefined) }
}

/** Paths of all transcripts under <configDir>/projects; none yet is the normal start. */
export const transcriptFiles = (fs: FileSystem.FileSystem, path: Path.Path, configDir: string) => {
  const projects = path.join(configDir, "projects")
  return fs.readDirectory(projects, { recursive: true }).pipe(
    Effect.map((names) => names.filter((n) => n.endsWith(".jsonl")).sort().map((n) => path.join(projects, n))),
    Effect.catchAll((e) =>
      e._tag === "SystemError" && e.reason === "NotFound"
        ? Effect.succeed([])
        : Effect.logWarning(`cost tracking: cannot list ${projects}: ${e.message}`).pipe(Effect.as([]))
    )
  )
}

const newline = 0x0a
const decoder = new TextDecoder()

const concatBytes = (a: Uint8Array, b: Uint8Array): Uint8Array => {
  if (a.length === 0) return b
  const out = new Uint8Array(a.length + b.length)
  out.set(a, 0)
  out.set(b, a.length)
  return out
}

/**
 * The entries of the complete lines appended to one file since `from`, and the offset just past the last of them.
 * Reads `chunkBytes` at a time; a line longer than a chunk is carried over to the next one.
 */
export const readAppended = (fs: FileSystem.FileSystem, file: string, from: number, chunkBytes: number) =>
  Effect.scoped(Effect.gen(function*() {
    // Only regular files: opening a FIFO left among the transcripts would block until a writer came.
    if ((yield* fs.stat(file)).type !== "File") return { entries: [] as Array<TranscriptEntry>, offset: from }
    const handle = yield* fs.open(file, { flag: "r" })
    const size = Number((yield* handle.stat).size)
    // A file that shrank was replaced or rewritten: read it again; the response memory prevents double counts.
    const start = size < from ? 0 : from
    yield* handle.seek(start, "start")
    const entries: Array<TranscriptEntry> = []
    let offset = start
    let position = start
    let carry: Uint8Array = new Uint8Array(0)
    while (position < size) {
      const buffer = new Uint8Array(Math.min(chunkBytes, size - position))
      const read = Number(yield* handle.read(buffer))
      if (read === 0) break
      position += read
      const data = concatBytes(carry, buffer.subarray(0, read))
      const last = data.lastIndexOf(newline)
      if (last < 0) {
        carry = data
        continue
      }
      entries.push(...parseTranscriptLines(decoder.decode(data.subarray(0, last + 1))))
      offset += last + 1
      carry = data.slice(last + 1)
    }
    return { entries, offset }
  }))
