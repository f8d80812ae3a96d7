import { FileSystem, Path } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Redacted, Schema } from "effect"
import { execFileSync } from "node:child_process"
import * as Config from "../src/Config.js"
import { OrchestratorFile } from "../src/OrchestratorFile.js"
import { readRegularFile } from "../src/RegularFile.js"
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
      expect(error.message).toBe("must be a whole number from 1 to 20, got 2.5")
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

  it.scoped("sandbox: auto by default; bwrap and none accepted; anything else lists the valid ones", () =>
    withNode(Effect.gen(function*() {
      for (const mode of ["bwrap", "none", "auto"] as const) {
        const { config } = yield* load({ "orchestrator.json": { ...minimal, sandbox: mode } })
        expect(config.sandbox).toBe(mode)
      }
      const { error } = yield* reject({ "orchestrator.json": { ...minimal, sandbox: "docker" } })
      expect(error.field).toBe("sandbox")
      expect(error.message).toBe(`must be one of "auto", "bwrap", "none", got "docker"`)
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
        [{ maxRunDurationMinutes: 0 }, "maxRunDurationMinutes", "from 0.1 to 10080 (7 days), got 0"],
        [{ engineerManagerGroupSize: 0 }, "engineerManagerGroupSize", "from 1 to 20, got 0"],
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

/** Every number of orchestrator.json: a value below, above, and (for whole numbers) between; the range the error says. */
const NUMBER_RANGES: ReadonlyArray<{ field: string; min: number; max: number; whole: boolean; range: string }> = [
  { field: "workerCount", min: 1, max: 20, whole: true, range: "a whole number from 1 to 20" },
  { field: "engineerManagerGroupSize", min: 1, max: 20, whole: true, range: "a whole number from 1 to 20" },
  { field: "maxRunDurationMinutes", min: 0.1, max: 10_080, whole: false, range: "a number of minutes from 0.1 to 10080 (7 days)" },
  { field: "healthCheckIntervalSeconds", min: 1, max: 600, whole: false, range: "a number of seconds from 1 to 600 (10 minutes)" },
  { field: "stuckAfterSeconds", min: 1, max: 86_400, whole: false, range: "a number of seconds from 1 to 86400 (a day)" },
  { field: "idleAfterSeconds", min: 1, max: 86_400, whole: false, range: "a number of seconds from 1 to 86400 (a day)" },
  { field: "escalationIntervalSeconds", min: 1, max: 3_600, whole: false, range: "a number of seconds from 1 to 3600 (an hour)" },
  { field: "maxRestartsPerInstance", min: 1, max: 100, whole: true, range: "a whole number from 1 to 100" },
  { field: "maxCostUsd", min: 0.01, max: 100_000, whole: false, range: "a number of US dollars from 0.01 to 100000" },
  { field: "maxCostUsdPerInstance", min: 0.01, max: 100_000, whole: false, range: "a number of US dollars from 0.01 to 100000" },
  { field: "maxTokens", min: 1, max: 1_000_000_000_000, whole: true, range: "a whole number from 1 to 1000000000000" },
  { field: "checkTimeoutMinutes", min: 0.05, max: 1_440, whole: false, range: "a number of minutes from 0.05 to 1440 (a day)" }
]

/** A FIFO at `file`; reading it blocks until a writer comes, which no test provides. */
const mkfifo = (file: string) => execFileSync("mkfifo", [file])

describe("Config: every number has a range, every file is a regular one, every key is given once", () => {
  it("the table covers every number of orchestrator.json: every other field refuses a number", () => {
    const numbers = NUMBER_RANGES.map((r) => r.field)
    for (const field of Object.keys(OrchestratorFile.fields)) {
      const decoded = Schema.decodeUnknownEither(OrchestratorFile)({ ...minimal, [field]: 5 })
      expect(Either.isRight(decoded), field).toBe(numbers.includes(field))
    }
  })

  it.scoped("a number outside its range, not whole where it must be, or infinite is refused with the range", () =>
    withNode(Effect.gen(function*() {
      for (const { field, max, min, range, whole } of NUMBER_RANGES) {
        const cases: Array<[string, string]> = [
          [String(min / 2 - (min === 1 ? 0.5 : 0)), String(min / 2 - (min === 1 ? 0.5 : 0))],
          [String(max * 2), String(max * 2)],
          ["1e300", "1e+300"],
          // JSON.parse makes 1e400 Infinity.
          ["1e400", "Infinity"],
          ["-5", "-5"],
          ...(whole ? [[`${min + 0.5}`, `${min + 0.5}`] as [string, string]] : [])
        ]
        for (const [json, shown] of cases) {
          const others = field === "workerCount" ? "" : `"workerCount": 2, `
          const text = `{"repositoryUrl": "${minimal.repositoryUrl}", ${others}"${field}": ${json}}`
          const { error, orchestrator } = yield* reject({ "orchestrator.json": text })
          expect(error.summary, `${field}: ${json}`).toBe(`${orchestrator}: ${field}: must be ${range}, got ${shown}`)
        }
        const wrongType = yield* reject({ "orchestrator.json": { ...minimal, [field]: "5" } })
        expect(wrongType.error.message).toBe(`must be ${range}, got "5"`)
        // Both ends are allowed.
        for (const value of [min, max]) {
          const { config } = yield* load({ "orchestrator.json": { ...minimal, [field]: value } })
          expect(config[field as keyof typeof config], `${field}: ${value}`).toBe(value)
        }
      }
    })))

  it.scoped("branch names git would refuse, or with control or invisible characters, are refused", () =>
    withNode(Effect.gen(function*() {
      const refused: Array<[string, string]> = [
        ["main\u0007", "control or invisible characters"],
        ["ma\u202ein", "control or invisible characters"],
        ["feat\u200bure", "control or invisible characters"],
        ["release\u0085", "control or invisible characters"],
        ["a\u2028b", "control or invisible characters"],
        ["a\u00a0b", "white space"],
        ["feature branch", "white space"],
        ["a~1", `contains "~"`],
        ["a^", `contains "^"`],
        ["a:b", `contains ":"`],
        ["a?", `contains "?"`],
        ["a*", `contains "*"`],
        ["a[b", `contains "["`],
        ["a\\b", `contains "\\\\"`],
        ["-x", `starts with "-"`],
        ["/x", `starts or ends with "/"`],
        ["x/", `starts or ends with "/"`],
        ["a//b", `contains "//"`],
        ["a..b", `contains ".."`],
        ["a@{1}", `contains "@{"`],
        ["@", "git reserves"],
        ["HEAD", "git reserves"],
        ["main.", `ends with "."`],
        [".hidden", `part starting with "."`],
        ["team/.x", `part starting with "."`],
        ["main.lock", `ending in ".lock"`],
        ["a.lock/b", `ending in ".lock"`],
        ["cco", `inside "cco/"`],
        ["cco/2026/director", `inside "cco/"`],
        ["x".repeat(201), "longer than 200"]
      ]
      for (const [branch, why] of refused) {
        const { error } = yield* reject({ "orchestrator.json": { ...minimal, branch } })
        expect(error.field, branch).toBe("branch")
        expect(error.message, branch).toContain("is not a valid git branch name")
        expect(error.message, branch).toContain(why)
        // The offending character is shown escaped, never as itself.
        expect(error.summary, branch).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u200b\u202e\u2028]/)
      }
      for (const branch of ["main", "feature/login", "release-1.2", "übung", "team/a.b", "run/2026-11-28"]) {
        const { config } = yield* load({ "orchestrator.json": { ...minimal, branch } })
        expect(config.branch).toBe(branch)
      }
    })))

  it.scoped("paths and names with control characters are refused and shown escaped", () =>
    withNode(Effect.gen(function*() {
      for (const field of ["logDirectory", "claudeCommand", "repositoryUrl"]) {
        const { error } = yield* reject({ "orchestrator.json": { ...minimal, [field]: "x\u001b[2Jy" } })
        expect(error.field).toBe(field)
        expect(error.message).toBe(`must not contain control or invisible formatting characters, got "x\\u001b[2Jy"`)
      }
      const long = yield* reject({ "orchestrator.json": { ...minimal, logDirectory: "d".repeat(5000) } })
      expect(long.error.message).toBe("must be at most 4096 characters, got 5000")
      // An unknown option's name is shown escaped too.
      const key = yield* reject({ "orchestrator.json": `{"repositoryUrl": "${minimal.repositoryUrl}", "workerCount": 2, "\\u001b[2J": 1}` })
      expect(key.error.field).toBe("\\u{1b}[2J")
      expect(key.error.summary).not.toContain("\u001b")
    })))

  it.scoped("a key given twice is refused with its path, in orchestrator.json and api-keys.json", () =>
    withNode(Effect.gen(function*() {
      const top = yield* reject({
        "orchestrator.json": `{\n  "repositoryUrl": "${minimal.repositoryUrl}",\n  "workerCount": 2,\n  "workerCount": 20\n}\n`
      })
      expect(top.error.summary).toBe(
        `${top.orchestrator}: workerCount: duplicate key: given at line 3, column 3 and again at line 4, column 3; give it once`
      )
      // The same key spelt with an escape is the same key.
      const escaped = yield* reject({
        "orchestrator.json": `{"repositoryUrl": "${minimal.repositoryUrl}", "workerCount": 2, "work\\u0065rCount": 3}`
      })
      expect(escaped.error.field).toBe("workerCount")
      const nested = yield* reject({
        "orchestrator.json": minimal,
        "api-keys.json": `[\n  { "name": "a", "env": { "ANTHROPIC_API_KEY": "${SECRET}" } },\n  { "name": "b", "env": {\n    "ANTHROPIC_API_KEY": "${TOKEN}",\n    "ANTHROPIC_API_KEY": "${SECRET}" } }\n]\n`
      })
      expect(nested.error.summary).toBe(
        `${nested.apiKeys}: [1].env.ANTHROPIC_API_KEY: duplicate key: given at line 4, column 5 and again at line 5, column 5; give it once`
      )
      // The same key in two different objects is fine.
      const { config } = yield* load({
        "orchestrator.json": { ...minimal, authMode: "api-keys-only" },
        "api-keys.json": [oneKey[0], { name: "key-2", env: { ANTHROPIC_API_KEY: TOKEN } }]
      })
      expect(config.apiKeys).toHaveLength(2)
    })))

  it.scoped("JSON nested deeper than any config needs is refused, not a stack overflow", () =>
    withNode(Effect.gen(function*() {
      const deep = `{"repositoryUrl": "${minimal.repositoryUrl}", "workerCount": 2, "x": ${"[".repeat(100_000)}${"]".repeat(100_000)}}`
      const { error } = yield* reject({ "orchestrator.json": deep })
      expect(error.message).toMatch(/^invalid JSON at line 1, column \d+: nested more than 256 levels deep$/)
    })))

  it.scoped("orchestrator.json or api-keys.json that is a FIFO or a directory fails at once", () =>
    withNode(Effect.gen(function*() {
      const fifo = yield* configDir({})
      mkfifo(`${fifo}/orchestrator.json`)
      const error = yield* Config.loadConfig(fifo).pipe(Effect.flip)
      expect(error.summary).toBe(`${fifo}/orchestrator.json: is a FIFO (named pipe), not a regular file`)

      const keys = yield* configDir({ "orchestrator.json": { ...minimal, authMode: "api-keys-only" } })
      mkfifo(`${keys}/api-keys.json`)
      const keysError = yield* Config.loadConfig(keys).pipe(Effect.flip)
      expect(keysError.summary).toBe(`${keys}/api-keys.json: is a FIFO (named pipe), not a regular file`)

      const dir = yield* configDir({ "orchestrator.json/x": "" })
      const dirError = yield* Config.loadConfig(dir).pipe(Effect.flip)
      expect(dirError.summary).toBe(`${dir}/orchestrator.json: is a directory, not a regular file`)

      const big = yield* reject({ "orchestrator.json": `{"repositoryUrl": "${minimal.repositoryUrl}", "workerCount": 2}${" ".repeat(1024 * 1024)}` })
      expect(big.error.message).toBe("is larger than 1 MiB")
    })), 15_000)

  it.scoped("readRegularFile: a symbolic link to a regular file is read, the bound is exact, a FIFO behind a link is refused", () =>
    withNode(Effect.gen(function*() {
      const fs = yield* FileSystem.FileSystem
      const dir = yield* configDir({ "ten.txt": "0123456789" })
      yield* fs.symlink(`${dir}/ten.txt`, `${dir}/link`)
      expect(yield* readRegularFile(`${dir}/link`, 10)).toBe("0123456789")
      const over = yield* readRegularFile(`${dir}/ten.txt`, 9).pipe(Effect.flip)
      expect([over.reason, over.message]).toEqual(["TooLarge", "is larger than 9 bytes"])
      mkfifo(`${dir}/pipe`)
      yield* fs.symlink(`${dir}/pipe`, `${dir}/pipe-link`)
      const fifo = yield* readRegularFile(`${dir}/pipe-link`, 10).pipe(Effect.flip)
      expect(fifo.reason).toBe("NotRegular")
      const missing = yield* readRegularFile(`${dir}/nope`, 10).pipe(Effect.flip)
      expect(missing.reason).toBe("NotFound")
    })), 15_000)
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
        setupCommand: undefined,
        checkCommand: undefined,
        checkTimeoutMinutes: 15,
        sandbox: "auto",
        notify: [],
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

  it.scoped("setupCommand and checkCommand: shell commands kept as written; empty ones and typos refused", () =>
    withNode(Effect.gen(function*() {
      const { config } = yield* load({ "orchestrator.json": { ...minimal, setupCommand: "npm ci", checkCommand: "npm test && npm run lint", checkTimeoutMinutes: 5 } })
      expect([config.setupCommand, config.checkCommand, config.checkTimeoutMinutes]).toEqual(["npm ci", "npm test && npm run lint", 5])
      expect(Config.redactedView(config)).toMatchObject({ setupCommand: "npm ci", checkCommand: "npm test && npm run lint", checkTimeoutMinutes: 5 })
      const empty = yield* reject({ "orchestrator.json": { ...minimal, checkCommand: "  " } })
      expect([empty.error.field, empty.error.message]).toEqual(["checkCommand", "must not be empty"])
      const typo = yield* reject({ "orchestrator.json": { ...minimal, chekCommand: "npm test" } })
      expect([typo.error.field, typo.error.message]).toEqual(["chekCommand", "unknown option; did you mean checkCommand?"])
      const notText = yield* reject({ "orchestrator.json": { ...minimal, setupCommand: ["npm", "ci"] } })
      expect(notText.error.field).toBe("setupCommand")
    })))

  it.scoped("claudeCommand: a path is taken from the config directory, and the edge's override wins", () =>
    withNode(Effect.gen(function*() {
      const { config, dir } = yield* load({ "orchestrator.json": { ...minimal, claudeCommand: "./tools/claude" } })
      expect(config.claudeCommand).toBe(`${dir}/tools/claude`)
      const overridden = yield* Config.loadConfig(dir, { claudeCommand: "/opt/claude/bin/claude" })
      expect(overridden.claudeCommand).toBe("/opt/claude/bin/claude")
    })))
})
