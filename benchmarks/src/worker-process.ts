/**
 * The parent's side of w5-worker.ts: forks it and exchanges requests and replies in order.
 */
import { fork } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import { join } from "node:path"
import type { Reply, Request } from "./w5-worker.js"
import { root, withTimeout } from "./util.js"

const fromSource = process.env["VITEST"] !== undefined || process.execArgv.includes("--conditions=source")

export class WorkerProcess {
  private readonly pending: Array<{ resolve: (r: Reply) => void; reject: (e: Error) => void }> = []
  private exited = false

  private constructor(private readonly child: ChildProcess) {
    child.on("message", (reply: Reply) => {
      if (reply.type === "ready") return
      const next = this.pending.shift()
      if (!next) return
      if (reply.type === "error") next.reject(new Error(`worker process: ${reply.message}`))
      else next.resolve(reply)
    })
    child.on("exit", (code, signal) => {
      this.exited = true
      for (const p of this.pending.splice(0)) p.reject(new Error(`worker process exited (${code ?? signal})`))
    })
  }

  get pid() {
    return this.child.pid
  }

  /** Forks a worker process; resolves once it has loaded. */
  static async spawn(): Promise<WorkerProcess> {
    const child = fork(join(root, "benchmarks/src/w5-worker.ts"), ["--child"], {
      cwd: root,
      // Chronicle as the parent loads it: compiled (`npm run bench`, as users run it), or from its
      // TypeScript sources (under vitest, or `--conditions=source`).
      execArgv: [...(fromSource ? ["--conditions=source"] : []), "--import", "tsx", "--expose-gc"],
      stdio: ["ignore", "inherit", "inherit", "ipc"]
    })
    const ready = new Promise<void>((resolve, reject) => {
      child.once("message", () => resolve())
      child.once("exit", (code) => reject(new Error(`worker process exited before it was ready (${code})`)))
      child.once("error", reject)
    })
    await withTimeout(ready, 60_000, "worker process to load")
    return new WorkerProcess(child)
  }

  request<T extends Reply["type"]>(request: Request, timeoutMs = 60_000): Promise<Extract<Reply, { type: T }>> {
    if (this.exited) return Promise.reject(new Error("worker process has exited"))
    const reply = new Promise<Reply>((resolve, reject) => this.pending.push({ resolve, reject }))
    this.child.send(request)
    return withTimeout(reply, timeoutMs, `worker process: ${request.type}`) as Promise<Extract<Reply, { type: T }>>
  }

  /** Asks it to exit; kills it if it does not within 10 s. */
  async exit(): Promise<void> {
    if (this.exited) return
    const gone = new Promise<void>((resolve) => this.child.once("exit", () => resolve()))
    this.child.send({ type: "exit" } satisfies Request)
    await withTimeout(gone, 10_000, "worker process to exit").catch(() => {
      this.child.kill("SIGKILL")
    })
  }
}
