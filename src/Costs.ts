// Token usage and estimated dollars per instance, role, credential and run, read incrementally from Claude Code's
// JSONL transcripts and priced with one table of Anthropic list prices; plus the end-of-run table and budget checks.
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import { Effect, Option, Schema, type Scope } from "effect"

// ---------------------------------------------------------------------------------------------
// Prices

/** USD per million tokens. */
export interface Rates {
  readonly input: number
  readonly output: number
  /** Cache write with the default 5-minute TTL. */
  readonly cacheWrite: number
  /** Cache write with the 1-hour TTL (reported by the API as cache_creation.ephemeral_1h_input_tokens). */
  readonly cacheWrite1h: number
  readonly cacheRead: number
}

export interface ModelPrice extends Rates {
  readonly label: string
  /** Canonical model versions priced by this row: "<family>-<major>[-<minor>]", e.g. "opus-4-5", "sonnet-4". */
  readonly versions: ReadonlyArray<string>
  /** Rates for every token of a request whose prompt (input + cache read + cache write) is above the threshold. */
  readonly longPrompt?: Rates & { readonly abovePromptTokens: number }
}

/**
 * Anthropic API list prices, USD per million tokens, checked 2026-11-25 against
 * https://platform.claude.com/docs/en/about-claude/pricing and the per-model pages (Opus 5.5, Sonnet 5/5.5,
 * Fable 5.1/5.2), and against the price catalog baked into Claude Code 2.1.332, whose own `cost-state`
 * transcript lines agree with these rates to the cent. Rows group versions that share one price.
 * Not modelled: the 1.1x multiplier for US-only inference (inference_geo "us"), fast mode, web search fees.
 */
export const PRICES = {
  "fable-5-2": {
    label: "Fable/Mythos 5.2",
    versions: ["fable-5-2", "mythos-5-2"],
    input: 8,
    output: 40,
    cacheWrite: 10,
    cacheWrite1h: 16,
    cacheRead: 0.2
  },
  "fable-5-1": {
    label: "Fable/Mythos 5.1",
    versions: ["fable-5-1", "mythos-5-1"],
    input: 10,
    output: 50,
    cacheWrite: 12.5,
    cacheWrite1h: 20,
    cacheRead: 0.25
  },
  "fable-5": {
    label: "Fable/Mythos 5",
    versions: ["fable-5", "mythos-5"],
    input: 10,
    output: 50,
    cacheWrite: 12.5,
    cacheWrite1h: 20,
    cacheRead: 1
  },
  "opus-5-5": {
    label: "Opus 5.5",
    versions: ["opus-5-5"],
    input: 4,
    output: 20,
    cacheWrite: 5,
    cacheWrite1h: 8,
    cacheRead: 0.2
  },
  "opus-4-5": {
    label: "Opus 4.5-5",
    versions: ["opus-4-5", "opus-4-6", "opus-4-7", "opus-4-8", "opus-5"],
    input: 5,
    output: 25,
    cacheWrite: 6.25,
    cacheWrite1h: 10,
    cacheRead: 0.5
  },
  "opus-4": {
    label: "Opus 3-4.1",
    versions: ["opus-3", "opus-4", "opus-4-1"],
    input: 15,
    output: 75,
    cacheWrite: 18.75,
    cacheWrite1h: 30,
    cacheRead: 1.5
  },
  "sonnet-5-5": {
    label: "Sonnet 5.5",
    versions: ["sonnet-5-5"],
    input: 2,
    output: 10,
    cacheWrite: 2.5,
    cacheWrite1h: 4,
    // Cut from $0.20 on 2026-10-07.
    cacheRead: 0.1
  },
  "sonnet-5": {
    label: "Sonnet 5",
    versions: ["sonnet-5"],
    input: 2,
    output: 10,
    cacheWrite: 2.5,
    cacheWrite1h: 4,
    cacheRead: 0.2
  },
  "sonnet-4": {
    label: "Sonnet 3-4.6",
    versions: ["sonnet-3", "sonnet-3-5", "sonnet-3-7", "sonnet-4", "sonnet-4-5", "sonnet-4-6"],
    input: 3,
    output: 15,
    cacheWrite: 3.75,
    cacheWrite1h: 6,
    cacheRead: 0.3
  },
  "haiku-5-5": {
    label: "Haiku 5.5",
    versions: ["haiku-5-5"],
    input: 0.1,
    output: 0.5,
    cacheWrite: 0.125,
    cacheWrite1h: 0.2,
    cacheRead: 0.01,
    longPrompt: { abovePromptTokens: 100_000, input: 0.5, output: 2.5, cacheWrite: 0.625, cacheWrite1h: 1, cacheRead: 0.05 }
  },
  "haiku-4-5": {
    label: "Haiku 4.5",
    versions: ["haiku-4-5"],
    input: 1,
    output: 5,
    cacheWrite: 1.25,
    cacheWrite1h: 2,
    cacheRead: 0.1
  },
  "haiku-3-5": {
    label: "Haiku 3.5",
    versions: ["haiku-3-5"],
    input: 0.8,
    output: 4,
    cacheWrite: 1,
    cacheWrite1h: 1.6,
    cacheRead: 0.08
  },
  "haiku-3": {
    label: "Haiku 3",
    versions: ["haiku-3"],
    input: 0.25,
    output: 1.25,
    cacheWrite: 0.3,
    cacheWrite1h: 0.5,
    cacheRead: 0.03
  }
} as const satisfies Record<string, ModelPrice>

