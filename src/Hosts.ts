// A run over several hosts: the Tmux, Git/Worktree and Agent ports of one run made per host. Instances placed on a
// remote host (HostsConfig.placement) run there: cco's own clone and their worktrees under the host's workdir, tmux
// there (`ssh … tmux -L <socket>-<host>`), claude there with its config dir and credentials, hooks and `cco team`
// back over a unix socket forwarded through the same SSH connection (one ControlMaster per host). Git stays owned
// by the orchestrator: the branches of remote instances are fetched into the run's clone before anything here
// reads them, and branches the orchestrator moves are pushed to the remote clone before a git command there
// reads them; pushes to origin go from the run's clone.
import * as CommandExecutor from "@effect/platform/CommandExecutor"
import * as FileSystem from "@effect/platform/FileSystem"
import { Context, Effect, Layer, PubSub, Queue } from "effect"
import * as AgentModule from "./Agent.js"
import { Agent, type AgentSettings, type AgentShape, type LaunchRequest } from "./Agent.js"
import { coalesced } from "./Coalesce.js"
import { Events } from "./Events.js"
import { exec } from "./Exec.js"
import { Git, gitError } from "./Git.js"
import * as H from "./Hierarchy.js"
import { type HostConfig, isRemote, LOCAL, placement, remoteRunDir } from "./HostsConfig.js"
import { routedGit } from "./HostsGit.js"
import { routedAgent, routedTmux } from "./HostsRouting.js"
import { RunError } from "./RunContext.js"
import type { RunPlatform, RunServices, RunSite } from "./RunLayers.js"
import type { RunState } from "./RunState.js"
import { RunLog } from "./RunLog.js"
import * as Sandbox from "./Sandbox.js"
import { shellQuote } from "./Shell.js"
import * as Ssh from "./Ssh.js"
import { type SessionSpec, Tmux, type TmuxShape } from "./Tmux.js"
import * as TmuxLive from "./TmuxLive.js"
import { envFileNames, Worktree } from "./Worktree.js"

/** A remote host as one run uses it. */
export interface RunHostSite {
  readonly host: HostConfig
  readonly target: Ssh.SshTarget
  /** <workdir>/<runId> there. */
  readonly runDir: string
  /** cco's clone there. */
  readonly repoDir: string
  /** The control socket there, forwarded to the orchestrator's; in a directory of its own, which sandboxes show. */
  readonly socketPath: string
  /** The tmux server there: `<tmuxSocket>-<host>`. */
  readonly tmuxSocket: string
  /** Here: what the instances' files there are prepared in before they are copied over. */
  readonly stagingDir: string
}

/** Each instance's host name ("local" for this machine), from the config alone. */
export const placementOf = (config: RunSite["config"]): ReadonlyMap<string, string> => {
  const specs = H.instances(H.topology(config.workerCount, config.engineerManagerGroupSize), { target: "target", prefix: "cco/run" })
  const placed = placement(config.hosts, specs)
  // resolveConfig refuses a team that does not fit.
  return typeof placed === "string" ? new Map(specs.map((s) => [s.name, LOCAL])) : placed
}

/** The remote hosts that have instances placed on them. */
export const usedRemoteHosts = (config: RunSite["config"]): ReadonlyArray<HostConfig> => {
  const used = new Set(placementOf(config).values())
  return (config.hosts ?? []).filter((h) => isRemote(h) && used.has(h.name))
}

export const hostSite = (folder: string, runId: string, tmuxSocket: string, host: HostConfig): RunHostSite => {
  const runDir = remoteRunDir(host, runId)
  return {
    host,
    target: { host, controlPath: Ssh.controlPathFor(folder, host.name) },
    runDir,
    repoDir: `${runDir}/repo`,
    socketPath: `${runDir}/control/control.sock`,
    tmuxSocket: `${tmuxSocket}-${host.name}`,
    stagingDir: `${folder}/hosts/${host.name}`
  }
}

