//! `[live]`: the live HLS packager.

use serde::{Deserialize, Serialize};

use super::ConfigError;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LiveSettings {
    pub segment_duration_s: f64,
    pub window_segments: usize,
    pub frame_queue: usize,
}

impl LiveSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(0.5..=30.0).contains(&self.segment_duration_s) {
            return Err(ConfigError::new(
                "live.segment_duration_s",
                "must be between 0.5 and 30 seconds",
            ));
        }
        if !(2..=100).contains(&self.window_segments) {
            return Err(ConfigError::new(
                "live.window_segments",
                "must be between 2 and 100",
            ));
        }
        if !(16..=100_000).contains(&self.frame_queue) {
            return Err(ConfigError::new(
                "live.frame_queue",
                "must be between 16 and 100000",
            ));
        }
        Ok(())
    }
}
