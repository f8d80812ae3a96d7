// The scripted team "model" the demo and the end-to-end tests run against: what a lead does with each turn.
import { describe, expect, it } from "@effect/vitest"
import type { MockReply, MockRequest } from "../src/MockBrain.js"
import { teamScript } from "../src/TeamScript.js"

const role = "You are em-1, an Engineering Manager in a software team of Claude Code instances run by cco.\n\nYou lead these workers: worker-1."
const nudge = "[cco] You have been idle for 6 seconds, but the project is not reported done. Continue now."

let ids = 0
const toolUse = (command: string) => ({ role: "assistant", content: [{ type: "tool_use", id: `t${++ids}`, name: "Bash", input: { command } }] })
const result = (text: string, ...prompts: Array<string>) => ({
  role: "user",
  content: [{ type: "tool_result", tool_use_id: `t${ids}`, content: text }, ...prompts.map((p) => ({ type: "text", text: p }))]
})
const prompt = (text: string) => ({ role: "user", content: [{ type: "text", text }] })
const said = (text: string) => ({ role: "assistant", content: [{ type: "text", text }] })
const request = (messages: ReadonlyArray<unknown>): MockRequest => ({ apiKey: "k", model: "m", system: "", messages, stream: true, sideRequest: false })

const commandOf = (reply: MockReply) => reply._tag === "ToolUse" ? JSON.stringify(reply.tools[0]!.input) : undefined

// em-1 assigned worker-1, heard its report and merged it.
const merging = [
  prompt(role),
  toolUse("cco team assign worker-1 'Create `src/em-1/worker-1.js`'"),
  result("assigned task #1 to worker-1"),
  said("Noted; waiting for my team."),
  prompt("[cco] worker-1 reports done: Wrote it.\n\nReview it, then run: cco team merge worker-1"),
  toolUse("cco team merge worker-1")
]

describe("teamScript, a lead", () => {
  it("merges what is reported, then reports done once everything is merged", () => {
    const brain = teamScript()
    expect(commandOf(brain(request(merging.slice(0, 5))))).toContain("cco team merge worker-1")
    expect(commandOf(brain(request([...merging, result("merged worker-1 into main (abc1234)")])))).toContain("cco team done")
  })

  it("reports done on a nudge when a prompt came in beside the merge's result and the turn ended without reporting", () => {
    const brain = teamScript()
    // Claude Code hands a prompt queued during the turn to the model beside the tool result.
    const beside = [...merging, result("merged worker-1 into main (abc1234)", nudge)]
    expect(commandOf(brain(request(beside)))).toContain("cco team done")
    const later = [...beside, said("Noted; waiting for my team."), prompt(nudge)]
    expect(commandOf(brain(request(later)))).toContain("cco team done")
  })

  it("does not report twice once cco accepted its report", () => {
    const brain = teamScript()
    const reported = [
      ...merging,
      result("merged worker-1 into main (abc1234)"),
      toolUse("cco team done 'em-1: 1 tasks written, checked and merged.'"),
      result("accepted: em-1 is notified; wait for your next task"),
      said("Reported done."),
      prompt(nudge)
    ]
    expect(brain(request(reported))._tag).toBe("Text")
  })

  it("waits, without reporting, while a report is not merged", () => {
    const brain = teamScript()
    const waiting = [...merging.slice(0, 4), prompt(nudge)]
    const reply = brain(request(waiting))
    expect(reply._tag).toBe("Text")
  })
})

describe("teamScript, a lead restarted in the middle of its assignments", () => {
  const role2 = role.replace("worker-1.", "worker-1, worker-2.")
  // The command assigning both was cut off by the restart: its result never reached the conversation.
  const cut = [
    prompt(role2),
    toolUse("cco team assign worker-1 'task one'; cco team assign worker-2 'task two'"),
    prompt("[cco] cco restarted you (rate limit); your conversation is restored. Go on where you left off."),
    prompt("[cco] worker-1 reports done: Wrote it.\n\nReview it, then run: cco team merge worker-1")
  ]

  it("merges the report first, then assigns the report that has no task", () => {
    const brain = teamScript()
    expect(commandOf(brain(request(cut)))).toContain("cco team merge worker-1")
    const after = [...cut, toolUse("cco team merge worker-1"), result("merged worker-1 into cco/run/em-1 (abc1234)")]
    const next = commandOf(brain(request(after)))
    expect(next).toContain("cco team assign worker-2")
    expect(next).not.toContain("assign worker-1")
    // Once that assignment is made, it waits.
    const assigned = [...after, toolUse("cco team assign worker-2 'task two'"), result("assigned task #3 to worker-2")]
    expect(brain(request(assigned))._tag).toBe("Text")
  })
})
