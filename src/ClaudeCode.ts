// Everything specific to Claude Code about launching one instance: its private config dir (pre-seeded so no
// dialog swallows input), the hook settings, the argv and environment, and reading busy/idle from the pane title.
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import type { PlatformError } from "@effect/platform/Error"
import { Effect, Option, Redacted, Schema } from "effect"
import { hookHeaders } from "./HookPayload.js"
import { MAX_BYTES, readRegularFile } from "./RegularFile.js"

export interface InstanceLaunch {
  /** Private CLAUDE_CONFIG_DIR for this instance; transcripts live in its projects/. */
  readonly configDir: string
  /** Absolute path of the instance's worktree, its cwd. */
  readonly worktree: string
  readonly claudePath: string
  readonly model?: string
  /** Restart: pick up the newest conversation of this worktree with --continue. */
  readonly continueSession: boolean
  /** ANTHROPIC_API_KEY or ANTHROPIC_AUTH_TOKEN (+ ANTHROPIC_BASE_URL), CLAUDE_CODE_OAUTH_TOKEN, or empty for OAuth. */
  readonly credentialEnv: Readonly<Record<string, Redacted.Redacted<string>>>
  /** Shell command prefix; each hook runs `${hookCommand} <HookEventName>` with the event JSON on stdin. */
  readonly hookCommand: string
  /**
   * With it, Claude Code itself posts every event but SessionStart to `${hookUrl}/hook/<HookEventName>` (an http
   * hook: no process per event), the sender in headers filled from CCO_INSTANCE, CCO_GENERATION and CCO_TOKEN.
   */
  readonly hookUrl?: string
  /** Identity variables, PATH and the like. */
  readonly extraEnv: Readonly<Record<string, string>>
}

export const hookEvents = [
  "SessionStart",
  "UserPromptSubmit",
  "PostToolUse",
  // A tool that failed (e.g. a command's non-zero exit) fires this instead of PostToolUse.
  "PostToolUseFailure",
  "Stop",
  "StopFailure",
  "Notification",
  "SessionEnd"
] as const
export type HookEventName = typeof hookEvents[number]

// Events that filter on a tool or notification name need a matcher that takes them all.
const matchedEvents: ReadonlySet<HookEventName> = new Set(["PostToolUse", "PostToolUseFailure", "Notification", "SessionStart"])

// The identity variables an http hook's headers are filled from; the CLI fills only the variables a hook lists.
const identityHeaders = {
  [hookHeaders.instance]: "${CCO_INSTANCE}",
  [hookHeaders.generation]: "${CCO_GENERATION}",
  [hookHeaders.token]: "${CCO_TOKEN}"
}

// 2.1.332 runs no http hook on SessionStart; that one stays a command, which also keeps cco on the Bash tool's PATH.
const hookFor = (launch: Pick<InstanceLaunch, "hookCommand" | "hookUrl">, event: HookEventName) =>
  launch.hookUrl === undefined || event === "SessionStart"
    ? { type: "command", command: `${launch.hookCommand} ${event}`, timeout: 30 }
    : {
      type: "http",
      url: `${launch.hookUrl}/hook/${event}`,
      headers: identityHeaders,
      allowedEnvVars: ["CCO_INSTANCE", "CCO_GENERATION", "CCO_TOKEN"],
      timeout: 30
    }

/** The settings.json of an instance: our hooks, and nothing that asks, suggests, surveys or summarises on its own. */
export const instanceSettings = (launch: Pick<InstanceLaunch, "hookCommand" | "hookUrl">) => ({
  hooks: Object.fromEntries(
    hookEvents.map((event) => [event, [{
      ...(matchedEvents.has(event) ? { matcher: "*" } : {}),
      hooks: [hookFor(launch, event)]
    }]])
  ),
  skipDangerousModePermissionPrompt: true,
  // Prompt suggestions would pre-fill the input box that prompts are pasted into.
  promptSuggestionEnabled: false,
  awaySummaryEnabled: false,
  feedbackSurveyRate: 0,
  spinnerTipsEnabled: false,
  autoMemoryEnabled: false,
  autoDreamEnabled: false,
  // Transcripts are the source of cost figures; keep them for the life of any run.
  cleanupPeriodDays: 3650
})

