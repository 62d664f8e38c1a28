//! The live path of one publisher, in process and deterministic, for instruction counts
//! (`valgrind --tool=callgrind`) and quick timings: a recorded FLV (the benchmark's input by
//! default) → an RTMP chunk stream as ffmpeg sends it → `Connection` (fed one FLV tag per read,
//! as an `-re` publisher's reads arrive) → the publisher's `LiveOutput` (TS packager, segment
//! files in a temporary spool), inline as the RTMP server runs it, or with
//! `LIVE_PATH_CHANNEL=1` behind the frame channel and its task (a send and a wake-up per frame)
//! on a current-thread tokio runtime.
//!
//!     cargo bench -p wemaster-media --bench live_path -- [FLV] [--seconds S] [--runs R]
//!     valgrind --tool=callgrind --toggle-collect='*live_path::measured*' \
//!         $CARGO_TARGET_DIR/release/deps/live_path-* [FLV] --runs 1
//!
//! FLV defaults to `bench/.cache/input-720p30-2500k-g60.flv` (made by `bench/rtmp-hls.sh`);
//! without it a synthetic stream of the same shape is used. The socket and the HTTP side are
//! not included (bench/rtmp_hls_callgrind.py counts the whole server).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rml_rtmp::sessions::PublishRequestType;
use rml_rtmp::time::RtmpTimestamp;
use tokio::sync::mpsc;
use wemaster_media::live::{
    LiveOutput, OutputSlot, PackagerConfig, PublisherEvent, PublisherStats, spawn_publisher,
};
use wemaster_media::rtmp::testing::{
    Loopback, aac_frame, aac_sequence_header, avc_frame, avc_sequence_header, client_handshake,
    sample_metadata,
};
use wemaster_media::rtmp::{Connection, EndReason, MediaFrame, Output, RtmpConfig};

/// One FLV tag: type (8 audio, 9 video, 18 data), timestamp (ms), body.
struct Tag {
    kind: u8,
    ts: u32,
    body: Bytes,
}

fn read_flv(path: &PathBuf, seconds: u32) -> Option<Vec<Tag>> {
    let data = std::fs::read(path).ok()?;
    if data.get(..3)? != b"FLV" {
        return None;
    }
    let mut pos = usize::try_from(u32::from_be_bytes(data[5..9].try_into().ok()?)).ok()? + 4;
    let mut tags = Vec::new();
    while pos + 11 <= data.len() {
        let kind = data[pos];
        let size = (usize::from(data[pos + 1]) << 16)
            | (usize::from(data[pos + 2]) << 8)
            | usize::from(data[pos + 3]);
        let ts = u32::from_be_bytes([data[pos + 7], data[pos + 4], data[pos + 5], data[pos + 6]]);
        let body = data.get(pos + 11..pos + 11 + size)?;
        if ts > seconds * 1000 {
            break;
        }
        if kind == 8 || kind == 9 {
            tags.push(Tag {
                kind,
                ts,
                body: Bytes::copy_from_slice(body),
            });
        }
        pos += 11 + size + 4;
    }
    Some(tags)
}

fn synthetic(seconds: u32) -> Vec<Tag> {
    let mut tags = vec![
        Tag {
            kind: 9,
            ts: 0,
            body: avc_sequence_header(),
        },
        Tag {
            kind: 8,
            ts: 0,
            body: aac_sequence_header(),
        },
    ];
    let per_gop = 2500 * 1000 / 8 * 2;
    let inter = per_gop / 67;
    let mut audio = 0u32;
    for i in 0..seconds * 30 {
        let ms = i * 1000 / 30;
        tags.push(Tag {
            kind: 9,
            ts: ms,
            body: avc_frame(i % 60 == 0, 0, if i % 60 == 0 { inter * 8 } else { inter }),
        });
        while audio * 1024 * 1000 / 44_100 <= ms {
            tags.push(Tag {
                kind: 8,
                ts: audio * 1024 * 1000 / 44_100,
                body: aac_frame(370),
            });
            audio += 1;
        }
    }
    tags
}

/// The client's bytes after the handshake, and where each tag's bytes end (one read each).
fn record(config: &RtmpConfig, tags: &[Tag]) -> (Vec<u8>, Vec<usize>) {
    let mut lb = Loopback::new(config).expect("loopback");
    let connect = lb.client.request_connection("live".into());
    lb.client(connect).expect("connect");
    let publish = lb
        .client
        .request_publishing("key".into(), PublishRequestType::Live);
    lb.client(publish).expect("publish");
    let metadata = lb.client.publish_metadata(&sample_metadata());
    lb.client(metadata).expect("metadata");
    let mut reads = vec![lb.sent.len()];
    for tag in tags {
        let ts = RtmpTimestamp::new(tag.ts);
        let result = if tag.kind == 9 {
            lb.client.publish_video_data(tag.body.clone(), ts, false)
        } else {
            lb.client.publish_audio_data(tag.body.clone(), ts, false)
        };
        lb.client(result).expect("media");
        reads.push(lb.sent.len());
    }
    (lb.sent, reads)
}

