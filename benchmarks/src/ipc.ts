/**
 * A child process of the benchmark driven over IPC (child_process.fork): requests go out one after
 * another and replies come back in order. Shared by the Chronicle worker processes of W5 and the
 * memory measurement (worker-process.ts) and by the engines' hosts (engine-host.ts).
 *
 * The child sends `{ type: "ready" }` once loaded, answers every request with one reply, and exits
 * on `{ type: "exit" }`.
 */
import { fork } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import { join } from "node:path"
import { root, withTimeout } from "./util.js"

// Chronicle as the parent loads it: compiled (`npm run bench`, as users run it), or from its
// TypeScript sources (under vitest, or `--conditions=source`).
const fromSource = process.env["VITEST"] !== undefined || process.execArgv.includes("--conditions=source")

export class IpcChild<Req extends { readonly type: string }, Rep extends { readonly type: string }> {
  private readonly pending: Array<{ resolve: (r: Rep) => void; reject: (e: Error) => void }> = []
  private exited = false

  private constructor(readonly name: string, private readonly child: ChildProcess) {
    child.on("message", (reply: Rep) => {
      if (reply.type === "ready") return
      this.pending.shift()?.resolve(reply)
    })
    child.on("exit", (code, signal) => {
      this.exited = true
      for (const p of this.pending.splice(0)) p.reject(new Error(`${name} exited (${code ?? signal})`))
    })
  }

  get pid() {
    return this.child.pid
  }

  /** Forks `script` (relative to the repository) with `args`; resolves once it says it is ready. */
  static async fork<Req extends { readonly type: string }, Rep extends { readonly type: string }>(
    name: string,
    script: string,
    args: ReadonlyArray<string>,
    nodeFlags: ReadonlyArray<string> = []
  ): Promise<IpcChild<Req, Rep>> {
    const child = fork(join(root, script), [...args], {
      cwd: root,
      execArgv: [...(fromSource ? ["--conditions=source"] : []), "--import", "tsx", ...nodeFlags],
      stdio: ["ignore", "inherit", "inherit", "ipc"]
    })
    const ready = new Promise<void>((resolve, reject) => {
      child.once("message", () => resolve())
      child.once("exit", (code) => reject(new Error(`${name} exited before it was ready (${code})`)))
      child.once("error", reject)
    })
    await withTimeout(ready, 120_000, `${name} to load`)
    return new IpcChild<Req, Rep>(name, child)
  }

  /** Sends `request`; resolves with its reply. */
  request(request: Req, timeoutMs: number): Promise<Rep> {
    if (this.exited) return Promise.reject(new Error(`${this.name} has exited`))
    const reply = new Promise<Rep>((resolve, reject) => this.pending.push({ resolve, reject }))
    this.child.send(request)
    return withTimeout(reply, timeoutMs, `${this.name}: ${request.type}`)
  }

  /** Asks it to exit; kills it if it does not within 10 s. */
  async exit(): Promise<void> {
    if (this.exited) return
    const gone = new Promise<void>((resolve) => this.child.once("exit", () => resolve()))
    this.child.send({ type: "exit" })
    await withTimeout(gone, 10_000, `${this.name} to exit`).catch(() => {
      this.child.kill("SIGKILL")
    })
  }

  /** Ends it at once (after a request went unanswered: its state is unknown). */
  kill(): void {
    if (!this.exited) this.child.kill("SIGKILL")
  }
}
