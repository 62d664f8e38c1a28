//! `[whep]`: WHEP (WebRTC) playback.

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// WHEP playback: `POST /whep/{live_stream_id}`, media on `whip.udp_listen` (one UDP port for
/// all WebRTC, with `whip.public_ips` and `whip.ice_servers`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WhepSettings {
    /// Serve WHEP viewers; false answers `/whep/` with 404 and the API hands out no WHEP URL.
    pub enabled: bool,
    /// WebRTC viewers this node serves at most (all streams together); more get 503.
    pub max_viewers: usize,
}

impl WhepSettings {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.max_viewers == 0 || self.max_viewers > 100_000 {
            return Err(ConfigError::new(
                "whep.max_viewers",
                "must be between 1 and 100000",
            ));
        }
        Ok(())
    }
}
