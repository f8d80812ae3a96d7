#!/usr/bin/env node
// A scripted stand-in for the `claude` CLI in a tmux pane, for fast integration tests: the same flags, env,
// terminal input (bracketed paste, Enter, Escape, Ctrl-C/D), pane titles, hooks, streamed Messages API turns
// with a Bash tool, and transcripts — without the real CLI's start-up time, dialogs and side traffic.
import { spawn, spawnSync } from "node:child_process"
import { randomUUID } from "node:crypto"
import * as fs from "node:fs"
import * as http from "node:http"
import * as os from "node:os"
import * as path from "node:path"

const VERSION = "2.1.332-fake"
const IDLE_TITLE = "✳ Claude Code"
const SPINNER = ["⠂", "⠐"]
const HOOK_TIMEOUT_CAP_MS = 10_000
const BASH_TIMEOUT_MS = 120_000
const MAX_TOOL_OUTPUT_LINES = 12

// ---------------------------------------------------------------------------------------------
// Arguments and environment

const parseArgs = (args) => {
  const o = { skipPermissions: false, model: undefined, continue: false, resume: undefined, settings: [], prompt: [] }
  for (let i = 0; i < args.length; i++) {
    const a = args[i]
    if (a === "--dangerously-skip-permissions") o.skipPermissions = true
    else if (a === "--model") o.model = args[++i]
    else if (a.startsWith("--model=")) o.model = a.slice(8)
    else if (a === "--continue" || a === "-c") o.continue = true
    else if (a === "--resume" || a === "-r") o.resume = args[++i]
    else if (a === "--settings") o.settings.push(args[++i])
    else if (a === "--version" || a === "-v") {
      process.stdout.write(`${VERSION} (Claude Code)\n`)
      process.exit(0)
    } else if (!a.startsWith("-")) o.prompt.push(a)
    // Other flags of the real CLI are accepted and ignored.
  }
  return o
}

const opts = parseArgs(process.argv.slice(2))
const env = process.env
const cwd = process.cwd()
const configDir = env.CLAUDE_CONFIG_DIR || path.join(os.homedir(), ".claude")
const baseUrl = (env.ANTHROPIC_BASE_URL || "https://api.anthropic.com").replace(/\/+$/, "")
// 2.1.332's default with an API key; aliases such as "opus" are sent as given, not resolved.
const model = opts.model || env.ANTHROPIC_MODEL || "claude-opus-5-5"
const maxRetries = Math.max(0, Number.parseInt(env.CLAUDE_CODE_MAX_RETRIES ?? "0", 10) || 0)
// Tests only: how long a submitted prompt waits before its UserPromptSubmit hook, as the real CLI does under load.
const submitDelayMs = Math.max(0, Number.parseInt(env.FAKE_CLAUDE_SUBMIT_DELAY_MS ?? "0", 10) || 0)
const permissionMode = opts.skipPermissions ? "bypassPermissions" : "default"
// Tests only: a directory where the CLI appends every byte it reads from its terminal, unparsed, to
// <dir>/<name of its working directory>.input (what another program typed or pasted into its pane).
const inputDir = env.FAKE_CLAUDE_INPUT_DIR

// The real CLI's project folder name: every non-alphanumeric character becomes "-"; long paths get a hash.
const projectFolderName = (p) => {
  const name = p.replace(/[^a-zA-Z0-9]/g, "-")
  if (name.length <= 200) return name
  let h = 0
  for (const ch of p) h = (h * 31 + ch.charCodeAt(0)) | 0
  return `${name.slice(0, 200)}-${Math.abs(h).toString(36)}`
}
const projectDir = path.join(configDir, "projects", projectFolderName(cwd))

const gitBranch = (() => {
  const r = spawnSync("git", ["rev-parse", "--abbrev-ref", "HEAD"], { cwd, encoding: "utf8" })
  return r.status === 0 ? r.stdout.trim() : undefined
})()

// ---------------------------------------------------------------------------------------------
// Terminal output: transcript lines above, a footer (spinner, input line) redrawn below them

const out = (s) => {
  try {
    process.stdout.write(s)
  } catch {
    // The pane may be gone (SIGHUP); nothing to show it to.
  }
}
process.stdout.on("error", () => {})

