//! `[oidc]`: OpenID Connect login providers.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use url::Url;

use super::{ConfigError, Secret};

/// OpenID Connect login providers.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OidcSettings {
    pub providers: Vec<OidcProviderSettings>,
    /// Seconds a sign-in may take between leaving for the provider and coming back.
    pub state_ttl_s: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OidcProviderSettings {
    /// The name in the routes: `/api/v1/auth/oidc/<name>/login`.
    pub name: String,
    /// Issuer URL; its `/.well-known/openid-configuration` is discovered.
    pub issuer: Url,
    pub client_id: String,
    #[serde(default = "empty_secret")]
    pub client_secret: Secret,
    #[serde(default, skip_serializing)]
    pub client_secret_file: Option<PathBuf>,
    /// Scopes besides `openid`.
    #[serde(default = "default_oidc_scopes")]
    pub scopes: Vec<String>,
    /// Sign in to an existing account whose (verified) email matches the provider's verified one.
    #[serde(default = "yes")]
    pub link_by_email: bool,
}

fn empty_secret() -> Secret {
    Secret::new("")
}
fn default_oidc_scopes() -> Vec<String> {
    vec!["email".into(), "profile".into()]
}
fn yes() -> bool {
    true
}

impl OidcSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        fn err(key: &str, reason: impl Into<String>) -> ConfigError {
            ConfigError::new(key, reason)
        }
        let mut names = std::collections::HashSet::new();
        for p in &self.providers {
            let ok = !p.name.is_empty()
                && p.name.len() <= 32
                && p.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !ok || !names.insert(p.name.clone()) {
                return Err(err(
                    "oidc.providers.name",
                    format!("{:?}: names are unique, 1-32 of a-z 0-9 -", p.name),
                ));
            }
            if !matches!(p.issuer.scheme(), "http" | "https") || p.client_id.is_empty() {
                return Err(err(
                    "oidc.providers",
                    format!(
                        "{}: issuer must be an http(s) URL and client_id set",
                        p.name
                    ),
                ));
            }
        }
        if !(60..=3600).contains(&self.state_ttl_s) {
            return Err(err("oidc.state_ttl_s", "must be between 60 and 3600"));
        }
        Ok(())
    }
}
