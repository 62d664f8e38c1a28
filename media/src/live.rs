//! One publisher's live output: frames from the ingest (RTMP today, WHIP later) → the
//! [`Packager`] → MPEG-TS segments in the session's spool directory.
//!
//! ```text
//!  frames (mpsc) --> publisher task: Packager (TS mux, cut at keyframes) --> segment-N.ts.part
//!                                                                            | rename at the cut
//!  PublisherEvent (mpsc) <-- Started / SegmentClosed{segment-N.ts} / Ended <-+
//! ```
//!
//! The task is an ordinary async task: remuxing a frame is a few microseconds of copying, so
//! it needs no thread of its own and no hop between threads. Writes go to the spool in
//! 128 KiB pieces with plain `std::fs` calls: they land in the page cache in microseconds, and
//! a thread hop per write would cost more than the write. A segment is written as
//! `segment-N.ts.part` and renamed when it closes, so a crash leaves the unfinished segment
//! recognisable and every `.ts` in the spool complete. The channel is bounded: a stalled disk
//! slows the publisher's TCP, not our memory.

use std::{
    fs::File,
    io::Write,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::sync::mpsc;

use crate::packager::{Closed, Packager, Step};
use crate::rtmp::{EndReason, MediaFrame, StreamInfo};

/// Where and how a publisher's segments are written.
#[derive(Debug, Clone)]
pub struct PackagerConfig {
    /// The session's spool directory (exists).
    pub dir: PathBuf,
    /// Target segment duration; segments are cut at the first keyframe at or past it.
    pub segment_duration: Duration,
    /// Index of the first segment (`segment-%08d.ts`); each publisher of a session starts a
    /// new range so names never collide across reconnects.
    pub start_index: u64,
    /// Where this publisher's first keyframe goes on the session timeline: where the previous
    /// publisher's last segment ended (`SegmentClosed::end_ms`), 0 for the first.
    pub timeline_start_ms: u64,
}

/// What happens to a publisher's output, in order: `Started`, any number of
/// `SegmentClosed`, then exactly one `Ended`.
#[derive(Debug, Clone, PartialEq)]
pub enum PublisherEvent {
    Started {
        has_audio: bool,
    },
    SegmentClosed {
        path: PathBuf,
        duration_ns: u64,
        /// End of the segment on the session timeline, in ms.
        end_ms: u64,
    },
    Ended {
        reason: EndReason,
        error: Option<String>,
    },
}

/// Counters the session reads while the publisher runs.
#[derive(Debug, Default)]
pub struct PublisherStats {
    pub bytes_in: AtomicU64,
    pub video_frames: AtomicU64,
    pub audio_frames: AtomicU64,
    pub info: Mutex<Option<StreamInfo>>,
}

/// The file name of segment `index`.
pub fn segment_name(index: u64) -> String {
    format!("segment-{index:08}.ts")
}

/// Run a publisher's packager until its frames end.
pub fn spawn_publisher(
    config: PackagerConfig,
    frames: mpsc::Receiver<MediaFrame>,
    events: mpsc::UnboundedSender<PublisherEvent>,
    stats: Arc<PublisherStats>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let (reason, error) = run(config, frames, &events, &stats).await;
        let _ = events.send(PublisherEvent::Ended { reason, error });
    })
}

async fn run(
    config: PackagerConfig,
    mut frames: mpsc::Receiver<MediaFrame>,
    events: &mpsc::UnboundedSender<PublisherEvent>,
    stats: &PublisherStats,
) -> (EndReason, Option<String>) {
    let mut packager = Packager::new(
        config.segment_duration,
        config.start_index,
        config.timeline_start_ms,
    );
    let mut spool = Spool::new(config.dir);
    let mut reason = EndReason::PublisherClosed;
    while let Some(frame) = frames.recv().await {
        account(stats, &frame);
        let frame = match frame {
            MediaFrame::End(r) => {
                reason = r;
                break;
            }
            MediaFrame::Metadata(info) => {
                if let Ok(mut i) = stats.info.lock() {
                    *i = Some(info);
                }
                continue;
            }
            f => f,
        };
        let step = match packager.push(frame) {
            Ok(step) => step,
            Err(e) => {
                spool.abandon();
                return (EndReason::ProtocolError(e.to_string()), None);
            }
        };
        let result = match step {
            Step::Continue if packager.wants_flush() => spool.write(&mut packager),
            Step::Continue => Ok(()),
            Step::Started { index, has_audio } => {
                let _ = events.send(PublisherEvent::Started { has_audio });
                spool.open(index)
            }
            Step::Cut { closed, index } => {
                spool.close(&mut packager, closed, events).and_then(|()| {
                    packager.begin_next();
                    spool.open(index)
                })
            }
        };
        if let Err(e) = result {
            spool.abandon();
            return (reason, Some(format!("cannot write to the spool: {e}")));
        }
    }
    drop(frames);
    // The publisher is gone: the open segment ends at its last frame.
    if let Some(closed) = packager.finish() {
        if let Err(e) = spool.close(&mut packager, closed, events) {
            spool.abandon();
            return (reason, Some(format!("cannot write to the spool: {e}")));
        }
    }
    (reason, None)
}

fn account(stats: &PublisherStats, frame: &MediaFrame) {
    match frame {
        MediaFrame::Video(v) => {
            stats
                .bytes_in
                .fetch_add(v.data.len() as u64, Ordering::Relaxed);
            stats.video_frames.fetch_add(1, Ordering::Relaxed);
        }
        MediaFrame::Audio(a) => {
            stats
                .bytes_in
                .fetch_add(a.data.len() as u64, Ordering::Relaxed);
            stats.audio_frames.fetch_add(1, Ordering::Relaxed);
        }
        _ => {}
    }
}

/// The open segment file and a reusable write buffer.
struct Spool {
    dir: PathBuf,
    open: Option<(File, PathBuf)>,
    buf: Vec<u8>,
}

impl Spool {
    fn new(dir: PathBuf) -> Spool {
        Spool {
            dir,
            open: None,
            buf: Vec::new(),
        }
    }

    fn part_path(dir: &Path, index: u64) -> PathBuf {
        dir.join(format!("{}.part", segment_name(index)))
    }

    fn open(&mut self, index: u64) -> std::io::Result<()> {
        let path = Self::part_path(&self.dir, index);
        let file = File::create(&path)?;
        self.open = Some((file, path));
        Ok(())
    }

    fn write(&mut self, packager: &mut Packager) -> std::io::Result<()> {
        packager.take_output(&mut self.buf);
        if let Some((file, _)) = &mut self.open {
            file.write_all(&self.buf)?;
        }
        Ok(())
    }

    /// Write the segment's last bytes, rename it to its final name and announce it.
    fn close(
        &mut self,
        packager: &mut Packager,
        closed: Closed,
        events: &mpsc::UnboundedSender<PublisherEvent>,
    ) -> std::io::Result<()> {
        self.write(packager)?;
        let Some((file, part)) = self.open.take() else {
            return Ok(());
        };
        drop(file);
        let path = self.dir.join(segment_name(closed.index));
        std::fs::rename(&part, &path)?;
        let _ = events.send(PublisherEvent::SegmentClosed {
            path,
            duration_ns: closed.duration_ns,
            end_ms: closed.end_ms,
        });
        Ok(())
    }

    /// Drop the unfinished segment after a failure.
    fn abandon(&mut self) {
        if let Some((file, part)) = self.open.take() {
            drop(file);
            let _ = std::fs::remove_file(part);
        }
    }
}
