// The dashboard in a real browser (the system's headless Chromium, driven by playwright-core): `cco run --dashboard`
// with the fake agent prints a URL; the page shows every instance, a state change and a merge without a reload, an
// instance's pane; without the token there is no page. Then `cco dashboard RUN_FOLDER` shows the finished run.
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { execFileSync, spawn } from "node:child_process"
import { copyFileSync, existsSync, mkdirSync } from "node:fs"
import * as path from "node:path"
import { type Browser, chromium, type Page } from "playwright-core"
import { startMockModel } from "../src/MockModel.js"
import { teamScript } from "../src/TeamScript.js"
import { ccoRun, fakeClaudeBin, projectRoot, useFixture } from "./harness.js"
import { waitFor } from "./support.js"

// Functions evaluated in the page use its globals (the project's types have no DOM): as much of them as they use.
interface PageElement {
  readonly textContent: string | null
  getAttribute(name: string): string | null
  querySelector(selector: string): PageElement | null
}
declare const document: {
  querySelectorAll(selector: string): ArrayLike<PageElement> & Iterable<PageElement>
  getElementById(id: string): PageElement | null
}
declare const window: Record<string, unknown>

/** The system's Chromium (Debian's `chromium` package; .ci/run installs it): no browser is downloaded. */
const chromiumPath = (() => {
  try {
    return execFileSync("sh", ["-c", "command -v chromium || command -v chromium-browser"], { encoding: "utf8" }).trim().split("\n")[0]
  } catch {
    return undefined
  }
})()

const URL_LINE = /dashboard(?: of [^:]*)?: (http:\/\/127\.0\.0\.1:\d+\/\?t=[A-Za-z0-9_-]+)/

/** A headless browser for the current scope. */
const useBrowser = Effect.acquireRelease(
  Effect.promise(() =>
    chromium.launch({
      executablePath: chromiumPath!,
      headless: true,
      // As root in a container Chromium's own sandbox cannot start; /dev/shm may be small.
      args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"]
    })
  ),
  (browser: Browser) => Effect.promise(() => browser.close()).pipe(Effect.timeout("10 seconds"), Effect.ignore)
)

/** A child process started by the test, ended when the scope closes (if it is still running). */
const useChild = <C extends { readonly child: ReturnType<typeof spawn>; readonly exited: Promise<number | null> }>(start: () => C) =>
  Effect.acquireRelease(Effect.sync(start), ({ child, exited }) =>
    Effect.promise(async () => {
      if (child.exitCode !== null || child.signalCode !== null) return
      child.kill("SIGINT")
      const ended = await Promise.race([exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 20_000))])
      if (!ended) child.kill("SIGKILL")
    }))

const statuses = (page: Page) =>
  page.$$eval("tr.instance", (rows) => rows.map((r) => `${r.getAttribute("data-name")}=${r.querySelector("td.status")?.textContent ?? ""}`))

