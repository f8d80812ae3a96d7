// A scripted "model" for a whole cco team, for the mock model server: the Director splits the direction
// into goals, EMs split goals into tasks and merge their workers, workers write, check and commit files.
// It reads only the conversation it is sent, as a real model would, so it works across restarts too.
import type { Brain, MockReply, MockRequest } from "./MockBrain.js"
import { authenticationError, rateLimitError, toolResults, userTexts } from "./MockBrain.js"
import { shellQuote } from "./Shell.js"

/** What a hanging worker runs: an unusual duration, so tests can tell its process from anyone else's `sleep`. */
export const hangCommand = "sleep 601"

export interface TeamScriptOptions {
  /** Give the first two workers of each team the same file, so the second merge conflicts. */
  readonly conflictDrill?: boolean
  /** Workers that first report done before writing or committing anything, and must be refused. */
  readonly lazyWorkers?: ReadonlyArray<string>
  /** Workers whose commands hang (sleep) until cco has restarted them. */
  readonly hangUntilRestart?: ReadonlyArray<string>
  /** EMs that never merge their workers' reports (the run's limits must wind it down). */
  readonly idleLeads?: ReadonlyArray<string>
  /** Leads that "resolve" a conflict by committing it with the markers still in, and fix it only when refused. */
  readonly markerLeads?: ReadonlyArray<string>
  /** Workers that rewrite TEAM_STRUCTURE.md in their commit, and undo it only when refused. */
  readonly rogueWorkers?: ReadonlyArray<string>
  /** Workers that, once their report is accepted, commit a file with conflict markers on their branch. */
  readonly markersAfterDone?: ReadonlyArray<string>
  /** Workers that answer the run's time warning by leaving a file above 50 MiB in their worktree, uncommitted. */
  readonly largeFileAtTheEnd?: ReadonlyArray<string>
  /** Leads that commit a file with conflict markers on their own branch just before they report done. */
  readonly markersBeforeDone?: ReadonlyArray<string>
  /**
   * Workers whose first commit adds a line `// BROKEN` to their file (a project check that greps for it fails);
   * a task starting "fix:" (the lead's answer to the refused merge) removes it.
   */
  readonly brokenFirst?: ReadonlyArray<string>
  /**
   * A worker that first tries to reach beyond its own worktree (the user's home, another instance's worktree and
   * token, the run folder and its state, the target branch `main`, the shared git config) and writes what happened to
   * `sandbox-probe-<worker>.txt`, one `<attempt>: blocked|done` line each, before its task as usual.
   */
  readonly sandboxProbe?: { readonly worker: string; readonly other: string; readonly home: string }
}

/** The attempts of TeamScriptOptions.sandboxProbe, run from the worker's worktree (<run folder>/worktrees/<name>). */
export const sandboxProbeCommand = (name: string, other: string, home: string): string => {
  const attempts: ReadonlyArray<readonly [string, string]> = [
    ["write home", `echo escaped > ${shellQuote(`${home}/escaped-by-${name}`)}`],
    ["write other worktree", `echo escaped > ../${other}/escaped-by-${name}`],
    ["write run folder", `echo escaped > ../../escaped-by-${name}`],
    ["read other token", `cat ../../instances/${other}/token.sha256`],
    ["read run state", `cat ../../state.json`],
    ["move target branch", `git update-ref refs/heads/main HEAD`],
    ["write git config", `git config --local core.fsmonitor "echo escaped-by-${name}"`]
  ]
  const lines = attempts.map(([what, command]) => `if ( ${command} ) >/dev/null 2>&1; then echo ${shellQuote(`${what}: done`)}; else echo ${shellQuote(`${what}: blocked`)}; fi`)
  return `{ ${lines.join("; ")}; } > sandbox-probe-${name}.txt; cat sandbox-probe-${name}.txt`
}

/** The line a brokenFirst worker's first commit adds. */
export const brokenLine = "// BROKEN"

export type Role = "director" | "em" | "worker"

// The role prompt's first line, wherever it starts a line: a message cco sent at the same moment may precede it.
export const roleOf = (first: string): { role: Role; name: string } | undefined => {
  if (/^You are the Director\b/m.test(first)) return { role: "director", name: "director" }
  const m = /^You are ((?:em|worker)-\d+), an? (Engineering Manager|worker)\b/m.exec(first)
  if (m === null) return undefined
  return { role: m[1]!.startsWith("em-") ? "em" : "worker", name: m[1]! }
}

