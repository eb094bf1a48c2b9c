//! One projector writes a projection at a time.
//!
//! Two projectors sharing the durable consumer would commit interleaved batches, and the
//! checkpoint would no longer mean "everything below is applied": events could be skipped
//! for good. So a projector writes only while it holds a PostgreSQL advisory lock, and it
//! writes every batch through the very session that holds the lock: if that session dies,
//! the lock goes with it and the next write fails instead of racing a new holder. A second
//! projector stands by until the lock is free; `rebuild` refuses to run while it is held.

use sqlx::{PgConnection, PgPool};

/// The advisory lock key of the points projection. Advisory locks are scoped to one
/// database, so projections in different databases do not contend.
const LOCK_KEY: i64 = 0x6765_6f6c_6564_6772;

/// A session holding the projection's lock, or `None` if another projector holds it.
pub(crate) async fn try_lead(pool: &PgPool) -> Result<Option<PgConnection>, sqlx::Error> {
    // Detached from the pool, so the session (and the lock) lives as long as this value.
    let mut session = pool.acquire().await?.detach();
    let acquired: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(LOCK_KEY)
        .fetch_one(&mut session)
        .await?;
    Ok(acquired.then_some(session))
}
