//! Recordings end to end: real publishers (ffmpeg), the real GStreamer remux, local storage and
//! the S3-compatible server started by scripts/test; ffprobe/ffmpeg check what we serve.

use std::time::{Duration, Instant};

// Async: the app under test runs on the test's runtime, so a blocking wait for a child that
// talks to it would deadlock.
use tokio::process::Command;

use reqwest::StatusCode;
use serde_json::Value;

use crate::{
    helpers::spawn_app_with,
    live_rtmp::{Live, ffmpeg_publish, segment_uris, wait_child},
};

impl Live {
    /// The stream's recordings, newest first.
    async fn recordings(&self) -> Vec<Value> {
        let r = self
            .app
            .get_auth(
                &format!("/api/v1/recordings?live_stream_id={}", self.id()),
                &self.token,
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        let v: Value = r.json().await.unwrap();
        v["items"].as_array().unwrap().clone()
    }

    /// Wait for exactly one recording of the stream to be `ready` (panics on `failed`).
    async fn wait_ready(&self, timeout: Duration) -> Value {
        let start = Instant::now();
        loop {
            let recs = self.recordings().await;
            if let Some(r) = recs.first() {
                assert_ne!(r["status"], "failed", "{r}");
                if r["status"] == "ready" {
                    assert_eq!(recs.len(), 1, "one recording per session: {recs:?}");
                    return r.clone();
                }
            }
            assert!(
                start.elapsed() < timeout,
                "no ready recording within {timeout:?}: {recs:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// ffprobe's duration of what `url` serves, in seconds.
async fn probe_duration(url: &str) -> f64 {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
            url,
        ])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// The codecs of the streams ffprobe finds.
async fn probe_codecs(url: &str) -> Vec<String> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name",
            "-of",
            "csv=p=0",
            url,
        ])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().trim_end_matches(',').to_string())
        .collect()
}

