// Worktree against real git: a temp bare repository as origin, a run clone, worktrees for each role.
// The user's .env files are simulated as untracked files placed in the clone's root after cloning.
import { FileSystem, Path } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { exec } from "../src/Exec.js"
import { GitError, hasConflictStructure, MergeResult, runBranchName, stripCredentials, Worktree } from "../src/Worktree.js"

// Behave like a machine with no git config at all (no identity, no signing, no hooks path).
const savedEnv = { global: process.env.GIT_CONFIG_GLOBAL, nosystem: process.env.GIT_CONFIG_NOSYSTEM }
beforeAll(() => {
  process.env.GIT_CONFIG_GLOBAL = "/dev/null"
  process.env.GIT_CONFIG_NOSYSTEM = "1"
})
afterAll(() => {
  if (savedEnv.global === undefined) delete process.env.GIT_CONFIG_GLOBAL
  else process.env.GIT_CONFIG_GLOBAL = savedEnv.global
  if (savedEnv.nosystem === undefined) delete process.env.GIT_CONFIG_NOSYSTEM
  else process.env.GIT_CONFIG_NOSYSTEM = savedEnv.nosystem
})

const testerEnv = {
  GIT_AUTHOR_NAME: "tester",
  GIT_AUTHOR_EMAIL: "tester@example.invalid",
  GIT_COMMITTER_NAME: "tester",
  GIT_COMMITTER_EMAIL: "tester@example.invalid",
  LC_ALL: "C"
}

/** Plain git as a user or agent would run it; a non-zero exit fails the test. */
const sh = (cwd: string, ...args: Array<string>) =>
  exec("git", args, { cwd, env: testerEnv }).pipe(
    Effect.orDie,
    Effect.flatMap((r) =>
      r.exitCode === 0
        ? Effect.succeed(r.stdout.trim())
        : Effect.dieMessage(`git ${args.join(" ")} in ${cwd} failed: ${r.stderr}`)
    )
  )

/** Like sh, but for agents' commits, which carry no identity of their own. */
const agentGit = (cwd: string, ...args: Array<string>) =>
  exec("git", args, { cwd, env: { LC_ALL: "C" } }).pipe(
    Effect.orDie,
    Effect.flatMap((r) =>
      r.exitCode === 0
        ? Effect.succeed(r.stdout.trim())
        : Effect.dieMessage(`git ${args.join(" ")} in ${cwd} failed: ${r.stderr}`)
    )
  )

const write = (file: string, content: string) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    yield* fs.makeDirectory(path.dirname(file), { recursive: true })
    yield* fs.writeFileString(file, content)
  }).pipe(Effect.orDie)

const read = (file: string) => Effect.flatMap(FileSystem.FileSystem, (fs) => fs.readFileString(file)).pipe(Effect.orDie)

const exists = (file: string) => Effect.flatMap(FileSystem.FileSystem, (fs) => fs.exists(file)).pipe(Effect.orDie)

/** A bare origin with one commit on main, and the run clone prepared from it. */
const setup = Effect.gen(function*() {
  const fs = yield* FileSystem.FileSystem
  const path = yield* Path.Path
  const root = yield* fs.makeTempDirectoryScoped({ prefix: "cco-worktree-test-" }).pipe(Effect.orDie)
  const bare = path.join(root, "origin.git")
  const seed = path.join(root, "seed")
  yield* sh(root, "init", "--quiet", "--bare", "--initial-branch=main", bare)
  yield* sh(root, "init", "--quiet", "--initial-branch=main", seed)
  yield* write(path.join(seed, "README.md"), "# project\nline two\n")
  yield* write(path.join(seed, "PROJECT_DIRECTION.md"), "Build the thing.\n")
  yield* sh(seed, "add", "-A")
  yield* sh(seed, "commit", "--quiet", "-m", "initial")
  yield* sh(seed, "remote", "add", "origin", bare)
  yield* sh(seed, "push", "--quiet", "origin", "main")
  const worktree = yield* Worktree
  const clone = yield* worktree.prepareClone(bare, path.join(root, "workspace", "repo"))
  const wt = (name: string) => path.join(root, "workspace", "worktrees", name)
  return { root, bare, seed, clone, wt, worktree, path }
})

/** The clone plus Director (main), EM (team/1) and worker (worker/1) worktrees. */
const setupTeam = Effect.gen(function*() {
  const env = yield* setup
  const { worktree, clone, wt } = env
  yield* worktree.addWorktree(clone, wt("director"), "main", "main")
  yield* worktree.addWorktree(clone, wt("em-1"), "team/1", "main")
  yield* worktree.addWorktree(clone, wt("worker-1"), "worker/1", "team/1")
  return { ...env, director: wt("director"), em: wt("em-1"), worker: wt("worker-1") }
})

/** Commits as an agent does (identity from the clone's config); pass sh for the user's seed repository. */
const commitIn = (dir: string, file: string, content: string, message: string, git = agentGit) =>
  Effect.gen(function*() {
    const path = yield* Path.Path
    yield* write(path.join(dir, file), content)
    yield* git(dir, "add", "-A")
    yield* git(dir, "commit", "--quiet", "-m", message)
    return yield* sh(dir, "rev-parse", "HEAD")
  })

const TestLayer = Layer.merge(Worktree.Default, NodeContext.layer)

describe("runBranchName", () => {
  it("formats local time as run/YYYY-MM-DD-HH-MM", () => {
    expect(runBranchName(new Date(2026, 0, 5, 7, 3, 59))).toBe("run/2026-01-05-07-03")
    expect(runBranchName(new Date(2026, 11, 31, 23, 59))).toBe("run/2026-12-31-23-59")
  })
})

