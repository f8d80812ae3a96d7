// Costs: pricing per model family, dedup of responses spanning several transcript lines, incremental polling of
// growing transcripts, attribution to roles and credentials, limits, the end-of-run table, and a live check of the
// totals against the mock model's ledger with the real `claude` CLI.
import { FileSystem, Path } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, type Scope } from "effect"
import { execFile } from "node:child_process"
import { randomBytes } from "node:crypto"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { checkLimits, makeBudget } from "../src/Budget.js"
import { formatCostTable } from "../src/CostTable.js"
import { type CostSnapshot, makeCostTracker, NO_CREDENTIAL } from "../src/CostTracker.js"
import { familyOf, PRICES, priceOf, type TokenCounts, totalTokens, UNKNOWN_MODEL_FAMILY, zeroTokens } from "../src/Prices.js"
import { makeSpendWatch } from "../src/SpendWatch.js"
import { type CostTotals, parseTranscriptLines, usageOf } from "../src/Transcripts.js"
import { type Brain, lastUserText, pendingToolResults } from "../src/MockBrain.js"
import { startMockModel } from "../src/MockModel.js"

const fixtureDir = NodePath.resolve("test/fixtures/transcripts")
const fixture = (name: string) => NodeFs.readFileSync(NodePath.join(fixtureDir, `${name}.trimmed.jsonl`), "utf8")
const OPUS = "opus-5-5-tool-turn-then-continue"
const SONNET = "sonnet-4-5-tool-turn"
const HAIKU = "haiku-alias"
const UNKNOWN = "unknown-model-claude-nova-9-9"

interface RawLine {
  readonly type: string
  readonly message?: { readonly id: string; readonly usage: Readonly<Record<string, number>> }
  readonly totalCostUSD?: number
}

// An independent reading of a fixture: plain JSON.parse, first line of each message.id wins.
const independent = (text: string) => {
  const lines = text.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as RawLine)
  const assistant = lines.filter((l) => l.type === "assistant")
  const byId = new Map<string, Readonly<Record<string, number>>>()
  for (const l of assistant) if (l.message && !byId.has(l.message.id)) byId.set(l.message.id, l.message.usage)
  const sum = (k: string) => [...byId.values()].reduce((s, u) => s + (u[k] ?? 0), 0)
  const costStates = lines.filter((l) => l.type === "cost-state")
  return {
    assistantLines: assistant.length,
    responses: byId.size,
    tokens: {
      input: sum("input_tokens"),
      output: sum("output_tokens"),
      cacheWrite: sum("cache_creation_input_tokens"),
      cacheRead: sum("cache_read_input_tokens")
    },
    // Claude Code's own running cost for the session, computed by the CLI from its built-in price catalog.
    cliCostUsd: costStates.at(-1)?.totalCostUSD ?? Number.NaN
  }
}

// 10,000 tokens of one kind, priced and scaled to a million: below Haiku 5.5's long-prompt threshold.
const perMillion = (model: string, kind: keyof TokenCounts) => priceOf(model, { ...zeroTokens, [kind]: 10_000 }) * 100

const withNode = <A, E>(effect: Effect.Effect<A, E, FileSystem.FileSystem | Path.Path | Scope.Scope>) =>
  effect.pipe(Effect.provide(NodeContext.layer))

/** A config dir with a project folder, as Claude Code lays it out. */
const configDirWithProject = Effect.gen(function*() {
  const fs = yield* FileSystem.FileSystem
  const root = yield* fs.makeTempDirectoryScoped({ prefix: "cco-costs-" })
  const project = NodePath.join(root, "projects", "-tmp-cco-run-work")
  yield* fs.makeDirectory(project, { recursive: true })
  return { configDir: root, project }
})

/** A tracker over worker-1 (config dir `a`) and worker-2 (`b`). */
const twoWorkers = Effect.gen(function*() {
  const a = yield* configDirWithProject
  const b = yield* configDirWithProject
  const tracker = yield* makeCostTracker([
    { name: "worker-1", role: "worker", configDir: a.configDir },
    { name: "worker-2", role: "worker", configDir: b.configDir }
  ])
  return { a, b, tracker }
})

const append = (file: string, text: string) =>
  Effect.flatMap(FileSystem.FileSystem, (fs) => fs.writeFileString(file, text, { flag: "a" }))

const linesOf = (text: string) => text.split("\n").filter((l) => l !== "").map((l) => `${l}\n`)

