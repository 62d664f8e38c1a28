//! Where a client reached this server: the base of the absolute URLs the API hands out (HLS,
//! WHIP, replay, MP4, poster, cover, presigned local objects, the RTMP ingest host).
//!
//! `http.public_url` configured: always that. Unset: each request's own origin — the `Host`
//! header (or HTTP/2 authority) with `http`, or, from a trusted proxy (`http.trusted_proxies`),
//! `X-Forwarded-Proto` and `X-Forwarded-Host` — so a server on any port or address hands out
//! URLs that reach it from where the client stands (a school's LAN address, `localhost`, a
//! proxy's name). Outside a request, or when the request's origin is unusable, the fallback is
//! `http://` + `http.listen` (an unspecified address as loopback).
//!
//! The origin lives in a task-local for the request's handler, so the URL builders keep their
//! signatures. Only URLs answered to the same client come from it: e-mail links, OAuth redirect
//! URIs and provider callbacks use the configured or listen-derived URL
//! ([`HttpSettings::default_public_url`]), never a header a client controls.

use axum::{extract::Request, http::header, middleware::Next, response::Response};
use url::Url;

use crate::config::HttpSettings;

tokio::task_local! {
    static ORIGIN: Url;
}

/// The base URL for absolute URLs answered to the current request's client (see the module).
pub fn public_url(http: &HttpSettings) -> Url {
    http.public_url
        .clone()
        .or_else(current)
        .unwrap_or_else(|| http.default_public_url())
}

/// The current request's origin, when URLs follow it (`http.public_url` unset).
pub fn current() -> Option<Url> {
    ORIGIN.try_with(Url::clone).ok()
}

/// [`public_url`] without its trailing slash, to append paths to.
pub fn public_base(http: &HttpSettings) -> String {
    public_url(http).as_str().trim_end_matches('/').to_string()
}

/// What [`scope`] needs of the settings.
#[derive(Clone)]
pub struct OriginConfig {
    /// `http.public_url` is unset: URLs follow each request's origin.
    pub derive: bool,
    pub trusted: std::sync::Arc<Vec<ipnet::IpNet>>,
}

impl OriginConfig {
    pub fn new(http: &HttpSettings) -> OriginConfig {
        OriginConfig {
            derive: http.public_url.is_none(),
            trusted: std::sync::Arc::new(http.trusted_proxies.clone()),
        }
    }
}

/// Runs the request inside its origin (when `http.public_url` is unset); part of the
/// middleware every route has (`http::guard`).
pub async fn scope(config: &OriginConfig, req: Request, next: Next) -> Response {
    if !config.derive {
        return next.run(req).await;
    }
    let trusted = &config.trusted;
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_canonical());
    let from_proxy = peer.is_some_and(|ip| trusted.iter().any(|n| n.contains(&ip)));
    match request_origin(&req, from_proxy) {
        Some(origin) => ORIGIN.scope(origin, next.run(req)).await,
        None => next.run(req).await,
    }
}

/// The origin a request was sent to, if it names a usable one.
fn request_origin(req: &Request, from_proxy: bool) -> Option<Url> {
    let first = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let forwarded_host = from_proxy.then(|| first("x-forwarded-host")).flatten();
    let host = forwarded_host
        .or_else(|| first(header::HOST.as_str()))
        .or_else(|| req.uri().authority().map(|a| a.as_str()))?;
    let scheme = match from_proxy.then(|| first("x-forwarded-proto")).flatten() {
        Some(p) if p.eq_ignore_ascii_case("https") => "https",
        _ => "http",
    };
    origin(scheme, host)
}

/// `scheme://host` when `host` is a host with an optional port and nothing else.
fn origin(scheme: &str, host: &str) -> Option<Url> {
    if host.len() > 255 || host.contains(['/', '\\', '@', '?', '#', ' ']) {
        return None;
    }
    let url = Url::parse(&format!("{scheme}://{host}/")).ok()?;
    (url.host().is_some() && url.path() == "/").then_some(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> Request {
        let mut b = axum::http::Request::builder().uri("/api/v1/courses");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(axum::body::Body::empty()).unwrap()
    }

    #[test]
    fn the_host_header_is_the_origin_and_forwarded_headers_count_only_from_proxies() {
        let r = req(&[
            ("host", "10.0.0.5:9090"),
            ("x-forwarded-host", "evil.example"),
            ("x-forwarded-proto", "https"),
        ]);
        assert_eq!(
            request_origin(&r, false).unwrap().as_str(),
            "http://10.0.0.5:9090/"
        );
        assert_eq!(
            request_origin(&r, true).unwrap().as_str(),
            "https://evil.example/"
        );
    }

    #[test]
    fn hosts_that_are_not_a_host_are_refused() {
        for bad in [
            "a/b",
            "user@host",
            "host?x",
            "host#x",
            "two words",
            "[::1",
            ":80",
            &"a".repeat(300),
        ] {
            assert!(
                request_origin(&req(&[("host", bad)]), false).is_none(),
                "{bad}"
            );
        }
        assert_eq!(
            request_origin(&req(&[("host", "[::1]:8080")]), false)
                .unwrap()
                .as_str(),
            "http://[::1]:8080/"
        );
        assert_eq!(
            request_origin(&req(&[("host", "LESSONS.example")]), false)
                .unwrap()
                .as_str(),
            "http://lessons.example/"
        );
    }
}
