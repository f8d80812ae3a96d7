// The tmux port: sessions, input, screen capture, terminal logs — on cco's own tmux server (-L socket).
// The live adapter shells out to tmux; TmuxTest is an in-memory stand-in for unit tests.
import * as CommandExecutor from "@effect/platform/CommandExecutor"
import * as FileSystem from "@effect/platform/FileSystem"
import { Context, Effect, Layer, Redacted, Ref, Schema } from "effect"
import { randomBytes } from "node:crypto"
import { rmSync } from "node:fs"
import { exec } from "./Exec.js"
import { shellQuote } from "./Shell.js"
import { neutralise } from "./Untrusted.js"

export class TmuxNotFound extends Schema.TaggedError<TmuxNotFound>()("TmuxNotFound", {
  message: Schema.String
}) {}

export class SessionNotFound extends Schema.TaggedError<SessionNotFound>()("SessionNotFound", {
  session: Schema.String
}) {
  override get message() {
    return `tmux session ${this.session} does not exist`
  }
}

export class TmuxCommandFailed extends Schema.TaggedError<TmuxCommandFailed>()("TmuxCommandFailed", {
  operation: Schema.String,
  exitCode: Schema.Number,
  stderr: Schema.String
}) {
  override get message() {
    return `tmux ${this.operation} failed (exit ${this.exitCode}): ${this.stderr.trim()}`
  }
}

export type TmuxError = TmuxNotFound | SessionNotFound | TmuxCommandFailed

export interface SessionSpec {
  readonly name: string
  readonly cwd: string
  /** Program and arguments, run directly (no shell parsing of the arguments). Never put secrets here. */
  readonly command: ReadonlyArray<string>
  /** Environment for the program; values reach it through a private file, never through any argv. */
  readonly env?: Readonly<Record<string, string | Redacted.Redacted<string>>>
  /** Variables inherited from the tmux server that the program must not see. */
  readonly unsetEnv?: ReadonlyArray<string>
  readonly width?: number
  readonly height?: number
  /** Terminal output appended to this file from the first byte, rotated (see sessionLogCommand). */
  readonly logFile?: string
  readonly logLimits?: SessionLogLimits
}

export interface SessionLogLimits {
  /** A session log is rotated before it reaches this size. */
  readonly maxBytes: number
  /** Rotated files kept: <log>.1 (newest) … <log>.<keep>. */
  readonly keep: number
}

export const SESSION_LOG_LIMITS: SessionLogLimits = { maxBytes: 10 * 1024 * 1024, keep: 2 }

export interface PaneInfo {
  readonly title: string
  readonly pid: number
  readonly dead: boolean
}

export interface TmuxShape {
  readonly socket: string
  readonly newSession: (spec: SessionSpec) => Effect.Effect<void, TmuxError>
  /** Pastes text as one bracketed paste (neutralised: nothing in it can end the paste or act); does not press Enter. */
  readonly sendText: (session: string, text: string) => Effect.Effect<void, TmuxError>
  /** Sends key names (e.g. "Enter", "Escape", "C-c"). */
  readonly sendKeys: (session: string, keys: ReadonlyArray<string>) => Effect.Effect<void, TmuxError>
  /** The visible screen, plus `history` lines of scrollback. */
  readonly capturePane: (session: string, history?: number) => Effect.Effect<string, TmuxError>
  readonly pipePane: (session: string, file: string) => Effect.Effect<void, TmuxError>
  readonly paneInfo: (session: string) => Effect.Effect<PaneInfo, TmuxError>
  /** Every session's pane whose name starts with prefix, in one tmux call. */
  readonly paneInfos: (prefix: string) => Effect.Effect<ReadonlyMap<string, PaneInfo>, TmuxError>
  /** The visible screens of several sessions, in one tmux call (the sessions must exist). */
  readonly capturePanes: (sessions: ReadonlyArray<string>) => Effect.Effect<ReadonlyMap<string, string>, TmuxError>
  readonly hasSession: (session: string) => Effect.Effect<boolean, TmuxError>
  readonly listSessions: (prefix?: string) => Effect.Effect<ReadonlyArray<string>, TmuxError>
  /** The sessions whose name starts with prefix, each with its start directory (new-session -c). */
  readonly sessionPaths: (prefix: string) => Effect.Effect<ReadonlyMap<string, string>, TmuxError>
  readonly killSession: (session: string) => Effect.Effect<void, TmuxError>
  /** Kills several sessions in one tmux call; fails (leaving the rest) if one of them is missing. */
  readonly killSessions: (sessions: ReadonlyArray<string>) => Effect.Effect<void, TmuxError>
  readonly killServer: Effect.Effect<void, TmuxError>
}

