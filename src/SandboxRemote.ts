// Confinement (Sandbox.ts) of an instance on a remote host: its mounts read where it runs (through the host's
// CommandExecutor, Ssh.remoteExecutor), by one sh script, and the bwrap command built from them as Sandbox.confine
// builds it here.
import type * as CommandExecutor from "@effect/platform/CommandExecutor"
import { Effect } from "effect"
import { exec } from "./Exec.js"
import { bwrapArgs, gitIdentity, type GitLayout, type InstancePaths, mountsOf, nodeMountOf, programMountOf, type Sandbox, SYSTEM_DIRS } from "./Sandbox.js"

// Reads, where it runs, what mountsFor reads from disk: the worktree's git layout (making its branch's ref and
// reflog directories), the system dirs, the real paths of claude, node, the client and the named files; and makes
// the private home. One `key<TAB>value` line each.
const MOUNTS_SCRIPT = String.raw`unset CDPATH
set -e
wt=$1 home=$2 claude=$3 node=$4 client=$5
shift 5
tab=$(printf '\t')
out() { printf '%s\t%s\n' "$1" "$2"; }
real() {
  p=$1
  case $p in */*) ;; *) p=$(command -v "$p" 2>/dev/null || printf '%s' "$p") ;; esac
  readlink -f "$p" 2>/dev/null || printf '%s\n' "$p"
}
g=$(head -n 1 "$wt/.git")
case $g in "gitdir: "*) ;; *) echo "$wt/.git is not a worktree's gitdir file" >&2; exit 3 ;; esac
admin=$(cd "$wt" && cd "$(printf '%s' "$g" | cut -c9-)" && pwd)
c=$(head -n 1 "$admin/commondir")
common=$(cd "$admin" && cd "$c" && pwd)
h=$(head -n 1 "$admin/HEAD")
out admin "$admin"
out common "$common"
case $h in
  "ref: refs/"*)
    ref=$(printf '%s' "$h" | cut -c6-)
    dir=$(dirname "$ref")
    mkdir -p "$common/$dir" "$common/logs/$dir"
    out ref "$ref"
    ls -A "$common/$dir" | while IFS= read -r n; do out otherref "$n"; done
    ls -A "$common/logs/$dir" | while IFS= read -r n; do out otherlog "$n"; done
    ;;
esac
(umask 077 && mkdir -p "$home")
for d in /usr /bin /sbin /lib /lib32 /lib64 /libx32 /etc /opt /sys; do
  if [ -L "$d" ]; then out syslink "$d$tab$(readlink "$d")"; elif [ -e "$d" ]; then out sys "$d"; fi
done
out resolv "$(readlink -f /etc/resolv.conf 2>/dev/null || echo /etc/resolv.conf)"
out claude "$(real "$claude")"
[ -z "$node" ] || out node "$(real "$node")"
[ -z "$client" ] || out client "$(real "$client")"
for f in "$@"; do if [ -e "$f" ]; then out extra "$f$tab$(real "$f")"; fi; done
`

/**
 * An instance's mounts as they are where the CommandExecutor runs its programs (a remote host through
 * Ssh.remoteExecutor), read there by one sh script; and claude's real path there. As mountsFor, but no path here.
 */
