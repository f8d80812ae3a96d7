// api-keys.json: its Schema (no message here may show a value: any of them can be a secret) and the credentials
// it lists, Redacted from the moment they are read.
import { Redacted, Schema } from "effect"
import { expected, show } from "./ConfigError.js"

export const API_KEYS_FILE = "api-keys.json"

/**
 * What an entry is: an API key (ANTHROPIC_API_KEY, or ANTHROPIC_AUTH_TOKEN for a gateway), a subscription's
 * long-lived token (CLAUDE_CODE_OAUTH_TOKEN from `claude setup-token`), or a subscription's login dir (a
 * CLAUDE_CONFIG_DIR where someone ran `claude` and `/login` once).
 */
export type EntryKind = "api-key" | "token" | "login"

export interface ApiKeyCredential {
  readonly name: string
  readonly env: Readonly<Record<string, Redacted.Redacted<string>>>
  /** Absent in entries decoded before subscription forms existed: "api-key". */
  readonly kind?: EntryKind
  /** A login dir's absolute path (kind "login"). */
  readonly loginDir?: string
}

/** The kind of an entry, "api-key" when it does not say. */
export const kindOf = (c: ApiKeyCredential): EntryKind => c.kind ?? "api-key"

const secretMessage = (what: string) => () => `must be ${what}`

const SecretText = Schema.String.annotations({ message: secretMessage("a string") }).pipe(
  Schema.filter((s) => s.length > 0 || "must not be empty"),
  Schema.filter((s) => !/\s/.test(s) || "must not contain spaces or line breaks")
)

const Secret = Schema.Redacted(SecretText)

const BaseUrl = Schema.Redacted(
  SecretText.pipe(Schema.filter((s) => /^https?:\/\/[^\s/]+/.test(s) || "must be an http:// or https:// URL"))
)

export const EnvFields = {
  ANTHROPIC_API_KEY: Schema.optional(Secret),
  ANTHROPIC_AUTH_TOKEN: Schema.optional(Secret),
  ANTHROPIC_BASE_URL: Schema.optional(BaseUrl),
  CLAUDE_CODE_OAUTH_TOKEN: Schema.optional(Secret)
}

const CREDENTIAL_VARIABLES = ["ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN"] as const

const hasCredentialVariable = (env: { readonly [K in typeof CREDENTIAL_VARIABLES[number]]?: unknown }) =>
  CREDENTIAL_VARIABLES.some((name) => env[name] !== undefined)

const KeyEnv = Schema.Struct(EnvFields).annotations({
  message: secretMessage("an object of environment variables")
}).pipe(
  Schema.filter((env) => {
    const key = env.ANTHROPIC_API_KEY !== undefined
    const token = env.ANTHROPIC_AUTH_TOKEN !== undefined
    if (key && token) return "has both ANTHROPIC_API_KEY and ANTHROPIC_AUTH_TOKEN; give one of them"
    if (env.CLAUDE_CODE_OAUTH_TOKEN !== undefined && (key || token)) {
      return `has CLAUDE_CODE_OAUTH_TOKEN beside ${key ? "ANTHROPIC_API_KEY" : "ANTHROPIC_AUTH_TOKEN"}; give one of them (one entry per account)`
    }
    if (token && env.ANTHROPIC_BASE_URL === undefined) return "ANTHROPIC_AUTH_TOKEN needs ANTHROPIC_BASE_URL beside it"
    return true
  })
)

const KeyName = Schema.String.annotations({ message: expected("a name") }).pipe(
  Schema.filter((s) => s.length > 0 || "must not be empty"),
  Schema.filter((s) =>
    /^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(s) ||
    `must start with a letter or digit and use only letters, digits, ".", "_" and "-", got ${show(s)}`
  )
)

/** A login dir: `~/…`, an absolute path, or a path taken from the config directory. */
const LoginDir = Schema.String.annotations({ message: expected("a directory path") }).pipe(
  Schema.filter((s) => s.trim().length > 0 || "must not be empty"),
  Schema.filter((s) => s.length <= 4096 || "must be at most 4096 characters"),
  Schema.filter((s) => !/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u.test(s) || "must not contain control or invisible formatting characters")
)

const ApiKeyEntry = Schema.Struct({ name: KeyName, env: Schema.optional(KeyEnv), claudeConfigDir: Schema.optional(LoginDir) })
  .annotations({
    message: secretMessage("an object { \"name\": ..., \"env\": { ... } } or { \"name\": ..., \"claudeConfigDir\": \"...\" }")
  }).pipe(
    Schema.filter((entry) => {
      if (entry.claudeConfigDir !== undefined) {
        // A login dir holds its own credential; env may only say where the API is (a gateway, a test's mock).
        const extra = entry.env === undefined ? undefined : CREDENTIAL_VARIABLES.find((name) => entry.env![name] !== undefined)
        return extra === undefined ||
          { path: ["env", extra], message: "is not allowed beside claudeConfigDir: a login dir holds its own credential" }
      }
      if (entry.env === undefined) return { path: ["env"], message: "is required" }
      return hasCredentialVariable(entry.env) || {
        path: ["env"],
        message: "needs ANTHROPIC_API_KEY, or ANTHROPIC_AUTH_TOKEN with ANTHROPIC_BASE_URL, or CLAUDE_CODE_OAUTH_TOKEN " +
          "(or give claudeConfigDir instead of env)"
      }
    })
  )

/** api-keys.json as written: a non-empty array of named credentials. */
export const ApiKeysFile = Schema.Array(ApiKeyEntry).annotations({
  message: secretMessage("a JSON array of { \"name\": ..., \"env\": { ... } } entries")
}).pipe(
  Schema.filter((entries) => entries.length > 0 || "must list at least one key"),
  Schema.filter((entries) => {
    const seen = new Map<string, number>()
    for (const [i, entry] of entries.entries()) {
      const first = seen.get(entry.name)
      if (first !== undefined) {
        return { path: [i, "name"], message: `duplicate key name ${show(entry.name)} (also at [${first}])` }
      }
      seen.set(entry.name, i)
    }
    return true
  })
)

/** The keys an entry and its env may have, for "did you mean". */
export const ENTRY_KEYS = ["name", "env", "claudeConfigDir"]
export const ENV_KEYS = Object.keys(EnvFields)

/**
 * Decoded api-keys entries as credentials (only the variables that are set); `resolveDir` makes a login dir
 * absolute (`~` is the home directory, a relative path is taken from the config directory).
 */
export const toCredentials = (
  entries: typeof ApiKeysFile.Type,
  resolveDir: (dir: string) => string = (dir) => dir
): ReadonlyArray<ApiKeyCredential> =>
  entries.map((entry): ApiKeyCredential => {
    const env: Record<string, Redacted.Redacted<string>> = {}
    for (const [name, value] of Object.entries(entry.env ?? {})) {
      if (value !== undefined) env[name] = value
    }
    if (entry.claudeConfigDir !== undefined) {
      return { name: entry.name, env, kind: "login", loginDir: resolveDir(entry.claudeConfigDir) }
    }
    return { name: entry.name, env, kind: env.CLAUDE_CODE_OAUTH_TOKEN !== undefined ? "token" : "api-key" }
  })