export type PriceFamily = keyof typeof PRICES

/** Aliases as Claude Code 2.1.332 resolves them for the first-party API (transcripts carry the resolved id). */
export const MODEL_ALIASES: Readonly<Record<string, string>> = {
  opus: "claude-opus-5-5",
  opusplan: "claude-opus-5-5",
  best: "claude-opus-5-5",
  sonnet: "claude-sonnet-5-5",
  haiku: "claude-haiku-5-5",
  fable: "claude-fable-5-2"
}

const families = Object.keys(PRICES) as ReadonlyArray<PriceFamily>

const familyByVersion: ReadonlyMap<string, PriceFamily> = new Map(
  families.flatMap((family) => PRICES[family].versions.map((version) => [version, family] as const))
)

/** The family an unknown model is priced as: the highest output rate, so budgets err on the safe side. */
export const UNKNOWN_MODEL_FAMILY: PriceFamily = families.reduce((a, b) =>
  PRICES[b].output > PRICES[a].output || (PRICES[b].output === PRICES[a].output && PRICES[b].input > PRICES[a].input)
    ? b
    : a
)

// "claude-opus-4-5-20251101", "us.anthropic.claude-opus-4-1-20250805-v1:0", "claude-opus-4-5@20251101": version
// numbers have one or two digits, a date has eight.
const currentNaming = /(?:^|[^a-z])(opus|sonnet|haiku|fable|mythos)-(\d{1,2})(?:[-.](\d{1,2}))?(?!\d)/
// "claude-3-5-sonnet-20241022", "claude-3-opus-20240229"
const legacyNaming = /claude-(\d)(?:-(\d))?-(opus|sonnet|haiku)(?![a-z])/

const canonicalVersion = (model: string): string | undefined => {
  const id = model.trim().toLowerCase().replace(/\[[^\]]*\]$/, "")
  const resolved = MODEL_ALIASES[id] ?? id
  const current = currentNaming.exec(resolved)
  const [name, major, minor] = current
    ? [current[1], current[2], current[3]]
    : ((m) => (m ? [m[3], m[1], m[2]] : []))(legacyNaming.exec(resolved))
  if (name === undefined || major === undefined) return undefined
  return minor === undefined || minor === "0" ? `${name}-${major}` : `${name}-${major}-${minor}`
}

/** The price row of a model id or alias; undefined when the table does not know it. */
export const familyOf = (model: string): PriceFamily | undefined => {
  const version = canonicalVersion(model)
  return version === undefined ? undefined : familyByVersion.get(version)
}

// ---------------------------------------------------------------------------------------------
// Usage

export interface TokenCounts {
  readonly input: number
  readonly output: number
  /** All cache writes, whatever their TTL. */
  readonly cacheWrite: number
  readonly cacheRead: number
}

/** The usage of one API response. */
export interface ResponseUsage extends TokenCounts {
  /** The part of cacheWrite written with the 1-hour TTL. */
  readonly cacheWrite1h?: number
}

