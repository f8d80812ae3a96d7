// The team table that `cco team status` answers agents with, and the one-line task both it and state.json use.
import { describe, expect, it } from "@effect/vitest"
import * as H from "../src/Hierarchy.js"
import { renderTeam, taskLine } from "../src/Status.js"

const at = "2026-11-28T10:00:00.000Z"

describe("renderTeam", () => {
  it("lists the target branch, then each instance's role, state, branch and latest task (first line, 60 characters)", () => {
    let board = H.assign(H.emptyBoard, "worker-1", "em-1", "Write the parser\nwith tests for every rule", at)
    board = H.markDone(board, "worker-1", "parser written", at)
    board = H.assign(board, "worker-1", "em-1", "Add error messages", at)
    board = H.assign(board, "worker-2", "em-1", "x".repeat(80), at)
    const text = renderTeam("cco/run-1", [
      { name: "em-1", role: "em", status: "busy", branch: "cco/r1/em-1" },
      { name: "worker-1", role: "worker", status: "idle", branch: "cco/r1/worker-1" },
      { name: "worker-2", role: "worker", status: "rate-limited", branch: "cco/r1/worker-2" }
    ], board)
    expect(text.split("\n")).toEqual([
      "target branch: cco/run-1",
      "em-1       em       busy         cco/r1/em-1  no task",
      "worker-1   worker   idle         cco/r1/worker-1  #2 assigned: Add error messages",
      `worker-2   worker   rate-limited cco/r1/worker-2  #3 assigned: ${"x".repeat(60)}`
    ])
  })

  it("taskLine keeps the first line of a task, cut to the width given", () => {
    const [task] = H.markDone(H.assign(H.emptyBoard, "w", "em", "first line\nsecond line", at), "w", "ok", at).tasks
    expect(taskLine(task!, 120)).toBe("#1 done: first line")
    expect(taskLine(task!, 5)).toBe("#1 done: first")
  })
})
