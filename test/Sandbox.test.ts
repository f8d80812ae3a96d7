// Sandbox: which mode gives what on this machine, and what an instance's bwrap lets it touch (a real bwrap around
// git and sh in a clone laid out as cco lays out a run: repo/, worktrees/<name>, instances/<name>/).
import { describe, expect, it } from "@effect/vitest"
import { afterAll } from "vitest"
import { NodeContext } from "@effect/platform-node"
import { Effect, Either } from "effect"
import { spawn } from "node:child_process"
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from "node:fs"
import * as net from "node:net"
import { tmpdir } from "node:os"
import * as path from "node:path"
import * as Doctor from "../src/Doctor.js"
import { makeProgress } from "../src/Progress.js"
import * as Sandbox from "../src/Sandbox.js"
import * as SandboxRemote from "../src/SandboxRemote.js"
import { git } from "./harness.js"

const PATH = process.env.PATH ?? "/usr/bin:/bin"
const run = <A, E>(effect: Effect.Effect<A, E, NodeContext.NodeContext>) => Effect.runPromise(Effect.provide(effect, NodeContext.layer))
const probed = await run(Sandbox.probe(PATH))
const canConfine = probed._tag === "Usable" || process.env.CI !== undefined

const tempDir = (prefix: string) => mkdtempSync(path.join(tmpdir(), prefix))

// The fake bubblewraps' directories, removed when the file's tests are done (also when one fails).
const fakes: Array<string> = []
afterAll(() => fakes.forEach((dir) => rmSync(dir, { recursive: true, force: true })))

/** A directory holding an executable `bwrap` that fails as it does in a container without user namespaces. */
const brokenBwrap = () => {
  const dir = tempDir("cco-fake-bwrap-")
  fakes.push(dir)
  writeFileSync(path.join(dir, "bwrap"), "#!/bin/sh\necho 'bwrap: No permissions to create new namespace, likely because the kernel does not allow non-privileged user namespaces.' >&2\nexit 1\n")
  chmodSync(path.join(dir, "bwrap"), 0o755)
  return dir
}

describe("Sandbox.resolve", () => {
  it("none never looks for bubblewrap", async () => {
    const s = await run(Sandbox.resolve("none", "/nonexistent"))
    expect(s).toMatchObject({ _tag: "Unconfined", mode: "none" })
    expect(Sandbox.label(s)).toBe("none")
  })

  it("bwrap without bubblewrap on PATH, or with one that cannot confine here, refuses with the fix", async () => {
    const missing = await run(Effect.either(Sandbox.resolve("bwrap", "/nonexistent")))
    expect(Either.isLeft(missing) && missing.left.message).toBe(
      `sandbox "bwrap" is required but bubblewrap (bwrap) is not on PATH; ${Sandbox.INSTALL_HINT}`
    )
    const broken = await run(Effect.either(Sandbox.resolve("bwrap", brokenBwrap())))
    expect(Either.isLeft(broken) && broken.left.message).toMatch(/cannot confine on this machine: bwrap: No permissions to create new namespace/)
  })

  it("auto falls back to unconfined and says why", async () => {
    expect(await run(Sandbox.resolve("auto", "/nonexistent"))).toEqual({ _tag: "Unconfined", mode: "auto", reason: "bubblewrap (bwrap) is not on PATH" })
    const broken = await run(Sandbox.resolve("auto", brokenBwrap()))
    expect(broken._tag).toBe("Unconfined")
    expect(Sandbox.logFields(broken)).toMatchObject({ sandbox: "none", sandboxMode: "auto" })
  })

  it.skipIf(!canConfine)("auto and bwrap confine where bubblewrap works", async () => {
    for (const mode of ["auto", "bwrap"] as const) {
      const s = await run(Sandbox.resolve(mode, PATH))
      expect(s).toMatchObject({ _tag: "Bwrap", mode })
      expect(Sandbox.logFields(s)).toEqual({ sandbox: "bwrap", sandboxMode: mode })
    }
  })

  it("doctor: ok for none and for a working bwrap, a warning for auto and a failure for bwrap without one", async () => {
    expect(await run(Doctor.checkSandbox("none", "/nonexistent"))).toMatchObject({ name: "sandbox", level: "ok" })
    expect(await run(Doctor.checkSandbox("auto", "/nonexistent"))).toMatchObject({ level: "warn", fix: Sandbox.INSTALL_HINT })
    expect((await run(Doctor.checkSandbox("auto", "/nonexistent"))).detail).toContain("UNCONFINED")
    expect(await run(Doctor.checkSandbox("bwrap", brokenBwrap()))).toMatchObject({ level: "fail", fix: Sandbox.INSTALL_HINT })
    if (probed._tag === "Usable") expect(await run(Doctor.checkSandbox("auto", PATH))).toMatchObject({ level: "ok" })
  })
})

