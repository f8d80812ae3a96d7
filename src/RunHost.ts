// The host of a run — cco's install folder, node, PATH, the user's Claude login — read once from the environment,
// and the run's options built from it and a config. `cco run` (bin.ts, Cli.ts) and the library both use these two,
// so what an instance gets (claude path, client, PATH, OAuth login and token) cannot differ between them.
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import * as NodeContext from "@effect/platform-node/NodeContext"
import { Context, Effect, Layer, Option, Redacted, Schema } from "effect"
import * as EffectConfig from "effect/Config"
import { accessSync, constants } from "node:fs"
import { homedir } from "node:os"
import * as nodePath from "node:path"
import type { ResolvedConfig } from "./Config.js"
import type { RunOptions } from "./Orchestrator.js"
import type { LogLine } from "./RunLog.js"
import * as Secrets from "./Secrets.js"

/** What a run needs from the process that starts it. */
export interface RunHost {
  /** Where cco is installed: bin/cco-client.mjs and prompts/ live there. */
  readonly projectRoot: string
  /** The node executable that runs the agents' `cco` client and hooks. */
  readonly nodePath: string
  /** PATH given to agents (after the run's own bin/); a bare claude command is looked up in it. */
  readonly basePath: string
  /** The user's Claude login, shared with instances under authMode oauth. */
  readonly oauthCredentialsFile: string | undefined
  /** CLAUDE_CODE_OAUTH_TOKEN from `claude setup-token`, given to OAuth instances instead of the credentials file. */
  readonly oauthToken?: Redacted.Redacted<string> | undefined
}

const FALLBACK_PATH = "/usr/local/bin:/usr/bin:/bin"

/** Credentials the environment may give this process: scrubbed from whatever cco writes or prints. */
const ENVIRONMENT_CREDENTIALS = ["ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN"]

/** cco's package.json and its folder, found by walking up from this module (src/ under tsx, dist/ when built). */
export const findPackageRoot: Effect.Effect<{ readonly root: string; readonly version: string }, never, FileSystem.FileSystem | Path.Path> =
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const here = path.dirname(yield* path.fromFileUrl(new URL(import.meta.url)))
    const PackageJson = Schema.parseJson(Schema.Struct({ name: Schema.String, version: Schema.String }))
    let dir = here
    while (true) {
      const found = yield* fs.readFileString(path.join(dir, "package.json")).pipe(
        Effect.flatMap(Schema.decodeUnknown(PackageJson)),
        Effect.option
      )
      if (Option.isSome(found) && found.value.name === "cco") return { root: dir, version: found.value.version }
      const parent = path.dirname(dir)
      if (parent === dir) return { root: path.resolve(here, ".."), version: "unknown" }
      dir = parent
    }
  }).pipe(Effect.orDie)

/** The claude executable: a path as given (made absolute against `cwd`), a bare name looked up on `searchPath`. */
export const resolveOnPath = (command: string, searchPath: string, cwd: string = process.cwd()): string => {
  if (command.includes("/")) return nodePath.resolve(cwd, command)
  for (const dir of searchPath.split(":")) {
    const candidate = nodePath.join(dir || ".", command)
    try {
      accessSync(candidate, constants.X_OK)
      return candidate
    } catch {
      // keep looking
    }
  }
  // Left as given: the run's preflight (`claude --version`) then says what is missing.
  return command
}

/** ~/.claude/.credentials.json under `home`, when it exists. */
export const oauthCredentialsFileIn = (home: string): Effect.Effect<string | undefined, never, FileSystem.FileSystem | Path.Path> =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const file = path.join(home, ".claude", ".credentials.json")
    return (yield* fs.exists(file).pipe(Effect.orElseSucceed(() => false))) ? file : undefined
  })

/**
 * The host as this process sees it: cco's install folder, this node, and from the ConfigProvider (the process
 * environment by default) PATH, HOME's ~/.claude login and CLAUDE_CODE_OAUTH_TOKEN. Credentials found in that
 * environment are remembered by Secrets from here on.
 */
export const hostEnvironment: Effect.Effect<RunHost, never, FileSystem.FileSystem | Path.Path> = Effect.gen(function*() {
  for (const name of ENVIRONMENT_CREDENTIALS) {
    const value = yield* EffectConfig.redacted(name).pipe(Effect.option)
    if (Option.isSome(value)) Secrets.remember(value.value, name)
  }
  const { root } = yield* findPackageRoot
  const basePath = yield* EffectConfig.string("PATH").pipe(Effect.orElseSucceed(() => FALLBACK_PATH))
  const home = yield* EffectConfig.string("HOME").pipe(Effect.orElseSucceed(() => homedir()))
  const token = yield* EffectConfig.redacted("CLAUDE_CODE_OAUTH_TOKEN").pipe(Effect.option)
  return {
    projectRoot: root,
    nodePath: process.execPath,
    basePath: basePath === "" ? FALLBACK_PATH : basePath,
    oauthCredentialsFile: yield* oauthCredentialsFileIn(home === "" ? homedir() : home),
    // An empty variable is no token.
    ...(Option.isSome(token) && Redacted.value(token.value) !== "" ? { oauthToken: token.value } : {})
  }
})

/** The host as a service: its one live layer, provided by both edges (bin.ts and the library's run entries). */
export class Host extends Context.Tag("cco/RunHost")<Host, RunHost>() {
  static readonly layer: Layer.Layer<Host> = Layer.effect(Host, hostEnvironment).pipe(Layer.provide(NodeContext.layer))
}

/** The claude executable for a configured claude command on this host. */
export const claudePathOn = (host: RunHost, command: string): string => resolveOnPath(command, host.basePath)

/** What a caller adds to the host's options for one run. */
export interface RunExtras {
  /** The claude executable; by default `config.claudeCommand` looked up on the host's PATH. */
  readonly claudePath?: string | undefined
  /** Extra environment for every instance (e.g. CLAUDE_CODE_MAX_RETRIES). */
  readonly extraEnv?: Readonly<Record<string, string>> | undefined
  readonly onLog?: ((line: LogLine) => void) | undefined
  readonly onStart?: ((info: { readonly runId: string; readonly folder: string }) => void) | undefined
}

/** The orchestrator's options for a run: the one place `cco run` and the library compute them. */
export const runOptionsFor = (config: ResolvedConfig, host: RunHost, extras: RunExtras = {}): RunOptions => ({
  claudePath: claudePathOn(host, extras.claudePath ?? config.claudeCommand),
  clientCommand: [host.nodePath, nodePath.join(host.projectRoot, "bin", "cco-client.mjs")],
  projectRoot: host.projectRoot,
  basePath: host.basePath,
  ...(host.oauthCredentialsFile === undefined ? {} : { oauthCredentialsFile: host.oauthCredentialsFile }),
  ...(host.oauthToken === undefined ? {} : { oauthEnv: { CLAUDE_CODE_OAUTH_TOKEN: host.oauthToken } }),
  ...(extras.extraEnv === undefined ? {} : { extraEnv: extras.extraEnv }),
  ...(extras.onLog === undefined ? {} : { onLog: extras.onLog }),
  ...(extras.onStart === undefined ? {} : { onStart: extras.onStart })
})
