/**
 * The parent's side of w5-worker.ts: forks it and exchanges requests and replies in order.
 */
import { IpcChild } from "./ipc.js"
import type { Reply, Request } from "./w5-worker.js"

export class WorkerProcess {
  private constructor(private readonly ipc: IpcChild<Request, Reply>) {}

  get pid() {
    return this.ipc.pid
  }

  /** Forks a worker process; resolves once it has loaded. */
  static async spawn(): Promise<WorkerProcess> {
    return new WorkerProcess(await IpcChild.fork<Request, Reply>("worker process", "benchmarks/src/w5-worker.ts", ["--child"], ["--expose-gc"]))
  }

  /** Sends `request`; rejects if the worker answers with an error. */
  async request<T extends Reply["type"]>(request: Request, timeoutMs = 60_000): Promise<Extract<Reply, { type: T }>> {
    const reply = await this.ipc.request(request, timeoutMs)
    if (reply.type === "error") throw new Error(`worker process: ${reply.message}`)
    return reply as Extract<Reply, { type: T }>
  }

  /** Asks it to exit; kills it if it does not within 10 s. */
  exit(): Promise<void> {
    return this.ipc.exit()
  }
}
