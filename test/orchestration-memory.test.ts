// Whole orchestrations in memory (TmuxTest, in-memory Events, scripted agents, TestClock): the run's logic end
// to end — hierarchy, merges, conflicts, rotation, crash and stuck recovery, deadline and cost limit — in about a
// second each, with no tmux and no agent processes (git and the run folder are real, in a temp dir).
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Ref } from "effect"
import { fileOn, filesOn } from "./harness.js"
import { memoryRun } from "./memory/MemoryRun.js"
import { type Behaviour, crash, fail, hang } from "./memory/ScriptedAgent.js"
import { team } from "./memory/team.js"

const summaryOf = <A, E>(exit: Exit.Exit<A, E>): A => {
  if (Exit.isFailure(exit)) throw new Error(`the run failed: ${JSON.stringify(exit.cause)}`)
  return exit.value
}

const shortName = (branch: string) => branch.split("/").at(-1)!

/** `inner`, except for one instance's turns, which `f` decides. */
const except = (name: string, inner: Behaviour, f: Behaviour): Behaviour => (io, prompt, memory) =>
  io.name === name ? f(io, prompt, memory) : inner(io, prompt, memory)

const isTask = (prompt: string) => /# Your task|\[cco\] New task #/.test(prompt)

/** The team, except that `name`'s first task turn ends on a 429, as the CLI ends it. */
const rateLimitedOnce = (name: string): Behaviour => {
  let failed = false
  return except(name, team(), (io, prompt, memory) => {
    if (failed || !isTask(prompt)) return team()(io, prompt, memory)
    failed = true
    return Effect.succeed(fail("rate_limit", "API Error: Request rejected (429) · This request would exceed the rate limit for your organization"))
  })
}

const timeline = (run: { readonly log: ReadonlyArray<Record<string, unknown>> }, events: ReadonlyArray<string>, instance: string) =>
  run.log.filter((l) => events.includes(String(l.event)) && l.instance === instance).map((l) => String(l.event))

