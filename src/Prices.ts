// The price table: Anthropic list prices per model family, model ids and aliases mapped to their row, token counts,
// and the dollars of one API response.

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
