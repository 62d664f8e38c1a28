//! Live HLS: `/hls/live/{live_stream_id}/index.m3u8` and its segments,
//! `/hls/live/{live_stream_id}/{session_id}/segment-N.ts`; Low-Latency HLS:
//! `/hls/live/{live_stream_id}/ll.m3u8` and its init segments, segments and parts
//! (`{session_id}/ll-init-N.mp4`, `ll-M.m4s`, `ll-M.P.m4s`).
//!
//! LL-HLS requests that ask for what does not exist yet wait for it (blocking playlist reload
//! with `_HLS_msn`/`_HLS_part`, a part named by the preload hint): the handler sleeps on the
//! session's change notification, woken when the publisher's packager adds a part — no
//! thread is held and nothing polls. They give up after three target durations (503), as
//! RFC 8216bis §6.2.5.2 says.
//!
//! The playlist is rendered from the live session's in-memory [`LivePlaylist`] (the truth of
//! what exists), once per change for public streams (players poll it far more often than it
//! changes; each request gets a clone of the same bytes); segments are files in the session's
//! spool directory, served only while the playlist lists them (or just slid out of it).
//!
//! Caching, per case:
//! - The playlist is always revalidated (`no-cache`): it changes every segment, and an ended
//!   one comes back to life when the next session of the stream starts.
//! - A segment URL carries the session id, which never repeats (segment numbers restart with
//!   the process), so it names the same bytes for ever: `immutable`.
//! - Private streams: `private` on both. Their token travels in the query string, which many
//!   CDNs leave out of the cache key: a shared cache must not keep them (docs/live.md).
//!
//! CORS comes from the global layer so browser players on other origins work.
//!
//! Several nodes: a request for a stream another node holds is forwarded to it
//! ([`elsewhere`], src/live/peers.rs), so any node behind the load balancer serves every live
//! stream.

use axum::{
    Router,
    extract::{RawQuery, State},
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
    routing::get,
};
use bytes::Bytes;
use uuid::Uuid;

use super::{
    error::ApiError,
    extract::{Client, Path},
};
use wemaster_media::{
    live::LlShared,
    llhls::{Lookup, Readiness},
};

use crate::{
    live::{peers, supervisor::LiveView},
    playback::{TokenCheck, live_resource},
    state::AppState,
};

pub fn router(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/hls/live/{id}/index.m3u8", get(playlist))
        .route("/hls/live/{id}/ll.m3u8", get(ll_playlist))
        .route("/hls/live/{id}/{session}/{segment}", get(segment))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            elsewhere,
        ))
}

/// The live stream a request is about: `/hls/live/{id}/…` or `/whep/{id}[/sessions/…]`.
fn stream_of(path: &str) -> Option<Uuid> {
    path.strip_prefix("/hls/live/")
        .or_else(|| path.strip_prefix("/whep/"))?
        .split('/')
        .next()?
        .parse()
        .ok()
}

