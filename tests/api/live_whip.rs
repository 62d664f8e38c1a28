//! WHIP (RFC 9725) ingest end to end with two independent WebRTC stacks:
//! - headless Chromium (Debian's `chromium`, fake camera and microphone) publishing through
//!   tests/whip/publisher.html, driven over the DevTools protocol by tests/whip/chromium.py:
//!   H.264 passed through, and VP8 transcoded to H.264;
//! - aiortc (PyPI) publishing H.264 + Opus, and a client that vanishes without DELETE.
//!
//! Each goes to live HLS that ffprobe decodes as H.264 + AAC, DELETE ends the session, the
//! recording becomes ready. And the refusals. scripts/test installs chromium, and aiortc and
//! websockets into .data/venv-test.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::helpers::spawn_app_with;
use crate::live_rtmp::{Live, probe_segment, segment_uris};

fn python() -> String {
    format!("{}/.data/venv-test/bin/python", env!("CARGO_MANIFEST_DIR"))
}

/// Run the aiortc publisher to the end; its JSON step lines.
async fn aiortc_publish(url: String, key: String, extra: &'static [&'static str]) -> Vec<Value> {
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(python())
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/whip/publish.py"
            ))
            .args(["--url", &url, "--key", &key])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the aiortc publisher starts (scripts/test installs it)");
        let out = child.stdout.take().unwrap();
        let steps: Vec<Value> = BufReader::new(out)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| serde_json::from_str(&l).ok())
            .collect();
        let _ = child.wait();
        steps
    })
    .await
    .unwrap()
}

/// A publisher script running in the background; its JSON step lines as they come.
pub(crate) struct Publisher {
    child: Child,
    rx: mpsc::UnboundedReceiver<Value>,
    seen: Vec<Value>,
}

