// A scripted team for in-memory orchestrations: the Director gives each EM a goal, EMs give each worker a file,
// workers write, commit and report, leads merge (resolving conflicts by keeping both sides) and report up.
// It reads only the prompts it is given, as a model would, and remembers what it did across --continue.
import { Effect } from "effect"
import { reportsOf, roleOf } from "../../src/TeamScript.js"
import { type AgentIO, type Behaviour, stop, type TurnEnd } from "./ScriptedAgent.js"

export interface TeamOptions {
  /** The first two workers of each team get the same file: the second merge conflicts. */
  readonly conflictDrill?: boolean
  /** Leads that never merge what their reports deliver. */
  readonly idleLeads?: ReadonlyArray<string>
  /** Tokens each turn's API responses use. */
  readonly usagePerTurn?: { readonly input: number; readonly output: number }
  /** Workers whose first commit holds the line BROKEN (a check that greps for it fails); their next task fixes it. */
  readonly breakFirst?: ReadonlyArray<string>
  /** Leads wait until every report has reported, then merge them all at once (concurrent cco team merge calls). */
  readonly parallelMerges?: boolean
}

interface Known {
  role?: ReturnType<typeof roleOf>
  reports?: ReadonlyArray<string>
  task?: string
  merged: Set<string>
  reported: boolean
  /** Reports announced done, not merged yet (parallelMerges). */
  announced?: Set<string>
  file?: string
  commits?: number
}

const known = (memory: Map<string, unknown>): Known => {
  let k = memory.get("team") as Known | undefined
  if (k === undefined) {
    k = { merged: new Set(), reported: false }
    memory.set("team", k)
  }
  return k
}

const reportedDone = (text: string) => [...text.matchAll(/\[cco\] ((?:em|worker)-\d+) reports done/g)].map((m) => m[1]!)

// A conflict left in the worktree: keep both sides, commit the merge, and ask cco again.
const resolveAndMerge = (io: AgentIO, report: string): Effect.Effect<boolean> =>
  Effect.gen(function*() {
    const files = (yield* io.git("diff", "--name-only", "--diff-filter=U").pipe(Effect.orElseSucceed(() => ""))).split("\n").filter((f) => f !== "")
    for (const file of files) {
      const text = yield* io.read(file)
      yield* io.write(file, text.split("\n").filter((l) => !/^(<<<<<<< |=======$|>>>>>>> )/.test(l)).join("\n"))
    }
    yield* io.git("add", "-A").pipe(Effect.ignore)
    yield* io.git("commit", "-q", "--no-edit").pipe(Effect.ignore)
    const again = yield* io.team("merge", report)
    return again.status === 200
  })

const mergeReport = (io: AgentIO, k: Known, report: string) =>
  Effect.gen(function*() {
    const answer = yield* io.team("merge", report)
    // The merge gate refused it: the work goes back to its author.
    if (/^refused: the check/.test(answer.text)) {
      yield* io.team("assign", report, "fix: the project's check fails on your change; make it pass, commit and report done.")
      return
    }
    const ok = answer.status === 200 || (/^conflict merging/.test(answer.text) && (yield* resolveAndMerge(io, report)))
    if (ok) k.merged.add(report)
  })

const lead = (io: AgentIO, prompt: string, k: Known, options: TeamOptions): Effect.Effect<TurnEnd> =>
  Effect.gen(function*() {
    const reports = k.reports ?? []
    const isDirector = k.role?.role === "director"
    // The role prompt carries the goal (or, for the top, the project direction): split it at once.
    if (k.task === undefined && roleOf(prompt) !== undefined) {
      k.task = prompt
      for (const [i, r] of reports.entries()) {
        const file = options.conflictDrill === true && i < 2 ? `src/${io.name}/shared.js` : `src/${io.name}/${r}.js`
        const text = isDirector
          ? `Goal ${i + 1}: build part ${i + 1} of the project.`
          : `Create \`${file}\` with a small module for ${r}, then commit and report done.`
        yield* io.team("assign", r, text)
      }
      return stop("Assigned the work.")
    }
    if (options.idleLeads?.includes(io.name) === true) return stop("I will review later.")
    if (options.parallelMerges === true) {
      const announced = k.announced ??= new Set()
      for (const r of reportedDone(prompt)) announced.add(r)
      if (reports.every((r) => k.merged.has(r) || announced.has(r))) {
        const now = [...announced]
        announced.clear()
        yield* Effect.forEach(now, (r) => mergeReport(io, k, r), { concurrency: "unbounded", discard: true })
      }
    } else {
      for (const r of reportedDone(prompt)) if (!k.merged.has(r)) yield* mergeReport(io, k, r)
    }
    if (!k.reported && reports.length > 0 && reports.every((r) => k.merged.has(r))) {
      const answer = yield* io.team("done", `${io.name}: all ${reports.length} merged.`)
      k.reported = answer.status === 200
    }
    return stop(k.reported ? "Reported done." : "Waiting for my team.")
  })

const worker = (io: AgentIO, prompt: string, k: Known, options: TeamOptions): Effect.Effect<TurnEnd> =>
  Effect.gen(function*() {
    const task = prompt.includes("# Your task") ? prompt.slice(prompt.lastIndexOf("# Your task")) : /\[cco\] New task #/.test(prompt) ? prompt : undefined
    if (task !== undefined && task !== k.task) {
      k.task = task
      k.reported = false
    }
    const file = k.task === undefined ? undefined : /`([\w./-]+\.\w+)`/.exec(k.task)?.[1] ?? k.file
    if (file === undefined || k.reported) return stop("Ready for a task.")
    k.file = file
    k.commits = (k.commits ?? 0) + 1
    const broken = k.commits === 1 && options.breakFirst?.includes(io.name) === true
    yield* io.write(file, `// ${file}: written by ${io.name}.\nexport const author = ${JSON.stringify(io.name)}\n${broken ? "// BROKEN\n" : ""}`)
    yield* io.git("add", "-A").pipe(Effect.ignore)
    yield* io.git("commit", "-q", "-m", `${io.name}: ${file}`).pipe(Effect.ignore)
    const answer = yield* io.team("done", `Wrote ${file}.`)
    k.reported = answer.status === 200
    return stop(answer.text)
  })

/** The team's behaviour; `around` lets a scenario change one instance's turns (hang, crash, fail). */
export const team = (options: TeamOptions = {}): Behaviour => (io, prompt, memory) =>
  Effect.gen(function*() {
    const k = known(memory)
    const role = roleOf(prompt)
    if (k.role === undefined && role !== undefined) {
      k.role = role
      k.reports = reportsOf(prompt)
    }
    if (options.usagePerTurn !== undefined) yield* io.spend(options.usagePerTurn)
    if (k.role === undefined) return stop("I am not part of a cco team.")
    return k.role.role === "worker" ? yield* worker(io, prompt, k, options) : yield* lead(io, prompt, k, options)
  })