describe("stripCredentials", () => {
  it("removes userinfo from URLs", () => {
    expect(stripCredentials("fatal: https://bob:s3cret@example.com/a.git failed")).toBe(
      "fatal: https://***@example.com/a.git failed"
    )
    expect(stripCredentials("https://ghp_token@github.com/o/r")).toBe("https://***@github.com/o/r")
    expect(stripCredentials("/srv/repo.git")).toBe("/srv/repo.git")
  })
})

describe("hasConflictStructure", () => {
  it("needs <<<<<<<, a separator of the same size, then >>>>>>>; an underline or a quote alone is no conflict", () => {
    expect(hasConflictStructure(["<<<<<<< HEAD", "a", "=======", "b", ">>>>>>> worker/2"])).toBe(true)
    expect(hasConflictStructure(["<<<<<<< ours", "a", "||||||| base", "o", "=======", "b", ">>>>>>> theirs"])).toBe(true)
    expect(hasConflictStructure(["<<<<<<< HEAD\r", "a\r", "=======\r", ">>>>>>> x\r"])).toBe(true)
    expect(hasConflictStructure(["<<<<<<<", "=======", ">>>>>>>"])).toBe(true)
    // RST / Markdown underlines, quoted mail, a marker only mentioned in a sentence.
    expect(hasConflictStructure(["Title", "=======", "", "text"])).toBe(false)
    expect(hasConflictStructure([">>>>>>> deeply quoted", "=======", ">>>>>>> x"])).toBe(false)
    expect(hasConflictStructure(["<<<<<<< HEAD", "a", ">>>>>>> x"])).toBe(false)
    expect(hasConflictStructure(["use <<<<<<< HEAD to see", "=======", ">>>>>>> x"])).toBe(false)
    expect(hasConflictStructure(["<<<<<<<< eight", "=======", ">>>>>>> seven"])).toBe(false)
    expect(hasConflictStructure(["<<<<<<<x", "=======", ">>>>>>> x"])).toBe(false)
  })
})

