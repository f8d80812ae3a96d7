import { describe, expect, it } from "@effect/vitest"
import * as O from "../src/Outbox.js"
import { PANE_MAX } from "../src/Untrusted.js"

const limits: O.OutboxLimits = { maxMessages: 5, maxChars: 1_000 }
const add = (outbox: ReadonlyArray<string>, text: string, roleFirst = false) => O.enqueue(outbox, text, { role: false, roleFirst }, limits)

describe("Outbox", () => {
  it("keeps messages in order while they fit", () => {
    let box: ReadonlyArray<string> = []
    for (const m of ["a", "b", "c"]) box = add(box, m).outbox
    expect(box).toEqual(["a", "b", "c"])
  })

  it("a flood keeps the newest messages and one notice counting the dropped ones; never the role prompt", () => {
    let box = O.enqueue([], "ROLE PROMPT", { role: true, roleFirst: false }, limits).outbox
    let dropped = 0
    for (let i = 1; i <= 30; i++) {
      const r = add(box, `message ${i}`, true)
      box = r.outbox
      dropped += r.dropped
    }
    expect(box[0]).toBe("ROLE PROMPT")
    expect(box.length).toBe(1 + limits.maxMessages)
    expect(box[1]).toBe("[cco] 26 older messages to you were dropped: too many were waiting (cco keeps the newest 5).")
    expect(box.slice(2)).toEqual(["message 27", "message 28", "message 29", "message 30"])
    expect(dropped).toBe(26)
  })

  it("bounds the total size: big messages push out older ones; one too long is cut", () => {
    let box: ReadonlyArray<string> = ["small"]
    box = add(box, "x".repeat(600)).outbox
    const r = add(box, "y".repeat(600))
    expect(r.dropped).toBe(2)
    expect(r.outbox).toEqual(["[cco] 2 older messages to you were dropped: too many were waiting (cco keeps the newest 5).", "y".repeat(600)])
    const long = add([], "z".repeat(5_000))
    expect(long.truncated).toBe(true)
    expect(long.outbox[0]!.length).toBeLessThanOrEqual(1_000)
    expect(long.outbox[0]).toMatch(/cut by cco/)
  })

  it("a role prompt sent last still goes first, and a large one is never cut or dropped", () => {
    const role = "R".repeat(5_000)
    const r = O.enqueue(["[cco] Message from em-1: hi"], role, { role: true, roleFirst: false }, limits)
    expect(r.outbox).toEqual([role, "[cco] Message from em-1: hi"])
    expect(add(r.outbox, "next", true).outbox).toEqual([role, "[cco] Message from em-1: hi", "next"])
  })

  it("one delivery takes the oldest messages that fit one paste, at least one; the rest wait for the next turn", () => {
    const [batch, rest] = O.nextBatch(["a".repeat(40), "b".repeat(40), "c".repeat(40)], 90)
    expect(batch).toEqual(["a".repeat(40), "b".repeat(40)])
    expect(rest).toEqual(["c".repeat(40)])
    expect(O.nextBatch(["x".repeat(500), "y"], 100)).toEqual([["x".repeat(500)], ["y"]])
    expect(O.nextBatch(["a", "b"], 1_000)).toEqual([["a", "b"], []])
  })

  it("a full outbox fits in one paste with room for a role prompt", () => {
    expect(O.OUTBOX_LIMITS.maxChars + O.OUTBOX_LIMITS.maxMessages * O.SEPARATOR.length).toBeLessThan(PANE_MAX - 10_000)
  })
})
