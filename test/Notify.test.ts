// Alerts (orchestrator.json's `notify`): which combined.log lines are alerts, their bodies, the option's checks,
// and delivery — retried on its schedule (TestClock), bounded in time, a failing webhook logged once, never
// holding up the run, and the grace at the end.
import { FileSystem, Path } from "@effect/platform"
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import { NodeContext } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Clock, Effect, Exit, Fiber, Layer, Redacted, Scope, TestClock } from "effect"
import { createServer, type IncomingMessage } from "node:http"
import type { AddressInfo } from "node:net"
import * as Config from "../src/Config.js"
import { makeConfig } from "../src/Library.js"
import * as Notify from "../src/Notify.js"
import type { LogLine } from "../src/RunLog.js"
import { tempDir } from "./support.js"

const run: Notify.RunInfo = { runId: "2026-11-29_01-02-03", target: "main", top: "em-1" }
const SLACK_URL = "https://hooks.slack.example/services/T000/B000/TOPSECRETPATH"
const JSON_URL = "https://alerts.example.test/hook?token=TOPSECRETQUERY"

const webhook = (url: string, format: "json" | "slack" = "json", events: ReadonlyArray<Notify.AlertEvent> = Notify.ALERT_EVENTS): Notify.Webhook => ({
  url: Redacted.make(url),
  format,
  events: [...events]
})

const line = (event: string, fields: Record<string, unknown> = {}, time = "2026-11-29T01:05:00.000Z"): LogLine => ({ time, event, ...fields })

/** A combined.log in memory: lines in order, listeners told as each is written (as RunLog does). */
const memoryLog = () => {
  const lines: Array<LogLine> = []
  const listeners: Array<(l: LogLine) => void> = []
  const runLog = {
    log: (event: string, fields: Readonly<Record<string, unknown>> = {}) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Effect.sync(() => {
          const l = { time: new Date(now).toISOString(), event, ...fields }
          lines.push(l)
          for (const listener of listeners) listener(l)
        })),
    listen: (listener: (l: LogLine) => void) => Effect.sync(() => void listeners.push(listener))
  }
  return { lines, runLog, events: (event: string) => lines.filter((l) => l.event === event) }
}

interface Call {
  readonly at: number
  readonly url: string
  readonly body: Record<string, unknown>
  readonly headers: Readonly<Record<string, string>>
}

/** An HttpClient whose every request is answered by `answer` (a status, or never); the requests are recorded. */
const receiver = (answer: (n: number, url: URL) => Effect.Effect<number>) => {
  const calls: Array<Call> = []
  const client = HttpClient.make((request, url) =>
    Effect.gen(function*() {
      const at = yield* Clock.currentTimeMillis
      const raw = request.body._tag === "Uint8Array" ? new TextDecoder().decode(request.body.body) : ""
      calls.push({ at, url: url.toString(), body: JSON.parse(raw) as Record<string, unknown>, headers: request.headers })
      const status = yield* answer(calls.length, url)
      return HttpClientResponse.fromWeb(request, new Response(null, { status }))
    }))
  return { calls, layer: Layer.succeed(HttpClient.HttpClient, client) }
}

/** Lets the delivery fibers run up to their next wait on the clock. */
const settle = Effect.repeatN(Effect.yieldNow(), 50)

/** Alerts started in a scope of their own (closed by the test, to see the end's grace). */
const started = (webhooks: ReadonlyArray<Notify.Webhook>, layer: Layer.Layer<HttpClient.HttpClient>) =>
  Effect.gen(function*() {
    const log = memoryLog()
    const scope = yield* Scope.make()
    yield* Notify.start({ webhooks, run, runLog: log.runLog }).pipe(Effect.provide(layer), Scope.extend(scope))
    return { ...log, scope }
  })

const stoppedLine = (instance = "worker-1") => ["instance.restart-refused", { instance, reason: "session exited", limit: "1 per 10 minutes" }] as const

