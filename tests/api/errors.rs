//! Every error is problem+json with a stable code; request ids travel through.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{assert_problem, spawn_app, spawn_app_with};

#[tokio::test]
async fn unknown_route_is_a_404_problem() {
    let app = spawn_app().await;
    let body = assert_problem(
        app.get("/api/v1/nothing-here").await,
        StatusCode::NOT_FOUND,
        "route_not_found",
    )
    .await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("/api/v1/nothing-here")
    );
}

#[tokio::test]
async fn wrong_method_is_a_405_problem() {
    let app = spawn_app().await;
    assert_problem(
        app.get("/api/v1/auth/login").await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    )
    .await;
}

#[tokio::test]
async fn malformed_json_is_a_400_naming_the_problem() {
    let app = spawn_app().await;
    let r = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .header("content-type", "application/json")
        .body(r#"{"email": "a@b.example", "password": "#)
        .send()
        .await
        .unwrap();
    let body = assert_problem(r, StatusCode::BAD_REQUEST, "malformed_json").await;
    assert!(body["detail"].as_str().unwrap().contains("EOF"), "{body}");
}

#[tokio::test]
async fn json_of_the_wrong_shape_names_the_field() {
    let app = spawn_app().await;
    let r = app
        .post_json("/api/v1/auth/login", &json!({"email": "a@b.example"}))
        .await;
    let body = assert_problem(r, StatusCode::BAD_REQUEST, "malformed_json").await;
    assert!(
        body["detail"].as_str().unwrap().contains("password"),
        "{body}"
    );
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413_problem() {
    let app = spawn_app_with(|s| s.http.body_limit_bytes = 1024).await;
    let big = json!({"email": "a@b.example", "password": "x".repeat(4096)});
    assert_problem(
        app.post_json("/api/v1/auth/login", &big).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    )
    .await;
}

#[tokio::test]
async fn a_body_that_is_not_json_is_a_415_problem() {
    let app = spawn_app().await;
    let r = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .body("email=a")
        .send()
        .await
        .unwrap();
    assert_problem(
        r,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
}

#[tokio::test]
async fn request_ids_are_kept_or_generated() {
    let app = spawn_app().await;
    let r = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "lesson-42.abc")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "lesson-42.abc");

    let r = app.get("/healthz").await;
    let generated = r.headers()["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(generated).is_ok(), "{generated}");

    // An id that could forge log lines is replaced.
    let r = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "a b\tc")
        .send()
        .await
        .unwrap();
    let replaced = r.headers()["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(replaced).is_ok(), "{replaced}");
    // Errors carry it too.
    let r = app
        .client
        .get(app.url("/nope"))
        .header("x-request-id", "err-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "err-1");
}

#[tokio::test]
async fn cors_preflight_is_answered_for_browsers() {
    let app =
        spawn_app_with(|s| s.http.cors_allowed_origins = vec!["https://school.example".into()])
            .await;
    let r = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/api/v1/auth/login"))
        .header("origin", "https://school.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://school.example"
    );
    let r = app
        .client
        .get(app.url("/healthz"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
}
