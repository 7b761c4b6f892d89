// PgStore's estimate of database time: a lower bound (never ahead of the database), the best one
// the readings give, so that an answer read late does not put it behind.
import { assert, describe, it } from "@effect/vitest"
import { DbClock } from "../src/internal/dbClock.js"

/** A clock of ours we move by hand, and the database's clock, `ahead` ms ahead of ours. */
const setup = (initiallyAhead: number) => {
  let ours = 1_000_000
  let ahead = initiallyAhead
  const clock = new DbClock(() => ours)
  return {
    clock,
    /** A statement that reads `now()` `oneWay` ms after it is sent, answered and read `back` ms later. */
    read: (oneWay: number, back: number) => {
      const sentAt = ours
      const dbNow = new Date(ours + oneWay + ahead)
      ours += oneWay + back
      clock.observe(dbNow, sentAt)
    },
    /** How far ahead of ours the estimate puts the database. */
    estimate: () => clock.date().getTime() - ours,
    advance: (ms: number) => (ours += ms),
    /** Our clock jumps by `ms` (the database's does not). */
    jump: (ms: number) => {
      ours += ms
      ahead -= ms
    }
  }
}

describe("DbClock", () => {
  it("is never ahead of the database, and within a quick round trip of it", () => {
    const { estimate, read } = setup(5_000)
    for (let i = 0; i < 5; i++) read(1, 1)
    assert.isAtMost(estimate(), 5_000)
    assert.isAtLeast(estimate(), 5_000 - 2)
  })

  it("an answer read late does not put it behind", () => {
    const { estimate, read } = setup(5_000)
    for (let i = 0; i < 5; i++) read(1, 1)
    read(1, 20) // the event loop was busy when the answer came
    assert.isAtMost(estimate(), 5_000)
    assert.isAtLeast(estimate(), 5_000 - 2)
  })

  it("takes a late answer that raises it, and leaves out one that would lower it, however long after the last", () => {
    const { advance, estimate, read } = setup(5_000)
    for (let i = 0; i < 5; i++) read(5, 5) // slow round trips to begin with (10 ms): 4,995
    read(30, 1) // a long round trip, but its answer came back quickly: a better lower bound
    assert.strictEqual(estimate(), 5_000 - 2) // (one millisecond given up for the rounding)
    read(1, 30) // a long round trip that would lower it: left out
    assert.strictEqual(estimate(), 5_000 - 2)
    advance(3_000)
    read(1, 40) // late and lower, and nothing better came for 3 s: still left out
    assert.strictEqual(estimate(), 5_000 - 2)
    read(1, 1)
    assert.strictEqual(estimate(), 5_000 - 2)
  })

  it("follows a jump of our clock at the next answer that shows it, either way", () => {
    const { estimate, jump, read } = setup(5_000)
    for (let i = 0; i < 5; i++) read(1, 1)
    jump(60_000) // ours jumps a minute ahead: the estimate is now a minute ahead of the database
    read(1, 1)
    assert.isAtMost(estimate(), 5_000 - 60_000)
    assert.isAtLeast(estimate(), 5_000 - 60_000 - 2)
    jump(-120_000)
    read(1, 1)
    assert.isAtMost(estimate(), 5_000 + 60_000)
    assert.isAtLeast(estimate(), 5_000 + 60_000 - 2)
  })

  it("follows a small jump ahead of our clock once an answer comes back quickly enough to show it", () => {
    const { estimate, jump, read } = setup(5_000)
    for (let i = 0; i < 5; i++) read(1, 1)
    jump(6) // ours jumps 6 ms ahead: the estimate is now up to 6 ms ahead of the database
    read(4, 4) // a round trip of 8 ms cannot tell: the database may be as far ahead as before
    assert.isAbove(estimate(), 5_000 - 6)
    read(1, 1) // 2 ms: it can
    assert.isAtMost(estimate(), 5_000 - 6)
    assert.isAtLeast(estimate(), 5_000 - 6 - 2)
  })

  it("is never ahead of the database although both clocks are read in whole milliseconds", () => {
    // The database is 0.2 ms ahead of us; a reading at one phase of the millisecond reads it a
    // whole millisecond ahead (its `now()` just past a millisecond, our clock just short of one).
    let ours = 1_000_000.25
    const clock = new DbClock(() => Math.floor(ours))
    for (let i = 0; i < 40; i++) {
      const sentAt = Math.floor(ours)
      const dbNow = new Date(Math.floor(ours + 0.05 + 0.2))
      ours += 0.1
      clock.observe(dbNow, sentAt)
      assert.isAtMost(clock.date().getTime() - ours, 0.2, `after reading ${i}`)
      ours += 0.037
    }
  })
})
