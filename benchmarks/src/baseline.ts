/**
 * The commit-rate baseline, as in benchmarks/baseline-insert.ts: single-row INSERT commits from
 * Node at `clients` clients for `seconds`, on a fresh database of the benchmark's server. Every
 * engine's throughput is bounded by this rate.
 */
import pg from "pg"

export interface Baseline {
  readonly clients: number
  readonly seconds: number
  readonly commits: number
  readonly commitsPerSecond: number
}

/** Measures on `url` (an empty database: it creates the table `baseline`). */
export const commitRate = async (url: string, seconds: number, clients: number): Promise<Baseline> => {
  const setup = new pg.Client({ connectionString: url })
  await setup.connect()
  await setup.query("CREATE TABLE baseline (id bigserial PRIMARY KEY, payload jsonb NOT NULL)")
  await setup.end()
  const connected = await Promise.all(
    Array.from({ length: clients }, async () => {
      const client = new pg.Client({ connectionString: url })
      await client.connect()
      return client
    })
  )
  const started = performance.now()
  const deadline = started + seconds * 1000
  const counts = await Promise.all(
    connected.map(async (client) => {
      let n = 0
      // Each statement is its own transaction: one commit, one WAL flush (unless coalesced).
      while (performance.now() < deadline) {
        await client.query("INSERT INTO baseline (payload) VALUES ($1::jsonb)", [`{"n":${n}}`])
        n++
      }
      return n
    })
  )
  const elapsed = (performance.now() - started) / 1000
  await Promise.all(connected.map((c) => c.end()))
  const commits = counts.reduce((a, b) => a + b, 0)
  return { clients, seconds, commits, commitsPerSecond: commits / elapsed }
}
