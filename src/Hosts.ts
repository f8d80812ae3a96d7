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
import { Agent, type AgentSettings, type LaunchRequest } from "./Agent.js"
import { coalesced } from "./Coalesce.js"
import { Events } from "./Events.js"
import { Git, gitError } from "./Git.js"
import { LOCAL } from "./HostsConfig.js"
import { routedGit } from "./HostsGit.js"
import { type HostMoves, hostSite, placementOf, resumedPlacement, type RunHostSite, trackMoves, trackSandboxes, usedRemoteHosts } from "./HostsPlacement.js"
import { connect, remoteAgent, sandboxOn, transcriptsBack, transportFor } from "./HostsRemote.js"
import { routedAgent, routedTmux } from "./HostsRouting.js"
import { RunError } from "./RunContext.js"
import type { RunPlatform, RunServices, RunSite } from "./RunLayers.js"
import { RunLog } from "./RunLog.js"
import { shellQuote } from "./Shell.js"
import * as Ssh from "./Ssh.js"
import { Tmux, type TmuxShape } from "./Tmux.js"
import * as TmuxLive from "./TmuxLive.js"
import { envFileNames, Worktree } from "./Worktree.js"

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
  // The host whose run folder a path is under.
  const siteOfDir = (dir: string) => sites.find((s) => dir.startsWith(`${s.runDir}/`))
  const routed = Layer.scopedContext(Effect.gen(function*() {
    const runLog = yield* RunLog
    const localTmux = yield* Tmux
    const localAgent = yield* Agent
    const localGit = yield* Git
    const events = yield* Events
    const localRepo = `${site.folder}/repo`
    yield* trackMoves(site.folder, moves)
    // An instance of a host that went down, now here: its worktree here, and what stays there reported.
    const movedHere = (instance: string, from: string, commit: string) => {
      const here = `${site.folder}/worktrees/${instance}`
      moves.moved.set(instance, here)
      return runLog.log("instance.moved", {
        instance,
        from,
        to: LOCAL,
        worktree: here,
        commit,
        lost: `what ${instance} had not handed over on ${from} (uncommitted changes, commits after ${commit.slice(0, 10)}, its conversation) stays there`
      })
    }
    // A host that cannot be reached when a run resumes is down: its instances start here, from their branches as
    // this machine has them (a new run does not start without it).
    const lostAtResume = (s: RunHostSite, e: RunError) =>
      Effect.gen(function*() {
        moves.down.add(s.host.name)
        const instances = instancesOn(s.host.name).filter((i) => !moves.moved.has(i))
        yield* runLog.log("host.down", { host: s.host.name, message: e.message, instances })
        for (const instance of instances) {
          const commit = (yield* localGit.output(localRepo, ["rev-parse", "--verify", "--quiet", `refs/heads/cco/${site.runId}/${instance}^{commit}`]).pipe(Effect.orElseSucceed(() => ""))).trim()
          lost.add(instance)
          yield* movedHere(instance, s.host.name, commit)
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
    const sandboxes = new Map(yield* Effect.forEach(sites.filter((s) => !moves.down.has(s.host.name)), (s) => Effect.map(sandboxOn(s, site.config.sandbox), (sb) => [s.host.name, sb] as const), { concurrency: "unbounded" }))
    yield* trackSandboxes(site.folder, sandboxes)
    const clientScript = site.options.clientCommand[site.options.clientCommand.length - 1]!
    const agents = new Map(yield* Effect.forEach(sites, (s) => Effect.map(remoteAgent(s, settings, clientScript, sandboxes.get(s.host.name) ?? { _tag: "Unconfined", mode: site.config.sandbox, reason: `host ${s.host.name} is down` }), (a) => [s.host.name, a] as const)))
    const tmuxes = new Map<string, TmuxShape>()
    const executor = yield* CommandExecutor.CommandExecutor
    for (const s of sites) tmuxes.set(s.host.name, yield* TmuxLive.makeLive(s.tmuxSocket, { remote: transportFor(s, executor) }))
    const fs = yield* FileSystem.FileSystem
    // .env / .env.local into a worktree there (their text over ssh's stdin), listed in that clone's info/exclude;
    // one that is committed comes with its branch and is left alone, as here.
    const copyEnvFilesThere = (source: string, dir: string) => {
      const there = siteOfDir(dir)
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
      const there = siteOfDir(dir)
      return there === undefined ? undefined : Ssh.runShell(there.target, command, { cwd: dir, ...options })
    }
    const git = yield* routedGit(localGit, localRepo, site.runId, sites, placed, runLog, moves)
    const worktree = Context.get(yield* Layer.build(Worktree.DefaultWithoutDependencies.pipe(Layer.provide(Layer.succeed(Git, git)))), Worktree)
    // A worktree's files there are looked at there: whether it is made already (a resumed run's), and a stale
    // index.lock a killed git left in it. One moved here is the worktree here.
    const worktreeThere = (dir: string): { readonly site: RunHostSite } | { readonly here: string } | undefined => {
      const s = siteOfDir(dir)
      if (s === undefined || !dir.startsWith(`${s.runDir}/worktrees/`)) return undefined
      const here = moves.moved.get(dir.slice(`${s.runDir}/worktrees/`.length).split("/")[0]!)
      return here === undefined ? { site: s } : { here }
    }
    // The git lock a killed claude left in its worktree (a commit cut short) is looked for where the worktree is: on
    // its host over SSH (this machine's filesystem does not have it), here once its instance was moved here.
    const removeStaleLockThere = (dir: string) => {
      const there = worktreeThere(dir)
      if (there === undefined) return undefined
      if ("here" in there) return worktree.removeStaleLock(there.here)
      const { site: s } = there
      // A host that is down is not waited for (its worktree stays there).
      if (moves.down.has(s.host.name)) return Effect.succeed(undefined)
      const q = shellQuote
      return Ssh.output(s.target, [
        `cd ${q(dir)} 2>/dev/null || exit 0`,
        `if [ -d .git ]; then g=.git; elif [ -f .git ]; then g=$(sed -n 's/^gitdir: *//p' .git | head -n 1); else exit 0; fi`,
        `case "$g" in /*) ;; *) g="$PWD/$g" ;; esac`,
        `[ -e "$g/index.lock" ] || exit 0`,
        `rm -f "$g/index.lock" && printf %s "$g/index.lock"`
      ].join("\n")).pipe(
        Effect.map((out) => out === "" ? undefined : out),
        Effect.provideService(CommandExecutor.CommandExecutor, executor),
        Effect.mapError((e) => gitError("remove stale lock", `${s.host.name}:${dir}`, e.message))
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
        yield* movedHere(request.instance, from, commit)
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
