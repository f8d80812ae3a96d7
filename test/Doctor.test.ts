import { describe, expect, it } from "@effect/vitest"
import { claudeAtLeast, MIN_CLAUDE } from "../src/Doctor.js"

describe("cco doctor's claude version check", () => {
  it("a CLI older than the http-hook floor is flagged; the floor and newer pass; no version is unknown", () => {
    expect(claudeAtLeast("2.1.332 (Claude Code)", MIN_CLAUDE)).toBe(true)
    expect(claudeAtLeast("2.1.400 (Claude Code)", MIN_CLAUDE)).toBe(true)
    expect(claudeAtLeast("2.2.0 (Claude Code)", MIN_CLAUDE)).toBe(true)
    expect(claudeAtLeast("3.0.1", MIN_CLAUDE)).toBe(true)
    expect(claudeAtLeast("2.1.331 (Claude Code)", MIN_CLAUDE)).toBe(false)
    expect(claudeAtLeast("2.0.999 (Claude Code)", MIN_CLAUDE)).toBe(false)
    expect(claudeAtLeast("1.9.0", MIN_CLAUDE)).toBe(false)
    expect(claudeAtLeast("Claude Code (dev build)", MIN_CLAUDE)).toBeUndefined()
  })
})
