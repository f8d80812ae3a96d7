// The dashboard: an HTTP server on 127.0.0.1 that shows one run in a browser, live. Every request needs the random
// token of the printed URL (403 otherwise). The page is rendered here; its script (dashboard/app.js) follows the
// run through server-sent events: /events (the view and the event feed, pushed when state.json or combined.log
// change) and /pane (an instance's screen while it is open). A finished run's folder is shown the same way.
import * as CommandExecutor from "@effect/platform/CommandExecutor"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import { Chunk, Deferred, Duration, Effect, Either, FiberSet, PubSub, Queue, Ref, Schedule, Schema, type Scope, Stream } from "effect"
import { createHash, randomBytes, timingSafeEqual } from "node:crypto"
import { watch } from "node:fs"
import { constants } from "node:fs"
import { open } from "node:fs/promises"
import * as http from "node:http"
import { type DashboardLimits, type FeedLine, feedLine, makeView, renderPage, tokensOf, type View, type ViewCommit } from "./DashboardView.js"
import { Git } from "./Git.js"
import { findPackageRoot } from "./RunHost.js"
import { type RunSnapshot, snapshot } from "./Status.js"
import * as TmuxLive from "./TmuxLive.js"
import { neutralise, neutraliseLine } from "./Untrusted.js"

export class DashboardError extends Schema.TaggedError<DashboardError>()("DashboardError", {
  message: Schema.String
}) {}

export interface DashboardOptions {
  /** The run folder; a run that is starting gives it once it exists (the page waits for it). */
  readonly folder: Effect.Effect<string>
  /** 0 (the default): a free port. */
  readonly port?: number | undefined
  readonly limits?: DashboardLimits | undefined
  /** Where app.js and app.css are: <package>/dashboard by default. */
  readonly assetsDir?: string | undefined
}

export interface Dashboard {
  readonly port: number
  /** The URL to open, with the token. */
  readonly url: string
}

/** Lines of the event feed kept for a page that opens. */
const FEED_KEEP = 300
/** How much of a long combined.log a dashboard reads when it starts. */
const FEED_TAIL_BYTES = 256 * 1024
/** Pane lines shown. */
const PANE_LINES = 40
/** What a pane stream last sent when the session was gone (no screen text is this). */
const GONE = "\u0000gone"

interface Latest {
  readonly view?: View
  readonly snapshot?: RunSnapshot
  readonly feed: ReadonlyArray<FeedLine>
}

type Message =
  | { readonly event: "view"; readonly data: View }
  | { readonly event: "log"; readonly data: ReadonlyArray<FeedLine> }
  | { readonly event: "closed"; readonly data: string }

const digest = (text: string) => createHash("sha256").update(text).digest()

/** Whether `given` is the token, in time that does not depend on where they differ. */
export const tokenMatches = (token: string, given: string | null): boolean =>
  given !== null && timingSafeEqual(digest(token), digest(given))

const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
  "cache-control": "no-store"
}

const sseFrame = (event: string, data: unknown) => `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`

/** Output waiting for one event-stream reader before it is let go. */
const MAX_UNSENT_BYTES = 8 * 1024 * 1024

/** Event streams (pages and panes) open at once. */
const MAX_STREAMS = 32

/** The most of combined.log one look reads. */
const FEED_READ_BYTES = 4 * 1024 * 1024