describe("Notify: which log lines are alerts", () => {
  it("an instance left stopped, once; the credentials exhausted, once per earliest reset; a merge's failed check after its retry or a timeout", () => {
    const alerts = Notify.makeAlerts(run)
    const stopped = alerts(line(...stoppedLine()))
    expect(stopped).toEqual({
      event: "instance-stopped",
      at: "2026-11-29T01:05:00.000Z",
      text: "worker-1 is left stopped: it was restarted as often as allowed (1 per 10 minutes); the last cause: session exited",
      fields: { instance: "worker-1", reason: "session exited", limit: "1 per 10 minutes" }
    })
    expect(alerts(line(...stoppedLine()))).toBeUndefined()
    expect(alerts(line(...stoppedLine("worker-2")))?.fields).toMatchObject({ instance: "worker-2" })
    // Restarted after all once its restart window moved on, and left stopped again: told again.
    expect(alerts(line("instance.restarting", { instance: "worker-1", reason: "crashed", restarts: 3 }))).toBeUndefined()
    expect(alerts(line(...stoppedLine()))?.event).toBe("instance-stopped")
    expect(alerts(line(...stoppedLine()))).toBeUndefined()

    const cooling = { instance: "worker-1", until: "2026-11-29T02:00:00.000Z", cooling: ["key-1", "key-2"] }
    expect(alerts(line("credentials.exhausted", cooling))).toMatchObject({
      event: "credentials-exhausted",
      text: "every credential is cooling (key-1, key-2) until 2026-11-29T02:00:00.000Z; worker-1 and any other instance that needs one wait",
      fields: { reason: "cooling", until: cooling.until, cooling: ["key-1", "key-2"], instance: "worker-1" }
    })
    // Every waiting instance logs it, again after each slice of the wait: one alert until the reset moves.
    expect(alerts(line("credentials.exhausted", { ...cooling, instance: "em-1" }))).toBeUndefined()
    expect(alerts(line("credentials.exhausted", { ...cooling, until: "2026-11-29T03:00:00.000Z" }))?.event).toBe("credentials-exhausted")
    expect(alerts(line("credentials.none-usable", { instance: "worker-2" }))).toMatchObject({
      event: "credentials-exhausted",
      fields: { reason: "none-usable", instance: "worker-2" }
    })

    const check = { into: "main", from: "worker-1", commit: "abc123", exitCode: 3, timedOut: false, log: "/run/checks/1-em-1-2.log", durationMs: 900 }
    expect(alerts(line("check.failed", { ...check, attempt: 1 }))).toBeUndefined()
    expect(alerts(line("check.failed", { ...check, attempt: 2 }))).toEqual({
      event: "check-failed",
      at: "2026-11-29T01:05:00.000Z",
      text: "the check failed with exit code 3, and again on the retry, on worker-1's work merged into main; main is unchanged",
      fields: { from: "worker-1", into: "main", commit: "abc123", attempts: 2, exitCode: 3, timedOut: false, log: check.log }
    })
    expect(alerts(line("check.failed", { ...check, attempt: 2 }))).toBeUndefined()
    expect(alerts(line("check.failed", { ...check, commit: "def456", attempt: 1, exitCode: null, timedOut: true }))?.text)
      .toBe("the check timed out on worker-1's work merged into main; main is unchanged")
    expect(alerts(line("check.failed", { ...check, from: "em-1", commit: "0ff1ce", attempt: 2 }))?.text)
      .toBe("the check failed with exit code 3, and again on the retry, on main before its push at the end of the run; main is unchanged")
  })

  it("cost at 80 % once per limit, 100 % once, and the end with its summary", () => {
    const alerts = Notify.makeAlerts(run)
    const warning = { limit: "maxCostUsd", subject: "run", value: 8.1, max: 10, message: "run cost $8.10 is 81% of maxCostUsd $10.00" }
    expect(alerts(line("cost.warning", warning))).toMatchObject({
      event: "cost-80",
      text: "cost at 80 % of a limit: run cost $8.10 is 81% of maxCostUsd $10.00",
      fields: { limit: "maxCostUsd", subject: "run", value: 8.1, max: 10 }
    })
    expect(alerts(line("cost.warning", { ...warning, value: 8.5 }))).toBeUndefined()
    expect(alerts(line("cost.warning", { ...warning, limit: "maxTokens", message: "run tokens 80,000 is 80% of maxTokens 100,000" }))?.event).toBe("cost-80")
    expect(alerts(line("cost.limit", { limits: ["run cost $10.02 is 100% of maxCostUsd $10.00: limit reached"] }))).toMatchObject({
      event: "cost-100",
      text: "cost limit reached, the run winds down: run cost $10.02 is 100% of maxCostUsd $10.00: limit reached"
    })
    expect(alerts(line("cost.limit", { limits: ["again"] }))).toBeUndefined()

    const checks = { runs: 3, passed: 2, failed: 1, totalMs: 5000 }
    expect(alerts(line("run.finished", { reason: "project-done", commitsOnTarget: 17, merges: 7, durationMs: 3_725_000, costUsd: 3.351, checks }))).toEqual({
      event: "run-finished",
      at: "2026-11-29T01:05:00.000Z",
      text: "the run finished: project-done after 1h02m, 7 merges, 17 new commits on main, checks 2 passed, 1 failed, cost $3.35",
      fields: { reason: "project-done", durationMs: 3_725_000, targetBranch: "main", merges: 7, commitsOnTarget: 17, costUsd: 3.351, checks }
    })
    // An interrupted run says only how long it ran.
    expect(Notify.makeAlerts(run)(line("run.finished", { reason: "interrupted", durationMs: 65_000 }))?.text).toBe("the run finished: interrupted after 1m05s")
    for (const quiet of ["instance.restarting", "check.passed", "cost.update", "merge.done", "notify.failed"]) {
      expect(alerts(line(quiet, { instance: "worker-1" })), quiet).toBeUndefined()
    }
  })
})

