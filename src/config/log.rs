//! `[log]`: log format and filter, and the short metric history the ops console charts.

use serde::{Deserialize, Serialize};

use super::ConfigError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
    /// Seconds between two samples of the metric history (src/metric_history.rs).
    pub metric_history_interval_s: u64,
    /// Samples kept (360 × 10 s: the last hour).
    pub metric_history_samples: usize,
}

impl LogSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        tracing_subscriber::EnvFilter::try_new(&self.level)
            .map_err(|e| ConfigError::new("log.level", format!("not a valid filter: {e}")))?;
        if !(1..=3600).contains(&self.metric_history_interval_s) {
            return Err(ConfigError::new(
                "log.metric_history_interval_s",
                "must be 1 to 3600",
            ));
        }
        if !(2..=100_000).contains(&self.metric_history_samples) {
            return Err(ConfigError::new(
                "log.metric_history_samples",
                "must be 2 to 100000",
            ));
        }
        Ok(())
    }
}
