//! WHEP playback end to end, with two independent WebRTC stacks as viewers — aiortc (PyPI,
//! which decodes H.264 and Opus itself) and headless Chromium (Debian's, through
//! tests/whip/player.html) — for an RTMP source (ffmpeg: H.264 passed through, AAC → Opus)
//! and a WHIP source (aiortc: H.264 and Opus passed through); private streams' tokens; the
//! refusals, as problem+json.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::{
    helpers::{assert_problem, spawn_app_with},
    live_rtmp::{Live, ffmpeg_publish_gop},
    live_whip::{Publisher, key, wait_active, whip_url},
};

pub(crate) async fn live(visibility: &str) -> Live {
    let app = spawn_app_with(|s| {
        s.live.segment_duration_s = 1.0;
        s.live.segment_max_duration_s = Some(1.5);
    })
    .await;
    Live::on(app, 2, visibility).await
}

pub(crate) fn whep_url(live: &Live) -> String {
    live.app.url(&format!("/whep/{}", live.id()))
}

/// aiortc watching `url` for `seconds` (tests/whep/play.py).
pub(crate) fn aiortc_viewer(url: String, token: &str, seconds: &str) -> Publisher {
    Publisher::spawn(
        "../whep/play.py",
        url,
        token.to_string(),
        &["--seconds", seconds],
    )
}

/// Chromium watching `url` for `seconds` through player.html.
fn chromium_viewer(url: String, token: &str, seconds: &str) -> Publisher {
    Publisher::spawn(
        "chromium.py",
        url,
        token.to_string(),
        &["--whep", "--seconds", seconds],
    )
}

pub(crate) async fn wait_live(live: &Live) {
    live.wait_playlist(Duration::from_secs(20), "a first segment", |p| {
        p.contains("#EXTINF")
    })
    .await;
}

/// The answer step of a viewer that must be accepted.
pub(crate) fn assert_answered(live: &Live, answer: &Value) {
    assert_eq!(answer["status"], 201, "{answer}");
    let location = answer["location"].as_str().unwrap_or_default();
    assert!(
        location.starts_with(&format!("/whep/{}/sessions/", live.id())),
        "{answer}"
    );
}

#[tokio::test]
async fn an_rtmp_lesson_plays_over_whep_in_aiortc_and_chromium_with_h264_and_opus() {
    let live = live("public").await;
    let mut publisher = ffmpeg_publish_gop(&live.rtmp_url(), 30, true, 30);
    wait_live(&live).await;

    let mut aiortc = aiortc_viewer(whep_url(&live), "", "6");
    let mut chromium = chromium_viewer(whep_url(&live), "", "6");
    let answer = aiortc.step("answer").await;
    assert_answered(&live, &answer);
    assert_eq!(answer["content_type"], "application/sdp");
    assert_answered(&live, &chromium.step("answer").await);
    // Ops see them: the live session counts its WebRTC viewers beside its HLS clients (this
    // test's own playlist polling, one address).
    wait_active(&live, "3 viewers", |s| s["viewers"] == 3).await;

    // aiortc decoded the publisher's picture (640x360, passed through) and Opus at 48 kHz.
    let played = aiortc.step("played").await;
    assert_eq!(played["state"], "connected", "{played}");
    assert!(
        played["video_frames"].as_u64().unwrap() >= 90,
        "6 s at 30 fps: {played}"
    );
    assert_eq!(
        (played["width"].as_u64(), played["height"].as_u64()),
        (Some(640), Some(360))
    );
    assert!(
        played["first_video_s"].as_f64().unwrap() < 2.5,
        "the first picture waits at most a GOP (1 s) after connecting: {played}"
    );
    assert!(
        played["audio_frames"].as_u64().unwrap() >= 150,
        "the AAC source reaches WHEP viewers as Opus: {played}"
    );
    assert_eq!(played["audio_rate"], 48000, "{played}");
    assert_eq!(aiortc.step("delete").await["status"], 204);

    // Chromium: frames decoded from the H.264 track, and an Opus track playing.
    let played = chromium.step("played").await;
    let stats = &played["stats"];
    assert_eq!(played["state"], "connected", "{played}");
    assert_eq!(stats["video"]["codec"], "video/H264", "{stats}");
    assert!(
        stats["video"]["framesDecoded"].as_u64().unwrap() >= 90,
        "{stats}"
    );
    assert_eq!(stats["video"]["frameWidth"], 640, "{stats}");
    assert_eq!(stats["audio"]["codec"], "audio/opus", "{stats}");
    assert!(
        stats["audio"]["packetsReceived"].as_u64().unwrap() >= 150,
        "{stats}"
    );
    assert_eq!(chromium.step("delete").await["status"], 204);
    aiortc.finish().await;
    chromium.finish().await;

    // The session resource is gone after DELETE.
    let location = answer["location"].as_str().unwrap();
    let again = live
        .app
        .client
        .delete(live.app.url(location))
        .send()
        .await
        .unwrap();
    assert_problem(again, StatusCode::NOT_FOUND, "not_found").await;
    let _ = publisher.kill();
    let _ = publisher.wait();
}

