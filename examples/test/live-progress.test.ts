// The live-progress example: its page in headless Chromium (Debian's, driven by playwright-core)
// shows a real run's steps appear one by one, and main.ts starts, serves and stops as a user runs it.
//
// Without /usr/bin/chromium the browser test is skipped (apt-get install chromium), unless
// CHRONICLE_REQUIRE_BROWSER=1 (as in CI), which makes it fail instead. The page's screenshot is
// kept at .chronicle/artifacts/live-progress.png (live-progress-failed.png when it fails).
import { spawn } from "node:child_process"
import { existsSync, mkdirSync, statSync } from "node:fs"
import { join } from "node:path"
import { createInterface } from "node:readline"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import { TestDatabase } from "@chronicle/testing"
import type { Page } from "playwright-core"
import { chromium } from "playwright-core"
import { startApp } from "../live-progress/server.js"
import { steps } from "../live-progress/workflows.js"

const root = join(import.meta.dirname, "../..")
// CHRONICLE_CHROMIUM points at another Chromium binary (another distribution, macOS).
const CHROMIUM = process.env["CHRONICLE_CHROMIUM"] || "/usr/bin/chromium"
const artifacts = join(root, ".chronicle/artifacts")
const screenshot = join(artifacts, "live-progress.png")
const browserRequired = process.env["CHRONICLE_REQUIRE_BROWSER"] === "1"
const missing = `${CHROMIUM} is missing: install it with \`apt-get install chromium\``

/** A copy of the run's migrated template, for the life of the scope. */
const migratedDatabase = Effect.gen(function*() {
  const { serverUrl, template } = yield* TestDatabase.runEnvironment
  return TestDatabase.withDatabase(serverUrl, yield* TestDatabase.createDatabase(serverUrl, { template }))
})

/** What the page looked like at each change, recorded in the page by a MutationObserver. */
interface Snapshot {
  readonly at: number
  readonly steps: number
  readonly percent: string
}

// Page code, as strings: this project is type-checked without the DOM's types.
/** Installs the recorder: `window.snapshots` gets one entry per change of the list or the percent. */
const recorder = `(() => {
  window.snapshots = []
  const take = () => {
    const last = window.snapshots.at(-1)
    const now = {
      at: performance.now(),
      steps: document.querySelectorAll("#steps li").length,
      percent: document.getElementById("percent").textContent
    }
    if (last === undefined || last.steps !== now.steps || last.percent !== now.percent) window.snapshots.push(now)
  }
  new MutationObserver(take).observe(document.body, { subtree: true, childList: true, characterData: true, attributes: true })
})()`
const completed = `document.getElementById("outcome").textContent.startsWith("Completed")`

const record = (page: Page) => page.evaluate(recorder)
const snapshotsOf = (page: Page) => page.evaluate("window.snapshots") as Promise<Array<Snapshot>>

