// `cco doctor`: checks what a run needs — node, tmux, git, claude and, given a config directory, the config,
// credentials (presence only), the repository, PROJECT_DIRECTION.md and disk space — one line each, with the fix.
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import type { CommandExecutor } from "@effect/platform/CommandExecutor"
import { Duration, Effect, Either, Option, Redacted, Schema } from "effect"
import { kindOf } from "./ApiKeysFile.js"
import { CREDENTIALS_FILE, readLoginText } from "./ClaudeCode.js"
import { MAX_BYTES, readRegularFile } from "./RegularFile.js"
import { statfs } from "node:fs/promises"
import { type ConfigOverrides, loadConfig, type ResolvedConfig } from "./Config.js"
import { exec } from "./Exec.js"
import { Git, stripCredentials } from "./Git.js"
import { checkHosts, checkHostSandboxes } from "./Ssh.js"
import * as Sandbox from "./Sandbox.js"
import type { SandboxMode } from "./Sandbox.js"

export type CheckLevel = "ok" | "warn" | "fail"

export interface Check {
  readonly name: string
  readonly level: CheckLevel
  readonly detail: string
  /** What to do about a warn or fail. */
  readonly fix?: string
}

export class DoctorFailed extends Schema.TaggedError<DoctorFailed>()("DoctorFailed", {
  failed: Schema.Array(Schema.String)
}) {
  override get message() {
    return `doctor: ${this.failed.length} check${this.failed.length === 1 ? "" : "s"} failed (${this.failed.join(", ")})`
  }
}

export interface DoctorInput {
  /** With a config directory: also the config, credentials, repository, direction file and disk space. */
  readonly configDir?: string
  readonly overrides?: ConfigOverrides
  /** The same resolution `cco run` uses for claudeCommand (bin.ts: a bare name looked up on PATH). */
  readonly resolveClaude: (command: string) => string
  /** The user's Claude login file (~/.claude/.credentials.json) when it exists. */
  readonly oauthCredentialsFile?: string
  /** CLAUDE_CODE_OAUTH_TOKEN as the run would get it (RunHost): only its presence is reported. */
  readonly oauthToken?: Redacted.Redacted<string> | undefined
  /** process.versions.node */
  readonly nodeVersion: string
  /** Where bubblewrap is looked for: the PATH a run gives its instances (the process's by default). */
  readonly searchPath?: string
  /** How long a network or claude check may take; default 20 s. */
  readonly timeout?: Duration.DurationInput
}

export const MIN_NODE_MAJOR = 20
const MIN_TMUX: readonly [number, number] = [3, 0] // new-session -e
const MIN_GIT: readonly [number, number] = [2, 17] // git worktree remove
/** Http hooks (how hook events reach cco without a process per event) are what cco is tested with from here. */
export const MIN_CLAUDE: readonly [number, number, number] = [2, 1, 332]

/** Whether a `claude --version` line is at least `min`; undefined when it names no version. */
export const claudeAtLeast = (line: string, min: readonly [number, number, number]): boolean | undefined => {
  const m = /(\d+)\.(\d+)\.(\d+)/.exec(line)
  if (m === null) return undefined
  const v = [Number(m[1]), Number(m[2]), Number(m[3])]
  for (let i = 0; i < 3; i++) if (v[i] !== min[i]) return v[i]! > min[i]!
  return true
}
const LOW_DISK_BYTES = 1024 ** 3

const ok = (name: string, detail: string): Check => ({ name, level: "ok", detail })
const warn = (name: string, detail: string, fix: string): Check => ({ name, level: "warn", detail, fix })
const fail = (name: string, detail: string, fix: string): Check => ({ name, level: "fail", detail, fix })

const versionOf = (text: string): readonly [number, number] | undefined => {
  const m = /(\d+)\.(\d+)/.exec(text)
  return m === null ? undefined : [Number(m[1]), Number(m[2])]
}
const atLeast = (v: readonly [number, number], min: readonly [number, number]) => v[0] > min[0] || (v[0] === min[0] && v[1] >= min[1])

interface Output {
  readonly stdout: string
  readonly stderr: string
  readonly exitCode: number
}

const firstLine = (r: Output) => (r.stderr.trim() || r.stdout.trim()).split("\n")[0] ?? ""

