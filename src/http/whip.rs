//! WHIP (RFC 9725): `POST /whip/{live_stream_id}` with `Authorization: Bearer <stream_key>` and
//! an SDP offer → `201`, `Location: /whip/{id}/sessions/{session}`, the SDP answer (ICE-lite,
//! with our candidates: OBS does not trickle). `DELETE` on the location ends the session;
//! `PATCH` (trickle ICE) is answered 405 as the RFC allows. CORS is open on `/whip/` whatever
//! `http.cors_allowed_origins` says (see `http::cors`): the stream key in the header is the
//! credential, never a cookie.
//!
//! Order of checks: content type (415) → stream key and stream (401/404/403) → SDP (400/406) →
//! the supervisor's grant → the socket task. Nothing is registered before the SDP is known
//! to be usable, so a refused offer leaves nothing half-open.

use std::net::SocketAddr;

use crate::http::extract::RawBody;
use axum::{
    extract::{ConnectInfo, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;
use wemaster_media::{ingest::RefuseReason, whip::WhipError};

use super::{error::problem_response, extract::Path};
use crate::{
    live::{
        keys::StreamKey,
        model::{LiveStreamId, StreamStatus},
        publish_token,
        store::{self, Scope},
    },
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(publish, publish_options))
        .routes(routes!(end_session, patch_session, session_options))
}

const ALLOW_METHODS: &str = "POST, DELETE, PATCH, OPTIONS";

pub(super) fn problem(status: StatusCode, code: &str, detail: impl Into<String>) -> Response {
    let mut res = problem_response(status, code, detail.into(), None);
    if status == StatusCode::UNAUTHORIZED {
        res.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    res
}

pub(super) fn whip_error(e: WhipError) -> Response {
    let status = match e {
        WhipError::MalformedSdp(_) | WhipError::NoMedia => StatusCode::BAD_REQUEST,
        WhipError::Unsupported(_) => StatusCode::NOT_ACCEPTABLE,
        WhipError::Unavailable | WhipError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    problem(status, e.code(), e.to_string())
}

/// `Link` headers for the configured ICE servers (RFC 9725 §4.6).
pub(super) fn ice_links(state: &AppState) -> Vec<HeaderValue> {
    state
        .whip
        .ice_servers
        .iter()
        .filter_map(|url| HeaderValue::from_str(&format!("<{url}>; rel=\"ice-server\"")).ok())
        .collect()
}

/// Start publishing to a live stream over WebRTC (WHIP, RFC 9725). The bearer token is the
/// stream's key, or a publish token from `POST /api/v1/live-streams/{id}/publish-token` (the
/// web app's go-live), not an access token.
#[utoipa::path(post, path = "/whip/{live_stream_id}", tag = "live", security(()),
    params(("live_stream_id" = Uuid, Path)),
    request_body(content = String, content_type = "application/sdp", description = "SDP offer"),
    responses(
        (status = 201, description = "SDP answer; Location of the session", content_type = "application/sdp", body = String),
        (status = 400, description = "malformed SDP or no media", body = super::error::Problem),
        (status = 401, description = "missing or wrong stream key", body = super::error::Problem),
        (status = 403, description = "the live stream is disabled", body = super::error::Problem),
        (status = 404, description = "no such live stream", body = super::error::Problem),
        (status = 406, description = "no usable codec (H.264, or VP8 when transcoding is on)", body = super::error::Problem),
        (status = 415, description = "not application/sdp", body = super::error::Problem),
    ))]
async fn publish(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    if !sdp_content_type(&headers) {
        return problem(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "a WHIP offer is sent as Content-Type: application/sdp",
        );
    }
    let key = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, k)| k.trim().to_string())
        .filter(|k| !k.is_empty());
    if let Err(res) = check_key(&state, LiveStreamId(id), key.as_deref()).await {
        return res;
    }
    let Some(key) = key else {
        return problem(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "stream key required",
        );
    };
    let Ok(offer) = std::str::from_utf8(&body) else {
        return whip_error(WhipError::MalformedSdp("not UTF-8".into()));
    };
    let negotiated = match wemaster_media::whip::negotiate(
        offer,
        &state.whip.candidates,
        state.whip.allow_vp8,
    ) {
        Ok(n) => n,
        Err(e) => {
            tracing::info!(live_stream_id = %id, %peer, error = %e, "WHIP offer refused");
            return whip_error(e);
        }
    };
    let answer = negotiated.answer.clone();
    let grant = match state.whip.publish(key, peer).await {
        Ok(g) => g,
        Err(RefuseReason::UnknownKey | RefuseReason::WrongApp) => {
            return problem(StatusCode::UNAUTHORIZED, "unauthorized", "wrong stream key");
        }
        Err(RefuseReason::Disabled) => {
            return problem(
                StatusCode::FORBIDDEN,
                "stream_disabled",
                "this live stream is disabled",
            );
        }
        Err(RefuseReason::Busy) => {
            return problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the live service is busy; try again",
            );
        }
    };
    let session = Uuid::new_v4().simple().to_string();
    if let Err(e) = state
        .whip
        .server
        .start(session_key(id, &session), negotiated, grant.clone())
        .await
    {
        // The publisher's packager sees its frame channel close and ends the publish.
        grant.kick.cancel();
        return whip_error(e);
    }
    tracing::info!(live_stream_id = %id, %peer, %session, "WHIP session started");
    sdp_created(
        &state,
        answer,
        &format!("/whip/{id}/sessions/{session}"),
        &session,
    )
}

