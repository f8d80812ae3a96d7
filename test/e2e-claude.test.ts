// End to end: the real `claude` CLI in tmux (private server), launched with ClaudeCode's recipe against the mock
// Messages API. Proves no dialog blocks input, the hooks fire, a scripted tool call commits in the worktree,
// transcripts carry usage, --continue restores the conversation, and a 429 ends the turn with StopFailure.
import { NodeContext } from "@effect/platform-node"
import { FileSystem, Path } from "@effect/platform"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Redacted, Stream } from "effect"
import { execFile } from "node:child_process"
import { randomBytes } from "node:crypto"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import * as NodePath from "node:path"
import {
  hookEvents,
  type InstanceLaunch,
  instanceSettings,
  isBusyScreen,
  isBusyTitle,
  isIdleTitle,
  launchCommand,
  prepareConfigDir
} from "../src/ClaudeCode.js"
import {
  type Brain,
  lastToolResult,
  lastUserText,
  type MockRequest,
  pendingToolResults,
  rateLimitError,
  toolResults,
  userTexts
} from "../src/MockBrain.js"
import * as Events from "../src/Events.js"
import { startMockModel } from "../src/MockModel.js"
import * as RunLog from "../src/RunLog.js"
import { shellQuote } from "../src/Shell.js"
import { agentHome } from "./harness.js"
import { allArgv, alive, waitFor } from "./support.js"

const claudePath = NodePath.resolve("node_modules/.bin/claude")
const API_KEY = `sk-ant-test-${randomBytes(24).toString("hex")}`

// The tmux server gets a minimal environment: nothing of the test runner's own credentials may leak into it,
// and the CLI's shells start from a home of their own (see agentHome).
const homeRoot = mkdtempSync(NodePath.join(tmpdir(), "cco-e2e-claude-"))
afterAll(() => rmSync(homeRoot, { recursive: true, force: true }))
const tmuxEnv = {
  PATH: process.env.PATH ?? "/usr/bin:/bin",
  HOME: agentHome(homeRoot),
  LANG: "C.UTF-8",
  TERM: "xterm-256color"
}

const run = (file: string, args: ReadonlyArray<string>, options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}) =>
  Effect.async<string, Error>((resume) => {
    execFile(file, [...args], { ...options, encoding: "utf8" }, (error, stdout, stderr) =>
      resume(error ? Effect.fail(new Error(`${file} ${args[0]} failed: ${stderr || error.message}`)) : Effect.succeed(stdout))
    )
  })

const sleep = (ms: number) => Effect.sleep(Duration.millis(ms))

type HookLine = { readonly event: string; readonly payload: Record<string, unknown> }

