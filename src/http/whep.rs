//! WHEP (draft-ietf-wish-whep): `POST /whep/{live_stream_id}` with an SDP offer → `201`,
//! `Location: /whep/{id}/sessions/{session}`, the SDP answer (ICE-lite, our candidates in it:
//! no trickle needed); `DELETE` on the location ends the viewer; `PATCH` (trickle ICE) is
//! answered 405. Media goes out on the WHIP UDP socket ([`wemaster_media::whep`]).
//!
//! Access is the live HLS playlist's: a public stream is open to anyone, a private one needs
//! the signed playback token (`Authorization: Bearer <token>` as WHEP clients send it, or
//! `?token=`). CORS is open on `/whep/` (see `http::cors`): no cookie is ever the credential.
//!
//! Order of checks: content type (415) → the stream is live here (404) → token (401/403) →
//! SDP (400/406) → the socket task (503 when the node is full).

use axum::{
    extract::{RawQuery, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;
use wemaster_media::whip::WhipError;

use super::{
    error::ApiError,
    extract::{Path, RawBody},
    hls::{self, token_param},
    whip::{ice_links, no_trickle, problem, sdp_created, session_allow, whip_error},
};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(view, view_options))
        .routes(routes!(end_viewer, patch_viewer, viewer_options))
}

/// The bearer token, else `?token=`; bounded like the HLS routes' token.
fn playback_token(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().to_string())
        .or_else(|| token_param(query))
        .filter(|t| !t.is_empty() && t.len() <= 2048)
}

/// Watch a live stream over WebRTC (WHEP). Public streams need nothing; private ones the
/// playback token from `POST /api/v1/lessons/{id}/playback-token` (as a bearer token or
/// `?token=`). H.264 video as the publisher sent it; Opus audio.
#[utoipa::path(post, path = "/whep/{live_stream_id}", tag = "live", security(()),
    params(("live_stream_id" = Uuid, Path),
           ("token" = Option<String>, Query, description = "playback token of a private stream (or send it as a bearer token)")),
    request_body(content = String, content_type = "application/sdp", description = "SDP offer (receive-only H.264 video, Opus audio)"),
    responses(
        (status = 201, description = "SDP answer; Location of the viewer session", content_type = "application/sdp", body = String),
        (status = 400, description = "malformed SDP or no media", body = super::error::Problem),
        (status = 401, description = "a private stream and no token", body = super::error::Problem),
        (status = 403, description = "the token is invalid or expired", body = super::error::Problem),
        (status = 404, description = "no such stream live on this server, or WHEP is off", body = super::error::Problem),
        (status = 406, description = "the offer cannot receive H.264", body = super::error::Problem),
        (status = 415, description = "not application/sdp", body = super::error::Problem),
        (status = 503, description = "this server serves as many viewers as it may", body = super::error::Problem),
    ))]
async fn view(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    if !super::whip::sdp_content_type(&headers) {
        return Ok(problem(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "a WHEP offer is sent as Content-Type: application/sdp",
        ));
    }
    if !state.whip.whep_enabled {
        return Err(ApiError::NotFound("live stream"));
    }
    let view = hls::view(&state, id)?;
    let feed = view.whep.clone().ok_or(ApiError::NotFound("live stream"))?;
    if view.is_ended() {
        return Err(ApiError::NotFound("live stream (it is not live now)"));
    }
    // The live playlist's access rule, with the token as WHEP clients send it.
    hls::authorize(
        &state,
        id,
        &view,
        playback_token(&headers, query.as_deref()).as_deref(),
    )?;
    let Ok(offer) = std::str::from_utf8(&body) else {
        return Ok(whip_error(WhipError::MalformedSdp("not UTF-8".into())));
    };
    // The least loaded viewer socket: its candidates go in the answer.
    let slot = match state.whip.server.viewer_slot() {
        Ok(slot) => slot,
        Err(e) => return Ok(whip_error(e)),
    };
    let candidates = state
        .whip
        .viewer_candidates
        .get(slot)
        .unwrap_or(&state.whip.candidates);
    let viewer = match wemaster_media::whep::negotiate(offer, candidates) {
        Ok(v) => v,
        Err(e) => {
            tracing::info!(live_stream_id = %id, error = %e, "WHEP offer refused");
            return Ok(whip_error(e));
        }
    };
    let answer = viewer.answer.clone();
    // The session id names its socket task, so DELETE finds it: `{slot}-{random}`.
    let session = format!("{slot}-{}", Uuid::new_v4().simple());
    if let Err(e) = state
        .whip
        .server
        .view(slot, session_key(id, &session), viewer, feed)
        .await
    {
        return Ok(whip_error(e));
    }
    tracing::info!(live_stream_id = %id, %session, "WHEP viewer joined");
    Ok(sdp_created(
        &state,
        answer,
        &format!("/whep/{id}/sessions/{session}"),
        &session,
    ))
}

/// Viewers and WHIP sessions share the socket task's namespace: prefix ours.
fn session_key(id: Uuid, session: &str) -> String {
    format!("whep/{id}/{session}")
}

/// Discovery and CORS preflight: `Accept-Post: application/sdp`, ICE servers in `Link`.
#[utoipa::path(options, path = "/whep/{live_stream_id}", tag = "live", security(()),
    params(("live_stream_id" = Uuid, Path)),
    responses((status = 204, description = "allowed methods, Accept-Post, ICE servers")))]
async fn view_options(State(state): State<AppState>) -> Response {
    let mut res = StatusCode::NO_CONTENT.into_response();
    let h = res.headers_mut();
    h.insert(header::ALLOW, HeaderValue::from_static("POST, OPTIONS"));
    h.insert("accept-post", HeaderValue::from_static("application/sdp"));
    for link in ice_links(&state) {
        h.append(header::LINK, link);
    }
    res
}

/// Stop watching. The session URL is the credential (it is only ever given to the viewer).
#[utoipa::path(delete, path = "/whep/{live_stream_id}/sessions/{session}", tag = "live", security(()),
    params(("live_stream_id" = Uuid, Path), ("session" = String, Path)),
    responses((status = 204, description = "ended"),
              (status = 404, description = "no such viewer session", body = super::error::Problem)))]
async fn end_viewer(
    State(state): State<AppState>,
    Path((id, session)): Path<(Uuid, String)>,
) -> Response {
    let slot = session
        .split_once('-')
        .and_then(|(slot, _)| slot.parse::<usize>().ok());
    let ended = match slot {
        Some(slot) if session.len() <= 64 => {
            state
                .whip
                .server
                .end_viewer(slot, &session_key(id, &session))
                .await
        }
        _ => false,
    };
    if ended {
        StatusCode::NO_CONTENT.into_response()
    } else {
        problem(StatusCode::NOT_FOUND, "not_found", "WHEP session not found")
    }
}

/// Trickle ICE / ICE restart: not supported (405); every candidate is in the answer.
#[utoipa::path(patch, path = "/whep/{live_stream_id}/sessions/{session}", tag = "live", security(()),
    params(("live_stream_id" = Uuid, Path), ("session" = String, Path)),
    responses((status = 405, description = "trickle ICE is not supported", body = super::error::Problem)))]
async fn patch_viewer() -> Response {
    no_trickle()
}

/// CORS preflight for the viewer session resource.
#[utoipa::path(options, path = "/whep/{live_stream_id}/sessions/{session}", tag = "live", security(()),
    params(("live_stream_id" = Uuid, Path), ("session" = String, Path)),
    responses((status = 204, description = "allowed methods")))]
async fn viewer_options() -> Response {
    session_allow()
}
