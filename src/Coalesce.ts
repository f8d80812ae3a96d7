// A look at something shared (the process table, /proc) that many fibers want at once, each fresh: a caller gets
// the result of a look that began after it asked, and callers that ask while a look is under way share the next one.
import { Effect } from "effect"

export const coalesced = <A, E, R>(look: Effect.Effect<A, E, R>): Effect.Effect<Effect.Effect<A, E, R>> =>
  Effect.map(Effect.makeSemaphore(1), (lock) => {
    let started = 0
    let latest: { readonly index: number; readonly value: A } | undefined
    return Effect.suspend(() => {
      const ticket = started
      return lock.withPermits(1)(Effect.suspend(() => {
        if (latest !== undefined && latest.index > ticket) return Effect.succeed(latest.value)
        const index = ++started
        return Effect.tap(look, (value) => Effect.sync(() => (latest = { index, value })))
      }))
    })
  })