describe("transcript parsing and dedup", () => {
  it("counts each response once although it spans several lines (tool turn + --continue)", () => {
    const text = fixture(OPUS)
    const expected = independent(text)
    // The fixture really has responses of several lines, or this test would prove nothing.
    expect(expected.assistantLines).toBe(5)
    expect(expected.responses).toBe(3)
    const entries = parseTranscriptLines(text)
    expect(entries).toHaveLength(expected.assistantLines)
    const summary = usageOf(entries, new Set())
    expect(summary.responses).toBe(expected.responses)
    expect(summary.tokens).toEqual(expected.tokens)
    expect(summary.models).toEqual(["claude-opus-5-5"])
    expect(summary.unknownModels).toEqual([])
  })

  it("prices the recorded transcripts exactly as the CLI's own cost-state lines do", () => {
    for (const name of [OPUS, SONNET, HAIKU]) {
      const text = fixture(name)
      const summary = usageOf(parseTranscriptLines(text), new Set())
      expect(summary.usd, name).toBeCloseTo(independent(text).cliCostUsd, 9)
    }
  })

  it("the caller's memory of seen responses prevents counting them again", () => {
    const entries = parseTranscriptLines(fixture(SONNET))
    const seen = new Set<string>()
    expect(usageOf(entries, seen).responses).toBe(2)
    const again = usageOf(entries, seen)
    expect(again.responses).toBe(0)
    expect(again.tokens).toEqual(zeroTokens)
    expect(again.usd).toBe(0)
  })

  it("skips malformed lines, synthetic messages, and a last line without its newline", () => {
    const [first, ...rest] = linesOf(fixture(HAIKU)).filter((l) => l.includes("\"type\":\"assistant\""))
    expect(first).toBeDefined()
    expect(rest).toEqual([])
    const line = first ?? ""
    const synthetic = line.replace("\"claude-haiku-5-5\"", "\"<synthetic>\"").replace("msg_mock", "msg_synth")
    const text = [
      "not json at all\n",
      "{\"type\":\"assistant\",\"message\":{\"usage\":\n", // broken JSON
      "{\"type\":\"assistant\",\"message\":{\"usage\":\"lots\"}}\n", // wrong shape
      synthetic,
      line,
      line.slice(0, 200) // being written
    ].join("")
    const entries = parseTranscriptLines(text)
    expect(entries).toHaveLength(1)
    expect(entries[0]?.model).toBe("claude-haiku-5-5")
    expect(entries[0]?.usage).toEqual({ input: 1200, output: 340, cacheWrite: 56, cacheRead: 7800, cacheWrite1h: 0 })
    expect(parseTranscriptLines(line.slice(0, -1))).toEqual([])
  })
})

describe("prices", () => {
  const cases: ReadonlyArray<readonly [string, keyof typeof PRICES, number, number, number, number]> = [
    // model id, family, input, output, cache write (5m), cache read: USD per million
    ["claude-opus-4-5-20251101", "opus-4-5", 5, 25, 6.25, 0.5],
    ["claude-opus-4-8", "opus-4-5", 5, 25, 6.25, 0.5],
    ["claude-opus-5-5", "opus-5-5", 4, 20, 5, 0.2],
    ["opus", "opus-5-5", 4, 20, 5, 0.2],
    ["claude-opus-4-1-20250805", "opus-4", 15, 75, 18.75, 1.5],
    ["us.anthropic.claude-opus-4-1-20250805-v1:0", "opus-4", 15, 75, 18.75, 1.5],
    ["claude-sonnet-4-5", "sonnet-4", 3, 15, 3.75, 0.3],
    ["claude-sonnet-4-20250514", "sonnet-4", 3, 15, 3.75, 0.3],
    ["claude-3-5-sonnet-20241022", "sonnet-4", 3, 15, 3.75, 0.3],
    ["claude-sonnet-5", "sonnet-5", 2, 10, 2.5, 0.2],
    ["sonnet", "sonnet-5-5", 2, 10, 2.5, 0.1],
    ["claude-haiku-4-5", "haiku-4-5", 1, 5, 1.25, 0.1],
    ["claude-haiku-4-5-20251001", "haiku-4-5", 1, 5, 1.25, 0.1],
    ["haiku", "haiku-5-5", 0.1, 0.5, 0.125, 0.01],
    ["claude-fable-5-1", "fable-5-1", 10, 50, 12.5, 0.25],
    ["claude-mythos-5-2", "fable-5-2", 8, 40, 10, 0.2],
    ["claude-opus-5-5[1m]", "opus-5-5", 4, 20, 5, 0.2]
  ]

  it("maps model ids and aliases to a family and prices each kind of token", () => {
    for (const [model, family, input, output, cacheWrite, cacheRead] of cases) {
      expect(familyOf(model), model).toBe(family)
      expect(perMillion(model, "input"), model).toBeCloseTo(input, 9)
      expect(perMillion(model, "output"), model).toBeCloseTo(output, 9)
      expect(perMillion(model, "cacheWrite"), model).toBeCloseTo(cacheWrite, 9)
      expect(perMillion(model, "cacheRead"), model).toBeCloseTo(cacheRead, 9)
    }
  })

  it("prices 1-hour cache writes at their own rate", () => {
    const usage = { ...zeroTokens, cacheWrite: 1_000_000, cacheWrite1h: 250_000 }
    expect(priceOf("claude-opus-4-5", usage)).toBeCloseTo(0.75 * 6.25 + 0.25 * 10, 9)
  })

  it("prices a Haiku 5.5 request with a prompt over 100k tokens at the long-prompt rates", () => {
    const short = { input: 10_000, output: 1_000, cacheWrite: 0, cacheRead: 90_000 }
    const long = { ...short, cacheRead: 90_001 }
    expect(priceOf("claude-haiku-5-5", short)).toBeCloseTo((10_000 * 0.1 + 1_000 * 0.5 + 90_000 * 0.01) / 1e6, 12)
    expect(priceOf("claude-haiku-5-5", long)).toBeCloseTo((10_000 * 0.5 + 1_000 * 2.5 + 90_001 * 0.05) / 1e6, 12)
  })

  it("prices an unknown model as the most expensive family", () => {
    const maxOutput = Math.max(...Object.values(PRICES).map((p) => p.output))
    expect(PRICES[UNKNOWN_MODEL_FAMILY].output).toBe(maxOutput)
    for (const model of ["claude-nova-9-9", "claude-opus-9", "gpt-5"]) {
      expect(familyOf(model), model).toBeUndefined()
      expect(perMillion(model, "output"), model).toBe(maxOutput)
    }
    const text = fixture(UNKNOWN)
    const summary = usageOf(parseTranscriptLines(text), new Set())
    expect(summary.unknownModels).toEqual(["claude-nova-9-9"])
    const p = PRICES[UNKNOWN_MODEL_FAMILY]
    expect(summary.usd).toBeCloseTo((1200 * p.input + 340 * p.output + 56 * p.cacheWrite + 7800 * p.cacheRead) / 1e6, 12)
    // The CLI itself prices unknown models lower (as its default model); we err on the expensive side.
    expect(summary.usd).toBeGreaterThan(independent(text).cliCostUsd)
  })
})

