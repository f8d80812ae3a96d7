// The end-of-run cost table and the number formats shared with budget messages.
import type { CostSnapshot } from "./CostTracker.js"
import { PRICES, UNKNOWN_MODEL_FAMILY } from "./Prices.js"
import type { CostTotals } from "./Transcripts.js"

export const formatCount = (n: number): string => Math.round(n).toLocaleString("en-US")

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