export const zeroTokens: TokenCounts = { input: 0, output: 0, cacheWrite: 0, cacheRead: 0 }

export const addTokens = (a: TokenCounts, b: TokenCounts): TokenCounts => ({
  input: a.input + b.input,
  output: a.output + b.output,
  cacheWrite: a.cacheWrite + b.cacheWrite,
  cacheRead: a.cacheRead + b.cacheRead
})

/** All tokens processed, cache reads included. */
export const totalTokens = (t: TokenCounts): number => t.input + t.output + t.cacheWrite + t.cacheRead

/**
 * Dollars for one response's usage at list price. An unknown model is priced as UNKNOWN_MODEL_FAMILY.
 * Long-prompt rates depend on the size of one request, so price responses one by one, not sums.
 */
export const priceOf = (model: string, usage: ResponseUsage): number => {
  const price: ModelPrice = PRICES[familyOf(model) ?? UNKNOWN_MODEL_FAMILY]
  const prompt = usage.input + usage.cacheRead + usage.cacheWrite
  const rates: Rates = price.longPrompt !== undefined && prompt > price.longPrompt.abovePromptTokens
    ? price.longPrompt
    : price
  const oneHour = Math.min(Math.max(usage.cacheWrite1h ?? 0, 0), usage.cacheWrite)
  return (
    usage.input * rates.input +
    usage.output * rates.output +
    (usage.cacheWrite - oneHour) * rates.cacheWrite +
    oneHour * rates.cacheWrite1h +
    usage.cacheRead * rates.cacheRead
  ) / 1_000_000
}

// ---------------------------------------------------------------------------------------------
// Transcript lines

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

// ---------------------------------------------------------------------------------------------
// The incremental tracker

export interface CostInstance {
  readonly name: string
  readonly role: string
  /** The instance's CLAUDE_CONFIG_DIR; transcripts are under `<configDir>/projects/**.jsonl`. */
  readonly configDir: string
}

export interface CostTotals {
  readonly tokens: TokenCounts
  readonly usd: number
  /** Distinct API responses counted. */
  readonly responses: number
  /** Models of the counted responses, in order of first appearance. */
  readonly models: ReadonlyArray<string>
}

export interface InstanceCost extends CostTotals {
  readonly name: string
  readonly role: string
  /** The credential new usage is attributed to, if the caller set one. */
  readonly credential: string | undefined
}

export interface CostSnapshot {
  /** In the order the instances were given. */
  readonly instances: ReadonlyArray<InstanceCost>
  readonly byRole: Readonly<Record<string, CostTotals>>
  /** Usage read while no credential was set is under NO_CREDENTIAL. */
  readonly byCredential: Readonly<Record<string, CostTotals>>
  readonly total: CostTotals
  /** Every model seen so far without a price row; each is priced as UNKNOWN_MODEL_FAMILY. */
  readonly unknownModels: ReadonlyArray<string>
  /** Unknown models first seen by the poll that made this snapshot: warn about these, once. */
  readonly newUnknownModels: ReadonlyArray<string>
}

export const NO_CREDENTIAL = "(none)"

export interface CostTracker {
  /** Reads what was appended to each instance's transcripts since the last poll and returns the running totals. */
  readonly poll: Effect.Effect<CostSnapshot>
  /**
   * As poll, for one instance only: what was appended to its transcripts since they were last read. Cheap enough
   * to run whenever the instance spends (a turn ended, a tool ran). An unknown instance reads nothing.
   */
  readonly pollInstance: (instance: string) => Effect.Effect<CostSnapshot>
  /** The running totals without reading anything. */
  readonly snapshot: Effect.Effect<CostSnapshot>
  /**
   * From now on attribute the instance's usage to `credential`. Usage already written is first read and
   * attributed to the previous credential, so call this when the instance switches (e.g. before a restart).
   */
  readonly setCredential: (instance: string, credential: string) => Effect.Effect<void>
  /** Starts tracking an instance created after the tracker. */
  readonly addInstance: (instance: CostInstance) => Effect.Effect<void>
}

interface Accumulator {
  tokens: TokenCounts
  usd: number
  responses: number
  readonly models: Array<string>
}

const emptyAccumulator = (): Accumulator => ({ tokens: zeroTokens, usd: 0, responses: 0, models: [] })

