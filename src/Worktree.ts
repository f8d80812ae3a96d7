// Owns the run's git layout: its clone, branches, one worktree per instance and the local env files copied into
// them; merges, commits and pushes (Merges.ts) and the vetting of agents' commits (Vetting.ts) are part of the same
// service. Every git call goes through the Git port (Git.ts).
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import * as NodeContext from "@effect/platform-node/NodeContext"
import { Effect, Option } from "effect"
import { ccoIdentity, Git, gitError, outputOf } from "./Git.js"
import { makeBranchWork } from "./BranchWork.js"
import { commandEnv, runShell, type ShellRun } from "./Gate.js"
import { MAX_BYTES, readRegularFile } from "./RegularFile.js"
import { makeVetting, splitNul } from "./Vetting.js"

export { ccoIdentity, GitError, stripCredentials } from "./Git.js"
export { MergeResult } from "./BranchWork.js"
export { ccoOwnedFiles, hasConflictStructure, maxFileBytes } from "./Vetting.js"

export interface WorktreeInfo {
  readonly path: string
  /** Short branch name; undefined for a detached HEAD. */
  readonly branch: string | undefined
  readonly head: string
}

/** The env files a user keeps beside the repository; copied into every worktree, never committed. */
export const envFileNames: ReadonlyArray<string> = [".env", ".env.local"]

/**
 * The clone's push URL for origin: not a repository, so an agent's own `git push` fails and says why; cco pushes
 * to origin's URL itself, after its checks.
 */
export const agentPushUrl = "/nonexistent/cco-pushes-for-you/never-push-yourself"

const pad2 = (n: number) => String(n).padStart(2, "0")

/** `run/YYYY-MM-DD-HH-MM` in local time. */
export const runBranchName = (date: Date): string =>
  `run/${date.getFullYear()}-${pad2(date.getMonth() + 1)}-${pad2(date.getDate())}-${pad2(date.getHours())}-${
    pad2(date.getMinutes())
  }`

const isRemoteUrl = (url: string) => /^[a-z][a-z0-9+.-]*:\/\//i.test(url) || /^[^/]+:/.test(url)

const splitLines = (text: string) => text.split("\n").map((s) => s.trim()).filter((s) => s !== "")

