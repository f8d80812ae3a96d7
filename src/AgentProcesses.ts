// Ending an instance's processes once its session is killed: the CLI (given time to exit, then SIGTERM, then
// SIGKILL) and everything it started, found by the process tree and by the identity in their environment. Many
// instances stopped at once (a wind-down) share each look at the process table and at /proc.
import type * as CommandExecutor from "@effect/platform/CommandExecutor"
import * as CommandExecutorTag from "@effect/platform/CommandExecutor"
import type * as FileSystem from "@effect/platform/FileSystem"
import { Duration, Effect } from "effect"
import { coalesced } from "./Coalesce.js"
import { exec } from "./Exec.js"
import { isAlive } from "./Process.js"
import type { RunLogShape } from "./RunLog.js"

const signal = (pid: number, name: NodeJS.Signals) => {
  try {
    process.kill(pid, name)
  } catch {
    // already gone
  }
}

/** The process table as parent → children, from one `ps` listing. */
const processTree = exec("ps", ["-eo", "pid=,ppid="]).pipe(
  Effect.map((r) => {
    const children = new Map<number, Array<number>>()
    for (const line of r.stdout.split("\n")) {
      const [pid, ppid] = line.trim().split(/\s+/).map(Number)
      if (pid === undefined || ppid === undefined || Number.isNaN(pid)) continue
      children.set(ppid, [...(children.get(ppid) ?? []), pid])
    }
    return children as ReadonlyMap<number, ReadonlyArray<number>>
  }),
  Effect.orElseSucceed((): ReadonlyMap<number, ReadonlyArray<number>> => new Map())
)

/** Every process below `root` in a process tree. */
const descendants = (tree: ReadonlyMap<number, ReadonlyArray<number>>, root: number) => {
  const out: Array<number> = []
  const walk = (p: number) => (tree.get(p) ?? []).forEach((c) => (out.push(c), walk(c)))
  walk(root)
  return out
}

const environDecoder = new TextDecoder()

/**
 * Processes that carry an instance's identity in their environment, which its tools inherit (its hooks and the
 * `cco` shim need it). Unlike the process tree this survives re-parenting: a tool started while the CLI was
 * exiting, or left by one that crashed, belongs to init by the time cco looks. CCO_SOCKET is the run's own
 * control socket, so no other run matches, even with the same run id and instance names. Linux (/proc) only.
 */
const withIdentity = (fs: FileSystem.FileSystem, socketPath: string) => {
  const socket = `CCO_SOCKET=${socketPath}`
  return fs.readDirectory("/proc").pipe(
    Effect.map((names) => names.filter((n) => /^\d+$/.test(n)).map(Number).filter((p) => p !== process.pid)),
    Effect.flatMap((pids) =>
      Effect.forEach(pids, (p) =>
        fs.readFile(`/proc/${p}/environ`).pipe(
          Effect.map((bytes) => {
            const vars = environDecoder.decode(bytes).split("\0")
            if (!vars.includes(socket)) return []
            const instance = vars.find((v) => v.startsWith("CCO_INSTANCE="))?.slice("CCO_INSTANCE=".length)
            return instance === undefined ? [] : [[instance, p] as const]
          }),
          Effect.orElseSucceed(() => [])
        ), { concurrency: 32 })
    ),
    Effect.map((found) => {
      const byInstance = new Map<string, Array<number>>()
      for (const [instance, pid] of found.flat()) byInstance.set(instance, [...(byInstance.get(instance) ?? []), pid])
      return byInstance as ReadonlyMap<string, ReadonlyArray<number>>
    }),
    Effect.orElseSucceed((): ReadonlyMap<string, ReadonlyArray<number>> => new Map())
  )
}


