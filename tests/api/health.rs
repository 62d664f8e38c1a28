//! Probes, metrics and the API documents.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{spawn_app, spawn_app_with};

#[tokio::test]
async fn healthz_answers_while_the_process_lives() {
    let app = spawn_app().await;
    let r = app.get("/healthz").await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn readyz_checks_every_dependency() {
    let app = spawn_app().await;
    let r = app.get("/readyz").await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "ok", "{body}");
    let names: Vec<&str> = body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["postgres", "redis", "storage", "gstreamer"]);
    assert!(
        body["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["status"] == "ok"),
        "{body}"
    );
}

#[tokio::test]
async fn readyz_names_the_failing_dependency_with_503() {
    let app = spawn_app().await;
    // The local storage root turns into a plain file: nothing can be written under it.
    std::fs::remove_dir_all(&app.storage_root).unwrap();
    std::fs::write(&app.storage_root, b"not a directory").unwrap();
    let r = app.get("/readyz").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["failing"], serde_json::json!(["storage"]), "{body}");
}

#[tokio::test]
async fn readyz_names_redis_when_it_dies() {
    // A Redis of this test's own, killed once the app is up.
    let port = crate::helpers::free_port();
    let mut redis = std::process::Command::new("redis-server")
        .args([
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server is installed (scripts/test installs it)");
    let url = format!("redis://127.0.0.1:{port}");
    for _ in 0..100 {
        if redis::Client::open(url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let app = spawn_app_with(move |s| s.redis.url = wemaster::config::Secret::new(url)).await;
    assert_eq!(app.get("/readyz").await.status(), StatusCode::OK);
    redis.kill().unwrap();
    redis.wait().unwrap();
    let r = app.get("/readyz").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["failing"], serde_json::json!(["redis"]), "{body}");
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status() {
    let app = spawn_app().await;
    assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);
    // (Under /api: other unknown paths are the web app's, answered with its page.)
    assert_eq!(
        app.get("/api/v1/no/such/route").await.status(),
        StatusCode::NOT_FOUND
    );
    let r = app.get("/metrics").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = r.text().await.unwrap();
    assert!(
        text.contains(r#"http_requests_total{method="GET",route="/healthz",status="200"}"#),
        "{text}"
    );
    assert!(text.contains(r#"route="unmatched",status="404""#), "{text}");
    assert!(
        text.contains("http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(text.contains("wemaster_build_info{version="), "{text}");
    assert!(text.contains("process_resident_memory_bytes"), "{text}");
}

#[tokio::test]
async fn openapi_document_describes_the_routes() {
    let app = spawn_app().await;
    let r = app.get("/api/v1/openapi.json").await;
    assert_eq!(r.status(), StatusCode::OK);
    let doc: Value = r.json().await.unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    for path in [
        "/api/v1/auth/login",
        "/api/v1/auth/register",
        "/api/v1/auth/refresh",
        "/api/v1/auth/logout",
        "/api/v1/me",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    assert!(doc["paths"]["/api/v1/me"]["get"]["security"].is_array());
}

#[tokio::test]
async fn docs_ui_is_served() {
    let app = spawn_app().await;
    let r = app.client.get(app.url("/api/docs/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    assert!(html.to_lowercase().contains("swagger"), "{html}");
}

#[tokio::test]
async fn the_application_stops_gracefully_when_told() {
    let app = spawn_app().await;
    assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);
    let addr = app.addr;
    app.stop().await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting after stop"
    );
}

/// The console's System page reads the server's own history of its key metrics: it is there
/// without anyone polling, moves with the traffic, and only admins and ops may read it.
#[tokio::test]
async fn the_server_keeps_a_short_history_of_its_key_metrics_for_ops() {
    let app = spawn_app_with(|s| s.log.metric_history_interval_s = 1).await;
    let (_, ops) = app
        .user_with(
            &crate::helpers::unique_email("ops-metrics"),
            "a fine passphrase",
            &[wemaster::users::Role::Ops],
        )
        .await;
    let (_, student) = app
        .user_with(
            &crate::helpers::unique_email("student-metrics"),
            "a fine passphrase",
            &[wemaster::users::Role::Student],
        )
        .await;
    // Traffic for a few seconds: the samples that cover it show requests per second.
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(3500);
    while std::time::Instant::now() < deadline {
        assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let r = app.get_auth("/api/v1/admin/system/metrics", &ops).await;
    assert_eq!(r.status(), StatusCode::OK);
    let h: Value = r.json().await.unwrap();
    assert_eq!(h["interval_s"], 1, "{h}");
    assert!(!h["node"].as_str().unwrap().is_empty());
    let samples = h["samples"].as_array().unwrap();
    assert!(samples.len() >= 2, "a sample a second for 3.5 s: {h}");
    assert!(
        samples
            .iter()
            .any(|s| s["requests_per_s"].as_f64().unwrap() >= 5.0),
        "≈ 40 requests a second were made: {h}"
    );
    let last = samples.last().unwrap();
    assert!(last["rss_bytes"].as_f64().unwrap() > 1e6, "{last}");
    assert!((0.0..=1.0).contains(&last["error_ratio"].as_f64().unwrap()));
    let times: Vec<&str> = samples.iter().map(|s| s["at"].as_str().unwrap()).collect();
    assert!(
        times.windows(2).all(|w| w[0] < w[1]),
        "oldest first: {times:?}"
    );

    let r = app.get_auth("/api/v1/admin/system/metrics", &student).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}
