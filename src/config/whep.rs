//! `[whep]`: WHEP (WebRTC) playback.

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// WHEP playback: `POST /whep/{live_stream_id}`, media on the viewer sockets (`sockets`, on the
/// ports after `whip.udp_listen`'s), with `whip.public_ips` and `whip.ice_servers`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WhepSettings {
    /// Serve WHEP viewers; false answers `/whep/` with 404 and the API hands out no WHEP URL.
    pub enabled: bool,
    /// WebRTC viewers this node serves at most (all streams together); more get 503.
    pub max_viewers: usize,
    /// UDP sockets (each its own task, on the ports after `whip.udp_listen`'s) that viewers
    /// are spread over; 0: viewers share the WHIP socket (one port, one core). Unset: one per
    /// CPU.
    #[serde(default)]
    pub sockets: Option<usize>,
}

impl WhepSettings {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.max_viewers == 0 || self.max_viewers > 100_000 {
            return Err(ConfigError::new(
                "whep.max_viewers",
                "must be between 1 and 100000",
            ));
        }
        if self.sockets.is_some_and(|n| n > 64) {
            return Err(ConfigError::new("whep.sockets", "must be at most 64"));
        }
        Ok(())
    }

    /// How many viewer sockets to open (none while WHEP is off).
    pub fn socket_count(&self) -> usize {
        if !self.enabled {
            return 0;
        }
        self.sockets
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }
}
