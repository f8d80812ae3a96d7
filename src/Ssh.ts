// SSH to a remote host as cco uses it: one multiplexed connection per host (ControlMaster, its socket in the run
// folder), every command a `sh -c` line through it, never a password prompt (BatchMode), host keys checked as the
// config says. Secrets never travel in argv: what must stay private goes over ssh's stdin.
import * as Command from "@effect/platform/Command"
import * as CommandExecutor from "@effect/platform/CommandExecutor"
import { Effect, Option, Schema } from "effect"
import { spawn } from "node:child_process"
import { createHash } from "node:crypto"
import { appendFileSync, closeSync, openSync, readFileSync } from "node:fs"
import { exec, type ExecResult } from "./Exec.js"
import { KILL_GRACE_MS, readTail, type ShellRun, withheld } from "./Gate.js"
import { type HostConfig, isRemote } from "./HostsConfig.js"
import * as Sandbox from "./Sandbox.js"
import { shellQuote } from "./Shell.js"

export class SshError extends Schema.TaggedError<SshError>()("SshError", {
  host: Schema.String,
  message: Schema.String
}) {}

export interface SshTarget {
  readonly host: HostConfig
  /** The master connection's socket (ControlPath). */
  readonly controlPath: string
}

// A unix socket path has room for 107 bytes; ssh adds a suffix while it sets the master up.
const SOCKET_ROOM = 90

/** The master's socket: in the run folder when the path is short enough, else a short one in /tmp named by its hash. */
export const controlPathFor = (runFolder: string, host: string): string => {
  const preferred = `${runFolder}/ssh-${host}.sock`
  if (preferred.length <= SOCKET_ROOM) return preferred
  return `/tmp/cco-ssh-${createHash("sha256").update(preferred).digest("hex").slice(0, 16)}.sock`
}

/** ssh's options for this host: no prompt ever, keys checked as configured, its own identity and port. */
export const sshOptions = (host: HostConfig, controlPath?: string): ReadonlyArray<string> => [
  "-o", "BatchMode=yes",
  "-o", `StrictHostKeyChecking=${host.strictHostKeyChecking}`,
  ...(host.knownHostsFile === undefined ? [] : ["-o", `UserKnownHostsFile=${host.knownHostsFile}`]),
  ...(host.identityFile === undefined ? [] : ["-i", host.identityFile, "-o", "IdentitiesOnly=yes"]),
  "-o", "ConnectTimeout=10",
  "-o", "ServerAliveInterval=5",
  "-o", "ServerAliveCountMax=3",
  "-o", "LogLevel=ERROR",
  ...(controlPath === undefined ? [] : ["-o", `ControlPath=${controlPath}`]),
  "-p", String(host.port)
]

const destination = (host: HostConfig) => host.ssh ?? host.name

/** What ssh said when it failed (255: ssh itself, not the remote command). */
const sshFailure = (host: HostConfig, result: ExecResult) =>
  new SshError({ host: host.name, message: result.stderr.trim().split("\n").slice(-3).join(" ") || `ssh exited with ${result.exitCode}` })

/**
 * Runs `script` with sh on the host through the master connection; returns what it printed and its exit code
 * (255 and an SshError: the connection failed). `stdin` carries what must not be in argv.
 */
export const run = (target: SshTarget, script: string, stdin?: string) =>
  exec("ssh", [...sshOptions(target.host, target.controlPath), destination(target.host), "--", `sh -c ${shellQuote(script)}`], stdin === undefined ? {} : { stdin }).pipe(
    Effect.mapError((e) => new SshError({ host: target.host.name, message: `cannot run ssh: ${e.message}` })),
    Effect.flatMap((result) => result.exitCode === 255 ? Effect.fail(sshFailure(target.host, result)) : Effect.succeed(result))
  )

/** As `run`, but any non-zero exit is an SshError with what the command said; returns stdout. */
export const output = (target: SshTarget, script: string, stdin?: string) =>
  run(target, script, stdin).pipe(
    Effect.flatMap((r) => r.exitCode === 0 ? Effect.succeed(r.stdout) : Effect.fail(new SshError({ host: target.host.name, message: (r.stderr.trim() || r.stdout.trim() || `exit ${r.exitCode}`).split("\n").slice(-3).join(" ") })))
  )

