// One Claude Code instance per tmux session: its private config dir, hooks, credential and identity env,
// launch and restart (--continue, new generation), and prompt delivery by bracketed paste.
import * as CommandExecutor from "@effect/platform/CommandExecutor"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import { Context, Effect, Layer, Option, Redacted, Ref, Schema } from "effect"
import * as ClaudeCode from "./ClaudeCode.js"
import * as Events from "./Events.js"
import { makeProcessEnder, makeRemoteProcessEnder } from "./AgentProcesses.js"
import { exec } from "./Exec.js"
import { instancePort } from "./Hierarchy.js"
import { RunLog } from "./RunLog.js"
import * as Sandbox from "./Sandbox.js"
import * as SandboxRemote from "./SandboxRemote.js"
import * as Secrets from "./Secrets.js"
import { shellQuote } from "./Shell.js"
import { type PaneInfo, type SessionSpec, Tmux } from "./Tmux.js"
import { neutralise, PANE_MAX } from "./Untrusted.js"

export class AgentError extends Schema.TaggedError<AgentError>()("AgentError", {
  instance: Schema.String,
  operation: Schema.String,
  message: Schema.String
}) {}

export interface Credential {
  readonly name: string
  readonly env: Readonly<Record<string, Redacted.Redacted<string>>>
  /** A subscription login dir (api-keys.json `claudeConfigDir`): its login is shared through the run's account dir. */
  readonly loginDir?: string
}

export interface AgentSettings {
  readonly runFolder: string
  readonly runId: string
  /** tmux session names are `${sessionPrefix}${instance}`. */
  readonly sessionPrefix: string
  readonly claudePath: string
  readonly model: string | undefined
  /** Command that runs the cco client (`<node> <root>/bin/cco-client.mjs`), for hooks and the `cco` shim. */
  readonly clientCommand: ReadonlyArray<string>
  /** The PATH agents get, after the run's own bin/ (which holds `cco`). */
  readonly basePath: string
  /** OAuth: the user's credentials file, shared with instances by symlink. */
  readonly oauthCredentialsFile?: string
  /** Extra environment for every instance (e.g. CLAUDE_CODE_MAX_RETRIES). */
  readonly extraEnv?: Readonly<Record<string, string>>
  /** How instances are confined (resolved once for the run); absent: unconfined. */
  readonly sandbox?: Sandbox.Sandbox
  /** The instances run on a remote host (Hosts.ts): their pids are that host's, ended through the executor. */
  readonly remote?: boolean
}

export interface LaunchRequest {
  readonly instance: string
  readonly worktree: string
  readonly credential: Credential
  readonly continueSession: boolean
}

export interface AgentShape {
  readonly settings: AgentSettings
  /** `claude --version`: that the CLI is there and runs (its error output, credentials scrubbed, when not). */
  readonly version: Effect.Effect<string, AgentError>
  readonly sessionName: (instance: string) => string
  readonly configDir: (instance: string) => string
  /** Prepares the config dir and starts the session; returns the generation it runs as. */
  readonly launch: (request: LaunchRequest) => Effect.Effect<number, AgentError>
  /** Launches several instances at once (a team's start-up): their generations by instance. */
  readonly launchMany: (requests: ReadonlyArray<LaunchRequest>) => Effect.Effect<ReadonlyMap<string, number>, AgentError>
  /** Takes over a live session of a resumed run: its token (known by its saved digest) and generation are accepted again. */
  readonly attach: (instance: string, generation: number) => Effect.Effect<boolean>
  /** Pastes text as one prompt and presses Enter; the text is neutralised first (see Untrusted.neutralise). */
  readonly deliver: (instance: string, text: string) => Effect.Effect<void, AgentError>
  readonly interrupt: (instance: string) => Effect.Effect<void, AgentError>
  readonly stop: (instance: string) => Effect.Effect<void>
  /** Stops several instances at once (the wind-down), as `stop` does each. */
  readonly stopMany: (instances: ReadonlyArray<string>) => Effect.Effect<void>
  readonly isAlive: (instance: string) => Effect.Effect<boolean>
  /**
   * Whether the instance's last launch left its conversation behind (moved off a host that went down, see
   * Hosts.ts): it is told who it is again. Asked once per launch.
   */
  readonly conversationLost?: (instance: string) => boolean
}

