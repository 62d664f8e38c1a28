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
    /// `url` names a node of a Redis Cluster (the client learns the others from it).
    #[serde(default)]
    pub cluster: bool,
    /// More cluster nodes to start from when the one in `url` does not answer; without
    /// credentials (they take `url`'s).
    #[serde(default)]
    pub cluster_seeds: Vec<String>,
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
        for (i, seed) in self.cluster_seeds.iter().enumerate() {
            match seed.parse::<Url>() {
                Ok(u) if matches!(u.scheme(), "redis" | "rediss") => {
                    // Not a secret field (it is shown and logged): credentials go in `url`.
                    if u.password().is_some() || !u.username().is_empty() {
                        return Err(ConfigError::new(
                            "redis.cluster_seeds",
                            format!(
                                "entry {} carries credentials: put them in redis.url (a secret), seeds take them from it",
                                i + 1
                            ),
                        ));
                    }
                }
                _ => {
                    return Err(ConfigError::new(
                        "redis.cluster_seeds",
                        format!("entry {} must be a redis:// or rediss:// URL", i + 1),
                    ));
                }
            }
        }
        if !self.cluster_seeds.is_empty() && !self.cluster {
            return Err(ConfigError::new(
                "redis.cluster_seeds",
                "only applies with redis.cluster = true",
            ));
        }
        if self.cluster && !self.url.expose().starts_with("redis") {
            return Err(ConfigError::new(
                "redis.url",
                "a Redis Cluster is reached over redis:// or rediss://",
            ));
        }
        if self.timeout_s == 0 {
            return Err(ConfigError::new("redis.timeout_s", "must be at least 1"));
        }
        Ok(())
    }
}

impl RedisSettings {
    /// The cluster's seed nodes: `url` first, then `cluster_seeds` with `url`'s credentials.
    pub fn seed_urls(&self) -> Vec<String> {
        let first = self.url.expose().to_string();
        let creds = first.parse::<Url>().ok();
        let mut urls = vec![first];
        for seed in &self.cluster_seeds {
            let mut u = match seed.parse::<Url>() {
                Ok(u) => u,
                Err(_) => continue,
            };
            if let Some(c) = &creds {
                let _ = u.set_username(c.username());
                let _ = u.set_password(c.password());
            }
            urls.push(u.to_string());
        }
        urls
    }
}