const JsonObject = Schema.Record({ key: Schema.String, value: Schema.Unknown })
const decodeJsonObject = Schema.decodeUnknownOption(Schema.parseJson(JsonObject))
type JsonObject = typeof JsonObject.Type

const objectAt = (o: JsonObject, key: string): JsonObject => {
  const v = o[key]
  return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as JsonObject) : {}
}

const stringsAt = (o: JsonObject, key: string): ReadonlyArray<string> => {
  const v = o[key]
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : []
}

/**
 * The global config (.claude.json) with the first-run dialogs already answered, merged into what the CLI
 * wrote before (it keeps session state there, e.g. projects[cwd].lastSessionId, which a restart relies on).
 * An ANTHROPIC_API_KEY must be approved by its last 20 characters, or the CLI asks "use this API key?" and a
 * pasted Enter means No. ANTHROPIC_AUTH_TOKEN (Bearer) and CLAUDE_CODE_OAUTH_TOKEN are used without asking.
 */
export const seededClaudeJson = (existing: JsonObject, launch: InstanceLaunch): JsonObject => {
  const projects = objectAt(existing, "projects")
  const apiKey = launch.credentialEnv.ANTHROPIC_API_KEY
  const responses = objectAt(existing, "customApiKeyResponses")
  const approved = stringsAt(responses, "approved")
  const suffix = apiKey === undefined ? undefined : Redacted.value(apiKey).slice(-20)
  return {
    ...existing,
    hasCompletedOnboarding: true,
    bypassPermissionsModeAccepted: true,
    autoUpdates: false,
    projects: {
      ...projects,
      [launch.worktree]: {
        ...objectAt(projects, launch.worktree),
        hasTrustDialogAccepted: true,
        hasCompletedProjectOnboarding: true
      }
    },
    customApiKeyResponses: {
      approved: suffix === undefined || approved.includes(suffix) ? approved : [...approved, suffix],
      rejected: stringsAt(responses, "rejected").filter((r) => r !== suffix)
    }
  }
}

// Written in place of whatever is there: writing through a FIFO blocks, through a link lands elsewhere.
const writePrivate = (fs: FileSystem.FileSystem) => (file: string, content: string) =>
  Effect.gen(function*() {
    const isLink = Option.isSome(yield* fs.readLink(file).pipe(Effect.option))
    const info = yield* fs.stat(file).pipe(Effect.option)
    if (isLink || (Option.isSome(info) && info.value.type !== "File")) yield* fs.remove(file, { recursive: !isLink })
    yield* fs.writeFileString(file, content, { mode: 0o600 })
    yield* fs.chmod(file, 0o600)
  })

/**
 * Rewrites a live instance's settings.json for this orchestrator's hooks: a resumed run listens on a new port, and
 * the CLI (2.1.332) picks up a changed settings file in a running session.
 */
export const rewriteSettings = (
  configDir: string,
  hooks: Pick<InstanceLaunch, "hookCommand" | "hookUrl">
): Effect.Effect<void, PlatformError, FileSystem.FileSystem | Path.Path> =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    yield* writePrivate(fs)(path.join(configDir, "settings.json"), JSON.stringify(instanceSettings(hooks), null, 2))
  })

export interface PrepareOptions {
  /** The user's ~/.claude/.credentials.json, shared by OAuth instances through a symlink. */
  readonly oauthCredentialsFile?: string
}

