/**
 * The database's clock as seen from this process: the offset of the database's `now()` from ours,
 * estimated from statements that read it, as a lower bound (database time read, minus our clock
 * when the answer was read), so that a time computed from it is never ahead of the database and a
 * timer fired by it is never early.
 *
 * A reading whose answer was read late (a busy event loop, a slow statement) is a poor lower bound:
 * taken as the estimate, it put the database clock behind by the delay. W4 with runs taken at their
 * start read it from one-second polls answered while the process was busy: the estimate fell
 * 13-22 ms behind and every 2 s timer fired that much late. So a reading whose round trip was long
 * (over twice the shortest of the recent ones, plus a millisecond) is used only when it raises the
 * estimate (a tighter lower bound is always good), or when no good reading came for `maxAgeMs` (the
 * estimate follows a jump of this machine's clock either way: a good reading replaces it, whatever
 * its value).
 *
 * @internal
 */
export class DbClock {
  private offset = 0
  private at = -Infinity
  private readonly rtts: Array<number> = []

  constructor(private readonly now: () => number = Date.now, private readonly maxAgeMs = 2_000) {}

  /** `dbNow`, read by a statement sent at `sentAt` (our clock) and answered now. */
  observe(dbNow: Date, sentAt: number): void {
    const readAt = this.now()
    const rtt = Math.max(0, readAt - sentAt)
    this.rtts.push(rtt)
    if (this.rtts.length > 32) this.rtts.shift()
    const reading = dbNow.getTime() - readAt
    const good = rtt <= 2 * Math.min(...this.rtts) + 1
    if (good || reading > this.offset || readAt - this.at > this.maxAgeMs) {
      this.offset = reading
      this.at = readAt
    }
  }

  /** The database's time now, by the estimate. */
  date(): Date {
    return new Date(this.now() + this.offset)
  }
}
