// Coalescing a burst of changes into few writes: the first change is written at once, the changes that follow
// within the interval together once at its end, and nothing is written while nothing changes.
import { Duration, Effect, Queue } from "effect"

/** Signals that something changed; offering to a full signal is a no-op (the pending write covers it). */
export const makeSignal = Queue.sliding<void>(1)

/** Runs `write` after each signal, at most once per `interval`; forever (fork it in the scope that owns it). */
export const coalesce = <E, R>(signal: Queue.Queue<void>, write: Effect.Effect<void, E, R>, interval: Duration.DurationInput): Effect.Effect<never, never, R> =>
  Queue.take(signal).pipe(
    Effect.zipRight(Effect.exit(write)),
    Effect.zipRight(Effect.sleep(interval)),
    Effect.forever
  )