export const makeProcessEnder = (env: {
  readonly fs: FileSystem.FileSystem
  readonly executor: CommandExecutor.CommandExecutor
  readonly socketPath: string
  readonly runLog: RunLogShape
}) =>
  Effect.gen(function*() {
    const { runLog } = env
    // A wind-down stops every instance at once, and each looks at the process table every 100 ms while its CLI
    // exits: one `ps` listing (and one /proc scan) serves all who asked while the previous one ran.
    const processTreeNow = yield* coalesced(processTree.pipe(Effect.provideService(CommandExecutorTag.CommandExecutor, env.executor)))
    const identitiesNow = yield* coalesced(withIdentity(env.fs, env.socketPath))

    // After its session was killed: the CLI (pane pid) and every process it started, ended. `tree` holds what was
    // below the CLI when the session was killed.
    const endProcesses = (instance: string, pid: number | undefined, tree: Set<number>) =>
      Effect.gen(function*() {
        const snapshot = pid === undefined ? Effect.void : processTreeNow.pipe(
          Effect.map((table) => descendants(table, pid).forEach((p) => tree.add(p)))
        )
        if (pid !== undefined) {
          // Looked at again while the CLI exits: a tool it starts meanwhile is orphaned as soon as it is gone. Two
          // seconds to exit on its own (its transcript is written as it goes), then SIGTERM, then SIGKILL: a
          // wind-down of a whole team on a loaded machine must not wait for 26 slow exits.
          const exitWithin = (ms: number) =>
            Effect.gen(function*() {
              for (let i = 0; i < ms / 100 && isAlive(pid); i++) yield* Effect.sleep(Duration.millis(100)).pipe(Effect.zipRight(snapshot))
            })
          yield* exitWithin(2000)
          if (isAlive(pid)) {
            signal(pid, "SIGTERM")
            yield* exitWithin(1000)
            if (isAlive(pid)) signal(pid, "SIGKILL")
            yield* runLog.log("instance.killed", { instance, pid })
          }
        }
        const ended = new Set<number>()
        // A few rounds: a survivor may start another process before its signal lands.
        for (let round = 0; round < 3; round++) {
          const marked = (yield* identitiesNow).get(instance) ?? []
          const left = [...new Set([...(round === 0 ? tree : []), ...marked])].filter((p) => p !== process.pid && isAlive(p))
          if (left.length === 0) break
          left.forEach((p) => (ended.add(p), signal(p, "SIGTERM")))
          for (let i = 0; i < 10 && left.some(isAlive); i++) yield* Effect.sleep(Duration.millis(100))
          left.filter(isAlive).forEach((p) => signal(p, "SIGKILL"))
        }
        if (ended.size > 0) yield* runLog.log("instance.children-ended", { instance, pids: [...ended] })
      })

    const treeBelow = (pid: number | undefined): Effect.Effect<Set<number>> =>
      pid === undefined ? Effect.succeed(new Set<number>()) : Effect.map(processTreeNow, (table) => new Set(descendants(table, pid)))


    return { treeBelow, endProcesses }
  })

// The pane's program by its pid on that host: a moment to exit after its session is killed, then TERM, then KILL.
const REMOTE_STOP = 'p=$1; i=0; while kill -0 "$p" 2>/dev/null && [ $i -lt 20 ]; do sleep 0.1; i=$((i+1)); done; ' +
  'if kill -0 "$p" 2>/dev/null; then kill -TERM "$p" 2>/dev/null; sleep 1; kill -KILL "$p" 2>/dev/null; echo killed; fi'

/**
 * For instances on a remote host, whose pids are that host's: `executor` runs there (Ssh.remoteExecutor). The pane's
 * program is ended by its pid there; nothing of this machine's process table is looked at.
 */
export const makeRemoteProcessEnder = (env: { readonly executor: CommandExecutor.CommandExecutor; readonly runLog: RunLogShape }) =>
  Effect.succeed({
    treeBelow: (_pid: number | undefined): Effect.Effect<Set<number>> => Effect.succeed(new Set<number>()),
    endProcesses: (instance: string, pid: number | undefined, _tree: Set<number>) =>
      pid === undefined ? Effect.void : exec("sh", ["-c", REMOTE_STOP, "cco-stop", String(pid)]).pipe(
        Effect.provideService(CommandExecutorTag.CommandExecutor, env.executor),
        Effect.flatMap((r) => r.stdout.includes("killed") ? env.runLog.log("instance.killed", { instance, pid }) : Effect.void),
        Effect.ignore
      )
  })
