// TEAM_STRUCTURE.md on the target branch: who leads whom and every task's state, written by cco only —
// at once for the run's milestones, in batches for the team's progress.
import { Duration, Effect, Ref, Schedule } from "effect"
import * as EventsModule from "./Events.js"
import * as H from "./Hierarchy.js"
import type { RunContext } from "./RunContext.js"

export const makeTeamBoard = (ctx: RunContext, writeState: Effect.Effect<void>) =>
  Effect.gen(function*() {
    const { git, runLog, topWorktree } = ctx
    // TEAM_STRUCTURE.md lives on the target branch; only cco writes it.
    const structureDirty = yield* Ref.make(false)
    const writeTeamStructure = (reason: string) =>
      ctx.locked(Effect.gen(function*() {
        yield* Ref.set(structureDirty, false)
        if (yield* git.mergeInProgress(topWorktree)) return
        const content = H.renderTeamStructure(ctx.specs, yield* Ref.get(ctx.board), { runId: ctx.run.runId, target: ctx.target })
        yield* git.commitFile(topWorktree, "TEAM_STRUCTURE.md", content, `cco: update TEAM_STRUCTURE.md (${reason})`)
      })).pipe(
        Effect.catchAll((e) => runLog.log("team-structure.failed", { message: e.message })),
        Effect.zipRight(writeState)
      )

    // Board changes reach TEAM_STRUCTURE.md in batches, so the target branch is not one commit per event.
    const boardChanged = Ref.set(structureDirty, true).pipe(Effect.zipRight(writeState))
    yield* Ref.getAndSet(structureDirty, false).pipe(
      Effect.flatMap((dirty) => dirty ? writeTeamStructure("team progress") : Effect.void),
      Effect.catchAllCause((cause) => runLog.log("team-structure.failed", { message: EventsModule.describeCause(cause) })),
      Effect.repeat(Schedule.spaced(Duration.seconds(10))),
      Effect.forkIn(ctx.scope)
    )
    return { writeTeamStructure, boardChanged }
  })
