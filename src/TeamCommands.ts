// `cco team …` commands from the instances: assign, done, merge, message and status, each checked against the
// hierarchy and the board, answered with a reply the agent reads.
import { Deferred, Effect, Option, Ref } from "effect"
import type { Delivery } from "./Delivery.js"
import * as EventsModule from "./Events.js"
import { describeRun, type GateOutcome } from "./Gate.js"
import type { TeamReply, TeamRequest } from "./Events.js"
import * as H from "./Hierarchy.js"
import type { Merges } from "./Merges.js"
import { isoNow, list, type RunContext, statusName } from "./RunContext.js"
import { renderTeam } from "./Status.js"
import { quoteAgentText } from "./Untrusted.js"
import type { GitError } from "./Worktree.js"

const reply = (ok: boolean, text: string): TeamReply => ({ ok, text })
const refuse = (text: string) => Effect.succeed(reply(false, `refused: ${text}`))

export interface TeamCommandDeps {
  readonly send: Delivery["send"]
  readonly merges: Merges
  readonly rolePrompt: (spec: H.InstanceSpec, assignment: string) => string
  readonly boardChanged: Effect.Effect<void>
  readonly writeTeamStructure: (reason: string) => Effect.Effect<void>
}

type TeamEnv = RunContext & Omit<TeamCommandDeps, "merges"> & Pick<Merges, "catchUp" | "recordMerge" | "gate"> & {
  readonly oneTaskChangeAtATime: <A, E, R>(owner: string | undefined, self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /** Reports whose merge is in the gate's queue or being checked. */
  readonly gating: Set<string>
}

const assign = (env: TeamEnv, from: H.InstanceSpec, args: ReadonlyArray<string>) => {
  const { runLog, specOf, get, board, locked, send, rolePrompt, boardChanged, catchUp, oneTaskChangeAtATime } = env
  return oneTaskChangeAtATime(args[0], Effect.gen(function*() {
    const [targetName, ...words] = args
    const text = quoteAgentText(words.join(" ").trim())
    if (targetName === undefined || text === "") return reply(false, "usage: cco team assign <instance> <task>")
    const to = specOf.get(targetName)
    if (to === undefined || !from.reports.includes(targetName)) {
      return reply(false, `refused: ${from.name} can assign only to its reports (${list(from.reports) || "none"})`)
    }
    const current = H.currentTask(yield* Ref.get(board), targetName)
    if (current !== undefined && current.status === "assigned") {
      return reply(false, `refused: ${targetName} is still working on task #${current.id}; wait for its report`)
    }
    if (current !== undefined && current.status === "done") {
      return reply(false, `refused: ${targetName} reported task #${current.id} done; merge it first (cco team merge ${targetName})`)
    }
    const inst = yield* get(targetName)
    const note = inst.prompted ? yield* locked(catchUp(to, inst.worktree)) : ""
    const assignedAt = yield* isoNow
    yield* Ref.update(board, (b) => H.assign(b, targetName, from.name, text, assignedAt))
    const task = H.currentTask(yield* Ref.get(board), targetName)!
    yield* runLog.log("task.assigned", { instance: targetName, by: from.name, task: task.id, text })
    yield* send(targetName, inst.prompted || inst.roleQueued
        ? `[cco] New task #${task.id} from ${from.name}:\n\n${text}${note}`
        : rolePrompt(to, text), { role: !(inst.prompted || inst.roleQueued) })
    yield* boardChanged
    return reply(true, `assigned task #${task.id} to ${targetName}`)
  }))
}

const done = (env: TeamEnv, from: H.InstanceSpec, args: ReadonlyArray<string>) => {
  const { git, runLog, startCommit, get, board, locked, end, send, boardChanged, oneTaskChangeAtATime } = env
  return oneTaskChangeAtATime(from.name, Effect.gen(function*() {
    const summary = quoteAgentText(args.join(" ").trim())
    if (summary === "") return reply(false, "usage: cco team done <summary>")
    const taskless = H.doneRefusal(from, yield* Ref.get(board))
    if (taskless !== undefined) return reply(false, `refused: ${taskless}`)
    // Reported already and not merged yet: the lead has it once; it merges the branch as it is then.
    const reported = H.currentTask(yield* Ref.get(board), from.name)
    if (from.lead !== undefined && reported?.status === "done") {
      return reply(true, `already reported: task #${reported.id} waits for ${from.lead} to merge it (your branch as it is then); wait for your next task`)
    }
    if (from.lead !== undefined && reported?.status === "rejected") {
      return reply(false, `refused: task #${reported.id} failed the project's check when ${from.lead} merged it; wait for ${from.lead} to send it back (a new task)`)
    }
    const inst = yield* get(from.name)
    const unmerged = (yield* Ref.get(board)).tasks.filter((t) => from.reports.includes(t.assignee) && t.status === "done")
    if (unmerged.length > 0) {
      const who = [...new Set(unmerged.map((t) => t.assignee))]
      return reply(false, `refused: ${list(who)} reported work that is not merged yet; run cco team merge ${who[0]} first`)
    }
    const checked = yield* locked(Effect.gen(function*() {
      if (yield* git.mergeInProgress(inst.worktree)) return "a merge is in progress in your worktree; resolve it and commit first"
      if (!(yield* git.isClean(inst.worktree))) return "your worktree has uncommitted changes; commit them (git add -A && git commit) and report again"
      if (from.baseBranch !== undefined && (yield* git.commitsAhead(inst.worktree, from.baseBranch, from.branch)) === 0) {
        return `your branch ${from.branch} has no new commits since ${from.baseBranch}; commit your work, then report again`
      }
      // The top's branch is the target, where cco writes TEAM_STRUCTURE.md itself.
      const problems = yield* git.vetCommits(inst.worktree, from.baseBranch ?? startCommit, from.branch, { ccoOwned: from.baseBranch !== undefined })
      if (problems.length > 0) return `your branch ${from.branch} brings ${problems.join("; ")}. Then report again`
      if (from.lead !== undefined) yield* git.push(inst.worktree, from.branch)
      return undefined
    }))
    if (checked !== undefined) {
      yield* runLog.log("task.done-refused", { instance: from.name, reason: checked })
      return reply(false, `refused: ${checked}`)
    }
    const doneAt = yield* isoNow
    yield* Ref.update(board, (b) => H.markDone(b, from.name, summary, doneAt))
    yield* runLog.log("task.done", { instance: from.name, summary })
    if (from.lead === undefined) {
      yield* Deferred.succeed(end, "project-done")
      return reply(true, "accepted: the project is done; cco is merging, pushing and stopping the run")
    }
    const stat = yield* git.diffStat(inst.worktree, from.baseBranch!, from.branch).pipe(Effect.orElseSucceed(() => ""))
    yield* send(from.lead, `[cco] ${from.name} reports done: ${summary}\n\n${stat}\n\nReview it, then run: cco team merge ${from.name}`)
    yield* boardChanged
    return reply(true, `accepted: ${from.lead} is notified; wait for your next task`)
  }))
}

/**
 * How long a `cco team merge` through the gate holds its request for the answer: less than the client's own limit
 * (120 s, as the Bash tool's). A longer wait is answered "cco will tell you", and the result comes as a message.
 */
export const ANSWER_WAIT_MS = 100_000

// Real time: the check really runs, whatever the run's Clock says.
const realSleep = (ms: number) =>
  Effect.async<void>((resume) => {
    const timer = setTimeout(() => resume(Effect.void), ms)
    return Effect.sync(() => clearTimeout(timer))
  })

const seconds = (ms: number) => `${Math.max(1, Math.round(ms / 1000))} s`

/** The lead's answer to a merge through the gate, and the board and the report told what came of it. */
const gateAnswer = (env: TeamEnv, from: H.InstanceSpec, report: H.InstanceSpec, task: H.Task, outcome: GateOutcome) => {
  const { runLog, board, send, config, gate, top, writeTeamStructure, boardChanged } = env
  const command = config.checkCommand!
  return Effect.gen(function*() {
    const name = report.name
    switch (outcome._tag) {
      case "Refused":
        return reply(false, `refused: ${outcome.text}`)
      case "Conflict":
        return reply(false, outcome.inWorktree
          ? `conflict merging ${name} into ${from.branch}: ${list(outcome.files)}. Resolve them in your worktree (edit, git add, git commit), then run cco team merge ${name} again; cco checks the result before it lands.`
          : `conflict merging ${name} into ${from.branch}: ${list(outcome.files)}. Nothing was merged. Commit your own changes first, then run cco team merge ${name} again: the conflict is then left in your worktree to resolve.`)
      case "Failed": {
        const how = describeRun(outcome.run, gate.timeoutMs)
        const rejectedAt = yield* isoNow
        yield* Ref.update(board, (b) => H.markRejected(b, name, rejectedAt))
        yield* runLog.log("merge.check-failed", { from: name, into: from.branch, exitCode: outcome.run.exitCode ?? null, timedOut: outcome.run.timedOut, log: outcome.run.logFile })
        const tail = outcome.run.tail === "" ? "(it printed nothing)" : outcome.run.tail
        yield* send(name, `[cco] Your work on task #${task.id} was not merged: the project's check (${command}) failed on it merged into ${from.branch} (${how}). ${from.name} decides what comes next; wait for it. The last lines of the check's output:\n\n${tail}`)
        yield* boardChanged
        return reply(false, `refused: the check (${command}) failed on ${name}'s work merged into ${from.branch}: ${how}${outcome.attempts > 1 ? ", and again on the retry" : ""}. ${from.branch} is unchanged and nothing was pushed; ${name} is told. Send the work back: cco team assign ${name} "fix: …". Full output: ${outcome.run.logFile}. Its last lines:\n\n${tail}`)
      }
      case "Landed": {
        const waited = outcome.waitedMs >= 1000 ? ` after ${seconds(outcome.waitedMs)} in the merge queue` : ""
        if (task.status === "merged" && outcome.upToDate) return reply(true, `merged ${name} already; nothing new`)
        yield* from === top ? writeTeamStructure(`merged ${name}`) : boardChanged
        return reply(true, `merged ${name} into ${from.branch} (${outcome.commit.slice(0, 10)}); the check (${command}) passed${outcome.attempts > 1 ? " on the retry" : ""}${waited}`)
      }
    }
  })
}

/** `cco team merge` with checkCommand: through the gate, queued per branch, answered now or as a message later. */
const gatedMerge = (env: TeamEnv, from: H.InstanceSpec, report: H.InstanceSpec) => {
  const { runLog, board, gate, gating, send, scope, oneTaskChangeAtATime } = env
  const name = report.name
  return Effect.gen(function*() {
    const started = yield* oneTaskChangeAtATime(name, Effect.gen(function*() {
      const task = H.currentTask(yield* Ref.get(board), name)
      if (task === undefined || task.status === "assigned") return reply(false, `refused: ${name} has not reported done`)
      if (task.status === "rejected") return reply(false, `refused: ${name}'s work failed the check; send it back first: cco team assign ${name} "fix: …"`)
      if (gating.has(name)) return reply(true, `${name}'s merge into ${from.branch} is in the merge queue already; cco tells you its result. Wait for it.`)
      gating.add(name)
      const ahead = gate.queued(from.branch)
      const answered = yield* Deferred.make<TeamReply>()
      const waiting = yield* Ref.make<"waiting" | "gone" | "done">("waiting")
      const message = `Merge ${name} (${report.branch}) into ${from.branch}`
      yield* gate.land(from, report, { message, handConflict: true }).pipe(
        Effect.flatMap((outcome) => oneTaskChangeAtATime(name, gateAnswer(env, from, report, task, outcome))),
        Effect.catchTag("GitError", (e) => Effect.succeed(reply(false, `error: git failed: ${e.message}`))),
        Effect.ensuring(Effect.sync(() => gating.delete(name))),
        Effect.flatMap((r) =>
          Ref.getAndSet(waiting, "done").pipe(
            Effect.flatMap((was) =>
              was === "gone"
                ? runLog.log("team.reply", { instance: from.name, command: "merge", ok: r.ok, text: r.text.slice(0, 500), late: true }).pipe(
                  Effect.zipRight(send(from.name, `[cco] The result of your cco team merge ${name}: ${r.text}`))
                )
                : Effect.void
            ),
            Effect.zipRight(Deferred.succeed(answered, r))
          )
        ),
        Effect.forkIn(scope)
      )
      return { answered, waiting, ahead }
    }))
    if ("ok" in started) return started
    const { ahead, answered, waiting } = started
    const now = yield* Effect.raceFirst(
      Deferred.await(answered).pipe(Effect.map(Option.some)),
      realSleep(env.options.answerWaitMs ?? ANSWER_WAIT_MS).pipe(Effect.as(Option.none<TeamReply>()))
    )
    if (Option.isSome(now)) return now.value
    const left = yield* Ref.modify(waiting, (s) => s === "done" ? [false, s] as const : [true, "gone" as const] as const)
    if (!left) return yield* Deferred.await(answered)
    return reply(true, `${name}'s merge into ${from.branch} ${ahead > 0 ? `waits in the merge queue behind ${ahead} other merge${ahead > 1 ? "s" : ""}` : "is being checked"} (checkCommand); cco sends you the result as a [cco] message. Wait for it; do not run cco team merge ${name} again.`)
  })
}

const merge = (env: TeamEnv, from: H.InstanceSpec, args: ReadonlyArray<string>) => {
  const { git, runLog, specOf, top, startCommit, get, board, locked, recordMerge, writeTeamStructure, boardChanged, oneTaskChangeAtATime } = env
  return oneTaskChangeAtATime(args[0], Effect.gen(function*() {
    const name = args[0]
    if (name === undefined) return reply(false, "usage: cco team merge <instance>")
    const report = specOf.get(name)
    if (report === undefined || !from.reports.includes(name)) {
      return reply(false, `refused: ${from.name} can merge only its reports (${list(from.reports) || "none"})`)
    }
    const task = H.currentTask(yield* Ref.get(board), name)
    if (task === undefined || task.status === "assigned") return reply(false, `refused: ${name} has not reported done`)
    if (env.gate.enabled) return { gated: report } as const
    const worktree = (yield* get(from.name)).worktree
    const answer = yield* locked(Effect.gen(function*() {
      if (yield* git.mergeInProgress(worktree)) {
        const markers = yield* git.conflictMarkers(worktree)
        return reply(false, `refused: a merge is still in progress in your worktree${markers.length > 0 ? ` (conflict markers in ${list(markers)})` : ""}; resolve it, git add, git commit, then run cco team merge ${name} again`)
      }
      // Committed conflict markers, changes to cco's files, huge files on the report's branch never enter the lead's.
      const theirs = yield* git.vetCommits(worktree, "HEAD", report.branch)
      if (theirs.length > 0) {
        yield* runLog.log("merge.refused", { from: name, into: from.branch, problems: theirs })
        return reply(false, `refused: ${name}'s branch ${report.branch} brings ${theirs.join("; ")}. Nothing was merged. Tell ${name} (cco team message ${name} …) to fix it and report again.`)
      }
      const result = yield* git.merge(worktree, report.branch, { message: `Merge ${name} (${report.branch}) into ${from.branch}`, keepConflict: true })
      if (result._tag === "Conflict") {
        yield* runLog.log("merge.conflict", { from: name, into: from.branch, files: result.files })
        return reply(false, `conflict merging ${name} into ${from.branch}: ${list(result.files)}. Resolve them in your worktree (edit, git add, git commit), then run cco team merge ${name} again.`)
      }
      const markers = yield* git.conflictMarkers(worktree)
      if (markers.length > 0) return reply(false, `refused: conflict markers remain in ${list(markers)}; fix and commit them first`)
      // A resolution committed with the markers still in (git add -A && git commit) is refused too: nothing is pushed.
      const ours = yield* git.vetCommits(worktree, startCommit, "HEAD", { ccoOwned: false })
      if (ours.length > 0) {
        yield* runLog.log("merge.refused", { from: name, into: from.branch, problems: ours })
        return reply(false, `refused: your branch ${from.branch} brings ${ours.join("; ")}. Nothing was pushed. Then run cco team merge ${name} again.`)
      }
      if (task.status === "merged" && result._tag === "AlreadyUpToDate") return reply(true, `merged ${name} already; nothing new`)
      const commit = yield* recordMerge(from, report, worktree)
      return reply(true, `merged ${name} into ${from.branch} (${commit.slice(0, 10)})${result._tag === "AlreadyUpToDate" ? " — your resolution commit already holds it" : ""}`)
    }))
    // Merges into the target branch show in TEAM_STRUCTURE.md at once; the rest is batched.
    if (answer.ok) yield* from === top ? writeTeamStructure(`merged ${name}`) : boardChanged
    return answer
  })).pipe(
    // Through the gate the command leaves the report's task lock while it waits (the gate takes it to record).
    Effect.flatMap((r): Effect.Effect<TeamReply, GitError> => "gated" in r ? gatedMerge(env, from, r.gated) : Effect.succeed(r))
  )
}

const message = (env: TeamEnv, from: H.InstanceSpec, args: ReadonlyArray<string>) => {
  const { specs, specOf, get, send } = env
  return Effect.gen(function*() {
    const [to, ...words] = args
    const text = quoteAgentText(words.join(" ").trim())
    if (to === undefined || text === "") return reply(false, `usage: cco team message <instance> <text> (your team: ${list(H.messageable(from, specs))})`)
    const refusal = H.messageRefusal(from, to, text, specs, specOf.has(to) ? (yield* get(to)).outbox.length : 0)
    if (refusal !== undefined) return reply(false, `refused: ${refusal}`)
    yield* send(to, `[cco] Message from ${from.name}: ${text}`)
    return reply(true, `sent to ${to}`)
  })
}

const status = (env: TeamEnv) => {
  const { target, board, instances } = env
  return Effect.gen(function*() {
    const all = yield* Ref.get(instances)
    const b = yield* Ref.get(board)
    return reply(true, renderTeam(target, [...all.values()].map((i) => ({ ...i.spec, status: statusName(i.phase) })), b))
  })
}

const onTeam = (env: TeamEnv, request: TeamRequest): Effect.Effect<TeamReply> => {
  const { runLog, specOf } = env
  const from = specOf.get(request.instance)
  if (from === undefined) return refuse("unknown instance")
  const handled: Effect.Effect<TeamReply, GitError> = (() => {
    switch (request.command) {
      case "assign":
        return assign(env, from, request.args)
      case "done":
        return done(env, from, request.args)
      case "merge":
        return merge(env, from, request.args)
      case "message":
        return message(env, from, request.args)
      case "status":
        return status(env)
      default:
        return Effect.succeed(reply(false, `unknown command "${request.command}"; try: assign, done, merge, message, status`))
    }
  })()
  return runLog.log("team.command", { instance: from.name, command: request.command, args: EventsModule.argsForLog(request.args) }).pipe(
    Effect.zipRight(handled),
    Effect.catchTag("GitError", (e) => Effect.succeed(reply(false, `error: git failed: ${e.message}`))),
    Effect.tap((r) => runLog.log("team.reply", { instance: from.name, command: request.command, ok: r.ok, text: r.text.slice(0, 500) }))
  )
}

export const makeTeamCommands = (ctx: RunContext, deps: TeamCommandDeps) => {
  const { specs } = ctx

  // One change to an instance's task at a time (assign to it, its done, its merge), from the check of the task to
  // its new state on the board: of two concurrent assigns to one report exactly one is accepted, a report is not
  // passed on twice, and a merge is not recorded twice. Taken before the git lock, never inside it.
  const taskLocks = new Map(specs.map((s) => [s.name, Effect.unsafeMakeSemaphore(1)]))
  const oneTaskChangeAtATime = <A, E, R>(owner: string | undefined, self: Effect.Effect<A, E, R>) => {
    const lock = owner === undefined ? undefined : taskLocks.get(owner)
    return lock === undefined ? self : lock.withPermits(1)(self)
  }
  const { send, rolePrompt, boardChanged, writeTeamStructure } = deps
  const { catchUp, gate, recordMerge } = deps.merges
  const gating = new Set<string>()
  const env: TeamEnv = { ...ctx, send, rolePrompt, boardChanged, writeTeamStructure, catchUp, recordMerge, gate, gating, oneTaskChangeAtATime }
  return { onTeam: (request: TeamRequest) => onTeam(env, request) }
}