const stripControls = (s) => s.replace(/\x1b\[[0-9;?]*[ -/]*[@-~]/g, "").replace(/[\x00-\x08\x0b-\x1f\x7f]/g, "")
const width = () => Math.max(20, (process.stdout.columns || 80) - 1)
// One terminal row: newlines shown as ⏎, controls dropped, cut to the width so the footer never wraps.
const fit = (s) => {
  const chars = [...stripControls(s.replace(/\n/g, " ⏎ ").replace(/\t/g, " ")).replace(/[\x00-\x1f]/g, "")]
  return chars.length <= width() ? chars.join("") : chars.slice(0, width() - 1).join("") + "…"
}

let input = ""
let busy = false
let spinnerFrame = 0
let hint = ""
let footerRows = 0
const queue = []

const clearFooter = () => {
  if (footerRows === 0) return
  out("\r" + (footerRows > 1 ? `\x1b[${footerRows - 1}A` : "") + "\x1b[J")
  footerRows = 0
}

const drawFooter = () => {
  const lines = []
  if (busy) lines.push(fit(`${SPINNER[spinnerFrame % SPINNER.length]} Working… (esc to interrupt)`))
  if (queue.length > 0) lines.push(fit(`  ⎿  queued: ${queue.join(" ⏎ ")}`))
  // The input box as the real CLI draws it: the input line between two rules (cco reads the CLI's own error line
  // just above it), the hint under it.
  const rule = "─".repeat(Math.min(width(), 80))
  lines.push(rule, fit(`> ${input}`), rule)
  if (hint !== "") lines.push(fit(`  ${hint}`))
  out(lines.join("\r\n"))
  footerRows = lines.length
}

const redraw = () => {
  clearFooter()
  drawFooter()
}

const print = (text) => {
  clearFooter()
  out(text.split("\n").map(stripControls).join("\r\n") + "\r\n")
  drawFooter()
}

const setTitle = (title) => out(`\x1b]0;${title}\x07`)

const setBusy = (value) => {
  busy = value
  setTitle(busy ? `${SPINNER[spinnerFrame % SPINNER.length]} Claude Code` : IDLE_TITLE)
  redraw()
}

const spinner = setInterval(() => {
  if (!busy) return
  spinnerFrame++
  setTitle(`${SPINNER[spinnerFrame % SPINNER.length]} Claude Code`)
  redraw()
}, 250)

const indentOutput = (text) => {
  const lines = text.replace(/\s+$/, "").split("\n")
  if (lines.length === 1 && lines[0] === "") return "  ⎿  (No content)"
  const shown = lines.slice(0, MAX_TOOL_OUTPUT_LINES)
  const rendered = shown.map((l, i) => (i === 0 ? "  ⎿  " : "     ") + l)
  if (lines.length > shown.length) rendered.push(`     … +${lines.length - shown.length} lines`)
  return rendered.join("\n")
}

const printPrompt = (prompt) => print(prompt.split("\n").map((l, i) => (i === 0 ? "> " : "  ") + l).join("\n"))
const printAssistantText = (text) => print(text.split("\n").map((l, i) => (i === 0 ? "● " : "  ") + l).join("\n"))
const toolLabel = (name, toolInput) => {
  const arg = name === "Bash" ? toolInput?.command : toolInput?.file_path
  return `● ${name}(${typeof arg === "string" ? arg : JSON.stringify(toolInput ?? {})})`
}

// ---------------------------------------------------------------------------------------------
// Settings and hooks (the real CLI merges hooks from user, project and local settings and --settings)

const parseJson = (text) => {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}
const readJson = (file) => {
  try {
    return parseJson(fs.readFileSync(file, "utf8"))
  } catch {
    return undefined
  }
}

// --settings takes a file or inline JSON, as in the real CLI. Like the real CLI, a settings file changed while the
// session runs takes effect for the next event: the hooks are read again each time.
const readSettings = () => [
  path.join(configDir, "settings.json"),
  path.join(cwd, ".claude", "settings.json"),
  path.join(cwd, ".claude", "settings.local.json"),
  ...opts.settings
].map((s) => (s.trim().startsWith("{") ? parseJson(s) : readJson(s)))

const readHooks = () => {
  const hooksByEvent = new Map()
  for (const settings of readSettings()) {
    const hooks = settings && typeof settings === "object" ? settings.hooks : undefined
    if (!hooks || typeof hooks !== "object") continue
    for (const [event, groups] of Object.entries(hooks)) {
      if (!Array.isArray(groups)) continue
      const list = hooksByEvent.get(event) ?? []
      for (const group of groups) {
        for (const hook of Array.isArray(group?.hooks) ? group.hooks : []) {
          const matcher = typeof group.matcher === "string" ? group.matcher : ""
          if (hook?.type === "command" && typeof hook.command === "string") {
            list.push({ matcher, command: hook.command, timeout: hook.timeout })
          } else if (hook?.type === "http" && typeof hook.url === "string" && event !== "SessionStart") {
            // 2.1.332 runs no http hook on SessionStart.
            list.push({ matcher, url: hook.url, headers: hook.headers ?? {}, allowedEnvVars: hook.allowedEnvVars ?? [], timeout: hook.timeout })
          }
        }
      }
      hooksByEvent.set(event, list)
    }
  }
  return hooksByEvent
}

// What a matcher is tested against, per event; events not listed here ignore matchers.
const matchTarget = {
  PreToolUse: (e) => e.tool_name,
  PostToolUse: (e) => e.tool_name,
  PostToolUseFailure: (e) => e.tool_name,
  SessionStart: (e) => e.source,
  SessionEnd: (e) => e.reason,
  StopFailure: (e) => e.error,
  Notification: (e) => e.notification_type
}

const matches = (matcher, target) => {
  if (matcher === "" || matcher === "*" || target === undefined) return true
  try {
    return new RegExp(`^(?:${matcher})$`).test(target)
  } catch {
    return matcher === target
  }
}

const runHookCommand = (command, payload, timeoutMs) =>
  new Promise((resolve) => {
    let child
    try {
      child = spawn("sh", ["-c", command], {
        cwd,
        env: { ...env, CLAUDE_PROJECT_DIR: cwd },
        stdio: ["pipe", "ignore", "ignore"],
        detached: true
      })
    } catch {
      return resolve(undefined)
    }
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid, "SIGKILL")
      } catch {
        // already gone
      }
    }, timeoutMs)
    child.on("error", () => {
      clearTimeout(timer)
      resolve(undefined)
    })
    child.on("close", (code) => {
      clearTimeout(timer)
      resolve(code)
    })
    child.stdin.on("error", () => {})
    child.stdin.end(JSON.stringify(payload))
  })

// As the real CLI: $VAR and ${VAR} in a header are filled from the environment only for the variables the hook
// lists in allowedEnvVars (others become empty); the event JSON is the body; any answer but a 2xx is a failure.
const interpolate = (value, allowed) =>
  String(value).replace(/\$\{([A-Z_][A-Z0-9_]*)\}|\$([A-Z_][A-Z0-9_]*)/g, (_, braced, bare) => {
    const name = braced ?? bare
    return allowed.includes(name) ? env[name] ?? "" : ""
  }).replace(/[\r\n\x00]/g, "")

const postHook = (hook, payload, timeoutMs) =>
  new Promise((resolve) => {
    const body = JSON.stringify(payload)
    const headers = { "content-type": "application/json", "content-length": Buffer.byteLength(body) }
    for (const [name, value] of Object.entries(hook.headers)) headers[name] = interpolate(value, hook.allowedEnvVars)
    let req
    try {
      req = http.request(hook.url, { method: "POST", headers, timeout: timeoutMs }, (res) => {
        res.resume()
        res.on("end", () => resolve(res.statusCode))
      })
    } catch {
      return resolve(undefined)
    }
    req.on("timeout", () => req.destroy())
    req.on("error", () => resolve(undefined))
    req.end(body)
  })

let sessionId = randomUUID()
let transcriptPath = path.join(projectDir, `${sessionId}.jsonl`)

