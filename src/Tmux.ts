// The tmux port: sessions, input, screen capture, terminal logs — on cco's own tmux server (-L socket).
// The live adapter (TmuxLive) shells out to tmux; TmuxTest is an in-memory stand-in for unit tests.
import { Context, Schema } from "effect"
import type { Effect, Redacted } from "effect"
import type { SessionLogLimits } from "./TmuxFiles.js"

export class TmuxNotFound extends Schema.TaggedError<TmuxNotFound>()("TmuxNotFound", {
  message: Schema.String
}) {}

export class SessionNotFound extends Schema.TaggedError<SessionNotFound>()("SessionNotFound", {
  session: Schema.String
}) {
  override get message() {
    return `tmux session ${this.session} does not exist`
  }
}

export class TmuxCommandFailed extends Schema.TaggedError<TmuxCommandFailed>()("TmuxCommandFailed", {
  operation: Schema.String,
  exitCode: Schema.Number,
  stderr: Schema.String
}) {
  override get message() {
    return `tmux ${this.operation} failed (exit ${this.exitCode}): ${this.stderr.trim()}`
  }
}

export type TmuxError = TmuxNotFound | SessionNotFound | TmuxCommandFailed

export interface SessionSpec {
  readonly name: string
  readonly cwd: string
  /** Program and arguments, run directly (no shell parsing of the arguments). Never put secrets here. */
  readonly command: ReadonlyArray<string>
  /** Environment for the program; values reach it through a private file, never through any argv. */
  readonly env?: Readonly<Record<string, string | Redacted.Redacted<string>>>
  /** Variables inherited from the tmux server that the program must not see. */
  readonly unsetEnv?: ReadonlyArray<string>
  readonly width?: number
  readonly height?: number
  /** Terminal output appended to this file from the first byte, rotated (see sessionLogCommand). */
  readonly logFile?: string
  readonly logLimits?: SessionLogLimits
}

export interface PaneInfo {
  readonly title: string
  readonly pid: number
  readonly dead: boolean
}

export interface TmuxShape {
  readonly socket: string
  /** `tmux -V`: that tmux is there and runs. */
  readonly version: Effect.Effect<string, TmuxError>
  readonly newSession: (spec: SessionSpec) => Effect.Effect<void, TmuxError>
  /**
   * Starts several sessions in one tmux call. If it fails, sessions before the failing command may exist: the
   * caller starts the ones missing one by one.
   */
  readonly newSessions: (specs: ReadonlyArray<SessionSpec>) => Effect.Effect<void, TmuxError>
  /** Pastes text as one bracketed paste (neutralised: nothing in it can end the paste or act); does not press Enter. */
  readonly sendText: (session: string, text: string) => Effect.Effect<void, TmuxError>
  /** Sends key names (e.g. "Enter", "Escape", "C-c"). */
  readonly sendKeys: (session: string, keys: ReadonlyArray<string>) => Effect.Effect<void, TmuxError>
  /** The visible screen, plus `history` lines of scrollback. */
  readonly capturePane: (session: string, history?: number) => Effect.Effect<string, TmuxError>
  readonly pipePane: (session: string, file: string) => Effect.Effect<void, TmuxError>
  readonly paneInfo: (session: string) => Effect.Effect<PaneInfo, TmuxError>
  /** Every session's pane whose name starts with prefix, in one tmux call. */
  readonly paneInfos: (prefix: string) => Effect.Effect<ReadonlyMap<string, PaneInfo>, TmuxError>
  /** The visible screens of several sessions, in one tmux call (the sessions must exist). */
  readonly capturePanes: (sessions: ReadonlyArray<string>) => Effect.Effect<ReadonlyMap<string, string>, TmuxError>
  readonly hasSession: (session: string) => Effect.Effect<boolean, TmuxError>
  readonly listSessions: (prefix?: string) => Effect.Effect<ReadonlyArray<string>, TmuxError>
  /** The sessions whose name starts with prefix, each with its start directory (new-session -c). */
  readonly sessionPaths: (prefix: string) => Effect.Effect<ReadonlyMap<string, string>, TmuxError>
  readonly killSession: (session: string) => Effect.Effect<void, TmuxError>
  /** Kills several sessions in one tmux call; fails (leaving the rest) if one of them is missing. */
  readonly killSessions: (sessions: ReadonlyArray<string>) => Effect.Effect<void, TmuxError>
  readonly killServer: Effect.Effect<void, TmuxError>
}

export class Tmux extends Context.Tag("cco/Tmux")<Tmux, TmuxShape>() {}
