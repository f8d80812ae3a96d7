// The git work cco does inside a worktree: merges between branches, its own commits, pushes to origin, and the
// reads around them (HEAD, commits ahead, a file at a ref).
import type * as FileSystem from "@effect/platform/FileSystem"
import type * as Path from "@effect/platform/Path"
import { Data, Effect } from "effect"
import { type Git, gitError, outputOf } from "./Git.js"
import { splitNul } from "./Vetting.js"

export type MergeResult = Data.TaggedEnum<{
  Merged: { readonly commit: string }
  AlreadyUpToDate: {}
  Conflict: { readonly files: ReadonlyArray<string> }
}>
export const MergeResult = Data.taggedEnum<MergeResult>()

const nothingToCommit = /nothing to commit|nothing added to commit|no changes added to commit/

/** The merge, commit and push operations of the Worktree service, over the Git port. */
export const makeBranchWork = (
  git: Git,
  fs: FileSystem.FileSystem,
  path: Path.Path,
  /** Serialises writes to the config every worktree shares (git refuses a second writer of config.lock). */
  sharedFiles: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
) => {
  const fsError = (operation: string, repo: string) => (e: { readonly message: string }) => gitError(operation, repo, e.message)

  /** The commit `ref` names (HEAD by default). */
  const headCommit = Effect.fn("Worktree.headCommit")(function*(worktreePath: string, ref: string = "HEAD") {
    return (yield* git.output(worktreePath, ["rev-parse", ref])).trim()
  })

  const merge = Effect.fn("Worktree.merge")(
    function*(worktreePath: string, branch: string, options: { readonly message: string; readonly keepConflict?: boolean }) {
      // --no-verify: the repository's hooks (installed by agents via npm, say) are not cco's to satisfy.
      const args = ["merge", "--no-ff", "--no-edit", "--no-verify", "-m", options.message, branch]
      const result = yield* git.run(worktreePath, args, { identity: true })
      if (result.exitCode === 0) {
        if (/Already up[ -]to[ -]date/i.test(result.stdout)) return MergeResult.AlreadyUpToDate()
        return MergeResult.Merged({ commit: yield* headCommit(worktreePath) })
      }
      // The index, not the merge's prose, says which files conflict (exact names, every kind of conflict).
      const files = splitNul(yield* git.output(worktreePath, ["diff", "--name-only", "--diff-filter=U", "-z"]))
      if (files.length === 0) return yield* gitError(`git merge ${branch}`, worktreePath, outputOf(result))
      if (options.keepConflict !== true) yield* git.output(worktreePath, ["merge", "--abort"])
      return MergeResult.Conflict({ files })
    }
  )

  /** Moves the branch checked out in the worktree forward to `commit`, files and index too; false when git refuses. */
  const fastForward = Effect.fn("Worktree.fastForward")(function*(worktreePath: string, commit: string) {
    const result = yield* git.run(worktreePath, ["merge", "--ff-only", "--quiet", commit])
    return result.exitCode === 0 ? undefined : outputOf(result).trim() || `git merge --ff-only exited with ${result.exitCode}`
  })

  const mergeInProgress = Effect.fn("Worktree.mergeInProgress")(function*(worktreePath: string) {
    const result = yield* git.run(worktreePath, ["rev-parse", "-q", "--verify", "MERGE_HEAD"])
    if (result.exitCode === 0) return true
    if (result.exitCode === 1) return false
    return yield* gitError("git rev-parse MERGE_HEAD", worktreePath, outputOf(result))
  })

  // To origin's URL, not to the remote: its push URL is agentPushUrl (see prepareClone). What `push -u origin`
  // would do besides is done here: origin/<branch> moves to the pushed commit and becomes the upstream.
  const push = Effect.fn("Worktree.push")(function*(worktreePath: string, branch: string) {
    const url = (yield* git.output(worktreePath, ["config", "--get", "remote.origin.url"])).trim()
    const commit = (yield* git.output(worktreePath, ["rev-parse", "--verify", `refs/heads/${branch}^{commit}`])).trim()
    // The URL (which may hold credentials) goes through the environment as a remote of its own, not argv.
    yield* git.output(worktreePath, ["push", "--quiet", "cco-origin", `${commit}:refs/heads/${branch}`], {
      config: { "remote.cco-origin.url": url }
    })
    yield* git.output(worktreePath, ["update-ref", `refs/remotes/origin/${branch}`, commit])
    yield* sharedFiles(Effect.gen(function*() {
      const remote = yield* git.run(worktreePath, ["config", "--get", `branch.${branch}.remote`])
      if (remote.stdout.trim() === "origin") return
      yield* git.output(worktreePath, ["config", "--local", `branch.${branch}.remote`, "origin"])
      yield* git.output(worktreePath, ["config", "--local", `branch.${branch}.merge`, `refs/heads/${branch}`])
    }))
  })

  const commitsAhead = Effect.fn("Worktree.commitsAhead")(function*(worktreePath: string, base: string, head: string) {
    const out = (yield* git.output(worktreePath, ["rev-list", "--count", `${base}..${head}`])).trim()
    const count = Number.parseInt(out, 10)
    if (Number.isNaN(count)) {
      return yield* gitError(`git rev-list --count ${base}..${head}`, worktreePath, `unexpected output: ${out}`)
    }
    return count
  })

  // Untracked files count (they would be swept into the next commit); ignored ones do not.
  const isClean = Effect.fn("Worktree.isClean")(function*(worktreePath: string) {
    return (yield* git.status(worktreePath, ["--untracked-files=normal"])).isClean()
  })

  /** The files whose content differs between two commits. */
  const changedFiles = Effect.fn("Worktree.changedFiles")(function*(repoDir: string, from: string, to: string) {
    return splitNul(yield* git.output(repoDir, ["diff", "--no-ext-diff", "--no-renames", "--name-only", "-z", from, to, "--"])) as ReadonlyArray<string>
  })

  const diffStat = Effect.fn("Worktree.diffStat")(function*(worktreePath: string, base: string, head: string) {
    return (yield* git.output(worktreePath, ["diff", "--stat", `${base}...${head}`])).trimEnd()
  })

  const commitAll = Effect.fn("Worktree.commitAll")(function*(worktreePath: string, message: string) {
    yield* git.output(worktreePath, ["add", "-A"])
    // Trying the commit costs one call; asking first would cost two, and a merge with no diff still commits.
    const result = yield* git.run(worktreePath, ["commit", "--quiet", "--no-verify", "-m", message], { identity: true })
    if (result.exitCode === 0) return true
    if (nothingToCommit.test(result.stdout)) return false
    return yield* gitError("git commit -a", worktreePath, outputOf(result))
  })

  const currentBranch = Effect.fn("Worktree.currentBranch")(function*(worktreePath: string) {
    const result = yield* git.run(worktreePath, ["symbolic-ref", "--short", "-q", "HEAD"])
    if (result.exitCode === 0) return result.stdout.trim()
    if (result.exitCode === 1) return "HEAD"
    return yield* gitError("git symbolic-ref HEAD", worktreePath, outputOf(result))
  })

  const readFileAt = Effect.fn("Worktree.readFileAt")(function*(repoDir: string, ref: string, file: string) {
    const result = yield* git.run(repoDir, ["cat-file", "blob", `${ref}:${file}`])
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
      yield* git.output(worktreePath, ["add", "--", relativePath])
      const diff = yield* git.run(worktreePath, ["diff", "--cached", "--quiet", "--", relativePath])
      if (diff.exitCode === 0) return false
      if (diff.exitCode !== 1) return yield* gitError(`git diff --cached ${relativePath}`, worktreePath, outputOf(diff))
      // A pathspec commit takes only this file, leaving whatever an agent staged alone.
      yield* git.output(worktreePath, ["commit", "--quiet", "--no-verify", "-m", message, "--", relativePath], { identity: true })
      return true
    }
  )

  return { headCommit, merge, fastForward, mergeInProgress, push, commitsAhead, isClean, changedFiles, diffStat, commitAll, currentBranch, readFileAt, commitFile } as const
}
