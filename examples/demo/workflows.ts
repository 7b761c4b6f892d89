/**
 * The demo's two workflows.
 *
 * - `checkout`, a saga: reserve stock, charge the card, ship, send the receipt. Reserving and
 *   charging have compensations (release the stock, refund the charge) that run, newest first, if
 *   the run fails or is cancelled after them.
 * - `drip`, an onboarding sequence: a welcome email, a sleep (seconds here, days in real life),
 *   then a wait for the "activated" signal with a timeout: tips if it came, a nudge if not.
 *
 * Every step body first writes a row to `demo_ledger` through the `Ledger` service (the worker
 * process provides it, on a connection of its own), so the demo can count how many times each
 * side effect really ran, and on which worker.
 */
import { Context, Effect, Option, Schema } from "effect"
import { Step, Workflow } from "@chronicle/core"

/**
 * Where step bodies record that they ran. `say` prints one line in the worker's output.
 */
export class Ledger extends Context.Tag("demo/Ledger")<Ledger, {
  readonly record: (run: Run, step: string, say: string) => Effect.Effect<void>
}>() {}

/** The run a step body belongs to (step bodies cannot read `Workflow.info` themselves). */
export interface Run {
  readonly runId: string
  readonly workflow: string
}

const record = (run: Run, step: string, say: string) => Effect.flatMap(Ledger, (ledger) => ledger.record(run, step, say))

const dollars = (cents: number) => `$${(cents / 100).toFixed(2)}`
const shortId = () => crypto.randomUUID().slice(0, 8)

// ---- checkout ------------------------------------------------------------------------------

export const Item = Schema.Struct({ sku: Schema.String, quantity: Schema.Int })

export const Order = Schema.Struct({
  orderId: Schema.String,
  email: Schema.String,
  card: Schema.String,
  items: Schema.Array(Item),
  amountCents: Schema.Int
})
export type Order = typeof Order.Type

const Reservation = Schema.Struct({ reservationId: Schema.String, units: Schema.Int })
const Charge = Schema.Struct({ chargeId: Schema.String, amountCents: Schema.Int })
const Shipment = Schema.Struct({ trackingNumber: Schema.String })

export const Receipt = Schema.Struct({
  orderId: Schema.String,
  chargeId: Schema.String,
  trackingNumber: Schema.String,
  amountCents: Schema.Int
})
export type Receipt = typeof Receipt.Type

export class CardDeclined extends Schema.TaggedError<CardDeclined>()("CardDeclined", { reason: Schema.String }) {}

/** How long the ship step takes: the window in which the demo kills the worker running it. */
export const SHIP_SECONDS = 4

export const Checkout = Workflow.make(
  { name: "checkout", version: 1, input: Order, success: Receipt, error: CardDeclined },
  (order) =>
    Effect.gen(function*() {
      const run = yield* Workflow.info
      const units = order.items.reduce((n, item) => n + item.quantity, 0)

      yield* Step.run("reserve-stock", {
        run: Effect.gen(function*() {
          const reservation = { reservationId: `rsv_${shortId()}`, units }
          yield* record(run, "reserve-stock", `reserved ${units} units (${reservation.reservationId})`)
          return reservation
        }),
        success: Reservation,
        compensate: (reservation) =>
          record(run, "release-stock", `released ${reservation.units} units (${reservation.reservationId})`)
      })

      const charge = yield* Step.run("charge-card", {
        run: Effect.gen(function*() {
          // A real payment call would pass the run id as its idempotency key as well.
          if (order.card === "tok_declined") {
            yield* record(run, "charge-card", `card declined for ${dollars(order.amountCents)}`)
            return yield* new CardDeclined({ reason: "insufficient funds" })
          }
          const charge = { chargeId: `ch_${shortId()}`, amountCents: order.amountCents }
          yield* record(run, "charge-card", `charged ${dollars(charge.amountCents)} (${charge.chargeId})`)
          return charge
        }),
        success: Charge,
        error: CardDeclined,
        retry: { nonRetryable: ["CardDeclined"] },
        compensate: (charge) => record(run, "refund", `refunded ${dollars(charge.amountCents)} (${charge.chargeId})`)
      })

      const shipment = yield* Step.run("ship", {
        run: Effect.gen(function*() {
          yield* record(run, "ship", `packing order ${order.orderId} for the carrier (takes ${SHIP_SECONDS} s)`)
          yield* Effect.sleep(`${SHIP_SECONDS} seconds`)
          return { trackingNumber: `1Z${shortId().toUpperCase()}` }
        }),
        success: Shipment,
        timeout: "30 seconds"
      })

      yield* Step.run("send-receipt", {
        run: record(run, "send-receipt", `emailed the receipt to ${order.email} (tracking ${shipment.trackingNumber})`),
        success: Schema.Void
      })

      return {
        orderId: order.orderId,
        chargeId: charge.chargeId,
        trackingNumber: shipment.trackingNumber,
        amountCents: charge.amountCents
      }
    })
)

// ---- onboarding drip -----------------------------------------------------------------------

export const Signup = Schema.Struct({ userId: Schema.String, email: Schema.String })
export type Signup = typeof Signup.Type

/** The payload of the "activated" signal. */
export const Activated = Schema.Struct({ plan: Schema.String })
export type Activated = typeof Activated.Type

export const DripResult = Schema.Struct({
  email: Schema.String,
  activated: Schema.Boolean,
  emails: Schema.Array(Schema.String)
})
export type DripResult = typeof DripResult.Type

/** Stand-ins for "two days" and "a week", so the demo runs in seconds. */
export const DRIP_SLEEP = "3 seconds"
export const ACTIVATION_TIMEOUT = "10 seconds"

export const Drip = Workflow.make(
  { name: "drip", version: 1, input: Signup, success: DripResult },
  (signup) =>
    Effect.gen(function*() {
      const run = yield* Workflow.info
      const email = (step: string, subject: string) =>
        Step.run(step, {
          run: record(run, step, `emailed ${signup.email}: "${subject}"`).pipe(Effect.as(subject)),
          success: Schema.String
        })

      yield* email("send-welcome", "Welcome aboard!")
      yield* Workflow.sleep("wait-before-follow-up", DRIP_SLEEP)
      // A durable wait: no worker holds the run while it waits, and the timeout survives restarts.
      const activation = yield* Workflow.signal("activated", Activated, { timeout: ACTIVATION_TIMEOUT }).pipe(Effect.option)
      const followUp = Option.isSome(activation)
        ? yield* email("send-tips", `Tips for your ${activation.value.plan} plan`)
        : yield* email("send-nudge", "Need a hand getting started?")
      return { email: signup.email, activated: Option.isSome(activation), emails: ["Welcome aboard!", followUp] }
    })
)

export const workflows = [Checkout, Drip] as const