describe("cco run's progress", () => {
  it("says loudly when auto runs unconfined, briefly when confined, nothing when none was asked for", () => {
    const line = (fields: Record<string, unknown>) => makeProgress()({ time: "", event: "run.sandbox", ...fields } as never)
    expect(line({ sandbox: "none", sandboxMode: "auto", sandboxReason: "bubblewrap (bwrap) is not on PATH" })).toMatch(
      /^WARNING: instances run UNCONFINED, with all your files in reach: bubblewrap \(bwrap\) is not on PATH\. Install bubblewrap/
    )
    expect(line({ sandbox: "bwrap", sandboxMode: "auto" })).toContain("confined with bubblewrap")
    expect(line({ sandbox: "none", sandboxMode: "none" })).toBeUndefined()
  })
})

describe("Sandbox.skeletonDirs", () => {
  it("the directories made on a private tmpfs to hold mount points, not those inside a mount", () => {
    expect(Sandbox.skeletonDirs(["/tmp/r/worktrees/w1", "/tmp/r/repo/.git", "/tmp/r/repo/.git/objects", "/usr", "/home/u/x/y"])).toEqual([
      "/tmp/r",
      "/tmp/r/repo",
      "/tmp/r/worktrees"
    ])
  })
})

/** A run folder as cco lays it out: a clone with the run's branches, two worktrees, instance dirs with tokens. */
const runFolder = () => {
  const root = tempDir("cco-sandbox-")
  const origin = path.join(root, "origin")
  mkdirSync(origin)
  git(origin, "init", "-q", "-b", "main")
  writeFileSync(path.join(origin, "a.txt"), "a\n")
  git(origin, "add", "-A")
  git(origin, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "init")
  const folder = path.join(root, "run")
  const repo = path.join(folder, "repo")
  git(root, "clone", "-q", "--no-checkout", origin, repo)
  git(repo, "checkout", "-q", "--detach", "origin/main")
  git(repo, "config", "user.name", "cco test")
  git(repo, "config", "user.email", "test@cco.invalid")
  git(repo, "branch", "-q", "main-copy", "origin/main")
  for (const name of ["w1", "w2"]) {
    git(repo, "branch", "-q", `cco/R/${name}`, "origin/main")
    git(repo, "worktree", "add", "-q", path.join(folder, "worktrees", name), `cco/R/${name}`)
    mkdirSync(path.join(folder, "instances", name, "claude"), { recursive: true })
    writeFileSync(path.join(folder, "instances", name, "token.sha256"), "digest\n")
  }
  writeFileSync(path.join(folder, "state.json"), "{}\n")
  mkdirSync(path.join(folder, "bin"))
  const home = path.join(root, "home")
  mkdirSync(home)
  return { root, folder, repo, home }
}

describe("an instance inside bwrap", () => {
  it.skipIf(!canConfine)("commits on its own branch; reaches nothing else of the run, the home or the machine", async () => {
    const r = runFolder()
    mkdirSync(path.join(r.folder, "control"))
    const socketPath = path.join(r.folder, "control", "control.sock")
    const server = net.createServer((c) => c.end("pong\n"))
    await new Promise<void>((resolve) => server.listen(socketPath, resolve))
    try {
      const sandbox = await run(Sandbox.resolve("bwrap", PATH))
      if (sandbox._tag !== "Bwrap") throw new Error("no bwrap")
      const worktree = path.join(r.folder, "worktrees", "w1")
      const script = [
        "set +e",
        "attempt() { if ( eval \"$2\" ) >/dev/null 2>&1; then echo \"$1: done\"; else echo \"$1: blocked\"; fi; }",
        "attempt commit 'echo b > b.txt && git add b.txt && git commit -q -m work'",
        `attempt 'write home' 'echo x > ${r.home}/x'`,
        "attempt 'write other worktree' 'echo x > ../w2/x'",
        "attempt 'read other token' 'cat ../../instances/w2/token.sha256'",
        "attempt 'read own token' 'cat ../../instances/w1/token.sha256'",
        "attempt 'read state' 'cat ../../state.json'",
        "attempt 'write run folder' 'echo x > ../../x'",
        "attempt 'write other config dir' 'echo x > ../../instances/w2/claude/x'",
        "attempt 'write own config dir' 'echo x > ../../instances/w1/claude/x'",
        "attempt 'write private home' 'echo x > \"$HOME/x\"'",
        "attempt 'move target branch' 'git update-ref refs/heads/main-copy HEAD'",
        "attempt 'write git config' 'git config --local core.fsmonitor true'",
        "attempt 'repoint .git' 'echo gitdir: /tmp > .git'",
        "attempt 'repoint commondir' \"echo /tmp > $(git rev-parse --git-dir)/commondir\"",
        `attempt 'control socket' 'node -e "require(\\"net\\").connect(process.argv[1]).on(\\"data\\", () => process.exit(0)).on(\\"error\\", () => process.exit(1))" ${socketPath}'`,
        "attempt 'see other processes' 'test $(ls /proc | grep -c \"^[0-9]\") -gt 10'",
        "attempt 'capabilities' 'grep -q \"^CapEff:[[:space:]]*0*[1-9a-f]\" /proc/self/status'"
      ].join("\n")
      const argv = await run(Sandbox.confine(sandbox, {
        worktree,
        configDir: path.join(r.folder, "instances", "w1", "claude"),
        home: path.join(r.folder, "instances", "w1", "home"),
        binDir: path.join(r.folder, "bin"),
        socketPath,
        claudePath: "/bin/sh",
        clientCommand: [process.execPath, path.join(import.meta.dirname, "..", "bin", "cco-client.mjs")]
      }, ["/bin/sh", "-c", script]))
      const out = await new Promise<string>((resolve) => {
        const child = spawn(argv[0]!, argv.slice(1), { cwd: worktree, stdio: ["ignore", "pipe", "inherit"] })
        let text = ""
        child.stdout.on("data", (d) => (text += d))
        child.on("exit", () => resolve(text))
      })
      expect(out.trim().split("\n")).toEqual([
        "commit: done",
        "write home: blocked",
        "write other worktree: blocked",
        "read other token: blocked",
        "read own token: blocked",
        "read state: blocked",
        "write run folder: blocked",
        "write other config dir: blocked",
        "write own config dir: done",
        "write private home: done",
        "move target branch: blocked",
        "write git config: blocked",
        "repoint .git: blocked",
        "repoint commondir: blocked",
        "control socket: done",
        "see other processes: blocked",
        "capabilities: blocked"
      ])
      // The commit is on its branch in the shared clone; nothing landed outside.
      expect(git(r.repo, "log", "-1", "--format=%s", "cco/R/w1").trim()).toBe("work")
      expect(git(r.repo, "log", "-1", "--format=%an", "cco/R/w1").trim()).toBe("cco test")
      expect(existsSync(path.join(r.home, "x"))).toBe(false)
      expect(existsSync(path.join(r.folder, "x"))).toBe(false)
      expect(readFileSync(path.join(r.folder, "instances", "w1", "home", "x"), "utf8")).toBe("x\n")
    } finally {
      server.close()
      rmSync(r.root, { recursive: true, force: true })
    }
  }, 30_000)
})

