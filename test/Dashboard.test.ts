// The dashboard's server: the token guards every route, the page escapes what agents wrote, the event stream
// delivers new combined.log lines and state changes, panes come neutralised, and a finished run's panes are gone.
import { NodeContext } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Scope } from "effect"
import { execFileSync } from "node:child_process"
import { appendFileSync, readFileSync, writeFileSync } from "node:fs"
import * as http from "node:http"
import * as path from "node:path"
import * as Dashboard from "../src/Dashboard.js"
import { escapeHtml, feedLine, makeView, renderPage, treeOrder } from "../src/DashboardView.js"
import { withDashboardPort } from "../src/Cli.js"
import { killTmuxServer, tempDir, uniqueSocket, waitFor } from "./support.js"

const at = "2026-11-28T10:00:00.000Z"
const EVIL = `<img src=x onerror="alert(1)">&'`

const instance = (name: string, role: string, lead: string | undefined, extra: Record<string, unknown> = {}) => ({
  name, role, ...(lead === undefined ? {} : { lead }), branch: `cco/r1/${name}`, worktree: `/w/${name}`, session: `cco-r1-${name}`,
  status: "busy", generation: 1, restarts: 0, credential: "key-1", lastEventAt: at, ...extra
})

const stateOf = (socket: string, extra: Record<string, unknown> = {}) => ({
  runId: "r1", runFolder: "/runs/r1", repositoryUrl: "/repo.git", repoDir: "/nonexistent/repo", targetBranch: "main",
  startedAt: at, deadline: "2026-11-28T12:00:00.000Z", tmuxSocket: socket, pid: 1,
  instances: [
    instance("director", "director", undefined),
    instance("em-1", "em", "director"),
    instance("worker-1", "worker", "em-1", { currentTask: `#1 assigned: ${EVIL}` }),
    instance("worker-2", "worker", "em-1", { status: "idle" })
  ],
  board: { tasks: [] },
  merges: [],
  credentials: [{ name: "key-1", kind: "api-key", status: "available", users: 4 }],
  costUsd: 1.5,
  ...extra
})

/** A run folder with state.json and combined.log, served in the test's scope. */
const served = (options: { readonly socket?: string; readonly state?: Record<string, unknown> } = {}) =>
  Effect.gen(function*() {
    const folder = yield* tempDir("cco-dash-")
    const socket = options.socket ?? uniqueSocket()
    writeFileSync(path.join(folder, "state.json"), JSON.stringify(stateOf(socket, options.state)))
    writeFileSync(path.join(folder, "combined.log"), JSON.stringify({ time: at, event: "run.starting", runId: "r1" }) + "\n")
    const dashboard = yield* Dashboard.serve({ folder: Effect.succeed(folder), port: 0, limits: { maxCostUsd: 10 } })
    const token = new URL(dashboard.url).searchParams.get("t")!
    return { folder, dashboard, token, base: `http://127.0.0.1:${dashboard.port}` }
  })

const get = (url: string) => Effect.promise(() => fetch(url).then(async (r) => ({ status: r.status, headers: r.headers, body: await r.text() })))

/** Reads an event stream until `done` holds for the frames so far (or the time runs out). */
const readEvents = (url: string, done: (frames: ReadonlyArray<{ event: string; data: unknown }>) => boolean, during?: () => void) =>
  Effect.promise(async () => {
    const controller = new AbortController()
    const timer = setTimeout(() => controller.abort(), 10_000)
    const frames: Array<{ event: string; data: unknown }> = []
    try {
      const response = await fetch(url, { signal: controller.signal })
      const reader = response.body!.getReader()
      let buffer = ""
      let poked = false
      while (!done(frames)) {
        const { done: ended, value } = await reader.read()
        if (ended) break
        buffer += Buffer.from(value).toString("utf8")
        let cut: number
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const frame = buffer.slice(0, cut)
          buffer = buffer.slice(cut + 2)
          const event = /^event: (.*)$/m.exec(frame)?.[1]
          const data = /^data: (.*)$/m.exec(frame)?.[1]
          if (event !== undefined && data !== undefined) frames.push({ event, data: JSON.parse(data) })
        }
        if (!poked && frames.length > 0 && during !== undefined) {
          poked = true
          during()
        }
      }
    } catch {
      // aborted: the frames so far are the answer
    } finally {
      clearTimeout(timer)
      controller.abort()
    }
    return frames
  })