const fixture = (brain: Brain) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const root = yield* fs.makeTempDirectoryScoped({ prefix: "cco-e2e-claude-" })
    const worktree = path.join(root, "repo")
    const configDir = path.join(root, "config")
    const hookLog = path.join(root, "hooks.jsonl")
    const hookScript = path.join(root, "hook.sh")

    yield* fs.makeDirectory(worktree)
    const git = (...args: ReadonlyArray<string>) => run("git", args, { cwd: worktree })
    yield* git("init", "-q", "-b", "main")
    yield* git("config", "user.email", "worker@cco.test")
    yield* git("config", "user.name", "cco worker")
    yield* fs.writeFileString(path.join(worktree, "README.md"), "# test repo\n")
    yield* git("add", "README.md")
    yield* git("commit", "-q", "-m", "init")

    // One line per event: the event name the settings passed as $1, and the JSON the CLI wrote to stdin.
    // Written with one printf so that a reader never sees half a line.
    yield* fs.writeFileString(
      hookScript,
      `#!/bin/sh\nevent_json=$(cat)\nprintf '{"event":"%s","payload":%s}\\n' "$1" "$event_json" >> ${shellQuote(hookLog)}\n`
    )

    const mock = yield* startMockModel({ brain, keyNames: { [API_KEY]: "test-key" } })

    const socket = `cco-test-${randomBytes(6).toString("hex")}`
    const tmux = (...args: ReadonlyArray<string>) => run("tmux", ["-u", "-L", socket, ...args], { env: tmuxEnv })
    // claude keeps writing (SessionEnd hook, transcript) after its pane is gone: wait for it to exit
    // before the temp dir is removed, or before a relaunch reads the same transcript.
    const panePids = (target: ReadonlyArray<string>) =>
      tmux("list-panes", ...target, "-F", "#{pane_pid}").pipe(
        Effect.map((out) => out.split("\n").filter((l) => l !== "").map(Number)),
        Effect.orElseSucceed(() => [])
      )
    const awaitExit = (pids: ReadonlyArray<number>) =>
      waitFor("claude to exit", Effect.sync(() => (pids.some(alive) ? undefined : true)), 10_000).pipe(Effect.ignore)
    // tmux leaves its socket file behind after kill-server; remove it too.
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        const pids = yield* panePids(["-a"])
        const socketPath = yield* tmux("display-message", "-p", "#{socket_path}").pipe(
          Effect.map((out) => out.trim()),
          Effect.orElseSucceed(() => "")
        )
        yield* tmux("kill-server").pipe(Effect.ignore)
        yield* awaitExit(pids)
        if (socketPath.endsWith(socket)) yield* fs.remove(socketPath).pipe(Effect.ignore)
      })
    )
    const killSession = (session: string) =>
      Effect.gen(function*() {
        const pids = yield* panePids(["-t", session])
        yield* tmux("kill-session", "-t", session)
        yield* awaitExit(pids)
      })

    const launch = (session: string, overrides: Partial<InstanceLaunch> = {}) =>
      Effect.gen(function*() {
        const spec: InstanceLaunch = {
          configDir,
          worktree,
          claudePath,
          continueSession: false,
          credentialEnv: {
            ANTHROPIC_API_KEY: Redacted.make(API_KEY),
            ANTHROPIC_BASE_URL: Redacted.make(mock.url)
          },
          hookCommand: `sh ${shellQuote(hookScript)}`,
          extraEnv: { PATH: tmuxEnv.PATH },
          ...overrides
        }
        yield* prepareConfigDir(spec).pipe(
          Effect.provideService(FileSystem.FileSystem, fs),
          Effect.provideService(Path.Path, path)
        )
        const { argv, env } = launchCommand(spec)
        // The secret goes through a 0600 file that the session's shell sources and deletes before exec.
        const envFile = path.join(root, `env-${session}`)
        const lines = Object.entries(env).map(([k, v]) =>
          `export ${k}=${shellQuote(typeof v === "string" ? v : Redacted.value(v))}`
        )
        yield* fs.writeFileString(envFile, lines.join("\n") + "\n", { mode: 0o600 })
        const command = `. ${shellQuote(envFile)}; rm -f ${shellQuote(envFile)}; exec ${argv.map(shellQuote).join(" ")}`
        expect(command).not.toContain(API_KEY)
        const started = Date.now()
        yield* tmux("new-session", "-d", "-s", session, "-x", "200", "-y", "50", "-c", worktree, command)
        return started
      })

    const hooks = fs.exists(hookLog).pipe(
      Effect.flatMap((exists) => (exists ? fs.readFileString(hookLog) : Effect.succeed(""))),
      Effect.map((text) =>
        // Only complete lines: the last one may still be being written.
        text.split("\n").slice(0, -1).filter((l) => l.trim() !== "").map((l): HookLine => JSON.parse(l))
      )
    )
    /** The first event after the first `skip` events that matches. */
    const waitHook = (what: string, match: (h: HookLine) => boolean, timeoutMs = 60_000, skip = 0) =>
      waitFor(what, hooks.pipe(Effect.map((hs) => hs.slice(skip).find(match))), timeoutMs)

    const screen = (session: string) => tmux("capture-pane", "-p", "-t", session)
    const title = (session: string) => tmux("display-message", "-p", "-t", session, "#{pane_title}").pipe(Effect.map((t) => t.trim()))
    const prompt = (session: string, text: string) =>
      Effect.gen(function*() {
        const file = path.join(root, "prompt.txt")
        yield* fs.writeFileString(file, text)
        yield* tmux("load-buffer", "-b", "cco-prompt", file)
        yield* tmux("paste-buffer", "-p", "-d", "-b", "cco-prompt", "-t", session)
        yield* sleep(300)
        yield* tmux("send-keys", "-t", session, "Enter")
      })

    return {
      root,
      worktree,
      configDir,
      mock,
      tmux,
      launch,
      hooks,
      exists: (file: string) => fs.exists(file),
      killSession,
      waitHook,
      screen,
      title,
      prompt
    }
  })