describe("incremental tracker", () => {
  it.scoped("reads only appended bytes, completes partial lines later, finds new session files, never double-counts", () =>
    withNode(Effect.gen(function*() {
      const { configDir, project } = yield* configDirWithProject
      const tracker = yield* makeCostTracker([{ name: "worker-1", role: "worker", configDir }])
      const session1 = NodePath.join(project, "9826c600-d810-43d5-9c97-98d8b4c6bf63.jsonl")
      const opusLines = linesOf(fixture(OPUS))
      const firstAssistant = opusLines.findIndex((l) => l.includes("\"type\":\"assistant\""))

      // Nothing written yet: no projects content, zero totals.
      expect((yield* tracker.poll).total.responses).toBe(0)

      // Everything up to and including the first line of the first (3-line) response.
      yield* append(session1, opusLines.slice(0, firstAssistant + 1).join(""))
      let snap = yield* tracker.poll
      expect(snap.total.responses).toBe(1)
      expect(snap.total.tokens).toEqual({ input: 1200, output: 340, cacheWrite: 56, cacheRead: 7800 })

      // The rest of that response's lines and half of the next response's line.
      const next = opusLines.findIndex((l) => l.includes("msg_mock000005"))
      expect(next).toBeGreaterThan(firstAssistant + 2)
      const nextLine = opusLines[next] ?? ""
      yield* append(session1, opusLines.slice(firstAssistant + 1, next).join("") + nextLine.slice(0, 300))
      snap = yield* tracker.poll
      expect(snap.total.responses).toBe(1)

      // The partial line completed, plus the --continue part.
      yield* append(session1, nextLine.slice(300) + opusLines.slice(next + 1).join(""))
      snap = yield* tracker.poll
      expect(snap.total.responses).toBe(3)
      expect(snap.total.usd).toBeCloseTo(independent(fixture(OPUS)).cliCostUsd, 9)

      // A new session file appears later.
      yield* append(NodePath.join(project, "03c1a646-aadc-4f23-9b43-eb617bfdb074.jsonl"), fixture(SONNET))
      snap = yield* tracker.poll
      expect(snap.total.responses).toBe(5)

      // A copy of an already counted history (e.g. a resumed session written to a new file) adds nothing.
      yield* append(NodePath.join(project, "copied-history.jsonl"), fixture(SONNET))
      const settled = yield* tracker.poll
      const again = yield* tracker.poll
      expect(settled.total).toEqual(snap.total)
      expect(again.total).toEqual(snap.total)

      const all = usageOf([...parseTranscriptLines(fixture(OPUS)), ...parseTranscriptLines(fixture(SONNET))], new Set())
      expect(again.total.tokens).toEqual(all.tokens)
      expect(again.total.usd).toBeCloseTo(all.usd, 12)
      expect(again.instances[0]?.models).toEqual(["claude-opus-5-5", "claude-sonnet-4-5"])
      expect(again.byRole.worker?.usd).toBeCloseTo(all.usd, 12)
      expect(again.byCredential[NO_CREDENTIAL]?.responses).toBe(5)
    }))
  )

  it.scoped("an instance moved to another host (its config dir elsewhere) keeps what it spent and adds what it spends there", () =>
    withNode(Effect.gen(function*() {
      const before = yield* configDirWithProject
      const after = yield* configDirWithProject
      let where = before.configDir
      const tracker = yield* makeCostTracker([{ name: "worker-2", role: "worker", get configDir() { return where } }])
      yield* append(NodePath.join(before.project, "9826c600-d810-43d5-9c97-98d8b4c6bf63.jsonl"), fixture(OPUS))
      const first = yield* tracker.poll
      expect(first.total.responses).toBe(3)
      where = after.configDir
      yield* append(NodePath.join(after.project, "03c1a646-aadc-4f23-9b43-eb617bfdb074.jsonl"), fixture(SONNET))
      const moved = yield* tracker.poll
      expect(moved.total.responses).toBe(5)
      const all = usageOf([...parseTranscriptLines(fixture(OPUS)), ...parseTranscriptLines(fixture(SONNET))], new Set())
      expect(moved.instances[0]?.usd).toBeCloseTo(all.usd, 12)
    }))
  )

  it.scoped("finds transcripts in nested folders (subagents) and rereads a file that was replaced by a shorter one", () =>
    withNode(Effect.gen(function*() {
      const { configDir, project } = yield* configDirWithProject
      const fs = yield* FileSystem.FileSystem
      const tracker = yield* makeCostTracker([{ name: "em-1", role: "em", configDir }])
      const nested = NodePath.join(project, "session-x", "subagents")
      yield* fs.makeDirectory(nested, { recursive: true })
      yield* append(NodePath.join(nested, "agent-1.jsonl"), fixture(HAIKU))
      const long = NodePath.join(project, "long.jsonl")
      yield* append(long, fixture(OPUS))
      expect((yield* tracker.poll).total.responses).toBe(4)
      // Replaced by a shorter file holding other responses: it is read from the start, old responses not recounted.
      const shorter = fixture(SONNET).split("\n").slice(0, 30).join("\n") + "\n"
      const added = usageOf(parseTranscriptLines(shorter), new Set()).responses
      expect(added).toBeGreaterThan(0)
      yield* fs.writeFileString(long, shorter)
      const snap = yield* tracker.poll
      expect(snap.total.responses).toBe(4 + added)
      expect(snap.total.models).toContain("claude-sonnet-4-5")
    }))
  )

  it.scoped("reads in small chunks: lines longer than a chunk are carried over whole", () =>
    withNode(Effect.gen(function*() {
      const { configDir, project } = yield* configDirWithProject
      const tracker = yield* makeCostTracker([{ name: "worker-1", role: "worker", configDir }], { chunkBytes: 97 })
      const text = fixture(OPUS)
      const file = NodePath.join(project, "s.jsonl")
      yield* append(file, text.slice(0, 5_001))
      yield* tracker.poll
      yield* append(file, text.slice(5_001))
      const snap = yield* tracker.poll
      const expected = independent(text)
      expect(snap.total.responses).toBe(expected.responses)
      expect(snap.total.tokens).toEqual(expected.tokens)
    }))
  )

  it.scoped("does not read again the bytes it has read", () =>
    withNode(Effect.gen(function*() {
      const { configDir, project } = yield* configDirWithProject
      const fs = yield* FileSystem.FileSystem
      const tracker = yield* makeCostTracker([{ name: "worker-1", role: "worker", configDir }])
      const file = NodePath.join(project, "s.jsonl")
      const text = fixture(HAIKU)
      yield* append(file, text)
      expect((yield* tracker.poll).total.responses).toBe(1)
      // The counted response rewritten in place as a different one (same length): a reader that starts over would
      // count it again under its new ids; an incremental one only sees what follows.
      const rewritten = text.replaceAll("msg_mock000015", "msg_mockXXXX15").replaceAll("req_mock000016", "req_mockXXXX16")
      expect(rewritten).not.toBe(text)
      expect(rewritten.length).toBe(text.length)
      yield* fs.writeFileString(file, rewritten + fixture(SONNET))
      const snap = yield* tracker.poll
      expect(snap.total.responses).toBe(1 + 2)
    }))
  )

  it.scoped("attributes usage to roles and to the credential current when it was written", () =>
    withNode(Effect.gen(function*() {
      const { a, b, tracker } = yield* twoWorkers
      yield* tracker.setCredential("worker-1", "key-1")
      yield* tracker.setCredential("worker-2", "key-1")
      const opus = linesOf(fixture(OPUS))
      const split = opus.findIndex((l) => l.includes("and now plain"))
      expect(split).toBeGreaterThan(0)

      // worker-1 writes its first run, then rotates to key-2 before anyone polled: the first run stays on key-1.
      yield* append(NodePath.join(a.project, "s1.jsonl"), opus.slice(0, split).join(""))
      yield* tracker.setCredential("worker-1", "key-2")
      yield* append(NodePath.join(a.project, "s1.jsonl"), opus.slice(split).join(""))
      yield* append(NodePath.join(b.project, "s2.jsonl"), fixture(HAIKU))
      const snap = yield* tracker.poll

      const firstRun = usageOf(parseTranscriptLines(opus.slice(0, split).join("")), new Set())
      const continued = usageOf(parseTranscriptLines(opus.slice(split).join("")), new Set())
      const haiku = usageOf(parseTranscriptLines(fixture(HAIKU)), new Set())
      expect(firstRun.responses).toBe(2)
      expect(continued.responses).toBe(1)
      expect(snap.byCredential["key-1"]?.usd).toBeCloseTo(firstRun.usd + haiku.usd, 12)
      expect(snap.byCredential["key-1"]?.responses).toBe(3)
      expect(snap.byCredential["key-2"]?.usd).toBeCloseTo(continued.usd, 12)
      expect(snap.byCredential[NO_CREDENTIAL]).toBeUndefined()
      expect(snap.instances.map((i) => [i.name, i.credential, i.responses])).toEqual([
        ["worker-1", "key-2", 3],
        ["worker-2", "key-1", 1]
      ])
      expect(snap.byRole.worker?.responses).toBe(4)
      expect(snap.total.usd).toBeCloseTo(firstRun.usd + continued.usd + haiku.usd, 12)
    }))
  )

  it.scoped("reports an unknown model once, priced as the most expensive family", () =>
    withNode(Effect.gen(function*() {
      const a = yield* configDirWithProject
      const b = yield* configDirWithProject
      const tracker = yield* makeCostTracker([
        { name: "director", role: "director", configDir: a.configDir }
      ])
      yield* append(NodePath.join(a.project, "u1.jsonl"), fixture(UNKNOWN))
      const first = yield* tracker.poll
      expect(first.unknownModels).toEqual(["claude-nova-9-9"])
      expect(first.newUnknownModels).toEqual(["claude-nova-9-9"])
      const p = PRICES[UNKNOWN_MODEL_FAMILY]
      expect(first.total.usd).toBeCloseTo((1200 * p.input + 340 * p.output + 56 * p.cacheWrite + 7800 * p.cacheRead) / 1e6, 12)

      // The same unknown model used again, by an instance added later: still listed, not new.
      yield* tracker.addInstance({ name: "em-1", role: "em", configDir: b.configDir })
      const other = fixture(UNKNOWN).replaceAll("msg_mock000017", "msg_other0001").replaceAll("req_mock000018", "req_other0001")
      expect(other).not.toBe(fixture(UNKNOWN))
      yield* append(NodePath.join(b.project, "u2.jsonl"), other)
      const second = yield* tracker.poll
      expect(second.total.responses).toBe(2)
      expect(second.unknownModels).toEqual(["claude-nova-9-9"])
      expect(second.newUnknownModels).toEqual([])
      expect(formatCostTable(second)).toContain("claude-nova-9-9")
    }))
  )
})