/** The remote hosts of a run as state.json keeps them (what `cco cleanup` needs to reach them). */
export const hostStates = (config: RunSite["config"], folder: string, runId: string) =>
  usedRemoteHosts(config).map((h) => {
    const s = hostSite(folder, runId, config.tmuxSocket, h)
    return {
      name: h.name,
      ssh: h.ssh ?? h.name,
      port: h.port,
      ...(h.identityFile === undefined ? {} : { identityFile: h.identityFile }),
      ...(h.knownHostsFile === undefined ? {} : { knownHostsFile: h.knownHostsFile }),
      strictHostKeyChecking: h.strictHostKeyChecking,
      runDir: s.runDir,
      tmuxSocket: s.tmuxSocket,
      controlPath: s.target.controlPath,
      ...sandboxState(runSandboxes.get(folder)?.get(h.name))
    }
  })

/**
 * A resumed run's instances stay where the run left them. One the run moved here (its host went down), or that ran
 * here before the config placed it on a host, stays here: those are returned. One that ran on a host the config now
 * places elsewhere cannot be resumed (its worktree, session and conversation are there): that is the string.
 */
export const resumedPlacement = (config: RunSite["config"], previous: Pick<RunState, "instances">): ReadonlyArray<string> | string => {
  const placed = placementOf(config)
  const here: Array<string> = []
  for (const i of previous.instances) {
    const was = i.host ?? LOCAL
    const now = placed.get(i.name) ?? LOCAL
    if (was === now) continue
    if (was === LOCAL) {
      here.push(i.name)
      continue
    }
    return `${i.name} ran on host ${was}, and the config now places it ${now === LOCAL ? "on this machine" : `on host ${now}`}; resume with the \`hosts\` the run started with (or \`cco cleanup\` it and start a new run)`
  }
  return here
}

// The sandbox each remote host of the runs going on in this process gave, by run folder (state.json shows it).
const runSandboxes = new Map<string, ReadonlyMap<string, Sandbox.Sandbox>>()

const sandboxState = (sandbox: Sandbox.Sandbox | undefined) =>
  sandbox === undefined ? {} : sandbox._tag === "Bwrap" ? { sandbox: "bwrap" as const } : { sandbox: "none" as const, sandboxReason: sandbox.reason }

/** An instance's worktree and the clone it belongs to when it runs on a remote host; undefined when local. */
export const remoteWorktree = (config: RunSite["config"], runId: string, instance: string) => {
  const hostName = placementOf(config).get(instance)
  const host = (config.hosts ?? []).find((h) => h.name === hostName)
  if (host === undefined || !isRemote(host)) return undefined
  const runDir = remoteRunDir(host, runId)
  return { host: host.name, repoDir: `${runDir}/repo`, worktree: `${runDir}/worktrees/${instance}` }
}

/**
 * A run's hosts as they stand: the hosts found down, and the instances moved from them to this machine (each
 * with its worktree here). Shared by the routed ports.
 */
export interface HostMoves {
  readonly down: Set<string>
  /** instance → its worktree here */
  readonly moved: Map<string, string>
}

// The moves of the runs going on in this process, by run folder: what state.json shows as each instance's host.
const runMoves = new Map<string, HostMoves>()

/** The worktree here of an instance moved here from a host that went down. */
export const movedWorktree = (folder: string, instance: string): string | undefined => runMoves.get(folder)?.moved.get(instance)

