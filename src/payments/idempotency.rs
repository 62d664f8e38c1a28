//! `Idempotency-Key` for POSTs that move money. The key row is inserted in the same
//! transaction as the work: a concurrent duplicate waits on the row's unique index until the
//! first commits, then finds the stored answer. Same key + same body → the first answer again;
//! same key + another body → 422 `idempotency_key_reused`. Work that fails rolls back the key
//! too, so it can be retried. Rows are purged after `payments.idempotency_ttl_h` (≥ 24 h).

use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::PgConnection;
use uuid::Uuid;

pub enum Begin {
    /// First use: do the work, then [`finish`].
    New,
    /// Seen before with the same request: answer this.
    Replay(u16, Value),
    /// Seen before with a different request.
    Mismatch,
}

pub fn request_hash(route: &str, body: &[u8]) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(route.as_bytes());
    h.update([0]);
    h.update(body);
    h.finalize().to_vec()
}

pub async fn begin(
    conn: &mut PgConnection,
    user_id: Uuid,
    route: &str,
    key: &str,
    hash: &[u8],
) -> Result<Begin, sqlx::Error> {
    let inserted = sqlx::query!(
        "INSERT INTO idempotency_keys (user_id, route, key, request_hash) VALUES ($1, $2, $3, $4)
         ON CONFLICT DO NOTHING",
        user_id,
        route,
        key,
        hash
    )
    .execute(&mut *conn)
    .await?;
    if inserted.rows_affected() == 1 {
        return Ok(Begin::New);
    }
    let row = sqlx::query!(
        "SELECT request_hash, status, body FROM idempotency_keys
          WHERE user_id = $1 AND route = $2 AND key = $3",
        user_id,
        route,
        key
    )
    .fetch_one(&mut *conn)
    .await?;
    if row.request_hash != hash {
        return Ok(Begin::Mismatch);
    }
    Ok(Begin::Replay(
        row.status.unwrap_or(200) as u16,
        row.body.unwrap_or(Value::Null),
    ))
}

pub async fn finish(
    conn: &mut PgConnection,
    user_id: Uuid,
    route: &str,
    key: &str,
    status: u16,
    body: &Value,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE idempotency_keys SET status = $4, body = $5 WHERE user_id = $1 AND route = $2 AND key = $3",
        user_id,
        route,
        key,
        status as i16,
        body
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn purge(conn: &mut PgConnection, ttl_h: u64) -> Result<u64, sqlx::Error> {
    let hours = i32::try_from(ttl_h.max(24)).unwrap_or(i32::MAX);
    let r = sqlx::query!(
        "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(hours => $1)",
        hours
    )
    .execute(conn)
    .await?;
    Ok(r.rows_affected())
}
