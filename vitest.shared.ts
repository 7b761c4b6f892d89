// Settings every package's tests share. Workspace packages resolve to their TypeScript sources
// through the "source" export condition, so tests never run against a stale build.
import { defineConfig } from "vitest/config"

export default defineConfig({
  resolve: { conditions: ["source", "module", "node", "default"] },
  ssr: { resolve: { conditions: ["source", "module", "node", "default"], externalConditions: ["source"] } },
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000
  }
})