/**
 * Opens the master connection (`ssh -f -N`, ControlPersist: it stays until `stop`). Its messages go to `logFile`,
 * so no pipe of ours is held open by the background process.
 */
export const startMaster = (target: SshTarget, logFile: string) =>
  Effect.async<void, SshError>((resume) => {
    const fd = openSync(logFile, "a", 0o600)
    const child = spawn("ssh", [
      ...sshOptions(target.host, target.controlPath),
      "-o", "ControlMaster=yes", "-o", "ControlPersist=yes", "-f", "-N",
      destination(target.host)
    ], { stdio: ["ignore", fd, fd] })
    closeSync(fd)
    child.on("error", (e) => resume(Effect.fail(new SshError({ host: target.host.name, message: `cannot run ssh: ${e.message}` }))))
    child.on("exit", (code) => {
      if (code === 0) return resume(Effect.void)
      let said = ""
      try {
        said = readFileSync(logFile, "utf8").trim().split("\n").slice(-3).join(" ")
      } catch { /* no log */ }
      resume(Effect.fail(new SshError({ host: target.host.name, message: said || `ssh exited with ${code}` })))
    })
  })

/** Adds a forward to the master: the host's unix socket `remote` reaches `local` here (`ssh -R`). */
export const forwardSocket = (target: SshTarget, remote: string, local: string) =>
  exec("ssh", [...sshOptions(target.host, target.controlPath), "-O", "forward", "-R", `${remote}:${local}`, destination(target.host)]).pipe(
    Effect.mapError((e) => new SshError({ host: target.host.name, message: `cannot run ssh: ${e.message}` })),
    Effect.flatMap((r) => r.exitCode === 0 ? Effect.void : Effect.fail(sshFailure(target.host, r)))
  )

/** Whether the master connection is up. */
export const masterAlive = (target: SshTarget) =>
  exec("ssh", [...sshOptions(target.host, target.controlPath), "-O", "check", destination(target.host)]).pipe(
    Effect.map((r) => r.exitCode === 0),
    Effect.orElseSucceed(() => false)
  )

/** Ends the master connection (and its forwards). */
export const stopMaster = (target: SshTarget) =>
  exec("ssh", [...sshOptions(target.host, target.controlPath), "-O", "exit", destination(target.host)]).pipe(Effect.ignore)

/**
 * Whether the host answers over SSH and has what cco needs there (sh, tmux, git, node); a one-off connection
 * (no master). The message says what is wrong.
 */
export const check = (host: HostConfig) =>
  exec("ssh", [...sshOptions(host), destination(host), "--",
    `sh -c ${shellQuote(`for p in tmux git ${shellQuote(host.nodeCommand)}; do command -v "$p" >/dev/null 2>&1 || { echo "missing on the host: $p"; exit 3; }; done; echo ok`)}`
  ]).pipe(
    Effect.mapError((e) => new SshError({ host: host.name, message: `cannot run ssh: ${e.message}` })),
    Effect.flatMap((r): Effect.Effect<void, SshError> => {
      if (r.exitCode === 0) return Effect.void
      if (r.exitCode === 3) return Effect.fail(new SshError({ host: host.name, message: r.stdout.trim() }))
      return Effect.fail(sshFailure(host, r))
    })
  )

/**
 * A CommandExecutor whose programs run on the host (through the master): `cd <cwd> && exec <program> <args>`,
 * stdin passed through. The environment of a command is not carried over; only cco's own simple programs run so.
 */
export const remoteExecutor = (local: CommandExecutor.CommandExecutor, target: SshTarget): CommandExecutor.CommandExecutor =>
  CommandExecutor.makeExecutor((command) => {
    if (command._tag !== "StandardCommand") return Effect.dieMessage("a piped command cannot run on a remote host")
    const cd = Option.match(command.cwd, { onNone: () => "", onSome: (dir) => `cd ${shellQuote(dir)} && ` })
    const script = `${cd}exec ${[command.command, ...command.args].map(shellQuote).join(" ")}`
    const ssh = Command.stdin(
      Command.make("ssh", ...sshOptions(target.host, target.controlPath), destination(target.host), "--", `sh -c ${shellQuote(script)}`),
      command.stdin
    )
    return local.start(ssh)
  })

