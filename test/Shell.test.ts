// shellQuote: any value reaches sh as one word, unchanged.
import { describe, expect, it } from "@effect/vitest"
import { execFileSync } from "node:child_process"
import { shellQuote } from "../src/Shell.js"

describe("shellQuote", () => {
  it("passes quotes, spaces, $, backticks and line breaks through sh as one word", () => {
    const values = ["plain", "it's", "a b", "$HOME `id` $(id)", "'\"'\"'", "line\nbreak", ""]
    const words = execFileSync("sh", ["-c", `for w in ${values.map(shellQuote).join(" ")}; do printf '%s\\0' "$w"; done`], { encoding: "utf8" })
    expect(words.split("\0").slice(0, -1)).toEqual(values)
  })
})
