// Alerts (`notify`) in whole runs with the fake agent and local HTTP receivers on 127.0.0.1: an instance left
// stopped, a merge's failed check and the run's end reach the receivers with their facts; receivers that fail or
// never answer hold up neither the run nor its end (beyond the short grace), and are logged once, by host only.
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { readFileSync } from "node:fs"
import { createServer, type ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import * as path from "node:path"
import type { Brain } from "../src/MockBrain.js"
import { userTexts } from "../src/MockBrain.js"
import { startMockModel } from "../src/MockModel.js"
import { teamScript } from "../src/TeamScript.js"
import { fakeClaudeBin, readLog, runFixture, useFixture } from "./harness.js"
import { GATE_CHECK } from "./scenarios.js"

interface Received {
  readonly path: string
  readonly type: string
  readonly body: Record<string, unknown>
}

/** A webhook receiver on 127.0.0.1: answers 200, 500, or never; what it received is recorded. Closed with the scope. */
const receiver = (answer: "ok" | "fail" | "hang") =>
  Effect.acquireRelease(
    Effect.async<{ readonly url: string; readonly received: Array<Received>; readonly close: () => void }>((resume) => {
      const received: Array<Received> = []
      const hanging: Array<ServerResponse> = []
      const server = createServer((req, res) => {
        let text = ""
        req.on("data", (d) => (text += d))
        req.on("end", () => {
          received.push({ path: req.url ?? "", type: String(req.headers["content-type"]), body: JSON.parse(text) as Record<string, unknown> })
          if (answer === "hang") return void hanging.push(res)
          res.writeHead(answer === "ok" ? 200 : 500).end(answer === "ok" ? "ok" : "no")
        })
      })
      server.listen(0, "127.0.0.1", () =>
        resume(Effect.succeed({
          url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
          received,
          close: () => {
            server.closeAllConnections()
            server.close()
          }
        })))
    }),
    (r) => Effect.sync(() => r.close())
  )

/** The team, except that worker-1 kills its own CLI (`kill -9 $PPID` from its Bash tool) at every turn. */
const worker1KillsItself: Brain = (req) => {
  const first = userTexts(req)[0] ?? ""
  if (/^You are worker-1, a worker\b/m.test(first)) {
    return { _tag: "ToolUse", text: "Working.", tools: [{ name: "Bash", input: { command: "kill -9 $PPID", description: "Work" } }] }
  }
  return teamScript()(req)
}

const fast = { healthCheckIntervalSeconds: 1, stuckAfterSeconds: 20, idleAfterSeconds: 60, escalationIntervalSeconds: 5 }

/** Wall time of `self` in ms, beside its value. */
const timed = <A, E, R>(self: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const started = performance.now()
    const value = yield* self
    return { value, ms: performance.now() - started }
  })

