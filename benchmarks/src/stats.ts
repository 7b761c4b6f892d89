/**
 * How repetitions are summarised: the median, and the spread as the smallest and largest value.
 */

export interface Summary {
  /** Median of the repetitions (the mean of the two middle ones for an even count). */
  readonly median: number
  readonly min: number
  readonly max: number
  /** Repetitions that produced a value. */
  readonly n: number
}

export const summarize = (values: ReadonlyArray<number | null | undefined>): Summary | null => {
  const xs = values.filter((x): x is number => typeof x === "number" && Number.isFinite(x)).sort((a, b) => a - b)
  if (xs.length === 0) return null
  const mid = Math.floor(xs.length / 2)
  const median = xs.length % 2 === 1 ? xs[mid]! : (xs[mid - 1]! + xs[mid]!) / 2
  return { median, min: xs[0]!, max: xs[xs.length - 1]!, n: xs.length }
}

/** The spread as a share of the median: (max - min) / median. */
export const relativeSpread = (s: Summary): number => (s.median === 0 ? 0 : (s.max - s.min) / Math.abs(s.median))