describe("Worktree", () => {
  it.layer(TestLayer)((it) => {
    it.scoped("prepareClone works whatever origin's HEAD names; a configured branch that does not exist is named", () =>
      Effect.gen(function*() {
        const { worktree, bare, root, path } = yield* setup
        // What `git init --bare` leaves when its default branch is not the one pushed.
        yield* sh(bare, "--git-dir", bare, "symbolic-ref", "HEAD", "refs/heads/nonexistent")
        const clone = yield* worktree.prepareClone(bare, path.join(root, "unborn-head"), "main")
        expect(yield* worktree.currentBranch(clone)).toBe("HEAD")
        expect(yield* sh(clone, "rev-parse", "HEAD")).toBe(yield* sh(clone, "rev-parse", "origin/main"))
        expect(yield* read(path.join(clone, "PROJECT_DIRECTION.md"))).toBe("Build the thing.\n")
        // The branches and worktrees of a run come from it as usual; a second call fetches.
        yield* worktree.ensureBranch(clone, "main", "origin/main")
        yield* worktree.addWorktree(clone, path.join(root, "unborn-wt"), "team/1", "main")
        expect(yield* worktree.prepareClone(bare, clone, "main")).toBe(clone)

        const missing = yield* Effect.flip(worktree.prepareClone(bare, path.join(root, "no-branch"), "develop"))
        expect(missing._tag).toBe("GitError")
        expect(missing.message).toBe(`branch develop does not exist in ${bare} (its branches: main)`)
        const again = yield* Effect.flip(worktree.prepareClone(bare, clone, "develop"))
        expect(again.message).toContain("branch develop does not exist")
      }))

    it.scoped("addedConflictMarkers: committed markers on a branch, and a resolution committed with them, are found", () =>
      Effect.gen(function*() {
        const { worktree, clone, director, em, worker, wt } = yield* setupTeam
        const start = yield* sh(clone, "rev-parse", "main")
        const conflict = "a\n<<<<<<< HEAD\nmine\n=======\ntheirs\n>>>>>>> other\nz\n"
        // A fixture that holds markers on purpose, already on the base: never counted, edited or renamed.
        yield* commitIn(director, "test/fixture.txt", conflict, "fixture")
        yield* agentGit(em, "merge", "--quiet", "main")
        // Counted against a start before it (it came during the run), not against one after.
        expect(yield* worktree.addedConflictMarkers(em, start, "main")).toEqual(["test/fixture.txt"])
        const emStart = yield* sh(em, "rev-parse", "HEAD")
        expect(yield* worktree.addedConflictMarkers(em, emStart, "HEAD")).toEqual([])
        yield* agentGit(worker, "merge", "--quiet", "team/1")
        expect(yield* worktree.addedConflictMarkers(worker, "team/1", "worker/1")).toEqual([])

        yield* commitIn(worker, "docs/guide.rst", "Guide\n=======\n\n>>>>>>> quoted\n", "an underline and a quote")
        yield* agentGit(worker, "mv", "test/fixture.txt", "test/moved.txt")
        yield* agentGit(worker, "commit", "--quiet", "-m", "rename the fixture")
        yield* commitIn(worker, "test/moved.txt", `${conflict}more\n`, "extend the fixture")
        expect(yield* worktree.addedConflictMarkers(worker, "team/1", "worker/1")).toEqual([])

        // Committed markers, as a worker's `git add -A && git commit` takes them, in a file with spaces in its name.
        yield* commitIn(worker, "src/my file.ts", "export const a = 1\n<<<<<<< HEAD\nb\n=======\nc\n>>>>>>> x\n", "markers")
        expect(yield* worktree.addedConflictMarkers(worker, "team/1", "worker/1")).toEqual(["src/my file.ts"])
        expect(yield* worktree.addedConflictMarkers(em, "HEAD", "worker/1")).toEqual(["src/my file.ts"])
        // The working tree is clean: the old check sees nothing.
        expect(yield* worktree.conflictMarkers(worker)).toEqual([])
        yield* commitIn(worker, "src/my file.ts", "export const a = 1\nb\nc\n", "fixed")
        expect(yield* worktree.addedConflictMarkers(worker, "team/1", "worker/1")).toEqual([])

        // A lead resolves a conflict by committing the markers: found on its branch against the run's start.
        yield* worktree.addWorktree(clone, wt("worker-2"), "worker/2", "team/1")
        yield* commitIn(worker, "README.md", "# project\nfrom worker one\n", "one")
        yield* commitIn(wt("worker-2"), "README.md", "# project\nfrom worker two\n", "two")
        expect((yield* worktree.merge(em, "worker/1", { message: "m1" }))._tag).toBe("Merged")
        expect(yield* worktree.addedConflictMarkers(em, emStart, "HEAD")).toEqual([])
        expect((yield* worktree.merge(em, "worker/2", { message: "m2", keepConflict: true }))._tag).toBe("Conflict")
        yield* agentGit(em, "add", "-A")
        yield* agentGit(em, "commit", "--quiet", "--no-edit")
        expect(yield* worktree.mergeInProgress(em)).toBe(false)
        expect(yield* worktree.conflictMarkers(em)).toEqual([])
        expect(yield* worktree.addedConflictMarkers(em, emStart, "HEAD")).toEqual(["README.md"])
        expect((yield* worktree.merge(em, "worker/2", { message: "again" }))._tag).toBe("AlreadyUpToDate")
        yield* commitIn(em, "README.md", "# project\nfrom worker one\nfrom worker two\n", "resolve properly")
        expect(yield* worktree.addedConflictMarkers(em, emStart, "HEAD")).toEqual([])
        // A binary file is not read as text.
        yield* commitIn(em, "blob.bin", "\0<<<<<<< x\n=======\n>>>>>>> y\n", "binary")
        expect(yield* worktree.addedConflictMarkers(em, emStart, "HEAD")).toEqual([])
      }))

    it.scoped("vetCommits: conflict markers, a change to TEAM_STRUCTURE.md and a huge file, even one removed again", () =>
      Effect.gen(function*() {
        const { worktree, director, worker } = yield* setupTeam
        yield* commitIn(worker, "src/ok.ts", "export const ok = 1\n", "ok")
        expect(yield* worktree.vetCommits(worker, "team/1", "worker/1")).toEqual([])

        // A build artefact committed by `git add -A`, then removed: its commit would still be pushed.
        yield* commitIn(worker, "dist/bundle.bin", "x".repeat(4096), "oops")
        yield* agentGit(worker, "rm", "--quiet", "dist/bundle.bin")
        yield* agentGit(worker, "commit", "--quiet", "-m", "remove it")
        expect(yield* worktree.largeFiles(worker, "team/1", "worker/1", 1000)).toEqual([{ file: "dist/bundle.bin", bytes: 4096 }])
        expect(yield* worktree.largeFiles(worker, "team/1", "worker/1", 5000)).toEqual([])
        expect(yield* worktree.largeFiles(worker, "worker/1", "worker/1", 1000)).toEqual([])

        yield* commitIn(worker, "TEAM_STRUCTURE.md", "# Team structure\n\nworker-1 leads everyone now.\n", "promote myself")
        const problems = yield* worktree.vetCommits(worker, "team/1", "worker/1")
        expect(problems).toEqual([expect.stringMatching(/^a change to TEAM_STRUCTURE\.md, which only cco writes: undo it \(git checkout \$\(git merge-base team\/1 HEAD\) -- TEAM_STRUCTURE\.md/)])
        expect(yield* worktree.vetCommits(worker, "team/1", "worker/1", { ccoOwned: false })).toEqual([])
        // cco's own commit of it on the target branch is no change by the branch's agent once merged into it.
        yield* worktree.commitFile(director, "TEAM_STRUCTURE.md", "# Team structure\n", "cco: update TEAM_STRUCTURE.md")
        expect(yield* worktree.changedAmong(director, "team/1", "main", ["TEAM_STRUCTURE.md"])).toEqual(["TEAM_STRUCTURE.md"])
        yield* agentGit(worker, "merge", "--quiet", "main", "-X", "theirs", "-m", "catch up")
        expect(yield* worktree.changedAmong(worker, "main", "worker/1", ["TEAM_STRUCTURE.md"])).toEqual([])

        yield* commitIn(worker, "a.txt", "<<<<<<< HEAD\nx\n=======\ny\n>>>>>>> z\n", "markers")
        expect((yield* worktree.vetCommits(worker, "main", "worker/1"))[0]).toMatch(/^conflict markers .* committed in a\.txt: edit them/)
        // A file name is shown to the lead with its control characters escaped, never as they are.
        yield* commitIn(worker, "b\u001b[201~\r.txt", "<<<<<<< HEAD\nx\n=======\ny\n>>>>>>> z\n", "markers again")
        const shown = (yield* worktree.vetCommits(worker, "main", "worker/1"))[0]!
        expect(shown).toContain(`a.txt, "b\\u001b[201~\\r.txt": edit them`)
        expect(shown).not.toMatch(/[\u001b\r]/)
      }))

    it.scoped("cco's git calls run no hook an agent installed (core.hooksPath, .git/hooks) and no fsmonitor", () =>
      Effect.gen(function*() {
        const { worktree, clone, em, worker, root, path } = yield* setupTeam
        const fs = yield* FileSystem.FileSystem
        const ran = path.join(root, "hook-ran")
        const hook = `#!/bin/sh\necho "$0" >> ${ran}\n`
        const hooks = path.join(root, "agent-hooks")
        for (const dir of [hooks, path.join(clone, ".git", "hooks")]) {
          for (const name of ["post-merge", "post-commit", "pre-push", "post-checkout", "reference-transaction"]) {
            yield* write(path.join(dir, name), hook)
            yield* fs.chmod(path.join(dir, name), 0o755).pipe(Effect.orDie)
          }
        }
        yield* agentGit(clone, "config", "core.hooksPath", hooks)
        yield* agentGit(clone, "config", "core.fsmonitor", `echo fsmonitor >> ${ran}; false`)
        yield* commitIn(worker, "f.ts", "f\n", "work")
        yield* fs.remove(ran).pipe(Effect.ignore)
        expect((yield* worktree.merge(em, "worker/1", { message: "m" }))._tag).toBe("Merged")
        yield* write(path.join(em, "g.ts"), "g\n")
        expect(yield* worktree.commitAll(em, "wip")).toBe(true)
        yield* worktree.push(em, "team/1")
        expect(yield* worktree.isClean(em)).toBe(true)
        expect(yield* exists(ran)).toBe(false)
        // The agent's own git still runs them.
        yield* commitIn(worker, "h.ts", "h\n", "more")
        expect(yield* exists(ran)).toBe(true)
      }))

    it.scoped("ensureBranches runs no hook an agent installed either (reference-transaction, receive hooks)", () =>
      Effect.gen(function*() {
        const { worktree, clone, root, path } = yield* setup
        const fs = yield* FileSystem.FileSystem
        const ran = path.join(root, "hook-ran")
        const hooks = path.join(root, "agent-hooks")
        for (const dir of [hooks, path.join(clone, ".git", "hooks")]) {
          for (const name of ["pre-receive", "update", "post-receive", "reference-transaction", "pre-push"]) {
            yield* write(path.join(dir, name), `#!/bin/sh\necho "$0" >> ${ran}\n`)
            yield* fs.chmod(path.join(dir, name), 0o755).pipe(Effect.orDie)
          }
        }
        yield* agentGit(clone, "config", "core.hooksPath", hooks)
        yield* worktree.ensureBranches(clone, [{ branch: "run/a", base: "main" }, { branch: "run/b", base: "run/a" }])
        expect(yield* sh(clone, "rev-parse", "run/b")).toBe(yield* sh(clone, "rev-parse", "main"))
        expect(yield* exists(ran)).toBe(false)
        // The hooks are real: the agent's own git runs them.
        yield* agentGit(clone, "update-ref", "refs/heads/run/c", "main")
        expect(yield* exists(ran)).toBe(true)
      }))

    it.scoped("prepareClone clones with a detached HEAD and an identity, then fetches on the second call", () =>
      Effect.gen(function*() {
        const { worktree, clone, bare, seed, path, root } = yield* setup
        expect(clone).toBe(path.join(root, "workspace", "repo"))
        expect(yield* worktree.currentBranch(clone)).toBe("HEAD")
        expect(yield* sh(clone, "config", "--local", "user.name")).toBe("cco")
        expect(yield* sh(clone, "config", "--local", "user.email")).toBe("cco@localhost")

        const next = yield* commitIn(seed, "NEW.md", "new\n", "second", sh)
        yield* sh(seed, "push", "--quiet", "origin", "main")
        expect(yield* sh(clone, "rev-parse", "origin/main")).not.toBe(next)
        expect(yield* worktree.prepareClone(bare, clone)).toBe(clone)
        expect(yield* sh(clone, "rev-parse", "origin/main")).toBe(next)
        expect(yield* worktree.currentBranch(clone)).toBe("HEAD")

        // A directory holding a clone of something else is not silently reused.
        const other = yield* Effect.flip(worktree.prepareClone(path.join(root, "elsewhere.git"), clone))
        expect(other).toBeInstanceOf(GitError)
        expect(other.message).toContain("already holds a clone of")
      }))

    it.scoped("prepareClone of a missing repository fails with a GitError saying so", () =>
      Effect.gen(function*() {
        const worktree = yield* Worktree
        const fs = yield* FileSystem.FileSystem
        const root = yield* fs.makeTempDirectoryScoped({ prefix: "cco-worktree-test-" }).pipe(Effect.orDie)
        const missing = `${root}/no-such-repo.git`
        const error = yield* Effect.flip(worktree.prepareClone(missing, `${root}/clone`))
        expect(error._tag).toBe("GitError")
        expect(error.operation).toContain("clone")
        expect(error.message).toContain(`repository '${missing}' does not exist`)

        // Credentials in the URL never reach the error (port 1 on loopback refuses at once).
        const secret = yield* Effect.flip(
          worktree.prepareClone("http://user:hunter2@127.0.0.1:1/repo.git", `${root}/clone2`)
        )
        expect(JSON.stringify({ ...secret, message: secret.message })).not.toContain("hunter2")
        expect(secret.operation).toContain("http://***@127.0.0.1:1/repo.git")

        const noDir = yield* Effect.flip(worktree.headCommit(`${root}/not-there`))
        expect(noDir.message).toBe(`directory ${root}/not-there does not exist`)
      }))

    it.scoped("ensureBranch starts from a local branch or from origin/<from>, and leaves existing ones alone", () =>
      Effect.gen(function*() {
        const { worktree, clone, bare, seed } = yield* setup
        const main = yield* sh(clone, "rev-parse", "main")
        yield* worktree.ensureBranch(clone, "team/1", "main")
        expect(yield* sh(clone, "rev-parse", "team/1")).toBe(main)
        // No upstream: the team branch must never push to main by accident.
        expect((yield* exec("git", ["config", "branch.team/1.merge"], { cwd: clone }).pipe(Effect.orDie)).exitCode)
          .toBe(1)

        yield* worktree.ensureBranch(clone, "team/2", "origin/main")
        expect(yield* sh(clone, "rev-parse", "team/2")).toBe(main)

        // A branch that exists only on origin.
        yield* sh(seed, "checkout", "--quiet", "-b", "feature")
        const feature = yield* commitIn(seed, "F.md", "f\n", "feature work", sh)
        yield* sh(seed, "push", "--quiet", "origin", "feature")
        yield* worktree.prepareClone(bare, clone)
        yield* worktree.ensureBranch(clone, "team/3", "feature")
        expect(yield* sh(clone, "rev-parse", "team/3")).toBe(feature)

        // Existing branch: no-op even though its start point differs.
        yield* worktree.ensureBranch(clone, "team/1", "feature")
        expect(yield* sh(clone, "rev-parse", "team/1")).toBe(main)

        const error = yield* Effect.flip(worktree.ensureBranch(clone, "team/4", "nope"))
        expect(error.message).toContain("neither a local branch nope nor origin/nope exists")
      }))

    it.scoped("ensureBranches creates a whole hierarchy in one transaction: from the list, local or origin; existing ones stay", () =>
      Effect.gen(function*() {
        const { worktree, clone, bare, seed } = yield* setup
        const main = yield* sh(clone, "rev-parse", "main")
        yield* sh(seed, "checkout", "--quiet", "-b", "feature")
        const feature = yield* commitIn(seed, "F.md", "f\n", "feature work", sh)
        yield* sh(seed, "push", "--quiet", "origin", "feature")
        yield* worktree.prepareClone(bare, clone)
        yield* worktree.ensureBranch(clone, "run/w-1", "main")
        const wanted = [
          { branch: "run/team-1", base: "main" },
          { branch: "run/w-1", base: "run/team-1" }, // exists already
          { branch: "run/w-2", base: "run/team-1" }, // from a branch created earlier in the list
          { branch: "run/team-2", base: "feature" }, // only on origin
          { branch: "run/w-3", base: "run/team-2" },
          { branch: "run/team-3", base: "origin/main" }
        ]
        yield* worktree.ensureBranches(clone, wanted)
        expect(yield* sh(clone, "rev-parse", "run/team-1")).toBe(main)
        expect(yield* sh(clone, "rev-parse", "run/w-2")).toBe(main)
        expect(yield* sh(clone, "rev-parse", "run/team-2")).toBe(feature)
        expect(yield* sh(clone, "rev-parse", "run/w-3")).toBe(feature)
        expect(yield* sh(clone, "rev-parse", "run/team-3")).toBe(main)
        // The existing branch was left where it was, even after moving.
        const moved = yield* sh(clone, "commit-tree", "-p", main, "-m", "moved", `${main}^{tree}`)
        yield* sh(clone, "update-ref", "refs/heads/run/w-1", moved)
        yield* worktree.ensureBranches(clone, wanted)
        expect(yield* sh(clone, "rev-parse", "run/w-1")).toBe(moved)
        // No upstream for any of them.
        expect((yield* exec("git", ["config", "branch.run/w-2.merge"], { cwd: clone }).pipe(Effect.orDie)).exitCode).toBe(1)

        // One missing base: nothing of the list is created.
        const error = yield* Effect.flip(worktree.ensureBranches(clone, [{ branch: "run/x", base: "main" }, { branch: "run/y", base: "nope" }]))
        expect(error.message).toContain("neither a local branch nope nor origin/nope exists")
        expect((yield* exec("git", ["rev-parse", "--verify", "--quiet", "run/x"], { cwd: clone }).pipe(Effect.orDie)).exitCode).toBe(1)

        // A worktree without a base takes the existing branch.
        const wt = `${clone}-worktree-w2`
        yield* worktree.addWorktree(clone, wt, "run/w-2")
        expect(yield* worktree.currentBranch(wt)).toBe("run/w-2")
        expect(yield* worktree.headCommit(wt)).toBe(main)
        yield* worktree.removeWorktree(clone, wt, { force: true })

        // Registered but never checked out (a start-up cut off between the two steps): the next add fills it in.
        const half = `${clone}-worktree-half`
        yield* sh(clone, "worktree", "add", "--quiet", "--no-checkout", half, "run/w-3")
        expect(yield* exists(`${half}/F.md`)).toBe(false)
        yield* worktree.addWorktree(clone, half, "run/w-3")
        expect(yield* exists(`${half}/F.md`)).toBe(true)
        expect(yield* worktree.isClean(half)).toBe(true)
        yield* worktree.removeWorktree(clone, half, { force: true })
      }))

    it.scoped("addWorktree checks out target, team and worker branches; again is a no-op", () =>
      Effect.gen(function*() {
        const { worktree, clone, director, em, worker, wt } = yield* setupTeam
        expect(yield* worktree.currentBranch(director)).toBe("main")
        expect(yield* worktree.currentBranch(em)).toBe("team/1")
        expect(yield* worktree.currentBranch(worker)).toBe("worker/1")
        expect(yield* sh(worker, "rev-parse", "HEAD")).toBe(yield* sh(clone, "rev-parse", "team/1"))
        expect(yield* exists(`${worker}/README.md`)).toBe(true)

        // Resume: same path and branch is fine, even after the branch moved on.
        const moved = yield* commitIn(worker, "W.md", "w\n", "worker commit")
        yield* worktree.addWorktree(clone, worker, "worker/1", "team/1")
        expect(yield* worktree.headCommit(worker)).toBe(moved)

        const wrong = yield* Effect.flip(worktree.addWorktree(clone, worker, "worker/2", "team/1"))
        expect(wrong.message).toContain("already a worktree with branch worker/1")

        // Start-up adds many worktrees at once.
        yield* Effect.forEach(
          [2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
          (n) => worktree.addWorktree(clone, wt(`worker-${n}`), `worker/${n}`, "team/1"),
          { concurrency: "unbounded" }
        )
        const list = yield* worktree.listWorktrees(clone)
        expect(list.map((w) => w.branch).sort()).toEqual([
          undefined,
          "main",
          "team/1",
          "worker/1",
          "worker/2",
          "worker/3",
          "worker/4",
          "worker/5",
          "worker/6",
          "worker/7",
          "worker/8",
          "worker/9",
          "worker/10",
          "worker/11"
        ].sort())
        const clonesEntry = list.find((w) => w.path === clone)
        expect(clonesEntry?.branch).toBeUndefined()
        expect(clonesEntry?.head).toMatch(/^[0-9a-f]{40}$/)
      }))

    it.scoped("copyEnvFiles copies the clone's env files and git add -A never stages them", () =>
      Effect.gen(function*() {
        const { worktree, clone, worker, em } = yield* setupTeam
        yield* write(`${clone}/.env`, "SECRET=1\n")
        yield* write(`${clone}/.env.local`, "LOCAL=2\n")
        expect(yield* worktree.copyEnvFiles(clone, worker)).toEqual([".env", ".env.local"])
        expect(yield* worktree.copyEnvFiles(clone, em)).toEqual([".env", ".env.local"])
        expect(yield* read(`${worker}/.env`)).toBe("SECRET=1\n")
        expect(yield* read(`${worker}/.env.local`)).toBe("LOCAL=2\n")

        expect(yield* worktree.isClean(worker)).toBe(true)
        yield* write(`${worker}/code.ts`, "export {}\n")
        yield* agentGit(worker, "add", "-A")
        expect((yield* sh(worker, "diff", "--cached", "--name-only")).split("\n")).toEqual(["code.ts"])
        expect(yield* sh(clone, "status", "--porcelain")).toBe("")

        // The shared exclude file gets each pattern once, however many worktrees.
        const commonDir = yield* sh(worker, "rev-parse", "--path-format=absolute", "--git-common-dir")
        const exclude = yield* read(`${commonDir}/info/exclude`)
        expect(exclude.split("\n").filter((l) => l === "/.env")).toHaveLength(1)
        expect(exclude.split("\n").filter((l) => l === "/.env.local")).toHaveLength(1)
      }))

    it.scoped("copyEnvFiles with no env files copies nothing", () =>
      Effect.gen(function*() {
        const { worktree, clone, worker } = yield* setupTeam
        expect(yield* worktree.copyEnvFiles(clone, worker)).toEqual([])
        expect(yield* exists(`${worker}/.env`)).toBe(false)
      }))

    it.scoped("merge: Merged, then AlreadyUpToDate", () =>
      Effect.gen(function*() {
        const { worktree, em, worker } = yield* setupTeam
        yield* commitIn(worker, "feature.ts", "export const a = 1\n", "feature")
        const before = yield* worktree.headCommit(em)
        const merged = yield* worktree.merge(em, "worker/1", { message: "Merge worker/1 into team/1" })
        expect(merged._tag).toBe("Merged")
        const head = yield* worktree.headCommit(em)
        expect(merged).toEqual(MergeResult.Merged({ commit: head }))
        expect(yield* sh(em, "log", "-1", "--format=%s|%an|%P")).toBe(
          `Merge worker/1 into team/1|cco|${before} ${yield* sh(em, "rev-parse", "worker/1")}`
        )
        expect(yield* read(`${em}/feature.ts`)).toBe("export const a = 1\n")

        const again = yield* worktree.merge(em, "worker/1", { message: "again" })
        expect(again).toEqual(MergeResult.AlreadyUpToDate())
        expect(yield* worktree.headCommit(em)).toBe(head)

        const unknown = yield* Effect.flip(worktree.merge(em, "worker/none", { message: "x" }))
        expect(unknown.message).toContain("not something we can merge")
      }))

    it.scoped("merge conflict is aborted and reported, or kept for an agent to resolve", () =>
      Effect.gen(function*() {
        const { worktree, clone, em, worker, wt } = yield* setupTeam
        yield* worktree.addWorktree(clone, wt("worker-2"), "worker/2", "team/1")
        yield* commitIn(worker, "README.md", "# project\nfrom worker one\n", "one")
        yield* commitIn(wt("worker-2"), "README.md", "# project\nfrom worker two\n", "two")
        expect((yield* worktree.merge(em, "worker/1", { message: "m1" }))._tag).toBe("Merged")
        const head = yield* worktree.headCommit(em)

        const conflict = yield* worktree.merge(em, "worker/2", { message: "m2" })
        expect(conflict).toEqual(MergeResult.Conflict({ files: ["README.md"] }))
        expect(yield* worktree.isClean(em)).toBe(true)
        expect(yield* worktree.mergeInProgress(em)).toBe(false)
        expect(yield* worktree.headCommit(em)).toBe(head)
        expect(yield* read(`${em}/README.md`)).toBe("# project\nfrom worker one\n")
        expect(yield* worktree.conflictMarkers(em)).toEqual([])

        const kept = yield* worktree.merge(em, "worker/2", { message: "m2", keepConflict: true })
        expect(kept).toEqual(MergeResult.Conflict({ files: ["README.md"] }))
        expect(yield* worktree.mergeInProgress(em)).toBe(true)
        expect(yield* worktree.conflictMarkers(em)).toEqual(["README.md"])
        expect(yield* read(`${em}/README.md`)).toContain("<<<<<<< ")

        yield* write(`${em}/README.md`, "# project\nfrom worker one\nfrom worker two\n")
        expect(yield* worktree.conflictMarkers(em)).toEqual([])
        expect(yield* worktree.commitAll(em, "Resolve merge of worker/2")).toBe(true)
        expect(yield* worktree.mergeInProgress(em)).toBe(false)
        expect(yield* worktree.isClean(em)).toBe(true)
        expect((yield* sh(em, "log", "-1", "--format=%P")).split(" ")).toHaveLength(2)
        expect(yield* worktree.commitsAhead(em, "team/1", "worker/2")).toBe(0)
      }))

    it.scoped("push lands the branch in the bare origin and refuses non-fast-forward", () =>
      Effect.gen(function*() {
        const { worktree, em, director, bare, seed } = yield* setupTeam
        const head = yield* commitIn(em, "T.md", "team\n", "team work")
        yield* worktree.push(em, "team/1")
        expect(yield* sh(bare, "--git-dir", bare, "log", "-1", "--format=%H", "team/1")).toBe(head)
        expect(yield* sh(em, "rev-parse", "--abbrev-ref", "team/1@{upstream}")).toBe("origin/team/1")
        expect(yield* sh(em, "rev-parse", "origin/team/1")).toBe(head)
        yield* worktree.push(em, "team/1") // again: nothing new

        // An agent's own push goes nowhere, and says why; cco's pushes go on.
        yield* commitIn(em, "T2.md", "more\n", "more team work")
        const own = yield* exec("git", ["push", "origin", "team/1"], { cwd: em, env: { LC_ALL: "C" } }).pipe(Effect.orDie)
        expect(own.exitCode).not.toBe(0)
        expect(own.stderr).toContain("cco-pushes-for-you/never-push-yourself")
        const own2 = yield* exec("git", ["push"], { cwd: em, env: { LC_ALL: "C" } }).pipe(Effect.orDie)
        expect(own2.exitCode).not.toBe(0)
        expect(yield* sh(bare, "--git-dir", bare, "log", "-1", "--format=%H", "team/1")).toBe(head)
        const next = yield* worktree.headCommit(em)
        yield* worktree.push(em, "team/1")
        expect(yield* sh(bare, "--git-dir", bare, "log", "-1", "--format=%H", "team/1")).toBe(next)

        // origin/main moves on behind cco's back: a push must not overwrite it.
        const theirs = yield* commitIn(seed, "THEIRS.md", "x\n", "theirs", sh)
        yield* sh(seed, "push", "--quiet", "origin", "main")
        yield* commitIn(director, "OURS.md", "y\n", "ours")
        const rejected = yield* Effect.flip(worktree.push(director, "main"))
        expect(rejected._tag).toBe("GitError")
        expect(rejected.message).toMatch(/rejected/)
        expect(yield* sh(bare, "--git-dir", bare, "rev-parse", "main")).toBe(theirs)
      }))

    it.scoped("commitsAhead, isClean, diffStat, commitAll", () =>
      Effect.gen(function*() {
        const { worktree, worker } = yield* setupTeam
        expect(yield* worktree.commitsAhead(worker, "team/1", "worker/1")).toBe(0)
        expect(yield* worktree.isClean(worker)).toBe(true)
        expect(yield* worktree.commitAll(worker, "nothing")).toBe(false)

        yield* write(`${worker}/src/a.ts`, "a\n")
        expect(yield* worktree.isClean(worker)).toBe(false)
        expect(yield* worktree.commitAll(worker, "wip: a")).toBe(true)
        expect(yield* worktree.isClean(worker)).toBe(true)
        yield* write(`${worker}/README.md`, "# changed\n")
        expect(yield* worktree.commitAll(worker, "wip: readme")).toBe(true)
        expect(yield* sh(worker, "log", "-1", "--format=%s|%an")).toBe("wip: readme|cco")

        expect(yield* worktree.commitsAhead(worker, "team/1", "worker/1")).toBe(2)
        expect(yield* worktree.commitsAhead(worker, "worker/1", "team/1")).toBe(0)
        const stat = yield* worktree.diffStat(worker, "team/1", "worker/1")
        expect(stat).toContain("README.md")
        expect(stat).toContain("src/a.ts")
        expect(stat).toContain("2 files changed")
        expect(yield* worktree.diffStat(worker, "team/1", "team/1")).toBe("")

        // Agents' own commits work without any global identity, thanks to the clone's local config.
        yield* commitIn(worker, "b.ts", "b\n", "agent commit")
        expect(yield* sh(worker, "log", "-1", "--format=%an <%ae>")).toBe("cco <cco@localhost>")
        expect(yield* worktree.commitsAhead(worker, "team/1", "HEAD")).toBe(3)
      }))

    it.scoped("removeStaleLock removes the index.lock a killed git left, in a linked worktree or the clone", () =>
      Effect.gen(function*() {
        const { worktree, worker, clone, path } = yield* setupTeam
        expect(yield* worktree.removeStaleLock(worker)).toBeUndefined()
        // What a commit killed mid-way leaves: git refuses to work in that worktree.
        const lock = path.join(yield* sh(worker, "rev-parse", "--path-format=absolute", "--git-dir"), "index.lock")
        yield* write(lock, "")
        yield* write(`${worker}/src/a.ts`, "a\n")
        expect((yield* Effect.either(worktree.commitAll(worker, "blocked")))._tag).toBe("Left")
        expect(yield* worktree.removeStaleLock(worker)).toBe(lock)
        expect(yield* exists(lock)).toBe(false)
        expect(yield* worktree.commitAll(worker, "after the lock")).toBe(true)
        // The clone itself has a .git directory.
        yield* write(path.join(clone, ".git", "index.lock"), "")
        expect(yield* worktree.removeStaleLock(clone)).toBe(path.join(clone, ".git", "index.lock"))
        expect(yield* worktree.removeStaleLock(path.join(clone, "no-such-dir"))).toBeUndefined()
      }))

    it.scoped("commitFile commits only when the content changed; readFileAt reads any ref", () =>
      Effect.gen(function*() {
        const { worktree, clone, director } = yield* setupTeam
        expect(yield* worktree.readFileAt(clone, "main", "PROJECT_DIRECTION.md")).toBe("Build the thing.\n")
        expect(yield* worktree.readFileAt(clone, "main", "TEAM_STRUCTURE.md")).toBeUndefined()
        expect(yield* worktree.readFileAt(clone, "main", "docs/nothing/here.md")).toBeUndefined()

        // Something an agent staged stays staged, not swept into cco's commit.
        yield* write(`${director}/notes.md`, "draft\n")
        yield* agentGit(director, "add", "notes.md")

        const content = "# Team structure\n\n- em-1: team/1\n"
        expect(yield* worktree.commitFile(director, "TEAM_STRUCTURE.md", content, "Update TEAM_STRUCTURE.md")).toBe(true)
        expect(yield* worktree.readFileAt(clone, "main", "TEAM_STRUCTURE.md")).toBe(content)
        expect(yield* sh(director, "show", "--name-only", "--format=%s", "HEAD")).toBe(
          "Update TEAM_STRUCTURE.md\n\nTEAM_STRUCTURE.md"
        )
        expect(yield* sh(director, "diff", "--cached", "--name-only")).toBe("notes.md")
        const head = yield* worktree.headCommit(director)
        expect(yield* worktree.commitFile(director, "TEAM_STRUCTURE.md", content, "again")).toBe(false)
        expect(yield* worktree.headCommit(director)).toBe(head)
        expect(yield* worktree.commitFile(director, "docs/deep/file.md", "x\n", "nested")).toBe(true)
        expect(yield* worktree.readFileAt(clone, "main", "docs/deep/file.md")).toBe("x\n")

        const badRef = yield* Effect.flip(worktree.readFileAt(clone, "no-such-branch", "README.md"))
        expect(badRef._tag).toBe("GitError")
        expect(badRef.message).toContain("no-such-branch")
      }))

    it.scoped("removeWorktree, prune and listWorktrees", () =>
      Effect.gen(function*() {
        const { worktree, clone, worker, em, wt, path } = yield* setupTeam
        const fs = yield* FileSystem.FileSystem
        yield* worktree.removeWorktree(clone, worker)
        expect(yield* exists(worker)).toBe(false)
        expect((yield* worktree.listWorktrees(clone)).map((w) => w.path)).not.toContain(worker)
        yield* worktree.removeWorktree(clone, worker) // already gone: no-op
        // The branch survives its worktree and can go to a new one.
        yield* worktree.addWorktree(clone, wt("worker-1b"), "worker/1", "team/1")
        expect(yield* worktree.currentBranch(wt("worker-1b"))).toBe("worker/1")

        // A dirty worktree needs force.
        yield* write(path.join(em, "dirty.txt"), "x\n")
        const refused = yield* Effect.flip(worktree.removeWorktree(clone, em))
        expect(refused.message).toMatch(/untracked|modified/)
        yield* worktree.removeWorktree(clone, em, { force: true })
        expect(yield* exists(em)).toBe(false)

        // Deleted behind git's back: listed until pruned; re-adding it works without an explicit prune.
        yield* fs.remove(wt("worker-1b"), { recursive: true }).pipe(Effect.orDie)
        expect((yield* worktree.listWorktrees(clone)).map((w) => w.branch)).toContain("worker/1")
        yield* worktree.addWorktree(clone, wt("worker-1c"), "worker/1", "team/1")
        expect(yield* worktree.currentBranch(wt("worker-1c"))).toBe("worker/1")
        yield* fs.remove(wt("worker-1c"), { recursive: true }).pipe(Effect.orDie)
        yield* worktree.prune(clone)
        const list = yield* worktree.listWorktrees(clone)
        expect(list.map((w) => w.branch).sort()).toEqual([undefined, "main"].sort())
      }))
  })
})
