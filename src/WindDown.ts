// The end of a run: until done, the time limit or an interrupt; then sessions stopped, reported work merged
// upward, nothing in a worktree lost, the target branch pushed if it is sound, and the summary.
import { Clock, Deferred, Effect, Ref } from "effect"
import type { CostSnapshot } from "./CostTracker.js"
import type { Delivery } from "./Delivery.js"
import { describeRun } from "./Gate.js"
import * as H from "./Hierarchy.js"
import type { Merges } from "./Merges.js"
import { type EndReason, isoNow, type RunContext, type RunSummary, statusName } from "./RunContext.js"
import * as Supervisor from "./Supervisor.js"

// Whatever ends this run — even an interrupt during start-up — no session of it is left running,
// and state.json says how it ended.
export const addExitFinalizer = (ctx: RunContext, writeState: Effect.Effect<void>, allStopped: Ref.Ref<boolean>) =>
  Effect.addFinalizer(() =>
    Effect.gen(function*() {
      // (A wind-down that got as far as stopping every instance leaves nothing to stop.)
      if (!(yield* Ref.get(allStopped))) {
        yield* Effect.forEach(ctx.specs, (spec) => ctx.agent.stop(spec.name), { discard: true, concurrency: "unbounded" })
      }
      if ((yield* Ref.get(ctx.ended)) !== undefined) return
      const endedAt = yield* Clock.currentTimeMillis
      yield* Ref.set(ctx.ended, { at: new Date(endedAt).toISOString(), reason: "interrupted" as EndReason })
      yield* writeState
      yield* ctx.runLog.log("run.finished", { reason: "interrupted", durationMs: (yield* Clock.currentTimeMillis) - ctx.run.startedAt })
    })
  )

export interface WindDownDeps {
  readonly send: Delivery["send"]
  readonly merges: Merges
  readonly stopInstances: (names: ReadonlyArray<string>) => Effect.Effect<void>
  readonly stopHealthChecks: Effect.Effect<void>
  /** Interrupts the instances' rotation fibers, a wait for a credential's reset included. */
  readonly stopRotation: Effect.Effect<void>
  /** Set once every instance is stopped (the exit finalizer then has none to stop). */
  readonly allStopped: Ref.Ref<boolean>
  /** Stops the delivery fibers and pending reminders: nothing is pasted into a session being stopped. */
  readonly stopDeliveries: Effect.Effect<void>
  readonly writeState: Effect.Effect<void>
  readonly writeTeamStructure: (reason: string) => Effect.Effect<void>
  readonly pollCosts: Effect.Effect<CostSnapshot>
}

// --- wind down: nothing in a worktree is lost, the target branch holds what was merged
const saveWork = (ctx: RunContext, spec: H.InstanceSpec) => {
  const { worktrees, git, run, startCommit, runLog } = ctx
  return Effect.gen(function*() {
    const dir = worktrees.get(spec.name)!
    // Most worktrees are clean at the end: one git call for them.
    if (yield* git.isClean(dir)) return
    if (yield* git.mergeInProgress(dir)) return
    if (yield* git.commitAll(dir, `cco: work in progress of ${spec.name} at the end of run ${run.runId}`)) {
      // `git add -A` takes whatever lies in the worktree: a huge file stays in the run's clone, never pushed.
      const large = yield* git.largeFiles(dir, spec.baseBranch ?? startCommit, spec.branch)
      if (large.length > 0) return yield* runLog.log("wip.not-pushed", { instance: spec.name, branch: spec.branch, large })
      yield* git.push(dir, spec.branch)
      yield* runLog.log("wip.saved", { instance: spec.name, branch: spec.branch })
    }
  }).pipe(Effect.catchAll((e) => runLog.log("wip.failed", { instance: spec.name, message: e.message })))
}

/** After the wind-down: the summary, recorded in state.json and as run.finished. */
const finish = (ctx: RunContext, deps: WindDownDeps, reason: EndReason) => {
  const { config, run, git, runLog, specs, topWorktree, startCommit, target, instances, merges, ended, tmux, agent } = ctx
  const { pollCosts, writeState } = deps
  return Effect.gen(function*() {
    // Sessions are stopped and their processes gone: the transcripts are complete.
    const costs = yield* pollCosts
    const commitsOnTarget = yield* git.commitsAhead(topWorktree, startCommit, target).pipe(Effect.orElseSucceed(() => 0))
    const finalInstances = yield* Ref.get(instances)
    const summary: RunSummary = {
      runId: run.runId,
      runFolder: run.folder,
      reason,
      repositoryUrl: config.repositoryUrl,
      targetBranch: target,
      merges: yield* Ref.get(merges),
      commitsOnTarget,
      durationMs: (yield* Clock.currentTimeMillis) - run.startedAt,
      tmuxSocket: tmux.socket,
      instances: specs.map((s) => ({
        name: s.name,
        role: s.role,
        branch: s.branch,
        status: statusName(finalInstances.get(s.name)!.phase),
        restarts: finalInstances.get(s.name)!.restarts,
        session: agent.sessionName(s.name),
        credential: finalInstances.get(s.name)!.credential
      })),
      costs,
      checks: yield* Ref.get(ctx.checks),
      credentials: yield* ctx.auth.snapshot
    }
    yield* Ref.set(ended, { at: yield* isoNow, reason })
    yield* writeState
    yield* runLog.log("run.finished", {
      reason, commitsOnTarget, merges: summary.merges.length, durationMs: summary.durationMs, costUsd: costs.total.usd,
      ...(config.checkCommand === undefined ? {} : { checks: summary.checks })
    })
    return summary
  })
}

