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
import type { StatusResult } from "simple-git"
import * as AgentModule from "./Agent.js"
import { coalesced } from "./Coalesce.js"
import { Agent, type AgentSettings, type AgentShape, type LaunchRequest } from "./Agent.js"
import { Events } from "./Events.js"
import { exec } from "./Exec.js"
import { Git, type GitCallOptions, gitError, type GitOutput, outputOf } from "./Git.js"
import * as H from "./Hierarchy.js"
import { type HostConfig, isRemote, LOCAL, placement, remoteRunDir } from "./HostsConfig.js"
import { RunError } from "./RunContext.js"
import type { RunPlatform, RunServices, RunSite } from "./RunLayers.js"
import { RunLog } from "./RunLog.js"
import { shellQuote } from "./Shell.js"
import * as Ssh from "./Ssh.js"
import { type PaneInfo, type SessionSpec, Tmux, type TmuxShape } from "./Tmux.js"
import * as TmuxLive from "./TmuxLive.js"
import { agentPushUrl, Worktree } from "./Worktree.js"

/** A remote host as one run uses it. */
export interface RunHostSite {
  readonly host: HostConfig
  readonly target: Ssh.SshTarget
  /** <workdir>/<runId> there. */
  readonly runDir: string
  /** cco's clone there. */
  readonly repoDir: string
  /** The control socket there, forwarded to the orchestrator's. */
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
    socketPath: `${runDir}/control.sock`,
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
      controlPath: s.target.controlPath
    }
  })

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
  // The env file (credentials, the instance's token) goes over ssh's stdin into a 0600 file there.
  privateFile: (content) =>
    Ssh.output(site.target, 'umask 077 && d=$(mktemp -d "${TMPDIR:-/tmp}/cco-env-XXXXXXXX") && cat > "$d/env" && printf %s "$d"', content).pipe(
      Effect.map((dir) => ({ dir: dir.trim(), file: `${dir.trim()}/env` })),
      Effect.orDie,
      Effect.provideService(CommandExecutor.CommandExecutor, executor)
    ),
  removeDir: (dir) => Ssh.run(site.target, `rm -rf ${shellQuote(dir)}`).pipe(Effect.ignore, Effect.provideService(CommandExecutor.CommandExecutor, executor))
})

// --- git over several hosts ---------------------------------------------------------------------------------------

type GitPort = Context.Tag.Service<typeof Git>

// What cco's own git calls get (see Git.ts): no prompt, no editor, no hooks, no fsmonitor, English messages.
const remoteGitEnv = (options: GitCallOptions): Record<string, string> => {
  const env: Record<string, string> = { GIT_TERMINAL_PROMPT: "0", GIT_MERGE_AUTOEDIT: "no", GIT_EDITOR: ":", GIT_OPTIONAL_LOCKS: "0", LC_ALL: "C" }
  if (options.identity === true) Object.assign(env, { GIT_AUTHOR_NAME: "cco", GIT_AUTHOR_EMAIL: "cco@localhost", GIT_COMMITTER_NAME: "cco", GIT_COMMITTER_EMAIL: "cco@localhost" })
  const config = [["core.hooksPath", "/dev/null"], ["core.fsmonitor", "false"], ...Object.entries(options.config ?? {})]
  config.forEach(([k, v], i) => {
    env[`GIT_CONFIG_KEY_${i}`] = k!
    env[`GIT_CONFIG_VALUE_${i}`] = v!
  })
  env.GIT_CONFIG_COUNT = String(config.length)
  return env
}

