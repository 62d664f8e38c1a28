//! Media correctness with clients nobody here wrote: GStreamer's two RTMP sinks, ffmpeg with
//! long GOPs, a server restart between two sessions of one stream, cache headers per case,
//! WHIP discovery. Every playlist fetched here also goes through [`crate::playlists`].

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use reqwest::StatusCode;
use serde_json::Value;
use wemaster_media::vod::{annexb_nal_units, first_access_unit};

use crate::{
    helpers::spawn_app_with,
    live_rtmp::{Live, ffmpeg_publish_gop, probe_segment, segment_uris, wait_child},
};

/// NAL unit types of the first video access unit of an MPEG-TS segment, in order.
fn first_access_unit_nal_types(ts: &[u8]) -> Vec<u8> {
    let au = first_access_unit(ts).expect("a video PES");
    annexb_nal_units(&au)
        .iter()
        .filter_map(|n| n.first().map(|b| b & 0x1F))
        .collect()
}

/// Whether the segment's first picture is an IDR: the first slice NAL unit is type 5.
fn starts_on_an_idr(ts: &[u8]) -> bool {
    first_access_unit_nal_types(ts)
        .into_iter()
        .find(|t| *t == 1 || *t == 5)
        == Some(5)
}

/// Live segments listed in `playlist` (relative URIs), fetched.
async fn segments(live: &Live, playlist: &str) -> Vec<(String, bytes::Bytes)> {
    let mut out = Vec::new();
    for uri in segment_uris(playlist) {
        let r = live
            .app
            .get(&format!("/hls/live/{}/{uri}", live.id()))
            .await;
        assert_eq!(r.status(), StatusCode::OK, "{uri}");
        out.push((uri, r.bytes().await.unwrap()));
    }
    out
}