describe("Notify: bodies", () => {
  const alert = Notify.makeAlerts(run)(line(...stoppedLine()))!

  it("slack: one readable line in {text}; json: the event, the run, the time and the facts", () => {
    expect(Notify.body("slack", run, alert)).toEqual({
      text: "cco run 2026-11-29_01-02-03: worker-1 is left stopped: it was restarted as often as allowed (1 per 10 minutes); the last cause: session exited"
    })
    expect(Notify.body("json", run, alert)).toEqual({
      event: "instance-stopped",
      run: "2026-11-29_01-02-03",
      at: "2026-11-29T01:05:00.000Z",
      text: alert.text,
      instance: "worker-1",
      reason: "session exited",
      limit: "1 per 10 minutes"
    })
  })

  it("text from agents is short, on one line, without escapes, and cannot mention or link in Slack", () => {
    const reason = `\u001b[31mstuck\u001b[0m <!channel> <https://evil.example|click>\nsecond line\u202e ${"x".repeat(5_000)}`
    const a = Notify.makeAlerts(run)(line("instance.restart-refused", { instance: "worker-1", reason, limit: "1 per 10 minutes" }))!
    const slack = String(Notify.body("slack", run, a).text)
    expect(slack).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u202e]/)
    expect(slack).not.toContain("<")
    expect(slack).toContain("&lt;!channel&gt; &lt;https://evil.example|click&gt; second line")
    expect(slack.length).toBeLessThan(800)
    const json = Notify.body("json", run, a)
    expect(String(json.reason).length).toBeLessThanOrEqual(300)
    expect(String(json.reason)).not.toMatch(/[\u0000-\u001f\u202e]/)
  })
})

