//! WeMaster media core: ingest protocols, the live packager, HLS playlists and GStreamer
//! pipelines. This crate knows nothing of HTTP or SQL; the `wemaster` service depends on it,
//! never the reverse.
//!
//! ```text
//!  rtmp ──┐  PublishRequest ──> the service's authority ──> PublishGrant | RefuseReason  (ingest)
//!         ├─ MediaFrame (frame; payloads: flv; codecs: codec) ──> live ──> packager ──> ts ──> spool
//!  whip ──┘                                 the service lists segments (hls), records them (vod)
//! ```
//!
//! Dependencies run one way: the ingests import the core and the live output; the core imports
//! no protocol, and nothing outside [`rtmp`] imports it. docs/architecture.md has the map.
//!
//! The core every ingest and output shares (no protocol in it):
//! - [`frame`]: [`frame::MediaFrame`] and what it carries — video/audio frames, [`frame::StreamInfo`],
//!   and the [`frame::EndReason`] of a publish.
//! - [`codec`]: codec enums, FLV codec ids/FourCCs, AVC/HEVC/AAC decoder configuration records,
//!   [`codec::CodecError`].
//! - [`flv`]: FLV tag bodies, the byte format of every frame's payload.
//! - [`ingest`]: the publish exchange — [`ingest::PublishRequest`], [`ingest::PublishGrant`],
//!   [`ingest::RefuseReason`] — answered by the service's authority.
//!
//! Ingest protocols (each imports the core, never the other):
//! - [`rtmp`]: RTMP ingest, sans-IO core (chunks, AMF0, timestamps, connection) and tokio server.
//! - [`whip`]: WHIP ingest (str0m, one UDP socket), H.264 framing, Opus → AAC and VP8 → H.264.
//!
//! Outputs:
//! - [`live`]: one publisher's live output (inline or behind a channel) into the spool.
//! - [`packager`]: sans-IO frames → TS segments, cut at keyframes, on the session timeline.
//! - [`ts`]: the sans-IO MPEG-TS muxer (PAT/PMT, PES, Annex B, ADTS).
//! - [`llhls`]: sans-IO LL-HLS — frames → CMAF parts, the LL playlist, blocking reload rules.
//! - [`fmp4`]: the sans-IO fragmented MP4 muxer (init segments, `moof` + `mdat` fragments).
//! - [`hls`]: every HLS playlist the server writes: live window, recording EVENT/VOD lists.
//! - [`sps`]: H.264 SPS parsing (picture size, frame rate) for streams without metadata.
//!
//! GStreamer, at the edge:
//! - [`pipeline`]: pipeline templates (`pipelines/*.gst`) and [`pipeline::appsrc`], the running
//!   `appsrc ! … ! appsink` pipeline WHIP's transcoders use.
//! - [`vod`]: one-shot jobs on finished recordings (replay MP4, poster).
//! - [`doctor`]: is GStreamer usable and every element the templates name installed.

pub mod codec;
pub mod doctor;
pub mod flv;
pub mod fmp4;
pub mod frame;
pub mod hls;
pub mod ingest;
pub mod live;
pub mod llhls;
pub mod packager;
pub mod pipeline;
pub mod rtmp;
pub mod sps;
pub mod ts;
pub mod vod;
pub mod whep;
pub mod whip;

/// Initialise GStreamer once per process. Safe to call repeatedly.
pub fn init() -> Result<(), gstreamer::glib::Error> {
    gstreamer::init()
}

/// The GStreamer runtime version, e.g. "GStreamer 1.22.0".
pub fn gstreamer_version() -> String {
    gstreamer::version_string().to_string()
}
