// The real `claude` driven by cco against the mock model, with the merge gate (checkCommand): a worker's change
// that fails the project's check is refused and sent back, its fix lands, main never points at a failing commit.
import { describe, it } from "@effect/vitest"
import { claudeBin } from "./harness.js"
import { failingChangeRefusedThenFixed } from "./scenarios.js"

describe("real claude, merge gate", () => {
  it.scopedLive("a worker's failing change is refused with the check's output, its fix lands, main never fails the check", () =>
    failingChangeRefusedThenFixed(claudeBin), { timeout: 300_000 })
})
