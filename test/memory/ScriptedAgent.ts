// An in-memory Agent for whole orchestrations without tmux or agent processes: each "session" is a fiber on a
// TmuxTest session that takes delivered prompts one turn at a time, sends its hooks and team commands straight
// into the Events service (Events.receive: the same decoding, tokens and handlers as the control socket) and
// works in its git worktree. What a turn does is a Behaviour: a script reading the prompt, as a model would.
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import { Context, Effect, Fiber, Option, Redacted, Ref } from "effect"
import { Agent, AgentError, type AgentShape, type LaunchRequest } from "../../src/Agent.js"
import { Events } from "../../src/Events.js"
import { Git } from "../../src/Git.js"
import type { HookName } from "../../src/HookPayload.js"
import { agentSettings, type RunSite } from "../../src/RunLayers.js"
import { RunLog } from "../../src/RunLog.js"
import { Tmux } from "../../src/Tmux.js"
import { type FakeSession, TmuxTestControl } from "../../src/TmuxTest.js"
import { neutralise } from "../../src/Untrusted.js"

export const IDLE_TITLE = "✳ Claude Code"
export const BUSY_TITLE = "⠂ Claude Code"
const INPUT_BOX = `${"─".repeat(60)}\n❯ \n`

/** How a turn ends: as the CLI ends it (Stop), on an API error (StopFailure), or with the process gone. */
export type TurnEnd =
  | { readonly _tag: "Stop"; readonly text: string }
  | { readonly _tag: "Fail"; readonly error: string; readonly line: string }
  | { readonly _tag: "Crash" }
  | { readonly _tag: "Hang" }

export const stop = (text: string): TurnEnd => ({ _tag: "Stop", text })
export const crash: TurnEnd = { _tag: "Crash" }
/** The turn never ends by itself (a tool that hangs): only Escape or the session's end stop it. */
export const hang: TurnEnd = { _tag: "Hang" }
export const fail = (error: string, line: string): TurnEnd => ({ _tag: "Fail", error, line })

export interface TeamAnswer {
  readonly status: number
  readonly text: string
}

/** What a scripted agent can do in a turn. */
export interface AgentIO {
  readonly name: string
  readonly generation: number
  readonly credential: string
  readonly worktree: string
  /** `cco team <command> <args…>`: the answer the client would print. A PostToolUse follows, as after any Bash call. */
  readonly team: (command: string, ...args: ReadonlyArray<string>) => Effect.Effect<TeamAnswer>
  /** git in the worktree (the Bash tool's git): output, or the failure's text. */
  readonly git: (...args: ReadonlyArray<string>) => Effect.Effect<string, string>
  /** Writes a file in the worktree (the Write tool). */
  readonly write: (file: string, content: string) => Effect.Effect<void>
  readonly read: (file: string) => Effect.Effect<string>
  /** Tokens this turn's API responses used: one transcript line, as the CLI writes it. */
  readonly spend: (usage: { readonly input: number; readonly output: number }) => Effect.Effect<void>
}

/** One turn: the prompt as submitted, and the agent's memory of its conversation (kept across --continue). */
export type Behaviour = (io: AgentIO, prompt: string, memory: Map<string, unknown>) => Effect.Effect<TurnEnd>

interface Process {
  readonly generation: number
  readonly token: string
  readonly credential: string
  readonly worktree: string
  readonly inbox: Array<string>
  /** Prompts delivered while the process was between turns: the driver waits for them. */
  counted: number
  turn: Fiber.RuntimeFiber<void> | undefined
  hanging: boolean
  fiber: Fiber.RuntimeFiber<void> | undefined
  wake: (() => void) | undefined
}