/// A stream this node does not hold, held by another live node: the request goes there (once:
/// a forwarded request is answered here whatever happens), with the viewer's address in
/// `X-Forwarded-For` (believed by the holder when this node is in its `http.trusted_proxies`)
/// and the holder's answer streamed back as it comes — status, type, caching, location and
/// body. Live HLS and LL-HLS (GETs), and WHEP (a viewer's offer, its `DELETE`): the holder's
/// answer names its own ICE candidates, so the media flows between the viewer and the holder.
pub(super) async fn elsewhere(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(id) = stream_of(request.uri().path()) else {
        return next.run(request).await;
    };
    // Discovery and CORS preflights are the same on every node.
    if request.method() == axum::http::Method::OPTIONS {
        return next.run(request).await;
    }
    // A session here that ended (its playlist kept for late viewers) yields to one live on
    // another node: a publisher that moved there goes on in the same playlist.
    let here = state
        .live_views
        .read()
        .map(|views| views.get(&id).is_some_and(|v| !v.is_ended()))
        .unwrap_or(false);
    if here || request.headers().contains_key(peers::FORWARDED_HEADER) {
        return next.run(request).await;
    }
    let Some(base) = state.peers.holder(id).await else {
        return next.run(request).await;
    };
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let (mut parts, body) = request.into_parts();
    // Read only here: every request passes this layer, and most are for streams held here.
    let Ok(client) = <Client as axum::extract::FromRequestParts<AppState>>::from_request_parts(
        &mut parts, &state,
    )
    .await;
    // Only a WHEP offer has a body: a few kilobytes of SDP.
    let Ok(body) = axum::body::to_bytes(body, FORWARD_BODY_LIMIT).await else {
        return ApiError::PayloadTooLarge.into_response();
    };
    let started = std::time::Instant::now();
    let mut forward = state
        .peers
        .http()
        .request(parts.method, format!("{base}{path}"))
        .header(peers::FORWARDED_HEADER, "1")
        .header("x-forwarded-for", client.ip().to_string())
        // Blocking LL-HLS reloads wait up to three target durations at the holder.
        .timeout(FORWARD_TIMEOUT);
    for name in [header::CONTENT_TYPE, header::AUTHORIZATION, header::ACCEPT] {
        if let Some(v) = parts.headers.get(&name) {
            forward = forward.header(name, v);
        }
    }
    if !body.is_empty() {
        forward = forward.body(body);
    }
    let answer = match forward.send().await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, stream = %id, node = %base, "cannot forward a live request to the node holding the stream");
            metrics::counter!("hls_forwarded_total", "outcome" => "failed").increment(1);
            return ApiError::Unavailable("the node holding this live stream").into_response();
        }
    };
    metrics::counter!("hls_forwarded_total", "outcome" => "answered").increment(1);
    metrics::histogram!("hls_forward_seconds").record(started.elapsed().as_secs_f64());
    let mut response = Response::builder().status(answer.status().as_u16());
    for name in [
        header::CONTENT_TYPE,
        header::CACHE_CONTROL,
        header::CONTENT_LENGTH,
        header::RETRY_AFTER,
        header::LOCATION,
        header::ETAG,
        header::LINK,
        header::ALLOW,
        header::WWW_AUTHENTICATE,
    ] {
        for v in answer.headers().get_all(&name) {
            response = response.header(&name, v.as_bytes());
        }
    }
    response
        .body(axum::body::Body::from_stream(answer.bytes_stream()))
        .unwrap_or_else(|_| {
            ApiError::Unavailable("the node holding this live stream").into_response()
        })
}

/// The largest request body forwarded (a WHEP offer is a few kilobytes).
const FORWARD_BODY_LIMIT: usize = 64 * 1024;

/// The longest a forwarded request may take (a blocking LL-HLS reload waits up to three
/// target durations at the holder, 30 s at most with the longest segments).
const FORWARD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(40);

const PLAYLIST_TYPE: &str = "application/vnd.apple.mpegurl";

/// `Cache-Control` of a live playlist: always revalidated; kept out of shared caches when the
/// stream is private.
pub(crate) fn playlist_cache(private: bool) -> &'static str {
    if private {
        "private, no-cache"
    } else {
        "no-cache"
    }
}

/// `Cache-Control` of media whose URL never names other bytes (segments, finished files).
pub(crate) fn immutable_cache(private: bool) -> &'static str {
    if private {
        "private, max-age=31536000, immutable"
    } else {
        "public, max-age=31536000, immutable"
    }
}

pub(crate) fn view(
    state: &AppState,
    id: Uuid,
) -> Result<std::sync::Arc<crate::live::supervisor::LiveView>, ApiError> {
    state
        .live_views
        .read()
        .ok()
        .and_then(|r| r.get(&id).cloned())
        .ok_or(ApiError::NotFound("live stream"))
}

/// The `token` query parameter, if any.
pub(crate) fn token_param(query: Option<&str>) -> Option<String> {
    query
        .and_then(|q| url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "token"))
        .map(|(_, v)| v.into_owned())
}

/// The query that carries a viewer's token on into the URIs of a playlist.
fn token_query(token: &str) -> String {
    format!(
        "token={}",
        url::form_urlencoded::byte_serialize(token.as_bytes()).collect::<String>()
    )
}

