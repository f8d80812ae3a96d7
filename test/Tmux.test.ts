import { FileSystem } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Redacted } from "effect"
import { execFileSync } from "node:child_process"
import { existsSync, readdirSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { Tmux } from "../src/Tmux.js"
import { commandBatches, makeLive } from "../src/TmuxLive.js"
import { TmuxTest, TmuxTestControl } from "../src/TmuxTest.js"
import { allArgv, privateTmux, tempDir, uniqueSocket, waitFor } from "./support.js"

describe("Tmux (live, private server)", () => {
  // A server of its own per test: a server being killed by one test's finalizer must not meet the next test.
  const layer = () => Layer.merge(privateTmux(), NodeContext.layer)

  it.scoped("runs a program with a secret env that never appears in argv, logs its output from the first byte", () =>
    Effect.gen(function*() {
      const tmux = yield* Tmux
      const fs = yield* FileSystem.FileSystem
      const dir = yield* tempDir()
      const log = `${dir}/session.log`
      const secret = `sk-secret-${Math.random().toString(36).slice(2)}`
      yield* tmux.newSession({
        name: "cco-t-one",
        cwd: dir,
        command: ["sh", "-c", 'echo "first line $SECRET_VALUE"; echo "cwd=$(pwd)"; exec cat'],
        env: { SECRET_VALUE: Redacted.make(secret), PLAIN: "x" },
        logFile: log
      })
      expect(allArgv()).not.toContain(secret)
      const screen = yield* waitFor("output", Effect.map(tmux.capturePane("cco-t-one"), (s) => s.includes("cwd=") ? s : undefined))
      expect(screen).toContain(`first line ${secret}`)
      expect(screen).toContain(`cwd=${dir}`)
      // The launch script (with the secret) removed itself before the program ran.
      const leftovers = readdirSync(tmpdir()).filter((d) => d.startsWith("cco-env-")).flatMap((d) => {
        try {
          return readdirSync(`${tmpdir()}/${d}`).map((f) => readFileSync(`${tmpdir()}/${d}/${f}`, "utf8"))
        } catch {
          return []
        }
      })
      expect(leftovers.filter((text) => text.includes(secret))).toEqual([])
      // The log file appears when tmux has started the pipe's `cat`, a moment after the session.
      const logText = yield* waitFor("log", Effect.map(fs.readFileString(log).pipe(Effect.orElseSucceed(() => "")), (s) => s.includes("cwd=") ? s : undefined))
      expect(logText.startsWith("first line")).toBe(true)

      yield* tmux.sendText("cco-t-one", "hello through paste")
      yield* tmux.sendKeys("cco-t-one", ["Enter"])
      yield* waitFor("echo", Effect.map(tmux.capturePane("cco-t-one"), (s) => s.split("hello through paste").length >= 3 ? s : undefined))

      const info = yield* tmux.paneInfo("cco-t-one")
      expect(info.pid).toBeGreaterThan(1)
      expect(info.dead).toBe(false)
    }).pipe(Effect.provide(layer())))

  it.scoped("lists by prefix, kills, and reports missing sessions as SessionNotFound", () =>
    Effect.gen(function*() {
      const tmux = yield* Tmux
      const dir = yield* tempDir()
      expect(yield* tmux.listSessions()).toEqual([])
      yield* tmux.newSession({ name: "cco-run1-a", cwd: dir, command: ["sleep", "60"] })
      yield* tmux.newSession({ name: "cco-run1-b", cwd: dir, command: ["sleep", "60"] })
      yield* tmux.newSession({ name: "other", cwd: dir, command: ["sleep", "60"] })
      expect([...(yield* tmux.listSessions("cco-run1-"))].sort()).toEqual(["cco-run1-a", "cco-run1-b"])
      // Exact names: "cco-run1" must not match "cco-run1-a" by prefix.
      expect(yield* tmux.hasSession("cco-run1")).toBe(false)
      expect(yield* tmux.hasSession("cco-run1-a")).toBe(true)
      yield* tmux.killSession("cco-run1-a")
      expect(yield* tmux.hasSession("cco-run1-a")).toBe(false)
      const err = yield* Effect.flip(tmux.sendKeys("cco-run1-a", ["Enter"]))
      expect(err._tag).toBe("SessionNotFound")
      const err2 = yield* Effect.flip(tmux.capturePane("nope"))
      expect(err2._tag).toBe("SessionNotFound")
      // tmux's display-message answers a missing target with exit 0 and an empty line: still not found.
      const err3 = yield* Effect.flip(tmux.paneInfo("cco-run1-a"))
      expect(err3._tag).toBe("SessionNotFound")
    }).pipe(Effect.provide(layer())))

  it.scoped("batched calls: every pane by prefix, several screens, several kills — one tmux call each", () =>
    Effect.gen(function*() {
      const tmux = yield* Tmux
      const dir = yield* tempDir()
      expect((yield* tmux.paneInfos("cco-b-")).size).toBe(0) // no server yet
      for (const n of ["a", "b", "c"]) {
        yield* tmux.newSession({ name: `cco-b-${n}`, cwd: dir, command: ["sh", "-c", `printf 'screen of ${n}\\n\\nlast ${n}\\n'; exec cat`] })
      }
      yield* tmux.newSession({ name: "other-d", cwd: dir, command: ["sleep", "60"] })
      const panes = yield* tmux.paneInfos("cco-b-")
      expect([...panes.keys()].sort()).toEqual(["cco-b-a", "cco-b-b", "cco-b-c"])
      expect(panes.get("cco-b-a")!.dead).toBe(false)
      expect(panes.get("cco-b-a")!.pid).toBe((yield* tmux.paneInfo("cco-b-a")).pid)

      const screens = yield* waitFor("screens", Effect.map(tmux.capturePanes(["cco-b-a", "cco-b-b", "cco-b-c"]), (m) =>
        [...m.values()].every((s) => s.includes("last")) ? m : undefined))
      expect(screens.size).toBe(3)
      for (const n of ["a", "b", "c"]) {
        const s = screens.get(`cco-b-${n}`)!
        expect(s).toContain(`screen of ${n}\n\nlast ${n}`)
        expect(s).not.toMatch(new RegExp(`last [^${n}]`))
        expect(s).toBe(yield* tmux.capturePane(`cco-b-${n}`))
      }

      // The paste is one call (load + paste) and still lands whole.
      yield* tmux.sendText("cco-b-a", "one paste")
      yield* waitFor("paste", Effect.map(tmux.capturePane("cco-b-a"), (s) => s.includes("one paste") ? s : undefined))

      yield* tmux.killSessions(["cco-b-a", "cco-b-b"])
      expect([...(yield* tmux.listSessions("cco-b-"))].sort()).toEqual(["cco-b-c"])
      // A missing one fails the call.
      expect((yield* Effect.flip(tmux.killSessions(["cco-b-gone", "cco-b-c"])))._tag).toMatch(/SessionNotFound|TmuxCommandFailed/)
    }).pipe(Effect.provide(layer())))

  it.scoped("a team's sessions start however long their commands: in as few calls as tmux takes", () =>
    Effect.gen(function*() {
      const tmux = yield* Tmux
      const dir = yield* tempDir()
      // 30 sessions whose commands are as long as a confined CLI's (~1.5 KB each): far more than one tmux call holds.
      const padding = Array.from({ length: 40 }, (_, i) => `--ro-bind-like-argument-${i}-${"x".repeat(12)}`)
      const names = Array.from({ length: 30 }, (_, i) => `cco-long-${i}`)
      yield* tmux.newSessions(names.map((name) => ({
        name,
        cwd: dir,
        command: ["sh", "-c", `echo "started $0" > '${dir}'/"$0"; exec sleep 60`, name, ...padding],
        logFile: `${dir}/${name}.log`
      })))
      expect([...(yield* tmux.listSessions("cco-long-"))].sort()).toEqual([...names].sort())
      for (const name of names) {
        yield* waitFor(name, Effect.sync(() => existsSync(`${dir}/${name}`) ? true : undefined))
      }
    }).pipe(Effect.provide(layer())))

  it("commandBatches: in order, each call within the limit, a command too long for any call on its own", () => {
    const cmd = (n: number, bytes: number) => ({ n, args: ["x".repeat(bytes - 1)] })
    const batches = commandBatches([cmd(1, 40), cmd(2, 40), cmd(3, 40), cmd(4, 500), cmd(5, 10)], (c) => c.args, 100)
    expect(batches.map((b) => b.map((c) => c.n))).toEqual([[1, 2], [3], [4], [5]])
    expect(commandBatches([], (c: { args: Array<string> }) => c.args)).toEqual([])
  })

  it.scoped("unsets inherited variables the program must not see", () =>
    Effect.gen(function*() {
      const tmux = yield* Tmux
      const dir = yield* tempDir()
      yield* tmux.newSession({
        name: "cco-t-unset",
        cwd: dir,
        command: ["sh", "-c", 'echo "home=${HOME:-none} keep=$KEEP"; exec cat'],
        env: { KEEP: "yes" },
        unsetEnv: ["HOME"]
      })
      const screen = yield* waitFor("output", Effect.map(tmux.capturePane("cco-t-unset"), (s) => s.includes("keep=") ? s : undefined))
      expect(screen).toContain("home=none keep=yes")
    }).pipe(Effect.provide(layer())))
})

describe("Tmux socket files", () => {
  it.scopedLive("killServer leaves neither the socket file nor its lock behind", () =>
    Effect.gen(function*() {
      const socket = uniqueSocket()
      const file = `${process.env.TMUX_TMPDIR ?? "/tmp"}/tmux-${process.getuid?.() ?? 0}/${socket}`
      const tmux = yield* makeLive(socket)
      yield* Effect.addFinalizer(() => tmux.killServer.pipe(Effect.ignore))
      const dir = yield* tempDir()
      yield* tmux.newSession({ name: "cco-sock", cwd: dir, command: ["sleep", "60"] })
      expect(existsSync(file)).toBe(true)
      yield* tmux.killServer
      expect(existsSync(file)).toBe(false)
      expect(existsSync(`${file}.lock`)).toBe(false)
    }).pipe(Effect.provide(NodeContext.layer)))
})

describe("Tmux server environment", () => {
  it.scopedLive("the server and its sessions hold none of cco's credentials, whatever cco's own environment has", () =>
    Effect.gen(function*() {
      const socket = uniqueSocket()
      const secret = (name: string) => `sk-ant-${name}-${Math.random().toString(36).slice(2)}`
      const planted: Record<string, string> = {
        ANTHROPIC_API_KEY: secret("api"),
        ANTHROPIC_AUTH_TOKEN: secret("auth"),
        CLAUDE_CODE_OAUTH_TOKEN: secret("oauth"),
        CCO_TOKEN: secret("cco"),
        // The env name of a credential in api-keys.json.
        TEAM_KEY_A: secret("team")
      }
      const visible = secret("visible")
      const saved = new Map([...Object.keys(planted), "CCO_VISIBLE_CHECK"].map((k) => [k, process.env[k]]))
      yield* Effect.addFinalizer(() => Effect.sync(() => {
        for (const [k, v] of saved) {
          if (v === undefined) delete process.env[k]
          else process.env[k] = v
        }
      }))
      Object.assign(process.env, planted, { PLAIN_VISIBLE_CHECK: visible })
      yield* Effect.addFinalizer(() => Effect.sync(() => delete process.env.PLAIN_VISIBLE_CHECK))
      const tmux = yield* makeLive(socket, { hiddenEnv: ["TEAM_KEY_A"] })
      yield* Effect.addFinalizer(() => tmux.killServer.pipe(Effect.ignore))
      const dir = yield* tempDir()
      yield* tmux.newSession({ name: "cco-env", cwd: dir, command: ["sh", "-c", "env; echo END-OF-ENV; exec cat"] })
      const screen = yield* waitFor("env", Effect.map(tmux.capturePane("cco-env", 500), (s) => s.includes("END-OF-ENV") ? s : undefined))
      const global = execFileSync("tmux", ["-L", socket, "show-environment", "-g"], { encoding: "utf8" })
      const session = execFileSync("tmux", ["-L", socket, "show-environment", "-t", "cco-env"], { encoding: "utf8" })
      // What the server was started with is there (the check reads the right place) ...
      expect(global).toContain(visible)
      // ... and no credential is, neither in the server's environment nor the session's nor its program's.
      for (const [name, value] of Object.entries(planted)) {
        expect(global, name).not.toContain(value)
        expect(session, name).not.toContain(value)
        expect(screen, name).not.toContain(value)
      }
    }).pipe(Effect.provide(NodeContext.layer)))
})

describe("TmuxTest (in-memory)", () => {
  it.effect("records sessions and input", () =>
    Effect.gen(function*() {
      const tmux = yield* Tmux
      const control = yield* TmuxTestControl
      yield* tmux.newSession({ name: "a", cwd: "/tmp", command: ["x"] })
      yield* tmux.sendText("a", "hi")
      yield* tmux.sendKeys("a", ["Enter"])
      const s = yield* control.session("a")
      expect(s.input).toEqual(["hi", "<Enter>"])
      const dup = yield* Effect.flip(tmux.newSession({ name: "a", cwd: "/tmp", command: ["x"] }))
      expect(dup._tag).toBe("TmuxCommandFailed")
      yield* tmux.killSession("a")
      expect(yield* tmux.hasSession("a")).toBe(false)
    }).pipe(Effect.provide(TmuxTest)))
})