describe("live-progress", () => {
  if (!existsSync(CHROMIUM) && !browserRequired) {
    it("the page follows a run live in headless Chromium", (ctx) => {
      ctx.skip(`${missing} (CI sets CHRONICLE_REQUIRE_BROWSER=1 and fails here instead)`)
    })
  } else {
    it.scopedLive("the page follows a run live in headless Chromium: steps appear one by one, then Completed", () =>
      Effect.gen(function*() {
        if (!existsSync(CHROMIUM)) {
          return assert.fail(`CHRONICLE_REQUIRE_BROWSER=1 but ${missing}`)
        }
        const url = yield* migratedDatabase
        const app = yield* Effect.acquireRelease(
          Effect.promise(() => startApp({ connectionString: url })),
          (app) => Effect.promise(() => app.close())
        )
        const browser = yield* Effect.acquireRelease(
          Effect.promise(() =>
            chromium.launch({
              executablePath: CHROMIUM,
              args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
            })
          ),
          (browser) => Effect.promise(() => browser.close())
        )
        const page = yield* Effect.promise(() => browser.newPage({ viewport: { width: 800, height: 600 } }))
        const consoleErrors: Array<string> = []
        page.on("console", (message) => {
          if (message.type() === "error") consoleErrors.push(message.text())
        })
        page.on("pageerror", (error) => consoleErrors.push(String(error)))
        mkdirSync(artifacts, { recursive: true })

        yield* Effect.promise(async () => {
          await page.goto(app.url)
          await record(page)
          await page.getByRole("button", { name: "Start a run" }).click()
          await page.waitForFunction(completed, null, { timeout: 30_000 })
          await page.screenshot({ path: screenshot, fullPage: true })
        }).pipe(
          // On a failure, a picture of how far the page got.
          Effect.onExit((exit) =>
            Exit.isFailure(exit)
              ? Effect.promise(() => page.screenshot({ path: join(artifacts, "live-progress-failed.png"), fullPage: true }).catch(() => undefined))
              : Effect.void
          )
        )

        const text = yield* Effect.promise(() => page.locator("body").innerText())
        const snapshots = yield* Effect.promise(() => snapshotsOf(page))
        const context = `\n--- page text ---\n${text}\n--- snapshots ---\n${JSON.stringify(snapshots)}\n--- console errors ---\n${consoleErrors.join("\n")}`

        // Every step, in order, then the outcome.
        const positions = steps.map((step) => text.indexOf(step.name))
        positions.forEach((at, i) => assert.isAtLeast(at, 0, `step ${steps[i]!.name} is on the page${context}`))
        assert.deepStrictEqual(positions, [...positions].sort((a, b) => a - b), `the steps are listed in order${context}`)
        const outcome = text.search(/^Completed in [\d.]+ s: https:\/\/videos\.example\.com\/vid_\w+$/m)
        assert.isAbove(outcome, positions.at(-1)!, `"Completed" comes last${context}`)
        assert.match(text, /100%/)

        // Live: the list grew one step at a time, over the time the steps took, and the progress
        // bar went through the emitted percents; not everything at once at the end.
        const counts = snapshots.map((s) => s.steps).filter((n, i, all) => n !== all[i - 1])
        assert.deepStrictEqual(counts.filter((n) => n > 0), [1, 2, 3, 4, 5], `the list grew one step at a time${context}`)
        const firstStep = snapshots.find((s) => s.steps === 1)!
        const lastStep = snapshots.find((s) => s.steps === steps.length)!
        const stepsAfterFirst = steps.slice(1).reduce((ms, step) => ms + step.ms, 0)
        assert.isAbove(lastStep.at - firstStep.at, stepsAfterFirst / 2, `the steps appeared over time${context}`)
        const percents = [...new Set(snapshots.map((s) => s.percent))]
        assert.includeMembers(percents, ["20%", "40%", "60%", "80%", "100%"], `the progress bar moved step by step${context}`)
        assert.deepStrictEqual(consoleErrors, [], `no errors in the page${context}`)

        assert.isAbove(statSync(screenshot).size, 5_000, "the screenshot was written")
      }), 90_000)
  }

  it.scopedLive("main.ts: starts on DATABASE_URL, serves the page and a run's event stream, and stops cleanly on SIGTERM", () =>
    Effect.gen(function*() {
      const url = yield* TestDatabase.emptyDatabase
      const child = yield* Effect.acquireRelease(
        Effect.sync(() =>
          spawn(process.execPath, ["--conditions=source", "--import", "tsx", join(root, "examples/live-progress/main.ts")], {
            cwd: root,
            env: { PATH: process.env["PATH"] ?? "", DATABASE_URL: url },
            stdio: ["ignore", "pipe", "pipe"]
          })
        ),
        (child) => Effect.sync(() => child.exitCode === null && child.signalCode === null && child.kill("SIGKILL"))
      )
      const lines: Array<string> = []
      const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)))
      const address = new Promise<string>((resolve, reject) => {
        createInterface({ input: child.stdout! }).on("line", (line) => {
          lines.push(line)
          const open = /open (http:\/\/\S+)$/.exec(line)
          if (open) resolve(open[1]!)
        })
        createInterface({ input: child.stderr! }).on("line", (line) => lines.push(`stderr: ${line}`))
        void exited.then((code) => reject(new Error(`main.ts exited with ${code} before it was up`)))
      })
      yield* Effect.promise(async () => {
        const output = () => `\n--- output ---\n${lines.join("\n")}`
        const base = await address.catch((error: Error) => assert.fail(`${error.message}${output()}`))

        const pageResponse = await fetch(base)
        assert.strictEqual(pageResponse.status, 200)
        assert.include(await pageResponse.text(), "Start a run")

        // A run, followed to its end through the event stream (which ends after the terminal event).
        const { runId } = (await (await fetch(new URL("runs", base), { method: "POST" })).json()) as { runId: string }
        const events = await fetch(new URL(`runs/${runId}/events`, base))
        assert.strictEqual(events.headers.get("content-type"), "text/event-stream; charset=utf-8")
        const body = await events.text()
        const types = [...body.matchAll(/^event: (\w+)$/gm)].map((m) => m[1])
        assert.strictEqual(types[0], "RunStarted", body)
        assert.strictEqual(types.filter((t) => t === "StepCompleted").length, steps.length, body)
        assert.strictEqual(types.at(-1), "RunCompleted", body)

        // Another run's stream still open at SIGTERM: the shutdown cuts it and exits 0.
        const second = (await (await fetch(new URL("runs", base), { method: "POST" })).json()) as { runId: string }
        const open = await fetch(new URL(`runs/${second.runId}/events`, base))
        const reader = open.body!.getReader()
        await reader.read()
        child.kill("SIGTERM")
        const drained = (async () => {
          while (!(await reader.read().catch(() => ({ done: true }))).done) {
            // read until the server cuts the stream
          }
        })()
        const code = await Promise.race([exited, new Promise<"timeout">((r) => setTimeout(() => r("timeout"), 30_000))])
        assert.strictEqual(code, 0, `main.ts exits 0 after SIGTERM${output()}`)
        await drained
        assert.include(lines, "live-progress | SIGTERM: stopping")
        assert.include(lines, "live-progress | server and worker stopped")
        assert.strictEqual(lines.at(-1), "live-progress | dropped the example's database; bye", output())
      })
    }), 90_000)
})