describe("checking the budget as an instance spends", () => {
  it.scoped("pollInstance reads only that instance's new lines, incrementally, and never counts a response twice", () =>
    withNode(Effect.gen(function*() {
      const { a, b, tracker } = yield* twoWorkers
      const opus = linesOf(fixture(OPUS))
      const half = opus.findIndex((l) => l.includes("and now plain"))
      const first = independent(opus.slice(0, half).join(""))
      const all = independent(opus.join(""))
      expect(first.responses).toBeGreaterThan(0)
      expect(all.responses).toBeGreaterThan(first.responses)
      yield* append(NodePath.join(a.project, "s.jsonl"), opus.slice(0, half).join(""))
      yield* append(NodePath.join(b.project, "s.jsonl"), fixture(SONNET))

      const row = (snap: CostSnapshot, name: string) => snap.instances.find((i) => i.name === name)!
      let snap = yield* tracker.pollInstance("worker-1")
      expect(row(snap, "worker-1").responses).toBe(first.responses)
      // worker-2's transcript was not read.
      expect(row(snap, "worker-2").responses).toBe(0)
      expect(snap.total.responses).toBe(first.responses)

      // The rest of worker-1's session: only the appended lines are read, nothing is counted twice.
      yield* append(NodePath.join(a.project, "s.jsonl"), opus.slice(half).join(""))
      snap = yield* tracker.pollInstance("worker-1")
      expect(row(snap, "worker-1").responses).toBe(all.responses)
      expect(row(snap, "worker-1").tokens).toEqual(all.tokens)
      expect((yield* tracker.pollInstance("worker-1")).total.responses).toBe(all.responses)

      // The timed poll then reads worker-2, and worker-1's lines are not read again.
      snap = yield* tracker.poll
      expect(row(snap, "worker-1").responses).toBe(all.responses)
      expect(row(snap, "worker-2").responses).toBe(independent(fixture(SONNET)).responses)
      expect((yield* tracker.pollInstance("nobody")).total.responses).toBe(snap.total.responses)
    }))
  )

  it.scoped("a burst of spending coalesces: one read runs, and at most one more after it, per instance", () =>
    Effect.gen(function*() {
      const reads: Array<string> = []
      const gate = yield* Deferred.make<void>()
      const seen: Array<number> = []
      const snapshot = (n: number): CostSnapshot => ({ ...snapshotOf([{ name: "worker-1", role: "worker", usd: n, tokens: 0 }]) })
      const tracker = {
        pollInstance: (name: string) =>
          Effect.sync(() => reads.push(name)).pipe(
            Effect.zipLeft(Deferred.await(gate)),
            Effect.map(() => snapshot(reads.length))
          )
      }
      const scope = yield* Effect.scope
      const watch = makeSpendWatch(tracker, (snap) => Effect.sync(() => seen.push(snap.total.usd)), scope)
      for (let i = 0; i < 10; i++) yield* watch.spent("worker-1")
      yield* watch.spent("worker-2")
      yield* Effect.yieldNow()
      // The first read of each instance is under way; nine more calls for worker-1 wait as one.
      expect(reads).toEqual(["worker-1", "worker-2"])
      yield* Deferred.succeed(gate, undefined)
      for (let i = 0; i < 10; i++) yield* Effect.yieldNow()
      expect(reads).toEqual(["worker-1", "worker-2", "worker-1"])
      expect(seen).toHaveLength(3)
      // Idle again: the next spending reads at once.
      yield* watch.spent("worker-1")
      for (let i = 0; i < 10; i++) yield* Effect.yieldNow()
      expect(reads).toHaveLength(4)
    }))

  it.scoped("a failing check costs that read only; later spending is still read", () =>
    Effect.gen(function*() {
      let reads = 0
      const tracker = { pollInstance: () => Effect.sync(() => (reads++, snapshotOf([]))) }
      const scope = yield* Effect.scope
      const watch = makeSpendWatch(tracker, () => reads === 1 ? Effect.die("boom") : Effect.void, scope)
      yield* watch.spent("worker-1")
      for (let i = 0; i < 5; i++) yield* Effect.yieldNow()
      yield* watch.spent("worker-1")
      for (let i = 0; i < 5; i++) yield* Effect.yieldNow()
      expect(reads).toBe(2)
    }))

  it.scoped("with the real tracker: the limit is checked against what the instance has just written", () =>
    withNode(Effect.gen(function*() {
      const { configDir, project } = yield* configDirWithProject
      const tracker = yield* makeCostTracker([{ name: "worker-1", role: "worker", configDir }])
      const opus = linesOf(fixture(OPUS))
      const total = independent(opus.join("")).responses
      const budget = makeBudget({ maxCostUsd: 1e-9 })
      const exceeded = yield* Deferred.make<number>()
      const scope = yield* Effect.scope
      const watch = makeSpendWatch(tracker, (snap) =>
        budget.check(snap).exceeded.length > 0 ? Deferred.succeed(exceeded, snap.total.responses) : Effect.void, scope)
      yield* append(NodePath.join(project, "s.jsonl"), opus.join(""))
      yield* watch.spent("worker-1")
      expect(yield* Deferred.await(exceeded)).toBe(total)
    }))
  )

  it("makeBudget names each 80 % warning once and reports what is exceeded every time", () => {
    const budget = makeBudget({ maxCostUsd: 10 })
    const at = (usd: number) => snapshotOf([{ name: "director", role: "director", usd, tokens: 0 }])
    expect(budget.check(at(8)).warnings).toHaveLength(1)
    expect(budget.check(at(9)).warnings).toHaveLength(0)
    expect(budget.check(at(10)).exceeded).toHaveLength(1)
    expect(budget.check(at(11)).exceeded).toHaveLength(1)
  })
})