/// Private streams need a valid playback token on every playlist and segment request.
pub(crate) fn authorize(
    state: &AppState,
    id: Uuid,
    view: &crate::live::supervisor::LiveView,
    token: Option<&str>,
) -> Result<(), ApiError> {
    if !view.private.load(std::sync::atomic::Ordering::Relaxed) {
        return Ok(());
    }
    match state
        .playback
        .verify(&live_resource(id), token, time::OffsetDateTime::now_utc())
    {
        TokenCheck::Valid => Ok(()),
        TokenCheck::Missing => Err(ApiError::Unauthorized(
            "this stream is private: a playback token (?token=) is required".into(),
        )),
        TokenCheck::Invalid => Err(ApiError::Forbidden("the playback token is invalid".into())),
        TokenCheck::Expired => Err(ApiError::Forbidden("the playback token has expired".into())),
    }
}

async fn playlist(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    RawQuery(query): RawQuery,
    client: Client,
) -> Result<Response, ApiError> {
    let view = view(&state, id)?;
    // Only a `token` parameter travels on to segments (private streams), bounded in size.
    let token = token_param(query.as_deref()).filter(|t| t.len() <= 2048);
    authorize(&state, id, &view, token.as_deref())?;
    touch(&view, &client);
    let token_query = token.as_deref().map(token_query);
    let private = view.private.load(std::sync::atomic::Ordering::Relaxed);
    let body = {
        let mut p = view
            .playlist
            .lock()
            .map_err(|_| anyhow::anyhow!("playlist lock poisoned"))?;
        if p.is_empty() && !p.is_ended() {
            // Live but no segment closed yet: players retry on 404 while a stream starts.
            return Err(ApiError::NotFound("live playlist (no segment yet)"));
        }
        // Public streams share one rendering per playlist change; a token is per viewer.
        match &token_query {
            Some(q) => Bytes::from(p.render(Some(q))),
            None => p.rendered(),
        }
    };
    let cache = playlist_cache(private);
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(PLAYLIST_TYPE),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        ],
        body,
    )
        .into_response())
}

/// A playlist request counts its viewer: the client's address (behind trusted proxies and
/// other nodes that forwarded it, the address they saw).
fn touch(view: &LiveView, client: &Client) {
    if let Ok(ip) = client.ip().parse() {
        view.touch_viewer(ip);
    }
}

/// Segment names the pipeline writes: `segment-<digits>.ts`. Anything else is not ours.
fn valid_segment_name(name: &str) -> bool {
    name.strip_prefix("segment-")
        .and_then(|r| r.strip_suffix(".ts"))
        .is_some_and(|n| !n.is_empty() && n.len() <= 20 && n.bytes().all(|b| b.is_ascii_digit()))
}

async fn segment(
    State(state): State<AppState>,
    Path((id, session, name)): Path<(Uuid, Uuid, String)>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    if let Some(ll_name) = LlName::parse(&name) {
        return ll_file(state, id, session, ll_name, query).await;
    }
    if !valid_segment_name(&name) {
        return Err(ApiError::NotFound("segment"));
    }
    let view = view(&state, id)?;
    // Only the current session's files are here (an earlier session's are deleted).
    if view.session_id != session {
        return Err(ApiError::NotFound("segment"));
    }
    authorize(&state, id, &view, token_param(query.as_deref()).as_deref())?;
    let private = view.private.load(std::sync::atomic::Ordering::Relaxed);
    let bytes = match tokio::fs::read(view.dir.join(&name)).await {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApiError::NotFound("segment"));
        }
        Err(e) => {
            return Err(anyhow::Error::from(e)
                .context("reading a live segment")
                .into());
        }
    };
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("video/mp2t")),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static(immutable_cache(private)),
            ),
        ],
        bytes,
    )
        .into_response())
}

/// The blocking and delta-update parameters of an LL playlist request.
#[derive(Debug, Default, PartialEq, Eq)]
struct LlQuery {
    msn: Option<u64>,
    part: Option<u64>,
    skip: bool,
    token: Option<String>,
}

