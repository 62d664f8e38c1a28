//! RTMP ingest: publishers (OBS, ffmpeg/Jibri, GStreamer `rtmp2sink`) push FLV-in-RTMP to
//! `rtmp://host:1935/live/<stream_key>`; this module turns each accepted publish into a stream of
//! [`MediaFrame`]s on a bounded channel.
//!
//! Layout (protocol apart from the server, sans-IO cores with socket-free tests):
//! - [`chunk`]: the inbound chunk-stream reader (header decompression, per-chunk-stream message
//!   assembly, every size bounded).
//! - [`amf0`]: a bounded AMF0 decoder for commands and metadata (depth- and size-limited).
//! - [`flv`]: FLV VIDEODATA/AUDIODATA body parsing, AVCDecoderConfigurationRecord and
//!   AudioSpecificConfig.
//! - [`timestamps`]: 32-bit RTMP timestamps → monotonic 64-bit per-track DTS (wrap, jumps).
//! - [`connection`]: the per-connection state machine (handshake, connect/createStream/publish,
//!   media). Bytes and time in; bytes to send, publish requests and frames out.
//! - `server`: [`serve`], the tokio accept loop and per-connection task that only moves bytes
//!   between the socket, the core and the channels.
//!
//! What comes from `rml_rtmp` and what is ours: the handshake (`rml_rtmp::handshake`) and the
//! outbound chunk serializer and message encoding (`ChunkSerializer`, `RtmpMessage`) are used as
//! is. The inbound side is written here because `rml_rtmp`'s is unfit for hostile input:
//! its `ChunkDeserializer` keeps one payload buffer for all chunk streams (interleaved chunk
//! streams corrupt messages or panic on a length underflow, then on `reserve` overflow), panics on
//! an extended-timestamp underflow, reserves whatever length a header announces; `rml_amf0`
//! recurses without a depth limit (a few MiB of nested objects overflow the stack and abort the
//! process); and `ServerSession` indexes into AMF data it has not checked (`@setDataFrame` alone
//! panics), keeps every `createStream` forever, and its acknowledgement counter overflows (a
//! panic with overflow checks) after 4 GiB when a peer announces a window near 2^32.
//!
//! Flow per connection: handshake (bounded by [`RtmpConfig::handshake_timeout`]) → `connect` →
//! `createStream` → `publish` → a [`PublishRequest`] to the authority (the service), which answers
//! with a [`PublishGrant`] or a [`RefuseReason`] → frames flow into the grant's inline
//! [`crate::live::LiveOutput`] (the service's packager, run in the connection task) or, without
//! one, into [`PublishGrant::frames`] (awaited, so a slow consumer backpressures the publisher's
//! TCP) until the publisher leaves, goes silent, misbehaves, is kicked or the server shuts down;
//! then the output is finished, or exactly one [`MediaFrame::End`] is sent.

pub mod amf0;
pub mod chunk;
pub mod connection;
pub mod flv;
mod server;
#[doc(hidden)]
pub mod testing;
pub mod timestamps;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

pub use connection::{Connection, ConnectionError, Output};
pub use server::serve;
#[doc(hidden)]
pub use testing::{fuzz_connection, recorded_publish_session};

/// Limits and timeouts of the RTMP listener. Defaults suit OBS, ffmpeg and Jibri.
#[derive(Debug, Clone)]
pub struct RtmpConfig {
    /// Largest RTMP message accepted (a keyframe of a 1080p stream is well under 1 MiB); a larger
    /// announced message or chunk size closes the connection. Default 8 MiB.
    pub max_message_bytes: usize,
    /// Time allowed from TCP accept to a completed handshake. Default 5 s.
    pub handshake_timeout: Duration,
    /// Before publishing: time allowed from the handshake to the `publish` command (and for the
    /// authority to answer it). While publishing: the longest silence without a media message.
    /// Default 10 s.
    pub idle_timeout: Duration,
    /// Connections served at once; further ones are closed right after accept. Default 1000.
    pub max_connections: usize,
    /// Capacity of the frame channel a [`PublishGrant`] is expected to use; the service creates
    /// the channel, this is the size it should pick. Default 512.
    pub frame_queue: usize,
}

impl Default for RtmpConfig {
    fn default() -> Self {
        Self {
            max_message_bytes: 8 * 1024 * 1024,
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(10),
            max_connections: 1000,
            frame_queue: 512,
        }
    }
}

/// A publisher asked to publish; the receiver (the service's authority) must answer on `reply`.
/// Dropping `reply` refuses the publish as [`RefuseReason::Busy`].
#[derive(Debug)]
pub struct PublishRequest {
    /// RTMP application from `connect` (`live` for `rtmp://host/live/<key>`), without a trailing
    /// `/` or `?query`.
    pub app: String,
    /// The publish name with any `?query` suffix removed. A secret: do not log it.
    pub stream_key: String,
    pub peer: SocketAddr,
    /// The ingest protocol, for events and the API: `"rtmp"` or `"whip"`.
    pub protocol: &'static str,
    pub reply: oneshot::Sender<Result<PublishGrant, RefuseReason>>,
}