/** The host an instance runs on now ("local" once moved here); undefined when the run has no `hosts`. */
export const hostNow = (config: RunSite["config"], folder: string, instance: string): string | undefined =>
  config.hosts === undefined ? undefined : runMoves.get(folder)?.moved.has(instance) === true ? LOCAL : placementOf(config).get(instance)

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
const transcriptsBack = (site: RunHostSite, instance: string) => {
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

const transportFor = (site: RunHostSite, executor: CommandExecutor.CommandExecutor): TmuxLive.RemoteTransport => ({
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
const connect = (site: RunHostSite, localSocket: string, folder: string, claudePath: string, resuming: boolean) =>
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
const sandboxOn = (site: RunHostSite, mode: Sandbox.SandboxMode) =>
  Effect.gen(function*() {
    const runLog = yield* RunLog
    const sandbox = yield* Sandbox.resolveWith(mode, Ssh.probeSandbox(site.target), (reason) => `sandbox "bwrap" is required but ${reason}; ${Sandbox.INSTALL_HINT.replace("install bubblewrap", `install bubblewrap there`)}`).pipe(
      Effect.mapError((e) => new RunError({ reason: "config", message: `host ${site.host.name} (${site.host.ssh}, port ${site.host.port}): ${e.message}` }))
    )
    yield* runLog.log("host.sandbox", { host: site.host.name, ...Sandbox.logFields(sandbox) })
    return sandbox
  })

/** The agent on a remote host: Agent.ts as is, over that host's tmux, its files staged here and copied over. */
const remoteAgent = (site: RunHostSite, settings: AgentSettings, clientScript: string, sandbox: Sandbox.Sandbox) =>
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

/**
 * The run's services over its hosts: `local` (the one-machine services) as they are when no instance is placed on
 * a remote host; otherwise with Tmux, Git, Worktree and Agent routed to the host of each instance.
 */
export const withHosts = (
  site: RunSite,
  settings: AgentSettings,
  local: Layer.Layer<RunServices, Error, RunLog | RunPlatform>
): Layer.Layer<RunServices, Error, RunLog | RunPlatform> => {
  const remoteHosts = usedRemoteHosts(site.config)
  if (remoteHosts.length === 0) return local
  const placed = placementOf(site.config)
  const sites = remoteHosts.map((h) => hostSite(site.folder, site.runId, site.config.tmuxSocket, h))
  const moves: HostMoves = { down: new Set(), moved: new Map() }
  // Moved here, their conversations left behind (see routedAgent).
  const lost = new Set<string>()
  const instancesOn = (host: string) => [...placed].filter(([, h]) => h === host).map(([i]) => i)
  // A resumed run: what it moved here stays here, and a host none of its instances run on any more is not used.
  const resumedHere = site.previous === undefined ? [] : resumedPlacement(site.config, site.previous)
  if (typeof resumedHere !== "string") for (const i of resumedHere) moves.moved.set(i, `${site.folder}/worktrees/${i}`)
  for (const s of sites) if (instancesOn(s.host.name).every((i) => moves.moved.has(i))) moves.down.add(s.host.name)
  // Where an instance runs now: where it was placed, or here once moved from a host that went down.
  const hostOf = (instance: string) => moves.moved.has(instance) ? LOCAL : placed.get(instance) ?? LOCAL
  const prefix = `cco-${site.runId}-`
  const hostOfSession = (session: string) => session.startsWith(prefix) ? hostOf(session.slice(prefix.length)) : LOCAL
  const routed = Layer.scopedContext(Effect.gen(function*() {
    const runLog = yield* RunLog
    const localTmux = yield* Tmux
    const localAgent = yield* Agent
    const localGit = yield* Git
    const events = yield* Events
    const localRepo = `${site.folder}/repo`
    yield* Effect.acquireRelease(Effect.sync(() => runMoves.set(site.folder, moves)), () => Effect.sync(() => runMoves.delete(site.folder)))
    // A host that cannot be reached when a run resumes is down: its instances start here, from their branches as
    // this machine has them (a new run does not start without it).
    const lostAtResume = (s: RunHostSite, e: RunError) =>
      Effect.gen(function*() {
        moves.down.add(s.host.name)
        const instances = instancesOn(s.host.name).filter((i) => !moves.moved.has(i))
        yield* runLog.log("host.down", { host: s.host.name, message: e.message, instances })
        for (const instance of instances) {
          const here = `${site.folder}/worktrees/${instance}`
          const commit = (yield* localGit.output(localRepo, ["rev-parse", "--verify", "--quiet", `refs/heads/cco/${site.runId}/${instance}^{commit}`]).pipe(Effect.orElseSucceed(() => ""))).trim()
          moves.moved.set(instance, here)
          lost.add(instance)
          yield* runLog.log("instance.moved", {
            instance,
            from: s.host.name,
            to: LOCAL,
            worktree: here,
            commit,
            lost: `what ${instance} had not handed over on ${s.host.name} (uncommitted changes, commits after ${commit.slice(0, 10)}, its conversation) stays there`
          })
        }
      })
    yield* Effect.forEach(sites.filter((s) => !moves.down.has(s.host.name)), (s) => {
      const connecting = connect(s, site.socketPath, site.folder, s.host.claudeCommand ?? settings.claudePath, site.previous !== undefined)
      return site.previous === undefined ? connecting : Effect.catchAll(connecting, (e) => lostAtResume(s, e))
    }, { concurrency: "unbounded", discard: true })
    yield* runLog.log("hosts.connected", {
      hosts: sites.filter((s) => !moves.down.has(s.host.name)).map((s) => ({ name: s.host.name, ssh: s.host.ssh, runDir: s.runDir, tmuxSocket: s.tmuxSocket })),
      placement: Object.fromEntries([...placed.keys()].map((i) => [i, hostOf(i)]))
    })
    // The run's sandbox mode applies on every host, each deciding for itself (before anything starts there).
    const sandboxes = new Map(yield* Effect.forEach(sites.filter((s) => !moves.down.has(s.host.name)), (s) => Effect.map(sandboxOn(s, site.config.sandbox), (sb) => [s.host.name, sb] as const)))
    yield* Effect.acquireRelease(Effect.sync(() => runSandboxes.set(site.folder, sandboxes)), () => Effect.sync(() => runSandboxes.delete(site.folder)))
    const clientScript = site.options.clientCommand[site.options.clientCommand.length - 1]!
    const agents = new Map(yield* Effect.forEach(sites, (s) => Effect.map(remoteAgent(s, settings, clientScript, sandboxes.get(s.host.name) ?? { _tag: "Unconfined", mode: site.config.sandbox, reason: `host ${s.host.name} is down` }), (a) => [s.host.name, a] as const)))
    const tmuxes = new Map<string, TmuxShape>()
    const executor = yield* CommandExecutor.CommandExecutor
    for (const s of sites) tmuxes.set(s.host.name, yield* TmuxLive.makeLive(s.tmuxSocket, { remote: transportFor(s, executor) }))
    const fs = yield* FileSystem.FileSystem
    // .env / .env.local into a worktree there (their text over ssh's stdin), listed in that clone's info/exclude;
    // one that is committed comes with its branch and is left alone, as here.
    const copyEnvFilesThere = (source: string, dir: string) => {
      const there = sites.find((s) => dir.startsWith(`${s.runDir}/`))
      if (there === undefined) return undefined
      return Effect.gen(function*() {
        const copied: Array<string> = []
        for (const name of envFileNames) {
          const info = yield* fs.stat(`${source}/${name}`).pipe(Effect.option)
          if (info._tag === "None" || info.value.type !== "File") continue
          if ((yield* git.output(dir, ["ls-files", "--", name])).trim() !== "") continue
          const text = yield* fs.readFileString(`${source}/${name}`).pipe(Effect.mapError((e) => gitError(`copy ${name}`, dir, e.message)))
          const q = shellQuote
          yield* Ssh.output(there.target, [
            `umask 077 && cat > ${q(`${dir}/${name}`)}`,
            `x=${q(`${there.repoDir}/.git/info/exclude`)} && mkdir -p "$(dirname "$x")"`,
            `{ grep -qxF ${q(`/${name}`)} "$x" 2>/dev/null || printf '%s\\n' ${q(`/${name}`)} >> "$x"; }`
          ].join(" && "), text).pipe(
            Effect.provideService(CommandExecutor.CommandExecutor, executor),
            Effect.mapError((e) => gitError(`copy ${name}`, `${there.host.name}:${dir}`, e.message))
          )
          copied.push(name)
        }
        return copied as ReadonlyArray<string>
      })
    }
    // setupCommand in a worktree there runs there, through the host's connection; its log is here.
    const runCommandThere = (dir: string, command: string, options: { readonly port: number; readonly logFile: string; readonly timeoutMs: number }) => {
      const there = sites.find((s) => dir.startsWith(`${s.runDir}/`))
      return there === undefined ? undefined : Ssh.runShell(there.target, command, { cwd: dir, ...options })
    }
    const git = yield* routedGit(localGit, localRepo, site.runId, sites, placed, runLog, moves)
    const worktree = Context.get(yield* Layer.build(Worktree.DefaultWithoutDependencies.pipe(Layer.provide(Layer.succeed(Git, git)))), Worktree)
    // The git lock a killed claude left in its worktree (a commit cut short) is looked for where the worktree is: on
    // its host over SSH (this machine's filesystem does not have it), here once its instance was moved here.
    const removeStaleLockThere = (dir: string) => {
      const moved = [...moves.moved].find(([i]) => dir === `${sites.find((s) => s.host.name === placed.get(i))?.runDir}/worktrees/${i}`)
      if (moved !== undefined) return worktree.removeStaleLock(moved[1])
      const there = sites.find((s) => dir.startsWith(`${s.runDir}/`))
      if (there === undefined) return undefined
      // A host that is down is not waited for (its worktree stays there).
      if (moves.down.has(there.host.name)) return Effect.succeed(undefined)
      const q = shellQuote
      return Ssh.output(there.target, [
        `cd ${q(dir)} 2>/dev/null || exit 0`,
        `if [ -d .git ]; then g=.git; elif [ -f .git ]; then g=$(sed -n 's/^gitdir: *//p' .git | head -n 1); else exit 0; fi`,
        `case "$g" in /*) ;; *) g="$PWD/$g" ;; esac`,
        `[ -e "$g/index.lock" ] || exit 0`,
        `rm -f "$g/index.lock" && printf %s "$g/index.lock"`
      ].join("\n")).pipe(
        Effect.map((out) => out === "" ? undefined : out),
        Effect.provideService(CommandExecutor.CommandExecutor, executor),
        Effect.mapError((e) => gitError("remove stale lock", `${there.host.name}:${dir}`, e.message))
      )
    }

    // A host that does not answer is looked at once more (its master connection, reopened if it went); if it
    // cannot be reached it is down: its sessions count as gone, and its instances are started here when restarted.
    const checks = new Map(yield* Effect.forEach(sites, (s) => Effect.map(Effect.makeSemaphore(1), (lock) => [s.host.name, lock] as const)))
    const isDown = (name: string) =>
      Effect.suspend(() => {
        const s = sites.find((x) => x.host.name === name)
        if (s === undefined || moves.down.has(name)) return Effect.succeed(s !== undefined)
        return checks.get(name)!.withPermits(1)(Effect.gen(function*() {
          if (moves.down.has(name)) return true
          if (yield* Ssh.masterAlive(s.target)) return false
          const back = yield* Ssh.startMaster(s.target, `${site.folder}/ssh-${name}.log`).pipe(
            Effect.zipRight(Ssh.forwardSocket(s.target, s.socketPath, site.socketPath)),
            Effect.either
          )
          if (back._tag === "Right") {
            yield* runLog.log("host.reconnected", { host: name })
            return false
          }
          moves.down.add(name)
          const instances = instancesOn(name)
          yield* runLog.log("host.down", { host: name, message: back.left.message, instances })
          return true
        }))
      }).pipe(Effect.provideService(CommandExecutor.CommandExecutor, executor))

    // An instance of a host that is down starts here: a worktree of its branch as this machine has it (what it
    // handed over: the work it reported), its conversation and whatever it had not handed over left behind.
    const moveHere = (request: LaunchRequest) => {
      const from = placed.get(request.instance)
      if (from === undefined || from === LOCAL || moves.moved.has(request.instance) || !moves.down.has(from)) return undefined
      return Effect.gen(function*() {
        const here = `${site.folder}/worktrees/${request.instance}`
        const branch = `cco/${site.runId}/${request.instance}`
        const fail = (e: { readonly message: string }) => new AgentModule.AgentError({ instance: request.instance, operation: "move here", message: e.message })
        yield* worktree.addWorktree(localRepo, here, branch).pipe(Effect.mapError(fail))
        const commit = yield* worktree.headCommit(localRepo, `refs/heads/${branch}`).pipe(Effect.mapError(fail))
        moves.moved.set(request.instance, here)
        yield* runLog.log("instance.moved", {
          instance: request.instance,
          from,
          to: LOCAL,
          worktree: here,
          commit,
          lost: `what ${request.instance} had not handed over on ${from} (uncommitted changes, commits after ${commit.slice(0, 10)}, its conversation) stays there`
        })
        return yield* localAgent.launch({ ...request, worktree: here, continueSession: false })
      })
    }
    // Transcripts of remote instances come over after each turn, tool use and stop (cost tracking reads them here).
    const siteOfInstance = (instance: string) => sites.find((s) => s.host.name === placed.get(instance))
    const syncs = new Map(yield* Effect.forEach([...placed.keys()].filter((i) => siteOfInstance(i) !== undefined), (i) =>
      Effect.map(coalesced(transcriptsBack(siteOfInstance(i)!, i).pipe(Effect.provideService(CommandExecutor.CommandExecutor, executor))), (sync) => [i, sync] as const)))
    const fetchTranscripts = (instance: string) => {
      const site = siteOfInstance(instance)
      return site === undefined || moves.moved.has(instance) || moves.down.has(site.host.name) ? Effect.void : syncs.get(instance)!
    }
    const hooks = yield* PubSub.subscribe(events.hooks)
    yield* Queue.take(hooks).pipe(
      Effect.flatMap((e) => ["Stop", "PostToolUse", "StopFailure", "SessionEnd"].includes(e.hook) ? Effect.fork(fetchTranscripts(e.instance)) : Effect.void),
      Effect.forever,
      Effect.forkScoped
    )
    const configDirHere = (instance: string) => {
      const site = siteOfInstance(instance)
      return site === undefined || moves.moved.has(instance) ? undefined : `${site.stagingDir}/instances/${instance}/claude`
    }
    const downNow = (host: string) => moves.down.has(host)
    // A worktree's files there are looked at there: whether it is made already (a resumed run's), and a stale
    // index.lock a killed git left in it. One moved here is the worktree here.
    const worktreeThere = (dir: string) => {
      const s = sites.find((x) => dir.startsWith(`${x.runDir}/worktrees/`))
      if (s === undefined) return undefined
      const here = moves.moved.get(dir.slice(`${s.runDir}/worktrees/`.length).split("/")[0]!)
      return here === undefined ? { site: s } : { here }
    }
    const testThere = (s: RunHostSite, dir: string, script: string) =>
      Ssh.run(s.target, script).pipe(
        Effect.provideService(CommandExecutor.CommandExecutor, executor),
        Effect.mapError((e) => gitError("look at the worktree", `${s.host.name}:${dir}`, e.message))
      )
    const addWorktree: typeof worktree.addWorktree = (repoDir, dir, branch, base) => {
      const there = worktreeThere(dir)
      if (there === undefined || "here" in there) return worktree.addWorktree(repoDir, there?.here ?? dir, branch, base)
      return Effect.gen(function*() {
        if ((yield* testThere(there.site, dir, `test -e ${shellQuote(dir)}`)).exitCode !== 0) return yield* worktree.addWorktree(repoDir, dir, branch, base)
        const entry = (yield* worktree.listWorktrees(repoDir)).find((w) => w.path === dir)
        if (entry?.branch !== branch) {
          return yield* gitError(`add worktree ${dir}`, `${there.site.host.name}:${repoDir}`, `${dir} is there already, and is not a worktree with branch ${branch} checked out`)
        }
        // Registered but never checked out (cut off between the two steps): its files come now.
        const index = (yield* git.output(dir, ["rev-parse", "--path-format=absolute", "--git-path", "index"])).trim()
        if ((yield* testThere(there.site, dir, `test -e ${shellQuote(index)}`)).exitCode !== 0) yield* git.output(dir, ["reset", "--hard", "--quiet"])
      })
    }
    return Context.make(Tmux, routedTmux(localTmux, tmuxes, hostOfSession, isDown, downNow)).pipe(
      Context.add(Agent, routedAgent(localAgent, agents, hostOf, moveHere, configDirHere, fetchTranscripts, downNow, lost)),
      Context.add(Git, git),
      Context.add(Worktree, Worktree.make({
        ...worktree,
        addWorktree,
        copyEnvFiles: (source, dir) => copyEnvFilesThere(source, dir) ?? worktree.copyEnvFiles(source, dir),
        removeStaleLock: (dir) => removeStaleLockThere(dir) ?? worktree.removeStaleLock(dir),
        runCommand: (dir, command, options) => runCommandThere(dir, command, options) ?? worktree.runCommand(dir, command, options)
      })),
      Context.add(Events, events)
    )
  }))
  return Layer.provide(routed, local)
}
