//! Media frames: what every ingest (RTMP, WHIP) produces and every output (the live packager,
//! the recorder) consumes, so that neither side knows the other's protocol.
//!
//! A publish is a stream of [`MediaFrame`]s: [`MediaFrame::Metadata`] whenever more is known
//! about the stream ([`StreamInfo`]), video and audio frames whose bodies are FLV tag bodies
//! ([`crate::flv`]) with monotonic millisecond timestamps, and exactly one [`MediaFrame::End`]
//! saying why it ended ([`EndReason`]). Codecs are [`crate::codec`]'s.

use bytes::Bytes;

use crate::codec::{AudioCodec, VideoCodec};

/// What a granted publish produces, in order, whatever the ingest.
#[derive(Debug, Clone, PartialEq)]
pub enum MediaFrame {
    /// What is known about the stream: sent on `onMetaData` and again when a sequence header
    /// adds to it (profile/level, sample rate, channels). Each one is the full picture so far.
    Metadata(StreamInfo),
    Video(VideoFrame),
    Audio(AudioFrame),
    /// The last frame of every granted publish, sent exactly once.
    End(EndReason),
}

/// One FLV video tag body ([`crate::flv`]). Timestamps are repaired by the ingest (RTMP's 32-bit
/// timestamps are unwrapped and their jumps bounded).
#[derive(Debug, Clone, PartialEq)]
pub struct VideoFrame {
    /// Decode timestamp in ms: monotonic non-decreasing, continuous across the 32-bit wrap.
    pub dts_ms: u64,
    /// Composition time offset (PTS − DTS) in ms, from the tag (0 where the codec has none).
    pub cts_ms: i32,
    pub keyframe: bool,
    /// AVCDecoderConfigurationRecord (or hvcC/av1C for enhanced RTMP) rather than coded frames.
    pub sequence_header: bool,
    pub codec: VideoCodec,
    /// The FLV VIDEODATA body exactly as received (first byte = frame type / codec id).
    pub data: Bytes,
}

/// One FLV audio tag body ([`crate::flv`]).
#[derive(Debug, Clone, PartialEq)]
pub struct AudioFrame {
    /// Decode timestamp in ms: monotonic non-decreasing, continuous across the 32-bit wrap.
    pub dts_ms: u64,
    /// AudioSpecificConfig (AAC packet type 0) rather than raw frames.
    pub sequence_header: bool,
    pub codec: AudioCodec,
    /// The FLV AUDIODATA body exactly as received (first byte = sound format/rate/size/type).
    pub data: Bytes,
}

/// Stream description: from RTMP's `onMetaData` or WHIP's negotiation, completed from the
/// sequence headers. Every field is optional: encoders send what they like.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamInfo {
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub frame_rate: Option<f64>,
    pub video_codec: Option<VideoCodec>,
    pub audio_codec: Option<AudioCodec>,
    pub video_bitrate_kbps: Option<u32>,
    pub audio_bitrate_kbps: Option<u32>,
    pub audio_sample_rate: Option<u32>,
    pub audio_channels: Option<u8>,
    /// H.264 `profile_idc` (66 baseline, 77 main, 100 high) or HEVC `general_profile_idc`, from
    /// the sequence header.
    pub video_profile: Option<u8>,
    /// H.264 `level_idc` (31 = 3.1) or HEVC `general_level_idc`, from the sequence header.
    pub video_level: Option<u8>,
    /// The `encoder` string (e.g. `Lavf59.27.100`, `obs-output module`), at most 256 chars.
    pub encoder: Option<String>,
}

/// Why a granted publish ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    /// The publisher unpublished (RTMP `deleteStream`, WHIP `DELETE`) or closed its connection.
    PublisherClosed,
    /// [`crate::ingest::PublishGrant::kick`] was cancelled, or the frame receiver was dropped.
    Kicked,
    /// The publisher went silent: no media for RTMP's `idle_timeout`, or WHIP's ICE connection dropped.
    Timeout,
    /// The publisher sent something we refuse to parse (the reason is logged too).
    ProtocolError(String),
    /// The server is shutting down (the ingest server's shutdown token was cancelled).
    Shutdown,
}

