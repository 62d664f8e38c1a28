//! The HTTP surface: one router per domain merged here, the OpenAPI document generated from the
//! handlers, and the middleware every request passes through.
//!
//! Middleware, outermost first: [`Edge`] (`nosniff`, HSTS, the WHIP/WHEP discovery answer to
//! `OPTIONS`) → CORS (requests with `Origin`, and preflights) → panic catcher (500 problem) →
//! body limit → routing → `observe` (request id, tracing span, access log, metrics) →
//! [`guard`]: early 413 (a `Content-Length` over the route's limit, before the body is read), NUL
//! refusal (400 for `%00` in the path or query, see [`extract::nul_in_uri`]) and the request's
//! origin ([`origin`]) → route. Connection limits and timeouts are in [`server`]. Unknown
//! routes answer 404 and wrong methods 405, both as problem+json, like every error.
//!
//! Why the layers sit where they do: a `Router::layer` wraps every route in its own boxed
//! service, and a request clones and drops its route's whole stack — a box per layer. Layers
//! that need no routing (the first four) wrap the router once instead, as plain services that
//! call inward without cloning; the two that need the matched route stay on the routes, as one
//! middleware each. That took two fifths off a playlist poll's instructions (docs/benchmarks.md).

pub mod admin;
pub mod auth;
pub mod chat;
pub mod courses;
pub mod error;
pub mod extract;
pub mod health;
pub mod hls;
pub mod interaction;
pub mod live;
pub mod me;
pub mod meetings;
pub mod objects;
pub mod oidc;
pub mod origin;
pub mod payments;
pub mod problem_doc;
pub mod range;
pub mod recordings;
pub mod server;
pub mod session_cookie;
pub mod setup;
pub mod system;
pub mod upload;
pub mod users;
pub mod web;
pub mod webhooks;
pub mod wellknown;
pub mod whep;
pub mod whip;

use std::{
    collections::HashMap,
    sync::{Arc, LazyLock, RwLock},
    time::Instant,
};

use axum::{
    Router,
    extract::{MatchedPath, Request},
    http::{HeaderName, HeaderValue, Method, StatusCode},
    middleware::{self, Next},
    response::Response,
};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tracing::Instrument;
use utoipa::{
    Modify, OpenApi,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

use crate::{config::HttpSettings, state::AppState};
use error::{ApiError, problem_response};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

#[derive(OpenApi)]
#[openapi(
    info(title = "WeMaster API", description = "Live teaching: live streams, recordings, courses, chat and payments."),
    modifiers(&BearerAuth),
    components(schemas(error::Problem)),
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The `/api/v1` routers with their OpenAPI paths.
fn api_v1() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(auth::router())
        .merge(me::router())
        .merge(oidc::router())
        .merge(admin::router())
        .merge(live::router())
        .merge(recordings::router())
        .merge(courses::router())
        .merge(meetings::router())
        .merge(payments::router())
        .merge(chat::router())
        .merge(interaction::router())
        .merge(users::router())
        .merge(setup::router())
        .merge(system::router())
        .merge(webhooks::router())
}

/// The OpenAPI document (also served at `/api/v1/openapi.json`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    documented_routes().2
}

/// The routes the OpenAPI document describes, and the document, its error responses filled in
/// ([`problem_doc`]: applied after the routers are merged, since `#[openapi(modifiers)]` run
/// before the paths are there).
/// WHEP's routes apart: they go behind the forwarding to the node holding a stream
/// ([`hls::elsewhere`]), which needs the state.
fn documented_routes() -> (Router<AppState>, Router<AppState>, utoipa::openapi::OpenApi) {
    let (api, mut doc) = OpenApiRouter::<AppState>::with_openapi(ApiDoc::openapi())
        .nest("/api/v1", api_v1())
        .merge(wellknown::router())
        .merge(whip::router())
        .split_for_parts();
    let (whep, whep_doc) = whep::router().split_for_parts();
    doc.merge(whep_doc);
    problem_doc::ProblemResponses.modify(&mut doc);
    (api, whep, doc)
}