/** Control of the scripted agents: what tests look at and what the clock driver waits for. */
export interface ScriptedAgentsShape {
  /** Real work under way (a turn's git, team commands, files): the test clock does not move meanwhile. */
  readonly busy: Ref.Ref<number>
  readonly launches: Ref.Ref<ReadonlyArray<{ readonly instance: string; readonly generation: number; readonly credential: string; readonly resume: boolean }>>
  readonly prompts: Ref.Ref<ReadonlyArray<{ readonly instance: string; readonly generation: number; readonly text: string }>>
}

export class ScriptedAgents extends Context.Tag("test/ScriptedAgents")<ScriptedAgents, ScriptedAgentsShape>() {}

const transcriptLine = (model: string, n: number, usage: { readonly input: number; readonly output: number }) =>
  JSON.stringify({
    type: "assistant",
    requestId: `req_${n}`,
    message: { id: `msg_${n}`, model, usage: { input_tokens: usage.input, output_tokens: usage.output } }
  }) + "\n"

export const makeScriptedAgent = (site: RunSite, behaviour: Behaviour, control: ScriptedAgentsShape) =>
  Effect.gen(function*() {
    const events = yield* Events
    const tmux = yield* Tmux
    const tmuxControl = yield* TmuxTestControl
    const runLog = yield* RunLog
    const git = yield* Git
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const scope = yield* Effect.scope
    const settings = agentSettings(site)
    const processes = new Map<string, Process>()
    const memories = new Map<string, Map<string, unknown>>()
    const generations = new Map<string, number>()
    let responses = 0

    const sessionName = (instance: string) => `${settings.sessionPrefix}${instance}`
    const configDir = (instance: string) => path.join(settings.runFolder, "instances", instance, "claude")
    const transcript = (instance: string, generation: number) =>
      path.join(configDir(instance), "projects", "memory", `${instance}-${generation}.jsonl`)
    const session = (instance: string) =>
      tmuxControl.session(sessionName(instance)).pipe(Effect.option, Effect.map(Option.getOrUndefined))
    const draw = (instance: string, f: (s: FakeSession) => void) => Effect.flatMap(session(instance), (s) => Effect.sync(() => s && f(s)))
    const tracked = <A, E, R>(self: Effect.Effect<A, E, R>) =>
      Effect.acquireUseRelease(Ref.update(control.busy, (n) => n + 1), () => self, () => Ref.update(control.busy, (n) => n - 1))

    const send = (instance: string, p: Process, path: "/hook" | "/team", body: Record<string, unknown>) =>
      events.receive(path, JSON.stringify({ instance, generation: p.generation, token: p.token, ...body }))

    const hook = (instance: string, p: Process, name: HookName, payload: Record<string, unknown> = {}) =>
      send(instance, p, "/hook", {
        hook: name,
        payload: { session_id: `${instance}-${p.generation}`, transcript_path: transcript(instance, p.generation), cwd: p.worktree, hook_event_name: name, ...payload }
      })

    const ioFor = (instance: string, p: Process): AgentIO => ({
      name: instance,
      generation: p.generation,
      credential: p.credential,
      worktree: p.worktree,
      team: (command, ...args) =>
        send(instance, p, "/team", { command, args }).pipe(
          Effect.map(([status, text]) => ({ status, text })),
          Effect.tap(() => hook(instance, p, "PostToolUse", { tool_name: "Bash" }))
        ),
      git: (...args) =>
        git.run(p.worktree, args).pipe(
          Effect.mapError((e) => e.message),
          Effect.flatMap((r) => r.exitCode === 0 ? Effect.succeed(r.stdout) : Effect.fail(`${r.stdout}${r.stderr}`)),
          Effect.tap(() => hook(instance, p, "PostToolUse", { tool_name: "Bash" }))
        ),
      write: (file, content) =>
        fs.makeDirectory(path.dirname(path.join(p.worktree, file)), { recursive: true }).pipe(
          Effect.zipRight(fs.writeFileString(path.join(p.worktree, file), content)),
          Effect.orDie,
          Effect.zipRight(hook(instance, p, "PostToolUse", { tool_name: "Write" })),
          Effect.asVoid
        ),
      read: (file) => fs.readFileString(path.join(p.worktree, file)).pipe(Effect.orElseSucceed(() => "")),
      spend: (usage) =>
        Effect.gen(function*() {
          const file = transcript(instance, p.generation)
          yield* fs.makeDirectory(path.dirname(file), { recursive: true })
          yield* fs.writeFileString(file, transcriptLine(settings.model ?? "claude-opus-4-5", ++responses, usage), { flag: "a" })
        }).pipe(Effect.orDie)
    })

    // One turn: submitted (UserPromptSubmit), the behaviour, and its end as the CLI shows and reports it.
    const runTurn = (instance: string, p: Process, prompt: string) =>
      Effect.gen(function*() {
        const memory = memories.get(instance) ?? new Map<string, unknown>()
        memories.set(instance, memory)
        yield* draw(instance, (s) => (s.title = BUSY_TITLE, s.screen = `❯ ${prompt.slice(0, 200)}\n\n${INPUT_BOX}`))
        yield* hook(instance, p, "UserPromptSubmit", { prompt })
        const end = yield* behaviour(ioFor(instance, p), prompt, memory)
        switch (end._tag) {
          case "Stop":
            yield* draw(instance, (s) => (s.title = IDLE_TITLE, s.screen = `● ${end.text}\n\n${INPUT_BOX}`))
            yield* hook(instance, p, "Stop", { last_assistant_message: end.text })
            return
          case "Fail":
            yield* draw(instance, (s) => (s.title = IDLE_TITLE, s.screen = `❯ ${prompt.slice(0, 60)}\n\n● ${end.line}\n\n${INPUT_BOX}`))
            yield* hook(instance, p, "StopFailure", { error: end.error, last_assistant_message: end.line })
            return
          case "Crash":
            yield* draw(instance, (s) => (s.dead = true))
            yield* runLog.log("test.agent-crashed", { instance, generation: p.generation })
            return yield* Effect.interrupt
          case "Hang":
            p.hanging = true
            yield* Ref.update(control.busy, (n) => n - p.counted - 1)
            p.counted = 0
            return yield* Effect.never.pipe(Effect.ensuring(Effect.sync(() => (p.hanging = false)).pipe(Effect.zipRight(Ref.update(control.busy, (n) => n + 1)))))
        }
      })

    const nextPrompt = (p: Process) =>
      Effect.async<string>((resume) => {
        const take = () => {
          const text = p.inbox.shift()
          if (text === undefined) return false
          resume(Effect.succeed(text))
          return true
        }
        if (!take()) p.wake = () => void (take() && (p.wake = undefined))
        return Effect.sync(() => void (p.wake = undefined))
      })

    const processLoop = (instance: string, p: Process, resume: boolean) =>
      Effect.gen(function*() {
        yield* tracked(hook(instance, p, "SessionStart", { source: resume ? "resume" : "startup" }))
        while (true) {
          const prompt = yield* nextPrompt(p)
          const counted = p.counted > 0
          if (counted) p.counted--
          yield* Ref.update(control.busy, (n) => n + 1 - (counted ? 1 : 0))
          const turn = yield* Effect.fork(runTurn(instance, p, prompt).pipe(Effect.ensuring(Ref.update(control.busy, (n) => n - 1))))
          p.turn = turn
          yield* Fiber.await(turn)
          p.turn = undefined
          if ((yield* session(instance))?.dead === true) {
            // Prompts that waited for this process never reach it.
            yield* Ref.update(control.busy, (n) => n - p.counted)
            p.counted = 0
            return
          }
        }
      })

    const launch = (request: LaunchRequest) =>
      Effect.gen(function*() {
        const { instance } = request
        const generation = (generations.get(instance) ?? -1) + 1
        generations.set(instance, generation)
        yield* stopProcess(instance)
        const token = yield* events.register(instance)
        yield* events.setGeneration(instance, generation)
        const resume = request.continueSession && memories.has(instance)
        yield* tmux.newSession({
          name: sessionName(instance),
          cwd: request.worktree,
          command: ["scripted-agent", instance],
          env: { CCO_TOKEN: Redacted.make(token) }
        }).pipe(Effect.mapError((e) => new AgentError({ instance, operation: "start session", message: e.message })))
        yield* draw(instance, (s) => (s.title = IDLE_TITLE, s.screen = INPUT_BOX))
        if (!resume) memories.delete(instance)
        const p: Process = {
          generation, token, credential: request.credential.name, worktree: request.worktree, inbox: [], counted: 0,
          turn: undefined, hanging: false, fiber: undefined, wake: undefined
        }
        processes.set(instance, p)
        p.fiber = yield* Effect.forkIn(processLoop(instance, p, resume), scope)
        yield* Ref.update(control.launches, (l) => [...l, { instance, generation, credential: request.credential.name, resume }])
        yield* runLog.log("instance.launched", { instance, generation, credential: request.credential.name, resume, session: sessionName(instance) })
        return generation
      })

    const stopProcess = (instance: string) =>
      Effect.gen(function*() {
        const p = processes.get(instance)
        if (p === undefined) return
        processes.delete(instance)
        if (p.counted > 0) yield* Ref.update(control.busy, (n) => n - p.counted)
        p.counted = 0
        if (p.fiber !== undefined) yield* Fiber.interrupt(p.fiber)
        if (p.turn !== undefined) yield* Fiber.interrupt(p.turn)
      })

    const deliver = (instance: string, raw: string) =>
      Effect.gen(function*() {
        const p = processes.get(instance)
        const s = yield* session(instance)
        if (p === undefined || s === undefined || s.dead) {
          return yield* new AgentError({ instance, operation: "paste prompt", message: "no live session" })
        }
        const text = neutralise(raw)
        s.input.push(text)
        yield* Ref.update(control.prompts, (l) => [...l, { instance, generation: p.generation, text }])
        p.inbox.push(text)
        if (p.turn === undefined && !p.hanging) {
          p.counted++
          yield* Ref.update(control.busy, (n) => n + 1)
        }
        p.wake?.()
      })

    // Escape: the turn under way ends without a Stop, as the CLI's interrupt does; the session waits for input.
    const interrupt = (instance: string) =>
      Effect.gen(function*() {
        const p = processes.get(instance)
        yield* draw(instance, (s) => void s.input.push("<Escape>"))
        if (p?.turn !== undefined) yield* Fiber.interrupt(p.turn)
        yield* draw(instance, (s) => (s.title = IDLE_TITLE))
      })

    const stopOne = (instance: string) => stopProcess(instance).pipe(Effect.zipRight(tmux.killSession(sessionName(instance)).pipe(Effect.ignore)))

    return Agent.of({
      settings,
      version: Effect.succeed("scripted (in memory)"),
      sessionName,
      configDir,
      launch,
      launchMany: (requests) =>
        Effect.map(Effect.forEach(requests, (r) => Effect.map(launch(r), (g) => [r.instance, g] as const)), (pairs) => new Map(pairs)),
      attach: () => Effect.succeed(false),
      deliver,
      interrupt,
      stop: (instance) => stopOne(instance),
      stopMany: (instances) => Effect.forEach(instances, stopOne, { discard: true }),
      isAlive: (instance) => Effect.map(session(instance), (s) => s !== undefined && !s.dead)
    } satisfies AgentShape)
  })

export const makeControl = Effect.gen(function*() {
  const control: ScriptedAgentsShape = {
    busy: yield* Ref.make(0),
    launches: yield* Ref.make([] as ScriptedAgentsShape["launches"] extends Ref.Ref<infer A> ? A : never),
    prompts: yield* Ref.make([] as ScriptedAgentsShape["prompts"] extends Ref.Ref<infer A> ? A : never)
  }
  return control
})
