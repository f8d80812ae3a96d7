// The cost budget with the fake agent: maxCostUsd is checked when an instance spends (each Stop and tool use
// reads its new transcript lines), so a fast team stops within one response of its limit.
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { priceOf } from "../src/Prices.js"
import { startMockModel } from "../src/MockModel.js"
import { teamScript } from "../src/TeamScript.js"
import { fakeClaudeBin, readLog, runFixture, useFixture } from "./harness.js"

describe("cost limit with the fake agent", () => {
  it.scopedLive("a fast 3-worker team meets maxCostUsd within one response per instance, long before the timed poll", () =>
    Effect.gen(function*() {
      // $0.05 a response at Opus 5.5 prices (the fake agent's default model).
      const usage = { input_tokens: 100, output_tokens: 2_500, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 }
      const perResponse = priceOf("claude-opus-5-5", { input: 100, output: 2_500, cacheWrite: 0, cacheRead: 0 })
      expect(perResponse).toBeCloseTo(0.0504, 6)
      const mock = yield* startMockModel({ brain: teamScript(), usage, latencyMs: 1_000 })
      const maxCostUsd = 0.3
      // healthCheckIntervalSeconds 10: the timed cost poll runs at the start and then every 15 s only.
      const fixture = yield* useFixture({
        workerCount: 3,
        mockUrl: mock.url,
        extra: { maxCostUsd, healthCheckIntervalSeconds: 10 }
      })
      const summary = yield* runFixture(fixture, fakeClaudeBin)
      const log = readLog(summary.runFolder)
      const instances = summary.instances.length
      expect(instances).toBe(4)
      expect(summary.reason).toBe("cost-limit")
      expect(log.find((l) => l.event === "cost.limit")).toBeDefined()
      expect(summary.costs.total.usd).toBeGreaterThanOrEqual(maxCostUsd)
      // Beyond the response that crossed the limit, at most one more per instance: the ones already asked for when
      // it was met (each takes the mock a second, longer than cco takes to see the limit and stop the sessions).
      const crossing = Math.ceil(maxCostUsd / perResponse)
      expect(summary.costs.total.responses).toBeLessThanOrEqual(crossing + instances)
      expect(summary.costs.total.usd).toBeLessThanOrEqual((crossing + instances) * perResponse + 1e-9)
      // The run ended well before the timed poll's second round: the limit was met as the spending happened.
      expect(summary.durationMs).toBeLessThan(15_000)
    }), { timeout: 120_000 })
})
