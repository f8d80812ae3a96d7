// orchestrator.json `hosts`: the machines a run places its instances on ("local" is this one, the others are
// reached over SSH), and the placement of a team over them. Pure: no SSH here (see Ssh.ts and Hosts.ts).
import { Schema } from "effect"
import { expected, show } from "./ConfigError.js"
import * as H from "./Hierarchy.js"

/** The name of this machine in `hosts`. */
export const LOCAL = "local"

const MAX_TEXT = 4096

const Text = (what: string) =>
  Schema.String.annotations({ message: expected(what) }).pipe(
    Schema.filter((s) => s.trim().length > 0 || "must not be empty"),
    Schema.filter((s) => s.length <= MAX_TEXT || `must be at most ${MAX_TEXT} characters, got ${s.length}`),
    Schema.filter((s) => !/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/u.test(s) || `must not contain control or invisible formatting characters, got ${show(s)}`)
  )

const HostName = Text("a host name").pipe(
  Schema.filter((s) => /^[A-Za-z0-9._-]{1,40}$/.test(s) || `must be 1 to 40 letters, digits, ".", "_" or "-", got ${show(s)}`)
)

// `user@host` or `host`: what ssh takes as its destination. Never an option (a leading "-") or a URL with a path.
const Destination = Text("an SSH destination like \"user@box-1\"").pipe(
  Schema.filter((s) => /^(?:[A-Za-z0-9._-]+@)?[A-Za-z0-9._:[\]-]+$/.test(s) && !s.startsWith("-") || `must be "user@host" or "host", got ${show(s)}`)
)

const Port = Schema.Number.annotations({ message: expected("a port from 1 to 65535") }).pipe(
  Schema.filter((n) => (Number.isInteger(n) && n >= 1 && n <= 65_535) || `must be a port from 1 to 65535, got ${show(n)}`)
)

const MaxInstances = Schema.Number.annotations({ message: expected("a whole number from 1 to 26") }).pipe(
  Schema.filter((n) => (Number.isInteger(n) && n >= 1 && n <= 26) || `must be a whole number from 1 to 26, got ${show(n)}`)
)

