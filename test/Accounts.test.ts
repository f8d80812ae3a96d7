// Subscription accounts in api-keys.json: the token and login-dir forms, their validation (nothing echoed), where
// they sit in the pool (tiers, the spread), and that their values are scrubbed.
import { FileSystem, Path } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Layer, Redacted } from "effect"
import { lstatSync, mkdirSync, readFileSync, readlinkSync, writeFileSync } from "node:fs"
import { homedir } from "node:os"
import * as path from "node:path"
import type { ApiKeyCredential } from "../src/ApiKeysFile.js"
import * as Auth from "../src/Auth.js"
import * as ClaudeCode from "../src/ClaudeCode.js"
import * as Config from "../src/Config.js"
import * as Doctor from "../src/Doctor.js"
import { Git } from "../src/Git.js"
import { Pool } from "../src/CredentialPool.js"
import { formatCredential } from "../src/Progress.js"
import type { RunState } from "../src/RunState.js"
import * as Secrets from "../src/Secrets.js"
import { renderStatus, type RunSnapshot, statusJson } from "../src/Status.js"
import { claudeBin, DIRECTION, makeBareRepo } from "./harness.js"
import { tempDir } from "./support.js"

const TOKEN = "sk-ant-oat01-TOPSECRET-0123456789abcdef"
const KEY = "sk-ant-api03-TOPSECRET-fedcba9876543210"
const minimal = { repositoryUrl: "https://example.test/org/repo.git", workerCount: 2 }

const withNode = <A, E, R>(effect: Effect.Effect<A, E, R>) => effect.pipe(Effect.provide(NodeContext.layer))

const configDir = (apiKeys: unknown, orchestrator: object = minimal) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const dir = yield* tempDir("cco-accounts-")
    yield* fs.writeFileString(path.join(dir, "orchestrator.json"), JSON.stringify(orchestrator))
    yield* fs.writeFileString(path.join(dir, "api-keys.json"), JSON.stringify(apiKeys))
    return dir
  })

const reject = (apiKeys: unknown) =>
  Effect.gen(function*() {
    const dir = yield* configDir(apiKeys)
    const error = yield* Config.loadConfig(dir).pipe(Effect.flip)
    const everything = [error.message, String(error), JSON.stringify(error)].join("\n")
    expect(everything).not.toContain("TOPSECRET")
    return error
  })

describe("api-keys.json: subscription forms", () => {
  it.scoped("a token entry and a login dir entry load as kinds token and login; ~ and relative dirs are resolved", () =>
    withNode(Effect.gen(function*() {
      const dir = yield* configDir([
        { name: "key-1", env: { ANTHROPIC_API_KEY: KEY } },
        { name: "max-2", env: { CLAUDE_CODE_OAUTH_TOKEN: TOKEN } },
        { name: "max-3", claudeConfigDir: "~/.claude-max-3" },
        { name: "max-4", claudeConfigDir: "logins/max-4", env: { ANTHROPIC_BASE_URL: "http://127.0.0.1:9" } }
      ])
      const config = yield* Config.loadConfig(dir)
      expect(config.apiKeys.map((k) => [k.name, k.kind, k.loginDir])).toEqual([
        ["key-1", "api-key", undefined],
        ["max-2", "token", undefined],
        ["max-3", "login", `${homedir()}/.claude-max-3`],
        ["max-4", "login", `${dir}/logins/max-4`]
      ])
      expect(Redacted.value(config.apiKeys[1]!.env.CLAUDE_CODE_OAUTH_TOKEN!)).toBe(TOKEN)
      const view = JSON.stringify(Config.redactedView(config))
      expect(view).not.toContain("TOPSECRET")
      expect(view).toContain("\"kind\":\"token\"")
    })))

  it.scoped("invalid subscription entries: clear errors naming the field, no value echoed", () =>
    withNode(Effect.gen(function*() {
      const empty = yield* reject([{ name: "max-2", env: { CLAUDE_CODE_OAUTH_TOKEN: "" } }])
      expect(empty.field).toBe("[0].env.CLAUDE_CODE_OAUTH_TOKEN")
      expect(empty.message).toContain("must not be empty")
      const both = yield* reject([{ name: "max-2", env: { CLAUDE_CODE_OAUTH_TOKEN: TOKEN, ANTHROPIC_API_KEY: KEY } }])
      expect(both.field).toBe("[0].env")
      expect(both.message).toContain("CLAUDE_CODE_OAUTH_TOKEN beside ANTHROPIC_API_KEY")
      const loginWithToken = yield* reject([{ name: "max-3", claudeConfigDir: "/x", env: { CLAUDE_CODE_OAUTH_TOKEN: TOKEN } }])
      expect(loginWithToken.field).toBe("[0].env.CLAUDE_CODE_OAUTH_TOKEN")
      expect(loginWithToken.message).toContain("not allowed beside claudeConfigDir")
      const emptyDir = yield* reject([{ name: "max-3", claudeConfigDir: " " }])
      expect(emptyDir.field).toBe("[0].claudeConfigDir")
      const typo = yield* reject([{ name: "max-3", claudeConfigDri: "/x" }])
      expect(typo.message).toBe("unknown field; did you mean claudeConfigDir?")
      const spaced = yield* reject([{ name: "max-2", env: { CLAUDE_CODE_OAUTH_TOKEN: `${TOKEN} x` } }])
      expect(spaced.message).toContain("must not contain spaces")
    })))
})

