// RunError's reason is one of the steps a run can fail at, so callers can match on it exhaustively.
import { describe, expect, it } from "@effect/vitest"
import { Either, Schema } from "effect"
import { RunError } from "../src/Orchestrator.js"

describe("RunError", () => {
  it("takes the reasons a run fails with and refuses any other", () => {
    const decode = Schema.decodeUnknownEither(RunError)
    for (const reason of ["preflight", "resume", "no-direction", "auth", "failed"]) {
      expect(Either.isRight(decode({ _tag: "RunError", reason, message: "m" }))).toBe(true)
    }
    expect(Either.isLeft(decode({ _tag: "RunError", reason: "typo-reason", message: "m" }))).toBe(true)
    expect(new RunError({ reason: "git", message: "merge in /r: conflict" }).message).toBe("merge in /r: conflict")
  })
})
