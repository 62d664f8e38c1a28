//! `[http]`: the HTTP listener, its connection limits and timeouts, body limits, CORS and
//! trusted proxies.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use url::Url;

use super::ConfigError;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    pub listen: SocketAddr,
    /// Base URL clients use to reach this server; `None` (empty in the file): each request's
    /// own origin (src/http/origin.rs), else [`HttpSettings::default_public_url`].
    #[serde(deserialize_with = "empty_as_none", default)]
    pub public_url: Option<Url>,
    pub body_limit_bytes: usize,
    pub upload_limit_bytes: u64,
    pub shutdown_grace_s: u64,
    /// Connections open at once (WebSockets included); past it a connection gets a 503.
    pub max_connections: usize,
    /// Time to send a whole request head, from its first byte (or the accept).
    pub header_read_timeout_s: f64,
    /// Time a connection with nothing in flight may stay idle.
    pub keep_alive_timeout_s: f64,
    /// Longest wait for the next chunk of a request body.
    pub body_read_timeout_s: f64,
    pub cors_allowed_origins: Vec<String>,
    /// Reverse proxies whose `X-Forwarded-For` is believed (addresses or CIDR ranges). The
    /// client's address is the right-most hop not in this list; empty: the TCP peer, always.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// `Strict-Transport-Security: max-age=…` on every answer (0: not sent). Only with an
    /// https `public_url`: the site must be served over TLS (by a proxy in front, usually).
    pub hsts_max_age_s: u64,
}

/// `""` (and an absent key) as `None`; anything else must be a URL.
pub(super) fn empty_as_none<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Url>, D::Error> {
    let s = String::deserialize(d)?;
    if s.trim().is_empty() {
        return Ok(None);
    }
    Url::parse(s.trim())
        .map(Some)
        .map_err(|e| serde::de::Error::custom(format!("{s:?} is not a URL: {e}")))
}

impl HttpSettings {
    /// The configured public URL, else `http://` + `listen` (an unspecified address — the
    /// default 0.0.0.0 — as loopback): for what is built outside a request (e-mail links, OAuth
    /// redirect URIs, provider callbacks to this server).
    pub fn default_public_url(&self) -> Url {
        if let Some(url) = &self.public_url {
            return url.clone();
        }
        Url::parse(&format!("http://{}/", self.local_addr()))
            .expect("an address is a valid URL host")
    }

    /// `listen` as this machine reaches it: an unspecified address (0.0.0.0, ::) as loopback.
    pub fn local_addr(&self) -> SocketAddr {
        let ip = match self.listen.ip() {
            std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
                std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
            }
            std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
                std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
            }
            ip => ip,
        };
        SocketAddr::new(ip, self.listen.port())
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        fn err(key: &str, reason: impl Into<String>) -> ConfigError {
            ConfigError::new(key, reason)
        }
        if let Some(url) = &self.public_url
            && !matches!(url.scheme(), "http" | "https")
        {
            return Err(err("http.public_url", "must be an http:// or https:// URL"));
        }
        if self.hsts_max_age_s > 0 && self.public_url.as_ref().map(Url::scheme) != Some("https") {
            return Err(err(
                "http.hsts_max_age_s",
                "needs an https:// http.public_url (HSTS tells browsers to use TLS only)",
            ));
        }
        if self.body_limit_bytes == 0 {
            return Err(err("http.body_limit_bytes", "must be greater than 0"));
        }
        if self.upload_limit_bytes == 0 {
            return Err(err("http.upload_limit_bytes", "must be greater than 0"));
        }
        if self.max_connections == 0 {
            return Err(err("http.max_connections", "must be greater than 0"));
        }
        for (key, v) in [
            ("http.header_read_timeout_s", self.header_read_timeout_s),
            ("http.keep_alive_timeout_s", self.keep_alive_timeout_s),
            ("http.body_read_timeout_s", self.body_read_timeout_s),
        ] {
            if !(v > 0.0 && v <= 3600.0) {
                return Err(err(key, "must be more than 0 and at most 3600 seconds"));
            }
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