describe("dashboard in a browser", () => {
  it.scopedLive("cco run --dashboard: every instance, a state change and a merge appear live; no token, no page", () =>
    Effect.gen(function*() {
      expect(chromiumPath, "the browser test needs Chromium: apt-get install chromium").toBeTruthy()
      // Slow enough answers that the page is open well before the first merge.
      const mock = yield* startMockModel({ brain: teamScript(), latencyMs: 300 })
      // A Director, two EMs and four workers: three levels in the tree.
      const fixture = yield* useFixture({ workerCount: 4, groupSize: 2, mockUrl: mock.url })
      const browser = yield* useBrowser
      const page = yield* Effect.promise(() => browser.newPage({ viewport: { width: 1400, height: 1000 } }))
      const run = yield* useChild(() => ccoRun(fixture.configDir, fakeClaudeBin, ["--dashboard"]))
      const url = yield* waitFor("the dashboard's URL", Effect.sync(() => URL_LINE.exec(run.output())?.[1]), 60_000, 50).pipe(
        Effect.tapError(() => Effect.sync(() => process.stderr.write(`cco run printed:\n${run.output()}\n`)))
      )
      const port = new URL(url).port

      // Without the token, or with a wrong one: 403, and nothing of the run.
      for (const bad of [`http://127.0.0.1:${port}/`, `http://127.0.0.1:${port}/?t=wrong`, `http://127.0.0.1:${port}/app.js`]) {
        const response = yield* Effect.promise(() => page.goto(bad))
        expect(response?.status(), bad).toBe(403)
      }

      const response = yield* Effect.promise(() => page.goto(url))
      expect(response?.status()).toBe(200)
      // A reload would lose this.
      yield* Effect.promise(() => page.evaluate(() => void (window["ccoLoaded"] = 1)))
      const names = ["director", "em-1", "em-2", "worker-1", "worker-2", "worker-3", "worker-4"]
      yield* Effect.promise(() => page.waitForFunction((n) => document.querySelectorAll("tr.instance").length === n, names.length, { timeout: 60_000 }))
      const first = yield* Effect.promise(() => statuses(page))
      expect(first.map((s) => s.split("=")[0])).toEqual(["director", "em-1", "worker-1", "worker-2", "em-2", "worker-3", "worker-4"])
      const mergesAtFirst = Number(yield* Effect.promise(() => page.textContent("#merge-count")))

      // Some instance's state changes on the page.
      yield* Effect.promise(() =>
        page.waitForFunction((before) => {
          const now = [...document.querySelectorAll("tr.instance")].map((r) => `${r.getAttribute("data-name")}=${r.querySelector("td.status")?.textContent ?? ""}`)
          return now.length === before.length && now.some((s, i) => s !== before[i])
        }, first, { timeout: 60_000 })
      )
      // A merge appears: in the count, the list, and the event feed.
      yield* Effect.promise(() => page.waitForFunction((before) => Number(document.getElementById("merge-count")?.textContent) > before, mergesAtFirst, { timeout: 90_000 }))
      expect(mergesAtFirst).toBe(0)
      expect(yield* Effect.promise(() => page.textContent("#merges"))).toMatch(/worker-\d → cco\/.*\/em-\d/)
      yield* Effect.promise(() => page.waitForSelector("#events li:has(b:text-is('merge.done'))", { timeout: 30_000 }))

      // The feed filtered to one instance shows only its lines.
      yield* Effect.promise(() => page.selectOption("#feed-filter", "worker-1"))
      const shown = yield* Effect.promise(() => page.$$eval("#events li:not([hidden])", (lis) => lis.map((li) => li.getAttribute("data-instance"))))
      expect(shown.length).toBeGreaterThan(0)
      expect(new Set(shown)).toEqual(new Set(["worker-1"]))
      yield* Effect.promise(() => page.selectOption("#feed-filter", ""))

      // An instance's pane, as text.
      yield* Effect.promise(() => page.click("tr.instance[data-name='em-1']"))
      yield* Effect.promise(() => page.waitForFunction(() => {
        const text = document.getElementById("pane-text")?.textContent ?? ""
        return text !== "…" && text.trim().length > 0
      }, undefined, { timeout: 30_000 }))
      expect(yield* Effect.promise(() => page.isVisible("#pane"))).toBe(true)
      expect(yield* Effect.promise(() => page.evaluate(() => window["ccoLoaded"]))).toBe(1)

      const screenshot = path.join(fixture.root, "dashboard.png")
      yield* Effect.promise(() => page.screenshot({ path: screenshot, fullPage: true }))
      expect(existsSync(screenshot)).toBe(true)
      // CCO_DASHBOARD_SCREENSHOT=docs/dashboard.png keeps a copy (the README's picture).
      const keep = process.env.CCO_DASHBOARD_SCREENSHOT
      if (keep !== undefined && keep !== "") {
        mkdirSync(path.dirname(path.resolve(projectRoot, keep)), { recursive: true })
        copyFileSync(screenshot, path.resolve(projectRoot, keep))
      }

      // The run goes to its end, and the dashboard closes with it: the page has the last state and stops listening.
      const code = yield* Effect.promise(() => run.exited)
      expect(code, run.output()).toBe(0)
      expect(yield* Effect.promise(() => page.textContent("#live"))).toBe("ended: project-done")
      expect(yield* Effect.promise(() => page.textContent("#stopped"))).toBe("dashboard stopped")
      expect(yield* Effect.promise(() => page.evaluate(() => window["ccoLoaded"]))).toBe(1)

      // The finished run's folder, served by `cco dashboard`: the same team, ended, and its sessions gone.
      const folder = path.join(fixture.configDir, "logs", "latest")
      const after = yield* useChild(() => {
        const child = spawn(process.execPath, [path.join(projectRoot, "bin", "cco.js"), "dashboard", folder, "--port", "0"], { stdio: ["ignore", "pipe", "pipe"] })
        let output = ""
        child.stdout.on("data", (d) => (output += d))
        child.stderr.on("data", (d) => (output += d))
        const exited = new Promise<number | null>((resolve) => child.on("exit", (c) => resolve(c)))
        return { child, exited, output: () => output }
      })
      const staticUrl = yield* waitFor("cco dashboard's URL", Effect.sync(() => URL_LINE.exec(after.output())?.[1]), 60_000, 50).pipe(
        Effect.tapError(() => Effect.sync(() => process.stderr.write(`cco dashboard printed:\n${after.output()}\n`)))
      )
      const staticPage = yield* Effect.promise(() => browser.newPage())
      expect((yield* Effect.promise(() => staticPage.goto(staticUrl)))?.status()).toBe(200)
      expect(yield* Effect.promise(() => staticPage.textContent("#live"))).toBe("ended: project-done")
      // The target branch's last commits, from the run's clone (cco keeps TEAM_STRUCTURE.md there up to date).
      expect(yield* Effect.promise(() => staticPage.textContent("#commits"))).toMatch(/[0-9a-f]{7,} cco: update TEAM_STRUCTURE\.md/)
      expect(yield* Effect.promise(() => staticPage.$$eval("tr.instance", (rows) => rows.length))).toBe(names.length)
      yield* Effect.promise(() => staticPage.click("tr.instance[data-name='worker-1']"))
      yield* Effect.promise(() => staticPage.waitForFunction(() => /the run has ended: the tmux session .* is gone/.test(document.getElementById("pane-text")?.textContent ?? ""), undefined, { timeout: 15_000 }))
      expect((yield* Effect.promise(() => staticPage.goto(staticUrl.replace(/t=.*/, "t="))))?.status()).toBe(403)
    }), 240_000)
})
