/**
 * Chronicle on Postgres: the Store (PgStore), transactional starts and listing (PgClient), the
 * Promise facade (Chronicle.createChronicle), and under them the connection pool, the LISTEN
 * connection, schema-name validation and the migration runner.
 *
 * @since 0.1.0
 */

/** @since 0.1.0 */
export * as Chronicle from "./Chronicle.js"
/** @since 0.1.0 */
export * as Migrator from "./Migrator.js"
/** @since 0.1.0 */
export * as PgClient from "./PgClient.js"
/** @since 0.1.0 */
export * as PgError from "./PgError.js"
/** @since 0.1.0 */
export * as PgListener from "./PgListener.js"
/** @since 0.1.0 */
export * as PgPool from "./PgPool.js"
/** @since 0.1.0 */
export * as PgStore from "./PgStore.js"
/** @since 0.1.0 */
export * as Projection from "./Projection.js"
/** @since 0.1.0 */
export * as Retention from "./Retention.js"
/** @since 0.1.0 */
export * as Roles from "./Roles.js"
/** @since 0.1.0 */
export * as SchemaName from "./SchemaName.js"
/** @since 0.1.0 */
export * as Sse from "./Sse.js"