impl EndReason {
    /// Stable label for logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            EndReason::PublisherClosed => "publisher_closed",
            EndReason::Kicked => "kicked",
            EndReason::Timeout => "timeout",
            EndReason::ProtocolError(_) => "protocol_error",
            EndReason::Shutdown => "shutdown",
        }
    }
}

/// The fuzz targets' input format, shared by the packagers' fuzz entries: records of
/// `[kind][dts step][len: u16 big-endian][body]`, yielded as (kind, DTS so far, body); a
/// length past the end takes what is left.
#[doc(hidden)]
pub fn fuzz_records(data: &[u8]) -> impl Iterator<Item = (u8, u64, &[u8])> {
    let mut rest = data;
    let mut dts = 0u64;
    std::iter::from_fn(move || {
        if rest.len() < 4 {
            return None;
        }
        let kind = rest[0];
        dts += u64::from(rest[1]);
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]])).min(rest.len() - 4);
        let body = &rest[4..4 + len];
        rest = &rest[4 + len..];
        Some((kind, dts, body))
    })
}

/// Frames for the packagers' unit tests: an AVC sequence header (High, level 3.1), one-slice
/// H.264 access units (IDR or not) and AAC (LC, 44.1 kHz stereo) frames, as FLV tag bodies.
#[cfg(test)]
pub(crate) mod samples {
    use bytes::Bytes;

    use super::{AudioFrame, MediaFrame, VideoFrame};
    use crate::codec::{AudioCodec, VideoCodec};

    pub(crate) fn avc_header() -> MediaFrame {
        let mut body = vec![0x17, 0x00, 0, 0, 0];
        body.extend_from_slice(&[
            1, 0x64, 0x00, 0x1F, 0xFF, 0xE1, 0, 4, 0x67, 0x64, 0x00, 0x1F,
        ]);
        body.extend_from_slice(&[1, 0, 2, 0x68, 0xEE]);
        MediaFrame::Video(VideoFrame {
            dts_ms: 0,
            cts_ms: 0,
            keyframe: true,
            sequence_header: true,
            codec: VideoCodec::H264,
            data: Bytes::from(body),
        })
    }

    /// An access unit of one slice: IDR (and flagged a keyframe) or not.
    pub(crate) fn video(dts_ms: u64, idr: bool) -> MediaFrame {
        let mut body = vec![if idr { 0x17 } else { 0x27 }, 0x01, 0, 0, 0];
        body.extend_from_slice(&[0, 0, 0, 3, if idr { 0x65 } else { 0x41 }, 0x88, 0x84]);
        MediaFrame::Video(VideoFrame {
            dts_ms,
            cts_ms: 0,
            keyframe: idr,
            sequence_header: false,
            codec: VideoCodec::H264,
            data: Bytes::from(body),
        })
    }

    /// An AAC frame, or (`header`) the AudioSpecificConfig.
    pub(crate) fn aac(dts_ms: u64, header: bool) -> MediaFrame {
        let body = if header {
            vec![0xAF, 0x00, 0x12, 0x10]
        } else {
            vec![0xAF, 0x01, 0x21, 0x10, 0x04]
        };
        MediaFrame::Audio(AudioFrame {
            dts_ms,
            sequence_header: header,
            codec: AudioCodec::Aac,
            data: Bytes::from(body),
        })
    }

    /// A xorshift generator for the fuzz smoke tests: the same inputs on every run.
    pub(crate) fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
        move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        }
    }

    /// What a fuzz smoke test starts its input with: the AVC and AAC configurations, as
    /// `[kind][dts step][len: u16][body]` records.
    pub(crate) const FUZZ_HEADER: &[u8] = &[
        0, 0, 0, 22, 0x17, 0x00, 0, 0, 0, 1, 0x64, 0, 0x1F, 0xFF, 0xE1, 0, 4, 0x67, 0x64, 0, 0x1F,
        1, 0, 2, 0x68, 0xEE, 1, 0, 0, 4, 0xAF, 0, 0x12, 0x10,
    ];
}
