// What the dashboard shows of a run: the view (plain JSON, sent to the page over server-sent events) built from a
// status snapshot, the event feed's lines, and the page's first rendering on the server. Every string in it may
// come from an agent: the view is neutralised, and the HTML escapes it.
import { type RunSnapshot, sessionAliveOf } from "./Status.js"
import { neutraliseJson, neutraliseValue } from "./Untrusted.js"

/** The run's limits, when the config is known (`cco run --dashboard`, `cco dashboard --config DIR`). */
export interface DashboardLimits {
  readonly maxCostUsd?: number | undefined
  readonly maxTokens?: number | undefined
}

export interface ViewInstance {
  readonly name: string
  readonly role: string
  readonly lead: string | null
  readonly status: string
  readonly task: string | null
  readonly credential: string
  readonly restarts: number
  readonly costUsd: number | null
  readonly lastEventAt: string
  /** Its tmux session: up, gone, or unknown (tmux could not be asked). */
  readonly session: "up" | "gone" | "unknown"
  /** The host it runs on (config `hosts`; "local" is the orchestrator's machine); null for a run without hosts. */
  readonly host: string | null
}

export interface ViewCommit {
  readonly sha: string
  readonly time: string
  readonly subject: string
}

export interface View {
  readonly runId: string
  readonly folder: string
  readonly targetBranch: string
  readonly startedAt: string
  readonly deadline: string
  readonly endedAt: string | null
  readonly endReason: string | null
  /** Whether the orchestrator is alive (its cco.lock names a live process). */
  readonly alive: boolean
  readonly takenAt: string
  readonly costUsd: number | null
  readonly maxCostUsd: number | null
  readonly tokens: number | null
  readonly maxTokens: number | null
  readonly merges: ReadonlyArray<{ readonly from: string; readonly into: string; readonly commit: string }>
  readonly checks: { readonly runs: number; readonly passed: number; readonly failed: number } | null
  readonly commits: ReadonlyArray<ViewCommit>
  readonly credentials: ReadonlyArray<{
    readonly name: string
    readonly kind: string | null
    readonly status: string
    readonly until: string | null
    readonly instances: ReadonlyArray<string>
    readonly limits: number | null
  }>
  readonly instances: ReadonlyArray<ViewInstance>
}

/** One combined.log line as the feed shows it: time, event, instance (if any) and the rest in one line. */
export interface FeedLine {
  readonly time: string
  readonly event: string
  readonly instance: string | null
  readonly text: string
}

const FEED_TEXT_MAX = 400

/** A combined.log line (already parsed) for the feed; undefined for what is not a log line. */
export const feedLine = (line: unknown): FeedLine | undefined => {
  if (line === null || typeof line !== "object" || Array.isArray(line)) return undefined
  const { event, instance, time, ...rest } = line as Record<string, unknown>
  if (typeof event !== "string" || typeof time !== "string") return undefined
  const text = JSON.stringify(neutraliseValue(rest, FEED_TEXT_MAX)) ?? ""
  return neutraliseJson({
    time,
    event,
    instance: typeof instance === "string" ? instance : null,
    text: text === "{}" ? "" : text.length > FEED_TEXT_MAX ? `${text.slice(0, FEED_TEXT_MAX - 1)}…` : text
  }, FEED_TEXT_MAX)
}

/** The total of a cost.update line's tokens ({input, output, cacheWrite, cacheRead}). */
export const tokensOf = (line: unknown): number | undefined => {
  if (line === null || typeof line !== "object") return undefined
  const l = line as Record<string, unknown>
  if (l["event"] !== "cost.update" || l["tokens"] === null || typeof l["tokens"] !== "object") return undefined
  return Object.values(l["tokens"] as Record<string, unknown>).reduce<number>((n, v) => n + (typeof v === "number" ? v : 0), 0)
}

