// TmuxTest: an in-memory tmux for unit tests, with a control handle to inspect and script its sessions.
import { Context, Effect, Layer, Ref } from "effect"
import { SessionNotFound, type SessionSpec, Tmux, TmuxCommandFailed } from "./Tmux.js"
import { neutralise } from "./Untrusted.js"

export interface FakeSession {
  readonly spec: SessionSpec
  readonly pid: number
  title: string
  screen: string
  dead: boolean
  readonly input: Array<string>
}

export class TmuxTestControl extends Context.Tag("cco/TmuxTestControl")<TmuxTestControl, {
  readonly sessions: Ref.Ref<ReadonlyMap<string, FakeSession>>
  readonly session: (name: string) => Effect.Effect<FakeSession, SessionNotFound>
}>() {}

export const makeTest = Effect.gen(function*() {
  const sessions = yield* Ref.make<ReadonlyMap<string, FakeSession>>(new Map())
  let nextPid = 1000
  const get = (name: string) =>
    Effect.flatMap(Ref.get(sessions), (m) => {
      const s = m.get(name)
      return s === undefined ? Effect.fail(new SessionNotFound({ session: name })) : Effect.succeed(s)
    })
  const newSession = (spec: SessionSpec) =>
    Ref.get(sessions).pipe(
      Effect.flatMap((m) =>
        m.has(spec.name)
          ? Effect.fail(new TmuxCommandFailed({ operation: "new-session", exitCode: 1, stderr: `duplicate session: ${spec.name}` }))
          : Ref.set(sessions, new Map(m).set(spec.name, { spec, pid: nextPid++, title: "", screen: "", dead: false, input: [] }))
      )
    )
  const tmux = Tmux.of({
    socket: "test",
    version: Effect.succeed("tmux (in memory)"),
    newSession,
    // As the live one: the sessions up to a failing command exist.
    newSessions: (specs) => Effect.forEach(specs, newSession, { discard: true }),
    sendText: (name, text) => Effect.map(get(name), (s) => void s.input.push(neutralise(text))),
    sendKeys: (name, keys) => Effect.map(get(name), (s) => void s.input.push(...keys.map((k) => `<${k}>`))),
    capturePane: (name) => Effect.map(get(name), (s) => s.screen),
    pipePane: (name) => Effect.asVoid(get(name)),
    paneInfo: (name) => Effect.map(get(name), (s) => ({ title: s.title, pid: s.pid, dead: s.dead })),
    paneInfos: (prefix) =>
      Effect.map(Ref.get(sessions), (m) =>
        new Map([...m].filter(([n]) => n.startsWith(prefix)).map(([n, s]) => [n, { title: s.title, pid: s.pid, dead: s.dead }] as const))),
    // As the live one: a missing session fails the whole call.
    capturePanes: (names) =>
      Effect.map(Effect.forEach(names, (n) => Effect.map(get(n), (s) => [n, s.screen] as const)), (pairs) => new Map(pairs)),
    hasSession: (name) => Effect.map(Ref.get(sessions), (m) => m.has(name)),
    listSessions: (prefix) =>
      Effect.map(Ref.get(sessions), (m) => [...m.keys()].filter((n) => prefix === undefined || n.startsWith(prefix))),
    sessionPaths: (prefix) =>
      Effect.map(Ref.get(sessions), (m) => new Map([...m].filter(([n]) => n.startsWith(prefix)).map(([n, s]) => [n, s.spec.cwd] as const))),
    killSession: (name) =>
      get(name).pipe(Effect.zipRight(Ref.update(sessions, (m) => {
        const next = new Map(m)
        next.delete(name)
        return next
      }))),
    killSessions: (names) =>
      Ref.update(sessions, (m) => {
        const next = new Map(m)
        for (const n of names) next.delete(n)
        return next
      }),
    killServer: Ref.set(sessions, new Map())
  })
  return { tmux, control: TmuxTestControl.of({ sessions, session: get }) }
})

/** In-memory tmux plus a control handle for tests to inspect and script sessions. */
export const TmuxTest = Layer.effectContext(
  Effect.map(makeTest, ({ control, tmux }) => Context.make(Tmux, tmux).pipe(Context.add(TmuxTestControl, control)))
)
