// The incremental cost tracker: running totals per instance, role, credential and run, read from each instance's
// transcripts as they grow.
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import { Effect } from "effect"
import { addTokens, type TokenCounts, zeroTokens } from "./Prices.js"
import { type CostTotals, readAppended, transcriptFiles, type UsageSummary, usageOf } from "./Transcripts.js"

export interface CostInstance {
  readonly name: string
  readonly role: string
  /**
   * The instance's CLAUDE_CONFIG_DIR; transcripts are under `<configDir>/projects/**.jsonl`. Read at every poll (it
   * may be a getter): what was read from an earlier dir stays counted.
   */
  readonly configDir: string
}

export interface InstanceCost extends CostTotals {
  readonly name: string
  readonly role: string
  /** The credential new usage is attributed to, if the caller set one. */
  readonly credential: string | undefined
}

export interface CostSnapshot {
  /** In the order the instances were given. */
  readonly instances: ReadonlyArray<InstanceCost>
  readonly byRole: Readonly<Record<string, CostTotals>>
  /** Usage read while no credential was set is under NO_CREDENTIAL. */
  readonly byCredential: Readonly<Record<string, CostTotals>>
  readonly total: CostTotals
  /** Every model seen so far without a price row; each is priced as UNKNOWN_MODEL_FAMILY. */
  readonly unknownModels: ReadonlyArray<string>
  /** Unknown models first seen by the poll that made this snapshot: warn about these, once. */
  readonly newUnknownModels: ReadonlyArray<string>
}

export const NO_CREDENTIAL = "(none)"

export interface CostTracker {
  /** Reads what was appended to each instance's transcripts since the last poll and returns the running totals. */
  readonly poll: Effect.Effect<CostSnapshot>
  /**
   * As poll, for one instance only: what was appended to its transcripts since they were last read. Cheap enough
   * to run whenever the instance spends (a turn ended, a tool ran). An unknown instance reads nothing.
   */
  readonly pollInstance: (instance: string) => Effect.Effect<CostSnapshot>
  /** The running totals without reading anything. */
  readonly snapshot: Effect.Effect<CostSnapshot>
  /**
   * From now on attribute the instance's usage to `credential`. Usage already written is first read and
   * attributed to the previous credential, so call this when the instance switches (e.g. before a restart).
   */
  readonly setCredential: (instance: string, credential: string) => Effect.Effect<void>
  /** Starts tracking an instance created after the tracker. */
  readonly addInstance: (instance: CostInstance) => Effect.Effect<void>
}

interface Accumulator {
  tokens: TokenCounts
  usd: number
  responses: number
  readonly models: Array<string>
}

const emptyAccumulator = (): Accumulator => ({ tokens: zeroTokens, usd: 0, responses: 0, models: [] })

const accumulate = (acc: Accumulator, summary: UsageSummary): void => {
  acc.tokens = addTokens(acc.tokens, summary.tokens)
  acc.usd += summary.usd
  acc.responses += summary.responses
  for (const m of summary.models) if (!acc.models.includes(m)) acc.models.push(m)
}

const totalsOf = (acc: Accumulator): CostTotals => ({
  tokens: acc.tokens,
  usd: acc.usd,
  responses: acc.responses,
  models: [...acc.models]
})

const sumTotals = (all: ReadonlyArray<CostTotals>): CostTotals => {
  const acc = emptyAccumulator()
  for (const t of all) accumulate(acc, { ...t, unknownModels: [] })
  return totalsOf(acc)
}

// Bounds memory on a first read of a long transcript; a line longer than a chunk is carried over to the next one.
const defaultChunkBytes = 4 * 1024 * 1024

/** What a tracker has counted so far; changed only under its lock. */
interface Ledger {
  readonly instances: Array<CostInstance>
  readonly perInstance: Map<string, Accumulator>
  readonly perCredential: Map<string, Accumulator>
  readonly credentials: Map<string, string>
  /** Per transcript file, the byte offset just past the last complete line read. */
  readonly offsets: Map<string, number>
  /** The responses counted, so that none is counted twice. */
  readonly seen: Set<string>
  readonly unknown: Array<string>
  /** Unknown models first seen by the current poll. */
  newUnknown: Array<string>
}

const emptyLedger = (): Ledger => ({
  instances: [],
  perInstance: new Map(),
  perCredential: new Map(),
  credentials: new Map(),
  offsets: new Map(),
  seen: new Set(),
  unknown: [],
  newUnknown: []
})