/** The view of a run at one moment. */
export const makeView = (
  s: RunSnapshot,
  extra: { readonly commits: ReadonlyArray<ViewCommit>; readonly tokens: number | undefined; readonly limits: DashboardLimits }
): View => {
  const { state } = s
  return neutraliseJson({
    runId: state.runId,
    folder: s.folder,
    targetBranch: state.targetBranch,
    startedAt: state.startedAt,
    deadline: state.deadline,
    endedAt: state.endedAt ?? null,
    endReason: state.endReason ?? null,
    alive: s.lock._tag === "Lock" && s.lock.alive,
    takenAt: new Date(s.takenAt).toISOString(),
    costUsd: state.costUsd ?? null,
    maxCostUsd: extra.limits.maxCostUsd ?? null,
    tokens: extra.tokens ?? null,
    maxTokens: extra.limits.maxTokens ?? null,
    merges: state.merges.map((m) => ({ from: m.from, into: m.into, commit: m.commit })),
    checks: state.checks === undefined ? null : { runs: state.checks.runs, passed: state.checks.passed, failed: state.checks.failed },
    commits: extra.commits,
    credentials: (state.credentials ?? []).map((c) => ({
      name: c.name,
      kind: c.kind ?? null,
      status: c.status,
      until: c.until ?? null,
      instances: c.instances ?? state.instances.filter((i) => i.credential === c.name).map((i) => i.name),
      limits: c.limits ?? null
    })),
    instances: state.instances.map((i): ViewInstance => ({
      name: i.name,
      role: i.role,
      lead: i.lead ?? null,
      status: i.status,
      task: i.currentTask ?? null,
      credential: i.credential,
      restarts: i.restarts,
      costUsd: i.costUsd ?? null,
      lastEventAt: i.lastEventAt,
      session: ((alive) => alive === null ? "unknown" : alive ? "up" : "gone")(sessionAliveOf(s, i)),
      host: state.hosts === undefined && i.host === undefined ? null : i.host ?? "local"
    }))
  }, 2_000)
}

// ---------------------------------------------------------------------------------------------------------------
// The page, rendered on the server: the same structure the script (dashboard/app.js) keeps up to date.

const ESCAPES: Readonly<Record<string, string>> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;", "'": "&#39;" }

