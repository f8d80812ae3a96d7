// Cost limits: the instances' transcripts read as they spend and on a timer, warnings at 80 %, and the run
// ended at 100 % of a limit.
import { Deferred, Duration, Effect, Schedule } from "effect"
import { makeBudget } from "./Budget.js"
import type { CostSnapshot } from "./CostTracker.js"
import * as EventsModule from "./Events.js"
import { UNKNOWN_MODEL_FAMILY } from "./Prices.js"
import type { RunContext } from "./RunContext.js"
import { makeSpendWatch } from "./SpendWatch.js"

export const makeCostWatch = (ctx: RunContext) => {
  const { config, runLog, costTracker } = ctx
  // Limits warn at 80 % and end the run at 100 %, checked when spending happens (each Stop and tool use reads
  // that instance's new transcript lines) and by the timed poll below.
  const budget = makeBudget({
    ...(config.maxCostUsd === undefined ? {} : { maxCostUsd: config.maxCostUsd }),
    ...(config.maxCostUsdPerInstance === undefined ? {} : { maxCostUsdPerInstance: config.maxCostUsdPerInstance }),
    ...(config.maxTokens === undefined ? {} : { maxTokens: config.maxTokens })
  })
  const checkCosts = (snapshot: CostSnapshot) =>
    Effect.gen(function*() {
      for (const model of snapshot.newUnknownModels) {
        yield* runLog.log("cost.unknown-model", { model, pricedAs: UNKNOWN_MODEL_FAMILY })
      }
      const check = budget.check(snapshot)
      for (const w of check.warnings) {
        yield* runLog.log("cost.warning", { limit: w.limit, subject: w.subject, value: w.value, max: w.max, message: w.message })
      }
      // Whichever check sees the limit first ends the run; the others find it ended.
      if (check.exceeded.length > 0 && (yield* Deferred.succeed(ctx.end, "cost-limit"))) {
        yield* runLog.log("cost.limit", { limits: check.exceeded.map((e) => e.message) })
      }
    })
  const spendWatch = makeSpendWatch(costTracker, checkCosts, ctx.scope)

  // --- costs: transcripts read incrementally; all of them on a timer (besides each instance as it spends)
  const pollCosts = Effect.tap(costTracker.poll, checkCosts)
  const startPolling = (writeState: Effect.Effect<void>) => {
    let lastCostLog = 0
    return pollCosts.pipe(
      Effect.flatMap((snapshot) => {
        if (snapshot.total.usd === lastCostLog) return Effect.void
        lastCostLog = snapshot.total.usd
        return runLog.log("cost.update", {
          totalUsd: snapshot.total.usd,
          tokens: snapshot.total.tokens,
          byInstance: Object.fromEntries(snapshot.instances.map((c) => [c.name, c.usd]))
        }).pipe(Effect.zipRight(writeState))
      }),
      Effect.catchAllCause((cause) => runLog.log("cost.error", { cause: EventsModule.describeCause(cause) })),
      Effect.repeat(Schedule.spaced(Duration.seconds(Math.min(15, config.healthCheckIntervalSeconds * 2)))),
      Effect.forkIn(ctx.scope)
    )
  }
  return { spendWatch, pollCosts, startPolling }
}
