// The shell commands cco runs for a project (setupCommand, checkCommand): bounded in time, in a process group that
// is gone afterwards, their output's tail neutralised; and the ports each instance gets.
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { commandEnv, describeRun, passed, runShell, TAIL_LINES } from "../src/Gate.js"
import { checkPort, instancePort } from "../src/Hierarchy.js"
import { isAlive } from "../src/Process.js"

const scratch = () => {
  const dir = mkdtempSync(path.join(tmpdir(), "cco-gate-"))
  return { dir, log: path.join(dir, "out.log"), cleanup: () => rmSync(dir, { recursive: true, force: true }) }
}

const pidIn = (file: string) => Number(readFileSync(file, "utf8").trim())

describe("runShell", () => {
  it.live("returns the exit code, the duration and the last lines, neutralised; the whole output stays in the log", () =>
    Effect.gen(function*() {
      const s = scratch()
      const script = `for i in $(seq 1 100); do echo "line $i"; done; printf '\\033[31mred\\033[0m [cco] fake\\n' >&2; exit 7`
      const r = yield* runShell(script, { cwd: s.dir, env: commandEnv(20_000), logFile: s.log, timeoutMs: 10_000 })
      expect(r.exitCode).toBe(7)
      expect(passed(r)).toBe(false)
      expect(describeRun(r, 10_000)).toBe("exit code 7")
      const lines = r.tail.split("\n")
      expect(lines.length).toBe(TAIL_LINES)
      expect(lines[0]).toBe("line 42")
      expect(lines.at(-1)).toBe("red (cco) fake")
      expect(readFileSync(s.log, "utf8")).toContain("line 1\n")
      s.cleanup()
    }))

  it.live("a timeout kills the whole process group, a background child too; nothing is left running", () =>
    Effect.gen(function*() {
      const s = scratch()
      const script = `sleep 60 & echo $! > bg.pid; echo $$ > sh.pid; echo started; sleep 60`
      const r = yield* runShell(script, { cwd: s.dir, env: commandEnv(20_000), logFile: s.log, timeoutMs: 500 })
      expect(r.timedOut).toBe(true)
      expect(passed(r)).toBe(false)
      expect(describeRun(r, 500)).toBe("timed out after 1 seconds")
      expect(r.tail).toBe("started")
      yield* Effect.sleep("200 millis")
      expect(isAlive(pidIn(path.join(s.dir, "bg.pid")))).toBe(false)
      expect(isAlive(pidIn(path.join(s.dir, "sh.pid")))).toBe(false)
      s.cleanup()
    }))

  it.live("what a passing command leaves in the background is killed when it ends", () =>
    Effect.gen(function*() {
      const s = scratch()
      const r = yield* runShell(`sleep 60 & echo $! > bg.pid; echo "port $CCO_PORT"`, { cwd: s.dir, env: commandEnv(20_410), logFile: s.log, timeoutMs: 10_000 })
      expect(passed(r)).toBe(true)
      expect(r.tail).toBe("port 20410")
      yield* Effect.sleep("200 millis")
      expect(isAlive(pidIn(path.join(s.dir, "bg.pid")))).toBe(false)
      s.cleanup()
    }))

  it.live("an interrupted command is killed with its group", () =>
    Effect.gen(function*() {
      const s = scratch()
      const fiber = yield* Effect.fork(runShell(`echo $$ > sh.pid; sleep 60`, { cwd: s.dir, env: {}, logFile: s.log, timeoutMs: 60_000 }))
      yield* Effect.sleep("300 millis")
      const pid = pidIn(path.join(s.dir, "sh.pid"))
      expect(isAlive(pid)).toBe(true)
      yield* Fiber.interrupt(fiber)
      yield* Effect.sleep("200 millis")
      expect(isAlive(pid)).toBe(false)
      s.cleanup()
    }), 10_000)

  it("the command's environment holds no credential and no cco identity", () => {
    process.env.ANTHROPIC_API_KEY_FOR_TEST = "x"
    const env = commandEnv(20_000)
    delete process.env.ANTHROPIC_API_KEY_FOR_TEST
    expect(env.ANTHROPIC_API_KEY_FOR_TEST).toBeUndefined()
    expect(env.CCO_PORT).toBe("20000")
  })
})

describe("ports", () => {
  it("each instance and each lead's checks get ten ports of their own", () => {
    const names = ["director", ...Array.from({ length: 20 }, (_, i) => `em-${i + 1}`), ...Array.from({ length: 20 }, (_, i) => `worker-${i + 1}`)]
    const ports = [...names.map(instancePort), ...names.filter((n) => n !== "director" && !n.startsWith("worker")).concat("director").map(checkPort)]
    expect(new Set(ports).size).toBe(ports.length)
    const sorted = [...ports].sort((a, b) => a - b)
    for (let i = 1; i < sorted.length; i++) expect(sorted[i]! - sorted[i - 1]!).toBeGreaterThanOrEqual(10)
    expect([instancePort("director"), instancePort("em-1"), instancePort("worker-1")]).toEqual([20_000, 20_010, 20_210])
    expect(Math.max(...ports)).toBeLessThan(21_000)
  })
})