export class Tmux extends Context.Tag("cco/Tmux")<Tmux, TmuxShape>() {}


const envValue = (value: string | Redacted.Redacted<string>) =>
  typeof value === "string" ? value : Redacted.value(value)

// Reads the private env file, removes it, then becomes the program: secrets never touch argv.
const LAUNCH_SCRIPT = 'for v in $CCO_UNSET; do unset "$v"; done; unset CCO_UNSET; . "$1" && rm -rf "$2" && shift 2 && exec "$@"'

/**
 * Removes what a `tmux -L socket` server leaves in its socket directory after it is gone: the socket file and
 * its lock file. Only for a server known to be dead (after kill-server); a live server's socket is never touched.
 */
export const removeSocketFiles = (socket: string) => {
  const dir = `${process.env.TMUX_TMPDIR ?? "/tmp"}/tmux-${process.getuid?.() ?? 0}`
  for (const file of [socket, `${socket}.lock`]) rmSync(`${dir}/${file}`, { force: true })
}

/**
 * The pipe-pane command that writes a session's terminal output to `file`, rotated: GNU split cuts the stream
 * into chunks of half the cap and hands each chunk to a filter that first rotates the log if it is half full
 * (<file> → <file>.1 → … → <file>.<keep>, the oldest dropped), then appends the chunk as it streams in. So a
 * file never reaches the cap, the newest file always ends with the newest output, and the cost per byte is a
 * copy through two small C programs. Without GNU split (BSD) the log is appended to unrotated, as before.
 */
export const sessionLogCommand = (file: string, limits: SessionLogLimits = SESSION_LOG_LIMITS) => {
  const chunk = Math.max(1, Math.floor(limits.maxBytes / 2))
  const keep = Math.max(1, Math.floor(limits.keep))
  const rotate = [
    `if [ -f "$CCO_LOG" ] && [ "$(wc -c < "$CCO_LOG")" -ge ${chunk} ]; then`,
    `i=${keep}; while [ "$i" -gt 1 ]; do j=$((i - 1)); if [ -f "$CCO_LOG.$j" ]; then mv -f "$CCO_LOG.$j" "$CCO_LOG.$i"; fi; i=$j; done;`,
    `mv -f "$CCO_LOG" "$CCO_LOG.1"; fi; exec cat >> "$CCO_LOG"`
  ].join(" ")
  return [
    `CCO_LOG=${shellQuote(file)}; export CCO_LOG;`,
    `if split --filter=: /dev/null 2>/dev/null;`,
    `then SHELL=/bin/sh exec split -b ${chunk} -a 9 --filter=${shellQuote(rotate)} - "$CCO_LOG.chunk-";`,
    `else exec cat >> "$CCO_LOG"; fi`
  ].join(" ")
}

/**
 * Variables of cco's own environment that its tmux server must not hold: the server's global environment is
 * readable by every program in its panes (`tmux show-environment -g`), and every session inherits it. Each
 * instance gets its credential through its own launch env instead.
 */
export const SERVER_HIDDEN_ENV: ReadonlyArray<string> = ["ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN"]

/** cco's own variables (CCO_TOKEN, CCO_SOCKET, … of an orchestrator started from inside an instance) are hidden too. */
const hiddenFromServer = (extra: ReadonlyArray<string>) => {
  const names = new Set([...SERVER_HIDDEN_ENV, ...extra])
  return (name: string) => names.has(name) || name.startsWith("CCO_")
}

export interface LiveOptions {
  /** More variable names to keep from the server: the env names of api-keys.json's credentials. */
  readonly hiddenEnv?: ReadonlyArray<string>
}

const noServer = (stderr: string) => /no server running|error connecting to|No such file or directory/.test(stderr)
const noSession = (stderr: string) => /can't find (session|pane|window)|session not found/.test(stderr)

