// Subscription accounts in memory (scripted agents, TestClock): the spread over the accounts, a usage limit that
// cools exactly its account until the stated reset, instances that wait and resume by themselves when every
// account is in its window, and a run that winds down when the earliest reset is past its time limit.
import { describe, expect, it } from "@effect/vitest"
import { Clock, Effect, Exit, Ref } from "effect"
import { memoryRun } from "./memory/MemoryRun.js"
import { type Behaviour, fail, stop } from "./memory/ScriptedAgent.js"
import { team } from "./memory/team.js"

const summaryOf = <A, E>(exit: Exit.Exit<A, E>): A => {
  if (Exit.isFailure(exit)) throw new Error(`the run failed: ${JSON.stringify(exit.cause)}`)
  return exit.value
}

const accounts = (n: number) =>
  Array.from({ length: n }, (_, i) => ({ name: `max-${i + 1}`, env: { CLAUDE_CODE_OAUTH_TOKEN: `sk-ant-oat01-memory-${i + 1}-${"y".repeat(24)}` } }))

const isTask = (prompt: string) => /# Your task|\[cco\] New task #/.test(prompt)

/** The first whole minute at least `ms` after `now`: what the CLI's "resets 10:27pm (UTC)" names. */
const resetAfter = (now: number, ms: number) => Math.ceil((now + ms) / 60_000) * 60_000

/** The CLI's usage-limit line for a reset at `at` (UTC wall clock). */
const usageLimitLine = (at: number) => {
  const d = new Date(at)
  const h = d.getUTCHours()
  return `You've hit your limit · resets ${h % 12 === 0 ? 12 : h % 12}:${String(d.getUTCMinutes()).padStart(2, "0")}${h < 12 ? "am" : "pm"} (UTC)`
}

/**
 * The team, where a turn that ended without the team seeing it (a failed or dawdled turn) is joined to the next
 * prompt, as the CLI sends a failed prompt again with the next one and as a conversation keeps what was said.
 */
const teamWithHeld = () => {
  const base = team()
  const held = (memory: Map<string, unknown>) => (memory.get("held") as Array<string> | undefined) ?? []
  return {
    hold: (memory: Map<string, unknown>, prompt: string) => void memory.set("held", [...held(memory), prompt]),
    base: ((io, prompt, memory) => {
      const joined = [...held(memory), prompt].join("\n\n")
      memory.delete("held")
      return base(io, joined, memory)
    }) satisfies Behaviour
  }
}

const timeOf = (l: Record<string, unknown>) => Date.parse(String(l.time))

const INTERESTING = /^(instance\.|credential|credentials|run\.|supervisor\.|api\.|limit\.|hook$|prompt\.delivered)/
/** CCO_DEBUG_ACCOUNTS=1: the run's story on stdout. */
const debug = (run: { readonly log: ReadonlyArray<Record<string, unknown>> }) => {
  if (process.env.CCO_DEBUG_ACCOUNTS === undefined) return
  for (const l of run.log) {
    if (INTERESTING.test(String(l.event)) && !(l.event === "hook" && l.hook !== "StopFailure")) {
      console.log(JSON.stringify(l).slice(0, 260))
    }
  }
}

