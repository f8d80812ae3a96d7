// Config `hosts`: validated like every option (one line naming the field, did-you-mean for typos), and the
// placement of a team over the hosts (leads here, workers dealt out within maxInstances).
import { FileSystem, Path } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { homedir } from "node:os"
import * as Config from "../src/Config.js"
import * as H from "../src/Hierarchy.js"
import { placementOf, remoteWorktree, resumedPlacement } from "../src/HostsPlacement.js"
import { placement, resolveHosts } from "../src/HostsConfig.js"
import { aboutOrigin, mentioned } from "../src/HostsGit.js"
import { tempDir } from "./support.js"

const minimal = { repositoryUrl: "https://example.test/org/repo.git", workerCount: 4 }
const box = { name: "box-1", ssh: "me@box-1", workdir: "/srv/cco" }

const load = (orchestrator: object) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const dir = yield* tempDir("cco-hosts-")
    yield* fs.writeFileString(path.join(dir, "orchestrator.json"), JSON.stringify(orchestrator))
    return { dir, result: yield* Config.loadConfig(dir).pipe(Effect.either) }
  }).pipe(Effect.provide(NodeContext.layer))

const problem = (orchestrator: object) =>
  Effect.map(load(orchestrator), ({ dir, result }) => {
    if (result._tag === "Right") throw new Error("accepted")
    return { summary: result.left.summary.replace(`${dir}/orchestrator.json: `, ""), field: result.left.field }
  })

describe("config hosts", () => {
  it.scoped("absent: this machine only (validate shows no hosts); given: resolved with defaults, paths made absolute", () =>
    Effect.gen(function*() {
      const plain = yield* load(minimal)
      if (plain.result._tag === "Left") throw plain.result.left
      expect(plain.result.right.hosts).toBeUndefined()
      expect(Config.redactedView(plain.result.right)).not.toHaveProperty("hosts")
      expect([...placementOf(plain.result.right).values()]).toEqual(["local", "local", "local", "local", "local"])

      const { dir, result } = yield* load({
        ...minimal,
        hosts: [{ name: "local", maxInstances: 3 }, { ...box, port: 2222, identityFile: "~/.ssh/id_ed25519", knownHostsFile: "keys/known_hosts" }]
      })
      if (result._tag === "Left") throw result.left
      const view = Config.redactedView(result.right) as { hosts: ReadonlyArray<object> }
      expect(view.hosts).toEqual([
        { name: "local", maxInstances: 3 },
        {
          name: "box-1",
          ssh: "me@box-1",
          port: 2222,
          identityFile: `${homedir()}/.ssh/id_ed25519`,
          workdir: "/srv/cco",
          maxInstances: 26,
          strictHostKeyChecking: "yes",
          knownHostsFile: `${dir}/keys/known_hosts`,
          nodeCommand: "node"
        }
      ])

      // setupCommand goes with remote hosts: it runs in each worktree on that worktree's host.
      const withSetup = yield* load({ ...minimal, setupCommand: "npm ci", hosts: [{ name: "local" }, box] })
      if (withSetup.result._tag === "Left") throw withSetup.result.left
      expect([withSetup.result.right.setupCommand, withSetup.result.right.hosts?.map((h) => h.name)]).toEqual(["npm ci", ["local", "box-1"]])
    }))

  it.scoped("each mistake is one line naming the field; a typo gets a did-you-mean", () =>
    Effect.gen(function*() {
      expect(yield* problem({ ...minimal, hosts: [{ ...box, identityfile: "~/.ssh/k" }] })).toEqual({
        field: "hosts[0].identityfile",
        summary: "hosts[0].identityfile: unknown host option; did you mean identityFile?"
      })
      expect((yield* problem({ ...minimal, hosts: [{ name: "box-1", workdir: "/srv" }] })).summary).toBe(
        "hosts[0].ssh: is required for a remote host (\"user@host\")"
      )
      expect((yield* problem({ ...minimal, hosts: [{ name: "box-1", ssh: "me@box-1" }] })).summary).toMatch(/^hosts\[0\]\.workdir: is required/)
      expect((yield* problem({ ...minimal, hosts: [{ ...box, workdir: "srv/cco" }] })).summary).toMatch(/^hosts\[0\]\.workdir: must be an absolute path/)
      expect((yield* problem({ ...minimal, hosts: [box, { ...box }] })).summary).toBe("hosts[1].name: \"box-1\" is listed twice")
      expect((yield* problem({ ...minimal, hosts: [{ name: "local", ssh: "me@here" }] })).summary).toMatch(/^hosts\[0\]\.ssh: is not allowed for "local"/)
      expect((yield* problem({ ...minimal, hosts: [{ ...box, ssh: "-oProxyCommand=x" }] })).summary).toMatch(/^hosts\[0\]\.ssh: must be "user@host" or "host"/)
      expect((yield* problem({ ...minimal, hosts: [{ ...box, port: 70000 }] })).summary).toBe("hosts[0].port: must be a port from 1 to 65535, got 70000")
      expect((yield* problem({ ...minimal, hosts: [] })).summary).toMatch(/^hosts: must list at least one host/)
      // 4 workers and their EM do not fit on one local slot and two remote ones.
      expect(yield* problem({ ...minimal, hosts: [{ name: "local", maxInstances: 1 }, { ...box, maxInstances: 2 }] })).toEqual({
        field: "hosts",
        summary: "hosts: the hosts have room for 3 instances (maxInstances), but the team has 5"
      })
    }))
})

