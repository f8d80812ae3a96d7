// An SSH server of a test's own on 127.0.0.1: its host key, one authorized client key and a known_hosts file
// generated in a temp dir, on a free port. Stopped (by its own pid) and its files removed by `stop`.
import { execFileSync, spawn } from "node:child_process"
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import * as net from "node:net"
import { tmpdir, userInfo } from "node:os"
import * as path from "node:path"
import { Effect } from "effect"

export const SSHD = "/usr/sbin/sshd"

export interface Sshd {
  readonly port: number
  readonly dir: string
  /** `user@127.0.0.1` */
  readonly destination: string
  readonly identityFile: string
  readonly knownHostsFile: string
  readonly pid: number
  /** Stops the server (SIGTERM to its pid); connections made before stay. */
  readonly kill: () => void
  /** The host drops off the network: the server and every connection it serves killed (SIGKILL, by pid). */
  readonly drop: () => void
  /** Stops the server and every connection it serves, and removes its files. */
  readonly stop: () => void
}

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = net.createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as net.AddressInfo).port
      server.close(() => resolve(port))
    })
  })

const accepts = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = net.connect(port, "127.0.0.1")
    socket.once("connect", () => (socket.destroy(), resolve(true)))
    socket.once("error", () => resolve(false))
  })

export interface SshdOptions {
  /** The PATH its sessions get (sshd's SetEnv). */
  readonly path?: string
  /**
   * The host's files are its own: the server (and whatever runs through it: tmux, git, claude) runs in a mount
   * namespace of its own where `<dir>/box` (the "box" host's workdir, see remoteHost) is a tmpfs. Here that folder
   * stays empty, so whatever cco reads or writes under the workdir with this machine's filesystem instead of over
   * SSH misses, as it would on another machine. (util-linux `unshare`; a user namespace when not root.)
   */
  readonly ownFiles?: boolean
}

