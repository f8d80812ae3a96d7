// The configuration: orchestrator.json and the optional api-keys.json of a config directory, loaded and made whole
// (paths resolved, keys attached). Every problem becomes one ConfigError naming the file and the field.
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import { Context, Effect, Either, Redacted, Schema } from "effect"
import { homedir } from "node:os"
import { type ApiKeyCredential, API_KEYS_FILE, ApiKeysFile, ENTRY_KEYS, ENV_KEYS, toCredentials } from "./ApiKeysFile.js"
import { ConfigError, firstProblem } from "./ConfigError.js"
import { type HostConfig, hostsProblem, resolveHosts } from "./HostsConfig.js"
import { type AuthMode, knownKeysAt, ORCHESTRATOR_FILE, OrchestratorFile, type Webhook } from "./OrchestratorFile.js"
import { MAX_BYTES, readRegularFile } from "./RegularFile.js"
import type { SandboxMode } from "./Sandbox.js"
import { parseJson } from "./StrictJson.js"

export interface ResolvedConfig {
  /** Absolute. */
  readonly configDir: string
  /** Anything git can clone; a local path is made absolute against configDir. */
  readonly repositoryUrl: string
  readonly branch: string
  readonly workerCount: number
  readonly useRunBranch: boolean
  readonly authMode: AuthMode
  /** Absolute. */
  readonly logDirectory: string
  readonly model: string | undefined
  readonly engineerManagerGroupSize: number
  readonly maxRunDurationMinutes: number
  /** Name (looked up in PATH) or path of the claude executable. */
  readonly claudeCommand: string
  /** tmux server socket name (tmux -L). */
  readonly tmuxSocket: string
  /** Supervisor: seconds between health checks of each instance. */
  readonly healthCheckIntervalSeconds: number
  /** Busy with no hook event or tool use for this long: stuck. */
  readonly stuckAfterSeconds: number
  /** Idle with an unreported task for this long: nudged. */
  readonly idleAfterSeconds: number
  /** Time between steps of the escalation ladder (nudge, interrupt, restart). */
  readonly escalationIntervalSeconds: number
  /** Restarts allowed per instance within 10 minutes before it is left stopped. */
  readonly maxRestartsPerInstance: number
  /** Cost limits: the run winds down when one is reached (warning at 80 %). */
  readonly maxCostUsd: number | undefined
  readonly maxCostUsdPerInstance: number | undefined
  readonly maxTokens: number | undefined
  /** Run by sh in every new worktree before its instance starts; output in <run folder>/setup-<instance>.log. */
  readonly setupCommand: string | undefined
  /** The merge gate: run by sh on the merged result before a merge lands; undefined: no gate. */
  readonly checkCommand: string | undefined
  /** A check still running after this long counts as failed (its process group is killed). */
  readonly checkTimeoutMinutes: number
  /** How instances are confined (see Sandbox.ts). */
  readonly sandbox: SandboxMode
  /** Webhooks told when the run needs a person (Notify.ts); their URLs are secrets. */
  readonly notify: ReadonlyArray<Webhook>
  readonly apiKeys: ReadonlyArray<ApiKeyCredential>
  /** Where instances run (see HostsConfig.ts); undefined: this machine only. */
  readonly hosts?: ReadonlyArray<HostConfig>
}

/** Values given at the edge (environment, flags) that win over the files. */
export interface ConfigOverrides {
  readonly claudeCommand?: string | undefined
}

/** The loaded configuration, for services that need it. */
export class Config extends Context.Tag("cco/Config")<Config, ResolvedConfig>() {}

const isPlainObject = (u: unknown): u is Record<string, unknown> =>
  typeof u === "object" && u !== null && !Array.isArray(u)

const describeJson = (u: unknown) => Array.isArray(u) ? "an array" : u === null ? "null" : `a ${typeof u}`

/** Git treats `scheme://…` and scp-like `host:path` (a colon before any slash) as remote; anything else is a path. */
const isRemoteUrl = (url: string) => /^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(url) || /^[^/]+:/.test(url)

const readJson = (file: string, notFound: string) =>
  readRegularFile(file, MAX_BYTES.config).pipe(
    Effect.mapError((e) => new ConfigError({ file, message: e.reason === "NotFound" ? notFound : e.message })),
    Effect.flatMap((text) =>
      Either.match(parseJson(text), {
        onLeft: ({ field, message }) => Effect.fail(new ConfigError({ file, message, ...(field === undefined ? {} : { field }) })),
        onRight: Effect.succeed
      })
    )
  )