export const reportsOf = (first: string): ReadonlyArray<string> => {
  const m = /You (?:lead these (?:Engineering Managers|workers)): ([^.\n]+)\./.exec(first)
  return m === null ? [] : m[1]!.split(",").map((s) => s.trim()).filter((s) => s !== "")
}

const bash = (command: string, text?: string): MockReply => ({
  _tag: "ToolUse",
  ...(text === undefined ? {} : { text }),
  tools: [{ name: "Bash", input: { command, description: text ?? "Run a command" } }]
})

const say = (text: string): MockReply => ({ _tag: "Text", text })

const q = shellQuote

// Reports named as done in the prompt(s) of the current turn: "[cco] worker-2 reports done: …".
const reportedDone = (text: string) => [...text.matchAll(/\[cco\] ((?:em|worker)-\d+) reports done/g)].map((m) => m[1]!)

const merged = (results: ReadonlyArray<string>) =>
  new Set(results.flatMap((r) => [...r.matchAll(/^merged ((?:em|worker)-\d+)\b/gm)].map((m) => m[1]!)))

const conflictIn = (result: string) => /^conflict merging ((?:em|worker)-\d+)/m.exec(result)?.[1]

// The newest prompt and how many tool round trips this turn has had.
// A large paste reaches the model wrapped as <pasted_content id="…">…</pasted_content>.
const unwrapPaste = (text: string) => text.replace(/<\/?pasted_content[^>]*>/g, "").trim()

const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null

// Tool results since the newest prompt: the steps this turn has taken (a user message that carries a prompt
// starts the turn; one carrying only tool results continues it).
const turnResults = (req: MockRequest): ReadonlyArray<string> => {
  const out: Array<string> = []
  for (const message of [...req.messages].reverse()) {
    if (!isRecord(message) || message.role !== "user") continue
    const blocks = Array.isArray(message.content) ? message.content.filter(isRecord) : [{ type: "text", text: message.content }]
    const results = blocks.filter((b) => b.type === "tool_result").map((b) =>
      typeof b.content === "string" ? b.content : Array.isArray(b.content) ? b.content.filter(isRecord).map((c) => String(c.text ?? "")).join("\n") : "")
    // A message carrying a prompt starts the turn; tool results beside it (an interrupted turn's) are older.
    const prompt = blocks.some((b) => b.type === "text" && typeof b.text === "string" && !b.text.startsWith("<system-reminder>") && b.text.trim() !== "")
    if (prompt) break
    out.unshift(...results)
  }
  return out
}

const turn = (req: MockRequest) => {
  const texts = userTexts(req).map(unwrapPaste)
  // The role prompt is the first text that names a role; the CLI may put its own texts before it.
  const first = texts.find((t) => roleOf(t) !== undefined) ?? ""
  return { prompt: texts.at(-1) ?? "", texts, pending: turnResults(req), all: toolResults(req), first }
}

