//! `[jitsi]`: meeting tokens for Jitsi Meet.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use url::Url;

use super::{ConfigError, Secret};

/// Jitsi Meet integration (meeting lessons): see `docs/courses.md`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JitsiSettings {
    /// Where meetings are held: meeting URLs are `<base_url>/<room>?jwt=...`.
    pub base_url: Url,
    /// `iss` of meeting tokens: prosody's `app_id` (or one of `asap_accepted_issuers`).
    pub app_id: String,
    /// HS256 key shared with prosody (`app_secret`).
    pub app_secret: Secret,
    #[serde(default, skip_serializing)]
    pub app_secret_file: Option<PathBuf>,
    /// `aud` of meeting tokens (one of prosody's `asap_accepted_audiences`).
    pub audience: String,
    /// `sub` of meeting tokens: the Jitsi domain, or the tenant.
    pub subject: String,
    pub algorithm: JitsiAlgorithm,
    /// RS256: the PKCS#8 PEM private key (generated there when missing).
    pub rs256_key_file: PathBuf,
    /// RS256: the `kid` header; its public key is served at `<asap_key_path>/<sha256(kid)>.pem`.
    pub rs256_kid: String,
    /// Path prefix under which the public key is served (Jitsi's `asap_key_server`).
    pub asap_key_path: String,
    /// Lifetime of a meeting token, in seconds.
    pub token_ttl_s: u64,
    /// `nbf` is this many seconds in the past (prosody allows no clock skew).
    pub nbf_skew_s: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum JitsiAlgorithm {
    #[serde(rename = "HS256")]
    Hs256,
    #[serde(rename = "RS256")]
    Rs256,
}

impl JitsiSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !self.asap_key_path.starts_with('/')
            || self.asap_key_path.ends_with('/')
            || self.asap_key_path.contains(['{', '}'])
        {
            return Err(ConfigError::new(
                "jitsi.asap_key_path",
                "must start with '/', not end with '/' (e.g. /jitsi/asap)",
            ));
        }
        if !(10..=86_400).contains(&self.token_ttl_s) {
            return Err(ConfigError::new(
                "jitsi.token_ttl_s",
                "must be between 10 and 86400",
            ));
        }
        Ok(())
    }
}
