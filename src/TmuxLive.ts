// The live tmux adapter: every Tmux method is one `tmux -L <socket>` call (several commands joined by ";" where
// one call must see them all), with secrets passed through a private env file, never through argv.
import * as CommandExecutor from "@effect/platform/CommandExecutor"
import * as FileSystem from "@effect/platform/FileSystem"
import { Effect, Layer, Redacted } from "effect"
import { randomBytes } from "node:crypto"
import { dirname } from "node:path"
import { exec, type ExecResult } from "./Exec.js"
import { shellQuote } from "./Shell.js"
import { type PaneInfo, SessionNotFound, type SessionSpec, Tmux, TmuxCommandFailed, type TmuxError, TmuxNotFound } from "./Tmux.js"
import { removeSocketFiles, SESSION_LOG_SCRIPT, sessionLogCommand, sessionLogScript } from "./TmuxFiles.js"
import { neutralise } from "./Untrusted.js"

const envValue = (value: string | Redacted.Redacted<string>) =>
  typeof value === "string" ? value : Redacted.value(value)

/**
 * A session's launch script, in a private directory: clears the variables the program must not inherit, sets
 * its environment, removes itself (its whole directory), then becomes the program. Secrets never touch argv, and
 * the tmux call that starts the session carries only the script's path.
 */
const launchScript = (spec: SessionSpec) => {
  const unset = (spec.unsetEnv ?? []).filter((name) => /^[A-Za-z_][A-Za-z0-9_]*$/.test(name))
  return [
    ...(unset.length > 0 ? [`unset ${unset.join(" ")}`] : []),
    ...Object.entries(spec.env ?? {}).map(([k, v]) => `export ${k}=${shellQuote(envValue(v))}`),
    // $0 is the script: its private directory goes before the program starts.
    `rm -rf -- "\${0%/*}" && exec ${spec.command.map(shellQuote).join(" ")}`,
    ""
  ].join("\n")
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
  /** tmux on another host (Hosts.ts): how its commands run and where its private env files go. */
  readonly remote?: RemoteTransport
}

/** How tmux runs on a remote host: every call one command there, env files written there through stdin. */
export interface RemoteTransport {
  /** Runs argv (tmux and its arguments) on the host; a failure to reach it is an error. */
  readonly exec: (argv: ReadonlyArray<string>, stdin?: string) => Effect.Effect<ExecResult, Error>
  /** A new private (0700) directory on the host holding `content` in a 0600 file: their paths. */
  readonly privateFile: (content: string) => Effect.Effect<{ readonly file: string; readonly dir: string }>
  readonly removeDir: (dir: string) => Effect.Effect<void>
  /** Writes `dir/name` there, whole (through a temporary file and a rename). */
  readonly writeFile: (dir: string, name: string, content: string) => Effect.Effect<void>
}

const noServer = (stderr: string) => /no server running|error connecting to|No such file or directory/.test(stderr)
const noSession = (stderr: string) => /can't find (session|pane|window)|session not found/.test(stderr)

type Run = (operation: string, args: ReadonlyArray<string>, stdin?: string, session?: string) => Effect.Effect<string, TmuxError>

/** One tmux call on the private server; a missing session or server is SessionNotFound when `session` is given. */
const runner = (socket: string, executor: CommandExecutor.CommandExecutor, unsetEnv: (name: string) => boolean, remote?: RemoteTransport): Run =>
(operation, args, stdin, session) =>
  (remote !== undefined
    ? remote.exec(["tmux", "-L", socket, "-f", "/dev/null", ...args], stdin).pipe(
      Effect.mapError((e) => new TmuxNotFound({ message: `tmux on the remote host cannot run: ${e.message}` }))
    )
    : exec("tmux", ["-L", socket, "-f", "/dev/null", ...args], stdin === undefined ? { unsetEnv } : { stdin, unsetEnv }).pipe(
      Effect.provideService(CommandExecutor.CommandExecutor, executor),
      Effect.mapError(() => new TmuxNotFound({ message: "tmux is not installed or not on PATH (install it: apt-get install tmux)" }))
    )).pipe(
    Effect.flatMap((result): Effect.Effect<string, SessionNotFound | TmuxCommandFailed> => {
      if (result.exitCode === 0) return Effect.succeed(result.stdout)
      if (session !== undefined && (noSession(result.stderr) || noServer(result.stderr))) {
        return Effect.fail(new SessionNotFound({ session }))
      }
      return Effect.fail(new TmuxCommandFailed({ operation, exitCode: result.exitCode, stderr: result.stderr }))
    })
  )

const pane = (session: string) => `=${session}:`

/**
 * What one tmux call may carry: the client sends its command's arguments in one message of at most 16 KiB
 * (tmux's MAX_IMSGSIZE, less a header) and refuses a longer command outright.
 */
export const COMMAND_BYTES = 15_000

/**
 * Commands (each an argument list) grouped into as few calls as fit in COMMAND_BYTES each, in order, joined by
 * ";" within a call; a command longer than that on its own goes alone.
 */
export const commandBatches = <A>(commands: ReadonlyArray<A>, argsOf: (command: A) => ReadonlyArray<string>, limit = COMMAND_BYTES) => {
  const batches: Array<Array<A>> = []
  let used = 0
  for (const command of commands) {
    const cost = argsOf(command).reduce((n, a) => n + Buffer.byteLength(a) + 1, 2) // and the ";" before it
    const last = batches.at(-1)
    if (last === undefined || used + cost > limit) {
      batches.push([command])
      used = cost
    } else {
      last.push(command)
      used += cost
    }
  }
  return batches
}

/**
 * Each directory of session logs gets the script that writes them (see sessionLogScript), once. Here whether GNU
 * split rotates is asked once; on a remote host the script asks itself.
 */
