// What cco's tmux leaves on disk besides its panes: each session's terminal log, rotated so it stays bounded,
// and the socket files of a private tmux server that is gone.
import { rmSync } from "node:fs"
import { dirname } from "node:path"
import { shellQuote } from "./Shell.js"

export interface SessionLogLimits {
  /** A session log is rotated before it reaches this size. */
  readonly maxBytes: number
  /** Rotated files kept: <log>.1 (newest) … <log>.<keep>. */
  readonly keep: number
}

export const SESSION_LOG_LIMITS: SessionLogLimits = { maxBytes: 10 * 1024 * 1024, keep: 2 }

/**
 * Removes what a `tmux -L socket` server leaves in its socket directory after it is gone: the socket file and
 * its lock file. Only for a server known to be dead (after kill-server); a live server's socket is never touched.
 */
export const removeSocketFiles = (socket: string) => {
  const dir = `${process.env.TMUX_TMPDIR ?? "/tmp"}/tmux-${process.getuid?.() ?? 0}`
  for (const file of [socket, `${socket}.lock`]) rmSync(`${dir}/${file}`, { force: true })
}

/** The script beside a run's session logs that writes one pane's output (see sessionLogScript). */
export const SESSION_LOG_SCRIPT = ".cco-session-log"

/**
 * The script that writes a session's terminal output to its log ($1), rotated: GNU split cuts the stream into
 * chunks of half the cap ($2 bytes) and hands each chunk to a filter that first rotates the log if it is half
 * full (<file> → <file>.1 → … → <file>.<keep>, $3 kept, the oldest dropped), then appends the chunk as it
 * streams in. So a file never reaches the cap, the newest file always ends with the newest output, and the cost
 * per byte is a copy through two small C programs. Without GNU split (BSD) the log is appended to unrotated
 * (`"ask"`: the script finds out itself).
 */
export const sessionLogScript = (rotating: boolean | "ask") => {
  if (rotating === false) return `exec cat >> "$1"\n`
  const rotate = [
    `if [ -f "$CCO_LOG" ] && [ "$(wc -c < "$CCO_LOG")" -ge "$CCO_LOG_CHUNK" ]; then`,
    `i=$CCO_LOG_KEEP; while [ "$i" -gt 1 ]; do j=$((i - 1)); if [ -f "$CCO_LOG.$j" ]; then mv -f "$CCO_LOG.$j" "$CCO_LOG.$i"; fi; i=$j; done;`,
    `mv -f "$CCO_LOG" "$CCO_LOG.1"; fi; exec cat >> "$CCO_LOG"`
  ].join(" ")
  return [
    ...(rotating === "ask" ? [`split --filter=: /dev/null 2>/dev/null || exec cat >> "$1"`] : []),
    `CCO_LOG=$1 CCO_LOG_CHUNK=$2 CCO_LOG_KEEP=$3; export CCO_LOG CCO_LOG_CHUNK CCO_LOG_KEEP`,
    `SHELL=/bin/sh exec split -b "$CCO_LOG_CHUNK" -a 9 --filter=${shellQuote(rotate)} - "$CCO_LOG.chunk-"`,
    ""
  ].join("\n")
}

/**
 * The pipe-pane command for a session log: the script beside it (written there first, see TmuxLive), or plain
 * appending should the script be missing. Short, so that a whole team's sessions fit in one tmux call.
 */
export const sessionLogCommand = (file: string, limits: SessionLogLimits = SESSION_LOG_LIMITS) => {
  const chunk = Math.max(1, Math.floor(limits.maxBytes / 2))
  const keep = Math.max(1, Math.floor(limits.keep))
  const script = shellQuote(`${dirname(file)}/${SESSION_LOG_SCRIPT}`)
  return `if [ -r ${script} ]; then exec /bin/sh ${script} ${shellQuote(file)} ${chunk} ${keep}; else exec cat >> ${shellQuote(file)}; fi`
}
