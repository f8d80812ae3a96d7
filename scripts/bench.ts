// `npm run bench`: cco's performance, start-up with the real claude from node_modules (the rest with the fake
// agent), each number next to a baseline measured in the same run (the machine is small and shared, so ratios
// mean more than absolute times). Prints every result with its target and exits 1 when one misses its target by
// more than 20 %. Cleans up all it starts, also on failure.
//   npm run bench -- [--only 0,1,2,3,4] [--agent real|fake|real,fake] [--workers N] [--prompt-wait S] [--hooks N] [--rounds N]
//                    [--deliveries N] [--idle-seconds N] [--wait-quiet S] [--markdown] [--profile DIR] [--copy DIR]
import { cleanupRuns } from "../bench/cleanupRun.js"
import { buildCopy, existingCopy } from "../bench/build.js"
import { startMock } from "../bench/fixture.js"
import { hookLatency } from "../bench/hookLatency.js"
import { idleCost, stopGracefully } from "../bench/idle.js"
import { newestProfile, selfTimes } from "../bench/profile.js"
import { fails, markdown, type Measurement, table, TOLERANCE } from "../bench/report.js"
import { startupAndDelivery } from "../bench/startup.js"
import { realStartup, teamNames } from "../bench/startupReal.js"
import { cpus } from "node:os"
import { cleanupAll, installExitCleanup, loadAverage, log, sleep } from "../bench/util.js"

const args = process.argv.slice(2)
const value = (name: string, fallback: string) => {
  const i = args.indexOf(name)
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : fallback
}
if (args.includes("--help")) {
  console.log([
    "usage: npm run bench -- [options]",
    "  --only LIST         benchmarks to run, e.g. 0,2 (default 0,1,2,3,4)",
    "  --hooks N           hook events in benchmark 0 (default 200)",
    "  --agent LIST        claude of benchmark 1: real (node_modules/.bin/claude, default), fake, or real,fake (fake as info lines 1d, 1e)",
    "  --workers N         workerCount of the real-claude benchmark 1 (default 20: 26 instances; smaller while developing)",
    "  --prompt-wait S     real claude: before the wind-down, wait up to S seconds until all have their first prompt (default 30)",
    "  --sandbox MODE      real claude: cco's sandbox setting in benchmark 1 (auto, bwrap, none; default: the config default)",
    "  --hosts             real claude: each round of benchmark 1 also starts the team with half its workers on a remote host (an sshd on 127.0.0.1)",
    "  --rounds N          baseline + cco start-ups in benchmark 1, the median ratio counts (default 3)",
    "  --deliveries N      messages delivered in benchmark 2 (default 500)",
    "  --idle-seconds N    idle window of benchmark 3 (default 60)",
    "  --wait-quiet S      first wait up to S seconds for the machine's 1-minute load average to drop below 1.5",
    "  --markdown          print the results as a Markdown table too",
    "  --profile DIR       write a --cpu-prof profile of the idle orchestrator (benchmark 3) into DIR",
    "  --copy DIR          benchmarks 3 and 4 on an installed-like cco in DIR (DIR/bin/cco.js, DIR/dist/) instead of a fresh build"
  ].join("\n"))
  process.exit(0)
}
const only = new Set(value("--only", "0,1,2,3,4").split(",").map((s) => s.trim()))
const hooks = Number(value("--hooks", "200"))
const deliveries = Number(value("--deliveries", "500"))
const idleSeconds = Number(value("--idle-seconds", "60"))
const rounds = Number(value("--rounds", "3"))
const agents = new Set(value("--agent", "real").split(",").map((s) => s.trim()))
const workers = Number(value("--workers", "20"))
const promptWait = Number(value("--prompt-wait", "30"))
const sandbox = args.includes("--sandbox") ? value("--sandbox", "") : undefined
const overSsh = args.includes("--hosts")
if ([...agents].some((a) => a !== "real" && a !== "fake") || !(workers >= 1)) {
  console.error("--agent takes real, fake or real,fake; --workers a number ≥ 1")
  process.exit(2)
}
const profileDir = args.includes("--profile") ? value("--profile", "") : undefined
const copyDir = args.includes("--copy") ? value("--copy", "") : undefined
const waitQuiet = Number(value("--wait-quiet", "0"))