export const makeWindDown = (ctx: RunContext, deps: WindDownDeps) => {
  const { config, run, git, runLog, specs, specOf, top, topWorktree, startCommit, target, board, instances, end, locked } = ctx
  const { send, stopInstances, writeTeamStructure } = deps
  const { gate, mergeChecked, mergeClean } = deps.merges

  const windDown = (reason: EndReason) =>
    Effect.gen(function*() {
      // Nothing restarts or relaunches an instance once the run winds down: not a health check, not a rotation.
      // From here no team command is taken (its merge would race the wind-down's own), nothing is delivered and
      // nothing supervised or rotated.
      yield* ctx.events.setTeamHandler(() =>
        Effect.succeed({ ok: false, text: "refused: the run is ending; cco saves the work in your worktree on your branch" }))
      yield* Effect.all([deps.stopHealthChecks, deps.stopRotation, deps.stopDeliveries], { concurrency: "unbounded", discard: true })
      yield* runLog.log("run.ending", { reason })
      yield* stopInstances(specs.map((s) => s.name))
      yield* Ref.set(deps.allStopped, true)
      // With the merge gate, each upward merge takes the git lock itself, around its steps (not its check).
      const gated = gate.enabled
      const upward = (lead: H.InstanceSpec, report: H.InstanceSpec) => gated ? mergeChecked(lead, report) : mergeClean(lead, report)
      const moveUp = Effect.gen(function*() {
        // At a limit, reported work moves up first; uncommitted work is then saved on each instance's own
        // branch only, so it never reaches the target branch unreviewed.
        if (reason !== "project-done" && reason !== "interrupted") {
          const b = yield* Ref.get(board)
          for (const em of specs.filter((s) => s.role === "em")) {
            for (const w of em.reports) {
              if (H.currentTask(b, w)?.status === "done") yield* upward(em, specOf.get(w)!)
            }
            if (em.lead !== undefined) yield* upward(specOf.get(em.lead)!, em)
          }
        }
      })
      if (gated) yield* moveUp
      yield* locked(Effect.gen(function*() {
        if (!gated) yield* moveUp
        // Each in its own worktree (its own index and branch): eight at a time.
        yield* Effect.forEach(specs.filter((s) => s !== top), (spec) => saveWork(ctx, spec), { discard: true, concurrency: 8 })
      }))
      yield* writeTeamStructure(`run ended: ${reason}`)
      // With the merge gate, never a target commit whose check failed: checked now unless it holds what passed.
      const failedCheck = gated
        ? yield* gate.verifyForPush(top, { checkNow: reason !== "interrupted" }).pipe(Effect.catchAll((e) => Effect.succeed(e)))
        : undefined
      // Never a target branch whose new commits add conflict markers or huge files: origin keeps the last good push.
      yield* locked(Effect.gen(function*() {
        if (failedCheck !== undefined) {
          return yield* runLog.log("push.refused", {
            branch: target,
            problems: [
              failedCheck === "not checked"
                ? "its last commits were not checked (the run was interrupted)"
                : "_tag" in failedCheck
                ? `the check could not run: ${failedCheck.message}`
                : `the check failed on it: ${describeRun(failedCheck, gate.timeoutMs)}`
            ]
          })
        }
        const problems = yield* git.vetCommits(topWorktree, startCommit, target, { ccoOwned: false })
        if (problems.length > 0) return yield* runLog.log("push.refused", { branch: target, problems })
        yield* git.push(topWorktree, target)
      })).pipe(
        Effect.catchAll((e) => runLog.log("push.failed", { branch: target, message: e.message }))
      )
    })

  // --- until done, the run's time limit, or an interrupt (Ctrl-C / SIGTERM)
  const warnAll = Effect.gen(function*() {
    const leadMs = Supervisor.warningLead(config.maxRunDurationMinutes * 60_000)
    const left = leadMs >= 90_000 ? `${Math.round(leadMs / 60_000)} minutes` : leadMs >= 60_000 ? "1 minute" : `${Math.round(leadMs / 1000)} seconds`
    yield* runLog.log("run.time-warning", { left })
    const prompted = [...(yield* Ref.get(instances)).values()].filter((i) => i.prompted || i.roleQueued).map((i) => i.spec)
    yield* Effect.forEach(prompted, (spec) => send(spec.name, `[cco] The run ends in about ${left}. Commit your work now; if your task is finished, report it with cco team done.`), { discard: true })
  })

  /** Until the project is done, a limit ends it, the deadline passes or the run is interrupted. */
  const awaitEnd = Effect.flatMap(Clock.currentTimeMillis, (now) =>
    Effect.raceFirst(
      Deferred.await(end),
      Supervisor.watchDeadline(Math.max(1000, run.startedAt + config.maxRunDurationMinutes * 60_000 - now), warnAll).pipe(Effect.as<EndReason>("time-limit"))
    )
  ).pipe(
    // The scope's finalizer then records the end (state.json, run.finished), as for any unfinished run.
    Effect.onInterrupt(() => runLog.log("run.interrupted").pipe(Effect.zipRight(windDown("interrupted"))))
  )

  return { windDown, awaitEnd, finish: (reason: EndReason) => finish(ctx, deps, reason) }
}
