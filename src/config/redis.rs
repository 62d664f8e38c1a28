//! `[redis]`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use url::Url;

use super::{ConfigError, Secret};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    pub url: Secret,
    #[serde(default, skip_serializing)]
    pub url_file: Option<PathBuf>,
    pub timeout_s: u64,
}

impl RedisSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        match self.url.expose().parse::<Url>() {
            Ok(u) if matches!(u.scheme(), "redis" | "rediss" | "unix" | "redis+unix") => {}
            _ => {
                return Err(ConfigError::new(
                    "redis.url",
                    "must be a redis://, rediss:// or unix:// URL",
                ));
            }
        }
        if self.timeout_s == 0 {
            return Err(ConfigError::new("redis.timeout_s", "must be at least 1"));
        }
        Ok(())
    }
}
