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
    pub max_connections: u32,
    pub acquire_timeout_s: u64,
    pub migrate_on_start: bool,
}

impl DatabaseSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        fn err(key: &str, reason: impl Into<String>) -> ConfigError {
            ConfigError::new(key, reason)
        }
        match self.url.expose().parse::<Url>() {
            Ok(u) if matches!(u.scheme(), "postgres" | "postgresql") => {}
            _ => return Err(err("database.url", "must be a postgres:// URL")),
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
