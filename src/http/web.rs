//! The web app (web/, built by Vite into web/dist) served from the same port as the API.
//!
//! Release builds embed web/dist in the binary (one file still carries everything); debug builds
//! read it from disk, so `npm run build` is enough to see a change in a running test server.
//! Every path that is not the API's or the media's answers the app's `index.html` (deep links
//! and reloads work); hashed files under `/assets/` are immutable, `index.html` is revalidated
//! on every load so a deploy is seen at once.
//!
//! Pages get a strict Content-Security-Policy: scripts only from our origin (Vite emits no
//! inline script) and, when Stripe's card form is configured, Stripe.js's (with its frames and
//! API), media and workers from `blob:` (hls.js feeds MediaSource through blob URLs), no framing
//! of our pages. Text assets are gzipped once per process and kept (they are immutable).

use std::{
    borrow::Cow,
    collections::HashMap,
    io::Write,
    sync::{Arc, LazyLock, Mutex},
};

use axum::{
    body::Body,
    extract::State,
    http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use rust_embed::RustEmbed;

use super::error::ApiError;
use crate::state::AppState;

#[derive(RustEmbed)]
#[folder = "web/dist"]
#[allow_missing = true]
struct Dist;

/// Path prefixes that belong to the server, never to the app: an unknown path below them is a
/// problem+json 404, not the app's page.
const SERVER_PREFIXES: &[&str] = &[
    "/api/",
    "/hls/",
    "/whip/",
    "/whep/",
    "/objects/",
    "/.well-known/",
    "/healthz",
    "/readyz",
    "/metrics",
];

/// Origins other than ours that the app's pages use.
#[derive(Debug, Default)]
pub struct Origins {
    /// The object store's, when it is not ours (S3): chat attachments are PUT there.
    pub storage: Option<String>,
    /// Stripe.js's (script and its card frames) and Stripe's API (which Stripe.js calls),
    /// when the checkout shows Stripe's card form.
    pub stripe: Option<(String, String)>,
}

impl Origins {
    pub fn of(settings: &crate::config::Settings) -> Origins {
        let stripe = &settings.payments.stripe;
        Origins {
            storage: storage_origin(&settings.storage),
            stripe: stripe
                .card_form()
                .then(|| Some((origin(&stripe.js_url)?, origin(&stripe.api_base)?)))
                .flatten(),
        }
    }
}

/// `scheme://host[:port]` of an URL.
fn origin(url: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    Some(u.origin().ascii_serialization()).filter(|o| o != "null")
}

/// Content-Security-Policy of the app's pages (see the module comment).
pub fn csp(origins: &Origins) -> String {
    let storage = origins
        .storage
        .as_deref()
        .map(|o| format!(" {o}"))
        .unwrap_or_default();
    let (script, frame, api) = match &origins.stripe {
        // Stripe's own guidance: its script, its frames (card fields; 3-D Secure from hooks.),
        // its API for what Stripe.js sends.
        Some((js, api)) => {
            let hooks = if js == "https://js.stripe.com" {
                " https://hooks.stripe.com"
            } else {
                ""
            };
            (
                format!(" {js}"),
                format!("frame-src {js}{hooks}; "),
                format!(" {api}"),
            )
        }
        None => Default::default(),
    };
    format!(
        "default-src 'self'; script-src 'self'{script}; style-src 'self'; \
         img-src 'self' data: blob: https: http:; media-src 'self' blob:{storage}; \
         worker-src 'self' blob:; connect-src 'self'{storage}{api}; font-src 'self'; \
         {frame}object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
    )
}

/// The origin presigned storage URLs point at, when it is another one than ours.
fn storage_origin(settings: &crate::config::StorageSettings) -> Option<String> {
    use crate::config::StorageBackend;
    if settings.backend != StorageBackend::S3 {
        return None;
    }
    let s3 = &settings.s3;
    if s3.endpoint.is_empty() {
        return Some(if s3.force_path_style {
            format!("https://s3.{}.amazonaws.com", s3.region)
        } else {
            format!("https://{}.s3.{}.amazonaws.com", s3.bucket, s3.region)
        });
    }
    let url = url::Url::parse(&s3.endpoint).ok()?;
    let host = url.host_str()?;
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    Some(if s3.force_path_style {
        format!("{}://{host}{port}", url.scheme())
    } else {
        format!("{}://{}.{host}{port}", url.scheme(), s3.bucket)
    })
}

/// The fallback of the whole router: the app for page paths, a problem for everything else.
pub async fn fallback(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let csp = csp(&Origins::of(&state.settings));
    let path = uri.path();
    let is_page_method = method == Method::GET || method == Method::HEAD;
    if !is_page_method
        || SERVER_PREFIXES
            .iter()
            .any(|p| path.starts_with(p) || path == p.trim_end_matches('/'))
    {
        return ApiError::RouteNotFound(format!("{method} {path}")).into_response();
    }
    let file = path.trim_start_matches('/');
    if !file.is_empty() && !file.ends_with('/') {
        if let Some(found) = Dist::get(file) {
            let immutable = file.starts_with("assets/");
            let mut res = asset(file, found, immutable, &headers, &csp);
            res.extensions_mut().insert(Served::Asset);
            return res;
        }
        // A missing hashed asset is a 404: answering index.html would hand HTML to a <script>.
        if file.starts_with("assets/") {
            return ApiError::RouteNotFound(format!("{method} {path}")).into_response();
        }
    }
    let mut res = match Dist::get("index.html") {
        Some(index) => asset("index.html", index, false, &headers, &csp),
        None => not_built(),
    };
    res.extensions_mut().insert(Served::Page);
    res
}

/// What the fallback served, for the request metrics: app pages and assets match no route,
/// and would otherwise be counted with unknown paths as `unmatched`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Served {
    Page,
    Asset,
}