/** Text for HTML content and quoted attribute values. */
export const escapeHtml = (text: string): string => text.replace(/[&<>"']/g, (c) => ESCAPES[c]!)

const money = (n: number | null) => n === null ? "–" : `$${n.toFixed(2)}`

/** Instances in tree order: the Director, each EM followed by its workers, then anyone without a known lead. */
export const treeOrder = (instances: ReadonlyArray<ViewInstance>): ReadonlyArray<{ readonly instance: ViewInstance; readonly depth: number }> => {
  const names = new Set(instances.map((i) => i.name))
  const out: Array<{ instance: ViewInstance; depth: number }> = []
  const seen = new Set<string>()
  const visit = (i: ViewInstance, depth: number) => {
    if (seen.has(i.name)) return
    seen.add(i.name)
    out.push({ instance: i, depth })
    for (const child of instances.filter((c) => c.lead === i.name)) visit(child, depth + 1)
  }
  for (const root of instances.filter((i) => i.lead === null || !names.has(i.lead))) visit(root, 0)
  for (const rest of instances) visit(rest, 0)
  return out
}

const instanceRow = (i: ViewInstance, depth: number, withHost: boolean) => {
  const cells = [
    `<td class="name"><span class="role role-${escapeHtml(i.role)}">${escapeHtml(i.role)}</span> ${escapeHtml(i.name)}</td>`,
    ...(withHost ? [`<td class="host">${escapeHtml(i.host ?? "local")}</td>`] : []),
    `<td class="status status-${escapeHtml(i.status.replace(/[^a-z-]/g, ""))}">${escapeHtml(i.status)}</td>`,
    `<td class="task">${escapeHtml(i.task ?? "–")}</td>`,
    `<td>${escapeHtml(i.credential === "" ? "–" : i.credential)}</td>`,
    `<td class="num">${i.restarts}</td>`,
    `<td class="num">${money(i.costUsd)}</td>`,
    `<td class="age" data-since="${escapeHtml(i.lastEventAt)}">–</td>`,
    `<td>${escapeHtml(i.session)}</td>`
  ]
  return `<tr class="instance depth-${Math.min(depth, 3)}" data-name="${escapeHtml(i.name)}">${cells.join("")}</tr>`
}

const list = (items: ReadonlyArray<string>, empty: string) =>
  items.length === 0 ? `<li class="empty">${escapeHtml(empty)}</li>` : items.join("")

/** The whole page for a view (or for a run that has not started yet), with the token in its asset URLs. */
export const renderPage = (view: View | undefined, feed: ReadonlyArray<FeedLine>, token: string): string => {
  const t = encodeURIComponent(token)
  const title = view === undefined ? "cco dashboard" : `cco · ${view.runId}`
  // A run over several hosts (config `hosts`) says where each instance runs.
  const withHost = view !== undefined && view.instances.some((i) => i.host !== null)
  const rows = view === undefined ? "" : treeOrder(view.instances).map(({ depth, instance }) => instanceRow(instance, depth, withHost)).join("")
  const merges = view === undefined ? [] : [...view.merges].reverse().map((m) =>
    `<li><code>${escapeHtml(m.commit.slice(0, 10))}</code> ${escapeHtml(m.from)} → ${escapeHtml(m.into)}</li>`
  )
  const commits = view === undefined ? [] : view.commits.map((c) =>
    `<li><code>${escapeHtml(c.sha)}</code> ${escapeHtml(c.subject)}</li>`
  )
  const credentials = view === undefined ? [] : view.credentials.map((c) =>
    `<li>${escapeHtml(c.name)}: ${escapeHtml(c.status)}${c.until === null ? "" : ` until ${escapeHtml(c.until)}`}</li>`
  )
  const feedRows = [...feed].reverse().map((l) =>
    `<li data-instance="${escapeHtml(l.instance ?? "")}"><time>${escapeHtml(l.time.slice(11, 19))}</time> <b>${escapeHtml(l.event)}</b> ${escapeHtml(l.instance ?? "")} <span>${escapeHtml(l.text)}</span></li>`
  )
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>${escapeHtml(title)}</title>
<link rel="stylesheet" href="/app.css?t=${t}">
<script src="/app.js?t=${t}" defer></script>
</head>
<body>
<header>
  <h1>cco <span id="run-id">${escapeHtml(view?.runId ?? "starting…")}</span></h1>
  <span id="live" class="${view?.endedAt == null ? "live" : "ended"}">${view === undefined ? "waiting for the run" : view.endedAt === null ? (view.alive ? "live" : "orchestrator not running") : `ended: ${escapeHtml(view.endReason ?? "")}`}</span>
  <span id="stopped"></span>
</header>
<main>
<section id="totals">
  <h2>Run</h2>
  <dl>
    <dt>elapsed / limit</dt><dd id="elapsed" data-start="${escapeHtml(view?.startedAt ?? "")}" data-deadline="${escapeHtml(view?.deadline ?? "")}" data-ended="${escapeHtml(view?.endedAt ?? "")}">–</dd>
    <dt>cost / limit</dt><dd id="cost">${money(view?.costUsd ?? null)} / ${money(view?.maxCostUsd ?? null)}</dd>
    <dt>tokens</dt><dd id="tokens">${view?.tokens == null ? "–" : view.tokens.toLocaleString("en")}${view?.maxTokens == null ? "" : ` / ${view.maxTokens.toLocaleString("en")}`}</dd>
    <dt>credentials</dt><dd><ul id="credentials">${list(credentials, "–")}</ul></dd>
  </dl>
</section>
<section id="branch">
  <h2>Target branch <code id="target">${escapeHtml(view?.targetBranch ?? "")}</code></h2>
  <p id="checks">${view?.checks == null ? "merge gate off" : `checks: ${view.checks.passed} passed, ${view.checks.failed} failed`}</p>
  <h3>Merges <span id="merge-count">${view?.merges.length ?? 0}</span></h3>
  <ul id="merges">${list(merges, "none yet")}</ul>
  <h3>Last commits</h3>
  <ul id="commits">${list(commits, "–")}</ul>
</section>
<section id="team">
  <h2>Team</h2>
  <table>
    <thead><tr><th>instance</th><th id="host-head"${withHost ? "" : " hidden"}>host</th><th>state</th><th>task</th><th>credential</th><th>restarts</th><th>cost</th><th>last event</th><th>session</th></tr></thead>
    <tbody id="instances">${rows}</tbody>
  </table>
  <div id="pane" hidden>
    <h3>Pane of <span id="pane-name"></span> <button id="pane-close" type="button">close</button></h3>
    <pre id="pane-text"></pre>
  </div>
</section>
<section id="feed">
  <h2>Events <select id="feed-filter"><option value="">all instances</option></select></h2>
  <ol id="events">${feedRows.join("")}</ol>
</section>
</main>
<noscript><p>The live view needs JavaScript; this page shows the run as it was when loaded.</p></noscript>
</body>
</html>
`
}
