// Launching the team: every worktree, the top given the direction at once, then all sessions started together; a
// resumed run takes over the sessions that survived and restarts the others where they left off.
import { Clock, Effect, Ref } from "effect"
import type { Credential } from "./Agent.js"
import type { Delivery } from "./Delivery.js"
import { describeRun, passed } from "./Gate.js"
import * as H from "./Hierarchy.js"
import * as Instances from "./Instances.js"
import { type RunContext, RunError } from "./RunContext.js"
import { startedAfresh } from "./Restarts.js"
import type { prepareLayout } from "./RunSetup.js"

export interface LaunchDeps {
  readonly makeWorktree: Effect.Effect.Success<ReturnType<typeof prepareLayout>>["makeWorktree"]
  readonly credentialFor: (name: string) => Effect.Effect<Credential, RunError>
  readonly delivery: Delivery
  readonly rolePrompt: (spec: H.InstanceSpec, assignment: string) => string
  readonly writeState: Effect.Effect<void>
  readonly writeTeamStructure: (reason: string) => Effect.Effect<void>
}

export const makeLaunch = (ctx: RunContext, deps: LaunchDeps) => {
  const { run, agent, git, tmux, runLog, update, get, costTracker, worktrees, specs, top, topWorktree, target } = ctx
  const { makeWorktree, credentialFor, rolePrompt, writeState, writeTeamStructure } = deps
  const { wake, send } = deps.delivery
  // A resumed run takes over the sessions that survived and restarts the others where they left off.
  const startInstance = (spec: H.InstanceSpec) =>
    Effect.gen(function*() {
      const inst = yield* get(spec.name)
      if (run.previous !== undefined && (yield* agent.isAlive(spec.name)) && (yield* agent.attach(spec.name, inst.generation))) {
        // What it was owed when the orchestrator died goes in at once; a message taken but never pasted, too.
        const attachedAt = yield* Clock.currentTimeMillis
        yield* update(spec.name, (i) => Instances.reattached(i, attachedAt))
        yield* wake(spec.name)
        return
      }
      // A session that did not survive takes what its predecessor was given and never finished, as after a restart.
      if (run.previous !== undefined) {
        yield* update(spec.name, Instances.inFlightRequeued)
      }
      const credential = yield* credentialFor(spec.name)
      const generation = yield* agent.launch({
        instance: spec.name,
        worktree: worktrees.get(spec.name)!,
        credential,
        continueSession: run.previous !== undefined && inst.prompted
      })
      const launchedAt = yield* Clock.currentTimeMillis
      yield* update(spec.name, (i) => Instances.relaunched(i, generation, credential.name, launchedAt))
      yield* costTracker.setCredential(spec.name, credential.name)
      if (run.previous !== undefined && inst.prompted) {
        // Its host could not be reached: started here from its branch, its conversation left there.
        if (agent.conversationLost?.(spec.name) === true) {
          yield* send(spec.name, startedAfresh(rolePrompt, spec, yield* Ref.get(ctx.board), "the orchestrator was restarted and your host could not be reached"), { role: true })
        } else {
          yield* send(spec.name, "[cco] The orchestrator was restarted and your session with it; your conversation is restored. Go on where you left off; if a cco team command failed meanwhile, run it again.")
        }
      }
    })

  /**
   * setupCommand in each new worktree (not on a resume: the worktrees are there already), four at a time, before
   * any instance starts, on the worktree's host; its output in <run folder>/setup-<instance>.log. A failure ends
   * the start-up: the run fails with the command, the instance and the log named, and no instance is left running.
   */
  const setUpWorktrees = Effect.suspend(() => {
    const command = ctx.config.setupCommand
    if (command === undefined || run.previous !== undefined) return Effect.void
    const timeoutMs = ctx.config.checkTimeoutMinutes * 60_000
    return Effect.forEach(specs, (spec) =>
      Effect.gen(function*() {
        const logFile = ctx.path.join(run.folder, `setup-${spec.name}.log`)
        const result = yield* git.runCommand(worktrees.get(spec.name)!, command, { port: H.instancePort(spec.name), logFile, timeoutMs })
        if (passed(result)) return yield* runLog.log("setup.done", { instance: spec.name, durationMs: result.durationMs })
        const reason = describeRun(result, timeoutMs)
        yield* runLog.log("setup.failed", { instance: spec.name, reason, durationMs: result.durationMs, log: logFile })
        return yield* new RunError({
          reason: "startup",
          message: `setupCommand (${command}) failed in ${spec.name}'s worktree ${worktrees.get(spec.name)!}: ${reason}; its output is in ${logFile}`
        })
      }), { concurrency: 4, discard: true })
  })

  // A new run's team, all sessions started together (Agent.launchMany: one tmux call).
  const startTeam = Effect.gen(function*() {
    const credentials = yield* Effect.forEach(specs, (spec) => credentialFor(spec.name))
    // Each counts on its credential from its first answer: the sessions started first (a lead here, say) may answer
    // before the last ones are up (on a remote host).
    yield* Effect.forEach(specs, (spec, i) => costTracker.setCredential(spec.name, credentials[i]!.name), { discard: true })
    const generations = yield* agent.launchMany(specs.map((spec, i) => ({
      instance: spec.name,
      worktree: worktrees.get(spec.name)!,
      credential: credentials[i]!,
      continueSession: false
    })))
    const launchedAt = yield* Clock.currentTimeMillis
    yield* Effect.forEach(specs, (spec, i) =>
      update(spec.name, (inst) => Instances.relaunched(inst, generations.get(spec.name)!, credentials[i]!.name, launchedAt)), { discard: true })
  })

  /**
   * The team launched: every worktree first (git work does not queue behind starting CLIs), the top given the
   * direction at once (it takes it as soon as its session is ready), then every session started together.
   */
  const launchAll = (direction: string) =>
    Effect.gen(function*() {
      if (run.previous !== undefined) yield* runLog.log("run.resuming", { runId: run.runId })
      // The top's branch (its team structure committed and pushed) while the other worktrees are made: sessions
      // that survive a resume may run team commands at once, so every worktree is there before any starts.
      const topBranch = writeTeamStructure("run start").pipe(
        Effect.zipRight(top.role === "director" || top.lead === undefined ? git.push(topWorktree, target) : Effect.void)
      )
      yield* Effect.all([
        topBranch,
        Effect.forEach(specs.filter((s) => s !== top), makeWorktree, { concurrency: 8, discard: true })
      ], { concurrency: 2, discard: true })
      yield* setUpWorktrees
      if (run.previous === undefined) {
        // The top's direction waits in its outbox and goes in as soon as its session is ready.
        yield* send(top.name, rolePrompt(top, direction), { role: true })
        yield* startTeam
      } else {
        yield* startInstance(top)
        // (A resumed run may hold the top's role prompt in its outbox already.)
        const topNow = yield* get(top.name)
        if (!topNow.prompted && !topNow.roleQueued) yield* send(top.name, rolePrompt(top, direction), { role: true })
        yield* Effect.forEach(specs.filter((s) => s !== top), startInstance, { concurrency: "unbounded", discard: true })
      }
      yield* writeState
      yield* runLog.log("run.started", { instances: specs.length, target, attach: `tmux -L ${tmux.socket} attach -t ${agent.sessionName(top.name)}` })
    })

  return { startInstance, launchAll }
}
