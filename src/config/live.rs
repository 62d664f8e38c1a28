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

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
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