export class Worktree extends Effect.Service<Worktree>()("cco/Worktree", {
  dependencies: [Git.Default, NodeContext.layer],
  effect: Effect.gen(function*() {
    const port = yield* Git
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    // Writes to files every worktree shares (the common config via push -u, info/exclude) are serialised:
    // git refuses a second writer on config.lock instead of waiting.
    const sharedFiles = (yield* Effect.makeSemaphore(1)).withPermits(1)
    // Worktree administration is serialised too: `git worktree add` reads every registered worktree,
    // and one registered by a concurrent add may not have its files yet ("failed to read .../commondir").
    const worktreeAdmin = yield* Effect.makeSemaphore(1)
    const administering = worktreeAdmin.withPermits(1)

    /** Any exit code is returned, only a failure to run git is an error. */
    const run = port.run
    /** A non-zero exit is a GitError; returns stdout. */
    const git = port.output

    const fsError = (operation: string, repo: string) => (e: { readonly message: string }) =>
      gitError(operation, repo, e.message)

    const exists = (file: string, repo: string) =>
      fs.exists(file).pipe(Effect.mapError(fsError(`stat ${file}`, repo)))

    const sameRepository = (a: string, b: string) => {
      if (a === b) return true
      const normalise = (url: string) => url.replace(/\/+$/, "").replace(/\.git$/, "")
      if (isRemoteUrl(a) || isRemoteUrl(b)) return normalise(a) === normalise(b)
      return normalise(path.resolve(a)) === normalise(path.resolve(b))
    }

    // Agents commit in their worktrees with plain `git commit`; on a machine without a global identity
    // that fails, so the clone's local config (shared by all worktrees) gets one when none is visible.
    const ensureIdentity = (repoDir: string) =>
      Effect.gen(function*() {
        const result = yield* run(repoDir, ["config", "--get-regexp", "^user\\.(name|email)$"])
        const keys = new Set(splitLines(result.stdout).map((line) => line.split(" ")[0]))
        if (!keys.has("user.name")) yield* git(repoDir, ["config", "--local", "user.name", ccoIdentity.name])
        if (!keys.has("user.email")) yield* git(repoDir, ["config", "--local", "user.email", ccoIdentity.email])
      })

    /**
     * The run's clone of `repositoryUrl` in `dir` (fetched when it is there already), its HEAD detached at
     * origin's `branch` when one is given. Origin's own HEAD does not matter: a bare repository whose HEAD names a
     * branch that was never pushed (what `git init --bare` leaves when its default branch differs) clones too.
     */
    const prepareClone = Effect.fn("Worktree.prepareClone")(function*(repositoryUrl: string, dir: string, branch?: string) {
      const target = path.resolve(dir)
      if (yield* exists(path.join(target, ".git"), target)) {
        const origin = (yield* run(target, ["config", "--get", "remote.origin.url"])).stdout.trim()
        if (!sameRepository(origin, repositoryUrl)) {
          return yield* gitError(
            "prepareClone",
            target,
            `${target} already holds a clone of ${origin === "" ? "(no origin)" : origin}, not of ${repositoryUrl}`
          )
        }
        yield* git(target, ["fetch", "--quiet", "--prune", "origin"])
      } else {
        // --no-checkout: origin's HEAD may name a branch yet to be born; the checkout below picks the commit.
        yield* git(undefined, ["clone", "--quiet", "--no-checkout", "--", repositoryUrl, target])
      }
      let start = "HEAD"
      if (branch !== undefined) {
        start = `refs/remotes/origin/${branch}`
        const found = yield* run(target, ["rev-parse", "--quiet", "--verify", `${start}^{commit}`])
        if (found.exitCode !== 0) {
          const others = splitLines(yield* git(target, ["for-each-ref", "--format=%(refname:lstrip=3)", "refs/remotes/origin/"]))
            .filter((name) => name !== "HEAD")
          return yield* gitError(
            "prepareClone",
            target,
            `branch ${branch} does not exist in ${repositoryUrl} (${others.length === 0 ? "it has no branches" : `its branches: ${others.slice(0, 10).join(", ")}${others.length > 10 ? ", …" : ""}`})`
          )
        }
      } else if ((yield* run(target, ["rev-parse", "--quiet", "--verify", "HEAD^{commit}"])).exitCode !== 0) {
        return yield* gitError("prepareClone", target, `${repositoryUrl}: its HEAD names no branch that exists; say which branch to use`)
      }
      // Any branch may have to go to a worktree, and a branch can be checked out only once.
      yield* git(target, ["checkout", "--quiet", "--detach", start])
      yield* git(target, ["config", "--local", "remote.origin.pushurl", agentPushUrl])
      yield* ensureIdentity(target)
      return target
    })

    type BranchPlan = { readonly _tag: "Exists" } | { readonly _tag: "CreateFrom"; readonly start: string }

    // Where a branch cut from `from` starts: the local branch, else origin's.
    const startCandidates = (from: string) => [
      `refs/heads/${from}`,
      `refs/remotes/origin/${from}`,
      ...(from.startsWith("origin/") ? [`refs/remotes/${from}`] : [])
    ]
    const noStart = (repoDir: string, name: string, from: string) =>
      gitError(`create branch ${name}`, repoDir, `cannot create branch ${name}: neither a local branch ${from} nor origin/${from} exists`)

    // One for-each-ref answers both "does the branch exist" and "where would it start".
    const planBranch = (repoDir: string, name: string, from: string) =>
      Effect.gen(function*() {
        const candidates = startCandidates(from)
        const own = `refs/heads/${name}`
        const out = yield* git(repoDir, ["for-each-ref", "--format=%(refname)", own, ...candidates])
        // for-each-ref patterns also match refs below them (refs/heads/main/x), so compare exactly.
        const found = new Set(splitLines(out))
        if (found.has(own)) return { _tag: "Exists" } as BranchPlan
        const start = candidates.find((ref) => found.has(ref))
        if (start === undefined) return yield* noStart(repoDir, name, from)
        return { _tag: "CreateFrom", start } as BranchPlan
      })

    /**
     * Creates those of the branches that do not exist yet, each from its base (a branch earlier in the list, a
     * local branch, or origin's), with one ref listing and one update-ref transaction however many there are.
     */
    const ensureBranches = Effect.fn("Worktree.ensureBranches")(
      function*(repoDir: string, wanted: ReadonlyArray<{ readonly branch: string; readonly base: string }>) {
        if (wanted.length === 0) return
        const listing = yield* git(repoDir, ["for-each-ref", "--format=%(objectname) %(refname)", "refs/heads/", "refs/remotes/"])
        const refs = new Map(splitLines(listing).map((line) => {
          const space = line.indexOf(" ")
          return [line.slice(space + 1), line.slice(0, space)] as const
        }))
        const creates: Array<readonly [string, string]> = []
        for (const { base, branch } of wanted) {
          const own = `refs/heads/${branch}`
          if (refs.has(own)) continue
          const start = startCandidates(base).map((ref) => refs.get(ref)).find((sha) => sha !== undefined)
          if (start === undefined) return yield* noStart(repoDir, branch, base)
          refs.set(own, start)
          creates.push([own, start])
        }
        if (creates.length === 0) return
        // One transaction: all of them or none. Not a push into the clone itself, which would run its receive hooks
        // (git strips the config that switches them off from the receiving side's environment).
        yield* port.withInput(repoDir, ["update-ref", "--stdin"], creates.map(([ref, start]) => `create ${ref} ${start}\n`).join(""))
      }
    )

    /** One branch from `from` unless it exists (see ensureBranches). */
    const ensureBranch = (repoDir: string, name: string, from: string) => ensureBranches(repoDir, [{ branch: name, base: from }])


    const listWorktrees = Effect.fn("Worktree.listWorktrees")(function*(repoDir: string) {
      const out = yield* administering(git(repoDir, ["worktree", "list", "--porcelain"]))
      const entries: Array<WorktreeInfo> = []
      for (const block of out.split(/\n\s*\n/)) {
        let wtPath: string | undefined
        let head = ""
        let branch: string | undefined
        let bare = false
        for (const line of block.split("\n")) {
          if (line.startsWith("worktree ")) wtPath = line.slice("worktree ".length)
          else if (line.startsWith("HEAD ")) head = line.slice("HEAD ".length)
          else if (line.startsWith("branch ")) branch = line.slice("branch ".length).replace(/^refs\/heads\//, "")
          else if (line === "bare") bare = true
        }
        if (wtPath !== undefined && !bare) entries.push({ path: wtPath, branch, head })
      }
      return entries as ReadonlyArray<WorktreeInfo>
    })

    const pruneUnlocked = (repoDir: string) => git(repoDir, ["worktree", "prune"])

    const prune = Effect.fn("Worktree.prune")(function*(repoDir: string) {
      yield* administering(pruneUnlocked(repoDir))
    })

    const addWorktree = Effect.fn("Worktree.addWorktree")(
      /** Without a base the branch must exist already (see ensureBranches). */
      function*(repoDir: string, worktreePath: string, branch: string, base?: string) {
        const target = path.resolve(worktreePath)
        // Only an existing directory can already be the worktree (resume); otherwise skip the listing.
        if (yield* exists(target, repoDir)) {
          const real = yield* fs.realPath(target).pipe(Effect.mapError(fsError(`realpath ${target}`, repoDir)))
          const entry = (yield* listWorktrees(repoDir)).find((w) => w.path === target || w.path === real)
          if (entry !== undefined) {
            if (entry.branch === branch) {
              // Registered but never checked out (cut off between the two steps below): its files come now.
              const index = (yield* git(target, ["rev-parse", "--path-format=absolute", "--git-path", "index"])).trim()
              if (!(yield* exists(index, repoDir))) yield* git(target, ["reset", "--hard", "--quiet"])
              return
            }
            return yield* gitError(
              `add worktree ${target}`,
              repoDir,
              `${target} is already a worktree with ${
                entry.branch === undefined ? "a detached HEAD" : `branch ${entry.branch}`
              } checked out, not ${branch}`
            )
          }
        }
        // Registration is serialised; the checkout, the slow part, then runs alongside other worktrees'
        // (it is what `git worktree add` itself does after registering: reset --hard in the new worktree).
        const register = administering(Effect.gen(function*() {
          const plan: BranchPlan = base === undefined ? { _tag: "Exists" } : yield* planBranch(repoDir, branch, base)
          const args = plan._tag === "Exists"
            ? ["worktree", "add", "--quiet", "--no-checkout", target, branch]
            : ["worktree", "add", "--quiet", "--no-checkout", "--no-track", "-b", branch, target, plan.start]
          const first = yield* run(repoDir, args)
          if (first.exitCode === 0) return
          // A worktree deleted from disk stays registered (and keeps its branch) until pruned.
          if (/already registered|already checked out|already used by worktree/.test(outputOf(first))) {
            yield* pruneUnlocked(repoDir)
            yield* git(repoDir, args)
            return
          }
          return yield* gitError(`git ${args.join(" ")}`, repoDir, outputOf(first))
        }))
        // Registration and checkout are not cut apart by an interruption (Ctrl-C, a sibling's failure).
        yield* Effect.uninterruptible(Effect.zipRight(register, git(target, ["reset", "--hard", "--quiet"])))
      },
      Effect.asVoid
    )

    const removeWorktree = Effect.fn("Worktree.removeWorktree")(
      function*(repoDir: string, worktreePath: string, options?: { readonly force?: boolean }) {
        const target = path.resolve(worktreePath)
        const args = ["worktree", "remove", ...(options?.force === true ? ["--force"] : []), target]
        const result = yield* administering(run(repoDir, args))
        // Already gone is what the caller wanted (cleanup and resume run this more than once).
        if (result.exitCode !== 0 && !/is not a working tree/.test(outputOf(result))) {
          return yield* gitError(`git ${args.join(" ")}`, repoDir, outputOf(result))
        }
      },
      Effect.asVoid
    )

    /** A worktree with a detached HEAD at `commit` (the merge gate's scratch worktree); no branch is checked out. */
    const addDetachedWorktree = Effect.fn("Worktree.addDetachedWorktree")(function*(repoDir: string, worktreePath: string, commit: string) {
      yield* administering(git(repoDir, ["worktree", "add", "--quiet", "--detach", path.resolve(worktreePath), commit]))
    }, Effect.asVoid)

    const copyEnvFiles = Effect.fn("Worktree.copyEnvFiles")(function*(repoDir: string, worktreePath: string) {
      const present: Array<string> = []
      for (const name of envFileNames) {
        // Regular files only: copying a FIFO would wait for a writer forever.
        const info = yield* fs.stat(path.join(repoDir, name)).pipe(Effect.option)
        if (Option.isSome(info) && info.value.type === "File") present.push(name)
      }
      if (present.length === 0) return [] as ReadonlyArray<string>
      const [commonDirOut, trackedOut] = yield* Effect.all([
        git(worktreePath, ["rev-parse", "--git-common-dir"]),
        git(worktreePath, ["ls-files", "-z", "--", ...present])
      ], { concurrency: 2 })
      // A committed env file comes with the branch; overwriting it would show up as a change.
      const tracked = new Set(splitNul(trackedOut))
      const toCopy = present.filter((name) => !tracked.has(name))
      if (toCopy.length === 0) return [] as ReadonlyArray<string>

      // info/exclude lives in the common git dir, so it covers the clone and every worktree at once.
      const infoDir = path.join(path.resolve(worktreePath, commonDirOut.trim()), "info")
      const excludeFile = path.join(infoDir, "exclude")
      yield* sharedFiles(Effect.gen(function*() {
        const current = (yield* exists(excludeFile, worktreePath))
          ? yield* readRegularFile(excludeFile, MAX_BYTES.config).pipe(
            Effect.provideService(FileSystem.FileSystem, fs),
            Effect.mapError(fsError(`read ${excludeFile}`, worktreePath))
          )
          : ""
        const lines = new Set(current.split("\n").map((l) => l.trim()))
        const missing = toCopy.map((name) => `/${name}`).filter((pattern) => !lines.has(pattern))
        if (missing.length === 0) return
        const prefix = current === "" || current.endsWith("\n") ? "" : "\n"
        yield* fs.makeDirectory(infoDir, { recursive: true }).pipe(
          Effect.mapError(fsError(`mkdir ${infoDir}`, worktreePath))
        )
        yield* fs.writeFileString(
          excludeFile,
          `${prefix}# local env files copied by cco into each worktree\n${missing.join("\n")}\n`,
          { flag: "a" }
        ).pipe(Effect.mapError(fsError(`append ${excludeFile}`, worktreePath)))
      }))

      for (const name of toCopy) {
        yield* fs.copyFile(path.join(repoDir, name), path.join(worktreePath, name)).pipe(
          Effect.mapError(fsError(`copy ${name}`, worktreePath))
        )
      }
      return toCopy as ReadonlyArray<string>
    })

    /**
     * Removes the index.lock a killed git process left in a worktree (say, a commit cut short by a restart),
     * which would make every later git command there fail. Only for when nothing can be running git there.
     * Returns the removed file's path.
     */
    const removeStaleLock = Effect.fn("Worktree.removeStaleLock")(function*(worktreePath: string) {
      const dotGit = path.join(worktreePath, ".git")
      const info = yield* fs.stat(dotGit).pipe(Effect.option)
      if (Option.isNone(info)) return undefined
      // A linked worktree's .git is a file naming its git directory; the main one's is the directory.
      const gitDir = info.value.type === "Directory"
        ? dotGit
        : path.resolve(worktreePath, (yield* readRegularFile(dotGit, MAX_BYTES.lock).pipe(Effect.provideService(FileSystem.FileSystem, fs), Effect.mapError(fsError(`read ${dotGit}`, worktreePath)))).replace(/^gitdir:\s*/, "").trim())
      const lock = path.join(gitDir, "index.lock")
      if (!(yield* exists(lock, worktreePath))) return undefined
      yield* fs.remove(lock).pipe(Effect.mapError(fsError(`remove ${lock}`, worktreePath)))
      return lock
    })

    /**
     * A project's shell command (setupCommand) run in a worktree as Gate.runShell runs it: commandEnv with the
     * instance's CCO_PORT, bounded in time, its output in `logFile`. On a remote host it runs there (Hosts.ts).
     */
    const runCommand = (
      worktreePath: string,
      command: string,
      options: { readonly port: number; readonly logFile: string; readonly timeoutMs: number }
    ): Effect.Effect<ShellRun> => runShell(command, { cwd: worktreePath, env: commandEnv(options.port), logFile: options.logFile, timeoutMs: options.timeoutMs })

    const merges = makeBranchWork(port, fs, path, sharedFiles)
    const vetting = makeVetting(port)

    return {
      runBranchName,
      prepareClone,
      ensureBranch,
      ensureBranches,
      addWorktree,
      addDetachedWorktree,
      copyEnvFiles,
      runCommand,
      removeStaleLock,
      removeWorktree,
      prune,
      listWorktrees,
      ...merges,
      ...vetting
    } as const
  })
}) {}
