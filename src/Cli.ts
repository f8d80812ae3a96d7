// The `cco` command line (@effect/cli): options, subcommands, help and version. Running it is the edge's job (bin.ts).
// `cco team …` and `cco hook …` are not here: bin/cco.js hands them to the lightweight agent client.
import { Args, CliConfig, Command, HelpDoc, Options, ValidationError } from "@effect/cli"
import { Console, Deferred, Effect, Either, FiberId, Option, Schema } from "effect"
import { type ConfigOverrides, loadConfig, redactedView, type ResolvedConfig } from "./Config.js"
import * as Cleanup from "./Cleanup.js"
import * as Dashboard from "./Dashboard.js"
import * as Doctor from "./Doctor.js"
import * as Orchestrator from "./Orchestrator.js"
import { formatSummary, makeProgress } from "./Progress.js"
import { claudePathOn, type RunHost, runOptionsFor } from "./RunHost.js"
import * as Sandbox from "./Sandbox.js"
import * as Status from "./Status.js"
import { neutralise } from "./Untrusted.js"
import { checkOptions } from "./CliOptions.js"

export { checkOptions, UnknownOption } from "./CliOptions.js"

/** A subcommand that exists in the interface but has no implementation yet. */
export class CommandNotAvailable extends Schema.TaggedError<CommandNotAvailable>()("CommandNotAvailable", {
  command: Schema.String
}) {
  override get message() {
    return `cco ${this.command} is not available yet`
  }
}

/** What the edge knows about this process and machine (RunHost.hostEnvironment), and where progress goes. */
export interface RunEnvironment extends RunHost {
  readonly write: (line: string) => void
}

/** What `cco run` (and `cco --config DIR`) does with a valid configuration; with a dashboard port, the dashboard too. */
export const runCommand = (
  config: ResolvedConfig,
  env: RunEnvironment,
  resume?: string,
  dashboardPort?: number
): Effect.Effect<void, Orchestrator.RunError, Orchestrator.RunRequirements> => {
  const progress = makeProgress()
  // What reaches the user's terminal shows text, never acts on the terminal, and carries no credential.
  const write = (text: string) => env.write(neutralise(text, 100_000))
  const folder = Deferred.unsafeMake<string>(FiberId.none)
  const options = runOptionsFor(config, env, {
    onLog: (line) => {
      const text = progress(line)
      if (text !== undefined) write(text)
    },
    onStart: (info) => Deferred.unsafeDone(folder, Effect.succeed(info.folder))
  })
  // Before anything starts: a required sandbox that this machine cannot give is a configuration error (exit 2).
  const runIt = Sandbox.resolve(config.sandbox, env.basePath).pipe(
    Effect.mapError((e) => new Orchestrator.RunError({ reason: "config", message: `${config.configDir}/orchestrator.json: ${e.message}` })),
    Effect.flatMap((sandbox) => Orchestrator.run(config, { ...options, sandbox, ...(resume === undefined ? {} : { resume }) })),
    Effect.tap((summary) => Effect.sync(() => write(formatSummary(summary)))),
    Effect.flatMap((summary) =>
      summary.reason === "project-done" || summary.reason === "time-limit" || summary.reason === "cost-limit" || summary.reason === "usage-limit"
        ? Effect.void
        : Effect.fail(new Orchestrator.RunError({ reason: summary.reason, message: `the run ended: ${summary.reason}` })))
  )
  if (dashboardPort === undefined) return runIt
  // The dashboard serves from before the run folder exists (the page waits for it) until the run has ended.
  return Dashboard.serve({
    folder: Deferred.await(folder),
    port: dashboardPort,
    limits: { maxCostUsd: config.maxCostUsd, maxTokens: config.maxTokens }
  }).pipe(
    Effect.mapError((e) => new Orchestrator.RunError({ reason: "startup", message: `dashboard: ${e.message}` })),
    Effect.flatMap((dashboard) => Effect.sync(() => write(`dashboard: ${dashboard.url}`))),
    Effect.zipRight(runIt),
    Effect.scoped
  )
}

// Reports that quote run folders, branches, git and tool output (an agent may have named a branch or file).
const printNeutral = (text: string) => Console.log(neutralise(text, 100_000))

const configOption = Options.directory("config").pipe(
  Options.withAlias("c"),
  Options.withPseudoName("DIR"),
  Options.withDescription("The config directory: orchestrator.json and, optionally, api-keys.json.")
)

// `--dashboard` alone takes a free port: makeCli gives it the value 0 (see withDashboardPort).
const dashboardOption = Options.integer("dashboard").pipe(
  Options.withPseudoName("PORT"),
  Options.optional,
  Options.withDescription("Serve the dashboard on 127.0.0.1 while the run lasts, on PORT or (without it) a free port; its URL is printed at the start.")
)

