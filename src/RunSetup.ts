// Before any instance starts: the tools are there, a run folder to resume is really abandoned, the repository
// is cloned with its direction read, the target and instance branches exist, and the top's worktree is ready.
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import { Effect, Option } from "effect"
import type { ResolvedConfig } from "./Config.js"
import { Agent } from "./Agent.js"
import { Git } from "./Git.js"
import * as H from "./Hierarchy.js"
import { movedWorktree, remoteWorktree, resumedPlacement } from "./HostsPlacement.js"
import { isAlive } from "./Process.js"
import { MAX_BYTES, readRegularFile } from "./RegularFile.js"
import { type RunIdentity, type RunLayout, RunError, type RunOptions } from "./RunContext.js"
import type { RunLogShape } from "./RunLog.js"
import { decodeRunState, LOCK_FILE, STATE_FILE } from "./RunState.js"
import { Tmux } from "./Tmux.js"
import { runBranchName, type Worktree } from "./Worktree.js"

/**
 * A run folder that can be resumed: its state readable, its orchestrator gone, not finished, and its instances
 * placed where they ran (see Hosts.resumedPlacement).
 */
export const readResumable = (folder: string, config: ResolvedConfig) =>
  Effect.gen(function*() {
    const path = yield* Path.Path
    const fail = (message: string) => new RunError({ reason: "resume", message: `cannot resume ${folder}: ${message}` })
    const text = yield* readRegularFile(path.join(folder, STATE_FILE), MAX_BYTES.state).pipe(Effect.mapError(() => fail("it has no readable state.json")))
    const state = yield* decodeRunState(text).pipe(Effect.mapError(() => fail("its state.json is unreadable")))
    if (state.endedAt !== undefined) return yield* fail(`it already ended (${state.endReason ?? "unknown"}) at ${state.endedAt}`)
    const lock = yield* readRegularFile(path.join(folder, LOCK_FILE), MAX_BYTES.lock).pipe(Effect.option)
    const pid = Option.isSome(lock) ? Number(lock.value.trim()) : NaN
    if (pid !== process.pid && isAlive(pid)) return yield* fail(`its orchestrator is still running (pid ${pid})`)
    const placed = resumedPlacement(config, state)
    if (typeof placed === "string") return yield* fail(placed)
    return state
  })

export const preflight = (config: ResolvedConfig, options: RunOptions) =>
  Effect.gen(function*() {
    const usable = <E extends { readonly message: string }>(name: string, version: Effect.Effect<string, E>, fix: string) =>
      version.pipe(Effect.mapError((e) => new RunError({ reason: "preflight", message: `${name} is not usable (${e.message}). ${fix}` })))
    yield* usable("tmux", (yield* Tmux).version, "Install tmux (apt-get install tmux).")
    yield* Git.pipe(
      Effect.flatMap((git) => git.version()),
      Effect.mapError((e) => new RunError({ reason: "preflight", message: `git is not usable (${e.message}). Install git.` }))
    )
    yield* usable(options.claudePath, (yield* Agent).version, "Install Claude Code (npm install -g @anthropic-ai/claude-code) or set claudeCommand / CCO_CLAUDE_PATH.")
    if (config.authMode === "api-keys-only" && config.apiKeys.length === 0) {
      return yield* new RunError({ reason: "preflight", message: "authMode api-keys-only needs at least one key in api-keys.json" })
    }
  })

/** The run's clone with PROJECT_DIRECTION.md read from the configured branch; a run without one cannot start. */
const cloneWithDirection = (config: ResolvedConfig, repoDir: string, runLog: RunLogShape, git: Worktree) =>
  Effect.gen(function*() {
    yield* runLog.log("git.cloning", { repositoryUrl: config.repositoryUrl })
    yield* git.prepareClone(config.repositoryUrl, repoDir, config.branch)
    const direction = yield* git.readFileAt(repoDir, `origin/${config.branch}`, "PROJECT_DIRECTION.md").pipe(
      Effect.catchTag("GitError", (e) =>
        Effect.fail(new RunError({ reason: "branch", message: `branch ${config.branch} cannot be read from ${config.repositoryUrl}: ${e.message}` })))
    )
    if (direction === undefined || direction.trim() === "") {
      return yield* new RunError({
        reason: "no-direction",
        message: `PROJECT_DIRECTION.md is missing on branch ${config.branch} of ${config.repositoryUrl}. ` +
          "Add one at the repository root: the project's goals, what done looks like, and any constraints; the Director (or the single Engineering Manager) plans the work from it."
      })
    }
    return direction
  })

/**
 * The repository, target branch, direction, every instance's branch and the top's worktree; `makeWorktree`
 * makes the others (Launch makes them all before the first instance starts).
 */
export const prepareLayout = (config: ResolvedConfig, run: RunIdentity, runLog: RunLogShape, git: Worktree) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const repoDir = path.join(run.folder, "repo")
    const direction = yield* cloneWithDirection(config, repoDir, runLog, git)
    const target = run.previous?.targetBranch ?? (config.useRunBranch ? runBranchName(new Date(run.startedAt)) : config.branch)
    const prefix = `cco/${run.runId}`
    const topo = H.topology(config.workerCount, config.engineerManagerGroupSize)
    const specs = H.instances(topo, { target, prefix })
    const top = specs[0]!
    const specOf = new Map(specs.map((s) => [s.name, s]))
    yield* git.ensureBranch(repoDir, target, `origin/${config.branch}`)
    const startCommit = run.previous?.startCommit ??
      (yield* git.headCommit(repoDir, `refs/heads/${target}`))

    // .env / .env.local are the user's local files: from a local working copy of the repository when that is
    // what repositoryUrl names, otherwise from the config directory.
    const envSource = (yield* fs.exists(path.join(config.repositoryUrl, ".git")).pipe(Effect.orElseSucceed(() => false)))
      ? config.repositoryUrl
      : config.configDir

    // --- branches, all at once (one ref transaction)
    yield* git.ensureBranches(repoDir, specs.map((s) => ({ branch: s.branch, base: s.baseBranch ?? target })))
    // An instance placed on a remote host has its worktree in cco's clone there (see Hosts.ts).
    // (On a resume, one the run moved here from a host that went down stays here.)
    const remoteOf = (name: string) => movedWorktree(run.folder, name) === undefined ? remoteWorktree(config, run.runId, name) : undefined
    const worktrees = new Map(specs.map((spec) => [spec.name, remoteOf(spec.name)?.worktree ?? path.join(run.folder, "worktrees", spec.name)]))
    let made = 0
    const makeWorktree = (spec: H.InstanceSpec) =>
      Effect.gen(function*() {
        const dir = worktrees.get(spec.name)!
        const remote = remoteOf(spec.name)
        yield* git.addWorktree(remote?.repoDir ?? repoDir, dir, spec.branch)
        yield* git.copyEnvFiles(envSource, dir)
        made++
        yield* runLog.log("worktree.ready", { instance: spec.name, branch: spec.branch, progress: `${made}/${specs.length}` })
      })
    // The top's worktree now (TEAM_STRUCTURE.md lives there); the others in Launch.
    yield* makeWorktree(top)
    const topWorktree = worktrees.get(top.name)!
    if (config.useRunBranch) yield* git.push(topWorktree, target)
    const layout: RunLayout = { repoDir, direction, target, topo, specs, top, specOf, startCommit, worktrees, topWorktree }
    return { layout, makeWorktree }
  })
