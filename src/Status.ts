// `cco status`: finds a run folder, reads its state.json, cco.lock and tmux sessions, and shows them as a
// table or as JSON. The run-folder readers here are shared with `cco cleanup`.
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import { Clock, Duration, Effect, Either, Option, Schedule, Schema } from "effect"
import { type Board, currentTask, type Task } from "./Hierarchy.js"
import { isAlive } from "./Process.js"
import { MAX_BYTES, readRegularFile } from "./RegularFile.js"
import { type InstanceState, decodeRunState, LOCK_FILE, type RunState, STATE_FILE } from "./RunState.js"
import { remoteSessions } from "./HostsCleanup.js"
import * as TmuxLive from "./TmuxLive.js"
import { neutraliseJson, neutraliseLine, STATE_MAX } from "./Untrusted.js"

export class RunFolderNotFound extends Schema.TaggedError<RunFolderNotFound>()("RunFolderNotFound", {
  path: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return this.path === "" ? this.reason : `${this.path}: ${this.reason}`
  }
}

export class RunStateUnreadable extends Schema.TaggedError<RunStateUnreadable>()("RunStateUnreadable", {
  folder: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `${this.folder}/${STATE_FILE}: ${this.reason}`
  }
}

/** The `latest` link that createRunFolder keeps in the log directory. */
export const LATEST_LINK = "latest"

/** What cco.lock says about the run's orchestrator. */
export type LockInfo =
  | { readonly _tag: "NoLock" }
  | { readonly _tag: "Lock"; readonly pid: number | undefined; readonly alive: boolean }

export const readLock = Effect.fn("Status.readLock")(function*(folder: string) {
  const path = yield* Path.Path
  const read = yield* readRegularFile(path.join(folder, LOCK_FILE), MAX_BYTES.lock).pipe(Effect.either)
  if (Either.isLeft(read) && read.left.reason === "NotFound") return { _tag: "NoLock" } as LockInfo
  // A lock that is there but cannot be read (not a regular file, too large) names no pid, as garbage in it would.
  const trimmed = Either.getOrElse(read, () => "").trim()
  const pid = /^\d+$/.test(trimmed) ? Number(trimmed) : undefined
  const alive = pid === undefined ? false : isAlive(pid)
  return { _tag: "Lock", pid, alive } as LockInfo
})

export const isRunFolder = Effect.fn("Status.isRunFolder")(function*(dir: string) {
  const fs = yield* FileSystem.FileSystem
  const path = yield* Path.Path
  for (const marker of [STATE_FILE, LOCK_FILE, "combined.log"]) {
    if (yield* fs.exists(path.join(dir, marker)).pipe(Effect.orElseSucceed(() => false))) return true
  }
  return false
})

/**
 * A run folder from what the user named: the folder itself, or a log directory whose `latest` link is followed.
 */
export const locateRunFolder = Effect.fn("Status.locateRunFolder")(function*(target: string) {
  const fs = yield* FileSystem.FileSystem
  const path = yield* Path.Path
  const dir = path.resolve(target)
  const info = yield* fs.stat(dir).pipe(Effect.option)
  if (Option.isNone(info) || info.value.type !== "Directory") {
    return yield* new RunFolderNotFound({ path: dir, reason: "no such directory" })
  }
  if (yield* isRunFolder(dir)) return yield* fs.realPath(dir).pipe(Effect.orElseSucceed(() => dir))
  const latest = path.join(dir, LATEST_LINK)
  const linked = yield* fs.realPath(latest).pipe(Effect.option)
  if (Option.isSome(linked)) return linked.value
  const dangling = yield* fs.readLink(latest).pipe(Effect.option)
  return yield* new RunFolderNotFound({
    path: dir,
    reason: Option.isSome(dangling)
      ? `the ${LATEST_LINK} link points to ${dangling.value}, which is gone`
      : `not a run folder (no ${STATE_FILE}) and no ${LATEST_LINK} run in it; start one with cco run --config DIR`
  })
})

export const readRunState = Effect.fn("Status.readRunState")(function*(folder: string) {
  const path = yield* Path.Path
  const file = path.join(folder, STATE_FILE)
  const text = yield* readRegularFile(file, MAX_BYTES.state).pipe(
    Effect.mapError((e) =>
      new RunStateUnreadable({
        folder,
        reason: e.reason === "NotFound"
          ? "missing: the run stopped before its instances were set up; see combined.log there"
          : e.message
      })
    )
  )
  return yield* decodeRunState(text).pipe(
    Effect.mapError((e) =>
      new RunStateUnreadable({ folder, reason: `corrupt: ${e.message.split("\n").slice(0, 4).join(" ").replace(/\s+/g, " ")}` })
    )
  )
})