export class Agent extends Context.Tag("cco/Agent")<Agent, AgentShape>() {}

// Variables from the orchestrator's own environment that would change whom an instance bills or where it talks.
const inheritedCredentials = [
  "ANTHROPIC_API_KEY",
  "ANTHROPIC_AUTH_TOKEN",
  "ANTHROPIC_BASE_URL",
  "CLAUDE_CODE_OAUTH_TOKEN",
  "CLAUDE_CONFIG_DIR",
  // The pane's own tmux server: its programs have no business driving other instances' panes.
  "TMUX",
  "TMUX_PANE",
  "CCO_SOCKET",
  "CCO_INSTANCE",
  "CCO_TOKEN",
  "CCO_GENERATION"
]

export const make = (settings: AgentSettings) =>
  Effect.gen(function*() {
    const tmux = yield* Tmux
    const events = yield* Events.Events
    const runLog = yield* RunLog
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const generations = yield* Ref.make<ReadonlyMap<string, number>>(new Map())
    const executor = yield* CommandExecutor.CommandExecutor

    // A wind-down stops every instance at once, and each looks at the process table every 100 ms while its CLI
    // exits: one `ps` listing (and one /proc scan) serves all who asked while the previous one ran.
    const { treeBelow, endProcesses } = settings.remote === true
      ? yield* makeRemoteProcessEnder({ executor, runLog })
      : yield* makeProcessEnder({ fs, executor, socketPath: events.socketPath, runLog })

    const binDir = path.join(settings.runFolder, "bin")
    yield* fs.makeDirectory(binDir, { recursive: true })
    // `cco` for the agents' Bash tool: the light client, identity from the environment.
    yield* fs.writeFileString(
      path.join(binDir, "cco"),
      `#!/bin/sh\nunset NODE_EXTRA_CA_CERTS\nexec ${settings.clientCommand.map(shellQuote).join(" ")} "$@"\n`,
      { mode: 0o755 }
    )
    // The client talks only to the unix socket: a CA bundle in NODE_EXTRA_CA_CERTS would cost every hook ~40 ms of start-up.
    const hookCommand = ["env", "-u", "NODE_EXTRA_CA_CERTS", ...settings.clientCommand.map(shellQuote), "hook"].join(" ")

    // How the run's instances are confined: said once, before the first of them starts (or is re-attached). A
    // remote host's choice is said when it is connected (Hosts.ts, host.sandbox).
    const announceSandbox = yield* Effect.once(settings.remote === true ? Effect.void : runLog.log("run.sandbox", Sandbox.logFields(settings.sandbox)))

    const sessionName = (instance: string) => `${settings.sessionPrefix}${instance}`
    // Only the sha256 of an instance's token is kept on disk (worktrees lie inside the run folder, so an agent can
    // read it): enough for a resumed orchestrator to recognise a live session's token, useless to present as one.
    const digestFile = (instance: string) => path.join(settings.runFolder, "instances", instance, "token.sha256")
    const configDir = (instance: string) => path.join(settings.runFolder, "instances", instance, "claude")
    const fail = (instance: string, operation: string) => (e: { readonly message: string }) =>
      new AgentError({ instance, operation, message: e.message })
    // Login-dir accounts: one config dir per account, shared by its instances (see ClaudeCode.prepareAccountDir),
    // prepared one at a time; which account each instance runs on, to give the login dir its newest login at stop.
    const accountDir = (credential: string) => path.join(settings.runFolder, "accounts", credential)
    const accountLock = yield* Effect.makeSemaphore(1)
    const accountOf = new Map<string, { readonly loginDir: string; readonly dir: string }>()
    const syncAccount = (instance: string) => {
      const account = accountOf.get(instance)
      return account === undefined ? Effect.void : accountLock.withPermits(1)(
        ClaudeCode.syncLogin(account.loginDir, account.dir).pipe(
          Effect.map((secrets) => secrets.forEach((v) => Secrets.remember(v, "login"))),
          Effect.catchAll((e) => runLog.log("login.sync-failed", { instance, message: e.message })),
          Effect.provideService(FileSystem.FileSystem, fs),
          Effect.provideService(Path.Path, path)
        )
      )
    }

    // The git identity confined instances commit with (their home is private): looked up once, at the first launch.
    const identity = yield* Effect.cached(Sandbox.gitIdentity(path.join(settings.runFolder, "repo")))
    // The instance's command inside its sandbox when the run confines (see Sandbox.bwrapArgs), and a note of
    // which it got beside its token digest (what `cco status` shows).
    const confine = (instance: string, worktree: string, argv: ReadonlyArray<string>, accountDir?: string) =>
      Effect.gen(function*() {
        const sandbox = settings.sandbox
        const instanceDir = path.join(settings.runFolder, "instances", instance)
        yield* fs.writeFileString(path.join(instanceDir, "sandbox"), `${Sandbox.label(sandbox)}\n`, { mode: 0o600 })
        if (sandbox?._tag !== "Bwrap") return argv
        const link = yield* fs.readLink(path.join(configDir(instance), ".credentials.json")).pipe(Effect.option)
        // On a remote host its paths are that host's, read there (the executor runs there).
        return yield* (settings.remote === true ? SandboxRemote.confineThere : Sandbox.confine)(sandbox, {
          worktree,
          configDir: configDir(instance),
          home: path.join(instanceDir, "home"),
          binDir,
          socketPath: events.socketPath,
          claudePath: settings.claudePath,
          clientCommand: settings.clientCommand,
          extraDirs: accountDir === undefined ? [] : [accountDir],
          oauthCredentialsFile: Option.getOrUndefined(Option.map(link, (target) => path.resolve(configDir(instance), target))),
          extraFiles: ["NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE"].flatMap((name) => {
            const value = settings.extraEnv?.[name] ?? process.env[name]
            return value === undefined || value === "" ? [] : [value]
          })
        }, argv, identity)
      }).pipe(
        Effect.provideService(FileSystem.FileSystem, fs),
        Effect.provideService(Path.Path, path),
        Effect.provideService(CommandExecutor.CommandExecutor, executor),
        Effect.mapError(fail(instance, "sandbox"))
      )

    // Everything a launch needs before its session starts: generation, token, config dir, the session to start.
    const prepare = Effect.fn("Agent.prepare")(function*(request: LaunchRequest) {
      yield* announceSandbox
      const { instance } = request
      const generation = ((yield* Ref.get(generations)).get(instance) ?? -1) + 1
      yield* Ref.update(generations, (m) => new Map(m).set(instance, generation))
      // A fresh token for every generation: the one the replaced session had stops working.
      const token = yield* events.register(instance)
      Secrets.remember(token, "control-token")
      yield* events.setGeneration(instance, generation)
      yield* fs.makeDirectory(path.dirname(digestFile(instance)), { recursive: true, mode: 0o700 }).pipe(
        Effect.zipRight(fs.writeFileString(digestFile(instance), `${Events.tokenDigest(token)}\n`, { mode: 0o600 })),
        Effect.mapError(fail(instance, "save token digest"))
      )
      // --continue needs a conversation to continue; without one the instance starts afresh.
      const continueSession = request.continueSession && (yield* ClaudeCode.hasConversation(configDir(instance)).pipe(
        Effect.provideService(FileSystem.FileSystem, fs),
        Effect.provideService(Path.Path, path)
      ))
      const loginDir = request.credential.loginDir
      const launchSpec: ClaudeCode.InstanceLaunch = {
        configDir: loginDir === undefined ? configDir(instance) : accountDir(request.credential.name),
        worktree: request.worktree,
        claudePath: settings.claudePath,
        ...(settings.model === undefined ? {} : { model: settings.model }),
        continueSession,
        credentialEnv: request.credential.env,
        hookCommand,
        ...(events.hookUrl === undefined ? {} : { hookUrl: events.hookUrl }),
        extraEnv: {
          ...settings.extraEnv,
          PATH: `${binDir}:${settings.basePath}`,
          // For the SessionStart hook, which keeps it on the Bash tool's PATH (see bin/cco-client.mjs).
          CCO_BIN: binDir,
          CCO_SOCKET: events.socketPath,
          CCO_INSTANCE: instance,
          CCO_GENERATION: String(generation),
          CCO_RUN: settings.runId,
          // Its own ports (CCO_PORT … CCO_PORT+9): dev and test servers of parallel worktrees do not collide.
          CCO_PORT: String(instancePort(instance))
        }
      }
      yield* ClaudeCode.prepareConfigDir(
        loginDir === undefined ? launchSpec : { ...launchSpec, configDir: configDir(instance) },
        settings.oauthCredentialsFile === undefined || loginDir !== undefined ? {} : { oauthCredentialsFile: settings.oauthCredentialsFile }
      ).pipe(
        Effect.zipRight(
          loginDir === undefined
            ? Effect.sync(() => void accountOf.delete(instance))
            : accountLock.withPermits(1)(ClaudeCode.prepareAccountDir(launchSpec, { loginDir, instanceDir: configDir(instance) })).pipe(
              Effect.map((secrets) => {
                secrets.forEach((v) => Secrets.remember(v, request.credential.name))
                accountOf.set(instance, { loginDir, dir: launchSpec.configDir })
              })
            )
        ),
        Effect.mapError(fail(instance, "prepare config")),
        Effect.provideService(FileSystem.FileSystem, fs),
        Effect.provideService(Path.Path, path)
      )
      const { argv, env } = ClaudeCode.launchCommand(launchSpec)
      const command = yield* confine(instance, request.worktree, argv, loginDir === undefined ? undefined : launchSpec.configDir)
      const session = sessionName(instance)
      const spec: SessionSpec = {
        name: session,
        cwd: request.worktree,
        command,
        env: { ...env, CCO_TOKEN: Redacted.make(token) },
        unsetEnv: inheritedCredentials,
        width: 200,
        height: 50,
        logFile: runLog.sessionLogPath(instance)
      }
      return { request, generation, continueSession, spec }
    })

    type Prepared = Effect.Effect.Success<ReturnType<typeof prepare>>

    // A session of that name still there (one that outlived its orchestrator) is replaced.
    const startOne = (p: Prepared) => {
      const start = tmux.newSession(p.spec)
      return start.pipe(
        Effect.catchTag("TmuxCommandFailed", (e) =>
          /duplicate session/.test(e.stderr) ? tmux.killSession(p.spec.name).pipe(Effect.ignore, Effect.zipRight(start)) : Effect.fail(e)),
        Effect.mapError(fail(p.request.instance, "start session"))
      )
    }

    const launched = (p: Prepared) =>
      runLog.log("instance.launched", {
        instance: p.request.instance,
        generation: p.generation,
        credential: p.request.credential.name,
        resume: p.continueSession,
        sandbox: Sandbox.label(settings.sandbox),
        session: p.spec.name,
        attach: `tmux -L ${tmux.socket} attach -t ${p.spec.name}`
      })

    const launch = Effect.fn("Agent.launch")(function*(request: LaunchRequest) {
      const p = yield* prepare(request)
      yield* startOne(p)
      yield* launched(p)
      return p.generation
    })

    // A team's start-up: every launch prepared first, then all sessions in one tmux call (one process, before the
    // CPUs fill with starting CLIs); when that call fails (a session of the same name was left by an earlier
    // orchestrator, say), every session is started one by one instead.
    const launchMany = Effect.fn("Agent.launchMany")(function*(requests: ReadonlyArray<LaunchRequest>) {
      const prepared = yield* Effect.forEach(requests, prepare, { concurrency: 8 })
      const together = yield* tmux.newSessions(prepared.map((p) => p.spec)).pipe(Effect.either)
      if (together._tag === "Left") {
        // Sessions the failed call did start lost their env files with it: each is started afresh, on its own.
        yield* tmux.killSessions(prepared.map((p) => p.spec.name)).pipe(Effect.ignore)
        yield* Effect.forEach(prepared, startOne, { discard: true })
      }
      yield* Effect.forEach(prepared, launched, { discard: true })
      return new Map(prepared.map((p) => [p.request.instance, p.generation] as const)) as ReadonlyMap<string, number>
    })

    // Every prompt reaches the pane here, whoever composed it and whatever agent text it quotes: as text that can
    // show but never act (no escape sequence, control key or end-of-paste), so one paste is one prompt.
    const deliver = Effect.fn("Agent.deliver")(function*(instance: string, raw: string) {
      const session = sessionName(instance)
      const text = neutralise(raw)
      if (raw.length > PANE_MAX && /\[cco: \d+ more characters cut\]$/.test(text)) {
        yield* runLog.log("prompt.cut", { instance, chars: raw.length, limit: PANE_MAX })
      }
      yield* tmux.sendText(session, text).pipe(Effect.mapError(fail(instance, "paste prompt")))
      // The CLI takes a moment to absorb a large paste; Enter sent too soon lands inside it.
      yield* Effect.sleep(Math.min(1500, 150 + Math.floor(text.length / 20)))
      yield* tmux.sendKeys(session, ["Enter"]).pipe(Effect.mapError(fail(instance, "submit prompt")))
    })

    // A killed session's claude keeps writing (SessionEnd hook, transcript) for a moment: wait for it to exit
    // before anything reuses its config dir, and end it by its own pid if it lingers. What the instance started
    // (its tools' processes, in process groups and sessions of their own) is ended with it.
    const stop = Effect.fn("Agent.stop")(function*(instance: string) {
      const session = sessionName(instance)
      const info = yield* tmux.paneInfo(session).pipe(Effect.option)
      const pid = Option.isSome(info) && info.value.pid > 1 ? info.value.pid : undefined
      const tree = yield* treeBelow(pid)
      yield* tmux.killSession(session).pipe(Effect.ignore)
      yield* endProcesses(instance, pid, tree)
      // The login dir keeps the account's newest login (a refresh during the run consumed the one it had).
      yield* syncAccount(instance)
    })

    // A whole team at once (the wind-down): one tmux call for the panes, one to kill every session, and the
    // processes of all ended together.
    const stopMany = Effect.fn("Agent.stopMany")(function*(instances: ReadonlyArray<string>) {
      const panes = yield* tmux.paneInfos(settings.sessionPrefix).pipe(Effect.orElseSucceed(() => new Map<string, PaneInfo>()))
      const pids = new Map(instances.map((i) => {
        const pane = panes.get(sessionName(i))
        return [i, pane !== undefined && pane.pid > 1 ? pane.pid : undefined] as const
      }))
      const trees = new Map(yield* Effect.forEach(instances, (i) => Effect.map(treeBelow(pids.get(i)), (t) => [i, t] as const)))
      yield* tmux.killSessions(instances.map(sessionName)).pipe(Effect.ignore)
      yield* Effect.forEach(instances, (i) => Effect.zipRight(endProcesses(i, pids.get(i), trees.get(i)!), syncAccount(i)), { concurrency: "unbounded", discard: true })
    })

    const attach = Effect.fn("Agent.attach")(function*(instance: string, generation: number) {
      yield* announceSandbox
      const digest = yield* fs.readFileString(digestFile(instance)).pipe(Effect.option)
      if (Option.isNone(digest)) return false
      yield* events.restore(instance, digest.value.trim(), generation)
      // Its hooks still point at the port of the orchestrator that launched it.
      yield* ClaudeCode.rewriteSettings(configDir(instance), {
        hookCommand,
        ...(events.hookUrl === undefined ? {} : { hookUrl: events.hookUrl })
      }).pipe(
        Effect.provideService(FileSystem.FileSystem, fs),
        Effect.provideService(Path.Path, path),
        Effect.catchAll((e) => runLog.log("instance.settings-failed", { instance, message: e.message }))
      )
      yield* Ref.update(generations, (m) => new Map(m).set(instance, generation))
      yield* runLog.log("instance.attached", { instance, generation, session: sessionName(instance) })
      return true
    })

    const version = exec(settings.claudePath, ["--version"]).pipe(
      Effect.provideService(CommandExecutor.CommandExecutor, executor),
      Effect.mapError((e) => e.message),
      Effect.flatMap((r) => r.exitCode === 0 ? Effect.succeed(r.stdout.trim()) : Effect.fail(r.stderr.trim())),
      Effect.mapError((message) => new AgentError({ instance: "-", operation: "version", message }))
    )

    return Agent.of({
      settings,
      version,
      attach,
      sessionName,
      configDir,
      launch,
      launchMany,
      deliver,
      interrupt: (instance) =>
        tmux.sendKeys(sessionName(instance), ["Escape"]).pipe(Effect.mapError(fail(instance, "interrupt"))),
      stop,
      stopMany,
      isAlive: (instance) =>
        tmux.paneInfo(sessionName(instance)).pipe(
          Effect.map((info) => !info.dead),
          Effect.orElseSucceed(() => false)
        )
    })
  })

export const layer = (settings: AgentSettings) => Layer.effect(Agent, make(settings))
