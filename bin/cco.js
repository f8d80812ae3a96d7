#!/usr/bin/env node
// The published `cco` executable. `cco team …` and `cco hook …` (run by agents, often) go to the small agent client;
// everything else to the full CLI: dist/bin.js when built (and not older than src/), else src/bin.ts through tsx.
import { spawn } from "node:child_process"
import { existsSync, readdirSync, statSync } from "node:fs"
import * as path from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"

const here = path.dirname(fileURLToPath(import.meta.url))
const args = process.argv.slice(2)

const runClient = async () => {
  const client = path.join(here, "cco-client.mjs")
  if (!existsSync(client)) {
    process.stderr.write(`cco: the agent client ${client} is missing; reinstall cco\n`)
    process.exit(1)
  }
  const { default: main } = await import(pathToFileURL(client).href)
  if (typeof main !== "function") {
    process.stderr.write(`cco: ${client} has no default export to run\n`)
    process.exit(1)
  }
  const code = await main(args)
  process.exit(typeof code === "number" ? code : 0)
}

const runFromSource = () => {
  const source = path.join(here, "..", "src", "bin.ts")
  if (!existsSync(source)) {
    process.stderr.write("cco: neither dist/bin.js nor src/bin.ts found; run `npm run build`\n")
    process.exit(1)
  }
  // Resolved from this file, so the checkout's tsx is found whatever the working directory.
  let tsx = "tsx"
  try {
    tsx = import.meta.resolve("tsx")
  } catch {
    // Left to node's own resolution, which reports a missing tsx clearly.
  }
  // The child gets a process group of its own, so a signal sent to ours (a terminal's Ctrl-C, `timeout -s INT`)
  // reaches it once, through this forwarder: a second interrupt would cut its graceful wind-down short.
  const child = spawn(process.execPath, ["--import", tsx, source, ...args], { stdio: "inherit", detached: true })
  const forward = (signal) => () => {
    child.kill(signal)
  }
  const handlers = ["SIGINT", "SIGTERM", "SIGHUP"].map((signal) => {
    const handler = forward(signal)
    process.on(signal, handler)
    return [signal, handler]
  })
  child.on("error", (error) => {
    process.stderr.write(`cco: cannot start node: ${error.message}\n`)
    process.exit(1)
  })
  child.on("exit", (code, signal) => {
    for (const [name, handler] of handlers) process.off(name, handler)
    if (signal) process.kill(process.pid, signal)
    else process.exit(code ?? 1)
  })
}

// In a checkout, sources newer than the build win: a dist/ left from before a pull or an edit would run old code.
const staleBuild = (built) => {
  const sources = path.join(here, "..", "src")
  if (!existsSync(sources)) return false
  const builtAt = statSync(built).mtimeMs
  return readdirSync(sources).some((f) => f.endsWith(".ts") && statSync(path.join(sources, f)).mtimeMs > builtAt)
}

if (args[0] === "team" || args[0] === "hook") {
  await runClient()
} else {
  const built = path.join(here, "..", "dist", "bin.js")
  if (existsSync(built) && !staleBuild(built)) await import(pathToFileURL(built).href)
  else runFromSource()
}