/// The whole HTTP application (see the module for the order of its layers).
pub fn router(
    state: AppState,
) -> impl tower::Service<
    Request,
    Response = Response,
    Error = std::convert::Infallible,
    Future = impl Send + 'static,
> + Clone
+ Send
+ Sync
+ 'static {
    let settings = &state.settings.http;
    let outer = tower::ServiceBuilder::new()
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response as fn(Box<dyn std::any::Any + Send + 'static>) -> Response,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(
            settings.body_limit_bytes,
        ));
    let guard_state = Guard {
        origin: origin::OriginConfig::new(settings),
        body_limit: settings.body_limit_bytes,
    };
    Edge {
        hsts: hsts(settings),
        cors_vary: cors_vary(),
        cors: tower::Layer::layer(
            &cors(settings),
            outer.service(routes(state.clone(), guard_state)),
        ),
    }
}

/// The routes with the layers that need the matched route: `observe` and [`guard`].
fn routes(state: AppState, guard_state: Guard) -> Router {
    let settings = &state.settings.http;
    let (api, whep, doc) = documented_routes();
    Router::new()
        .merge(api)
        .merge(whep.route_layer(middleware::from_fn_with_state(
            state.clone(),
            hls::elsewhere,
        )))
        .merge(SwaggerUi::new("/api/docs").url("/api/v1/openapi.json", doc))
        .merge(health::router())
        .merge(hls::router(&state))
        .merge(recordings::replay_router())
        .merge(meetings::asap_router(&state.settings.jitsi.asap_key_path))
        .merge(objects::router(settings.upload_limit_bytes))
        .fallback(web::fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(guard_state, guard))
        .layer(middleware::from_fn(observe))
        .with_state(state)
}

/// What [`guard`] needs of the settings.
#[derive(Clone)]
struct Guard {
    origin: origin::OriginConfig,
    body_limit: usize,
}

/// Middleware on every route, inside `observe` (so its refusals are logged and counted): an
/// early 413 ([`announced_oversize`]), 400 for a NUL in the URI ([`extract::nul_in_uri`]), then
/// the route runs inside the request's origin ([`origin::scope`]). One middleware rather than
/// three: each route layer costs a boxed clone per request.
async fn guard(
    axum::extract::State(g): axum::extract::State<Guard>,
    req: Request,
    next: Next,
) -> Response {
    if let Some(refused) = announced_oversize(g.body_limit, &req) {
        return refused;
    }
    if let Some(refused) = extract::nul_in_uri(&req) {
        return axum::response::IntoResponse::into_response(refused);
    }
    origin::scope(&g.origin, req, next).await
}

/// The outermost layer: headers of every answer (`X-Content-Type-Options: nosniff`, HSTS when
/// set), the WHIP/WHEP discovery answer to an `OPTIONS` ([`whip::discovery`]) and CORS. A plain
/// service: `from_fn`/`map_response` clone the whole stack below them on every request.
#[derive(Clone)]
pub struct Edge<S> {
    hsts: Option<HeaderValue>,
    /// [`cors_vary`], built once.
    cors_vary: HeaderValue,
    cors: tower_http::cors::Cors<S>,
}

/// What CORS says of a request that is not a browser's cross-origin one: only that the answer
/// depends on those headers, so a shared cache keeps the two kinds apart — the `Vary` the CORS
/// layer sends on its own answers, from tower-http's own list.
fn cors_vary() -> HeaderValue {
    let names: Vec<_> = tower_http::cors::preflight_request_headers().collect();
    HeaderValue::from_str(
        &names
            .iter()
            .map(HeaderName::as_str)
            .collect::<Vec<_>>()
            .join(", "),
    )
    .expect("header names are valid header value text")
}