describe("the pool: subscriptions form a tier, instances spread over it", () => {
  const keys: ReadonlyArray<ApiKeyCredential> = [
    { name: "key-1", env: { ANTHROPIC_API_KEY: Redacted.make(KEY) }, kind: "api-key" as const },
    { name: "max-1", env: { CLAUDE_CODE_OAUTH_TOKEN: Redacted.make(TOKEN) }, kind: "token" as const },
    { name: "max-2", env: {}, kind: "login" as const, loginDir: "/logins/max-2" }
  ]
  it("tiers per mode; the user's own login is left out when it is not there and subscriptions are listed", () => {
    const tiers = (mode: "oauth" | "api-keys-first" | "api-keys-only", own: boolean) =>
      Either.getOrThrow(Auth.credentialsFor(mode, keys, {}, own)).map((c) => `${c.name}:${c.kind}:${c.tier}`)
    expect(tiers("oauth", true)).toEqual(["oauth:oauth:0", "max-1:token:0", "max-2:login:0", "key-1:api-key:1"])
    expect(tiers("oauth", false)).toEqual(["max-1:token:0", "max-2:login:0", "key-1:api-key:1"])
    expect(tiers("api-keys-first", false)).toEqual(["key-1:api-key:0", "max-1:token:1", "max-2:login:1"])
    expect(tiers("api-keys-only", true)).toEqual(["max-1:token:0", "max-2:login:0", "key-1:api-key:1"])
    // Without subscriptions nothing changes: the own login stays, absent or not.
    expect(Either.getOrThrow(Auth.credentialsFor("oauth", [keys[0]!], {}, false)).map((c) => c.name)).toEqual(["oauth", "key-1"])
  })

  it("new instances spread over the tier's usable credentials, a cooling one is skipped until its reset", () => {
    const credentials = Either.getOrThrow(Auth.credentialsFor("oauth", keys, {}, false))
    let state = Pool.make(credentials)
    const on: Record<string, string> = {}
    for (const i of ["a", "b", "c", "d"]) {
      const r = Either.getOrThrow(Pool.acquire(state, i, 0))
      state = r.state
      on[i] = r.credential
    }
    expect(on).toEqual({ a: "max-1", b: "max-2", c: "max-1", d: "max-2" })
    const limited = Pool.reportRateLimit(state, "max-1", 0, { resetAt: new Date(120_000) })
    expect(limited.moved).toEqual(["a", "c"])
    const moved = Either.getOrThrow(Pool.acquire(limited.state, "a", 1000))
    expect(moved.credential).toBe("max-2")
    // After the reset the account is used again.
    const after = Either.getOrThrow(Pool.acquire(moved.state, "e", 120_000))
    expect(after.credential).toBe("max-1")
  })

  it("every account cooling: the error says whether all cool until a stated reset (a usage window) or some on a backoff", () => {
    const credentials = Either.getOrThrow(Auth.credentialsFor("api-keys-only", keys.slice(1), {}, false))
    let state = Pool.make(credentials)
    state = Pool.reportRateLimit(state, "max-1", 0, { resetAt: new Date(600_000) }).state
    const windows = Pool.reportRateLimit(state, "max-2", 0, { resetAt: new Date(300_000) }).state
    const both = Pool.acquire(windows, "a", 1000)
    expect(Either.isLeft(both) && both.left._tag === "AllCredentialsCooling" && [both.left.until.getTime(), both.left.stated]).toEqual([300_000, true])
    // A bare 429 cools max-2 on a backoff: no stated reset to plan on.
    const backoff = Pool.acquire(Pool.reportRateLimit(state, "max-2", 0).state, "a", 1000)
    expect(Either.isLeft(backoff) && backoff.left._tag === "AllCredentialsCooling" && [backoff.left.until.getTime(), backoff.left.stated]).toEqual([60_000, false])
  })

  it("a token and the tokens of a login are scrubbed once remembered", () => {
    Secrets.rememberEnv("max-1", { CLAUDE_CODE_OAUTH_TOKEN: TOKEN })
    expect(Secrets.scrub(`failed with ${TOKEN}`)).toBe("failed with [redacted:max-1]")
  })
})

