// cco from Effect code: layers composed at the edge — the Tmux service on a socket of our choosing (the run's
// config names the same server; the program inspects it afterwards and kills it at the end) and an event
// subscriber layer, a Stream over a PubSub of RunEvents that prints merges only — then runEffect.
//   node --import tsx scripts/example-layers.ts [--fake] [--workers N] [--socket NAME]
import { FileSystem } from "@effect/platform"
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Console, Context, Effect, Fiber, Layer, PubSub, Stream } from "effect"
import { execFileSync } from "node:child_process"
import { writeFileSync } from "node:fs"
import * as path from "node:path"
import { makeConfig, runEffect, RunEvent, startMockModel, teamScript, Tmux, tmuxLayer } from "../src/index.js"

const root = path.resolve(import.meta.dirname, "..")
const args = process.argv.slice(2)
const value = (name: string, fallback: string) => {
  const i = args.indexOf(name)
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : fallback
}
const fake = args.includes("--fake")
const workers = Number(value("--workers", "2"))
const socket = value("--socket", `cco-example-${process.pid}`)

/** The run's events, for every subscriber in the program. */
class RunEvents extends Context.Tag("example/RunEvents")<RunEvents, PubSub.PubSub<RunEvent>>() {
  static readonly Live = Layer.scoped(RunEvents, Effect.acquireRelease(PubSub.unbounded<RunEvent>(), PubSub.shutdown))
}

/** Prints merges only. It subscribes while the layer is built, before the run starts, so it misses nothing. */
const MergePrinter = Layer.scopedDiscard(Effect.gen(function*() {
  const subscription = yield* PubSub.subscribe(yield* RunEvents)
  const printer = yield* Stream.fromQueue(subscription).pipe(
    Stream.takeUntil(RunEvent.$is("Finished")),
    Stream.filter(RunEvent.$is("Merged")),
    Stream.runForEach((m) => Console.log(`  merged ${m.from} into ${m.into} (${m.commit.slice(0, 10)})`)),
    Effect.forkScoped
  )
  // At the end of the program the printer first finishes what the run published.
  yield* Effect.addFinalizer(() => Fiber.await(printer).pipe(Effect.timeout("2 seconds"), Effect.ignore))
}))

/** Tmux on our own server; the server goes when the program ends, whatever the run left. */
const TmuxOnSocket = Layer.scopedDiscard(Effect.gen(function*() {
  const tmux = yield* Tmux
  yield* Effect.addFinalizer(() => tmux.killServer.pipe(Effect.ignore))
})).pipe(Layer.provideMerge(tmuxLayer(socket)))

const git = (cwd: string, ...a: Array<string>) =>
  execFileSync("git", a, {
    cwd,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, GIT_AUTHOR_NAME: "example", GIT_AUTHOR_EMAIL: "example@cco.invalid", GIT_COMMITTER_NAME: "example", GIT_COMMITTER_EMAIL: "example@cco.invalid" }
  }).trim()

/** A bare repository whose main branch holds a README and the project direction. */
const makeRepository = (dir: string) =>
  Effect.sync(() => {
    const bare = path.join(dir, "toolkit.git")
    const seed = path.join(dir, "seed")
    git(dir, "init", "-q", "--bare", "-b", "main", bare)
    git(dir, "clone", "-q", bare, seed)
    git(seed, "checkout", "-q", "-B", "main")
    writeFileSync(path.join(seed, "README.md"), "# toolkit\n")
    writeFileSync(path.join(seed, "PROJECT_DIRECTION.md"), "# Project direction\n\nBuild a tiny JavaScript toolkit: one small module per worker under src/, each checked with `node --check`.\n")
    git(seed, "add", "-A")
    git(seed, "commit", "-q", "-m", "initial")
    git(seed, "push", "-q", "origin", "main")
    return bare
  })

const program = Effect.gen(function*() {
  const fs = yield* FileSystem.FileSystem
  const tmux = yield* Tmux
  const events = yield* RunEvents
  const dir = yield* fs.makeTempDirectoryScoped({ prefix: "cco-example-" })
  const mock = yield* startMockModel({ brain: teamScript() })
  const bare = yield* makeRepository(dir)
  const config = yield* makeConfig({
    repositoryUrl: bare,
    workerCount: workers,
    authMode: "api-keys-only",
    logDirectory: "logs",
    maxRunDurationMinutes: 10,
    // The run builds its own services from the config: this is how it comes to use our tmux server.
    tmuxSocket: tmux.socket,
    apiKeys: [{ name: "example-key", env: { ANTHROPIC_API_KEY: `sk-ant-example-${"0".repeat(32)}`, ANTHROPIC_BASE_URL: mock.url } }]
  }, { baseDir: dir })
  yield* Console.log(`example: ${workers} workers, ${fake ? "fake" : "real"} claude, tmux -L ${tmux.socket}; merges as they land:`)
  const summary = yield* runEffect(config, {
    claudePath: fake ? path.join(root, "test", "fake-agent", "fake-claude.mjs") : path.join(root, "node_modules", ".bin", "claude"),
    extraEnv: { CLAUDE_CODE_MAX_RETRIES: "0" },
    events
  })
  const left = yield* tmux.listSessions(`cco-${summary.runId}-`).pipe(Effect.orElseSucceed(() => []))
  yield* Console.log(`example: run ${summary.runId} ended: ${summary.reason}; ${summary.merges.length} merges; sessions left on the server: ${left.length}`)
  if (summary.reason !== "project-done") return yield* Effect.fail(`the run ended ${summary.reason}`)
})

const layers = Layer.mergeAll(MergePrinter.pipe(Layer.provideMerge(RunEvents.Live)), TmuxOnSocket).pipe(
  Layer.provideMerge(NodeContext.layer)
)

NodeRuntime.runMain(program.pipe(Effect.scoped, Effect.provide(layers)))
