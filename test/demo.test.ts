// The demo script itself, smaller: `npm run demo` cannot rot.
import { describe, expect, it } from "@effect/vitest"
import { execFile } from "node:child_process"
import * as path from "node:path"
import { projectRoot } from "./harness.js"

describe("npm run demo", () => {
  it("runs a whole orchestration with the real claude and reports every worker's module on the target branch", async () => {
    const result = await new Promise<{ code: number; out: string }>((resolve) => {
      execFile(
        process.execPath,
        ["--import", "tsx", path.join(projectRoot, "scripts", "demo.ts"), "--workers", "3"],
        { cwd: projectRoot, timeout: 240_000, maxBuffer: 16 * 1024 * 1024 },
        (error, stdout, stderr) => resolve({ code: error ? (typeof error.code === "number" ? error.code : 1) : 0, out: stdout + stderr })
      )
    })
    expect(result.out).toContain("ready (")
    expect(result.out).toMatch(/Run \S+ ended: project-done/)
    expect(result.out).toMatch(/demo finished in \d+ s: every worker's module is on run\//)
    expect(result.code).toBe(0)
  }, 300_000)
})
