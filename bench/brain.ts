// The mock model's script for the benchmarks: the Director and each EM assign all their reports in one Bash
// command (as the scripted team does), and after that everyone only answers briefly, so the team comes to rest:
// every instance idle, workers holding their tasks. Messages get a short text reply, so an EM is idle again quickly.
import type { Brain, MockReply } from "../src/MockBrain.js"
import { pendingToolResults, toolResults, userTexts } from "../src/MockBrain.js"
import { shellQuote } from "../src/Shell.js"

const roleOf = (text: string): "lead" | "worker" | undefined => {
  if (/^You are the Director\b/.test(text)) return "lead"
  const m = /^You are (?:em|worker)-\d+, an? (Engineering Manager|worker)\b/.exec(text)
  if (m === null) return undefined
  return m[1] === "worker" ? "worker" : "lead"
}

const reportsOf = (text: string): ReadonlyArray<string> => {
  const m = /You lead these (?:Engineering Managers|workers): ([^.\n]+)\./.exec(text)
  return m === null ? [] : m[1]!.split(",").map((s) => s.trim()).filter((s) => s !== "")
}

const q = shellQuote
const say = (text: string): MockReply => ({ _tag: "Text", text })

export const benchBrain: Brain = (req) => {
  const texts = userTexts(req).map((t) => t.replace(/<\/?pasted_content[^>]*>/g, "").trim())
  const first = texts.find((t) => roleOf(t) !== undefined)
  if (first === undefined) return say("Noted.")
  if (roleOf(first) === "worker") return say("Acknowledged; waiting.")
  if (pendingToolResults(req).length > 0) return say("Assigned; waiting for reports.")
  if (toolResults(req).some((r) => /assigned task #/.test(r))) return say("Noted.")
  const reports = reportsOf(first)
  if (reports.length === 0) return say("Noted.")
  const command = reports.map((r, i) => `cco team assign ${r} ${q(`Part ${i + 1}: write src/${r}.js and report done.`)}`).join(" && ")
  return { _tag: "ToolUse", tools: [{ name: "Bash", input: { command, description: "Assign the work" } }] }
}