describe("alerts with the fake agent", () => {
  it.scopedLive("an instance left stopped and the run's end reach the receivers, in both formats; a receiver that hangs holds the end 5 s at most", () =>
    Effect.gen(function*() {
      const json = yield* receiver("ok")
      const slack = yield* receiver("ok")
      const hung = yield* receiver("hang")
      const mock = yield* startMockModel({ brain: worker1KillsItself })
      const fixture = yield* useFixture({
        workerCount: 1,
        mockUrl: mock.url,
        maxRunDurationMinutes: 0.5,
        extra: {
          ...fast,
          maxRestartsPerInstance: 1,
          notify: [
            { url: `${json.url}/hooks/json-SECRETPATH` },
            { url: `${slack.url}/services/T0/B0/SLACKSECRET`, format: "slack" },
            { url: `${hung.url}/hooks/HUNGSECRET`, events: ["run-finished"] }
          ]
        }
      })
      const { value: summary, ms } = yield* timed(runFixture(fixture, fakeClaudeBin))
      expect(summary.reason).toBe("time-limit")
      expect(summary.instances.find((i) => i.name === "worker-1")?.status).toBe("stopped")
      const log = readLog(summary.runFolder)
      // (A stopped instance whose session is gone is refused a restart at every health check: one alert all the same.)
      const refused = log.filter((l) => l.event === "instance.restart-refused")
      expect(refused.length).toBeGreaterThanOrEqual(1)
      expect(new Set(refused.map((l) => l.instance))).toEqual(new Set(["worker-1"]))

      // The JSON receiver: the instance left stopped, then the end with its summary, at the path configured.
      const events = json.received.map((r) => r.body.event)
      expect(events).toEqual(["instance-stopped", "run-finished"])
      expect(json.received.every((r) => r.path === "/hooks/json-SECRETPATH" && r.type === "application/json")).toBe(true)
      const stopped = json.received[0]!.body
      expect(stopped).toMatchObject({ event: "instance-stopped", run: summary.runId, instance: "worker-1", limit: "1 per 10 minutes" })
      expect(Date.parse(String(stopped.at))).toBe(Date.parse(String(log.find((l) => l.event === "instance.restart-refused")!.time)))
      const finished = json.received[1]!.body
      expect(finished).toMatchObject({
        event: "run-finished",
        run: summary.runId,
        reason: "time-limit",
        targetBranch: "main",
        durationMs: summary.durationMs,
        merges: summary.merges.length,
        commitsOnTarget: summary.commitsOnTarget,
        costUsd: summary.costs.total.usd
      })
      expect(String(finished.text)).toMatch(/^the run finished: time-limit after \d+s, 0 merges, /)

      // Slack: one line of text each.
      expect(slack.received.map((r) => r.body)).toEqual([
        { text: expect.stringMatching(new RegExp(`^cco run ${summary.runId}: worker-1 is left stopped: it was restarted as often as allowed \\(1 per 10 minutes\\); the last cause: `)) },
        { text: expect.stringMatching(new RegExp(`^cco run ${summary.runId}: the run finished: time-limit after `)) }
      ])

      // The receiver that never answers got run-finished only (its events), and held the end for the grace at most.
      expect(hung.received.map((r) => r.body.event)).toEqual(["run-finished"])
      expect(ms - summary.durationMs).toBeLessThan(5_000 + 4_000)
      expect(log.filter((l) => l.event === "notify.unsent").map((l) => [l.webhook, l.alerts])).toEqual([[hung.url, ["run-finished"]]])
      expect(log.filter((l) => l.event === "notify.failed" && l.webhook !== hung.url)).toEqual([])

      // No webhook's secret path in the log or the state.
      for (const file of ["combined.log", "state.json"]) expect(readFileSync(path.join(summary.runFolder, file), "utf8")).not.toContain("SECRET")
    }), { timeout: 180_000 })

  it.scopedLive("a merge's failed check is alerted; receivers that fail or never answer slow neither the run nor its end, and are logged once", () =>
    Effect.gen(function*() {
      const json = yield* receiver("ok")
      const failing = yield* receiver("fail")
      const hung = yield* receiver("hang")
      const mock = yield* startMockModel({ brain: teamScript({ brokenFirst: ["worker-1"] }) })
      const fixture = yield* useFixture({
        workerCount: 2,
        mockUrl: mock.url,
        extra: {
          checkCommand: GATE_CHECK,
          checkTimeoutMinutes: 2,
          notify: [
            { url: `${json.url}/hooks/json-SECRETPATH` },
            { url: `${failing.url}/hooks/FAILSECRET` },
            { url: `${hung.url}/hooks/HUNGSECRET` }
          ]
        }
      })
      const { value: summary, ms } = yield* timed(runFixture(fixture, fakeClaudeBin))
      expect(summary.reason).toBe("project-done")
      const log = readLog(summary.runFolder)

      // The merge refused by its check, after the retry: one alert with its facts.
      const failedCheck = log.find((l) => l.event === "check.failed" && l.attempt === 2)!
      expect(json.received.map((r) => r.body.event)).toEqual(["check-failed", "run-finished"])
      expect(json.received[0]!.body).toMatchObject({
        event: "check-failed",
        run: summary.runId,
        from: "worker-1",
        into: "main",
        commit: failedCheck.commit,
        attempts: 2,
        exitCode: 3,
        timedOut: false,
        log: failedCheck.log
      })
      expect(json.received[1]!.body).toMatchObject({ event: "run-finished", reason: "project-done", merges: 2, checks: summary.checks })

      // The refusal went to em-1 at once: no alert was waited for, though two receivers were failing.
      const refusal = log.find((l) => l.event === "team.reply" && l.command === "merge" && l.ok === false)!
      expect(Date.parse(String(refusal.time)) - Date.parse(String(failedCheck.time))).toBeLessThan(2_000)
      // The receiver that fails was tried again (with backoff). Its alert is then logged as failed once, by its host,
      // if all four attempts (over 7 s) were through before the run ended; otherwise it is among the unsent at the
      // end. The one that hangs had its POSTs cut off after 5 s: logged once if all its attempts were through.
      expect(failing.received.length).toBeGreaterThanOrEqual(2)
      const failures = log.filter((l) => l.event === "notify.failed")
      // (The alerts a webhook takes go out one after another: one still retrying at the end holds those after it.)
      const failingFailed = failures.filter((l) => l.webhook === failing.url)
      const failingUnsent = log.filter((l) => l.event === "notify.unsent" && l.webhook === failing.url).flatMap((l) => l.alerts as Array<string>)
      if (failingUnsent.includes("check-failed")) {
        expect(failingFailed).toEqual([])
      } else {
        expect(failingFailed).toEqual([expect.objectContaining({ reason: "status", status: 500, alert: "check-failed" })])
      }
      expect(failures.filter((l) => l.webhook === hung.url).length).toBeLessThanOrEqual(1)
      expect(failures.every((l) => l.webhook === failing.url || (l.webhook === hung.url && l.reason === "timeout"))).toBe(true)
      // What the failing receivers never took at the end (run-finished at least) is said.
      const unsent = log.filter((l) => l.event === "notify.unsent")
      expect(unsent.find((l) => l.webhook === hung.url)?.alerts).toEqual(expect.arrayContaining(["run-finished"]))
      expect(unsent.find((l) => l.webhook === json.url)).toBeUndefined()
      // The end waited for the grace at most, not for the retries of the failing receivers.
      expect(ms - summary.durationMs).toBeLessThan(5_000 + 4_000)
      for (const file of ["combined.log", "state.json"]) expect(readFileSync(path.join(summary.runFolder, file), "utf8")).not.toContain("SECRET")
    }), { timeout: 180_000 })
})
