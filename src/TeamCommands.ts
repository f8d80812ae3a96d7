// `cco team …` commands from the instances: assign, done, merge, message and status, each checked against the
// hierarchy and the board, answered with a reply the agent reads.
import { Deferred, Effect, Ref } from "effect"
import type { Delivery } from "./Delivery.js"
import * as EventsModule from "./Events.js"
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

type TeamEnv = RunContext & Omit<TeamCommandDeps, "merges"> & Pick<Merges, "catchUp" | "recordMerge"> & {
  readonly oneTaskChangeAtATime: <A, E, R>(owner: string | undefined, self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
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
  }))
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
  const { catchUp, recordMerge } = deps.merges
  const env: TeamEnv = { ...ctx, send, rolePrompt, boardChanged, writeTeamStructure, catchUp, recordMerge, oneTaskChangeAtATime }
  return { onTeam: (request: TeamRequest) => onTeam(env, request) }
}
