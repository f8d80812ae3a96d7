// The `cco` command line (@effect/cli): options, subcommands, help and version. Running it is the edge's job (bin.ts).
// `cco team …` and `cco hook …` are not here: bin/cco.js hands them to the lightweight agent client.
import { Args, CliConfig, Command, HelpDoc, Options } from "@effect/cli"
import { Console, Effect, Option, Redacted, Schema } from "effect"
import { type ConfigOverrides, loadConfig, redactedView, type ResolvedConfig } from "./Config.js"
import * as Cleanup from "./Cleanup.js"
import * as Doctor from "./Doctor.js"
import * as Orchestrator from "./Orchestrator.js"
import { formatSummary, makeProgress } from "./Progress.js"
import * as Status from "./Status.js"
import { neutralise } from "./Untrusted.js"

/** A subcommand that exists in the interface but has no implementation yet. */
export class CommandNotAvailable extends Schema.TaggedError<CommandNotAvailable>()("CommandNotAvailable", {
  command: Schema.String
}) {
  override get message() {
    return `cco ${this.command} is not available yet`
  }
}

/** What the edge knows about this process and machine, for a run. */
export interface RunEnvironment {
  /** Where cco is installed: bin/cco-client.mjs and prompts/ live there. */
  readonly projectRoot: string
  readonly nodePath: string
  readonly basePath: string
  /** Resolves the configured claude command to an executable path. */
  readonly resolveClaude: (command: string) => string
  readonly oauthCredentialsFile: string | undefined
  /** CLAUDE_CODE_OAUTH_TOKEN from `claude setup-token`, passed to OAuth instances instead of the credentials file. */
  readonly oauthToken?: Redacted.Redacted<string> | undefined
  readonly write: (line: string) => void
}

/** What `cco run` (and `cco --config DIR`) does with a valid configuration. */
export const runCommand = (
  config: ResolvedConfig,
  env: RunEnvironment,
  resume?: string
): Effect.Effect<void, Orchestrator.RunError> => {
  const progress = makeProgress()
  // What reaches the user's terminal shows text, never acts on the terminal, and carries no credential.
  const write = (text: string) => env.write(neutralise(text, 100_000))
  return Orchestrator.run(config, {
    ...(resume === undefined ? {} : { resume }),
    claudePath: env.resolveClaude(config.claudeCommand),
    clientCommand: [env.nodePath, `${env.projectRoot}/bin/cco-client.mjs`],
    projectRoot: env.projectRoot,
    basePath: env.basePath,
    ...(env.oauthCredentialsFile === undefined ? {} : { oauthCredentialsFile: env.oauthCredentialsFile }),
    ...(env.oauthToken === undefined ? {} : { oauthEnv: { CLAUDE_CODE_OAUTH_TOKEN: env.oauthToken } }),
    onLog: (line) => {
      const text = progress(line)
      if (text !== undefined) write(text)
    }
  }).pipe(
    Effect.tap((summary) => Effect.sync(() => write(formatSummary(summary)))),
    Effect.flatMap((summary) =>
      summary.reason === "project-done" || summary.reason === "time-limit" || summary.reason === "cost-limit"
        ? Effect.void
        : Effect.fail(new Orchestrator.RunError({ reason: summary.reason, message: `the run ended: ${summary.reason}` })))
  )
}

// Reports that quote run folders, branches, git and tool output (an agent may have named a branch or file).
const printNeutral = (text: string) => Console.log(neutralise(text, 100_000))

const configOption = Options.directory("config").pipe(
  Options.withAlias("c"),
  Options.withPseudoName("DIR"),
  Options.withDescription("The config directory: orchestrator.json and, optionally, api-keys.json.")
)

const rootHelp = HelpDoc.blocks([
  HelpDoc.p("Runs a team of Claude Code instances (Director, Engineering Managers, Workers) in tmux on one git repository."),
  HelpDoc.p("cco --config DIR is the same as cco run --config DIR.")
])

/** The command tree. `overrides` are values from the environment that win over the config files. */
export const makeCommand = (overrides: ConfigOverrides = {}, env?: RunEnvironment) => {
  const start = (config: ResolvedConfig, resume?: string): Effect.Effect<void, Orchestrator.RunError | CommandNotAvailable> =>
    env === undefined ? Effect.fail(new CommandNotAvailable({ command: "run" })) : runCommand(config, env, resume)

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
      folder: Args.optional(Args.directory({ name: "RUN_FOLDER" }))
    },
    ({ config, folder, resume }) =>
      load(config).pipe(
        Effect.flatMap((resolved) => Effect.flatMap(resumeTarget(resolved, resume, folder), (target) => start(resolved, target)))
      )
  ).pipe(Command.withDescription("Start a run: clone the repository, create the worktrees, launch and supervise the team. With --resume [RUN_FOLDER], continue a run whose orchestrator died."))

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
      resolveClaude: env?.resolveClaude ?? ((command) => command),
      ...(env?.oauthCredentialsFile === undefined ? {} : { oauthCredentialsFile: env.oauthCredentialsFile }),
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

  const command = root.pipe(Command.withSubcommands([run, validate, status, cleanup, doctor]))
  return command
}

/** Parses `argv` (the whole process.argv) and runs the chosen command. */
export const makeCli = (options: {
  readonly version: string
  readonly overrides?: ConfigOverrides
  readonly environment?: RunEnvironment
}) => {
  const cli = Command.run(makeCommand(options.overrides, options.environment), { name: "cco", version: options.version, executable: "cco" })
  // Bare `cco` shows the full help, as `cco --help` does.
  return (argv: ReadonlyArray<string>) => cli(argv.length <= 2 ? [...argv, "--help"] : argv)
}
