// Runs an external program to completion and returns its output and exit code.
// Effect 3's Command.string does not fail on a non-zero exit, so callers get all three and decide.
import * as Command from "@effect/platform/Command"
import * as CommandExecutor from "@effect/platform/CommandExecutor"
import type { PlatformError } from "@effect/platform/Error"
import { Effect, Stream } from "effect"

export interface ExecResult {
  readonly stdout: string
  readonly stderr: string
  readonly exitCode: number
}

export interface ExecOptions {
  readonly cwd?: string
  readonly stdin?: string
  readonly env?: Readonly<Record<string, string>>
  /** Variables of this process's environment the program must not inherit (names only). */
  readonly unsetEnv?: ReadonlyArray<string> | ((name: string) => boolean)
}

/** This process's environment without the given names: for a program that must not inherit them. */
const inheritedWithout = (unset: ReadonlyArray<string> | ((name: string) => boolean)): Record<string, string> => {
  const drop = typeof unset === "function" ? unset : (name: string) => unset.includes(name)
  const env: Record<string, string> = {}
  for (const [name, value] of Object.entries(process.env)) {
    if (value !== undefined && !drop(name)) env[name] = value
  }
  return env
}

const collect = <E>(stream: Stream.Stream<Uint8Array, E>) =>
  stream.pipe(Stream.decodeText(), Stream.mkString)

export const exec = (
  program: string,
  args: ReadonlyArray<string>,
  options: ExecOptions = {}
): Effect.Effect<ExecResult, PlatformError, CommandExecutor.CommandExecutor> =>
  Effect.scoped(
    Effect.gen(function*() {
      let command = Command.make(program, ...args)
      if (options.cwd !== undefined) command = Command.workingDirectory(command, options.cwd)
      if (options.unsetEnv !== undefined) {
        command = Command.env(command, { ...inheritedWithout(options.unsetEnv), ...options.env }, { extendEnv: false })
      } else if (options.env !== undefined) command = Command.env(command, options.env)
      if (options.stdin !== undefined) command = Command.feed(command, options.stdin)
      const proc = yield* Command.start(command)
      const [stdout, stderr, exitCode] = yield* Effect.all(
        [collect(proc.stdout), collect(proc.stderr), proc.exitCode],
        { concurrency: "unbounded" }
      )
      return { stdout, stderr, exitCode: Number(exitCode) }
    })
  )