describe("Notify: delivery", () => {
  it.effect("a failing webhook is tried four times, 1 s, 2 s and 4 s apart, then logged once, by its host only", () =>
    Effect.gen(function*() {
      const hook = receiver(() => Effect.succeed(500))
      const t = yield* started([webhook(SLACK_URL, "slack")], hook.layer)
      const t0 = yield* Clock.currentTimeMillis
      yield* t.runLog.log(...stoppedLine())
      yield* settle
      expect(hook.calls.map((c) => c.at - t0)).toEqual([0])
      for (const step of [1_000, 2_000, 4_000, 60_000]) {
        yield* TestClock.adjust(step)
        yield* settle
      }
      expect(hook.calls.map((c) => c.at - t0)).toEqual([0, 1_000, 3_000, 7_000])
      expect(hook.calls[0]!.url).toBe(SLACK_URL)
      expect(hook.calls[0]!.body.text).toMatch(/^cco run 2026-11-29_01-02-03: worker-1 is left stopped/)
      expect(t.events("notify.failed")).toEqual([expect.objectContaining({
        webhook: "https://…slack.example",
        alert: "instance-stopped",
        reason: "status",
        status: 500
      })])
      // A second alert fails as well: not logged again.
      yield* t.runLog.log(...stoppedLine("worker-2"))
      for (let i = 0; i < 5; i++) {
        yield* TestClock.adjust(10_000)
        yield* settle
      }
      expect(hook.calls).toHaveLength(8)
      expect(t.events("notify.failed")).toHaveLength(1)
      expect(JSON.stringify(t.lines)).not.toContain("TOPSECRET")
      yield* Scope.close(t.scope, Exit.void)
    }))

  it.effect("an answer that will not change (404) is not retried; one that says later (503) is", () =>
    Effect.gen(function*() {
      const gone = receiver(() => Effect.succeed(404))
      const busy = receiver((n) => Effect.succeed(n === 1 ? 503 : 204))
      const t404 = yield* started([webhook(JSON_URL)], gone.layer)
      const t503 = yield* started([webhook(JSON_URL)], busy.layer)
      yield* t404.runLog.log(...stoppedLine())
      yield* t503.runLog.log(...stoppedLine())
      yield* settle
      yield* TestClock.adjust(60_000)
      yield* settle
      expect(gone.calls).toHaveLength(1)
      expect(t404.events("notify.failed")).toEqual([expect.objectContaining({ webhook: "https://…example.test", status: 404 })])
      expect(busy.calls).toHaveLength(2)
      expect(t503.events("notify.failed")).toEqual([])
      expect(busy.calls[1]!.body).toMatchObject({ event: "instance-stopped", run: run.runId, instance: "worker-1" })
      expect(busy.calls[1]!.headers["content-type"]).toBe("application/json")
    }))

  it.effect("a receiver that never answers: the run's log goes on at once; each POST gives up after 5 s; logged once", () =>
    Effect.gen(function*() {
      const hook = receiver((_, url) => url.host === "alerts.example.test" ? Effect.never : Effect.succeed(200))
      const t = yield* started([webhook(JSON_URL), webhook("https://other.example.test/x")], hook.layer)
      const hung = { get calls() { return hook.calls.filter((c) => c.url.startsWith("https://alerts.")) } }
      const good = { get calls() { return hook.calls.filter((c) => c.url.startsWith("https://other.")) } }
      const t0 = yield* Clock.currentTimeMillis
      // Logging the alert's line returns without the clock moving, the POST still open.
      yield* t.runLog.log(...stoppedLine())
      yield* t.runLog.log("team.command", { instance: "em-1" })
      yield* settle
      expect((yield* Clock.currentTimeMillis) - t0).toBe(0)
      expect(t.lines.map((l) => l.event)).toEqual(["instance.restart-refused", "team.command"])
      // The other webhook is not held up by the hung one.
      expect(good.calls).toHaveLength(1)
      expect(hung.calls).toHaveLength(1)
      for (let i = 0; i < 40; i++) {
        yield* TestClock.adjust(1_000)
        yield* settle
      }
      // 5 s each, 1 s, 2 s and 4 s between: attempts at 0, 6, 13 and 22 s.
      expect(hung.calls.map((c) => c.at - t0)).toEqual([0, 6_000, 13_000, 22_000])
      expect(t.events("notify.failed")).toEqual([expect.objectContaining({ webhook: "https://…example.test", reason: "timeout" })])
      expect(good.calls).toHaveLength(1)
    }))

  it.effect("each webhook gets the events it lists", () =>
    Effect.gen(function*() {
      const hook = receiver(() => Effect.succeed(200))
      const t = yield* started([webhook(JSON_URL, "json", ["run-finished"])], hook.layer)
      yield* t.runLog.log(...stoppedLine())
      yield* t.runLog.log("run.finished", { reason: "time-limit", durationMs: 1000 })
      yield* settle
      expect(hook.calls.map((c) => c.body.event)).toEqual(["run-finished"])
    }))

  it.effect("at the end, queued alerts get up to 5 s to go out; a receiver that hangs holds the end no longer", () =>
    Effect.gen(function*() {
      // A receiver that answers after 2 s: the run-finished alert goes out before the scope is closed.
      const slow = receiver(() => Effect.as(Effect.sleep(2_000), 200))
      const a = yield* started([webhook(JSON_URL)], slow.layer)
      yield* a.runLog.log("run.finished", { reason: "project-done", durationMs: 1000 })
      const closingA = yield* Effect.fork(Scope.close(a.scope, Exit.void))
      yield* settle
      expect(closingA.unsafePoll()).toBeNull()
      yield* TestClock.adjust(2_000)
      yield* Fiber.join(closingA)
      expect(slow.calls).toHaveLength(1)
      expect(a.events("notify.unsent")).toEqual([])

      const hung = receiver(() => Effect.never)
      const b = yield* started([webhook(JSON_URL)], hung.layer)
      yield* b.runLog.log("run.finished", { reason: "project-done", durationMs: 1000 })
      const t0 = yield* Clock.currentTimeMillis
      const closingB = yield* Effect.fork(Scope.close(b.scope, Exit.void))
      yield* settle
      yield* TestClock.adjust(4_900)
      yield* settle
      expect(closingB.unsafePoll()).toBeNull()
      yield* TestClock.adjust(100)
      yield* Fiber.join(closingB)
      expect((yield* Clock.currentTimeMillis) - t0).toBe(5_000)
      // What did not go out is said, per webhook.
      expect(b.events("notify.unsent")).toEqual([expect.objectContaining({ webhook: "https://…example.test", alerts: ["run-finished"] })])

      // Nothing queued: the end does not wait at all.
      const c = yield* started([webhook(JSON_URL)], hung.layer)
      yield* Scope.close(c.scope, Exit.void)
    }))

  it.effect("a full queue drops the newest alerts, and says so once", () =>
    Effect.gen(function*() {
      const hung = receiver(() => Effect.never)
      const t = yield* started([webhook(JSON_URL, "json", ["check-failed"])], hung.layer)
      for (let i = 0; i < Notify.QUEUE_CAPACITY + 10; i++) {
        yield* t.runLog.log("check.failed", { into: "main", from: "worker-1", commit: `c${i}`, attempt: 2, exitCode: 1, timedOut: false })
      }
      yield* settle
      yield* TestClock.adjust(60_000)
      yield* settle
      const dropped = t.events("notify.dropped")
      expect(dropped).toHaveLength(1)
      expect(Number(dropped[0]!.dropped)).toBeGreaterThanOrEqual(9)
    }))

  it.effect("without webhooks nothing listens", () =>
    Effect.gen(function*() {
      const log = memoryLog()
      let listened = 0
      yield* Notify.start({ webhooks: [], run, runLog: { ...log.runLog, listen: () => Effect.sync(() => void listened++) } }).pipe(
        Effect.provide(receiver(() => Effect.succeed(200)).layer),
        Effect.scoped
      )
      expect(listened).toBe(0)
    }))
})

