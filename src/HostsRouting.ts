// Tmux and Agent over a run's hosts (see Hosts.ts): each call goes to the host the instance (or its session) runs
// on now; calls about every session ask every host, and a host that does not answer shows none of its sessions.
import { Effect } from "effect"
import * as AgentModule from "./Agent.js"
import { Agent, type AgentShape, type LaunchRequest } from "./Agent.js"
import { type PaneInfo, Tmux, type TmuxShape } from "./Tmux.js"

// --- tmux and agents over several hosts ---------------------------------------------------------------------------

export const routedTmux = (
  local: TmuxShape,
  remote: ReadonlyMap<string, TmuxShape>,
  hostOfSession: (session: string) => string,
  /** Asked when a host does not answer: whether it is down (then its sessions are gone). */
  isDown: (host: string) => Effect.Effect<boolean>,
  /** Whether a host is known to be down now (it is not asked any more). */
  downNow: (host: string) => boolean
): TmuxShape => {
  const on = (session: string) => remote.get(hostOfSession(session)) ?? local
  const hostOfTmux = new Map([...remote].map(([h, t]) => [t, h] as const))
  const everyTmux = [local, ...remote.values()]
  const all = () => everyTmux.filter((t) => t === local || !downNow(hostOfTmux.get(t)!))
  const groups = <A extends { readonly name: string } | string>(items: ReadonlyArray<A>) => {
    const by = new Map<TmuxShape, Array<A>>()
    for (const item of items) {
      const t = on(typeof item === "string" ? item : item.name)
      by.set(t, [...(by.get(t) ?? []), item])
    }
    return [...by]
  }
  // A host that does not answer shows none of its sessions (and is looked at: is it down?).
  const merged = <A>(f: (t: TmuxShape) => Effect.Effect<ReadonlyMap<string, A>, unknown>) =>
    Effect.map(
      Effect.suspend(() => Effect.forEach(all(), (t) =>
        t === local ? f(t) : f(t).pipe(
          Effect.catchAll(() => Effect.as(isDown(hostOfTmux.get(t)!), new Map<string, A>()))
        ), { concurrency: "unbounded" })),
      (maps) => new Map(maps.flatMap((m) => [...m])) as ReadonlyMap<string, A>
    )
  return Tmux.of({
    socket: local.socket,
    version: local.version,
    newSession: (spec) => on(spec.name).newSession(spec),
    newSessions: (specs) => Effect.forEach(groups(specs), ([t, s]) => t.newSessions(s), { concurrency: "unbounded", discard: true }),
    sendText: (session, text) => on(session).sendText(session, text),
    sendKeys: (session, keys) => on(session).sendKeys(session, keys),
    capturePane: (session, history) => on(session).capturePane(session, history),
    pipePane: (session, file) => on(session).pipePane(session, file),
    paneInfo: (session) => on(session).paneInfo(session),
    paneInfos: (prefix) => merged((t) => t.paneInfos(prefix)) as Effect.Effect<ReadonlyMap<string, PaneInfo>, never>,
    capturePanes: (sessions) =>
      Effect.map(
        Effect.forEach(groups(sessions), ([t, s]) => t.capturePanes(s), { concurrency: "unbounded" }),
        (maps) => new Map(maps.flatMap((m) => [...m])) as ReadonlyMap<string, string>
      ),
    hasSession: (session) => on(session).hasSession(session),
    listSessions: (prefix) =>
      Effect.map(
        Effect.suspend(() => Effect.forEach(all(), (t) => t === local ? t.listSessions(prefix) : t.listSessions(prefix).pipe(Effect.orElseSucceed(() => [])), { concurrency: "unbounded" })),
        (lists) => lists.flat()
      ),
    sessionPaths: (prefix) => merged((t) => t.sessionPaths(prefix)) as Effect.Effect<ReadonlyMap<string, string>, never>,
    killSession: (session) => on(session).killSession(session),
    killSessions: (sessions) => Effect.forEach(groups(sessions), ([t, s]) => t.killSessions(s), { concurrency: "unbounded", discard: true }),
    killServer: Effect.suspend(() => Effect.forEach(all(), (t) => t === local ? t.killServer : t.killServer.pipe(Effect.ignore), { discard: true }))
  })
}

export const routedAgent = (
  local: AgentShape,
  remote: ReadonlyMap<string, AgentShape>,
  hostOf: (instance: string) => string,
  /** Launches an instance whose host is down here instead (see moveHere). */
  moveHere: (request: LaunchRequest) => Effect.Effect<number, AgentModule.AgentError> | undefined,
  /** Where the transcripts of an instance are read here (a remote instance's: their copy in the staging dir). */
  configDirHere: (instance: string) => string | undefined,
  /** After an instance stopped: its last transcript lines fetched. */
  stopped: (instance: string) => Effect.Effect<void>,
  /** Whether a host is known to be down now. */
  downNow: (host: string) => boolean,
  /** Moved here, its conversation left behind: said once to whoever asks after the launch (Restarts, Launch). */
  lost: Set<string> = new Set()
): AgentShape => {
  const on = (instance: string) => remote.get(hostOf(instance)) ?? local
  const groups = <A>(items: ReadonlyArray<A>, name: (a: A) => string) => {
    const by = new Map<AgentShape, Array<A>>()
    for (const item of items) by.set(on(name(item)), [...(by.get(on(name(item))) ?? []), item])
    return [...by]
  }
  return Agent.of({
    settings: local.settings,
    version: local.version,
    sessionName: local.sessionName,
    configDir: (instance) => configDirHere(instance) ?? on(instance).configDir(instance),
    launch: (request) => {
      const moving = moveHere(request)
      return moving === undefined ? on(request.instance).launch(request) : Effect.tap(moving, () => Effect.sync(() => lost.add(request.instance)))
    },
    launchMany: (requests) =>
      Effect.map(
        Effect.forEach(groups(requests, (r: LaunchRequest) => r.instance), ([a, rs]) => a.launchMany(rs), { concurrency: "unbounded" }),
        (maps) => new Map(maps.flatMap((m) => [...m])) as ReadonlyMap<string, number>
      ),
    attach: (instance, generation) => on(instance).attach(instance, generation),
    deliver: (instance, text) => on(instance).deliver(instance, text),
    interrupt: (instance) => on(instance).interrupt(instance),
    stop: (instance) => Effect.zipRight(on(instance).stop(instance), stopped(instance)),
    stopMany: (instances) =>
      Effect.zipRight(
        Effect.forEach(groups(instances, (i: string) => i), ([a, is]) => a.stopMany(is), { concurrency: "unbounded", discard: true }),
        Effect.forEach(instances, stopped, { concurrency: 4, discard: true })
      ),
    // The session of an instance whose host is down is gone (it starts here when launched again).
    isAlive: (instance) => downNow(hostOf(instance)) ? Effect.succeed(false) : on(instance).isAlive(instance),
    conversationLost: (instance) => lost.delete(instance)
  })
}