impl<S, B> tower::Service<Request> for Edge<S>
where
    S: tower::Service<
            Request,
            Response = axum::http::Response<B>,
            Error = std::convert::Infallible,
        >,
    S::Future: Send + 'static,
    B: axum::body::HttpBody<Data = bytes::Bytes> + Default + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Response, std::convert::Infallible>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.cors.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let discovery = whip::discovery(&req);
        let hsts = self.hsts.clone();
        // Only a browser's cross-origin request or preflight carries `Origin`. The rest — players
        // polling playlists, publishers, same-origin pages — skip the CORS layer, which builds a
        // header map per answer (a sixth of a playlist poll's instructions; docs/benchmarks.md);
        // they get its `Vary` alone. An `OPTIONS` always goes through it, as before.
        let cross_origin = req.headers().contains_key(axum::http::header::ORIGIN)
            || req.method() == Method::OPTIONS;
        let vary = (!cross_origin).then(|| self.cors_vary.clone());
        let response = if cross_origin {
            futures::future::Either::Left(self.cors.call(req))
        } else {
            futures::future::Either::Right(self.cors.get_mut().call(req))
        };
        Box::pin(async move {
            let mut res = response.await?.map(axum::body::Body::new);
            if let Some(vary) = vary {
                res.headers_mut().append(axum::http::header::VARY, vary);
            }
            whip::answer_discovery(discovery, &mut res);
            transport_headers(hsts, &mut res);
            Ok(res)
        })
    }
}

/// The `Strict-Transport-Security` value when configured.
fn hsts(settings: &HttpSettings) -> Option<HeaderValue> {
    (settings.hsts_max_age_s > 0)
        .then(|| HeaderValue::from_str(&format!("max-age={}", settings.hsts_max_age_s)).ok())
        .flatten()
}

/// Headers of every answer: `X-Content-Type-Options: nosniff` (JSON, playlists, segments and
/// objects all declare their type; a browser must not guess another), and HSTS when set.
fn transport_headers(hsts: Option<HeaderValue>, res: &mut Response) {
    let h = res.headers_mut();
    h.entry(axum::http::header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(HeaderValue::from_static("nosniff"));
    if let Some(v) = hsts {
        h.insert(axum::http::header::STRICT_TRANSPORT_SECURITY, v);
    }
}

/// Routes that read their body themselves under a cap of their own, and refuse a
/// `Content-Length` over it before reading (`upload::read_capped`, `RequestBodyLimitLayer`).
const OWN_BODY_LIMIT: &[&str] = &[
    "/objects/{*key}",
    "/api/v1/me/avatar",
    "/api/v1/courses/{id}/cover",
];

/// 413 at once when `Content-Length` announces more than the route takes
/// (`http.body_limit_bytes`), instead of waiting for a body that will be refused anyway — or
/// that never comes. Bodies without a length are still capped as they are read.
fn announced_oversize(limit: usize, req: &Request) -> Option<Response> {
    let announced = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let own_limit = req
        .extensions()
        .get::<MatchedPath>()
        .is_some_and(|p| OWN_BODY_LIMIT.contains(&p.as_str()));
    if announced.is_some_and(|n| n > limit as u64) && !own_limit {
        let mut resp = axum::response::IntoResponse::into_response(ApiError::PayloadTooLarge);
        // The body was not read: the connection cannot carry another request.
        resp.headers_mut().insert(
            axum::http::header::CONNECTION,
            HeaderValue::from_static("close"),
        );
        return Some(resp);
    }
    None
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("handler panicked");
    problem_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "an internal error occurred".into(),
        None,
    )
}

