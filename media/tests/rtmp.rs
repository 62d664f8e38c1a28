//! RTMP ingest with real publishers on loopback: ffmpeg (as Jibri publishes) and GStreamer's
//! `rtmp2sink`, plus hostile and administrative cases (wrong key, garbage, kick, silence,
//! shutdown). Each test runs its own `serve` on 127.0.0.1:0 with a test authority that accepts
//! key `good-key` in app `live`.
//!
//! Needs `ffmpeg` and `gst-launch-1.0` (x264enc, voaacenc, flvmux, rtmp2sink) on PATH.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use wemaster_media::rtmp::{
    AudioCodec, EndReason, MediaFrame, PublishGrant, PublishRequest, RefuseReason, RtmpConfig,
    VideoCodec, serve,
};

const GOOD_KEY: &str = "good-key";

/// A granted publish as the test authority saw it.
struct Publish {
    frames: mpsc::Receiver<MediaFrame>,
    kick: CancellationToken,
}

struct TestServer {
    addr: SocketAddr,
    shutdown: CancellationToken,
    serving: JoinHandle<()>,
    publishes: mpsc::UnboundedReceiver<Publish>,
    refusals: mpsc::UnboundedReceiver<RefuseReason>,
}

impl TestServer {
    async fn start(config: RtmpConfig) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "warn".into()),
            )
            .with_test_writer()
            .try_init();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (requests, mut incoming) = mpsc::channel::<PublishRequest>(16);
        let (publishes_tx, publishes) = mpsc::unbounded_channel();
        let (refusals_tx, refusals) = mpsc::unbounded_channel();
        let queue = config.frame_queue;
        tokio::spawn(async move {
            while let Some(request) = incoming.recv().await {
                let decision = if request.app != "live" {
                    Err(RefuseReason::WrongApp)
                } else if request.stream_key != GOOD_KEY {
                    Err(RefuseReason::UnknownKey)
                } else {
                    Ok(())
                };
                match decision {
                    Ok(()) => {
                        let (frames_tx, frames) = mpsc::channel(queue);
                        let kick = CancellationToken::new();
                        let grant = PublishGrant {
                            frames: frames_tx,
                            kick: kick.clone(),
                            // No inline output: the frames come out of the channel.
                            output: Default::default(),
                            whep: None,
                        };
                        if request.reply.send(Ok(grant)).is_ok() {
                            let _ = publishes_tx.send(Publish { frames, kick });
                        }
                    }
                    Err(reason) => {
                        let _ = refusals_tx.send(reason);
                        let _ = request.reply.send(Err(reason));
                    }
                }
            }
        });
        let shutdown = CancellationToken::new();
        let serving = tokio::spawn(serve(listener, config, requests, shutdown.clone()));
        Self {
            addr,
            shutdown,
            serving,
            publishes,
            refusals,
        }
    }

    fn url(&self, app: &str, key: &str) -> String {
        format!("rtmp://{}/{app}/{key}", self.addr)
    }

    async fn next_publish(&mut self) -> Publish {
        timeout(Duration::from_secs(15), self.publishes.recv())
            .await
            .expect("no publish within 15 s")
            .expect("authority gone")
    }
}

/// Receive frames until `End` (included).
async fn collect_until_end(frames: &mut mpsc::Receiver<MediaFrame>) -> Vec<MediaFrame> {
    let mut out = Vec::new();
    loop {
        let frame = timeout(Duration::from_secs(20), frames.recv())
            .await
            .expect("no End within 20 s")
            .expect("frame channel closed without End");
        let end = matches!(frame, MediaFrame::End(_));
        out.push(frame);
        if end {
            return out;
        }
    }
}

/// ffmpeg publishing `seconds` of 640x360@30 test video and a 440 Hz sine as H.264/AAC FLV.
fn ffmpeg(url: &str, seconds: u32, realtime: bool) -> Child {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-nostdin"]);
    if realtime {
        cmd.arg("-re");
    }
    cmd.args([
        "-f",
        "lavfi",
        "-i",
        &format!("testsrc2=size=640x360:rate=30:duration={seconds}"),
        "-f",
        "lavfi",
        "-i",
        &format!("sine=frequency=440:sample_rate=44100:duration={seconds}"),
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-tune",
        "zerolatency",
        "-g",
        "60",
        "-c:a",
        "aac",
        "-f",
        "flv",
        url,
    ]);
    cmd.stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("ffmpeg runs")
}

struct Summary {
    metadata: usize,
    video: usize,
    audio: usize,
    keyframes: usize,
    avc_header: bool,
    aac_header: bool,
    end: Option<EndReason>,
}

