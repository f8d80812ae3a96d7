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
      if (options.env !== undefined) command = Command.env(command, options.env)
      if (options.stdin !== undefined) command = Command.feed(command, options.stdin)
      const proc = yield* Command.start(command)
      const [stdout, stderr, exitCode] = yield* Effect.all(
        [collect(proc.stdout), collect(proc.stderr), proc.exitCode],
        { concurrency: "unbounded" }
      )
      return { stdout, stderr, exitCode: Number(exitCode) }
    })
  )
