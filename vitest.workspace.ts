// One project per package, one that runs the examples, one that smoke-runs the benchmarks; `npm test` runs them all against one Postgres (see vitest.config.ts).
import { defineWorkspace } from "vitest/config"

const pkg = (name: string) => ({
  extends: "./vitest.shared.ts",
  test: { name, root: `./packages/${name}` }
})

export default defineWorkspace([
  pkg("core"),
  pkg("postgres"),
  pkg("testing"),
  pkg("cli"),
  { extends: "./vitest.shared.ts", test: { name: "examples", root: "./examples" } },
  { extends: "./vitest.shared.ts", test: { name: "benchmarks", root: "./benchmarks" } }
])
