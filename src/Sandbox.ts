// Confinement of instances with bubblewrap (bwrap): whether this machine can confine (decided once per run from
// the `sandbox` option), and the bwrap command line that wraps one instance's claude so that it, its tools, hooks
// and shells see only what the instance needs. What an instance can read and write is `bwrapArgs` below. A remote
// host (Hosts.ts) decides for itself, probed over SSH (tryBwrap, resolveWith), its instances' mounts read there
// (SandboxRemote.ts).
import * as CommandExecutor from "@effect/platform/CommandExecutor"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import { Effect, Option, Schema } from "effect"
import { realpathSync } from "node:fs"
import { exec } from "./Exec.js"

export type SandboxMode = "auto" | "bwrap" | "none"
export const SANDBOX_MODES: ReadonlyArray<SandboxMode> = ["auto", "bwrap", "none"]

/** How a run's instances are started, decided once when it starts. */
export type Sandbox =
  | { readonly _tag: "Bwrap"; readonly mode: SandboxMode; readonly bwrap: string; readonly version: string }
  | { readonly _tag: "Unconfined"; readonly mode: SandboxMode; readonly reason: string }

/** `sandbox: "bwrap"` on a machine where bubblewrap cannot confine. */
export class SandboxUnavailable extends Schema.TaggedError<SandboxUnavailable>()("SandboxUnavailable", {
  message: Schema.String
}) {}

export const INSTALL_HINT = "install bubblewrap (apt-get install bubblewrap), or set \"sandbox\": \"none\" in orchestrator.json to run instances unconfined"
/** The same for a remote host. */
export const INSTALL_HINT_THERE = INSTALL_HINT.replace("install bubblewrap", "install bubblewrap there")

const onPath = (name: string, searchPath: string, fs: FileSystem.FileSystem, path: Path.Path) =>
  Effect.gen(function*() {
    for (const dir of searchPath.split(":")) {
      if (dir === "" || !path.isAbsolute(dir)) continue
      const candidate = path.join(dir, name)
      const info = yield* fs.stat(candidate).pipe(Effect.option)
      if (Option.isSome(info) && info.value.type === "File" && (Number(info.value.mode) & 0o111) !== 0) return Option.some(candidate)
    }
    return Option.none<string>()
  })

/** What a probe found: a bwrap that confines, or why there is none. */
export type Probe =
  | { readonly _tag: "Usable"; readonly bwrap: string; readonly version: string }
  | { readonly _tag: "Missing" | "Broken"; readonly reason: string }

/**
 * Whether `bwrap` confines where the CommandExecutor runs its programs (this machine, or a remote host through
 * Ssh.remoteExecutor; `where` names it in the reason), tried with the namespaces an instance gets.
 */
export const tryBwrap = (bwrap: string, where = "this machine") =>
  Effect.gen(function*() {
    const tried = yield* exec(bwrap, ["--unshare-pid", "--die-with-parent", "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "true"]).pipe(Effect.either)
    if (tried._tag === "Left") return { _tag: "Broken", reason: `${bwrap} cannot be run (${tried.left.message})` } satisfies Probe as Probe
    if (tried.right.exitCode !== 0) {
      const why = tried.right.stderr.trim().split("\n")[0] ?? `exit ${tried.right.exitCode}`
      return { _tag: "Broken", reason: `${bwrap} cannot confine on ${where}: ${why}` } satisfies Probe as Probe
    }
    const version = yield* exec(bwrap, ["--version"]).pipe(
      Effect.map((r) => r.stdout.trim() || "bubblewrap"),
      Effect.orElseSucceed(() => "bubblewrap")
    )
    return { _tag: "Usable", bwrap, version } satisfies Probe as Probe
  })

/**
 * bwrap on `searchPath`, tried with the namespaces an instance gets (a new pid namespace and /proc need user
 * namespaces or privileges that containers often lack): its path and version, or why it cannot confine here.
 */
export const probe = (searchPath: string) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const found = yield* onPath("bwrap", searchPath, fs, path)
    if (Option.isNone(found)) return { _tag: "Missing", reason: "bubblewrap (bwrap) is not on PATH" } satisfies Probe as Probe
    return yield* tryBwrap(found.value)
  })

