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

    /// `POST /api/v1/recordings/{id}/playback-token` as the teacher.
    pub(crate) async fn playback_token(&self, rec: &Value) -> Value {
        let id = rec["id"].as_str().unwrap();
        self.app
            .client
            .post(
                self.app
                    .url(&format!("/api/v1/recordings/{id}/playback-token")),
            )
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Wait for exactly one recording of the stream to be `ready` with its MP4 and poster made
    /// (they follow `ready`); panics on `failed`.
    pub(crate) async fn wait_ready(&self, timeout: Duration) -> Value {
        let start = Instant::now();
        loop {
            let recs = self.recordings().await;
            if let Some(r) = recs.first() {
                assert_ne!(r["status"], "failed", "{r}");
                if r["status"] == "ready" {
                    assert_eq!(recs.len(), 1, "one recording per session: {recs:?}");
                    if !r["mp4_url"].is_null() && !r["poster_url"].is_null() {
                        return r.clone();
                    }
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

/// Wait until at least `n` segments of the database's recordings are in storage; returns how many.
pub(crate) async fn wait_uploaded(db: &sqlx::PgPool, n: i64, timeout: Duration) -> i64 {
    let start = Instant::now();
    loop {
        let (got,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM recording_segments WHERE uploaded_at IS NOT NULL")
                .fetch_one(db)
                .await
                .unwrap();
        if got >= n {
            return got;
        }
        assert!(start.elapsed() < timeout, "{got} of {n} segments uploaded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// ffprobe's duration of what `url` serves, in seconds.
pub(crate) async fn probe_duration(url: &str) -> f64 {
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
/// Check the playlist at `url` ([`crate::playlists`]), then decode all of it with ffmpeg.
async fn decode_all(url: &str) {
    let client = reqwest::Client::new();
    crate::playlists::fetch(&client, url)
        .await
        .expect("the replay playlist answers 200");
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
    let t = live.playback_token(&rec).await;
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
async fn the_owner_switches_a_recordings_visibility_and_replay_follows() {
    let live = Live::start_with(0, "private").await;
    wait_child(
        ffmpeg_publish(&live.rtmp_url(), 3, false),
        Duration::from_secs(60),
    )
    .await;
    let rec = live.wait_ready(Duration::from_secs(30)).await;
    let id = rec["id"].as_str().unwrap();
    let hls = rec["hls_url"].as_str().unwrap();
    let path = format!("/api/v1/recordings/{id}");
    let patch = |token: String, body: Value| {
        let req = live.app.client.patch(live.app.url(&path));
        async move { req.bearer_auth(token).json(&body).send().await.unwrap() }
    };
    assert_eq!(
        live.app.client.get(hls).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    // The owner makes it public: the replay plays without a token.
    let r = patch(
        live.token.clone(),
        serde_json::json!({"visibility": "public"}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["visibility"], "public");
    assert_eq!(
        live.app.client.get(hls).send().await.unwrap().status(),
        StatusCode::OK
    );
    // Nonsense is refused; a student may not; another teacher does not see it.
    let r = patch(
        live.token.clone(),
        serde_json::json!({"visibility": "secret"}),
    )
    .await;
    crate::helpers::assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let (_, student) = live
        .app
        .user_with(
            &crate::helpers::unique_email("s"),
            "a long passphrase",
            &[wemaster::users::Role::Student],
        )
        .await;
    let r = patch(student, serde_json::json!({"visibility": "private"})).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let (_, other) = live
        .app
        .user_with(
            &crate::helpers::unique_email("t"),
            "a long passphrase",
            &[wemaster::users::Role::Teacher],
        )
        .await;
    let r = patch(other, serde_json::json!({"visibility": "private"})).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // Back to private: a token is needed again.
    let r = patch(
        live.token.clone(),
        serde_json::json!({"visibility": "private"}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        live.app.client.get(hls).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
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
    // Retention is off by default: nothing goes, and nothing says it will.
    assert!(rec["expires_at"].is_null(), "{rec}");
    assert_eq!(run().await, 0);
    // A 1-day override on the stream, and a recording that ended two days ago.
    let db = sqlx::PgPool::connect(&live.app.database_url).await.unwrap();
    let patch = |body: Value| {
        let client = live.app.client.clone();
        let url = live.app.url(&format!("/api/v1/live-streams/{}", live.id()));
        let token = live.token.clone();
        async move {
            client
                .patch(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(
        patch(serde_json::json!({"recording_retention_days": 0}))
            .await
            .status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let r = patch(serde_json::json!({"recording_retention_days": 1})).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.json::<Value>().await.unwrap()["recording_retention_days"],
        1
    );
    sqlx::query("UPDATE recordings SET ended_at = now() - interval '2 days' WHERE id = $1::uuid")
        .bind(id)
        .execute(&db)
        .await
        .unwrap();
    // The teacher sees when it goes: its end plus the stream's day.
    let shown: Value = live
        .app
        .get_auth(&format!("/api/v1/recordings/{id}"), &live.token)
        .await
        .json()
        .await
        .unwrap();
    let parse = |v: &Value| {
        time::OffsetDateTime::parse(
            v.as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    };
    assert_eq!(
        parse(&shown["expires_at"]) - parse(&shown["ended_at"]),
        time::Duration::days(1),
        "{shown}"
    );
    // The preview names what the next run deletes; teachers may not look.
    let preview: Value = live
        .app
        .get_auth("/api/v1/admin/storage/retention/preview", &admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(preview["count"], 1, "{preview}");
    assert_eq!(preview["items"][0]["id"], id, "{preview}");
    assert_eq!(preview["bytes"], rec["size_bytes"], "{preview}");
    assert_eq!(
        live.app
            .get_auth("/api/v1/admin/storage/retention/preview", &live.token)
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
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
        [
            "recording.started",
            "recording.ready",
            "recording.processed",
            "recording.deleted"
        ]
    );
    // Students cannot run it.
    let student = live
        .app
        .get_auth("/api/v1/admin/storage/usage", &live.token)
        .await;
    assert_eq!(student.status(), StatusCode::FORBIDDEN);
}

/// `wemaster serve` as a real process, so it can be killed with SIGKILL and started again on
/// the same database, spool and storage.
pub(crate) struct Server {
    child: Option<std::process::Child>,
    pub(crate) port: u16,
    pub(crate) rtmp_port: u16,
    database_url: String,
    dir: std::path::PathBuf,
    /// More settings (`WEMASTER__…`), kept across restarts.
    extra: Vec<(String, String)>,
}

impl Server {
    fn start(database_url: &str, dir: &std::path::Path, port: u16, rtmp_port: u16) -> Server {
        Server::start_with(database_url, dir, port, rtmp_port, Vec::new())
    }

    pub(crate) fn start_with(
        database_url: &str,
        dir: &std::path::Path,
        port: u16,
        rtmp_port: u16,
        extra: Vec<(String, String)>,
    ) -> Server {
        let child = crate::helpers::wemaster_bin()
            .arg("serve")
            .env("DATABASE_URL", database_url)
            .envs(crate::helpers::redis_env())
            .env("WEMASTER__HTTP__LISTEN", format!("127.0.0.1:{port}"))
            .env(
                "WEMASTER__HTTP__PUBLIC_URL",
                format!("http://127.0.0.1:{port}"),
            )
            .env("WEMASTER__RTMP__LISTEN", format!("127.0.0.1:{rtmp_port}"))
            // Every listener on a free port: two of these servers run at once in the suite.
            .env("WEMASTER__WHIP__UDP_LISTEN", "127.0.0.1:0")
            .env("WEMASTER__STORAGE__LOCAL__ROOT", dir.join("objects"))
            .env(
                "WEMASTER__STORAGE__LOCAL__SIGNING_KEY",
                "restart-signing-key-0123456789abcdef",
            )
            .env("WEMASTER__MEDIA__SPOOL_DIR", dir.join("spool"))
            // Signing keys on disk, so tokens issued before the crash still verify after it.
            .env("WEMASTER__AUTH__KEYS_DIR", dir.join("keys"))
            .env(
                "WEMASTER__PLAYBACK__SECRET",
                "restart-playback-secret-0123456789abcdef",
            )
            // Last: a caller's settings win over the defaults above.
            .envs(extra.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(server_log(port))
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        Server {
            child: Some(child),
            port,
            rtmp_port,
            database_url: database_url.to_string(),
            dir: dir.to_path_buf(),
            extra,
        }
    }

    /// A teacher made with the CLI, logged in: the access token.
    pub(crate) async fn teacher_token(&self) -> String {
        let out = crate::helpers::wemaster_bin()
            .args(["admin", "create-user", "--email", "t@school.example"])
            .args(["--role", "teacher"])
            .env("DATABASE_URL", &self.database_url)
            .env("WEMASTER_ADMIN_PASSWORD", "a fine passphrase")
            .output()
            .unwrap();
        assert!(out.status.success());
        let login: Value = reqwest::Client::new()
            .post(self.url("/api/v1/auth/login"))
            .json(
                &serde_json::json!({"email": "t@school.example", "password": "a fine passphrase"}),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        login["access_token"].as_str().unwrap().to_string()
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub(crate) async fn wait_ready(&self) {
        let client = reqwest::Client::new();
        for _ in 0..300 {
            if let Ok(r) = client.get(self.url("/readyz")).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("server never became ready");
    }

    /// A teacher's new stream `title` on this server, published by ffmpeg for `seconds` in real
    /// time: the stream's JSON and the publisher.
    pub(crate) async fn go_live(
        &self,
        token: &str,
        title: &str,
        seconds: u32,
    ) -> (Value, std::process::Child) {
        let stream: Value = reqwest::Client::new()
            .post(self.url("/api/v1/live-streams"))
            .bearer_auth(token)
            .json(&serde_json::json!({"title": title}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let key = stream["stream_key"].as_str().unwrap();
        let publisher = ffmpeg_publish(
            &format!("rtmp://127.0.0.1:{}/live/{key}", self.rtmp_port),
            seconds,
            true,
        );
        (stream, publisher)
    }

    pub(crate) fn kill9(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }

    fn restart(&mut self) {
        let extra = std::mem::take(&mut self.extra);
        *self = Server::start_with(
            &self.database_url,
            &self.dir,
            self.port,
            self.rtmp_port,
            extra,
        );
    }
}

/// Where a server process's log goes: `WEMASTER_TEST_SERVER_LOGS/serve-<port>.log` when that
/// folder is named (to read after a failure), else nowhere.
fn server_log(port: u16) -> std::process::Stdio {
    match std::env::var_os("WEMASTER_TEST_SERVER_LOGS") {
        Some(dir) => {
            std::fs::File::create(std::path::Path::new(&dir).join(format!("serve-{port}.log")))
                .map_or_else(|_| std::process::Stdio::null(), std::process::Stdio::from)
        }
        None => std::process::Stdio::null(),
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[tokio::test]
async fn sigkill_mid_lesson_then_restart_gives_a_ready_recording_of_what_was_recorded() {
    let (database_url, _) = crate::helpers::fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(
        &database_url,
        dir.path(),
        crate::helpers::free_port(),
        crate::helpers::free_port(),
    );
    server.wait_ready().await;
    let token = server.teacher_token().await;
    let client = reqwest::Client::new();
    let (stream, mut publisher) = server.go_live(&token, "Crash course", 30).await;
    // Wait until a few segments are recorded, then kill the server without warning.
    let db = sqlx::PgPool::connect(&database_url).await.unwrap();
    let recorded = wait_uploaded(&db, 3, Duration::from_secs(30)).await;
    server.kill9();
    let _ = publisher.kill();
    let _ = publisher.wait();
    let (status,): (String,) = sqlx::query_as("SELECT status FROM recordings")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(status, "recording", "the crash left it unfinished");

    // The next start finalizes it with everything that was recorded.
    server.restart();
    server.wait_ready().await;
    // The stream the crash left `active` is idle again (no process serves it).
    let after: Value = client
        .get(server.url(&format!(
            "/api/v1/live-streams/{}",
            stream["id"].as_str().unwrap()
        )))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(after["status"], "idle", "{after}");
    let start = Instant::now();
    let rec = loop {
        let list: Value = client
            .get(server.url("/api/v1/recordings"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let rec = list["items"][0].clone();
        if rec["status"] == "ready" && !rec["mp4_url"].is_null() {
            break rec;
        }
        assert_ne!(rec["status"], "failed", "{rec}");
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "not finalized: {rec}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let segments = rec["segment_count"].as_i64().unwrap();
    assert!(
        segments >= recorded,
        "{segments} < {recorded} recorded before the crash"
    );
    let duration = rec["duration_s"].as_f64().unwrap();
    assert!(duration >= recorded as f64 * 0.9, "{rec}");
    decode_all(rec["hls_url"].as_str().unwrap()).await;
    let mp4 = probe_duration(rec["mp4_url"].as_str().unwrap()).await;
    assert!((mp4 - duration).abs() <= 1.0, "mp4 {mp4} s vs {duration} s");
}

/// An S3 server of the test's own (s3s-fs, the suite's credentials, a fresh directory), so the
/// test can freeze it (SIGSTOP) and thaw it (SIGCONT); killed when dropped.
struct OwnS3 {
    child: std::process::Child,
    endpoint: String,
    access: String,
    secret: String,
    _dir: tempfile::TempDir,
}

impl OwnS3 {
    async fn start() -> OwnS3 {
        OwnS3::start_on(crate::helpers::free_port()).await
    }

    /// The credentials scripts/test gives its S3 servers: (access key, secret key).
    fn credentials() -> (String, String) {
        let var = |n: &str| {
            std::env::var(n).unwrap_or_else(|_| panic!("{n} is not set: run through scripts/test"))
        };
        (
            var("WEMASTER_TEST_S3_ACCESS_KEY"),
            var("WEMASTER_TEST_S3_SECRET_KEY"),
        )
    }

    async fn start_on(port: u16) -> OwnS3 {
        let (access, secret) = OwnS3::credentials();
        let dir = tempfile::tempdir().unwrap();
        let child = std::process::Command::new("s3s-fs")
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", &access, "--secret-key", &secret])
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("s3s-fs is installed (scripts/test installs it)");
        let endpoint = format!("http://127.0.0.1:{port}");
        for _ in 0..100 {
            if reqwest::get(&endpoint).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        OwnS3 {
            child,
            endpoint,
            access,
            secret,
            _dir: dir,
        }
    }

    /// `kill -STOP` / `-CONT` the server.
    fn signal(&self, sig: &str) {
        let pid = self.child.id().to_string();
        assert!(
            std::process::Command::new("kill")
                .args([sig, &pid])
                .status()
                .unwrap()
                .success()
        );
    }
}

impl Drop for OwnS3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The fault bench's finding 5: with `storage.s3.create_bucket` the server refused to start
/// while S3 was down. It starts (alive, not ready) and makes the bucket once S3 answers.
#[tokio::test]
async fn the_server_starts_while_s3_is_down_and_makes_its_bucket_when_it_is_back() {
    let port = crate::helpers::free_port();
    let (access, secret) = OwnS3::credentials();
    let endpoint = format!("http://127.0.0.1:{port}");
    let app = spawn_app_with(move |s| {
        s.storage.backend = wemaster::config::StorageBackend::S3;
        s.storage.s3.endpoint = endpoint;
        s.storage.s3.bucket = "made-later".into();
        s.storage.s3.access_key_id = access;
        s.storage.s3.secret_access_key = wemaster::config::Secret::new(secret);
        s.storage.s3.force_path_style = true;
        s.storage.s3.create_bucket = true;
    })
    .await;
    assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);
    let r = app.get("/readyz").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let _s3 = OwnS3::start_on(port).await;
    let start = Instant::now();
    loop {
        let r = app.get("/readyz").await;
        if r.status() == StatusCode::OK {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(45),
            "never ready after S3 came back: {}",
            r.text().await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn a_stalled_s3_loses_no_segment_and_does_not_disturb_the_live_stream() {
    let s3 = OwnS3::start().await;
    let (endpoint, access, secret) = (s3.endpoint.clone(), s3.access.clone(), s3.secret.clone());
    let app = spawn_app_with(move |s| {
        s.storage.backend = wemaster::config::StorageBackend::S3;
        s.storage.s3.endpoint = endpoint;
        s.storage.s3.bucket = "stall".into();
        s.storage.s3.access_key_id = access;
        s.storage.s3.secret_access_key = wemaster::config::Secret::new(secret);
        s.storage.s3.force_path_style = true;
        s.storage.s3.create_bucket = true;
        s.storage.s3.request_timeout_s = 1;
    })
    .await;
    let live = Live::on(app, 0, "public").await;
    let publisher = ffmpeg_publish(&live.rtmp_url(), 14, true);
    // Let the first segments reach S3, then freeze it for ~5 s while the lesson goes on.
    let db = sqlx::PgPool::connect(&live.app.database_url).await.unwrap();
    wait_uploaded(&db, 1, Duration::from_secs(20)).await;
    s3.signal("-STOP");
    let live_before = live
        .playlist()
        .await
        .map(|p| segment_uris(&p).len())
        .unwrap_or(0);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let live_after = live
        .playlist()
        .await
        .map(|p| segment_uris(&p).len())
        .unwrap_or(0);
    assert!(
        live_after > live_before || live_after >= 6,
        "the live playlist went on while S3 was frozen ({live_before} -> {live_after})"
    );
    // The freeze was felt: closed segments wait in the spool for their upload. (Polled while
    // S3 stays frozen: on a loaded machine the next segment may close a few seconds late.)
    let mut waiting = 0i64;
    for _ in 0..50 {
        (waiting,) =
            sqlx::query_as("SELECT count(*) FROM recording_segments WHERE uploaded_at IS NULL")
                .fetch_one(&db)
                .await
                .unwrap();
        if waiting >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(waiting >= 1, "no segment waiting while S3 was frozen");
    // ...and the metric says how long the oldest has waited: it grows while the upload is
    // stuck in its retries (it used to be set only after a successful upload, so it stayed at
    // the last upload's few milliseconds for the whole outage).
    let metrics = live.app.get("/metrics").await.text().await.unwrap();
    let age: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("recording_upload_oldest_age_seconds "))
        .and_then(|v| v.trim().parse().ok())
        .expect("recording_upload_oldest_age_seconds is exported");
    assert!(
        age >= 2.0,
        "the oldest waiting segment is {age} s old after S3 was frozen for 5 s"
    );
    s3.signal("-CONT");
    assert!(
        wait_child(publisher, Duration::from_secs(60))
            .await
            .success()
    );
    let rec = live.wait_ready(Duration::from_secs(60)).await;
    let duration = rec["duration_s"].as_f64().unwrap();
    assert!((duration - 14.0).abs() <= 2.0, "nothing lost: {rec}");
    let (lost,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM recording_segments WHERE lost OR uploaded_at IS NULL")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(lost, 0);
    decode_all(rec["hls_url"].as_str().unwrap()).await;
}

#[tokio::test]
async fn the_storage_scan_finds_orphans_and_missing_objects_and_repair_fixes_both() {
    let live = Live::start(0).await;
    wait_child(
        ffmpeg_publish(&live.rtmp_url(), 7, false),
        Duration::from_secs(60),
    )
    .await;
    let rec = live.wait_ready(Duration::from_secs(30)).await;
    let id = rec["id"].as_str().unwrap();
    let admin = live.app.admin_token().await;
    let post = |path: &'static str| {
        let client = live.app.client.clone();
        let url = live.app.url(path);
        let token = admin.clone();
        async move {
            let r = client.post(url).bearer_auth(token).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            r.json::<Value>().await.unwrap()
        }
    };
    let clean = post("/api/v1/admin/storage/scan").await;
    assert_eq!(
        clean["orphan_objects"].as_array().unwrap().len(),
        0,
        "{clean}"
    );
    assert_eq!(
        clean["recordings_with_missing_objects"]
            .as_array()
            .unwrap()
            .len(),
        0,
        "{clean}"
    );

    // An object nobody owns, and a segment of the recording gone from storage.
    let root = live.app.storage_root.join("recordings");
    let stray = root.join(uuid::Uuid::now_v7().to_string());
    std::fs::create_dir_all(&stray).unwrap();
    std::fs::write(stray.join("segment-00000001.ts"), b"stray bytes").unwrap();
    let mut names: Vec<String> = std::fs::read_dir(root.join(id))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".ts"))
        .collect();
    names.sort();
    let gone = names[1].clone();
    std::fs::remove_file(root.join(id).join(&gone)).unwrap();

    let found = post("/api/v1/admin/storage/scan").await;
    assert_eq!(
        found["orphan_objects"].as_array().unwrap().len(),
        1,
        "{found}"
    );
    assert_eq!(found["orphan_bytes"], 11);
    assert_eq!(
        found["recordings_with_missing_objects"][0]["recording_id"],
        id
    );
    assert_eq!(
        found["recordings_with_missing_objects"][0]["missing"],
        serde_json::json!([gone])
    );

    // The operator chooses: the stray object and a key the recording uses (not an orphan).
    // Only the stray one goes; the recording is left for later; the used key stays.
    let stray_key = found["orphan_objects"][0]["key"]
        .as_str()
        .unwrap()
        .to_string();
    let used_key = format!("recordings/{id}/{}", names[0]);
    let r = live
        .app
        .client
        .post(live.app.url("/api/v1/admin/storage/repair/selected"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"objects": [stray_key, used_key]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let chosen: Value = r.json().await.unwrap();
    assert_eq!(chosen["deleted_objects"], 1, "{chosen}");
    assert_eq!(chosen["repaired_recordings"], 0, "{chosen}");
    assert!(!stray.join("segment-00000001.ts").exists());
    assert!(
        root.join(id).join(&names[0]).exists(),
        "a used object is never deleted"
    );
    let still = post("/api/v1/admin/storage/scan").await;
    assert_eq!(
        still["orphan_objects"].as_array().unwrap().len(),
        0,
        "{still}"
    );
    assert_eq!(
        still["recordings_with_missing_objects"][0]["recording_id"],
        id
    );
    // The stray object again (its emptied folder went with it), for the repair of everything.
    std::fs::create_dir_all(&stray).unwrap();
    std::fs::write(stray.join("segment-00000001.ts"), b"stray bytes").unwrap();

    let repaired = post("/api/v1/admin/storage/repair").await;
    assert_eq!(repaired["deleted_objects"], 1, "{repaired}");
    assert_eq!(repaired["repaired_recordings"], 1, "{repaired}");
    assert!(!stray.join("segment-00000001.ts").exists());
    let after = post("/api/v1/admin/storage/scan").await;
    assert_eq!(
        after["orphan_objects"].as_array().unwrap().len(),
        0,
        "{after}"
    );
    assert_eq!(
        after["recordings_with_missing_objects"]
            .as_array()
            .unwrap()
            .len(),
        0,
        "{after}"
    );
    // The recording now names only what exists, and still plays.
    let fixed: Value = live
        .app
        .get_auth(&format!("/api/v1/recordings/{id}"), &live.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        fixed["segment_count"].as_i64().unwrap(),
        rec["segment_count"].as_i64().unwrap() - 1
    );
    let playlist = live
        .app
        .client
        .get(fixed["hls_url"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!playlist.contains(&gone), "{playlist}");
    assert!(playlist.contains("#EXT-X-DISCONTINUITY"), "{playlist}");
    decode_all(fixed["hls_url"].as_str().unwrap()).await;
    // Teachers cannot scan.
    let r = live
        .app
        .client
        .post(live.app.url("/api/v1/admin/storage/scan"))
        .bearer_auth(&live.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn replay_can_redirect_to_presigned_storage_urls() {
    let app = spawn_app_with(|s| s.recordings.replay_redirect = true).await;
    let live = Live::on(app, 0, "private").await;
    wait_child(
        ffmpeg_publish(&live.rtmp_url(), 4, false),
        Duration::from_secs(60),
    )
    .await;
    let rec = live.wait_ready(Duration::from_secs(30)).await;
    let mp4 = rec["mp4_url"].as_str().unwrap();
    // Access is still checked before any redirect.
    assert_eq!(
        live.app.client.get(mp4).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let t = live.playback_token(&rec).await;
    let r = live
        .app
        .client
        .get(t["mp4_url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let ranged = live
        .app
        .client
        .get(&location)
        .header("Range", "bytes=4-7")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(&ranged.bytes().await.unwrap()[..], b"ftyp");
    // Players follow the redirects of every segment (ffmpeg does).
    decode_all(t["hls_url"].as_str().unwrap()).await;
}

#[tokio::test]
async fn a_graceful_shutdown_mid_lesson_finalizes_the_recording() {
    let live = Live::start(60).await;
    let mut publisher = ffmpeg_publish(&live.rtmp_url(), 30, true);
    let db = sqlx::PgPool::connect(&live.app.database_url).await.unwrap();
    wait_uploaded(&db, 2, Duration::from_secs(30)).await;
    // Stop the server while the teacher is still live (and inside a 60 s window).
    live.app.stop().await;
    let _ = publisher.kill();
    let _ = publisher.wait();
    let (status, segments, mp4): (String, i32, Option<i64>) =
        sqlx::query_as("SELECT status, segment_count, mp4_size_bytes FROM recordings")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(status, "ready", "finalized before the process exited");
    assert!(segments >= 2);
    assert!(mp4.is_some_and(|n| n > 0));
}

#[tokio::test]
async fn a_full_spool_refuses_new_recordings_but_the_lesson_stays_live() {
    // A limit the spool is always at: every new session is refused a recording.
    let app = spawn_app_with(|s| s.recordings.max_spool_bytes = 0).await;
    let live = Live::on(app, 0, "public").await;
    assert!(
        wait_child(
            ffmpeg_publish(&live.rtmp_url(), 4, false),
            Duration::from_secs(60)
        )
        .await
        .success()
    );
    // Live HLS was served all the same (the ended playlist is still there).
    let playlist = live.playlist().await.expect("the live playlist exists");
    assert!(!segment_uris(&playlist).is_empty(), "{playlist}");
    assert!(live.recordings().await.is_empty(), "nothing recorded");
    let db = sqlx::PgPool::connect(&live.app.database_url).await.unwrap();
    let start = Instant::now();
    let payload: Value = loop {
        let row: Option<(Value,)> =
            sqlx::query_as("SELECT payload FROM recording_events WHERE kind = 'recording.refused'")
                .fetch_optional(&db)
                .await
                .unwrap();
        if let Some((p,)) = row {
            break p;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no recording.refused event"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(payload["reason"], "spool_limit");
    let metrics = live.app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("recordings_refused_total") && !l.ends_with(" 0")),
        "recordings_refused_total counts it"
    );
}

/// The fault bench's finding 1 (docs/benchmarks.md, "Fault injection"): a session refused a
/// recording for a full spool used to stay unrecorded for the rest of the lesson, although the
/// space came back a minute later. It is now recorded from the moment the spool has room.
#[tokio::test]
async fn a_session_refused_for_a_full_spool_is_recorded_once_space_comes_back() {
    let app = spawn_app_with(|s| s.recordings.max_spool_bytes = 1 << 20).await;
    // Something else holds the spool over its limit when the lesson starts.
    let filler = app
        .settings
        .media
        .spool_dir
        .join("recordings")
        .join("filler.bin");
    std::fs::create_dir_all(filler.parent().unwrap()).unwrap();
    std::fs::write(&filler, vec![0u8; 2 << 20]).unwrap();
    let live = Live::on(app, 0, "public").await;
    let publisher = ffmpeg_publish(&live.rtmp_url(), 16, true);
    let db = sqlx::PgPool::connect(&live.app.database_url).await.unwrap();
    let start = Instant::now();
    loop {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM recording_events WHERE kind = 'recording.refused'",
        )
        .fetch_one(&db)
        .await
        .unwrap();
        if n > 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "no recording.refused event"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(live.recordings().await.is_empty(), "refused at the start");
    // The space comes back while the teacher is still live.
    std::fs::remove_file(&filler).unwrap();
    let freed = Instant::now();
    while live.recordings().await.is_empty() {
        assert!(
            freed.elapsed() < Duration::from_secs(12),
            "the session was never recorded after the spool had room again"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        wait_child(publisher, Duration::from_secs(60))
            .await
            .success()
    );
    let rec = live.wait_ready(Duration::from_secs(30)).await;
    // From when the space came back to the end: part of the lesson, not none of it.
    let duration = rec["duration_s"].as_f64().unwrap();
    assert!((3.0..15.0).contains(&duration), "{rec}");
    decode_all(rec["hls_url"].as_str().unwrap()).await;
    let (payload,): (Value,) =
        sqlx::query_as("SELECT payload FROM recording_events WHERE kind = 'recording.started'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(payload["late"], true, "{payload}");
    assert!(payload["waited_s"].as_f64().unwrap() > 0.0, "{payload}");
}

/// The fault bench's finding 3: an MP4 that failed (on a full disk) used to wait for the next
/// start of the process. A failed attempt is now tried again while the process runs.
#[tokio::test]
async fn a_failed_mp4_is_made_again_without_a_restart() {
    let app = spawn_app_with(|s| s.recordings.mp4_retry_s = 1).await;
    let live = Live::on(app, 0, "public").await;
    assert!(
        wait_child(
            ffmpeg_publish(&live.rtmp_url(), 4, false),
            Duration::from_secs(60)
        )
        .await
        .success()
    );
    let rec = live.wait_ready(Duration::from_secs(30)).await;
    let id = rec["id"].as_str().unwrap().to_string();
    // What a failed attempt leaves: no MP4 object, no size, the attempt counted and dated
    // (old enough for its back-off to have passed).
    let mp4 = live
        .app
        .storage_root
        .join("recordings")
        .join(&id)
        .join("recording.mp4");
    std::fs::remove_file(&mp4).unwrap();
    let db = sqlx::PgPool::connect(&live.app.database_url).await.unwrap();
    sqlx::query(
        "UPDATE recordings SET size_bytes = size_bytes - mp4_size_bytes, mp4_size_bytes = NULL,
                mp4_attempts = 1, mp4_failed_at = now() - interval '3 minutes'
         WHERE id = $1::uuid",
    )
    .bind(&id)
    .execute(&db)
    .await
    .unwrap();
    assert!(live.recordings().await[0]["mp4_url"].is_null());
    let start = Instant::now();
    let rec = loop {
        let r = live.recordings().await[0].clone();
        if !r["mp4_url"].is_null() {
            break r;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the MP4 was not made again: {r}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let duration = probe_duration(rec["mp4_url"].as_str().unwrap()).await;
    assert!((duration - 4.0).abs() <= 1.0, "mp4 {duration} s");
    let (attempts, failed): (i32, Option<time::OffsetDateTime>) =
        sqlx::query_as("SELECT mp4_attempts, mp4_failed_at FROM recordings WHERE id = $1::uuid")
            .bind(&id)
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!((attempts, failed), (2, None));
}

/// The fault bench's finding (docs/benchmarks.md, "Fault injection"): a kill -9 while S3 is
/// down used to lose every segment closed since the outage began — they were in the spool but
/// in no row, and recovery reads the rows. Rows are now written as segments close, so the
/// next start uploads them all.
#[tokio::test]
async fn a_kill_during_an_s3_outage_loses_no_closed_segment() {
    let s3 = OwnS3::start().await;
    let (endpoint, access, secret) = (s3.endpoint.clone(), s3.access.clone(), s3.secret.clone());
    let (database_url, _) = crate::helpers::fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_with(
        &database_url,
        dir.path(),
        crate::helpers::free_port(),
        crate::helpers::free_port(),
        vec![
            ("WEMASTER__STORAGE__BACKEND".into(), "s3".into()),
            ("WEMASTER__STORAGE__S3__ENDPOINT".into(), endpoint.clone()),
            ("WEMASTER__STORAGE__S3__BUCKET".into(), "killed".into()),
            (
                "WEMASTER__STORAGE__S3__ACCESS_KEY_ID".into(),
                access.clone(),
            ),
            (
                "WEMASTER__STORAGE__S3__SECRET_ACCESS_KEY".into(),
                secret.clone(),
            ),
            (
                "WEMASTER__STORAGE__S3__FORCE_PATH_STYLE".into(),
                "true".into(),
            ),
            ("WEMASTER__STORAGE__S3__CREATE_BUCKET".into(), "true".into()),
            (
                "WEMASTER__STORAGE__S3__REQUEST_TIMEOUT_S".into(),
                "1".into(),
            ),
        ],
    );
    server.wait_ready().await;
    let token = server.teacher_token().await;
    let client = reqwest::Client::new();
    let (_, mut publisher) = server.go_live(&token, "Outage course", 40).await;
    let db = sqlx::PgPool::connect(&database_url).await.unwrap();
    wait_uploaded(&db, 2, Duration::from_secs(30)).await;
    // S3 stops answering; the lesson goes on for ~8 s (four 2 s segments close meanwhile).
    s3.signal("-STOP");
    tokio::time::sleep(Duration::from_secs(8)).await;
    let (rows, uploaded): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(uploaded_at) FROM recording_segments")
            .fetch_one(&db)
            .await
            .unwrap();
    assert!(
        rows >= uploaded + 3,
        "segments closed during the outage are queued as rows ({rows} rows, {uploaded} uploaded)"
    );
    server.kill9();
    let _ = publisher.kill();
    let _ = publisher.wait();
    s3.signal("-CONT");

    server.restart();
    server.wait_ready().await;
    let start = Instant::now();
    let rec = loop {
        let list: Value = client
            .get(server.url("/api/v1/recordings"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let rec = list["items"][0].clone();
        if rec["status"] == "ready" {
            break rec;
        }
        assert_ne!(rec["status"], "failed", "{rec}");
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "not finalized: {rec}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (lost,): (i64,) = sqlx::query_as("SELECT count(*) FROM recording_segments WHERE lost")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(lost, 0, "{rec}");
    assert!(
        rec["segment_count"].as_i64().unwrap() >= rows,
        "every segment queued before the kill is in the recording: {rec} (had {rows} rows)"
    );
}
