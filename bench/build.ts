// An installed-like cco for benchmarks 3 and 4: src/ compiled into a temp copy's dist/ beside bin/ and prompts/,
// so `bin/cco.js` imports dist/bin.js in-process (no tsx, no second node) as a published cco does.
import { cpSync, existsSync, symlinkSync } from "node:fs"
import * as path from "node:path"
import { log, projectRoot, runTimed, tempDir } from "./util.js"

export interface CcoCopy {
  readonly root: string
  /** <root>/bin/cco.js */
  readonly cli: string
}

export const buildCopy = async (): Promise<CcoCopy> => {
  const root = tempDir("cco-bench-build-")
  const tsc = path.join(projectRoot, "node_modules", ".bin", "tsc")
  const built = await runTimed(tsc, ["-p", "tsconfig.build.json", "--outDir", path.join(root, "dist"), "--declaration", "false", "--sourceMap", "false"], { cwd: projectRoot })
  // Type errors still emit JavaScript; only a missing entry point stops the bench.
  if (!existsSync(path.join(root, "dist", "bin.js"))) {
    throw new Error(`tsc did not produce dist/bin.js (exit ${built.code}): ${(built.stdout + built.stderr).trim().slice(0, 2000)}`)
  }
  if (built.code !== 0) log(`  tsc exited ${built.code} (type errors elsewhere in the tree); the JavaScript was emitted and is used`)
  for (const entry of ["package.json", "bin", "prompts"]) cpSync(path.join(projectRoot, entry), path.join(root, entry), { recursive: true })
  symlinkSync(path.join(projectRoot, "node_modules"), path.join(root, "node_modules"))
  log(`  built in ${(built.ms / 1000).toFixed(1)} s`)
  return { root, cli: path.join(root, "bin", "cco.js") }
}

/** A copy built elsewhere (e.g. with a change to compare), used as it is and not removed. */
export const existingCopy = (dir: string): CcoCopy => {
  const root = path.resolve(dir)
  if (!existsSync(path.join(root, "dist", "bin.js")) || !existsSync(path.join(root, "bin", "cco.js"))) {
    throw new Error(`${root} has no dist/bin.js and bin/cco.js`)
  }
  return { root, cli: path.join(root, "bin", "cco.js") }
}
