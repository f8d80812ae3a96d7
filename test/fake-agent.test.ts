// The scripted fake Claude Code honours the CLI's contract: driven by bracketed paste in a private tmux server
// against the project's mock Messages API, it runs Bash tools, fires hooks, writes transcripts and resumes.
import { NodeContext } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { execFile } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import {
  lastUserText,
  type MockReply,
  type MockRequest,
  pendingToolResults,
  rateLimitError,
  toolResults,
  userTexts
} from "../src/MockBrain.js"
import { defaultUsage, startMockModel } from "../src/MockModel.js"
import { alive, removeSocketFile, tempDir, uniqueSocket, waitFor } from "./support.js"

const fakeClaude = fileURLToPath(new URL("./fake-agent/fake-claude.mjs", import.meta.url))
const KEY = "sk-ant-fake-agent-test-0123456789abcdef"
const MODEL = "claude-test-model"

const run = (command: string, args: ReadonlyArray<string>, cwd?: string) =>
  Effect.async<string, Error>((resume) => {
    execFile(command, [...args], { cwd, encoding: "utf8" }, (error, stdout, stderr) => {
      resume(error ? Effect.fail(new Error(`${command} ${args[0] ?? ""} ${args[2] ?? ""}: ${stderr || error.message}`)) : Effect.succeed(stdout))
    })
  })

// Killing the server hangs up the fakes; they still run their SessionEnd hooks, so wait for them to exit
// before the temp dir they write into is removed.
const killServer = (socket: string) =>
  Effect.gen(function*() {
    const listed = yield* run("tmux", ["-L", socket, "list-panes", "-a", "-F", "#{pane_pid}"]).pipe(Effect.orElseSucceed(() => ""))
    const pids = listed.split("\n").filter((l) => l.trim() !== "").map(Number)
    yield* run("tmux", ["-L", socket, "kill-server"]).pipe(Effect.ignore)
    yield* waitFor("panes to exit", Effect.sync(() => (pids.some(alive) ? undefined : true)), 5_000, 50).pipe(Effect.ignore)
    // tmux leaves its socket files behind.
    yield* Effect.sync(() => removeSocketFile(socket))
  })

/** tmux on a private server (started with `conf`) that is killed when the scope closes, also on failure. */
const privateTmux = (conf: string) =>
  Effect.acquireRelease(Effect.sync(uniqueSocket), killServer).pipe(Effect.map((socket) => (...args: ReadonlyArray<string>) => run("tmux", ["-L", socket, "-f", conf, ...args])))

type TmuxCommand = Effect.Effect.Success<ReturnType<typeof privateTmux>>

interface HookRecord {
  readonly event: string
  readonly payload: Record<string, unknown>
}

// Each hook appends "<tag>\t<stdin JSON>\n"; a line still being written (no newline yet) is left for later.
const readHooks = (file: string): ReadonlyArray<HookRecord> =>
  fs.existsSync(file)
    ? fs.readFileSync(file, "utf8").split("\n").slice(0, -1).filter((l) => l.includes("\t")).map((line) => {
      const [event = "", json = "{}"] = line.split("\t")
      return { event, payload: JSON.parse(json) as Record<string, unknown> }
    })
    : []

const paneTitle = (tmux: TmuxCommand, session: string) =>
  Effect.map(tmux("display-message", "-p", "-t", session, "#{pane_title}"), (s) => s.trim())

const paneText = (tmux: TmuxCommand, session: string) => tmux("capture-pane", "-p", "-J", "-S", "-200", "-t", session)

const isBraille = (title: string) => {
  const cp = title.codePointAt(0) ?? 0
  return cp >= 0x2800 && cp <= 0x28ff
}

// As cco delivers prompts: load-buffer from a file, bracketed paste, then a separate Enter.
const pasteAndEnter = (tmux: TmuxCommand, session: string, text: string, dir: string) =>
  Effect.gen(function*() {
    const buffer = `cco-${session}`
    const file = path.join(dir, `${buffer}.txt`)
    fs.writeFileSync(file, text)
    yield* tmux("load-buffer", "-b", buffer, file)
    yield* tmux("paste-buffer", "-p", "-d", "-b", buffer, "-t", session)
    yield* tmux("send-keys", "-t", session, "Enter")
  })

const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null && !Array.isArray(u)
const blocks = (m: unknown): ReadonlyArray<Record<string, unknown>> =>
  isRecord(m) && Array.isArray(m.content) ? m.content.filter(isRecord) : []

