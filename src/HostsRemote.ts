// A remote host's side of a run (see Hosts.ts): files prepared here and copied there (tar over ssh), transcripts
// copied back, tmux there through the host's SSH connection, connecting (the master, the forwarded control socket),
// the sandbox the host gives, and the Agent that runs instances there.
import * as CommandExecutor from "@effect/platform/CommandExecutor"
import * as FileSystem from "@effect/platform/FileSystem"
import { Effect } from "effect"
import * as AgentModule from "./Agent.js"
import { type AgentSettings, type AgentShape, type LaunchRequest } from "./Agent.js"
import { Events } from "./Events.js"
import { exec } from "./Exec.js"
import type { RunHostSite } from "./HostsPlacement.js"
import { RunError } from "./RunContext.js"
import { RunLog } from "./RunLog.js"
import * as Sandbox from "./Sandbox.js"
import { shellQuote } from "./Shell.js"
import * as Ssh from "./Ssh.js"
import { type SessionSpec, Tmux, type TmuxShape } from "./Tmux.js"
import * as TmuxLive from "./TmuxLive.js"

// --- files prepared here, used there ------------------------------------------------------------------------------

/** A FileSystem that keeps everything under `from` (a path on the remote host) in `to` here. */
const stagedFileSystem = (fs: FileSystem.FileSystem, from: string, to: string): FileSystem.FileSystem => {
  const there = (p: string) => p === from || p.startsWith(`${from}/`) ? `${to}${p.slice(from.length)}` : p
  const back = (p: string) => p === to || p.startsWith(`${to}/`) ? `${from}${p.slice(to.length)}` : p
  const out: Record<string, unknown> = { ...fs }
  const source = fs as unknown as Record<string, (...args: Array<unknown>) => unknown>
  for (
    const k of ["access", "chmod", "chown", "makeDirectory", "open", "readDirectory", "readFile", "readFileString", "readLink", "remove", "stat", "truncate", "utimes", "writeFile", "writeFileString", "exists", "sink", "stream", "watch"]
  ) out[k] = (p: string, ...rest: Array<unknown>) => source[k]!(there(p), ...rest)
  for (const k of ["copy", "copyFile", "link", "rename"]) out[k] = (a: string, b: string, ...rest: Array<unknown>) => source[k]!(there(a), there(b), ...rest)
  out.symlink = (target: string, p: string) => fs.symlink(target, there(p))
  out.realPath = (p: string) => Effect.map(fs.realPath(there(p)), back)
  return out as unknown as FileSystem.FileSystem
}

/** Copies the staging dir over to the run's folder there (tar through ssh): config dirs, bin/, token digests. */
const syncStaging = (site: RunHostSite) =>
  // The transcripts (projects/) are the host's: only ever copied from there (transcriptsBack), never over them.
  exec("sh", ["-c", `tar -C ${shellQuote(site.stagingDir)} --exclude=./instances/*/claude/projects --exclude=./.sync-* -cf - . | ssh ${Ssh.sshOptions(site.host, site.target.controlPath).map(shellQuote).join(" ")} ${shellQuote(site.host.ssh ?? site.host.name)} -- ${shellQuote(`sh -c ${shellQuote(`mkdir -p ${shellQuote(site.runDir)} && tar -C ${shellQuote(site.runDir)} -xf -`)}`)}`]).pipe(
    Effect.flatMap((r) => r.exitCode === 0 ? Effect.void : Effect.fail(new Error(`copying files to ${site.host.name} failed: ${r.stderr.trim()}`)))
  )

/**
 * The instance's transcripts (its config dir's projects/) copied from the host into the staging dir, where cost
 * tracking reads them: each file replaced whole by a rename, so a reader sees the old copy or the new one.
 */
export const transcriptsBack = (site: RunHostSite, instance: string) => {
  const q = shellQuote
  const dest = `${site.stagingDir}/instances/${instance}/claude`
  const remote = `sh -c ${q(`tar -C ${q(`${site.runDir}/instances/${instance}/claude`)} -cf - projects 2>/dev/null || true`)}`
  const ssh = ["ssh", ...Ssh.sshOptions(site.host, site.target.controlPath), site.host.ssh ?? site.host.name, "--", remote].map(q).join(" ")
  const script = [
    `mkdir -p ${q(dest)} && T=$(mktemp -d ${q(site.stagingDir)}/.sync-XXXXXX) || exit 0`,
    `${ssh} | tar -C "$T" -xf - 2>/dev/null`,
    `(cd "$T" && find . -type f | while IFS= read -r f; do mkdir -p ${q(dest)}/"$(dirname "$f")" && mv -f "$f" ${q(dest)}/"$f"; done)`,
    `rm -rf "$T"`
  ].join("\n")
  return exec("sh", ["-c", script]).pipe(Effect.ignore)
}