/** The sandbox for `mode` given what a probe finds: bwrap when it works; "auto" falls back to unconfined, "bwrap" refuses (`refusal` says why). */
export const resolveWith = <E, R>(mode: SandboxMode, probed: Effect.Effect<Probe, E, R>, refusal: (reason: string) => string) =>
  Effect.gen(function*() {
    if (mode === "none") return { _tag: "Unconfined", mode, reason: "sandbox \"none\" in orchestrator.json" } satisfies Sandbox as Sandbox
    const found = yield* probed
    if (found._tag === "Usable") return { _tag: "Bwrap", mode, bwrap: found.bwrap, version: found.version } satisfies Sandbox as Sandbox
    if (mode === "bwrap") return yield* new SandboxUnavailable({ message: refusal(found.reason) })
    return { _tag: "Unconfined", mode, reason: found.reason } satisfies Sandbox as Sandbox
  })

/** The run's sandbox for `mode`: bwrap when it works; "auto" falls back to unconfined, "bwrap" refuses. */
export const resolve = (mode: SandboxMode, searchPath: string) =>
  resolveWith(mode, probe(searchPath), (reason) => `sandbox "bwrap" is required but ${reason}; ${INSTALL_HINT}`)

/** One word for status and logs: "bwrap" or "none". */
export const label = (sandbox: Sandbox | undefined): "bwrap" | "none" => sandbox?._tag === "Bwrap" ? "bwrap" : "none"

/** The fields `instance.launched` and the run's sandbox line carry. */
export const logFields = (sandbox: Sandbox | undefined) =>
  sandbox === undefined
    ? { sandbox: "none" }
    : sandbox._tag === "Bwrap"
    ? { sandbox: "bwrap", sandboxMode: sandbox.mode }
    : { sandbox: "none", sandboxMode: sandbox.mode, sandboxReason: sandbox.reason }

/** The git data one worktree needs, as found on disk (see `gitLayout`). */
export interface GitLayout {
  /** The shared clone's .git. */
  readonly commonDir: string
  /** <commonDir>/worktrees/<name>: HEAD, index, its reflog. */
  readonly adminDir: string
  /** The directory holding the branch's loose ref, and the branch's file name there; none on a detached HEAD. */
  readonly refDir: string | undefined
  readonly refName: string
  /** The directory of the branch's reflog. */
  readonly logDir: string | undefined
  /** What else is in refDir and logDir (other branches, directories of branches): kept read-only. */
  readonly otherRefs: ReadonlyArray<string>
  readonly otherLogs: ReadonlyArray<string>
}

/** Everything one instance's sandbox is built from; every path absolute. */
export interface InstanceMounts {
  readonly worktree: string
  readonly git: GitLayout
  readonly configDir: string
  /** The private home, <run folder>/instances/<name>/home. */
  readonly home: string
  /** The run's bin/ (the `cco` shim). */
  readonly binDir: string
  readonly socketPath: string
  /** Files and directories shown read-only at the same path (node, claude, cco's client, a CA bundle): [source, target]. */
  readonly readOnly: ReadonlyArray<readonly [string, string]>
  /** Files shown read-write at the same path (the user's OAuth credentials file, which cco links into the config dir). */
  readonly readWrite: ReadonlyArray<string>
  /** System directories present on this machine (see SYSTEM_DIRS), each a directory or a symlink. */
  readonly system: ReadonlyArray<{ readonly path: string; readonly link?: string }>
  /** /etc/resolv.conf's target when it lives outside /etc (systemd-resolved keeps it under /run). */
  readonly resolvConf?: string
}

/** What of the machine an instance sees, read-only: programs, libraries and their configuration. */
export const SYSTEM_DIRS = ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt", "/sys"] as const