const addInstance = (ledger: Ledger, instance: CostInstance): void => {
  if (ledger.perInstance.has(instance.name)) return
  ledger.instances.push(instance)
  ledger.perInstance.set(instance.name, emptyAccumulator())
}

/** Adds newly read usage to the instance, to the credential it is attributed to, and to the models seen. */
const record = (ledger: Ledger, instance: string, summary: UsageSummary): void => {
  const accInstance = ledger.perInstance.get(instance)
  if (accInstance !== undefined) accumulate(accInstance, summary)
  const credential = ledger.credentials.get(instance) ?? NO_CREDENTIAL
  const accCredential = ledger.perCredential.get(credential) ?? emptyAccumulator()
  accumulate(accCredential, summary)
  ledger.perCredential.set(credential, accCredential)
  for (const model of summary.unknownModels) {
    if (ledger.unknown.includes(model)) continue
    ledger.unknown.push(model)
    ledger.newUnknown.push(model)
  }
}

const snapshotOf = (ledger: Ledger): CostSnapshot => {
  const rows: ReadonlyArray<InstanceCost> = ledger.instances.map((i) => ({
    name: i.name,
    role: i.role,
    credential: ledger.credentials.get(i.name),
    ...totalsOf(ledger.perInstance.get(i.name) ?? emptyAccumulator())
  }))
  const roles = [...new Set(rows.map((r) => r.role))]
  return {
    instances: rows,
    byRole: Object.fromEntries(roles.map((role) => [role, sumTotals(rows.filter((r) => r.role === role))])),
    byCredential: Object.fromEntries([...ledger.perCredential].map(([name, acc]) => [name, totalsOf(acc)])),
    total: sumTotals(rows),
    unknownModels: [...ledger.unknown],
    newUnknownModels: [...ledger.newUnknown]
  }
}

/**
 * A tracker over the given instances. It remembers a byte offset per transcript file and reads only complete lines
 * appended since, so a line being written is read whole at a later poll; new session files are found on each poll.
 */
export const makeCostTracker = (
  initial: ReadonlyArray<CostInstance>,
  options: { readonly chunkBytes?: number } = {}
): Effect.Effect<CostTracker, never, FileSystem.FileSystem | Path.Path> =>
  Effect.gen(function*() {
    const chunkBytes = Math.max(1, options.chunkBytes ?? defaultChunkBytes)
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const lock = yield* Effect.makeSemaphore(1)
    const ledger = emptyLedger()
    initial.forEach((instance) => addInstance(ledger, instance))

    const pollInstance = (instance: CostInstance) =>
      Effect.gen(function*() {
        for (const file of yield* transcriptFiles(fs, path, instance.configDir)) {
          const result = yield* readAppended(fs, file, ledger.offsets.get(file) ?? 0, chunkBytes).pipe(
            Effect.catchAll((e) =>
              Effect.logWarning(`cost tracking: cannot read ${file}: ${e.message}`).pipe(Effect.as(undefined))
            )
          )
          if (result === undefined) continue
          yield* Effect.sync(() => {
            ledger.offsets.set(file, result.offset)
            const summary = usageOf(result.entries, ledger.seen)
            if (summary.responses === 0) return
            record(ledger, instance.name, summary)
          })
        }
      })

    const currentSnapshot = Effect.sync(() => snapshotOf(ledger))

    const poll = lock.withPermits(1)(
      Effect.gen(function*() {
        ledger.newUnknown = []
        for (const instance of [...ledger.instances]) yield* pollInstance(instance)
        return yield* currentSnapshot
      })
    ).pipe(Effect.withSpan("CostTracker.poll"))

    const pollOne = Effect.fn("CostTracker.pollInstance")(function*(name: string) {
      return yield* lock.withPermits(1)(
        Effect.gen(function*() {
          ledger.newUnknown = []
          const known = ledger.instances.find((i) => i.name === name)
          if (known !== undefined) yield* pollInstance(known)
          return yield* currentSnapshot
        })
      )
    })

    const setCredential = Effect.fn("CostTracker.setCredential")(function*(instance: string, credential: string) {
      yield* lock.withPermits(1)(
        Effect.gen(function*() {
          const known = ledger.instances.find((i) => i.name === instance)
          if (known !== undefined) yield* pollInstance(known)
          ledger.credentials.set(instance, credential)
        })
      )
    })

    const add = Effect.fn("CostTracker.addInstance")(function*(instance: CostInstance) {
      yield* lock.withPermits(1)(Effect.sync(() => addInstance(ledger, instance)))
    })

    return { poll, pollInstance: pollOne, snapshot: lock.withPermits(1)(currentSnapshot), setCredential, addInstance: add }
  })
