// Supervision: one fiber per instance in a FiberMap, a health check every interval (crash, stuck, idle,
// blocking screens), and restarts — one at a time per instance, within the restart budget.
import { Clock, Duration, Effect, FiberMap, Option, Ref, Schedule } from "effect"
import type { Credential } from "./Agent.js"
import type { Delivery } from "./Delivery.js"
import * as EventsModule from "./Events.js"
import * as H from "./Hierarchy.js"
import type { Instance, RunContext, RunError } from "./RunContext.js"
import * as Supervisor from "./Supervisor.js"

export interface SupervisionDeps {
  readonly send: Delivery["send"]
  readonly credentialFor: (name: string) => Effect.Effect<Credential, RunError>
  readonly writeState: Effect.Effect<void>
}

export const makeSupervision = (ctx: RunContext, deps: SupervisionDeps) =>
  Effect.gen(function*() {
    const { config, agent, tmux, git, runLog, update, get, instances, board, worktrees, costTracker, deliveryLocks, specs } = ctx
    const { send, credentialFor, writeState } = deps
    // --- supervision: one fiber per instance, a health check every interval
    const windingDown = yield* Ref.make(false)
    // One tmux call a round for all instances' panes and one for their screens: the supervisors of all
    // instances run together, so a snapshot younger than half an interval serves the whole round. A restart
    // drops it, so that no check sees the session it replaced.
    const sessionPrefix = agent.sessionName("")
    const snapshotTtl = Duration.millis(Math.min(2000, config.healthCheckIntervalSeconds * 500))
    // A failed batch call is no answer (None), never "no panes": each check then asks tmux about its own session.
    const [panesNow, dropPanes] = yield* Effect.cachedInvalidateWithTTL(Effect.option(tmux.paneInfos(sessionPrefix)), snapshotTtl)
    const [screensNow, dropScreens] = yield* Effect.cachedInvalidateWithTTL(
      panesNow.pipe(
        Effect.flatMap(Option.match({
          onNone: () => Effect.succeed(Option.none<ReadonlyMap<string, string>>()),
          onSome: (panes) => Effect.option(tmux.capturePanes([...panes].filter(([, p]) => !p.dead).map(([n]) => n)))
        }))
      ),
      snapshotTtl
    )
    const dropSnapshots = Effect.zipRight(dropPanes, dropScreens)
    const isAlive = (name: string) =>
      Effect.flatMap(panesNow, Option.match({
        onNone: () => agent.isAlive(name),
        onSome: (panes) => {
          const pane = panes.get(agent.sessionName(name))
          return Effect.succeed(pane !== undefined && !pane.dead)
        }
      }))
    const screenOf = (name: string) =>
      Effect.flatMap(screensNow, (screens) => {
        const screen = Option.flatMap(screens, (m) => Option.fromNullable(m.get(agent.sessionName(name))))
        return Option.isSome(screen) ? Effect.succeed(screen.value) : tmux.capturePane(agent.sessionName(name)).pipe(Effect.orElseSucceed(() => ""))
      })

    // Stops an instance's session and every process it started; then a git lock one of them left in its
    // worktree (a commit cut short) is stale, and removed so that git works there again.
    const stopInstance = (name: string) =>
      agent.stop(name).pipe(
        Effect.zipRight(git.removeStaleLock(worktrees.get(name)!)),
        Effect.flatMap((lock) => lock === undefined ? Effect.void : runLog.log("worktree.lock-removed", { instance: name, file: lock })),
        Effect.catchAll((e) => runLog.log("worktree.lock-check-failed", { instance: name, message: e.message }))
      )

    const restart = (name: string, reason: string, next?: Credential) =>
      Effect.gen(function*() {
        // One restart at a time per instance: a rotation and a crash check must not both relaunch it.
        const claimed = yield* Ref.modify(instances, (m) => {
          const i = m.get(name)
          if (i === undefined || i.restarting) return [false, m] as const
          return [true, new Map(m).set(name, { ...i, restarting: true })] as const
        })
        if (!claimed) return yield* runLog.log("instance.restart-skipped", { instance: name, reason, why: "a restart is already under way" })
        yield* restartClaimed(name, reason, next).pipe(Effect.ensuring(update(name, (i) => ({ ...i, restarting: false }))))
      })

    const restartClaimed = (name: string, reason: string, next?: Credential) =>
      Effect.gen(function*() {
        const inst = yield* get(name)
        const restartAt = yield* Clock.currentTimeMillis
        const budget = Supervisor.allowRestart(inst.restartHistory, restartAt, config.maxRestartsPerInstance, 10 * 60_000)
        if (!budget.allowed) {
          yield* update(name, (i) => ({ ...i, status: "stopped" }))
          yield* runLog.log("instance.restart-refused", { instance: name, reason, limit: `${config.maxRestartsPerInstance} per 10 minutes` })
          return
        }
        yield* update(name, (i) => ({
          ...i,
          status: "starting",
          ready: false,
          // A message pasted into the session being replaced, and never taken, goes to the new one.
          outbox: [...i.inFlight, ...i.outbox],
          inFlight: [],
          restarts: i.restarts + 1,
          restartHistory: budget.history,
          lastEventAt: restartAt,
          progressAt: restartAt,
          ladder: Supervisor.initialLadder(restartAt)
        }))
        yield* runLog.log("instance.restarting", { instance: name, reason, restarts: inst.restarts + 1 })
        yield* stopInstance(name)
        // --continue needs a conversation; before its first prompt an instance simply starts afresh.
        const credential = next ?? (yield* credentialFor(name))
        yield* costTracker.setCredential(name, credential.name)
        const generation = yield* agent.launch({ instance: name, worktree: inst.worktree, credential, continueSession: inst.prompted })
        yield* dropSnapshots
        const launchedAt = yield* Clock.currentTimeMillis
        yield* update(name, (i) => ({ ...i, generation, credential: credential.name, lastEventAt: launchedAt }))
        if (inst.prompted) {
          const b = yield* Ref.get(board)
          const task = H.currentTask(b, name)
          // A lead cut off in the middle of its assignments is told who still has nothing to do.
          const idle = H.noTaskYet(H.reportsWithoutTask(inst.spec, b))
          yield* send(name, `[cco] cco restarted you (${reason}); your conversation is restored. ${task !== undefined && task.status === "assigned" ? `Go on with task #${task.id}: commit your work and report with cco team done when it is finished.` : "Go on where you left off."}${idle === undefined ? "" : ` Note: ${idle}.`}`)
        }
        yield* writeState
      }).pipe(Effect.catchAll((e) => runLog.log("instance.restart-failed", { instance: name, reason, message: e.message })))

    const thresholds: Supervisor.Thresholds = {
      stuckAfterMs: config.stuckAfterSeconds * 1000,
      idleAfterMs: config.idleAfterSeconds * 1000,
      escalationIntervalMs: config.escalationIntervalSeconds * 1000,
      startupTimeoutMs: Math.max(120_000, config.healthCheckIntervalSeconds * 4000)
    }

    // Something happened to an instance between two looks at it: a hook, a prompt taken, a restart.
    const movedOn = (before: Instance, after: Instance) =>
      after.lastEventAt !== before.lastEventAt || after.generation !== before.generation || after.restarting

    const healthCheck = (name: string) =>
      Effect.gen(function*() {
        if (yield* Ref.get(windingDown)) return
        const inst = yield* get(name)
        if (inst.restarting) return
        const nowMs = yield* Clock.currentTimeMillis
        const alive = yield* isAlive(name)
        // The screen is read only when an instance has been quiet for a while: idle runs stay cheap.
        const quiet = nowMs - inst.lastEventAt > config.healthCheckIntervalSeconds * 2000
        const screen = alive && quiet && inst.status !== "starting"
          ? yield* screenOf(name)
          : ""
        const decision = Supervisor.decide({
          now: nowMs,
          sessionAlive: alive,
          status: inst.status,
          lastEventAt: inst.lastEventAt,
          progressAt: inst.progressAt,
          pendingWork: H.pendingWork(inst.spec, yield* Ref.get(board)),
          blockingScreen: Supervisor.detectBlockingScreen(screen),
          // A task just assigned waits in the outbox until the instance takes it: that is not idling.
          deliveryPending: inst.outbox.length > 0 && (inst.prompted || inst.roleQueued)
        }, inst.ladder, thresholds)
        const action = decision.action
        const screenBlocked = Supervisor.detectBlockingScreen(screen) !== undefined
        // The instance may have moved on while it was looked at (a hook came in, a prompt was taken): then this
        // round's judgement is stale, and the next round judges it afresh. A dead session is acted on regardless.
        let stale = false
        yield* update(name, (i) => {
          stale = alive && movedOn(inst, i)
          if (stale) return i
          return {
            ...i,
            ladder: decision.ladder,
            status: !alive && i.status !== "stopped"
              ? "crashed"
              : screenBlocked
              ? "waiting-for-input"
              : i.status === "busy" && action._tag !== "None"
              ? "stuck"
              : i.status === "waiting-for-input" && !screenBlocked && quiet
              ? "idle"
              : i.status
          }
        })
        if (stale) return
        // Nudges and interrupts go under the instance's delivery lock, so that they never land in the middle of a
        // prompt being pasted, and only if no prompt went in (nor hook came) while they waited for it.
        const unlessMovedOn = (act: Effect.Effect<void>) =>
          deliveryLocks.get(name)!.withPermits(1)(Effect.flatMap(get(name), (i) => movedOn(inst, i) ? Effect.void : act))
        switch (action._tag) {
          case "None":
            return
          case "Restart":
            return yield* restart(name, action.reason)
          case "Nudge":
            // A busy instance queues pasted text itself; an idle one takes it as its next prompt.
            return yield* unlessMovedOn(
              runLog.log("supervisor.nudge", { instance: name, reason: action.reason }).pipe(
                Effect.zipRight(agent.deliver(name, action.message).pipe(Effect.ignore))
              )
            )
          case "Interrupt":
            return yield* unlessMovedOn(Effect.gen(function*() {
              yield* runLog.log("supervisor.interrupt", { instance: name, reason: action.reason })
              yield* agent.interrupt(name).pipe(Effect.ignore)
              yield* Effect.sleep(Duration.seconds(1))
              yield* agent.deliver(name, action.message).pipe(Effect.ignore)
            }))
          case "Dismiss":
            yield* runLog.log("supervisor.dismiss", { instance: name, reason: action.reason, keys: action.keys })
            return yield* tmux.sendKeys(agent.sessionName(name), action.keys).pipe(Effect.ignore)
        }
      })


    const superviseAll = (supervisors: FiberMap.FiberMap<string>) =>
      Effect.forEach(specs, (spec) =>
        FiberMap.run(
          supervisors,
          spec.name,
          healthCheck(spec.name).pipe(
            Effect.catchAllCause((cause) => runLog.log("supervisor.error", { instance: spec.name, cause: EventsModule.describeCause(cause) })),
            Effect.repeat(Schedule.spaced(Duration.seconds(config.healthCheckIntervalSeconds))),
            Effect.delay(Duration.seconds(config.healthCheckIntervalSeconds))
          )
        ), { discard: true })

    // No health check judges (nor restarts) anything once the run winds down.
    const stopHealthChecks = (supervisors: FiberMap.FiberMap<string>) =>
      Ref.set(windingDown, true).pipe(Effect.zipRight(FiberMap.clear(supervisors)))

    return { restart, stopInstance, superviseAll, stopHealthChecks }
  })

export type Supervision = Effect.Effect.Success<ReturnType<typeof makeSupervision>>