/**
 * bwrap's arguments for one instance (the command follows `--`). Read-write: its worktree (whose `.git` file is
 * read-only, so it cannot point cco's own git at another repository), the shared clone's objects, its worktree's
 * admin dir (but `commondir` and `gitdir` read-only), the directory of its branch's ref and reflog (every other
 * entry there read-only as it was at launch: the kernel drops a file's bind mount when git replaces that file, so a
 * sibling branch committed to since is writable), its config dir, its private home, a private /tmp. Read-only: the system, node, claude
 * and cco's client, the run's bin/. Nothing else: no real home, no other worktree or config dir, no token digests,
 * state, logs or sources, no other process (own pid namespace and /proc). Network as the user's; the control
 * socket's directory (the socket alone) is bound in at its path.
 */
export const bwrapArgs = (m: InstanceMounts): ReadonlyArray<string> => {
  // No capabilities inside, whoever starts it: bwrap run by root keeps them otherwise (mounts, reading any file).
  const args: Array<string> = ["--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try", "--cap-drop", "ALL"]
  const dests: Array<string> = []
  const ro = (src: string, dest = src) => (dests.push(dest), args.push("--ro-bind", src, dest))
  const rw = (p: string) => (dests.push(p), args.push("--bind", p, p))
  for (const dir of m.system) {
    if (dir.link !== undefined) args.push("--symlink", dir.link, dir.path)
    else ro(dir.path)
  }
  args.push("--proc", "/proc", "--dev", "/dev", "--tmpfs", "/dev/shm", "--tmpfs", "/tmp", "--tmpfs", "/var/tmp", "--tmpfs", "/run")
  if (m.resolvConf !== undefined) ro(m.resolvConf)
  for (const [src, dest] of m.readOnly) ro(src, dest)
  ro(m.binDir)
  // The clone's git data, read-only, then the parts a commit on its own branch writes.
  const g = m.git
  ro(g.commonDir)
  rw(`${g.commonDir}/objects`)
  rw(g.adminDir)
  ro(`${g.adminDir}/commondir`)
  ro(`${g.adminDir}/gitdir`)
  // Another branch's ref can go (a deleted branch) between the listing and the start: "-try" skips it.
  for (const [dir, others] of [[g.refDir, g.otherRefs], [g.logDir, g.otherLogs]] as const) {
    if (dir === undefined) continue
    rw(dir)
    for (const other of others) args.push("--ro-bind-try", `${dir}/${other}`, `${dir}/${other}`)
  }
  rw(m.worktree)
  ro(`${m.worktree}/.git`)
  rw(m.configDir)
  for (const file of m.readWrite) rw(file)
  rw(m.home)
  // The socket's directory, which holds nothing else (a socket on a read-only mount still takes connections): a
  // socket made again there (a resumed run) is the one the instance reaches.
  ro(m.socketPath.slice(0, m.socketPath.lastIndexOf("/")))
  // The skeleton bwrap made for the mount points (parents of the paths above) is read-only too: on the root by a
  // remount, inside the private /tmp (where a run folder may lie) by its mode, which binds nothing to anything.
  for (const dir of skeletonDirs(dests)) args.push("--chmod", "0555", dir)
  args.push("--remount-ro", "/")
  args.push("--setenv", "HOME", m.home, "--setenv", "TMPDIR", "/tmp", "--chdir", m.worktree)
  return args
}

const PRIVATE_TMPFS = ["/tmp", "/var/tmp", "/run", "/dev/shm"]

/** Directories bwrap creates on a private tmpfs to hold the given mount points, outermost first. */
export const skeletonDirs = (dests: ReadonlyArray<string>): ReadonlyArray<string> => {
  const inside = (p: string, dir: string) => p === dir || p.startsWith(`${dir}/`)
  const out = new Set<string>()
  for (const dest of dests) {
    for (let dir = dest.slice(0, dest.lastIndexOf("/")); dir.length > 1; dir = dir.slice(0, dir.lastIndexOf("/"))) {
      if (PRIVATE_TMPFS.includes(dir) || !PRIVATE_TMPFS.some((t) => dir.startsWith(`${t}/`))) continue
      if (dests.some((d) => inside(dir, d))) continue
      out.add(dir)
    }
  }
  return [...out].sort((a, b) => a.length - b.length)
}

const firstLine = (text: string) => text.split("\n")[0]?.trim() ?? ""

/**
 * The git data of `worktree` (a linked worktree of cco's clone): its admin dir from its `.git` file, the shared
 * .git from `commondir`, its branch from HEAD. A missing reflog directory is created, so that git can log there.
 */