const lead = (
  req: MockRequest,
  reports: ReadonlyArray<string>,
  assignFor: (report: string, index: number) => string,
  doneSummary: string,
  merges = true,
  commitsMarkers = false,
  markersBeforeDone = false
): MockReply => {
  const notes = markersBeforeDone ? `printf '<<<<<<< HEAD\\nmine\\n=======\\ntheirs\\n>>>>>>> other\\n' > notes.txt && git add -A && git commit -q -m 'Add notes'; ` : ""
  const { all, pending, texts } = turn(req)
  const last = pending.at(-1)
  const done = merged(all)
  const allMerged = reports.length > 0 && reports.every((r) => done.has(r))
  // Reports not yet seen assigned (a restart can cut an assignment command short), as far as this conversation
  // shows. Each assignment stands alone (`;`), so one refused (already working) does not keep the others back.
  const unassigned = () => {
    const seen = all.join("\n")
    return reports.filter((r) => !done.has(r) && !new RegExp(`assigned task #\\d+ to ${r}\\b|${r} is still working on task|${r} reported task`).test(seen))
  }
  const assign = (rs: ReadonlyArray<string>) =>
    bash(rs.map((r) => `cco team assign ${r} ${q(assignFor(r, reports.indexOf(r)))}`).join("; "), "Assign the work")
  if (last !== undefined) {
    const conflicted = conflictIn(last)
    if (conflicted !== undefined && commitsMarkers) {
      return bash(`git add -A && git commit -q --no-edit && cco team merge ${conflicted}`, `Commit the merge with ${conflicted}`)
    }
    // Refused for committed conflict markers: remove the marker lines, commit, and ask again.
    const markers = /conflict markers .* committed in[\s\S]*run cco team merge ((?:em|worker)-\d+) again/.exec(last)?.[1]
    if (markers !== undefined && commitsMarkers) {
      return bash(
        `for f in $(git grep -l -e '^<<<<<<< ' -- .); do sed -i -e '/^<<<<<<< /d' -e '/^=======$/d' -e '/^>>>>>>> /d' "$f"; done && git add -A && git commit -q -m 'Remove conflict markers' && cco team merge ${markers}`,
        `Remove the conflict markers and merge ${markers} again`
      )
    }
    // The merge gate refused a report's work: it goes back to its author as a fix task naming the same file.
    const failed = /^refused: the check .* failed on ((?:em|worker)-\d+)'s work/m.exec(last)?.[1]
    if (failed !== undefined) {
      const file = /`([\w./-]+\.\w+)`/.exec(assignFor(failed, reports.indexOf(failed)))?.[1]
      const fix = `fix: the project's check fails on your change${file === undefined ? "" : ` to \`${file}\``}; make it pass, commit and report done.`
      return bash(`cco team assign ${failed} ${q(fix)}`, `Send ${failed}'s work back`)
    }
    // Any other refusal of its own branch's commits: it says so and waits (a person has to look).
    if (/^refused: your branch .* brings /m.test(last)) return say(`cco refused: ${last.trim()}`)
    if (conflicted !== undefined) {
      // Keep both sides: drop the markers, then commit the merge and ask cco again.
      return bash(
        `for f in $(git diff --name-only --diff-filter=U); do sed -i -e '/^<<<<<<< /d' -e '/^=======$/d' -e '/^>>>>>>> /d' "$f"; done && git add -A && git commit -q --no-edit && cco team merge ${conflicted}`,
        `Resolve the conflict with ${conflicted} by keeping both sides`
      )
    }
    if (/^accepted: the project is done|^accepted: .*notified/m.test(last)) return say(`Reported done: ${doneSummary}`)
    // cco names a report that came in again after its merge: merge it before reporting.
    const remerge = /run cco team merge ((?:em|worker)-\d+) first/.exec(last)?.[1]
    if (remerge !== undefined) return bash(`cco team merge ${remerge}`, `Merge ${remerge} again`)
    if (allMerged && !/cco team done/.test(last)) {
      return bash(`${notes}cco team done ${q(doneSummary)}`, "Everything is merged; report done")
    }
    // After a merge, reports still without a task (an assignment cut short) get theirs.
    const idle = unassigned()
    if (idle.length > 0 && merges && /^merged (?:em|worker)-\d+/m.test(last)) return assign(idle)
    return say(allMerged ? "Done." : `Waiting for ${reports.filter((r) => !done.has(r)).join(", ")}.`)
  }
  // Every report announced anywhere in the conversation and not merged yet: a lost turn is caught up later.
  const finished = [...new Set(reportedDone(texts.join("\n")))].filter((r) => !done.has(r))
  if (finished.length > 0 && !merges) return say(`Noted: ${finished.join(", ")} done. I will review later.`)
  if (finished.length > 0) {
    return bash(finished.map((r) => `cco team merge ${r}`).join(" && "), `Merge ${finished.join(", ")}`)
  }
  // Everything merged but never reported (the turn that merged was cut short, or a prompt came in beside
  // its result): a new prompt, such as a nudge, is the moment to report.
  if (allMerged && merges && !all.some((r) => /^accepted: (?:the project is done|.*notified)/m.test(r))) {
    return bash(`${notes}cco team done ${q(doneSummary)}`, "Everything is merged; report done")
  }
  const idle = unassigned()
  if (idle.length > 0) return assign(idle)
  return say("Noted; waiting for my team.")
}

