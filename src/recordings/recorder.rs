//! The recorder: turns the live sessions of streams with `record = true` into recordings in
//! object storage, and survives crashes and storage outages without losing a closed segment.
//!
//! ```text
//!  live supervisor --RecorderMsg--> recorder task (owns the map session -> recording)
//!      Started / Segment / Ended        |  hard-links each closed live segment into
//!                                       |  spool/recordings/<id>/ (the live window may then
//!                                       v  delete its own link freely)
//!                              one worker per recording (owns its queue, in order):
//!                                 segment row at once (rows stage) ->
//!                                 upload (retry with back-off, forever; upload stage) ->
//!                                 uploaded_at -> index.m3u8 rewritten (names stored segments only)
//!                                 at the end: final VOD playlist -> MP4 (GStreamer remux) ->
//!                                 poster -> metadata -> `ready` -> spool copy removed
//! ```
//!
//! Durability: a segment is in the spool (a hard link) before anything else knows of it, its
//! row is the upload queue, and the spool copy stays until the recording is finalized. After a
//! SIGKILL the next start finds the unfinished recordings ([`recover`]), uploads what the spool
//! still has and finalizes them; at most the segment being written when the process died (a
//! `.part` file of the live packager) is lost. While storage is down, uploads retry with
//! back-off (capped at 30 s) and the live stream goes on; the queue depth and the age of its
//! oldest entry are metrics.
//!
//! Size: over 800 lines: one long-lived component (queue, spool accounting, upload retries,
//! finalization) whose parts share its state; splitting it would pass that state around.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::json;
use sqlx::PgPool;
use time::OffsetDateTime;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use wemaster_media::{frame::StreamInfo, pipeline::TemplateSet};

use super::store::{self, Finished, SegmentRow};
use crate::{
    cache::Redis,
    storage::{ObjectKey, PutOptions, Storage},
};

/// What the live supervisor tells the recorder.
#[derive(Debug)]
pub enum RecorderMsg {
    /// A live session of a recorded stream started.
    Started {
        session_id: Uuid,
        live_stream_id: Uuid,
        owner_id: Uuid,
        private: bool,
        started_at: OffsetDateTime,
        /// The session went on here from another node (src/live/resume.rs): its recording, if
        /// still open, goes on too.
        continued: bool,
    },
    /// A live segment closed (`path` in the live spool; it may be deleted a window later).
    Segment {
        session_id: Uuid,
        path: PathBuf,
        duration_ns: u64,
        /// Publisher generation: a change starts a discontinuity.
        generation: u64,
        /// When its first frame arrived.
        started_at: OffsetDateTime,
    },
    /// What the publisher says about its media (codecs, size).
    Info { session_id: Uuid, info: StreamInfo },
    /// The live session ended: finalize.
    Ended { session_id: Uuid },
    /// A recording this node took over from a lost node (src/node.rs): finish it from the
    /// segments in storage.
    Adopted {
        recording_id: Uuid,
        live_stream_id: Uuid,
    },
}

/// Settings of the recorder.
#[derive(Debug, Clone)]
pub struct RecorderConfig {
    /// `spool/recordings`: segments wait here until their recording is finalized.
    pub spool_dir: PathBuf,
    /// New recordings are refused while the spool holds more than this.
    pub max_spool_bytes: u64,
    /// New recordings are refused while the spool's disk has less free space than this.
    pub min_free_bytes: u64,
    /// Upload concurrency over all recordings.
    pub upload_concurrency: usize,
    /// MP4 remuxes and posters running at once, over all recordings (CPU-bound work).
    pub finalize_concurrency: usize,
    /// How often failed MP4s are looked for and tried again.
    pub mp4_retry: Duration,
    /// The packager's maximum segment duration: the recording playlists' target duration.
    pub segment_max: std::time::Duration,
    /// This node (src/node.rs): its recordings are the ones whose segments are in this spool,
    /// and the only ones its start-up recovery takes.
    pub node: Uuid,
}

/// The sending side, held by the live supervisor. Unbounded on purpose: the supervisor must
/// never wait for the recorder, and a message is a few dozen bytes per 2 s segment.
#[derive(Clone)]
pub struct RecorderHandle {
    tx: mpsc::UnboundedSender<RecorderMsg>,
}

impl RecorderHandle {
    pub fn send(&self, msg: RecorderMsg) {
        let _ = self.tx.send(msg);
    }

    /// A handle whose messages go nowhere (recording disabled in a test of the live path).
    pub fn disconnected() -> RecorderHandle {
        let (tx, _) = mpsc::unbounded_channel();
        RecorderHandle { tx }
    }
}

/// Shared by the recorder and its workers.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub db: PgPool,
    pub redis: Redis,
    pub storage: Storage,
    pub templates: TemplateSet,
    pub uploads: Arc<Semaphore>,
    pub extras: Arc<Semaphore>,
    pub shutdown: CancellationToken,
    /// `EXT-X-TARGETDURATION` of the playlists written, in ns (the packager's maximum).
    pub target_ns: u64,
    pub node: Uuid,
}

/// Start the recorder; the join handle ends when every worker has finished (after the
/// supervisor's sender is dropped at shutdown), so shutdown can wait for finalization.
pub fn start(
    config: RecorderConfig,
    db: PgPool,
    redis: Redis,
    storage: Storage,
    templates: TemplateSet,
    shutdown: CancellationToken,
) -> (RecorderHandle, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let ctx = Ctx {
        db,
        redis,
        storage,
        templates,
        uploads: Arc::new(Semaphore::new(config.upload_concurrency.max(1))),
        extras: Arc::new(Semaphore::new(config.finalize_concurrency.max(1))),
        shutdown,
        target_ns: config.segment_max.as_nanos() as u64,
        node: config.node,
    };
    let handle = tokio::spawn(run(config, ctx, rx));
    (RecorderHandle { tx }, handle)
}