describe("subscription accounts in memory", () => {
  it.scoped("three accounts: instances spread over them; a usage limit cools exactly that account until its reset, its instances move, and it is used again after the reset", () =>
    Effect.gen(function*() {
      let limitedAt: number | undefined
      let reset = 0
      let laterLimit = false
      const { base, hold } = teamWithHeld()
      let dawdler: string | undefined
      const behaviour: Behaviour = (io, prompt, memory) =>
        Effect.gen(function*() {
          const now = yield* Clock.currentTimeMillis
          // The first task turn on max-1 meets the account's usage limit, resetting in about 2 minutes.
          if (limitedAt === undefined && io.credential === "max-1" && io.name.startsWith("worker") && isTask(prompt)) {
            limitedAt = now
            reset = resetAfter(now, 120_000)
            hold(memory, prompt)
            return fail("rate_limit", usageLimitLine(reset))
          }
          // Another worker, on another account, dawdles until max-1's reset has passed, then meets a 429 on its
          // own account: it moves, and the least-used account is max-1 again.
          if (dawdler === undefined && io.name.startsWith("worker") && io.credential !== "max-1" && isTask(prompt)) dawdler = io.name
          if (io.name === dawdler && !laterLimit) {
            hold(memory, prompt)
            // (Not on the first turn after a restart: cco ignores API errors while a restart is still under way.)
            if (limitedAt === undefined || now < reset + 1000 || /cco restarted you/.test(prompt)) return stop("Still reading the code.")
            laterLimit = true
            return fail("rate_limit", "API Error: Request rejected (429) · This request would exceed your account's rate limit.")
          }
          return yield* base(io, prompt, memory)
        })
      const run = yield* memoryRun({
        workerCount: 3,
        accounts: accounts(3),
        extra: { healthCheckIntervalSeconds: 5, idleAfterSeconds: 40, escalationIntervalSeconds: 40 }
      }, behaviour)
      debug(run)
      const summary = summaryOf(run.exit)
      expect(summary.reason).toBe("project-done")
      const launches = yield* Ref.get(run.control.launches)
      // The spread: the four first launches use all three accounts, none holds more than two.
      const first = launches.filter((l) => l.generation === 0).map((l) => l.credential)
      expect(new Set(first)).toEqual(new Set(["max-1", "max-2", "max-3"]))
      for (const name of ["max-1", "max-2", "max-3"]) expect(first.filter((c) => c === name).length).toBeLessThanOrEqual(2)
      // Exactly max-1 cools, until the stated reset.
      const cooling = run.events("credential.cooling")
      expect(cooling[0]).toMatchObject({ credential: "max-1", until: new Date(reset).toISOString(), reason: "usage limit" })
      // Its instances move off it with --continue.
      const movedOff = run.events("credential.rotated").filter((e) => e.from === "max-1")
      expect(movedOff.length).toBeGreaterThanOrEqual(1)
      for (const e of movedOff) expect(["max-2", "max-3"]).toContain(e.to)
      // Nothing is launched on max-1 until its reset; after it, max-1 takes worker-2 when it has to move.
      const launchedOnMax1 = run.events("instance.launched").filter((l) => l.credential === "max-1" && timeOf(l) > limitedAt!)
      expect(launchedOnMax1.length).toBeGreaterThanOrEqual(1)
      for (const l of launchedOnMax1) expect(timeOf(l)).toBeGreaterThanOrEqual(reset)
      expect(run.events("credential.rotated").find((e) => e.instance === dawdler)).toMatchObject({ to: "max-1" })
      expect(launchedOnMax1[0]).toMatchObject({ instance: dawdler, resume: true })
      // The summary shows the spread: every account with the instances on it at the end.
      expect(summary.credentials.map((c) => c.name)).toEqual(["max-1", "max-2", "max-3"])
      expect(summary.credentials.map((c) => c.kind)).toEqual(["token", "token", "token"])
      expect(summary.credentials.find((c) => c.name === "max-1")!.users).toContain(dawdler)
      expect(summary.credentials.find((c) => c.name === "max-1")!.rateLimits).toBe(1)
      expect(summary.instances.find((i) => i.name === dawdler)!.credential).toBe("max-1")
    }), 60_000)

  it.scoped("every account in its window: the instances wait in rate-limited and resume by themselves at the earliest reset; the run completes", () =>
    Effect.gen(function*() {
      const resets: Array<{ readonly credential: string; readonly at: number }> = []
      const { base, hold } = teamWithHeld()
      const behaviour: Behaviour = (io, prompt, memory) =>
        Effect.gen(function*() {
          const now = yield* Clock.currentTimeMillis
          // worker-1's task meets its account's limit (reset in 4 minutes); it moves to em-1's account. When it
          // reports, em-1 meets that account's limit (reset in 2 minutes): every account is in its window.
          const first = resets.length === 0 && io.name === "worker-1" && isTask(prompt)
          const second = resets.length === 1 && io.name === "em-1" && /reports done/.test(prompt)
          if (first || second) {
            const at = resetAfter(now, first ? 240_000 : 120_000)
            resets.push({ credential: io.credential, at })
            hold(memory, prompt)
            return fail("rate_limit", usageLimitLine(at))
          }
          return yield* base(io, prompt, memory)
        })
      const run = yield* memoryRun({ workerCount: 1, accounts: accounts(2), maxRunDurationMinutes: 30 }, behaviour)
      debug(run)
      const summary = summaryOf(run.exit)
      expect(summary.reason).toBe("project-done")
      expect(resets).toHaveLength(2)
      const earliest = resets[1]!
      expect(earliest.at).toBeLessThan(resets[0]!.at)
      // Both instances found every account cooling and waited for the earliest reset.
      const exhausted = run.events("credentials.exhausted")
      expect(new Set(exhausted.map((e) => e.instance))).toEqual(new Set(["em-1", "worker-1"]))
      for (const e of exhausted) expect(e.until).toBe(new Date(earliest.at).toISOString())
      const waitedFrom = Math.max(...exhausted.map(timeOf))
      // Nothing ran between the wait and the earliest reset; at the reset, em-1 (whose turn failed) went on by
      // itself, on the account that reset first, with no person typing "continue".
      const during = run.log.filter((l) => timeOf(l) > waitedFrom && timeOf(l) < earliest.at &&
        (l.event === "instance.launched" || l.event === "prompt.delivered"))
      expect(during).toEqual([])
      const resumed = run.log.filter((l) => l.event === "instance.state" && l.from === "rate-limited" && l.instance === "em-1" && timeOf(l) > waitedFrom)
      expect(resumed.length).toBeGreaterThanOrEqual(1)
      expect(timeOf(resumed[0]!)).toBeGreaterThanOrEqual(earliest.at)
      expect(timeOf(resumed[0]!)).toBeLessThan(earliest.at + 5_000)
      expect(run.log.filter((l) => l.event === "prompt.delivered" && timeOf(l) >= earliest.at).map((l) => l.instance))
        .toEqual(expect.arrayContaining(["em-1", "worker-1"]))
      expect(summary.instances.map((i) => i.credential)).toEqual([earliest.credential, earliest.credential])
      expect(run.virtualMs).toBeGreaterThanOrEqual(earliest.at - timeOf(run.log[0]!) - 60_000)
      expect(run.virtualMs).toBeLessThan(resets[0]!.at - timeOf(run.log[0]!))
      // No prompt of a person's: only cco's own messages went to the panes after the wait.
      const prompts = yield* Ref.get(run.control.prompts)
      expect(prompts.every((p) => !/^continue$/i.test(p.text.trim()))).toBe(true)
    }), 60_000)

  it.scoped("every account in its window until after the time limit: the run winds down at once and says so", () =>
    Effect.gen(function*() {
      let limits = 0
      const { base, hold } = teamWithHeld()
      const behaviour: Behaviour = (io, prompt, memory) =>
        Effect.gen(function*() {
          const now = yield* Clock.currentTimeMillis
          // As above, but both resets are three hours ahead, past the run's hour.
          if ((limits === 0 && io.name === "worker-1" && isTask(prompt)) || (limits === 1 && io.name === "em-1" && /reports done/.test(prompt))) {
            limits++
            hold(memory, prompt)
            return fail("rate_limit", usageLimitLine(resetAfter(now, 3 * 3_600_000)))
          }
          return yield* base(io, prompt, memory)
        })
      const run = yield* memoryRun({ workerCount: 1, accounts: accounts(2), maxRunDurationMinutes: 60 }, behaviour)
      debug(run)
      const summary = summaryOf(run.exit)
      expect(summary.reason).toBe("usage-limit")
      expect(run.events("run.usage-limit")).toHaveLength(1)
      expect(String(run.events("run.usage-limit")[0]!.message)).toMatch(/after the run's time limit/)
      expect(run.events("run.ending")).toEqual([expect.objectContaining({ reason: "usage-limit" })])
      // It ended long before its hour was up.
      expect(run.virtualMs).toBeLessThan(10 * 60_000)
    }), 60_000)
})