export const makeLive = (socket: string, options: LiveOptions = {}) =>
  Effect.gen(function*() {
    const executor = yield* CommandExecutor.CommandExecutor
    const fs = yield* FileSystem.FileSystem
    // Any tmux command may start the server, which keeps the environment of the command that started it.
    const unsetEnv = hiddenFromServer(options.hiddenEnv ?? [])

    const run = (
      operation: string,
      args: ReadonlyArray<string>,
      stdin?: string,
      session?: string
    ): Effect.Effect<string, TmuxError> =>
      exec("tmux", ["-L", socket, "-f", "/dev/null", ...args], stdin === undefined ? { unsetEnv } : { stdin, unsetEnv }).pipe(
        Effect.provideService(CommandExecutor.CommandExecutor, executor),
        Effect.mapError(() => new TmuxNotFound({ message: "tmux is not installed or not on PATH (install it: apt-get install tmux)" })),
        Effect.flatMap((result): Effect.Effect<string, SessionNotFound | TmuxCommandFailed> => {
          if (result.exitCode === 0) return Effect.succeed(result.stdout)
          if (session !== undefined && (noSession(result.stderr) || noServer(result.stderr))) {
            return Effect.fail(new SessionNotFound({ session }))
          }
          return Effect.fail(new TmuxCommandFailed({ operation, exitCode: result.exitCode, stderr: result.stderr }))
        })
      )

    const pane = (session: string) => `=${session}:`

    const newSession = Effect.fn("Tmux.newSession")(function*(spec: SessionSpec) {
      const dir = yield* fs.makeTempDirectory({ prefix: "cco-env-" }).pipe(Effect.orDie)
      const file = `${dir}/env`
      const lines = Object.entries(spec.env ?? {}).map(([k, v]) => `export ${k}=${shellQuote(envValue(v))}`)
      yield* fs.writeFileString(file, lines.join("\n") + "\n", { mode: 0o600 }).pipe(Effect.orDie)
      const args = [
        "new-session", "-d", "-s", spec.name, "-c", spec.cwd,
        "-x", String(spec.width ?? 200), "-y", String(spec.height ?? 50),
        "-e", `CCO_UNSET=${(spec.unsetEnv ?? []).join(" ")}`,
        "sh", "-c", LAUNCH_SCRIPT, "cco-launch", file, dir, ...spec.command
      ]
      // pipe-pane in the same tmux invocation: attached before the server reads the pane's first output.
      if (spec.logFile !== undefined) {
        args.push(";", "pipe-pane", "-t", pane(spec.name), sessionLogCommand(spec.logFile, spec.logLimits))
      }
      yield* run("new-session", args).pipe(
        Effect.tapError(() => fs.remove(dir, { recursive: true }).pipe(Effect.ignore))
      )
    })

    const sendText = Effect.fn("Tmux.sendText")(function*(session: string, text: string) {
      const buffer = `cco-${session}`
      // One tmux call: load the buffer from stdin and paste it. The last gate before a pane: whatever the caller
      // composed, no ESC (an end-of-paste), CR (a submit) or control key gets through.
      yield* run("paste-buffer", ["load-buffer", "-b", buffer, "-", ";", "paste-buffer", "-p", "-d", "-b", buffer, "-t", pane(session)], neutralise(text), session)
    })

    const sendKeys = Effect.fn("Tmux.sendKeys")(function*(session: string, keys: ReadonlyArray<string>) {
      yield* run("send-keys", ["send-keys", "-t", pane(session), ...keys], undefined, session)
    })

    const capturePane = Effect.fn("Tmux.capturePane")(function*(session: string, history = 0) {
      const args = ["capture-pane", "-p", "-J", "-t", pane(session)]
      if (history > 0) args.push("-S", String(-history))
      return yield* run("capture-pane", args, undefined, session)
    })

    const pipePane = Effect.fn("Tmux.pipePane")(function*(session: string, file: string) {
      yield* run("pipe-pane", ["pipe-pane", "-t", pane(session), sessionLogCommand(file)], undefined, session)
    })

    const paneInfo = Effect.fn("Tmux.paneInfo")(function*(session: string) {
      const out = yield* run(
        "display-message",
        ["display-message", "-p", "-t", pane(session), "#{session_name}\t#{pane_pid}\t#{pane_dead}\t#{pane_title}"],
        undefined,
        session
      )
      const [name, pid, dead, ...title] = out.replace(/\n$/, "").split("\t")
      // display-message answers a missing target with an empty line and exit 0.
      if (name !== session) return yield* Effect.fail(new SessionNotFound({ session }))
      return { pid: Number(pid), dead: dead === "1", title: title.join("\t") }
    })

    const paneInfos = Effect.fn("Tmux.paneInfos")(function*(prefix: string) {
      const out = yield* run("list-panes", ["list-panes", "-a", "-F", "#{session_name}\t#{pane_pid}\t#{pane_dead}\t#{pane_title}"]).pipe(
        Effect.catchTag("TmuxCommandFailed", (e) => noServer(e.stderr) ? Effect.succeed("") : Effect.fail(e))
      )
      const panes = new Map<string, PaneInfo>()
      for (const line of out.split("\n")) {
        const [name, pid, dead, ...title] = line.split("\t")
        if (name === undefined || name === "" || !name.startsWith(prefix) || panes.has(name)) continue
        panes.set(name, { pid: Number(pid), dead: dead === "1", title: title.join("\t") })
      }
      return panes as ReadonlyMap<string, PaneInfo>
    })

    // Screens separated by marker lines. The marker is printable ASCII (tmux escapes control characters in
    // display-message output on some versions) and random per call, so no screen contains it.
    const capturePanes = Effect.fn("Tmux.capturePanes")(function*(sessions: ReadonlyArray<string>) {
      const screens = new Map<string, string>()
      if (sessions.length === 0) return screens as ReadonlyMap<string, string>
      const mark = `@@cco-screen-${randomBytes(8).toString("hex")}@@ `
      const args = sessions.flatMap((s, i) => [
        ...(i === 0 ? [] : [";"]),
        "display-message", "-p", "-t", pane(s), `${mark}${s}`, ";",
        "capture-pane", "-p", "-J", "-t", pane(s)
      ])
      const out = yield* run("capture-pane", args)
      let current: string | undefined
      let lines: Array<string> = []
      // Each screen as capture-pane prints it, with its final newline (the last one keeps it from `out`).
      const flushScreen = (newline: string) => {
        if (current !== undefined) screens.set(current, lines.join("\n") + newline)
      }
      for (const line of out.split("\n")) {
        if (line.startsWith(mark)) {
          flushScreen("\n")
          current = line.slice(mark.length)
          lines = []
        } else lines.push(line)
      }
      flushScreen("")
      return screens as ReadonlyMap<string, string>
    })

    const listSessions = Effect.fn("Tmux.listSessions")(function*(prefix?: string) {
      const out = yield* run("list-sessions", ["list-sessions", "-F", "#{session_name}"]).pipe(
        Effect.catchTag("TmuxCommandFailed", (e) => noServer(e.stderr) ? Effect.succeed("") : Effect.fail(e))
      )
      return out.split("\n").filter((s) => s !== "" && (prefix === undefined || s.startsWith(prefix)))
    })

    const sessionPaths = Effect.fn("Tmux.sessionPaths")(function*(prefix: string) {
      const out = yield* run("list-sessions", ["list-sessions", "-F", "#{session_name}\t#{session_path}"]).pipe(
        Effect.catchTag("TmuxCommandFailed", (e) => noServer(e.stderr) ? Effect.succeed("") : Effect.fail(e))
      )
      const entries = out.split("\n").flatMap((line) => {
        const tab = line.indexOf("\t")
        return tab < 0 || !line.startsWith(prefix) ? [] : [[line.slice(0, tab), line.slice(tab + 1)] as const]
      })
      return new Map(entries) as ReadonlyMap<string, string>
    })

    const hasSession = Effect.fn("Tmux.hasSession")(function*(session: string) {
      return yield* run("has-session", ["has-session", "-t", `=${session}`], undefined, session).pipe(
        Effect.as(true),
        Effect.catchTag("SessionNotFound", () => Effect.succeed(false))
      )
    })

    const killSession = Effect.fn("Tmux.killSession")(function*(session: string) {
      yield* run("kill-session", ["kill-session", "-t", `=${session}`], undefined, session)
    })

    const killSessions = Effect.fn("Tmux.killSessions")(function*(sessions: ReadonlyArray<string>) {
      if (sessions.length === 0) return
      yield* run("kill-session", sessions.flatMap((s, i) => [...(i === 0 ? [] : [";"]), "kill-session", "-t", `=${s}`]))
    })

    // The server gone, its socket files go too (tmux leaves them behind).
    const killServer = run("kill-server", ["kill-server"]).pipe(
      Effect.asVoid,
      Effect.catchTag("TmuxCommandFailed", (e) => noServer(e.stderr) ? Effect.void : Effect.fail(e)),
      Effect.tap(() => Effect.sync(() => removeSocketFiles(socket)))
    )

    return Tmux.of({
      socket,
      newSession,
      sendText,
      sendKeys,
      capturePane,
      pipePane,
      paneInfo,
      paneInfos,
      capturePanes,
      hasSession,
      listSessions,
      sessionPaths,
      killSession,
      killSessions,
      killServer
    })
  })