/** A program that cannot be started is "missing", one that hangs past the timeout is "timeout" (and is stopped). */
const probing = <E, R>(started: Effect.Effect<Output, E, R>, timeout: Duration.DurationInput) =>
  started.pipe(
    Effect.map((r) => Either.right(r) as Either.Either<Output, "missing" | "timeout">),
    Effect.catchAll(() => Effect.succeed(Either.left("missing" as const))),
    Effect.timeoutTo({ duration: timeout, onTimeout: () => Either.left("timeout" as const), onSuccess: (r) => r })
  )

/** Runs `program --version`-style commands; a missing program is `undefined`, a hang is a timeout. */
const probe = (program: string, args: ReadonlyArray<string>, timeout: Duration.DurationInput) => probing(exec(program, args), timeout)

/** The same for git, through the Git service (its failures to run are the "missing" case). */
const probeGit = (args: ReadonlyArray<string>, timeout: Duration.DurationInput, options?: { readonly config?: Record<string, string> }) =>
  Effect.flatMap(Git, (git) => probing(git.run(undefined, args, options), timeout))

const checkNode = (version: string): Check => {
  const major = Number(version.replace(/^v/, "").split(".")[0])
  return major >= MIN_NODE_MAJOR
    ? ok("node", `v${version.replace(/^v/, "")}`)
    : fail("node", `v${version.replace(/^v/, "")} is too old`, `install Node.js ${MIN_NODE_MAJOR} or newer`)
}

const checkTool = <R>(
  name: string,
  args: ReadonlyArray<string>,
  min: readonly [number, number],
  install: string,
  probed: Effect.Effect<Either.Either<Output, "missing" | "timeout">, never, R>
) =>
  probed.pipe(Effect.map((r): Check => {
    if (Either.isLeft(r)) {
      return r.left === "missing"
        ? fail(name, `${name} not found on PATH`, install)
        : fail(name, `${name} ${args.join(" ")} did not answer`, install)
    }
    const text = r.right.stdout.trim() || r.right.stderr.trim()
    if (r.right.exitCode !== 0) return fail(name, `${name} ${args.join(" ")} failed: ${firstLine(r.right)}`, install)
    const v = versionOf(text)
    if (v !== undefined && !atLeast(v, min)) return fail(name, `${text} is too old; cco needs ${min.join(".")} or newer`, install)
    return ok(name, text)
  }))

const checkClaude = (command: string, resolve: (command: string) => string, timeout: Duration.DurationInput) => {
  const path = resolve(command)
  const fix = "install Claude Code (npm install -g @anthropic-ai/claude-code), or point claudeCommand in orchestrator.json or CCO_CLAUDE_PATH at it"
  return probe(path, ["--version"], timeout).pipe(Effect.map((r): Check => {
    if (Either.isLeft(r)) {
      return r.left === "missing"
        ? fail("claude", path.includes("/") ? `${path} not found` : `${path} not found on PATH`, fix)
        : fail("claude", `${path} --version did not answer`, fix)
    }
    if (r.right.exitCode !== 0) return fail("claude", `${path} --version failed: ${firstLine(r.right)}`, fix)
    const line = r.right.stdout.trim().split("\n")[0] ?? ""
    if (claudeAtLeast(line, MIN_CLAUDE) === false) {
      return warn("claude", `${line} (${path}) is older than ${MIN_CLAUDE.join(".")}: its hook events may not reach cco`, "update Claude Code (npm install -g @anthropic-ai/claude-code)")
    }
    return ok("claude", `${line} (${path})`)
  }))
}

