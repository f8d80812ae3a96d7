// Merges cco owns: a branch catching up with its base before new work, a report's merge recorded and pushed,
// and at the end of a run reported work merged upward where it merges cleanly.
import { Effect, Ref } from "effect"
import { describeRun, makeGate } from "./Gate.js"
import * as H from "./Hierarchy.js"
import { isoNow, list, type RunContext } from "./RunContext.js"

export const makeMerges = (ctx: RunContext) => {
  const { git, runLog, startCommit } = ctx

  // Before new work, a branch catches up with the branch it merges into, so merges stay small.
  const catchUp = (spec: H.InstanceSpec, worktree: string) =>
    spec.baseBranch === undefined
      ? Effect.succeed("")
      : git.isClean(worktree).pipe(
        Effect.flatMap((clean) =>
          clean
            ? git.merge(worktree, spec.baseBranch!, { message: `cco: catch up with ${spec.baseBranch}` }).pipe(
              Effect.map((r) =>
                r._tag === "Conflict"
                  ? `\n\n(Note: your branch could not catch up with ${spec.baseBranch} automatically: conflict in ${list(r.files)}. Run \`git merge ${spec.baseBranch}\` and resolve it before you start.)`
                  : ""
              )
            )
            : Effect.succeed(`\n\n(Note: your worktree has uncommitted changes, so it did not catch up with ${spec.baseBranch}; commit first.)`)
        )
      )

  // A merge that landed in the lead's worktree: pushed, recorded, and the report's task marked merged.
  const recordMerge = (lead: H.InstanceSpec, report: H.InstanceSpec, worktree: string) =>
    Effect.gen(function*() {
      const commit = yield* git.headCommit(worktree)
      yield* git.push(worktree, lead.branch)
      yield* Ref.update(ctx.merges, (m) => [...m, { from: report.branch, into: lead.branch, commit }])
      const mergedAt = yield* isoNow
      yield* Ref.update(ctx.board, (b) => H.markMerged(b, report.name, mergedAt))
      yield* runLog.log("merge.done", { from: report.name, branch: report.branch, into: lead.branch, commit })
      return commit
    })

  const gate = makeGate(ctx, recordMerge)

  // With the merge gate: only where the merged result passes the check; the git lock is taken inside, per step.
  const mergeChecked = (lead: H.InstanceSpec, report: H.InstanceSpec) =>
    Effect.gen(function*() {
      const dir = ctx.worktrees.get(lead.name)!
      if ((yield* ctx.locked(git.commitsAhead(dir, lead.branch, report.branch))) === 0) return
      const outcome = yield* gate.land(lead, report, { message: `Merge ${report.name} (${report.branch}) into ${lead.branch} at the end of the run`, handConflict: false })
      if (outcome._tag === "Conflict") return yield* runLog.log("merge.skipped", { from: report.name, into: lead.branch, files: outcome.files })
      if (outcome._tag === "Refused") return yield* runLog.log("merge.skipped", { from: report.name, into: lead.branch, problems: [outcome.text] })
      if (outcome._tag === "Failed") {
        return yield* runLog.log("merge.skipped", { from: report.name, into: lead.branch, problems: [`the check failed: ${describeRun(outcome.run, gate.timeoutMs)}`] })
      }
    }).pipe(Effect.catchAll((e) => runLog.log("merge.failed", { from: report.name, into: lead.branch, message: e.message })))

  // Reported work merges upward where it merges cleanly; conflicts are left for a person, logged.
  const mergeClean = (lead: H.InstanceSpec, report: H.InstanceSpec) =>
    Effect.gen(function*() {
      const dir = ctx.worktrees.get(lead.name)!
      if (yield* git.mergeInProgress(dir)) return
      if ((yield* git.commitsAhead(dir, lead.branch, report.branch)) === 0) return
      // Committed conflict markers (either side), changes to cco's files, huge files stay where they are, for a person.
      const problems = [
        ...(yield* git.vetCommits(dir, lead.branch, report.branch)),
        ...(yield* git.vetCommits(dir, startCommit, lead.branch, { ccoOwned: false }))
      ]
      if (problems.length > 0) return yield* runLog.log("merge.skipped", { from: report.name, into: lead.branch, problems })
      const result = yield* git.merge(dir, report.branch, { message: `Merge ${report.name} (${report.branch}) into ${lead.branch} at the end of the run` })
      if (result._tag === "Conflict") return yield* runLog.log("merge.skipped", { from: report.name, into: lead.branch, files: result.files })
      if (result._tag === "Merged") yield* recordMerge(lead, report, dir)
    }).pipe(Effect.catchAll((e) => runLog.log("merge.failed", { from: report.name, into: lead.branch, message: e.message })))

  return { catchUp, recordMerge, mergeClean, mergeChecked, gate }
}

export type Merges = ReturnType<typeof makeMerges>