// ---------------------------------------------------------------------------------------------
// Limits and the table (pure)

const totals = (usd: number, tokens: number): CostTotals => ({
  tokens: { input: tokens, output: 0, cacheWrite: 0, cacheRead: 0 },
  usd,
  responses: 1,
  models: ["claude-opus-5-5"]
})

const snapshotOf = (instances: ReadonlyArray<{ name: string; role: string; usd: number; tokens: number }>): CostSnapshot => {
  const rows = instances.map((i) => ({ name: i.name, role: i.role, credential: undefined, ...totals(i.usd, i.tokens) }))
  const usd = rows.reduce((s, r) => s + r.usd, 0)
  const tokens = rows.reduce((s, r) => s + totalTokens(r.tokens), 0)
  return {
    instances: rows,
    byRole: {},
    byCredential: {},
    total: totals(usd, tokens),
    unknownModels: [],
    newUnknownModels: []
  }
}

describe("checkLimits", () => {
  it("warns from 80 % and reports the limit reached at 100 %, for the run, each instance and tokens", () => {
    const at = (usd: number) => snapshotOf([{ name: "director", role: "director", usd, tokens: 0 }])
    const limits = { maxCostUsd: 10 }
    expect(checkLimits(at(7.9), limits)).toEqual({ warnings: [], exceeded: [] })

    const warn = checkLimits(at(8), limits)
    expect(warn.exceeded).toEqual([])
    expect(warn.warnings).toHaveLength(1)
    expect(warn.warnings[0]).toMatchObject({ limit: "maxCostUsd", subject: "run", value: 8, max: 10, percent: 80 })
    expect(warn.warnings[0]?.message).toBe("run cost $8.00 is 80% of maxCostUsd $10.00")

    const over = checkLimits(at(10), limits)
    expect(over.warnings).toEqual([])
    expect(over.exceeded).toHaveLength(1)
    expect(over.exceeded[0]?.message).toBe("run cost $10.00 is 100% of maxCostUsd $10.00: limit reached")

    // Small budgets whose 80 % is not exact in binary.
    expect(checkLimits(at(0.08), { maxCostUsd: 0.1 }).warnings).toHaveLength(1)
    expect(checkLimits(at(0.079), { maxCostUsd: 0.1 }).warnings).toHaveLength(0)
  })

  it("checks each instance against the per-instance limit and the run's tokens against maxTokens", () => {
    const snap = snapshotOf([
      { name: "worker-1", role: "worker", usd: 0.79, tokens: 790 },
      { name: "worker-2", role: "worker", usd: 0.8, tokens: 10 },
      { name: "worker-3", role: "worker", usd: 1.25, tokens: 0 }
    ])
    const result = checkLimits(snap, { maxCostUsdPerInstance: 1, maxTokens: 1000, maxCostUsd: 100 })
    expect(result.warnings.map((c) => [c.limit, c.subject])).toEqual([
      ["maxCostUsdPerInstance", "worker-2"],
      ["maxTokens", "run"]
    ])
    expect(result.exceeded.map((c) => [c.limit, c.subject, c.percent])).toEqual([
      ["maxCostUsdPerInstance", "worker-3", 125]
    ])
    expect(result.warnings[1]?.message).toBe("run tokens 800 is 80% of maxTokens 1,000")
    expect(checkLimits(snap, {})).toEqual({ warnings: [], exceeded: [] })
  })
})