describe("in-memory orchestration", () => {
  it.scoped("W=2: one EM and two workers build the project to the end", () =>
    Effect.gen(function*() {
      const run = yield* memoryRun({ workerCount: 2 }, team())
      const summary = summaryOf(run.exit)
      expect(summary.reason).toBe("project-done")
      expect(summary.merges.map((m) => shortName(m.from)).sort()).toEqual(["worker-1", "worker-2"])
      expect(filesOn(run.fixture.bare, "main")).toEqual(expect.arrayContaining(["src/em-1/worker-1.js", "src/em-1/worker-2.js", "TEAM_STRUCTURE.md"]))
      expect(summary.instances.map((i) => i.restarts)).toEqual([0, 0, 0])
    }), 60_000)

  it.scoped("W=6: a Director, two EMs and six workers, with a merge conflict in each team resolved by its EM", () =>
    Effect.gen(function*() {
      const run = yield* memoryRun({ workerCount: 6 }, team({ conflictDrill: true }))
      const summary = summaryOf(run.exit)
      expect(summary.reason).toBe("project-done")
      expect(run.events("merge.conflict").map((e) => shortName(String(e.from))).sort()).toEqual(["worker-2", "worker-5"].sort())
      const merged = summary.merges.map((m) => shortName(m.from)).sort()
      expect(merged).toEqual(["em-1", "em-2", "worker-1", "worker-2", "worker-3", "worker-4", "worker-5", "worker-6"].sort())
      // Both sides of each conflict survive on the target branch.
      const shared = filesOn(run.fixture.bare, "main").filter((f) => f.endsWith("shared.js"))
      expect(shared.length).toBe(2)
      for (const file of shared) expect(fileOn(run.fixture.bare, "main", file)).toMatch(/written by worker-\d[\s\S]*written by worker-\d/)
    }), 60_000)

  it.scoped("a 429 on one credential cools it and moves its instances to the other with --continue", () =>
    Effect.gen(function*() {
      const behaviour = rateLimitedOnce("worker-1")
      const run = yield* memoryRun({ workerCount: 2, keys: 2 }, behaviour)
      const summary = summaryOf(run.exit)
      expect(summary.reason).toBe("project-done")
      const first = (yield* Ref.get(run.control.launches)).find((l) => l.instance === "worker-1")!
      const rotated = run.events("credential.rotated").filter((e) => e.instance === "worker-1")
      expect(rotated).toHaveLength(1)
      expect(rotated[0]).toMatchObject({ from: first.credential, to: first.credential === "key-1" ? "key-2" : "key-1" })
      expect(run.events("credential.cooling")[0]).toMatchObject({ credential: first.credential })
      const relaunch = (yield* Ref.get(run.control.launches)).filter((l) => l.instance === "worker-1")
      expect(relaunch.at(-1)).toMatchObject({ generation: 1, resume: true, credential: rotated[0]!.to })
    }), 60_000)

  it.scoped("with the only credential cooling, the run still ends at its deadline, and nothing is relaunched once the end began", () =>
    Effect.gen(function*() {
      const behaviour = rateLimitedOnce("worker-1")
      const run = yield* memoryRun({ workerCount: 2, keys: 1, maxRunDurationMinutes: 0.5 }, behaviour)
      const summary = summaryOf(run.exit)
      expect(summary.reason).toBe("time-limit")
      expect(run.events("credentials.exhausted").length).toBeGreaterThanOrEqual(1)
      const ending = run.log.findIndex((l) => l.event === "run.ending")
      expect(ending).toBeGreaterThan(0)
      expect(run.log.slice(ending).filter((l) => l.event === "instance.launched" || l.event === "instance.restarting")).toEqual([])
    }), 60_000)

  it.scoped("a crashed instance is restarted with its conversation and finishes its task", () =>
    Effect.gen(function*() {
      let crashed = false
      const behaviour = except("worker-2", team(), (io, prompt, memory) => {
        if (crashed || !isTask(prompt)) return team()(io, prompt, memory)
        crashed = true
        return Effect.succeed(crash)
      })
      const run = yield* memoryRun({ workerCount: 2, extra: { healthCheckIntervalSeconds: 5 } }, behaviour)
      const summary = summaryOf(run.exit)
      expect(summary.reason).toBe("project-done")
      expect(run.events("instance.restarting").filter((e) => e.instance === "worker-2")).toHaveLength(1)
      expect(summary.instances.find((i) => i.name === "worker-2")?.restarts).toBe(1)
      expect(filesOn(run.fixture.bare, "main")).toContain("src/em-1/worker-2.js")
    }), 60_000)

  it.scoped("a worker stuck in a turn is nudged, then interrupted, then restarted, on the clock", () =>
    Effect.gen(function*() {
      const behaviour = except("worker-1", team(), (io, prompt, memory) =>
        memory.has("restarted") || prompt.includes("cco restarted you")
          ? Effect.sync(() => memory.set("restarted", true)).pipe(Effect.zipRight(team()(io, prompt, memory)))
          : isTask(prompt) || memory.has("hung")
          ? Effect.sync(() => memory.set("hung", true)).pipe(Effect.as(hang))
          : team()(io, prompt, memory))
      const run = yield* memoryRun({
        workerCount: 2,
        extra: { healthCheckIntervalSeconds: 5, stuckAfterSeconds: 120, escalationIntervalSeconds: 60 }
      }, behaviour)
      const summary = summaryOf(run.exit)
      expect(summary.reason).toBe("project-done")
      expect(timeline(run, ["supervisor.nudge", "supervisor.interrupt", "instance.restarting"], "worker-1"))
        .toEqual(["supervisor.nudge", "supervisor.interrupt", "instance.restarting"])
      // The ladder's steps keep to the configured times (virtual): stuck after 120 s, then a step a minute.
      const at = (event: string) => Date.parse(String(run.log.find((l) => l.event === event && l.instance === "worker-1")!.time))
      expect(at("supervisor.interrupt") - at("supervisor.nudge")).toBeGreaterThanOrEqual(60_000)
      expect(at("instance.restarting") - at("supervisor.interrupt")).toBeGreaterThanOrEqual(60_000)
      expect(filesOn(run.fixture.bare, "main")).toContain("src/em-1/worker-1.js")
    }), 60_000)

  it.scoped("at maxRunDurationMinutes the run warns, winds down and ends with time-limit", () =>
    Effect.gen(function*() {
      const run = yield* memoryRun({ workerCount: 2, maxRunDurationMinutes: 5 }, team({ idleLeads: ["em-1"] }))
      const summary = summaryOf(run.exit)
      expect(summary.reason).toBe("time-limit")
      expect(run.events("run.time-warning").length).toBeGreaterThanOrEqual(1)
      expect(run.events("run.ending")).toEqual([expect.objectContaining({ reason: "time-limit" })])
      // Nothing is pasted and no reminder goes out once the wind-down began.
      const ending = run.log.findIndex((l) => l.event === "run.ending")
      expect(run.log.slice(ending).filter((l) => l.event === "prompt.delivered" || l.event === "supervisor.reminder")).toEqual([])
      // The end begins at the deadline (virtual time, as combined.log records it).
      const at = (event: string) => Date.parse(String(run.log.find((l) => l.event === event)!.time))
      expect(at("run.ending") - run.startedAt).toBeGreaterThanOrEqual(5 * 60_000)
      expect(at("run.ending") - run.startedAt).toBeLessThan(5 * 60_000 + 5_000)
      // The workers' reported work is merged upward at the end, though their lead never merged it.
      expect(filesOn(run.fixture.bare, "main")).toEqual(expect.arrayContaining(["src/em-1/worker-1.js", "src/em-1/worker-2.js"]))
    }), 60_000)

  it.scoped("the run stops at maxCostUsd, counted from the instances' transcripts", () =>
    Effect.gen(function*() {
      const run = yield* memoryRun(
        { workerCount: 2, extra: { maxCostUsd: 2 } },
        team({ idleLeads: ["em-1"], usagePerTurn: { input: 200_000, output: 20_000 } })
      )
      const summary = summaryOf(run.exit)
      expect(summary.reason).toBe("cost-limit")
      expect(run.events("cost.limit").length).toBeGreaterThanOrEqual(1)
      expect(summary.costs.total.usd).toBeGreaterThanOrEqual(2)
    }), 60_000)
})