let promptId
// 2.1.332 leaves permission_mode out of these events.
const withoutPermissionMode = new Set(["SessionStart", "StopFailure", "SessionEnd"])

/** Runs every matching hook of the event in parallel and waits for all (each capped at 10 s). */
const fireHook = async (event, fields) => {
  const payload = {
    session_id: sessionId,
    transcript_path: transcriptPath,
    cwd,
    ...(promptId === undefined ? {} : { prompt_id: promptId }),
    ...(withoutPermissionMode.has(event) ? {} : { permission_mode: permissionMode }),
    hook_event_name: event,
    ...fields
  }
  const target = matchTarget[event]?.(payload)
  const seen = new Set()
  const runs = []
  for (const hook of readHooks().get(event) ?? []) {
    const key = hook.url === undefined ? hook.command : `http ${hook.url}`
    if (!matches(hook.matcher, target) || seen.has(key)) continue
    seen.add(key)
    const timeoutMs = Math.min(typeof hook.timeout === "number" ? hook.timeout * 1000 : HOOK_TIMEOUT_CAP_MS, HOOK_TIMEOUT_CAP_MS)
    runs.push(hook.url === undefined ? runHookCommand(hook.command, payload, timeoutMs) : postHook(hook, payload, timeoutMs))
  }
  await Promise.all(runs)
}

// ---------------------------------------------------------------------------------------------
// Transcript (JSON lines, as the real CLI writes them) and the conversation

let messages = []
let lastUuid = null

const record = (entry) => {
  const line = {
    parentUuid: lastUuid,
    isSidechain: false,
    userType: "external",
    cwd,
    sessionId,
    version: VERSION,
    ...(gitBranch === undefined ? {} : { gitBranch }),
    ...entry,
    uuid: randomUUID(),
    timestamp: new Date().toISOString()
  }
  lastUuid = line.uuid
  try {
    fs.mkdirSync(projectDir, { recursive: true })
    fs.appendFileSync(transcriptPath, JSON.stringify(line) + "\n")
  } catch (e) {
    print(`  ⎿  could not write transcript: ${e.message}`)
  }
}

const addUser = (content, extra = {}) => {
  const message = { role: "user", content }
  messages.push(message)
  record({ type: "user", message, ...extra })
}

// Rebuilds the conversation from a transcript: one assistant message per message.id, API error lines skipped.
const loadTranscript = (file) => {
  const rebuilt = []
  let lastAssistantId
  let last = null
  for (const raw of fs.readFileSync(file, "utf8").split("\n")) {
    if (raw.trim() === "") continue
    let line
    try {
      line = JSON.parse(raw)
    } catch {
      continue
    }
    if (line.uuid) last = line.uuid
    if (line.isApiErrorMessage || line.isMeta || !line.message) continue
    if (line.type === "user") {
      rebuilt.push({ role: "user", content: line.message.content })
      lastAssistantId = undefined
    } else if (line.type === "assistant") {
      const content = Array.isArray(line.message.content) ? line.message.content : []
      const prev = rebuilt.at(-1)
      if (prev && prev.role === "assistant" && lastAssistantId === line.message.id) prev.content.push(...content)
      else rebuilt.push({ role: "assistant", content: [...content] })
      lastAssistantId = line.message.id
    }
  }
  return { messages: rebuilt, lastUuid: last }
}

const newestTranscript = () => {
  try {
    return fs.readdirSync(projectDir)
      .filter((f) => f.endsWith(".jsonl"))
      .map((f) => ({ f, t: fs.statSync(path.join(projectDir, f)).mtimeMs }))
      .sort((a, b) => b.t - a.t)[0]?.f
  } catch {
    return undefined
  }
}

// ---------------------------------------------------------------------------------------------
// The Messages API

const SYSTEM_PROMPT = "You are a fake Claude Code: a scripted stand-in for Anthropic's CLI used in cco's integration " +
  "tests. You work in the user's git worktree and run shell commands with the Bash tool."

const TOOLS = [{
  name: "Bash",
  description: "Runs a bash command in the working directory and returns its combined stdout and stderr.",
  input_schema: {
    type: "object",
    properties: { command: { type: "string", description: "The command to run" } },
    required: ["command"]
  }
}]

// Context the CLI adds on its own, as 2.1.332 sends it: a git status reminder leads the first user message and
// a system-role "# Environment" message follows it.
const gitStatusReminder = () =>
  [
    "<system-reminder>",
    "As you answer the user's questions, you can use the following context:",
    "# gitStatus",
    "This is the git status at the start of the conversation.",
    "",
    `Current branch: ${gitBranch ?? "(none)"}`,
    "</system-reminder>"
  ].join("\n")

const environmentMessage = () => ({
  role: "system",
  content: [
    "# Environment",
    "You have been invoked in the following environment: ",
    ` - Primary working directory: ${cwd}`,
    ` - Is a git repository: ${gitBranch !== undefined}`,
    ` - Platform: ${process.platform}`,
    " - Shell: bash",
    "",
    `You are powered by the model ${model}.`
  ].join("\n")
})

// Consecutive messages of one role are joined as the real CLI joins them (a failed or interrupted turn
// travels with the next prompt; an earlier text block gets a trailing newline).
const apiMessages = () => {
  const result = []
  for (const m of messages) {
    const blocks = typeof m.content === "string" ? [{ type: "text", text: m.content }] : m.content
    const last = result.at(-1)
    if (last && last.role === m.role) {
      const tail = last.content.at(-1)
      if (tail?.type === "text") last.content[last.content.length - 1] = { ...tail, text: `${tail.text}\n` }
      last.content.push(...blocks)
    } else result.push({ role: m.role, content: [...blocks] })
  }
  if (result[0]?.role === "user") {
    result[0].content.unshift({ type: "text", text: gitStatusReminder() })
    result.splice(1, 0, environmentMessage())
  }
  return result
}