/** `--dashboard` without a port number after it is `--dashboard=0`: the option's value is optional. */
export const withDashboardPort = (args: ReadonlyArray<string>): ReadonlyArray<string> => {
  const end = args.indexOf("--")
  return args.map((arg, i) =>
    arg === "--dashboard" && (end === -1 || i < end) && !/^\d+$/.test(args[i + 1] ?? "") ? "--dashboard=0" : arg
  )
}

const rootHelp = HelpDoc.blocks([
  HelpDoc.p("Runs a team of Claude Code instances (Director, Engineering Managers, Workers) in tmux on one git repository."),
  HelpDoc.p("cco --config DIR is the same as cco run --config DIR.")
])

/** The command tree. `overrides` are values from the environment that win over the config files. */
export const makeCommand = (overrides: ConfigOverrides = {}, env?: RunEnvironment) => {
  const start = (config: ResolvedConfig, resume?: string, dashboardPort?: number): Effect.Effect<void, Orchestrator.RunError | CommandNotAvailable, Orchestrator.RunRequirements> =>
    env === undefined ? Effect.fail(new CommandNotAvailable({ command: "run" })) : runCommand(config, env, resume, dashboardPort)

  // `--resume` alone takes the newest run of the config's logDirectory; a RUN_FOLDER names another.
  const resumeTarget = (config: ResolvedConfig, resume: boolean, folder: Option.Option<string>) =>
    !resume
      ? Effect.succeed(undefined)
      : Status.locateRunFolder(Option.getOrElse(folder, () => config.logDirectory)).pipe(
        Effect.mapError((e) => new Orchestrator.RunError({ reason: "resume", message: e.message }))
      )
  const load = (dir: string) => loadConfig(dir, overrides)

  const run = Command.make(
    "run",
    {
      config: configOption,
      resume: Options.boolean("resume").pipe(
        Options.withDescription("Resume a run whose orchestrator died: re-attach to live sessions, restart dead ones with --continue, go on.")
      ),
      dashboard: dashboardOption,
      folder: Args.optional(Args.directory({ name: "RUN_FOLDER" }))
    },
    ({ config, dashboard, folder, resume }) =>
      load(config).pipe(
        Effect.flatMap((resolved) =>
          Effect.flatMap(resumeTarget(resolved, resume, folder), (target) => start(resolved, target, Option.getOrUndefined(dashboard)))
        )
      )
  ).pipe(Command.withDescription("Start a run: clone the repository, create the worktrees, launch and supervise the team. With --resume [RUN_FOLDER], continue a run whose orchestrator died. With --dashboard [PORT], also serve the dashboard (see cco dashboard)."))

  const validate = Command.make(
    "validate",
    { config: configOption },
    ({ config }) =>
      load(config).pipe(
        Effect.flatMap((resolved) => Console.log(JSON.stringify(redactedView(resolved), null, 2)))
      )
  ).pipe(Command.withDescription("Check the config directory and print the resolved configuration (secrets redacted)."))

  const optionalConfig = Options.optional(configOption)

  const runFolder = (description: string) => Args.directory({ name: "RUN_FOLDER" }).pipe(Args.withDescription(description))
  const flag = (name: string, description: string) => Options.boolean(name).pipe(Options.withDescription(description))
  const loadOptional = (config: Option.Option<string>) =>
    Option.match(config, { onNone: () => Effect.succeedNone, onSome: (dir) => Effect.asSome(load(dir)) })

  const status = Command.make("status", {
    config: optionalConfig,
    folder: Args.optional(runFolder("A run folder (<logDirectory>/<runId>), or a log directory: its latest run.")),
    watch: flag("watch", "Redraw every 2 s until Ctrl-C."),
    json: flag("json", "Print one JSON object: the run's state.json plus alive, timeLeftSeconds, sessionsAlive.")
  }, ({ config, folder, json, watch }) =>
    Effect.gen(function*() {
      const logDirectory = Option.map(yield* loadOptional(config), (c) => c.logDirectory)
      const target = Option.orElse(folder, () => logDirectory)
      if (Option.isNone(target)) {
        return yield* new Status.RunFolderNotFound({ path: "", reason: "which run? give --config DIR (its latest run) or a RUN_FOLDER" })
      }
      yield* Status.status({ target: target.value, json, watch, write: Console.log })
    })).pipe(Command.withDescription("Show the instances of a run (the latest, with --config), their tasks, branches and costs."))

  const dashboard = Command.make("dashboard", {
    config: optionalConfig,
    folder: Args.optional(runFolder("A run folder (<logDirectory>/<runId>), or a log directory: its latest run.")),
    port: Options.integer("port").pipe(
      Options.withPseudoName("N"),
      Options.withDefault(0),
      Options.withDescription("The port on 127.0.0.1 (default: a free one).")
    )
  }, ({ config, folder, port }) =>
    Effect.gen(function*() {
      const resolved = yield* loadOptional(config)
      const target = Option.orElse(folder, () => Option.map(resolved, (c) => c.logDirectory))
      if (Option.isNone(target)) {
        return yield* new Status.RunFolderNotFound({ path: "", reason: "which run? give --config DIR (its latest run) or a RUN_FOLDER" })
      }
      const runFolder = yield* Status.locateRunFolder(target.value)
      const limits = Option.match(resolved, { onNone: () => ({}), onSome: (c) => ({ maxCostUsd: c.maxCostUsd, maxTokens: c.maxTokens }) })
      const served = yield* Dashboard.serve({ folder: Effect.succeed(runFolder), port, limits })
      yield* printNeutral(`dashboard of ${runFolder}: ${served.url}\n(serving on 127.0.0.1 only; Ctrl-C to stop)`)
      return yield* Effect.never
    }).pipe(Effect.scoped)).pipe(Command.withDescription(
      "Serve a run (the latest, with --config) in the browser, live: the team, the target branch, totals, events, panes. The printed URL holds its access token."
    ))

  const cleanup = Command.make("cleanup", {
    config: optionalConfig,
    folders: Args.repeated(runFolder("Run folders, or log directories: all their runs.")),
    dryRun: flag("dry-run", "List what would be removed; change nothing."),
    branches: flag("branches", "Also delete the run's local cco/<runId>/* branches merged into its target branch."),
    all: flag("all", "Also remove instances/ (Claude config dirs) and the clone repo/ unless it holds unpushed commits.")
  }, ({ all, branches, config, dryRun, folders }) =>
    Effect.gen(function*() {
      const resolved = yield* loadOptional(config)
      yield* Cleanup.cleanup({
        folders,
        ...(Option.isSome(resolved) ? { logDirectory: resolved.value.logDirectory } : {}),
        options: { dryRun, branches, all, ...(Option.isSome(resolved) ? { fallbackSocket: resolved.value.tmuxSocket } : {}) },
        write: printNeutral
      })
    })).pipe(Command.withDescription(
      "Kill leftover tmux sessions and remove worktrees of finished or crashed runs (every run in --config's log directory, or the RUN_FOLDERs); runs whose orchestrator is alive are left alone."
    ))

  const doctor = Command.make("doctor", { config: optionalConfig }, ({ config }) =>
    Doctor.doctor({
      ...(Option.isSome(config) ? { configDir: config.value } : {}),
      overrides,
      resolveClaude: (command) => env === undefined ? command : claudePathOn(env, command),
      ...(env?.oauthCredentialsFile === undefined ? {} : { oauthCredentialsFile: env.oauthCredentialsFile }),
      oauthToken: env?.oauthToken,
      ...(env === undefined ? {} : { searchPath: env.basePath }),
      nodeVersion: process.versions.node
    }, printNeutral)).pipe(
    Command.withDescription("Check tmux, git, claude and node; with --config also the config, credentials, repository and disk space.")
  )

  // Bare `cco` prints the same help as `cco --help`.
  const showHelp = (): Effect.Effect<void> =>
    Console.log(HelpDoc.toAnsiText(Command.getHelp(command, CliConfig.defaultConfig)).trimEnd())

  const root = Command.make("cco", { config: optionalConfig }, ({ config }) =>
    Option.match(config, {
      onNone: showHelp,
      onSome: (dir) => load(dir).pipe(Effect.flatMap(start))
    })).pipe(Command.withDescription(rootHelp))

  const command = root.pipe(Command.withSubcommands([run, validate, status, dashboard, cleanup, doctor]))
  return command
}

