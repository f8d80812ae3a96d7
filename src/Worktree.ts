// Owns every git operation cco performs: the run's clone, branches, one worktree per instance,
// merges between branches, pushes, and the local env files copied into worktrees.
import * as CommandExecutor from "@effect/platform/CommandExecutor"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import * as NodeContext from "@effect/platform-node/NodeContext"
import { Data, Effect, Option, Schema } from "effect"
import { exec, type ExecResult } from "./Exec.js"
import { MAX_BYTES, readRegularFile } from "./RegularFile.js"

export class GitError extends Schema.TaggedError<GitError>()("GitError", {
  operation: Schema.String,
  repo: Schema.String,
  message: Schema.String
}) {}

export type MergeResult = Data.TaggedEnum<{
  Merged: { readonly commit: string }
  AlreadyUpToDate: {}
  Conflict: { readonly files: ReadonlyArray<string> }
}>
export const MergeResult = Data.taggedEnum<MergeResult>()

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

/** Identity for the commits cco makes itself (merges, safety commits, TEAM_STRUCTURE.md). */
export const ccoIdentity = { name: "cco", email: "cco@localhost" } as const

const pad2 = (n: number) => String(n).padStart(2, "0")

/** `run/YYYY-MM-DD-HH-MM` in local time. */
export const runBranchName = (date: Date): string =>
  `run/${date.getFullYear()}-${pad2(date.getMonth() + 1)}-${pad2(date.getDate())}-${pad2(date.getHours())}-${
    pad2(date.getMinutes())
  }`

const urlCredentials = /([a-z][a-z0-9+.-]*:\/\/)[^/\s@]*@/gi

/** Removes user:password@ (or token@) from any URL inside `text`. */
export const stripCredentials = (text: string): string => text.replace(urlCredentials, "$1***@")

// Git must never wait for a human: no credential prompts, no editors, no optional index locks
// (status in a worktree an agent is using), and messages in a fixed language so they can be recognised.
// Nor for an agent: the clone's config is shared with every agent, so hooks (an `npm install` sets
// core.hooksPath, an agent can write .git/hooks) and an fsmonitor command never run inside cco's git calls.
const baseEnv: Readonly<Record<string, string>> = {
  GIT_TERMINAL_PROMPT: "0",
  GIT_MERGE_AUTOEDIT: "no",
  GIT_EDITOR: ":",
  GIT_OPTIONAL_LOCKS: "0",
  LC_ALL: "C",
  GIT_CONFIG_COUNT: "2",
  GIT_CONFIG_KEY_0: "core.hooksPath",
  GIT_CONFIG_VALUE_0: "/dev/null",
  GIT_CONFIG_KEY_1: "core.fsmonitor",
  GIT_CONFIG_VALUE_1: "false"
}

const identityEnv: Readonly<Record<string, string>> = {
  ...baseEnv,
  GIT_AUTHOR_NAME: ccoIdentity.name,
  GIT_AUTHOR_EMAIL: ccoIdentity.email,
  GIT_COMMITTER_NAME: ccoIdentity.name,
  GIT_COMMITTER_EMAIL: ccoIdentity.email
}

const isRemoteUrl = (url: string) => /^[a-z][a-z0-9+.-]*:\/\//i.test(url) || /^[^/]+:/.test(url)

const outputOf = (result: ExecResult) => {
  const text = result.stderr.trim() || result.stdout.trim()
  return text === "" ? `git exited with code ${result.exitCode}` : text
}

const splitNul = (text: string) => text.split("\0").filter((s) => s !== "")

const splitLines = (text: string) => text.split("\n").map((s) => s.trim()).filter((s) => s !== "")

/**
 * Whether these lines (a file's added lines, in order) hold a conflict as git writes one: a `<<<<<<< ` line, later a
 * line of exactly as many `=`, later a `>>>>>>> ` line of the same size. A lone `=======` (a Markdown or RST
 * underline) or a quoted `>>>>>>>` is no conflict.
 */
export const hasConflictStructure = (lines: Iterable<string>): boolean => {
  let size: number | undefined
  let separated = false
  for (const raw of lines) {
    const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw
    const start = /^(<{7,})(?: |$)/.exec(line)
    if (start !== null) {
      size = start[1]!.length
      separated = false
    } else if (size !== undefined && !separated && line === "=".repeat(size)) {
      separated = true
    } else if (size !== undefined && separated && line.startsWith(">".repeat(size)) && /^(?: |$)/.test(line.slice(size))) {
      return true
    }
  }
  return false
}

