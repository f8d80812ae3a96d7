// cco's own modules import @effect/platform and @effect/platform-node by subpath: the package barrels load
// every module, among them HttpApiScalar and HttpApiSwagger with their UI bundles (~60 MB of RSS in an idle
// orchestrator, half a second more for every `cco` command; see BENCHMARKS.md, 3b).
import { describe, expect, it } from "@effect/vitest"
import { readdirSync, readFileSync } from "node:fs"
import * as path from "node:path"

const projectRoot = path.resolve(import.meta.dirname, "..")
const barrel = /from\s+["']@effect\/platform(-node)?["']/

describe("imports", () => {
  it("src/ never imports the @effect/platform or @effect/platform-node barrel", () => {
    const files = readdirSync(path.join(projectRoot, "src")).filter((f) => f.endsWith(".ts"))
    expect(files.length).toBeGreaterThan(10)
    const offenders = files.filter((f) =>
      readFileSync(path.join(projectRoot, "src", f), "utf8").split("\n").some((line) => barrel.test(line))
    )
    expect(offenders).toEqual([])
    // The pattern itself catches what it is for.
    expect(barrel.test(`import { FileSystem } from "@effect/platform"`)).toBe(true)
    expect(barrel.test(`import { NodeContext } from '@effect/platform-node'`)).toBe(true)
    expect(barrel.test(`import * as Path from "@effect/platform/Path"`)).toBe(false)
  })
})
