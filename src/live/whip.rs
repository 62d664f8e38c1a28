//! The service side of WHIP ingest: the UDP socket task (`wemaster_media::whip`), the
//! addresses advertised in answers, and the way to the supervisor. The HTTP routes are in
//! `crate::http::whip`.

use std::net::SocketAddr;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use wemaster_media::{
    ingest::{PublishGrant, PublishRequest, RefuseReason},
    pipeline::TemplateSet,
    whip::{WhipOptions, WhipServer, candidate_addrs},
};

use crate::config::{WhepSettings, WhipSettings};

use super::backend::RTMP_APP;

pub struct WhipIngest {
    pub server: WhipServer,
    /// Host candidates put in every answer.
    pub candidates: Vec<SocketAddr>,
    pub ice_servers: Vec<String>,
    /// VP8-only offers are accepted (and transcoded).
    pub allow_vp8: bool,
    /// WHEP viewers are served (`whep.enabled`).
    pub whep_enabled: bool,
    /// The host candidates of each WHEP viewer socket (by slot).
    pub viewer_candidates: Vec<Vec<SocketAddr>>,
    publish: mpsc::Sender<PublishRequest>,
}

/// The WebRTC socket task, started before the supervisor (which makes WHEP feeds on it).
pub struct WebRtcSocket {
    pub server: WhipServer,
    pub candidates: Vec<SocketAddr>,
    /// The host candidates of each WHEP viewer socket (by slot).
    pub viewer_candidates: Vec<Vec<SocketAddr>>,
    pub allow_vp8: bool,
}

/// The template that turns a VP8 session into H.264.
pub const VP8_TEMPLATE: &str = "whip-vp8-h264";

impl WhipIngest {
    /// Start the socket task (WHIP sessions and WHEP viewers).
    pub fn spawn_socket(
        socket: tokio::net::UdpSocket,
        settings: &WhipSettings,
        whep: &WhepSettings,
        segment_duration: std::time::Duration,
        pipelines: &TemplateSet,
        shutdown: CancellationToken,
    ) -> anyhow::Result<WebRtcSocket> {
        let bound = socket.local_addr()?;
        let candidates = candidate_addrs(bound, &settings.public_ips);
        if settings.public_ips.is_empty() && bound.ip().is_unspecified() {
            tracing::warn!(%bound, "whip.public_ips is empty: WHIP answers advertise 127.0.0.1 only");
        }
        let vp8_pipeline = if settings.transcode_vp8 {
            // A missing or broken template turns VP8 off (406) rather than failing the start:
            // H.264 publishers are unaffected. `wemaster doctor` reports missing elements.
            match pipelines
                .get(VP8_TEMPLATE)
                .and_then(|t| t.render(&Default::default()))
            {
                Ok(d) => Some(d),
                Err(e) => {
                    tracing::error!(error = %e, "WHIP VP8 transcoding is off");
                    None
                }
            }
        } else {
            None
        };
        let allow_vp8 = vp8_pipeline.is_some();
        let options = WhipOptions {
            segment_duration,
            vp8_pipeline,
            max_viewers: whep.max_viewers,
        };
        // Viewer sockets on the ports after the WHIP one (ephemeral ports when it is 0).
        let mut viewer_sockets = Vec::new();
        let mut viewer_candidates = Vec::new();
        for k in 0..whep.socket_count() {
            let port = if bound.port() == 0 {
                0
            } else {
                bound
                    .port()
                    .checked_add(1 + k as u16)
                    .ok_or_else(|| anyhow::anyhow!("whep.sockets: no port after {bound}"))?
            };
            let want = SocketAddr::new(bound.ip(), port);
            let s = std::net::UdpSocket::bind(want)
                .map_err(|e| anyhow::anyhow!("cannot bind a WHEP viewer socket on {want}: {e}"))?;
            s.set_nonblocking(true)?;
            let s = tokio::net::UdpSocket::from_std(s)?;
            let c = candidate_addrs(s.local_addr()?, &settings.public_ips);
            viewer_sockets.push((s, c[0]));
            viewer_candidates.push(c);
        }
        if viewer_candidates.is_empty() {
            viewer_candidates.push(candidates.clone());
        }
        let (server, _task) =
            WhipServer::spawn(socket, candidates[0], viewer_sockets, options, shutdown)?;
        tracing::info!(%bound, ?candidates, viewer_sockets = ?viewer_candidates,
            "WebRTC media listening (UDP): WHIP ingest, WHEP viewers");
        Ok(WebRtcSocket {
            server,
            candidates,
            viewer_candidates,
            allow_vp8,
        })
    }

    /// WHIP ingest on `socket`, granted by the supervisor behind `publish`.
    pub fn new(
        socket: WebRtcSocket,
        settings: &WhipSettings,
        whep: &WhepSettings,
        publish: mpsc::Sender<PublishRequest>,
    ) -> WhipIngest {
        WhipIngest {
            server: socket.server,
            candidates: socket.candidates,
            ice_servers: settings.ice_servers.clone(),
            allow_vp8: socket.allow_vp8,
            whep_enabled: whep.enabled,
            viewer_candidates: socket.viewer_candidates,
            publish,
        }
    }

    /// Ask the supervisor for a grant, as an RTMP publish does (same key check, same session
    /// rules: one publisher per stream, the reconnect window).
    pub async fn publish(
        &self,
        stream_key: String,
        peer: SocketAddr,
    ) -> Result<PublishGrant, RefuseReason> {
        let (reply, rx) = oneshot::channel();
        self.publish
            .send(PublishRequest {
                app: RTMP_APP.into(),
                stream_key,
                peer,
                protocol: "whip",
                reply,
            })
            .await
            .map_err(|_| RefuseReason::Busy)?;
        rx.await.unwrap_or(Err(RefuseReason::Busy))
    }
}
