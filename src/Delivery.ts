// Prompt delivery: messages wait in an instance's outbox and go in, in batches, only when it can take them as
// its next turn (one delivery fiber per instance); reminders after a turn that ended with work still pending.
import { Clock, Deferred, Duration, Effect, FiberMap, Option, Queue, Ref, Schedule } from "effect"
import * as ClaudeCode from "./ClaudeCode.js"
import * as H from "./Hierarchy.js"
import * as Outbox from "./Outbox.js"
import * as Instances from "./Instances.js"
import { acceptsPrompt, type RunContext } from "./RunContext.js"
import * as Supervisor from "./Supervisor.js"
import { PANE_MAX } from "./Untrusted.js"

const lockOf = (ctx: RunContext, name: string) => ctx.deliveryLocks.get(name)!

// Looks every 100 ms until the pane's title says the CLI is idle; after 100 waits the prompt goes in regardless.
const untilIdleTitle = Schedule.spaced(Duration.millis(100)).pipe(
  Schedule.intersect(Schedule.recurs(100)),
  Schedule.whileInput((idle: boolean) => !idle)
)

const awaitIdleTitle = (ctx: RunContext, name: string) => {
  const { agent, tmux } = ctx
  return tmux.paneInfo(agent.sessionName(name)).pipe(
    Effect.option,
    Effect.map((info) => Option.isSome(info) && ClaudeCode.isIdleTitle(info.value.title)),
    Effect.repeat(untilIdleTitle),
    Effect.asVoid
  )
}

/** Takes the next batch from the outbox, marking the instance busy with it, if it can take a prompt now. */
const takeBatch = (ctx: RunContext, name: string, at: number) => {
  return Ref.modify(ctx.instances, (m) => {
    const i = m.get(name)
    // Nothing reaches an instance before its role prompt: that is what tells it who it is.
    if (i === undefined || !i.ready || !acceptsPrompt(i.phase) || i.outbox.length === 0 || !(i.prompted || i.roleQueued)) {
      return [undefined, m] as const
    }
    // New work going in restarts the supervisor's clocks: "busy with no progress" counts from now, not
    // from the instance's last hook (the CLI may take seconds to submit it), and the ladder starts over.
    // One paste carries at most PANE_MAX characters: what does not fit waits for the next turn, uncut.
    const [batch, rest] = Outbox.nextBatch(i.outbox, PANE_MAX)
    const next = Instances.promptTaken(i, batch, rest, at)
    return [{ texts: batch, from: Instances.statusName(i.phase), generation: i.generation, prompted: i.prompted }, new Map(m).set(name, next)] as const
  })
}

// A turn that ends with work pending (a report to merge, a task not reported) is followed by a reminder within
// seconds, if the instance still rests then and nothing waits in its outbox; see Supervisor.remindAfterStop.
const remindAfterStop = (ctx: RunContext, name: string, stoppedAt: number) => {
  const { agent, runLog, update } = ctx
  return Effect.gen(function*() {
    const delay = Supervisor.reminderDelayMs(ctx.config.idleAfterSeconds * 1000)
    yield* Effect.sleep(Duration.millis(delay))
    if (yield* Deferred.isDone(ctx.end)) return
    // Under the delivery lock: never in the middle of a prompt being pasted.
    yield* lockOf(ctx, name).withPermits(1)(Effect.gen(function*() {
      const inst = yield* ctx.get(name)
      if (Instances.isRestarting(inst.phase)) return
      const decision = Supervisor.remindAfterStop({
        now: yield* Clock.currentTimeMillis,
        stoppedAt,
        status: Instances.statusName(inst.phase),
        lastEventAt: inst.lastEventAt,
        progressAt: inst.progressAt,
        pendingWork: H.workAfterStop(inst.spec, yield* Ref.get(ctx.board)),
        deliveryPending: inst.outbox.length > 0,
        remindedWithoutWork: inst.reminded
      }, inst.ladder, delay)
      if (decision.action._tag !== "Nudge") return
      const { message, reason } = decision.action
      let claimed = false
      yield* update(name, (i) => {
        if (i.lastEventAt !== stoppedAt || i.generation !== inst.generation || Instances.isRestarting(i.phase) || i.outbox.length > 0) return i
        claimed = true
        return Instances.remindedAfterStop(i, decision.ladder)
      })
      if (!claimed) return
      yield* runLog.log("supervisor.reminder", { instance: name, reason })
      yield* agent.deliver(name, message).pipe(Effect.ignore)
    }))
  }).pipe(Effect.catchAllCause((cause) => runLog.log("supervisor.error", { instance: name, cause: String(cause) })))
}

