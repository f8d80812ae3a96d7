// Unknown command-line options, refused by name before @effect/cli parses: it takes an unknown `--flag` for a
// positional argument (a RUN_FOLDER named "--dryrun") or drops it, so a typo like --resmue started a new run.
import { BuiltInOptions, CliConfig, CommandDescriptor, HelpDoc, Options, type Usage } from "@effect/cli"
import { Either, HashMap, Option, Schema } from "effect"
import { editDistance, printable } from "./ConfigError.js"

/** A command-line option (or command) that cco does not know; refused before anything runs. */
export class UnknownOption extends Schema.TaggedError<UnknownOption>()("UnknownOption", {
  /** The whole line for the user, starting with the command: `cco run: unknown option --resmue; …`. */
  message: Schema.String
}) {}

interface OptionSpec {
  readonly names: ReadonlyArray<string>
  readonly takesValue: boolean
}

/** The options a usage declares (named things that start with "-"; arguments are `<NAME>`, commands bare words). */
const declaredOptions = (usage: Usage.Usage): ReadonlyArray<OptionSpec> => {
  switch (usage._tag) {
    case "Named":
      return usage.names.some((n) => n.startsWith("-"))
        ? [{ names: usage.names, takesValue: Option.isSome(usage.acceptedValues) }]
        : []
    case "Optional":
    case "Repeated":
      return declaredOptions(usage.usage)
    case "Concat":
    case "Alternation":
      return [...declaredOptions(usage.left), ...declaredOptions(usage.right)]
    case "Empty":
    case "Mixed":
      return []
  }
}

/** Whether a usage declares a positional argument (`<RUN_FOLDER>`) beside the command's own name. */
const declaresArguments = (usage: Usage.Usage): boolean => {
  switch (usage._tag) {
    case "Named":
      return usage.names.some((n) => n.startsWith("<"))
    case "Optional":
    case "Repeated":
      return declaresArguments(usage.usage)
    case "Concat":
    case "Alternation":
      return declaresArguments(usage.left) || declaresArguments(usage.right)
    case "Empty":
    case "Mixed":
      return false
  }
}

const BOOLEAN_VALUES = ["true", "1", "y", "yes", "on", "false", "0", "n", "no", "off"]

/** The nearest of `known` to `name` when it is near enough to be a typo. */
const nearest = (name: string, known: ReadonlyArray<string>): string | undefined => {
  const bare = (s: string) => s.replace(/^-+/, "").toLowerCase()
  const ranked = known.map((k) => ({ k, d: editDistance(bare(name), bare(k)) })).sort((a, b) => a.d - b.d)
  const best = ranked[0]
  return best !== undefined && best.d <= Math.max(2, Math.floor(bare(name).length / 3)) ? best.k : undefined
}

/** What checkOptions found: the subcommand named (if any) and whether help was asked for. */
export interface CheckedArguments {
  readonly subcommand: string | undefined
  readonly help: boolean
}

/**
 * Checks `args` (argv without node and the script) against the options each command declares, and @effect/cli's
 * built-in ones (--help, --version, ...): the first unknown option (or unknown command) as an UnknownOption.
 */
export const checkOptions = <A>(
  root: CommandDescriptor.Command<A>,
  args: ReadonlyArray<string>
): Either.Either<CheckedArguments, UnknownOption> => {
  const builtIns = declaredOptions(
    Options.getUsage(BuiltInOptions.builtInOptions(root, CommandDescriptor.getUsage(root), HelpDoc.empty))
  )
  const subcommands = HashMap.toEntries(CommandDescriptor.getSubcommands(root))
  const caseSensitive = CliConfig.defaultConfig.isCaseSensitive
  const normal = (s: string) => caseSensitive ? s : s.toLowerCase()
  const longNames = (specs: ReadonlyArray<OptionSpec>) => specs.flatMap((o) => o.names.filter((n) => n.startsWith("--")))

  const helpNames = Options.getUsage(BuiltInOptions.builtInOptions(root, CommandDescriptor.getUsage(root), HelpDoc.empty))
  const isHelp = (flag: string) => declaredOptions(helpNames).some((o) => o.names.includes("--help") && o.names.includes(flag))
  let name = "cco"
  let subcommand: string | undefined
  let help = false
  let usage = CommandDescriptor.getUsage(root)
  let atRoot = true
  let positional = false
  const refuse = (message: string) => Either.left(new UnknownOption({ message: `${name}: ${message}` }))
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!
    if (arg === "--") break
    const own = declaredOptions(usage)
    if (arg.startsWith("-") && arg.length > 1) {
      const eq = arg.startsWith("--") ? arg.indexOf("=") : -1
      const flag = eq === -1 ? arg : arg.slice(0, eq)
      const spec = [...own, ...builtIns].find((o) => o.names.some((n) => normal(n) === normal(flag)))
      if (spec === undefined) {
        const shown = printable(flag)
        const suggestion = nearest(flag, [...longNames(own), "--help"])
        if (suggestion !== undefined) return refuse(`unknown option ${shown}; did you mean ${suggestion}?`)
        // An option of a subcommand given to bare `cco`.
        const owner = atRoot
          ? subcommands.find(([, sub]) => longNames(declaredOptions(CommandDescriptor.getUsage(sub))).includes(flag))
          : undefined
        if (owner !== undefined) return refuse(`unknown option ${shown}; it is an option of cco ${owner[0]}`)
        const list = longNames(own)
        return refuse(
          `unknown option ${shown}; ${list.length === 0 ? "it takes none" : `its options are ${list.join(", ")}`} (see ${name} --help)`
        )
      }
      if (eq !== -1 && !spec.takesValue && !BOOLEAN_VALUES.includes(arg.slice(eq + 1).toLowerCase())) {
        return refuse(`${flag} takes no value (got ${printable(arg)})`)
      }
      if (isHelp(normal(flag))) help = true
      // Its value is the next argument, whatever it looks like.
      if (spec.takesValue && eq === -1) i++
      continue
    }
    if (atRoot && !positional) {
      const sub = subcommands.find(([subName]) => normal(subName) === normal(arg))
      if (sub !== undefined) {
        name = `cco ${sub[0]}`
        subcommand = sub[0]
        usage = CommandDescriptor.getUsage(sub[1])
        atRoot = false
        continue
      }
      if (!declaresArguments(usage)) {
        const suggestion = nearest(arg, subcommands.map(([n]) => n))
        return refuse(
          `unknown command ${printable(arg)}; ${suggestion === undefined ? `the commands are ${subcommands.map(([n]) => n).join(", ")}` : `did you mean ${suggestion}?`}`
        )
      }
    }
    positional = true
  }
  return Either.right({ subcommand, help })
}
