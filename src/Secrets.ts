// The run's credential values, known to the process so that no text cco writes or prints carries one: api-keys.json
// values, the OAuth token, the instances' control tokens, plus anything shaped like an Anthropic key.
// One registry per process: errors are printed at the edge after the run's scope has closed.
import { Redacted } from "effect"

// Shorter values cannot be told from ordinary text; config and the control tokens are far longer.
const MIN_LENGTH = 8

// sk-ant-api03-…, sk-ant-oat01-…, sk-ant-admin01-…: conservative, the prefix plus a long run of key characters.
const ANTHROPIC_KEY_SHAPE = /sk-ant-[A-Za-z0-9_-]{8,}/g

const known = new Map<string, string>()
let pattern: RegExp | undefined

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")

/** Adds a secret value; texts show `[redacted:<label>]` where it was. */
export const remember = (value: string | Redacted.Redacted<string>, label: string): void => {
  const text = typeof value === "string" ? value : Redacted.value(value)
  if (text.length < MIN_LENGTH || known.has(text)) return
  known.set(text, label)
  // Longest first: a value that contains another is replaced whole.
  pattern = new RegExp([...known.keys()].sort((a, b) => b.length - a.length).map(escape).join("|"), "g")
}

// Variables whose values locate an endpoint rather than grant access; kept unless they carry a password.
const notSecret = (name: string, value: string) => name.endsWith("_BASE_URL") && !/\/\/[^/]*@/.test(value)

/** Every value of a credential's environment (api-keys.json entry, OAuth env), labelled with its name. */
export const rememberEnv = (label: string, env: Readonly<Record<string, string | Redacted.Redacted<string> | undefined>>): void => {
  for (const [name, value] of Object.entries(env)) {
    if (value === undefined) continue
    const text = typeof value === "string" ? value : Redacted.value(value)
    if (!notSecret(name, text)) remember(text, label)
  }
}

/** The text with every known secret and every Anthropic-key-shaped string replaced. */
export const scrub = (text: string): string => {
  const withoutKnown = pattern === undefined ? text : text.replace(pattern, (m) => `[redacted:${known.get(m) ?? "secret"}]`)
  return withoutKnown.replace(ANTHROPIC_KEY_SHAPE, "[redacted]")
}
