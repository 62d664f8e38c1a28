//! The first admin without a shell. While no account holds the admin role, each start of the
//! server issues a one-time setup token and prints the link to the web app's `/setup` page with
//! it (the log is the channel, as for other self-hosted servers: whoever reads the server's log
//! owns the server); `POST /api/v1/setup` with the token creates the first admin, and from then
//! on setup is gone. `wemaster admin create-user` stays the shell's way.
//!
//! The token's SHA-256 is kept in Redis for a day (every node accepts it; a restart issues a new
//! one and the old one stops working). Creating the admin takes a transaction-wide advisory lock,
//! so two requests racing with the token create one admin.

use std::time::Duration;

use sqlx::PgPool;

use crate::{
    auth::{random_token, token_hash},
    cache::Redis,
    users::{self, CreateUserError, DisplayName, Email, Role, User},
};

/// How long a printed setup link works.
pub const TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

/// The Redis key of the token's hash: beside the abuse counters (`auth.limits.key_prefix`, one
/// per server in the tests, which share a Redis).
pub fn token_key(limits: &crate::config::AuthLimits) -> String {
    format!("{}setup-token", limits.key_prefix)
}

/// Why the first admin was not created.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("an admin account exists: setup is done")]
    Done,
    #[error("the setup token is wrong or expired (the server prints a new one when it starts)")]
    BadToken,
    #[error("an account with this email exists")]
    EmailTaken,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
}

/// Whether an account holds the admin role (then there is nothing to set up).
pub async fn admin_exists(db: impl sqlx::PgExecutor<'_>) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM users WHERE 'admin' = ANY(roles)) AS "exists!""#
    )
    .fetch_one(db)
    .await
}

/// A new setup token (replacing any earlier one), valid for [`TOKEN_TTL`].
pub async fn issue(redis: &Redis, key: &str) -> Result<String, redis::RedisError> {
    let token = random_token("wms_");
    let mut conn = redis.conn();
    redis::cmd("SET")
        .arg(key)
        .arg(token_hash(&token))
        .arg("EX")
        .arg(TOKEN_TTL.as_secs())
        .query_async::<()>(&mut conn)
        .await?;
    Ok(token)
}

/// Create the first admin with `token`; the token is spent.
pub async fn create_first_admin(
    db: &PgPool,
    redis: &Redis,
    key: &str,
    token: &str,
    email: &Email,
    name: &DisplayName,
    password_hash: &str,
) -> Result<User, SetupError> {
    let mut conn = redis.conn();
    let stored: Option<Vec<u8>> = redis::cmd("GET").arg(key).query_async(&mut conn).await?;
    let matches = stored.is_some_and(|s| {
        use subtle::ConstantTimeEq;
        bool::from(s.ct_eq(&token_hash(token)))
    });
    let mut tx = db.begin().await?;
    sqlx::query!("SELECT pg_advisory_xact_lock(hashtext('wemaster:first-admin'))")
        .execute(&mut *tx)
        .await?;
    if admin_exists(&mut *tx).await? {
        return Err(SetupError::Done);
    }
    if !matches {
        return Err(SetupError::BadToken);
    }
    let user = users::create_user(&mut tx, email, name, password_hash, &[Role::Admin])
        .await
        .map_err(|e| match e {
            CreateUserError::EmailTaken => SetupError::EmailTaken,
            CreateUserError::Db(e) => SetupError::Db(e),
        })?;
    tx.commit().await?;
    let _ = redis::cmd("DEL")
        .arg(key)
        .query_async::<()>(&mut conn)
        .await;
    Ok(user)
}
