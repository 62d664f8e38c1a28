//! RTMP ingest: publishers (OBS, ffmpeg/Jibri, GStreamer `rtmp2sink`) push FLV-in-RTMP to
//! `rtmp://host:1935/live/<stream_key>`; this module turns each accepted publish into a stream of
//! [`MediaFrame`]s on a bounded channel.
//!
//! Layout (protocol apart from the server, sans-IO cores with socket-free tests):
//! - [`chunk`]: the inbound chunk-stream reader (header decompression, per-chunk-stream message
//!   assembly, every size bounded).
//! - [`amf0`]: a bounded AMF0 decoder for commands and metadata (depth- and size-limited).
//! - [`timestamps`]: 32-bit RTMP timestamps → monotonic 64-bit per-track DTS (wrap, jumps).
//! - [`connection`]: the per-connection state machine (handshake, connect/createStream/publish,
//!   media). Bytes and time in; bytes to send, publish requests and frames out.
//! - `server`: [`serve`], the tokio accept loop and per-connection task that only moves bytes
//!   between the socket, the core and the channels.
//!
//! The frames, codecs and the publish exchange are the ingest-neutral core's ([`crate::frame`],
//! [`crate::flv`], [`crate::codec`], [`crate::ingest`]); this module only speaks RTMP.
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
mod server;
#[doc(hidden)]
pub mod testing;
pub mod timestamps;

use std::time::Duration;

pub use connection::{Connection, ConnectionError, Output};
// What a publish exchanges is ingest-neutral and lives in the core ([`crate::ingest`],
// [`crate::frame`], [`crate::codec`]); re-exported so `rtmp::X` keeps naming what this server
// speaks (the service and the RTMP tests use these paths). Code outside `rtmp/` imports the core.
pub use crate::codec::{AudioCodec, VideoCodec};
pub use crate::frame::{AudioFrame, EndReason, MediaFrame, StreamInfo, VideoFrame};
pub use crate::ingest::{PublishGrant, PublishRequest, RefuseReason};
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

/// The `onStatus` code and description a refused RTMP publisher receives.
fn refusal_status(reason: RefuseReason) -> (&'static str, &'static str) {
    match reason {
        RefuseReason::UnknownKey => ("NetStream.Publish.BadName", "Unknown stream key"),
        RefuseReason::Disabled => ("NetStream.Publish.Denied", "This live stream is disabled"),
        RefuseReason::WrongApp => (
            "NetStream.Publish.BadName",
            "Unknown application; publish to rtmp://host/live/<key>",
        ),
        RefuseReason::Busy => ("NetStream.Publish.Denied", "Server busy, try again later"),
    }
}
