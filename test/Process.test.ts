// isAlive: the one check for "does this pid still run" (cco.lock's orchestrator, an agent's processes).
import { describe, expect, it } from "@effect/vitest"
import { execFileSync, spawn } from "node:child_process"
import { isAlive } from "../src/Process.js"

const stateOf = (pid: number) => {
  try {
    const stat = execFileSync("cat", [`/proc/${pid}/stat`], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] })
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3)
  } catch {
    return undefined
  }
}

describe("isAlive", () => {
  it("is true for this process and for one owned by another user (pid 1), false for pids that name no process", () => {
    expect(isAlive(process.pid)).toBe(true)
    expect(isAlive(1)).toBe(true)
    for (const pid of [0, -1, -process.pid, Number.NaN, 1.5, 2 ** 53]) expect(isAlive(pid)).toBe(false)
  })

  it("is false once a process has exited, and for an exited one its parent has not reaped yet", async () => {
    // sh starts a child that exits shortly after sh has become `sleep`, which never reaps it: the child stays a
    // zombie. (A child that exited before the exec could be reaped by sh itself.)
    const parent = spawn("sh", ["-c", "sleep 0.3 & echo $!; exec sleep 5"], { stdio: ["ignore", "pipe", "ignore"] })
    try {
      const zombie = await new Promise<number>((resolve) => parent.stdout.once("data", (d: Buffer) => resolve(Number(String(d).trim()))))
      for (let i = 0; i < 150 && stateOf(zombie) !== "Z"; i++) await new Promise((r) => setTimeout(r, 20))
      expect(stateOf(zombie)).toBe("Z")
      expect(isAlive(zombie)).toBe(false)
      expect(isAlive(parent.pid!)).toBe(true)
    } finally {
      parent.kill("SIGKILL")
    }
    await new Promise((r) => parent.once("exit", r))
    expect(isAlive(parent.pid!)).toBe(false)
  })
})