type Fixture = Effect.Effect.Success<ReturnType<typeof fixture>>

// Ready for input: the SessionStart hook has fired, the input box is drawn and the title says idle.
const waitReady = (fx: Fixture, session: string, source: string, skip = 0) =>
  Effect.gen(function*() {
    const start = yield* fx.waitHook(
      `SessionStart(${source})`,
      (h) => h.event === "SessionStart" && h.payload.source === source,
      60_000,
      skip
    )
    const sessionStartAt = Date.now()
    yield* waitFor("the input box and an idle title", Effect.gen(function*() {
      const [screen, title] = [yield* fx.screen(session), yield* fx.title(session)]
      return screen.includes("❯") && isIdleTitle(title) ? true : undefined
    }), 30_000)
    return { start, sessionStartAt, readyAt: Date.now() }
  })

const dialogWords = /trust (this|the files)|Do you want to use this API key|Yes, I accept|Select login method|Choose the text style/i

const COMMIT_PROMPT = "Please create hello.txt and commit it."
// The sleep keeps the turn busy long enough to watch the pane while it works.
const COMMIT_COMMAND =
  "sleep 1.5 && printf 'hello from the mock\\n' > hello.txt && git add hello.txt && git commit -q -m 'Add hello.txt' && git log --oneline -1"
const SECOND_PROMPT = "What did we do so far?"

const readJsonLines = (file: string) =>
  FileSystem.FileSystem.pipe(
    Effect.flatMap((fs) => fs.readFileString(file)),
    Effect.map((text) =>
      text.split("\n").filter((l) => l !== "").map((l) =>
        JSON.parse(l) as { readonly type?: string; readonly message?: { readonly usage?: Record<string, number> } }
      )
    )
  )

