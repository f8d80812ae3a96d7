// Hook events from the instances' Claude Code sessions, reduced into each instance's state; API errors go on
// to Rotation, turns and tool uses to delivery, reminders and the cost watch.
import { Effect, Queue, Ref } from "effect"
import type { Delivery } from "./Delivery.js"
import * as EventsModule from "./Events.js"
import type { HookEvent } from "./Events.js"
import * as H from "./Hierarchy.js"
import * as Instances from "./Instances.js"
import type { RunContext } from "./RunContext.js"
import type { SpendWatch } from "./SpendWatch.js"
import * as StopFailure from "./StopFailure.js"

export const makeHooks = (ctx: RunContext, delivery: Delivery, spendWatch: SpendWatch) => {
  const { update, get, runLog, auth, scope } = ctx
  const { wake, remindAfterStop } = delivery
  const limitEvents = ctx.limitEvents
  const board = ctx.board
  // --- hook events
  const onHook = (event: HookEvent) =>
    Effect.gen(function*() {
      const name = event.instance
      const at = event.receivedAt
      const fields: Record<string, unknown> = { instance: name, generation: event.generation, hook: event.hook }
      switch (event.hook) {
        case "SessionStart":
          yield* update(name, (i) => Instances.sessionStarted(i, at))
          fields.source = event.payload.source
          break
        case "UserPromptSubmit":
          yield* update(name, (i) => Instances.promptSubmitted(i, at))
          break
        case "PostToolUse":
        case "PostToolUseFailure":
          yield* update(name, (i) => Instances.toolUsed(i, at))
          fields.tool = event.payload.tool_name
          break
        case "Stop":
          {
            // A reported task makes the instance "done" until it gets new work.
            const task = H.currentTask(yield* Ref.get(board), name)
            const rests = task !== undefined && task.status !== "assigned" && task.assignee === name
            // The end of a turn that only answered a reminder is no progress: the ladder goes on from the reminder.
            yield* update(name, (i) => Instances.turnEnded(i, { rests, at }))
            const inst = yield* get(name)
            if (inst.credential !== "") yield* auth.reportSuccess(inst.credential)
            yield* remindAfterStop(name, at)
          }
          break
        case "StopFailure": {
          const limit = StopFailure.classifyStopFailure(event.payload, new Date(at))
          // Ignored while the session is starting or being replaced (see Instances.apiFailed).
          yield* update(name, (i) => Instances.apiFailed(i, limit, at))
          fields.error = event.payload.error
          fields.limit = limit._tag
          yield* Queue.offer(limitEvents, { instance: name, generation: event.generation, limit })
          break
        }
        case "SessionEnd":
          yield* update(name, (i) => Instances.sessionEnded(i, at))
          fields.reason = event.payload.reason
          break
        default:
          if (event.hook === "Notification") {
            fields.notification = event.payload.notification_type ?? event.payload.message
            // A permission or other question waits for a person; the supervisor answers it.
            // (The idle notice, "Claude is waiting for your input", is just idle.)
            const waiting = event.payload.notification_type === "permission_prompt" || /permission/i.test(String(event.payload.message ?? ""))
            yield* update(name, (i) => Instances.notified(i, waiting, at))
          } else {
            yield* update(name, (i) => Instances.eventSeen(i, at))
          }
      }
      yield* runLog.log("hook", fields)
      if (event.hook === "SessionStart" || event.hook === "Stop") yield* wake(name)
      if (event.hook === "Stop" || event.hook === "PostToolUse" || event.hook === "PostToolUseFailure") yield* spendWatch.spent(name)
    })

  // A bad event costs that event only: the loop outlives any failure in handling one.
  const consume = EventsModule.consumeHooks(ctx.events.hooks, onHook).pipe(Effect.forkIn(scope))
  return { onHook, consume }
}
