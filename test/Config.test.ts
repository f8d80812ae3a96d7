import { FileSystem, Path } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import * as Config from "../src/Config.js"
import { tempDir } from "./support.js"

const SECRET = "sk-ant-TOPSECRET-0123456789abcdef"
const TOKEN = "tok-TOPSECRET-fedcba9876543210"
const BASE_URL = "https://gateway.example.test/TOPSECRET"

const minimal = { repositoryUrl: "https://example.test/org/repo.git", workerCount: 2 }
const oneKey = [{ name: "key-1", env: { ANTHROPIC_API_KEY: SECRET } }]

type Files = Readonly<Record<string, unknown>>

/** A temp config directory holding `files`; strings are written as they are, anything else as JSON. */
const configDir = (files: Files) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const dir = yield* tempDir("cco-config-")
    for (const [name, content] of Object.entries(files)) {
      const file = path.join(dir, name)
      yield* fs.makeDirectory(path.dirname(file), { recursive: true })
      yield* fs.writeFileString(file, typeof content === "string" ? content : JSON.stringify(content, null, 2))
    }
    return dir
  })

const load = (files: Files) =>
  Effect.gen(function*() {
    const dir = yield* configDir(files)
    return { dir, config: yield* Config.loadConfig(dir) }
  })

/** Loads a config that must be rejected; checks the error never shows a secret. */
const reject = (files: Files) =>
  Effect.gen(function*() {
    const dir = yield* configDir(files)
    const error = yield* Config.loadConfig(dir).pipe(Effect.flip)
    expect(error._tag).toBe("ConfigError")
    const everything = [error.summary, error.message, String(error), JSON.stringify(error), error.stack ?? ""].join("\n")
    for (const secret of [SECRET, TOKEN, BASE_URL, "TOPSECRET"]) expect(everything).not.toContain(secret)
    expect(error.summary).not.toContain("\n")
    return { dir, error, orchestrator: `${dir}/orchestrator.json`, apiKeys: `${dir}/api-keys.json` }
  })

const withNode = <A, E, R>(effect: Effect.Effect<A, E, R>) => effect.pipe(Effect.provide(NodeContext.layer))

