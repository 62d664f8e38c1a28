//! `/lessons/{id}/playback`: signed, expiring HLS URLs of a lesson (live and replays).

use axum::extract::State;
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{MaybeUser, caller, lesson_standing};
use crate::{
    courses::{
        LessonStatus,
        policy::{self},
        store::{self},
    },
    http::{
        error::{ApiError, Problem},
        extract::{Json, Path},
    },
    state::AppState,
};

/// A signed live URL.
#[derive(Debug, Serialize, ToSchema)]
pub struct LivePlayback {
    pub live_stream_id: Uuid,
    pub hls_url: String,
    /// The Low-Latency HLS playlist (parts, blocking reload), with the token; absent when the
    /// server has LL-HLS off. Players without LL support play it as plain HLS.
    pub ll_hls_url: Option<String>,
    /// The WHEP endpoint (WebRTC playback, sub-second latency) with the token; absent when the
    /// server has WHEP off.
    pub whep_url: Option<String>,
}

/// A signed replay URL.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplayPlayback {
    pub recording_id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub started_at: OffsetDateTime,
    pub duration_s: f64,
    pub hls_url: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PlaybackResponse {
    pub lesson_id: Uuid,
    pub status: LessonStatus,
    /// The live stream (present when the caller may watch live; plays while the lesson is live).
    #[schema(required = true)]
    pub live: Option<LivePlayback>,
    /// Ready recordings of the lesson (when the caller may watch replays).
    pub replays: Vec<ReplayPlayback>,
    /// When the tokens in these URLs expire.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
}

/// Signed, expiring HLS URLs of a lesson (live and replays) for callers the access policy
/// allows: 401 for anonymous callers and 403 for signed-in ones it does not (a free preview
/// plays for everyone; a bearer token is optional).
#[utoipa::path(get, path = "/lessons/{id}/playback", tag = "courses",
    security((), ("bearer" = [])),
    responses((status = 200, body = PlaybackResponse), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem)))]
pub(super) async fn lesson_playback(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    Path(id): Path<Uuid>,
) -> Result<Json<PlaybackResponse>, ApiError> {
    let mut conn = state.db.acquire().await?;
    let (lesson, s) = lesson_standing(&mut conn, id, user.as_ref()).await?;
    let access = policy::lesson_access(caller(user.as_ref()), &s.facts);
    if !access.watch_live && !access.watch_replay {
        return Err(match user {
            None => ApiError::Unauthorized("sign in to watch this lesson".into()),
            Some(_) => ApiError::Forbidden("enroll in the course to watch this lesson".into()),
        });
    }
    let expires_at = OffsetDateTime::now_utc()
        + time::Duration::seconds(state.settings.playback.token_ttl_s as i64);
    let base = crate::http::origin::public_base(&state.settings.http);
    let live = access.watch_live.then(|| {
        let token = state.playback.sign(
            &crate::playback::live_resource(lesson.live_stream_id),
            expires_at,
        );
        LivePlayback {
            live_stream_id: lesson.live_stream_id,
            hls_url: format!(
                "{base}/hls/live/{}/index.m3u8?token={token}",
                lesson.live_stream_id
            ),
            ll_hls_url: state.settings.live.ll().map(|_| {
                format!(
                    "{base}/hls/live/{}/ll.m3u8?token={token}",
                    lesson.live_stream_id
                )
            }),
            whep_url: state
                .settings
                .whep
                .enabled
                .then(|| format!("{base}/whep/{}?token={token}", lesson.live_stream_id)),
        }
    });
    let replays = if access.watch_replay {
        store::replays(&mut conn, lesson.live_stream_id)
            .await?
            .into_iter()
            .map(|(rid, started_at, duration_ms)| {
                let token = state.playback.sign(&format!("recording/{rid}"), expires_at);
                ReplayPlayback {
                    recording_id: rid,
                    started_at,
                    duration_s: duration_ms as f64 / 1000.0,
                    hls_url: format!("{base}/hls/vod/{rid}/index.m3u8?token={token}"),
                }
            })
            .collect()
    } else {
        Vec::new()
    };
    Ok(Json(PlaybackResponse {
        lesson_id: lesson.id,
        status: lesson.status,
        live,
        replays,
        expires_at,
    }))
}