/** Names of the sessions on a tmux server that start with `prefix`; undefined when tmux cannot be asked. */
export const sessionsOn = (socket: string, prefix: string) =>
  TmuxLive.makeLive(socket).pipe(
    Effect.flatMap((tmux) => tmux.listSessions(prefix)),
    Effect.map((names): ReadonlySet<string> | undefined => new Set(names)),
    Effect.orElseSucceed((): ReadonlySet<string> | undefined => undefined)
  )

/** A run as seen at one moment. */
export interface RunSnapshot {
  readonly folder: string
  readonly state: RunState
  readonly lock: LockInfo
  /** Sessions of this run that exist on its tmux server; undefined when tmux could not be asked. */
  readonly sessions: ReadonlySet<string> | undefined
  readonly takenAt: number
  /** How each instance was last started, "bwrap" (confined) or "none", from instances/<name>/sandbox. */
  readonly sandboxes?: ReadonlyMap<string, string>
  /** The run's sessions on each remote host (config `hosts`); undefined for a host that could not be asked. */
  readonly remoteSessions?: ReadonlyMap<string, ReadonlySet<string> | undefined>
}

/**
 * instances/<name>/sandbox of each instance that has been launched (Agent.launch writes it); for an instance on a
 * remote host, the copy prepared here for that host (hosts/<host>/instances/<name>/sandbox).
 */
const readSandboxes = (folder: string, instances: ReadonlyArray<InstanceState>) =>
  Effect.gen(function*() {
    const path = yield* Path.Path
    const remote = (i: InstanceState) => i.host !== undefined && i.host !== "local" && /^[A-Za-z0-9._-]{1,40}$/.test(i.host) && !/^\.\.?$/.test(i.host)
    const found = yield* Effect.forEach(instances, (i) =>
      readRegularFile(path.join(folder, ...(remote(i) ? ["hosts", i.host!] : []), "instances", i.name, "sandbox"), 64).pipe(
        Effect.map((text) => /^(bwrap|none)$/.test(text.trim()) ? [[i.name, text.trim()] as const] : []),
        Effect.orElseSucceed(() => [])
      ))
    return new Map(found.flat()) as ReadonlyMap<string, string>
  })

export const snapshot = Effect.fn("Status.snapshot")(function*(folder: string) {
  const state = yield* readRunState(folder)
  const [lock, sessions, takenAt, sandboxes, remote] = yield* Effect.all(
    [
      readLock(folder),
      sessionsOn(state.tmuxSocket, `cco-${state.runId}-`),
      Clock.currentTimeMillis,
      readSandboxes(folder, state.instances),
      remoteSessions(state)
    ],
    { concurrency: "unbounded" }
  )
  return { folder, state, lock, sessions, takenAt, sandboxes, remoteSessions: remote } satisfies RunSnapshot
})

const aliveOf = (s: RunSnapshot) => s.lock._tag === "Lock" && s.lock.alive

const secondsBetween = (from: string, to: number) => {
  const t = Date.parse(from)
  return Number.isNaN(t) ? undefined : Math.floor((to - t) / 1000)
}

const timeLeftOf = (s: RunSnapshot) => {
  if (s.state.endedAt !== undefined) return undefined
  const since = secondsBetween(s.state.deadline, s.takenAt)
  return since === undefined ? undefined : Math.max(0, -since)
}

// A session on a remote host is on that host's tmux server: unknown when the host could not be asked.
export const sessionAliveOf = (s: RunSnapshot, i: InstanceState) => {
  const sessions = i.host !== undefined && i.host !== "local" ? s.remoteSessions?.get(i.host) : s.sessions
  return sessions === undefined ? null : sessions.has(i.session)
}

type CredentialRow = NonNullable<RunState["credentials"]>[number]

const KIND_NAMES: Readonly<Record<string, string>> = { "oauth": "your login", "api-key": "api key", "token": "token", "login": "login dir" }

/** A credential's state in words: ok, cooling until T, invalid. */
const credentialState = (c: CredentialRow) =>
  c.status === "cooling" ? `cooling until ${c.until === undefined ? "?" : localTime(c.until)}` : c.status === "available" ? "ok" : c.status

/** The instances on a credential: from state.json's list, else from the instances' own credential. */
const instancesOn = (s: RunSnapshot, c: CredentialRow) =>
  c.instances ?? s.state.instances.filter((i) => i.credential === c.name).map((i) => i.name)