/** A temp git repo, a config dir whose hooks log every event, the mock API with `brain`, and a launcher. */
const setup = (brain: (req: MockRequest) => MockReply) =>
  Effect.gen(function*() {
    const root = yield* tempDir("cco-fake-agent-")
    // Dead panes stay, so a crash of the fake shows in the failure message.
    const conf = path.join(root, "tmux.conf")
    fs.writeFileSync(conf, "set -g remain-on-exit on\n")
    const tmux = yield* privateTmux(conf)
    // A dot in the path: the project folder name replaces it too.
    const repo = path.join(root, "work.tree")
    const configDir = path.join(root, "claude")
    const hookLog = path.join(root, "hooks.log")
    const envFile = path.join(root, "agent.env")
    fs.mkdirSync(repo)
    fs.mkdirSync(configDir)
    yield* run("git", ["init", "-q", "-b", "main"], repo)
    yield* run("git", ["config", "user.email", "fake@example.invalid"], repo)
    yield* run("git", ["config", "user.name", "Fake Agent"], repo)
    yield* run("git", ["commit", "-q", "--allow-empty", "-m", "root"], repo)

    const tagged = (tag: string) => `{ printf '%s\\t' ${tag}; cat; echo; } >> '${hookLog}'`
    const events = ["SessionStart", "UserPromptSubmit", "PostToolUse", "PostToolUseFailure", "Stop", "StopFailure", "SessionEnd"]
    const hooks: Record<string, Array<unknown>> = Object.fromEntries(
      events.map((e) => [e, [{ matcher: e === "PostToolUse" ? "Bash" : "", hooks: [{ type: "command", command: tagged(e) }] }]])
    )
    // A matcher that names another tool must not fire.
    hooks.PostToolUse!.push({ matcher: "Write|Edit", hooks: [{ type: "command", command: tagged("WrongMatcher") }] })
    fs.writeFileSync(path.join(configDir, "settings.json"), JSON.stringify({ hooks }))

    const requests: Array<MockRequest> = []
    const mock = yield* startMockModel({
      brain: (req) => {
        requests.push(req)
        return brain(req)
      }
    })

    // The key reaches the pane through a private file, never through argv.
    const env = {
      ANTHROPIC_BASE_URL: mock.url,
      ANTHROPIC_API_KEY: KEY,
      CLAUDE_CONFIG_DIR: configDir,
      CCO_TEST_MARK: "mark-42",
      PATH: process.env.PATH ?? "/usr/bin:/bin"
    }
    fs.writeFileSync(envFile, Object.entries(env).map(([k, v]) => `export ${k}='${v}'\n`).join(""), { mode: 0o600 })
    const launch = (session: string, extra: ReadonlyArray<string> = []) =>
      tmux(
        "new-session", "-d", "-s", session, "-x", "200", "-y", "50", "-c", repo,
        "sh", "-c", '. "$0" && exec "$@"', envFile,
        process.execPath, fakeClaude, "--dangerously-skip-permissions", "--model", MODEL, ...extra
      )
    // A timed-out wait says what every pane showed.
    const panes = Effect.gen(function*() {
      const sessions = (yield* tmux("list-sessions", "-F", "#{session_name}")).trim().split("\n")
      const texts = yield* Effect.forEach(sessions, (name) => Effect.map(paneText(tmux, name), (t) => `--- pane ${name} ---\n${t.trimEnd()}`))
      return texts.join("\n")
    }).pipe(Effect.orElseSucceed(() => "(no panes)"))
    const explained = <A>(wait: Effect.Effect<A, Error>) =>
      Effect.catchAll(wait, (e) => Effect.flatMap(panes, (p) => Effect.fail(new Error(`${e.message}\n${p}`))))
    const hooksNamed = (name: string) => readHooks(hookLog).filter((h) => h.event === name)
    const waitHook = (name: string, count = 1) =>
      explained(waitFor(`${count} ${name} hook(s)`, Effect.sync(() => {
        const found = hooksNamed(name)
        return found.length >= count ? found[count - 1] : undefined
      }), 10_000, 50))
    const waitIdle = (session: string) =>
      explained(waitFor("idle title", Effect.map(paneTitle(tmux, session), (t) => (t === "✳ Claude Code" ? t : undefined)), 10_000, 50))
    const waitBusy = (session: string) =>
      explained(waitFor("busy title", Effect.map(paneTitle(tmux, session), (t) => (isBraille(t) ? t : undefined)), 5_000, 20))
    const paste = (session: string, text: string) => pasteAndEnter(tmux, session, text, root)
    return { tmux, root, repo, configDir, hookLog, requests, launch, hooksNamed, waitHook, waitIdle, waitBusy, paste }
  })