/** combined.log read onward from where the last read stopped (from the start again when it was rotated). */
const makeLogReader = (file: string) => {
  let offset = -1
  let rest = ""
  let midLine = false
  return Effect.tryPromise(async () => {
    // Non-blocking: a FIFO in the log's place must not hold the dashboard (nor its shutdown) waiting for a writer.
    const handle = await open(file, constants.O_RDONLY | constants.O_NONBLOCK)
    try {
      const info = await handle.stat()
      if (!info.isFile()) return []
      const size = info.size
      if (offset < 0 || size < offset) {
        // First read of a long log: its tail only, from a line's start.
        const first = offset < 0
        offset = first ? Math.max(0, size - FEED_TAIL_BYTES) : 0
        rest = ""
        midLine = first && offset > 0
      }
      if (size === offset) return []
      // At most FEED_READ_BYTES a time: the rest comes with the next look.
      const buffer = Buffer.alloc(Math.min(size - offset, FEED_READ_BYTES))
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, offset)
      offset += bytesRead
      const text = rest + buffer.subarray(0, bytesRead).toString("utf8")
      const lines = text.split("\n")
      rest = lines.pop() ?? ""
      // A tail read starts inside a line: drop that piece.
      if (midLine && lines.length > 0) {
        lines.shift()
        midLine = false
      }
      return lines.flatMap((l) => {
        try {
          return [JSON.parse(l) as unknown]
        } catch {
          return []
        }
      })
    } finally {
      await handle.close()
    }
  }).pipe(Effect.orElseSucceed((): ReadonlyArray<unknown> => []))
}

/** The last commits of the target branch in the run's clone (empty when the clone is gone), through cco's git. */
const lastCommits = (git: Git, repoDir: string, branch: string) =>
  git.run(repoDir, ["log", "--no-show-signature", "-n", "8", "--format=%h%x09%cI%x09%s", `refs/heads/${branch}`, "--"]).pipe(
    Effect.map((r) =>
      r.exitCode !== 0 ? [] : r.stdout.split("\n").filter((l) => l !== "").map((l): ViewCommit => {
        const [sha = "", time = "", ...subject] = l.split("\t")
        return { sha, time, subject: neutraliseLine(subject.join("\t"), 300) }
      })
    ),
    Effect.orElseSucceed((): ReadonlyArray<ViewCommit> => [])
  )

/** The last lines of a session's screen, neutralised; undefined when the session is gone. */
const paneText = (socket: string, session: string) =>
  TmuxLive.makeLive(socket).pipe(
    Effect.flatMap((tmux) => tmux.capturePane(session, PANE_LINES)),
    Effect.map((text) => {
      const lines = neutralise(text, 200_000).split("\n")
      while (lines.length > 0 && lines[lines.length - 1]!.trim() === "") lines.pop()
      return lines.slice(-PANE_LINES).join("\n") as string | undefined
    }),
    Effect.catchTag("SessionNotFound", () => Effect.succeed(undefined))
  )

