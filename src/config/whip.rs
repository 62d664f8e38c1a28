//! `[whip]`: WHIP (WebRTC) ingest.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// WHIP (WebRTC) ingest: `POST /whip/{live_stream_id}`, media on one UDP port.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WhipSettings {
    /// The UDP socket every WHIP session's media arrives on.
    pub udp_listen: SocketAddr,
    /// Addresses put in SDP answers as host candidates (the socket's port); empty = the bound
    /// address, or 127.0.0.1 when bound to 0.0.0.0 (local clients only).
    pub public_ips: Vec<std::net::IpAddr>,
    /// ICE servers advertised to clients in `Link` headers (`stun:`/`turn:` URLs).
    pub ice_servers: Vec<String>,
    /// Accept VP8 (what browsers prefer) and transcode it to H.264 with the `whip-vp8-h264`
    /// pipeline; false refuses VP8-only offers with 406.
    pub transcode_vp8: bool,
}