/// tower-http's CORS layer; [`Edge`] sends only cross-origin requests through it.
fn cors(settings: &HttpSettings) -> CorsLayer {
    let origins = &settings.cors_allowed_origins;
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        let list: Vec<HeaderValue> = origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o.trim_end_matches('/')).ok())
            .collect();
        // WHIP is published from pages on any origin; its credential is the stream key in a
        // header (never a cookie), so its routes are open to every origin. WHEP too: a
        // public stream is public (as its HLS is), a private one needs the signed token.
        AllowOrigin::predicate(move |origin, parts| {
            let path = parts.uri.path();
            path.starts_with("/whip/") || path.starts_with("/whep/") || list.contains(origin)
        })
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers(tower_http::cors::Any)
        .expose_headers([
            REQUEST_ID,
            axum::http::header::LOCATION,
            axum::http::header::ETAG,
            axum::http::header::CONTENT_RANGE,
            axum::http::header::CONTENT_LENGTH,
            axum::http::header::LINK,
            axum::http::header::RETRY_AFTER,
        ])
        .max_age(std::time::Duration::from_secs(3600))
}

/// A request id we accept from a client: short and printable, so it cannot forge log lines.
fn acceptable_request_id(v: &HeaderValue) -> Option<&str> {
    let s = v.to_str().ok()?;
    (1..=128).contains(&s.len()).then_some(())?;
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
        .then_some(s)
}

/// Routes whose successful hits are access-logged at `debug` instead of `info`: every HLS
/// viewer fetches a playlist every few seconds and a segment per target duration, so at `info`
/// they would be nearly all of the log and a measurable share of the server's CPU (one JSON
/// line formatted and written per request). Their errors (status >= 400) stay at `info`.
fn quiet_route(route: &str) -> bool {
    route.starts_with("/hls/")
}

/// Prometheus handles for one (method, route, status): registered once, then a request only
/// increments atomics instead of building and looking up its label set in the recorder.
#[derive(Clone)]
struct HttpMetrics {
    requests: metrics::Counter,
    duration: metrics::Histogram,
}

type MetricsKey = (Method, Arc<str>, u16);

static HTTP_METRICS: LazyLock<RwLock<HashMap<MetricsKey, HttpMetrics>>> =
    LazyLock::new(Default::default);

/// Bound on cached handle sets; past it (never with bounded routes and statuses) requests
/// fall back to registering their labels each time.
const HTTP_METRICS_MAX: usize = 4096;

fn http_metrics(method: &Method, route: &Arc<str>, status: u16) -> HttpMetrics {
    let key = (method.clone(), route.clone(), status);
    if let Some(m) = HTTP_METRICS.read().ok().and_then(|c| c.get(&key).cloned()) {
        return m;
    }
    let labels = [
        ("method", method.to_string()),
        ("route", route.to_string()),
        ("status", status.to_string()),
    ];
    let m = HttpMetrics {
        requests: metrics::counter!("http_requests_total", &labels),
        duration: metrics::histogram!("http_request_duration_seconds", &labels),
    };
    if let Ok(mut c) = HTTP_METRICS.write() {
        if c.len() < HTTP_METRICS_MAX {
            c.insert(key, m.clone());
        }
    }
    m
}

static UNMATCHED: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("unmatched"));

/// A new request id: a UUID v7 (time-ordered) whose random part comes from the thread's
/// userspace CSPRNG. `Uuid::now_v7` asks the kernel (`getrandom`) twice per id, which was two
/// syscalls on every playlist poll; an id only has to be unique, not secret.
fn new_request_id() -> HeaderValue {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let id = uuid::Builder::from_unix_timestamp_millis(millis, &rand::random()).into_uuid();
    let mut buf = uuid::Uuid::encode_buffer();
    HeaderValue::from_str(id.hyphenated().encode_lower(&mut buf))
        .unwrap_or_else(|_| HeaderValue::from_static("-"))
}