impl Publisher {
    /// Run `script` (under tests/whip/) with `--url`, `--key` and `extra`.
    pub(crate) fn spawn(script: &str, url: String, key: String, extra: &[&str]) -> Publisher {
        let mut child = Command::new(python())
            .arg(format!(
                "{}/tests/whip/{script}",
                env!("CARGO_MANIFEST_DIR")
            ))
            .args(["--url", &url, "--key", &key])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the publisher starts (scripts/test installs its packages)");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        Publisher {
            child,
            rx,
            seen: Vec::new(),
        }
    }

    /// Headless Chromium through the publisher page.
    fn chromium(live: &Live, extra: &[&str]) -> Publisher {
        Publisher::spawn("chromium.py", whip_url(live), key(live), extra)
    }

    /// Wait for step `name` (panics if the script ends without it).
    pub(crate) async fn step(&mut self, name: &str) -> Value {
        if let Some(s) = self.seen.iter().find(|s| s["step"] == name) {
            return s.clone();
        }
        loop {
            let next = tokio::time::timeout(Duration::from_secs(120), self.rx.recv()).await;
            match next {
                Ok(Some(s)) => {
                    self.seen.push(s.clone());
                    if s["step"] == name {
                        return s;
                    }
                }
                _ => panic!("no {name} step; steps: {:?}", self.seen),
            }
        }
    }

    /// Wait for the script to exit.
    pub(crate) async fn finish(mut self) {
        let start = Instant::now();
        while self.child.try_wait().unwrap().is_none() {
            if start.elapsed() > Duration::from_secs(30) {
                let _ = self.child.kill();
                panic!("the publisher did not exit; steps: {:?}", self.seen);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        // A failed test must not leave a browser behind (the script cleans up on exit).
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Poll the stream until its `active_session` satisfies `cond`.
pub(crate) async fn wait_active(live: &Live, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let s = live.stream_json().await;
        if cond(&s["active_session"]) {
            return s["active_session"].clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}: {s}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `#EXTINF` durations of a playlist.
fn durations(playlist: &str) -> Vec<f64> {
    playlist
        .lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .map(|l| l.trim_end_matches(',').parse::<f64>().unwrap())
        .collect()
}

pub(crate) fn whip_url(live: &Live) -> String {
    live.app.url(&format!("/whip/{}", live.id()))
}

pub(crate) fn key(live: &Live) -> String {
    live.stream["stream_key"].as_str().unwrap().to_string()
}

fn step<'a>(steps: &'a [Value], name: &str) -> &'a Value {
    steps
        .iter()
        .find(|s| s["step"] == name)
        .unwrap_or_else(|| panic!("no {name} step in {steps:?}"))
}

async fn wait_recording_ready(live: &Live, timeout: Duration) -> Value {
    let start = Instant::now();
    loop {
        let r = live
            .app
            .get_auth(
                &format!("/api/v1/recordings?live_stream_id={}", live.id()),
                &live.token,
            )
            .await;
        let v: Value = r.json().await.unwrap();
        if let Some(rec) = v["items"].as_array().and_then(|a| a.first()) {
            assert_ne!(rec["status"], "failed", "{rec}");
            if rec["status"] == "ready" {
                return rec.clone();
            }
        }
        assert!(start.elapsed() < timeout, "no ready recording: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn an_aiortc_publisher_goes_live_over_whip_and_its_recording_is_ready_after_delete() {
    let live = Live::start(0).await;

    let steps = aiortc_publish(whip_url(&live), key(&live), &["--seconds", "7"]).await;

    let answer = step(&steps, "answer");
    assert_eq!(answer["status"], 201, "{steps:?}");
    let location = answer["location"].as_str().unwrap();
    assert!(
        location.starts_with(&format!("/whip/{}/sessions/", live.id())),
        "{location}"
    );
    assert_eq!(step(&steps, "published")["state"], "connected", "{steps:?}");
    assert_eq!(step(&steps, "delete")["status"], 204, "{steps:?}");

    let playlist = live
        .wait_playlist(Duration::from_secs(20), "ENDLIST after DELETE", |p| {
            p.contains("#EXT-X-ENDLIST")
        })
        .await;
    let segments = segment_uris(&playlist);
    assert!(segments.len() >= 2, "{playlist}");
    assert_eq!(probe_segment(&live, &segments[0]).await, ["aac", "h264"]);

    // The session is gone: a second DELETE finds nothing.
    let r = live
        .app
        .client
        .delete(live.app.url(location))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    let rec = wait_recording_ready(&live, Duration::from_secs(60)).await;
    assert!(rec["duration_s"].as_f64().unwrap() > 3.0, "{rec}");
    let stream = live.stream_json().await;
    assert_eq!(stream["status"], "idle", "{stream}");
}

#[tokio::test]
async fn video_only_whip_goes_live_and_a_vanished_client_ends_by_ice_timeout() {
    let live = Live::start(0).await;

    let steps = aiortc_publish(
        whip_url(&live),
        key(&live),
        &["--seconds", "5", "--no-audio", "--no-delete"],
    )
    .await;
    assert_eq!(step(&steps, "answer")["status"], 201, "{steps:?}");

    // No DELETE: the server notices the silence (ICE consent) and ends the session.
    let playlist = live
        .wait_playlist(
            Duration::from_secs(60),
            "ENDLIST after the client vanished",
            |p| p.contains("#EXT-X-ENDLIST"),
        )
        .await;
    let segments = segment_uris(&playlist);
    assert!(!segments.is_empty(), "{playlist}");
    assert_eq!(probe_segment(&live, &segments[0]).await, ["h264"]);
}

#[tokio::test]
async fn whip_refuses_bad_requests_with_problem_json_and_leaves_nothing_behind() {
    let live = Live::start(0).await;
    let url = whip_url(&live);
    let client = &live.app.client;
    let post = |url: String, key: Option<String>, ct: &'static str, body: &'static str| async move {
        let mut r = client.post(url).header("content-type", ct).body(body);
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        r.send().await.unwrap()
    };
    let problem = |r: &reqwest::Response| {
        assert_eq!(r.headers()["content-type"], "application/problem+json");
    };

    let r = post(url.clone(), Some(key(&live)), "application/json", "{}").await;
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    problem(&r);
    let r = post(url.clone(), None, "application/sdp", "v=0").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    problem(&r);
    let r = post(url.clone(), Some("wrong".into()), "application/sdp", "v=0").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let other = live.app.url(&format!("/whip/{}", uuid::Uuid::now_v7()));
    let r = post(other, Some(key(&live)), "application/sdp", "v=0").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    problem(&r);
    let r = post(
        url.clone(),
        Some(key(&live)),
        "application/sdp",
        "not sdp at all",
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    problem(&r);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "malformed_sdp", "{body}");

    // A VP9-only offer (aiortc offers VP8 or H.264: rewrite its VP8 as VP9) names what it
    // offered and what would be accepted.
    let r = post(
        url.clone(),
        Some(key(&live)),
        "application/sdp",
        VP9_ONLY_OFFER,
    )
    .await;
    assert_eq!(r.status(), StatusCode::NOT_ACCEPTABLE);
    problem(&r);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "unsupported_codec", "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("VP9") && detail.contains("H.264 or VP8"),
        "{detail}"
    );

    // Nothing went live through any of these.
    assert!(live.stream_json().await["active_session"].is_null());
    assert!(live.playlist().await.is_none());

    // Trickle is not supported; unknown sessions are 404.
    let session = live.app.url(&format!("/whip/{}/sessions/nope", live.id()));
    let r = client.patch(&session).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    let r = client.delete(&session).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // A browser page on another origin may publish: the preflight allows it.
    let r = client
        .request(reqwest::Method::OPTIONS, &url)
        .header("origin", "https://teacher-page.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let allowed = r.headers()["access-control-allow-origin"].to_str().unwrap();
    assert!(
        allowed == "*" || allowed == "https://teacher-page.example",
        "{allowed}"
    );

    // Disabled: 403.
    assert!(live.action("disable").await.status().is_success());
    let r = post(url.clone(), Some(key(&live)), "application/sdp", "v=0").await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    problem(&r);
}

/// A browser-like offer whose only video codec is VP9 (from Chromium's, trimmed).
const VP9_ONLY_OFFER: &str = concat!(
    "v=0\r\n",
    "o=- 8644468542669769949 2 IN IP4 127.0.0.1\r\n",
    "s=-\r\n",
    "t=0 0\r\n",
    "a=group:BUNDLE 0 1\r\n",
    "a=msid-semantic: WMS\r\n",
    "m=video 9 UDP/TLS/RTP/SAVPF 98\r\n",
    "c=IN IP4 0.0.0.0\r\n",
    "a=rtcp:9 IN IP4 0.0.0.0\r\n",
    "a=ice-ufrag:iU6E\r\n",
    "a=ice-pwd:vF2/TKbGXlU2IEikzS7YSueg\r\n",
    "a=fingerprint:sha-256 6E:DC:01:31:16:EF:C3:C2:F8:E3:3C:5C:0B:06:4D:FA:24:0A:2E:DC:F5:76:2A:8C:AF:7B:AE:A7:10:39:EB:BC\r\n",
    "a=setup:actpass\r\n",
    "a=mid:0\r\n",
    "a=sendonly\r\n",
    "a=rtcp-mux\r\n",
    "a=rtpmap:98 VP9/90000\r\n",
    "a=fmtp:98 profile-id=0\r\n",
    "a=ssrc:90811480 cname:gGY11OVftwvaG2yt\r\n",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n",
    "c=IN IP4 0.0.0.0\r\n",
    "a=rtcp:9 IN IP4 0.0.0.0\r\n",
    "a=ice-ufrag:iU6E\r\n",
    "a=ice-pwd:vF2/TKbGXlU2IEikzS7YSueg\r\n",
    "a=fingerprint:sha-256 6E:DC:01:31:16:EF:C3:C2:F8:E3:3C:5C:0B:06:4D:FA:24:0A:2E:DC:F5:76:2A:8C:AF:7B:AE:A7:10:39:EB:BC\r\n",
    "a=setup:actpass\r\n",
    "a=mid:1\r\n",
    "a=sendonly\r\n",
    "a=rtcp-mux\r\n",
    "a=rtpmap:111 opus/48000/2\r\n",
    "a=ssrc:1081506905 cname:gGY11OVftwvaG2yt\r\n",
);

#[tokio::test]
async fn with_vp8_transcoding_off_a_vp8_offer_is_refused_with_a_reason() {
    let app = spawn_app_with(|s| s.whip.transcode_vp8 = false).await;
    let live = Live::on(app, 0, "public").await;
    // A real VP8-only offer, from aiortc.
    let steps = aiortc_publish(whip_url(&live), key(&live), &["--video-codec", "vp8"]).await;
    let answer = step(&steps, "answer");
    assert_eq!(answer["status"], 406, "{steps:?}");
    let body: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["code"], "unsupported_codec", "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("VP8") && detail.contains("transcoding is turned off"),
        "{detail}"
    );
    assert!(live.stream_json().await["active_session"].is_null());
    assert!(live.playlist().await.is_none());
}

#[tokio::test]
async fn headless_chromium_publishes_h264_over_whip_and_its_recording_is_ready() {
    let live = Live::start(0).await;
    let mut chromium = Publisher::chromium(&live, &["--codec", "h264", "--seconds", "11"]);

    let answer = chromium.step("answer").await;
    assert_eq!(answer["status"], 201, "{answer}");
    assert_eq!(answer["state"], "connected", "{answer}");
    assert!(
        answer["location"]
            .as_str()
            .unwrap()
            .starts_with(&format!("/whip/{}/sessions/", live.id())),
        "{answer}"
    );
    // While live: the picture size comes from the SPS, the frame rate from the SPS or measured.
    let active = wait_active(&live, "the picture size", |a| {
        a["width"].is_number() && a["frame_rate"].is_number()
    })
    .await;
    assert_eq!(active["protocol"], "whip", "{active}");
    assert_eq!(active["video_codec"], "h264", "{active}");
    assert_eq!(active["audio_codec"], "aac", "{active}");
    let fps = active["frame_rate"].as_f64().unwrap();
    assert!((5.0..=61.0).contains(&fps), "{active}");

    let published = chromium.step("published").await;
    assert_eq!(published["state"], "connected", "{published}");
    let video = &published["stats"]["video"];
    assert_eq!(video["codec"], "video/H264", "{published}");
    // The size announced is the size the browser encodes (the page keeps the resolution).
    assert_eq!(
        (&active["width"], &active["height"]),
        (&video["width"], &video["height"]),
        "{active} vs {published}"
    );
    assert_eq!(chromium.step("delete").await["status"], 204);
    chromium.finish().await;

    let playlist = live
        .wait_playlist(Duration::from_secs(20), "ENDLIST after DELETE", |p| {
            p.contains("#EXT-X-ENDLIST")
        })
        .await;
    let segments = segment_uris(&playlist);
    assert!(segments.len() >= 3, "{playlist}");
    // Browsers send keyframes only when asked: the server asks when a segment is due, so
    // segments keep to the 2 s target (the last one ends when the publisher does).
    let d = durations(&playlist);
    for x in &d[..d.len() - 1] {
        assert!((1.9..=2.8).contains(x), "segment of {x} s:\n{playlist}");
    }
    assert_eq!(probe_segment(&live, &segments[0]).await, ["aac", "h264"]);
    assert_eq!(
        probe_segment(&live, &segments[segments.len() - 2]).await,
        ["aac", "h264"]
    );

    let rec = wait_recording_ready(&live, Duration::from_secs(60)).await;
    assert!(rec["duration_s"].as_f64().unwrap() > 6.0, "{rec}");
    assert_eq!(rec["video_codec"], "h264", "{rec}");
    let stream = live.stream_json().await;
    assert_eq!(stream["status"], "idle", "{stream}");
}

#[tokio::test]
async fn headless_chromium_publishing_vp8_is_transcoded_to_h264() {
    let live = Live::start(0).await;
    let mut chromium = Publisher::chromium(
        &live,
        &[
            "--codec",
            "vp8",
            "--seconds",
            "9",
            "--width",
            "640",
            "--height",
            "480",
        ],
    );
    let answer = chromium.step("answer").await;
    assert_eq!(answer["status"], 201, "{answer}");
    assert_eq!(answer["state"], "connected", "{answer}");
    let active = wait_active(&live, "the picture size", |a| a["width"].is_number()).await;
    assert_eq!(active["video_codec"], "h264", "{active}");

    let published = chromium.step("published").await;
    let video = &published["stats"]["video"];
    assert_eq!(video["codec"], "video/VP8", "{published}");
    assert_eq!(
        (&active["width"], &active["height"]),
        (&video["width"], &video["height"]),
        "{active} vs {published}"
    );
    assert_eq!(chromium.step("delete").await["status"], 204);
    chromium.finish().await;

    let playlist = live
        .wait_playlist(Duration::from_secs(20), "ENDLIST after DELETE", |p| {
            p.contains("#EXT-X-ENDLIST")
        })
        .await;
    let segments = segment_uris(&playlist);
    assert!(segments.len() >= 3, "{playlist}");
    // The transcoder makes a keyframe every segment duration.
    let d = durations(&playlist);
    for x in &d[..d.len() - 1] {
        assert!((1.9..=2.5).contains(x), "segment of {x} s:\n{playlist}");
    }
    for uri in [&segments[0], &segments[segments.len() - 2]] {
        assert_eq!(probe_segment(&live, uri).await, ["aac", "h264"]);
    }
    let rec = wait_recording_ready(&live, Duration::from_secs(60)).await;
    assert_eq!(rec["video_codec"], "h264", "{rec}");
}

/// Width and height in the MP4's first track header (`tkhd`, 16.16 fixed point at its end).
fn mp4_track_size(mp4: &[u8]) -> (u32, u32) {
    let at = mp4
        .windows(4)
        .position(|w| w == b"tkhd")
        .expect("a tkhd box");
    let size = u32::from_be_bytes(mp4[at - 4..at].try_into().unwrap()) as usize;
    let tail = &mp4[at - 4 + size - 8..at - 4 + size];
    let w = u32::from_be_bytes(tail[..4].try_into().unwrap()) >> 16;
    let h = u32::from_be_bytes(tail[4..].try_into().unwrap()) >> 16;
    (w, h)
}

#[tokio::test]
async fn a_chromium_publisher_whose_resolution_ramps_gets_an_mp4_that_decodes_at_the_final_size() {
    let live = Live::start(0).await;
    // 320×180 (the camera scaled down by 4) for 4 s, then 1280×720, as browsers ramp up.
    let mut chromium = Publisher::chromium(
        &live,
        &[
            "--codec",
            "h264",
            "--seconds",
            "11",
            "--scale",
            "4",
            "--ramp-after",
            "4",
        ],
    );
    assert_eq!(chromium.step("answer").await["status"], 201);
    chromium.step("ramp").await;
    let published = chromium.step("published").await;
    let video = &published["stats"]["video"];
    assert_eq!(
        (&video["width"], &video["height"]),
        (&json!(1280), &json!(720)),
        "{published}"
    );
    assert_eq!(chromium.step("delete").await["status"], 204);
    chromium.finish().await;

    // The live segments follow the change.
    let playlist = live
        .wait_playlist(Duration::from_secs(20), "ENDLIST after DELETE", |p| {
            p.contains("#EXT-X-ENDLIST")
        })
        .await;
    let segments = segment_uris(&playlist);
    assert_eq!(
        probe_segment(&live, &segments[segments.len() - 2]).await,
        ["aac", "h264"]
    );

    // The recording: one MP4 that decodes without an error, the final size in its header, and
    // the API says the same size.
    // (`wait_ready` waits for the MP4 and the poster too.)
    let rec = live.wait_ready(Duration::from_secs(80)).await;
    let mp4 = rec["mp4_url"].as_str().expect("an MP4 was made");
    let bytes = live
        .app
        .client
        .get(mp4)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(mp4_track_size(&bytes), (1280, 720));
    assert_eq!(
        (&rec["width"], &rec["height"]),
        (&json!(1280), &json!(720)),
        "{rec}"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("replay.mp4");
    std::fs::write(&file, &bytes).unwrap();
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-i"])
        .arg(&file)
        .args(["-fps_mode", "vfr", "-f", "null", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Both sizes are in it, decoded from their own parameter sets.
    let sizes = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v",
            "-show_entries",
            "frame=width,height",
            "-of",
            "csv=p=0",
        ])
        .arg(&file)
        .output()
        .unwrap();
    let sizes = String::from_utf8_lossy(&sizes.stdout);
    assert!(sizes.lines().any(|l| l.trim() == "320,180"), "{sizes}");
    assert!(sizes.lines().any(|l| l.trim() == "1280,720"), "{sizes}");
}