// --- tmux there ---------------------------------------------------------------------------------------------------

export const transportFor = (site: RunHostSite, executor: CommandExecutor.CommandExecutor): TmuxLive.RemoteTransport => ({
  // An SSH session has no locale: tmux would print "_" for the tabs of its formats and for the CLI's "✳" titles.
  exec: ([tmux, ...args], stdin) => Ssh.run(site.target, ["env", "LC_CTYPE=C.UTF-8", tmux!, "-u", ...args].map(shellQuote).join(" "), stdin).pipe(Effect.mapError((e) => new Error(e.message)), Effect.provideService(CommandExecutor.CommandExecutor, executor)),
  // The launch script (credentials, the instance's token) goes over ssh's stdin into a 0600 file there.
  privateFile: (content) =>
    Ssh.output(site.target, 'umask 077 && d=$(mktemp -d "${TMPDIR:-/tmp}/cco-env-XXXXXXXX") && cat > "$d/env" && printf %s "$d"', content).pipe(
      Effect.map((dir) => ({ dir: dir.trim(), file: `${dir.trim()}/env` })),
      Effect.orDie,
      Effect.provideService(CommandExecutor.CommandExecutor, executor)
    ),
  removeDir: (dir) => Ssh.run(site.target, `rm -rf ${shellQuote(dir)}`).pipe(Effect.ignore, Effect.provideService(CommandExecutor.CommandExecutor, executor)),
  writeFile: (dir, name, content) =>
    Ssh.run(site.target, `mkdir -p ${shellQuote(dir)} && t=$(mktemp ${shellQuote(`${dir}/.${name}.XXXXXX`)}) && cat > "$t" && chmod 644 "$t" && mv -f "$t" ${shellQuote(`${dir}/${name}`)}`, content).pipe(
      Effect.ignore,
      Effect.provideService(CommandExecutor.CommandExecutor, executor)
    )
})

// --- connecting ---------------------------------------------------------------------------------------------------

/**
 * The master connection to a host, its run folder there and the control socket forwarded; closed with the scope.
 * An unreachable host (or one without tmux, git, node or claude) is a config error: nothing has started yet.
 */
export const connect = (site: RunHostSite, localSocket: string, folder: string, claudePath: string, resuming: boolean) =>
  Effect.gen(function*() {
    const unreachable = (e: { readonly message: string }) =>
      new RunError({ reason: "config", message: `host ${site.host.name} (${site.host.ssh}, port ${site.host.port}) cannot be used over SSH: ${e.message}` })
    // The master connection an orchestrator that died left behind: ended, so the new one is the master.
    if (resuming) yield* Ssh.stopMaster(site.target)
    // Ended with the run's scope, whatever fails after it is up.
    yield* Effect.acquireRelease(
      Ssh.startMaster(site.target, `${folder}/ssh-${site.host.name}.log`).pipe(Effect.mapError(unreachable)),
      () => Ssh.stopMaster(site.target)
    )
    yield* Ssh.output(site.target, [
      `for p in tmux git ${shellQuote(site.host.nodeCommand)} ${shellQuote(claudePath)}; do command -v "$p" >/dev/null 2>&1 || { echo "missing on the host: $p" >&2; exit 3; }; done`,
      `mkdir -p ${shellQuote(site.runDir)}`,
      `(umask 077 && mkdir -p ${shellQuote(site.socketPath.slice(0, site.socketPath.lastIndexOf("/")))})`,
      `rm -f ${shellQuote(site.socketPath)}`
    ].join(" && ")).pipe(Effect.mapError(unreachable))
    yield* Ssh.forwardSocket(site.target, site.socketPath, localSocket).pipe(Effect.mapError(unreachable))
    return site
  })

/**
 * The run's `sandbox` mode on a host, decided there: bwrap as found on its PATH (over SSH) and tried there. "bwrap"
 * without a usable one is a config error naming the host (nothing has started yet); "auto" falls back to
 * unconfined there. Logged as host.sandbox.
 */