/** How config files and in-memory configs are decoded: the first problem, unknown keys refused. */
export const decodeOptions = { errors: "first", onExcessProperty: "error" } as const

/**
 * Loads and checks the config directory. Fails with one ConfigError for the first problem found; reads nothing
 * else and creates nothing.
 */
export const loadConfig = Effect.fn("Config.load")(function*(configDir: string, overrides?: ConfigOverrides) {
  const fs = yield* FileSystem.FileSystem
  const path = yield* Path.Path
  const dir = path.resolve(configDir)

  const info = yield* fs.stat(dir).pipe(
    Effect.mapError((e) =>
      new ConfigError({
        file: dir,
        message: e._tag === "SystemError" && e.reason === "NotFound"
          ? "config directory does not exist"
          : `config directory cannot be read (${e.message})`
      })
    )
  )
  if (info.type !== "Directory") {
    return yield* new ConfigError({ file: dir, message: "is not a directory; --config takes the directory holding orchestrator.json" })
  }

  const orchestratorPath = path.join(dir, ORCHESTRATOR_FILE)
  const raw = yield* readJson(orchestratorPath, "file not found; every config directory needs one")
  if (!isPlainObject(raw)) {
    return yield* new ConfigError({
      file: orchestratorPath,
      message: `must be a JSON object like {"repositoryUrl": "...", "workerCount": 2}, got ${describeJson(raw)}`
    })
  }
  const file = yield* Schema.decodeUnknown(OrchestratorFile, decodeOptions)(raw).pipe(
    Effect.mapError((error) => {
      const { field, message } = firstProblem(error, knownKeysAt())
      return new ConfigError({ file: orchestratorPath, field, message })
    })
  )

  const apiKeys = yield* loadApiKeys(fs, path.join(dir, API_KEYS_FILE), file.authMode, loginDirResolver(path, dir))
  return yield* resolveConfig(file, apiKeys, {
    dir,
    source: orchestratorPath,
    ...(overrides?.claudeCommand !== undefined && overrides.claudeCommand !== "" ? { claudeCommand: overrides.claudeCommand } : {})
  })
})

/**
 * The decoded options made whole: a local repository path made absolute (and checked), paths resolved
 * against `dir`, the keys attached. Shared by config directories and in-memory configurations.
 */
export const resolveConfig = (
  file: typeof OrchestratorFile.Type,
  apiKeys: ReadonlyArray<ApiKeyCredential>,
  where: { readonly dir: string; readonly source: string; readonly claudeCommand?: string }
): Effect.Effect<ResolvedConfig, ConfigError, FileSystem.FileSystem | Path.Path> =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const { dir } = where
    let repositoryUrl = file.repositoryUrl.trim()
    if (!isRemoteUrl(repositoryUrl)) {
      repositoryUrl = path.resolve(dir, repositoryUrl)
      if (!(yield* fs.exists(repositoryUrl).pipe(Effect.orElseSucceed(() => false)))) {
        return yield* new ConfigError({
          file: where.source,
          field: "repositoryUrl",
          message: `no repository at ${repositoryUrl} (a relative path is taken from ${dir})`
        })
      }
    }
    const hosts = file.hosts === undefined ? undefined : resolveHosts(file.hosts, loginDirResolver(path, dir))
    const room = hostsProblem(hosts, file.workerCount, file.engineerManagerGroupSize)
    if (room !== undefined) return yield* new ConfigError({ file: where.source, field: "hosts", message: room })
    return {
      configDir: dir,
      repositoryUrl,
      branch: file.branch,
      workerCount: file.workerCount,
      useRunBranch: file.useRunBranch,
      authMode: file.authMode,
      logDirectory: file.logDirectory === undefined ? dir : path.resolve(dir, file.logDirectory),
      model: file.model,
      engineerManagerGroupSize: file.engineerManagerGroupSize,
      maxRunDurationMinutes: file.maxRunDurationMinutes,
      // The edge's override wins; a path (not a bare name looked up in PATH) is taken from `dir`.
      claudeCommand: where.claudeCommand ?? (file.claudeCommand.includes("/") ? path.resolve(dir, file.claudeCommand) : file.claudeCommand),
      tmuxSocket: file.tmuxSocket,
      healthCheckIntervalSeconds: file.healthCheckIntervalSeconds,
      stuckAfterSeconds: file.stuckAfterSeconds,
      idleAfterSeconds: file.idleAfterSeconds,
      escalationIntervalSeconds: file.escalationIntervalSeconds,
      maxRestartsPerInstance: file.maxRestartsPerInstance,
      maxCostUsd: file.maxCostUsd,
      maxCostUsdPerInstance: file.maxCostUsdPerInstance,
      maxTokens: file.maxTokens,
      setupCommand: file.setupCommand,
      checkCommand: file.checkCommand,
      checkTimeoutMinutes: file.checkTimeoutMinutes,
      sandbox: file.sandbox,
      notify: file.notify,
      apiKeys,
      ...(hosts === undefined ? {} : { hosts })
    }
  })

