// Restarts: one at a time per instance, within the restart budget, on the same or a new credential, with
// what the replaced session was given and never finished; and stopping an instance's session cleanly.
import { Clock, Effect, Ref, Schema } from "effect"
import type { AgentShape, Credential } from "./Agent.js"
import type { ResolvedConfig } from "./Config.js"
import type { CostTracker } from "./CostTracker.js"
import type { Delivery } from "./Delivery.js"
import * as H from "./Hierarchy.js"
import * as Instances from "./Instances.js"
import type { RunContext, RunError } from "./RunContext.js"
import type { RunLogShape } from "./RunLog.js"
import * as Supervisor from "./Supervisor.js"
import type { Worktree } from "./Worktree.js"

/** The instance was restarted as often as the run allows within the window (Supervisor.allowRestart). */
export class RestartBudgetSpent extends Schema.TaggedError<RestartBudgetSpent>()("RestartBudgetSpent", { limit: Schema.String }) {}

export interface RestartDeps {
  readonly send: Delivery["send"]
  readonly credentialFor: (name: string) => Effect.Effect<Credential, RunError>
  readonly writeState: Effect.Effect<void>
  /** Drops the health checks' pane snapshots, so that no check sees the session a restart replaced. */
  readonly dropSnapshots: Effect.Effect<void>
  /** The role prompt, for an instance whose conversation a restart could not bring along (Agent.conversationLost). */
  readonly rolePrompt?: (spec: H.InstanceSpec, assignment: string) => string
}

/** What restarts use of the run. */
export type RestartContext = Pick<RunContext, "update" | "get" | "instances" | "board" | "worktrees"> & {
  readonly config: Pick<ResolvedConfig, "maxRestartsPerInstance">
  readonly agent: Pick<AgentShape, "launch" | "stop" | "stopMany" | "conversationLost">
  readonly git: Pick<Worktree, "removeStaleLock">
  readonly runLog: Pick<RunLogShape, "log">
  readonly costTracker: Pick<CostTracker, "setCredential">
}

/** What an instance started afresh on another machine is told: who it is, and its task once more. */
export const startedAfresh = (rolePrompt: (spec: H.InstanceSpec, assignment: string) => string, spec: H.InstanceSpec, board: H.Board, reason: string) => {
  const task = H.currentTask(board, spec.name)
  return rolePrompt(spec, task !== undefined && task.status === "assigned"
    ? `${task.text}\n\n(cco restarted you on another machine (${reason}); your earlier conversation and any work you had not committed and reported are lost. Your branch holds what cco received from you.)`
    : "Wait for your next task.")
}

export const makeRestarts = (ctx: RestartContext, deps: RestartDeps) => {
  const { config, agent, git, runLog, update, get, instances, board, worktrees, costTracker } = ctx
  const { send, credentialFor, writeState, dropSnapshots } = deps
  // Stops an instance's session and every process it started; then a git lock one of them left in its
  // worktree (a commit cut short) is stale, and removed so that git works there again.
  const staleLockRemoved = (name: string) =>
    git.removeStaleLock(worktrees.get(name)!).pipe(
      Effect.flatMap((lock) => lock === undefined ? Effect.void : runLog.log("worktree.lock-removed", { instance: name, file: lock })),
      Effect.catchAll((e) => runLog.log("worktree.lock-check-failed", { instance: name, message: e.message }))
    )
  const stopInstance = (name: string) => agent.stop(name).pipe(Effect.zipRight(staleLockRemoved(name)))
  /** The whole team at once (the wind-down). */
  const stopInstances = (names: ReadonlyArray<string>) =>
    agent.stopMany(names).pipe(Effect.zipRight(Effect.forEach(names, staleLockRemoved, { concurrency: 8, discard: true })))

  const restart = (name: string, reason: string, next?: Credential) =>
    Effect.gen(function*() {
      // One restart at a time per instance: a rotation and a crash check must not both relaunch it.
      const claimed = yield* Ref.modify(instances, (m) => {
        const i = m.get(name)
        const claimed = i === undefined ? undefined : Instances.restartClaimed(i)
        if (claimed === undefined) return [false, m] as const
        return [true, new Map(m).set(name, claimed)] as const
      })
      if (!claimed) return yield* runLog.log("instance.restart-skipped", { instance: name, reason, why: "a restart is already under way" })
      yield* restartClaimed(name, reason, next).pipe(Effect.ensuring(update(name, Instances.restartReleased)))
    })

  // Instances (with the generation they were at) left stopped, their refusal logged.
  const refused = new Set<string>()
  const restartClaimed = (name: string, reason: string, next?: Credential) =>
    Effect.gen(function*() {
      const inst = yield* get(name)
      const restartAt = yield* Clock.currentTimeMillis
      const budget = Supervisor.allowRestart(inst.restartHistory, restartAt, config.maxRestartsPerInstance, 10 * 60_000)
      if (!budget.allowed) return yield* new RestartBudgetSpent({ limit: `${config.maxRestartsPerInstance} per 10 minutes` })
      // A message pasted into the session being replaced, and never taken, goes to the new one.
      yield* update(name, (i) => Instances.restartBegun(i, budget.history, restartAt))
      yield* runLog.log("instance.restarting", { instance: name, reason, restarts: inst.restarts + 1 })
      yield* stopInstance(name)
      // --continue needs a conversation; before its first prompt an instance simply starts afresh.
      const credential = next ?? (yield* credentialFor(name))
      yield* costTracker.setCredential(name, credential.name)
      const generation = yield* agent.launch({ instance: name, worktree: inst.worktree, credential, continueSession: inst.prompted })
      yield* dropSnapshots
      const launchedAt = yield* Clock.currentTimeMillis
      // The new session is the instance's from here: its events (an API error on its first turn, say) count.
      yield* update(name, (i) => Instances.restartReleased(Instances.relaunched(i, generation, credential.name, launchedAt)))
      if (inst.prompted && agent.conversationLost?.(name) === true && deps.rolePrompt !== undefined) {
        // Started afresh elsewhere: who it is, and its task, once more.
        yield* send(name, startedAfresh(deps.rolePrompt, inst.spec, yield* Ref.get(board), reason), { role: true })
      } else if (inst.prompted) {
        const b = yield* Ref.get(board)
        const task = H.currentTask(b, name)
        // A lead cut off in the middle of its assignments is told who still has nothing to do.
        const idle = H.noTaskYet(H.reportsWithoutTask(inst.spec, b))
        yield* send(name, `[cco] cco restarted you (${reason}); your conversation is restored. ${task !== undefined && task.status === "assigned" ? `Go on with task #${task.id}: commit your work and report with cco team done when it is finished.` : "Go on where you left off."}${idle === undefined ? "" : ` Note: ${idle}.`}`)
      }
      yield* writeState
    }).pipe(Effect.catchTags({
      // Too many restarts lately: the instance is left stopped.
      // Said once per session it outlived: every health check asks again while its session stays gone.
      RestartBudgetSpent: (e) =>
        update(name, Instances.stopped).pipe(
          Effect.zipRight(get(name)),
          Effect.flatMap((inst) => {
            const key = `${name}\u0000${inst.generation}`
            if (refused.has(key)) return Effect.void
            refused.add(key)
            return runLog.log("instance.restart-refused", { instance: name, reason, limit: e.limit })
          })
        ),
      AgentError: (e) => runLog.log("instance.restart-failed", { instance: name, reason, message: e.message }),
      RunError: (e) => runLog.log("instance.restart-failed", { instance: name, reason, message: e.message })
    }))

  return { stopInstance, stopInstances, restart }
}

export type Restarts = ReturnType<typeof makeRestarts>
