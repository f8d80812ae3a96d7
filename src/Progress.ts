// What a person watching `cco run` sees: one short line per step that matters, and the end-of-run summary.
import { formatCostTable, formatUsd } from "./CostTable.js"
import type { CredentialSnapshot } from "./CredentialPool.js"
import type { RunSummary } from "./Orchestrator.js"
import type { LogLine } from "./RunLog.js"
import { neutralise, neutraliseLine } from "./Untrusted.js"

// Field values reach the terminal as one neutral line each: no escape sequence or control character, and no
// newline that would pass agent text off as a progress line of its own.
const s = (v: unknown) => neutraliseLine(typeof v === "string" ? v : v === undefined ? "" : JSON.stringify(v) ?? "", 500)
const firstLine = (v: unknown, max = 90) => {
  const line = neutralise(typeof v === "string" ? v : s(v), 100_000).split("\n")[0] ?? ""
  const flat = neutraliseLine(line)
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat
}

/** A progress printer: returns the line to show for a log line, or undefined to stay quiet. */
export const makeProgress = () => {
  let launched = 0
  let ready = 0
  let costShownAt = 0
  const seen = new Set<string>()
  return (l: LogLine): string | undefined => {
    switch (l.event) {
      case "run.starting":
        return `cco run ${s(l.runId)} — ${s(l.workerCount)} workers on ${s(l.repositoryUrl)}\n  run folder: ${s(l.folder)}`
      case "run.sandbox":
        // Unconfined because the machine cannot confine: said loudly, once, before anything starts.
        return l.sandbox === "bwrap"
          ? "instances confined with bubblewrap (sandbox: each writes only its own worktree)"
          : l.sandboxMode === "auto"
          ? `WARNING: instances run UNCONFINED, with all your files in reach: ${s(l.sandboxReason)}. Install bubblewrap (apt-get install bubblewrap) to confine them, or set "sandbox": "none" to say you mean it.`
          : undefined
      case "host.sandbox":
        // The same for the instances of each remote host, decided there.
        return l.sandbox === "bwrap"
          ? `instances on host ${s(l.host)} confined with bubblewrap`
          : l.sandboxMode === "auto"
          ? `WARNING: instances on host ${s(l.host)} run UNCONFINED, with all its files in reach: ${s(l.sandboxReason)}. Install bubblewrap there to confine them, or set "sandbox": "none" to say you mean it.`
          : undefined
      case "git.cloning":
        return `cloning ${s(l.repositoryUrl)} …`
      case "worktree.ready":
        return `worktree ${s(l.progress)}: ${s(l.instance)} on ${s(l.branch)}`
      case "instance.launched":
        launched++
        return `${s(l.instance)} launched${l.resume === true ? " (resumed)" : ""} [${s(l.credential)}] — watch: ${s(l.attach)}`
      case "run.started":
        return `all ${s(l.instances)} instances launched; target branch ${s(l.target)}`
      case "hook":
        if (l.hook === "SessionStart" && !seen.has(s(l.instance))) {
          seen.add(s(l.instance))
          ready++
          return `${s(l.instance)} ready (${ready}/${launched})`
        }
        if (l.hook === "StopFailure") return `${s(l.instance)}: API error ${s(l.error)}`
        return undefined
      case "task.assigned":
        return `${s(l.by)} → ${s(l.instance)}: task #${s(l.task)}: ${firstLine(l.text)}`
      case "task.done":
        return `${s(l.instance)} reports done: ${firstLine(l.summary)}`
      case "task.done-refused":
        return `${s(l.instance)} report refused: ${firstLine(l.reason)}`
      case "merge.done":
        return `merged ${s(l.from)} into ${s(l.into)} (${s(l.commit).slice(0, 10)})`
      case "merge.conflict":
        return `conflict merging ${s(l.from)} into ${s(l.into)}: ${s(l.files)}`
      case "merge.queued":
        return `${s(l.from)} waits in the merge queue of ${s(l.into)} (${s(l.ahead)} ahead)`
      case "check.started":
        return `checking ${s(l.from)} merged into ${s(l.into)} (${s(l.commit).slice(0, 10)})${Number(l.attempt) > 1 ? ", retry" : ""}`
      case "check.passed":
        return `check passed: ${s(l.from)} into ${s(l.into)} in ${duration(Number(l.durationMs))}`
      case "check.failed":
        return `check failed: ${s(l.from)} into ${s(l.into)}: ${l.timedOut === true ? "timed out" : `exit code ${s(l.exitCode)}`} after ${duration(Number(l.durationMs))} — ${s(l.log)}`
      case "setup.failed":
        return `setupCommand failed in ${s(l.instance)}'s worktree: ${s(l.reason)} — ${s(l.log)}`
      case "wip.saved":
        return `saved uncommitted work of ${s(l.instance)} on ${s(l.branch)}`
      case "credential.cooling":
        return `credential ${s(l.credential)} hit its ${s(l.reason)}; cooling${l.until === undefined ? "" : ` until ${s(l.until)}`}`
      case "credential.rotated":
        return `${s(l.instance)} moved from credential ${s(l.from)} to ${s(l.to)} (${s(l.reason)})`
      case "credential.invalid":
        return `credential ${s(l.credential)} is invalid for this run (${firstLine(l.reason)}); instances move off it`
      case "run.usage-limit":
        return `usage limits: ${s(l.message)}`
      case "credentials.exhausted":
        return `${s(l.instance)} waits: every credential is cooling until ${s(l.until)}`
      case "api.overloaded":
        return `${s(l.instance)}: API overloaded; retrying on ${s(l.credential)} in ${Math.round(Number(l.retryInMs) / 1000)} s`
      case "cost.update": {
        // Cost so far, at most every 20 seconds.
        const at = Date.parse(s(l.time))
        if (at - costShownAt < 20_000) return undefined
        costShownAt = at
        return `cost so far: ${formatUsd(Number(l.totalUsd))}`
      }
      case "cost.warning":
        return `cost warning: ${s(l.message)}`
      case "cost.limit":
        return `cost limit reached: ${s(l.limits)}`
      case "cost.unknown-model":
        return `note: model ${s(l.model)} has no known price; counted at the ${s(l.pricedAs)} price`
      case "supervisor.nudge":
        return `${s(l.instance)} nudged: ${s(l.reason)}`
      case "supervisor.interrupt":
        return `${s(l.instance)} interrupted: ${s(l.reason)}`
      case "instance.restarting":
        return `${s(l.instance)} restarting: ${s(l.reason)}`
      case "instance.restart-refused":
        return `${s(l.instance)} left stopped: restart limit reached (${s(l.limit)})`
      case "notify.failed":
        return `alert ${s(l.alert)} to ${s(l.webhook)} failed: ${s(l.message)} (later failures of this webhook are not shown)`
      case "notify.dropped":
        return `alerts to ${s(l.webhook)} dropped: ${s(l.dropped)} more than its queue holds`
      case "notify.unsent":
        return `alerts not sent to ${s(l.webhook)} by the end of the run: ${s(l.alerts)}`
      case "run.time-warning":
        return `the run ends in about ${s(l.left)}: instances told to commit and report`
      case "run.ending":
        return l.reason === "interrupted"
          ? "interrupted: stopping sessions, saving uncommitted work on each instance's branch …"
          : `run ending: ${s(l.reason)} — merging, pushing, stopping sessions …`
      default:
        return undefined
    }
  }
}