/// `201` with the SDP `answer`, the session resource in `Location` (and its id as the `ETag`)
/// and the ICE servers in `Link`: the answer of a WHIP or WHEP POST.
pub(super) fn sdp_created(
    state: &AppState,
    answer: String,
    location: &str,
    session: &str,
) -> Response {
    let mut res = (StatusCode::CREATED, answer).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/sdp"),
    );
    if let Ok(v) = HeaderValue::from_str(location) {
        h.insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("\"{session}\"")) {
        h.insert(header::ETAG, v);
    }
    for link in ice_links(state) {
        h.append(header::LINK, link);
    }
    res
}

/// Whether the request says `Content-Type: application/sdp` (parameters allowed).
pub(super) fn sdp_content_type(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/sdp"))
}

fn session_key(id: Uuid, session: &str) -> String {
    format!("{id}/{session}")
}

/// 401 wrong/missing key, 404 unknown stream, 403 disabled; Ok when the key opens `id`.
async fn check_key(state: &AppState, id: LiveStreamId, key: Option<&str>) -> Result<(), Response> {
    let unavailable = |e: sqlx::Error| {
        tracing::error!(error = %e, "cannot check a WHIP stream key");
        problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "database is unavailable",
        )
    };
    let mut conn = state.db.acquire().await.map_err(unavailable)?;
    // A publish token (the web app's go-live) opens only the stream it names.
    let token_opens = key
        .and_then(|k| publish_token::verify(&state.playback, k, time::OffsetDateTime::now_utc()))
        .is_some_and(|opened| opened == id.0);
    if token_opens {
        return match store::get(&mut conn, id, Scope::All)
            .await
            .map_err(unavailable)?
        {
            None => Err(problem(
                StatusCode::NOT_FOUND,
                "not_found",
                "live stream not found",
            )),
            Some(s) if s.status == StreamStatus::Disabled => Err(problem(
                StatusCode::FORBIDDEN,
                "stream_disabled",
                "this live stream is disabled",
            )),
            Some(_) => Ok(()),
        };
    }
    if let Some(key) = key.and_then(|k| StreamKey::parse(k).ok()) {
        if let Some(s) = store::find_by_stream_key(&mut conn, &key)
            .await
            .map_err(unavailable)?
            .filter(|s| s.id == id)
        {
            if s.status == StreamStatus::Disabled {
                return Err(problem(
                    StatusCode::FORBIDDEN,
                    "stream_disabled",
                    "this live stream is disabled",
                ));
            }
            return Ok(());
        }
    }
    match store::get(&mut conn, id, Scope::All)
        .await
        .map_err(unavailable)?
    {
        None => Err(problem(
            StatusCode::NOT_FOUND,
            "not_found",
            "live stream not found",
        )),
        Some(_) if key.is_none() => Err(problem(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Authorization: Bearer <stream key> is required",
        )),
        Some(_) => Err(problem(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "wrong stream key",
        )),
    }
}

/// CORS preflight and discovery: `Accept-Post: application/sdp`, ICE servers in `Link`.
#[utoipa::path(options, path = "/whip/{live_stream_id}", tag = "live", security(()),
    params(("live_stream_id" = Uuid, Path)),
    responses((status = 204, description = "allowed methods, Accept-Post, ICE servers")))]
