// Cost limits for a run (dollars for the run and per instance, tokens for the run): warnings at 80 %, and what
// is exceeded at 100 %.
import { formatCount, formatUsd } from "./CostTable.js"
import type { CostSnapshot } from "./CostTracker.js"
import { totalTokens } from "./Prices.js"

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