/** A local HTTP receiver on 127.0.0.1 answering each request with `status` (and `headers`). */
const localReceiver = (status: number, headers: Readonly<Record<string, string>> = {}) =>
  Effect.acquireRelease(
    Effect.async<{ readonly url: string; readonly requests: Array<{ method: string; path: string; type: string; body: string }> }>((resume) => {
      const requests: Array<{ method: string; path: string; type: string; body: string }> = []
      const server = createServer((req: IncomingMessage, res) => {
        let body = ""
        req.on("data", (d) => (body += d))
        req.on("end", () => {
          requests.push({ method: req.method ?? "", path: req.url ?? "", type: String(req.headers["content-type"]), body })
          res.writeHead(status, headers).end()
        })
      })
      server.listen(0, "127.0.0.1", () => resume(Effect.succeed({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests, server })))
    }),
    (r) => Effect.sync(() => (r as unknown as { server: { close: () => void; closeAllConnections: () => void } }).server.closeAllConnections())
      .pipe(Effect.zipRight(Effect.sync(() => (r as unknown as { server: { close: () => void } }).server.close())))
  )

describe("Notify: a POST over HTTP", () => {
  it.scopedLive("JSON to the webhook; a redirect is not followed; a failure names no part of the URL's path", () =>
    Effect.gen(function*() {
      const ok = yield* localReceiver(204)
      yield* Notify.post(Redacted.make(`${ok.url}/hook/TOPSECRET`), { event: "run-finished" })
      expect(ok.requests).toEqual([{ method: "POST", path: "/hook/TOPSECRET", type: "application/json", body: "{\"event\":\"run-finished\"}" }])

      const elsewhere = yield* localReceiver(200)
      const moved = yield* localReceiver(302, { location: `${elsewhere.url}/stolen` })
      const redirected = yield* Notify.post(Redacted.make(`${moved.url}/hook`), { event: "x" }).pipe(Effect.flip)
      expect(redirected).toMatchObject({ reason: "status", status: 302 })
      expect(redirected.retryable).toBe(false)
      expect(elsewhere.requests).toEqual([])

      const failing = yield* localReceiver(500)
      const failed = yield* Notify.post(Redacted.make(`${failing.url}/hook/TOPSECRET`), {}).pipe(Effect.flip)
      expect(failed).toMatchObject({ reason: "status", status: 500 })
      expect(failed.retryable).toBe(true)

      // A closed port: nobody answers.
      const closed = `${failing.url.replace(/:\d+$/, ":9")}/hook/TOPSECRET`
      const unreachable = yield* Notify.post(Redacted.make(closed), {}).pipe(Effect.flip)
      expect(unreachable.reason).toBe("unreachable")
      expect(JSON.stringify(unreachable) + unreachable.message).not.toContain("TOPSECRET")
    }).pipe(Effect.provide(FetchHttpClient.layer)))
})

