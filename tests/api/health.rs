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