export const startSshd = async (options: SshdOptions = {}): Promise<Sshd> => {
  const dir = mkdtempSync(path.join(tmpdir(), "cco-sshd-"))
  const port = await freePort()
  const key = (name: string) => {
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", `cco-test-${name}`, "-f", path.join(dir, name)])
    return path.join(dir, name)
  }
  const hostKey = key("host_key")
  const identityFile = key("client_key")
  writeFileSync(path.join(dir, "authorized_keys"), readFileSync(`${identityFile}.pub`))
  const knownHostsFile = path.join(dir, "known_hosts")
  writeFileSync(knownHostsFile, `[127.0.0.1]:${port} ${readFileSync(`${hostKey}.pub`, "utf8")}`)
  const home = path.join(dir, "home")
  mkdirSync(home, { mode: 0o700 })
  const config = path.join(dir, "sshd_config")
  writeFileSync(config, [
    "ListenAddress 127.0.0.1",
    `HostKey ${hostKey}`,
    `AuthorizedKeysFile ${path.join(dir, "authorized_keys")}`,
    `PidFile ${path.join(dir, "sshd.pid")}`,
    "StrictModes no",
    "UsePAM no",
    "PermitRootLogin prohibit-password",
    "PasswordAuthentication no",
    "KbdInteractiveAuthentication no",
    "AllowStreamLocalForwarding yes",
    "StreamLocalBindUnlink yes",
    "X11Forwarding no",
    "PrintMotd no",
    "MaxSessions 64",
    "MaxStartups 64:30:128",
    "LogLevel ERROR",
    // A home of the server's own: the user's shell start-up files (which bash runs for every command over ssh) are
    // this machine's, and one of them may wait on a lock a killed session left (pyenv's rehash waits 60 s).
    `SetEnv HOME=${home}${options.path === undefined ? "" : ` PATH=${options.path}`}`,
    ""
  ].join("\n"))
  // sshd run by root wants its privilege separation directory.
  if (process.getuid?.() === 0) mkdirSync("/run/sshd", { recursive: true, mode: 0o755 })
  const sshdArgs = ["-D", "-e", "-f", config, "-p", String(port)]
  const box = path.join(dir, "box")
  if (options.ownFiles === true) mkdirSync(box)
  // With its own files: the tmpfs mounted in the new namespace, then sshd exec'd there (the same pid).
  const child = options.ownFiles === true
    ? spawn("unshare", [
      ...(process.getuid?.() === 0 ? [] : ["--map-current-user"]),
      "--mount",
      "--propagation",
      "private",
      "sh",
      "-c",
      'mount -t tmpfs -o mode=0755 cco-box "$0" && exec "$@"',
      box,
      SSHD,
      ...sshdArgs
    ], { stdio: ["ignore", "ignore", "pipe"] })
    : spawn(SSHD, sshdArgs, { stdio: ["ignore", "ignore", "pipe"] })
  let said = ""
  child.stderr.on("data", (d) => (said += d))
  const pid = child.pid!
  const kill = () => {
    try {
      process.kill(pid, "SIGTERM")
    } catch { /* gone */ }
  }
  const drop = () => {
    const table = execFileSync("ps", ["-eo", "pid=,ppid="], { encoding: "utf8" }).trim().split("\n").map((l) => l.trim().split(/\s+/).map(Number))
    const below = (p: number): Array<number> => table.filter(([, pp]) => pp === p).flatMap(([c]) => [c!, ...below(c!)])
    for (const p of [...below(pid), pid]) {
      try {
        process.kill(p, "SIGKILL")
      } catch { /* gone */ }
    }
  }
  // Its connections too: no client of it (an SSH master left by a failed run) stays connected.
  const stop = () => {
    drop()
    rmSync(dir, { recursive: true, force: true })
  }
  for (let i = 0; i < 100 && !(await accepts(port)); i++) {
    if (child.exitCode !== null) {
      stop()
      throw new Error(`sshd exited: ${said}`)
    }
    await new Promise((r) => setTimeout(r, 50))
  }
  return { port, dir, destination: `${userInfo().username}@127.0.0.1`, identityFile, knownHostsFile, pid, kill, drop, stop }
}

/** The test's sshd, stopped with the scope. */
export const useSshd = Effect.acquireRelease(Effect.promise(() => startSshd()), (s) => Effect.sync(() => s.stop()))

/** As useSshd, with options. */
export const useSshdWith = (options: SshdOptions) => Effect.acquireRelease(Effect.promise(() => startSshd(options)), (s) => Effect.sync(() => s.stop()))
/** The test's sshd with files of its own (see SshdOptions.ownFiles), stopped with the scope. */
export const useSshdWithOwnFiles = Effect.acquireRelease(Effect.promise(() => startSshd({ ownFiles: true })), (s) => Effect.sync(() => s.stop()))

/** The `hosts` entry of the "remote" host "box" behind the test's sshd, running `claudeCommand` there. */
export const remoteHost = (sshd: Sshd, claudeCommand: string) => ({
  name: "box",
  ssh: sshd.destination,
  port: sshd.port,
  identityFile: sshd.identityFile,
  knownHostsFile: sshd.knownHostsFile,
  workdir: path.join(sshd.dir, "box"),
  nodeCommand: process.execPath,
  claudeCommand
})

/**
 * A shell script run on the host, over SSH as a user would (its own connection, not cco's): its stdout. The host's
 * files are its own (useSshdWithOwnFiles): its workdir is looked at only this way.
 */
export const onHost = (sshd: Sshd, script: string, input = "") =>
  execFileSync("ssh", [
    "-F", "/dev/null",
    "-i", sshd.identityFile,
    "-p", String(sshd.port),
    "-o", `UserKnownHostsFile=${sshd.knownHostsFile}`,
    "-o", "StrictHostKeyChecking=yes",
    "-o", "BatchMode=yes",
    sshd.destination,
    "--",
    script
  ], { encoding: "utf8", input, stdio: ["pipe", "pipe", "pipe"] }).trim()