/** A login dir made absolute: `~` and `~/…` from HOME, a relative path from the config directory. */
export const loginDirResolver = (path: Path.Path, dir: string, home: string = homedir()) => (loginDir: string) =>
  loginDir === "~" ? home : loginDir.startsWith("~/") ? path.join(home, loginDir.slice(2)) : path.resolve(dir, loginDir)

const loadApiKeys = (fs: FileSystem.FileSystem, file: string, authMode: AuthMode, resolveDir: (dir: string) => string) =>
  Effect.gen(function*() {
    const present = yield* fs.exists(file).pipe(Effect.orElseSucceed(() => true))
    if (!present) {
      if (authMode === "oauth") return []
      return yield* new ConfigError({
        file,
        message: `file not found; authMode "${authMode}" in ${ORCHESTRATOR_FILE} needs at least one API key here`
      })
    }
    const raw = yield* readJson(file, "file not found")
    const entries = yield* Schema.decodeUnknown(ApiKeysFile, decodeOptions)(raw).pipe(
      Effect.mapError((error) => {
        const { field, message } = firstProblem(error, (p) =>
          p.length === 1
            ? { kind: "field", keys: ENTRY_KEYS }
            : p.length === 2 && p[1] === "env"
            ? { kind: "variable", keys: ENV_KEYS }
            : undefined)
        return new ConfigError({ file, field, message })
      })
    )
    return toCredentials(entries, resolveDir)
  })

/** A webhook's scheme and host (`https://hooks.slack.com`): all that logs and `cco validate` show of its URL. */
export const webhookOrigin = (url: Redacted.Redacted<string>): string => {
  const parsed = new URL(Redacted.value(url))
  // Some services put the secret in the host name (a per-hook subdomain): only its last two labels are shown.
  const labels = parsed.hostname.split(".")
  const named = labels.length > 2 && !/^[\d.]+$/.test(parsed.hostname) && !parsed.hostname.startsWith("[")
  return `${parsed.protocol}//${named ? `…${labels.slice(-2).join(".")}` : parsed.host}`
}

/** The configuration as plain JSON, every secret shown as "<redacted>" (what `cco validate` prints). */
export const redactedView = (c: ResolvedConfig): object => ({
  configDir: c.configDir,
  repositoryUrl: c.repositoryUrl,
  branch: c.branch,
  workerCount: c.workerCount,
  useRunBranch: c.useRunBranch,
  authMode: c.authMode,
  logDirectory: c.logDirectory,
  model: c.model ?? null,
  engineerManagerGroupSize: c.engineerManagerGroupSize,
  maxRunDurationMinutes: c.maxRunDurationMinutes,
  claudeCommand: c.claudeCommand,
  tmuxSocket: c.tmuxSocket,
  healthCheckIntervalSeconds: c.healthCheckIntervalSeconds,
  stuckAfterSeconds: c.stuckAfterSeconds,
  idleAfterSeconds: c.idleAfterSeconds,
  escalationIntervalSeconds: c.escalationIntervalSeconds,
  maxRestartsPerInstance: c.maxRestartsPerInstance,
  maxCostUsd: c.maxCostUsd ?? null,
  maxCostUsdPerInstance: c.maxCostUsdPerInstance ?? null,
  maxTokens: c.maxTokens ?? null,
  setupCommand: c.setupCommand ?? null,
  checkCommand: c.checkCommand ?? null,
  checkTimeoutMinutes: c.checkTimeoutMinutes,
  sandbox: c.sandbox,
  notify: c.notify.map((w) => ({ url: webhookOrigin(w.url) + "/<redacted>", format: w.format, events: w.events })),
  ...(c.hosts === undefined ? {} : { hosts: c.hosts.map((h) => h.name === "local" ? { name: h.name, maxInstances: h.maxInstances } : h) }),
  apiKeys: c.apiKeys.map((k) => ({
    name: k.name,
    ...(k.kind === undefined || k.kind === "api-key" ? {} : { kind: k.kind }),
    env: Object.fromEntries(Object.keys(k.env).map((name) => [name, "<redacted>"])),
    ...(k.loginDir === undefined ? {} : { claudeConfigDir: k.loginDir })
  }))
})