/** Live tmux on the private server `tmux -L socket`. */
export const layer = (socket: string, options: LiveOptions = {}) => Layer.effect(Tmux, makeLive(socket, options))

// ---------------------------------------------------------------------------
// TmuxTest: an in-memory tmux for unit tests.

export interface FakeSession {
  readonly spec: SessionSpec
  readonly pid: number
  title: string
  screen: string
  dead: boolean
  readonly input: Array<string>
}

export class TmuxTestControl extends Context.Tag("cco/TmuxTestControl")<TmuxTestControl, {
  readonly sessions: Ref.Ref<ReadonlyMap<string, FakeSession>>
  readonly session: (name: string) => Effect.Effect<FakeSession, SessionNotFound>
}>() {}

export const makeTest = Effect.gen(function*() {
  const sessions = yield* Ref.make<ReadonlyMap<string, FakeSession>>(new Map())
  let nextPid = 1000
  const get = (name: string) =>
    Effect.flatMap(Ref.get(sessions), (m) => {
      const s = m.get(name)
      return s === undefined ? Effect.fail(new SessionNotFound({ session: name })) : Effect.succeed(s)
    })
  const tmux = Tmux.of({
    socket: "test",
    newSession: (spec) =>
      Ref.get(sessions).pipe(
        Effect.flatMap((m) =>
          m.has(spec.name)
            ? Effect.fail(new TmuxCommandFailed({ operation: "new-session", exitCode: 1, stderr: `duplicate session: ${spec.name}` }))
            : Ref.set(sessions, new Map(m).set(spec.name, { spec, pid: nextPid++, title: "", screen: "", dead: false, input: [] }))
        )
      ),
    sendText: (name, text) => Effect.map(get(name), (s) => void s.input.push(neutralise(text))),
    sendKeys: (name, keys) => Effect.map(get(name), (s) => void s.input.push(...keys.map((k) => `<${k}>`))),
    capturePane: (name) => Effect.map(get(name), (s) => s.screen),
    pipePane: (name) => Effect.asVoid(get(name)),
    paneInfo: (name) => Effect.map(get(name), (s) => ({ title: s.title, pid: s.pid, dead: s.dead })),
    paneInfos: (prefix) =>
      Effect.map(Ref.get(sessions), (m) =>
        new Map([...m].filter(([n]) => n.startsWith(prefix)).map(([n, s]) => [n, { title: s.title, pid: s.pid, dead: s.dead }] as const))),
    // As the live one: a missing session fails the whole call.
    capturePanes: (names) =>
      Effect.map(Effect.forEach(names, (n) => Effect.map(get(n), (s) => [n, s.screen] as const)), (pairs) => new Map(pairs)),
    hasSession: (name) => Effect.map(Ref.get(sessions), (m) => m.has(name)),
    listSessions: (prefix) =>
      Effect.map(Ref.get(sessions), (m) => [...m.keys()].filter((n) => prefix === undefined || n.startsWith(prefix))),
    sessionPaths: (prefix) =>
      Effect.map(Ref.get(sessions), (m) => new Map([...m].filter(([n]) => n.startsWith(prefix)).map(([n, s]) => [n, s.spec.cwd] as const))),
    killSession: (name) =>
      get(name).pipe(Effect.zipRight(Ref.update(sessions, (m) => {
        const next = new Map(m)
        next.delete(name)
        return next
      }))),
    killSessions: (names) =>
      Ref.update(sessions, (m) => {
        const next = new Map(m)
        for (const n of names) next.delete(n)
        return next
      }),
    killServer: Ref.set(sessions, new Map())
  })
  return { tmux, control: TmuxTestControl.of({ sessions, session: get }) }
})

/** In-memory tmux plus a control handle for tests to inspect and script sessions. */
export const TmuxTest = Layer.effectContext(
  Effect.map(makeTest, ({ control, tmux }) => Context.make(Tmux, tmux).pipe(Context.add(TmuxTestControl, control)))
)