impl Served {
    /// The `route` label.
    pub(crate) fn route(self) -> std::sync::Arc<str> {
        static PAGE: std::sync::LazyLock<std::sync::Arc<str>> =
            std::sync::LazyLock::new(|| std::sync::Arc::from("web app page"));
        static ASSET: std::sync::LazyLock<std::sync::Arc<str>> =
            std::sync::LazyLock::new(|| std::sync::Arc::from("web app asset"));
        match self {
            Served::Page => PAGE.clone(),
            Served::Asset => ASSET.clone(),
        }
    }
}

fn asset(
    name: &str,
    file: rust_embed::EmbeddedFile,
    immutable: bool,
    req: &HeaderMap,
    csp: &str,
) -> Response {
    let mime = mime_guess::from_path(name).first_or_octet_stream();
    let is_html = mime.essence_str() == "text/html";
    let compressible = is_html
        || matches!(mime.type_(), mime_guess::mime::TEXT)
        || matches!(
            mime.essence_str(),
            "application/javascript" | "application/json" | "image/svg+xml"
        );
    let gzip_ok = compressible
        && req
            .get(header::ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
    let etag = format!("\"{}\"", hex::encode(&file.metadata.sha256_hash()[..12]));
    let mut headers = HeaderMap::new();
    let content_type = if mime.type_() == mime_guess::mime::TEXT
        || mime.essence_str() == "application/javascript"
    {
        format!("{}; charset=utf-8", mime.essence_str())
    } else {
        mime.essence_str().to_string()
    };
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&content_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if immutable {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        }),
    );
    if let Ok(v) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, v);
    }
    if compressible {
        headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    security_headers(&mut headers, is_html.then_some(csp));
    if req
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    let body = if gzip_ok {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        Body::from(gzipped(name, &etag, &file.data))
    } else {
        Body::from(match file.data {
            Cow::Borrowed(b) => bytes::Bytes::from_static(b),
            Cow::Owned(v) => bytes::Bytes::from(v),
        })
    };
    (StatusCode::OK, headers, body).into_response()
}

/// Headers every app response carries; pages also get the CSP.
fn security_headers(headers: &mut HeaderMap, page_csp: Option<&str>) {
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        "referrer-policy",
        HeaderValue::from_static("strict-origin-when-cross-origin"),
    );
    if let Some(csp) = page_csp {
        if let Ok(v) = HeaderValue::from_str(csp) {
            headers.insert("content-security-policy", v);
        }
        headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
        headers.insert(
            "permissions-policy",
            HeaderValue::from_static(
                "camera=(self), microphone=(self), display-capture=(self), geolocation=()",
            ),
        );
        headers.insert(
            "cross-origin-opener-policy",
            HeaderValue::from_static("same-origin"),
        );
    }
}

