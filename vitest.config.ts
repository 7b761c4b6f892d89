// The root config: one Postgres and one migrated template database for the whole run, resolved
// by @chronicle/testing (DATABASE_URL, a container with CHRONICLE_PG=container, or embedded).
import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    globalSetup: ["./packages/testing/src/globalSetup.ts"]
  }
})