describe("Config: rejected input gives one line naming file and field", () => {
  it.scoped("missing config directory", () =>
    withNode(Effect.gen(function*() {
      const base = yield* configDir({})
      const missing = `${base}/nope`
      const error = yield* Config.loadConfig(missing).pipe(Effect.flip)
      expect(error.file).toBe(missing)
      expect(error.field).toBeUndefined()
      expect(error.summary).toBe(`${missing}: config directory does not exist`)
    })))

  it.scoped("config path is a file, not a directory", () =>
    withNode(Effect.gen(function*() {
      const dir = yield* configDir({ "orchestrator.json": minimal })
      const error = yield* Config.loadConfig(`${dir}/orchestrator.json`).pipe(Effect.flip)
      expect(error.file).toBe(`${dir}/orchestrator.json`)
      expect(error.message).toContain("is not a directory")
    })))

  it.scoped("missing orchestrator.json", () =>
    withNode(Effect.gen(function*() {
      const { error, orchestrator } = yield* reject({ "api-keys.json": oneKey })
      expect(error.file).toBe(orchestrator)
      expect(error.field).toBeUndefined()
      expect(error.message).toContain("file not found")
    })))

  it.scoped("invalid JSON in orchestrator.json, with line and column", () =>
    withNode(Effect.gen(function*() {
      const { error, orchestrator } = yield* reject({
        "orchestrator.json": `{\n  "repositoryUrl": "https://example.test/r.git",\n  "workerCount": 2,\n}\n`
      })
      expect(error.file).toBe(orchestrator)
      expect(error.message).toBe("invalid JSON at line 4, column 1: trailing comma before '}'")
    })))

  it.scoped("empty orchestrator.json", () =>
    withNode(Effect.gen(function*() {
      const { error, orchestrator } = yield* reject({ "orchestrator.json": "  \n" })
      expect(error.file).toBe(orchestrator)
      expect(error.message).toContain("empty")
    })))

  it.scoped("orchestrator.json that is not an object", () =>
    withNode(Effect.gen(function*() {
      const { error, orchestrator } = yield* reject({ "orchestrator.json": [minimal] })
      expect(error.file).toBe(orchestrator)
      expect(error.field).toBeUndefined()
      expect(error.message).toContain("must be a JSON object")
      expect(error.message).toContain("got an array")
    })))

  it.scoped("missing required repositoryUrl", () =>
    withNode(Effect.gen(function*() {
      const { error } = yield* reject({ "orchestrator.json": { workerCount: 2 } })
      expect(error.field).toBe("repositoryUrl")
      expect(error.message).toBe("is required")
    })))

  it.scoped("workerCount of the wrong type", () =>
    withNode(Effect.gen(function*() {
      const { error, orchestrator } = yield* reject({ "orchestrator.json": { ...minimal, workerCount: "2" } })
      expect(error.summary).toBe(`${orchestrator}: workerCount: must be a whole number from 1 to 20, got "2"`)
    })))

  it.scoped("workerCount out of range", () =>
    withNode(Effect.gen(function*() {
      const high = yield* reject({ "orchestrator.json": { ...minimal, workerCount: 21 } })
      expect(high.error.field).toBe("workerCount")
      expect(high.error.message).toBe("must be a whole number from 1 to 20, got 21")
      const low = yield* reject({ "orchestrator.json": { ...minimal, workerCount: 0 } })
      expect(low.error.message).toContain("got 0")
    })))

  it.scoped("non-integer workerCount", () =>
    withNode(Effect.gen(function*() {
      const { error } = yield* reject({ "orchestrator.json": { ...minimal, workerCount: 2.5 } })
      expect(error.field).toBe("workerCount")
      expect(error.message).toBe("must be a whole number, got 2.5")
    })))

  it.scoped("unknown option close to a known one: did you mean", () =>
    withNode(Effect.gen(function*() {
      const { error, orchestrator } = yield* reject({
        "orchestrator.json": { repositoryUrl: minimal.repositoryUrl, workrCount: 2 }
      })
      expect(error.summary).toBe(`${orchestrator}: workrCount: unknown option; did you mean workerCount?`)
      const caseTypo = yield* reject({ "orchestrator.json": { ...minimal, authmode: "oauth" } })
      expect(caseTypo.error.message).toContain("did you mean authMode?")
    })))

  it.scoped("unknown option far from any known one lists the known options", () =>
    withNode(Effect.gen(function*() {
      const { error } = yield* reject({ "orchestrator.json": { ...minimal, parallelism: 3 } })
      expect(error.field).toBe("parallelism")
      expect(error.message).toContain("known: repositoryUrl, branch, workerCount")
    })))

  it.scoped("bad authMode lists the valid ones", () =>
    withNode(Effect.gen(function*() {
      const { error } = yield* reject({ "orchestrator.json": { ...minimal, authMode: "keys" } })
      expect(error.field).toBe("authMode")
      expect(error.message).toBe(`must be one of "oauth", "api-keys-first", "api-keys-only", got "keys"`)
    })))

  it.scoped("bad model", () =>
    withNode(Effect.gen(function*() {
      const { error } = yield* reject({ "orchestrator.json": { ...minimal, model: "gpt-4o" } })
      expect(error.field).toBe("model")
      expect(error.message).toContain(`"haiku", "sonnet", "opus" or a full model id`)
      expect(error.message).toContain(`got "gpt-4o"`)
    })))

  it.scoped("wrong types and ranges of the other options", () =>
    withNode(Effect.gen(function*() {
      const cases: Array<[Record<string, unknown>, string, string]> = [
        [{ useRunBranch: "yes" }, "useRunBranch", `must be true or false, got "yes"`],
        [{ maxRunDurationMinutes: 0 }, "maxRunDurationMinutes", "greater than 0, got 0"],
        [{ engineerManagerGroupSize: 0 }, "engineerManagerGroupSize", "at least 1, got 0"],
        [{ branch: "feature branch" }, "branch", "not a valid git branch name"],
        [{ repositoryUrl: "" }, "repositoryUrl", "must not be empty"],
        [{ logDirectory: 7 }, "logDirectory", "must be a directory path, got 7"],
        [{ tmuxSocket: "a/b" }, "tmuxSocket", "only letters, digits"],
        [{ claudeCommand: null }, "claudeCommand", "got null"]
      ]
      for (const [patch, field, fragment] of cases) {
        const { error } = yield* reject({ "orchestrator.json": { ...minimal, ...patch } })
        expect(error.field, JSON.stringify(patch)).toBe(field)
        expect(error.message, JSON.stringify(patch)).toContain(fragment)
      }
    })))

  it.scoped("relative repositoryUrl path that does not exist", () =>
    withNode(Effect.gen(function*() {
      const { dir, error } = yield* reject({ "orchestrator.json": { ...minimal, repositoryUrl: "../no-such-repo" } })
      expect(error.field).toBe("repositoryUrl")
      expect(error.message).toContain(`no repository at ${dir.replace(/\/[^/]+$/, "")}/no-such-repo`)
    })))

  it.scoped("api-keys-only / api-keys-first without api-keys.json", () =>
    withNode(Effect.gen(function*() {
      for (const authMode of ["api-keys-only", "api-keys-first"]) {
        const { apiKeys, error } = yield* reject({ "orchestrator.json": { ...minimal, authMode } })
        expect(error.file).toBe(apiKeys)
        expect(error.message).toContain(`authMode "${authMode}"`)
        expect(error.message).toContain("file not found")
      }
    })))

  it.scoped("api-keys.json with invalid JSON does not quote the secret", () =>
    withNode(Effect.gen(function*() {
      const { apiKeys, error } = yield* reject({
        "orchestrator.json": minimal,
        "api-keys.json": `[\n  { "name": "key-1", "env": { "ANTHROPIC_API_KEY": ${SECRET} } }\n]\n`
      })
      expect(error.file).toBe(apiKeys)
      expect(error.message).toMatch(/^invalid JSON at line 2, column 52: expected a value/)
    })))

  it.scoped("api-keys.json that is empty or not an array", () =>
    withNode(Effect.gen(function*() {
      const empty = yield* reject({ "orchestrator.json": minimal, "api-keys.json": [] })
      expect(empty.error.file).toBe(empty.apiKeys)
      expect(empty.error.message).toBe("must list at least one key")
      const object = yield* reject({ "orchestrator.json": minimal, "api-keys.json": { "key-1": SECRET } })
      expect(object.error.message).toContain("must be a JSON array")
    })))

  it.scoped("duplicate key names", () =>
    withNode(Effect.gen(function*() {
      const { apiKeys, error } = yield* reject({
        "orchestrator.json": minimal,
        "api-keys.json": [...oneKey, { name: "key-2", env: { ANTHROPIC_API_KEY: TOKEN } }, ...oneKey]
      })
      expect(error.summary).toBe(`${apiKeys}: [2].name: duplicate key name "key-1" (also at [0])`)
    })))

  it.scoped("empty secret", () =>
    withNode(Effect.gen(function*() {
      const { error } = yield* reject({
        "orchestrator.json": minimal,
        "api-keys.json": [...oneKey, { name: "key-2", env: { ANTHROPIC_API_KEY: "" } }]
      })
      expect(error.field).toBe("[1].env.ANTHROPIC_API_KEY")
      expect(error.message).toBe("must not be empty")
    })))

  it.scoped("secret of the wrong type or with whitespace is not shown", () =>
    withNode(Effect.gen(function*() {
      const number = yield* reject({
        "orchestrator.json": minimal,
        "api-keys.json": [{ name: "key-1", env: { ANTHROPIC_API_KEY: 1234567890123 } }]
      })
      expect(number.error.field).toBe("[0].env.ANTHROPIC_API_KEY")
      expect(number.error.message).toBe("must be a string")
      expect(number.error.summary).not.toContain("1234567890123")
      const spaced = yield* reject({
        "orchestrator.json": minimal,
        "api-keys.json": [{ name: "key-1", env: { ANTHROPIC_API_KEY: `${SECRET}\n` } }]
      })
      expect(spaced.error.message).toContain("must not contain spaces or line breaks")
    })))

  it.scoped("env with an unknown variable", () =>
    withNode(Effect.gen(function*() {
      const { error } = yield* reject({
        "orchestrator.json": minimal,
        "api-keys.json": [{ name: "key-1", env: { ANTHROPIC_API_KY: SECRET } }]
      })
      expect(error.field).toBe("[0].env.ANTHROPIC_API_KY")
      expect(error.message).toBe("unknown variable; did you mean ANTHROPIC_API_KEY?")
    })))

  it.scoped("env with missing or conflicting variables", () =>
    withNode(Effect.gen(function*() {
      const cases: Array<[Record<string, string>, string]> = [
        [{ ANTHROPIC_BASE_URL: BASE_URL }, "needs ANTHROPIC_API_KEY, or ANTHROPIC_AUTH_TOKEN with ANTHROPIC_BASE_URL"],
        [{}, "needs ANTHROPIC_API_KEY"],
        [{ ANTHROPIC_AUTH_TOKEN: TOKEN }, "ANTHROPIC_AUTH_TOKEN needs ANTHROPIC_BASE_URL"],
        [{ ANTHROPIC_API_KEY: SECRET, ANTHROPIC_AUTH_TOKEN: TOKEN }, "both ANTHROPIC_API_KEY and ANTHROPIC_AUTH_TOKEN"]
      ]
      for (const [env, fragment] of cases) {
        const { error } = yield* reject({ "orchestrator.json": minimal, "api-keys.json": [{ name: "k", env }] })
        expect(error.field, JSON.stringify(Object.keys(env))).toBe("[0].env")
        expect(error.message).toContain(fragment)
      }
      const badUrl = yield* reject({
        "orchestrator.json": minimal,
        "api-keys.json": [{ name: "k", env: { ANTHROPIC_AUTH_TOKEN: TOKEN, ANTHROPIC_BASE_URL: "TOPSECRET.example" } }]
      })
      expect(badUrl.error.field).toBe("[0].env.ANTHROPIC_BASE_URL")
      expect(badUrl.error.message).toBe("must be an http:// or https:// URL")
    })))

  it.scoped("entry with a misspelt or missing field", () =>
    withNode(Effect.gen(function*() {
      const typo = yield* reject({
        "orchestrator.json": minimal,
        "api-keys.json": [{ nmae: "key-1", env: { ANTHROPIC_API_KEY: SECRET } }]
      })
      expect(typo.error.field).toBe("[0].nmae")
      expect(typo.error.message).toBe("unknown field; did you mean name?")
      const missing = yield* reject({ "orchestrator.json": minimal, "api-keys.json": [{ name: "key-1" }] })
      expect(missing.error.field).toBe("[0].env")
      expect(missing.error.message).toBe("is required")
    })))
})

