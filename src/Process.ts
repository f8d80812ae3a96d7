// Processes by pid: whether one still runs. Used for the orchestrator named in a run's cco.lock (status, cleanup,
// resume) and for the processes of an agent being stopped.
import { readFileSync } from "node:fs"

/**
 * Whether a process with this pid runs. EPERM means it exists but belongs to someone else: alive. An exited
 * process its new parent has not reaped yet (init can be slow to) counts as gone. 0 and negative pids address
 * process groups, never one process.
 */
export const isAlive = (pid: number): boolean => {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false
  try {
    process.kill(pid, 0)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EPERM") return false
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z"
  } catch {
    return true // no /proc here, or it has just gone: the signal check is all there is
  }
}