#[tokio::test]
async fn a_whip_lesson_plays_over_whep_with_its_opus_passed_through() {
    let live = live("public").await;
    let mut source = Publisher::spawn(
        "publish.py",
        whip_url(&live),
        key(&live),
        &["--seconds", "16"],
    );
    assert_eq!(source.step("answer").await["status"], 201);
    wait_live(&live).await;

    let mut viewer = aiortc_viewer(whep_url(&live), "", "5");
    assert_answered(&live, &viewer.step("answer").await);
    let played = viewer.step("played").await;
    assert_eq!(played["state"], "connected", "{played}");
    // The publisher's 320x240 pattern, started at a keyframe asked for when the viewer came.
    assert_eq!(
        (played["width"].as_u64(), played["height"].as_u64()),
        (Some(320), Some(240))
    );
    assert!(played["video_frames"].as_u64().unwrap() >= 60, "{played}");
    assert!(
        played["first_video_s"].as_f64().unwrap() < 2.0,
        "a WHIP source is asked for a keyframe at once: {played}"
    );
    assert!(played["audio_frames"].as_u64().unwrap() >= 100, "{played}");
    assert_eq!(viewer.step("delete").await["status"], 204);
    viewer.finish().await;
    source.finish().await;
}

#[tokio::test]
async fn whep_on_a_private_stream_needs_the_token_and_bad_requests_get_problem_json() {
    let live = live("private").await;
    let mut publisher = ffmpeg_publish_gop(&live.rtmp_url(), 25, true, 30);
    let client = &live.app.client;
    let url = whep_url(&live);

    // Not live yet: 404.
    let offer = "v=0\r\n";
    let r = client
        .post(&url)
        .header("content-type", "application/sdp")
        .body(offer)
        .send()
        .await
        .unwrap();
    assert_problem(r, StatusCode::NOT_FOUND, "not_found").await;
    let grant: Value = live.action("playback-token").await.json().await.unwrap();
    let token = grant["token"].as_str().unwrap();
    let start = std::time::Instant::now();
    loop {
        let r = live
            .app
            .get(&format!("/hls/live/{}/index.m3u8?token={token}", live.id()))
            .await;
        if r.status() == StatusCode::OK && r.text().await.unwrap().contains("#EXTINF") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "not live");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    assert_eq!(
        grant["whep_url"].as_str().unwrap(),
        format!("{url}?token={token}")
    );

    // No token: 401; a wrong one: 403 — before the offer is even read.
    let post = |auth: Option<String>, ct: &'static str, body: &'static str| {
        let mut req = client.post(&url).header("content-type", ct).body(body);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        req.send()
    };
    assert_problem(
        post(None, "application/sdp", offer).await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    assert_problem(
        post(Some("Bearer nope".into()), "application/sdp", offer)
            .await
            .unwrap(),
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    // With the token: the offer is read (garbage: 400), a wrong content type 415.
    let bearer = Some(format!("Bearer {token}"));
    assert_problem(
        post(bearer.clone(), "application/sdp", "hello")
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
        "malformed_sdp",
    )
    .await;
    assert_problem(
        post(bearer, "text/plain", "hello").await.unwrap(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;

    // The token as WHEP clients send it (bearer) plays; so does `?token=` (the API's URL).
    let mut bearer_viewer = aiortc_viewer(url.clone(), token, "3");
    let mut query_viewer = aiortc_viewer(grant["whep_url"].as_str().unwrap().into(), "", "3");
    for v in [&mut bearer_viewer, &mut query_viewer] {
        assert_answered(&live, &v.step("answer").await);
        let played = v.step("played").await;
        assert!(played["video_frames"].as_u64().unwrap() >= 30, "{played}");
        assert_eq!(v.step("delete").await["status"], 204);
    }
    bearer_viewer.finish().await;
    query_viewer.finish().await;

    // Discovery, trickle and unknown streams.
    let r = client
        .request(reqwest::Method::OPTIONS, &url)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(r.headers()["accept-post"], "application/sdp");
    let r = client
        .patch(format!("{url}/sessions/abc"))
        .send()
        .await
        .unwrap();
    assert_problem(r, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
    let r = client
        .post(live.app.url(&format!("/whep/{}", uuid::Uuid::new_v4())))
        .header("content-type", "application/sdp")
        .body(offer)
        .send()
        .await
        .unwrap();
    assert_problem(r, StatusCode::NOT_FOUND, "not_found").await;
    let _ = publisher.kill();
    let _ = publisher.wait();
}

#[tokio::test]
async fn with_whep_off_a_live_stream_has_no_whep_url_and_the_endpoint_is_a_404() {
    let app = spawn_app_with(|s| {
        s.live.segment_duration_s = 1.0;
        s.live.segment_max_duration_s = Some(1.5);
        s.whep.enabled = false;
    })
    .await;
    let live = Live::on(app, 2, "public").await;
    assert_eq!(live.stream["whep_url"], Value::Null, "{}", live.stream);
    let mut publisher = ffmpeg_publish_gop(&live.rtmp_url(), 15, true, 30);
    wait_live(&live).await;
    let r = live
        .app
        .client
        .post(whep_url(&live))
        .header("content-type", "application/sdp")
        .body("v=0\r\n")
        .send()
        .await
        .unwrap();
    assert_problem(r, StatusCode::NOT_FOUND, "not_found").await;
    let _ = publisher.kill();
    let _ = publisher.wait();
}
