// Alerts (orchestrator.json's `notify`): webhooks told when a run needs a person — an instance left stopped, the
// credentials exhausted, a merge refused by its check after the retry, cost at 80 % and 100 % of a limit, the end.
// Alerts are read off combined.log as it is written; each webhook has a bounded queue drained by a fiber of its
// own, so the run only ever offers. A POST is bounded in time and retried with backoff; a failing webhook is logged
// once, by its scheme and host only (its URL is a secret).
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { Duration, Effect, Option, Queue, Redacted, Schedule, Schema, type Scope } from "effect"
import { webhookOrigin } from "./Config.js"
import { formatUsd } from "./CostTable.js"
import type { AlertEvent, Webhook } from "./OrchestratorFile.js"
import type { LogLine, RunLogShape } from "./RunLog.js"
import * as Secrets from "./Secrets.js"
import { neutraliseLine } from "./Untrusted.js"

export { ALERT_EVENTS, type AlertEvent, type Webhook } from "./OrchestratorFile.js"

/** One alert, whatever the format it is sent in. */
export interface Alert {
  readonly event: AlertEvent
  /** When it happened (the log line's time). */
  readonly at: string
  /** One readable line (a few at most). */
  readonly text: string
  /** The event's facts, for the json body. */
  readonly fields: Readonly<Record<string, unknown>>
}

/** The run the alerts are about. */
export interface RunInfo {
  readonly runId: string
  /** The target branch. */
  readonly target: string
  /** The top instance (Director or single EM): the gate's check of the target at the end is "from" it. */
  readonly top?: string
}

/** A POST still unanswered after this long counts as failed (and is retried). */
export const POST_TIMEOUT = Duration.seconds(5)
/** After a failed POST: again 1 s, 2 s and 4 s later, four attempts in all; then the alert is given up. */
export const deliveryRetry = Schedule.exponential(Duration.seconds(1), 2).pipe(Schedule.intersect(Schedule.recurs(3)))
/** At the end of the run, how long alerts still queued (run-finished among them) may take to go out. */
export const END_GRACE = Duration.seconds(5)
/** Alerts waiting per webhook; more are dropped (and that is logged once). */
export const QUEUE_CAPACITY = 64
/** The longest any one value (an instance's restart reason, a branch) is in an alert. */
const FIELD_MAX = 300

// ---------------------------------------------------------------------------------------------------------------
// combined.log lines → alerts

const text = (v: unknown, max = FIELD_MAX) => neutraliseLine(typeof v === "string" ? v : JSON.stringify(v) ?? "", max)

const Str = Schema.String
const Num = Schema.Number
const opt = Schema.optional

const restartRefused = Schema.decodeUnknownOption(Schema.Struct({ instance: Str, reason: Str, limit: Str }))
const exhausted = Schema.decodeUnknownOption(Schema.Struct({ instance: Str, until: Str, cooling: Schema.Array(Str) }))
const noneUsable = Schema.decodeUnknownOption(Schema.Struct({ instance: Str }))
const checkFailed = Schema.decodeUnknownOption(Schema.Struct({
  into: Str,
  from: Str,
  commit: Str,
  attempt: Num,
  exitCode: Schema.NullOr(Num),
  timedOut: Schema.Boolean,
  log: opt(Str)
}))
const costWarning = Schema.decodeUnknownOption(Schema.Struct({ limit: Str, subject: Str, value: Num, max: Num, message: Str }))
const costLimit = Schema.decodeUnknownOption(Schema.Struct({ limits: Schema.Array(Str) }))
const finished = Schema.decodeUnknownOption(Schema.Struct({
  reason: Str,
  durationMs: Num,
  costUsd: opt(Num),
  merges: opt(Num),
  commitsOnTarget: opt(Num),
  checks: opt(Schema.Struct({ runs: Num, passed: Num, failed: Num, totalMs: Num }))
}))

/** "34s", "12m05s", "2h03m". */
export const formatElapsed = (ms: number): string => {
  const s = Math.max(0, Math.round(ms / 1000))
  if (s < 60) return `${s}s`
  const m = Math.floor(s / 60)
  if (m < 60) return `${m}m${String(s % 60).padStart(2, "0")}s`
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, "0")}m`
}

const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`