describe("fake Claude Code in tmux", () => {
  it.scoped("runs a tool turn with hooks and a transcript, reports a 429, and resumes with --continue", () =>
    Effect.gen(function*() {
      const w = yield* setup((req) => {
        const prompt = lastUserText(req) ?? ""
        if (pendingToolResults(req).length > 0) return { _tag: "Text", text: "Committed hello.txt." }
        if (prompt.includes("rate limit me")) return rateLimitError({ retryAfterSeconds: 3600 })
        if (prompt.includes("commit a greeting")) {
          return {
            _tag: "ToolUse",
            text: "Writing the greeting.",
            tools: [{
              name: "Bash",
              input: {
                command: `sleep 0.6; printf 'hello from %s\\n' "$CCO_TEST_MARK" > hello.txt && git add hello.txt && ` +
                  `git commit -q -m "Add greeting" && echo committed`
              }
            }]
          }
        }
        return { _tag: "Text", text: `Earlier we committed a greeting. You said: ${prompt}` }
      })
      const { tmux, repo, configDir, hookLog, requests, hooksNamed, waitHook, waitIdle } = w

      // --- First session: a tool turn that commits.
      yield* w.launch("agent-a")
      const start = yield* waitHook("SessionStart")
      yield* waitIdle("agent-a")
      const prompt = "Please commit a greeting\nin hello.txt"
      yield* w.paste("agent-a", prompt)
      yield* w.waitBusy("agent-a")
      const stop = yield* waitHook("Stop")
      yield* waitIdle("agent-a")

      const log = yield* run("git", ["log", "--format=%s", "-n", "1"], repo)
      expect(log.trim()).toBe("Add greeting")
      // The tool ran in the worktree with the instance's environment.
      expect(fs.readFileSync(path.join(repo, "hello.txt"), "utf8")).toBe("hello from mark-42\n")

      expect(readHooks(hookLog).map((h) => h.event)).toEqual(["SessionStart", "UserPromptSubmit", "PostToolUse", "Stop"])
      const sessionId = start.payload.session_id
      expect(typeof sessionId).toBe("string")
      const transcript = path.join(configDir, "projects", repo.replace(/[^a-zA-Z0-9]/g, "-"), `${String(sessionId)}.jsonl`)
      for (const h of readHooks(hookLog)) {
        expect(h.payload).toMatchObject({ session_id: sessionId, cwd: repo, transcript_path: transcript, hook_event_name: h.event })
      }
      expect(start.payload.source).toBe("startup")
      expect(hooksNamed("UserPromptSubmit")[0]?.payload.prompt).toBe(prompt)
      const post = hooksNamed("PostToolUse")[0]?.payload
      expect(post?.tool_name).toBe("Bash")
      expect(post?.tool_input).toMatchObject({ command: expect.stringContaining("git commit") })
      expect(post?.tool_response).toMatchObject({ stdout: "committed" })
      expect(stop.payload).toMatchObject({ stop_hook_active: false, last_assistant_message: "Committed hello.txt." })

      // What the model saw, shaped as 2.1.332 sends it: a git status reminder and the pasted prompt, then a
      // system-role environment message; then the tool result.
      expect(requests).toHaveLength(2)
      expect(requests[0]?.apiKey).toBe(KEY)
      expect(requests[0]?.model).toBe(MODEL)
      expect(requests[0]?.system).toContain("fake Claude Code")
      const [firstUser, environment] = requests[0]!.messages
      expect(blocks(firstUser).map((b) => b.text)).toEqual([expect.stringMatching(/^<system-reminder>\n[\s\S]*# gitStatus/), prompt])
      expect(environment).toMatchObject({ role: "system", content: expect.stringMatching(/^# Environment\n/) })
      expect(isRecord(environment) && String(environment.content)).toContain(`Primary working directory: ${repo}\n`)
      expect(toolResults(requests[1]!)).toEqual(["committed"])

      const screen = yield* paneText(tmux, "agent-a")
      expect(screen).toContain("> Please commit a greeting\n  in hello.txt")
      expect(screen).toContain("● Bash(sleep 0.6; printf")
      expect(screen).toContain("⎿  committed")
      expect(screen).toContain("● Committed hello.txt.")
      expect(screen).not.toContain("Working…")

      const entries = fs.readFileSync(transcript, "utf8").trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>)
      const assistant = entries.filter((e) => e.type === "assistant")
      // One line per content block: text + tool_use, then the final text.
      expect(assistant).toHaveLength(3)
      for (const e of assistant) {
        expect(e).toMatchObject({ sessionId, message: { role: "assistant", model: MODEL, usage: defaultUsage } })
        expect(e.requestId).toEqual(expect.any(String))
        expect(isRecord(e.message) && typeof e.message.id === "string").toBe(true)
      }
      expect(entries.some((e) => e.type === "user" && isRecord(e.message) && e.message.content === prompt)).toBe(true)

      // --- A 429: StopFailure, the CLI's wording on the pane, idle again.
      yield* w.paste("agent-a", "now rate limit me")
      const failure = yield* waitHook("StopFailure")
      expect(failure.payload).toMatchObject({
        error: "rate_limit",
        session_id: sessionId,
        last_assistant_message: expect.stringContaining("Request rejected (429)")
      })
      yield* waitIdle("agent-a")
      expect(yield* paneText(tmux, "agent-a")).toContain(
        "API Error: Request rejected (429) · This request would exceed your account's rate limit."
      )
      expect(requests).toHaveLength(3)

      // --- Killed and relaunched with --continue: same session, the whole conversation goes back to the model.
      yield* tmux("kill-session", "-t", "agent-a")
      expect((yield* waitHook("SessionEnd")).payload.reason).toBe("other")
      yield* w.launch("agent-b", ["--continue"])
      const resumed = yield* waitHook("SessionStart", 2)
      expect(resumed.payload).toMatchObject({ source: "resume", session_id: sessionId, transcript_path: transcript })
      yield* waitIdle("agent-b")
      // Typed keys (send-keys -l) accumulate like a paste.
      yield* tmux("send-keys", "-t", "agent-b", "-l", "what did we do?")
      yield* tmux("send-keys", "-t", "agent-b", "Enter")
      yield* waitHook("Stop", 2)
      yield* waitIdle("agent-b")

      expect(requests).toHaveLength(4)
      const resumedRequest = requests[3]!
      expect(userTexts(resumedRequest)).toEqual([prompt, "now rate limit me", "what did we do?"])
      expect(toolResults(resumedRequest)).toEqual(["committed"])
      const msgs = resumedRequest.messages
      expect(msgs.map((m) => (isRecord(m) ? m.role : undefined))).toEqual(["user", "system", "assistant", "user", "assistant", "user"])
      expect(blocks(msgs[2]).map((b) => b.type)).toEqual(["text", "tool_use"])
      // The prompt that failed on the 429 travels again, joined with the new one in one user message.
      expect(blocks(msgs.at(-1)).map((b) => b.text)).toEqual(["now rate limit me\n", "what did we do?"])
      expect(yield* paneText(tmux, "agent-b")).toContain("● Earlier we committed a greeting. You said: what did we do?")
      expect(hooksNamed("WrongMatcher")).toEqual([])
    }).pipe(Effect.provide(NodeContext.layer)), 30_000)

  it.scoped("queues input sent while busy, reports failed commands, kills the tool on Escape, exits on Ctrl-D", () =>
    Effect.gen(function*() {
      const bash = (command: string): MockReply => ({ _tag: "ToolUse", tools: [{ name: "Bash", input: { command } }] })
      const w = yield* setup((req) => {
        const prompt = lastUserText(req) ?? ""
        const pending = pendingToolResults(req)
        // The rejected tool of the interrupted turn travels with the next prompt, in one user message.
        if (prompt === "carry on") return { _tag: "Text", text: "carrying on" }
        if (pending.length > 0) return { _tag: "Text", text: `after: ${pending.at(-1)}` }
        if (prompt === "slow task") return bash("sleep 1; echo slow-done")
        if (prompt === "failing command") return bash("echo oops; echo err >&2; exit 3")
        if (prompt === "long task") return bash("touch started.flag; sleep 5; echo long-done")
        return { _tag: "Text", text: `ok: ${prompt}` }
      })
      const { tmux, repo, requests, hooksNamed, waitHook, waitIdle } = w
      yield* w.launch("agent-q")
      yield* waitHook("SessionStart")
      yield* waitIdle("agent-q")

      // Two messages while the slow tool runs: queued, then sent together as the next prompt.
      yield* w.paste("agent-q", "slow task")
      yield* w.waitBusy("agent-q")
      yield* w.paste("agent-q", "first queued")
      yield* tmux("send-keys", "-t", "agent-q", "-l", "second queued")
      yield* tmux("send-keys", "-t", "agent-q", "Enter")
      yield* waitHook("Stop", 2)
      yield* waitIdle("agent-q")
      expect(hooksNamed("UserPromptSubmit").map((h) => h.payload.prompt)).toEqual(["slow task", "first queued\nsecond queued"])

      // A command that exits non-zero: PostToolUseFailure (not PostToolUse), "Exit code N" first.
      yield* w.paste("agent-q", "failing command")
      const failed = yield* waitHook("PostToolUseFailure")
      expect(failed.payload).toMatchObject({ tool_name: "Bash", is_interrupt: false, error: expect.stringMatching(/^Exit code 3\n/) })
      expect(String(failed.payload.error)).toContain("oops")
      expect(String(failed.payload.error)).toContain("err")
      yield* waitHook("Stop", 3)
      yield* waitIdle("agent-q")
      expect(hooksNamed("PostToolUse")).toHaveLength(1)
      expect(hooksNamed("Stop").map((h) => h.payload.last_assistant_message)).toEqual([
        "after: slow-done",
        "ok: first queued\nsecond queued",
        expect.stringMatching(/^after: Exit code 3\n/)
      ])

      // Escape while the tool runs: the tool is killed and reported as rejected; no hook, no further request.
      yield* w.paste("agent-q", "long task")
      yield* waitFor("tool started", Effect.sync(() => (fs.existsSync(path.join(repo, "started.flag")) ? true : undefined)), 10_000, 20)
      const before = requests.length
      const escapedAt = Date.now()
      yield* tmux("send-keys", "-t", "agent-q", "Escape")
      yield* waitIdle("agent-q")
      expect(Date.now() - escapedAt).toBeLessThan(3_000)
      expect(requests.length).toBe(before)
      expect(hooksNamed("PostToolUse")).toHaveLength(1)
      expect(hooksNamed("Stop")).toHaveLength(3)
      const screen = yield* paneText(tmux, "agent-q")
      expect(screen).toContain("Interrupted · What should Claude do instead?")
      expect(screen).not.toContain("⎿  long-done")

      yield* w.paste("agent-q", "carry on")
      yield* waitHook("Stop", 4)
      const last = blocks(requests.at(-1)!.messages.at(-1))
      expect(last).toEqual([
        expect.objectContaining({ type: "tool_result", is_error: true, content: expect.stringContaining("doesn't want to proceed") }),
        { type: "text", text: "[Request interrupted by user for tool use]\n" },
        { type: "text", text: "carry on" }
      ])

      // Ctrl-D at an empty prompt ends the session.
      yield* waitIdle("agent-q")
      yield* tmux("send-keys", "-t", "agent-q", "C-d")
      expect((yield* waitHook("SessionEnd")).payload.reason).toBe("prompt_input_exit")
      yield* waitFor("the fake to exit", Effect.map(
        tmux("display-message", "-p", "-t", "agent-q", "#{pane_dead}"),
        (dead) => (dead.trim() === "1" ? true : undefined)
      ), 5_000, 50)
    }).pipe(Effect.provide(NodeContext.layer)), 30_000)

  it.scoped("refuses --continue when there is no conversation, as the real CLI does", () =>
    Effect.gen(function*() {
      const w = yield* setup(() => ({ _tag: "Text", text: "unused" }))
      yield* w.launch("agent-c", ["--continue"])
      // tmux does not always record the exit status of a pane that dies this fast; the status is checked below.
      yield* waitFor("the fake to exit", Effect.map(
        w.tmux("display-message", "-p", "-t", "agent-c", "#{pane_dead}"),
        (s) => (s.trim() === "1" ? true : undefined)
      ), 5_000, 50)
      expect(yield* paneText(w.tmux, "agent-c")).toContain("No conversation found to continue")
      expect(readHooks(w.hookLog)).toEqual([])
      const exit = yield* Effect.async<{ code: number | null; stderr: string }>((resume) => {
        execFile(process.execPath, [fakeClaude, "--continue"], {
          cwd: w.repo,
          env: { ...process.env, CLAUDE_CONFIG_DIR: w.configDir },
          encoding: "utf8"
        }, (error, _stdout, stderr) => resume(Effect.succeed({ code: error === null ? 0 : (typeof error.code === "number" ? error.code : null), stderr })))
      })
      expect(exit).toEqual({ code: 1, stderr: "No conversation found to continue\n" })
    }).pipe(Effect.provide(NodeContext.layer)), 30_000)
})
