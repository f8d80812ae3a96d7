// Shared test fixtures: private tmux servers and temp dirs that are removed even when a test fails.
import { NodeContext } from "@effect/platform-node"
import { FileSystem } from "@effect/platform"
import { Effect, Layer } from "effect"
import { execFileSync } from "node:child_process"
import { existsSync, readdirSync, readFileSync } from "node:fs"
import { randomBytes } from "node:crypto"
import * as Tmux from "../src/Tmux.js"
import { removeSocketFiles } from "../src/TmuxFiles.js"
import { makeLive } from "../src/TmuxLive.js"

export const uniqueSocket = () => `cco-test-${process.pid}-${randomBytes(4).toString("hex")}`

/** tmux leaves its socket file behind after kill-server; tests remove theirs. */
export const removeSocketFile = removeSocketFiles

/** Kills a private tmux server (if it still runs) and removes its socket files. */
export const killTmuxServer = (socket: string) => {
  try {
    execFileSync("tmux", ["-L", socket, "kill-server"], { stdio: "ignore" })
  } catch {
    // no server left
  }
  removeSocketFile(socket)
}

/** A live Tmux on its own server; the server is killed (and its socket file removed) when the layer's scope closes. */
export const privateTmux = (socket = uniqueSocket()) =>
  Layer.scoped(
    Tmux.Tmux,
    Effect.acquireRelease(
      makeLive(socket),
      (tmux) => tmux.killServer.pipe(Effect.ignore, Effect.ensuring(Effect.sync(() => removeSocketFile(socket))))
    )
  ).pipe(Layer.provide(NodeContext.layer))

/** A temp directory removed when the scope closes. */
export const tempDir = (prefix = "cco-test-") =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    return yield* fs.makeTempDirectoryScoped({ prefix })
  })

/** Polls `check` until it returns a value (not undefined) or the timeout passes. Real time: for integration tests only. */
export const waitFor = <A, E, R>(
  what: string,
  check: Effect.Effect<A | undefined, E, R>,
  timeoutMs = 30_000,
  intervalMs = 100
): Effect.Effect<A, E | Error, R> =>
  Effect.gen(function*() {
    const deadline = Date.now() + timeoutMs
    while (true) {
      const value = yield* check
      if (value !== undefined) return value
      if (Date.now() > deadline) return yield* Effect.fail(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`))
      yield* Effect.promise(() => new Promise((r) => setTimeout(r, intervalMs)))
    }
  })

/** Command lines of every process on the machine (for "no secret in argv" checks). */
export const allArgv = (): string =>
  execFileSync("ps", ["-eo", "args", "--no-headers"], { encoding: "utf8", maxBuffer: 16 * 1024 * 1024 })

const procEntry = (pid: string, file: string) => {
  try {
    return readFileSync(`/proc/${pid}/${file}`, "utf8").split("\0").filter((s) => s !== "")
  } catch {
    return undefined // gone, or not ours to read
  }
}

/**
 * Live processes whose command line is exactly `command` and whose environment holds a control socket under
 * `root`: started for a run of this test, so they are ours to flag and to end. Linux (/proc) only; elsewhere none.
 */
export const leftovers = (root: string, command: string): Array<number> =>
  !existsSync("/proc/self/environ") ? [] : readdirSync("/proc").filter((name) => /^\d+$/.test(name)).filter((pid) =>
    procEntry(pid, "cmdline")?.join(" ") === command &&
    procEntry(pid, "environ")?.some((v) => v.startsWith(`CCO_SOCKET=${root}/`)) === true
  ).map(Number)

/** After the test (also when it fails), ends what `leftovers` finds, so a regression does not pile up sleeps. */
export const endLeftovers = (root: string, command: string) =>
  Effect.addFinalizer(() => Effect.sync(() => leftovers(root, command).forEach((pid) => process.kill(pid, "SIGKILL"))))

/** Whether a process runs (the same check cco makes). */
export { isAlive as alive } from "../src/Process.js"
