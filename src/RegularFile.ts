// Reading a file that cco did not write itself (a config file, a run folder's state.json or cco.lock): regular files
// only, and no more than a bound. A FIFO in their place would block the read forever, a device or a huge file fill memory.
import * as FileSystem from "@effect/platform/FileSystem"
import { Effect, Option, Schema } from "effect"

export class FileReadError extends Schema.TaggedError<FileReadError>()("FileReadError", {
  file: Schema.String,
  reason: Schema.Literal("NotFound", "NotRegular", "TooLarge", "Unreadable"),
  /** What is wrong, as a phrase that follows the file's name: `is a FIFO, not a regular file`. */
  message: Schema.String
}) {}

const KIB = 1024
const MIB = 1024 * KIB

/** The bounds cco reads its files with. */
export const MAX_BYTES = {
  /** orchestrator.json, api-keys.json. */
  config: MIB,
  /** A run's state.json: every task text and summary of the board. */
  state: 64 * MIB,
  /** cco.lock: a pid. */
  lock: 4 * KIB
} as const

const kinds: Record<FileSystem.File.Type, string> = {
  File: "a regular file",
  Directory: "a directory",
  SymbolicLink: "a symbolic link",
  BlockDevice: "a block device",
  CharacterDevice: "a character device",
  FIFO: "a FIFO (named pipe)",
  Socket: "a socket",
  Unknown: "not a regular file"
}

const sizeText = (bytes: number) =>
  bytes >= MIB ? `${Math.round(bytes / MIB)} MiB` : bytes >= KIB ? `${Math.round(bytes / KIB)} KiB` : `${bytes} bytes`

const notRegular = (file: string, type: FileSystem.File.Type) =>
  new FileReadError({ file, reason: "NotRegular", message: `is ${kinds[type]}, not a regular file` })

const tooLarge = (file: string, maxBytes: number) =>
  new FileReadError({ file, reason: "TooLarge", message: `is larger than ${sizeText(maxBytes)}` })

const CHUNK = 64 * KIB

/**
 * The text of `file`, which must be a regular file (a symbolic link to one is followed) of at most `maxBytes`.
 * The type is checked before the file is opened (opening a FIFO blocks until a writer comes) and again on the open
 * file; the read stops at the bound whatever the size said.
 */
export const readRegularFile = Effect.fn("RegularFile.read")(function*(file: string, maxBytes: number) {
  const fs = yield* FileSystem.FileSystem
  const failed = (e: { readonly message: string; readonly _tag: string; readonly reason?: string }) =>
    new FileReadError(
      e._tag === "SystemError" && e.reason === "NotFound"
        ? { file, reason: "NotFound", message: "not found" }
        : { file, reason: "Unreadable", message: `cannot be read (${e.message})` }
    )
  const info = yield* fs.stat(file).pipe(Effect.mapError(failed))
  if (info.type !== "File") return yield* notRegular(file, info.type)
  if (info.size > BigInt(maxBytes)) return yield* tooLarge(file, maxBytes)
  const bytes = yield* Effect.scoped(Effect.gen(function*() {
    const handle = yield* fs.open(file, { flag: "r" }).pipe(Effect.mapError(failed))
    // Replaced between the stat and the open.
    const opened = yield* handle.stat.pipe(Effect.mapError(failed))
    if (opened.type !== "File") return yield* notRegular(file, opened.type)
    const chunks: Array<Uint8Array> = []
    let total = 0
    while (true) {
      const chunk = yield* handle.readAlloc(Math.min(CHUNK, maxBytes + 1 - total)).pipe(Effect.mapError(failed))
      if (Option.isNone(chunk) || chunk.value.length === 0) break
      chunks.push(chunk.value)
      total += chunk.value.length
      if (total > maxBytes) return yield* tooLarge(file, maxBytes)
    }
    const all = new Uint8Array(total)
    let at = 0
    for (const chunk of chunks) {
      all.set(chunk, at)
      at += chunk.length
    }
    return all
  }))
  return new TextDecoder("utf-8").decode(bytes)
})