describe("placement", () => {
  const hosts = (...h: Array<object>) => resolveHosts(h as never, (p) => p)
  const team = (workers: number, group = 4) => H.instances(H.topology(workers, group), { target: "main", prefix: "cco/r" })

  it("leads stay here; workers are dealt over the hosts in turn, each within its maxInstances", () => {
    const placed = placement(hosts({ name: "local" }, box, { ...box, name: "box-2" }), team(6, 3))
    expect(Object.fromEntries(placed as Map<string, string>)).toEqual({
      director: "local",
      "em-1": "local",
      "em-2": "local",
      "worker-1": "local",
      "worker-2": "box-1",
      "worker-3": "box-2",
      "worker-4": "local",
      "worker-5": "box-1",
      "worker-6": "box-2"
    })
    // "local" full with its leads and one worker: the rest go out.
    const tight = placement(hosts({ name: "local", maxInstances: 2 }, { ...box, maxInstances: 2 }), team(3))
    expect(Object.fromEntries(tight as Map<string, string>)).toEqual({ "em-1": "local", "worker-1": "local", "worker-2": "box-1", "worker-3": "box-1" })
    // Without "local" in the list only the leads run here.
    const away = placement(hosts(box), team(2))
    expect(Object.fromEntries(away as Map<string, string>)).toEqual({ "em-1": "local", "worker-1": "box-1", "worker-2": "box-1" })
    expect(placement(hosts({ name: "local", maxInstances: 1 }), team(1))).toMatch(/room for 1 instances/)
  })

  it("a remote instance's worktree and clone are under its host's workdir, one folder per run", () =>
    Effect.gen(function*() {
      const { result } = yield* load({ ...minimal, workerCount: 2, hosts: [{ name: "local" }, box] })
      if (result._tag === "Left") throw result.left
      expect(remoteWorktree(result.right, "2026-01-01_00-00-00", "worker-2")).toEqual({
        host: "box-1",
        repoDir: "/srv/cco/2026-01-01_00-00-00/repo",
        worktree: "/srv/cco/2026-01-01_00-00-00/worktrees/worker-2"
      })
      expect(remoteWorktree(result.right, "2026-01-01_00-00-00", "worker-1")).toBeUndefined()
    }).pipe(Effect.scoped))
})

describe("resuming a run over hosts", () => {
  it.scoped("instances stay where the run left them: moved here stays here; placed elsewhere now is refused", () =>
    Effect.gen(function*() {
      const { result } = yield* load({ ...minimal, workerCount: 2, hosts: [{ name: "local" }, box] })
      if (result._tag === "Left") throw result.left
      const config = result.right
      const was = (hosts: Record<string, string | undefined>) => ({ instances: Object.entries(hosts).map(([name, host]) => ({ name, ...(host === undefined ? {} : { host }) })) }) as never
      // As placed: nothing moves.
      expect(resumedPlacement(config, was({ "em-1": "local", "worker-1": "local", "worker-2": "box-1" }))).toEqual([])
      // Moved here after its host went down (or run before the config had hosts): it stays here.
      expect(resumedPlacement(config, was({ "em-1": "local", "worker-1": "local", "worker-2": "local" }))).toEqual(["worker-2"])
      expect(resumedPlacement(config, was({ "em-1": undefined, "worker-1": undefined, "worker-2": undefined }))).toEqual(["worker-2"])
      // Ran there, placed here (or on another host) now: its worktree and conversation are there.
      expect(resumedPlacement(config, was({ "em-1": "local", "worker-1": "box-1", "worker-2": "box-1" }))).toBe(
        "worker-1 ran on host box-1, and the config now places it on this machine; resume with the `hosts` the run started with (or `cco cleanup` it and start a new run)"
      )
      expect(resumedPlacement(config, was({ "em-1": "local", "worker-1": "local", "worker-2": "box-9" }))).toMatch(/^worker-2 ran on host box-9, and the config now places it on host box-1;/)
    }))
})

describe("git over hosts: which branches a command names, and what is about origin", () => {
  it("branch names in ranges, refs, revisions and refspecs; never options or paths", () => {
    expect(mentioned(["rev-list", "--count", "cco/r/em-1..cco/r/worker-2"])).toEqual(["rev-list", "cco/r/em-1", "cco/r/worker-2"])
    expect(mentioned(["diff", "--stat", "main...cco/r/worker-10"])).toEqual(["diff", "main", "cco/r/worker-10"])
    expect(mentioned(["rev-parse", "--verify", "refs/heads/cco/r/worker-2^{commit}"])).toEqual(["rev-parse", "cco/r/worker-2"])
    expect(mentioned(["push", "--quiet", "cco-origin", "0123abc:refs/heads/cco/r/worker-2"])).toEqual(["push", "cco-origin", "0123abc", "cco/r/worker-2"])
    expect(mentioned(["worktree", "add", "--quiet", "--no-checkout", "/srv/cco/r/worktrees/worker-2", "cco/r/worker-2"])).toEqual(["worktree", "add", "cco/r/worker-2"])
    expect(mentioned(["merge", "--no-ff", "-m", "Merge worker-2 (cco/r/worker-2) into main", "HEAD~1"])).toEqual(["merge", "HEAD"])
  })

  it("pushes, remote-tracking refs and remote or branch config are made from the run's clone", () => {
    expect(aboutOrigin(["push", "--quiet", "cco-origin", "a:refs/heads/b"])).toBe(true)
    expect(aboutOrigin(["update-ref", "refs/remotes/origin/b", "a"])).toBe(true)
    expect(aboutOrigin(["config", "--get", "remote.origin.url"])).toBe(true)
    expect(aboutOrigin(["config", "--local", "branch.b.remote", "origin"])).toBe(true)
    expect(aboutOrigin(["update-ref", "refs/heads/b", "a"])).toBe(false)
    expect(aboutOrigin(["config", "--get-regexp", "^user\\.(name|email)$"])).toBe(false)
    expect(aboutOrigin(["status", "--porcelain"])).toBe(false)
  })
})
