/**
 * The database's clock as seen from this process: the offset of the database's `now()` from ours,
 * estimated from statements that read it, as a lower bound, so that a time computed from it is
 * never ahead of the database and a timer fired by it is never early.
 *
 * Each reading bounds the offset on both sides. The database read `now()` between our sending the
 * statement and our reading its answer, so the offset is at least `now()` minus our clock when the
 * answer was read (`low`), and at most `now()` minus our clock when it was sent (`high`). Both
 * clocks are read in whole milliseconds, rounded down, so `low` gives one up and `high` adds one:
 * taking the best `low` of many readings would otherwise pick the ones the rounding flattered, up
 * to a millisecond ahead of the database. The estimate is the best lower bound seen: a reading
 * replaces it when its `low` is higher, or when its `high` is lower than the estimate, which then
 * cannot be right (one of the clocks jumped). A reading whose answer was read late (a busy event
 * loop, a slow statement) has a wide range and changes nothing.
 *
 * Before, the latest quick reading replaced the estimate, and a late one did once no quick one had
 * come for 2 s. With runs taken at their start, W4 made few claims, and a one-second poll read late
 * in the middle of the timers' firing lowered the estimate by 3-4 ms: each timer that woke after it
 * found the database clock short of its wake-up time and slept again (TimerFired 5-7 ms after its
 * wakeAt, against 2.3 ms with claims; W4 trace, 500 runs, service Postgres).
 *
 * @internal
 */
export class DbClock {
  private offset: number | undefined

  constructor(private readonly now: () => number = Date.now) {}

  /** `dbNow`, read by a statement sent at `sentAt` (our clock) and answered now. */
  observe(dbNow: Date, sentAt: number): void {
    const low = dbNow.getTime() - this.now() - 1
    const high = dbNow.getTime() - sentAt + 1
    if (this.offset === undefined || low > this.offset || high < this.offset) this.offset = low
  }

  /** The database's time now, by the estimate (ours until the first reading). */
  date(): Date {
    return new Date(this.now() + (this.offset ?? 0))
  }
}
