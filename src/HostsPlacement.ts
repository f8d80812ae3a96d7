// Where a run's instances are (config `hosts`): the placement from the config, each remote host as the run uses it,
// what a resumed run keeps where it was, and the hosts as they stand (down, instances moved here) for state.json.
import { Effect } from "effect"
import * as H from "./Hierarchy.js"
import { type HostConfig, isRemote, LOCAL, placement, remoteRunDir } from "./HostsConfig.js"
import type { RunSite } from "./RunLayers.js"
import type { RunState } from "./RunState.js"
import type * as Sandbox from "./Sandbox.js"
import * as Ssh from "./Ssh.js"

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

/** A run's hosts as they stand (instances moved, hosts down), known here while the scope lasts. */
export const trackMoves = (folder: string, moves: HostMoves) =>
  Effect.acquireRelease(Effect.sync(() => runMoves.set(folder, moves)), () => Effect.sync(() => runMoves.delete(folder)))

/** The sandbox each remote host of a run gave, known here while the scope lasts. */
export const trackSandboxes = (folder: string, sandboxes: ReadonlyMap<string, Sandbox.Sandbox>) =>
  Effect.acquireRelease(Effect.sync(() => runSandboxes.set(folder, sandboxes)), () => Effect.sync(() => runSandboxes.delete(folder)))

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
