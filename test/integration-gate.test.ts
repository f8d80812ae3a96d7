// The merge gate (checkCommand) in a whole run with the fake agent: a worker's change that fails the project's
// check is refused with the check's output, the target branch never points at a failing commit, and the fix the
// lead asks for lands.
import { describe, it } from "@effect/vitest"
import { fakeClaudeBin } from "./harness.js"
import { failingChangeRefusedThenFixed } from "./scenarios.js"

describe("merge gate with the fake agent", () => {
  it.scopedLive("a worker's failing change is refused with the check's output, its fix lands, main never fails the check", () =>
    failingChangeRefusedThenFixed(fakeClaudeBin), { timeout: 180_000 })
})