struct Active {
    recording_id: Uuid,
    live_stream_id: Uuid,
    dir: PathBuf,
    next_seq: i32,
    generation: Option<u64>,
    worker: mpsc::UnboundedSender<WorkerMsg>,
}

enum WorkerMsg {
    /// A segment to upload, with its [`UPLOAD_QUEUE`] ticket.
    Segment(SegmentRow, PathBuf, u64),
    Info(StreamInfo),
    Finish,
}

async fn run(config: RecorderConfig, ctx: Ctx, mut rx: mpsc::UnboundedReceiver<RecorderMsg>) {
    let mut workers = tokio::task::JoinSet::new();
    // Recordings a previous process left behind are finished first (in the background).
    match recover(&config, &ctx).await {
        Ok(recovered) => {
            for (id, stream, dir, pending) in recovered {
                let (wtx, wrx) = mpsc::unbounded_channel();
                for (seg, path, ticket) in pending {
                    let _ = wtx.send(WorkerMsg::Segment(seg, path, ticket));
                }
                let _ = wtx.send(WorkerMsg::Finish);
                workers.spawn(worker(ctx.clone(), id, stream, dir, wrx, true));
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot recover unfinished recordings"),
    }
    // Ready recordings whose MP4 and poster a stopped process did not get to; then, while the
    // process runs, those whose MP4 failed (never two attempts at one recording at once).
    let mut mp4s = Mp4Jobs::default();
    match store::missing_extras(&ctx.db).await {
        Ok(recs) => {
            for rec in recs {
                mp4s.start(&config, &ctx, rec).await;
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot list recordings waiting for their MP4"),
    }
    let mut active: HashMap<Uuid, Active> = HashMap::new();
    // Sessions refused a recording (a full spool): asked again as their segments close, so a
    // lesson is recorded from the moment space comes back, not lost for the rest of its length.
    let mut waiting: HashMap<Uuid, Waiting> = HashMap::new();
    let mut retry_tick = tokio::time::interval_at(
        tokio::time::Instant::now() + config.mp4_retry,
        config.mp4_retry,
    );
    retry_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let msg = tokio::select! {
            msg = rx.recv() => match msg {
                Some(msg) => msg,
                None => break,
            },
            Some(Ok(id)) = mp4s.tasks.join_next(), if !mp4s.tasks.is_empty() => {
                mp4s.running.remove(&id);
                continue;
            }
            _ = retry_tick.tick() => {
                retry_failed_mp4s(&config, &ctx, &mut mp4s).await;
                continue;
            }
        };
        match msg {
            RecorderMsg::Started {
                session_id,
                live_stream_id,
                owner_id,
                private,
                started_at,
                continued,
            } => {
                // A continued session goes on in its open recording; without one (never
                // recorded, or already being finished) it gets a recording of its own.
                if continued
                    && let Some(a) =
                        continue_recording(&config, &ctx, &mut workers, session_id, live_stream_id)
                            .await
                {
                    active.insert(session_id, a);
                    continue;
                }
                let w = Waiting {
                    live_stream_id,
                    owner_id,
                    private,
                    started_at,
                    refused_at: Instant::now(),
                    next_check: Instant::now() + SPACE_RECHECK,
                };
                if let Some(why) = spool_full(&config) {
                    refused(&ctx, session_id, live_stream_id, why).await;
                    waiting.insert(session_id, w);
                    continue;
                }
                if let Some(a) = begin(&config, &ctx, &mut workers, session_id, &w, false).await {
                    active.insert(session_id, a);
                }
            }
            RecorderMsg::Segment {
                session_id,
                path,
                duration_ns,
                generation,
                started_at,
            } => {
                if let Some(w) = waiting.get_mut(&session_id)
                    && Instant::now() >= w.next_check
                {
                    w.next_check = Instant::now() + SPACE_RECHECK;
                    if spool_full(&config).is_none() {
                        let w = waiting.remove(&session_id).expect("just looked up");
                        if let Some(a) =
                            begin(&config, &ctx, &mut workers, session_id, &w, true).await
                        {
                            active.insert(session_id, a);
                        }
                    }
                }
                let Some(a) = active.get_mut(&session_id) else {
                    continue;
                };
                let Some(name) = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .map(str::to_string)
                else {
                    continue;
                };
                let target = a.dir.join(&name);
                // A hard link is instant and survives the live window deleting its own name;
                // a copy is the fallback when the spool spans two filesystems.
                let linked = std::fs::hard_link(&path, &target)
                    .or_else(|_| std::fs::copy(&path, &target).map(|_| ()));
                if let Err(e) = linked {
                    tracing::error!(recording_id = %a.recording_id, error = %e, segment = %name, "cannot keep a segment for the recording");
                    metrics::counter!("recording_segments_lost_total").increment(1);
                    continue;
                }
                let size = std::fs::metadata(&target).map(|m| m.len()).unwrap_or(0);
                let discontinuity = a.generation.is_some_and(|g| g != generation);
                a.generation = Some(generation);
                let seg = SegmentRow {
                    seq: a.next_seq,
                    name,
                    duration_ms: (duration_ns / 1_000_000).min(i32::MAX as u64) as i32,
                    size_bytes: size as i64,
                    discontinuity,
                    uploaded: false,
                    lost: false,
                    started_at: Some(started_at),
                };
                a.next_seq += 1;
                let ticket = UPLOAD_QUEUE.push();
                let _ = a.worker.send(WorkerMsg::Segment(seg, target, ticket));
            }
            RecorderMsg::Info { session_id, info } => {
                if let Some(a) = active.get(&session_id) {
                    let _ = a.worker.send(WorkerMsg::Info(info));
                }
            }
            RecorderMsg::Ended { session_id } => {
                waiting.remove(&session_id);
                if let Some(a) = active.remove(&session_id) {
                    tracing::debug!(recording_id = %a.recording_id, stream = %a.live_stream_id, "finalizing");
                    let _ = a.worker.send(WorkerMsg::Finish);
                    metrics::gauge!("recordings_active").decrement(1.0);
                }
            }
            RecorderMsg::Adopted {
                recording_id,
                live_stream_id,
            } => {
                // Nothing to upload (the lost node's spool is gone): finalize as a recovery
                // does, fetching the segments from storage for the MP4.
                tracing::warn!(%recording_id, "finishing a recording of a lost node");
                let (wtx, wrx) = mpsc::unbounded_channel();
                let _ = wtx.send(WorkerMsg::Finish);
                let dir = config.spool_dir.join(recording_id.to_string());
                workers.spawn(worker(
                    ctx.clone(),
                    recording_id,
                    live_stream_id,
                    dir,
                    wrx,
                    true,
                ));
            }
        }
        // Reap finished workers as we go.
        while workers.try_join_next().is_some() {}
    }
    // The supervisor is gone (shutdown): every active recording is finalized.
    for (_, a) in active.drain() {
        let _ = a.worker.send(WorkerMsg::Finish);
    }
    while workers.join_next().await.is_some() {}
    while mp4s.tasks.join_next().await.is_some() {}
}

/// How often a session refused a recording asks again whether the spool has room.
const SPACE_RECHECK: Duration = Duration::from_secs(5);

/// A live session of a recorded stream without its recording yet (refused: a full spool).
struct Waiting {
    live_stream_id: Uuid,
    owner_id: Uuid,
    private: bool,
    started_at: OffsetDateTime,
    refused_at: Instant,
    next_check: Instant,
}

async fn refused(ctx: &Ctx, session_id: Uuid, live_stream_id: Uuid, why: &'static str) {
    tracing::warn!(%live_stream_id, why, "recording refused; asked again while the session lasts");
    metrics::counter!("recordings_refused_total").increment(1);
    let _ = store::record_event(
        &ctx.db,
        &ctx.redis,
        None,
        live_stream_id,
        "recording.refused",
        json!({"session_id": session_id, "reason": why}),
    )
    .await;
}

/// Start the recording of `session_id` (its row, spool directory and worker). `late`: the
/// session was refused at its start and space came back: the recording starts with the next
/// segment, and its `recording.started` event says how long it waited.
async fn begin(
    config: &RecorderConfig,
    ctx: &Ctx,
    workers: &mut tokio::task::JoinSet<()>,
    session_id: Uuid,
    w: &Waiting,
    late: bool,
) -> Option<Active> {
    let id = Uuid::now_v7();
    let dir = config.spool_dir.join(id.to_string());
    if let Err(e) = std::fs::create_dir_all(&dir) {
        tracing::error!(error = %e, "cannot create the recording spool directory");
        return None;
    }
    // A late recording starts now, not when the session did: its replay begins here.
    let started_at = if late {
        OffsetDateTime::now_utc()
    } else {
        w.started_at
    };
    if let Err(e) = store::create(
        &ctx.db,
        id,
        w.live_stream_id,
        w.owner_id,
        session_id,
        w.private,
        started_at,
        ctx.node,
    )
    .await
    {
        tracing::error!(live_stream_id = %w.live_stream_id, error = %e, "cannot create a recording");
        let _ = std::fs::remove_dir_all(&dir);
        return None;
    }
    let mut payload = json!({"session_id": session_id});
    if late {
        let waited = w.refused_at.elapsed().as_secs_f64();
        payload["late"] = json!(true);
        payload["waited_s"] = json!(waited);
        tracing::info!(recording_id = %id, live_stream_id = %w.live_stream_id, waited_s = waited, "the spool has room again: recording the session from now on");
    }
    event(ctx, id, w.live_stream_id, "recording.started", payload).await;
    metrics::gauge!("recordings_active").increment(1.0);
    let (wtx, wrx) = mpsc::unbounded_channel();
    workers.spawn(worker(
        ctx.clone(),
        id,
        w.live_stream_id,
        dir.clone(),
        wrx,
        false,
    ));
    Some(Active {
        recording_id: id,
        live_stream_id: w.live_stream_id,
        dir,
        next_seq: 0,
        generation: None,
        worker: wtx,
    })
}

/// Go on with the open recording of a session that another node held (src/live/resume.rs):
/// claimed for this node, numbered after the segments already in it, its first segment here
/// after a discontinuity. `None` when there is none to go on with.
async fn continue_recording(
    config: &RecorderConfig,
    ctx: &Ctx,
    workers: &mut tokio::task::JoinSet<()>,
    session_id: Uuid,
    live_stream_id: Uuid,
) -> Option<Active> {
    let (id, next_seq) = match store::claim_for_session(&ctx.db, session_id, ctx.node).await {
        Ok(Some(found)) => found,
        Ok(None) => return None,
        Err(e) => {
            tracing::error!(%session_id, error = %e, "cannot take over the recording of a continued session");
            return None;
        }
    };
    let dir = config.spool_dir.join(id.to_string());
    if let Err(e) = std::fs::create_dir_all(&dir) {
        tracing::error!(recording_id = %id, error = %e, "cannot create the recording spool directory");
    }
    tracing::info!(recording_id = %id, %session_id, next_seq, "recording goes on from another node");
    metrics::counter!("recordings_continued_total").increment(1);
    event(
        ctx,
        id,
        live_stream_id,
        "recording.continued",
        json!({"session_id": session_id, "node_id": ctx.node, "from_seq": next_seq}),
    )
    .await;
    metrics::gauge!("recordings_active").increment(1.0);
    let (wtx, wrx) = mpsc::unbounded_channel();
    workers.spawn(worker(
        ctx.clone(),
        id,
        live_stream_id,
        dir.clone(),
        wrx,
        false,
    ));
    Some(Active {
        recording_id: id,
        live_stream_id,
        dir,
        next_seq,
        // Publisher generations start at 1: the first segment here follows a discontinuity.
        generation: Some(0),
        worker: wtx,
    })
}

/// The MP4s (and posters) being made outside a recording's own finalization: at start, and
/// the retries of failed ones.
#[derive(Default)]
struct Mp4Jobs {
    tasks: tokio::task::JoinSet<Uuid>,
    running: std::collections::HashSet<Uuid>,
}

impl Mp4Jobs {
    /// Make `rec`'s MP4 (and poster, if it has none) from its stored segments, unless that is
    /// already under way.
    async fn start(&mut self, config: &RecorderConfig, ctx: &Ctx, rec: store::RecordingRow) {
        if self.running.contains(&rec.id) {
            return;
        }
        let names: Vec<String> = match store::segments(&ctx.db, rec.id).await {
            Ok(s) => s
                .into_iter()
                .filter(|s| s.uploaded && !s.lost)
                .map(|s| s.name)
                .collect(),
            Err(_) => return,
        };
        self.running.insert(rec.id);
        let dir = config.spool_dir.join(rec.id.to_string());
        let ctx = ctx.clone();
        self.tasks.spawn(async move {
            make_extras(
                &ctx,
                rec.id,
                rec.live_stream_id,
                &dir,
                &names,
                rec.duration_ms,
                rec.has_poster,
            )
            .await;
            rec.id
        });
    }
}

/// Ready recordings whose MP4 failed and whose back-off has passed, made again. Skipped while
/// the spool has no room: the MP4 is written there.
async fn retry_failed_mp4s(config: &RecorderConfig, ctx: &Ctx, mp4s: &mut Mp4Jobs) {
    if spool_full(config).is_some() {
        return;
    }
    match store::failed_extras_due(&ctx.db).await {
        Ok(recs) => {
            for rec in recs {
                tracing::info!(recording_id = %rec.id, "making the MP4 again (the last attempt failed)");
                mp4s.start(config, ctx, rec).await;
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot list the recordings whose MP4 failed"),
    }
}

/// The segments waiting for upload, over every recording, by when they were queued: the queue
/// depth and the age of the oldest entry (`recording_upload_oldest_age_seconds`, computed when
/// metrics are rendered, so it keeps growing while an upload is stuck in its retries).
pub(crate) struct UploadQueue {
    // ticket -> when it was queued; tickets grow with time, so the first entry is the oldest.
    pending: std::sync::Mutex<(u64, std::collections::BTreeMap<u64, Instant>)>,
}

pub(crate) static UPLOAD_QUEUE: UploadQueue = UploadQueue::new();

impl UploadQueue {
    const fn new() -> UploadQueue {
        UploadQueue {
            pending: std::sync::Mutex::new((0, std::collections::BTreeMap::new())),
        }
    }

    /// A segment joins the queue; the ticket leaves it with [`UploadQueue::pop`].
    pub(crate) fn push(&self) -> u64 {
        let mut g = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        g.0 += 1;
        let ticket = g.0;
        g.1.insert(ticket, Instant::now());
        metrics::gauge!("recording_upload_queue_depth").set(g.1.len() as f64);
        ticket
    }

    /// The segment left the queue (uploaded, or left for the next start).
    pub(crate) fn pop(&self, ticket: u64) {
        let mut g = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        g.1.remove(&ticket);
        metrics::gauge!("recording_upload_queue_depth").set(g.1.len() as f64);
    }

    /// Seconds the oldest queued segment has waited (0 when the queue is empty).
    pub(crate) fn oldest_age(&self) -> f64 {
        let g = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        g.1.values()
            .next()
            .map_or(0.0, |t| t.elapsed().as_secs_f64())
    }
}

/// Refresh `recording_upload_oldest_age_seconds` (called before metrics are rendered).
pub fn refresh_queue_metrics() {
    metrics::gauge!("recording_upload_oldest_age_seconds").set(UPLOAD_QUEUE.oldest_age());
}

/// Why new recordings cannot start now, if they cannot.
fn spool_full(config: &RecorderConfig) -> Option<&'static str> {
    if dir_size(&config.spool_dir) >= config.max_spool_bytes {
        return Some("spool_limit");
    }
    if free_bytes(&config.spool_dir).is_some_and(|f| f < config.min_free_bytes) {
        return Some("disk_full");
    }
    None
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Free bytes for unprivileged users on the filesystem holding `dir`.
pub(crate) fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let _ = std::fs::create_dir_all(dir);
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: `path` is NUL-terminated and outlives the call; `stat` is a valid out pointer
    // that statvfs fills completely on success (rc 0), and we read it only then.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(path.as_ptr(), &mut stat) };
    (rc == 0).then(|| stat.f_bavail as u64 * stat.f_frsize as u64)
}

async fn event(ctx: &Ctx, id: Uuid, stream: Uuid, kind: &str, payload: serde_json::Value) {
    for attempt in 0..3u64 {
        match store::record_event(&ctx.db, &ctx.redis, Some(id), stream, kind, payload.clone())
            .await
        {
            Ok(()) => return,
            Err(e) if attempt < 2 => {
                tracing::warn!(error = %e, kind, "storing a recording event failed; retrying");
                tokio::time::sleep(Duration::from_millis(200 * (attempt + 1))).await;
            }
            Err(e) => tracing::error!(error = %e, kind, "recording event lost"),
        }
    }
}

/// Storage key of a recording's object.
pub fn object_key(id: Uuid, name: &str) -> ObjectKey {
    ObjectKey::parse(format!("recordings/{id}/{name}")).expect("recording keys are valid")
}

/// Prefix of every object of a recording.
pub fn object_prefix(id: Uuid) -> String {
    format!("recordings/{id}/")
}

/// Retry `op` with back-off (200 ms doubling to 30 s) until it succeeds or shutdown is
/// requested and `give_up_on_shutdown` holds.
async fn retry<T, E: std::fmt::Display, F, Fut>(
    ctx: &Ctx,
    what: &str,
    give_up_on_shutdown: bool,
    mut op: F,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut delay = Duration::from_millis(200);
    loop {
        match op().await {
            Ok(v) => return Some(v),
            Err(e) => {
                tracing::warn!(error = %e, what, retry_in_ms = delay.as_millis() as u64, "recording step failed; retrying");
                metrics::counter!("recording_upload_failures_total").increment(1);
            }
        }
        if give_up_on_shutdown && ctx.shutdown.is_cancelled() {
            return None;
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = ctx.shutdown.cancelled(), if give_up_on_shutdown => return None,
        }
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

/// One recording's worker: segments in order, then finalization.
async fn worker(
    ctx: Ctx,
    id: Uuid,
    live_stream_id: Uuid,
    dir: PathBuf,
    mut rx: mpsc::UnboundedReceiver<WorkerMsg>,
    recovered: bool,
) {
    // Two stages. Rows first, as soon as a segment closes: the rows are the durable upload
    // queue that recovery reads after a crash, so they must not wait behind an upload stuck
    // in its retries (a kill -9 during an S3 outage once lost every segment closed since the
    // outage began: they were in the spool but in no row). Uploads follow, in order.
    let (utx, urx) = mpsc::unbounded_channel();
    let uploads = tokio::spawn(upload_stage(ctx.clone(), id, live_stream_id, dir, urx));
    while let Some(msg) = rx.recv().await {
        if let WorkerMsg::Segment(seg, _, ticket) = &msg
            && !recovered
        {
            // At shutdown the row may be missing: recovery re-reads the spool then.
            let stored = retry(&ctx, "segment row", true, || {
                store::insert_segment(&ctx.db, id, seg, ctx.node)
            })
            .await;
            match stored {
                Some(true) => {}
                Some(false) => {
                    // The session went on on another node, with this recording: what this
                    // node's publisher sent after that is not part of it.
                    tracing::info!(recording_id = %id, segment = %seg.name, "recording held by another node now: segment left out");
                    UPLOAD_QUEUE.pop(*ticket);
                    if let WorkerMsg::Segment(_, path, _) = &msg {
                        let _ = std::fs::remove_file(path);
                    }
                    continue;
                }
                None => {
                    UPLOAD_QUEUE.pop(*ticket);
                    continue;
                }
            }
        }
        let finish = matches!(msg, WorkerMsg::Finish);
        if utx.send(msg).is_err() || finish {
            break;
        }
    }
    drop(utx);
    let _ = uploads.await;
}

/// The upload stage of a recording's worker: each segment (its row written) uploaded in order,
/// marked uploaded, the playlist rewritten; at the end the recording finalized.
async fn upload_stage(
    ctx: Ctx,
    id: Uuid,
    live_stream_id: Uuid,
    dir: PathBuf,
    mut rx: mpsc::UnboundedReceiver<WorkerMsg>,
) {
    let mut info: Option<StreamInfo> = None;
    while let Some(msg) = rx.recv().await {
        match msg {
            WorkerMsg::Info(i) => {
                let (v, a) = super::codec_names(&i);
                let _ = store::set_media_info(
                    &ctx.db,
                    id,
                    v.as_deref(),
                    a.as_deref(),
                    i.width.map(|w| w as i32),
                    i.height.map(|h| h as i32),
                )
                .await;
                info = Some(i);
            }
            WorkerMsg::Segment(seg, path, ticket) => {
                let seq = seg.seq;
                let uploaded = upload_segment(&ctx, id, &seg.name, &path).await;
                UPLOAD_QUEUE.pop(ticket);
                if !uploaded {
                    // Shutdown while storage is down: the next start uploads it.
                    continue;
                }
                retry(&ctx, "segment uploaded", true, || {
                    store::mark_uploaded(&ctx.db, id, seq)
                })
                .await;
                if let Err(e) = write_playlist(&ctx, id, false).await {
                    tracing::warn!(recording_id = %id, error = %e, "cannot update the recording playlist");
                }
            }
            WorkerMsg::Finish => {
                if ctx.shutdown.is_cancelled() && pending_uploads(&ctx, id).await {
                    // Storage is down at shutdown: leave it for the next start's recovery.
                    tracing::warn!(recording_id = %id, "recording left unfinished at shutdown; it is finalized at the next start");
                    return;
                }
                finalize(&ctx, id, live_stream_id, &dir, info.take()).await;
                return;
            }
        }
    }
}

async fn pending_uploads(ctx: &Ctx, id: Uuid) -> bool {
    store::segments(&ctx.db, id)
        .await
        .map(|s| s.iter().any(|s| !s.uploaded && !s.lost))
        .unwrap_or(true)
}

async fn upload_segment(ctx: &Ctx, id: Uuid, name: &str, path: &Path) -> bool {
    let key = object_key(id, name);
    let opts = PutOptions {
        content_type: Some("video/mp2t".into()),
        cache_control: Some("public, max-age=31536000, immutable".into()),
    };
    let started = Instant::now();
    let done = retry(ctx, "segment upload", true, || async {
        let _permit = ctx.uploads.acquire().await.map_err(|e| e.to_string())?;
        let bytes = tokio::fs::read(path).await.map_err(|e| e.to_string())?;
        ctx.storage
            .put_bytes(&key, bytes.into(), &opts)
            .await
            .map_err(|e| e.to_string())
    })
    .await;
    if done.is_some() {
        metrics::histogram!("recording_upload_seconds").record(started.elapsed().as_secs_f64());
        metrics::counter!("recording_segments_uploaded_total").increment(1);
    }
    done.is_some()
}

/// Write `index.m3u8`: the stored segments in order (an EVENT playlist while recording, VOD
/// with ENDLIST when `final`). Stops at the first segment not stored yet, so it never names a
/// missing one.
pub(crate) async fn write_playlist(ctx: &Ctx, id: Uuid, final_: bool) -> anyhow::Result<u64> {
    let segments = store::segments(&ctx.db, id).await?;
    let body = super::render_playlist(&segments, None, final_, ctx.target_ns);
    let len = body.len() as u64;
    ctx.storage
        .put_bytes(
            &object_key(id, "index.m3u8"),
            body.into(),
            &PutOptions {
                content_type: Some("application/vnd.apple.mpegurl".into()),
                cache_control: Some("no-cache".into()),
            },
        )
        .await?;
    Ok(len)
}

/// How long a recording's finalization waits for segments another node has not uploaded yet.
const HANDOVER_WAIT: Duration = Duration::from_secs(120);

async fn finalize(ctx: &Ctx, id: Uuid, live_stream_id: Uuid, dir: &Path, info: Option<StreamInfo>) {
    let started = Instant::now();
    // Seconds spent in each step, for the log line and the `recording.ready` event.
    let mut steps = serde_json::Map::new();
    let mut lap = Instant::now();
    let mut step = |name: &str| {
        steps.insert(format!("{name}_s"), json!(lap.elapsed().as_secs_f64()));
        lap = Instant::now();
    };
    match store::set_processing(&ctx.db, id, ctx.node).await {
        Ok(true) | Err(_) => {}
        Ok(false) => {
            // Handed over: the session (and this recording) went on on another node, which
            // finishes it. This node's segments are uploaded (they came before `Finish`).
            tracing::info!(recording_id = %id, "recording handed over to the node the session went on on");
            let _ = std::fs::remove_dir_all(dir);
            return;
        }
    }
    // Segments another node held before this one (a continued session) and has not uploaded:
    // wait for them (a live node uploads them; a lost node's are marked lost by the lost-node
    // sweep), at most HANDOVER_WAIT, then go on without them.
    let waiting = Instant::now();
    loop {
        match store::pending_elsewhere(&ctx.db, id, ctx.node).await {
            Ok(0) | Err(_) => break,
            Ok(n) if waiting.elapsed() >= HANDOVER_WAIT => {
                tracing::warn!(recording_id = %id, segments = n, "segments another node never uploaded: finishing without them");
                let _ = store::mark_lost_elsewhere(&ctx.db, id, ctx.node).await;
                break;
            }
            Ok(_) => {}
        }
        if ctx.shutdown.is_cancelled() {
            // The next start's recovery finishes it.
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let segments = match store::segments(&ctx.db, id).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(recording_id = %id, error = %e, "cannot read the recording's segments");
            return;
        }
    };
    let stored: Vec<&SegmentRow> = segments.iter().filter(|s| s.uploaded && !s.lost).collect();
    step("db");
    if stored.is_empty() {
        let reason = "no media was recorded";
        let _ = store::set_failed(&ctx.db, id, reason).await;
        event(
            ctx,
            id,
            live_stream_id,
            "recording.failed",
            json!({"reason": reason}),
        )
        .await;
        let _ = std::fs::remove_dir_all(dir);
        return;
    }
    let mut f = Finished {
        duration_ms: stored.iter().map(|s| i64::from(s.duration_ms)).sum(),
        size_bytes: stored.iter().map(|s| s.size_bytes).sum(),
        segment_count: stored.len() as i32,
        ..Finished::default()
    };
    if let Some(i) = &info {
        let (v, a) = super::codec_names(i);
        f.video_codec = v;
        f.audio_codec = a;
        f.width = i.width.map(|w| w as i32);
        f.height = i.height.map(|h| h as i32);
    }
    match retry(ctx, "final playlist", false, || {
        write_playlist(ctx, id, true)
    })
    .await
    {
        Some(n) => f.size_bytes += n as i64,
        None => return,
    }
    step("playlist");
    // The replay is complete now: every segment is stored and the VOD playlist names them all.
    // `ready` does not wait for the MP4 and the poster (CPU-bound, linear in the lesson's
    // length, and queued behind other recordings' at a burst of lessons ending together).
    if let Err(e) = store::set_ready(&ctx.db, id, &f).await {
        tracing::error!(recording_id = %id, error = %e, "cannot mark the recording ready");
        return;
    }
    step("ready");
    let took = started.elapsed().as_secs_f64();
    metrics::histogram!("recording_finalize_seconds").record(took);
    event(
        ctx,
        id,
        live_stream_id,
        "recording.ready",
        json!({"duration_s": f.duration_ms as f64 / 1000.0, "size_bytes": f.size_bytes,
               "segments": f.segment_count, "finalize_s": took,
               "steps": serde_json::Value::Object(steps.clone())}),
    )
    .await;
    tracing::info!(recording_id = %id, duration_ms = f.duration_ms, finalize_s = took, "recording ready");
    let names: Vec<String> = stored.iter().map(|s| s.name.clone()).collect();
    make_extras(ctx, id, live_stream_id, dir, &names, f.duration_ms, false).await;
}

/// The MP4 and (unless `poster_done`) the poster of a ready recording, one recording at a
/// time per `finalize_concurrency` permit; then the spool copy goes.
async fn make_extras(
    ctx: &Ctx,
    id: Uuid,
    live_stream_id: Uuid,
    dir: &Path,
    names: &[String],
    duration_ms: i64,
    poster_done: bool,
) {
    let Ok(_permit) = ctx.extras.acquire().await else {
        return;
    };
    let started = Instant::now();
    let mut steps = serde_json::Map::new();
    let mut lap = Instant::now();
    let mut step = |name: &str| {
        steps.insert(format!("{name}_s"), json!(lap.elapsed().as_secs_f64()));
        lap = Instant::now();
    };
    // Every segment locally, in order (a recovered recording may miss some: fetch them).
    let mut inputs = Vec::new();
    for name in names {
        let path = dir.join(name);
        if !path.exists() {
            let _ = tokio::fs::create_dir_all(dir).await;
            if let Err(e) = fetch_to(ctx, &object_key(id, name), &path).await {
                tracing::warn!(recording_id = %id, error = %e, "segment not available for the MP4");
                continue;
            }
        }
        inputs.push(path);
    }
    step("fetch");
    let sizes = {
        let inputs = inputs.clone();
        tokio::task::spawn_blocking(move || {
            inputs
                .iter()
                .map(|p| wemaster_media::vod::picture_size(p))
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default()
    };
    let picture = Picture::of(&sizes);
    let mp4 = make_mp4(ctx, id, dir, &inputs, duration_ms, &picture, &mut step).await;
    let mut poster = None;
    if let (false, Some(frame)) = (poster_done, inputs.get(picture.poster_segment)) {
        poster = make_poster(ctx, id, dir, frame).await;
    }
    step("poster");
    let changed = picture.resized.then_some(picture.dominant).flatten();
    if let Err(e) = store::set_extras(&ctx.db, id, mp4, poster, changed).await {
        tracing::error!(recording_id = %id, error = %e, "cannot record the MP4 and poster");
    }
    let took = started.elapsed().as_secs_f64();
    let steps = serde_json::Value::Object(steps);
    metrics::histogram!("recording_extras_seconds").record(took);
    event(
        ctx,
        id,
        live_stream_id,
        "recording.processed",
        json!({"mp4": mp4.is_some(), "poster": poster.is_some(), "took_s": took, "steps": steps}),
    )
    .await;
    tracing::info!(recording_id = %id, took_s = took, %steps, "recording MP4 and poster done");
    let _ = tokio::fs::remove_dir_all(dir).await;
}

async fn fetch_to(ctx: &Ctx, key: &ObjectKey, path: &Path) -> anyhow::Result<()> {
    let bytes = ctx.storage.get(key, None).await?.bytes().await?;
    tokio::fs::write(path, bytes).await?;
    Ok(())
}

/// What the segments' parameter sets say about the picture: the size most of them start with,
/// whether it changed, and the segment to take the poster from.
#[derive(Debug, Clone, PartialEq)]
struct Picture {
    /// The size most segments start with (ties: the later one); `None` when no segment told.
    dominant: Option<(u32, u32)>,
    /// More than one size: the MP4 needs parameter sets in band.
    resized: bool,
    /// The middle segment among those of the dominant size (0 when nothing told).
    poster_segment: usize,
}

impl Picture {
    fn of(sizes: &[Option<(u32, u32)>]) -> Picture {
        let mut counts: Vec<((u32, u32), usize)> = Vec::new();
        for size in sizes.iter().flatten() {
            match counts.iter_mut().find(|(s, _)| s == size) {
                Some((_, n)) => *n += 1,
                None => counts.push((*size, 1)),
            }
        }
        // The last of the most frequent: a stream that ramps up ends at its real size.
        // (`max_by_key` keeps the last of equal maxima.)
        let dominant = counts.iter().max_by_key(|(_, n)| *n).map(|(size, _)| *size);
        let of_dominant: Vec<usize> = sizes
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is_some() && **s == dominant)
            .map(|(i, _)| i)
            .collect();
        Picture {
            dominant,
            resized: counts.len() > 1,
            poster_segment: of_dominant.get(of_dominant.len() / 2).copied().unwrap_or(0),
        }
    }
}

/// Remux the segments into `recording.mp4` and store it; its size, or `None` if it failed
/// (the HLS replay is complete without it).
async fn make_mp4(
    ctx: &Ctx,
    id: Uuid,
    dir: &Path,
    inputs: &[PathBuf],
    duration_ms: i64,
    picture: &Picture,
    step: &mut impl FnMut(&str),
) -> Option<i64> {
    let output = dir.join("recording.mp4");
    // A picture size that changes needs parameter sets in band (avc3); one size keeps avc1,
    // which every player reads. Should avc1 fail anyway (parameter sets that change without
    // the size: the muxer refuses the new ones), avc3 is tried before giving up.
    let mut attempts = Vec::new();
    if !picture.resized {
        attempts.push(("vod-mp4", None));
    }
    if let Some(size) = picture.dominant {
        attempts.push(("vod-mp4-resized", Some(size)));
    }
    for (n, (name, size)) in attempts.iter().enumerate() {
        let Ok(template) = ctx.templates.get(name) else {
            continue;
        };
        let mut values = std::collections::BTreeMap::new();
        values.insert("output", output.display().to_string());
        if let Some((width, height)) = size {
            values.insert("width", width.to_string());
            values.insert("height", height.to_string());
        }
        let Ok(description) = template.render(&values) else {
            continue;
        };
        let inputs = inputs.to_vec();
        // Remuxing runs at hundreds of times real time; the deadline only catches a stuck
        // pipeline.
        let timeout =
            Duration::from_secs(60) + Duration::from_millis((duration_ms / 20).max(0) as u64);
        let result = tokio::task::spawn_blocking(move || {
            wemaster_media::vod::run_to_eos(&description, &inputs, timeout)
        })
        .await;
        step("mp4_remux");
        let error = match result {
            Ok(Ok(())) => {
                let stored = store_file(ctx, id, "recording.mp4", &output, "video/mp4").await;
                step("mp4_store");
                return stored;
            }
            Ok(Err(e)) => e,
            Err(e) => e.to_string(),
        };
        let last = n + 1 == attempts.len();
        tracing::error!(recording_id = %id, template = name, error = %error, last,
            "MP4 remux failed");
        metrics::counter!("recording_mp4_failures_total", "template" => *name).increment(1);
        let _ = tokio::fs::remove_file(&output).await;
    }
    None
}

async fn make_poster(ctx: &Ctx, id: Uuid, dir: &Path, first: &Path) -> Option<i64> {
    let output = dir.join("poster.jpg");
    let template = ctx.templates.get("poster").ok()?;
    let mut values = std::collections::BTreeMap::new();
    values.insert("input", first.display().to_string());
    values.insert("output", output.display().to_string());
    let description = template.render(&values).ok()?;
    let result = tokio::task::spawn_blocking(move || {
        wemaster_media::vod::run_to_eos(&description, &[], Duration::from_secs(30))
    })
    .await;
    let failure = match result {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(e) => Some(e.to_string()),
    };
    if let Some(e) = failure {
        tracing::warn!(recording_id = %id, error = %e, "poster failed");
        return None;
    }
    store_file(ctx, id, "poster.jpg", &output, "image/jpeg").await
}

async fn store_file(
    ctx: &Ctx,
    id: Uuid,
    name: &str,
    path: &Path,
    content_type: &str,
) -> Option<i64> {
    // A pipeline that reached its end without writing (a template that drops the stream) is
    // a failure of that step, not a storage outage to wait out.
    match tokio::fs::metadata(path).await {
        Ok(m) if m.len() > 0 => {}
        _ => {
            tracing::error!(recording_id = %id, file = name, "the pipeline wrote nothing");
            return None;
        }
    }
    let key = object_key(id, name);
    let opts = PutOptions {
        content_type: Some(content_type.into()),
        cache_control: Some("public, max-age=31536000, immutable".into()),
    };
    retry(ctx, name, false, || async {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| e.to_string())?;
        ctx.storage
            .put_stream(&key, Box::pin(file), &opts)
            .await
            .map_err(|e| e.to_string())
    })
    .await
    .map(|meta| meta.size as i64)
}

type Recovered = (Uuid, Uuid, PathBuf, Vec<(SegmentRow, PathBuf, u64)>);

/// Unfinished recordings of a previous process: the segments still to upload (rows without
/// `uploaded_at` whose spool file exists; the others are marked lost).
async fn recover(config: &RecorderConfig, ctx: &Ctx) -> anyhow::Result<Vec<Recovered>> {
    let mut out = Vec::new();
    for rec in store::unfinished(&ctx.db, ctx.node).await? {
        let dir = config.spool_dir.join(rec.id.to_string());
        let mut pending = Vec::new();
        for seg in store::segments(&ctx.db, rec.id).await? {
            if seg.uploaded || seg.lost {
                continue;
            }
            let path = dir.join(&seg.name);
            if path.exists() {
                pending.push((seg, path, UPLOAD_QUEUE.push()));
            } else {
                tracing::warn!(recording_id = %rec.id, segment = %seg.name, "segment lost before upload");
                store::mark_lost(&ctx.db, rec.id, seg.seq).await?;
            }
        }
        tracing::info!(recording_id = %rec.id, pending = pending.len(), "recovering an unfinished recording");
        out.push((rec.id, rec.live_stream_id, dir, pending));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_poster_and_size_come_from_the_size_most_segments_start_with() {
        let (small, mid, big) = (Some((320, 180)), Some((640, 360)), Some((1280, 720)));
        let ramp = [small, None, mid, big, big, big];
        assert_eq!(
            Picture::of(&ramp),
            Picture {
                dominant: big,
                resized: true,
                poster_segment: 4
            }
        );
        assert_eq!(
            Picture::of(&[mid, mid]),
            Picture {
                dominant: mid,
                resized: false,
                poster_segment: 1
            }
        );
        assert_eq!(
            Picture::of(&[None, None]),
            Picture {
                dominant: None,
                resized: false,
                poster_segment: 0
            }
        );
    }

    #[test]
    fn oldest_age_grows_while_a_segment_waits_and_follows_the_oldest() {
        let q = UploadQueue::new();
        assert_eq!(q.oldest_age(), 0.0);
        let first = q.push();
        std::thread::sleep(Duration::from_millis(200));
        let second = q.push();
        let a = q.oldest_age();
        assert!(a >= 0.2, "{a}");
        // Still waiting (an upload stuck in its retries): the age keeps growing.
        std::thread::sleep(Duration::from_millis(20));
        let with_first = q.oldest_age();
        assert!(with_first >= a + 0.02, "{with_first}");
        // The oldest leaves: the age is now the second's, 200 ms younger.
        q.pop(first);
        assert!(q.oldest_age() < with_first);
        q.pop(second);
        assert_eq!(q.oldest_age(), 0.0);
    }
}