const logScripts = (fs: FileSystem.FileSystem, executor: CommandExecutor.CommandExecutor, remote?: RemoteTransport) =>
  Effect.gen(function*() {
    const rotating = yield* Effect.cached(
      remote !== undefined ? Effect.succeed<boolean | "ask">("ask") : exec("split", ["--filter=:", "/dev/null"]).pipe(
        Effect.provideService(CommandExecutor.CommandExecutor, executor),
        Effect.map((r) => r.exitCode === 0),
        Effect.orElseSucceed(() => false)
      )
    )
    // Whole or not at all: a pane's shell may be reading it.
    const write = (dir: string, script: string) => {
      const tmp = `${dir}/${SESSION_LOG_SCRIPT}.${randomBytes(4).toString("hex")}`
      return remote !== undefined
        ? remote.writeFile(dir, SESSION_LOG_SCRIPT, script)
        : fs.makeDirectory(dir, { recursive: true }).pipe(
          Effect.zipRight(fs.writeFileString(tmp, script, { mode: 0o644 })),
          Effect.zipRight(fs.rename(tmp, `${dir}/${SESSION_LOG_SCRIPT}`)),
          Effect.orDie
        )
    }
    const written = new Set<string>()
    return (logFile: string) =>
      Effect.gen(function*() {
        const dir = dirname(logFile)
        if (written.has(dir)) return
        yield* write(dir, sessionLogScript(yield* rotating))
        written.add(dir)
      })
  })

type EnsureLogScript = Effect.Effect.Success<ReturnType<typeof logScripts>>

/** Starting, listing and ending sessions. */
const sessionMethods = (run: Run, fs: FileSystem.FileSystem, socket: string, ensureLogScript: EnsureLogScript, remote?: RemoteTransport) => {
  const removeDir = (dir: string) => remote !== undefined ? remote.removeDir(dir) : fs.remove(dir, { recursive: true }).pipe(Effect.ignore)
  // A session's tmux commands and the private launch script they run (it removes itself; removed here on failure).
  const sessionCommands = (spec: SessionSpec) =>
    Effect.gen(function*() {
      const script = launchScript(spec)
      const { dir, file } = remote !== undefined ? yield* remote.privateFile(script) : yield* Effect.gen(function*() {
        const dir = yield* fs.makeTempDirectory({ prefix: "cco-env-" }).pipe(Effect.orDie)
        const file = `${dir}/launch`
        yield* fs.writeFileString(file, script, { mode: 0o600 }).pipe(Effect.orDie)
        return { dir, file }
      })
      const args = [
        "new-session", "-d", "-s", spec.name, "-c", spec.cwd,
        "-x", String(spec.width ?? 200), "-y", String(spec.height ?? 50),
        "sh", file
      ]
      // pipe-pane in the same tmux invocation: attached before the server reads the pane's first output.
      if (spec.logFile !== undefined) {
        yield* ensureLogScript(spec.logFile)
        args.push(";", "pipe-pane", "-t", pane(spec.name), sessionLogCommand(spec.logFile, spec.logLimits))
      }
      return { args, dir }
    })

  const newSession = Effect.fn("Tmux.newSession")(function*(spec: SessionSpec) {
    const { args, dir } = yield* sessionCommands(spec)
    yield* run("new-session", args).pipe(
      Effect.tapError(() => removeDir(dir))
    )
  })

  // Many sessions in one tmux call: a team's start-up costs one process, not one per instance. An argument that
  // is itself ";" would split the call, so such a spec (none of cco's) goes alone.
  const newSessions = Effect.fn("Tmux.newSessions")(function*(specs: ReadonlyArray<SessionSpec>) {
    const [alone, together] = [specs.filter((s) => s.command.includes(";")), specs.filter((s) => !s.command.includes(";"))]
    const made = yield* Effect.forEach(together, sessionCommands)
    // As few calls as the client's message size allows (a longer one is refused whole: "command too long").
    yield* Effect.forEach(commandBatches(made, (m) => m.args), (batch) =>
      run("new-session", batch.flatMap((m, i) => i === 0 ? m.args : [";", ...m.args])).pipe(
        Effect.tapError(() => Effect.forEach(batch, (m) => removeDir(m.dir)))
      ), { discard: true })
    yield* Effect.forEach(alone, newSession, { discard: true })
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
    Effect.tap(() => remote !== undefined ? Effect.void : Effect.sync(() => removeSocketFiles(socket)))
  )

  return { newSession, newSessions, listSessions, sessionPaths, hasSession, killSession, killSessions, killServer }
}

/** Input to and output from panes. */
const paneMethods = (run: Run, ensureLogScript: EnsureLogScript) => {
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
    yield* ensureLogScript(file)
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

  return { sendText, sendKeys, capturePane, pipePane, paneInfo, paneInfos, capturePanes }
}

export const makeLive = (socket: string, options: LiveOptions = {}) =>
  Effect.gen(function*() {
    const executor = yield* CommandExecutor.CommandExecutor
    const fs = yield* FileSystem.FileSystem
    // Any tmux command may start the server, which keeps the environment of the command that started it.
    const run = runner(socket, executor, hiddenFromServer(options.hiddenEnv ?? []), options.remote)
    const ensureLogScript = yield* logScripts(fs, executor, options.remote)
    return Tmux.of({
      socket,
      version: Effect.map(run("version", ["-V"]), (v) => v.trim()),
      ...sessionMethods(run, fs, socket, ensureLogScript, options.remote),
      ...paneMethods(run, ensureLogScript)
    })
  })

/** Live tmux on the private server `tmux -L socket`. */
export const layer = (socket: string, options: LiveOptions = {}) => Layer.effect(Tmux, makeLive(socket, options))
