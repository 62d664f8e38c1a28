//! `[playback]`: signed playback tokens.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{ConfigError, Secret};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PlaybackSettings {
    pub secret: Secret,
    #[serde(default, skip_serializing)]
    pub secret_file: Option<PathBuf>,
    pub token_ttl_s: u64,
}

impl PlaybackSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !self.secret.is_empty() && self.secret.expose().len() < 32 {
            return Err(ConfigError::new(
                "playback.secret",
                "must be at least 32 bytes (or empty for a random one)",
            ));
        }
        if !(60..=7 * 86_400).contains(&self.token_ttl_s) {
            return Err(ConfigError::new(
                "playback.token_ttl_s",
                "must be between 60 s and 7 days",
            ));
        }
        Ok(())
    }
}
