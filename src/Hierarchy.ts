// Who leads whom: the topology from workerCount and engineerManagerGroupSize, branch names,
// the task board, and TEAM_STRUCTURE.md rendered from it. Pure data and functions.
import { OUTBOX_LIMITS } from "./Outbox.js"
import { neutralise } from "./Untrusted.js"

export type Role = "director" | "em" | "worker"

export interface InstanceSpec {
  readonly name: string
  readonly role: Role
  /** The instance this one reports to; undefined for the top (Director, or the single EM). */
  readonly lead: string | undefined
  readonly reports: ReadonlyArray<string>
  readonly branch: string
  /** The branch this instance's branch is cut from and merged into. */
  readonly baseBranch: string | undefined
}

export interface Team {
  readonly em: string
  readonly workers: ReadonlyArray<string>
}

export interface Topology {
  readonly director: boolean
  readonly teams: ReadonlyArray<Team>
}

/**
 * W ≤ G: one EM leads all W workers and merges into the target branch itself.
 * W > G: a Director and ceil(W/G) EMs, workers spread evenly (W=10, G=4 → 4, 3, 3).
 */
export const topology = (workerCount: number, groupSize: number): Topology => {
  if (!Number.isInteger(workerCount) || workerCount < 1) throw new RangeError(`workerCount must be a positive integer, got ${workerCount}`)
  if (!Number.isInteger(groupSize) || groupSize < 1) throw new RangeError(`engineerManagerGroupSize must be a positive integer, got ${groupSize}`)
  const teamCount = workerCount <= groupSize ? 1 : Math.ceil(workerCount / groupSize)
  const base = Math.floor(workerCount / teamCount)
  const extra = workerCount % teamCount
  const teams: Array<Team> = []
  let next = 1
  for (let t = 0; t < teamCount; t++) {
    const size = base + (t < extra ? 1 : 0)
    const workers = Array.from({ length: size }, (_, i) => `worker-${next + i}`)
    next += size
    teams.push({ em: `em-${t + 1}`, workers })
  }
  return { director: workerCount > groupSize, teams }
}

export interface Branches {
  readonly target: string
  readonly prefix: string
}

/** Instances in launch order (Director, EMs, Workers) with their branches. */
export const instances = (topo: Topology, branches: Branches): ReadonlyArray<InstanceSpec> => {
  const out: Array<InstanceSpec> = []
  if (topo.director) {
    out.push({ name: "director", role: "director", lead: undefined, reports: topo.teams.map((t) => t.em), branch: branches.target, baseBranch: undefined })
  }
  for (const team of topo.teams) {
    // Without a Director the single EM works on the target branch itself.
    const branch = topo.director ? `${branches.prefix}/${team.em}` : branches.target
    out.push({
      name: team.em,
      role: "em",
      lead: topo.director ? "director" : undefined,
      reports: team.workers,
      branch,
      baseBranch: topo.director ? branches.target : undefined
    })
  }
  for (const team of topo.teams) {
    const teamBranch = topo.director ? `${branches.prefix}/${team.em}` : branches.target
    for (const w of team.workers) {
      out.push({ name: w, role: "worker", lead: team.em, reports: [], branch: `${branches.prefix}/${w}`, baseBranch: teamBranch })
    }
  }
  return out
}

/**
 * Whom an instance may send a `cco team message`: its lead, its reports and its siblings (the same lead), in
 * that order. Nobody else: a worker cannot reach another team, nor the Director.
 */
export const messageable = (from: InstanceSpec, specs: ReadonlyArray<InstanceSpec>): ReadonlyArray<string> => [
  ...(from.lead === undefined ? [] : [from.lead]),
  ...from.reports,
  ...(from.lead === undefined ? [] : specs.filter((s) => s.lead === from.lead && s.name !== from.name).map((s) => s.name))
]

/** `cco team message` is for short notes; longer texts belong in a file on the sender's branch. */
export const MAX_MESSAGE_CHARS = 4000
/** Messages that may wait for one instance at once (as many as its outbox keeps); more are refused until it has taken them. */
export const MAX_WAITING_MESSAGES = OUTBOX_LIMITS.maxMessages

