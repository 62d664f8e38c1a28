//! WeMaster media core: ingest protocols, GStreamer pipelines, HLS playlists, recorder and
//! uploader. This crate knows nothing of HTTP or SQL; the `wemaster` service depends on it,
//! never the reverse.
//!
//! Today it holds the pipeline templates ([`pipeline`]) and the GStreamer environment checks
//! ([`doctor`]); RTMP/WHIP ingest and the live pipeline runner build on them.

pub mod codec;
pub mod doctor;
pub mod flv;
pub mod frame;
pub mod hls;
pub mod ingest;
pub mod live;
pub mod packager;
pub mod pipeline;
pub mod rtmp;
pub mod sps;
pub mod ts;
pub mod vod;
pub mod whip;

/// Initialise GStreamer once per process. Safe to call repeatedly.
pub fn init() -> Result<(), gstreamer::glib::Error> {
    gstreamer::init()
}

/// The GStreamer runtime version, e.g. "GStreamer 1.22.0".
pub fn gstreamer_version() -> String {
    gstreamer::version_string().to_string()
}
