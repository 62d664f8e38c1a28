//! PostgreSQL: the pool and the embedded migrations (`migrations/`, applied at start and by
//! `wemaster migrate`).

use std::time::Duration;

use anyhow::Context;
use sqlx::{PgPool, postgres::PgPoolOptions};

use crate::config::DatabaseSettings;

/// Migrations compiled into the binary, so a deployment is one file.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Open the pool and check one connection, so a wrong URL fails at start, not on first use.
pub async fn connect(settings: &DatabaseSettings) -> anyhow::Result<PgPool> {
    let pool = PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(Duration::from_secs(settings.acquire_timeout_s))
        .connect(settings.url.expose())
        .await
        .context("cannot connect to PostgreSQL (database.url)")?;
    Ok(pool)
}

/// Apply pending migrations (idempotent; concurrent nodes serialise on sqlx's advisory lock).
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR
        .run(pool)
        .await
        .context("cannot apply database migrations")?;
    Ok(())
}

/// Readiness probe.
pub async fn ping(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1").execute(pool).await.map(|_| ())
}