export const sandboxOn = (site: RunHostSite, mode: Sandbox.SandboxMode) =>
  Effect.gen(function*() {
    const runLog = yield* RunLog
    const sandbox = yield* Sandbox.resolveWith(mode, Ssh.probeSandbox(site.target), (reason) => `sandbox "bwrap" is required but ${reason}; ${Sandbox.INSTALL_HINT_THERE}`).pipe(
      Effect.mapError((e) => new RunError({ reason: "config", message: `host ${site.host.name} (${site.host.ssh}, port ${site.host.port}): ${e.message}` }))
    )
    yield* runLog.log("host.sandbox", { host: site.host.name, ...Sandbox.logFields(sandbox) })
    return sandbox
  })

/** The agent on a remote host: Agent.ts as is, over that host's tmux, its files staged here and copied over. */
export const remoteAgent = (site: RunHostSite, settings: AgentSettings, clientScript: string, sandbox: Sandbox.Sandbox) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const executor = yield* CommandExecutor.CommandExecutor
    const events = yield* Events
    const runLog = yield* RunLog
    yield* fs.makeDirectory(`${site.stagingDir}/bin`, { recursive: true, mode: 0o700 }).pipe(Effect.orDie)
    yield* fs.copyFile(clientScript, `${site.stagingDir}/bin/cco-client.mjs`).pipe(Effect.orDie)
    const tmux = yield* TmuxLive.makeLive(site.tmuxSocket, { remote: transportFor(site, executor) })
    const synced = (spec: ReadonlyArray<SessionSpec>) =>
      syncStaging(site).pipe(Effect.orDie, Effect.as(spec), Effect.provideService(CommandExecutor.CommandExecutor, executor))
    const hostTmux: TmuxShape = {
      ...tmux,
      newSession: (spec) => Effect.flatMap(synced([spec]), () => tmux.newSession(spec)),
      newSessions: (specs) => Effect.flatMap(synced(specs), () => tmux.newSessions(specs))
    }
    const remoteSettings: AgentSettings = {
      runFolder: site.runDir,
      runId: settings.runId,
      sessionPrefix: settings.sessionPrefix,
      claudePath: site.host.claudeCommand ?? settings.claudePath,
      model: settings.model,
      clientCommand: [site.host.nodeCommand, `${site.runDir}/bin/cco-client.mjs`],
      basePath: settings.basePath,
      ...(settings.extraEnv === undefined ? {} : { extraEnv: settings.extraEnv }),
      sandbox,
      remote: true
    }
    const agent = yield* AgentModule.make(remoteSettings).pipe(
      Effect.provideService(Tmux, hostTmux),
      Effect.provideService(Events, { ...events, socketPath: site.socketPath, hookUrl: undefined }),
      Effect.provideService(RunLog, { ...runLog, sessionLogPath: (instance: string) => `${site.runDir}/session-${instance}.log` }),
      Effect.provideService(FileSystem.FileSystem, stagedFileSystem(fs, site.runDir, site.stagingDir)),
      Effect.provideService(CommandExecutor.CommandExecutor, Ssh.remoteExecutor(executor, site.target))
    )
    // A login kept in a file (~/.claude/.credentials.json, a login dir) stays on this machine: its refresh token is
    // single-use, and a copy refreshed elsewhere would log out every instance here. There, a credential travels in
    // the environment only: an API key, an auth token, or a CLAUDE_CODE_OAUTH_TOKEN from `claude setup-token`.
    const usable = (request: LaunchRequest) =>
      Object.keys(request.credential.env).length > 0 && request.credential.loginDir === undefined
        ? Effect.void
        : Effect.fail(new AgentModule.AgentError({
          instance: request.instance,
          operation: "launch",
          message: `credential ${request.credential.name} is a login kept in a file, which cco does not copy to ${site.host.name}; instances there need an API key or a CLAUDE_CODE_OAUTH_TOKEN (claude setup-token)`
        }))
    return {
      ...agent,
      launch: (request) => Effect.zipRight(usable(request), agent.launch(request)),
      launchMany: (requests) => Effect.zipRight(Effect.forEach(requests, usable, { discard: true }), agent.launchMany(requests))
    } satisfies AgentShape
  })