describe("cco status: per credential", () => {
  const state: RunState = {
    runId: "r1", runFolder: "/runs/r1", repositoryUrl: "/repo", repoDir: "/runs/r1/repo", targetBranch: "main",
    startedAt: "2026-11-28T10:00:00.000Z", deadline: "2026-11-28T12:00:00.000Z", tmuxSocket: "cco", pid: 1,
    instances: ["em-1", "worker-1", "worker-2"].map((name, i) => ({
      name, role: i === 0 ? "em" as const : "worker" as const, branch: `cco/r1/${name}`, worktree: `/w/${name}`,
      session: `cco-r1-${name}`, status: "idle", generation: 0, restarts: 0, credential: i === 1 ? "max-2" : "max-3",
      lastEventAt: "2026-11-28T10:05:00.000Z"
    })),
    board: { tasks: [] }, merges: [],
    credentials: [
      { name: "max-1", kind: "token", status: "cooling", until: "2026-11-28T10:30:00.000Z", users: 0, instances: [], limits: 1 },
      { name: "max-2", kind: "login", status: "available", users: 1, instances: ["worker-1"], limits: 0 },
      { name: "max-3", kind: "api-key", status: "invalid", reason: "Invalid API key", users: 2, instances: ["em-1", "worker-2"], limits: 0 }
    ]
  }
  const snap: RunSnapshot = { folder: "/runs/r1", state, lock: { _tag: "NoLock" }, sessions: new Set(), takenAt: Date.parse("2026-11-28T10:10:00.000Z") }

  it("the table shows each credential's kind, state, instances and limits hit; --json the same as fields", () => {
    const text = renderStatus(snap)
    const rows = text.split("\n").slice(text.split("\n").findIndex((l) => l.startsWith("CREDENTIAL")))
    expect(rows[0]).toMatch(/^CREDENTIAL\s+KIND\s+STATE\s+INSTANCES\s+LIMITS HIT$/)
    expect(rows[1]).toMatch(/^max-1\s+token\s+cooling until \S+ \S+\s+-\s+1$/)
    expect(rows[2]).toMatch(/^max-2\s+login dir\s+ok\s+1: worker-1\s+0$/)
    expect(rows[3]).toMatch(/^max-3\s+api key\s+invalid\s+2: em-1, worker-2\s+0$/)
    const json = statusJson(snap) as { credentials: Array<Record<string, unknown>> }
    expect(json.credentials.map((c) => [c.name, c.kind, c.state, c.until, c.instances, c.limits])).toEqual([
      ["max-1", "token", "cooling", "2026-11-28T10:30:00.000Z", [], 1],
      ["max-2", "login", "ok", null, ["worker-1"], 0],
      ["max-3", "api-key", "invalid", null, ["em-1", "worker-2"], 0]
    ])
  })
})

describe("cco doctor --config: each subscription account", () => {
  it.scopedLive("a token is there, a login dir holds a login or not; no value is printed", () =>
    Effect.gen(function*() {
      const root = yield* tempDir("cco-accounts-doctor-")
      const repo = makeBareRepo(root, { direction: DIRECTION })
      const logged = path.join(root, "logged-in")
      const empty = path.join(root, "empty")
      mkdirSync(logged)
      mkdirSync(empty)
      writeFileSync(path.join(logged, ".credentials.json"), JSON.stringify({ claudeAiOauth: { accessToken: TOKEN, refreshToken: `${TOKEN}-r`, expiresAt: 1 } }))
      const dir = yield* configDir([
        { name: "max-1", env: { CLAUDE_CODE_OAUTH_TOKEN: TOKEN } },
        { name: "max-2", claudeConfigDir: logged },
        { name: "max-3", claudeConfigDir: empty },
        { name: "max-4", claudeConfigDir: path.join(root, "missing") }
      ], { repositoryUrl: repo, workerCount: 2, logDirectory: "logs", authMode: "oauth" })
      const checks = yield* Doctor.runChecks({ configDir: dir, resolveClaude: () => claudeBin, nodeVersion: "20.11.0", timeout: "10 seconds" })
      const byName = Object.fromEntries(checks.map((c) => [c.name, c]))
      expect(byName["account max-1"]).toMatchObject({ level: "ok", detail: `token (CLAUDE_CODE_OAUTH_TOKEN, ${TOKEN.length} characters)` })
      expect(byName["account max-2"]).toMatchObject({ level: "ok", detail: `login dir ${logged} holds a login` })
      expect(byName["account max-3"]).toMatchObject({ level: "fail", detail: `login dir ${empty} holds no Claude login (.credentials.json)` })
      expect(byName["account max-3"]!.fix).toContain(`CLAUDE_CONFIG_DIR=${empty} claude`)
      expect(byName["account max-4"]).toMatchObject({ level: "fail", detail: `login dir ${path.join(root, "missing")} does not exist` })
      // No login of the user's own is needed when api-keys.json lists subscriptions.
      expect(byName.credentials).toMatchObject({ level: "ok", detail: "authMode oauth: 0 API keys and 4 subscription accounts in api-keys.json (no login of your own; not needed)" })
      expect(Doctor.formatChecks(checks)).not.toContain("TOPSECRET")
    }).pipe(Effect.provide(Layer.merge(NodeContext.layer, Git.Default))))
})

