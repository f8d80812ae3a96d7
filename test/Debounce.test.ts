import { describe, expect, it } from "@effect/vitest"
import { Effect, Queue, Ref, TestClock } from "effect"
import * as D from "../src/Debounce.js"

describe("Debounce.coalesce", () => {
  it.scoped("writes at once, coalesces a burst into one more write at the end of the interval, and is quiet without changes", () =>
    Effect.gen(function*() {
      const writes = yield* Ref.make<Array<number>>([])
      const signal = yield* D.makeSignal
      const write = Effect.flatMap(Effect.clockWith((c) => c.currentTimeMillis), (now) => Ref.update(writes, (w) => [...w, now]))
      yield* Effect.forkScoped(D.coalesce(signal, write, "1 second"))
      yield* Queue.offer(signal, undefined)
      yield* TestClock.adjust("10 millis")
      expect(yield* Ref.get(writes)).toEqual([0])
      // A burst during the interval: one write when it ends.
      for (let i = 0; i < 50; i++) yield* Queue.offer(signal, undefined)
      yield* TestClock.adjust("500 millis")
      expect(yield* Ref.get(writes)).toEqual([0])
      yield* TestClock.adjust("600 millis")
      expect(yield* Ref.get(writes)).toEqual([0, 1000])
      // Nothing changes: nothing is written.
      yield* TestClock.adjust("10 seconds")
      expect(yield* Ref.get(writes)).toEqual([0, 1000])
      // A change after a quiet while is written at once.
      yield* Queue.offer(signal, undefined)
      yield* TestClock.adjust("1 millis")
      expect((yield* Ref.get(writes)).length).toBe(3)
    }))
})