export const mountsThere = (p: InstancePaths) =>
  Effect.gen(function*() {
    const [node, client] = p.clientCommand
    const candidates = [...(p.extraFiles ?? []), ...(p.oauthCredentialsFile === undefined ? [] : [p.oauthCredentialsFile])]
    const r = yield* exec("sh", ["-c", MOUNTS_SCRIPT, "sh", p.worktree, p.home, p.claudePath, node ?? "", client ?? "", ...candidates])
    if (r.exitCode !== 0) return yield* Effect.fail(new Error(`reading ${p.worktree}'s mounts: ${r.stderr.trim().split("\n").slice(-2).join(" ") || `exit ${r.exitCode}`}`))
    const lines = r.stdout.split("\n").filter((l) => l !== "").map((l) => {
      const tab = l.indexOf("\t")
      return [l.slice(0, tab), l.slice(tab + 1)] as const
    })
    const one = (key: string) => lines.find(([k]) => k === key)?.[1]
    const all = (key: string) => lines.filter(([k]) => k === key).map(([, v]) => v)
    const pair = (v: string) => [v.slice(0, v.indexOf("\t")), v.slice(v.indexOf("\t") + 1)] as const
    const adminDir = one("admin")
    const commonDir = one("common")
    const claude = one("claude")
    if (adminDir === undefined || commonDir === undefined || claude === undefined) return yield* Effect.fail(new Error(`reading ${p.worktree}'s mounts: no answer`))
    const ref = one("ref")
    const refName = ref === undefined ? "" : ref.slice(ref.lastIndexOf("/") + 1)
    const refParent = ref === undefined ? "" : ref.slice(0, ref.lastIndexOf("/"))
    const others = (key: string) => all(key).filter((n) => n !== refName && !n.endsWith(".lock")).sort()
    const git: GitLayout = ref === undefined
      ? { commonDir, adminDir, refDir: undefined, refName: "", logDir: undefined, otherRefs: [], otherLogs: [] }
      : { commonDir, adminDir, refDir: `${commonDir}/${refParent}`, refName, logDir: `${commonDir}/logs/${refParent}`, otherRefs: others("otherref"), otherLogs: others("otherlog") }
    const nodeReal = one("node")
    const clientReal = one("client")
    const found = new Map(all("extra").map(pair))
    const readOnly: Array<readonly [string, string]> = [
      programMountOf(claude),
      ...(nodeReal === undefined ? [] : nodeMountOf(nodeReal)),
      ...(clientReal === undefined || client === undefined ? [] : [[clientReal, client] as const]),
      ...(p.extraFiles ?? []).flatMap((f) => found.has(f) ? [[found.get(f)!, f] as const] : [])
    ]
    const oauth = p.oauthCredentialsFile
    const resolv = one("resolv") ?? "/etc/resolv.conf"
    const mounts = mountsOf(p, {
      git,
      readOnly,
      readWrite: [...(p.extraDirs ?? []), ...(oauth !== undefined && found.has(oauth) ? [oauth] : [])],
      system: [...all("sys").map((path) => ({ path })), ...all("syslink").map(pair).map(([path, link]) => ({ path, link }))]
        .sort((a, b) => SYSTEM_DIRS.indexOf(a.path as typeof SYSTEM_DIRS[number]) - SYSTEM_DIRS.indexOf(b.path as typeof SYSTEM_DIRS[number])),
      resolv
    })
    return { mounts, claude }
  })

/** seedHome where the CommandExecutor runs its programs: the .gitconfig written there (over stdin) unless it is there. */
export const seedHomeThere = <R>(home: string, identity: Effect.Effect<string, never, R>) =>
  Effect.gen(function*() {
    const text = yield* identity
    const r = yield* exec("sh", ["-c", 'umask 077; [ -e "$1" ] || [ -L "$1" ] || cat > "$1"', "sh", `${home}/.gitconfig`], { stdin: text })
    if (r.exitCode !== 0) return yield* Effect.fail(new Error(`writing ${home}/.gitconfig: ${r.stderr.trim() || `exit ${r.exitCode}`}`))
  })

/** `argv` wrapped in bwrap for one instance on a remote host (its paths there, read there; see mountsThere). */
export const confineThere = (
  sandbox: Extract<Sandbox, { _tag: "Bwrap" }>,
  paths: InstancePaths,
  argv: ReadonlyArray<string>,
  identity: Effect.Effect<string, never, CommandExecutor.CommandExecutor> = gitIdentity(paths.worktree)
): Effect.Effect<ReadonlyArray<string>, Error, CommandExecutor.CommandExecutor> =>
  Effect.gen(function*() {
    const { mounts, claude } = yield* mountsThere(paths)
    yield* seedHomeThere(paths.home, identity)
    const [program, ...rest] = argv
    return [sandbox.bwrap, ...bwrapArgs(mounts), "--", program === undefined || program === paths.claudePath ? claude : program, ...rest]
  }).pipe(Effect.mapError((e) => e instanceof Error ? e : new Error(String(e))))