/** Follows the run folder: publishes the event feed's new lines and the view whenever they change. */
const follow = (
  folder: string,
  limits: DashboardLimits,
  hub: PubSub.PubSub<Message>,
  latest: Ref.Ref<Latest>,
  publishing: Effect.Semaphore,
  ready: Deferred.Deferred<void>,
  refreshNow: Ref.Ref<Effect.Effect<void>>
) =>
  Effect.gen(function*() {
    const path = yield* Path.Path
    const git = yield* Effect.provide(Git, Git.Default)
    const readLog = makeLogReader(path.join(folder, "combined.log"))
    let tokens: number | undefined
    let commits: ReadonlyArray<ViewCommit> = []
    let commitsKey = ""
    let lastJson = ""
    // The feed from combined.log; the state (state.json, the lock, tmux sessions) only when it may have changed.
    // One refresh at a time: the last one, as the dashboard closes, may come while another is under way.
    const refreshing = yield* Effect.makeSemaphore(1)
    const refresh = (withState: boolean) => refreshing.withPermits(1)(Effect.gen(function*() {
      const lines = yield* readLog
      for (const l of lines) tokens = tokensOf(l) ?? tokens
      const feed = lines.flatMap((l) => {
        const f = feedLine(l)
        return f === undefined ? [] : [f]
      })
      if (feed.length > 0) {
        yield* publishing.withPermits(1)(
          Ref.update(latest, (s) => ({ ...s, feed: [...s.feed, ...feed].slice(-FEED_KEEP) })).pipe(
            Effect.zipRight(PubSub.publish(hub, { event: "log", data: feed }))
          )
        )
      }
      if (!withState) return
      const snap = yield* snapshot(folder).pipe(Effect.either)
      if (Either.isLeft(snap)) return yield* Deferred.succeed(ready, undefined)
      const { state } = snap.right
      // The branch moves with merges (and at the end); asking git on every change would cost a process each.
      const key = `${state.merges.length}/${state.endedAt ?? ""}/${state.targetBranch}`
      if (key !== commitsKey) {
        commits = yield* lastCommits(git, state.repoDir, state.targetBranch)
        commitsKey = key
      }
      const view = makeView(snap.right, { commits, tokens, limits })
      const json = JSON.stringify({ ...view, takenAt: "" })
      yield* publishing.withPermits(1)(
        Ref.update(latest, (s) => ({ ...s, view, snapshot: snap.right })).pipe(
          Effect.zipRight(json === lastJson ? Effect.void : PubSub.publish(hub, { event: "view", data: view }))
        )
      )
      lastJson = json
      yield* Deferred.succeed(ready, undefined)
    }))
    yield* Ref.set(refreshNow, refresh(true).pipe(Effect.provide(yield* Effect.context<FileSystem.FileSystem | Path.Path | CommandExecutor.CommandExecutor>())))

    // true: state.json or cco.lock changed (or the tick); false: combined.log only.
    const changed = yield* Queue.sliding<boolean>(64)
    // state.json is replaced by a rename, combined.log appended to, cco.lock removed at the end: watching the folder
    // sees all three. A slow tick besides catches what a watch misses (sessions ending, the lock's process dying).
    yield* Effect.acquireRelease(
      Effect.sync(() =>
        watch(folder, { persistent: false }, (_type, file) => {
          if (file === "state.json" || file === "cco.lock") Queue.unsafeOffer(changed, true)
          else if (file === "combined.log") Queue.unsafeOffer(changed, false)
        }).on("error", () => {})
      ),
      (watcher) => Effect.sync(() => watcher.close())
    ).pipe(Effect.catchAllDefect(() => Effect.void))
    yield* Queue.offer(changed, true).pipe(Effect.repeat(Schedule.spaced(Duration.seconds(5))), Effect.forkScoped)
    yield* Effect.gen(function*() {
      const first = yield* Queue.take(changed)
      // Bursts of writes (a team's hooks) make one refresh.
      yield* Effect.sleep(Duration.millis(200))
      const more = yield* Queue.takeAll(changed)
      yield* refresh(first || Chunk.some(more, (state) => state))
    }).pipe(Effect.forever)
  })

/** Starts the dashboard in the current scope: it serves until the scope closes. */
export const serve: (options: DashboardOptions) => Effect.Effect<
  Dashboard,
  DashboardError,
  Scope.Scope | FileSystem.FileSystem | Path.Path | CommandExecutor.CommandExecutor