/** Why a `cco team message` from `from` to `to` is refused, or undefined when it may go. */
export const messageRefusal = (
  from: InstanceSpec,
  to: string,
  text: string,
  specs: ReadonlyArray<InstanceSpec>,
  waiting: number
): string | undefined => {
  const team = messageable(from, specs)
  if (!team.includes(to)) return `${from.name} can message only its lead, reports and siblings: ${team.join(", ")}`
  if (text.length > MAX_MESSAGE_CHARS) {
    return `a message is at most ${MAX_MESSAGE_CHARS} characters (this one has ${text.length}); commit longer text to a file on your branch and name it`
  }
  if (waiting >= MAX_WAITING_MESSAGES) return `${to} has ${waiting} messages waiting; send yours once it has read them`
  return undefined
}

/** Why `cco team done` from `spec` is refused before any git check, or undefined: only the top reports without a task. */
export const doneRefusal = (spec: InstanceSpec, board: Board): string | undefined =>
  spec.lead !== undefined && currentTask(board, spec.name) === undefined
    ? `${spec.name} has no task to report on; wait for one from ${spec.lead}`
    : undefined

// ---------------------------------------------------------------------------
// The task board.

/** rejected: the merge gate's check failed on it; the lead sends a fix as a new task. */
export type TaskStatus = "assigned" | "done" | "merged" | "rejected"

export interface Task {
  readonly id: number
  readonly assignee: string
  readonly assignedBy: string
  readonly text: string
  readonly status: TaskStatus
  readonly summary?: string
  readonly assignedAt: string
  readonly updatedAt: string
}

export interface Board {
  readonly tasks: ReadonlyArray<Task>
}

export const emptyBoard: Board = { tasks: [] }

export const currentTask = (board: Board, instance: string): Task | undefined =>
  [...board.tasks].reverse().find((t) => t.assignee === instance)

export const assign = (board: Board, assignee: string, assignedBy: string, text: string, now: string): Board => ({
  tasks: [...board.tasks, { id: board.tasks.length + 1, assignee, assignedBy, text, status: "assigned", assignedAt: now, updatedAt: now }]
})

const updateCurrent = (board: Board, instance: string, f: (t: Task) => Task): Board => {
  const current = currentTask(board, instance)
  if (current === undefined) return board
  return { tasks: board.tasks.map((t) => (t.id === current.id ? f(t) : t)) }
}

export const markDone = (board: Board, instance: string, summary: string, now: string): Board =>
  updateCurrent(board, instance, (t) => ({ ...t, status: "done", summary, updatedAt: now }))

export const markMerged = (board: Board, instance: string, now: string): Board =>
  updateCurrent(board, instance, (t) => ({ ...t, status: "merged", updatedAt: now }))

export const markRejected = (board: Board, instance: string, now: string): Board =>
  updateCurrent(board, instance, (t) => ({ ...t, status: "rejected", updatedAt: now }))

// Agent text in a file committed to the target branch: its first line, neutral (no escape sequence, CR or bidi
// override that would show differently in a terminal or a review).
const firstLine = (text: string, max = 100) => {
  const line = neutralise(text, 10_000).split("\n")[0]!.replaceAll("\t", " ").trim()
  return line.length > max ? `${line.slice(0, max - 1)}…` : line
}

const cell = (text: string) => text.replaceAll("|", "\\|")

/** A lead's reports that were never given a task. */
export const reportsWithoutTask = (spec: InstanceSpec, board: Board): ReadonlyArray<string> =>
  spec.reports.filter((r) => currentTask(board, r) === undefined)

/** "worker-3 has no task yet", "worker-3, worker-4 have no task yet"; undefined for none. */
export const noTaskYet = (names: ReadonlyArray<string>): string | undefined =>
  names.length === 0 ? undefined : `${names.join(", ")} ${names.length === 1 ? "has" : "have"} no task yet`

