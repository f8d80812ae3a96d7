import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Fiber } from "effect"
import { coalesced } from "../src/Coalesce.js"

// Lets every forked fiber run as far as it can.
const settle = Effect.repeatN(Effect.yieldNow(), 20)

describe("coalesced looks", () => {
  it.effect("callers that ask while a look runs share the next one; each gets a look that began after it asked", () =>
    Effect.gen(function*() {
      let looks = 0
      const gates: Array<Deferred.Deferred<void>> = []
      const look = Effect.gen(function*() {
        const n = ++looks
        const gate = yield* Deferred.make<void>()
        gates.push(gate)
        yield* Deferred.await(gate)
        return n
      })
      const shared = yield* coalesced(look)
      const first = yield* Effect.fork(shared)
      yield* settle
      expect(looks).toBe(1)
      // Three callers arrive while look 1 runs: none may take look 1 (it began before they asked).
      const waiting = yield* Effect.forEach([1, 2, 3], () => Effect.fork(shared))
      yield* settle
      yield* Deferred.succeed(gates[0]!, undefined)
      expect(yield* Fiber.join(first)).toBe(1)
      yield* settle
      expect(looks).toBe(2)
      yield* Deferred.succeed(gates[1]!, undefined)
      expect(yield* Effect.forEach(waiting, Fiber.join)).toEqual([2, 2, 2])
      // A caller after that gets a look of its own.
      const later = yield* Effect.fork(shared)
      yield* settle
      yield* Deferred.succeed(gates[2]!, undefined)
      expect(yield* Fiber.join(later)).toBe(3)
      expect(looks).toBe(3)
    }))
})