// The empty tree: what a history without a common ancestor is compared against.
const emptyTree = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"

/** Files only cco writes; an agent's commit that changes them is not passed on. */
export const ccoOwnedFiles: ReadonlyArray<string> = ["TEAM_STRUCTURE.md"]

/** The largest file an agent's commit may add or grow to before cco refuses to pass it on (50 MiB). */
export const maxFileBytes = 50 * 1024 * 1024

// Rounded up: a file just above the limit never reads as the limit itself.
const mebibytes = (bytes: number) => {
  const m = bytes / (1024 * 1024)
  return `${Number.isInteger(m) ? m : (Math.ceil(m * 10) / 10).toFixed(1)} MiB`
}

// A file name chosen by an agent, shown to another: control characters are escaped, never passed on.
const showPath = (file: string) => /[\u0000-\u001f\u007f-\u009f]/.test(file) ? JSON.stringify(file) : file
const showPaths = (files: ReadonlyArray<string>) => files.map(showPath).join(", ")

export class Worktree extends Effect.Service<Worktree>()("cco/Worktree", {
  dependencies: [NodeContext.layer],
  effect: Effect.gen(function*() {
    const executor = yield* CommandExecutor.CommandExecutor
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    // Writes to files every worktree shares (the common config via push -u, info/exclude) are serialised:
    // git refuses a second writer on config.lock instead of waiting.
    const sharedFiles = yield* Effect.makeSemaphore(1)
    // Worktree administration is serialised too: `git worktree add` reads every registered worktree,
    // and one registered by a concurrent add may not have its files yet ("failed to read .../commondir").
    const worktreeAdmin = yield* Effect.makeSemaphore(1)
    const administering = worktreeAdmin.withPermits(1)

    const gitError = (operation: string, repo: string, message: string) =>
      new GitError({
        operation: stripCredentials(operation),
        repo: stripCredentials(repo),
        message: stripCredentials(message)
      })

    /** Runs git; any exit code is returned, only a failure to start git is an error. */
    const run = (
      cwd: string | undefined,
      args: ReadonlyArray<string>,
      env: Readonly<Record<string, string>> = baseEnv,
      stdin?: string
    ): Effect.Effect<ExecResult, GitError> =>
      exec("git", args, { env, ...(cwd === undefined ? {} : { cwd }), ...(stdin === undefined ? {} : { stdin }) }).pipe(
        Effect.provideService(CommandExecutor.CommandExecutor, executor),
        Effect.mapError((e) =>
          gitError(
            `git ${args.join(" ")}`,
            cwd ?? ".",
            // The executor checks the working directory first; say which one is missing.
            cwd !== undefined && e._tag === "SystemError" && e.reason === "NotFound" && e.message.includes(cwd)
              ? `directory ${cwd} does not exist`
              : `cannot run git: ${e.message}`
          )
        )
      )

    /** Runs git and fails with a GitError on a non-zero exit; returns stdout. */
    const git = (
      cwd: string | undefined,
      args: ReadonlyArray<string>,
      env: Readonly<Record<string, string>> = baseEnv
    ): Effect.Effect<string, GitError> =>
      Effect.flatMap(run(cwd, args, env), (result) =>
        result.exitCode === 0
          ? Effect.succeed(result.stdout)
          : Effect.fail(gitError(`git ${args.join(" ")}`, cwd ?? ".", outputOf(result))))

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
        const creates: Array<string> = []
        for (const { base, branch } of wanted) {
          const own = `refs/heads/${branch}`
          if (refs.has(own)) continue
          const start = startCandidates(base).map((ref) => refs.get(ref)).find((sha) => sha !== undefined)
          if (start === undefined) return yield* noStart(repoDir, branch, base)
          refs.set(own, start)
          creates.push(`create ${own} ${start}\n`)
        }
        if (creates.length === 0) return
        const result = yield* run(repoDir, ["update-ref", "--stdin"], baseEnv, creates.join(""))
        if (result.exitCode !== 0) return yield* gitError("git update-ref --stdin", repoDir, outputOf(result))
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
      yield* sharedFiles.withPermits(1)(Effect.gen(function*() {
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

    const unmergedFiles = (worktreePath: string) =>
      Effect.map(git(worktreePath, ["diff", "--name-only", "--diff-filter=U", "-z"]), splitNul)

    const headCommit = Effect.fn("Worktree.headCommit")(function*(worktreePath: string) {
      return (yield* git(worktreePath, ["rev-parse", "HEAD"])).trim()
    })

    const merge = Effect.fn("Worktree.merge")(
      function*(worktreePath: string, branch: string, options: { readonly message: string; readonly keepConflict?: boolean }) {
        // --no-verify: the repository's hooks (installed by agents via npm, say) are not cco's to satisfy.
        const args = ["merge", "--no-ff", "--no-edit", "--no-verify", "-m", options.message, branch]
        const result = yield* run(worktreePath, args, identityEnv)
        if (result.exitCode === 0) {
          if (/Already up[ -]to[ -]date/i.test(result.stdout)) return MergeResult.AlreadyUpToDate()
          return MergeResult.Merged({ commit: yield* headCommit(worktreePath) })
        }
        const files = yield* unmergedFiles(worktreePath)
        if (files.length === 0) return yield* gitError(`git merge ${branch}`, worktreePath, outputOf(result))
        if (options.keepConflict !== true) yield* git(worktreePath, ["merge", "--abort"])
        return MergeResult.Conflict({ files })
      }
    )

    const mergeInProgress = Effect.fn("Worktree.mergeInProgress")(function*(worktreePath: string) {
      const result = yield* run(worktreePath, ["rev-parse", "-q", "--verify", "MERGE_HEAD"])
      if (result.exitCode === 0) return true
      if (result.exitCode === 1) return false
      return yield* gitError("git rev-parse MERGE_HEAD", worktreePath, outputOf(result))
    })

    const conflictMarkers = Effect.fn("Worktree.conflictMarkers")(function*(worktreePath: string) {
      // Only files changed against HEAD: a repository may legitimately hold markers (test fixtures).
      const changed = splitNul(yield* git(worktreePath, ["diff", "HEAD", "--name-only", "-z"]))
      if (changed.length === 0) return [] as ReadonlyArray<string>
      const args = ["--literal-pathspecs", "grep", "-l", "-z", "-E", "^(<<<<<<<|>>>>>>>)( |$)", "--", ...changed]
      const result = yield* run(worktreePath, args)
      if (result.exitCode === 1) return [] as ReadonlyArray<string>
      if (result.exitCode !== 0) return yield* gitError("git grep conflict markers", worktreePath, outputOf(result))
      return splitNul(result.stdout) as ReadonlyArray<string>
    })

    /**
     * Files in which the commits of `head` since its merge base with `base` add a conflict (see
     * hasConflictStructure), judged on the committed content: what a merge of `head` would bring, whatever the
     * working tree shows. Markers the base already had (a test fixture, a file only renamed) do not count.
     */
    const mergeBaseOf = (repoDir: string, base: string, head: string) =>
      Effect.flatMap(run(repoDir, ["merge-base", base, head]), (result) =>
        result.exitCode === 0
          ? Effect.succeed(result.stdout.trim())
          : result.exitCode === 1
          ? Effect.succeed(emptyTree)
          : Effect.fail(gitError(`git merge-base ${base} ${head}`, repoDir, outputOf(result))))

    const addedConflictMarkers = Effect.fn("Worktree.addedConflictMarkers")(
      function*(repoDir: string, base: string, head: string) {
        const from = yield* mergeBaseOf(repoDir, base, head)
        // -G narrows to the files whose added or removed lines start a conflict, so the patch read below stays
        // small however large the change; binary files are skipped by both calls alike.
        const diff = ["-c", "core.quotePath=false", "diff", "--no-color", "--no-ext-diff", "--no-textconv", "-M", "-G^<<<<<<<", from, head]
        const names = splitNul(yield* git(repoDir, [...diff, "--name-only", "-z", "--"]))
        if (names.length === 0) return [] as ReadonlyArray<string>
        const patch = yield* git(repoDir, [...diff, "-U0", "--"])
        const sections = patch.split(/^diff --git /m).slice(1)
        if (sections.length !== names.length) {
          return yield* gitError(`git diff ${from} ${head}`, repoDir, `expected ${names.length} file diffs, found ${sections.length}`)
        }
        const flagged = names.filter((_, i) => {
          const lines = sections[i]!.split("\n")
          const hunk = lines.findIndex((l) => l.startsWith("@@"))
          if (hunk < 0) return false
          return hasConflictStructure(lines.slice(hunk).filter((l) => l.startsWith("+")).map((l) => l.slice(1)))
        })
        return flagged as ReadonlyArray<string>
      }
    )

    /**
     * Files above maxBytes in the commits of `head` that `base` lacks, in any of them (a file committed and then
     * removed would still be pushed with its commit).
     */
    const largeFiles = Effect.fn("Worktree.largeFiles")(
      function*(repoDir: string, base: string, head: string, maxBytes: number = maxFileBytes) {
        const objects = yield* git(repoDir, ["rev-list", "--objects", head, "--not", base, "--"])
        if (objects.trim() === "") return [] as ReadonlyArray<{ readonly file: string; readonly bytes: number }>
        const sizes = yield* run(repoDir, ["cat-file", "--batch-check=%(objecttype) %(objectsize) %(rest)"], baseEnv, objects)
        if (sizes.exitCode !== 0) return yield* gitError("git cat-file --batch-check", repoDir, outputOf(sizes))
        const large = new Map<string, number>()
        for (const line of sizes.stdout.split("\n")) {
          const m = /^blob (\d+) (.*)$/.exec(line)
          if (m === null) continue
          const bytes = Number(m[1])
          if (bytes > maxBytes && bytes > (large.get(m[2]!) ?? 0)) large.set(m[2]!, bytes)
        }
        return [...large].map(([file, bytes]) => ({ file, bytes })) as ReadonlyArray<{ readonly file: string; readonly bytes: number }>
      }
    )

    /** Which of `files` the commits of `head` since its merge base with `base` change. */
    const changedAmong = Effect.fn("Worktree.changedAmong")(
      function*(repoDir: string, base: string, head: string, files: ReadonlyArray<string>) {
        if (files.length === 0) return [] as ReadonlyArray<string>
        const from = yield* mergeBaseOf(repoDir, base, head)
        return splitNul(yield* git(repoDir, ["diff", "--no-ext-diff", "--no-renames", "--name-only", "-z", from, head, "--", ...files])) as ReadonlyArray<string>
      }
    )

    /**
     * What the commits of `head` since its merge base with `base` bring that cco does not pass on to a lead or
     * to the target branch, each as a sentence for the agent: committed conflict markers, a change to a file only
     * cco writes, a file above maxFileBytes. Empty when there is nothing to object to.
     */
    const vetCommits = Effect.fn("Worktree.vetCommits")(
      function*(repoDir: string, base: string, head: string, options: { readonly ccoOwned?: boolean } = {}) {
        const [markers, owned, large] = yield* Effect.all([
          addedConflictMarkers(repoDir, base, head),
          options.ccoOwned === false ? Effect.succeed([] as ReadonlyArray<string>) : changedAmong(repoDir, base, head, ccoOwnedFiles),
          largeFiles(repoDir, base, head)
        ], { concurrency: 3 })
        const problems: Array<string> = []
        if (markers.length > 0) {
          problems.push(`conflict markers (<<<<<<< ======= >>>>>>>) committed in ${showPaths(markers)}: edit them to the intended content, git add, git commit`)
        }
        if (owned.length > 0) {
          problems.push(`a change to ${owned.join(", ")}, which only cco writes: undo it (git checkout $(git merge-base ${base} HEAD) -- ${owned.join(" ")}, or git rm it where that commit has none) and commit`)
        }
        if (large.length > 0) {
          problems.push(
            `${large.map((l) => `${showPath(l.file)} (${mebibytes(l.bytes)})`).join(", ")} in its commits, above the ${mebibytes(maxFileBytes)} a file may have: ` +
              `take it out of the commits that are not merged yet (git reset --soft $(git merge-base ${base} HEAD), git rm --cached the file, list it in .gitignore, commit again)`
          )
        }
        return problems as ReadonlyArray<string>
      }
    )

    // To origin's URL, not to the remote: its push URL is agentPushUrl (see prepareClone). What `push -u origin`
    // would do besides is done here: origin/<branch> moves to the pushed commit and becomes the upstream.
    const push = Effect.fn("Worktree.push")(function*(worktreePath: string, branch: string) {
      const url = (yield* git(worktreePath, ["config", "--get", "remote.origin.url"])).trim()
      const commit = (yield* git(worktreePath, ["rev-parse", "--verify", `refs/heads/${branch}^{commit}`])).trim()
      // The URL (which may hold credentials) goes through the environment as a remote of its own, not argv.
      yield* git(worktreePath, ["push", "--quiet", "cco-origin", `${commit}:refs/heads/${branch}`], {
        ...baseEnv,
        GIT_CONFIG_COUNT: "3",
        GIT_CONFIG_KEY_2: "remote.cco-origin.url",
        GIT_CONFIG_VALUE_2: url
      })
      yield* git(worktreePath, ["update-ref", `refs/remotes/origin/${branch}`, commit])
      yield* sharedFiles.withPermits(1)(Effect.gen(function*() {
        const remote = yield* run(worktreePath, ["config", "--get", `branch.${branch}.remote`])
        if (remote.stdout.trim() === "origin") return
        yield* git(worktreePath, ["config", "--local", `branch.${branch}.remote`, "origin"])
        yield* git(worktreePath, ["config", "--local", `branch.${branch}.merge`, `refs/heads/${branch}`])
      }))
    })

    const commitsAhead = Effect.fn("Worktree.commitsAhead")(
      function*(worktreePath: string, base: string, head: string) {
        const out = (yield* git(worktreePath, ["rev-list", "--count", `${base}..${head}`])).trim()
        const count = Number.parseInt(out, 10)
        if (Number.isNaN(count)) {
          return yield* gitError(`git rev-list --count ${base}..${head}`, worktreePath, `unexpected output: ${out}`)
        }
        return count
      }
    )

    const isClean = Effect.fn("Worktree.isClean")(function*(worktreePath: string) {
      const out = yield* git(worktreePath, ["status", "--porcelain", "-z", "--untracked-files=normal"])
      return out === ""
    })

    const diffStat = Effect.fn("Worktree.diffStat")(function*(worktreePath: string, base: string, head: string) {
      return (yield* git(worktreePath, ["diff", "--stat", `${base}...${head}`])).trimEnd()
    })

    const nothingToCommit = /nothing to commit|nothing added to commit|no changes added to commit/

    const commitAll = Effect.fn("Worktree.commitAll")(function*(worktreePath: string, message: string) {
      yield* git(worktreePath, ["add", "-A"])
      // Trying the commit costs one call; asking first would cost two, and a merge with no diff still commits.
      const result = yield* run(worktreePath, ["commit", "--quiet", "--no-verify", "-m", message], identityEnv)
      if (result.exitCode === 0) return true
      if (nothingToCommit.test(result.stdout)) return false
      return yield* gitError("git commit -a", worktreePath, outputOf(result))
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

    const currentBranch = Effect.fn("Worktree.currentBranch")(function*(worktreePath: string) {
      const result = yield* run(worktreePath, ["symbolic-ref", "--short", "-q", "HEAD"])
      if (result.exitCode === 0) return result.stdout.trim()
      if (result.exitCode === 1) return "HEAD"
      return yield* gitError("git symbolic-ref HEAD", worktreePath, outputOf(result))
    })

    const readFileAt = Effect.fn("Worktree.readFileAt")(function*(repoDir: string, ref: string, file: string) {
      const result = yield* run(repoDir, ["cat-file", "blob", `${ref}:${file}`])
      if (result.exitCode === 0) return result.stdout as string | undefined
      if (/does not exist in|exists on disk, but not in/.test(result.stderr)) return undefined
      return yield* gitError(`git cat-file blob ${ref}:${file}`, repoDir, outputOf(result))
    })

    const commitFile = Effect.fn("Worktree.commitFile")(
      function*(worktreePath: string, relativePath: string, content: string, message: string) {
        const file = path.join(worktreePath, relativePath)
        yield* fs.makeDirectory(path.dirname(file), { recursive: true }).pipe(
          Effect.mapError(fsError(`mkdir ${path.dirname(file)}`, worktreePath))
        )
        yield* fs.writeFileString(file, content).pipe(Effect.mapError(fsError(`write ${relativePath}`, worktreePath)))
        yield* git(worktreePath, ["add", "--", relativePath])
        const diff = yield* run(worktreePath, ["diff", "--cached", "--quiet", "--", relativePath])
        if (diff.exitCode === 0) return false
        if (diff.exitCode !== 1) return yield* gitError(`git diff --cached ${relativePath}`, worktreePath, outputOf(diff))
        // A pathspec commit takes only this file, leaving whatever an agent staged alone.
        yield* git(worktreePath, ["commit", "--quiet", "--no-verify", "-m", message, "--", relativePath], identityEnv)
        return true
      }
    )

    return {
      runBranchName,
      prepareClone,
      ensureBranch,
      ensureBranches,
      addWorktree,
      copyEnvFiles,
      merge,
      mergeInProgress,
      conflictMarkers,
      addedConflictMarkers,
      largeFiles,
      changedAmong,
      vetCommits,
      push,
      commitsAhead,
      isClean,
      diffStat,
      commitAll,
      removeStaleLock,
      headCommit,
      currentBranch,
      removeWorktree,
      prune,
      listWorktrees,
      readFileAt,
      commitFile
    } as const
  })
}) {}
