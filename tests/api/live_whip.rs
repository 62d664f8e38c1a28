//! WHIP (RFC 9725) ingest end to end with an independent WebRTC stack: aiortc (PyPI, installed
//! by scripts/test into .data/venv-test) publishes H.264 + Opus → live HLS that ffprobe decodes
//! as H.264 + AAC → DELETE ends the session → the recording becomes ready. And the refusals.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use reqwest::StatusCode;
use serde_json::Value;

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

fn whip_url(live: &Live) -> String {
    live.app.url(&format!("/whip/{}", live.id()))
}

fn key(live: &Live) -> String {
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

    // VP8 only: refused with a reason (no transcoding), by a real offer from aiortc.
    let steps = aiortc_publish(url.clone(), key(&live), &["--video-codec", "vp8"]).await;
    let answer = step(&steps, "answer");
    assert_eq!(answer["status"], 406, "{steps:?}");
    assert!(
        answer["body"].as_str().unwrap().contains("H.264"),
        "{answer}"
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
