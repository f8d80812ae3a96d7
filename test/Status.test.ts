// The team table that `cco team status` answers agents with, and the one-line task both it and state.json use.
import { describe, expect, it } from "@effect/vitest"
import * as H from "../src/Hierarchy.js"
import { renderStatus, renderTeam, statusJson, taskLine } from "../src/Status.js"

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

describe("renderStatus: the merge gate's checks", () => {
  const state = (checks?: { runs: number; passed: number; failed: number; totalMs: number }) => ({
    runId: "r1", runFolder: "/runs/r1", repositoryUrl: "/repo.git", repoDir: "/runs/r1/repo", targetBranch: "main",
    startedAt: at, deadline: "2026-11-28T12:00:00.000Z", endedAt: "2026-11-28T11:00:00.000Z", endReason: "project-done",
    tmuxSocket: "cco", pid: 1, instances: [], board: H.emptyBoard, merges: [], ...(checks === undefined ? {} : { checks })
  })
  const snap = (s: ReturnType<typeof state>) => ({ folder: "/runs/r1", state: s, lock: { _tag: "NoLock" } as const, sessions: new Set<string>(), takenAt: Date.parse(at) })

  it("shows how many checks ran, passed and failed and their time; nothing without checkCommand", () => {
    const text = renderStatus(snap(state({ runs: 5, passed: 3, failed: 2, totalMs: 250_000 })))
    expect(text).toMatch(/^checks +5 run: 3 passed, 2 failed; 4m10s in all$/m)
    expect(statusJson(snap(state({ runs: 5, passed: 3, failed: 2, totalMs: 250_000 }))).checks).toEqual({ runs: 5, passed: 3, failed: 2, totalMs: 250_000 })
    expect(renderStatus(snap(state()))).not.toMatch(/^checks/m)
  })
})