describe("formatCostTable", () => {
  it("shows one row per instance, a total row and the OAuth note", () => {
    const entries = (name: string) => usageOf(parseTranscriptLines(fixture(name)), new Set())
    const opus = entries(OPUS)
    const haiku = entries(HAIKU)
    const row = (name: string, role: string, s: typeof opus) => ({ name, role, credential: undefined, ...s })
    const snap: CostSnapshot = {
      instances: [row("director", "director", opus), row("worker-1", "worker", haiku)],
      byRole: {},
      byCredential: {},
      total: { tokens: { ...opus.tokens }, usd: opus.usd + haiku.usd, responses: 4, models: [] },
      unknownModels: [],
      newUnknownModels: []
    }
    const table = formatCostTable(snap)
    const lines = table.split("\n")
    expect(lines[0]).toMatch(/^instance\s+role\s+input\s+output\s+cache write\s+cache read\s+USD$/)
    expect(lines[2]).toMatch(/^director\s+director\s+3,600\s+1,020\s+168\s+23,400\s+\$0\.0403$/)
    expect(lines[3]).toMatch(/^worker-1\s+worker\s+1,200\s+340\s+56\s+7,800\s+\$0\.0004$/)
    expect(lines[5]).toMatch(/^total\s+3,600\s+1,020\s+168\s+23,400\s+\$0\.0407$/)
    expect(table).toMatch(/OAuth/)
    expect(table).toMatch(/estimate/)
    // Columns line up: every USD cell ends at the same column.
    expect(new Set([0, 2, 3, 5].map((i) => lines[i]?.length)).size).toBe(1)
  })
})

