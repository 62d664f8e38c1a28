//! `[recordings]`: spool, upload, finalization and retention of recordings.

use serde::{Deserialize, Serialize};

use super::ConfigError;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RecordingSettings {
    pub max_spool_bytes: u64,
    pub min_free_bytes: u64,
    pub upload_concurrency: usize,
    pub finalize_concurrency: usize,
    /// How often ready recordings whose MP4 failed are tried again (seconds; each recording
    /// waits longer after each failure, three attempts in all).
    pub mp4_retry_s: u64,
    pub retention_days: u32,
    pub retention_interval_s: u64,
    pub replay_redirect: bool,
    pub replay_redirect_ttl_s: u64,
}

impl RecordingSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        fn err(key: &str, reason: impl Into<String>) -> ConfigError {
            ConfigError::new(key, reason)
        }
        if !(1..=64).contains(&self.upload_concurrency) {
            return Err(err(
                "recordings.upload_concurrency",
                "must be between 1 and 64",
            ));
        }
        if !(1..=64).contains(&self.finalize_concurrency) {
            return Err(err(
                "recordings.finalize_concurrency",
                "must be between 1 and 64",
            ));
        }
        if self.retention_days > 36_500 {
            return Err(err(
                "recordings.retention_days",
                "must be at most 36500 (0 = off)",
            ));
        }
        if !(10..=7 * 86_400).contains(&self.replay_redirect_ttl_s) {
            return Err(err(
                "recordings.replay_redirect_ttl_s",
                "must be between 10 and 604800",
            ));
        }
        if !(1..=86_400).contains(&self.mp4_retry_s) {
            return Err(err("recordings.mp4_retry_s", "must be between 1 and 86400"));
        }
        if self.retention_interval_s == 0 {
            return Err(err("recordings.retention_interval_s", "must be at least 1"));
        }
        Ok(())
    }
}
