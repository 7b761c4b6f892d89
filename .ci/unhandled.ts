// A vitest reporter for CI: repeats the run's unhandled errors (the ones that fail a run whose
// tests all passed) after everything else, so they are in the last lines of the log, which is the
// part of a CI log that gets read.
import type { Reporter } from "vitest/reporters"

const describe = (error: unknown): string => {
  if (typeof error !== "object" || error === null) return String(error)
  const e = error as { name?: unknown; message?: unknown; stack?: unknown; VITEST_TEST_PATH?: unknown; type?: unknown }
  const head = `${String(e.type ?? e.name ?? "Error")}: ${String(e.message ?? "")}`
  const where = typeof e.VITEST_TEST_PATH === "string" ? ` (while ${e.VITEST_TEST_PATH} ran)` : ""
  const stack = typeof e.stack === "string" ? e.stack.split("\n").slice(1, 6).map((l) => `    ${l.trim()}`).join("\n") : ""
  return `${head}${where}\n${stack}`
}

export default class UnhandledErrors implements Reporter {
  onFinished(_files: unknown, errors: ReadonlyArray<unknown>): void {
    if (errors.length === 0) return
    console.log(`\nunhandled errors: ${errors.length}`)
    for (const error of errors) console.log(`- ${describe(error)}`)
  }
}