describe("dashboard server", () => {
  it.scopedLive("answers 403 to every route without the token or with a wrong one, 200 with it", () =>
    Effect.gen(function*() {
      const { base, token } = yield* served()
      const wrong = token.slice(0, -1) + (token.endsWith("A") ? "B" : "A")
      const routes = ["/", "/app.js", "/app.css", "/events", "/pane?name=worker-1", "/nothing"]
      for (const route of routes) {
        const join = route.includes("?") ? "&" : "?"
        for (const url of [`${base}${route}`, `${base}${route}${join}t=${wrong}`, `${base}${route}${join}t=`, `${base}${route}${join}t=${token}x`]) {
          const r = yield* get(url)
          expect(r.status, url).toBe(403)
          expect(r.body, url).not.toContain("worker-1")
        }
      }
      for (const route of ["/", "/app.js", "/app.css"]) {
        const r = yield* get(`${base}${route}?t=${token}`)
        expect(r.status, route).toBe(200)
        expect(r.headers.get("content-security-policy")).toContain("default-src 'none'")
        expect(r.headers.get("content-security-policy")).toContain("script-src 'self'")
      }
      expect((yield* get(`${base}/nothing?t=${token}`)).status).toBe(404)
    }).pipe(Effect.provide(NodeContext.layer)), 30_000)

  it.scopedLive("renders the team as a tree, and escapes what agents wrote", () =>
    Effect.gen(function*() {
      const { base, token } = yield* served()
      // The view is there once the folder has been read (just after the server starts).
      const page = yield* waitFor("the view", get(`${base}/?t=${token}`).pipe(Effect.map((r) => r.body.includes("worker-2") ? r : undefined)), 10_000)
      expect(page.status).toBe(200)
      expect(page.headers.get("content-type")).toMatch(/^text\/html/)
      expect(page.body).toContain(escapeHtml(EVIL))
      expect(page.body).toContain("&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&amp;&#39;")
      expect(page.body).not.toContain("<img")
      // Director, then em-1, then its workers one level deeper.
      const rows = [...page.body.matchAll(/<tr class="instance depth-(\d)" data-name="([^"]+)"/g)].map((m) => `${m[1]}:${m[2]}`)
      expect(rows).toEqual(["0:director", "1:em-1", "2:worker-1", "2:worker-2"])
      // No inline script or style for the CSP to allow; the assets carry the token.
      expect(page.body).not.toMatch(/<script>|<style|style="/)
      expect(page.body).toContain(`<script src="/app.js?t=${token}" defer></script>`)
      expect(page.body).toContain("$1.50 / $10.00")
    }).pipe(Effect.provide(NodeContext.layer)), 30_000)

  it.scopedLive("the event stream delivers the view, then new log lines and state changes as they are written", () =>
    Effect.gen(function*() {
      const { base, folder, token } = yield* served()
      const frames = yield* readEvents(
        `${base}/events?t=${token}`,
        (fs) => fs.some((f) => f.event === "log" && JSON.stringify(f.data).includes("merge.done")) &&
          fs.some((f) => f.event === "view" && (f.data as { merges: Array<unknown> }).merges.length === 1),
        () => {
          appendFileSync(path.join(folder, "combined.log"), JSON.stringify({ time: at, event: "merge.done", from: "worker-1", into: "em-1", instance: "em-1", note: EVIL }) + "\n")
          writeFileSync(path.join(folder, "state.json"), JSON.stringify(stateOf("none", { merges: [{ from: "worker-1", into: "em-1", commit: "abc1234567" }] })))
        }
      )
      const log = frames.find((f) => f.event === "log")?.data as Array<{ event: string; instance: string; text: string }>
      expect(log?.[0]).toMatchObject({ event: "merge.done", instance: "em-1" })
      // Agent text arrives as data (JSON), for the page to show with textContent.
      expect(log?.[0]?.text).toContain(EVIL.replace(/"/g, "\\\""))
      const views = frames.filter((f) => f.event === "view").map((f) => f.data as { merges: Array<{ from: string }> })
      expect(views[0]?.merges).toEqual([])
      expect(views.at(-1)?.merges[0]?.from).toBe("worker-1")
    }).pipe(Effect.provide(NodeContext.layer)), 30_000)

  it.scopedLive("a pane comes as neutral text, refreshed; a session that is gone says so", () =>
    Effect.gen(function*() {
      const socket = uniqueSocket()
      yield* Effect.addFinalizer(() => Effect.sync(() => killTmuxServer(socket)))
      execFileSync("tmux", ["-L", socket, "-f", "/dev/null", "new-session", "-d", "-s", "cco-r1-worker-1", "-x", "120", "-y", "30",
        "sh", "-c", "printf 'hello \\033[31mred\\033[0m <b>bold</b>\\n\\033]0;title\\007'; sleep 1; echo second; sleep 60"])
      const { base, token } = yield* served({ socket })
      const frames = yield* readEvents(`${base}/pane?t=${token}&name=worker-1`, (fs) => fs.some((f) => JSON.stringify(f.data).includes("second")))
      const texts = frames.map((f) => f.data as { gone: boolean; text: string })
      expect(texts[0]?.gone).toBe(false)
      expect(texts[0]?.text).toContain("hello red <b>bold</b>")
      expect(texts.map((t) => t.text).join("")).not.toMatch(/[\u001b\u0007]/)
      expect(texts.at(-1)?.text).toContain("second")
      // worker-2's session does not exist; an unknown name is no instance.
      const gone = yield* readEvents(`${base}/pane?t=${token}&name=worker-2`, (fs) => fs.length > 0)
      // The run goes on: the session may come back (a restart), so the page keeps listening.
      expect(gone[0]?.data).toMatchObject({ gone: true, final: false, text: "the tmux session cco-r1-worker-2 is gone" })
      const unknown = yield* readEvents(`${base}/pane?t=${token}&name=${encodeURIComponent("<x>")}`, (fs) => fs.length > 0)
      expect(unknown[0]?.data).toMatchObject({ gone: true, final: true, text: "no instance <x> in this run" })
    }).pipe(Effect.provide(NodeContext.layer)), 30_000)

  it.scopedLive("a finished run's panes: the run has ended, its sessions are gone", () =>
    Effect.gen(function*() {
      const { base, token } = yield* served({ state: { endedAt: "2026-11-28T11:00:00.000Z", endReason: "project-done" } })
      const frames = yield* readEvents(`${base}/pane?t=${token}&name=worker-1`, (fs) => fs.length > 0)
      expect(frames[0]?.data).toMatchObject({ gone: true, final: true, text: "the run has ended: the tmux session cco-r1-worker-1 is gone" })
      const page = yield* get(`${base}/?t=${token}`)
      expect(page.body).toContain("ended: project-done")
    }).pipe(Effect.provide(NodeContext.layer)), 30_000)

  it.scopedLive("at most 32 event streams at once; one more is refused, and a closed one makes room", () =>
    Effect.gen(function*() {
      const { base, token } = yield* served()
      const open = (path: string) =>
        Effect.async<{ status: number; close: () => void }>((resume) => {
          const req = http.get(`${base}${path}`, (res) => resume(Effect.succeed({ status: res.statusCode ?? 0, close: () => req.destroy() })))
          req.on("error", () => undefined)
        })
      const streams = yield* Effect.forEach(Array.from({ length: 32 }, (_, i) => i), (i) => open(i % 2 === 0 ? `/events?t=${token}` : `/pane?t=${token}&name=worker-1`))
      yield* Effect.addFinalizer(() => Effect.sync(() => streams.forEach((s) => s.close())))
      expect(streams.map((s) => s.status)).toEqual(Array.from({ length: 32 }, () => 200))
      const refused = yield* open(`/events?t=${token}`)
      expect(refused.status).toBe(503)
      streams[0]!.close()
      const again = yield* waitFor("room again", Effect.map(open(`/events?t=${token}`), (s) => s.status === 200 ? s : (s.close(), undefined)))
      again.close()
    }).pipe(Effect.provide(NodeContext.layer)), 30_000)

  it.scopedLive("a FIFO in place of combined.log holds neither the page nor the dashboard's shutdown", () =>
    Effect.gen(function*() {
      const folder = yield* tempDir("cco-dash-")
      writeFileSync(path.join(folder, "state.json"), JSON.stringify(stateOf(uniqueSocket())))
      execFileSync("mkfifo", [path.join(folder, "combined.log")])
      const scope = yield* Scope.make()
      const dashboard = yield* Dashboard.serve({ folder: Effect.succeed(folder), port: 0 }).pipe(Scope.extend(scope))
      const token = new URL(dashboard.url).searchParams.get("t")!
      const page = yield* get(`http://127.0.0.1:${dashboard.port}/?t=${token}`)
      expect(page.status).toBe(200)
      expect(page.body).toContain("worker-1")
      const started = Date.now()
      yield* Scope.close(scope, Exit.void)
      expect(Date.now() - started).toBeLessThan(8_000)
    }).pipe(Effect.provide(NodeContext.layer)), 30_000)

  it.scopedLive("refuses a port out of range, and a port in use", () =>
    Effect.gen(function*() {
      const folder = yield* tempDir("cco-dash-")
      const bad = yield* Effect.flip(Dashboard.serve({ folder: Effect.succeed(folder), port: 70000 }))
      expect(bad.message).toMatch(/port 70000: must be a whole number from 0/)
      const first = yield* Dashboard.serve({ folder: Effect.succeed(folder), port: 0 })
      const second = yield* Effect.flip(Dashboard.serve({ folder: Effect.succeed(folder), port: first.port }))
      expect(second.message).toMatch(new RegExp(`cannot listen on 127\\.0\\.0\\.1:${first.port}`))
    }).pipe(Effect.provide(NodeContext.layer)), 30_000)
})

describe("dashboard view", () => {
  it("the page's script puts text in with textContent only: no HTML from strings anywhere", () => {
    const script = readFileSync(path.join(import.meta.dirname, "..", "dashboard", "app.js"), "utf8")
    expect(script).not.toMatch(/innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function/)
    expect(script).toContain("textContent")
  })

  it("feed lines keep time, event and instance; the rest is one neutral line", () => {
    const line = feedLine({ time: at, event: "task.assigned", instance: "worker-1", text: "do \u001b[2Jthis\nnow" })
    expect(line).toEqual({ time: at, event: "task.assigned", instance: "worker-1", text: "{\"text\":\"do this\\nnow\"}" })
    expect(feedLine({ event: "x" })).toBeUndefined()
    expect(feedLine("text")).toBeUndefined()
  })

  it("a run over several hosts shows each instance's host, and its session as that host's tmux server has it", () => {
    const state = stateOf("sock", {
      instances: [
        instance("em-1", "em", undefined, { host: "local" }),
        instance("worker-1", "worker", "em-1", { host: "local" }),
        instance("worker-2", "worker", "em-1", { host: "box" })
      ],
      hosts: [{ name: "box" }]
    })
    const snap = (remote: ReadonlySet<string> | undefined, s: Record<string, unknown> = state) => ({
      folder: "/runs/r1", state: s, lock: { _tag: "NoLock" }, takenAt: Date.parse(at),
      sessions: new Set(["cco-r1-em-1"]), remoteSessions: new Map([["box", remote]])
    }) as never
    const extra = { commits: [], tokens: undefined, limits: {} }
    const view = makeView(snap(new Set(["cco-r1-worker-2"])), extra)
    expect(view.instances.map((i) => [i.name, i.host, i.session])).toEqual([["em-1", "local", "up"], ["worker-1", "local", "gone"], ["worker-2", "box", "up"]])
    // A host that could not be asked: its sessions unknown, the others' as they are.
    expect(makeView(snap(undefined), extra).instances.map((i) => i.session)).toEqual(["up", "gone", "unknown"])
    const page = renderPage(view, [], "tok")
    expect(page).toContain(`<th id="host-head">host</th>`)
    expect([...page.matchAll(/<td class="host">([^<]*)<\/td>/g)].map((m) => m[1])).toEqual(["local", "local", "box"])
    // A run on this machine only: no host column.
    const plain = makeView(snap(undefined, stateOf("sock")), extra)
    expect(plain.instances.every((i) => i.host === null)).toBe(true)
    const plainPage = renderPage(plain, [], "tok")
    expect(plainPage).toContain(`<th id="host-head" hidden>host</th>`)
    expect(plainPage).not.toContain(`<td class="host">`)
  })

  it("orders the team as a tree: each lead followed by its own; unknown leads at the top level", () => {
    const i = (name: string, lead: string | null) => ({ name, lead, role: "worker", status: "idle", task: null, credential: "", restarts: 0, costUsd: null, lastEventAt: at, session: "up" as const, host: null })
    const order = treeOrder([i("w-3", "em-2"), i("w-1", "em-1"), i("em-1", "director"), i("em-2", "director"), i("director", null), i("stray", "nobody")])
    expect(order.map((o) => `${o.depth}:${o.instance.name}`)).toEqual(["0:director", "1:em-1", "2:w-1", "1:em-2", "2:w-3", "0:stray"])
  })

  it("`--dashboard` without a port is a free port; with one, that port; after `--` left alone", () => {
    expect(withDashboardPort(["n", "s", "run", "--dashboard", "--config", "c"])).toEqual(["n", "s", "run", "--dashboard=0", "--config", "c"])
    expect(withDashboardPort(["n", "s", "run", "--config", "c", "--dashboard"])).toEqual(["n", "s", "run", "--config", "c", "--dashboard=0"])
    expect(withDashboardPort(["n", "s", "run", "--dashboard", "8080", "--config", "c"])).toEqual(["n", "s", "run", "--dashboard", "8080", "--config", "c"])
    expect(withDashboardPort(["n", "s", "run", "--", "--dashboard"])).toEqual(["n", "s", "run", "--", "--dashboard"])
  })
})