fn summarize(frames: &[MediaFrame]) -> Summary {
    let mut s = Summary {
        metadata: 0,
        video: 0,
        audio: 0,
        keyframes: 0,
        avc_header: false,
        aac_header: false,
        end: None,
    };
    let (mut last_video, mut last_audio) = (0u64, 0u64);
    for frame in frames {
        assert!(s.end.is_none(), "frame after End: {frame:?}");
        match frame {
            MediaFrame::Metadata(_) => s.metadata += 1,
            MediaFrame::Video(v) => {
                assert!(v.dts_ms >= last_video, "video dts went back");
                last_video = v.dts_ms;
                if v.sequence_header {
                    assert_eq!(v.codec, VideoCodec::H264);
                    s.avc_header = true;
                } else {
                    s.video += 1;
                    s.keyframes += usize::from(v.keyframe);
                }
            }
            MediaFrame::Audio(a) => {
                assert!(a.dts_ms >= last_audio, "audio dts went back");
                last_audio = a.dts_ms;
                if a.sequence_header {
                    assert_eq!(a.codec, AudioCodec::Aac);
                    s.aac_header = true;
                } else {
                    s.audio += 1;
                }
            }
            MediaFrame::End(reason) => s.end = Some(reason.clone()),
        }
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_publishes_h264_and_aac() {
    let mut server = TestServer::start(RtmpConfig::default()).await;
    let mut child = ffmpeg(&server.url("live", GOOD_KEY), 3, false);
    let mut publish = server.next_publish().await;
    let frames = collect_until_end(&mut publish.frames).await;
    let status = timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "ffmpeg failed: {status}");

    let MediaFrame::Metadata(info) = &frames[0] else {
        panic!("first frame is not metadata: {:?}", frames[0]);
    };
    assert_eq!((info.width, info.height), (Some(640), Some(360)));
    assert_eq!(info.video_codec, Some(VideoCodec::H264));
    assert_eq!(info.audio_codec, Some(AudioCodec::Aac));
    let s = summarize(&frames);
    assert!(s.avc_header && s.aac_header);
    assert!((85..=95).contains(&s.video), "{} video frames", s.video);
    assert!(s.keyframes >= 2, "{} keyframes", s.keyframes);
    assert!(s.audio > 100, "{} audio frames", s.audio);
    assert_eq!(s.end, Some(EndReason::PublisherClosed));
    // Profile/level and sample rate came from the sequence headers.
    let last_info = frames
        .iter()
        .rev()
        .find_map(|f| match f {
            MediaFrame::Metadata(i) => Some(i),
            _ => None,
        })
        .unwrap();
    assert!(last_info.video_profile.is_some() && last_info.video_level.is_some());
    assert_eq!(last_info.audio_sample_rate, Some(44100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gstreamer_rtmp2sink_publishes_and_the_disconnect_ends_it() {
    let mut server = TestServer::start(RtmpConfig::default()).await;
    let pipeline = format!(
        "videotestsrc num-buffers=90 ! video/x-raw,width=320,height=240,framerate=30/1 \
         ! x264enc tune=zerolatency key-int-max=60 ! h264parse ! flvmux name=m streamable=true \
         ! rtmp2sink location={} \
         audiotestsrc num-buffers=100 ! voaacenc ! aacparse ! m.",
        server.url("live", GOOD_KEY)
    );
    let mut child = Command::new("gst-launch-1.0")
        .args(["-q", "-e"])
        .args(pipeline.split_whitespace())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("gst-launch-1.0 runs");
    let mut publish = server.next_publish().await;
    let frames = collect_until_end(&mut publish.frames).await;
    let _ = timeout(Duration::from_secs(10), child.wait()).await;

    let s = summarize(&frames);
    assert!(s.avc_header && s.aac_header);
    assert!(s.video >= 80, "{} video frames", s.video);
    assert!(s.audio > 50, "{} audio frames", s.audio);
    assert!(s.keyframes >= 1);
    assert_eq!(s.end, Some(EndReason::PublisherClosed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_or_app_is_refused_quickly() {
    let mut server = TestServer::start(RtmpConfig::default()).await;
    for (app, key, expected) in [
        ("live", "bad-key", RefuseReason::UnknownKey),
        ("other", GOOD_KEY, RefuseReason::WrongApp),
    ] {
        let mut child = ffmpeg(&server.url(app, key), 1, false);
        let status = timeout(Duration::from_secs(5), child.wait())
            .await
            .expect("ffmpeg did not exit within 5 s")
            .unwrap();
        assert!(!status.success(), "ffmpeg succeeded with {app}/{key}");
        assert_eq!(server.refusals.try_recv(), Ok(expected));
    }
    assert!(
        server.publishes.try_recv().is_err(),
        "a publish was granted"
    );
}

/// A raw TCP connection that completes a valid handshake.
async fn handshaken(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut handshake = Handshake::new(PeerType::Client);
    let c0c1 = handshake.generate_outbound_p0_and_p1().unwrap();
    stream.write_all(&c0c1).await.unwrap();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "server closed during the handshake");
        match handshake.process_bytes(&buf[..n]).unwrap() {
            HandshakeProcessResult::InProgress { response_bytes } => {
                stream.write_all(&response_bytes).await.unwrap();
            }
            HandshakeProcessResult::Completed { response_bytes, .. } => {
                stream.write_all(&response_bytes).await.unwrap();
                return stream;
            }
        }
    }
}

/// Wait until the server closes `stream` (EOF or reset), discarding what it sends.
async fn closed_by_server(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    timeout(within, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_one_connection_leaves_a_concurrent_publish_alone() {
    let mut server = TestServer::start(RtmpConfig::default()).await;
    let mut child = ffmpeg(&server.url("live", GOOD_KEY), 3, true);
    let mut publish = server.next_publish().await;
    let first = publish.frames.recv().await.unwrap();
    assert!(matches!(first, MediaFrame::Metadata(_)));

    let mut garbage = handshaken(server.addr).await;
    let mut seed = 0xDEAD_BEEFu32;
    let bytes: Vec<u8> = (0..64 * 1024)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed as u8
        })
        .collect();
    let _ = garbage.write_all(&bytes).await;
    assert!(
        closed_by_server(&mut garbage, Duration::from_secs(3)).await,
        "garbage connection still open"
    );

    let frames = collect_until_end(&mut publish.frames).await;
    let status = timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    let s = summarize(&frames);
    assert!((85..=95).contains(&s.video), "{} video frames", s.video);
    assert_eq!(s.end, Some(EndReason::PublisherClosed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kicked_publisher_is_disconnected_and_gets_end_kicked() {
    let mut server = TestServer::start(RtmpConfig::default()).await;
    let mut child = ffmpeg(&server.url("live", GOOD_KEY), 20, true);
    let mut publish = server.next_publish().await;
    let mut video = 0;
    while video < 15 {
        match publish.frames.recv().await.unwrap() {
            MediaFrame::Video(_) => video += 1,
            MediaFrame::End(reason) => panic!("ended early: {reason:?}"),
            _ => {}
        }
    }
    publish.kick.cancel();
    let rest = collect_until_end(&mut publish.frames).await;
    assert_eq!(
        rest.last(),
        Some(&MediaFrame::End(EndReason::Kicked)),
        "{:?}",
        rest.last()
    );
    // ffmpeg notices the closed connection and gives up well before its 20 s.
    let status = timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("ffmpeg still running after the kick")
        .unwrap();
    assert!(!status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_time_out() {
    let config = RtmpConfig {
        handshake_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(500),
        ..RtmpConfig::default()
    };
    let server = TestServer::start(config).await;
    // Never completes the handshake.
    let mut mute = TcpStream::connect(server.addr).await.unwrap();
    // Completes the handshake, then never publishes.
    let mut idle = handshaken(server.addr).await;
    assert!(closed_by_server(&mut mute, Duration::from_secs(2)).await);
    assert!(closed_by_server(&mut idle, Duration::from_secs(2)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_publishes_and_stops_serving() {
    let mut server = TestServer::start(RtmpConfig::default()).await;
    let _child = ffmpeg(&server.url("live", GOOD_KEY), 20, true);
    let mut publish = server.next_publish().await;
    let _ = publish.frames.recv().await.unwrap();
    server.shutdown.cancel();
    let rest = collect_until_end(&mut publish.frames).await;
    assert_eq!(rest.last(), Some(&MediaFrame::End(EndReason::Shutdown)));
    timeout(Duration::from_secs(5), server.serving)
        .await
        .expect("serve did not return after shutdown")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_are_closed_at_once() {
    let config = RtmpConfig {
        max_connections: 1,
        ..RtmpConfig::default()
    };
    let server = TestServer::start(config).await;
    let _first = handshaken(server.addr).await;
    let mut second = TcpStream::connect(server.addr).await.unwrap();
    assert!(closed_by_server(&mut second, Duration::from_secs(2)).await);
}