const duration = (ms: number) => {
  const sec = Math.round(ms / 1000)
  return sec < 60 ? `${sec}s` : `${Math.floor(sec / 60)}m${String(sec % 60).padStart(2, "0")}s`
}

const KIND_NAMES: Readonly<Record<CredentialSnapshot["kind"], string>> = {
  "oauth": "your login",
  "api-key": "api key",
  "token": "token",
  "login": "login dir"
}

/** One credential in a line: name, kind, state, the instances on it, the limits it hit. */
export const formatCredential = (c: CredentialSnapshot): string => {
  const state = c.status === "cooling" ? `cooling until ${c.until ?? "?"}` : c.status === "invalid" ? `invalid (${firstLine(c.reason ?? "", 60)})` : "ok"
  const on = c.users.length === 0 ? "no instances" : c.users.join(", ")
  return `${c.name.padEnd(10)} ${KIND_NAMES[c.kind].padEnd(10)} ${state}; on it: ${on}; limits hit: ${c.rateLimits}`
}

export const formatSummary = (summary: RunSummary): string => {
  const lines = [
    "",
    `Run ${summary.runId} ended: ${summary.reason} after ${duration(summary.durationMs)}`,
    `  target branch: ${summary.targetBranch} (${summary.commitsOnTarget} new commits, pushed to ${summary.repositoryUrl})`,
    `  merges: ${summary.merges.length}`
  ]
  for (const m of summary.merges) lines.push(`    ${m.from} → ${m.into} (${m.commit.slice(0, 10)})`)
  const c = summary.checks
  if (c !== undefined && c.runs > 0) lines.push(`  checks: ${c.runs} run, ${c.passed} passed, ${c.failed} failed, ${duration(c.totalMs)} in all`)
  lines.push("  instances:")
  for (const i of summary.instances) {
    lines.push(`    ${i.name.padEnd(10)} ${i.role.padEnd(8)} ${i.branch}${i.credential ? ` [${i.credential}]` : ""}${i.restarts > 0 ? ` (${i.restarts} restarts)` : ""}`)
  }
  if (summary.credentials !== undefined && summary.credentials.length > 0) {
    lines.push("  credentials:")
    for (const c of summary.credentials) lines.push(`    ${formatCredential(c)}`)
  }
  lines.push(`  cost: ${formatUsd(summary.costs.total.usd)}`)
  lines.push(...formatCostTable(summary.costs).split("\n").map((l) => `    ${l}`))
  lines.push(`  logs: ${summary.runFolder} (combined.log, session-<instance>.log, state.json)`)
  lines.push(`  worktrees and branches are kept; \`cco cleanup\` removes what is left.`)
  return lines.join("\n")
}
