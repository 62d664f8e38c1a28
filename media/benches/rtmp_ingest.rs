//! CPU cost of the RTMP ingest core per stream: replays a recorded 10 s publish of a 720p30-like
//! 2.5 Mbps H.264 + 128 kbps AAC stream (sizes only; the payload bytes are filler) through a
//! fresh `Connection` in 64 KiB reads, as the server task does, and reports throughput and the
//! share of one core one such stream costs. The socket, channels and GStreamer are not included.
//!
//!     cargo bench -p wemaster-media --bench rtmp_ingest

use std::time::{Duration, Instant};

use rml_rtmp::sessions::PublishRequestType;
use rml_rtmp::time::RtmpTimestamp;
use wemaster_media::rtmp::testing::{
    Loopback, aac_frame, aac_sequence_header, avc_frame, avc_sequence_header, client_handshake,
    sample_metadata,
};
use wemaster_media::rtmp::{Connection, MediaFrame, Output, RtmpConfig};

const SECONDS: u32 = 10;
const VIDEO_KBPS: usize = 2500;
const FPS: u32 = 30;
const GOP: u32 = 60;

fn record(config: &RtmpConfig) -> Vec<u8> {
    let mut lb = Loopback::new(config).expect("loopback");
    let connect = lb.client.request_connection("live".into());
    lb.client(connect).expect("connect");
    let publish = lb
        .client
        .request_publishing("good-key".into(), PublishRequestType::Live);
    lb.client(publish).expect("publish");
    let metadata = lb.client.publish_metadata(&sample_metadata());
    lb.client(metadata).expect("metadata");
    let t0 = RtmpTimestamp::new(0);
    let header = lb
        .client
        .publish_video_data(avc_sequence_header(), t0, false);
    lb.client(header).expect("avc header");
    let header = lb
        .client
        .publish_audio_data(aac_sequence_header(), t0, false);
    lb.client(header).expect("aac header");
    // A keyframe ~8x an inter frame, averaging VIDEO_KBPS.
    let per_gop = VIDEO_KBPS * 1000 / 8 * GOP as usize / FPS as usize;
    let inter = per_gop / (GOP as usize + 7);
    let key = inter * 8;
    let audio_frames_per_s = 44_100 / 1024;
    let mut audio_sent = 0u32;
    for i in 0..SECONDS * FPS {
        let ms = i * 1000 / FPS;
        let keyframe = i % GOP == 0;
        let size = if keyframe { key } else { inter };
        let video = lb.client.publish_video_data(
            avc_frame(keyframe, 0, size),
            RtmpTimestamp::new(ms),
            false,
        );
        lb.client(video).expect("video");
        while audio_sent * 1000 / audio_frames_per_s <= ms {
            let ts = RtmpTimestamp::new(audio_sent * 1000 / audio_frames_per_s);
            let audio = lb.client.publish_audio_data(aac_frame(370), ts, false);
            lb.client(audio).expect("audio");
            audio_sent += 1;
        }
    }
    lb.sent
}

fn replay(config: &RtmpConfig, session: &[u8]) -> usize {
    let now = Instant::now();
    let mut conn = Connection::new(config, now);
    client_handshake(&mut conn, now).expect("handshake");
    let mut frames = 0;
    for piece in session.chunks(64 * 1024) {
        conn.feed(piece, now);
        while let Some(output) = conn.poll().expect("valid session") {
            match output {
                Output::PublishRequested { .. } => conn.accept_publish(now).expect("accept"),
                Output::Frame(MediaFrame::Video(_) | MediaFrame::Audio(_)) => frames += 1,
                _ => {}
            }
        }
    }
    frames
}

fn main() {
    let config = RtmpConfig::default();
    let session = record(&config);
    let frames = replay(&config, &session);
    let mut runs = 0u32;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) || runs < 5 {
        std::hint::black_box(replay(&config, &session));
        runs += 1;
    }
    let per_run = started.elapsed() / runs;
    let mb_per_s = session.len() as f64 / per_run.as_secs_f64() / 1e6;
    let share = per_run.as_secs_f64() / f64::from(SECONDS) * 100.0;
    println!(
        "rtmp_ingest: {:.1} MB session ({} frames, {SECONDS} s of {VIDEO_KBPS} kbps video) \
         parsed in {per_run:?} ({mb_per_s:.0} MB/s, {:.0} ns/frame): {share:.3} % of one core per stream",
        session.len() as f64 / 1e6,
        frames,
        per_run.as_nanos() as f64 / frames as f64,
    );
}