describe("claude in tmux against the mock model", () => {
  it.scopedLive("runs a scripted tool call, fires hooks, and continues the conversation after a restart", () =>
    Effect.gen(function*() {
      const seen: Array<MockRequest> = []
      const brain: Brain = (req) => {
        seen.push(req)
        if (pendingToolResults(req).length > 0) return { _tag: "Text", text: "done" }
        if (lastUserText(req) === COMMIT_PROMPT) {
          return {
            _tag: "ToolUse",
            text: "I will commit it.",
            tools: [{ name: "Bash", input: { command: COMMIT_COMMAND, description: "Commit hello.txt" } }]
          }
        }
        return { _tag: "Text", text: `I remember ${userTexts(req).length - 1} earlier prompt(s).` }
      }
      const fx = yield* fixture(brain)

      // Part 1: a fresh instance; the prompt is answered by a Bash tool call that commits, then "done".
      const launched = yield* fx.launch("first")
      const { start, sessionStartAt, readyAt } = yield* waitReady(fx, "first", "startup")
      expect(yield* fx.exists(`${fx.root}/env-first`), "the env file is deleted before claude runs").toBe(false)
      expect(allArgv()).not.toContain(API_KEY)
      yield* fx.prompt("first", COMMIT_PROMPT)
      const submitted = yield* fx.waitHook("UserPromptSubmit", (h) => h.event === "UserPromptSubmit", 30_000)
      const acceptedAt = Date.now()
      // Watch the pane through the turn: which titles show, and whether the footer says it is busy.
      const titlesDuringTurn = new Set<string>()
      let busyScreenSeen = false
      const stop = yield* waitFor(
        "Stop",
        Effect.gen(function*() {
          const title = yield* fx.title("first")
          titlesDuringTurn.add(title)
          busyScreenSeen ||= isBusyScreen(yield* fx.screen("first"))
          return (yield* fx.hooks).find((h) => h.event === "Stop")
        }),
        60_000
      )
      expect(busyScreenSeen, "the footer said 'esc to interrupt' during the turn").toBe(true)
      // The Stop hook runs a moment before the footer is redrawn.
      yield* waitFor(
        "the footer to drop 'esc to interrupt'",
        fx.screen("first").pipe(Effect.map((s) => (isBusyScreen(s) ? undefined : true))),
        10_000
      )
      const idleTitle = yield* waitFor(
        "an idle title after the turn",
        fx.title("first").pipe(Effect.map((t) => (isIdleTitle(t) ? t : undefined))),
        15_000
      )

      expect(yield* fx.screen("first")).not.toMatch(dialogWords)
      expect(submitted.payload.prompt).toBe(COMMIT_PROMPT)
      expect((yield* run("git", ["log", "--format=%s"], { cwd: fx.worktree })).split("\n")).toContain("Add hello.txt")
      expect(yield* run("git", ["show", "HEAD:hello.txt"], { cwd: fx.worktree })).toBe("hello from the mock\n")

      const events = yield* fx.hooks
      expect(events.map((h) => h.event)).toEqual(["SessionStart", "UserPromptSubmit", "PostToolUse", "Stop"])
      for (const h of events) {
        expect(h.payload.hook_event_name).toBe(h.event)
        expect(h.payload.session_id).toBe(start.payload.session_id)
        expect(h.payload.transcript_path).toBe(start.payload.transcript_path)
        expect(h.payload.cwd).toBe(fx.worktree)
      }
      const postToolUse = events.find((h) => h.event === "PostToolUse")!
      expect(postToolUse.payload.tool_name).toBe("Bash")
      expect(postToolUse.payload.tool_input).toMatchObject({ command: COMMIT_COMMAND })
      expect(JSON.stringify(postToolUse.payload.tool_response)).toContain("Add hello.txt")
      expect(stop.payload.last_assistant_message).toBe("done")
      expect(lastToolResult(seen.at(-1)!)).toContain("Add hello.txt")

      const transcript = String(start.payload.transcript_path)
      expect(transcript.startsWith(`${fx.configDir}/projects/`)).toBe(true)
      const assistant = (yield* readJsonLines(transcript)).filter((l) => l.type === "assistant")
      expect(assistant.length).toBeGreaterThanOrEqual(2)
      for (const l of assistant) expect(l.message?.usage).toMatchObject({ input_tokens: 100, output_tokens: 20 })
      expect(idleTitle).toBe("✳ Claude Code")

      // Part 2: the process dies; a relaunch with --continue in the same worktree carries the conversation on.
      const requestsBefore = seen.length
      yield* fx.killSession("first")
      const hooksBefore = (yield* fx.hooks).length
      const relaunched = Date.now()
      yield* fx.launch("second", { continueSession: true })
      const { readyAt: resumedReadyAt } = yield* waitReady(fx, "second", "resume", hooksBefore)
      yield* fx.prompt("second", SECOND_PROMPT)
      const secondStop = yield* fx.waitHook("the second Stop", (h) => h.event === "Stop", 60_000, hooksBefore)
      const continued = seen.slice(requestsBefore).find((r) => lastUserText(r) === SECOND_PROMPT)
      expect(continued, "the brain saw the second prompt").toBeDefined()
      expect(userTexts(continued!)).toEqual([COMMIT_PROMPT, SECOND_PROMPT])
      expect(toolResults(continued!).join("\n")).toContain("Add hello.txt")
      expect(secondStop.payload.last_assistant_message).toBe("I remember 1 earlier prompt(s).")
      expect((yield* fx.mock.ledger)["test-key"]).toMatchObject({ requests: 3, input_tokens: 300, output_tokens: 60 })
      // Every request the CLI made is one the mock understands; a new endpoint after an upgrade shows up here.
      expect((yield* fx.mock.requests).filter((r) => r.reply === "Unknown")).toEqual([])

      // Start-up figures for the log; the assertions above do not depend on them.
      console.log(JSON.stringify({
        launchToSessionStartMs: sessionStartAt - launched,
        launchToReadyMs: readyAt - launched,
        launchToPromptAcceptedMs: acceptedAt - launched,
        relaunchToReadyMs: resumedReadyAt - relaunched,
        titlesDuringTurn: [...titlesDuringTurn]
      }))
    }).pipe(Effect.provide(NodeContext.layer)), { timeout: 90_000 })

  it.scopedLive("ends the turn with a StopFailure rate_limit hook on a 429 when retries are off", () =>
    Effect.gen(function*() {
      const seen: Array<MockRequest> = []
      const fx = yield* fixture((req) => {
        seen.push(req)
        return rateLimitError({ retryAfterSeconds: 120 })
      })
      yield* fx.launch("limited", { extraEnv: { PATH: tmuxEnv.PATH, CLAUDE_CODE_MAX_RETRIES: "0" } })
      yield* waitReady(fx, "limited", "startup")
      yield* fx.prompt("limited", "Please do some work.")
      const failure = yield* fx.waitHook("StopFailure", (h) => h.event === "StopFailure", 30_000)
      expect(failure.payload).toMatchObject({
        hook_event_name: "StopFailure",
        error: "rate_limit",
        last_assistant_message: expect.stringContaining("Request rejected (429)")
      })
      expect(seen).toHaveLength(1)
      const screen = yield* waitFor(
        "the error on screen",
        fx.screen("limited").pipe(Effect.map((s) => (s.includes("Resend your message to try again") ? s : undefined))),
        10_000
      )
      expect(screen).toContain("API Error: Request rejected (429)")
      expect(isIdleTitle(yield* fx.title("limited"))).toBe(true)

      // The key works again: the next prompt goes through, carrying the failed one with it.
      yield* fx.mock.setBrain((req) => {
        seen.push(req)
        return { _tag: "Text", text: "recovered" }
      })
      yield* fx.prompt("limited", "Try again now.")
      const stop = yield* fx.waitHook("Stop after recovery", (h) => h.event === "Stop", 30_000)
      expect(stop.payload.last_assistant_message).toBe("recovered")
      expect(userTexts(seen.at(-1)!).join("\n")).toContain("Try again now.")
    }).pipe(Effect.provide(NodeContext.layer)), { timeout: 60_000 })
})

