//! `[rtmp]`: the RTMP ingest listener.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::ConfigError;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RtmpSettings {
    pub listen: SocketAddr,
    pub max_message_bytes: usize,
    pub idle_timeout_s: u64,
    pub max_connections: usize,
}

impl RtmpSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(64 * 1024..=64 * 1024 * 1024).contains(&self.max_message_bytes) {
            return Err(ConfigError::new(
                "rtmp.max_message_bytes",
                "must be between 64 KiB and 64 MiB",
            ));
        }
        if self.idle_timeout_s == 0 || self.max_connections == 0 {
            return Err(ConfigError::new(
                "rtmp.idle_timeout_s",
                "timeouts and connection limits must be at least 1",
            ));
        }
        Ok(())
    }
}
