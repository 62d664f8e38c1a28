//! WHEP load tool: `--viewers` WebRTC viewers of one live stream, each a real WebRTC peer
//! (str0m: ICE, DTLS, SRTP, RTCP, depacketized H.264 and Opus frames), each on its own UDP
//! socket and task. They join `--ramp-ms` apart, watch for `--seconds`, and the tool prints one
//! JSON object:
//! - `connected`, `failed`: viewers whose connection came up / did not (or dropped);
//! - per viewer over the measured window (after everyone joined): video frames, audio frames,
//!   the longest gap between two video frames, frames lost (non-contiguous); `stalled` counts
//!   viewers with a gap over 500 ms or a frame rate under 90 % of the best viewer's — a viewer
//!   the server let fall behind;
//! - with `--drop 0.02`, 2 % of the RTP packets each viewer receives are thrown away before
//!   its WebRTC stack sees them: `frames_lost` then says what NACK/RTX did not recover;
//! - the server's CPU (utime+stime from /proc/<pid>/stat, `--server-pid`) over the measured
//!   window and its RSS, and this tool's own CPU (it shares the machine).
//!
//! Usage: `whep-load --url http://127.0.0.1:8080/whep/<id> --viewers 200 --seconds 30
//!         --server-pid <pid>`

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use clap::Parser;
use serde_json::json;
use str0m::{
    Candidate, Event, IceConnectionState, Input, Output, Rtc,
    change::SdpAnswer,
    format::Codec,
    media::{Direction, MediaKind},
    net::{Protocol, Receive},
};
use tokio::{net::UdpSocket, sync::Mutex};

#[derive(Parser, Debug)]
struct Args {
    /// The WHEP endpoint.
    #[arg(long)]
    url: String,
    #[arg(long, default_value_t = 10)]
    viewers: usize,
    /// Measured seconds, after the last viewer joined.
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
    /// Between two joins.
    #[arg(long, default_value_t = 50)]
    ramp_ms: u64,
    /// Playback token (private streams).
    #[arg(long)]
    token: Option<String>,
    /// The server's pid, for its CPU and RSS.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Drop this share of the RTP packets received (0.02 = 2 %), to see NACK/RTX recover them.
    #[arg(long, default_value_t = 0.0)]
    drop: f64,
}

/// What one viewer saw in the measured window.
#[derive(Debug, Default, Clone)]
struct Seen {
    connected: bool,
    failed: Option<String>,
    video_frames: u64,
    audio_frames: u64,
    keyframes: u64,
    lost: u64,
    video_bytes: u64,
    max_gap_ms: u64,
    last_video: Option<Instant>,
    dropped: u64,
}

async fn s_drop(seen: &Mutex<Seen>) {
    seen.lock().await.dropped += 1;
}

/// Server CPU time (s) and RSS (KiB) from /proc.
fn proc_stats(pid: u32) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().ok()? + f[12].parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    // CLK_TCK is 100 on Linux x86-64 and arm64.
    Some((ticks as f64 / 100.0, rss))
}

async fn negotiate(http: &reqwest::Client, args: &Args, rtc: &mut Rtc) -> Result<()> {
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
    let (offer, pending) = api.apply().context("no offer")?;
    let mut req = http
        .post(&args.url)
        .header("content-type", "application/sdp")
        .body(offer.to_sdp_string());
    if let Some(t) = &args.token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await?;
    let status = r.status();
    let body = r.text().await?;
    if status.as_u16() != 201 {
        bail!("POST answered {status}: {body}");
    }
    let answer = SdpAnswer::from_sdp_string(&body)?;
    rtc.sdp_api().accept_answer(pending, answer)?;
    Ok(())
}