// ---------------------------------------------------------------------------------------------
// Subscription logins, as the real CLI keeps them: CLAUDE_CODE_OAUTH_TOKEN (used as it is, nothing written), or
// <config dir>/.credentials.json {claudeAiOauth: {accessToken, refreshToken, expiresAt, …}}. Shortly before the
// access token expires, the CLI refreshes it: under a lock keyed by the file's real path it reads the file again
// (another process may have refreshed meanwhile), trades the refresh token (single-use: the server rotates it) for
// a new pair, and writes the file by temp file + rename at its own path (replacing a symlink there by a file).
// The real CLI asks the OAuth server; this stand-in asks its mock at ANTHROPIC_BASE_URL/v1/oauth/token.

const credentialsFile = path.join(configDir, ".credentials.json")
const REFRESH_MARGIN_MS = Math.max(0, Number.parseInt(env.FAKE_CLAUDE_REFRESH_MARGIN_MS ?? "1000", 10) || 0)

const readLogin = () => {
  try {
    const oauth = JSON.parse(fs.readFileSync(credentialsFile, "utf8"))?.claudeAiOauth
    return typeof oauth?.accessToken === "string" && oauth.accessToken !== "" ? oauth : undefined
  } catch {
    return undefined
  }
}

const hasLogin = () => Boolean(env.ANTHROPIC_API_KEY || env.ANTHROPIC_AUTH_TOKEN || env.CLAUDE_CODE_OAUTH_TOKEN || readLogin())

const withLock = async (file, f) => {
  let real
  try {
    real = fs.realpathSync(file)
  } catch {
    real = file
  }
  const lock = `${real}.lock`
  for (let i = 0;; i++) {
    try {
      fs.mkdirSync(lock)
      break
    } catch (e) {
      if (e?.code !== "EEXIST") throw e
      // A holder that died leaves its lock: taken over after ten seconds.
      try {
        if (Date.now() - fs.statSync(lock).mtimeMs > 10_000) fs.rmdirSync(lock)
      } catch {}
      await new Promise((resolve) => setTimeout(resolve, 20 + Math.floor(Math.random() * 30)))
    }
  }
  try {
    return await f()
  } finally {
    try {
      fs.rmdirSync(lock)
    } catch {}
  }
}

/** The access token to send: refreshed first when it is about to expire. */
const freshLogin = async () => {
  const first = readLogin()
  if (first === undefined || (first.expiresAt ?? 0) - Date.now() > REFRESH_MARGIN_MS) return first
  return withLock(credentialsFile, async () => {
    const login = readLogin()
    if (login === undefined || (login.expiresAt ?? 0) - Date.now() > REFRESH_MARGIN_MS) return login
    let res
    try {
      res = await fetch(`${baseUrl}/v1/oauth/token`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ grant_type: "refresh_token", refresh_token: login.refreshToken })
      })
    } catch {
      return login
    }
    if (!res.ok) return login
    const body = await res.json()
    const next = {
      ...login,
      accessToken: body.access_token,
      refreshToken: body.refresh_token ?? login.refreshToken,
      expiresAt: Date.now() + Number(body.expires_in ?? 3600) * 1000
    }
    const temp = `${credentialsFile}.tmp.${randomUUID().slice(0, 8)}`
    fs.writeFileSync(temp, JSON.stringify({ claudeAiOauth: next }), { mode: 0o600 })
    fs.renameSync(temp, credentialsFile)
    return next
  })
}

const authHeaders = async () => {
  const h = {}
  if (env.ANTHROPIC_API_KEY) h["x-api-key"] = env.ANTHROPIC_API_KEY
  else if (env.ANTHROPIC_AUTH_TOKEN) h.authorization = `Bearer ${env.ANTHROPIC_AUTH_TOKEN}`
  else if (env.CLAUDE_CODE_OAUTH_TOKEN) h.authorization = `Bearer ${env.CLAUDE_CODE_OAUTH_TOKEN}`
  else {
    const login = await freshLogin()
    if (login !== undefined) h.authorization = `Bearer ${login.accessToken}`
  }
  if (h.authorization && !env.ANTHROPIC_AUTH_TOKEN) h["anthropic-beta"] = "oauth-2025-04-20"
  return h
}

/** "12:57am": a reset time in this process's own zone, as the CLI's notice words it. */
const localTimeText = (epochSeconds) => {
  const d = new Date(epochSeconds * 1000)
  const h = d.getHours()
  return `${h % 12 === 0 ? 12 : h % 12}:${String(d.getMinutes()).padStart(2, "0")}${h < 12 ? "am" : "pm"}`
}

/** "resets 10:27pm (UTC)", as the CLI words a reset time (here always in UTC). */
const resetText = (epochSeconds) => {
  const d = new Date(epochSeconds * 1000)
  const h = d.getUTCHours()
  return `${h % 12 === 0 ? 12 : h % 12}:${String(d.getUTCMinutes()).padStart(2, "0")}${h < 12 ? "am" : "pm"} (UTC)`
}

const emptyUsage = () => ({ input_tokens: 0, output_tokens: 0, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 })

const parseRetryAfter = (value) => {
  if (value === null || value === undefined) return undefined
  const n = Number(value)
  return Number.isFinite(n) ? n : undefined
}

// A test stand-in never talks to anything but a local mock.
const loopbackOnly = (() => {
  try {
    return ["127.0.0.1", "localhost", "[::1]"].includes(new URL(baseUrl).hostname)
  } catch {
    return false
  }
})()