const worker = (req: MockRequest, name: string, options: TeamScriptOptions): MockReply => {
  const { pending, texts } = turn(req)
  // The newest task, even when later prompts (a restart notice, a nudge) came after it.
  const prompt = [...texts].reverse().find((t) => t.includes("# Your task") || /\[cco\] New task #/.test(t)) ?? ""
  const task = prompt.includes("# Your task") ? prompt.slice(prompt.lastIndexOf("# Your task")) : prompt
  const file = /`([\w./-]+\.\w+)`/.exec(task)?.[1]
  if (file === undefined) return say("Ready for a task.")
  // Told its work failed the merge gate's check: its lead sends it back; it waits for that.
  if (pending.length === 0 && /^\[cco\] Your work on task #\d+ was not merged/m.test(texts.at(-1) ?? "")) return say("Waiting for my lead to send it back.")
  const fix = /\bfix: /.test(task)
  const lazy = options.lazyWorkers?.includes(name) === true
  if (options.hangUntilRestart?.includes(name) === true && !texts.some((t) => t.includes("cco restarted you"))) {
    return bash(hangCommand, "Wait for the build")
  }
  if (lazy && pending.length === 0) return bash(`cco team done ${q("Finished.")}`, "Report done")
  if (options.largeFileAtTheEnd?.includes(name) === true && /\[cco\] The run ends in about/.test(texts.at(-1) ?? "")) {
    return pending.length === 0
      ? bash(`head -c ${50 * 1024 * 1024 + 1024} /dev/zero > big.bin && ls -l big.bin`, "Keep a big scratch file")
      : say("Left a scratch file; my task is reported.")
  }
  // A refused early report restarts the work; steps count from there.
  const steps = lazy ? pending.slice(pending.findIndex((r) => /^refused:/m.test(r)) + 1) : pending
  const last = steps.at(-1)
  if (last === undefined) {
    if (fix) return bash(`sed -i ${q(`\\#^${brokenLine}$#d`)} ${q(file)}; wc -l ${q(file)}`, `Fix ${file}`)
    const broken = options.brokenFirst?.includes(name) === true ? [brokenLine] : []
    const body = [`// ${file}: written by ${name}.`, `export const author = ${JSON.stringify(name)}`, `export const lines = ${JSON.stringify(prompt.slice(0, 60))}`, ...broken]
    const rogue = options.rogueWorkers?.includes(name) === true ? `printf '# Team structure\\n\\n${name} is in charge now.\\n' > TEAM_STRUCTURE.md; ` : ""
    const probe = options.sandboxProbe?.worker === name ? `${sandboxProbeCommand(name, options.sandboxProbe.other, options.sandboxProbe.home)}; ` : ""
    return bash(
      `${probe}${rogue}mkdir -p "$(dirname ${q(file)})" && printf '%s\\n' ${body.map(q).join(" ")} >> ${q(file)} && node --check ${q(file)} 2>/dev/null || true; wc -l ${q(file)}`,
      `Write ${file} and check it`
    )
  }
  if (steps.length === 1 && !/cco team done|accepted:|refused:/.test(last)) {
    return bash(`git add -A && git commit -q -m ${q(`${name}: ${file}`)} && cco team done ${q(`Wrote ${file} and checked it with node --check.`)}`, "Commit and report")
  }
  // Refused for a change to a file only cco writes: put it back as the base has it, commit, report again.
  const restore = /which only cco writes: undo it \(git checkout \$\(git merge-base (\S+) HEAD\)/.exec(last)?.[1]
  if (restore !== undefined && /^refused:/m.test(last)) {
    return bash(
      `{ git checkout "$(git merge-base ${q(restore)} HEAD)" -- TEAM_STRUCTURE.md 2>/dev/null || git rm -q TEAM_STRUCTURE.md; } && git commit -q -m 'Leave TEAM_STRUCTURE.md to cco' && cco team done ${q(`Wrote ${file} and checked it with node --check.`)}`,
      "Undo the change to TEAM_STRUCTURE.md and report again"
    )
  }
  if (/^refused:/m.test(last)) return say(`cco refused my report: ${last.trim()}`)
  if (/^accepted:/m.test(last) && options.markersAfterDone?.includes(name) === true) {
    return bash(`printf '<<<<<<< HEAD\\nmine\\n=======\\ntheirs\\n>>>>>>> other\\n' > notes.txt && git add -A && git commit -q -m 'Add notes'`, "Add my notes")
  }
  return say(`Finished ${file}; waiting for the next task.`)
}

export const teamScript = (options: TeamScriptOptions = {}): Brain => (req) => {
  const { first } = turn(req)
  const who = roleOf(first)
  if (who === undefined) return say("I am not part of a cco team.")
  const reports = reportsOf(first)
  switch (who.role) {
    case "director":
      return lead(
        req,
        reports,
        (em, i) => `Goal ${i + 1}: build part ${i + 1} of the project under src/part-${i + 1}/ (one module per worker, each checked with node --check).`,
        `All ${reports.length} team goals are merged on the target branch.`
      )
    case "em":
      return lead(
        req,
        reports,
        (w, i) => {
          const shared = options.conflictDrill === true && i < 2
          const file = shared ? `src/${who.name}/shared.js` : `src/${who.name}/${w}.js`
          return `Create \`${file}\` with a small module for ${w} and check it with node --check, then commit and report done.`
        },
        `${who.name}: ${reports.length} tasks written, checked and merged.`,
        options.idleLeads?.includes(who.name) !== true,
        options.markerLeads?.includes(who.name) === true,
        options.markersBeforeDone?.includes(who.name) === true
      )
    case "worker":
      return worker(req, who.name, options)
  }
}

/**
 * Answers 429 for one key once it has served `afterRequests` requests, until `retryAfterSeconds` have passed:
 * the way an API key hits its rate limit mid-run. Requests with other keys go to the brain.
 */
export const rateLimitKey = (
  brain: Brain,
  options: { readonly apiKey: string; readonly afterRequests: number; readonly retryAfterSeconds: number; readonly now?: () => number }
): Brain => {
  const now = options.now ?? Date.now
  let served = 0
  let limitedUntil: number | undefined
  return (req) => {
    if (req.apiKey !== options.apiKey) return brain(req)
    const t = now()
    if (limitedUntil !== undefined && t < limitedUntil) return rateLimitError({ retryAfterSeconds: Math.ceil((limitedUntil - t) / 1000), now: t })
    if (limitedUntil === undefined && served >= options.afterRequests) {
      limitedUntil = t + options.retryAfterSeconds * 1000
      return rateLimitError({ retryAfterSeconds: options.retryAfterSeconds, now: t })
    }
    served++
    return brain(req)
  }
}

/** Answers 401 for one key: a revoked or mistyped key. */
export const rejectKey = (brain: Brain, apiKey: string): Brain => (req) =>
  req.apiKey === apiKey ? authenticationError() : brain(req)

/**
 * A subscription's usage window on one token: once it has served `afterRequests` requests, every request is answered
 * 429 with the unified rate-limit headers until `resetAt` (epoch ms). The CLI then shows its usage-limit line
 * ("You've hit your 5-hour limit · resets 12:51am (UTC)", claude 2.1.332 against a local mock) instead of the 429.
 */
export const usageLimitToken = (
  brain: Brain,
  options: { readonly token: string; readonly afterRequests: number; readonly resetAt: number; readonly now?: () => number }
): Brain => {
  const now = options.now ?? Date.now
  let served = 0
  return (req) => {
    if (req.apiKey !== options.token || now() >= options.resetAt) return brain(req)
    if (served < options.afterRequests) {
      served++
      return brain(req)
    }
    const reset = String(Math.floor(options.resetAt / 1000))
    return {
      _tag: "Error",
      status: 429,
      type: "rate_limit_error",
      message: "This request would exceed your account's rate limit. Please try again later.",
      headers: {
        "anthropic-ratelimit-unified-status": "rejected",
        "anthropic-ratelimit-unified-reset": reset,
        "anthropic-ratelimit-unified-representative-claim": "five_hour",
        "anthropic-ratelimit-unified-5h-status": "rejected",
        "anthropic-ratelimit-unified-5h-reset": reset,
        "retry-after": String(Math.max(61, Math.ceil((options.resetAt - now()) / 1000))),
        "x-should-retry": "false"
      }
    }
  }
}