export const makeDelivery = (ctx: RunContext) =>
  Effect.gen(function*() {
    const { agent, runLog, update, specs } = ctx
    // --- delivery: prompts go in only when the instance is idle; otherwise they wait in its outbox
    const flush = (name: string): Effect.Effect<void> =>
      lockOf(ctx, name).withPermits(1)(Effect.gen(function*() {
        const taken = yield* takeBatch(ctx, name, yield* Clock.currentTimeMillis)
        if (taken === undefined) return
        yield* ctx.signalState
        yield* runLog.log("instance.state", { instance: name, from: taken.from, to: "busy", generation: taken.generation })
        yield* awaitIdleTitle(ctx, name)
        const text = taken.texts.join(Outbox.SEPARATOR)
        yield* agent.deliver(name, text).pipe(
          Effect.tap(() => update(name, (i) => Instances.promptPasted(i, taken.texts))),
          Effect.tap(() => runLog.log("prompt.delivered", { instance: name, chars: text.length, messages: taken.texts.length })),
          Effect.catchAll((e) =>
            // A role prompt that did not go in is not delivered: the instance is not "prompted" by it.
            update(name, (i) => Instances.deliveryFailed(i, taken.texts, taken.prompted)).pipe(
              Effect.zipRight(runLog.log("prompt.failed", { instance: name, message: e.message }))
            ))
        )
      }))

    // One delivery fiber per instance, woken whenever it may have something to take (a message queued, a session
    // started, a turn ended): a wake while it delivers is kept (a sliding queue of one), so none is lost, and the
    // wind-down stops them all at once. Reminders after a turn: one pending per instance, a newer turn's replaces it.
    const deliverers = yield* FiberMap.make<string>()
    const reminders = yield* FiberMap.make<string>()
    const wakes = new Map<string, Queue.Queue<void>>()
    for (const spec of specs) {
      const wake = yield* Queue.sliding<void>(1)
      wakes.set(spec.name, wake)
      yield* FiberMap.run(
        deliverers,
        spec.name,
        Queue.take(wake).pipe(
          Effect.zipRight(flush(spec.name)),
          Effect.catchAllCause((cause) => runLog.log("delivery.error", { instance: spec.name, cause: String(cause) })),
          Effect.forever
        )
      )
    }
    /** Asks the instance's delivery fiber to deliver what it can now. */
    const wake = (name: string) => Effect.asVoid(Queue.offer(wakes.get(name)!, undefined))

    // Each outbox is bounded (Outbox.OUTBOX_LIMITS): the oldest messages give way, never the role prompt.
    const send = (name: string, text: string, options: { readonly role?: boolean } = {}) => {
      let trimmed: Outbox.Enqueued | undefined
      return update(name, (i) => {
        const role = options.role === true
        trimmed = Outbox.enqueue(i.outbox, text, { role, roleFirst: i.roleQueued && !i.prompted })
        return Instances.enqueued(i, trimmed.outbox, role)
      }).pipe(
        Effect.zipRight(Effect.suspend(() =>
          trimmed !== undefined && (trimmed.dropped > 0 || trimmed.truncated)
            ? runLog.log("outbox.trimmed", { instance: name, dropped: trimmed.dropped, droppedChars: trimmed.droppedChars, cut: trimmed.truncated, waiting: trimmed.outbox.length })
            : Effect.void
        )),
        Effect.zipRight(wake(name))
      )
    }

    return {
      flush,
      wake,
      send,
      remindAfterStop: (name: string, stoppedAt: number) => FiberMap.run(reminders, name, remindAfterStop(ctx, name, stoppedAt)).pipe(Effect.asVoid),
      /** No prompt goes in and no reminder is sent from now on (the wind-down). */
      stop: Effect.zipRight(FiberMap.clear(deliverers), FiberMap.clear(reminders))
    }
  })

export type Delivery = Effect.Effect.Success<ReturnType<typeof makeDelivery>>
