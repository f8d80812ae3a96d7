// The `cco` command line (@effect/cli): options, subcommands, help and version. Running it is the edge's job (bin.ts).
// `cco team …` and `cco hook …` are not here: bin/cco.js hands them to the lightweight agent client.
import { CliConfig, Command, HelpDoc, Options } from "@effect/cli"
import { Console, Effect, Option, Schema } from "effect"
import { type ConfigOverrides, loadConfig, redactedView, type ResolvedConfig } from "./Config.js"
import * as Orchestrator from "./Orchestrator.js"
import { formatSummary, makeProgress } from "./Progress.js"

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
  readonly write: (line: string) => void
}

/** What `cco run` (and `cco --config DIR`) does with a valid configuration. */
export const runCommand = (config: ResolvedConfig, env: RunEnvironment): Effect.Effect<void, Orchestrator.RunError> => {
  const progress = makeProgress()
  return Orchestrator.run(config, {
    claudePath: env.resolveClaude(config.claudeCommand),
    clientCommand: [env.nodePath, `${env.projectRoot}/bin/cco-client.mjs`],
    projectRoot: env.projectRoot,
    basePath: env.basePath,
    ...(env.oauthCredentialsFile === undefined ? {} : { oauthCredentialsFile: env.oauthCredentialsFile }),
    onLog: (line) => {
      const text = progress(line)
      if (text !== undefined) env.write(text)
    }
  }).pipe(
    Effect.tap((summary) => Effect.sync(() => env.write(formatSummary(summary)))),
    Effect.flatMap((summary) =>
      summary.reason === "project-done" || summary.reason === "time-limit"
        ? Effect.void
        : Effect.fail(new Orchestrator.RunError({ reason: summary.reason, message: `the run ended: ${summary.reason}` })))
  )
}

const configOption = Options.directory("config").pipe(
  Options.withAlias("c"),
  Options.withPseudoName("DIR"),
  Options.withDescription("The config directory: orchestrator.json and, optionally, api-keys.json.")
)

const notAvailable = (command: string) => Effect.fail(new CommandNotAvailable({ command }))

const rootHelp = HelpDoc.blocks([
  HelpDoc.p("Runs a team of Claude Code instances (Director, Engineering Managers, Workers) in tmux on one git repository."),
  HelpDoc.p("cco --config DIR is the same as cco run --config DIR.")
])

/** The command tree. `overrides` are values from the environment that win over the config files. */
export const makeCommand = (overrides: ConfigOverrides = {}, env?: RunEnvironment) => {
  const start = (config: ResolvedConfig): Effect.Effect<void, Orchestrator.RunError | CommandNotAvailable> =>
    env === undefined ? Effect.fail(new CommandNotAvailable({ command: "run" })) : runCommand(config, env)
  const load = (dir: string) => loadConfig(dir, overrides)

  const run = Command.make(
    "run",
    { config: configOption },
    ({ config }) => load(config).pipe(Effect.flatMap(start))
  ).pipe(Command.withDescription("Start a run: clone the repository, create the worktrees, launch and supervise the team."))

  const validate = Command.make(
    "validate",
    { config: configOption },
    ({ config }) =>
      load(config).pipe(
        Effect.flatMap((resolved) => Console.log(JSON.stringify(redactedView(resolved), null, 2)))
      )
  ).pipe(Command.withDescription("Check the config directory and print the resolved configuration (secrets redacted)."))

  const optionalConfig = Options.optional(configOption)

  const status = Command.make("status", { config: optionalConfig }, () => notAvailable("status")).pipe(
    Command.withDescription("Show the instances of the current run, their tasks, branches and costs.")
  )
  const cleanup = Command.make("cleanup", { config: optionalConfig }, () => notAvailable("cleanup")).pipe(
    Command.withDescription("Stop leftover tmux sessions and remove worktrees of finished or crashed runs.")
  )
  const doctor = Command.make("doctor", { config: optionalConfig }, () => notAvailable("doctor")).pipe(
    Command.withDescription("Check that tmux, git and claude are installed and usable.")
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
