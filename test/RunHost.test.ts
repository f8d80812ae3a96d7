// The host of a run read from the environment, and the run options built from it: the one path `cco run` and
// the library share, so an OAuth token, the login file, PATH and the claude path reach instances alike.
import * as NodeContext from "@effect/platform-node/NodeContext"
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Effect, Redacted } from "effect"
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { makeConfig } from "../src/Library.js"
import { Host, runOptionsFor } from "../src/RunHost.js"
import { scrub } from "../src/Secrets.js"

/** A HOME with a Claude login and a bin/ holding an executable `claude`; removed at the end. */
const machine = Effect.acquireRelease(
  Effect.sync(() => {
    const root = mkdtempSync(path.join(tmpdir(), "cco-host-"))
    mkdirSync(path.join(root, "home", ".claude"), { recursive: true })
    writeFileSync(path.join(root, "home", ".claude", ".credentials.json"), "{}")
    mkdirSync(path.join(root, "bin"))
    writeFileSync(path.join(root, "bin", "claude"), "#!/bin/sh\n")
    chmodSync(path.join(root, "bin", "claude"), 0o755)
    return root
  }),
  (root) => Effect.sync(() => rmSync(root, { recursive: true, force: true }))
)

// The host through the live layer that bin.ts and the library both provide, over a given environment.
const hostFrom = (env: Record<string, string>) =>
  Host.pipe(Effect.provide(Host.layer), Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env)))))

const config = makeConfig({ repositoryUrl: "https://example.invalid/x.git", workerCount: 1 })

describe("the run's host and options", () => {
  it.scoped("CLAUDE_CODE_OAUTH_TOKEN, the login file and PATH from the environment reach the run's options", () =>
    Effect.gen(function*() {
      const root = yield* machine
      const PATH = `${path.join(root, "nothing-here")}:${path.join(root, "bin")}`
      const host = yield* hostFrom({ PATH, HOME: path.join(root, "home"), CLAUDE_CODE_OAUTH_TOKEN: "sk-ant-oat01-test-token" })
      const options = runOptionsFor(yield* config, host, { extraEnv: { CLAUDE_CODE_MAX_RETRIES: "2" } })

      expect(Object.keys(options.oauthEnv ?? {})).toEqual(["CLAUDE_CODE_OAUTH_TOKEN"])
      expect(Redacted.value(options.oauthEnv!.CLAUDE_CODE_OAUTH_TOKEN!)).toBe("sk-ant-oat01-test-token")
      expect(options.oauthCredentialsFile).toBe(path.join(root, "home", ".claude", ".credentials.json"))
      expect(options.basePath).toBe(PATH)
      expect(options.claudePath).toBe(path.join(root, "bin", "claude"))
      expect(options.clientCommand).toEqual([process.execPath, path.join(options.projectRoot, "bin", "cco-client.mjs")])
      expect(options.extraEnv).toEqual({ CLAUDE_CODE_MAX_RETRIES: "2" })
      // The token is never shown by the host or the options.
      expect(JSON.stringify([host, options])).not.toContain("sk-ant-oat01-test-token")
    }).pipe(Effect.provide(NodeContext.layer)))

  it.scoped("without a token, login file or PATH: no oauthEnv, no credentials file, the standard PATH", () =>
    Effect.gen(function*() {
      const root = yield* machine
      const host = yield* hostFrom({ PATH: "", HOME: path.join(root, "bin"), CLAUDE_CODE_OAUTH_TOKEN: "" })
      const options = runOptionsFor(yield* config, host, { claudePath: "/opt/claude/bin/claude" })
      expect(options.oauthEnv).toBeUndefined()
      expect(options.oauthCredentialsFile).toBeUndefined()
      expect(options.basePath).toBe("/usr/local/bin:/usr/bin:/bin")
      expect(options.claudePath).toBe("/opt/claude/bin/claude")
    }).pipe(Effect.provide(NodeContext.layer)))

  it.scoped("credentials in the environment are scrubbed from what cco writes from then on, for the library as for cco run", () =>
    Effect.gen(function*() {
      const key = "opaque-api-key-from-the-environment"
      const token = "opaque-oauth-token-from-the-environment"
      expect(scrub(`saw ${key} and ${token}`)).toBe(`saw ${key} and ${token}`)
      yield* hostFrom({ ANTHROPIC_API_KEY: key, CLAUDE_CODE_OAUTH_TOKEN: token })
      expect(scrub(`saw ${key} and ${token}`)).toBe("saw [redacted:ANTHROPIC_API_KEY] and [redacted:CLAUDE_CODE_OAUTH_TOKEN]")
    }).pipe(Effect.provide(NodeContext.layer)))
})