describe("the account dir of a login dir", () => {
  const login = (access: string, expiresAt: number) =>
    JSON.stringify({ claudeAiOauth: { accessToken: access, refreshToken: `${access}-refresh`, expiresAt } })

  it.scoped("instances on one account share its credentials file; their transcripts stay in their own config dirs; the newer login wins both ways", () =>
    withNode(Effect.gen(function*() {
      const root = yield* tempDir("cco-account-dir-")
      const loginDir = path.join(root, "login")
      const account = path.join(root, "run", "accounts", "max-1")
      mkdirSync(loginDir)
      writeFileSync(path.join(loginDir, ".credentials.json"), login("sk-ant-oat01-first-000000000000", 1_000))
      const launch = (worktree: string): ClaudeCode.InstanceLaunch => ({
        configDir: account, worktree, claudePath: "claude", continueSession: false, credentialEnv: {}, hookCommand: "hook", extraEnv: {}
      })
      const secrets = yield* ClaudeCode.prepareAccountDir(launch("/w/worker-1"), { loginDir, instanceDir: path.join(root, "i1") })
      yield* ClaudeCode.prepareAccountDir(launch("/w/worker-2"), { loginDir, instanceDir: path.join(root, "i2") })
      expect(secrets).toContain("sk-ant-oat01-first-000000000000")
      expect(readFileSync(path.join(account, ".credentials.json"), "utf8")).toBe(login("sk-ant-oat01-first-000000000000", 1_000))
      expect(lstatSync(path.join(account, ".credentials.json")).isFile()).toBe(true)
      expect(readlinkSync(path.join(account, "projects", "-w-worker-1"))).toBe(path.join(root, "i1", "projects", "-w-worker-1"))
      expect(readlinkSync(path.join(account, "projects", "-w-worker-2"))).toBe(path.join(root, "i2", "projects", "-w-worker-2"))
      const claudeJson = JSON.parse(readFileSync(path.join(account, ".claude.json"), "utf8"))
      expect(Object.keys(claudeJson.projects).sort()).toEqual(["/w/worker-1", "/w/worker-2"])
      // An instance refreshed the login in the account dir: it goes back to the login dir.
      writeFileSync(path.join(account, ".credentials.json"), login("sk-ant-oat01-second-00000000000", 2_000))
      yield* ClaudeCode.syncLogin(loginDir, account)
      expect(readFileSync(path.join(loginDir, ".credentials.json"), "utf8")).toBe(login("sk-ant-oat01-second-00000000000", 2_000))
      // Someone logged in again in the login dir: that comes in.
      writeFileSync(path.join(loginDir, ".credentials.json"), login("sk-ant-oat01-third-000000000000", 3_000))
      yield* ClaudeCode.syncLogin(loginDir, account)
      expect(readFileSync(path.join(account, ".credentials.json"), "utf8")).toBe(login("sk-ant-oat01-third-000000000000", 3_000))
    })))
})

describe("the run summary: per credential", () => {
  it("one line per credential: kind, state, instances on it, limits hit", () => {
    expect(formatCredential({ name: "max-1", kind: "token", status: "cooling", until: "2026-11-28T10:30:00.000Z", users: [], rateLimits: 1 }))
      .toBe("max-1      token      cooling until 2026-11-28T10:30:00.000Z; on it: no instances; limits hit: 1")
    expect(formatCredential({ name: "max-2", kind: "login", status: "available", users: ["em-1", "worker-2"], rateLimits: 0 }))
      .toBe("max-2      login dir  ok; on it: em-1, worker-2; limits hit: 0")
    expect(formatCredential({ name: "key-1", kind: "api-key", status: "invalid", reason: "Invalid API key", users: [], rateLimits: 0 }))
      .toBe("key-1      api key    invalid (Invalid API key); on it: no instances; limits hit: 0")
  })
})