export const gitLayout = (worktree: string) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const dotGit = firstLine(yield* fs.readFileString(path.join(worktree, ".git")))
    if (!dotGit.startsWith("gitdir: ")) return yield* Effect.fail(new Error(`${worktree}/.git is not a worktree's gitdir file`))
    const adminDir = path.resolve(worktree, dotGit.slice("gitdir: ".length))
    const commonDir = path.resolve(adminDir, firstLine(yield* fs.readFileString(path.join(adminDir, "commondir"))))
    const head = firstLine(yield* fs.readFileString(path.join(adminDir, "HEAD")))
    // Detached (a rebase stopped halfway): commits move only HEAD, in the admin dir; no branch is writable.
    if (!head.startsWith("ref: refs/")) {
      return { commonDir, adminDir, refDir: undefined, refName: "", logDir: undefined, otherRefs: [], otherLogs: [] } satisfies GitLayout
    }
    const ref = head.slice("ref: ".length)
    const refDir = path.join(commonDir, path.dirname(ref))
    const refName = path.basename(ref)
    const logDir = path.join(commonDir, "logs", path.dirname(ref))
    yield* fs.makeDirectory(refDir, { recursive: true })
    yield* fs.makeDirectory(logDir, { recursive: true })
    const others = (dir: string) =>
      fs.readDirectory(dir).pipe(Effect.map((names) => names.filter((n) => n !== refName && !n.endsWith(".lock")).sort()))
    return {
      commonDir,
      adminDir,
      refDir,
      refName,
      logDir,
      otherRefs: yield* others(refDir),
      otherLogs: yield* others(logDir)
    } satisfies GitLayout
  })

const real = (p: string) => {
  try {
    return realpathSync(p)
  } catch {
    return p
  }
}

/** Where a program lives that it needs beside itself: an npm package's folder, else just the file. */
const programMount = (file: string): readonly [string, string] => programMountOf(real(file))

export const programMountOf = (resolved: string): readonly [string, string] => {
  const pkg = /^(.*\/node_modules\/(?:@[^/]+\/)?[^/]+)\//.exec(resolved)?.[1]
  return pkg === undefined ? [resolved, resolved] : [pkg, pkg]
}

/** node's installation (…/bin/node → …), unless it is part of the system. */
const nodeMount = (nodePath: string): ReadonlyArray<readonly [string, string]> => nodeMountOf(real(nodePath))

export const nodeMountOf = (resolved: string): ReadonlyArray<readonly [string, string]> => {
  if (SYSTEM_DIRS.some((d) => resolved.startsWith(`${d}/`))) return []
  const prefix = resolved.replace(/\/bin\/[^/]+$/, "")
  return [[prefix === resolved ? resolved : prefix, prefix === resolved ? resolved : prefix]]
}

export interface InstancePaths {
  readonly worktree: string
  readonly configDir: string
  readonly home: string
  readonly binDir: string
  readonly socketPath: string
  readonly claudePath: string
  /** `<node> <client>`: what hooks and the `cco` shim run. */
  readonly clientCommand: ReadonlyArray<string>
  /** The user's OAuth credentials file when the config dir links to it. */
  readonly oauthCredentialsFile?: string | undefined
  /** Files named by the instance's environment that it needs (NODE_EXTRA_CA_CERTS, SSL_CERT_FILE). */
  readonly extraFiles?: ReadonlyArray<string>
  /** Directories it writes besides its own: the shared config dir of its login-dir account (accounts/<name>). */
  readonly extraDirs?: ReadonlyArray<string>
}