/// A connection past its handshake (not measured: the handshake is a fixed cost per publish).
fn connected(config: &RtmpConfig) -> Connection {
    let now = Instant::now();
    let mut conn = Connection::new(config, now);
    client_handshake(&mut conn, now).expect("handshake");
    conn
}

/// What callgrind counts (`--toggle-collect=*measured*`): one replay.
#[inline(never)]
fn measured(
    rt: &tokio::runtime::Runtime,
    conn: Connection,
    session: &[u8],
    reads: &[usize],
    spool: &Path,
) -> (u64, u64) {
    rt.block_on(replay(conn, session, reads, spool))
}

/// Replay the session through a connection and a publisher output; returns (frames, segments).
async fn replay(mut conn: Connection, session: &[u8], reads: &[usize], spool: &Path) -> (u64, u64) {
    let now = Instant::now();
    let (frames_tx, frames_rx) = mpsc::channel(512);
    let (events_tx, mut events_rx) = mpsc::unbounded_channel();
    let stats = Arc::new(PublisherStats::default());
    let packager = PackagerConfig {
        dir: spool.to_path_buf(),
        segments: wemaster_media::packager::SegmentLimits {
            target: Duration::from_secs(2),
            max: Duration::from_secs(4),
        },
        start_index: 0,
        timeline_start_ms: 0,
        ll: None,
        whep: None,
    };
    let slot = OutputSlot::new(LiveOutput::new(packager, events_tx, stats));
    let task = spawn_publisher(frames_rx, slot.clone());
    // Inline (as the RTMP server runs it) unless LIVE_PATH_CHANNEL is set (as WHIP does, and
    // RTMP did before: a channel send and a task wake-up per frame).
    let mut inline = match std::env::var_os("LIVE_PATH_CHANNEL") {
        Some(_) => None,
        None => slot.take(),
    };
    let mut frames = 0u64;
    let mut start = 0;
    for &end in reads {
        let n = end - start;
        conn.read_buffer(n).extend_from_slice(&session[start..end]);
        conn.commit_read(n, now);
        start = end;
        while let Some(output) = conn.poll().expect("valid session") {
            match output {
                Output::PublishRequested { .. } => conn.accept_publish(now).expect("accept"),
                Output::Frame(frame) => {
                    frames += 1;
                    match inline.as_mut() {
                        Some(out) => out.push(frame).expect("output running"),
                        None => frames_tx.send(frame).await.expect("publisher alive"),
                    }
                }
                _ => {}
            }
        }
        // Let the publisher run, as it would between two reads of an -re publisher.
        tokio::task::yield_now().await;
    }
    match inline.as_mut() {
        Some(out) => out.finish(EndReason::PublisherClosed),
        None => frames_tx
            .send(MediaFrame::End(EndReason::PublisherClosed))
            .await
            .expect("publisher alive"),
    }
    drop(frames_tx);
    task.await.expect("publisher task");
    let mut segments = 0;
    while let Ok(event) = events_rx.try_recv() {
        if matches!(event, PublisherEvent::SegmentClosed { .. }) {
            segments += 1;
        }
    }
    (frames, segments)
}

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let mut path = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../bench/.cache/input-720p30-2500k-g60.flv"
    ));
    let mut seconds = 20u32;
    let mut runs = 0u32;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seconds" => seconds = args.next().and_then(|v| v.parse().ok()).expect("seconds"),
            "--runs" => runs = args.next().and_then(|v| v.parse().ok()).expect("runs"),
            other => path = PathBuf::from(other),
        }
    }
    let (tags, source) = match read_flv(&path, seconds) {
        Some(tags) => (tags, path.display().to_string()),
        None => (synthetic(seconds), "synthetic".to_string()),
    };
    let config = RtmpConfig::default();
    let (session, reads) = record(&config, &tags);
    // LIVE_PATH_SPOOL=dir keeps the segments there (to compare the bytes across versions).
    let keep = std::env::var_os("LIVE_PATH_SPOOL").map(PathBuf::from);
    let spool = keep
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("live_path-{}", std::process::id())));
    std::fs::create_dir_all(&spool).expect("spool");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let started = Instant::now();
    let mut n = 0u32;
    let last = loop {
        let conn = connected(&config);
        let last = measured(&rt, conn, &session, &reads, &spool);
        n += 1;
        if (runs > 0 && n >= runs) || (runs == 0 && started.elapsed() > Duration::from_secs(3)) {
            break last;
        }
    };
    let per_run = started.elapsed() / n;
    if keep.is_none() {
        let _ = std::fs::remove_dir_all(&spool);
    }
    println!(
        "live_path: {source}, {seconds} s, {:.1} MB, {} frames, {} segments: {per_run:?} per run \
         ({:.0} ns/frame, {:.3} % of one core per stream)",
        session.len() as f64 / 1e6,
        last.0,
        last.1,
        per_run.as_nanos() as f64 / last.0 as f64,
        per_run.as_secs_f64() / f64::from(seconds) * 100.0,
    );
}
