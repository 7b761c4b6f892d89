// `npm test`: one project per package, one that runs the examples, one that smoke-runs the
// benchmarks, all against one Postgres and one migrated template database per run (resolved by
// @chronicle/testing: DATABASE_URL, a container with CHRONICLE_PG=container, or embedded).
import { defineWorkspace } from "vitest/config"

// Workspace packages resolve to their TypeScript sources through the "source" export condition,
// so tests never run against a stale build.
const conditions = ["source", "module", "node", "default"]

const project = (name: string, root: string) => ({
  resolve: { conditions },
  ssr: { resolve: { conditions, externalConditions: ["source"] } },
  test: {
    name,
    root,
    include: ["test/**/*.test.ts"],
    // Every project names the same setup; it starts the server once and the others reuse it.
    globalSetup: [new URL("./packages/testing/src/globalSetup.ts", import.meta.url).pathname],
    testTimeout: 30_000,
    hookTimeout: 60_000
  }
})

export default defineWorkspace([
  project("core", "./packages/core"),
  project("postgres", "./packages/postgres"),
  project("testing", "./packages/testing"),
  project("cli", "./packages/cli"),
  project("examples", "./examples"),
  project("benchmarks", "./benchmarks"),
  project("chaos", "./chaos")
])
