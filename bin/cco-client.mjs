// The agents' side of the control socket: `cco hook <Event>` (run by Claude Code's SessionStart hook; the CLI posts
// the other events itself, as http hooks, to the run's loopback port) and `cco team <command> ...` (run by agents
// from their Bash tool). Node built-ins only, so it starts fast.
// Identity comes from the environment cco gave the instance: CCO_SOCKET, CCO_INSTANCE, CCO_TOKEN, CCO_GENERATION.
import { appendFileSync } from "node:fs"
import * as http from "node:http"

const TEAM_HELP = `usage: cco team <command> [arguments]

  assign <instance> <task...>   give one of your reports a task (EMs: workers; Director: EMs)
  done <summary...>             report that your current task or goal is finished
  merge <instance>              merge a report's branch into your branch (orchestrator does the git work)
  message <instance> <text...>  send a short message to another instance of your team
  status                        show the team, its tasks and branches

Answers are short plain text; exit 0 means accepted, 1 means refused (the text says why).`

const identity = () => {
  const { CCO_SOCKET, CCO_INSTANCE, CCO_TOKEN, CCO_GENERATION } = process.env
  if (!CCO_SOCKET || !CCO_INSTANCE || !CCO_TOKEN) return undefined
  return { socket: CCO_SOCKET, instance: CCO_INSTANCE, token: CCO_TOKEN, generation: Number(CCO_GENERATION ?? "0") }
}

const post = (socket, path, body, timeoutMs) =>
  new Promise((resolve, reject) => {
    const data = JSON.stringify(body)
    const req = http.request(
      { socketPath: socket, path, method: "POST", headers: { "content-type": "application/json", "content-length": Buffer.byteLength(data) } },
      (res) => {
        const chunks = []
        res.on("data", (c) => chunks.push(c))
        res.on("end", () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") }))
      }
    )
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer from cco within ${timeoutMs / 1000} s`)))
    req.on("error", reject)
    req.end(data)
  })

const readStdin = (timeoutMs) =>
  new Promise((resolve) => {
    if (process.stdin.isTTY) return resolve("")
    const chunks = []
    const timer = setTimeout(() => resolve(Buffer.concat(chunks).toString("utf8")), timeoutMs)
    process.stdin.on("data", (c) => chunks.push(c))
    process.stdin.on("end", () => {
      clearTimeout(timer)
      resolve(Buffer.concat(chunks).toString("utf8"))
    })
    process.stdin.on("error", () => resolve(""))
  })

const shellQuote = (value) => `'${value.replaceAll("'", `'\\''`)}'`

// When Claude Code cannot take a snapshot of the user's shell in time (a loaded machine), its Bash tool falls back
// to a login shell, whose profile may reset PATH and lose the run's `cco`. What a SessionStart hook writes into
// CLAUDE_ENV_FILE is sourced before every Bash command either way.
const keepCcoOnPath = () => {
  const { CLAUDE_ENV_FILE, CCO_BIN } = process.env
  if (!CLAUDE_ENV_FILE || !CCO_BIN) return
  try {
    appendFileSync(CLAUDE_ENV_FILE, `export PATH=${shellQuote(CCO_BIN)}:"$PATH"\n`)
  } catch {
    // Not fatal: most sessions get their PATH from the shell snapshot.
  }
}

// The control socket takes at most 256 KiB a request. A larger event (a PostToolUse whose tool_response is a big
// file) still arrives: its nested fields are left out and its long texts cut, within this budget.
const MAX_PAYLOAD_BYTES = 192 * 1024
const MAX_TEXT = 16 * 1024

const fitPayload = (payload) => {
  try {
    if (Buffer.byteLength(JSON.stringify(payload)) <= MAX_PAYLOAD_BYTES) return payload
  } catch {
    // Nested too deep to serialise: trimmed like an oversize one.
  }
  const small = { cco_trimmed: true }
  let budget = MAX_PAYLOAD_BYTES - 1024
  for (const [key, value] of Object.entries(payload ?? {})) {
    const kept = typeof value === "string" ? value.slice(0, MAX_TEXT) : typeof value === "number" || typeof value === "boolean" ? value : undefined
    if (kept === undefined) continue
    const cost = Buffer.byteLength(JSON.stringify(key) + JSON.stringify(kept)) + 2
    if (cost > budget) continue
    budget -= cost
    small[key] = kept
  }
  return small
}

// A hook must never break the Claude Code session: it always exits 0, quietly.
const hook = async (name) => {
  const id = identity()
  const raw = await readStdin(2000)
  if (!id || !name) return 0
  if (name === "SessionStart") keepCcoOnPath()
  let payload = {}
  try {
    payload = raw.trim() === "" ? {} : JSON.parse(raw)
  } catch {
    payload = { unparsed: raw.slice(0, 2000) }
  }
  try {
    const body = { instance: id.instance, generation: id.generation, token: id.token, hook: name, payload: fitPayload(payload) }
    await post(id.socket, "/hook", body, 3000)
  } catch {
    // The orchestrator may be restarting; the supervisor notices missing events through the pane.
  }
  return 0
}

const team = async (args) => {
  const [command, ...rest] = args
  if (!command || command === "--help" || command === "-h" || command === "help") {
    process.stdout.write(TEAM_HELP + "\n")
    return command ? 0 : 1
  }
  const id = identity()
  if (!id) {
    process.stderr.write("cco team: not inside a cco instance (CCO_SOCKET, CCO_INSTANCE and CCO_TOKEN are not set)\n")
    return 1
  }
  try {
    const { status, text } = await post(
      id.socket,
      "/team",
      { instance: id.instance, generation: id.generation, token: id.token, command, args: rest },
      120_000
    )
    process.stdout.write(text.endsWith("\n") ? text : text + "\n")
    return status >= 200 && status < 300 ? 0 : 1
  } catch (e) {
    process.stderr.write(`cco team: cannot reach the orchestrator at ${id.socket}: ${e.message}\n`)
    return 1
  }
}

export default async function main(argv) {
  const [kind, ...rest] = argv
  if (kind === "hook") return hook(rest[0])
  if (kind === "team") return team(rest)
  process.stderr.write("usage: cco hook <HookEvent> | cco team <command> ...\n")
  return 2
}

// Run directly: `node bin/cco-client.mjs team status`.
if (import.meta.url === `file://${process.argv[1]}`) {
  main(process.argv.slice(2)).then((code) => process.exit(code))
}
