//! `[live]`: the live HLS packager.

use serde::{Deserialize, Serialize};

use super::ConfigError;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LiveSettings {
    pub segment_duration_s: f64,
    /// The longest segment the packager makes, which every live and recording playlist
    /// announces as `EXT-X-TARGETDURATION` (it may never change, RFC 8216 §6.2.1). Absent:
    /// twice `segment_duration_s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_max_duration_s: Option<f64>,
    pub window_segments: usize,
    pub frame_queue: usize,
    /// Low-Latency HLS (`/hls/live/{id}/ll.m3u8`): `off`, `on_demand` (parts are made while
    /// someone watches at low latency) or `always`.
    #[serde(default)]
    pub ll_hls: LlHlsMode,
    /// LL-HLS part target (`EXT-X-PART-INF:PART-TARGET`), in seconds.
    #[serde(default = "default_part_duration")]
    pub part_duration_s: f64,
    /// How often this node writes its heartbeat (and looks for lost nodes), seconds.
    pub node_heartbeat_s: u64,
    /// A node silent this long is lost: another node ends its live streams. Seconds.
    pub node_lost_after_s: u64,
    /// Where the other nodes reach this node's HTTP listener, to forward live HLS requests
    /// for the streams it holds. Absent: `http://` + `http.listen`, with this machine's host
    /// name for an unspecified address (0.0.0.0).
    #[serde(
        default,
        deserialize_with = "super::http::empty_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub internal_url: Option<url::Url>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LlHlsMode {
    Off,
    #[default]
    OnDemand,
    Always,
}

fn default_part_duration() -> f64 {
    0.2
}

impl LiveSettings {
    /// Segment lengths for the packager: the target and the maximum.
    pub fn segment_limits(&self) -> wemaster_media::packager::SegmentLimits {
        let target = std::time::Duration::from_secs_f64(self.segment_duration_s);
        wemaster_media::packager::SegmentLimits {
            target,
            max: self
                .segment_max_duration_s
                .map_or(target * 2, std::time::Duration::from_secs_f64),
        }
    }

    /// What the LL-HLS output makes, or `None` when it is off.
    pub fn ll(
        &self,
    ) -> Option<(
        wemaster_media::llhls::LlLimits,
        wemaster_media::live::LlMode,
    )> {
        let mode = match self.ll_hls {
            LlHlsMode::Off => return None,
            LlHlsMode::OnDemand => wemaster_media::live::LlMode::OnDemand,
            LlHlsMode::Always => wemaster_media::live::LlMode::Always,
        };
        let segments = self.segment_limits();
        Some((
            wemaster_media::llhls::LlLimits {
                part_target: std::time::Duration::from_secs_f64(self.part_duration_s),
                segment_target: segments.target,
                segment_max: segments.max,
            },
            mode,
        ))
    }

    /// Where the other nodes reach this one (see `internal_url`).
    pub fn internal_url(&self, listen: std::net::SocketAddr) -> String {
        if let Some(u) = &self.internal_url {
            return u.as_str().trim_end_matches('/').to_owned();
        }
        let host = if listen.ip().is_unspecified() {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "127.0.0.1".into())
        } else if listen.is_ipv6() {
            format!("[{}]", listen.ip())
        } else {
            listen.ip().to_string()
        };
        format!("http://{host}:{}", listen.port())
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if let Some(u) = &self.internal_url
            && (!matches!(u.scheme(), "http" | "https")
                || u.host().is_none()
                || u.query().is_some()
                || u.path() != "/")
        {
            return Err(ConfigError::new(
                "live.internal_url",
                "must be an http(s) URL of this node's HTTP listener, without a path",
            ));
        }
        if self.node_heartbeat_s == 0 || self.node_lost_after_s < 2 * self.node_heartbeat_s {
            return Err(ConfigError::new(
                "live.node_lost_after_s",
                "must be at least twice live.node_heartbeat_s (which must be at least 1)",
            ));
        }
        if !(0.1..=2.0).contains(&self.part_duration_s)
            || self.part_duration_s > self.segment_duration_s / 2.0
        {
            return Err(ConfigError::new(
                "live.part_duration_s",
                "must be between 0.1 and 2 seconds, and at most half of live.segment_duration_s",
            ));
        }
        if !(0.5..=30.0).contains(&self.segment_duration_s) {
            return Err(ConfigError::new(
                "live.segment_duration_s",
                "must be between 0.5 and 30 seconds",
            ));
        }
        if let Some(max) = self.segment_max_duration_s
            && !(self.segment_duration_s..=60.0).contains(&max)
        {
            return Err(ConfigError::new(
                "live.segment_max_duration_s",
                "must be at least live.segment_duration_s and at most 60 seconds",
            ));
        }
        if !(2..=100).contains(&self.window_segments) {
            return Err(ConfigError::new(
                "live.window_segments",
                "must be between 2 and 100",
            ));
        }
        if !(16..=100_000).contains(&self.frame_queue) {
            return Err(ConfigError::new(
                "live.frame_queue",
                "must be between 16 and 100000",
            ));
        }
        Ok(())
    }
}