const checkCredentials = (config: ResolvedConfig, oauthFile: string | undefined, token: Redacted.Redacted<string> | undefined) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const fileThere = oauthFile !== undefined && (yield* fs.exists(oauthFile).pipe(Effect.orElseSucceed(() => false)))
    const oauth = fileThere ? `Claude login found (${oauthFile})` : token !== undefined ? "CLAUDE_CODE_OAUTH_TOKEN is set" : undefined
    const keys = config.apiKeys.length
    const accounts = config.apiKeys.filter((k) => kindOf(k) !== "api-key").length
    const apiKeys = keys - accounts
    const keysText = accounts === 0
      ? `${keys} API key${keys === 1 ? "" : "s"} in api-keys.json`
      : `${apiKeys} API key${apiKeys === 1 ? "" : "s"} and ${accounts} subscription account${accounts === 1 ? "" : "s"} in api-keys.json`
    const loginFix = "log in once with `claude` (/login), or set CLAUDE_CODE_OAUTH_TOKEN (from `claude setup-token`), or add keys to api-keys.json and use authMode api-keys-first"
    switch (config.authMode) {
      case "oauth":
        if (oauth !== undefined) return ok("credentials", `authMode oauth: ${oauth}${keys > 0 ? `; ${keysText} for rotation` : ""}`)
        if (accounts > 0) return ok("credentials", `authMode oauth: ${keysText} (no login of your own; not needed)`)
        return keys > 0
          ? warn("credentials", `authMode oauth: no Claude login (~/.claude/.credentials.json) and no CLAUDE_CODE_OAUTH_TOKEN; only ${keysText}`, loginFix)
          : fail("credentials", "authMode oauth: no Claude login (~/.claude/.credentials.json) and no CLAUDE_CODE_OAUTH_TOKEN", loginFix)
      case "api-keys-first":
        if (keys > 0) return ok("credentials", `authMode api-keys-first: ${keysText}${oauth === undefined ? "" : `; ${oauth}`}`)
        return oauth !== undefined
          ? warn("credentials", `authMode api-keys-first: no API keys; only ${oauth}`, "add keys to api-keys.json")
          : fail("credentials", "authMode api-keys-first: no API keys and no Claude login", "add keys to api-keys.json")
      case "api-keys-only":
        return keys > 0
          ? ok("credentials", `authMode api-keys-only: ${keysText}`)
          : fail("credentials", "authMode api-keys-only: api-keys.json holds no keys", "add at least one key to api-keys.json")
    }
  })

/**
 * One line per subscription account in api-keys.json: a token that is there (its value never shown), a login dir
 * that holds a login. An API key has nothing to check offline.
 */
const checkAccounts = (config: ResolvedConfig) =>
  Effect.forEach(config.apiKeys.filter((k) => kindOf(k) !== "api-key"), (k) =>
    Effect.gen(function*() {
      const name = `account ${k.name}`
      if (kindOf(k) === "token") {
        const token = k.env.CLAUDE_CODE_OAUTH_TOKEN
        const length = token === undefined ? 0 : Redacted.value(token).trim().length
        return length > 0
          ? ok(name, `token (CLAUDE_CODE_OAUTH_TOKEN, ${length} characters)`)
          : fail(name, "token: CLAUDE_CODE_OAUTH_TOKEN is empty", "run `claude setup-token` and put its token in api-keys.json")
      }
      const dir = k.loginDir ?? ""
      const path = yield* Path.Path
      const fix = `log in once there: CLAUDE_CONFIG_DIR=${dir} claude, then /login (or give this account a token from \`claude setup-token\`)`
      const info = yield* FileSystem.FileSystem.pipe(Effect.flatMap((fs) => fs.stat(dir)), Effect.option)
      if (Option.isNone(info) || info.value.type !== "Directory") return fail(name, `login dir ${dir} does not exist`, fix)
      const text = yield* readRegularFile(path.join(dir, CREDENTIALS_FILE), MAX_BYTES.state).pipe(Effect.option)
      const login = Option.isNone(text) ? undefined : readLoginText(text.value)
      if (login === undefined) return fail(name, `login dir ${dir} holds no Claude login (${CREDENTIALS_FILE})`, fix)
      return ok(name, `login dir ${dir} holds a login`)
    }))