// Branch names an argument may mention: `a..b`, `a...b`, `refs/heads/a`, `a^{commit}`, `a~2`, `a:b`.
const mentioned = (args: ReadonlyArray<string>): ReadonlyArray<string> =>
  [...new Set(args.filter((a) => !a.startsWith("-")).flatMap((a) => a.split(/\.\.\.?|:/)).map((a) =>
    a.replace(/^\+/, "").replace(/^refs\/heads\//, "").replace(/[\^~].*$/, "")
  ).filter((a) => /^[A-Za-z0-9._/-]+$/.test(a) && !a.startsWith("/")))]

// Calls in a remote worktree that are about origin: made from the run's clone (the branch fetched first).
const aboutOrigin = (args: ReadonlyArray<string>) =>
  args[0] === "push" ||
  (args[0] === "update-ref" && (args[1] ?? "").startsWith("refs/remotes/")) ||
  (args[0] === "config" && args.some((a) => /^(remote|branch)\./.test(a)))

const routedGit = (
  local: GitPort,
  localRepo: string,
  runId: string,
  hosts: ReadonlyArray<RunHostSite>,
  placed: ReadonlyMap<string, string>,
  runLog: Context.Tag.Service<typeof RunLog>,
  moves: HostMoves
) =>
  Effect.gen(function*() {
    const executor = yield* CommandExecutor.CommandExecutor
    const siteOf = new Map(hosts.map((h) => [h.host.name, h]))
    // The worktree there of an instance moved here is its worktree here.
    const remap = (cwd: string | undefined) => {
      if (cwd === undefined || moves.moved.size === 0) return cwd
      for (const [instance, here] of moves.moved) {
        const there = siteOf.get(placed.get(instance) ?? LOCAL)
        const dir = there === undefined ? undefined : `${there.runDir}/worktrees/${instance}`
        if (dir !== undefined && (cwd === dir || cwd.startsWith(`${dir}/`))) return `${here}${cwd.slice(dir.length)}`
      }
      return cwd
    }
    const hostOfPath = (cwd: string | undefined) =>
      cwd === undefined ? undefined : hosts.find((h) => cwd === h.runDir || cwd.startsWith(`${h.runDir}/`))
    const branchPrefix = `cco/${runId}/`
    // The remote instance whose branch `name` is.
    const ownerOf = (name: string) => {
      if (!name.startsWith(branchPrefix) || moves.moved.has(name.slice(branchPrefix.length))) return undefined
      const host = placed.get(name.slice(branchPrefix.length))
      return host === undefined || host === LOCAL ? undefined : siteOf.get(host)
    }
    const locks = new Map(yield* Effect.forEach(hosts, (h) => Effect.map(Effect.makeSemaphore(1), (s) => [h.host.name, s] as const)))
    const ready = new Set<string>()
    // Branches of remote instances there already: from then on the remote clone has the newest of them.
    const materialised = new Set<string>()
    const pushed = new Map<string, string>()

    const transport = (site: RunHostSite): GitCallOptions => ({
      config: {
        [`remote.cco-host.url`]: `ssh://${site.host.ssh}${site.repoDir}`,
        "core.sshCommand": ["ssh", ...Ssh.sshOptions(site.host, site.target.controlPath)].map(shellQuote).join(" ")
      }
    })

    const remoteRun = (site: RunHostSite, cwd: string, args: ReadonlyArray<string>, options: GitCallOptions, stdin?: string) => {
      const env = Object.entries(remoteGitEnv(options)).map(([k, v]) => `${k}=${shellQuote(v)}`).join(" ")
      const script = `cd ${shellQuote(cwd)} && exec env ${env} git ${args.map(shellQuote).join(" ")}`
      return Ssh.run(site.target, script, stdin).pipe(
        Effect.provideService(CommandExecutor.CommandExecutor, executor),
        Effect.map((r): GitOutput => r),
        Effect.mapError((e) => gitError(`git ${args.join(" ")}`, `${site.host.name}:${cwd}`, e.message))
      )
    }

    // cco's clone there: an empty repository whose branches come from the run's clone; its agents cannot push.
    const ensureClone = (site: RunHostSite) =>
      Effect.suspend(() => {
        if (ready.has(site.host.name)) return Effect.void
        return Effect.gen(function*() {
          const who = yield* Effect.forEach(["user.name", "user.email"], (k) =>
            Effect.map(local.run(localRepo, ["config", "--get", k]), (r) => r.stdout.trim()))
          const q = shellQuote
          yield* Ssh.output(site.target, [
            `mkdir -p ${q(site.runDir)}/worktrees`,
            `{ [ -d ${q(site.repoDir)}/.git ] || git init -q ${q(site.repoDir)}; }`,
            `git -C ${q(site.repoDir)} config user.name ${q(who[0] || "cco")}`,
            `git -C ${q(site.repoDir)} config user.email ${q(who[1] || "cco@localhost")}`,
            `git -C ${q(site.repoDir)} config receive.denyCurrentBranch refuse`,
            `{ git -C ${q(site.repoDir)} remote get-url origin >/dev/null 2>&1 || git -C ${q(site.repoDir)} remote add origin ${q(agentPushUrl)}; }`
          ].join(" && ")).pipe(
            Effect.provideService(CommandExecutor.CommandExecutor, executor),
            Effect.mapError((e) => gitError("prepare clone", `${site.host.name}:${site.repoDir}`, e.message))
          )
          ready.add(site.host.name)
          yield* runLog.log("host.clone-ready", { host: site.host.name, repoDir: site.repoDir })
        })
      })

    // The branches a command there names, as the run's clone has them, pushed there when they moved (or are new).
    const pushMentioned = (site: RunHostSite, args: ReadonlyArray<string>) =>
      Effect.gen(function*() {
        const names = mentioned(args)
        if (names.length === 0) return
        const out = yield* local.output(localRepo, ["for-each-ref", "--format=%(objectname) %(refname)", ...names.map((n) => `refs/heads/${n}`)])
        const refspecs: Array<string> = []
        for (const line of out.split("\n")) {
          const [sha, ref] = line.split(" ")
          if (sha === undefined || ref === undefined || !ref.startsWith("refs/heads/")) continue
          const name = ref.slice("refs/heads/".length)
          if (!names.includes(name)) continue
          const owner = ownerOf(name)
          if (owner === site && materialised.has(name)) continue
          const key = `${site.host.name} ${name}`
          if (pushed.get(key) === sha) continue
          refspecs.push(`+${sha}:refs/heads/${name}`)
          pushed.set(key, sha)
          if (owner === site) materialised.add(name)
        }
        if (refspecs.length === 0) return
        yield* local.output(localRepo, ["push", "--quiet", "--no-verify", "cco-host", ...refspecs], transport(site)).pipe(
          Effect.tapError(() => Effect.sync(() => refspecs.forEach((r) => pushed.delete(`${site.host.name} ${r.split(":refs/heads/")[1]}`))))
        )
      })

    // The branches of remote instances a command here names, fetched from their clones first.
    const fetchMentioned = (args: ReadonlyArray<string>) =>
      Effect.forEach(
        [...new Map(mentioned(args).flatMap((name) => {
          const owner = ownerOf(name)
          // A host that is down keeps what it did not hand over.
          return owner !== undefined && materialised.has(name) && !moves.down.has(owner.host.name) ? [[name, owner] as const] : []
        }))],
        ([name, site]) =>
          locks.get(site.host.name)!.withPermits(1)(
            local.output(localRepo, ["fetch", "--quiet", "--no-tags", "cco-host", `+refs/heads/${name}:refs/heads/${name}`], transport(site))
          ),
        { discard: true }
      )

    const run = Effect.fn("Git.run")(function*(given: string | undefined, args: ReadonlyArray<string>, options: GitCallOptions = {}) {
      const cwd = remap(given)
      const site = hostOfPath(cwd)
      if (site === undefined) {
        yield* fetchMentioned(args)
        return yield* local.run(cwd, args, options)
      }
      if (aboutOrigin(args)) {
        yield* fetchMentioned(args)
        return yield* local.run(localRepo, args, options)
      }
      // Per-call config may hold a URL with credentials: it never goes into a command line there.
      if (Object.keys(options.config ?? {}).length > 0) return yield* gitError(`git ${args.join(" ")}`, `${site.host.name}:${cwd}`, "per-call config is not sent to a remote host")
      yield* ensureClone(site)
      yield* locks.get(site.host.name)!.withPermits(1)(pushMentioned(site, args))
      return yield* remoteRun(site, cwd!, args, options)
    })

    const output = Effect.fn("Git.output")(function*(cwd: string | undefined, args: ReadonlyArray<string>, options: GitCallOptions = {}) {
      const seen = yield* run(cwd, args, options)
      if (seen.exitCode !== 0) return yield* gitError(`git ${args.join(" ")}`, cwd ?? ".", outputOf(seen))
      return seen.stdout
    })

    const status = Effect.fn("Git.status")(function*(given: string, args: ReadonlyArray<string> = []) {
      const cwd = remap(given)!
      if (hostOfPath(cwd) === undefined) return yield* local.status(cwd, args)
      const out = yield* output(cwd, ["status", "--porcelain", ...args])
      // What cco asks of a status there: whether the worktree is clean.
      return { isClean: () => out.trim() === "", files: [] } as unknown as StatusResult
    })

    const branches = Effect.fn("Git.branches")(function*(cwd: string, args: ReadonlyArray<string>) {
      if (hostOfPath(cwd) !== undefined) return yield* gitError(`git branch ${args.join(" ")}`, cwd, "not available in a remote worktree")
      return yield* local.branches(cwd, args)
    })

    const withInput = Effect.fn("Git.withInput")(function*(given: string, args: ReadonlyArray<string>, input: string) {
      const cwd = remap(given)!
      const site = hostOfPath(cwd)
      if (site === undefined) return yield* local.withInput(cwd, args, input)
      yield* ensureClone(site)
      const seen = yield* remoteRun(site, cwd, args, {}, input)
      if (seen.exitCode !== 0) return yield* gitError(`git ${args.join(" ")}`, cwd, outputOf(seen))
      return seen.stdout
    })

    return Git.make({ run, output, status, branches, version: local.version, withInput })
  })

// --- tmux and agents over several hosts ---------------------------------------------------------------------------

const routedTmux = (
  local: TmuxShape,
  remote: ReadonlyMap<string, TmuxShape>,
  hostOfSession: (session: string) => string,
  /** Asked when a host does not answer: whether it is down (then its sessions are gone). */
  isDown: (host: string) => Effect.Effect<boolean>
): TmuxShape => {
  const on = (session: string) => remote.get(hostOfSession(session)) ?? local
  const hostOfTmux = new Map([...remote].map(([h, t]) => [t, h] as const))
  const all = [local, ...remote.values()]
  const groups = <A extends { readonly name: string } | string>(items: ReadonlyArray<A>) => {
    const by = new Map<TmuxShape, Array<A>>()
    for (const item of items) {
      const t = on(typeof item === "string" ? item : item.name)
      by.set(t, [...(by.get(t) ?? []), item])
    }
    return [...by]
  }
  // A host that does not answer shows none of its sessions (and is looked at: is it down?).
  const merged = <A>(f: (t: TmuxShape) => Effect.Effect<ReadonlyMap<string, A>, unknown>) =>
    Effect.map(
      Effect.forEach(all, (t) =>
        t === local ? f(t) : f(t).pipe(
          Effect.catchAll(() => Effect.as(isDown(hostOfTmux.get(t)!), new Map<string, A>()))
        ), { concurrency: "unbounded" }),
      (maps) => new Map(maps.flatMap((m) => [...m])) as ReadonlyMap<string, A>
    )
  return Tmux.of({
    socket: local.socket,
    version: local.version,
    newSession: (spec) => on(spec.name).newSession(spec),
    newSessions: (specs) => Effect.forEach(groups(specs), ([t, s]) => t.newSessions(s), { concurrency: "unbounded", discard: true }),
    sendText: (session, text) => on(session).sendText(session, text),
    sendKeys: (session, keys) => on(session).sendKeys(session, keys),
    capturePane: (session, history) => on(session).capturePane(session, history),
    pipePane: (session, file) => on(session).pipePane(session, file),
    paneInfo: (session) => on(session).paneInfo(session),
    paneInfos: (prefix) => merged((t) => t.paneInfos(prefix)) as Effect.Effect<ReadonlyMap<string, PaneInfo>, never>,
    capturePanes: (sessions) =>
      Effect.map(
        Effect.forEach(groups(sessions), ([t, s]) => t.capturePanes(s), { concurrency: "unbounded" }),
        (maps) => new Map(maps.flatMap((m) => [...m])) as ReadonlyMap<string, string>
      ),
    hasSession: (session) => on(session).hasSession(session),
    listSessions: (prefix) =>
      Effect.map(
        Effect.forEach(all, (t) => t === local ? t.listSessions(prefix) : t.listSessions(prefix).pipe(Effect.orElseSucceed(() => [])), { concurrency: "unbounded" }),
        (lists) => lists.flat()
      ),
    sessionPaths: (prefix) => merged((t) => t.sessionPaths(prefix)) as Effect.Effect<ReadonlyMap<string, string>, never>,
    killSession: (session) => on(session).killSession(session),
    killSessions: (sessions) => Effect.forEach(groups(sessions), ([t, s]) => t.killSessions(s), { concurrency: "unbounded", discard: true }),
    killServer: Effect.forEach(all, (t) => t === local ? t.killServer : t.killServer.pipe(Effect.ignore), { discard: true })
  })
}

const routedAgent = (
  local: AgentShape,
  remote: ReadonlyMap<string, AgentShape>,
  hostOf: (instance: string) => string,
  /** Launches an instance whose host is down here instead (see moveHere). */
  moveHere: (request: LaunchRequest) => Effect.Effect<number, AgentModule.AgentError> | undefined,
  /** Where the transcripts of an instance are read here (a remote instance's: their copy in the staging dir). */
  configDirHere: (instance: string) => string | undefined,
  /** After an instance stopped: its last transcript lines fetched. */
  stopped: (instance: string) => Effect.Effect<void>
): AgentShape => {
  const on = (instance: string) => remote.get(hostOf(instance)) ?? local
  // Moved here, its conversation left behind: said once to whoever asks after the launch (Restarts).
  const lost = new Set<string>()
  const groups = <A>(items: ReadonlyArray<A>, name: (a: A) => string) => {
    const by = new Map<AgentShape, Array<A>>()
    for (const item of items) by.set(on(name(item)), [...(by.get(on(name(item))) ?? []), item])
    return [...by]
  }
  return Agent.of({
    settings: local.settings,
    version: local.version,
    sessionName: local.sessionName,
    configDir: (instance) => configDirHere(instance) ?? on(instance).configDir(instance),
    launch: (request) => {
      const moving = moveHere(request)
      return moving === undefined ? on(request.instance).launch(request) : Effect.tap(moving, () => Effect.sync(() => lost.add(request.instance)))
    },
    launchMany: (requests) =>
      Effect.map(
        Effect.forEach(groups(requests, (r: LaunchRequest) => r.instance), ([a, rs]) => a.launchMany(rs), { concurrency: "unbounded" }),
        (maps) => new Map(maps.flatMap((m) => [...m])) as ReadonlyMap<string, number>
      ),
    attach: (instance, generation) => on(instance).attach(instance, generation),
    deliver: (instance, text) => on(instance).deliver(instance, text),
    interrupt: (instance) => on(instance).interrupt(instance),
    stop: (instance) => Effect.zipRight(on(instance).stop(instance), stopped(instance)),
    stopMany: (instances) =>
      Effect.zipRight(
        Effect.forEach(groups(instances, (i: string) => i), ([a, is]) => a.stopMany(is), { concurrency: "unbounded", discard: true }),
        Effect.forEach(instances, stopped, { concurrency: 4, discard: true })
      ),
    isAlive: (instance) => on(instance).isAlive(instance),
    conversationLost: (instance) => lost.delete(instance)
  })
}

// --- connecting ---------------------------------------------------------------------------------------------------

/**
 * The master connection to a host, its run folder there and the control socket forwarded; closed with the scope.
 * An unreachable host (or one without tmux, git or node) is a config error: nothing has started yet.
 */
const connect = (site: RunHostSite, localSocket: string, folder: string) =>
  Effect.acquireRelease(
    Effect.gen(function*() {
      const unreachable = (e: { readonly message: string }) =>
        new RunError({ reason: "config", message: `host ${site.host.name} (${site.host.ssh}, port ${site.host.port}) cannot be used over SSH: ${e.message}` })
      yield* Ssh.startMaster(site.target, `${folder}/ssh-${site.host.name}.log`).pipe(Effect.mapError(unreachable))
      yield* Ssh.output(site.target, [
        `for p in tmux git ${shellQuote(site.host.nodeCommand)}; do command -v "$p" >/dev/null 2>&1 || { echo "missing on the host: $p" >&2; exit 3; }; done`,
        `mkdir -p ${shellQuote(site.runDir)}`,
        `rm -f ${shellQuote(site.socketPath)}`
      ].join(" && ")).pipe(Effect.mapError(unreachable))
      yield* Ssh.forwardSocket(site.target, site.socketPath, localSocket).pipe(Effect.mapError(unreachable))
      return site
    }),
    (s) => Ssh.stopMaster(s.target)
  )

/** The agent on a remote host: Agent.ts as is, over that host's tmux, its files staged here and copied over. */
const remoteAgent = (site: RunHostSite, settings: AgentSettings, clientScript: string) =>
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
      remote: true
    }
    return yield* AgentModule.make(remoteSettings).pipe(
      Effect.provideService(Tmux, hostTmux),
      Effect.provideService(Events, { ...events, socketPath: site.socketPath, hookUrl: undefined }),
      Effect.provideService(RunLog, { ...runLog, sessionLogPath: (instance: string) => `${site.runDir}/session-${instance}.log` }),
      Effect.provideService(FileSystem.FileSystem, stagedFileSystem(fs, site.runDir, site.stagingDir)),
      Effect.provideService(CommandExecutor.CommandExecutor, Ssh.remoteExecutor(executor, site.target))
    )
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
    yield* Effect.acquireRelease(Effect.sync(() => runMoves.set(site.folder, moves)), () => Effect.sync(() => runMoves.delete(site.folder)))
    yield* Effect.forEach(sites, (s) => connect(s, site.socketPath, site.folder), { concurrency: "unbounded", discard: true })
    yield* runLog.log("hosts.connected", { hosts: sites.map((s) => ({ name: s.host.name, ssh: s.host.ssh, runDir: s.runDir, tmuxSocket: s.tmuxSocket })), placement: Object.fromEntries(placed) })
    const clientScript = site.options.clientCommand[site.options.clientCommand.length - 1]!
    const agents = new Map(yield* Effect.forEach(sites, (s) => Effect.map(remoteAgent(s, settings, clientScript), (a) => [s.host.name, a] as const)))
    const tmuxes = new Map<string, TmuxShape>()
    const executor = yield* CommandExecutor.CommandExecutor
    for (const s of sites) tmuxes.set(s.host.name, yield* TmuxLive.makeLive(s.tmuxSocket, { remote: transportFor(s, executor) }))
    const localRepo = `${site.folder}/repo`
    const git = yield* routedGit(localGit, localRepo, site.runId, sites, placed, runLog, moves)
    const worktree = Context.get(yield* Layer.build(Worktree.DefaultWithoutDependencies.pipe(Layer.provide(Layer.succeed(Git, git)))), Worktree)

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
          const instances = [...placed].filter(([, h]) => h === name).map(([i]) => i)
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
    return Context.make(Tmux, routedTmux(localTmux, tmuxes, hostOfSession, isDown)).pipe(
      Context.add(Agent, routedAgent(localAgent, agents, hostOf, moveHere, configDirHere, fetchTranscripts)),
      Context.add(Git, git),
      Context.add(Worktree, worktree),
      Context.add(Events, events)
    )
  }))
  return Layer.provide(routed, local)
}
