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

/// One media sample for the viewers of a feed. `ms` is the presentation time on the
/// publisher's millisecond clock (its RTMP timestamps; a WHIP session's clock for its video
/// and its Opus alike), so the viewers' lip sync is the publisher's.
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

/// The handle publishers' outputs (and the WHIP ingest) write to. Viewers live in several
/// socket tasks (one per core: [`crate::whip::WhipServer`]); a sample goes to each task that
/// has viewers of the feed.
pub struct WhepFeed {
    pub(crate) id: u64,
    /// One channel per viewer task.
    txs: Arc<[mpsc::Sender<FeedMsg>]>,
    /// Connected viewers per task, kept by each task.
    pub(crate) viewers: Box<[AtomicUsize]>,
    /// Samples lost to a task's full channel, per task: its viewers wait for a keyframe.
    gaps: Box<[AtomicBool]>,
    /// A viewer asked for a keyframe: the WHIP ingest task reads it (RTMP cannot be asked).
    keyframe_wanted: AtomicBool,
    /// Samples of this feed lost because a task was behind (for the log's rate limit).
    lost: AtomicU64,
}

impl WhepFeed {
    pub(crate) fn new(id: u64, txs: Arc<[mpsc::Sender<FeedMsg>]>) -> Arc<WhepFeed> {
        let n = txs.len();
        Arc::new(WhepFeed {
            id,
            txs,
            viewers: (0..n).map(|_| AtomicUsize::new(0)).collect(),
            gaps: (0..n).map(|_| AtomicBool::new(false)).collect(),
            keyframe_wanted: AtomicBool::new(false),
            lost: AtomicU64::new(0),
        })
    }

    /// Whether anyone watches: outputs convert and transcode only then.
    pub fn has_viewers(&self) -> bool {
        self.viewers.iter().any(|v| v.load(Ordering::Relaxed) > 0)
    }

    /// Connected viewers.
    pub fn viewer_count(&self) -> usize {
        self.viewers.iter().map(|v| v.load(Ordering::Relaxed)).sum()
    }

    /// A viewer needs a keyframe (it joined, or its picture broke).
    pub(crate) fn want_keyframe(&self) {
        self.keyframe_wanted.store(true, Ordering::Relaxed);
    }

    /// Whether a keyframe was wanted since the last call (the WHIP ingest asks its publisher).
    pub(crate) fn take_keyframe_wanted(&self) -> bool {
        self.keyframe_wanted.swap(false, Ordering::Relaxed)
    }

    /// Hand `sample` to the viewers; never waits (any thread).
    pub fn send(&self, sample: Sample) {
        for (i, tx) in self.txs.iter().enumerate() {
            if self.viewers[i].load(Ordering::Relaxed) == 0 {
                continue;
            }
            let after_gap = self.gaps[i].swap(false, Ordering::AcqRel);
            let msg = FeedMsg {
                feed: self.id,
                after_gap,
                sample: sample.clone(),
            };
            if let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send(msg) {
                self.gaps[i].store(true, Ordering::Release);
                metrics::counter!("whep_samples_lost_total").increment(1);
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
        for tx in self.txs.iter() {
            let _ = tx
                .send(FeedMsg {
                    feed: self.id,
                    after_gap: false,
                    sample: Sample::End,
                })
                .await;
        }
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
