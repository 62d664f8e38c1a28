//! `[email]`: the SMTP relay and the outbox's retry policy.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use url::Url;

use super::{ConfigError, Secret};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain SMTP (a relay on localhost or a test server).
    None,
    /// STARTTLS upgrade, required.
    Starttls,
    /// Implicit TLS (SMTPS, port 465).
    Tls,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EmailSettings {
    pub from: String,
    pub app_url: Url,
    pub smtp_host: String,
    pub smtp_port: u16,
    pub tls: SmtpTls,
    pub username: String,
    pub password: Secret,
    #[serde(default, skip_serializing)]
    pub password_file: Option<PathBuf>,
    pub timeout_s: u64,
    pub poll_interval_ms: u64,
    pub retry_base_s: u64,
    pub retry_max_s: u64,
    pub max_attempts: i32,
}

impl EmailSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        fn err(key: &str, reason: impl Into<String>) -> ConfigError {
            ConfigError::new(key, reason)
        }
        if !matches!(self.app_url.scheme(), "http" | "https") {
            return Err(err("email.app_url", "must be an http:// or https:// URL"));
        }
        if self.from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(err(
                "email.from",
                "must be an address like \"WeMaster <no-reply@example.com>\"",
            ));
        }
        if self.smtp_host.is_empty() || self.smtp_port == 0 {
            return Err(err("email.smtp_host", "host and port must be set"));
        }
        if self.timeout_s == 0 || self.poll_interval_ms == 0 {
            return Err(err("email.timeout_s", "must be at least 1"));
        }
        if self.retry_base_s == 0 || self.retry_max_s < self.retry_base_s {
            return Err(err(
                "email.retry_base_s",
                "must be at least 1 and at most email.retry_max_s",
            ));
        }
        if self.max_attempts < 1 {
            return Err(err("email.max_attempts", "must be at least 1"));
        }
        Ok(())
    }
}
