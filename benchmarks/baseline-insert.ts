/**
 * Baseline: single-row INSERT commits from Node at N clients, on the resolved Postgres.
 * Every engine's throughput is bounded by this commit rate; the other benchmarks report their
 * figures as ratios against it and against the peers measured in the same run.
 *
 *   npm run bench:baseline -- [--seconds 5] [--clients 10]
 *
 * Prints one JSON line: { clients, seconds, commits, commitsPerSecond, server }.
 * Not a test: nothing fails because the machine is slow.
 */
import { parseArgs } from "node:util"
import { Effect } from "effect"
import pg from "pg"
import { TestDatabase, TestPostgres } from "@chronicle/testing"

const { values } = parseArgs({
  options: { seconds: { type: "string", default: "5" }, clients: { type: "string", default: "10" } }
})
const seconds = Number(values.seconds)
const clients = Number(values.clients)
if (!(seconds > 0) || !Number.isInteger(clients) || clients < 1) {
  throw new Error("--seconds must be positive and --clients a positive integer")
}

const measure = (url: string) =>
  Effect.promise(async () => {
    const setup = new pg.Client({ connectionString: url })
    await setup.connect()
    await setup.query("CREATE TABLE baseline (id bigserial PRIMARY KEY, payload jsonb NOT NULL)")
    await setup.end()
    const deadline = Date.now() + seconds * 1000
    const counts = await Promise.all(
      Array.from({ length: clients }, async () => {
        const client = new pg.Client({ connectionString: url })
        await client.connect()
        let n = 0
        // Each statement is its own transaction: one commit, one WAL flush (unless coalesced).
        while (Date.now() < deadline) {
          await client.query("INSERT INTO baseline (payload) VALUES ($1::jsonb)", [`{"n":${n}}`])
          n++
        }
        await client.end()
        return n
      })
    )
    return counts.reduce((a, b) => a + b, 0)
  })

await Effect.runPromise(
  Effect.gen(function*() {
    const server = yield* TestPostgres.resolveServer({ log: (line) => console.error(line) })
    const db = yield* TestDatabase.createDatabase(server.url, { prefix: "chronicle_bench" })
    const commits = yield* measure(TestDatabase.withDatabase(server.url, db))
    console.log(JSON.stringify({
      benchmark: "baseline-insert",
      clients,
      seconds,
      commits,
      commitsPerSecond: Math.round(commits / seconds),
      server: { source: server.source, version: server.version }
    }))
  }).pipe(Effect.scoped)
)