const AbsolutePath = Text("an absolute path").pipe(
  Schema.filter((s) => s.startsWith("/") || `must be an absolute path on that host, got ${show(s)}`),
  Schema.filter((s) => !/["'`$\\]/.test(s) || `must not contain quotes, "$", "\`" or "\\", got ${show(s)}`)
)

const STRICT = ["yes", "accept-new", "no"] as const
const strictMessage = () => `must be one of ${STRICT.map((s) => `"${s}"`).join(", ")}`
const Strict = Schema.String.annotations({ message: strictMessage }).pipe(
  Schema.filter((s): s is typeof STRICT[number] => (STRICT as ReadonlyArray<string>).includes(s), { message: strictMessage })
)

/** One entry of `hosts` as written. */
export const HostEntry = Schema.Struct({
  name: HostName,
  /** ssh's destination; required for every host but "local". */
  ssh: Schema.optional(Destination),
  port: Schema.optional(Port),
  /** The private key (`ssh -i`); `~/` is the home directory, a relative path is taken from the config directory. */
  identityFile: Schema.optional(Text("a path to a private key")),
  /** Where cco keeps its clone, worktrees and instance folders on that host (one folder per run below it). */
  workdir: Schema.optional(AbsolutePath),
  maxInstances: Schema.optional(MaxInstances),
  /** ssh's StrictHostKeyChecking (default "yes": the host key must be known already). */
  strictHostKeyChecking: Schema.optional(Strict),
  /** ssh's UserKnownHostsFile; resolved like identityFile. */
  knownHostsFile: Schema.optional(Text("a path to a known_hosts file")),
  /** The claude executable on that host (default: the one cco starts here). */
  claudeCommand: Schema.optional(Text("the name or path of the claude executable")),
  /** node on that host, for the `cco` client and hooks (default "node"). */
  nodeCommand: Schema.optional(Text("the name or path of node"))
})
export type HostEntry = typeof HostEntry.Type

export const HOST_KEYS = Object.keys(HostEntry.fields)

export const Hosts = Schema.Array(HostEntry).pipe(
  Schema.filter((hosts) => hosts.length > 0 || "must list at least one host (\"local\" is this machine)"),
  Schema.filter((hosts) => {
    const seen = new Set<string>()
    for (const [i, h] of hosts.entries()) {
      if (seen.has(h.name)) return { path: [i, "name"], message: `${show(h.name)} is listed twice` }
      seen.add(h.name)
      if (h.name === LOCAL) {
        const extra = Object.keys(h).find((k) => k !== "name" && k !== "maxInstances")
        if (extra !== undefined) return { path: [i, extra], message: `is not allowed for "local" (this machine): it takes only maxInstances` }
      } else {
        if (h.ssh === undefined) return { path: [i, "ssh"], message: "is required for a remote host (\"user@host\")" }
        if (h.workdir === undefined) return { path: [i, "workdir"], message: "is required for a remote host (an absolute path there)" }
      }
    }
    return true
  })
)

/** A host as a run uses it: paths resolved, defaults filled in. */
export interface HostConfig {
  readonly name: string
  /** Undefined for "local". */
  readonly ssh?: string
  readonly port: number
  readonly identityFile?: string
  readonly workdir?: string
  readonly maxInstances: number
  readonly strictHostKeyChecking: "yes" | "accept-new" | "no"
  readonly knownHostsFile?: string
  readonly claudeCommand?: string
  readonly nodeCommand: string
}

export const isRemote = (host: HostConfig): boolean => host.name !== LOCAL

/** `hosts` made whole: `resolvePath` turns `~/…` and relative paths into absolute ones. */
export const resolveHosts = (hosts: ReadonlyArray<HostEntry>, resolvePath: (p: string) => string): ReadonlyArray<HostConfig> =>
  hosts.map((h) => ({
    name: h.name,
    ...(h.ssh === undefined ? {} : { ssh: h.ssh }),
    port: h.port ?? 22,
    ...(h.identityFile === undefined ? {} : { identityFile: resolvePath(h.identityFile) }),
    ...(h.workdir === undefined ? {} : { workdir: h.workdir.replace(/\/+$/, "") || "/" }),
    maxInstances: h.maxInstances ?? 26,
    strictHostKeyChecking: h.strictHostKeyChecking ?? "yes",
    ...(h.knownHostsFile === undefined ? {} : { knownHostsFile: resolvePath(h.knownHostsFile) }),
    ...(h.claudeCommand === undefined ? {} : { claudeCommand: h.claudeCommand }),
    nodeCommand: h.nodeCommand ?? "node"
  }))

/**
 * Where each instance runs: the Director and the EMs on this machine; workers dealt in turn over the hosts in
 * their order, each host taking at most its maxInstances (the leads count against "local"'s). A `hosts` without
 * "local" keeps only the leads here. Without `hosts`, everything is local. A string when the team does not fit.
 */
export const placement = (
  hosts: ReadonlyArray<HostConfig> | undefined,
  specs: ReadonlyArray<Pick<H.InstanceSpec, "name" | "role">>
): ReadonlyMap<string, string> | string => {
  const placed = new Map<string, string>()
  if (hosts === undefined) {
    specs.forEach((s) => placed.set(s.name, LOCAL))
    return placed
  }
  const load = new Map(hosts.map((h) => [h.name, 0]))
  const local = hosts.find((h) => h.name === LOCAL)
  for (const s of specs.filter((s) => s.role !== "worker")) {
    placed.set(s.name, LOCAL)
    load.set(LOCAL, (load.get(LOCAL) ?? 0) + 1)
  }
  if (local !== undefined && load.get(LOCAL)! > local.maxInstances) {
    return `"local" has room for ${local.maxInstances} instances, but the team's leads alone are ${load.get(LOCAL)}`
  }
  let turn = 0
  for (const s of specs.filter((s) => s.role === "worker")) {
    let host: HostConfig | undefined
    for (let k = 0; k < hosts.length && host === undefined; k++) {
      const h = hosts[(turn + k) % hosts.length]!
      if (load.get(h.name)! < h.maxInstances) {
        host = h
        turn = (turn + k + 1) % hosts.length
      }
    }
    if (host === undefined) {
      const room = hosts.reduce((n, h) => n + h.maxInstances, 0)
      return `the hosts have room for ${room} instances (maxInstances), but the team has ${specs.length}`
    }
    placed.set(s.name, host.name)
    load.set(host.name, load.get(host.name)! + 1)
  }
  return placed
}

/** The folder of one run on a remote host: <workdir>/<runId>. */
export const remoteRunDir = (host: HostConfig, runId: string): string => `${host.workdir}/${runId}`

/** Why a team of this size does not fit on these hosts, or undefined. */
export const hostsProblem = (hosts: ReadonlyArray<HostConfig> | undefined, workerCount: number, groupSize: number): string | undefined => {
  if (hosts === undefined) return undefined
  const specs = H.instances(H.topology(workerCount, groupSize), { target: "target", prefix: "cco/run" })
  const placed = placement(hosts, specs)
  return typeof placed === "string" ? placed : undefined
}
