// Reads a V8 .cpuprofile (node --cpu-prof) and sums self time per function over one time window, so the idle
// orchestrator's profile can be read without its start-up and wind-down. Times are CLOCK_MONOTONIC microseconds,
// the clock of both the profile and process.hrtime, so the bench can name the window from its own side.
import { readdirSync, readFileSync, statSync } from "node:fs"
import * as path from "node:path"

interface ProfileNode {
  readonly id: number
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number }
}

interface CpuProfile {
  readonly nodes: ReadonlyArray<ProfileNode>
  readonly startTime: number
  readonly endTime: number
  readonly samples: ReadonlyArray<number>
  readonly timeDeltas: ReadonlyArray<number>
}

export const monotonicMicros = () => Number(process.hrtime.bigint() / 1000n)

const shortUrl = (url: string) => {
  const i = url.indexOf("node_modules/")
  if (i >= 0) return url.slice(i + "node_modules/".length)
  const j = url.lastIndexOf("/dist/")
  return j >= 0 ? url.slice(j + 1) : url.replace(/^.*\//, "")
}

/** The newest profile written into a directory. */
export const newestProfile = (dir: string) => {
  const files = readdirSync(dir).filter((f) => f.endsWith(".cpuprofile")).map((f) => path.join(dir, f))
  return files.sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)[0]
}

/** Self time per function within [from, to] (µs), busiest first, and the window's busy (non-idle) time. */
export const selfTimes = (file: string, from: number, to: number, top = 20) => {
  const profile = JSON.parse(readFileSync(file, "utf8")) as CpuProfile
  const byId = new Map(profile.nodes.map((n) => [n.id, n]))
  const totals = new Map<string, number>()
  let t = profile.startTime
  let busy = 0
  let all = 0
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i] ?? 0
    if (t < from || t > to) continue
    const delta = profile.timeDeltas[i + 1] ?? 0
    const node = byId.get(profile.samples[i]!)
    if (node === undefined) continue
    const name = node.callFrame.functionName || "(anonymous)"
    all += delta
    if (name !== "(idle)") busy += delta
    const key = name.startsWith("(") ? name : `${name} ${shortUrl(node.callFrame.url)}:${node.callFrame.lineNumber + 1}`
    totals.set(key, (totals.get(key) ?? 0) + delta)
  }
  const rows = [...totals].sort((a, b) => b[1] - a[1]).slice(0, top)
  return { windowMs: (to - from) / 1000, sampledMs: all / 1000, busyMs: busy / 1000, rows: rows.map(([name, us]) => ({ name, ms: us / 1000 })) }
}