/** The `--json` document: the decoded state plus what status computes; its strings neutralised (state.json may be old or edited). */
export const statusJson = (s: RunSnapshot) => neutraliseJson({
  ...s.state,
  ...(s.state.credentials === undefined ? {} : {
    credentials: s.state.credentials.map((c) => ({
      ...c,
      kind: c.kind ?? null,
      state: c.status === "available" ? "ok" : c.status,
      until: c.until ?? null,
      instances: instancesOn(s, c),
      limits: c.limits ?? null
    }))
  }),
  instances: s.state.instances.map((i) => ({
    ...i,
    sessionAlive: sessionAliveOf(s, i),
    ...(s.sandboxes?.has(i.name) === true ? { sandbox: s.sandboxes.get(i.name) } : {}),
    secondsSinceLastEvent: secondsBetween(i.lastEventAt, s.takenAt) ?? null
  })),
  folder: s.folder,
  alive: aliveOf(s),
  lockPid: s.lock._tag === "Lock" ? s.lock.pid ?? null : null,
  timeLeftSeconds: timeLeftOf(s) ?? null,
  sessionsAlive: s.sessions === undefined ? null : s.state.instances.filter((i) => s.sessions!.has(i.session)).length,
  takenAt: new Date(s.takenAt).toISOString()
}, STATE_MAX)

/** "3 run: 2 passed, 1 failed; 4m10s in all" (the merge gate's checks). */
export const checksLine = (c: { readonly runs: number; readonly passed: number; readonly failed: number; readonly totalMs: number }) =>
  `${c.runs} run: ${c.passed} passed, ${c.failed} failed; ${formatDuration(Math.round(c.totalMs / 1000))} in all`

/** `42s`, `12m05s`, `3h07m`. */
export const formatDuration = (seconds: number): string => {
  const s = Math.max(0, Math.floor(seconds))
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`
}

const pad = (n: number) => String(n).padStart(2, "0")
const localTime = (iso: string) => {
  const d = new Date(iso)
  if (Number.isNaN(d.getTime())) return iso
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`
}
const dollars = (n: number) => `$${n.toFixed(2)}`
const clip = (text: string, width: number) => text.length <= width ? text : `${text.slice(0, width - 1)}…`

// Every cell is one neutral line: a task text or summary (an agent's words) can neither act on the terminal
// nor pass for rows of its own.
const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>) => {
  const safe = rows.map((r) => r.map((cell) => neutraliseLine(cell, 500)))
  const widths = header.map((h, c) => Math.max(h.length, ...safe.map((r) => r[c]!.length)))
  return [header, ...safe].map((r) => r.map((cell, c) => cell.padEnd(widths[c]!)).join("  ").trimEnd()).join("\n")
}

