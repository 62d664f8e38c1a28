//! A live session's WHEP feed: what its publishers' outputs hand to the WebRTC socket task for
//! the session's viewers. One per live session (it outlives a publisher replaced within the
//! session, so viewers stay connected across a reconnect).
//!
//! ```text
//!  WhepStage (publisher's LiveOutput) ──Video (Annex B)──┐
//!  AacToOpus (GStreamer thread)       ──Audio (Opus)─────┤ try_send ──> socket task ──> every
//!  WHIP ingest session (socket task)  ──Audio (Opus)─────┘ (bounded)    viewer of the feed
//! ```
//!
//! A sample is converted once per stream and shared by every viewer (`Arc<[u8]>`, which str0m's
//! writer takes without copying). Sends never wait: a full channel loses the sample and marks a
//! gap, after which every viewer of the feed waits for the next keyframe. Nothing is converted
//! or transcoded while the feed has no viewer ([`WhepFeed::has_viewers`]).

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
};

use tokio::sync::mpsc;

/// One media sample for the viewers of a feed. `ms` is the presentation time on the live
/// session's millisecond timeline (the clock the HLS outputs use, shared by audio and video,
/// so the viewers' lip sync is the publisher's).
#[derive(Debug, Clone)]
pub enum Sample {
    /// One H.264 access unit in Annex B form (parameter sets in front of every IDR).
    Video {
        data: Arc<[u8]>,
        ms: u64,
        keyframe: bool,
    },
    /// One Opus packet (48 kHz).
    Audio { data: Arc<[u8]>, ms: u64 },
    /// The live session ended: its viewers are closed.
    End,
}

/// What travels to the socket task.
#[derive(Debug)]
pub(crate) struct FeedMsg {
    pub feed: u64,
    /// Samples of this feed were lost before this one: viewers wait for a keyframe.
    pub after_gap: bool,
    pub sample: Sample,
}

/// The handle publishers' outputs (and the WHIP ingest) write to.
pub struct WhepFeed {
    pub(crate) id: u64,
    tx: mpsc::Sender<FeedMsg>,
    /// Connected viewers, kept by the socket task.
    pub(crate) viewers: AtomicUsize,
    gap: AtomicBool,
    /// Samples lost to a full channel (the socket task falling behind).
    lost: AtomicU64,
}

impl WhepFeed {
    pub(crate) fn new(id: u64, tx: mpsc::Sender<FeedMsg>) -> Arc<WhepFeed> {
        Arc::new(WhepFeed {
            id,
            tx,
            viewers: AtomicUsize::new(0),
            gap: AtomicBool::new(false),
            lost: AtomicU64::new(0),
        })
    }

    /// Whether anyone watches: outputs convert and transcode only then.
    pub fn has_viewers(&self) -> bool {
        self.viewers.load(Ordering::Relaxed) > 0
    }

    /// Connected viewers.
    pub fn viewer_count(&self) -> usize {
        self.viewers.load(Ordering::Relaxed)
    }

    /// Samples lost because the socket task was behind.
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }

    /// Hand `sample` to the viewers; never waits (any thread).
    pub fn send(&self, sample: Sample) {
        let after_gap = self.gap.swap(false, Ordering::AcqRel);
        let msg = FeedMsg {
            feed: self.id,
            after_gap,
            sample,
        };
        if let Err(e) = self.tx.try_send(msg) {
            let closed = matches!(e, mpsc::error::TrySendError::Closed(_));
            if !closed {
                self.gap.store(true, Ordering::Release);
                let n = self.lost.fetch_add(1, Ordering::Relaxed) + 1;
                if n % 100 == 1 {
                    tracing::warn!(
                        feed = self.id,
                        lost = n,
                        "WHEP feed queue full: samples lost"
                    );
                }
            }
        }
    }

    /// The live session is over: close its viewers. Waits for room (the end must arrive).
    pub async fn end(&self) {
        let _ = self
            .tx
            .send(FeedMsg {
                feed: self.id,
                after_gap: false,
                sample: Sample::End,
            })
            .await;
    }
}

impl std::fmt::Debug for WhepFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhepFeed")
            .field("id", &self.id)
            .field("viewers", &self.viewer_count())
            .finish_non_exhaustive()
    }
}