/// Decode every frame of `url` with ffmpeg; errors fail the test.
async fn decode_all(url: &str) {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-xerror", "-i", url, "-f", "null", "-"])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_lesson_becomes_a_ready_recording_with_hls_mp4_and_poster() {
    let live = Live::start(0).await;
    assert_eq!(live.stream["record"], true, "recording is on by default");
    let status = wait_child(
        ffmpeg_publish(&live.rtmp_url(), 9, false),
        Duration::from_secs(60),
    )
    .await;
    assert!(status.success());
    let rec = live.wait_ready(Duration::from_secs(30)).await;

    // Duration within one segment of what was published; facts filled in.
    let duration = rec["duration_s"].as_f64().unwrap();
    assert!((duration - 9.0).abs() <= 2.0, "{rec}");
    assert!(rec["segment_count"].as_i64().unwrap() >= 4, "{rec}");
    assert_eq!(rec["video_codec"], "h264");
    assert_eq!(rec["audio_codec"], "aac");
    assert_eq!(rec["width"], 640);
    assert!(rec["size_bytes"].as_i64().unwrap() > 100_000, "{rec}");

    // The replay playlist is VOD, ends, and plays through with ffmpeg.
    let hls = rec["hls_url"].as_str().unwrap();
    let playlist = live
        .app
        .client
        .get(hls)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(playlist.contains("#EXT-X-PLAYLIST-TYPE:VOD"), "{playlist}");
    assert!(playlist.ends_with("#EXT-X-ENDLIST\n"), "{playlist}");
    let played = probe_duration(hls).await;
    assert!((played - 9.0).abs() <= 2.0, "the replay plays {played} s");
    decode_all(hls).await;

    // The MP4 is a real MP4 of the same length and answers Range requests.
    let mp4 = rec["mp4_url"].as_str().unwrap();
    assert_eq!(probe_codecs(mp4).await, ["h264", "aac"]);
    let mp4_len = probe_duration(mp4).await;
    assert!(
        (mp4_len - played).abs() <= 0.5,
        "mp4 {mp4_len} s vs hls {played} s"
    );
    let r = live
        .app
        .client
        .get(mp4)
        .header("Range", "bytes=0-99")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert!(
        r.headers()["content-range"]
            .to_str()
            .unwrap()
            .starts_with("bytes 0-99/")
    );
    let head = r.bytes().await.unwrap();
    assert_eq!(head.len(), 100);
    assert_eq!(&head[4..8], b"ftyp", "an MP4 starts with ftyp");
    // Faststart: the moov box comes before the media data.
    let whole = live
        .app
        .client
        .get(mp4)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let moov = whole.windows(4).position(|w| w == b"moov").unwrap();
    let mdat = whole.windows(4).position(|w| w == b"mdat").unwrap();
    assert!(moov < mdat, "faststart MP4");

    // The poster is a JPEG.
    let poster = live
        .app
        .client
        .get(rec["poster_url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(poster.status(), StatusCode::OK);
    assert_eq!(poster.headers()["content-type"], "image/jpeg");
    assert_eq!(&poster.bytes().await.unwrap()[..2], &[0xFF, 0xD8]);

    // Everything is in object storage under recordings/<id>/.
    let id = rec["id"].as_str().unwrap();
    let dir = live.app.storage_root.join("recordings").join(id);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    assert!(names.contains(&"index.m3u8".to_string()), "{names:?}");
    assert!(names.contains(&"recording.mp4".to_string()), "{names:?}");
    assert!(names.contains(&"poster.jpg".to_string()), "{names:?}");
    let segments = names.iter().filter(|n| n.ends_with(".ts")).count() as i64;
    assert_eq!(segments, rec["segment_count"].as_i64().unwrap());

    // Deleting removes every object; deleting again is still 204; then it is gone.
    let del = |token: String| {
        let client = live.app.client.clone();
        let url = live.app.url(&format!("/api/v1/recordings/{id}"));
        async move {
            client
                .delete(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(del(live.token.clone()).await, StatusCode::NO_CONTENT);
    assert!(!dir.exists() || std::fs::read_dir(&dir).unwrap().next().is_none());
    assert_eq!(del(live.token.clone()).await, StatusCode::NO_CONTENT);
    let gone = live
        .app
        .get_auth(&format!("/api/v1/recordings/{id}"), &live.token)
        .await;
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        live.app.client.get(hls).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_reconnect_inside_the_window_gives_one_recording_with_a_discontinuity() {
    let live = Live::start(30).await;
    for _ in 0..2 {
        let status = wait_child(
            ffmpeg_publish(&live.rtmp_url(), 5, false),
            Duration::from_secs(60),
        )
        .await;
        assert!(status.success());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(live.action("complete").await.status(), StatusCode::OK);
    let rec = live.wait_ready(Duration::from_secs(30)).await;
    let duration = rec["duration_s"].as_f64().unwrap();
    assert!((duration - 10.0).abs() <= 2.0, "both parts: {rec}");
    let hls = rec["hls_url"].as_str().unwrap();
    let playlist = live
        .app
        .client
        .get(hls)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        playlist.matches("#EXT-X-DISCONTINUITY").count(),
        1,
        "{playlist}"
    );
    decode_all(hls).await;
    // One continuous timeline: the MP4 holds both parts without a jump back.
    let mp4 = probe_duration(rec["mp4_url"].as_str().unwrap()).await;
    assert!((mp4 - duration).abs() <= 1.0, "mp4 {mp4} s vs {duration} s");
}

#[tokio::test]
async fn private_recordings_need_a_token_on_every_replay_request() {
    let live = Live::start_with(0, "private").await;
    wait_child(
        ffmpeg_publish(&live.rtmp_url(), 5, false),
        Duration::from_secs(60),
    )
    .await;
    let rec = live.wait_ready(Duration::from_secs(30)).await;
    let hls = rec["hls_url"].as_str().unwrap();
    assert_eq!(
        live.app.client.get(hls).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let mp4 = rec["mp4_url"].as_str().unwrap();
    assert_eq!(
        live.app.client.get(mp4).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let t: Value = live
        .app
        .client
        .post(live.app.url(&format!(
            "/api/v1/recordings/{}/playback-token",
            rec["id"].as_str().unwrap()
        )))
        .bearer_auth(&live.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let with_token = t["hls_url"].as_str().unwrap();
    let playlist = live
        .app
        .client
        .get(with_token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let uris = segment_uris(&playlist);
    assert!(uris.iter().all(|u| u.contains("?token=")), "{playlist}");
    decode_all(with_token).await;
    let bad = format!("{hls}?token=1.AAAA");
    assert_eq!(
        live.app.client.get(&bad).send().await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn segments_reach_s3_while_the_lesson_is_live() {
    let var = |n: &str| {
        std::env::var(n).unwrap_or_else(|_| panic!("{n} is not set: run through scripts/test"))
    };
    let bucket = format!("rec-{}", uuid::Uuid::new_v4().simple());
    let (endpoint, access, secret) = (
        var("WEMASTER_TEST_S3_ENDPOINT"),
        var("WEMASTER_TEST_S3_ACCESS_KEY"),
        var("WEMASTER_TEST_S3_SECRET_KEY"),
    );
    let app = spawn_app_with(move |s| {
        s.storage.backend = wemaster::config::StorageBackend::S3;
        s.storage.s3.endpoint = endpoint;
        s.storage.s3.bucket = bucket;
        s.storage.s3.access_key_id = access;
        s.storage.s3.secret_access_key = wemaster::config::Secret::new(secret);
        s.storage.s3.force_path_style = true;
        s.storage.s3.create_bucket = true;
    })
    .await;
    let live = Live::on(app, 0, "public").await;
    let publisher = ffmpeg_publish(&live.rtmp_url(), 10, true);
    // While the publisher is still sending, the recording's first segments are in the bucket.
    let start = Instant::now();
    let (id, listed) = loop {
        let recs = live.recordings().await;
        if let Some(r) = recs.first() {
            assert_eq!(r["status"], "recording");
            let id = r["id"].as_str().unwrap().to_string();
            let key =
                wemaster::storage::ObjectKey::parse(format!("recordings/{id}/index.m3u8")).unwrap();
            if let Ok(obj) = live.app.storage().await.get(&key, None).await {
                let text = String::from_utf8(obj.bytes().await.unwrap().to_vec()).unwrap();
                if text.contains("segment-") {
                    break (id, text);
                }
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no segment in S3 while live"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(!listed.contains("#EXT-X-ENDLIST"), "still live: {listed}");
    assert!(
        wait_child(publisher, Duration::from_secs(60))
            .await
            .success()
    );
    let rec = live.wait_ready(Duration::from_secs(30)).await;
    assert_eq!(rec["id"], id.as_str());
    decode_all(rec["hls_url"].as_str().unwrap()).await;
    assert_eq!(
        probe_codecs(rec["mp4_url"].as_str().unwrap()).await,
        ["h264", "aac"]
    );
}

#[tokio::test]
async fn retention_deletes_expired_recordings_and_their_objects() {
    let live = Live::start(0).await;
    wait_child(
        ffmpeg_publish(&live.rtmp_url(), 3, false),
        Duration::from_secs(60),
    )
    .await;
    let rec = live.wait_ready(Duration::from_secs(30)).await;
    let id = rec["id"].as_str().unwrap();
    let admin = live.app.admin_token().await;
    let run = || async {
        let r = live
            .app
            .client
            .post(live.app.url("/api/v1/admin/storage/retention/run"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.json::<Value>().await.unwrap()["deleted"]
            .as_u64()
            .unwrap()
    };
    // Retention is off by default: nothing goes.
    assert_eq!(run().await, 0);
    // A 1-day override on the stream, and a recording that ended two days ago.
    let db = sqlx::PgPool::connect(&live.app.database_url).await.unwrap();
    sqlx::query("UPDATE live_streams SET recording_retention_days = 1 WHERE id = $1::uuid")
        .bind(live.id())
        .execute(&db)
        .await
        .unwrap();
    sqlx::query("UPDATE recordings SET ended_at = now() - interval '2 days' WHERE id = $1::uuid")
        .bind(id)
        .execute(&db)
        .await
        .unwrap();
    let usage: Value = live
        .app
        .get_auth("/api/v1/admin/storage/usage?group_by=stream", &admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(usage["total"]["recordings"], 1, "{usage}");
    assert_eq!(usage["groups"][0]["key"], live.id(), "{usage}");
    assert_eq!(run().await, 1);
    assert!(
        !live
            .app
            .storage_root
            .join("recordings")
            .join(id)
            .join("index.m3u8")
            .exists()
    );
    let usage: Value = live
        .app
        .get_auth("/api/v1/admin/storage/usage", &admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(usage["total"]["recordings"], 0, "{usage}");
    let kinds: Vec<(String,)> = sqlx::query_as(
        "SELECT kind FROM recording_events WHERE recording_id = $1::uuid ORDER BY id",
    )
    .bind(id)
    .fetch_all(&db)
    .await
    .unwrap();
    let kinds: Vec<&str> = kinds.iter().map(|k| k.0.as_str()).collect();
    assert_eq!(
        kinds,
        ["recording.started", "recording.ready", "recording.deleted"]
    );
    // Students cannot run it.
    let student = live
        .app
        .get_auth("/api/v1/admin/storage/usage", &live.token)
        .await;
    assert_eq!(student.status(), StatusCode::FORBIDDEN);
}
