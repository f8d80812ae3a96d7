// The shape of state.json in a run folder: written by the orchestrator on every change that matters,
// read by `cco status`, `cco cleanup` and `cco run --resume`.
import { Schema } from "effect"

export const InstanceState = Schema.Struct({
  name: Schema.String,
  role: Schema.Literal("director", "em", "worker"),
  lead: Schema.optional(Schema.String),
  branch: Schema.String,
  worktree: Schema.String,
  session: Schema.String,
  status: Schema.String,
  generation: Schema.Number,
  restarts: Schema.Number,
  credential: Schema.String,
  lastEventAt: Schema.String,
  currentTask: Schema.optional(Schema.String),
  /** Whether its role prompt was delivered (a restart then continues the conversation). */
  prompted: Schema.optional(Schema.Boolean),
  costUsd: Schema.optional(Schema.Number),
  /** Its role prompt is queued (in outbox, or delivered). */
  roleQueued: Schema.optional(Schema.Boolean),
  /** Messages waiting for delivery: a resumed run delivers them at once. */
  outbox: Schema.optional(Schema.Array(Schema.String)),
  /** Messages taken for delivery whose turn had not ended. */
  inFlight: Schema.optional(Schema.Array(Schema.String)),
  /** Whether inFlight reached the pane; if not, a resumed run sends it again. */
  inFlightPasted: Schema.optional(Schema.Boolean),
  /** The host it runs on (config `hosts`; "local" is the orchestrator's machine); absent: local. */
  host: Schema.optional(Schema.String)
})
export type InstanceState = typeof InstanceState.Type

export const TaskState = Schema.Struct({
  id: Schema.Number,
  assignee: Schema.String,
  assignedBy: Schema.String,
  text: Schema.String,
  status: Schema.Literal("assigned", "done", "merged", "rejected"),
  summary: Schema.optional(Schema.String),
  assignedAt: Schema.String,
  updatedAt: Schema.String
})

export const MergeState = Schema.Struct({ from: Schema.String, into: Schema.String, commit: Schema.String })

export const CredentialState = Schema.Struct({
  name: Schema.String,
  /** oauth (the user's own login), api-key, token, login. */
  kind: Schema.optional(Schema.String),
  status: Schema.String,
  until: Schema.optional(Schema.String),
  /** Why an invalid credential is out of the run. */
  reason: Schema.optional(Schema.String),
  users: Schema.Number,
  /** The instances on it. */
  instances: Schema.optional(Schema.Array(Schema.String)),
  /** Rate and usage limits it hit in this run. */
  limits: Schema.optional(Schema.Number)
})

/** A remote host of the run (config `hosts`): how to reach it and where the run lives there, for `cco cleanup`. */
export const HostState = Schema.Struct({
  name: Schema.String,
  ssh: Schema.String,
  port: Schema.Number,
  identityFile: Schema.optional(Schema.String),
  knownHostsFile: Schema.optional(Schema.String),
  strictHostKeyChecking: Schema.Literal("yes", "accept-new", "no"),
  /** <workdir>/<runId> there: cco's clone, the worktrees, the instances' files. */
  runDir: Schema.String,
  tmuxSocket: Schema.String,
  /** The master connection's socket here. */
  controlPath: Schema.String,
  /** How its instances are confined, decided there at the start ("bwrap" or "none"), and why unconfined. */
  sandbox: Schema.optional(Schema.Literal("bwrap", "none")),
  sandboxReason: Schema.optional(Schema.String)
})

export const RunState = Schema.Struct({
  runId: Schema.String,
  runFolder: Schema.String,
  repositoryUrl: Schema.String,
  /** The clone that every worktree belongs to. */
  repoDir: Schema.String,
  targetBranch: Schema.String,
  /** The target branch's commit when the run started. */
  startCommit: Schema.optional(Schema.String),
  startedAt: Schema.String,
  /** When maxRunDurationMinutes runs out. */
  deadline: Schema.String,
  endedAt: Schema.optional(Schema.String),
  endReason: Schema.optional(Schema.String),
  tmuxSocket: Schema.String,
  /** The orchestrator's process id; see also the cco.lock file while it runs. */
  pid: Schema.Number,
  instances: Schema.Array(InstanceState),
  board: Schema.Struct({ tasks: Schema.Array(TaskState) }),
  merges: Schema.Array(MergeState),
  credentials: Schema.optional(Schema.Array(CredentialState)),
  /** The merge gate's checks (checkCommand): runs, passed, failed, total milliseconds. */
  checks: Schema.optional(Schema.Struct({ runs: Schema.Number, passed: Schema.Number, failed: Schema.Number, totalMs: Schema.Number })),
  costUsd: Schema.optional(Schema.Number),
  /** The remote hosts instances were placed on. */
  hosts: Schema.optional(Schema.Array(HostState))
})
export type RunState = typeof RunState.Type

export const decodeRunState = Schema.decodeUnknown(Schema.parseJson(RunState))

/** Present while the orchestrator of a run is alive; holds its pid. */
export const LOCK_FILE = "cco.lock"
export const STATE_FILE = "state.json"