// Run by node on the host: `sh -c <command>` in a process group of its own with the environment there (without
// what commandEnv withholds, with CCO_PORT), its output on stderr, its outcome as one JSON line on stdout. Past the
// timeout the group gets SIGTERM, then SIGKILL; when sh ends, whatever it left in its group is killed; and when
// the SSH channel closes (stdin ends: the orchestrator stopped it, or went away) the group is killed at once.
const shellThere = `
const { spawn } = require("child_process")
const [, timeoutMs, port, command] = process.argv
const env = {}
for (const [k, v] of Object.entries(process.env)) if (!${withheld.toString()}.test(k)) env[k] = v
env.CCO_PORT = port
let child, timedOut = false, finished = false
const kill = (signal) => { try { process.kill(-child.pid, signal) } catch {} }
const finish = (exitCode) => {
  if (finished) return
  finished = true
  kill("SIGKILL")
  process.stdout.write(JSON.stringify({ exitCode, timedOut }) + "\\n", () => process.exit(0))
}
const gone = () => { finished = true; if (child !== undefined) kill("SIGKILL"); process.exit(1) }
process.stdin.on("end", gone).on("error", gone).resume()
child = spawn("/bin/sh", ["-c", command], { env, detached: true, stdio: ["ignore", 2, 2] })
child.once("error", (e) => { process.stderr.write("cco: cannot run " + command + ": " + e.message + "\\n"); finish(null) })
child.once("exit", (code) => finish(code))
setTimeout(() => { timedOut = true; kill("SIGTERM"); setTimeout(() => kill("SIGKILL"), ${KILL_GRACE_MS}) }, Number(timeoutMs))
`

/**
 * A project's shell command (setupCommand) run on the host in `cwd` as Gate.runShell runs it here: bounded in
 * time (enforced there), its output appended to `logFile` here, nothing of it left running there when it ends,
 * times out or is interrupted. Its environment is the host's (as SSH gives it) without what commandEnv
 * withholds, with CCO_PORT: this machine's PATH, HOME and the like mean nothing there. An SSH failure is exit
 * code 255, what ssh said in the log.
 */
