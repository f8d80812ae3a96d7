// The one way cco runs git: simple-git underneath, every call hardened alike (no hooks, no fsmonitor, no prompt, no
// editor, messages in English) and every failure a GitError. What the calls mean for a run lives in Worktree.
import * as CommandExecutor from "@effect/platform/CommandExecutor"
import * as NodeContext from "@effect/platform-node/NodeContext"
import { Effect, Schema } from "effect"
import {
  type BranchSummary,
  GitConstructError,
  type outputHandler,
  simpleGit,
  type SimpleGit,
  type SimpleGitOptions,
  type StatusResult
} from "simple-git"
import { exec } from "./Exec.js"

export class GitError extends Schema.TaggedError<GitError>()("GitError", {
  operation: Schema.String,
  repo: Schema.String,
  message: Schema.String
}) {}

const urlCredentials = /([a-z][a-z0-9+.-]*:\/\/)[^/\s@]*@/gi

/** Removes user:password@ (or token@) from any URL inside `text`. */
export const stripCredentials = (text: string): string => text.replace(urlCredentials, "$1***@")

/** A GitError with any credentials taken out of what it says. */
export const gitError = (operation: string, repo: string, message: string): GitError =>
  new GitError({
    operation: stripCredentials(operation),
    repo: stripCredentials(repo),
    message: stripCredentials(message)
  })

/** Identity for the commits cco makes itself (merges, safety commits, TEAM_STRUCTURE.md). */
export const ccoIdentity = { name: "cco", email: "cco@localhost" } as const

/** What a git process printed and how it ended. */
export interface GitOutput {
  readonly stdout: string
  readonly stderr: string
  readonly exitCode: number
}

export interface GitCallOptions {
  /** The call commits as cco itself (author and committer). */
  readonly identity?: boolean
  /** Config for this call only. It travels in the environment, never in argv: a URL may hold credentials. */
  readonly config?: Readonly<Record<string, string>>
}

/** What git said on failure: stderr, else stdout, else its exit code. */
export const outputOf = (result: GitOutput): string => {
  const text = result.stderr.trim() || result.stdout.trim()
  return text === "" ? `git exited with code ${result.exitCode}` : text
}

// Git must never wait for a human: no credential prompts, no editors, no optional index locks (status in a worktree
// an agent is using), and messages in a fixed language so they can be recognised. Nor for an agent: the clone's
// config is shared with every agent, so hooks (an `npm install` sets core.hooksPath, an agent can write .git/hooks)
// and an fsmonitor command never run inside cco's git calls.
const baseEnv: Readonly<Record<string, string>> = {
  GIT_TERMINAL_PROMPT: "0",
  GIT_MERGE_AUTOEDIT: "no",
  GIT_EDITOR: ":",
  GIT_OPTIONAL_LOCKS: "0",
  LC_ALL: "C"
}
const hardening: ReadonlyArray<readonly [string, string]> = [["core.hooksPath", "/dev/null"], ["core.fsmonitor", "false"]]

const identityEnv: Readonly<Record<string, string>> = {
  GIT_AUTHOR_NAME: ccoIdentity.name,
  GIT_AUTHOR_EMAIL: ccoIdentity.email,
  GIT_COMMITTER_NAME: ccoIdentity.name,
  GIT_COMMITTER_EMAIL: ccoIdentity.email
}

/** This process's environment (read per call, as a spawned program would inherit it) plus the hardening above. */
const environment = (options: GitCallOptions): Record<string, string> => {
  const env: Record<string, string> = {}
  for (const [name, value] of Object.entries(process.env)) if (value !== undefined) env[name] = value
  Object.assign(env, baseEnv, options.identity === true ? identityEnv : {})
  const config = [...hardening, ...Object.entries(options.config ?? {})]
  config.forEach(([key, value], i) => {
    env[`GIT_CONFIG_KEY_${i}`] = key
    env[`GIT_CONFIG_VALUE_${i}`] = value
  })
  env.GIT_CONFIG_COUNT = String(config.length)
  return env
}

// simple-git refuses environment variables and config that can run programs unless allowed. cco sets some itself
// (GIT_EDITOR, core.hooksPath and core.fsmonitor through GIT_CONFIG_COUNT: to switch them off), and passes the
// user's environment on as before (their ssh command, askpass, pager, global config). Left refused: what only argv
// could bring (aliases, credential helpers, filters, textconv, merge drivers, gpg, protocol overrides,
// --upload-pack/--receive-pack); cco's argv never carries any of them.
const unsafe: SimpleGitOptions["unsafe"] = {
  allowUnsafeConfigEnvCount: true,
  allowUnsafeHooksPath: true,
  allowUnsafeFsMonitor: true,
  allowUnsafeEditor: true,
  allowUnsafeAskPass: true,
  allowUnsafeConfigPaths: true,
  allowUnsafeSshCommand: true,
  allowUnsafeGitProxy: true,
  allowUnsafePager: true,
  allowUnsafeDiffExternal: true,
  allowUnsafeTemplateDir: true
}

// simple-git waits another 50 ms after a git process that printed nothing, in case output is still on its way; an
// empty chunk once stdout has ended tells it that all of it is in (most of cco's writes print nothing).
const endOfOutput: outputHandler = (_command, stdout) => {
  stdout.once("end", () => stdout.emit("data", Buffer.alloc(0)))
}

/** Whether a git process got to run and exit by itself (spawn failures report a negative errno, kills none). */
const ran = (exitCode: unknown): exitCode is number => typeof exitCode === "number" && exitCode >= 0

