// Subscription login dirs with the fake agent: every instance on one login-dir account shares one config dir for
// the account (one credentials file), so when the access token runs out exactly one of them refreshes it and the
// others read what it wrote. The fake agent refreshes as the real CLI does (a lock on the file's real path, a
// second look under the lock, single-use refresh tokens, temp file + rename); the mock logs out whoever presents a
// used refresh token or an expired access token.
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { makeMockOAuth, startMockModel } from "../src/MockModel.js"
import { teamScript, usageLimitToken } from "../src/TeamScript.js"
import { fakeClaudeBin, filesOn, readLog, runFixture, useFixture } from "./harness.js"

const loginDirWith = (login: { readonly accessToken: string; readonly refreshToken: string; readonly expiresAt: number }) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const dir = mkdtempSync(path.join(tmpdir(), "cco-login-"))
      mkdirSync(dir, { recursive: true })
      writeFileSync(
        path.join(dir, ".credentials.json"),
        JSON.stringify({ claudeAiOauth: { ...login, scopes: ["user:inference"], subscriptionType: "max" } }),
        { mode: 0o600 }
      )
      return dir
    }),
    (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
  )

/** Every file under `dir`, as text (what cco wrote in the run folder: logs, state, pane logs, configs). */
const textsUnder = (dir: string, skip: (file: string) => boolean): ReadonlyArray<readonly [string, string]> =>
  readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.join(e.parentPath, e.name))
    .filter((f) => !skip(f))
    .map((f) => [f, readFileSync(f, "latin1")] as const)

describe("login dirs with the fake agent", () => {
  it.scopedLive("three instances on one login dir whose token expires every second and a half: one refresher at a time, nobody logged out", () =>
    Effect.gen(function*() {
      const oauth = makeMockOAuth({ ttlMs: 1_500 })
      const mock = yield* startMockModel({ brain: teamScript(), oauth })
      const loginDir = yield* loginDirWith(oauth.issue("max-1"))
      const fixture = yield* useFixture({
        workerCount: 2,
        mockUrl: mock.url,
        accounts: [{ name: "max-1", claudeConfigDir: loginDir, env: { ANTHROPIC_BASE_URL: mock.url } }],
        extra: { healthCheckIntervalSeconds: 1 }
      })
      const summary = yield* runFixture(fixture, fakeClaudeBin)
      expect(summary.reason).toBe("project-done")
      expect(filesOn(fixture.bare, "main")).toEqual(expect.arrayContaining(["src/em-1/worker-1.js", "src/em-1/worker-2.js"]))
      const stats = oauth.stats()
      // The token ran out during the run and was refreshed, never with a refresh token already used, and no
      // request went out with an expired token.
      expect(stats.refreshes).toBeGreaterThanOrEqual(2)
      expect(stats).toMatchObject({ reused: 0, expiredRequests: 0 })
      const log = readLog(summary.runFolder)
      expect(log.filter((l) => l.event === "credential.invalid" || l.event === "api.error-unconfirmed")).toEqual([])
      expect(summary.credentials).toEqual([expect.objectContaining({ name: "max-1", kind: "login", status: "available" })])
      // All three ran on the account's one config dir.
      const launched = log.filter((l) => l.event === "instance.launched").map((l) => l.credential)
      expect(launched.length).toBeGreaterThanOrEqual(3)
      expect(new Set(launched)).toEqual(new Set(["max-1"]))
      // The login dir holds the newest login after the run: its refresh token still works.
      const after = JSON.parse(readFileSync(path.join(loginDir, ".credentials.json"), "utf8")).claudeAiOauth
      expect(oauth.refresh(after.refreshToken)).toBeDefined()
      // No token shows in what cco wrote, except the account's credentials file itself.
      const issued = oauth.issued()
      for (const [file, text] of textsUnder(summary.runFolder, (f) => f.endsWith(".credentials.json") || f.includes("/worktrees/") || f.endsWith(".jsonl"))) {
        for (const token of issued) expect(text.includes(token), `${token.slice(0, 20)}… in ${file}`).toBe(false)
      }
      // Each instance's transcripts stay in its own config dir (costs are counted per instance).
      expect(summary.costs.instances.filter((c) => c.usd > 0).map((c) => c.name).sort()).toEqual(["em-1", "worker-1", "worker-2"])
    }), { timeout: 180_000 })

  it.scopedLive("two subscription tokens: a usage-limit reply on max-1 cools it until the stated reset, its instances move to max-2 and the run completes", () =>
    Effect.gen(function*() {
      const token = (n: number) => `sk-ant-oat01-fake-${n}-${"t".repeat(40)}`
      const resetAt = Math.ceil((Date.now() + 2 * 3_600_000) / 60_000) * 60_000
      const mock = yield* startMockModel({
        brain: usageLimitToken(teamScript(), { token: token(1), afterRequests: 2, resetAt }),
        keyNames: { [token(1)]: "max-1", [token(2)]: "max-2" }
      })
      const fixture = yield* useFixture({
        workerCount: 2,
        mockUrl: mock.url,
        accounts: [1, 2].map((n) => ({ name: `max-${n}`, env: { CLAUDE_CODE_OAUTH_TOKEN: token(n), ANTHROPIC_BASE_URL: mock.url } })),
        extra: { healthCheckIntervalSeconds: 1 }
      })
      const summary = yield* runFixture(fixture, fakeClaudeBin)
      expect(summary.reason).toBe("project-done")
      const log = readLog(summary.runFolder)
      expect(log.filter((l) => l.event === "api.error-unconfirmed")).toEqual([])
      expect(log.find((l) => l.event === "credential.cooling")).toMatchObject({ credential: "max-1", reason: "usage limit", until: new Date(resetAt).toISOString() })
      const rotated = log.filter((l) => l.event === "credential.rotated")
      expect(rotated.length).toBeGreaterThan(0)
      for (const r of rotated) expect(r).toMatchObject({ from: "max-1", to: "max-2" })
      const records = yield* mock.requests
      const limited = records.findIndex((r) => r.key === "max-1" && r.reply === "Error")
      expect(records.slice(limited + 1).filter((r) => r.key === "max-1" && r.method === "POST")).toEqual([])
      expect(summary.credentials.map((c) => [c.name, c.kind, c.status, c.rateLimits])).toEqual([["max-1", "token", "cooling", 1], ["max-2", "token", "available", 0]])
      for (const [file, text] of textsUnder(summary.runFolder, (f) => f.includes("/worktrees/") || f.endsWith(".jsonl"))) {
        for (const n of [1, 2]) expect(text.includes(token(n)), `token ${n} in ${file}`).toBe(false)
      }
    }), { timeout: 180_000 })
})
