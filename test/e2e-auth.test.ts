// Credential rotation with the real claude: a key that hits its rate limit mid-task, and a key that is invalid.
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { execFileSync } from "node:child_process"
import { readdirSync, readFileSync } from "node:fs"
import * as path from "node:path"
import { startMockModel } from "../src/MockModel.js"
import { rateLimitKey, rejectKey, teamScript, usageLimitToken } from "../src/TeamScript.js"
import { claudeBin, filesOn, useFixture, readLog, runFixture } from "./harness.js"

// The fixture's keys (see makeFixture).
const key = (n: number) => `sk-ant-test-key-${n}-${"x".repeat(24)}`
const keyNames = { [key(1)]: "key-1", [key(2)]: "key-2" }

/** Every log and state file of a run: none may hold a key or its tail. */
const assertNoSecrets = (runFolder: string) => {
  const files = readdirSync(runFolder).filter((f) => f.endsWith(".log") || f.endsWith(".json"))
  for (const f of files) {
    const text = readFileSync(path.join(runFolder, f), "utf8")
    for (const n of [1, 2]) {
      expect(text, f).not.toContain(key(n))
      expect(text, f).not.toContain(key(n).slice(-20))
    }
  }
}

describe("auth rotation, real claude", () => {
  it.scopedLive("key-1 hits a 429 mid-task: its instances move to key-2 with --continue and the work lands; key-1 is left alone", () =>
    Effect.gen(function*() {
      const brain = rateLimitKey(teamScript(), { apiKey: key(1), afterRequests: 2, retryAfterSeconds: 600 })
      const mock = yield* startMockModel({ brain, keyNames })
      const fixture = yield* useFixture({ workerCount: 2, mockUrl: mock.url, keys: 2, extra: { healthCheckIntervalSeconds: 1 } })
      const summary = yield* runFixture(fixture, claudeBin)
      expect(summary.reason).toBe("project-done")
      const log = readLog(summary.runFolder)
      expect(log.find((l) => l.event === "credential.cooling")).toMatchObject({ credential: "key-1", reason: "rate limit" })
      const rotated = log.filter((l) => l.event === "credential.rotated")
      expect(rotated.length).toBeGreaterThan(0)
      for (const r of rotated) expect(r).toMatchObject({ from: "key-1", to: "key-2" })
      // An instance moved in the middle of its conversation went on with it (--continue), and its work landed. (Its
      // neighbours on key-1 that had no conversation yet start afresh on key-2.)
      const moved = new Set(rotated.map((r) => String(r.instance)))
      expect(log.some((l) => l.event === "instance.launched" && moved.has(String(l.instance)) && l.resume === true && l.credential === "key-2")).toBe(true)
      const files = filesOn(fixture.bare, "main")
      expect(files).toContain("src/em-1/worker-1.js")
      expect(files).toContain("src/em-1/worker-2.js")
      // After its 429, key-1 got no further request (its reset is ten minutes away).
      const records = yield* mock.requests
      const first429 = records.findIndex((r) => r.key === "key-1" && r.reply === "Error")
      expect(first429).toBeGreaterThanOrEqual(0)
      expect(records.slice(first429 + 1).filter((r) => r.key === "key-1")).toEqual([])
      assertNoSecrets(summary.runFolder)
    }), { timeout: 180_000 })

  it.scopedLive("an invalid key (401) is dropped for the run, named in the log, and its instances move on", () =>
    Effect.gen(function*() {
      const mock = yield* startMockModel({ brain: rejectKey(teamScript(), key(1)), keyNames })
      const fixture = yield* useFixture({ workerCount: 2, mockUrl: mock.url, keys: 2, extra: { healthCheckIntervalSeconds: 1 } })
      const summary = yield* runFixture(fixture, claudeBin)
      expect(summary.reason).toBe("project-done")
      const log = readLog(summary.runFolder)
      expect(log.find((l) => l.event === "credential.invalid")).toMatchObject({ credential: "key-1" })
      expect(log.filter((l) => l.event === "credential.rotated").every((l) => l.from === "key-1" && l.to === "key-2")).toBe(true)
      const state = JSON.parse(readFileSync(path.join(summary.runFolder, "state.json"), "utf8")) as { credentials: Array<{ name: string; status: string }> }
      expect(state.credentials.find((c) => c.name === "key-1")?.status).toBe("invalid")
      expect(filesOn(fixture.bare, "main")).toContain("src/em-1/worker-2.js")
      assertNoSecrets(summary.runFolder)
    }), { timeout: 180_000 })

  it.scopedLive("subscription tokens: a usage-limit reply on max-1 cools it until the stated reset and moves its instances to max-2; no token in argv, logs or state", () =>
    Effect.gen(function*() {
      const token = (n: number) => `sk-ant-oat01-e2e-${n}-${"t".repeat(40)}`
      // Two hours ahead, on a whole minute: what the CLI's "resets 12:51am (UTC)" can say exactly.
      const resetAt = Math.ceil((Date.now() + 2 * 3_600_000) / 60_000) * 60_000
      const brain = usageLimitToken(teamScript(), { token: token(1), afterRequests: 2, resetAt })
      const mock = yield* startMockModel({ brain, keyNames: { [token(1)]: "max-1", [token(2)]: "max-2" } })
      const fixture = yield* useFixture({
        workerCount: 2,
        mockUrl: mock.url,
        accounts: [1, 2].map((n) => ({ name: `max-${n}`, env: { CLAUDE_CODE_OAUTH_TOKEN: token(n), ANTHROPIC_BASE_URL: mock.url } })),
        extra: { healthCheckIntervalSeconds: 1 }
      })
      // What every process on the machine shows as its command line while the instances run.
      const argvs: Array<string> = []
      const summary = yield* runFixture(fixture, claudeBin, (line) => {
        if (line.event === "instance.launched" || line.event === "credential.rotated") argvs.push(execFileSync("ps", ["-eo", "args"], { encoding: "utf8" }))
      })
      expect(summary.reason).toBe("project-done")
      const log = readLog(summary.runFolder)
      expect(log.find((l) => l.event === "credential.cooling")).toMatchObject({
        credential: "max-1",
        reason: "usage limit",
        until: new Date(resetAt).toISOString()
      })
      const rotated = log.filter((l) => l.event === "credential.rotated")
      expect(rotated.length).toBeGreaterThan(0)
      for (const r of rotated) expect(r).toMatchObject({ from: "max-1", to: "max-2" })
      expect(filesOn(fixture.bare, "main")).toEqual(expect.arrayContaining(["src/em-1/worker-1.js", "src/em-1/worker-2.js"]))
      const records = yield* mock.requests
      const limited = records.findIndex((r) => r.key === "max-1" && r.reply === "Error")
      expect(limited).toBeGreaterThanOrEqual(0)
      expect(records.slice(limited + 1).filter((r) => r.key === "max-1" && r.method === "POST")).toEqual([])
      for (const text of [...argvs, ...readdirSync(summary.runFolder).filter((f) => f.endsWith(".log") || f.endsWith(".json")).map((f) => readFileSync(path.join(summary.runFolder, f), "utf8"))]) {
        for (const n of [1, 2]) {
          expect(text).not.toContain(token(n))
          expect(text).not.toContain(token(n).slice(-20))
        }
      }
    }), { timeout: 240_000 })
})
