// `cco cleanup` on the remote hosts of a run (state.json `hosts`): its leftover master connection here ended, and
// there its tmux sessions killed and its worktrees removed (with --all, its whole folder: clone and instances' files).
import type { CommandExecutor } from "@effect/platform/CommandExecutor"
import { Effect } from "effect"
import { exec } from "./Exec.js"
import type { HostConfig } from "./HostsConfig.js"
import type { RunState } from "./RunState.js"
import { shellQuote } from "./Shell.js"
import { sshOptions } from "./Ssh.js"

export interface HostsCleanup {
  readonly sessions: ReadonlyArray<string>
  readonly worktrees: ReadonlyArray<string>
  readonly removed: ReadonlyArray<string>
  readonly problems: ReadonlyArray<string>
}

const SCRIPT = [
  'S=$1; P=$2; R=$3; DRY=$4; ALL=$5',
  'tmux -L "$S" list-sessions -F "#{session_name}" 2>/dev/null | while read -r s; do case "$s" in "$P"*) [ "$DRY" = 1 ] || tmux -L "$S" kill-session -t "=$s"; echo "session $s";; esac; done',
  'if [ -d "$R/worktrees" ]; then for w in "$R"/worktrees/*; do [ -e "$w" ] || continue; if [ "$DRY" != 1 ]; then git -C "$R/repo" worktree remove --force "$w" >/dev/null 2>&1 || rm -rf "$w"; fi; echo "worktree $w"; done; fi',
  'if [ "$ALL" = 1 ] && [ -d "$R" ]; then [ "$DRY" = 1 ] || rm -rf "$R"; echo "removed $R"; fi',
  "exit 0"
].join("\n")

type HostState = NonNullable<RunState["hosts"]>[number]

/** How to reach a remote host of a run, from its state.json entry. */
export const hostConfigOf = (h: HostState): HostConfig => ({
  name: h.name,
  ssh: h.ssh,
  port: h.port,
  ...(h.identityFile === undefined ? {} : { identityFile: h.identityFile }),
  ...(h.knownHostsFile === undefined ? {} : { knownHostsFile: h.knownHostsFile }),
  strictHostKeyChecking: h.strictHostKeyChecking,
  maxInstances: 1,
  nodeCommand: "node"
})

/**
 * The run's sessions on each remote host's tmux server (through the run's master connection while it lasts);
 * undefined for a host that cannot be asked within 10 s.
 */
export const remoteSessions = (state: Pick<RunState, "runId" | "hosts">): Effect.Effect<ReadonlyMap<string, ReadonlySet<string> | undefined>, never, CommandExecutor> =>
  Effect.forEach(state.hosts ?? [], (h) => {
    const script = `tmux -L ${shellQuote(h.tmuxSocket)} list-sessions -F '#{session_name}' 2>/dev/null; exit 0`
    return exec("ssh", [...sshOptions(hostConfigOf(h), h.controlPath), h.ssh, "--", script]).pipe(
      Effect.timeout("10 seconds"),
      Effect.map((r): ReadonlySet<string> | undefined =>
        r.exitCode !== 0 ? undefined : new Set(r.stdout.split("\n").filter((n) => n.startsWith(`cco-${state.runId}-`)))
      ),
      Effect.orElseSucceed((): ReadonlySet<string> | undefined => undefined),
      Effect.map((sessions) => [h.name, sessions] as const)
    )
  }, { concurrency: "unbounded" }).pipe(Effect.map((entries) => new Map(entries)))

/** Cleans one run's remote hosts; never fails (what could not be done is a problem). Entries are `<host>:<what>`. */
export const cleanHosts = (
  state: Pick<RunState, "runId" | "hosts">,
  options: { readonly dry: boolean; readonly all: boolean }
): Effect.Effect<HostsCleanup, never, CommandExecutor> =>
  Effect.gen(function*() {
    const out = { sessions: [] as Array<string>, worktrees: [] as Array<string>, removed: [] as Array<string>, problems: [] as Array<string> }
    for (const h of state.hosts ?? []) {
      const host = hostConfigOf(h)
      // A master connection left by an orchestrator that died.
      if (!options.dry) yield* exec("ssh", [...sshOptions(host, h.controlPath), "-O", "exit", h.ssh]).pipe(Effect.ignore)
      const args = [h.tmuxSocket, `cco-${state.runId}-`, h.runDir, options.dry ? "1" : "0", options.all ? "1" : "0"]
      const result = yield* exec("ssh", [...sshOptions(host), h.ssh, "--", ["sh", "-c", SCRIPT, "cco-cleanup", ...args].map(shellQuote).join(" ")]).pipe(Effect.either)
      if (result._tag === "Left" || result.right.exitCode !== 0) {
        const said = result._tag === "Left" ? result.left.message : (result.right.stderr.trim() || `exit ${result.right.exitCode}`)
        out.problems.push(`host ${h.name} (${h.ssh}, port ${h.port}) not cleaned: ${said.split("\n").slice(-2).join(" ")}`)
        continue
      }
      for (const line of result.right.stdout.split("\n")) {
        const [kind, ...rest] = line.split(" ")
        const what = `${h.name}:${rest.join(" ")}`
        if (kind === "session") out.sessions.push(what)
        else if (kind === "worktree") out.worktrees.push(what)
        else if (kind === "removed") out.removed.push(what)
      }
    }
    return out as HostsCleanup
  })