/** The instance's mounts, read from disk: git layout, system dirs, the tools' real locations. Creates the private home. */
export const mountsFor = (p: InstancePaths) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const git = yield* gitLayout(p.worktree)
    yield* fs.makeDirectory(p.home, { recursive: true, mode: 0o700 })
    const system: Array<{ path: string; link?: string }> = []
    for (const dir of SYSTEM_DIRS) {
      const link = yield* fs.readLink(dir).pipe(Effect.option)
      if (Option.isSome(link)) system.push({ path: dir, link: link.value })
      else if (yield* fs.exists(dir).pipe(Effect.orElseSucceed(() => false))) system.push({ path: dir })
    }
    const resolv = real("/etc/resolv.conf")
    const [node, client] = p.clientCommand
    const readOnly: Array<readonly [string, string]> = [
      programMount(p.claudePath),
      ...(node === undefined ? [] : nodeMount(node)),
      ...(client === undefined ? [] : [[real(client), client] as const])
    ]
    for (const file of p.extraFiles ?? []) {
      if (yield* fs.exists(file).pipe(Effect.orElseSucceed(() => false))) readOnly.push([real(file), file])
    }
    const readWrite: Array<string> = [...(p.extraDirs ?? [])]
    if (p.oauthCredentialsFile !== undefined && (yield* fs.exists(p.oauthCredentialsFile).pipe(Effect.orElseSucceed(() => false)))) {
      readWrite.push(p.oauthCredentialsFile)
    }
    return mountsOf(p, { git, readOnly, readWrite, system, resolv })
  })

/** An instance's mounts from its paths and what was found where it runs (here: mountsFor; on a host: mountsThere). */
export const mountsOf = (
  p: InstancePaths,
  found: Pick<InstanceMounts, "git" | "readOnly" | "readWrite" | "system"> & { readonly resolv: string }
): InstanceMounts => ({
  worktree: p.worktree,
  git: found.git,
  configDir: p.configDir,
  home: p.home,
  binDir: p.binDir,
  socketPath: p.socketPath,
  readOnly: found.readOnly,
  readWrite: found.readWrite,
  system: found.system,
  ...(found.resolv !== "/etc/resolv.conf" && !found.resolv.startsWith("/etc/") ? { resolvConf: found.resolv } : {})
})

/**
 * The git identity (a .gitconfig's [user] section) that git uses in `repoDir` outside, from the clone's config or
 * the user's own (in the real home, which a confined instance cannot see). One git call; Agent asks once a run.
 */
export const gitIdentity = (repoDir: string) =>
  exec("git", ["-C", repoDir, "config", "--get-regexp", "^user\\.(name|email)$"]).pipe(
    Effect.map((r) => {
      const values = new Map(r.stdout.split("\n").flatMap((line) => {
        const space = line.indexOf(" ")
        return space < 0 ? [] : [[line.slice(0, space), line.slice(space + 1)] as const]
      }))
      const quote = (v: string) => `"${v.replace(/["\\]/g, (c) => `\\${c}`)}"`
      const lines = [["name", values.get("user.name")], ["email", values.get("user.email")]].flatMap(([k, v]) => v === undefined || v === "" ? [] : [`\t${k} = ${quote(v)}\n`])
      return lines.length === 0 ? "" : `[user]\n${lines.join("")}`
    }),
    Effect.orElseSucceed(() => "")
  )

/** The private home's .gitconfig: the identity commits get outside, written once (the instance may change it). */
export const seedHome = <R>(home: string, identity: Effect.Effect<string, never, R>) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const file = path.join(home, ".gitconfig")
    if (yield* fs.exists(file).pipe(Effect.orElseSucceed(() => true))) return
    yield* fs.writeFileString(file, yield* identity, { mode: 0o600 })
  })

/** `argv` wrapped in bwrap for one instance (claude started by its real path, which the sandbox shows). */
export const confine = (
  sandbox: Extract<Sandbox, { _tag: "Bwrap" }>,
  paths: InstancePaths,
  argv: ReadonlyArray<string>,
  identity: Effect.Effect<string, never, CommandExecutor.CommandExecutor> = gitIdentity(paths.worktree)
): Effect.Effect<ReadonlyArray<string>, Error, FileSystem.FileSystem | Path.Path | CommandExecutor.CommandExecutor> =>
  Effect.gen(function*() {
    const mounts = yield* mountsFor(paths)
    yield* seedHome(paths.home, identity)
    const [program, ...rest] = argv
    return [sandbox.bwrap, ...bwrapArgs(mounts), "--", program === undefined ? paths.claudePath : real(program), ...rest]
  }).pipe(Effect.mapError((e) => e instanceof Error ? e : new Error(String(e))))