/** What an instance still owes, as the supervisor reminds it; undefined when it may rest. */
export const pendingWork = (spec: InstanceSpec, board: Board): string | undefined => {
  const names = (xs: ReadonlyArray<string>) => xs.join(", ")
  const own = currentTask(board, spec.name)
  if (spec.role === "worker") return own?.status === "assigned" ? `task #${own.id} is not reported done` : undefined
  const reports = spec.reports.map((r) => currentTask(board, r))
  const toMerge = spec.reports.filter((_, i) => reports[i]?.status === "done")
  if (toMerge.length > 0) return `${names(toMerge)} reported done and wait for cco team merge`
  const rejected = spec.reports.filter((_, i) => reports[i]?.status === "rejected")
  if (rejected.length > 0) return `${names(rejected)}'s work failed the check; send it back with cco team assign ${rejected[0]} "fix: …"`
  const working = reports.some((t) => t?.status === "assigned")
  const ownOpen = spec.lead === undefined ? true : own?.status === "assigned"
  if (!ownOpen || working) return undefined
  const goal = spec.lead === undefined ? "the project is not reported done" : `your goal (task #${own!.id}) is not reported done`
  // Say who has nothing to do: an assignment cut short (say, by a restart) is easy to miss.
  const idle = noTaskYet(reportsWithoutTask(spec, board))
  return idle === undefined ? goal : `${goal} and ${idle}`
}

/**
 * What an instance that just ended its turn is reminded of: what it owes (pendingWork), or else, for a lead whose
 * own goal is open, the reports it left without a task while others work. Only the reminder after a Stop names
 * the latter: a lead may have fewer tasks than reports, so the idle ladder does not press it.
 */
export const workAfterStop = (spec: InstanceSpec, board: Board): string | undefined => {
  const pending = pendingWork(spec, board)
  if (pending !== undefined || spec.role === "worker") return pending
  const ownOpen = spec.lead === undefined || currentTask(board, spec.name)?.status === "assigned"
  return ownOpen ? noTaskYet(reportsWithoutTask(spec, board)) : undefined
}

/** TEAM_STRUCTURE.md: kept on the target branch by cco; agents must not edit it. */
export const renderTeamStructure = (
  specs: ReadonlyArray<InstanceSpec>,
  board: Board,
  run: { readonly runId: string; readonly target: string }
): string => {
  const lines = [
    "# Team structure",
    "",
    `Maintained by cco for run ${run.runId}; do not edit by hand (cco rewrites it). Target branch: \`${run.target}\`.`,
    "",
    "| instance | role | leads | reports to | branch | status | current task |",
    "|---|---|---|---|---|---|---|"
  ]
  const roleName = { director: "Director", em: "Engineering Manager", worker: "Worker" } as const
  for (const s of specs) {
    const task = currentTask(board, s.name)
    lines.push(
      `| ${s.name} | ${roleName[s.role]} | ${s.reports.join(", ") || "—"} | ${s.lead ?? "—"} | \`${s.branch}\` | ${task?.status ?? "idle"} | ${task ? cell(firstLine(task.text)) : "—"} |`
    )
  }
  if (board.tasks.length > 0) {
    lines.push("", "## Tasks", "", "| # | assignee | from | status | task | summary |", "|---|---|---|---|---|---|")
    for (const t of board.tasks) {
      lines.push(`| ${t.id} | ${t.assignee} | ${t.assignedBy} | ${t.status} | ${cell(firstLine(t.text))} | ${cell(firstLine(t.summary ?? ""))} |`)
    }
  }
  return lines.join("\n") + "\n"
}

// ---------------------------------------------------------------------------
// Ports: each instance gets CCO_PORT, ten ports apart, so a dev server and a test server of one worktree
// (CCO_PORT, CCO_PORT+1, …) do not collide with another's. The director is slot 0, em-N slot N, worker-N slot
// 20+N (at most 20 of each); the merge gate's checks into a lead's branch use the lead's slot + 41.

export const PORT_BASE = 20_000
export const PORTS_PER_INSTANCE = 10
const MAX_SLOTS = 41

const portSlot = (name: string): number => {
  const m = /^(em|worker)-(\d+)$/.exec(name)
  if (m === null) return 0
  return (m[1] === "em" ? 0 : 20) + Number(m[2])
}

/** The instance's CCO_PORT: 20000 for the director, 20010 for em-1, 20210 for worker-1, … */
export const instancePort = (name: string): number => PORT_BASE + PORTS_PER_INSTANCE * portSlot(name)

/** CCO_PORT of a check of a merge into `lead`'s branch (checks of different branches may run at once). */
export const checkPort = (lead: string): number => PORT_BASE + PORTS_PER_INSTANCE * (MAX_SLOTS + portSlot(lead))