const checkRepository = (config: ResolvedConfig, timeout: Duration.DurationInput) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const url = config.repositoryUrl
    const shown = stripCredentials(url)
    // The URL (it may hold credentials) reaches git through the environment, as a remote of its own, not argv.
    const listed = yield* probeGit(["ls-remote", "cco-origin", `refs/heads/${config.branch}`], timeout, { config: { "remote.cco-origin.url": url } })
    if (Either.isLeft(listed)) {
      return [fail("repository", listed.left === "missing" ? "git not found" : `${shown}: no answer within ${Duration.format(timeout)}`,
        "check the URL and that `git ls-remote` reaches it without a password prompt (credential helper or ssh agent)")]
    }
    if (listed.right.exitCode !== 0) {
      return [fail("repository", `${shown}: ${stripCredentials(firstLine(listed.right))}`,
        "check repositoryUrl in orchestrator.json and that `git ls-remote` reaches it without a password prompt")]
    }
    const head = listed.right.stdout.trim().split(/\s+/)[0]
    if (head === undefined || head === "") {
      return [fail("repository", `${shown} is reachable but has no branch ${config.branch}`,
        `push a ${config.branch} branch, or set "branch" in orchestrator.json to an existing one`)]
    }
    const reachable = ok("repository", `${shown}: branch ${config.branch} at ${head.slice(0, 12)}`)
    if (!path.isAbsolute(url)) return [reachable, ok("direction", "PROJECT_DIRECTION.md: checked at run start (remote repository)")]
    const gitDir = (yield* fs.exists(path.join(url, ".git")).pipe(Effect.orElseSucceed(() => false))) ? path.join(url, ".git") : url
    const found = yield* probeGit(["--git-dir", gitDir, "cat-file", "-e", `refs/heads/${config.branch}:PROJECT_DIRECTION.md`], timeout)
    const present = Either.isRight(found) && found.right.exitCode === 0
    return [
      reachable,
      present
        ? ok("direction", `PROJECT_DIRECTION.md is on ${config.branch}`)
        : fail("direction", `PROJECT_DIRECTION.md is missing on branch ${config.branch}`,
          `commit a PROJECT_DIRECTION.md at the repository root on ${config.branch}: the goals, what done looks like, any constraints`)
    ]
  })

const checkDisk = (logDirectory: string) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    // The log directory may not exist before the first run: measure the nearest folder that does.
    let dir = logDirectory
    while (!(yield* fs.exists(dir).pipe(Effect.orElseSucceed(() => false))) && path.dirname(dir) !== dir) dir = path.dirname(dir)
    const stats = yield* Effect.tryPromise(() => statfs(dir)).pipe(Effect.option)
    if (Option.isNone(stats)) return warn("disk", `cannot measure free space in ${dir}`, "check that the log directory is readable")
    const free = stats.value.bavail * stats.value.bsize
    const text = `${(free / 1024 ** 3).toFixed(1)} GB free in ${dir}`
    return free < LOW_DISK_BYTES
      ? warn("disk", text, "free some space or set logDirectory in orchestrator.json elsewhere: each run holds a clone and a worktree per instance")
      : ok("disk", text)
  })

/** Whether instances would be confined: bubblewrap usable here, under the config's `sandbox` ("auto" without one). */
export const checkSandbox = (mode: SandboxMode, searchPath: string) =>
  Effect.gen(function*() {
    if (mode === "none") return ok("sandbox", "sandbox \"none\": instances run unconfined, with the user's files in reach")
    const found = yield* Sandbox.probe(searchPath).pipe(
      Effect.orElseSucceed(() => ({ _tag: "Broken" as const, reason: "bubblewrap could not be tried" }))
    )
    return sandboxCheck("sandbox", mode, found)
  })

/** The sandbox line for what a probe found (here, or on a remote host). */
const sandboxCheck = (name: string, mode: SandboxMode, found: Sandbox.Probe) => {
  const hint = name === "sandbox" ? Sandbox.INSTALL_HINT : Sandbox.INSTALL_HINT_THERE
  if (found._tag === "Usable") return ok(name, `${found.version} (${found.bwrap}): instances confined to their own worktree (sandbox "${mode}")`)
  return mode === "bwrap"
    ? fail(name, `sandbox "bwrap" is required but ${found.reason}: cco run will refuse to start`, hint)
    : warn(name, `${found.reason}: instances would run UNCONFINED (sandbox "auto")`, hint)
}