/** One request: {kind: "message"} | {kind: "http", status, message, ...} | {kind: "network"} | {kind: "aborted"}. */
const requestOnce = async (signal) => {
  if (!loopbackOnly) return { kind: "network", message: `ANTHROPIC_BASE_URL ${baseUrl} is not a loopback address` }
  let res
  try {
    res = await fetch(`${baseUrl}/v1/messages`, {
      method: "POST",
      signal,
      headers: {
        ...(await authHeaders()),
        "anthropic-version": "2023-06-01",
        "content-type": "application/json",
        "x-app": "cli",
        "user-agent": `claude-cli/${VERSION} (external, cli)`
      },
      body: JSON.stringify({ model, max_tokens: 32000, stream: true, system: SYSTEM_PROMPT, tools: TOOLS, messages: apiMessages() })
    })
  } catch (e) {
    if (signal.aborted) return { kind: "aborted" }
    return { kind: "network", message: e?.cause?.code ?? e?.message ?? String(e) }
  }
  const requestId = res.headers.get("request-id") ?? `req_fake_${randomUUID()}`
  if (!res.ok) {
    const text = await res.text().catch(() => "")
    let message = text
    try {
      message = JSON.parse(text)?.error?.message ?? text
    } catch {
      // not JSON: keep the body
    }
    const unified = res.headers.get("anthropic-ratelimit-unified-status")
    const unifiedReset = Number(res.headers.get("anthropic-ratelimit-unified-reset"))
    return {
      kind: "http",
      status: res.status,
      message,
      retryAfter: parseRetryAfter(res.headers.get("retry-after")),
      shouldRetry: res.headers.get("x-should-retry"),
      ...(res.status === 429 && unified === "rejected" && Number.isFinite(unifiedReset) ? { usageResetAt: unifiedReset } : {})
    }
  }

  const msg = { id: undefined, model, content: [], stop_reason: null, usage: emptyUsage(), requestId }
  const partialJson = new Map()
  let done = false
  let streamError
  const handle = (raw) => {
    const data = raw.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).replace(/^ /, "")).join("\n")
    if (data === "") return
    let ev
    try {
      ev = JSON.parse(data)
    } catch {
      return
    }
    switch (ev.type) {
      case "message_start":
        msg.id = ev.message?.id
        msg.model = ev.message?.model ?? model
        Object.assign(msg.usage, ev.message?.usage ?? {})
        break
      case "content_block_start": {
        const block = { ...ev.content_block }
        if (block.type === "tool_use") partialJson.set(ev.index, "")
        msg.content[ev.index] = block
        break
      }
      case "content_block_delta": {
        const block = msg.content[ev.index]
        if (!block) break
        if (ev.delta?.type === "text_delta") block.text = (block.text ?? "") + ev.delta.text
        else if (ev.delta?.type === "input_json_delta") partialJson.set(ev.index, (partialJson.get(ev.index) ?? "") + ev.delta.partial_json)
        else if (ev.delta?.type === "thinking_delta") block.thinking = (block.thinking ?? "") + ev.delta.thinking
        else if (ev.delta?.type === "signature_delta") block.signature = (block.signature ?? "") + ev.delta.signature
        break
      }
      case "content_block_stop": {
        const block = msg.content[ev.index]
        if (block?.type === "tool_use") {
          const json = partialJson.get(ev.index) ?? ""
          try {
            block.input = json === "" ? {} : JSON.parse(json)
          } catch {
            block.input = {}
          }
        }
        break
      }
      case "message_delta":
        if (ev.delta?.stop_reason) msg.stop_reason = ev.delta.stop_reason
        for (const [k, v] of Object.entries(ev.usage ?? {})) if (v !== null && v !== undefined) msg.usage[k] = v
        break
      case "message_stop":
        done = true
        break
      case "error":
        streamError = ev.error ?? { type: "api_error", message: "stream error" }
        break
    }
  }
  try {
    const reader = res.body.getReader()
    const decoder = new TextDecoder()
    let buf = ""
    while (!done && streamError === undefined) {
      const { done: end, value } = await reader.read()
      if (end) break
      buf = (buf + decoder.decode(value, { stream: true })).replace(/\r\n/g, "\n")
      let idx
      while ((idx = buf.indexOf("\n\n")) >= 0) {
        handle(buf.slice(0, idx))
        buf = buf.slice(idx + 2)
      }
    }
    if (!done && streamError === undefined && buf.trim() !== "") handle(buf)
    reader.cancel().catch(() => {})
  } catch (e) {
    if (signal.aborted) return { kind: "aborted" }
    return { kind: "network", message: e?.message ?? String(e) }
  }
  if (streamError !== undefined) {
    const status = streamError.type === "overloaded_error" ? 529 : streamError.type === "rate_limit_error" ? 429 : 500
    return { kind: "http", status, message: streamError.message ?? "", retryAfter: undefined, shouldRetry: null }
  }
  if (!done) return { kind: "network", message: "Connection closed before the response was complete" }
  msg.content = msg.content.filter((b) => b && (b.type === "text" || b.type === "tool_use"))
  return { kind: "message", message: msg }
}

const retryable = (r) => (r.kind === "network" && loopbackOnly) || (r.kind === "http" && (r.status === 401 || r.status === 408 || r.status === 409 || r.status === 429 || r.status >= 500))

const sleep = (ms, signal) =>
  new Promise((resolve) => {
    const t = setTimeout(resolve, ms)
    signal.addEventListener("abort", () => {
      clearTimeout(t)
      resolve()
    }, { once: true })
  })

let currentAbort
let interrupted = false

const request = async () => {
  for (let attempt = 0;; attempt++) {
    if (interrupted || exiting) return { kind: "aborted" }
    currentAbort = new AbortController()
    const r = await requestOnce(currentAbort.signal)
    if (r.kind === "aborted" || interrupted) return { kind: "aborted" }
    if (!retryable(r) || attempt >= maxRetries) return r
    if (r.kind === "http" && (r.shouldRetry === "false" || (r.retryAfter !== undefined && r.retryAfter > 60))) return r
    const delayMs = r.kind === "http" && r.retryAfter !== undefined ? r.retryAfter * 1000 : Math.min(500 * 2 ** attempt, 32_000)
    print(`  ⎿  API error · Retrying in ${Math.ceil(delayMs / 1000)}s · attempt ${attempt + 1}/${maxRetries}`)
    await sleep(delayMs, currentAbort.signal)
  }
}