/**
 * Creates or refreshes the instance's config dir (0700; files 0600). Safe to re-run on restart: transcripts in
 * projects/ and the CLI's own state in .claude.json are kept.
 *
 * OAuth: with CLAUDE_CODE_OAUTH_TOKEN (a long-lived `claude setup-token`) in credentialEnv the CLI needs no file
 * and writes none, the robust route for many instances. Otherwise `oauthCredentialsFile` is symlinked as
 * <configDir>/.credentials.json, re-asserted on every prepare: a copy per instance goes stale at the first token
 * refresh anywhere (refresh tokens are single-use), and the CLI replaces a symlink by a private file when it
 * refreshes, so the link must be put back before each launch. With an API key or auth token, a link left from
 * an earlier OAuth launch is removed so that the key alone decides who pays.
 */
export const prepareConfigDir: (
  launch: InstanceLaunch,
  options?: PrepareOptions
) => Effect.Effect<void, PlatformError, FileSystem.FileSystem | Path.Path> = Effect.fn("ClaudeCode.prepareConfigDir")(
  function*(launch: InstanceLaunch, options: PrepareOptions = {}) {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const write = writePrivate(fs)

    yield* fs.makeDirectory(launch.configDir, { recursive: true, mode: 0o700 })
    yield* fs.chmod(launch.configDir, 0o700)

    const claudeJson = path.join(launch.configDir, ".claude.json")
    const existing = Option.getOrElse(
      Option.flatMap(yield* readRegularFile(claudeJson, MAX_BYTES.state).pipe(Effect.option), decodeJsonObject),
      (): JsonObject => ({})
    )
    yield* write(claudeJson, JSON.stringify(seededClaudeJson(existing, launch), null, 2))
    yield* write(path.join(launch.configDir, "settings.json"), JSON.stringify(instanceSettings(launch), null, 2))

    const credentials = path.join(launch.configDir, ".credentials.json")
    const isLink = Option.isSome(yield* fs.readLink(credentials).pipe(Effect.option))
    if (options.oauthCredentialsFile !== undefined && launch.credentialEnv.CLAUDE_CODE_OAUTH_TOKEN === undefined) {
      if (isLink || (yield* fs.exists(credentials))) yield* fs.remove(credentials)
      yield* fs.symlink(options.oauthCredentialsFile, credentials)
    } else if (isLink && Object.keys(launch.credentialEnv).length > 0) {
      yield* fs.remove(credentials)
    }
  }
)

// ---------------------------------------------------------------------------------------------------------------
// Subscription login dirs shared by the instances of one account
//
// Refresh tokens are single-use: whoever refreshes first invalidates every other copy of the token. The CLI keeps its
// login in `<CLAUDE_CONFIG_DIR>/.credentials.json`, writes it by temp file + rename (which replaces a symlink by a
// private file), and serialises refreshes on a lock keyed by the file's real path, re-reading it under the lock. So
// copies race, symlinks detach at the first refresh, and only processes that use the very same file take turns.
// Hence: every instance on a login-dir account runs with one config dir for that account in the run folder
// (`accounts/<name>`), whose `.credentials.json` is the one file all of them read and refresh; one refresher at a
// time, each re-reading what the last one wrote. cco itself never refreshes. What is the instance's own stays its
// own: `projects/<cwd>` (transcripts, --continue) is a link into the instance's config dir, so costs and
// conversations follow the instance from account to account. The login dir is read at the first launch and gets
// the newest credentials back whenever an instance on it starts or stops, so it stays logged in after the run.

/** The CLI's name for a project's folder under `projects/`: the cwd with every non-alphanumeric character a "-". */
export const projectFolderName = (cwd: string): string => {
  const name = cwd.replace(/[^a-zA-Z0-9]/g, "-")
  if (name.length <= 200) return name
  let h = 0
  for (const ch of cwd) h = (h * 31 + ch.charCodeAt(0)) | 0
  return `${name.slice(0, 200)}-${Math.abs(h).toString(36)}`
}

export const CREDENTIALS_FILE = ".credentials.json"

/** What cco reads of a credentials file: when its access token expires, and its token values (to scrub them). */
export interface LoginFile {
  readonly text: string
  readonly expiresAt: number
  readonly secrets: ReadonlyArray<string>
}

