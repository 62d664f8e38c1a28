//! The browser session mode of `/auth/*`: the refresh token travels in a cookie scripts cannot
//! read, the access token stays in the page's memory.
//!
//! - `wm_refresh`: the refresh token; `HttpOnly; Secure; SameSite=Strict; Path=/api/v1/auth/refresh`
//!   — sent with the refresh call and nothing else, never readable by a script (an XSS cannot
//!   steal a long-lived credential).
//! - `wm_csrf`: a random value the page *can* read (`Path=/`, not HttpOnly) and must echo in the
//!   `X-CSRF-Token` header of a cookie-based refresh (double submit). SameSite=Strict already
//!   keeps other sites' requests from carrying the cookie; the header is the second lock, for
//!   browsers or proxies that get SameSite wrong.
//!
//! `Secure` is always set: browsers accept it on `http://localhost` and `http://127.0.0.1`;
//! any other host needs HTTPS for the browser mode (documented in docs/web.md).

use axum::http::{HeaderMap, HeaderValue, header};
use subtle::ConstantTimeEq;

pub const REFRESH_COOKIE: &str = "wm_refresh";
pub const CSRF_COOKIE: &str = "wm_csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";
const REFRESH_PATH: &str = "/api/v1/auth/refresh";

/// `Set-Cookie` values that start (or rotate) a browser session.
pub fn set(refresh_token: &str, csrf: &str, max_age_s: u64) -> [HeaderValue; 2] {
    [
        cookie(REFRESH_COOKIE, refresh_token, REFRESH_PATH, true, max_age_s),
        cookie(CSRF_COOKIE, csrf, "/", false, max_age_s),
    ]
}

/// `Set-Cookie` values that end a browser session (after logout or a refused refresh).
pub fn clear() -> [HeaderValue; 2] {
    [
        cookie(REFRESH_COOKIE, "", REFRESH_PATH, true, 0),
        cookie(CSRF_COOKIE, "", "/", false, 0),
    ]
}

fn cookie(name: &str, value: &str, path: &str, http_only: bool, max_age_s: u64) -> HeaderValue {
    let http_only = if http_only { "; HttpOnly" } else { "" };
    // Values are ours (URL-safe tokens): nothing to escape.
    HeaderValue::from_str(&format!(
        "{name}={value}; Path={path}; Max-Age={max_age_s}; Secure; SameSite=Strict{http_only}"
    ))
    .expect("cookie values are URL-safe tokens")
}

/// Append `Set-Cookie` headers to a response's headers.
pub fn append(headers: &mut HeaderMap, cookies: [HeaderValue; 2]) {
    for c in cookies {
        headers.append(header::SET_COOKIE, c);
    }
}

/// A cookie's value from the request, if present.
pub fn read<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// The refresh token of a cookie-based refresh, once the CSRF header matches the CSRF cookie.
pub enum CookieRefresh<'a> {
    Token(&'a str),
    /// No refresh cookie: not signed in (or the cookie expired).
    NoCookie,
    /// The header is missing or differs from the cookie.
    CsrfMismatch,
}

pub fn refresh_token(headers: &HeaderMap) -> CookieRefresh<'_> {
    let Some(token) = read(headers, REFRESH_COOKIE) else {
        return CookieRefresh::NoCookie;
    };
    let cookie = read(headers, CSRF_COOKIE).unwrap_or("");
    let sent = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if cookie.is_empty() || !bool::from(cookie.as_bytes().ct_eq(sent.as_bytes())) {
        return CookieRefresh::CsrfMismatch;
    }
    CookieRefresh::Token(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(cookie: &str, csrf: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_str(cookie).unwrap());
        if let Some(c) = csrf {
            h.insert(CSRF_HEADER, HeaderValue::from_str(c).unwrap());
        }
        h
    }

    #[test]
    fn refresh_cookie_is_http_only_strict_and_scoped_to_the_refresh_route() {
        let [refresh, csrf] = set("rt", "c", 60);
        let refresh = refresh.to_str().unwrap();
        assert!(refresh.starts_with("wm_refresh=rt; Path=/api/v1/auth/refresh;"));
        assert!(refresh.contains("HttpOnly") && refresh.contains("Secure"));
        assert!(refresh.contains("SameSite=Strict"));
        assert!(!csrf.to_str().unwrap().contains("HttpOnly"));
    }

    #[test]
    fn a_cookie_refresh_needs_the_matching_csrf_header() {
        let ok = req("a=1; wm_refresh=tok; wm_csrf=abc", Some("abc"));
        assert!(matches!(refresh_token(&ok), CookieRefresh::Token("tok")));
        let missing = req("wm_refresh=tok; wm_csrf=abc", None);
        assert!(matches!(
            refresh_token(&missing),
            CookieRefresh::CsrfMismatch
        ));
        let wrong = req("wm_refresh=tok; wm_csrf=abc", Some("abd"));
        assert!(matches!(refresh_token(&wrong), CookieRefresh::CsrfMismatch));
        let no_csrf_cookie = req("wm_refresh=tok", Some(""));
        assert!(matches!(
            refresh_token(&no_csrf_cookie),
            CookieRefresh::CsrfMismatch
        ));
        assert!(matches!(
            refresh_token(&req("x=1", None)),
            CookieRefresh::NoCookie
        ));
    }
}
