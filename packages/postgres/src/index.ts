/**
 * Chronicle on Postgres: the connection pool, the LISTEN connection, schema-name validation
 * and the migration runner. The Store, Worker and Client build on these.
 *
 * @since 0.1.0
 */

/** @since 0.1.0 */
export * as Migrator from "./Migrator.js"
/** @since 0.1.0 */
export * as PgError from "./PgError.js"
/** @since 0.1.0 */
export * as PgListener from "./PgListener.js"
/** @since 0.1.0 */
export * as PgPool from "./PgPool.js"
/** @since 0.1.0 */
export * as PgStore from "./PgStore.js"
/** @since 0.1.0 */
export * as SchemaName from "./SchemaName.js"
