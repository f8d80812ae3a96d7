// Git over a run's hosts (see Hosts.ts): a command in a remote worktree runs there through the host's SSH
// connection, with the branches it names that the orchestrator moves pushed there first; a command here that names a
// remote instance's branch fetches it from there first; what is about origin is done from the run's clone here.
import * as CommandExecutor from "@effect/platform/CommandExecutor"
import { type Context, Effect } from "effect"
import type { StatusResult } from "simple-git"
import { Git, type GitCallOptions, gitError, type GitOutput, outputOf } from "./Git.js"
import type { HostMoves, RunHostSite } from "./HostsPlacement.js"
import { LOCAL } from "./HostsConfig.js"
import type { RunLog } from "./RunLog.js"
import { shellQuote } from "./Shell.js"
import * as Ssh from "./Ssh.js"
import { agentPushUrl } from "./Worktree.js"

// --- git over several hosts ---------------------------------------------------------------------------------------

type GitPort = Context.Tag.Service<typeof Git>

// What cco's own git calls get (see Git.ts): no prompt, no editor, no hooks, no fsmonitor, English messages.
const remoteGitEnv = (options: GitCallOptions): Record<string, string> => {
  const env: Record<string, string> = { GIT_TERMINAL_PROMPT: "0", GIT_MERGE_AUTOEDIT: "no", GIT_EDITOR: ":", GIT_OPTIONAL_LOCKS: "0", LC_ALL: "C" }
  if (options.identity === true) Object.assign(env, { GIT_AUTHOR_NAME: "cco", GIT_AUTHOR_EMAIL: "cco@localhost", GIT_COMMITTER_NAME: "cco", GIT_COMMITTER_EMAIL: "cco@localhost" })
  const config = [["core.hooksPath", "/dev/null"], ["core.fsmonitor", "false"], ...Object.entries(options.config ?? {})]
  config.forEach(([k, v], i) => {
    env[`GIT_CONFIG_KEY_${i}`] = k!
    env[`GIT_CONFIG_VALUE_${i}`] = v!
  })
  env.GIT_CONFIG_COUNT = String(config.length)
  return env
}

