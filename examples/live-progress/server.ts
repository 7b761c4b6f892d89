/**
 * The live-progress app: a plain `node:http` server, a Chronicle worker, and a page that follows a
 * run live through Server-Sent Events.
 *
 *   GET  /                   the page (page.html)
 *   POST /runs               starts a run of ProcessVideo; answers { runId }
 *   GET  /runs/:id/events    the run's events as an event stream (Sse.watch), resumable
 *
 * `startApp` runs it all on a migrated database; examples/live-progress/main.ts finds that
 * database, and examples/test/live-progress.test.ts drives the page in a browser.
 */
import { readFileSync } from "node:fs"
import http from "node:http"
import type { AddressInfo } from "node:net"
import { join } from "node:path"
import { Chronicle, Sse } from "@chronicle/postgres"
import { ProcessVideo, workflows } from "./workflows.js"

const page = readFileSync(join(import.meta.dirname, "page.html"))

const json = (res: http.ServerResponse, status: number, body: unknown) => {
  res.writeHead(status, { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" })
  res.end(JSON.stringify(body))
}

const message = (error: unknown) => (error instanceof Error ? error.message : String(error))

/**
 * The request handler, over the Promise API. `streams` collects the event streams being served, so
 * that a shutdown can wait for them to let go of their sources.
 */
export const handler = (
  chronicle: Pick<Chronicle.Chronicle, "start" | "get" | "watch">,
  options: { readonly streams?: Set<Promise<void>>; readonly log?: (line: string) => void } = {}
): http.RequestListener =>
async (req, res) => {
  const log = options.log ?? (() => {})
  const { pathname } = new URL(req.url ?? "/", "http://localhost")
  try {
    if (req.method === "GET" && pathname === "/") {
      res.writeHead(200, { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" })
      return void res.end(page)
    }
    if (req.method === "GET" && pathname === "/favicon.ico") return void res.writeHead(204).end()
    if (req.method === "POST" && pathname === "/runs") {
      const videoId = `vid_${crypto.randomUUID().slice(0, 8)}`
      const { runId } = await chronicle.start(ProcessVideo, { videoId, title: "Holiday in the Alps" })
      log(`started run ${runId} (${videoId})`)
      return json(res, 201, { runId })
    }
    const events = /^\/runs\/([0-9a-f-]{36})\/events$/.exec(pathname)
    if (req.method === "GET" && events !== null) {
      // Resumes after Last-Event-ID when the browser reconnects; ends after the run's last event.
      const stream = Sse.watch(chronicle, req, res, events[1]!, {
        retryMs: 1_000,
        onError: (error) => log(`event stream of ${events[1]} failed: ${message(error)}`)
      })
      options.streams?.add(stream)
      return void stream.finally(() => options.streams?.delete(stream))
    }
    json(res, 404, { error: `no route for ${req.method} ${pathname}` })
  } catch (error) {
    log(`${req.method} ${pathname} failed: ${message(error)}`)
    if (!res.headersSent) json(res, 500, { error: message(error) })
    else res.end()
  }
}

/**
 * The running app.
 */
export interface App {
  /** Where the page is, e.g. http://127.0.0.1:41234/ */
  readonly url: string
  readonly chronicle: Chronicle.Chronicle
  /** Stops taking requests, ends the open event streams, stops the worker, closes the pool. */
  readonly close: () => Promise<void>
}

/**
 * Starts the worker and the http server on a database that Chronicle's schema is migrated into
 * (or pass `migrate: true`). `port` 0 (the default) takes any free port.
 */
export const startApp = async (options: {
  readonly connectionString: string
  readonly port?: number
  readonly host?: string
  readonly migrate?: boolean
  readonly log?: (line: string) => void
}): Promise<App> => {
  const log = options.log ?? (() => {})
  const chronicle = await Chronicle.createChronicle({
    connectionString: options.connectionString,
    workflows,
    worker: { concurrency: 10 },
    migrate: options.migrate ?? false
  })
  const streams = new Set<Promise<void>>()
  const server = http.createServer(handler(chronicle, { streams, log }))
  const host = options.host ?? "127.0.0.1"
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject)
      server.listen(options.port ?? 0, host, () => {
        server.off("error", reject)
        resolve()
      })
    })
  } catch (error) {
    await chronicle.close()
    throw error
  }
  const { port } = server.address() as AddressInfo
  let closing: Promise<void> | undefined
  return {
    url: `http://${host}:${port}/`,
    chronicle,
    close: () =>
      closing ??= (async () => {
        const closed = new Promise<void>((resolve) => server.close(() => resolve()))
        // Event streams never end by themselves while their run goes on: cut them, so that each
        // one stops its watch, and wait for that before the pool closes under them.
        server.closeAllConnections()
        await Promise.all([...streams])
        await closed
        await chronicle.close()
      })()
  }
}