// The real CLI's wording on the pane (also the StopFailure's last_assistant_message), and the error kind.
const describeFailure = (r) => {
  if (r.kind === "network") return { text: `API Error: Unable to connect to API (${r.message})`, error: "unknown" }
  // A subscription's usage window: the CLI names the limit and its reset, not the HTTP status.
  // As 2.1.332 shows it: the limit under the prompt, then a notice as the last block (the time without its zone).
  if (r.status === 429 && r.usageResetAt !== undefined) {
    return {
      text: `You've hit your 5-hour limit · resets ${resetText(r.usageResetAt)}`,
      error: "rate_limit",
      notice: `Usage limit reached · set to continue automatically at ${localTimeText(r.usageResetAt)}`
    }
  }
  if (r.status === 429) return { text: `API Error: Request rejected (429) · ${r.message}`, error: "rate_limit" }
  if ((r.status === 401 || r.status === 403) && !env.ANTHROPIC_API_KEY && !env.ANTHROPIC_AUTH_TOKEN) {
    return { text: `API Error: 401 {"type":"error","error":{"type":"authentication_error","message":${JSON.stringify(r.message)}}}`, error: "authentication_failed" }
  }
  if (r.status === 401 || r.status === 403) return { text: "Invalid API key · Fix external API key", error: "authentication_failed" }
  if (r.status === 529) {
    return {
      text: "API Error: Repeated 529 Overloaded errors. The API is at capacity — this is usually temporary. Try again in a moment.",
      error: "server_error"
    }
  }
  if (r.status >= 500) return { text: `API Error: ${r.status} ${r.message}`, error: "server_error" }
  if (r.status === 400) return { text: `API Error: 400 ${r.message}`, error: "invalid_request" }
  return { text: `API Error: ${r.status} ${r.message}`, error: "unknown" }
}

// ---------------------------------------------------------------------------------------------
// Tools

let killCurrentTool
let currentToolGroup

const killGroup = (pid, signal) => {
  try {
    process.kill(-pid, signal)
  } catch {
    // already gone
  }
}

// Output is stdout and stderr interleaved as they arrive. The command's process group is killed on timeout or
// when the user interrupts; a background process that keeps the pipes open does not hold the turn.
const runBash = (command, timeoutMs) =>
  new Promise((resolve) => {
    const chunks = []
    let timedOut = false
    let killed = false
    let settled = false
    // Nothing new starts once the CLI is exiting: it would outlive it.
    if (exiting) return resolve({ output: "", code: 1, timedOut, killed: true })
    const child = spawn("bash", ["-c", command], { cwd, env, stdio: ["ignore", "pipe", "pipe"], detached: true })
    currentToolGroup = child.pid
    const finish = (result) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      killCurrentTool = undefined
      currentToolGroup = undefined
      resolve({ ...result, timedOut, killed })
    }
    const kill = () => {
      killGroup(child.pid, "SIGTERM")
      setTimeout(() => killGroup(child.pid, "SIGKILL"), 1000).unref()
    }
    const timer = setTimeout(() => {
      timedOut = true
      kill()
    }, timeoutMs)
    killCurrentTool = () => {
      killed = true
      kill()
    }
    child.stdout.on("data", (d) => chunks.push(d))
    child.stderr.on("data", (d) => chunks.push(d))
    child.on("error", (e) => finish({ output: String(e.message), code: 127 }))
    child.on("exit", (code, sig) => {
      const result = () => ({ output: Buffer.concat(chunks).toString("utf8"), code: code ?? (sig ? 128 : 1) })
      child.on("close", () => finish(result()))
      setTimeout(() => finish(result()), 200).unref()
    })
  })

const resolvePath = (p) => (typeof p === "string" ? path.resolve(cwd, p) : undefined)

/** Runs one tool: {content, isError, response}. Only Bash is offered; Write/Read/Edit help mocks scripted for the real CLI. */
const runTool = async (name, toolInput) => {
  if (name === "Bash") {
    if (typeof toolInput?.command !== "string") return { content: "<tool_use_error>command is required</tool_use_error>", isError: true }
    const timeoutMs = typeof toolInput.timeout === "number" ? Math.min(toolInput.timeout, 600_000) : BASH_TIMEOUT_MS
    const r = await runBash(toolInput.command, timeoutMs)
    if (r.killed) return { rejected: true }
    const output = r.output.replace(/\s+$/, "")
    const isError = r.code !== 0 || r.timedOut
    // As 2.1.332 reports a failed command: "Exit code N" first, then the output.
    const content = r.timedOut
      ? `${output}\nCommand timed out after ${Math.round(timeoutMs / 1000)}s`.trim()
      : isError ? `Exit code ${r.code}\n${output}`.trim() : output
    return {
      content,
      isError,
      response: isError ? `Error: ${content}` : { stdout: output, stderr: "", interrupted: false, isImage: false }
    }
  }
  try {
    if (name === "Write") {
      const file = resolvePath(toolInput?.file_path)
      fs.mkdirSync(path.dirname(file), { recursive: true })
      const existed = fs.existsSync(file)
      fs.writeFileSync(file, String(toolInput?.content ?? ""))
      const content = existed ? `The file ${file} has been updated.` : `File created successfully at: ${file}`
      return { content, isError: false, response: { type: existed ? "update" : "create", filePath: file } }
    }
    if (name === "Read") {
      const file = resolvePath(toolInput?.file_path)
      const text = fs.readFileSync(file, "utf8")
      const content = text.split("\n").map((l, i) => `${String(i + 1).padStart(6)}\t${l}`).join("\n")
      return { content, isError: false, response: { type: "text", file: { filePath: file, content: text } } }
    }
    if (name === "Edit") {
      const file = resolvePath(toolInput?.file_path)
      const text = fs.readFileSync(file, "utf8")
      const oldString = String(toolInput?.old_string ?? "")
      const count = oldString === "" ? 0 : text.split(oldString).length - 1
      if (count === 0) return { content: `<tool_use_error>String to replace not found in file.\nString: ${oldString}</tool_use_error>`, isError: true }
      if (count > 1 && !toolInput?.replace_all) {
        return { content: `<tool_use_error>Found ${count} matches of the string to replace, but replace_all is false.</tool_use_error>`, isError: true }
      }
      const newString = String(toolInput?.new_string ?? "")
      fs.writeFileSync(file, toolInput?.replace_all ? text.split(oldString).join(newString) : text.replace(oldString, () => newString))
      return { content: `The file ${file} has been updated.`, isError: false, response: { filePath: file, oldString, newString } }
    }
  } catch (e) {
    return { content: `<tool_use_error>${e.message}</tool_use_error>`, isError: true }
  }
  return { content: `<tool_use_error>Error: No such tool available: ${name}</tool_use_error>`, isError: true }
}