// Every event but SessionStart goes from the CLI straight to cco's loopback port (an http hook): no process per
// event. The token reaches the request only through the CLI's interpolation of CCO_TOKEN into a header.
describe("claude's http hooks reach cco", () => {
  it.scopedLive("posts each event with the instance's token; a session with a wrong token is refused and publishes nothing", () =>
    Effect.gen(function*() {
      const fx = yield* fixture((req) => {
        if (pendingToolResults(req).length > 0) return { _tag: "Text", text: "done" }
        if (lastUserText(req) === "Run the failing check.") {
          return { _tag: "ToolUse", text: "Checking.", tools: [{ name: "Bash", input: { command: "exit 3", description: "Fail" } }] }
        }
        return { _tag: "ToolUse", text: "Listing.", tools: [{ name: "Bash", input: { command: "ls", description: "List" } }] }
      })
      const runLog = yield* RunLog.make(fx.root, "e2e")
      const events = yield* Events.make(`${fx.root}/control.sock`).pipe(Effect.provideService(RunLog.RunLog, runLog))
      const hookUrl = events.hookUrl!
      const token = yield* events.register("worker-1")
      yield* events.setGeneration("worker-1", 1)
      const received: Array<Events.HookEvent> = []
      yield* Stream.fromPubSub(events.hooks).pipe(Stream.runForEach((e) => Effect.sync(() => received.push(e))), Effect.forkScoped)
      const identity = (t: string) => ({ PATH: tmuxEnv.PATH, CCO_INSTANCE: "worker-1", CCO_GENERATION: "1", CCO_TOKEN: t })
      const arrived = (hook: string, skip = 0) =>
        waitFor(hook, Effect.sync(() => received.slice(skip).find((e) => e.hook === hook)), 60_000)

      yield* fx.launch("good", { hookUrl, extraEnv: identity(token) })
      yield* waitReady(fx, "good", "startup")
      yield* fx.prompt("good", "List the files.")
      const posted = yield* arrived("PostToolUse")
      expect(posted).toMatchObject({ instance: "worker-1", generation: 1, payload: { tool_name: "Bash" } })
      yield* arrived("Stop")
      // Counted before the next turn: its Stop may come right after its PostToolUseFailure.
      const stops = received.filter((e) => e.hook === "Stop").length
      yield* fx.prompt("good", "Run the failing check.")
      expect(yield* arrived("PostToolUseFailure")).toMatchObject({ payload: { tool_name: "Bash", error: expect.stringContaining("3") } })
      yield* waitFor("the second Stop", Effect.sync(() => (received.filter((e) => e.hook === "Stop").length > stops ? true : undefined)), 60_000)
      expect(new Set(received.map((e) => e.hook))).toEqual(new Set(["UserPromptSubmit", "PostToolUse", "PostToolUseFailure", "Stop"]))
      // Those came by http alone: the command hook ran for SessionStart only.
      expect((yield* fx.hooks).map((h) => h.event)).toEqual(["SessionStart"])
      const settings = yield* Effect.promise(() => import("node:fs/promises").then((f) => f.readFile(`${fx.configDir}/settings.json`, "utf8")))
      expect(settings).toContain(`${hookUrl}/hook/Stop`)
      expect(settings).not.toContain(token)
      expect(allArgv()).not.toContain(token)
      yield* fx.killSession("good")
      yield* arrived("SessionEnd")

      // The same session with a wrong token: each event is refused (and logged), none is published.
      const before = received.length
      yield* fx.launch("forged", { hookUrl, extraEnv: identity("0".repeat(48)) })
      yield* waitReady(fx, "forged", "startup", 1)
      yield* fx.prompt("forged", "List the files.")
      const refusals = () =>
        Effect.promise(() => import("node:fs/promises").then((f) => f.readFile(`${fx.root}/combined.log`, "utf8")).catch(() => "")).pipe(
          Effect.map((text) => text.split("\n").filter((l) => l.includes("control.rejected")).map((l) => JSON.parse(l) as Record<string, unknown>))
        )
      yield* waitFor("the forged Stop refused", refusals().pipe(Effect.map((r) => (r.some((l) => l.kind === "hook:Stop") ? true : undefined))), 60_000)
      expect((yield* refusals()).map((l) => [l.kind, l.reason])).toEqual([
        ["hook:UserPromptSubmit", "bad token"],
        ["hook:PostToolUse", "bad token"],
        ["hook:Stop", "bad token"]
      ])
      expect(received.slice(before)).toEqual([])
    }).pipe(Effect.provide(NodeContext.layer)), { timeout: 150_000 })
})

