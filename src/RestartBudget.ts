// The restart budget: at most so many restarts of one instance within a sliding window, so that no instance loops.
import { Clock, Data, Duration, Effect, Ref } from "effect"

export interface RestartBudgetState {
  readonly max: number
  readonly windowMillis: number
  /** Per instance, the epoch ms of its restarts still inside the window. */
  readonly restarts: ReadonlyMap<string, ReadonlyArray<number>>
}

export type RestartDecision = Data.TaggedEnum<{
  /** The restart is counted; `used` includes it. */
  Allowed: { readonly used: number; readonly max: number }
  /** Over budget: nothing is counted; the next restart is allowed at `retryAt`. */
  Exhausted: { readonly used: number; readonly max: number; readonly retryAt: Date }
}>
export const RestartDecision = Data.taggedEnum<RestartDecision>()

/**
 * At most `max` restarts of one instance within a sliding `window` (default 5 per 10 minutes), shared by rotation
 * and crash recovery so that no instance loops. Pure; `makeRestartLimiter` wraps it with a Ref and the Clock.
 */
export const RestartBudget = {
  make: (options: { readonly max?: number; readonly window?: Duration.DurationInput } = {}): RestartBudgetState => ({
    max: options.max ?? 5,
    windowMillis: Duration.toMillis(Duration.decode(options.window ?? Duration.minutes(10))),
    restarts: new Map()
  }),

  tryRestart: (
    state: RestartBudgetState,
    instance: string,
    now: number
  ): { readonly decision: RestartDecision; readonly state: RestartBudgetState } => {
    const recent = (state.restarts.get(instance) ?? []).filter((t) => t > now - state.windowMillis)
    if (recent.length >= state.max) {
      return {
        decision: RestartDecision.Exhausted({
          used: recent.length,
          max: state.max,
          retryAt: new Date(recent[0]! + state.windowMillis)
        }),
        state: { ...state, restarts: new Map(state.restarts).set(instance, recent) }
      }
    }
    const used = [...recent, now]
    return {
      decision: RestartDecision.Allowed({ used: used.length, max: state.max }),
      state: { ...state, restarts: new Map(state.restarts).set(instance, used) }
    }
  },

  forget: (state: RestartBudgetState, instance: string): RestartBudgetState => {
    if (!state.restarts.has(instance)) return state
    const restarts = new Map(state.restarts)
    restarts.delete(instance)
    return { ...state, restarts }
  }
}

export interface RestartLimiter {
  /** Counts a restart of the instance if the budget allows it. */
  readonly tryRestart: (instance: string) => Effect.Effect<RestartDecision>
  /** Clears the instance's history (e.g. when it is retired). */
  readonly forget: (instance: string) => Effect.Effect<void>
}

export const makeRestartLimiter = (
  options: { readonly max?: number; readonly window?: Duration.DurationInput } = {}
): Effect.Effect<RestartLimiter> =>
  Effect.map(Ref.make(RestartBudget.make(options)), (ref) => ({
    tryRestart: Effect.fn("RestartLimiter.tryRestart")(function*(instance: string) {
      const now = yield* Clock.currentTimeMillis
      return yield* Ref.modify(ref, (state) => {
        const r = RestartBudget.tryRestart(state, instance, now)
        return [r.decision, r.state] as const
      })
    }),
    forget: (instance) => Ref.update(ref, (state) => RestartBudget.forget(state, instance))
  }))