describe("Notify: the notify option", () => {
  const minimal = { repositoryUrl: "https://example.test/org/repo.git", workerCount: 2 }
  const load = (notify: unknown) =>
    Effect.gen(function*() {
      const fs = yield* FileSystem.FileSystem
      const path = yield* Path.Path
      const dir = yield* tempDir("cco-notify-")
      yield* fs.writeFileString(path.join(dir, "orchestrator.json"), JSON.stringify({ ...minimal, notify }))
      return yield* Config.loadConfig(dir).pipe(Effect.either)
    }).pipe(Effect.provide(NodeContext.layer))
  const problem = (notify: unknown) =>
    Effect.gen(function*() {
      const result = yield* load(notify)
      if (result._tag === "Right") throw new Error(`accepted: ${JSON.stringify(notify)}`)
      const error = result.left
      expect(`${error.summary} ${JSON.stringify(error)}`).not.toContain("TOPSECRET")
      return `${error.field}: ${error.message}`
    })

  it.scoped("defaults: every event, the json body; the URL kept secret, shown by cco validate as its host", () =>
    Effect.gen(function*() {
      const result = yield* load([{ url: SLACK_URL, format: "slack" }, { url: "http://127.0.0.1:8080/x", events: ["run-finished"] }])
      if (result._tag === "Left") throw new Error(result.left.summary)
      const config = result.right
      expect(config.notify.map((w) => ({ ...w, url: Redacted.value(w.url) }))).toEqual([
        { url: SLACK_URL, format: "slack", events: [...Notify.ALERT_EVENTS] },
        { url: "http://127.0.0.1:8080/x", format: "json", events: ["run-finished"] }
      ])
      expect(String(config.notify[0]!.url)).not.toContain("TOPSECRET")
      const view = Config.redactedView(config) as { notify: unknown }
      expect(view.notify).toEqual([
        { url: "https://…slack.example/<redacted>", format: "slack", events: [...Notify.ALERT_EVENTS] },
        { url: "http://127.0.0.1:8080/<redacted>", format: "json", events: ["run-finished"] }
      ])
      expect(JSON.stringify(view)).not.toContain("TOPSECRET")
      for (const url of ["http://localhost/hook", "http://[::1]:9000/hook", "http://127.1.2.3/x", "https://10.0.0.5/x"]) {
        expect((yield* load([{ url }]))._tag, url).toBe("Right")
      }
    }))

  it.scoped("refused, without showing the URL: http to another machine, other schemes, a password, typos, unknown events", () =>
    Effect.gen(function*() {
      expect(yield* problem([{ url: "http://hooks.example.test/TOPSECRET" }]))
        .toBe("notify[0].url: must be an https:// URL (http:// only to this machine: localhost, 127.0.0.1 or [::1]), got an http:// URL to another host")
      // A URL where the webhook object belongs is the secret itself: only its kind is named.
      expect(yield* problem([SLACK_URL])).toBe("notify[0]: must be a webhook like {\"url\": \"https://…\"}, got a string")
      expect(yield* problem(SLACK_URL)).toBe("notify: must be a list of webhooks like [{\"url\": \"https://…\"}], got a string")
      expect(yield* problem([{ url: "ftp://host/TOPSECRET" }])).toBe("notify[0].url: must be an https:// URL, got \"ftp:\"")
      expect(yield* problem([{ url: "TOPSECRET" }])).toBe("notify[0].url: must be an https:// URL")
      expect(yield* problem([{ url: "https://me:TOPSECRET@host/x" }])).toBe("notify[0].url: must not hold a user name or password (the secret goes in the path)")
      expect(yield* problem([{ url: 5 }])).toBe("notify[0].url: must be an https:// URL in a string")
      expect(yield* problem([{ url: SLACK_URL, formt: "slack" }])).toBe("notify[0].formt: unknown field; did you mean format?")
      expect(yield* problem([{ url: SLACK_URL, format: "teams" }])).toBe("notify[0].format: must be one of \"json\", \"slack\", got \"teams\"")
      expect(yield* problem([{ url: SLACK_URL, events: ["run-finished", "instance-stoped"] }]))
        .toBe("notify[0].events[1]: \"instance-stoped\": unknown event; did you mean instance-stopped?")
      expect(yield* problem([{ url: SLACK_URL, events: [] }])).toBe("notify[0].events: must name at least one event (leave it out for all of them)")
      expect(yield* problem([{ url: SLACK_URL, events: ["cost-80", "cost-80"] }])).toBe("notify[0].events: must not name an event twice")
      expect(yield* problem({ url: SLACK_URL })).toMatch(/^notify: must be a list of webhooks/)
      expect(yield* problem(Array.from({ length: 11 }, () => ({ url: SLACK_URL })))).toBe("notify: must list at most 10 webhooks, got 11")
      expect(yield* problem([{ events: ["cost-80"] }])).toBe("notify[0].url: is required")
    }))

  it.effect("the library's makeConfig takes the same option, with the same words", () =>
    Effect.gen(function*() {
      const error = yield* makeConfig({ ...minimal, notify: [{ url: SLACK_URL, evnts: ["cost-80"] } as never] }).pipe(Effect.flip)
      expect(error.summary).toBe("config object: notify[0].evnts: unknown field; did you mean events?")
    }))
})
