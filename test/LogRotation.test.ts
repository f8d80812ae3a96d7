// combined.log and the session logs stay bounded over a long run: past their cap they rotate, keep a few older
// files, and lose nothing of what went into the newest one.
import { NodeContext } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { spawnSync } from "node:child_process"
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs"
import * as RunLog from "../src/RunLog.js"
import { Tmux } from "../src/Tmux.js"
import { privateTmux, tempDir, waitFor } from "./support.js"

const lines = (file: string) => existsSync(file) ? readFileSync(file, "utf8").split("\n").filter((l) => l !== "") : []
const seqOf = (file: string) => lines(file).map((l) => (JSON.parse(l) as { seq: number }).seq)

/** Whether the newest log holds `text`; the log may be between a rotation's rename and its next write. */
const newestHas = (log: string, text: string) => {
  try {
    return readFileSync(log, "utf8").includes(text)
  } catch {
    return false
  }
}

describe("combined.log rotation", () => {
  it.scoped("past its cap combined.log moves to combined.log.1 (and on), keeps `keep` files, and no line is lost or split", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      const log = `${dir}/combined.log`
      const runLog = yield* RunLog.make(dir, "test", { combinedMaxBytes: 2_000, combinedKeep: 2 })
      for (let seq = 0; seq < 100; seq++) yield* runLog.log("tick", { seq, pad: "x".repeat(40) })
      expect(existsSync(`${log}.1`)).toBe(true)
      expect(existsSync(`${log}.2`)).toBe(true)
      expect(existsSync(`${log}.3`)).toBe(false)
      for (const f of [log, `${log}.1`, `${log}.2`]) expect(statSync(f).size).toBeLessThanOrEqual(2_000)
      // Oldest first, the kept files hold one unbroken run of lines ending with the newest.
      const kept = [...seqOf(`${log}.2`), ...seqOf(`${log}.1`), ...seqOf(log)]
      expect(kept.at(-1)).toBe(99)
      expect(kept).toEqual(Array.from({ length: kept.length }, (_, i) => 100 - kept.length + i))
      expect(kept.length).toBeGreaterThan(2 * 20)
    }).pipe(Effect.provide(NodeContext.layer)))

  it.scoped("a resumed run counts what its combined.log already holds", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      const log = `${dir}/combined.log`
      writeFileSync(log, JSON.stringify({ event: "old", seq: -1, pad: "y".repeat(1_900) }) + "\n")
      const runLog = yield* RunLog.make(dir, "test", { combinedMaxBytes: 2_000, combinedKeep: 3 })
      yield* runLog.log("tick", { seq: 0, pad: "x".repeat(200) })
      expect(seqOf(`${log}.1`)).toEqual([-1])
      expect(seqOf(log)).toEqual([0])
    }).pipe(Effect.provide(NodeContext.layer)))
})

// Rotation needs GNU split (--filter); elsewhere the session log is appended to unrotated.
const gnuSplit = spawnSync("split", ["--filter=:", "/dev/null"]).status === 0

describe.skipIf(!gnuSplit)("session log rotation (tmux pipe-pane)", () => {
  it.scoped("a session's output past the cap rotates its log; the kept files end with the newest output, nothing lost", () =>
    Effect.gen(function*() {
      const tmux = yield* Tmux
      const dir = yield* tempDir()
      const log = `${dir}/session-worker-1.log`
      const count = 3_000
      yield* tmux.newSession({
        name: "cco-rot-worker-1",
        cwd: dir,
        // ~30 KB of numbered lines, then a marker, then it waits (the pipe stays open as in a live session).
        command: ["sh", "-c", `i=0; while [ $i -lt ${count} ]; do printf 'line %06d\\n' $i; i=$((i + 1)); done; echo END-OF-OUTPUT; exec sleep 600`],
        logFile: log,
        logLimits: { maxBytes: 4_000, keep: 20 }
      })
      yield* waitFor("the end of the output in the newest log", Effect.sync(() => newestHas(log, "END-OF-OUTPUT") ? true : undefined), 20_000, 50)
      const files = [log, ...Array.from({ length: 20 }, (_, i) => `${log}.${i + 1}`).filter(existsSync)]
      expect(files.length).toBeGreaterThan(3)
      expect(existsSync(`${log}.21`)).toBe(false)
      for (const f of files) expect(statSync(f).size).toBeLessThan(4_000)
      // Oldest first: every line the program printed, in order, once.
      const all = [...files].reverse().map((f) => readFileSync(f, "latin1")).join("")
      const numbers = [...all.matchAll(/line (\d{6})/g)].map((m) => Number(m[1]))
      expect(numbers).toEqual(Array.from({ length: count }, (_, i) => i))
      expect(readFileSync(log, "latin1")).toMatch(/END-OF-OUTPUT/)
      yield* tmux.killSession("cco-rot-worker-1")
    }).pipe(Effect.provide(Layer.merge(privateTmux(), NodeContext.layer))), { timeout: 30_000 })

  it.scoped("with few files kept the oldest go, and the newest file still ends with the last output", () =>
    Effect.gen(function*() {
      const tmux = yield* Tmux
      const dir = yield* tempDir()
      const log = `${dir}/session-worker-2.log`
      yield* tmux.newSession({
        name: "cco-rot-worker-2",
        cwd: dir,
        command: ["sh", "-c", `i=0; while [ $i -lt 3000 ]; do printf 'line %06d\\n' $i; i=$((i + 1)); done; echo END-OF-OUTPUT; exec sleep 600`],
        logFile: log,
        logLimits: { maxBytes: 4_000, keep: 2 }
      })
      yield* waitFor("the end of the output in the newest log", Effect.sync(() => newestHas(log, "END-OF-OUTPUT") ? true : undefined), 20_000, 50)
      expect(existsSync(`${log}.1`)).toBe(true)
      expect(existsSync(`${log}.2`)).toBe(true)
      expect(existsSync(`${log}.3`)).toBe(false)
      const all = [`${log}.2`, `${log}.1`, log].map((f) => readFileSync(f, "latin1")).join("")
      const numbers = [...all.matchAll(/line (\d{6})/g)].map((m) => Number(m[1]))
      // An unbroken tail of the output.
      expect(numbers.at(-1)).toBe(2999)
      expect(numbers).toEqual(Array.from({ length: numbers.length }, (_, i) => 3000 - numbers.length + i))
      yield* tmux.killSession("cco-rot-worker-2")
    }).pipe(Effect.provide(Layer.merge(privateTmux(), NodeContext.layer))), { timeout: 30_000 })
})