/// Request id, span, access log and metrics for every request.
async fn observe(mut req: Request, next: Next) -> Response {
    let start = Instant::now();
    let request_id = match req.headers().get(&REQUEST_ID) {
        Some(v) if acceptable_request_id(v).is_some() => v.clone(),
        _ => {
            let v = new_request_id();
            req.headers_mut().insert(REQUEST_ID, v.clone());
            v
        }
    };
    // Checked printable ASCII above (or generated).
    let id = request_id.to_str().unwrap_or_default();
    // The route template, not the raw path: bounded label cardinality.
    let route: Arc<str> = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| Arc::from(p.as_str()))
        .unwrap_or_else(|| UNMATCHED.clone());
    let method = req.method().clone();
    let quiet = quiet_route(&route);
    // HLS hits (players poll playlists continuously) get their span only when `debug` is on:
    // building a span formats its fields for the JSON log up front, which was a fifth of a
    // playlist request's CPU. Their errors are logged below with the same fields.
    let span = if quiet {
        tracing::debug_span!("request", request_id = %id, method = %method, route = %route)
    } else {
        tracing::info_span!("request", request_id = %id, method = %method, route = %route)
    };
    let mut response = next.run(req).instrument(span.clone()).await;
    // The web app's pages and assets are served by the fallback: label them as such.
    let route = match response.extensions().get::<web::Served>() {
        Some(served) => served.route(),
        None => route,
    };
    let status = response.status().as_u16();
    let elapsed = start.elapsed();
    let latency_ms = elapsed.as_secs_f64() * 1000.0;
    if quiet && span.is_disabled() {
        if status >= 400 {
            tracing::info!(request_id = %id, method = %method, route = %route, status, latency_ms, "served");
        }
    } else {
        span.in_scope(|| {
            if status < 400 && quiet {
                tracing::debug!(status, latency_ms, "served");
            } else {
                tracing::info!(status, latency_ms, "served");
            }
        });
    }
    let m = http_metrics(&method, &route, status);
    m.requests.increment(1);
    m.duration.record(elapsed.as_secs_f64());
    response.headers_mut().insert(REQUEST_ID, request_id);
    response
}

#[cfg(test)]
mod tests {
    /// utoipa keeps the last of two operations with one `operationId` and the last of two
    /// schemas with one name, silently: the generated web client then types one route with
    /// another's answer (it happened: `/payments/providers` was typed as the OIDC list).
    #[test]
    fn operation_ids_and_schema_names_are_unique() {
        let doc = serde_json::to_value(super::openapi()).unwrap();
        let mut seen = std::collections::HashMap::new();
        for (path, ops) in doc["paths"].as_object().unwrap() {
            for (method, op) in ops.as_object().unwrap() {
                if let Some(id) = op["operationId"].as_str()
                    && let Some(other) = seen.insert(id.to_string(), format!("{method} {path}"))
                {
                    panic!("operationId {id} of {method} {path} is also {other}'s");
                }
            }
        }
        // Schema names are type names (no `#[schema(as = …)]` is used): no two `ToSchema`
        // types may share one.
        let mut names = std::collections::HashMap::<String, String>::new();
        let mut stack = vec![std::path::PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src"
        ))];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let mut derive = false;
                for line in text.lines().map(str::trim) {
                    if line.starts_with("#[derive(") && line.contains("ToSchema") {
                        derive = true;
                    } else if derive
                        && let Some(rest) = line
                            .strip_prefix("pub struct ")
                            .or_else(|| line.strip_prefix("pub enum "))
                            .or_else(|| line.strip_prefix("struct "))
                            .or_else(|| line.strip_prefix("enum "))
                            .or_else(|| line.strip_prefix("pub(crate) struct "))
                            .or_else(|| line.strip_prefix("pub(super) struct "))
                    {
                        let name: String = rest
                            .chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_')
                            .collect();
                        let here = path.display().to_string();
                        if let Some(other) = names.insert(name.clone(), here.clone()) {
                            panic!("two ToSchema types are named {name}: {other} and {here}");
                        }
                        derive = false;
                    } else if !line.starts_with("#[") && !line.starts_with("///") {
                        derive = false;
                    }
                }
            }
        }
        assert!(
            names.len() > 100,
            "the scan found only {} schema types",
            names.len()
        );
    }
}