const accumulate = (acc: Accumulator, summary: UsageSummary): void => {
  acc.tokens = addTokens(acc.tokens, summary.tokens)
  acc.usd += summary.usd
  acc.responses += summary.responses
  for (const m of summary.models) if (!acc.models.includes(m)) acc.models.push(m)
}

const totalsOf = (acc: Accumulator): CostTotals => ({
  tokens: acc.tokens,
  usd: acc.usd,
  responses: acc.responses,
  models: [...acc.models]
})

const sumTotals = (all: ReadonlyArray<CostTotals>): CostTotals => {
  const acc = emptyAccumulator()
  for (const t of all) accumulate(acc, { ...t, unknownModels: [] })
  return totalsOf(acc)
}

// Bounds memory on a first read of a long transcript; a line longer than a chunk is carried over to the next one.
const defaultChunkBytes = 4 * 1024 * 1024
const newline = 0x0a

const concatBytes = (a: Uint8Array, b: Uint8Array): Uint8Array => {
  if (a.length === 0) return b
  const out = new Uint8Array(a.length + b.length)
  out.set(a, 0)
  out.set(b, a.length)
  return out
}

/**
 * A tracker over the given instances. It remembers a byte offset per transcript file and reads only complete lines
 * appended since, so a line being written is read whole at a later poll; new session files are found on each poll.
 */
