//! Publishing, whatever the ingest: a publisher asks ([`PublishRequest`]), the service's
//! authority answers with a [`PublishGrant`] (where the frames go, how to kick the publisher) or a
//! [`RefuseReason`], and the ingest then produces [`MediaFrame`]s until one
//! [`MediaFrame::End`] (its [`crate::frame::EndReason`] says why).
//!
//! RTMP and WHIP servers both speak this; the service implements the authority once.

use std::net::SocketAddr;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::frame::MediaFrame;
use crate::live::OutputSlot;

/// A publisher asked to publish; the receiver (the service's authority) must answer on `reply`.
/// Dropping `reply` refuses the publish as [`RefuseReason::Busy`].
#[derive(Debug)]
pub struct PublishRequest {
    /// RTMP application from `connect` (`live` for `rtmp://host/live/<key>`), without a trailing
    /// `/` or `?query`; other ingests say `live`.
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
    /// closes and [`crate::frame::EndReason::Kicked`] is sent.
    pub kick: CancellationToken,
    /// The publisher's output stage, for an ingest that runs it inline. The RTMP server takes
    /// it (if there is one) and calls it with each frame in the connection task instead of
    /// sending frames on `frames`; an empty slot means "use the channel".
    pub output: OutputSlot,
    /// The live session's WHEP feed, for an ingest that has Opus to pass through (WHIP).
    pub whep: Option<std::sync::Arc<crate::whep::WhepFeed>>,
}

impl PublishGrant {
    /// A grant whose frames all go to `frames` (no inline output).
    pub fn new(frames: mpsc::Sender<MediaFrame>, kick: CancellationToken) -> PublishGrant {
        PublishGrant {
            frames,
            kick,
            output: Default::default(),
            whep: None,
        }
    }
}

/// Why a publish was refused. Each ingest tells its publisher in its own words and closes: RTMP
/// with an `onStatus` error (codes below), WHIP with the HTTP status the service maps it to.
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
}

impl std::fmt::Display for RefuseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
