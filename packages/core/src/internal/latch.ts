/**
 * A latch for one waiter, opened as plain code: `open` wakes the waiter, or leaves the latch open
 * for the next wait; the waiter `close`s it once it has looked. Effect's Latch wraps every wait in
 * an interruption handler, which every `Client.result` paid for.
 *
 * @internal
 */
import { Effect } from "effect"

export class Latch {
  private isOpen = false
  private waiter: ((effect: Effect.Effect<void>) => void) | undefined
  private backstop: ReturnType<typeof setTimeout> | undefined

  /** Wakes the waiter, or leaves the latch open. */
  readonly open = (): void => {
    const resume = this.waiter
    if (resume === undefined) {
      this.isOpen = true
      return
    }
    this.stopWaiting()
    resume(Effect.void)
  }

  close(): void {
    this.isOpen = false
  }

  /** Waits until the latch is open, or `ms` at most (on a timer, cleared when it opens). */
  awaitAtMost(ms: number): Effect.Effect<void> {
    return Effect.async<void>((resume) => {
      if (this.isOpen) return resume(Effect.void)
      this.waiter = resume
      this.backstop = setTimeout(this.open, ms)
      return Effect.sync(() => this.stopWaiting())
    })
  }

  private stopWaiting(): void {
    clearTimeout(this.backstop)
    this.backstop = undefined
    this.waiter = undefined
  }
}
