// The process edge of `cco`: reads the environment, provides the Node layers, runs the command line and owns the
// exit code (0 ok, 1 failure, 2 bad configuration or usage, 130 interrupted) and what a failure prints.
import { ValidationError } from "@effect/cli"
import * as Path from "@effect/platform/Path"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Cause, Console, Effect, Exit, Layer, Option } from "effect"
import { CommandNotAvailable, makeCli } from "./Cli.js"
import { ConfigError } from "./ConfigError.js"
import { Git } from "./Git.js"
import { RunError } from "./RunContext.js"
import { findPackageRoot, Host } from "./RunHost.js"
import * as RunLayers from "./RunLayers.js"
import { neutralise, TERMINAL_MAX } from "./Untrusted.js"

const EXIT_CONFIG = 2

/** The exit code a failed run ends with. */
const exitCodeFor = (cause: Cause.Cause<unknown>): number => {
  if (Cause.isInterruptedOnly(cause)) return 130
  const failure = Cause.failureOption(cause)
  if (Option.isSome(failure)) {
    const error = failure.value
    if (error instanceof ConfigError || ValidationError.isValidationError(error)) return EXIT_CONFIG
    // A run refused for its configuration on this machine (a required sandbox it cannot give).
    if (error instanceof RunError && error.reason === "config") return EXIT_CONFIG
  }
  return 1
}

/** One line on stderr for an expected failure; the full cause only for a defect (a bug in cco). */
const report = (cause: Cause.Cause<unknown>): Effect.Effect<void> => {
  if (Cause.isInterruptedOnly(cause)) return Effect.void
  // Error texts quote git, the CLI and the API, which may echo a key or an agent's text.
  const print = (text: string, max = TERMINAL_MAX) => Console.error(neutralise(text, max))
  const failure = Cause.failureOption(cause)
  if (Option.isNone(failure)) return print(`cco: internal error\n${Cause.pretty(cause)}`, 100_000)
  const error = failure.value
  // @effect/cli has already printed usage errors together with help.
  if (ValidationError.isValidationError(error)) return Effect.void
  if (error instanceof ConfigError) return print(`cco: ${error.summary}`)
  if (error instanceof CommandNotAvailable) return print(error.message)
  if (error instanceof Error) return print(`cco: ${error.message}`)
  return print(`cco: ${String(error)}`)
}

const claudePath = process.env["CCO_CLAUDE_PATH"]

// Colour (help, usage errors) only for a terminal, and not when NO_COLOR is set (https://no-color.org): piped
// into a file or a CI log, escape codes are noise. Off a terminal every control sequence goes (status --watch's
// clear-screen too); on one with NO_COLOR, only the colours.
const SGR = /\u001b\[[0-9;]*m/g
const CSI = /\u001b\[[0-9;?]*[ -/]*[@-~]/g
const colourOn = (stream: NodeJS.WriteStream) => stream.isTTY === true && (process.env["NO_COLOR"] ?? "") === ""
const plainFor = (stream: NodeJS.WriteStream) => (args: ReadonlyArray<unknown>) =>
  args.map((a) => typeof a === "string" ? a.replace(stream.isTTY === true ? SGR : CSI, "") : a)

const withColourPolicy = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Console.consoleWith((base) => {
    const out = colourOn(process.stdout)
    const err = colourOn(process.stderr)
    if (out && err) return effect
    const [plainOut, plainErr] = [plainFor(process.stdout), plainFor(process.stderr)]
    const console: Console.Console = {
      ...base,
      log: (...args) => base.log(...(out ? args : plainOut(args))),
      info: (...args) => base.info(...(out ? args : plainOut(args))),
      error: (...args) => base.error(...(err ? args : plainErr(args))),
      warn: (...args) => base.warn(...(err ? args : plainErr(args)))
    }
    return Effect.withConsole(effect, console)
  })

const main = Effect.gen(function*() {
  const path = yield* Path.Path
  const { version } = yield* findPackageRoot
  // Just the version, one line (@effect/cli's own answer adds an empty line), for scripts that read it.
  const args = process.argv.slice(2)
  if (args.length === 1 && (args[0] === "--version" || args[0] === "-v")) return yield* Console.log(version)
  const cli = makeCli({
    version,
    // The same host the library's runs get: one reading of PATH, ~/.claude and CLAUDE_CODE_OAUTH_TOKEN.
    environment: { ...(yield* Host), write: (line) => process.stdout.write(line + "\n") },
    // A relative path in the environment is relative to where cco was started.
    overrides: { claudeCommand: claudePath && claudePath.includes("/") ? path.resolve(claudePath) : claudePath || undefined }
  })
  return yield* cli(process.argv)
}).pipe(
  Effect.tapErrorCause(report),
  withColourPolicy,
  Effect.provide(Layer.merge(RunLayers.Live, Git.Default))
)

NodeRuntime.runMain(main, {
  disableErrorReporting: true,
  teardown: (exit, onExit) => onExit(Exit.isSuccess(exit) ? 0 : exitCodeFor(exit.cause))
})