/**
 * Reads combined.log lines as they are written and says which are alerts. Each happening is told once: an
 * instance left stopped once (until it is restarted), each exhaustion of the credentials once (again only when the earliest reset
 * changes), a merge's failed check once, 80 % of each limit once, 100 % and the end once.
 */
export const makeAlerts = (run: RunInfo) => {
  const told = new Set<string>()
  const once = (key: string) => {
    if (told.has(key)) return false
    told.add(key)
    return true
  }
  const alert = (line: LogLine, event: AlertEvent, what: string, fields: Record<string, unknown>): Alert => ({
    event,
    at: typeof line.time === "string" ? line.time : "",
    text: what,
    fields
  })
  return (line: LogLine): Alert | undefined => {
    // An instance restarted after all (its restart window moved on) is told about again if it is left stopped again.
    if (line.event === "instance.restarting" && typeof line.instance === "string") told.delete(`stopped:${line.instance}`)
    const pick = <A>(decoded: Option.Option<A>, f: (a: A) => Alert | undefined) => Option.match(decoded, { onNone: () => undefined, onSome: f })
    switch (line.event) {
      case "instance.restart-refused":
        return pick(restartRefused(line), (l) =>
          once(`stopped:${l.instance}`)
            ? alert(line, "instance-stopped", `${text(l.instance, 60)} is left stopped: it was restarted as often as allowed (${text(l.limit)}); the last cause: ${text(l.reason)}`, {
              instance: text(l.instance, 60),
              reason: text(l.reason),
              limit: text(l.limit)
            })
            : undefined)
      case "credentials.exhausted":
        return pick(exhausted(line), (l) =>
          once(`exhausted:${l.until}`)
            ? alert(line, "credentials-exhausted", `every credential is cooling (${text(l.cooling.join(", "))}) until ${text(l.until, 40)}; ${text(l.instance, 60)} and any other instance that needs one wait`, {
              reason: "cooling",
              until: text(l.until, 40),
              cooling: l.cooling.slice(0, 20).map((c) => text(c, 60)),
              instance: text(l.instance, 60)
            })
            : undefined)
      case "credentials.none-usable":
        return pick(noneUsable(line), (l) =>
          once("none-usable")
            ? alert(line, "credentials-exhausted", `no usable credential is left (every one was refused); ${text(l.instance, 60)} is stopped`, {
              reason: "none-usable",
              instance: text(l.instance, 60)
            })
            : undefined)
      case "check.failed":
        return pick(checkFailed(line), (l) => {
          // A failure the gate retries is not yet one: the second, or a timeout (never retried), refuses the merge.
          if (l.attempt < 2 && !l.timedOut) return undefined
          if (!once(`check:${l.into}:${l.commit}`)) return undefined
          const how = l.timedOut ? "timed out" : l.exitCode === null ? "was killed by a signal" : `failed with exit code ${l.exitCode}`
          const merge = l.from === run.top ? `${text(l.into, 120)} before its push at the end of the run` : `${text(l.from, 60)}'s work merged into ${text(l.into, 120)}`
          return alert(line, "check-failed", `the check ${how}${l.attempt >= 2 ? ", and again on the retry," : ""} on ${merge}; ${text(l.into, 120)} is unchanged`, {
            from: text(l.from, 60),
            into: text(l.into, 120),
            commit: text(l.commit, 64),
            attempts: l.attempt,
            exitCode: l.exitCode,
            timedOut: l.timedOut,
            ...(l.log === undefined ? {} : { log: text(l.log, 500) })
          })
        })
      case "cost.warning":
        return pick(costWarning(line), (l) =>
          once(`cost-80:${l.limit}`)
            ? alert(line, "cost-80", `cost at 80 % of a limit: ${text(l.message)}`, {
              limit: text(l.limit, 60),
              subject: text(l.subject, 60),
              value: l.value,
              max: l.max
            })
            : undefined)
      case "cost.limit":
        return pick(costLimit(line), (l) =>
          once("cost-100")
            ? alert(line, "cost-100", `cost limit reached, the run winds down: ${text(l.limits.join("; "))}`, {
              limits: l.limits.slice(0, 10).map((m) => text(m))
            })
            : undefined)
      case "run.finished":
        return pick(finished(line), (l) => {
          if (!once("finished")) return undefined
          const parts = [
            `${text(l.reason, 40)} after ${formatElapsed(l.durationMs)}`,
            ...(l.merges === undefined ? [] : [plural(l.merges, "merge")]),
            ...(l.commitsOnTarget === undefined ? [] : [`${plural(l.commitsOnTarget, "new commit")} on ${text(run.target, 120)}`]),
            ...(l.checks === undefined || l.checks.runs === 0 ? [] : [`checks ${l.checks.passed} passed, ${l.checks.failed} failed`]),
            ...(l.costUsd === undefined ? [] : [`cost ${formatUsd(l.costUsd)}`])
          ]
          return alert(line, "run-finished", `the run finished: ${parts.join(", ")}`, {
            reason: text(l.reason, 40),
            durationMs: l.durationMs,
            targetBranch: text(run.target, 120),
            ...(l.merges === undefined ? {} : { merges: l.merges }),
            ...(l.commitsOnTarget === undefined ? {} : { commitsOnTarget: l.commitsOnTarget }),
            ...(l.costUsd === undefined ? {} : { costUsd: l.costUsd }),
            ...(l.checks === undefined ? {} : { checks: l.checks })
          })
        })
      default:
        return undefined
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Bodies

// Slack reads <…> as links and mentions (<!channel>): its own escapes keep a value plain text.
const slackEscape = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")

/** The body POSTed for an alert: Slack's `{"text"}`, or the event as JSON. */
export const body = (format: Webhook["format"], run: RunInfo, alert: Alert): Readonly<Record<string, unknown>> =>
  format === "slack"
    ? { text: slackEscape(`cco run ${run.runId}: ${alert.text}`) }
    : { event: alert.event, run: run.runId, at: alert.at, text: alert.text, ...alert.fields }

// ---------------------------------------------------------------------------------------------------------------
// Delivery

/** A POST that did not succeed; `message` never holds the URL. */
export class WebhookFailed extends Schema.TaggedError<WebhookFailed>()("WebhookFailed", {
  reason: Schema.Literal("status", "timeout", "unreachable"),
  status: Schema.optional(Schema.Number),
  message: Schema.String
}) {
  /** Worth another attempt: no answer, or one that says "later" (408, 429, 5xx). */
  get retryable(): boolean {
    return this.reason !== "status" || this.status === 408 || this.status === 429 || (this.status ?? 0) >= 500
  }
}

// What a failed fetch says about why, without the request (whose URL the client's own message holds).
const transportProblem = (cause: unknown): string => {
  const inner = (cause as { readonly cause?: { readonly cause?: { readonly code?: unknown; readonly message?: unknown } } })?.cause?.cause
  const code = typeof inner?.code === "string" ? inner.code : undefined
  return code === undefined ? "no answer (connection failed)" : `no answer (${code})`
}

/** One POST of `payload` as JSON to `url`, at most POST_TIMEOUT long; redirects are not followed. */
export const post = Effect.fn("Notify.post")(
  function*(url: Redacted.Redacted<string>, payload: unknown) {
    const client = yield* HttpClient.HttpClient
    const request = HttpClientRequest.post(Redacted.value(url)).pipe(
      HttpClientRequest.setHeader("user-agent", "cco"),
      HttpClientRequest.bodyUnsafeJson(payload)
    )
    const response = yield* client.execute(request).pipe(
      Effect.mapError((e) => new WebhookFailed({ reason: "unreachable", message: e._tag === "RequestError" ? transportProblem(e) : e.reason })),
      Effect.timeoutFail({
        duration: POST_TIMEOUT,
        onTimeout: () => new WebhookFailed({ reason: "timeout", message: `no answer within ${Duration.format(POST_TIMEOUT)}` })
      }),
      // A redirect would take the alert to another address, maybe in the clear: not followed.
      Effect.provideService(FetchHttpClient.RequestInit, { redirect: "manual" })
    )
    if (response.status < 200 || response.status > 299) {
      return yield* new WebhookFailed({ reason: "status", status: response.status, message: `HTTP ${response.status}` })
    }
  }
)

export interface NotifyOptions {
  readonly webhooks: ReadonlyArray<Webhook>
  readonly run: RunInfo
  readonly runLog: Pick<RunLogShape, "log" | "listen">
  /** END_GRACE unless given. */
  readonly grace?: Duration.DurationInput
}

/**
 * Starts the alerts of a run: from now on every combined.log line that is an alert is offered to the queue of each
 * webhook that wants it, and a fiber per webhook delivers them (POST, retried on deliveryRetry). Failures are
 * logged once per webhook (`notify.failed`), alerts dropped from a full queue once (`notify.dropped`). When the
 * scope closes, the alerts still queued get up to `grace` to go out; then the fibers stop, and what was not sent is
 * logged (`notify.unsent`). Without webhooks it does nothing.
 */
export const start = (options: NotifyOptions): Effect.Effect<void, never, HttpClient.HttpClient | Scope.Scope> =>
  Effect.gen(function*() {
    const { webhooks, run, runLog } = options
    if (webhooks.length === 0) return
    const client = yield* HttpClient.HttpClient
    // The URLs are secrets: no text cco writes may carry one.
    for (const w of webhooks) Secrets.remember(w.url, "webhook")
    // Open while nothing is queued or in flight, for the end's grace.
    const idle = yield* Effect.makeLatch(true)
    let pending = 0
    const settled = Effect.sync(() => {
      if (--pending === 0) idle.unsafeOpen()
    })
    const targets = yield* Effect.forEach(webhooks, (webhook) =>
      Effect.gen(function*() {
        const queue = yield* Queue.dropping<Alert>(QUEUE_CAPACITY)
        // `waiting`: the alerts queued or in flight, oldest first (the queue's order).
        const target = { webhook, origin: webhookOrigin(webhook.url), queue, waiting: [] as Array<Alert>, failed: false, dropped: 0, droppedLogged: false }
        const deliver = (alert: Alert) =>
          post(webhook.url, body(webhook.format, run, alert)).pipe(
            Effect.retry({ schedule: deliveryRetry, while: (e) => e.retryable }),
            Effect.catchAll((e) => {
              if (target.failed) return Effect.void
              target.failed = true
              return runLog.log("notify.failed", {
                webhook: target.origin,
                alert: alert.event,
                reason: e.reason,
                ...(e.status === undefined ? {} : { status: e.status }),
                message: e.message,
                note: "later failures of this webhook are not logged"
              })
            }),
            Effect.zipRight(Effect.suspend(() => {
              if (target.dropped === 0 || target.droppedLogged) return Effect.void
              target.droppedLogged = true
              return runLog.log("notify.dropped", { webhook: target.origin, dropped: target.dropped, capacity: QUEUE_CAPACITY })
            }))
          )
        yield* Queue.take(queue).pipe(
          Effect.flatMap((alert) => deliver(alert).pipe(Effect.ensuring(Effect.zipRight(Effect.sync(() => target.waiting.shift()), settled)))),
          Effect.forever,
          Effect.provideService(HttpClient.HttpClient, client),
          Effect.forkScoped
        )
        return target
      }))
    const alerts = makeAlerts(run)
    // Called by the log's writer with each line as written: decides and offers, never waits.
    yield* runLog.listen((line) => {
      let alert: Alert | undefined
      try {
        alert = alerts(line)
      } catch {
        // (No line of the log may be lost to an alert it did not make.)
      }
      if (alert === undefined) return
      for (const target of targets) {
        if (!target.webhook.events.includes(alert.event)) continue
        if (Queue.unsafeOffer(target.queue, alert)) {
          target.waiting.push(alert)
          if (pending++ === 0) idle.unsafeClose()
        } else {
          target.dropped++
        }
      }
    })
    // Runs before the fibers are interrupted (finalizers run last-added first). Finalizers are uninterruptible:
    // the wait is made interruptible again, or the timeout could not cut it short.
    // What is still waiting then is not sent, and said so per webhook (`notify.unsent`).
    yield* Effect.addFinalizer(() =>
      idle.await.pipe(
        Effect.interruptible,
        Effect.timeout(options.grace ?? END_GRACE),
        Effect.ignore,
        Effect.zipRight(Effect.forEach(targets, (t) =>
          t.waiting.length === 0
            ? Effect.void
            : runLog.log("notify.unsent", { webhook: t.origin, alerts: t.waiting.map((a) => a.event), grace: Duration.format(options.grace ?? END_GRACE) }), { discard: true }))
      )
    )
  })

/** The HttpClient alerts go out with: the platform's fetch. */
export const layer = FetchHttpClient.layer
