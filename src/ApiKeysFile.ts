// api-keys.json: its Schema (no message here may show a value: any of them can be a secret) and the credentials
// it lists, Redacted from the moment they are read.
import { Redacted, Schema } from "effect"
import { expected, show } from "./ConfigError.js"

export const API_KEYS_FILE = "api-keys.json"

export interface ApiKeyCredential {
  readonly name: string
  readonly env: Readonly<Record<string, Redacted.Redacted<string>>>
}

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
  ANTHROPIC_BASE_URL: Schema.optional(BaseUrl)
}

const KeyEnv = Schema.Struct(EnvFields).annotations({
  message: secretMessage("an object of environment variables")
}).pipe(
  Schema.filter((env) => {
    const key = env.ANTHROPIC_API_KEY !== undefined
    const token = env.ANTHROPIC_AUTH_TOKEN !== undefined
    if (key && token) return "has both ANTHROPIC_API_KEY and ANTHROPIC_AUTH_TOKEN; give one of them"
    if (token && env.ANTHROPIC_BASE_URL === undefined) return "ANTHROPIC_AUTH_TOKEN needs ANTHROPIC_BASE_URL beside it"
    if (!key && !token) {
      return "needs ANTHROPIC_API_KEY, or ANTHROPIC_AUTH_TOKEN with ANTHROPIC_BASE_URL"
    }
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

const ApiKeyEntry = Schema.Struct({ name: KeyName, env: KeyEnv }).annotations({
  message: secretMessage("an object { \"name\": ..., \"env\": { ... } }")
})

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
export const ENTRY_KEYS = ["name", "env"]
export const ENV_KEYS = Object.keys(EnvFields)

/** Decoded api-keys entries as credentials (only the variables that are set). */
export const toCredentials = (entries: typeof ApiKeysFile.Type): ReadonlyArray<ApiKeyCredential> =>
  entries.map((entry): ApiKeyCredential => {
    const env: Record<string, Redacted.Redacted<string>> = {}
    for (const [name, value] of Object.entries(entry.env)) {
      if (value !== undefined) env[name] = value
    }
    return { name: entry.name, env }
  })
