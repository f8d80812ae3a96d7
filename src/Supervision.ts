// Supervision: one fiber per instance in a FiberMap, a health check every interval (crash, stuck, idle,
// blocking screens) acting by nudge, interrupt, dismissal or restart (Restarts).
import { Clock, Duration, Effect, FiberMap, Option, Ref, Schedule } from "effect"
import * as EventsModule from "./Events.js"
import * as H from "./Hierarchy.js"
import * as Instances from "./Instances.js"
import type { Restarts } from "./Restarts.js"
import type { Instance, RunContext } from "./RunContext.js"
import * as Supervisor from "./Supervisor.js"

// One tmux call a round for all instances' panes and one for their screens: the supervisors of all
// instances run together, so a snapshot younger than half an interval serves the whole round. A restart
// drops it, so that no check sees the session it replaced.
export const makePaneSnapshots = (ctx: RunContext) =>
  Effect.gen(function*() {
    const { config, agent, tmux } = ctx
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
    return { isAlive, screenOf, dropSnapshots }
  })

export type PaneSnapshots = Effect.Effect.Success<ReturnType<typeof makePaneSnapshots>>

const thresholdsOf = (config: RunContext["config"]): Supervisor.Thresholds => ({
  stuckAfterMs: config.stuckAfterSeconds * 1000,
  idleAfterMs: config.idleAfterSeconds * 1000,
  escalationIntervalMs: config.escalationIntervalSeconds * 1000,
  startupTimeoutMs: Math.max(120_000, config.healthCheckIntervalSeconds * 4000)
})

// Something happened to an instance between two looks at it: a hook, a prompt taken, a restart.
const movedOn = (before: Instance, after: Instance) =>
  after.lastEventAt !== before.lastEventAt || after.generation !== before.generation || Instances.isRestarting(after.phase)

interface HealthEnv {
  readonly ctx: RunContext
  readonly windingDown: Ref.Ref<boolean>
  readonly snapshots: PaneSnapshots
  readonly restart: Restarts["restart"]
  readonly thresholds: Supervisor.Thresholds
}

const healthCheck = (env: HealthEnv, name: string) => {
  const { config, agent, tmux, runLog, update, get, board, deliveryLocks } = env.ctx
  const { windingDown, thresholds, restart } = env
  const { isAlive, screenOf } = env.snapshots
  return Effect.gen(function*() {
    if (yield* Ref.get(windingDown)) return
    const inst = yield* get(name)
    if (Instances.isRestarting(inst.phase)) return
    const nowMs = yield* Clock.currentTimeMillis
    const alive = yield* isAlive(name)
    // The screen is read only when an instance has been quiet for a while: idle runs stay cheap.
    const quiet = nowMs - inst.lastEventAt > config.healthCheckIntervalSeconds * 2000
    const screen = alive && quiet && !Instances.Phase.$is("Starting")(Instances.shown(inst.phase))
      ? yield* screenOf(name)
      : ""
    const decision = Supervisor.decide({
      now: nowMs,
      sessionAlive: alive,
      status: Instances.statusName(inst.phase),
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
      return Instances.judged(i, decision.ladder, { alive, screenBlocked, acting: action._tag !== "None", quiet })
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
}

export const makeSupervision = (ctx: RunContext, snapshots: PaneSnapshots, restart: Restarts["restart"]) =>
  Effect.gen(function*() {
    const { config, runLog, specs } = ctx
    // --- supervision: one fiber per instance, a health check every interval
    const windingDown = yield* Ref.make(false)
    const env: HealthEnv = { ctx, windingDown, snapshots, restart, thresholds: thresholdsOf(config) }

    const superviseAll = (supervisors: FiberMap.FiberMap<string>) =>
      Effect.forEach(specs, (spec) =>
        FiberMap.run(
          supervisors,
          spec.name,
          healthCheck(env, spec.name).pipe(
            Effect.catchAllCause((cause) => runLog.log("supervisor.error", { instance: spec.name, cause: EventsModule.describeCause(cause) })),
            Effect.repeat(Schedule.spaced(Duration.seconds(config.healthCheckIntervalSeconds))),
            Effect.delay(Duration.seconds(config.healthCheckIntervalSeconds))
          )
        ), { discard: true })

    // No health check judges (nor restarts) anything once the run winds down.
    const stopHealthChecks = (supervisors: FiberMap.FiberMap<string>) =>
      Ref.set(windingDown, true).pipe(Effect.zipRight(FiberMap.clear(supervisors)))

    return { superviseAll, stopHealthChecks }
  })

export type Supervision = Effect.Effect.Success<ReturnType<typeof makeSupervision>>