// The recipe itself, checked without starting claude.
describe("ClaudeCode launch recipe", () => {
  const base = (configDir: string, worktree: string): InstanceLaunch => ({
    configDir,
    worktree,
    claudePath: "/opt/claude/bin/claude",
    continueSession: false,
    credentialEnv: { ANTHROPIC_API_KEY: Redacted.make(API_KEY) },
    hookCommand: "cco hook --instance worker-1",
    extraEnv: { CCO_INSTANCE: "worker-1", DISABLE_TELEMETRY: "0", CLAUDE_CONFIG_DIR: "/elsewhere" }
  })

  it("builds argv without secrets and env with the credential redacted", () => {
    const { argv, env } = launchCommand({ ...base("/run/cfg", "/run/wt"), model: "opus", continueSession: true })
    expect(argv).toEqual(["/opt/claude/bin/claude", "--dangerously-skip-permissions", "--model", "opus", "--continue"])
    expect(launchCommand(base("/run/cfg", "/run/wt")).argv).toEqual(["/opt/claude/bin/claude", "--dangerously-skip-permissions"])
    expect(env).toMatchObject({
      CLAUDE_CONFIG_DIR: "/run/cfg",
      IS_SANDBOX: "1",
      CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: "1",
      DISABLE_AUTOUPDATER: "1",
      CCO_INSTANCE: "worker-1",
      DISABLE_TELEMETRY: "0"
    })
    const key = env.ANTHROPIC_API_KEY
    expect(key !== undefined && Redacted.isRedacted(key) && Redacted.value(key) === API_KEY).toBe(true)
    expect(JSON.stringify(env)).not.toContain(API_KEY)
  })

  it("hooks: commands alone without a hook URL; with one, http hooks for all but SessionStart, the token only as a reference", () => {
    const launch = base("/run/cfg", "/run/wt")
    const hooksOf = (l: InstanceLaunch) => instanceSettings(l).hooks as Record<string, ReadonlyArray<{ hooks: ReadonlyArray<Record<string, unknown>> }>>
    for (const event of hookEvents) {
      expect(hooksOf(launch)[event]![0]!.hooks).toEqual([{ type: "command", command: `cco hook --instance worker-1 ${event}`, timeout: 30 }])
    }
    const viaHttp = hooksOf({ ...launch, hookUrl: "http://127.0.0.1:4711" })
    expect(viaHttp.SessionStart![0]!.hooks).toEqual([{ type: "command", command: "cco hook --instance worker-1 SessionStart", timeout: 30 }])
    for (const event of hookEvents.filter((e) => e !== "SessionStart")) {
      expect(viaHttp[event]![0]!.hooks).toEqual([{
        type: "http",
        url: `http://127.0.0.1:4711/hook/${event}`,
        headers: { "x-cco-instance": "${CCO_INSTANCE}", "x-cco-generation": "${CCO_GENERATION}", "x-cco-token": "${CCO_TOKEN}" },
        allowedEnvVars: ["CCO_INSTANCE", "CCO_GENERATION", "CCO_TOKEN"],
        timeout: 30
      }])
    }
  })

  it("reads busy and idle from the pane title", () => {
    expect(isIdleTitle("✳ Claude Code")).toBe(true)
    expect(isBusyTitle("✳ Claude Code")).toBe(false)
    expect(isBusyTitle("⠂ Claude Code")).toBe(true)
    expect(isIdleTitle("⠐ Claude Code")).toBe(false)
    expect(isIdleTitle("bash")).toBe(false)
    expect(isBusyTitle("bash")).toBe(false)
  })

  it.scoped("prepares a private config dir idempotently, keeping what the CLI wrote", () =>
    Effect.gen(function*() {
      const fs = yield* FileSystem.FileSystem
      const root = yield* fs.makeTempDirectoryScoped({ prefix: "cco-recipe-" })
      const launch = base(`${root}/cfg`, `${root}/wt`)
      yield* prepareConfigDir(launch)
      expect((yield* fs.stat(launch.configDir)).mode & 0o777).toBe(0o700)
      expect((yield* fs.stat(`${launch.configDir}/.claude.json`)).mode & 0o777).toBe(0o600)
      expect((yield* fs.stat(`${launch.configDir}/settings.json`)).mode & 0o777).toBe(0o600)
      const settings = JSON.parse(yield* fs.readFileString(`${launch.configDir}/settings.json`))
      for (const event of ["SessionStart", "UserPromptSubmit", "PostToolUse", "Stop", "StopFailure", "Notification", "SessionEnd"]) {
        expect(settings.hooks[event][0].hooks[0]).toMatchObject({ type: "command", command: `cco hook --instance worker-1 ${event}` })
      }

      // What the CLI adds on its own must survive a re-prepare, and so must transcripts.
      const claudeJson = `${launch.configDir}/.claude.json`
      const written = JSON.parse(yield* fs.readFileString(claudeJson))
      written.numStartups = 3
      written.projects[launch.worktree].lastSessionId = "abc"
      yield* fs.writeFileString(claudeJson, JSON.stringify(written))
      yield* fs.makeDirectory(`${launch.configDir}/projects/x`, { recursive: true })
      yield* fs.writeFileString(`${launch.configDir}/projects/x/abc.jsonl`, "{}\n")
      yield* prepareConfigDir(launch)
      const again = JSON.parse(yield* fs.readFileString(claudeJson))
      expect(again).toMatchObject({
        numStartups: 3,
        hasCompletedOnboarding: true,
        bypassPermissionsModeAccepted: true,
        projects: { [launch.worktree]: { lastSessionId: "abc", hasTrustDialogAccepted: true } },
        customApiKeyResponses: { approved: [API_KEY.slice(-20)], rejected: [] }
      })
      expect(yield* fs.readFileString(`${launch.configDir}/projects/x/abc.jsonl`)).toBe("{}\n")
    }).pipe(Effect.provide(NodeContext.layer)))

  it.scoped("links the shared OAuth credentials file, re-asserting the link on every prepare", () =>
    Effect.gen(function*() {
      const fs = yield* FileSystem.FileSystem
      const root = yield* fs.makeTempDirectoryScoped({ prefix: "cco-recipe-" })
      const shared = `${root}/user-credentials.json`
      yield* fs.writeFileString(shared, "{}")
      const oauth: InstanceLaunch = { ...base(`${root}/cfg`, `${root}/wt`), credentialEnv: {} }
      const link = `${oauth.configDir}/.credentials.json`
      yield* prepareConfigDir(oauth, { oauthCredentialsFile: shared })
      expect(yield* fs.readLink(link)).toBe(shared)
      // The CLI replaces the link by a private file when it refreshes the token.
      yield* fs.remove(link)
      yield* fs.writeFileString(link, "{\"private\":true}")
      yield* prepareConfigDir(oauth, { oauthCredentialsFile: shared })
      expect(yield* fs.readLink(link)).toBe(shared)
      // A long-lived CLAUDE_CODE_OAUTH_TOKEN needs no file: the link goes.
      yield* prepareConfigDir(
        { ...oauth, credentialEnv: { CLAUDE_CODE_OAUTH_TOKEN: Redacted.make("sk-ant-oat01-test") } },
        { oauthCredentialsFile: shared }
      )
      expect(yield* fs.exists(link)).toBe(false)
      // Rotating to an API key drops it too, so that only the key is used.
      yield* prepareConfigDir(oauth, { oauthCredentialsFile: shared })
      yield* prepareConfigDir(base(oauth.configDir, oauth.worktree))
      expect(yield* fs.exists(link)).toBe(false)
    }).pipe(Effect.provide(NodeContext.layer)))
})