/** The claudeAiOauth login in a credentials file's text, or undefined when it holds none. */
export const readLoginText = (text: string): LoginFile | undefined => {
  const decoded = Option.getOrUndefined(decodeJsonObject(text))
  if (decoded === undefined) return undefined
  const oauth = objectAt(decoded, "claudeAiOauth")
  const secrets = [oauth.accessToken, oauth.refreshToken].filter((v): v is string => typeof v === "string" && v !== "")
  if (secrets.length === 0) return undefined
  return { text, expiresAt: typeof oauth.expiresAt === "number" ? oauth.expiresAt : 0, secrets }
}

const readLogin = (file: string) =>
  readRegularFile(file, MAX_BYTES.state).pipe(Effect.map(readLoginText), Effect.orElseSucceed(() => undefined))

/** Replaces `file` whole (temp file + rename, 0600): a reader never sees half of it. */
const replaceFile = (file: string, text: string) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const temp = `${file}.cco-${process.pid}-${Math.random().toString(36).slice(2)}`
    yield* fs.writeFileString(temp, text, { mode: 0o600 })
    yield* fs.rename(temp, file)
  })

/**
 * Brings the account dir's login and the login dir's together: the one whose access token expires later wins (a
 * refresh made during the run goes back to the login dir; a login renewed in the login dir comes in). Returns the
 * token values now in use, for scrubbing.
 */
export const syncLogin = (loginDir: string, accountDir: string) =>
  Effect.gen(function*() {
    const path = yield* Path.Path
    const source = path.join(loginDir, CREDENTIALS_FILE)
    const target = path.join(accountDir, CREDENTIALS_FILE)
    const [inLoginDir, inAccount] = [yield* readLogin(source), yield* readLogin(target)]
    if (inLoginDir !== undefined && (inAccount === undefined || inLoginDir.expiresAt > inAccount.expiresAt)) {
      yield* replaceFile(target, inLoginDir.text)
    } else if (inAccount !== undefined && (inLoginDir === undefined || inAccount.expiresAt > inLoginDir.expiresAt)) {
      yield* replaceFile(source, inAccount.text)
    }
    return [...(inLoginDir?.secrets ?? []), ...(inAccount?.secrets ?? [])]
  })

/**
 * Prepares the account dir an instance on a login-dir credential runs with (`launch.configDir`): the account's
 * login (see syncLogin), settings.json, .claude.json seeded for this worktree too, and `projects/<worktree>` linked
 * to the instance's own config dir `instanceDir`. Callers prepare one account dir at a time.
 */
export const prepareAccountDir = Effect.fn("ClaudeCode.prepareAccountDir")(
  function*(launch: InstanceLaunch, options: { readonly loginDir: string; readonly instanceDir: string }) {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const dir = launch.configDir
    yield* fs.makeDirectory(path.join(dir, "projects"), { recursive: true, mode: 0o700 })
    yield* fs.chmod(dir, 0o700)
    const own = path.join(options.instanceDir, "projects", projectFolderName(launch.worktree))
    yield* fs.makeDirectory(own, { recursive: true, mode: 0o700 })
    const link = path.join(dir, "projects", projectFolderName(launch.worktree))
    const current = yield* fs.readLink(link).pipe(Effect.option)
    if (Option.isNone(current) || current.value !== own) {
      if (Option.isSome(current) || (yield* fs.exists(link))) yield* fs.remove(link, { recursive: true })
      yield* fs.symlink(own, link)
    }
    const claudeJson = path.join(dir, ".claude.json")
    const existing = Option.getOrElse(
      Option.flatMap(yield* readRegularFile(claudeJson, MAX_BYTES.state).pipe(Effect.option), decodeJsonObject),
      (): JsonObject => ({})
    )
    yield* replaceFile(claudeJson, JSON.stringify(seededClaudeJson(existing, launch), null, 2))
    yield* replaceFile(path.join(dir, "settings.json"), JSON.stringify(instanceSettings(launch), null, 2))
    return yield* syncLogin(options.loginDir, dir)
  }
)