// ---------------------------------------------------------------------------------------------
// Turns

const REJECTED = "The user doesn't want to proceed with this tool use. The tool use was rejected (eg. if it was a " +
  "file edit, the new_string was NOT written to the file). STOP what you are doing and wait for the user to tell you " +
  "how to proceed."

const printInterrupted = () => print("  ⎿  Interrupted · What should Claude do instead?")

const runTurn = async (prompt) => {
  interrupted = false
  promptId = randomUUID()
  printPrompt(prompt)
  if (submitDelayMs > 0) await new Promise((resolve) => setTimeout(resolve, submitDelayMs))
  await fireHook("UserPromptSubmit", { prompt })
  addUser(prompt, { promptId })
  if (!hasLogin()) {
    print("● Not logged in · Please run /login")
    await fireHook("StopFailure", { error: "authentication_failed", last_assistant_message: "Not logged in · Please run /login" })
    return
  }
  for (;;) {
    if (exiting) return
    const r = await request()
    if (r.kind === "aborted") {
      addUser([{ type: "text", text: "[Request interrupted by user]" }])
      printInterrupted()
      return
    }
    if (r.kind !== "message") {
      const failure = describeFailure(r)
      if (failure.notice !== undefined) {
        print(`  ⎿  ${failure.text}`)
        print(`● ${failure.notice}`)
      } else print(`● ${failure.text}`)
      hint = "Resend your message to try again"
      record({
        type: "assistant",
        isApiErrorMessage: true,
        error: failure.error,
        message: {
          id: randomUUID(),
          type: "message",
          role: "assistant",
          model: "<synthetic>",
          content: [{ type: "text", text: failure.text }],
          stop_reason: "stop_sequence",
          stop_sequence: "",
          usage: emptyUsage()
        }
      })
      await fireHook("StopFailure", { error: failure.error, last_assistant_message: failure.text })
      return
    }
    const msg = r.message
    messages.push({ role: "assistant", content: msg.content })
    // Like the real CLI: one transcript line per content block, each carrying the response's usage.
    for (const block of msg.content) {
      record({
        type: "assistant",
        requestId: msg.requestId,
        message: {
          id: msg.id,
          type: "message",
          role: "assistant",
          model: msg.model,
          content: [block],
          stop_reason: msg.stop_reason,
          stop_sequence: null,
          usage: msg.usage
        }
      })
    }
    const text = msg.content.filter((b) => b.type === "text").map((b) => b.text).join("\n").trim()
    for (const block of msg.content) {
      if (block.type === "text" && block.text.trim() !== "") printAssistantText(block.text.trim())
    }

    if (msg.stop_reason !== "tool_use") {
      await fireHook("Stop", { stop_hook_active: false, ...(text === "" ? {} : { last_assistant_message: text }) })
      return
    }
    for (const tu of msg.content.filter((b) => b.type === "tool_use")) {
      if (!interrupted) print(toolLabel(tu.name, tu.input))
      const started = Date.now()
      // Exiting (SIGHUP, SIGTERM, /exit): the remaining calls are answered as rejected, none is started.
      const result = interrupted || exiting ? { rejected: true } : await runTool(tu.name, tu.input)
      // An interrupted tool is killed and reported as rejected; no hook fires for it.
      if (result.rejected || interrupted) {
        addUser([{ type: "tool_result", tool_use_id: tu.id, content: REJECTED, is_error: true }], {
          toolUseResult: "User rejected tool use"
        })
        continue
      }
      print(indentOutput(result.content))
      addUser(
        [{ type: "tool_result", tool_use_id: tu.id, content: result.content, is_error: result.isError }],
        result.response === undefined ? {} : { toolUseResult: result.response }
      )
      const common = { tool_name: tu.name, tool_input: tu.input, tool_use_id: tu.id }
      if (result.isError) {
        await fireHook("PostToolUseFailure", { ...common, error: result.content, is_interrupt: false, duration_ms: Date.now() - started })
      } else {
        await fireHook("PostToolUse", { ...common, tool_response: result.response, duration_ms: Date.now() - started })
      }
    }
    if (exiting) return
    if (interrupted) {
      addUser([{ type: "text", text: "[Request interrupted by user for tool use]" }])
      printInterrupted()
      return
    }
  }
}

let starting = true
let exiting = false

const runQueue = async () => {
  if (busy || starting || exiting || queue.length === 0) return
  setBusy(true)
  while (queue.length > 0 && !exiting) {
    const prompt = queue.splice(0).join("\n")
    redraw()
    try {
      await runTurn(prompt)
    } catch (e) {
      print(`● Error: ${e?.message ?? String(e)}`)
    }
  }
  if (!exiting) setBusy(false)
}

// ---------------------------------------------------------------------------------------------
// Input

const shutdown = async (reason) => {
  if (exiting) return
  exiting = true
  clearInterval(spinner)
  currentAbort?.abort()
  killCurrentTool?.()
  await fireHook("SessionEnd", { reason })
  // A tool that ignored SIGTERM is not left running behind the CLI.
  if (currentToolGroup !== undefined) killGroup(currentToolGroup, "SIGKILL")
  out("\x1b[?2004l\r\n")
  try {
    if (process.stdin.isTTY) process.stdin.setRawMode(false)
  } catch {
    // the terminal may be gone
  }
  process.exit(0)
}

const clearSession = async () => {
  await fireHook("SessionEnd", { reason: "clear" })
  sessionId = randomUUID()
  transcriptPath = path.join(projectDir, `${sessionId}.jsonl`)
  messages = []
  lastUuid = null
  promptId = undefined
  print("  ⎿  (no content)")
  await fireHook("SessionStart", { source: "clear", model })
}

const submit = () => {
  const text = input
  input = ""
  hint = ""
  if (text.trim() === "") return redraw()
  const command = text.trim()
  if (!busy && (command === "/exit" || command === "/quit")) return void shutdown("prompt_input_exit")
  if (!busy && command === "/clear") return void clearSession().then(redraw)
  queue.push(text)
  redraw()
  void runQueue()
}