impl LlQuery {
    fn parse(query: Option<&str>) -> Result<LlQuery, ApiError> {
        let mut q = LlQuery::default();
        let number = |k: &str, v: &str| {
            v.parse::<u64>()
                .map_err(|_| ApiError::BadRequest(format!("{k} must be a non-negative integer")))
        };
        for (k, v) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match &*k {
                "_HLS_msn" => q.msn = Some(number("_HLS_msn", &v)?),
                "_HLS_part" => q.part = Some(number("_HLS_part", &v)?),
                "_HLS_skip" => match &*v {
                    "YES" | "v2" => q.skip = true,
                    _ => return Err(ApiError::BadRequest("_HLS_skip must be YES or v2".into())),
                },
                "token" if v.len() <= 2048 => q.token = Some(v.into_owned()),
                _ => {}
            }
        }
        // RFC 8216bis §6.2.5.2: a part without its segment is a bad request.
        if q.part.is_some() && q.msn.is_none() {
            return Err(ApiError::BadRequest("_HLS_part needs _HLS_msn".into()));
        }
        Ok(q)
    }
}

fn ll_of(view: &LiveView) -> Result<std::sync::Arc<LlShared>, ApiError> {
    view.ll
        .clone()
        .ok_or(ApiError::NotFound("low-latency playlist (LL-HLS is off)"))
}

/// `Cache-Control` of LL media: parts and segments are named by session, so immutable.
fn ll_headers(
    content_type: &'static str,
    cache: &'static str,
) -> [(header::HeaderName, HeaderValue); 2] {
    [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
    ]
}

async fn ll_playlist(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    RawQuery(query): RawQuery,
    client: Client,
) -> Result<Response, ApiError> {
    let view = view(&state, id)?;
    let ll = ll_of(&view)?;
    let q = LlQuery::parse(query.as_deref())?;
    authorize(&state, id, &view, q.token.as_deref())?;
    touch(&view, &client);
    ll.want();
    let token_query = q.token.as_deref().map(token_query);
    let prefix = format!("{}/", view.session_id);
    let mut changes = ll.subscribe();
    let deadline = tokio::time::Instant::now() + ll_block_limit(&ll);
    loop {
        {
            let p = ll
                .playlist
                .lock()
                .map_err(|_| anyhow::anyhow!("LL playlist lock poisoned"))?;
            let ready = match q.msn {
                Some(msn) => p.readiness(msn, q.part),
                None if p.is_playable() || p.is_ended() => Readiness::Ready,
                None => Readiness::Wait,
            };
            match ready {
                Readiness::Ready => {
                    let body = p.render(&prefix, token_query.as_deref(), q.skip);
                    let private = view.private.load(std::sync::atomic::Ordering::Relaxed);
                    return Ok(
                        (ll_headers(PLAYLIST_TYPE, playlist_cache(private)), body).into_response()
                    );
                }
                Readiness::TooFar => {
                    return Err(ApiError::BadRequest(
                        "_HLS_msn/_HLS_part is too far ahead of the live edge".into(),
                    ));
                }
                Readiness::Wait => {}
            }
        }
        wait_change(&mut changes, deadline).await?;
    }
}

/// Three target durations (RFC 8216bis §6.2.5.2).
fn ll_block_limit(ll: &LlShared) -> std::time::Duration {
    ll.playlist
        .lock()
        .map(|p| p.config().block_limit())
        .unwrap_or(std::time::Duration::from_secs(6))
}

/// Sleep until the LL output changes; 503 at the deadline.
async fn wait_change(
    changes: &mut tokio::sync::watch::Receiver<u64>,
    deadline: tokio::time::Instant,
) -> Result<(), ApiError> {
    match tokio::time::timeout_at(deadline, changes.changed()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) | Err(_) => Err(ApiError::Unavailable(
            "the stream made no new part in three target durations",
        )),
    }
}

/// The LL files under a session: `ll-init-N.mp4`, `ll-M.m4s`, `ll-M.P.m4s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LlName {
    Init(u64),
    Segment(u64),
    Part(u64, u64),
}

impl LlName {
    fn parse(name: &str) -> Option<LlName> {
        let num = |s: &str| {
            (!s.is_empty() && s.len() <= 19 && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse().ok())
                .flatten()
        };
        let rest = name.strip_prefix("ll-")?;
        if let Some(n) = rest
            .strip_prefix("init-")
            .and_then(|r| r.strip_suffix(".mp4"))
        {
            return num(n).map(LlName::Init);
        }
        let stem = rest.strip_suffix(".m4s")?;
        match stem.split_once('.') {
            Some((m, p)) => Some(LlName::Part(num(m)?, num(p)?)),
            None => num(stem).map(LlName::Segment),
        }
    }
}

