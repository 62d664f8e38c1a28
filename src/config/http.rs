//! `[http]`: the HTTP listener, body limits, CORS and trusted proxies.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use url::Url;

use super::ConfigError;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    pub listen: SocketAddr,
    pub public_url: Url,
    pub body_limit_bytes: usize,
    pub upload_limit_bytes: u64,
    pub shutdown_grace_s: u64,
    pub cors_allowed_origins: Vec<String>,
    /// Reverse proxies whose `X-Forwarded-For` is believed (addresses or CIDR ranges). The
    /// client's address is the right-most hop not in this list; empty: the TCP peer, always.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl HttpSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        fn err(key: &str, reason: impl Into<String>) -> ConfigError {
            ConfigError::new(key, reason)
        }
        if !matches!(self.public_url.scheme(), "http" | "https") {
            return Err(err("http.public_url", "must be an http:// or https:// URL"));
        }
        if self.body_limit_bytes == 0 {
            return Err(err("http.body_limit_bytes", "must be greater than 0"));
        }
        if self.upload_limit_bytes == 0 {
            return Err(err("http.upload_limit_bytes", "must be greater than 0"));
        }
        for origin in &self.cors_allowed_origins {
            if origin != "*" && !origin.parse::<Url>().is_ok_and(|u| u.origin().is_tuple()) {
                return Err(err(
                    "http.cors_allowed_origins",
                    format!("{origin:?} is not \"*\" nor an origin like https://example.com"),
                ));
            }
        }
        Ok(())
    }
}
