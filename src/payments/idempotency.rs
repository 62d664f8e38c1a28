//! `Idempotency-Key` for POSTs that move money. The key row is inserted in the same
//! transaction as the work: a concurrent duplicate waits on the row's unique index until the
//! first commits, then finds the stored answer. Same key + same body → the first answer again;
//! same key + another body → 422 `idempotency_key_reused`. Work that fails rolls back the key
//! too, so it can be retried. Rows are purged after `payments.idempotency_ttl_h` (≥ 24 h).

use futures::future::BoxFuture;
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::users::InvalidInput;

/// Parse an `Idempotency-Key` header value: 1 to 255 visible characters.
pub fn parse_key(value: &str) -> Result<String, InvalidInput> {
    if value.is_empty() || value.len() > 255 {
        return Err(InvalidInput {
            field: "Idempotency-Key",
            reason: "must be 1 to 255 visible characters",
        });
    }
    Ok(value.to_string())
}

/// What an idempotent run came to.
#[derive(Debug)]
pub enum Outcome {
    /// The work ran and committed (its answer stored under the key, when one was given).
    Done { status: u16, body: Value },
    /// The key was used before with the same request: its first answer, nothing ran.
    Replayed { status: u16, body: Value },
    /// The key was used before with a different request: nothing ran.
    KeyReused,
}

/// Run `work` in one transaction guarded by `key` (when given): the key row, the work and its
/// stored answer commit together, so a retry either replays the answer or runs again.
/// `request` is the request's JSON: serde_json maps are sorted, so the same JSON however
/// formatted hashes the same.
pub async fn run<E, F>(
    db: &PgPool,
    user_id: Uuid,
    route: &str,
    key: Option<&str>,
    request: &Value,
    work: F,
) -> Result<Outcome, E>
where
    E: From<sqlx::Error>,
    F: for<'c> FnOnce(&'c mut PgConnection) -> BoxFuture<'c, Result<(u16, Value), E>>,
{
    let mut tx = db.begin().await?;
    if let Some(key) = key {
        let canonical = serde_json::to_vec(request).unwrap_or_default();
        let hash = request_hash(route, &canonical);
        match begin(&mut tx, user_id, route, key, &hash).await? {
            Begin::New => {}
            Begin::Replay(status, body) => return Ok(Outcome::Replayed { status, body }),
            Begin::Mismatch => return Ok(Outcome::KeyReused),
        }
    }
    let (status, body) = work(&mut tx).await?;
    if let Some(key) = key {
        finish(&mut tx, user_id, route, key, status, &body).await?;
    }
    tx.commit().await?;
    Ok(Outcome::Done { status, body })
}

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