/// ffmpeg decodes `url` (a file or a URL) to the end without a single error. Async: the app
/// under test runs on the test's runtime, and ffmpeg may be fetching from it.
async fn decodes_cleanly(url: &str) {
    let out = tokio::process::Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-i", url, "-f", "null", "-"])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "decoding {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn gstreamer_publishers_give_segments_that_start_on_an_idr_and_a_recording_mp4() {
    for sink in ["rtmp2sink", "rtmpsink"] {
        let live = Live::start(0).await;
        // flvmux flags every I-frame a keyframe; x264's scene-cut I-frames (the ball pattern
        // moves) are not IDRs. 8 s at 30 fps with an IDR every 2 s, and AAC audio.
        let pipeline = format!(
            "videotestsrc num-buffers=240 pattern=ball ! video/x-raw,width=320,height=240,framerate=30/1 \
             ! x264enc key-int-max=60 speed-preset=ultrafast bframes=0 ! h264parse ! flvmux name=m streamable=true \
             ! {sink} location={} audiotestsrc num-buffers=345 samplesperbuffer=1024 ! audio/x-raw,rate=44100 \
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
        assert!(status.success(), "{sink}: gst-launch failed");
        let playlist = live
            .wait_playlist(Duration::from_secs(20), "ENDLIST", |p| {
                p.contains("#EXT-X-ENDLIST")
            })
            .await;
        let listed = segments(&live, &playlist).await;
        assert!(listed.len() >= 3, "{sink}: {playlist}");
        for (uri, bytes) in &listed {
            assert!(
                starts_on_an_idr(bytes),
                "{sink}: {uri} starts with NAL units {:?}",
                first_access_unit_nal_types(bytes)
            );
        }
        assert_eq!(
            probe_segment(&live, &segment_uris(&playlist)[0]).await,
            ["aac", "h264"]
        );

        // The recording gets its MP4, and it decodes without an error.
        let rec = live.wait_ready(Duration::from_secs(60)).await;
        assert_eq!(rec["mp4_status"], "ready", "{sink}: {rec}");
        let mp4 = rec["mp4_url"].as_str().unwrap().to_string();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("replay.mp4");
        let bytes = live
            .app
            .client
            .get(&mp4)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        std::fs::write(&file, &bytes).unwrap();
        decodes_cleanly(file.to_str().unwrap()).await;
        let duration = rec["duration_s"].as_f64().unwrap();
        assert!((duration - 8.0).abs() <= 2.1, "{sink}: {rec}");
    }
}

#[tokio::test]
async fn a_publisher_with_long_gops_keeps_one_target_duration_and_dates_every_segment() {
    let live = Live::start(0).await;
    let started = time::OffsetDateTime::now_utc();
    // A 6 s GOP against 2 s segments (at most 4 s): segments are cut at 4 s between IDRs.
    let child = ffmpeg_publish_gop(&live.rtmp_url(), 14, true, 180);
    let playlist = live
        .wait_playlist(Duration::from_secs(40), "ENDLIST", |p| {
            p.contains("#EXT-X-ENDLIST")
        })
        .await;
    assert!(wait_child(child, Duration::from_secs(30)).await.success());
    // Every reload of this URL was checked: the target never changed (crate::playlists).
    assert!(playlist.contains("#EXT-X-TARGETDURATION:4\n"), "{playlist}");
    let durations: Vec<f64> = playlist
        .lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .map(|d| d.trim_end_matches(',').parse().unwrap())
        .collect();
    assert!(durations.iter().all(|d| *d <= 4.0), "{playlist}");
    assert!(
        durations.iter().any(|d| *d > 3.9),
        "some segment was cut at the maximum: {playlist}"
    );
    // Dated with the wall clock of their first frame.
    let first = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:"))
        .unwrap();
    let first =
        time::OffsetDateTime::parse(first, &time::format_description::well_known::Rfc3339).unwrap();
    let now = time::OffsetDateTime::now_utc();
    assert!(
        first >= started - time::Duration::seconds(1) && first <= now,
        "{playlist}"
    );

    // The recording's playlist has the same target and dates.
    let rec = live.wait_ready(Duration::from_secs(60)).await;
    let vod = crate::playlists::fetch(&live.app.client, rec["hls_url"].as_str().unwrap())
        .await
        .unwrap();
    assert!(vod.contains("#EXT-X-TARGETDURATION:4\n"), "{vod}");
    assert_eq!(
        vod.matches("#EXT-X-PROGRAM-DATE-TIME:").count(),
        segment_uris(&vod).len(),
        "{vod}"
    );
}

#[tokio::test]
async fn segment_urls_of_a_session_never_name_other_bytes_after_a_restart() {
    let spool = tempfile::tempdir().unwrap();
    let spool_dir = spool.path().to_path_buf();
    let dir = spool_dir.clone();
    let first_app = spawn_app_with(move |s| s.media.spool_dir = dir).await;
    let live = Live::on(first_app, 0, "public").await;
    assert!(
        wait_child(
            ffmpeg_publish_gop(&live.rtmp_url(), 4, false, 30),
            Duration::from_secs(60)
        )
        .await
        .success()
    );
    let before = live
        .wait_playlist(Duration::from_secs(20), "ENDLIST", |p| {
            p.contains("#EXT-X-ENDLIST")
        })
        .await;
    let old = segments(&live, &before).await;
    let (database_url, rtmp_key) = (
        live.app.database_url.clone(),
        live.stream["stream_key"].as_str().unwrap().to_string(),
    );
    let stream_id = live.id().to_string();
    live.app.stop().await;

    // The same stream (same database, same spool) on a restarted server: numbering restarts.
    let dir = spool_dir.clone();
    let db = database_url.clone();
    let app = spawn_app_with(move |s| {
        s.media.spool_dir = dir;
        s.database.url = wemaster::config::Secret::new(db);
    })
    .await;
    let url = format!("rtmp://127.0.0.1:{}/live/{rtmp_key}", app.rtmp_addr.port());
    assert!(
        wait_child(
            ffmpeg_publish_gop(&url, 4, false, 30),
            Duration::from_secs(60)
        )
        .await
        .success()
    );
    let path = format!("/hls/live/{stream_id}/index.m3u8");
    let mut after = String::new();
    for _ in 0..100 {
        if let Ok(p) = crate::playlists::fetch(&app.client, &app.url(&path)).await
            && p.contains("#EXT-X-ENDLIST")
        {
            after = p;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let new_uris = segment_uris(&after);
    assert!(
        !new_uris.is_empty(),
        "the second session went live: {after}"
    );
    for (uri, bytes) in &old {
        assert!(
            !new_uris.contains(uri),
            "{uri} is listed again:\n{before}\n{after}"
        );
        // An old URL is gone, never answered with the new session's bytes.
        let r = app.get(&format!("/hls/live/{stream_id}/{uri}")).await;
        if r.status() == StatusCode::OK {
            assert_eq!(&r.bytes().await.unwrap(), bytes, "{uri} names other bytes");
        } else {
            assert_eq!(r.status(), StatusCode::NOT_FOUND);
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn cache_headers_keep_private_media_out_of_shared_caches_and_revalidate_ended_playlists() {
    for visibility in ["public", "private"] {
        let live = Live::start_with(0, visibility).await;
        assert!(
            wait_child(
                ffmpeg_publish_gop(&live.rtmp_url(), 3, false, 30),
                Duration::from_secs(60)
            )
            .await
            .success()
        );
        let query = if visibility == "private" {
            let grant: Value = live.action("playback-token").await.json().await.unwrap();
            format!("?token={}", grant["token"].as_str().unwrap())
        } else {
            String::new()
        };
        let path = format!("/hls/live/{}/index.m3u8{query}", live.id());
        let mut ended = None;
        for _ in 0..100 {
            let r = live.app.get(&path).await;
            if r.status() == StatusCode::OK {
                let cache = r.headers()["cache-control"].to_str().unwrap().to_string();
                let text = r.text().await.unwrap();
                if text.contains("#EXT-X-ENDLIST") {
                    ended = Some((cache, text));
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let (cache, text) = ended.expect("the session ended");
        crate::playlists::check(&live.app.url(&path), &text);
        // An ended playlist comes back to life with the next session: always revalidated.
        let segment = format!("/hls/live/{}/{}", live.id(), segment_uris(&text)[0]);
        let seg_cache = live.app.get(&segment).await.headers()["cache-control"]
            .to_str()
            .unwrap()
            .to_string();
        if visibility == "private" {
            assert_eq!(cache, "private, no-cache");
            assert_eq!(seg_cache, "private, max-age=31536000, immutable");
        } else {
            assert_eq!(cache, "no-cache");
            assert_eq!(seg_cache, "public, max-age=31536000, immutable");
        }

        let rec = live.wait_ready(Duration::from_secs(60)).await;
        let (hls, mp4) = if visibility == "private" {
            let t = live.playback_token(&rec).await;
            (
                t["hls_url"].as_str().unwrap().to_string(),
                t["mp4_url"].as_str().unwrap().to_string(),
            )
        } else {
            (
                rec["hls_url"].as_str().unwrap().to_string(),
                rec["mp4_url"].as_str().unwrap().to_string(),
            )
        };
        let header =
            |r: reqwest::Response| r.headers()["cache-control"].to_str().unwrap().to_string();
        let list = header(live.app.client.get(&hls).send().await.unwrap());
        let file = header(live.app.client.get(&mp4).send().await.unwrap());
        if visibility == "private" {
            assert_eq!(
                (list.as_str(), file.as_str()),
                (
                    "private, max-age=60",
                    "private, max-age=31536000, immutable"
                )
            );
        } else {
            assert_eq!(
                (list.as_str(), file.as_str()),
                ("public, max-age=60", "public, max-age=31536000, immutable")
            );
        }
    }
}

#[tokio::test]
async fn complete_answers_the_state_it_leads_to() {
    let live = Live::start(30).await;
    let mut child = ffmpeg_publish_gop(&live.rtmp_url(), 30, true, 30);
    live.wait_playlist(Duration::from_secs(20), "a segment", |p| {
        !segment_uris(p).is_empty()
    })
    .await;
    let r = live.action("complete").await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "idle", "{body}");
    assert!(body["active_session"].is_null(), "{body}");
    // And the stream reads the same a moment later: the answer was not a guess.
    let mut status = Value::Null;
    for _ in 0..50 {
        status = live.stream_json().await;
        if status["status"] == "idle" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status["status"], "idle", "{status}");
    assert!(status["active_session"].is_null());
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn a_whip_preflight_is_a_discovery_answer_too() {
    let live = Live::start(0).await;
    let r = live
        .app
        .client
        .request(
            reqwest::Method::OPTIONS,
            live.app.url(&format!("/whip/{}", live.id())),
        )
        .header("origin", "https://studio.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(r.headers()["accept-post"], "application/sdp");
    assert!(r.headers().contains_key("access-control-allow-origin"));
    // A plain OPTIONS (no CORS) gets the same.
    let r = live
        .app
        .client
        .request(
            reqwest::Method::OPTIONS,
            live.app.url(&format!("/whip/{}", live.id())),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(r.headers()["accept-post"], "application/sdp");
    // A session URL answers OPTIONS with 204 as documented, and without Accept-Post (it takes
    // no offers).
    let r = live
        .app
        .client
        .request(
            reqwest::Method::OPTIONS,
            live.app.url(&format!("/whip/{}/sessions/abc", live.id())),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(!r.headers().contains_key("accept-post"));
}

/// The stream's only recording once `cond` holds for it.
async fn wait_recording(
    app: &crate::helpers::TestApp,
    token: &str,
    stream: &str,
    cond: impl Fn(&Value) -> bool,
) -> Value {
    let mut last = Value::Null;
    for _ in 0..300 {
        let r = app
            .get_auth(
                &format!("/api/v1/recordings?live_stream_id={stream}"),
                token,
            )
            .await;
        let v: Value = r.json().await.unwrap();
        if let Some(rec) = v["items"].as_array().and_then(|a| a.first()) {
            if cond(rec) {
                return rec.clone();
            }
            last = rec.clone();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the recording never got there: {last}");
}

#[tokio::test]
async fn a_failed_mp4_is_visible_in_the_api_and_made_again_at_the_next_start() {
    let keep = tempfile::tempdir().unwrap();
    let root = keep.path().to_path_buf();
    // Templates that fail (raw video out of a demuxer: never negotiated), and one that ends
    // without writing anything: the MP4 step fails, whatever it tries.
    let broken = root.join("pipelines");
    std::fs::create_dir_all(&broken).unwrap();
    let real = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("pipelines");
    for entry in std::fs::read_dir(&real).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, broken.join(path.file_name().unwrap())).unwrap();
    }
    std::fs::write(
        broken.join("vod-mp4.gst"),
        "appsrc name=src ! tsdemux ! video/x-raw ! fakesink\n# {output}\n",
    )
    .unwrap();
    std::fs::write(
        broken.join("vod-mp4-resized.gst"),
        "appsrc name=src ! fakesink\n# {output} {width} {height}\n",
    )
    .unwrap();
    let (r, b) = (root.clone(), broken.clone());
    let app = spawn_app_with(move |s| {
        s.media.pipelines_dir = b;
        s.media.spool_dir = r.join("spool");
        s.storage.local.root = r.join("objects");
    })
    .await;
    let live = Live::on(app, 0, "public").await;
    assert!(
        wait_child(
            ffmpeg_publish_gop(&live.rtmp_url(), 3, false, 30),
            Duration::from_secs(60)
        )
        .await
        .success()
    );
    let rec = wait_recording(&live.app, &live.token, live.id(), |r| {
        r["status"] == "ready" && r["mp4_status"] != "pending"
    })
    .await;
    assert_eq!(rec["mp4_status"], "failed", "{rec}");
    assert!(rec["mp4_url"].is_null(), "{rec}");
    // The replay still plays as HLS.
    decodes_cleanly(rec["hls_url"].as_str().unwrap()).await;

    // The next start (with working templates) makes it.
    let (database_url, stream) = (live.app.database_url.clone(), live.id().to_string());
    live.app.stop().await;
    let r = root.clone();
    let app = spawn_app_with(move |s| {
        s.media.spool_dir = r.join("spool");
        s.storage.local.root = r.join("objects");
        s.database.url = wemaster::config::Secret::new(database_url);
    })
    .await;
    let token = app
        .login("teacher@school.example", "a fine passphrase")
        .await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let rec = wait_recording(&app, &token, &stream, |r| r["mp4_status"] != "failed").await;
    assert_eq!(rec["mp4_status"], "ready", "{rec}");
    let mp4 = rec["mp4_url"].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("replay.mp4");
    std::fs::write(
        &file,
        app.client
            .get(mp4)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    decodes_cleanly(file.to_str().unwrap()).await;
    app.stop().await;
}