// Branch names an argument may mention: `a..b`, `a...b`, `refs/heads/a`, `a^{commit}`, `a~2`, `a:b`.
export const mentioned = (args: ReadonlyArray<string>): ReadonlyArray<string> =>
  [...new Set(args.filter((a) => !a.startsWith("-")).flatMap((a) => a.split(/\.\.\.?|:/)).map((a) =>
    a.replace(/^\+/, "").replace(/^refs\/heads\//, "").replace(/[\^~].*$/, "")
  ).filter((a) => /^[A-Za-z0-9._/-]+$/.test(a) && !a.startsWith("/")))]

// Calls in a remote worktree that are about origin: made from the run's clone (the branch fetched first).
export const aboutOrigin = (args: ReadonlyArray<string>) =>
  args[0] === "push" ||
  (args[0] === "update-ref" && (args[1] ?? "").startsWith("refs/remotes/")) ||
  (args[0] === "config" && args.some((a) => /^(remote|branch)\./.test(a)))

export const routedGit = (
  local: GitPort,
  localRepo: string,
  runId: string,
  hosts: ReadonlyArray<RunHostSite>,
  placed: ReadonlyMap<string, string>,
  runLog: Context.Tag.Service<typeof RunLog>,
  moves: HostMoves
) =>
  Effect.gen(function*() {
    const executor = yield* CommandExecutor.CommandExecutor
    const siteOf = new Map(hosts.map((h) => [h.host.name, h]))
    // The worktree there of an instance moved here is its worktree here.
    const remap = (cwd: string | undefined) => {
      if (cwd === undefined || moves.moved.size === 0) return cwd
      for (const [instance, here] of moves.moved) {
        const there = siteOf.get(placed.get(instance) ?? LOCAL)
        const dir = there === undefined ? undefined : `${there.runDir}/worktrees/${instance}`
        if (dir !== undefined && (cwd === dir || cwd.startsWith(`${dir}/`))) return `${here}${cwd.slice(dir.length)}`
      }
      return cwd
    }
    const hostOfPath = (cwd: string | undefined) =>
      cwd === undefined ? undefined : hosts.find((h) => cwd === h.runDir || cwd.startsWith(`${h.runDir}/`))
    const branchPrefix = `cco/${runId}/`
    // The remote instance whose branch `name` is.
    const ownerOf = (name: string) => {
      if (!name.startsWith(branchPrefix) || moves.moved.has(name.slice(branchPrefix.length))) return undefined
      const host = placed.get(name.slice(branchPrefix.length))
      return host === undefined || host === LOCAL ? undefined : siteOf.get(host)
    }
    const locks = new Map(yield* Effect.forEach(hosts, (h) => Effect.map(Effect.makeSemaphore(1), (s) => [h.host.name, s] as const)))
    const ready = new Set<string>()
    // Branches of remote instances there already: from then on the remote clone has the newest of them.
    const materialised = new Set<string>()
    const pushed = new Map<string, string>()

    const transport = (site: RunHostSite): GitCallOptions => ({
      config: {
        [`remote.cco-host.url`]: `ssh://${site.host.ssh}${site.repoDir}`,
        "core.sshCommand": ["ssh", ...Ssh.sshOptions(site.host, site.target.controlPath)].map(shellQuote).join(" ")
      }
    })

    const remoteRun = (site: RunHostSite, cwd: string, args: ReadonlyArray<string>, options: GitCallOptions, stdin?: string) => {
      const env = Object.entries(remoteGitEnv(options)).map(([k, v]) => `${k}=${shellQuote(v)}`).join(" ")
      const script = `cd ${shellQuote(cwd)} && exec env ${env} git ${args.map(shellQuote).join(" ")}`
      return Ssh.run(site.target, script, stdin).pipe(
        Effect.provideService(CommandExecutor.CommandExecutor, executor),
        Effect.map((r): GitOutput => r),
        Effect.mapError((e) => gitError(`git ${args.join(" ")}`, `${site.host.name}:${cwd}`, e.message))
      )
    }

    // cco's clone there: an empty repository whose branches come from the run's clone; its agents cannot push.
    // A resumed run finds it with its instances' branches, which may be ahead of this machine's: from then on they
    // are taken from there, never pushed over.
    const ensureClone = (site: RunHostSite) =>
      Effect.suspend(() => {
        if (ready.has(site.host.name)) return Effect.void
        return Effect.gen(function*() {
          const who = yield* Effect.forEach(["user.name", "user.email"], (k) =>
            Effect.map(local.run(localRepo, ["config", "--get", k]), (r) => r.stdout.trim()))
          const q = shellQuote
          const there = yield* Ssh.output(site.target, [
            `mkdir -p ${q(site.runDir)}/worktrees`,
            `{ [ -d ${q(site.repoDir)}/.git ] || git init -q ${q(site.repoDir)}; }`,
            `git -C ${q(site.repoDir)} config user.name ${q(who[0] || "cco")}`,
            `git -C ${q(site.repoDir)} config user.email ${q(who[1] || "cco@localhost")}`,
            `git -C ${q(site.repoDir)} config receive.denyCurrentBranch refuse`,
            `{ git -C ${q(site.repoDir)} remote get-url origin >/dev/null 2>&1 || git -C ${q(site.repoDir)} remote add origin ${q(agentPushUrl)}; }`,
            `git -C ${q(site.repoDir)} for-each-ref --format='%(refname)' ${q(`refs/heads/${branchPrefix}`)}`
          ].join(" && ")).pipe(
            Effect.provideService(CommandExecutor.CommandExecutor, executor),
            Effect.mapError((e) => gitError("prepare clone", `${site.host.name}:${site.repoDir}`, e.message))
          )
          for (const ref of there.split("\n")) {
            const name = ref.trim().slice("refs/heads/".length)
            if (ref.startsWith("refs/heads/") && ownerOf(name) === site) materialised.add(name)
          }
          ready.add(site.host.name)
          yield* runLog.log("host.clone-ready", { host: site.host.name, repoDir: site.repoDir })
        })
      })

    // The branches a command there names, as the run's clone has them, pushed there when they moved (or are new).
    const pushMentioned = (site: RunHostSite, args: ReadonlyArray<string>) =>
      Effect.gen(function*() {
        const names = mentioned(args)
        if (names.length === 0) return
        const out = yield* local.output(localRepo, ["for-each-ref", "--format=%(objectname) %(refname)", ...names.map((n) => `refs/heads/${n}`)])
        const refspecs: Array<string> = []
        for (const line of out.split("\n")) {
          const [sha, ref] = line.split(" ")
          if (sha === undefined || ref === undefined || !ref.startsWith("refs/heads/")) continue
          const name = ref.slice("refs/heads/".length)
          if (!names.includes(name)) continue
          const owner = ownerOf(name)
          if (owner === site && materialised.has(name)) continue
          const key = `${site.host.name} ${name}`
          if (pushed.get(key) === sha) continue
          refspecs.push(`+${sha}:refs/heads/${name}`)
          pushed.set(key, sha)
          if (owner === site) materialised.add(name)
        }
        if (refspecs.length === 0) return
        yield* local.output(localRepo, ["push", "--quiet", "--no-verify", "cco-host", ...refspecs], transport(site)).pipe(
          Effect.tapError(() => Effect.sync(() => refspecs.forEach((r) => pushed.delete(`${site.host.name} ${r.split(":refs/heads/")[1]}`))))
        )
      })

    // The branches of remote instances a command here names, fetched from their clones first.
    const fetchMentioned = (args: ReadonlyArray<string>) =>
      Effect.forEach(
        [...new Map(mentioned(args).flatMap((name) => {
          const owner = ownerOf(name)
          // A host that is down keeps what it did not hand over.
          return owner !== undefined && !moves.down.has(owner.host.name) ? [[name, owner] as const] : []
        }))],
        ([name, site]) => Effect.zipRight(ensureClone(site), Effect.suspend(() => materialised.has(name) ? fetchOne(name, site) : Effect.void)),
        { discard: true }
      )
    const fetchOne = (name: string, site: RunHostSite) =>
      locks.get(site.host.name)!.withPermits(1)(
        local.output(localRepo, ["fetch", "--quiet", "--no-tags", "cco-host", `+refs/heads/${name}:refs/heads/${name}`], transport(site))
      )

    const run = Effect.fn("Git.run")(function*(given: string | undefined, args: ReadonlyArray<string>, options: GitCallOptions = {}) {
      const cwd = remap(given)
      const site = hostOfPath(cwd)
      if (site === undefined) {
        yield* fetchMentioned(args)
        return yield* local.run(cwd, args, options)
      }
      if (aboutOrigin(args)) {
        yield* fetchMentioned(args)
        return yield* local.run(localRepo, args, options)
      }
      // Per-call config may hold a URL with credentials: it never goes into a command line there.
      if (Object.keys(options.config ?? {}).length > 0) return yield* gitError(`git ${args.join(" ")}`, `${site.host.name}:${cwd}`, "per-call config is not sent to a remote host")
      yield* ensureClone(site)
      yield* locks.get(site.host.name)!.withPermits(1)(pushMentioned(site, args))
      return yield* remoteRun(site, cwd!, args, options)
    })

    const output = Effect.fn("Git.output")(function*(cwd: string | undefined, args: ReadonlyArray<string>, options: GitCallOptions = {}) {
      const seen = yield* run(cwd, args, options)
      if (seen.exitCode !== 0) return yield* gitError(`git ${args.join(" ")}`, cwd ?? ".", outputOf(seen))
      return seen.stdout
    })

    const status = Effect.fn("Git.status")(function*(given: string, args: ReadonlyArray<string> = []) {
      const cwd = remap(given)!
      if (hostOfPath(cwd) === undefined) return yield* local.status(cwd, args)
      const out = yield* output(cwd, ["status", "--porcelain", ...args])
      // What cco asks of a status there: whether the worktree is clean.
      return { isClean: () => out.trim() === "", files: [] } as unknown as StatusResult
    })

    const branches = Effect.fn("Git.branches")(function*(cwd: string, args: ReadonlyArray<string>) {
      if (hostOfPath(cwd) !== undefined) return yield* gitError(`git branch ${args.join(" ")}`, cwd, "not available in a remote worktree")
      return yield* local.branches(cwd, args)
    })

    const withInput = Effect.fn("Git.withInput")(function*(given: string, args: ReadonlyArray<string>, input: string) {
      const cwd = remap(given)!
      const site = hostOfPath(cwd)
      if (site === undefined) return yield* local.withInput(cwd, args, input)
      yield* ensureClone(site)
      const seen = yield* remoteRun(site, cwd, args, {}, input)
      if (seen.exitCode !== 0) return yield* gitError(`git ${args.join(" ")}`, cwd, outputOf(seen))
      return seen.stdout
    })

    return Git.make({ run, output, status, branches, version: local.version, withInput })
  })
