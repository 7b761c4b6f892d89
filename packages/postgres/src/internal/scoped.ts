/**
 * A subscription that ends with the caller's scope, from one that returns its own ending as plain
 * code. The ending goes straight into the scope, not through `acquireRelease`, whose finalizer
 * diffs and patches the fiber's FiberRefs on the way in and out (more than the subscription
 * itself cost `Client.result`); nothing can interrupt between the subscription and its ending's
 * registration.
 *
 * @internal
 */
import type { Scope } from "effect"
import { Effect, Scope as S } from "effect"

export const untilScopeCloses = <E>(subscribe: Effect.Effect<() => void, E>): Effect.Effect<void, E, Scope.Scope> =>
  Effect.flatMap(S.Scope, (scope) =>
    Effect.uninterruptible(Effect.flatMap(subscribe, (end) => S.addFinalizer(scope, Effect.sync(end)))))