const interrupt = () => {
  if (!busy) return
  interrupted = true
  currentAbort?.abort()
  killCurrentTool?.()
}

let lastCtrlC = 0
let hintTimer
const showHint = (text) => {
  hint = text
  clearTimeout(hintTimer)
  hintTimer = setTimeout(() => {
    hint = ""
    redraw()
  }, 2000)
}

const onCtrlC = () => {
  const now = Date.now()
  if (now - lastCtrlC < 2000) return void shutdown("prompt_input_exit")
  lastCtrlC = now
  if (input !== "") input = ""
  else interrupt()
  showHint("Press Ctrl-C again to exit")
}

const onCtrlD = () => {
  if (input === "") return void shutdown("prompt_input_exit")
}

const PASTE_START = "\x1b[200~"
const PASTE_END = "\x1b[201~"
let pending = ""
let inPaste = false
let escTimer

// Length of the longest tail of s that is a proper prefix of marker (a marker split across reads).
const partialMarker = (s, marker) => {
  for (let k = Math.min(marker.length - 1, s.length); k > 0; k--) if (s.endsWith(marker.slice(0, k))) return k
  return 0
}

const parseInput = () => {
  clearTimeout(escTimer)
  const s = pending
  pending = ""
  let i = 0
  while (i < s.length) {
    if (inPaste) {
      const end = s.indexOf(PASTE_END, i)
      if (end === -1) {
        const keep = partialMarker(s.slice(i), PASTE_END)
        input += s.slice(i, s.length - keep).replace(/\r\n?/g, "\n")
        pending = s.slice(s.length - keep)
        break
      }
      input += s.slice(i, end).replace(/\r\n?/g, "\n")
      i = end + PASTE_END.length
      inPaste = false
      continue
    }
    const c = s[i]
    if (c === "\x1b") {
      if (i + 1 >= s.length) {
        // A lone ESC is the Escape key unless the rest of a sequence follows at once.
        pending = c
        escTimer = setTimeout(() => {
          pending = ""
          interrupt()
        }, 40)
        break
      }
      const next = s[i + 1]
      if (next === "[") {
        let j = i + 2
        while (j < s.length && !(s.charCodeAt(j) >= 0x40 && s.charCodeAt(j) <= 0x7e)) j++
        if (j >= s.length) {
          pending = s.slice(i)
          break
        }
        if (s.slice(i, j + 1) === PASTE_START) inPaste = true
        i = j + 1
      } else if (next === "O") {
        if (i + 2 >= s.length) {
          pending = s.slice(i)
          break
        }
        i += 3
      } else if (next === "\x1b") {
        interrupt()
        i += 1
      } else {
        i += 2 // Alt+key
      }
      continue
    }
    if (c === "\r") submit()
    else if (c === "\n") input += "\n"
    else if (c === "\x7f" || c === "\b") input = [...input].slice(0, -1).join("")
    else if (c === "\x03") onCtrlC()
    else if (c === "\x04") onCtrlD()
    else if (c === "\x15") input = ""
    else if (c === "\t" || c >= " ") input += c
    i++
  }
  redraw()
}

// ---------------------------------------------------------------------------------------------
// Start

process.on("SIGTERM", () => void shutdown("other"))
process.on("SIGHUP", () => void shutdown("other"))
process.on("unhandledRejection", (e) => print(`● Error: ${e?.message ?? String(e)}`))

if (process.stdin.isTTY) process.stdin.setRawMode(true)
process.stdin.setEncoding("utf8")
process.stdin.on("data", (chunk) => {
  if (inputDir) {
    try {
      fs.appendFileSync(path.join(inputDir, `${path.basename(cwd)}.input`), chunk)
    } catch {
      // a test's directory may be gone already
    }
  }
  pending += chunk
  parseInput()
})
process.stdin.on("end", () => void shutdown("other"))
process.stdin.on("error", () => void shutdown("other"))

out("\x1b[?2004h")
setTitle(IDLE_TITLE)

let source = "startup"
const resumeFile = opts.resume !== undefined
  ? `${opts.resume}.jsonl`
  : opts.continue
  ? newestTranscript()
  : undefined
if (opts.continue || opts.resume !== undefined) {
  if (resumeFile === undefined || !fs.existsSync(path.join(projectDir, resumeFile))) {
    // As the real CLI: nothing to continue is an error, not a fresh session.
    out("\x1b[?2004l")
    if (process.stdin.isTTY) process.stdin.setRawMode(false)
    process.stderr.write(opts.continue ? "No conversation found to continue\n" : `No conversation found with session ID: ${opts.resume}\n`)
    process.exit(1)
  }
  const loaded = loadTranscript(path.join(projectDir, resumeFile))
  sessionId = resumeFile.replace(/\.jsonl$/, "")
  transcriptPath = path.join(projectDir, resumeFile)
  messages = loaded.messages
  lastUuid = loaded.lastUuid
  source = "resume"
  // Killed in the middle of a tool: its call gets a result, or the API would refuse the conversation.
  const tail = messages.at(-1)
  const dangling = tail?.role === "assistant" ? tail.content.filter((b) => b.type === "tool_use") : []
  if (dangling.length > 0) {
    addUser(dangling.map((b) => ({ type: "tool_result", tool_use_id: b.id, content: REJECTED, is_error: true })))
    addUser([{ type: "text", text: "[Request interrupted by user for tool use]" }])
  }
}

print(`✻ Welcome to Claude Code (fake ${VERSION})\n  cwd: ${cwd}\n  model: ${model}`)
if (source === "resume") {
  for (const m of messages) {
    if (m.role === "user" && typeof m.content === "string") printPrompt(m.content)
    if (m.role === "assistant") for (const b of m.content) if (b.type === "text" && b.text.trim() !== "") printAssistantText(b.text.trim())
  }
  print(`  ⎿  Resumed session ${sessionId} (${messages.length} messages)`)
}

if (opts.prompt.length > 0) queue.push(opts.prompt.join(" "))
await fireHook("SessionStart", { source, model })
starting = false
void runQueue()
