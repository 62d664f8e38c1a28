//! `[auth]` and `[auth.limits]`: access tokens, sessions, and abuse limits.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::ConfigError;
use crate::domain::Role;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    pub keys_dir: PathBuf,
    pub signing_kid: String,
    pub issuer: String,
    pub audience: String,
    pub access_token_ttl_s: u64,
    pub session_idle_ttl_s: u64,
    pub session_absolute_ttl_s: u64,
    pub email_verification_ttl_s: u64,
    pub password_reset_ttl_s: u64,
    pub mfa_challenge_ttl_s: u64,
    pub require_totp_for: Vec<Role>,
    /// Password logins of an account wait for its address to be confirmed (403
    /// `email_unverified` until the mailed link is followed).
    pub require_verified_email: bool,
    pub limits: AuthLimits,
}

/// Abuse limits (Redis counters over a sliding hour).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthLimits {
    pub key_prefix: String,
    pub login_failures_per_account_hour: u64,
    pub login_failures_per_ip_hour: u64,
    pub login_free_failures: u64,
    pub login_max_delay_s: u64,
    pub mfa_failures_per_account_hour: u64,
    pub mfa_failures_per_ip_hour: u64,
    pub mfa_free_failures: u64,
    pub mfa_max_delay_s: u64,
    pub registrations_per_ip_hour: u64,
    pub mails_per_address_hour: u64,
    pub mails_per_ip_hour: u64,
}

impl AuthSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        fn err(key: &str, reason: impl Into<String>) -> ConfigError {
            ConfigError::new(key, reason)
        }
        if !(10..=3600).contains(&self.access_token_ttl_s) {
            return Err(err(
                "auth.access_token_ttl_s",
                "must be between 10 s and 1 hour",
            ));
        }
        if self.session_idle_ttl_s == 0 || self.session_idle_ttl_s > self.session_absolute_ttl_s {
            return Err(err(
                "auth.session_idle_ttl_s",
                "must be at least 1 s and at most auth.session_absolute_ttl_s",
            ));
        }
        if !(60..=1800).contains(&self.password_reset_ttl_s) {
            return Err(err(
                "auth.password_reset_ttl_s",
                "must be between 60 s and 30 minutes",
            ));
        }
        if self.email_verification_ttl_s < 60 || self.mfa_challenge_ttl_s < 30 {
            return Err(err(
                "auth.email_verification_ttl_s",
                "token lifetimes must be at least a minute",
            ));
        }
        if self.limits.login_failures_per_account_hour == 0
            || self.limits.login_failures_per_account_hour > 100
        {
            return Err(err(
                "auth.limits.login_failures_per_account_hour",
                "must be between 1 and 100",
            ));
        }
        if self.limits.mfa_failures_per_account_hour == 0
            || self.limits.mfa_failures_per_account_hour > 100
        {
            // A 6-digit code: 100 guesses an hour is already a 1-in-3,333 chance per hour.
            return Err(err(
                "auth.limits.mfa_failures_per_account_hour",
                "must be between 1 and 100",
            ));
        }
        Ok(())
    }
}
