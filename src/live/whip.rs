//! The service side of WHIP ingest: the UDP socket task (`wemaster_media::whip`), the
//! addresses advertised in answers, and the way to the supervisor. The HTTP routes are in
//! `crate::http::whip`.

use std::net::SocketAddr;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use wemaster_media::{
    rtmp::{PublishGrant, PublishRequest, RefuseReason},
    whip::{WhipServer, candidate_addrs},
};

use crate::config::WhipSettings;

use super::backend::RTMP_APP;

pub struct WhipIngest {
    pub server: WhipServer,
    /// Host candidates put in every answer.
    pub candidates: Vec<SocketAddr>,
    pub ice_servers: Vec<String>,
    publish: mpsc::Sender<PublishRequest>,
}

impl WhipIngest {
    pub fn start(
        socket: tokio::net::UdpSocket,
        settings: &WhipSettings,
        publish: mpsc::Sender<PublishRequest>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<WhipIngest> {
        let bound = socket.local_addr()?;
        let candidates = candidate_addrs(bound, &settings.public_ips);
        if settings.public_ips.is_empty() && bound.ip().is_unspecified() {
            tracing::warn!(%bound, "whip.public_ips is empty: WHIP answers advertise 127.0.0.1 only");
        }
        let (server, _task) = WhipServer::spawn(socket, candidates[0], shutdown)?;
        tracing::info!(%bound, ?candidates, "WHIP media listening (UDP)");
        Ok(WhipIngest {
            server,
            candidates,
            ice_servers: settings.ice_servers.clone(),
            publish,
        })
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
