//! `[webhooks]`: outgoing webhooks to integrators (docs/webhooks.md).

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// The `[webhooks]` configuration section.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// How often each node looks for due deliveries (milliseconds).
    pub poll_interval_ms: u64,
    /// How long one POST may take before it counts as failed (seconds).
    pub timeout_s: u64,
    /// Waits between tries, in seconds: the first retry after the first value, and so on; the
    /// last value repeats until `give_up_after_s`.
    pub retry_delays_s: Vec<u64>,
    /// An event not delivered this long after it happened is marked failed (a replay from the
    /// console or the API tries again).
    pub give_up_after_s: u64,
    /// Deliveries sent at once per node.
    pub concurrency: usize,
    /// After a secret is rotated, the old one still signs (a second signature) this long.
    pub previous_secret_valid_s: u64,
    /// Events (with their deliveries and tries) are deleted this many days after they
    /// happened, once none of their deliveries is still pending.
    pub keep_days: u32,
    /// Internal networks endpoints may be in (an LMS inside the school's network, e.g.
    /// `10.20.0.0/24`): loopback, private, link-local and other internal addresses are refused
    /// otherwise (src/webhooks/targets.rs).
    #[serde(default)]
    pub allow_internal_networks: Vec<ipnet::IpNet>,
}

impl WebhookSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.poll_interval_ms == 0 {
            return Err(ConfigError::new(
                "webhooks.poll_interval_ms",
                "must be at least 1",
            ));
        }
        if !(1..=120).contains(&self.timeout_s) {
            return Err(ConfigError::new(
                "webhooks.timeout_s",
                "must be between 1 and 120",
            ));
        }
        if self.retry_delays_s.is_empty() || self.retry_delays_s.contains(&0) {
            return Err(ConfigError::new(
                "webhooks.retry_delays_s",
                "must list at least one wait, each at least 1 s",
            ));
        }
        if self.give_up_after_s == 0 {
            return Err(ConfigError::new(
                "webhooks.give_up_after_s",
                "must be at least 1",
            ));
        }
        if self.keep_days == 0 {
            return Err(ConfigError::new("webhooks.keep_days", "must be at least 1"));
        }
        if !(1..=256).contains(&self.concurrency) {
            return Err(ConfigError::new(
                "webhooks.concurrency",
                "must be between 1 and 256",
            ));
        }
        Ok(())
    }

    /// The wait before try number `attempts + 1`, after `attempts` failed tries.
    pub fn retry_delay(&self, attempts: u32) -> std::time::Duration {
        let i = (attempts.max(1) as usize - 1).min(self.retry_delays_s.len() - 1);
        std::time::Duration::from_secs(self.retry_delays_s[i])
    }
}