// ---------------------------------------------------------------------------------------------
// Live: the real claude against the mock model; the tracker's totals must match the mock's ledger.

const claudePath = NodePath.resolve("node_modules/.bin/claude")
const API_KEY = `sk-ant-test-${randomBytes(24).toString("hex")}`

const runClaude = (args: ReadonlyArray<string>, options: { cwd: string; env: NodeJS.ProcessEnv }) =>
  // Asynchronous on purpose: the mock server answers from this same process.
  Effect.async<string, Error>((resume) => {
    execFile(claudePath, [...args], { ...options, encoding: "utf8", timeout: 60_000 }, (error, stdout, stderr) =>
      resume(error ? Effect.fail(new Error(`claude failed: ${stderr || error.message}`)) : Effect.succeed(stdout))
    )
  })

describe("live with the real claude", () => {
  it.scoped("totals of a tool turn and a --continue run match the mock model's ledger", () =>
    withNode(Effect.gen(function*() {
      const fs = yield* FileSystem.FileSystem
      const root = yield* fs.makeTempDirectoryScoped({ prefix: "cco-costs-live-" })
      const configDir = NodePath.join(root, "claude")
      const cwd = NodePath.join(root, "work")
      yield* fs.makeDirectory(configDir, { recursive: true })
      yield* fs.makeDirectory(cwd, { recursive: true })
      yield* fs.writeFileString(
        NodePath.join(configDir, ".claude.json"),
        JSON.stringify({ hasCompletedOnboarding: true, customApiKeyResponses: { approved: [API_KEY.slice(-20)], rejected: [] } })
      )
      const brain: Brain = (req) =>
        pendingToolResults(req).length > 0
          ? { _tag: "Text", text: "Both commands ran." }
          : (lastUserText(req) ?? "").includes("tools please")
          ? {
            _tag: "ToolUse",
            text: "Running two commands.",
            tools: [{ name: "Bash", input: { command: "echo one" } }, { name: "Bash", input: { command: "echo two" } }]
          }
          : { _tag: "Text", text: "Plain answer." }
      const usage = { input_tokens: 1500, output_tokens: 250, cache_creation_input_tokens: 75, cache_read_input_tokens: 9000 }
      const mock = yield* startMockModel({ brain, usage, keyNames: { [API_KEY]: "key-1" } })
      const env = {
        PATH: process.env.PATH ?? "/usr/bin:/bin",
        HOME: root,
        CLAUDE_CONFIG_DIR: configDir,
        ANTHROPIC_BASE_URL: mock.url,
        ANTHROPIC_API_KEY: API_KEY,
        IS_SANDBOX: "1",
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: "1"
      }
      const tracker = yield* makeCostTracker([{ name: "worker-1", role: "worker", configDir }])
      yield* tracker.setCredential("worker-1", "key-1")

      yield* runClaude(["-p", "tools please", "--dangerously-skip-permissions"], { cwd, env })
      const afterFirst = yield* tracker.poll
      yield* runClaude(["-p", "and now plain", "--continue", "--dangerously-skip-permissions"], { cwd, env })
      const snap = yield* tracker.poll

      const ledger = (yield* mock.ledger)["key-1"]
      expect(ledger).toBeDefined()
      if (ledger === undefined) return
      // Side requests (titles, summaries) are not written to transcripts; print mode sends none.
      expect(ledger.sideRequests).toBe(0)
      expect(ledger.errors).toBe(0)
      expect(afterFirst.total.responses).toBe(2)
      expect(snap.total.responses).toBe(ledger.requests)
      const within1pct = (actual: number, expected: number) =>
        expect(Math.abs(actual - expected)).toBeLessThanOrEqual(expected * 0.01)
      within1pct(snap.total.tokens.input, ledger.input_tokens)
      within1pct(snap.total.tokens.output, ledger.output_tokens)
      within1pct(snap.total.tokens.cacheWrite, ledger.cache_creation_input_tokens)
      within1pct(snap.total.tokens.cacheRead, ledger.cache_read_input_tokens)
      const model = snap.total.models[0] ?? ""
      expect(familyOf(model)).toBeDefined()
      within1pct(
        snap.total.usd,
        priceOf(model, {
          input: ledger.input_tokens,
          output: ledger.output_tokens,
          cacheWrite: ledger.cache_creation_input_tokens,
          cacheRead: ledger.cache_read_input_tokens
        })
      )
      expect(snap.byCredential["key-1"]?.usd).toBeCloseTo(snap.total.usd, 12)
    })), 60_000)
})