/** Quiet, non-interactive defaults; extraEnv may override them, but not the config dir or the credential. */
const quietEnv: Readonly<Record<string, string>> = {
  CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: "1",
  DISABLE_AUTOUPDATER: "1",
  DISABLE_TELEMETRY: "1",
  DISABLE_ERROR_REPORTING: "1",
  CLAUDE_CODE_DISABLE_FEEDBACK_SURVEY: "1",
  CLAUDE_CODE_DISABLE_OFFICIAL_MARKETPLACE_AUTOINSTALL: "1",
  // A /login inside one instance would rotate the OAuth refresh token shared by all of them.
  DISABLE_LOGIN_COMMAND: "1",
  DISABLE_LOGOUT_COMMAND: "1"
}

/** argv carries no secret; the credential travels only in env, as Redacted. */
/**
 * Whether the instance's config dir holds a conversation that `--continue` can pick up: a transcript under
 * `projects/`. An instance stopped while its first prompt was being pasted has none, and `claude --continue`
 * would then exit at once ("No conversation found to continue") on every restart. Each config dir belongs to one
 * instance and one worktree, so any transcript there is its own.
 */
export const hasConversation = (configDir: string): Effect.Effect<boolean, never, FileSystem.FileSystem | Path.Path> =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const projects = path.join(configDir, "projects")
    const dirs = yield* fs.readDirectory(projects).pipe(Effect.orElseSucceed(() => []))
    for (const dir of dirs) {
      const files = yield* fs.readDirectory(path.join(projects, dir)).pipe(Effect.orElseSucceed(() => []))
      for (const file of files.filter((f) => f.endsWith(".jsonl"))) {
        // A transcript of only the session's own settings lines (a first prompt refused with a 401, say) is no
        // conversation: `claude --continue` would exit with "No conversation found to continue".
        const head = yield* Effect.scoped(Effect.flatMap(fs.open(path.join(projects, dir, file)), (f) => f.readAlloc(256 * 1024))).pipe(
          Effect.map(Option.match({ onNone: () => "", onSome: (bytes) => new TextDecoder().decode(bytes) })),
          Effect.orElseSucceed(() => "")
        )
        const text = head
        if (/"type":\s*"(?:user|assistant)"/.test(text)) return true
      }
    }
    return false
  })

export const launchCommand = (launch: InstanceLaunch): {
  readonly argv: ReadonlyArray<string>
  readonly env: Readonly<Record<string, Redacted.Redacted<string> | string>>
} => ({
  argv: [
    launch.claudePath,
    "--dangerously-skip-permissions",
    ...(launch.model === undefined ? [] : ["--model", launch.model]),
    ...(launch.continueSession ? ["--continue"] : [])
  ],
  env: {
    ...quietEnv,
    ...launch.extraEnv,
    CLAUDE_CONFIG_DIR: launch.configDir,
    // As root, --dangerously-skip-permissions is refused unless the CLI is told it runs in a sandbox.
    IS_SANDBOX: "1",
    ...launch.credentialEnv
  }
})

// The title is "✳ Claude Code" (or "✳ <session title>") when idle. Older releases put a braille spinner
// (U+2800–U+28FF) in front while working; 2.1.332 has "◐"/"◑" for that in its code, but under tmux its title
// was seen staying "✳ …" through whole turns. So a title can prove busy, never idle: for idle, trust the
// Stop / StopFailure hooks, and the screen footer below.

/** Idle-looking title: "✳ Claude Code". Not proof of idleness (see above). */
export const isIdleTitle = (title: string): boolean => title.startsWith("✳")

/** Busy: the title starts with a braille spinner character or a half-circle spinner frame. */
export const isBusyTitle = (title: string): boolean => {
  const first = title.codePointAt(0)
  return first !== undefined && ((first >= 0x2800 && first <= 0x28ff) || first === 0x25d0 || first === 0x25d1)
}

/** Busy: while a turn runs, the footer under the input box offers "esc to interrupt". */
export const isBusyScreen = (screen: string): boolean => screen.includes("esc to interrupt")