/// Where an accepted publish sends its frames, and how the service ends it.
#[derive(Debug, Clone)]
pub struct PublishGrant {
    /// Frames in publish order, ending with exactly one [`MediaFrame::End`]. Sends are awaited:
    /// a full channel stops reading from the publisher's socket.
    pub frames: mpsc::Sender<MediaFrame>,
    /// Cancel to drop the publisher (replaced by a new one, stream disabled); the connection then
    /// closes and [`EndReason::Kicked`] is sent.
    pub kick: CancellationToken,
    /// The publisher's output stage, for an ingest that runs it inline. The RTMP server takes
    /// it (if there is one) and calls it with each frame in the connection task instead of
    /// sending frames on `frames`; an empty slot means "use the channel".
    pub output: crate::live::OutputSlot,
}

impl PublishGrant {
    /// A grant whose frames all go to `frames` (no inline output).
    pub fn new(frames: mpsc::Sender<MediaFrame>, kick: CancellationToken) -> PublishGrant {
        PublishGrant {
            frames,
            kick,
            output: Default::default(),
        }
    }
}

/// Why a publish was refused. The publisher receives an `onStatus` error with
/// [`RefuseReason::status_code`] and the connection is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefuseReason {
    /// No live stream has this key → `NetStream.Publish.BadName`.
    UnknownKey,
    /// The live stream exists but is disabled → `NetStream.Publish.Denied`.
    Disabled,
    /// The application is not `live` → `NetStream.Publish.BadName`.
    WrongApp,
    /// The server cannot take the publish now (overloaded, authority unavailable) →
    /// `NetStream.Publish.Denied`.
    Busy,
}

impl RefuseReason {
    /// Stable label for logs and the `rtmp_refused_total{reason}` metric.
    pub fn as_str(&self) -> &'static str {
        match self {
            RefuseReason::UnknownKey => "unknown_key",
            RefuseReason::Disabled => "disabled",
            RefuseReason::WrongApp => "wrong_app",
            RefuseReason::Busy => "busy",
        }
    }

    /// The `onStatus` code sent to the publisher.
    pub fn status_code(&self) -> &'static str {
        match self {
            RefuseReason::UnknownKey | RefuseReason::WrongApp => "NetStream.Publish.BadName",
            RefuseReason::Disabled | RefuseReason::Busy => "NetStream.Publish.Denied",
        }
    }

    fn description(&self) -> &'static str {
        match self {
            RefuseReason::UnknownKey => "Unknown stream key",
            RefuseReason::Disabled => "This live stream is disabled",
            RefuseReason::WrongApp => "Unknown application; publish to rtmp://host/live/<key>",
            RefuseReason::Busy => "Server busy, try again later",
        }
    }
}

impl std::fmt::Display for RefuseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a granted publish produces, in order.
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

/// One FLV video tag body. Timestamps are repaired (see [`timestamps`]).
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

/// One FLV audio tag body.
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

/// Video codecs recognised in FLV tags (codec id) and enhanced RTMP (FourCC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VideoCodec {
    /// Legacy codec id 7 or FourCC `avc1`.
    H264,
    /// FourCC `hvc1` (enhanced RTMP) or the unofficial codec id 12.
    Hevc,
    /// FourCC `av01`.
    Av1,
    /// FourCC `vp09`.
    Vp9,
    /// A legacy codec id (e.g. 2 = Sorenson H.263) or an unknown FourCC (big-endian u32).
    Other(u32),
}

/// Audio codecs recognised in FLV tags (sound format) and enhanced RTMP (FourCC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AudioCodec {
    /// Sound format 10 or FourCC `mp4a`.
    Aac,
    /// Sound format 2 or FourCC `.mp3`.
    Mp3,
    /// FourCC `Opus`.
    Opus,
    /// Any other sound format or FourCC (big-endian u32).
    Other(u32),
}

/// Stream description from `onMetaData`, completed from the sequence headers. Every field is
/// optional: encoders send what they like.
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
    /// The publisher unpublished (`deleteStream`) or closed/reset its TCP connection.
    PublisherClosed,
    /// [`PublishGrant::kick`] was cancelled, or the frame receiver was dropped.
    Kicked,
    /// No media for [`RtmpConfig::idle_timeout`].
    Timeout,
    /// The publisher sent something we refuse to parse (the reason is logged too).
    ProtocolError(String),
    /// The server is shutting down (`serve`'s shutdown token was cancelled).
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