export const runShell = (
  target: SshTarget,
  command: string,
  options: { readonly cwd: string; readonly port: number; readonly logFile: string; readonly timeoutMs: number }
): Effect.Effect<ShellRun> =>
  Effect.async<ShellRun>((resume) => {
    const started = Date.now()
    let timedOut = false
    let finished = false
    let fd: number | undefined
    let child: ReturnType<typeof spawn> | undefined
    let outcome = ""
    const timers: Array<NodeJS.Timeout> = []
    const say = (line: string) => {
      try {
        appendFileSync(options.logFile, `cco: ${line}\n`)
      } catch {
        // the log file is not writable; the tail says nothing then
      }
    }
    const done = (exitCode: number | undefined) => {
      if (finished) return
      finished = true
      for (const t of timers) clearTimeout(t)
      child?.stdin?.destroy()
      resume(Effect.sync(() => ({ exitCode, timedOut, durationMs: Date.now() - started, tail: readTail(options.logFile), logFile: options.logFile })))
    }
    try {
      fd = openSync(options.logFile, "a", 0o600)
      const script = `cd ${shellQuote(options.cwd)} && exec ${
        [target.host.nodeCommand, "-e", shellThere, "--", String(options.timeoutMs), String(options.port), command].map(shellQuote).join(" ")
      }`
      // stdin stays open while the command runs: its end (ssh stopped) is what ends the command there.
      const ssh = spawn("ssh", [...sshOptions(target.host, target.controlPath), destination(target.host), "--", `sh -c ${shellQuote(script)}`], {
        stdio: ["pipe", "pipe", fd]
      })
      child = ssh
      ssh.stdin?.on("error", () => {})
      const reported = () => {
        try {
          const line = outcome.trim().split("\n").at(-1) ?? ""
          return line === "" ? undefined : JSON.parse(line) as { readonly exitCode: number | null; readonly timedOut: boolean }
        } catch {
          return undefined
        }
      }
      ssh.stdout?.on("data", (d: Buffer) => {
        outcome = (outcome + d.toString("utf8")).slice(-4096)
        // Ended there: what it started outside its group may still hold the connection's stderr open; past a
        // moment for the last of its output, ssh is stopped here.
        if (outcome.endsWith("\n") && reported() !== undefined) timers.push(setTimeout(() => ssh.kill("SIGTERM"), 1_000))
      })
      ssh.once("error", (e) => {
        say(`cannot run ssh: ${e.message}`)
        done(undefined)
      })
      ssh.once("close", (code) => {
        if (finished) return
        const outcomeThere = reported()
        if (outcomeThere !== undefined) {
          timedOut ||= outcomeThere.timedOut
          return done(outcomeThere.exitCode ?? undefined)
        }
        if (code === 255) say(`ssh to ${target.host.name} failed (exit code 255); the command may not have run there`)
        done(code ?? undefined)
      })
      // The host ends it on time; should it not answer, ssh is stopped here (which ends the command there too).
      timers.push(setTimeout(() => {
        timedOut = true
        ssh.kill("SIGTERM")
      }, options.timeoutMs + KILL_GRACE_MS + 10_000))
    } catch (e) {
      say(`cannot run ${command} on ${target.host.name}: ${e instanceof Error ? e.message : String(e)}`)
      done(undefined)
    } finally {
      if (fd !== undefined) closeSync(fd)
    }
    return Effect.sync(() => {
      for (const t of timers) clearTimeout(t)
      if (!finished) child?.kill("SIGTERM")
      finished = true
    })
  })

/**
 * bubblewrap on the host: found on its PATH and tried there as Sandbox.probe tries it here (through the master;
 * a target whose controlPath is "none" connects on its own).
 */
export const probeSandbox = (target: SshTarget) =>
  Effect.gen(function*() {
    const executor = yield* CommandExecutor.CommandExecutor
    const where = `host ${target.host.name}`
    const bwrap = (yield* run(target, "command -v bwrap")).stdout.trim().split("\n")[0] ?? ""
    if (!bwrap.startsWith("/")) return { _tag: "Missing", reason: `bubblewrap (bwrap) is not on PATH on ${where}` } satisfies Sandbox.Probe as Sandbox.Probe
    return yield* Sandbox.tryBwrap(bwrap, where).pipe(Effect.provideService(CommandExecutor.CommandExecutor, remoteExecutor(executor, target)))
  })

/** `cco doctor`: whether the instances on each remote host would be confined under `mode`; a host that does not answer is left to checkHosts. */
export const checkHostSandboxes = (hosts: ReadonlyArray<HostConfig> | undefined, mode: Sandbox.SandboxMode) =>
  mode === "none" ? Effect.succeed([]) : Effect.forEach((hosts ?? []).filter(isRemote), (h) =>
    probeSandbox({ host: h, controlPath: "none" }).pipe(
      Effect.map((found) => [{ host: h.name, found }]),
      Effect.orElseSucceed(() => [])
    ), { concurrency: "unbounded" }).pipe(Effect.map((all) => all.flat()))

/** `cco doctor`: each remote host answers over SSH and has tmux, git and node. */
export const checkHosts = (hosts: ReadonlyArray<HostConfig> | undefined) =>
  Effect.forEach((hosts ?? []).filter(isRemote), (h) =>
    check(h).pipe(
      Effect.as({ host: h.name, ok: true as const, message: `${h.ssh} port ${h.port}: reachable` }),
      Effect.catchAll((e) => Effect.succeed({ host: h.name, ok: false as const, message: `${h.ssh} port ${h.port}: ${e.message}` }))
    ), { concurrency: "unbounded" })