/** Parses `argv` (the whole process.argv) and runs the chosen command. */
export const makeCli = (options: {
  readonly version: string
  readonly overrides?: ConfigOverrides
  readonly environment?: RunEnvironment
}) => {
  const command = makeCommand(options.overrides, options.environment)
  const cli = Command.run(command, { name: "cco", version: options.version, executable: "cco" })
  const dispatch = (argv: ReadonlyArray<string>) =>
    Either.match(checkOptions(command.descriptor, argv.slice(2)), {
      // Reported as @effect/cli reports its own usage errors: printed here, then a ValidationError (exit 2).
      onLeft: (error) =>
        Console.error(error.message).pipe(
          Effect.zipRight(Effect.fail(ValidationError.invalidArgument(HelpDoc.p(error.message))))
        ),
      // Bare `cco` shows the full help, as `cco --help` does. @effect/cli takes --help only right after the command
      // name (`cco run --config DIR --help` was "unknown argument"): help anywhere shows that command's help.
      onRight: ({ help, subcommand }) =>
        cli(
          argv.length <= 2
            ? [...argv, "--help"]
            : help
            ? [...argv.slice(0, 2), ...(subcommand === undefined ? [] : [subcommand]), "--help"]
            : argv
        )
    })
  return (argv: ReadonlyArray<string>) => dispatch(withDashboardPort(argv))
}