describe("Config: accepted input", () => {
  it.scoped("fills the defaults", () =>
    withNode(Effect.gen(function*() {
      const { config, dir } = yield* load({ "orchestrator.json": minimal })
      expect(config).toEqual({
        configDir: dir,
        repositoryUrl: minimal.repositoryUrl,
        branch: "main",
        workerCount: 2,
        useRunBranch: false,
        authMode: "oauth",
        logDirectory: dir,
        model: undefined,
        engineerManagerGroupSize: 4,
        maxRunDurationMinutes: 120,
        claudeCommand: "claude",
        tmuxSocket: "cco",
        healthCheckIntervalSeconds: 15,
        stuckAfterSeconds: 600,
        idleAfterSeconds: 300,
        escalationIntervalSeconds: 120,
        maxRestartsPerInstance: 5,
        maxCostUsd: undefined,
        maxCostUsdPerInstance: undefined,
        maxTokens: undefined,
        apiKeys: []
      })
    })))

  it.scoped("resolves a relative logDirectory and config directory", () =>
    withNode(Effect.gen(function*() {
      const dir = yield* configDir({ "cfg/orchestrator.json": { ...minimal, logDirectory: "../logs" } })
      const config = yield* Config.loadConfig(`${dir}/cfg/./`)
      expect(config.configDir).toBe(`${dir}/cfg`)
      expect(config.logDirectory).toBe(`${dir}/logs`)
    })))

  it.scoped("resolves a relative repositoryUrl path against the config directory; leaves URLs alone", () =>
    withNode(Effect.gen(function*() {
      const dir = yield* configDir({
        "cfg/orchestrator.json": { ...minimal, repositoryUrl: "../repo.git" },
        "repo.git/HEAD": "ref: refs/heads/main\n"
      })
      expect((yield* Config.loadConfig(`${dir}/cfg`)).repositoryUrl).toBe(`${dir}/repo.git`)
      for (const url of ["git@github.com:org/repo.git", "ssh://git@host/repo.git", "file:///srv/repo.git"]) {
        const { config } = yield* load({ "orchestrator.json": { ...minimal, repositoryUrl: url } })
        expect(config.repositoryUrl).toBe(url)
      }
    })))

  it.scoped("accepts model aliases and full model ids", () =>
    withNode(Effect.gen(function*() {
      for (const model of ["haiku", "sonnet", "opus", "claude-sonnet-4-5", "claude-opus-4-1-20250805"]) {
        const { config } = yield* load({ "orchestrator.json": { ...minimal, model } })
        expect(config.model).toBe(model)
      }
    })))

  it.scoped("holds API keys as Redacted and shows them redacted", () =>
    withNode(Effect.gen(function*() {
      const { config } = yield* load({
        "orchestrator.json": { ...minimal, authMode: "api-keys-first" },
        "api-keys.json": [
          ...oneKey,
          { name: "gateway", env: { ANTHROPIC_AUTH_TOKEN: TOKEN, ANTHROPIC_BASE_URL: BASE_URL } }
        ]
      })
      expect(config.authMode).toBe("api-keys-first")
      expect(config.apiKeys.map((k) => k.name)).toEqual(["key-1", "gateway"])
      const key = config.apiKeys[0]!.env["ANTHROPIC_API_KEY"]!
      expect(Redacted.isRedacted(key)).toBe(true)
      expect(Redacted.value(key)).toBe(SECRET)
      expect(Redacted.value(config.apiKeys[1]!.env["ANTHROPIC_BASE_URL"]!)).toBe(BASE_URL)
      expect(Object.keys(config.apiKeys[1]!.env).sort()).toEqual(["ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL"])
      const view = JSON.stringify(Config.redactedView(config))
      expect(view).not.toContain("TOPSECRET")
      expect(Config.redactedView(config)).toMatchObject({
        apiKeys: [
          { name: "key-1", env: { ANTHROPIC_API_KEY: "<redacted>" } },
          { name: "gateway", env: { ANTHROPIC_AUTH_TOKEN: "<redacted>", ANTHROPIC_BASE_URL: "<redacted>" } }
        ]
      })
      expect(String(config.apiKeys[0]!.env["ANTHROPIC_API_KEY"])).not.toContain("TOPSECRET")
    })))

  it.scoped("claudeCommand: a path is taken from the config directory, and the edge's override wins", () =>
    withNode(Effect.gen(function*() {
      const { config, dir } = yield* load({ "orchestrator.json": { ...minimal, claudeCommand: "./tools/claude" } })
      expect(config.claudeCommand).toBe(`${dir}/tools/claude`)
      const overridden = yield* Config.loadConfig(dir, { claudeCommand: "/opt/claude/bin/claude" })
      expect(overridden.claudeCommand).toBe("/opt/claude/bin/claude")
    })))
})
