//! Every error is problem+json with a stable code; request ids travel through.

use reqwest::{Method, StatusCode};
use serde_json::json;
use wemaster::users::Role;

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
    // An allowed page may read the headers our answers point with (Location, ETag, ...).
    let r = app
        .client
        .get(app.url("/healthz"))
        .header("origin", "https://school.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://school.example"
    );
    let exposed = r.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap();
    assert!(
        exposed.contains("location") && exposed.contains("etag"),
        "{exposed}"
    );
    // No `Origin` (a player, a publisher, a same-origin page): no CORS headers, but the answer
    // still says it depends on `Origin`, so a shared cache never hands it to a CORS request.
    let r = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
    assert!(r.headers().get("access-control-expose-headers").is_none());
    let vary: Vec<_> = r.headers().get_all("vary").iter().collect();
    assert!(
        vary.iter()
            .any(|v| v.to_str().unwrap().split(',').any(|h| h.trim() == "origin")),
        "{vary:?}"
    );
}

/// A NUL character in any text input is a 400 problem at the edge, never a 500 from
/// PostgreSQL (which cannot store it): query, path, JSON body; public and private routes.
#[tokio::test]
async fn a_nul_character_anywhere_in_the_input_is_a_400_problem() {
    let app = spawn_app().await;
    let (_, token) = app
        .user_with("nul@school.example", "a fine passphrase", &[Role::Admin])
        .await;
    for path in [
        "/api/v1/courses?q=%00",
        "/api/v1/courses?q=maths%00&limit=5",
        "/api/v1/courses/%00",
        "/api/v1/admin/users?email=%00",
        "/api/v1/chat/channels/lesson:%00/messages",
        "/api/v1/admin/audit-log?action=auth.%00",
    ] {
        let r = app.get_auth(path, &token).await;
        let body = assert_problem(r, StatusCode::BAD_REQUEST, "bad_request").await;
        assert!(
            body["detail"].as_str().unwrap().contains("NUL"),
            "{path}: {body}"
        );
    }
    // Without a token too: the public catalogue, and a login.
    assert_problem(
        app.get("/api/v1/courses?q=%00").await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;
    for (method, path, body) in [
        (
            Method::POST,
            "/api/v1/auth/login",
            json!({"email": "nul\u{0}@school.example", "password": "whatever it is"}),
        ),
        (
            Method::POST,
            "/api/v1/auth/register",
            json!({"email": "n@school.example", "password": "a fine passphrase",
                   "display_name": "Li\u{0}Lei"}),
        ),
        (
            Method::PATCH,
            "/api/v1/me",
            json!({"display_name": "Li\u{0}Lei"}),
        ),
        (
            Method::POST,
            "/api/v1/courses",
            json!({"title": "T", "summary": "s", "tags": ["a\u{0}"]}),
        ),
    ] {
        let r = app.send(method, path, Some(&token), Some(&body)).await;
        let problem = assert_problem(r, StatusCode::BAD_REQUEST, "bad_request").await;
        assert!(
            problem["detail"].as_str().unwrap().contains("JSON body"),
            "{path}: {problem}"
        );
    }
}

#[tokio::test]
async fn text_that_only_looks_like_a_nul_is_accepted() {
    let app = spawn_app().await;
    // `%2500` is the text "%00"; `\\u0000` in JSON is a backslash and the text "u0000".
    let r = app.get("/api/v1/courses?q=%2500").await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .header("content-type", "application/json")
        .body(r#"{"email": "a\\u0000@school.example", "password": "whatever it is"}"#)
        .send()
        .await
        .unwrap();
    assert_problem(r, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
}