> = Effect.fn("Dashboard.serve")(function*(options: DashboardOptions) {
  const fs = yield* FileSystem.FileSystem
  const path = yield* Path.Path
  const wanted = options.port ?? 0
  if (!Number.isInteger(wanted) || wanted < 0 || wanted > 65535) {
    return yield* new DashboardError({ message: `port ${wanted}: must be a whole number from 0 (a free port) to 65535` })
  }
  const assetsDir = options.assetsDir ?? path.join((yield* findPackageRoot).root, "dashboard")
  const readAsset = (name: string) =>
    fs.readFileString(path.join(assetsDir, name)).pipe(
      Effect.mapError((e) => new DashboardError({ message: `the dashboard's ${name} is missing (${e.message})` }))
    )
  const assets = new Map([
    ["/app.js", { type: "text/javascript; charset=utf-8", body: yield* readAsset("app.js") }],
    ["/app.css", { type: "text/css; charset=utf-8", body: yield* readAsset("app.css") }]
  ])
  // 192 random bits, URL-safe.
  const token = randomBytes(24).toString("base64url")
  const hub = yield* PubSub.sliding<Message>(256)
  const latest = yield* Ref.make<Latest>({ feed: [] })
  // Held while the latest view changes and is published, so that a new stream sees each change once.
  const publishing = yield* Effect.makeSemaphore(1)
  // The run folder has been read once.
  const ready = yield* Deferred.make<void>()
  // What a request shows first: the run as read once (a run that is starting may not have a folder for a while).
  const firstLatest = Deferred.await(ready).pipe(
    Effect.timeout(Duration.seconds(3)),
    Effect.ignore,
    Effect.zipRight(Ref.get(latest))
  )
  // The run as it is now, read at once (set once the folder is known): the last word before the dashboard closes.
  const refreshNow = yield* Ref.make<Effect.Effect<void>>(Effect.void)
  yield* options.folder.pipe(
    Effect.flatMap((folder) => follow(folder, options.limits ?? {}, hub, latest, publishing, ready, refreshNow)),
    Effect.catchAllCause((cause) => Effect.logWarning("dashboard: following the run stopped", cause)),
    Effect.forkScoped
  )

  const runFork = yield* FiberSet.makeRuntime<FileSystem.FileSystem | Path.Path | CommandExecutor.CommandExecutor>()

  const plain = (res: http.ServerResponse, status: number, text: string) => {
    res.writeHead(status, { ...SECURITY_HEADERS, "content-type": "text/plain; charset=utf-8" })
    res.end(`${text}\n`)
  }

  /** An event stream: `body` sends what comes first and what follows, until the browser goes away. */
  let openStreams = 0
  const eventStream = (
    req: http.IncomingMessage,
    res: http.ServerResponse,
    body: (send: (event: string, data: unknown) => Effect.Effect<void>) => Effect.Effect<void, never, Scope.Scope | FileSystem.FileSystem | Path.Path | CommandExecutor.CommandExecutor>
  ) =>
    Effect.gen(function*() {
      if (openStreams >= MAX_STREAMS) return plain(res, 503, "too many open streams")
      openStreams++
      yield* Effect.addFinalizer(() => Effect.sync(() => void openStreams--))
      const gone = yield* Deferred.make<void>()
      req.on("close", () => Deferred.unsafeDone(gone, Effect.void))
      // A browser that went away mid-write is no error of the server's.
      res.on("error", () => Deferred.unsafeDone(gone, Effect.void))
      res.writeHead(200, { ...SECURITY_HEADERS, "content-type": "text/event-stream; charset=utf-8", "connection": "keep-alive" })
      res.flushHeaders()
      // A reader that stops reading (a suspended tab or curl) is let go once this much waits for it: its browser
      // reconnects and starts from the whole view again, and the server's memory stays bounded.
      const write = (text: string) => {
        if (res.writableLength > MAX_UNSENT_BYTES) Deferred.unsafeDone(gone, Effect.void)
        else res.write(text)
      }
      const send = (event: string, data: unknown) => Effect.sync(() => write(sseFrame(event, data)))
      const keepAlive = Effect.sync(() => write(": keep-alive\n\n")).pipe(
        Effect.delay(Duration.seconds(20)),
        Effect.forever
      )
      yield* Effect.raceFirst(Effect.scoped(body(send)).pipe(Effect.zipRight(Effect.never)), Effect.raceFirst(keepAlive, Deferred.await(gone)))
    }).pipe(Effect.scoped, Effect.ensuring(Effect.sync(() => res.end())))

  const events = (req: http.IncomingMessage, res: http.ServerResponse) =>
    eventStream(req, res, (send) =>
      Effect.gen(function*() {
        yield* Deferred.await(ready)
        const [updates, now] = yield* publishing.withPermits(1)(Effect.all([PubSub.subscribe(hub), Ref.get(latest)]))
        if (now.view !== undefined) yield* send("view", now.view)
        yield* send("feed", now.feed)
        yield* Stream.fromQueue(updates).pipe(Stream.runForEach((m) => send(m.event, m.data)))
      }))

  const pane = (req: http.IncomingMessage, res: http.ServerResponse, name: string) =>
    eventStream(req, res, (send) =>
      Effect.gen(function*() {
        const { snapshot: snap } = yield* firstLatest
        const instance = snap?.state.instances.find((i) => i.name === name)
        if (snap === undefined || instance === undefined) {
          return yield* send("pane", { name, gone: true, final: true, text: `no instance ${neutraliseLine(name, 100)} in this run` })
        }
        let last: string | undefined
        yield* Effect.gen(function*() {
          const text = yield* paneText(snap.state.tmuxSocket, instance.session).pipe(Effect.orElseSucceed(() => undefined))
          if (text === undefined) {
            // A live run's session may be between a kill and its restart: said, and watched on. An ended run's is gone.
            const ended = (yield* Ref.get(latest)).snapshot?.state.endedAt !== undefined
            if (last !== GONE) {
              yield* send("pane", {
                name,
                gone: true,
                final: ended,
                text: ended ? `the run has ended: the tmux session ${instance.session} is gone` : `the tmux session ${instance.session} is gone`
              })
            }
            last = GONE
            return !ended
          }
          if (text !== last) yield* send("pane", { name, gone: false, final: false, text })
          last = text
          return true
        }).pipe(Effect.repeat({ while: (more) => more, schedule: Schedule.spaced(Duration.seconds(1.5)) }))
      }))

  const handle = (req: http.IncomingMessage, res: http.ServerResponse) =>
    Effect.gen(function*() {
      const url = new URL(req.url ?? "/", "http://127.0.0.1")
      // No token, no answer: every route (page, events, panes, assets) alike.
      if (!tokenMatches(token, url.searchParams.get("t"))) return plain(res, 403, "forbidden: open the URL cco printed, with its token")
      if (req.method !== "GET" && req.method !== "HEAD") return plain(res, 405, "method not allowed")
      const asset = assets.get(url.pathname)
      if (asset !== undefined) {
        res.writeHead(200, { ...SECURITY_HEADERS, "content-type": asset.type })
        return res.end(asset.body)
      }
      if (url.pathname === "/") {
        const now = yield* firstLatest
        res.writeHead(200, { ...SECURITY_HEADERS, "content-type": "text/html; charset=utf-8" })
        return res.end(renderPage(now.view, now.feed.slice(-100), token))
      }
      if (url.pathname === "/events") return yield* events(req, res)
      if (url.pathname === "/pane") return yield* pane(req, res, url.searchParams.get("name") ?? "")
      return plain(res, 404, "not found")
    }).pipe(Effect.catchAllCause(() => Effect.sync(() => res.headersSent ? res.end() : plain(res, 500, "internal error"))))

  const server = http.createServer((req, res) => void runFork(handle(req, res)))
  const port = yield* Effect.async<number, DashboardError>((resume) => {
    server.once("error", (e) => resume(Effect.fail(new DashboardError({ message: `cannot listen on 127.0.0.1:${wanted}: ${e.message}` }))))
    server.listen(wanted, "127.0.0.1", () => {
      const address = server.address()
      resume(Effect.succeed(typeof address === "object" && address !== null ? address.port : 0))
    })
  })
  // Later server errors (a failed accept under too many open files, say) must not end the process.
  server.on("error", () => undefined)
  // Pages get the run's last state and word that the dashboard stops (so that they do not reconnect); then event
  // streams, which stay open otherwise, are cut and the server closes.
  yield* Effect.addFinalizer(() =>
    // Interruptible, or the timeout could not cut it short (a finalizer runs uninterruptibly).
    Effect.flatten(Ref.get(refreshNow)).pipe(
      Effect.interruptible,
      Effect.timeout(Duration.seconds(3)),
      Effect.ignore,
      Effect.zipRight(PubSub.publish(hub, { event: "closed", data: "dashboard stopped" })),
      Effect.zipRight(Effect.sleep(Duration.millis(300))),
      Effect.zipRight(Effect.async<void>((resume) => {
        server.closeAllConnections()
        server.close(() => resume(Effect.void))
      }))
    )
  )
  return { port, url: `http://127.0.0.1:${port}/?t=${token}` }
})
