// Launching the team: every worktree, then the top (given the direction at once), then the rest together; a resumed run takes over
// the sessions that survived and restarts the others where they left off.
import { Clock, Effect } from "effect"
import type { Credential } from "./Agent.js"
import type { Delivery } from "./Delivery.js"
import type * as H from "./Hierarchy.js"
import * as Instances from "./Instances.js"
import type { RunContext, RunError } from "./RunContext.js"
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
        yield* send(spec.name, "[cco] The orchestrator was restarted and your session with it; your conversation is restored. Go on where you left off; if a cco team command failed meanwhile, run it again.")
      }
    })

  /**
   * The team launched: every worktree first (git work does not queue behind starting CLIs), then the top, given
   * the direction at once (it takes it as soon as its session is ready), then everyone else together.
   */
  const launchAll = (direction: string) =>
    Effect.gen(function*() {
      yield* writeTeamStructure("run start")
      if (top.role === "director" || top.lead === undefined) yield* git.push(topWorktree, target)
      if (run.previous !== undefined) yield* runLog.log("run.resuming", { runId: run.runId })
      // Sessions that survive a resume may run team commands at once: every worktree is there before any starts.
      yield* Effect.forEach(specs.filter((s) => s !== top), makeWorktree, { concurrency: 8, discard: true })
      yield* startInstance(top)
      // (A resumed run may hold the top's role prompt in its outbox already.)
      const topNow = yield* get(top.name)
      if (!topNow.prompted && !topNow.roleQueued) yield* send(top.name, rolePrompt(top, direction), { role: true })
      yield* Effect.forEach(specs.filter((s) => s !== top), startInstance, { concurrency: "unbounded", discard: true })
      yield* writeState
      yield* runLog.log("run.started", { instances: specs.length, target, attach: `tmux -L ${tmux.socket} attach -t ${agent.sessionName(top.name)}` })
    })

  return { startInstance, launchAll }
}