/// One viewer until `until`; what it saw from `measure_from` on goes to `seen`.
async fn viewer(
    http: reqwest::Client,
    args: Arc<Args>,
    seen: Arc<Mutex<Seen>>,
    measure_from: Arc<std::sync::OnceLock<Instant>>,
    until: Arc<std::sync::OnceLock<Instant>>,
) -> Result<()> {
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    let local: SocketAddr = socket.local_addr()?;
    let mut rtc = Rtc::builder()
        .set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags()))
        .clear_codecs()
        .enable_h264(true)
        .enable_opus(true, false)
        .build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp")?);
    negotiate(&http, &args, &mut rtc).await?;
    let mut buf = vec![0u8; 2048];
    // xorshift64: which packets are "lost" (no crate for a coin flip).
    let mut coin = 0x9E37_79B9_7F4A_7C15u64 ^ u64::from(local.port());
    let threshold = (args.drop.clamp(0.0, 1.0) * u64::MAX as f64) as u64;
    loop {
        let timeout = loop {
            match rtc.poll_output()? {
                Output::Timeout(t) => break t,
                Output::Transmit(t) => {
                    let _ = socket.send_to(&t.contents, t.destination).await;
                }
                Output::Event(e) => match e {
                    Event::Connected => seen.lock().await.connected = true,
                    Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                        bail!("ICE disconnected");
                    }
                    Event::MediaData(d) => {
                        let now = Instant::now();
                        let measuring = measure_from.get().is_some_and(|t| now >= *t);
                        let mut s = seen.lock().await;
                        match d.params.spec().codec {
                            Codec::H264 => {
                                if measuring {
                                    if let Some(last) = s.last_video {
                                        let gap = now.duration_since(last).as_millis() as u64;
                                        s.max_gap_ms = s.max_gap_ms.max(gap);
                                    }
                                    s.video_frames += 1;
                                    s.video_bytes += d.data.len() as u64;
                                    s.keyframes += u64::from(d.is_keyframe());
                                    s.lost += u64::from(!d.contiguous);
                                }
                                s.last_video = Some(now);
                            }
                            Codec::Opus if measuring => s.audio_frames += 1,
                            _ => {}
                        }
                    }
                    _ => {}
                },
            }
        };
        if until.get().is_some_and(|t| Instant::now() >= *t) {
            return Ok(());
        }
        let wait = timeout
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(100));
        tokio::select! {
            r = socket.recv_from(&mut buf) => {
                let (n, source) = r?;
                // RTP/RTCP start with version 2 (0x80..=0xBF); RTCP payload types are 200..=206.
                let rtp = n > 12 && (0x80..0xC0).contains(&buf[0]) && !(200..=206).contains(&buf[1]);
                if rtp && threshold > 0 {
                    coin ^= coin << 13;
                    coin ^= coin >> 7;
                    coin ^= coin << 17;
                    if coin < threshold {
                        s_drop(&seen).await;
                        continue;
                    }
                }
                let Ok(contents) = buf[..n].try_into() else { continue };
                rtc.handle_input(Input::Receive(Instant::now(), Receive {
                    proto: Protocol::Udp,
                    source,
                    destination: local,
                    contents,
                }))?;
            }
            () = tokio::time::sleep(wait) => {
                rtc.handle_input(Input::Timeout(Instant::now()))?;
            }
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Arc::new(Args::parse());
    let http = reqwest::Client::new();
    let measure_from = Arc::new(std::sync::OnceLock::new());
    let until = Arc::new(std::sync::OnceLock::new());
    let mut seen = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..args.viewers {
        let s = Arc::new(Mutex::new(Seen::default()));
        seen.push(s.clone());
        let (h, a, m, u) = (
            http.clone(),
            args.clone(),
            measure_from.clone(),
            until.clone(),
        );
        tasks.push(tokio::spawn(async move {
            if let Err(e) = viewer(h, a, s.clone(), m, u).await {
                s.lock().await.failed = Some(e.to_string());
            }
        }));
        tokio::time::sleep(Duration::from_millis(args.ramp_ms)).await;
    }
    // Everyone joined; let the last ones reach their first keyframe before measuring.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let start = Instant::now();
    let _ = measure_from.set(start);
    let cpu0 = args.server_pid.and_then(proc_stats);
    let me = std::process::id();
    let own0 = proc_stats(me);
    tokio::time::sleep(Duration::from_secs_f64(args.seconds)).await;
    let cpu1 = args.server_pid.and_then(proc_stats);
    let own1 = proc_stats(me);
    let elapsed = start.elapsed().as_secs_f64();
    let _ = until.set(Instant::now());
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    let mut views = Vec::new();
    for s in &seen {
        views.push(s.lock().await.clone());
    }
    let connected = views
        .iter()
        .filter(|v| v.connected && v.failed.is_none())
        .count();
    let failures: Vec<&str> = views.iter().filter_map(|v| v.failed.as_deref()).collect();
    let fps: Vec<f64> = views
        .iter()
        .map(|v| v.video_frames as f64 / elapsed)
        .collect();
    let best = fps.iter().cloned().fold(0.0, f64::max);
    let stalled = views
        .iter()
        .zip(&fps)
        .filter(|(v, f)| v.max_gap_ms > 500 || **f < 0.9 * best)
        .count();
    let mbps: Vec<f64> = views
        .iter()
        .map(|v| v.video_bytes as f64 * 8.0 / elapsed / 1e6)
        .collect();
    let server_cpu = match (cpu0, cpu1) {
        (Some((a, _)), Some((b, rss))) => {
            json!({"cpu_pct": (b - a) / elapsed * 100.0, "rss_mib": rss as f64 / 1024.0})
        }
        _ => json!(null),
    };
    let own_cpu = match (own0, own1) {
        (Some((a, _)), Some((b, _))) => (b - a) / elapsed * 100.0,
        _ => 0.0,
    };
    let out = json!({
        "viewers": args.viewers,
        "connected": connected,
        "failed": args.viewers - connected,
        "failures": failures.iter().take(5).collect::<Vec<_>>(),
        "stalled": stalled,
        "seconds": elapsed,
        "video_fps_median": median(fps.clone()),
        "video_fps_min": fps.iter().cloned().fold(f64::INFINITY, f64::min),
        "video_mbps_median": median(mbps),
        "audio_fps_median": median(views.iter().map(|v| v.audio_frames as f64 / elapsed).collect()),
        "max_gap_ms_median": median(views.iter().map(|v| v.max_gap_ms as f64).collect()),
        "max_gap_ms_max": views.iter().map(|v| v.max_gap_ms).max().unwrap_or(0),
        "frames_lost": views.iter().map(|v| v.lost).sum::<u64>(),
        "video_frames": views.iter().map(|v| v.video_frames).sum::<u64>(),
        "packets_dropped_by_tool": views.iter().map(|v| v.dropped).sum::<u64>(),
        "server": server_cpu,
        "tool_cpu_pct": own_cpu,
    });
    println!("{out}");
    Ok(())
}