installExitCleanup()

const main = async () => {
  const started = Date.now()
  const results: Array<Measurement> = []
  if (waitQuiet > 0) {
    const deadline = Date.now() + waitQuiet * 1000
    while (Number(loadAverage().split(" ")[0]) >= 1.5 && Date.now() < deadline) await sleep(5000)
  }
  const load = Number(loadAverage().split(" ")[0])
  log(`cco bench: load average ${loadAverage()} at start${load > cpus().length ? ` — more than ${cpus().length} cores: other work skews these numbers` : ""}`)
  const mock = await startMock()
  try {
    if (only.has("0")) {
      log(`\n[0] hook → orchestrator latency, ${hooks} events each`)
      results.push(...await hookLatency(hooks))
    }
    if (only.has("1") && agents.has("real")) {
      log(`\n[1] real claude: start-up of ${teamNames(workers).length} instances, ${rounds} rounds against the bash floor; first assign; wind-down`)
      results.push(...await realStartup(mock.mock.url, { rounds, workers, promptWaitSeconds: promptWait, hosts: overSsh, ...(sandbox === undefined ? {} : { sandbox }) }))
    }
    const fakeStartup = only.has("1") && agents.has("fake")
    if (fakeStartup || only.has("2")) {
      log(`\n${fakeStartup ? `[1] fake agent: start-up of 26 instances, ${rounds} rounds against the bash baseline` : ""}${fakeStartup && only.has("2") ? "; then " : ""}${only.has("2") ? `[2] ${deliveries} deliveries into EM panes (fake agent)` : ""}`)
      results.push(...await startupAndDelivery(mock.mock.url, { startup: fakeStartup, rounds, deliveries: only.has("2") ? deliveries : 0, secondary: agents.has("real") }))
    }
    if (only.has("3") || only.has("4")) {
      const copy = copyDir !== undefined ? existingCopy(copyDir) : (log("\nbuilding cco into a temp copy (what an installed cco runs: dist/, no tsx)"), await buildCopy())
      log(`\n[3] idle orchestrator with 26 instances, ${idleSeconds} s${only.has("4") ? "; then [4] cco cleanup of the killed run" : ""}`)
      const idle = await idleCost(mock.mock.url, copy, { seconds: only.has("3") ? idleSeconds : 0, profileDir })
      results.push(...idle.measurements)
      if (only.has("4") && profileDir === undefined) results.push(...await cleanupRuns(idle.leftover, copy))
      else {
        if (only.has("4")) log("  [4] skipped: --profile stops the run gracefully so that the profile is written")
        await stopGracefully(idle.leftover)
        const file = profileDir === undefined ? undefined : newestProfile(profileDir)
        if (file !== undefined && idle.window !== undefined) {
          const p = selfTimes(file, idle.window.from, idle.window.to)
          log(`  ${file}: ${p.busyMs.toFixed(0)} ms on the CPU in the ${(p.windowMs / 1000).toFixed(0)} s idle window; self time:`)
          for (const r of p.rows) log(`    ${r.ms.toFixed(1).padStart(8)} ms  ${r.name}`)
        }
      }
    }
  } finally {
    await mock.close()
  }
  log(`\nload average ${loadAverage()} at the end; ${Math.round((Date.now() - started) / 1000)} s in all\n`)
  console.log(table(results))
  if (args.includes("--markdown")) console.log(`\n${markdown(results)}`)
  const missed = results.filter(fails)
  if (missed.length > 0) {
    console.log(`\n${missed.length} target${missed.length === 1 ? "" : "s"} missed by more than ${TOLERANCE * 100} %: ${missed.map((m) => m.id).join(", ")}`)
    return 1
  }
  console.log(`\nevery target met or within ${TOLERANCE * 100} %`)
  return 0
}

main().then(
  (code) => {
    cleanupAll()
    process.exit(code)
  },
  (e: unknown) => {
    process.stderr.write(`bench failed: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`)
    cleanupAll()
    process.exit(2)
  }
)