/**
 * One simple-git client per call, in `cwd`: no shared queue between calls, and what the process printed and its
 * exit code are kept whatever the task makes of them. With `failOnExit` a non-zero exit fails the task.
 */
const client = (cwd: string | undefined, options: GitCallOptions, signal: AbortSignal, failOnExit: boolean) => {
  const seen: { stdout: string; stderr: string; exitCode: number } = { stdout: "", stderr: "", exitCode: -1 }
  const errors: SimpleGitOptions["errors"] = (error, result) => {
    seen.stdout = Buffer.concat(result.stdOut).toString("utf8")
    seen.stderr = Buffer.concat(result.stdErr).toString("utf8")
    if (!ran(result.exitCode)) return error ?? new Error(seen.stderr.trim() || "git did not run")
    seen.exitCode = result.exitCode
    return failOnExit && result.exitCode !== 0 ? new Error(outputOf(seen)) : undefined
  }
  const git: SimpleGit = simpleGit({ baseDir: cwd ?? process.cwd(), abort: signal, unsafe, errors })
    .env(environment(options))
    .outputHandler(endOfOutput)
  return { git, seen: seen as GitOutput }
}

/** The GitError for a call that failed: a missing directory, git that cannot start, or (typed calls) an exit code. */
const failure = (operation: string, cwd: string | undefined, seen: GitOutput | undefined, cause: unknown) => {
  if (cause instanceof GitConstructError && cwd !== undefined) return gitError(operation, cwd, `directory ${cwd} does not exist`)
  if (seen !== undefined && ran(seen.exitCode) && seen.exitCode !== 0) return gitError(operation, cwd ?? ".", outputOf(seen))
  // simple-git wraps what it is given in errors of its own: "Error: Error: spawn git ENOENT" says it once.
  const message = (cause instanceof Error ? cause.message : String(cause)).split("\n")[0]!.replace(/^(Error: )+/, "")
  return gitError(operation, cwd ?? ".", `cannot run git: ${message}`)
}

const describe = (args: ReadonlyArray<string>) => `git ${args.join(" ")}`

/** Runs one simple-git task; `seen` holds the process's output afterwards. */
const call = <A>(
  args: ReadonlyArray<string>,
  cwd: string | undefined,
  options: GitCallOptions,
  failOnExit: boolean,
  task: (git: SimpleGit) => PromiseLike<A>
): Effect.Effect<readonly [A, GitOutput], GitError> => {
  let seen: GitOutput | undefined
  return Effect.tryPromise({
    try: (signal) => {
      const made = client(cwd, options, signal, failOnExit)
      seen = made.seen
      return Promise.resolve(task(made.git)).then((a) => [a, made.seen] as const)
    },
    catch: (cause) => failure(describe(args), cwd, seen, cause)
  })
}

export class Git extends Effect.Service<Git>()("cco/Git", {
  dependencies: [NodeContext.layer],
  effect: Effect.gen(function*() {
    const executor = yield* CommandExecutor.CommandExecutor

    /** Runs git in `cwd` (this process's when undefined); any exit code is returned, only a failure to run is an error. */
    const run = Effect.fn("Git.run")(function*(cwd: string | undefined, args: ReadonlyArray<string>, options: GitCallOptions = {}) {
      const [, seen] = yield* call(args, cwd, options, false, (git) => git.raw([...args]))
      return seen
    })

    /** Runs git and returns its stdout; a non-zero exit is a GitError with what git said. */
    const output = Effect.fn("Git.output")(function*(cwd: string | undefined, args: ReadonlyArray<string>, options: GitCallOptions = {}) {
      const seen = yield* run(cwd, args, options)
      if (seen.exitCode !== 0) return yield* gitError(describe(args), cwd ?? ".", outputOf(seen))
      return seen.stdout
    })

    /** `git status` as simple-git reads it (porcelain, NUL-separated). */
    const status = Effect.fn("Git.status")(function*(cwd: string, args: ReadonlyArray<string> = []) {
      const [result] = yield* call(["status", ...args], cwd, {}, true, (git) => git.status([...args]))
      return result as StatusResult
    })

    /** `git branch -v` with these options (e.g. `--list`, `--merged`), as simple-git reads it. */
    const branches = Effect.fn("Git.branches")(function*(cwd: string, args: ReadonlyArray<string>) {
      const [result] = yield* call(["branch", ...args], cwd, {}, true, (git) => git.branch([...args]))
      return result as BranchSummary
    })

    /** `git --version`'s line. */
    const version = Effect.fn("Git.version")(function*() {
      return (yield* output(undefined, ["--version"])).trim()
    })

    /**
     * Runs git with `input` on its stdin, which simple-git cannot give (`update-ref --stdin`: many refs in one
     * transaction); the same environment and errors as every other call. A non-zero exit is a GitError.
     */
    const withInput = Effect.fn("Git.withInput")(function*(cwd: string, args: ReadonlyArray<string>, input: string) {
      const result = yield* exec("git", args, { cwd, env: environment({}), stdin: input }).pipe(
        Effect.provideService(CommandExecutor.CommandExecutor, executor),
        Effect.mapError((e) =>
          gitError(
            describe(args),
            cwd,
            e._tag === "SystemError" && e.reason === "NotFound" && e.message.includes(cwd)
              ? `directory ${cwd} does not exist`
              : `cannot run git: ${e.message}`
          )
        )
      )
      if (result.exitCode !== 0) return yield* gitError(describe(args), cwd, outputOf(result))
      return result.stdout
    })

    return { run, output, status, branches, version, withInput } as const
  })
}) {}
