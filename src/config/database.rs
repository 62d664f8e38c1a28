//! `[database]`: PostgreSQL.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use url::Url;

use super::{ConfigError, Secret};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    pub url: Secret,
    #[serde(default, skip_serializing)]
    pub url_file: Option<PathBuf>,
    /// PostgreSQL itself, when `url` goes through a transaction pooler (PgBouncer): migrations
    /// (sqlx's session advisory lock) and `pg_dump`/`pg_restore` need one session from start to
    /// end. Empty: `url` is used for those too.
    pub direct_url: Secret,
    #[serde(default, skip_serializing)]
    pub direct_url_file: Option<PathBuf>,
    pub max_connections: u32,
    pub acquire_timeout_s: u64,
    pub migrate_on_start: bool,
}

impl DatabaseSettings {
    /// The URL for work that needs one session throughout (migrations, dumps): `direct_url`
    /// when set, else `url`.
    pub fn session_url(&self) -> &Secret {
        if self.direct_url.is_empty() {
            &self.url
        } else {
            &self.direct_url
        }
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        fn err(key: &str, reason: impl Into<String>) -> ConfigError {
            ConfigError::new(key, reason)
        }
        match self.url.expose().parse::<Url>() {
            Ok(u) if matches!(u.scheme(), "postgres" | "postgresql") => {}
            _ => return Err(err("database.url", "must be a postgres:// URL")),
        }
        if !self.direct_url.is_empty() {
            match self.direct_url.expose().parse::<Url>() {
                Ok(u) if matches!(u.scheme(), "postgres" | "postgresql") => {}
                _ => return Err(err("database.direct_url", "must be a postgres:// URL")),
            }
        }
        if self.max_connections == 0 {
            return Err(err("database.max_connections", "must be at least 1"));
        }
        if self.acquire_timeout_s == 0 {
            return Err(err("database.acquire_timeout_s", "must be at least 1"));
        }
        Ok(())
    }
}