/// gzip of a file, computed once per (name, content) and kept: the app's files never change
/// while the process runs (release) or change with their hash (debug rebuilds).
fn gzipped(name: &str, etag: &str, data: &[u8]) -> bytes::Bytes {
    static CACHE: LazyLock<Mutex<HashMap<String, Arc<bytes::Bytes>>>> =
        LazyLock::new(Default::default);
    let key = format!("{name}{etag}");
    if let Some(hit) = CACHE.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return (**hit).clone();
    }
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let out = enc
        .write_all(data)
        .and_then(|_| enc.finish())
        .map(bytes::Bytes::from)
        .unwrap_or_else(|_| bytes::Bytes::copy_from_slice(data));
    CACHE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, Arc::new(out.clone()));
    out
}

/// Built without web/dist (a server-only build): say how to get the app instead of a blank page.
fn not_built() -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    (
        StatusCode::NOT_FOUND,
        headers,
        "The web app is not built into this server. Build it with `scripts/run` (or `cd web && npm ci && npm run build`, then rebuild the server). The API is at /api/v1 and its documentation at /api/docs.\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_csp_lets_pages_reach_an_s3_store_and_nothing_else() {
        let mut settings = crate::config::Settings::load(&crate::config::Sources {
            local: None,
            file: None,
            env: Some(vec![]),
        })
        .expect("defaults load")
        .storage;
        assert_eq!(storage_origin(&settings), None);
        settings.backend = crate::config::StorageBackend::S3;
        settings.s3.endpoint = "http://127.0.0.1:59000".into();
        settings.s3.bucket = "lessons".into();
        settings.s3.force_path_style = true;
        assert_eq!(
            storage_origin(&settings).as_deref(),
            Some("http://127.0.0.1:59000")
        );
        settings.s3.force_path_style = false;
        settings.s3.endpoint = "https://s3.example.com".into();
        assert_eq!(
            storage_origin(&settings).as_deref(),
            Some("https://lessons.s3.example.com")
        );
        let policy = csp(&Origins {
            storage: Some("https://lessons.s3.example.com".into()),
            stripe: None,
        });
        assert!(
            policy.contains("connect-src 'self' https://lessons.s3.example.com;"),
            "{policy}"
        );
        assert!(policy.contains("script-src 'self';"), "{policy}");
        assert!(!policy.contains("frame-src"), "{policy}");
        assert!(csp(&Origins::default()).contains("connect-src 'self';"));
    }

    #[test]
    fn the_csp_admits_stripe_js_only_when_the_card_form_is_configured() {
        let mut settings = crate::config::Settings::load(&crate::config::Sources {
            local: None,
            file: None,
            env: Some(vec![]),
        })
        .expect("defaults load");
        let stripe_free = csp(&Origins::of(&settings));
        assert!(!stripe_free.contains("stripe"), "{stripe_free}");
        let s = &mut settings.payments.stripe;
        s.enabled = true;
        s.publishable_key = "pk_test_1".into();
        // Without the secret key no PaymentIntent exists for the form to confirm.
        assert!(!csp(&Origins::of(&settings)).contains("stripe"));
        settings.payments.stripe.secret_key = crate::config::Secret::new("sk_test_1");
        let policy = csp(&Origins::of(&settings));
        assert!(
            policy.contains("script-src 'self' https://js.stripe.com;"),
            "{policy}"
        );
        assert!(
            policy.contains("frame-src https://js.stripe.com https://hooks.stripe.com;"),
            "{policy}"
        );
        assert!(
            policy.contains("connect-src 'self' https://api.stripe.com;"),
            "{policy}"
        );
        // A test's Stripe.js elsewhere: its origin, with its port, and no hooks.stripe.com.
        settings.payments.stripe.js_url = "http://127.0.0.1:29040/js.stripe.com/v3/".into();
        settings.payments.stripe.api_base = "http://127.0.0.1:29040".into();
        let policy = csp(&Origins::of(&settings));
        assert!(
            policy.contains("script-src 'self' http://127.0.0.1:29040;")
                && policy.contains("frame-src http://127.0.0.1:29040;"),
            "{policy}"
        );
    }
}
