// The alerts whole in-memory runs make (TestClock, scripted agents): combined.log as the run writes it, read the
// way Notify reads it as it is written. Ties the alerts to the real lines of cost limits, credential exhaustion and
// the end, which the unit tests of Notify spell out by hand.
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import * as Notify from "../src/Notify.js"
import type { LogLine } from "../src/RunLog.js"
import { memoryRun } from "./memory/MemoryRun.js"
import { type Behaviour, fail } from "./memory/ScriptedAgent.js"
import { team } from "./memory/team.js"

const alertsOf = (run: { readonly log: ReadonlyArray<Record<string, unknown>> }, target = "main") => {
  const alerts = Notify.makeAlerts({ runId: "r", target, top: "em-1" })
  return run.log.flatMap((l) => alerts(l as LogLine) ?? [])
}

const isTask = (prompt: string) => /# Your task|\[cco\] New task #/.test(prompt)

/** The team, except that worker-1's first task turn ends on a 429. */
const rateLimitedOnce = (): Behaviour => {
  let failed = false
  const inner = team()
  return (io, prompt, memory) => {
    if (io.name !== "worker-1" || failed || !isTask(prompt)) return inner(io, prompt, memory)
    failed = true
    return Effect.succeed(fail("rate_limit", "API Error: Request rejected (429) · This request would exceed the rate limit for your organization"))
  }
}

describe("alerts of in-memory runs", () => {
  it.scoped("at maxCostUsd: cost-100 once with the limit's words, then run-finished with reason cost-limit and the cost", () =>
    Effect.gen(function*() {
      const run = yield* memoryRun(
        { workerCount: 2, extra: { maxCostUsd: 2 } },
        team({ idleLeads: ["em-1"], usagePerTurn: { input: 200_000, output: 20_000 } })
      )
      if (Exit.isFailure(run.exit)) throw new Error("the run failed")
      const summary = run.exit.value
      const alerts = alertsOf(run)
      const hundred = alerts.filter((a) => a.event === "cost-100")
      expect(hundred).toHaveLength(1)
      expect(hundred[0]!.fields.limits).toEqual([expect.stringMatching(/^run cost \$\d+\.\d+ is \d+% of maxCostUsd \$2\.00: limit reached$/)])
      const finished = alerts.filter((a) => a.event === "run-finished")
      expect(finished).toHaveLength(1)
      expect(finished[0]!.fields).toMatchObject({ reason: "cost-limit", costUsd: summary.costs.total.usd, durationMs: summary.durationMs, merges: summary.merges.length })
      expect(alerts.at(-1)?.event).toBe("run-finished")
    }), 60_000)

  it.scoped("a cost warning below the limit: cost-80 once for maxCostUsd", () =>
    Effect.gen(function*() {
      // The whole run costs $7.50: past 80 % of $9 at its end, never 100 %.
      const run = yield* memoryRun(
        { workerCount: 2, extra: { maxCostUsd: 9 } },
        team({ usagePerTurn: { input: 200_000, output: 20_000 } })
      )
      const warnings = run.events("cost.warning")
      const alerts = alertsOf(run).filter((a) => a.event === "cost-80")
      // Each limit warns once in the log, and alerts once.
      expect(alerts).toHaveLength(new Set(warnings.map((w) => w.limit)).size)
      expect(alerts.length).toBeGreaterThanOrEqual(1)
      expect(alerts[0]!.fields).toMatchObject({ limit: "maxCostUsd", subject: "run", max: 9 })
      expect(alerts[0]!.text).toMatch(/^cost at 80 % of a limit: run cost \$\d+\.\d+ is \d+% of maxCostUsd \$9\.00$/)
      expect(alertsOf(run).filter((a) => a.event === "run-finished").map((a) => a.fields.reason)).toEqual(["project-done"])
    }), 60_000)

  it.scoped("the only credential cooling: credentials-exhausted once per reset, naming it, though every instance waits", () =>
    Effect.gen(function*() {
      const run = yield* memoryRun({ workerCount: 2, keys: 1, maxRunDurationMinutes: 0.5 }, rateLimitedOnce())
      const logged = run.events("credentials.exhausted")
      expect(logged.length).toBeGreaterThanOrEqual(1)
      const alerts = alertsOf(run).filter((a) => a.event === "credentials-exhausted")
      expect(alerts).toHaveLength(new Set(logged.map((l) => l.until)).size)
      expect(alerts[0]!.fields).toMatchObject({ reason: "cooling", cooling: ["key-1"], until: logged[0]!.until, instance: logged[0]!.instance })
      expect(alertsOf(run).filter((a) => a.event === "run-finished").map((a) => a.fields.reason)).toEqual(["time-limit"])
    }), 60_000)
})
