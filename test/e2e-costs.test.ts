// Cost limits with the real claude: the mock model reports large usage, a small maxCostUsd is crossed
// mid-run, the run winds down, and the cost cco reports matches the mock's own ledger.
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Prices from "../src/Prices.js"
import { startMockModel } from "../src/MockModel.js"
import { teamScript } from "../src/TeamScript.js"
import { claudeBin, useFixture, readLog, runFixture } from "./harness.js"

describe("cost limits, real claude", () => {
  it.scopedLive("crossing maxCostUsd winds the run down and reports the cost within 1 % of the mock's count (less any response cut by the stop)", () =>
    Effect.gen(function*() {
      const usage = { input_tokens: 100_000, output_tokens: 5_000, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 }
      const mock = yield* startMockModel({ brain: teamScript(), usage })
      const fixture = yield* useFixture({
        workerCount: 2,
        mockUrl: mock.url,
        extra: { maxCostUsd: 2, healthCheckIntervalSeconds: 1, stuckAfterSeconds: 600 }
      })
      const summary = yield* runFixture(fixture, claudeBin)
      expect(summary.reason).toBe("cost-limit")
      const log = readLog(summary.runFolder)
      expect(log.some((l) => l.event === "cost.limit")).toBe(true)
      expect(log.find((l) => l.event === "run.ending")?.reason).toBe("cost-limit")

      // The mock's own count, priced with the same table: the model the CLI asked for is in every record.
      const records = yield* mock.requests
      const models = [...new Set(records.filter((r) => r.reply !== "Side" && r.model !== undefined).map((r) => r.model!))]
      expect(models.length).toBe(1)
      const ledger = Object.values(yield* mock.ledger)
      const served = ledger.reduce((a, e) => ({
        input: a.input + e.input_tokens,
        output: a.output + e.output_tokens,
        cacheWrite: a.cacheWrite + e.cache_creation_input_tokens,
        cacheRead: a.cacheRead + e.cache_read_input_tokens
      }), Prices.zeroTokens)
      const expected = Prices.priceOf(models[0]!, served)
      expect(expected).toBeGreaterThanOrEqual(2)
      // cco counts from the transcripts. A response the mock served in the moment the sessions were stopped may
      // never reach one (the CLI is gone before it writes it): at most one such response per instance, each a
      // whole response, never an invented one. The rest must agree within 1 %.
      const perResponse = Prices.priceOf(models[0]!, { input: usage.input_tokens, output: usage.output_tokens, cacheWrite: 0, cacheRead: 0 })
      const unrecorded = Math.round((expected - summary.costs.total.usd) / perResponse)
      expect(unrecorded).toBeGreaterThanOrEqual(0)
      expect(unrecorded).toBeLessThanOrEqual(summary.instances.length)
      const recorded = expected - unrecorded * perResponse
      expect(Math.abs(summary.costs.total.usd - recorded) / recorded).toBeLessThan(0.01)
    }), { timeout: 180_000 })
})
