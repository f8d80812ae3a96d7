// What cco checks in an agent's commits before passing them on to a lead or to the target branch: conflict markers
// (in the working tree or committed), changes to files only cco writes, and files too large to push.
import { Effect } from "effect"
import { type Git, gitError, outputOf } from "./Git.js"

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

export const splitNul = (text: string): Array<string> => text.split("\0").filter((s) => s !== "")

/** The vetting operations of the Worktree service, over the Git port. */
export const makeVetting = (git: Git) => {
  const conflictMarkers = Effect.fn("Worktree.conflictMarkers")(function*(worktreePath: string) {
    // Only files changed against HEAD: a repository may legitimately hold markers (test fixtures).
    const changed = splitNul(yield* git.output(worktreePath, ["diff", "HEAD", "--name-only", "-z"]))
    if (changed.length === 0) return [] as ReadonlyArray<string>
    const args = ["--literal-pathspecs", "grep", "-l", "-z", "-E", "^(<<<<<<<|>>>>>>>)( |$)", "--", ...changed]
    const result = yield* git.run(worktreePath, args)
    if (result.exitCode === 1) return [] as ReadonlyArray<string>
    if (result.exitCode !== 0) return yield* gitError("git grep conflict markers", worktreePath, outputOf(result))
    return splitNul(result.stdout) as ReadonlyArray<string>
  })

  const mergeBaseOf = (repoDir: string, base: string, head: string) =>
    Effect.flatMap(git.run(repoDir, ["merge-base", base, head]), (result) =>
      result.exitCode === 0
        ? Effect.succeed(result.stdout.trim())
        : result.exitCode === 1
        ? Effect.succeed(emptyTree)
        : Effect.fail(gitError(`git merge-base ${base} ${head}`, repoDir, outputOf(result))))

  /**
   * Files in which the commits of `head` since its merge base with `base` add a conflict (see
   * hasConflictStructure), judged on the committed content: what a merge of `head` would bring, whatever the
   * working tree shows. Markers the base already had (a test fixture, a file only renamed) do not count.
   */
  const addedConflictMarkers = Effect.fn("Worktree.addedConflictMarkers")(
    function*(repoDir: string, base: string, head: string) {
      const from = yield* mergeBaseOf(repoDir, base, head)
      // -G narrows to the files whose added or removed lines start a conflict, so the patch read below stays
      // small however large the change; binary files are skipped by both calls alike.
      const diff = ["-c", "core.quotePath=false", "diff", "--no-color", "--no-ext-diff", "--no-textconv", "-M", "-G^<<<<<<<", from, head]
      const names = splitNul(yield* git.output(repoDir, [...diff, "--name-only", "-z", "--"]))
      if (names.length === 0) return [] as ReadonlyArray<string>
      const patch = yield* git.output(repoDir, [...diff, "-U0", "--"])
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
   * removed would still be pushed with its commit). One listing finds whether there are any: git leaves blobs above
   * the limit out of it and names them; only then are their paths and sizes looked up.
   */
  const largeFiles = Effect.fn("Worktree.largeFiles")(
    function*(repoDir: string, base: string, head: string, maxBytes: number = maxFileBytes) {
      const range = [head, "--not", base, "--"]
      const filtered = yield* git.output(repoDir, ["rev-list", "--objects", `--filter=blob:limit=${maxBytes + 1}`, "--filter-print-omitted", ...range])
      const omitted = filtered.split("\n").filter((l) => l.startsWith("~")).map((l) => l.slice(1).trim())
      if (omitted.length === 0) return [] as ReadonlyArray<{ readonly file: string; readonly bytes: number }>
      const paths = new Map<string, string>()
      for (const line of (yield* git.output(repoDir, ["rev-list", "--objects", ...range])).split("\n")) {
        const space = line.indexOf(" ")
        if (space > 0) paths.set(line.slice(0, space), line.slice(space + 1))
      }
      const sized = yield* Effect.forEach(omitted, (oid) =>
        Effect.map(git.output(repoDir, ["cat-file", "-s", oid]), (out) => ({ file: paths.get(oid) ?? "", bytes: Number(out.trim()) })), { concurrency: 4 })
      const large = new Map<string, number>()
      for (const { bytes, file } of sized) {
        if (bytes > maxBytes && bytes > (large.get(file) ?? 0)) large.set(file, bytes)
      }
      return [...large].map(([file, bytes]) => ({ file, bytes })) as ReadonlyArray<{ readonly file: string; readonly bytes: number }>
    }
  )

  /** Which of `files` the commits of `head` since its merge base with `base` change. */
  const changedAmong = Effect.fn("Worktree.changedAmong")(
    function*(repoDir: string, base: string, head: string, files: ReadonlyArray<string>) {
      if (files.length === 0) return [] as ReadonlyArray<string>
      const from = yield* mergeBaseOf(repoDir, base, head)
      return splitNul(yield* git.output(repoDir, ["diff", "--no-ext-diff", "--no-renames", "--name-only", "-z", from, head, "--", ...files])) as ReadonlyArray<string>
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

  return { conflictMarkers, addedConflictMarkers, largeFiles, changedAmong, vetCommits } as const
}
