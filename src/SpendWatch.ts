// Checking the budget when spending happens: an instance's transcripts are read each time it spends.
import { Effect, type Scope } from "effect"
import type { CostSnapshot, CostTracker } from "./CostTracker.js"

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