async fn publish_options(State(state): State<AppState>) -> Response {
    let mut res = StatusCode::NO_CONTENT.into_response();
    let h = res.headers_mut();
    h.insert(header::ALLOW, HeaderValue::from_static(ALLOW_METHODS));
    h.insert("accept-post", HeaderValue::from_static("application/sdp"));
    for link in ice_links(&state) {
        h.append(header::LINK, link);
    }
    res
}

/// A CORS preflight is answered by the CORS layer before any route sees it, with 200 and
/// no `Accept-Post` (tower-http takes every `OPTIONS` for a preflight). On the WHIP and WHEP
/// endpoints it is also a client's discovery (RFC 9725 §4.1), so it gets what a plain `OPTIONS` gets:
/// 204 and `Accept-Post: application/sdp`; on a session URL, 204 like the route documents.
/// Done outside the CORS layer (`http::Edge`): [`discovery`] reads the request, then
/// [`answer_discovery`] mends the answer.
pub(crate) fn discovery(req: &axum::extract::Request) -> Option<Discovery> {
    if req.method() != axum::http::Method::OPTIONS {
        return None;
    }
    let path = req.uri().path();
    let rest = path
        .strip_prefix("/whip/")
        .or_else(|| path.strip_prefix("/whep/"))
        .filter(|rest| !rest.is_empty())?;
    Some(if rest.contains('/') {
        Discovery::Session
    } else {
        Discovery::Endpoint
    })
}

/// An `OPTIONS` on a WHIP/WHEP endpoint or on one of its session URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Discovery {
    Endpoint,
    Session,
}

/// A successful answer to a [`discovery`]: 204, and `Accept-Post` on an endpoint.
pub(crate) fn answer_discovery(discovery: Option<Discovery>, res: &mut Response) {
    let Some(d) = discovery else { return };
    if !res.status().is_success() {
        return;
    }
    *res.status_mut() = StatusCode::NO_CONTENT;
    if d == Discovery::Endpoint {
        res.headers_mut()
            .insert("accept-post", HeaderValue::from_static("application/sdp"));
    }
}

/// End a WHIP session (the publisher stops). The session URL is the credential.
#[utoipa::path(delete, path = "/whip/{live_stream_id}/sessions/{session}", tag = "live", security(()),
    params(("live_stream_id" = Uuid, Path), ("session" = String, Path)),
    responses((status = 204, description = "ended"),
              (status = 404, description = "no such session", body = super::error::Problem)))]
async fn end_session(
    State(state): State<AppState>,
    Path((id, session)): Path<(Uuid, String)>,
) -> Response {
    if state.whip.server.end(&session_key(id, &session)).await {
        tracing::info!(live_stream_id = %id, %session, "WHIP session ended by the client");
        StatusCode::NO_CONTENT.into_response()
    } else {
        problem(StatusCode::NOT_FOUND, "not_found", "WHIP session not found")
    }
}

/// Trickle ICE / ICE restart: not supported (RFC 9725 §4.3.1 allows 405); candidates are all
/// in the answer.
#[utoipa::path(patch, path = "/whip/{live_stream_id}/sessions/{session}", tag = "live", security(()),
    params(("live_stream_id" = Uuid, Path), ("session" = String, Path)),
    responses((status = 405, description = "trickle ICE is not supported", body = super::error::Problem)))]
async fn patch_session() -> Response {
    no_trickle()
}

/// 405 for trickle ICE / ICE restarts (WHIP and WHEP session resources).
pub(super) fn no_trickle() -> Response {
    let mut res = problem(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "trickle ICE and ICE restarts are not supported: all candidates are in the answer",
    );
    res.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("DELETE, OPTIONS"));
    res
}

/// CORS preflight for the session resource.
#[utoipa::path(options, path = "/whip/{live_stream_id}/sessions/{session}", tag = "live", security(()),
    params(("live_stream_id" = Uuid, Path), ("session" = String, Path)),
    responses((status = 204, description = "allowed methods")))]
async fn session_options() -> Response {
    session_allow()
}

/// 204 with the methods a WHIP/WHEP session resource takes.
pub(super) fn session_allow() -> Response {
    let mut res = StatusCode::NO_CONTENT.into_response();
    res.headers_mut().insert(
        header::ALLOW,
        HeaderValue::from_static("DELETE, PATCH, OPTIONS"),
    );
    res
}
