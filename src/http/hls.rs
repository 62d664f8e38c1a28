//! Live HLS: `/hls/live/{live_stream_id}/index.m3u8` and its segments,
//! `/hls/live/{live_stream_id}/{session_id}/segment-N.ts`.
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

use std::net::SocketAddr;

use axum::{
    Router,
    extract::{ConnectInfo, RawQuery, State},
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
    routing::get,
};
use bytes::Bytes;
use uuid::Uuid;

use super::{error::ApiError, extract::Path};
use crate::{
    playback::{TokenCheck, live_resource},
    state::AppState,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/hls/live/{id}/index.m3u8", get(playlist))
        .route("/hls/live/{id}/{session}/{segment}", get(segment))
}

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

fn view(
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

/// Private streams need a valid playback token on every playlist and segment request.
fn authorize(
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
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Result<Response, ApiError> {
    let view = view(&state, id)?;
    // Only a `token` parameter travels on to segments (private streams), bounded in size.
    let token = token_param(query.as_deref()).filter(|t| t.len() <= 2048);
    authorize(&state, id, &view, token.as_deref())?;
    view.touch_viewer(peer.ip());
    let token_query = token.map(|t| {
        format!(
            "token={}",
            url::form_urlencoded::byte_serialize(t.as_bytes()).collect::<String>()
        )
    });
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

#[cfg(test)]
mod tests {
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
