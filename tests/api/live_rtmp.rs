//! RTMP → GStreamer → live HLS, end to end with real publishers (ffmpeg, GStreamer) and
//! ffprobe checking what we serve.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app_with, wemaster_bin};

/// An app with RTMP on a free port, and a teacher's live stream.
pub(crate) struct Live {
    pub(crate) app: TestApp,
    pub(crate) token: String,
    pub(crate) stream: Value,
}

impl Live {
    pub(crate) async fn start(reconnect_window_s: u64) -> Live {
        Live::start_with(reconnect_window_s, "public").await
    }

    pub(crate) async fn start_with(reconnect_window_s: u64, visibility: &str) -> Live {
        Live::on(spawn_app_with(|_| {}).await, reconnect_window_s, visibility).await
    }

    /// A teacher and a live stream on an app spawned by the caller.
    pub(crate) async fn on(app: TestApp, reconnect_window_s: u64, visibility: &str) -> Live {
        let out = wemaster_bin()
            .args([
                "admin",
                "create-user",
                "--email",
                "teacher@school.example",
                "--role",
                "teacher",
            ])
            .env("DATABASE_URL", &app.database_url)
            .env("WEMASTER_ADMIN_PASSWORD", "a fine passphrase")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let token = app
            .login("teacher@school.example", "a fine passphrase")
            .await["access_token"]
            .as_str()
            .unwrap()
            .to_string();
        let r = app
            .client
            .post(app.url("/api/v1/live-streams"))
            .bearer_auth(&token)
            .json(&json!({"title": "Algebra, lesson 1", "reconnect_window_s": reconnect_window_s, "visibility": visibility}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let stream: Value = r.json().await.unwrap();
        Live { app, token, stream }
    }

    /// `POST /api/v1/live-streams/{id}/<verb>` as the teacher.
    pub(crate) async fn action(&self, verb: &str) -> reqwest::Response {
        self.app
            .client
            .post(
                self.app
                    .url(&format!("/api/v1/live-streams/{}/{verb}", self.id())),
            )
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
    }

    pub(crate) fn id(&self) -> &str {
        self.stream["id"].as_str().unwrap()
    }

    pub(crate) fn rtmp_url(&self) -> String {
        format!(
            "rtmp://127.0.0.1:{}/live/{}",
            self.app.rtmp_addr.port(),
            self.stream["stream_key"].as_str().unwrap()
        )
    }

    fn playlist_path(&self) -> String {
        format!("/hls/live/{}/index.m3u8", self.id())
    }

    /// The live playlist, checked by [`crate::playlists`], if it answers 200.
    pub(crate) async fn playlist(&self) -> Option<String> {
        crate::playlists::fetch(&self.app.client, &self.app.url(&self.playlist_path()))
            .await
            .ok()
    }

    pub(crate) async fn stream_json(&self) -> Value {
        self.app
            .get_auth(&format!("/api/v1/live-streams/{}", self.id()), &self.token)
            .await
            .json()
            .await
            .unwrap()
    }

    /// Wait until `cond` holds for the playlist, or panic after `timeout`.
    pub(crate) async fn wait_playlist(
        &self,
        timeout: Duration,
        what: &str,
        cond: impl Fn(&str) -> bool,
    ) -> String {
        let start = Instant::now();
        loop {
            if let Some(p) = self.playlist().await {
                if cond(&p) {
                    return p;
                }
            }
            assert!(
                start.elapsed() < timeout,
                "timed out waiting for: {what}; playlist: {:?}",
                self.playlist().await
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// ffmpeg publishing `seconds` of a 30 fps test pattern with a 1 s GOP and a tone.
pub(crate) fn ffmpeg_publish(url: &str, seconds: u32, realtime: bool) -> Child {
    ffmpeg_publish_gop(url, seconds, realtime, 30)
}

/// [`ffmpeg_publish`] with an IDR every `gop` frames (and no scene-cut keyframes).
pub(crate) fn ffmpeg_publish_gop(url: &str, seconds: u32, realtime: bool, gop: u32) -> Child {
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
    ])
    .args([
        "-f",
        "lavfi",
        "-i",
        &format!("sine=frequency=440:sample_rate=44100:duration={seconds}"),
    ])
    .args([
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-tune",
        "zerolatency",
        "-g",
        &gop.to_string(),
        "-sc_threshold",
        "0",
        "-pix_fmt",
        "yuv420p",
    ])
    .args(["-c:a", "aac", "-b:a", "64k", "-f", "flv", url])
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    cmd.spawn()
        .expect("ffmpeg is installed (scripts/test installs it)")
}

pub(crate) async fn wait_child(mut child: Child, timeout: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            panic!("publisher did not finish within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) fn segment_uris(playlist: &str) -> Vec<String> {
    playlist
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(str::to_string)
        .collect()
}

fn total_duration(playlist: &str) -> f64 {
    playlist
        .lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .map(|l| l.trim_end_matches(',').parse::<f64>().unwrap())
        .sum()
}

fn media_sequence(playlist: &str) -> u64 {
    playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .unwrap()
        .parse()
        .unwrap()
}

/// ffprobe the segment: the codecs it decodes.
pub(crate) async fn probe_segment(live: &Live, uri: &str) -> Vec<String> {
    let r = live
        .app
        .get(&format!("/hls/live/{}/{uri}", live.id()))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "video/mp2t");
    assert!(
        r.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    let bytes = r.bytes().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seg.ts");
    std::fs::write(&path, &bytes).unwrap();
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name",
            "-of",
            "csv=p=0",
        ])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ffprobe: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // MPEG-TS streams are listed under their program too: dedupe.
    let mut codecs: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    codecs.sort();
    codecs.dedup();
    // And it decodes from start to end without an error (a segment starts on a keyframe).
    // `-fps_mode vfr`: WebRTC video has a variable frame rate, and the null muxer's default
    // (passthrough on a 1/r_frame_rate clock) reports two close frames as a DTS error.
    let decode = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-i"])
        .arg(&path)
        .args(["-fps_mode", "vfr", "-f", "null", "-"])
        .output()
        .unwrap();
    assert!(
        decode.status.success() && decode.stderr.is_empty(),
        "decoding {uri}: {}",
        String::from_utf8_lossy(&decode.stderr)
    );
    codecs
}

#[tokio::test]
async fn ffmpeg_publish_becomes_live_hls_that_ends_after_the_window() {
    let live = Live::start(2).await;
    assert_eq!(
        live.app.get(&live.playlist_path()).await.status(),
        StatusCode::NOT_FOUND,
        "no playlist before publishing"
    );

    let status = wait_child(
        ffmpeg_publish(&live.rtmp_url(), 8, false),
        Duration::from_secs(60),
    )
    .await;
    assert!(status.success(), "ffmpeg failed");

    let playlist = live
        .wait_playlist(Duration::from_secs(20), "ENDLIST after the window", |p| {
            p.contains("#EXT-X-ENDLIST")
        })
        .await;
    // The target is the maximum segment length (twice the 2 s target): it may never change.
    assert!(playlist.contains("#EXT-X-TARGETDURATION:4\n"), "{playlist}");
    let total = total_duration(&playlist);
    let segments = segment_uris(&playlist);
    assert!(segments.len() >= 3, "{playlist}");
    // All 8 s are listed (the window holds 6 segments of 2 s): the sum is the published time.
    assert!(
        (total - 8.0).abs() < 0.6,
        "segments add up to {total} s, published 8 s:\n{playlist}"
    );
    assert_eq!(probe_segment(&live, &segments[0]).await, ["aac", "h264"]);
    assert_eq!(
        probe_segment(&live, segments.last().unwrap()).await,
        ["aac", "h264"]
    );

    let stream = live.stream_json().await;
    assert_eq!(stream["status"], "idle", "{stream}");
    assert!(stream["active_session"].is_null());
}

#[tokio::test]
async fn the_playlist_is_served_with_player_friendly_headers() {
    let live = Live::start(30).await;
    let mut child = ffmpeg_publish(&live.rtmp_url(), 30, true);
    let playlist = live
        .wait_playlist(Duration::from_secs(20), "a first segment", |p| {
            !segment_uris(p).is_empty()
        })
        .await;
    assert!(!playlist.contains("ENDLIST"));
    let r = live
        .app
        .client
        .get(
            live.app
                .url(&format!("{}?token=abc%2Fdef", live.playlist_path())),
        )
        .header("origin", "https://player.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "application/vnd.apple.mpegurl");
    assert_eq!(r.headers()["cache-control"], "no-cache");
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    let text = r.text().await.unwrap();
    assert!(
        segment_uris(&text)
            .iter()
            .all(|u| u.ends_with("?token=abc%2Fdef")),
        "{text}"
    );

    // While live the API shows the session.
    let stream = live.stream_json().await;
    assert_eq!(stream["status"], "active");
    assert_eq!(stream["active_session"]["publishing"], true, "{stream}");
    assert_eq!(stream["active_session"]["protocol"], "rtmp");

    // Metrics show the live session and the ingest.
    let metrics = live.app.get("/metrics").await.text().await.unwrap();
    // (The recorder is process-wide and tests run in parallel: presence, not values.)
    assert!(metrics.contains("live_sessions_active"), "{metrics}");
    assert!(metrics.contains("rtmp_bytes_received_total"), "{metrics}");
    assert!(metrics.contains("live_segments_total"), "{metrics}");

    // `complete` ends it now, without waiting for the 30 s window.
    let r = live.action("complete").await;
    assert!(r.status().is_success(), "{}", r.status());
    live.wait_playlist(Duration::from_secs(10), "ENDLIST after complete", |p| {
        p.contains("#EXT-X-ENDLIST")
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    // Unknown streams and foreign names are 404s.
    let r = live
        .app
        .get(&format!("/hls/live/{}/index.m3u8", uuid::Uuid::now_v7()))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = live
        .app
        .get(&format!("/hls/live/{}/..%2Fsecret.ts", live.id()))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_reconnect_inside_the_window_continues_the_same_playlist() {
    let live = Live::start(20).await;
    assert!(
        wait_child(
            ffmpeg_publish(&live.rtmp_url(), 4, false),
            Duration::from_secs(60)
        )
        .await
        .success()
    );
    let first = live
        .wait_playlist(Duration::from_secs(20), "first publisher's segments", |p| {
            total_duration(p) > 3.5
        })
        .await;
    let session_before = live.stream_json().await["active_session"]["session_id"].clone();
    assert!(!session_before.is_null());
    assert!(
        wait_child(
            ffmpeg_publish(&live.rtmp_url(), 4, false),
            Duration::from_secs(60)
        )
        .await
        .success()
    );
    let second = live
        .wait_playlist(
            Duration::from_secs(20),
            "second publisher's segments",
            |p| total_duration(p) > 7.5,
        )
        .await;
    assert!(
        !second.contains("#EXT-X-ENDLIST"),
        "still inside the window"
    );
    assert_eq!(
        second.matches("#EXT-X-DISCONTINUITY\n").count(),
        1,
        "{second}"
    );
    assert!(media_sequence(&second) >= media_sequence(&first));
    // Every segment listed before is still there, in order, before the discontinuity.
    let before = segment_uris(&first);
    let after = segment_uris(&second);
    assert_eq!(
        &after[..before.len()],
        &before[..],
        "{first}\n---\n{second}"
    );
    assert_eq!(
        live.stream_json().await["active_session"]["session_id"],
        session_before,
        "same live session"
    );
}

#[tokio::test]
async fn a_second_publisher_takes_over_a_live_stream() {
    let live = Live::start(30).await;
    let mut first = ffmpeg_publish(&live.rtmp_url(), 60, true);
    live.wait_playlist(Duration::from_secs(20), "the first publisher live", |p| {
        !segment_uris(p).is_empty()
    })
    .await;
    let mut second = ffmpeg_publish(&live.rtmp_url(), 60, true);
    // The first connection is closed by the server: ffmpeg exits on its own.
    let start = Instant::now();
    let first_status = loop {
        if let Some(s) = first.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the first publisher was not replaced"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        !first_status.success(),
        "the replaced publisher sees its connection end"
    );
    live.wait_playlist(
        Duration::from_secs(20),
        "segments of the second publisher",
        |p| p.contains("#EXT-X-DISCONTINUITY"),
    )
    .await;
    assert!(
        second.try_wait().unwrap().is_none(),
        "the second publisher keeps going"
    );
    let _ = second.kill();
    let _ = second.wait();
}

#[tokio::test]
async fn a_wrong_key_is_refused_and_nothing_goes_live() {
    let live = Live::start(2).await;
    let url = format!(
        "rtmp://127.0.0.1:{}/live/wmk_not-a-real-key",
        live.app.rtmp_addr.port()
    );
    let status = wait_child(ffmpeg_publish(&url, 3, false), Duration::from_secs(30)).await;
    assert!(!status.success(), "ffmpeg must fail against a wrong key");
    assert_eq!(
        live.app.get(&live.playlist_path()).await.status(),
        StatusCode::NOT_FOUND
    );
    // And a disabled stream refuses its own key.
    let r = live.action("disable").await;
    assert!(r.status().is_success());
    let status = wait_child(
        ffmpeg_publish(&live.rtmp_url(), 3, false),
        Duration::from_secs(30),
    )
    .await;
    assert!(!status.success(), "a disabled stream refuses publishers");
    assert_eq!(
        live.app.get(&live.playlist_path()).await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_gstreamer_publisher_goes_live_too() {
    let live = Live::start(1).await;
    let pipeline = format!(
        "videotestsrc num-buffers=150 is-live=false ! video/x-raw,width=320,height=240,framerate=30/1 \
         ! x264enc tune=zerolatency key-int-max=30 speed-preset=ultrafast ! h264parse ! flvmux name=m streamable=true \
         ! rtmp2sink location={} audiotestsrc num-buffers=220 samplesperbuffer=1024 ! audio/x-raw,rate=44100 \
         ! voaacenc ! aacparse ! m.",
        live.rtmp_url()
    );
    let child = Command::new("gst-launch-1.0")
        .args(["-q"])
        .args(pipeline.split_whitespace())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gst-launch-1.0 is installed");
    let status = wait_child(child, Duration::from_secs(60)).await;
    assert!(status.success(), "gst-launch failed");
    let playlist = live
        .wait_playlist(Duration::from_secs(20), "ENDLIST", |p| {
            p.contains("#EXT-X-ENDLIST")
        })
        .await;
    let total = total_duration(&playlist);
    assert!(
        (total - 5.0).abs() < 0.6,
        "published 5 s, listed {total} s:\n{playlist}"
    );
    assert_eq!(
        probe_segment(&live, &segment_uris(&playlist)[0]).await,
        ["aac", "h264"]
    );
}

#[tokio::test]
async fn a_private_stream_needs_a_playback_token_on_every_request() {
    let live = Live::start_with(1, "private").await;
    assert!(
        wait_child(
            ffmpeg_publish(&live.rtmp_url(), 4, false),
            Duration::from_secs(60)
        )
        .await
        .success()
    );
    let r = live.action("playback-token").await;
    assert_eq!(r.status(), StatusCode::OK);
    let grant: Value = r.json().await.unwrap();
    let token = grant["token"].as_str().unwrap().to_string();
    assert!(
        grant["hls_url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("index.m3u8?token={token}"))
    );

    // Poll with the token until the session has ended.
    let with_token = format!("{}?token={token}", live.playlist_path());
    let start = Instant::now();
    let playlist = loop {
        if let Ok(text) =
            crate::playlists::fetch(&live.app.client, &live.app.url(&with_token)).await
        {
            if text.contains("#EXT-X-ENDLIST") {
                break text;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no ended playlist"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let uris = segment_uris(&playlist);
    assert!(
        !uris.is_empty() && uris.iter().all(|u| u.ends_with(&format!("?token={token}"))),
        "{playlist}"
    );

    crate::helpers::assert_problem(
        live.app.get(&live.playlist_path()).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    let forged = format!(
        "{}?token=99999999999.{}",
        live.playlist_path(),
        &token[token.find('.').unwrap() + 1..]
    );
    crate::helpers::assert_problem(
        live.app.get(&forged).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;

    let segment = format!("/hls/live/{}/{}", live.id(), uris[0]);
    assert_eq!(live.app.get(&segment).await.status(), StatusCode::OK);
    let bare = segment.split('?').next().unwrap().to_string();
    assert_eq!(live.app.get(&bare).await.status(), StatusCode::UNAUTHORIZED);
}

/// A spool write error (a full or vanished disk) closes the publisher's connection and says
/// why, but the lesson waits for the encoder as after a network drop: the fault bench found
/// that ending the session there cost the rest of the lesson's recording.
#[tokio::test]
async fn a_spool_that_fails_mid_stream_drops_the_publisher_but_the_session_waits_for_it() {
    let live = Live::start(30).await;
    let publisher = ffmpeg_publish(&live.rtmp_url(), 12, true);
    let first = live
        .wait_playlist(Duration::from_secs(30), "a first segment", |p| {
            !segment_uris(p).is_empty()
        })
        .await;
    let session = segment_uris(&first)[0]
        .split('/')
        .next()
        .unwrap()
        .to_string();
    // The session's spool directory turns into a file (a vanished or read-only disk looks the
    // same to the writer): the next segment cannot be created.
    let spool = live
        .app
        .settings
        .media
        .spool_dir
        .join("live")
        .join(live.id());
    let session_dir = spool.join(&session);
    std::fs::remove_dir_all(&session_dir).unwrap();
    std::fs::write(&session_dir, b"not a directory").unwrap();
    // Whether ffmpeg notices depends on timing; the server side is what counts.
    let _ = wait_child(publisher, Duration::from_secs(60)).await;
    // Its connection was closed with the reason.
    let start = Instant::now();
    let disconnected = loop {
        let events: Value = live
            .app
            .get_auth(
                &format!("/api/v1/live-streams/{}/events?limit=100", live.id()),
                &live.token,
            )
            .await
            .json()
            .await
            .unwrap();
        if let Some(e) = events["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["kind"] == "live_stream.disconnected")
        {
            break e.clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no disconnected event: {events}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        disconnected["payload"]["error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{disconnected}"
    );
    assert_ne!(
        live.stream_json().await["status"],
        "idle",
        "the session waits for its publisher"
    );
    // The disk is back; the encoder reconnects into the same session.
    std::fs::remove_file(&session_dir).unwrap();
    assert!(
        wait_child(
            ffmpeg_publish(&live.rtmp_url(), 4, false),
            Duration::from_secs(60)
        )
        .await
        .success()
    );
    let after = live
        .wait_playlist(Duration::from_secs(20), "the reconnect's segments", |p| {
            p.contains("#EXT-X-DISCONTINUITY")
        })
        .await;
    assert!(
        segment_uris(&after)
            .iter()
            .all(|u| u.starts_with(&format!("{session}/"))),
        "one session: {after}"
    );
    assert_eq!(
        live.app.get("/healthz").await.status(),
        StatusCode::OK,
        "the process is unaffected"
    );
}