describe("Sandbox on a remote host (read there by one script: Sandbox.mountsThere)", () => {
  it("finds what mountsFor finds on disk, and confineThere builds the same bwrap command as confine", async () => {
    const r = runFolder()
    try {
      const sandbox = { _tag: "Bwrap", mode: "bwrap", bwrap: "/usr/bin/bwrap", version: "bubblewrap" } as const
      const caFile = path.join(r.root, "ca.pem")
      writeFileSync(caFile, "ca\n")
      const paths = (name: string) => ({
        worktree: path.join(r.folder, "worktrees", name),
        configDir: path.join(r.folder, "instances", name, "claude"),
        home: path.join(r.folder, "instances", name, "home"),
        binDir: path.join(r.folder, "bin"),
        socketPath: path.join(r.folder, "control", "control.sock"),
        claudePath: "/bin/sh",
        clientCommand: [process.execPath, path.join(import.meta.dirname, "..", "bin", "cco-client.mjs")],
        extraFiles: [caFile, path.join(r.root, "no-such-file.pem")]
      })
      // w1 on its branch; w2 detached (a rebase stopped halfway): no branch directory is writable.
      git(path.join(r.folder, "worktrees", "w2"), "checkout", "-q", "--detach")
      for (const name of ["w1", "w2"]) {
        const there = await run(SandboxRemote.mountsThere(paths(name)))
        expect(existsSync(paths(name).home)).toBe(true)
        const here = await run(Sandbox.mountsFor(paths(name)))
        expect(there.mounts).toEqual(here)
        expect(there.claude).toBe(realpathSync("/bin/sh"))
        const identity = Effect.succeed("[user]\n\tname = \"cco test\"\n")
        const confinedThere = await run(SandboxRemote.confineThere(sandbox, paths(name), ["/bin/sh", "-c", "true"], identity))
        expect(confinedThere).toEqual(await run(Sandbox.confine(sandbox, paths(name), ["/bin/sh", "-c", "true"], identity)))
        expect(readFileSync(path.join(paths(name).home, ".gitconfig"), "utf8")).toBe("[user]\n\tname = \"cco test\"\n")
      }
      expect((await run(SandboxRemote.mountsThere(paths("w1")))).mounts.git.refDir).toBe(path.join(r.repo, ".git", "refs", "heads", "cco", "R"))
      // Not a worktree: said, with the path.
      const broken = await run(Effect.either(SandboxRemote.mountsThere({ ...paths("w1"), worktree: r.home })))
      expect(Either.isLeft(broken) && broken.left.message).toContain(`reading ${r.home}'s mounts`)
    } finally {
      rmSync(r.root, { recursive: true, force: true })
    }
  })
})
