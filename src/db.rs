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

/// Apply pending migrations (idempotent; nodes starting together serialise on sqlx's advisory
/// lock, so the schema is migrated once). Refuses a schema newer than this build knows.
///
/// The advisory lock is a session's: through a transaction pooler its lock and unlock could
/// land on different server connections, so with `database.direct_url` set the migrations run
/// on a connection of their own to PostgreSQL itself; otherwise on `pool`.
pub async fn migrate(settings: &DatabaseSettings, pool: &PgPool) -> anyhow::Result<()> {
    let direct;
    let pool = if settings.direct_url.is_empty() {
        pool
    } else {
        direct = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(settings.acquire_timeout_s))
            .connect(settings.direct_url.expose())
            .await
            .context("cannot connect to PostgreSQL (database.direct_url)")?;
        &direct
    };
    refuse_newer(pool).await?;
    MIGRATOR
        .run(pool)
        .await
        .context("cannot apply database migrations")?;
    Ok(())
}

/// At a start without migrations (`database.migrate_on_start = false`): the schema must be the
/// one this build knows, neither newer nor behind.
pub async fn check_schema(pool: &PgPool) -> anyhow::Result<()> {
    refuse_newer(pool).await?;
    let applied = applied_versions(pool).await?;
    let pending = MIGRATOR
        .iter()
        .filter(|m| !applied.contains(&m.version))
        .count();
    if pending > 0 {
        anyhow::bail!(
            "the database schema is behind this release of wemaster: {pending} migration(s) pending; \
             run `wemaster migrate` (database.migrate_on_start is off)"
        );
    }
    Ok(())
}

/// A node of an older release must not run on a schema a newer one migrated: it would write
/// rows the new schema forbids or miss columns it needs. Say which release to run.
async fn refuse_newer(pool: &PgPool) -> anyhow::Result<()> {
    let known: std::collections::HashSet<i64> = MIGRATOR.iter().map(|m| m.version).collect();
    let newest_known = known.iter().copied().max().unwrap_or(0);
    let unknown = applied_versions(pool)
        .await?
        .into_iter()
        .filter(|v| !known.contains(v))
        .max();
    if let Some(v) = unknown {
        anyhow::bail!(
            "the database schema is newer than this release of wemaster: migration {v} was applied \
             by a newer release (this one knows up to {newest_known}); run that release or a newer \
             one, or restore a backup taken before the upgrade"
        );
    }
    Ok(())
}

/// The versions of the migrations applied (none on an empty database).
async fn applied_versions(pool: &PgPool) -> anyhow::Result<Vec<i64>> {
    match sqlx::query_scalar::<_, i64>("SELECT version FROM _sqlx_migrations WHERE success")
        .fetch_all(pool)
        .await
    {
        Ok(v) => Ok(v),
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => Ok(Vec::new()),
        Err(e) => Err(anyhow::Error::from(e).context("cannot read the applied migrations")),
    }
}

/// Readiness probe.
pub async fn ping(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1").execute(pool).await.map(|_| ())
}
