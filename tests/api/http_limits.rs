//! Connection limits and timeouts (issue #17, finding 3), seen from raw TCP sockets: idle and
//! slow connections are closed, an oversized `Content-Length` is refused before its body, the
//! connection cap answers a clear 503 — while slow-but-moving requests and WebSockets go on.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use wemaster::{config::Settings, users::Role};

use crate::{
    chat::Client,
    helpers::{TestApp, spawn_app_with},
};

/// Short timeouts, so that a test waits seconds, not minutes.
fn short(s: &mut Settings) {
    s.http.header_read_timeout_s = 1.0;
    s.http.keep_alive_timeout_s = 1.0;
    s.http.body_read_timeout_s = 1.0;
}

/// Read until the peer closes (or `limit` passes: then panic); returns what was read and when
/// the close came.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, Duration) {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit
            .checked_sub(start.elapsed())
            .unwrap_or_else(|| panic!("still open after {limit:?}; read {got:?}"));
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => panic!(
                "still open after {limit:?}; read {:?}",
                String::from_utf8_lossy(&got)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => {
                return (String::from_utf8_lossy(&got).into(), start.elapsed());
            }
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// The body of a raw HTTP/1.1 answer.
fn body_of(answer: &str) -> Value {
    let body = answer.split_once("\r\n\r\n").expect("a whole answer").1;
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer}"))
}

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.addr).await.unwrap()
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
    let app = spawn_app_with(short).await;
    let mut idle = connect(&app).await;
    let (got, after) = read_until_closed(&mut idle, Duration::from_secs(4)).await;
    assert_eq!(got, "");
    assert!(
        after >= Duration::from_millis(800),
        "closed too early: {after:?}"
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_keep_alive_timeout() {
    let app = spawn_app_with(|s| {
        short(s);
        s.http.keep_alive_timeout_s = 2.0;
    })
    .await;
    let mut conn = connect(&app).await;
    conn.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let (got, after) = read_until_closed(&mut conn, Duration::from_secs(5)).await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    // The keep-alive timeout (2 s), not the header one (1 s), counts while idle.
    assert!(
        after >= Duration::from_millis(1800),
        "closed after {after:?}"
    );
}

#[tokio::test]
async fn a_slowloris_head_is_cut_though_bytes_keep_coming() {
    let app = spawn_app_with(short).await;
    let mut conn = connect(&app).await;
    conn.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let start = Instant::now();
    // One header byte every 200 ms: the head is never complete.
    let mut closed = false;
    for i in 0..40 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if conn
            .write_all(format!("x{i}: y\r\n").as_bytes())
            .await
            .is_err()
        {
            closed = true;
            break;
        }
        let mut buf = [0u8; 64];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(1), conn.read(&mut buf)).await
        {
            closed = true;
            break;
        }
    }
    assert!(closed, "the slow head was never cut");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "cut after {:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn a_huge_content_length_gets_413_at_once_without_the_body() {
    let app = spawn_app_with(|_| {}).await;
    for path in ["/api/v1/auth/login", "/api/v1/orders", "/api/v1/courses"] {
        let mut conn = connect(&app).await;
        conn.write_all(
            format!(
                "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
                 content-length: 99999999999\r\n\r\n{{"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let (got, after) = read_until_closed(&mut conn, Duration::from_secs(3)).await;
        assert!(got.starts_with("HTTP/1.1 413"), "{path}: {got}");
        assert!(got.contains("application/problem+json"), "{got}");
        assert_eq!(body_of(&got)["code"], "payload_too_large");
        assert!(
            after < Duration::from_secs(1),
            "{path}: answered after {after:?}"
        );
    }
}

#[tokio::test]
async fn a_stalled_body_gets_408_and_a_slow_moving_one_is_served() {
    let app = spawn_app_with(short).await;
    let body = json!({"email": "slow@school.example", "password": "whatever it is"}).to_string();
    let head = format!(
        "POST /api/v1/auth/login HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );

    // Stalled after 10 bytes.
    let mut conn = connect(&app).await;
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&body.as_bytes()[..10]).await.unwrap();
    let (got, after) = read_until_closed(&mut conn, Duration::from_secs(4)).await;
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert_eq!(body_of(&got)["code"], "request_timeout");
    assert!(after >= Duration::from_millis(800), "{after:?}");

    // The same body a few bytes every 400 ms: 3 s in all, longer than every timeout.
    let mut conn = connect(&app).await;
    conn.write_all(head.as_bytes()).await.unwrap();
    for chunk in body.as_bytes().chunks(body.len().div_ceil(8)) {
        tokio::time::sleep(Duration::from_millis(400)).await;
        conn.write_all(chunk).await.unwrap();
    }
    let (got, _) = read_until_closed(&mut conn, Duration::from_secs(4)).await;
    assert!(got.starts_with("HTTP/1.1 401"), "{got}");
    assert_eq!(body_of(&got)["code"], "invalid_credentials");
}

#[tokio::test]
async fn a_websocket_outlives_the_http_timeouts() {
    let app = spawn_app_with(short).await;
    let (id, token) = app
        .user_with(
            "ws-timeouts@school.example",
            "a fine passphrase",
            &[Role::Student],
        )
        .await;
    let mut chat = Client::connect(app.addr, &token).await;
    chat.silent("_closed", Duration::from_millis(2500)).await;
    let answer = chat.subscribe(&format!("user:{id}"), None).await;
    assert_eq!(answer["type"], "subscribed", "{answer}");
}

#[tokio::test]
async fn past_the_connection_cap_a_new_connection_gets_a_503_problem() {
    let app = spawn_app_with(|s| s.http.max_connections = 3).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect(&app).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = connect(&app).await;
    let (got, _) = read_until_closed(&mut extra, Duration::from_secs(3)).await;
    assert!(got.starts_with("HTTP/1.1 503"), "{got}");
    assert!(got.to_lowercase().contains("retry-after: "), "{got}");
    assert_eq!(body_of(&got)["code"], "too_many_connections");

    // A connection closing frees its place.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = app.get("/healthz").await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn stopping_does_not_wait_for_idle_or_half_sent_connections() {
    let app = spawn_app_with(|s| {
        s.http.header_read_timeout_s = 60.0;
        s.http.keep_alive_timeout_s = 60.0;
        s.http.shutdown_grace_s = 10;
    })
    .await;
    let mut conns = Vec::new();
    for i in 0..10 {
        let mut c = connect(&app).await;
        if i % 2 == 0 {
            c.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
                .await
                .unwrap();
        } else {
            c.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
                .await
                .unwrap();
        }
        conns.push(c);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start = Instant::now();
    app.stop().await;
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "stopping took {:?}",
        start.elapsed()
    );
    for mut c in conns {
        read_until_closed(&mut c, Duration::from_secs(1)).await;
    }
}