export const makeCostTracker = (
  initial: ReadonlyArray<CostInstance>,
  options: { readonly chunkBytes?: number } = {}
): Effect.Effect<CostTracker, never, FileSystem.FileSystem | Path.Path> =>
  Effect.gen(function*() {
    const chunkBytes = Math.max(1, options.chunkBytes ?? defaultChunkBytes)
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const decoder = new TextDecoder()
    const lock = yield* Effect.makeSemaphore(1)

    const instances: Array<CostInstance> = []
    const perInstance = new Map<string, Accumulator>()
    const perCredential = new Map<string, Accumulator>()
    const credentials = new Map<string, string>()
    const offsets = new Map<string, number>()
    const seen = new Set<string>()
    const unknown: Array<string> = []
    let newUnknown: Array<string> = []

    const add = (instance: CostInstance) => {
      if (perInstance.has(instance.name)) return
      instances.push(instance)
      perInstance.set(instance.name, emptyAccumulator())
    }
    initial.forEach(add)

    // Paths of all transcripts under <configDir>/projects; none yet is the normal start.
    const transcripts = (configDir: string) => {
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

    // Complete lines appended to one file since `from`, and the offset just past the last of them.
    const readAppended = (file: string, from: number) =>
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

    const pollInstance = (instance: CostInstance) =>
      Effect.gen(function*() {
        for (const file of yield* transcripts(instance.configDir)) {
          const result = yield* readAppended(file, offsets.get(file) ?? 0).pipe(
            Effect.catchAll((e) =>
              Effect.logWarning(`cost tracking: cannot read ${file}: ${e.message}`).pipe(Effect.as(undefined))
            )
          )
          if (result === undefined) continue
          yield* Effect.sync(() => {
            offsets.set(file, result.offset)
            const summary = usageOf(result.entries, seen)
            if (summary.responses === 0) return
            const accInstance = perInstance.get(instance.name)
            if (accInstance !== undefined) accumulate(accInstance, summary)
            const credential = credentials.get(instance.name) ?? NO_CREDENTIAL
            const accCredential = perCredential.get(credential) ?? emptyAccumulator()
            accumulate(accCredential, summary)
            perCredential.set(credential, accCredential)
            for (const model of summary.unknownModels) {
              if (unknown.includes(model)) continue
              unknown.push(model)
              newUnknown.push(model)
            }
          })
        }
      })

    const currentSnapshot = Effect.sync((): CostSnapshot => {
      const rows: ReadonlyArray<InstanceCost> = instances.map((i) => ({
        name: i.name,
        role: i.role,
        credential: credentials.get(i.name),
        ...totalsOf(perInstance.get(i.name) ?? emptyAccumulator())
      }))
      const roles = [...new Set(rows.map((r) => r.role))]
      return {
        instances: rows,
        byRole: Object.fromEntries(roles.map((role) => [role, sumTotals(rows.filter((r) => r.role === role))])),
        byCredential: Object.fromEntries([...perCredential].map(([name, acc]) => [name, totalsOf(acc)])),
        total: sumTotals(rows),
        unknownModels: [...unknown],
        newUnknownModels: [...newUnknown]
      }
    })

    const poll = lock.withPermits(1)(
      Effect.gen(function*() {
        newUnknown = []
        for (const instance of [...instances]) yield* pollInstance(instance)
        return yield* currentSnapshot
      })
    ).pipe(Effect.withSpan("CostTracker.poll"))

    const pollOne = Effect.fn("CostTracker.pollInstance")(function*(name: string) {
      return yield* lock.withPermits(1)(
        Effect.gen(function*() {
          newUnknown = []
          const known = instances.find((i) => i.name === name)
          if (known !== undefined) yield* pollInstance(known)
          return yield* currentSnapshot
        })
      )
    })

    const setCredential = Effect.fn("CostTracker.setCredential")(function*(instance: string, credential: string) {
      yield* lock.withPermits(1)(
        Effect.gen(function*() {
          const known = instances.find((i) => i.name === instance)
          if (known !== undefined) yield* pollInstance(known)
          credentials.set(instance, credential)
        })
      )
    })

    const addInstance = Effect.fn("CostTracker.addInstance")(function*(instance: CostInstance) {
      yield* lock.withPermits(1)(Effect.sync(() => add(instance)))
    })

    return { poll, pollInstance: pollOne, snapshot: lock.withPermits(1)(currentSnapshot), setCredential, addInstance }
  })

// ---------------------------------------------------------------------------------------------
// Checking the budget when spending happens

export interface SpendWatch {
  /**
   * The instance spent (a turn ended, a tool ran): its new transcript lines are read and the snapshot handed on,
   * in the background. Bursts coalesce: while a read for the instance runs, any number of further calls make
   * exactly one more read after it.
   */
  readonly spent: (instance: string) => Effect.Effect<void>
}

/**
 * Reads one instance's transcripts (incrementally) each time it spends and hands the snapshot to `onSnapshot`,
 * which checks the limits: a fast team meets its budget within one response rather than at the next timed poll.
 * The reads run in fibers of the given scope; a failing `onSnapshot` costs that read only.
 */
export const makeSpendWatch = (
  tracker: Pick<CostTracker, "pollInstance">,
  onSnapshot: (snapshot: CostSnapshot) => Effect.Effect<void>,
  scope: Scope.Scope
): SpendWatch => {
  // Per instance: a read is running ("running"), or running with another one asked for ("again").
  const reading = new Map<string, "running" | "again">()
  const readLoop = (instance: string): Effect.Effect<void> =>
    tracker.pollInstance(instance).pipe(
      Effect.flatMap(onSnapshot),
      Effect.catchAllCause((cause) => Effect.logWarning(`cost tracking: reading ${instance} failed`, cause)),
      Effect.zipRight(Effect.suspend(() => {
        if (reading.get(instance) !== "again") return Effect.sync(() => reading.delete(instance))
        reading.set(instance, "running")
        return readLoop(instance)
      }))
    )
  return {
    spent: (instance) =>
      Effect.suspend(() => {
        if (reading.has(instance)) {
          reading.set(instance, "again")
          return Effect.void
        }
        reading.set(instance, "running")
        return readLoop(instance).pipe(
          Effect.onInterrupt(() => Effect.sync(() => reading.delete(instance))),
          Effect.forkIn(scope),
          Effect.asVoid
        )
      })
  }
}

/** Limit checks that name each 80 % warning once: `check` returns the warnings not seen before and what is exceeded. */
export const makeBudget = (limits: CostLimits) => {
  const warned = new Set<string>()
  return {
    limits,
    check: (snapshot: CostSnapshot): LimitCheck => {
      const result = checkLimits(snapshot, limits)
      const fresh = result.warnings.filter((w) => {
        const key = `${w.limit}:${w.subject}`
        if (warned.has(key)) return false
        warned.add(key)
        return true
      })
      return { warnings: fresh, exceeded: result.exceeded }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Reporting and limits

const formatCount = (n: number): string => Math.round(n).toLocaleString("en-US")

/** Dollars with cents, or four decimals below one dollar so small runs do not all read $0.00. */
export const formatUsd = (usd: number): string => `$${usd >= 1 ? usd.toFixed(2) : usd.toFixed(4)}`

/** A plain text table for the end of a run: one row per instance and a total row, then notes. */
export const formatCostTable = (snapshot: CostSnapshot): string => {
  const header = ["instance", "role", "input", "output", "cache write", "cache read", "USD"]
  const row = (name: string, role: string, t: CostTotals) => [
    name,
    role,
    formatCount(t.tokens.input),
    formatCount(t.tokens.output),
    formatCount(t.tokens.cacheWrite),
    formatCount(t.tokens.cacheRead),
    formatUsd(t.usd)
  ]
  const body = snapshot.instances.map((i) => row(i.name, i.role, i))
  const total = row("total", "", snapshot.total)
  const all = [header, ...body, total]
  const widths = header.map((_, c) => Math.max(...all.map((r) => (r[c] ?? "").length)))
  // Names left-aligned, numbers right-aligned.
  const render = (r: ReadonlyArray<string>) =>
    r.map((cell, c) => (c < 2 ? cell.padEnd(widths[c] ?? 0) : cell.padStart(widths[c] ?? 0))).join("  ").trimEnd()
  const rule = widths.map((w) => "-".repeat(w)).join("  ")
  const notes = [
    "USD at Anthropic API list prices per model. With an OAuth (subscription) login no tokens are billed:",
    "the dollar figure is then an estimate of the equivalent API cost."
  ]
  if (snapshot.unknownModels.length > 0) {
    notes.push(
      `Models without a price (priced as ${PRICES[UNKNOWN_MODEL_FAMILY].label}): ${snapshot.unknownModels.join(", ")}.`
    )
  }
  return [render(header), rule, ...body.map(render), rule, render(total), "", ...notes].join("\n")
}

export interface CostLimits {
  /** For the whole run. */
  readonly maxCostUsd?: number | undefined
  /** For each instance separately. */
  readonly maxCostUsdPerInstance?: number | undefined
  /** For the whole run, all kinds of tokens (cache reads included). */
  readonly maxTokens?: number | undefined
}

export interface LimitCrossing {
  readonly limit: keyof CostLimits
  /** "run" or the instance name. */
  readonly subject: string
  readonly value: number
  readonly max: number
  /** value / max * 100 */
  readonly percent: number
  readonly message: string
}

export interface LimitCheck {
  /** Crossed 80 % but not 100 %. */
  readonly warnings: ReadonlyArray<LimitCrossing>
  /** Reached 100 % or more. */
  readonly exceeded: ReadonlyArray<LimitCrossing>
}

export const WARN_FRACTION = 0.8

/** Compares the totals with the limits that are set (a limit that is not positive counts as not set). */
export const checkLimits = (snapshot: CostSnapshot, limits: CostLimits): LimitCheck => {
  const warnings: Array<LimitCrossing> = []
  const exceeded: Array<LimitCrossing> = []
  const check = (
    limit: keyof CostLimits,
    subject: string,
    what: string,
    value: number,
    max: number | undefined,
    show: (n: number) => string
  ) => {
    if (max === undefined || !(max > 0)) return
    const percent = (value / max) * 100
    // A relative epsilon so that e.g. $0.08 of $0.10 counts as 80 % despite binary fractions.
    const reached = (fraction: number) => value >= max * fraction * (1 - 1e-9)
    const crossing = (level: string) => ({
      limit,
      subject,
      value,
      max,
      percent,
      message: `${what} ${show(value)} is ${Math.floor(percent + 1e-9)}% of ${limit} ${show(max)}${level}`
    })
    if (reached(1)) exceeded.push(crossing(": limit reached"))
    else if (reached(WARN_FRACTION)) warnings.push(crossing(""))
  }
  check("maxCostUsd", "run", "run cost", snapshot.total.usd, limits.maxCostUsd, formatUsd)
  for (const i of snapshot.instances) {
    check("maxCostUsdPerInstance", i.name, `${i.name} cost`, i.usd, limits.maxCostUsdPerInstance, formatUsd)
  }
  check("maxTokens", "run", "run tokens", totalTokens(snapshot.total.tokens), limits.maxTokens, formatCount)
  return { warnings, exceeded }
}