async fn ll_file(
    state: AppState,
    id: Uuid,
    session: Uuid,
    name: LlName,
    query: Option<String>,
) -> Result<Response, ApiError> {
    let view = view(&state, id)?;
    if view.session_id != session {
        return Err(ApiError::NotFound("segment"));
    }
    let ll = ll_of(&view)?;
    authorize(&state, id, &view, token_param(query.as_deref()).as_deref())?;
    ll.want();
    let private = view.private.load(std::sync::atomic::Ordering::Relaxed);
    let cache = immutable_cache(private);
    if let LlName::Segment(msn) = name {
        // A whole segment is its parts back to back: sent as they are, never joined in memory.
        let parts = ll
            .playlist
            .lock()
            .map_err(|_| anyhow::anyhow!("LL playlist lock poisoned"))?
            .segment(msn)
            .ok_or(ApiError::NotFound("segment"))?;
        let len: usize = parts.iter().map(Bytes::len).sum();
        let body = axum::body::Body::from_stream(futures::stream::iter(
            parts.into_iter().map(Ok::<_, std::convert::Infallible>),
        ));
        let mut response = (ll_headers("video/iso.segment", cache), body).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        return Ok(response);
    }
    let mut changes = ll.subscribe();
    let deadline = tokio::time::Instant::now() + ll_block_limit(&ll);
    loop {
        let found = {
            let p = ll
                .playlist
                .lock()
                .map_err(|_| anyhow::anyhow!("LL playlist lock poisoned"))?;
            match name {
                LlName::Init(n) => p.init(n).map_or(Lookup::Missing, Lookup::Ready),
                LlName::Part(msn, part) => p.part(msn, part),
                LlName::Segment(_) => Lookup::Missing,
            }
        };
        match found {
            Lookup::Ready(bytes) => {
                let kind = if matches!(name, LlName::Init(_)) {
                    "video/mp4"
                } else {
                    "video/iso.segment"
                };
                return Ok((ll_headers(kind, cache), bytes).into_response());
            }
            Lookup::Missing => return Err(ApiError::NotFound("segment")),
            // The preload hint's part: answered the moment it is made.
            Lookup::Soon => wait_change(&mut changes, deadline).await?,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ll_names_and_queries_parse_strictly() {
        use super::{LlName, LlQuery};
        assert_eq!(LlName::parse("ll-init-0.mp4"), Some(LlName::Init(0)));
        assert_eq!(LlName::parse("ll-12.m4s"), Some(LlName::Segment(12)));
        assert_eq!(LlName::parse("ll-12.3.m4s"), Some(LlName::Part(12, 3)));
        for bad in [
            "ll-.m4s",
            "ll-1..m4s",
            "ll-1.2.3.m4s",
            "ll-init-.mp4",
            "ll-x.m4s",
            "segment-1.ts",
        ] {
            assert_eq!(LlName::parse(bad), None, "{bad}");
        }
        let q = LlQuery::parse(Some("_HLS_msn=5&_HLS_part=2&_HLS_skip=YES&token=a%2Bb")).unwrap();
        assert_eq!(
            q,
            LlQuery {
                msn: Some(5),
                part: Some(2),
                skip: true,
                token: Some("a+b".into())
            }
        );
        for bad in ["_HLS_part=1", "_HLS_msn=-1", "_HLS_msn=x", "_HLS_skip=NO"] {
            assert!(LlQuery::parse(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_our_segment_names_are_served() {
        assert!(super::valid_segment_name("segment-00000001.ts"));
        assert!(super::valid_segment_name("segment-1000000.ts"));
        for bad in [
            "../x.ts",
            "segment-.ts",
            "segment-1.mp4",
            "index.m3u8",
            "segment-1a.ts",
            "segment-1.ts/..",
        ] {
            assert!(!super::valid_segment_name(bad), "{bad}");
        }
    }
}
