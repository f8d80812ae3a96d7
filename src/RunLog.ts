// The run folder: combined.log (JSON lines, rotated), session-<name>.log per instance, state.json, and a `latest` link.
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import type { PlatformError } from "@effect/platform/Error"
import { Clock, Context, Deferred, Effect, Layer } from "effect"
import { neutraliseValue, STATE_MAX } from "./Untrusted.js"

export interface RunLogShape {
  readonly folder: string
  readonly runId: string
  /**
   * Appends one JSON line {time, event, ...fields} to combined.log. Never fails the caller. Every string in it is
   * neutralised (no escape sequences or control characters, no credential, bounded length); listeners get the
   * line as written.
   */
  readonly log: (event: string, fields?: Readonly<Record<string, unknown>>) => Effect.Effect<void>
  readonly sessionLogPath: (instance: string) => string
  /** Writes state.json atomically (temp file + rename), its strings neutralised as the log's are. */
  readonly writeState: (state: unknown) => Effect.Effect<void>
  /** Lines logged so far in this process, newest last (tests and progress output read them). */
  readonly listen: (listener: (line: LogLine) => void) => Effect.Effect<void>
}

export interface LogLine {
  readonly time: string
  readonly event: string
  readonly [key: string]: unknown
}

export class RunLog extends Context.Tag("cco/RunLog")<RunLog, RunLogShape>() {}

const pad = (n: number) => String(n).padStart(2, "0")

/** `2026-11-25_21-07-14`, local time: sorts by time and reads at a glance. */
export const runIdFor = (date: Date) =>
  `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}_${pad(date.getHours())}-${pad(date.getMinutes())}-${pad(date.getSeconds())}`

/** Creates a fresh timestamped run folder in logDirectory and points `latest` at it. */
export const createRunFolder = (logDirectory: string, date: Date) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    yield* fs.makeDirectory(logDirectory, { recursive: true })
    const base = runIdFor(date)
    let runId = base
    for (let i = 2; yield* fs.exists(path.join(logDirectory, runId)); i++) runId = `${base}-${i}`
    const folder = path.join(logDirectory, runId)
    yield* fs.makeDirectory(folder, { recursive: true, mode: 0o700 })
    const latest = path.join(logDirectory, "latest")
    yield* fs.remove(latest).pipe(Effect.ignore)
    yield* fs.symlink(runId, latest).pipe(Effect.ignore)
    return { folder, runId }
  })

/** combined.log is rotated before it would grow past this size: combined.log.1 is the newest of the older files. */
export const COMBINED_LOG_MAX_BYTES = 50 * 1024 * 1024
/** How many rotated combined.log files are kept (combined.log.1 … combined.log.3); older ones are removed. */
export const COMBINED_LOG_KEEP = 3

export interface RunLogOptions {
  readonly combinedMaxBytes?: number
  readonly combinedKeep?: number
}

export const make = (
  folder: string,
  runId: string,
  options: RunLogOptions = {}
): Effect.Effect<RunLogShape, PlatformError, FileSystem.FileSystem | Path.Path> =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const combined = path.join(folder, "combined.log")
    const statePath = path.join(folder, "state.json")
    const listeners: Array<(line: LogLine) => void> = []
    // One writer: lines from concurrent fibers never interleave.
    const lock = yield* Effect.makeSemaphore(1)
    const maxBytes = Math.max(1, options.combinedMaxBytes ?? COMBINED_LOG_MAX_BYTES)
    const keep = Math.max(1, Math.floor(options.combinedKeep ?? COMBINED_LOG_KEEP))
    // The size is counted as lines are written (a resumed run appends to its log), never asked of the disk per line.
    let size = yield* fs.stat(combined).pipe(Effect.map((info) => Number(info.size)), Effect.orElseSucceed(() => 0))

    // combined.log → combined.log.1 → … → combined.log.<keep>; the oldest goes. Under the write lock: no line is lost.
    const rotate = Effect.gen(function*() {
      yield* fs.remove(`${combined}.${keep}`).pipe(Effect.ignore)
      for (let i = keep - 1; i >= 1; i--) yield* fs.rename(`${combined}.${i}`, `${combined}.${i + 1}`).pipe(Effect.ignore)
      yield* fs.rename(combined, `${combined}.1`).pipe(Effect.ignore)
      size = 0
    })

    const append = (text: string) =>
      Effect.gen(function*() {
        const bytes = Buffer.byteLength(text)
        if (size > 0 && size + bytes > maxBytes) yield* rotate
        yield* fs.writeFileString(combined, text, { flag: "a" })
        size += bytes
      })

    // Group commit: a line waits in `pending`; whoever holds the write lock appends every pending line in one write,
    // in the order they came, and tells their listeners. A burst of lines (26 instances' hooks) costs one write, not
    // one open/append/close each, and `log` still returns once its own line is written.
    let pending: Array<{ readonly text: string; readonly line: LogLine; readonly written: Deferred.Deferred<void> }> = []
    const writePending = Effect.gen(function*() {
      const batch = pending
      pending = []
      if (batch.length === 0) return
      yield* append(batch.map((b) => b.text).join("")).pipe(
        Effect.catchAll((e) => Effect.logWarning(`combined.log write failed: ${e.message}`))
      )
      for (const b of batch) {
        listeners.forEach((l) => l(b.line))
        yield* Deferred.succeed(b.written, undefined)
      }
    })

    // The time is the Clock's: a run under the TestClock logs its virtual time.
    const log = (event: string, fields: Readonly<Record<string, unknown>> = {}) =>
      Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        const line = neutraliseValue({ time: new Date(now).toISOString(), event, ...fields }) as LogLine
        const written = yield* Deferred.make<void>()
        pending.push({ text: JSON.stringify(line) + "\n", line, written })
        // An earlier holder of the lock may have written this line already.
        yield* lock.withPermits(1)(Effect.flatMap(Deferred.isDone(written), (done) => done ? Effect.void : writePending))
      })

    const stateLock = yield* Effect.makeSemaphore(1)
    // One writer at a time: concurrent writes would race on the temp file.
    const writeState = (state: unknown) =>
      stateLock.withPermits(1)(Effect.gen(function*() {
        const tmp = `${statePath}.${process.pid}.tmp`
        yield* fs.writeFileString(tmp, JSON.stringify(neutraliseValue(state, STATE_MAX), null, 2) + "\n", { mode: 0o600 })
        yield* fs.rename(tmp, statePath)
      })).pipe(Effect.catchAll((e) => Effect.logWarning(`state.json write failed: ${e.message}`)))

    return {
      folder,
      runId,
      log,
      sessionLogPath: (instance: string) => path.join(folder, `session-${instance}.log`),
      writeState,
      listen: (listener) => Effect.sync(() => void listeners.push(listener))
    }
  })

export const layer = (folder: string, runId: string, options?: RunLogOptions) => Layer.effect(RunLog, make(folder, runId, options))