/** The human view: run totals, then one row per instance. */
export const renderStatus = (s: RunSnapshot): string => {
  const { state } = s
  const alive = aliveOf(s)
  const orchestrator = s.lock._tag === "NoLock"
    ? state.endedAt === undefined ? `not running (no ${LOCK_FILE}; it stopped without finishing)` : "not running"
    : s.lock.alive
    ? `alive (pid ${s.lock.pid})`
    : `not running (${s.lock.pid === undefined ? "unreadable" : `pid ${s.lock.pid} is gone,`} stale ${LOCK_FILE}; run cco cleanup)`
  const started = secondsBetween(state.startedAt, s.takenAt)
  const left = timeLeftOf(s)
  const ending = state.endedAt !== undefined
    ? ["ended", `${localTime(state.endedAt)}${state.endReason === undefined ? "" : ` (${state.endReason})`}`]
    : alive
    ? ["time left", left === undefined ? "unknown" : `${formatDuration(left)} (deadline ${localTime(state.deadline)})`]
    : ["ended", "unknown: the orchestrator is gone and recorded no end"]
  const upCount = s.sessions === undefined ? undefined : state.instances.filter((i) => s.sessions!.has(i.session)).length
  const totals: Array<[string, string]> = [
    ["run", `${state.runId}  ${s.folder}`],
    ["orchestrator", orchestrator],
    ["target branch", state.targetBranch],
    ["started", `${localTime(state.startedAt)}${started === undefined ? "" : ` (${formatDuration(started)} ago)`}`],
    [ending[0]!, ending[1]!],
    ["merges", String(state.merges.length)],
    ...(state.checks === undefined ? [] : [["checks", checksLine(state.checks)] as [string, string]]),
    ...(state.costUsd === undefined ? [] : [["cost", dollars(state.costUsd)] as [string, string]]),
    [
      "sessions",
      upCount === undefined
        ? `unknown (tmux -L ${state.tmuxSocket} could not be asked)`
        : `${upCount} of ${state.instances.length} up on tmux -L ${state.tmuxSocket}`
    ]
  ]
  const labelWidth = Math.max(...totals.map(([k]) => k.length))
  const withCost = state.instances.some((i) => i.costUsd !== undefined)
  // Runs from before the sandbox option have no record: no column.
  const withSandbox = state.instances.some((i) => s.sandboxes?.has(i.name) === true)
  // Runs placed over several hosts (config `hosts`) say where each instance runs.
  const withHost = state.instances.some((i) => i.host !== undefined)
  const header = ["NAME", "ROLE", ...(withHost ? ["HOST"] : []), "BRANCH", "STATE", "SESSION", ...(withSandbox ? ["SANDBOX"] : []), "CREDENTIAL", "TASK", "LAST EVENT", "RESTARTS", ...(withCost ? ["COST"] : [])]
  const rows = state.instances.map((i) => {
    const since = secondsBetween(i.lastEventAt, s.takenAt)
    const up = sessionAliveOf(s, i)
    return [
      i.name,
      i.role,
      ...(withHost ? [i.host ?? "local"] : []),
      i.branch,
      i.status,
      up === null ? "?" : up ? "up" : "gone",
      ...(withSandbox ? [s.sandboxes?.get(i.name) ?? "-"] : []),
      i.credential === "" ? "-" : i.credential,
      clip(i.currentTask ?? "-", 50),
      since === undefined ? "-" : `${formatDuration(since)} ago`,
      String(i.restarts),
      ...(withCost ? [i.costUsd === undefined ? "-" : dollars(i.costUsd)] : [])
    ]
  })
  const credentials = state.credentials ?? []
  return [
    ...totals.map(([k, v]) => `${k.padEnd(labelWidth)}  ${neutraliseLine(v, 500)}`),
    "",
    table(header, rows),
    ...(credentials.length === 0 ? [] : [
      "",
      table(
        ["CREDENTIAL", "KIND", "STATE", "INSTANCES", "LIMITS HIT"],
        credentials.map((c) => {
          const on = instancesOn(s, c)
          return [
            c.name,
            c.kind === undefined ? "-" : KIND_NAMES[c.kind] ?? c.kind,
            credentialState(c),
            on.length === 0 ? "-" : `${on.length}: ${clip(on.join(", "), 60)}`,
            c.limits === undefined ? "-" : String(c.limits)
          ]
        })
      )
    ])
  ].join("\n")
}

/** A task in one line, as state.json's currentTask and `cco team status` show it: `#3 assigned: <first line>`. */
export const taskLine = (task: Pick<Task, "id" | "status" | "text">, width: number): string =>
  `#${task.id} ${task.status}: ${task.text.split("\n")[0]!.slice(0, width)}`

/** One instance as the running orchestrator holds it, for the team table. */
export interface TeamMember {
  readonly name: string
  readonly role: string
  readonly branch: string
  readonly status: string
}

/**
 * `cco team status` for an agent: the target branch, then per instance its name, role, state, branch and current
 * task, from the orchestrator's memory (cco status renders the same instances from state.json for the user).
 */
export const renderTeam = (target: string, members: ReadonlyArray<TeamMember>, board: Board): string =>
  [
    `target branch: ${target}`,
    ...members.map((m) => {
      const task = currentTask(board, m.name)
      return `${m.name.padEnd(10)} ${m.role.padEnd(8)} ${m.status.padEnd(12)} ${m.branch}  ${task ? taskLine(task, 60) : "no task"}`
    })
  ].join("\n")

export interface StatusOptions {
  /** A run folder, or a log directory whose `latest` run is shown. */
  readonly target: string
  readonly json: boolean
  readonly watch: boolean
  readonly write: (text: string) => Effect.Effect<void>
}

// Home, clear screen: each refresh replaces the last one.
const CLEAR = "\x1b[H\x1b[2J"

/** Shows a run once, or every 2 s until interrupted (`watch`). */
export const status = Effect.fn("Status.status")(function*(options: StatusOptions) {
  const folder = yield* locateRunFolder(options.target)
  const once = snapshot(folder).pipe(
    Effect.flatMap((s) =>
      options.json
        ? options.write(JSON.stringify(statusJson(s), null, options.watch ? undefined : 2))
        : options.write(options.watch ? `${CLEAR}${renderStatus(s)}\n\n(refreshing every 2 s; Ctrl-C to stop)` : renderStatus(s))
    )
  )
  if (!options.watch) return yield* once
  return yield* once.pipe(Effect.repeat(Schedule.spaced(Duration.seconds(2))), Effect.asVoid)
})