/** Every check, in a fixed order; the slow ones run concurrently. */
export const runChecks = Effect.fn("Doctor.runChecks")(function*(input: DoctorInput) {
  const timeout = input.timeout ?? Duration.seconds(20)
  const loaded = input.configDir === undefined
    ? undefined
    : yield* loadConfig(input.configDir, input.overrides).pipe(Effect.either)
  const config = loaded !== undefined && Either.isRight(loaded) ? loaded.right : undefined
  const claudeCommand = config?.claudeCommand ?? input.overrides?.claudeCommand ?? "claude"
  const tools: ReadonlyArray<Effect.Effect<ReadonlyArray<Check>, never, CommandExecutor | FileSystem.FileSystem | Git | Path.Path>> = [
    Effect.succeed([checkNode(input.nodeVersion)]),
    checkTool("tmux", ["-V"], MIN_TMUX, "install tmux 3.0 or newer (apt-get install tmux, or brew install tmux)", probe("tmux", ["-V"], timeout)).pipe(Effect.map((c) => [c])),
    checkTool("git", ["--version"], MIN_GIT, "install git 2.17 or newer (apt-get install git, or brew install git)", probeGit(["--version"], timeout)).pipe(Effect.map((c) => [c])),
    checkClaude(claudeCommand, input.resolveClaude, timeout).pipe(Effect.map((c) => [c])),
    // A config that does not load is reported as such; the sandbox is then checked as "auto" would.
    checkSandbox(config?.sandbox ?? "auto", input.searchPath ?? process.env.PATH ?? "/usr/bin:/bin").pipe(Effect.map((c) => [c]))
  ]
  const withConfig: ReadonlyArray<Effect.Effect<ReadonlyArray<Check>, never, CommandExecutor | FileSystem.FileSystem | Git | Path.Path>> =
    loaded === undefined
      ? []
      : Either.isLeft(loaded)
      ? [Effect.succeed([fail("config", loaded.left.summary, "fix the file and field named; `cco validate --config DIR` shows the resolved config")])]
      : [
        Effect.succeed([ok("config", `${loaded.right.configDir}: ${loaded.right.workerCount} workers on ${loaded.right.branch}, authMode ${loaded.right.authMode}`)]),
        checkCredentials(loaded.right, input.oauthCredentialsFile, input.oauthToken).pipe(Effect.map((c) => [c])),
        checkAccounts(loaded.right),
        checkRepository(loaded.right, timeout),
        checkDisk(loaded.right.logDirectory).pipe(Effect.map((c) => [c])),
        // Each remote host of `hosts`: reachable over SSH (BatchMode, its key), with tmux, git and node there.
        checkHosts(loaded.right.hosts).pipe(Effect.map((hosts) =>
          hosts.map((h) => h.ok ? ok(`host ${h.host}`, h.message) : fail(`host ${h.host}`, h.message, "check ssh, port, identityFile and knownHostsFile (ssh -o BatchMode=yes must log in without a prompt), and install tmux, git and node there")))
        ),
        // The sandbox on each of them, decided there as on this machine.
        checkHostSandboxes(loaded.right.hosts, loaded.right.sandbox).pipe(Effect.map((hosts) => hosts.map((h) => sandboxCheck(`sandbox ${h.host}`, loaded.right.sandbox, h.found))))
      ]
  const results = yield* Effect.all([...tools, ...withConfig], { concurrency: "unbounded" })
  return results.flat() as ReadonlyArray<Check>
})

const LABEL: Record<CheckLevel, string> = { ok: "ok", warn: "warn", fail: "FAIL" }

/** `ok    tmux         tmux 3.3a`, and under each problem `      fix: …`. */
export const formatChecks = (checks: ReadonlyArray<Check>): string => {
  const nameWidth = Math.max(...checks.map((c) => c.name.length))
  const lines = checks.flatMap((c) => [
    `${LABEL[c.level].padEnd(4)}  ${c.name.padEnd(nameWidth)}  ${c.detail}`,
    ...(c.fix === undefined ? [] : [`${"".padEnd(4)}  ${"".padEnd(nameWidth)}  fix: ${c.fix}`])
  ])
  const failed = checks.filter((c) => c.level === "fail").length
  const warned = checks.filter((c) => c.level === "warn").length
  lines.push(
    "",
    failed === 0 && warned === 0
      ? "all checks passed"
      : `${failed} failed, ${warned} warning${warned === 1 ? "" : "s"}`
  )
  return lines.join("\n")
}

/** Prints the checks; fails with DoctorFailed (exit 1) when any check failed. */
export const doctor = Effect.fn("Doctor.doctor")(function*(input: DoctorInput, write: (text: string) => Effect.Effect<void>) {
  const checks = yield* runChecks(input)
  yield* write(formatChecks(checks))
  const failed = checks.filter((c) => c.level === "fail").map((c) => c.name)
  if (failed.length > 0) return yield* new DoctorFailed({ failed })
})
