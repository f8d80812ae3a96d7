// One measured number with its target, and how the bench prints them: a table on the terminal, or Markdown.

export interface Measurement {
  /** Benchmark number and letter, e.g. "2a". */
  readonly id: string
  readonly name: string
  readonly value: number
  readonly unit: "ms" | "s" | "%" | "MB" | "x"
  /** Met when value <= target; no target: reported for information. */
  readonly target?: number
  /** The side-by-side baseline, as text. */
  readonly baseline?: string
  readonly note?: string
}

/** A miss of more than this fraction of the target fails `npm run bench`. */
export const TOLERANCE = 0.2

export type Verdict = "met" | "missed (≤20 %)" | "MISSED" | "info"

export const verdict = (m: Measurement): Verdict => {
  if (m.target === undefined || Number.isNaN(m.value)) return m.target === undefined ? "info" : "MISSED"
  if (m.value <= m.target) return "met"
  return m.value <= m.target * (1 + TOLERANCE) ? "missed (≤20 %)" : "MISSED"
}

export const fails = (m: Measurement) => verdict(m) === "MISSED"

const show = (value: number, unit: Measurement["unit"]) => {
  if (Number.isNaN(value)) return "n/a"
  switch (unit) {
    case "ms":
      return value >= 1000 ? `${(value / 1000).toFixed(2)} s` : `${value.toFixed(value < 10 ? 2 : 0)} ms`
    case "s":
      return `${value.toFixed(2)} s`
    case "%":
      return `${value.toFixed(2)} %`
    case "MB":
      return `${value.toFixed(0)} MB`
    case "x":
      return `${value.toFixed(2)}×`
  }
}

const row = (m: Measurement) => [
  m.id,
  m.name,
  show(m.value, m.unit),
  m.target === undefined ? "—" : `≤ ${show(m.target, m.unit)}`,
  verdict(m),
  m.baseline ?? ""
]

const HEADER = ["#", "measure", "result", "target", "verdict", "baseline / notes"]

export const table = (ms: ReadonlyArray<Measurement>) => {
  const rows = [HEADER, ...ms.map(row)]
  const widths = HEADER.map((_, i) => Math.max(...rows.map((r) => [...r[i]!].length)))
  return rows.map((r) => r.map((c, i) => c + " ".repeat(widths[i]! - [...c].length)).join("  ").trimEnd()).join("\n")
}

export const markdown = (ms: ReadonlyArray<Measurement>) =>
  [HEADER, HEADER.map(() => "---"), ...ms.map(row)].map((r) => `| ${r.map((c) => c.replaceAll("|", "\\|")).join(" | ")} |`).join("\n")
