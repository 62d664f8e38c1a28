//! Chat attachments against the real server, PostgreSQL, Redis and object storage: a presigned
//! upload (to S3), a message that claims it once, an authorized download, a thumbnail, and the cleanup
//! of uploads nobody used.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};

use crate::{
    chat::{Class, Client},
    helpers::{TestApp, assert_problem},
};

const PNG: &[u8] = include_bytes!("fixtures/gradient.png");

/// Object storage on a fresh bucket of the test S3 server (scripts/test).
fn on_s3(s: &mut wemaster::config::Settings) {
    let var = |n: &str| {
        std::env::var(n).unwrap_or_else(|_| panic!("{n} is not set: run through scripts/test"))
    };
    s.storage.backend = wemaster::config::StorageBackend::S3;
    s.storage.s3.endpoint = var("WEMASTER_TEST_S3_ENDPOINT");
    s.storage.s3.bucket = format!("chat-{}", uuid::Uuid::new_v4().simple());
    s.storage.s3.access_key_id = var("WEMASTER_TEST_S3_ACCESS_KEY");
    s.storage.s3.secret_access_key =
        wemaster::config::Secret::new(var("WEMASTER_TEST_S3_SECRET_KEY"));
    s.storage.s3.force_path_style = true;
    s.storage.s3.create_bucket = true;
}

async fn new_upload(app: &TestApp, token: &str, body: Value) -> reqwest::Response {
    app.send(
        Method::POST,
        "/api/v1/chat/uploads",
        Some(token),
        Some(&body),
    )
    .await
}

/// Start an upload and PUT the bytes; returns the upload.
async fn upload(app: &TestApp, token: &str, name: &str, ty: &str, bytes: &[u8]) -> Value {
    let r = new_upload(
        app,
        token,
        json!({"name": name, "content_type": ty, "size_bytes": bytes.len()}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let up: Value = r.json().await.unwrap();
    let r = app
        .client
        .put(up["upload_url"].as_str().unwrap())
        .header("content-type", ty)
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    up
}

async fn reply(c: &mut Client, client_id: &str) -> Value {
    loop {
        let v = c.next_of_any(&["ack", "error"]).await;
        if v["client_id"] == client_id {
            return v;
        }
    }
}

/// Follow the authorized route's redirect and fetch the object.
async fn download(app: &TestApp, path: &str, token: &str) -> (StatusCode, Vec<u8>) {
    let r = app.get_auth(path, token).await;
    if r.status() != StatusCode::TEMPORARY_REDIRECT {
        return (r.status(), vec![]);
    }
    let to = r.headers()["location"].to_str().unwrap().to_string();
    let r = app.client.get(&to).send().await.unwrap();
    (r.status(), r.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn an_uploaded_image_is_attached_once_downloaded_by_the_room_and_thumbnailed() {
    let class = Class::new(|s| {
        on_s3(s);
        s.chat.thumbnail_px = 32;
        s.chat.attachment_max_bytes = 100_000;
    })
    .await;
    let app = &class.app;
    let room = format!("lesson:{}", class.lesson);
    let mut student = Client::connect(app.addr, &class.student.1).await;
    let mut teacher = Client::connect(app.addr, &class.teacher.1).await;
    teacher.subscribe(&room, None).await;

    let up = upload(app, &class.student.1, "diagram.png", "image/png", PNG).await;
    student
        .send(
            json!({"type": "send", "channel": room, "client_id": "a-1", "body": "",
                     "attachment_id": up["id"]}),
        )
        .await;
    let ack = reply(&mut student, "a-1").await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let att = &ack["message"]["data"]["attachment"];
    assert_eq!(att["id"], up["id"]);
    assert_eq!(att["name"], "diagram.png");
    assert_eq!(att["content_type"], "image/png");
    assert_eq!(att["size_bytes"], PNG.len());
    let seen = teacher.next_of("message").await;
    assert_eq!(seen["message"]["data"]["attachment"], *att);

    // The room downloads it through the authorized route; a stranger cannot.
    let url = att["url"].as_str().unwrap();
    let (status, bytes) = download(app, url, &class.teacher.1).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bytes, PNG);
    assert_eq!(
        download(app, url, &class.stranger.1).await.0,
        StatusCode::NOT_FOUND
    );
    let (status, thumb) = download(
        app,
        att["thumbnail_url"].as_str().expect("a thumbnail"),
        &class.teacher.1,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(thumb.starts_with(&[0xff, 0xd8, 0xff]), "a JPEG");

    // Only once: another message cannot take it; a retry of the same frame gets the same ack.
    student
        .send(
            json!({"type": "send", "channel": room, "client_id": "a-2", "body": "again",
                     "attachment_id": up["id"]}),
        )
        .await;
    assert_eq!(reply(&mut student, "a-2").await["code"], "invalid");
    student
        .send(
            json!({"type": "send", "channel": room, "client_id": "a-1", "body": "",
                     "attachment_id": up["id"]}),
        )
        .await;
    assert_eq!(
        reply(&mut student, "a-1").await["message"]["id"],
        ack["message"]["id"]
    );
    // Only the uploader's.
    teacher
        .send(
            json!({"type": "send", "channel": room, "client_id": "t-1", "body": "mine?",
                     "attachment_id": up["id"]}),
        )
        .await;
    assert_eq!(reply(&mut teacher, "t-1").await["code"], "not_found");
}

#[tokio::test]
async fn uploads_are_limited_checked_and_deleted_when_unused() {
    let class = Class::new(|s| s.chat.attachment_max_bytes = 1000).await;
    let app = &class.app;
    let token = &class.student.1;
    let room = format!("lesson:{}", class.lesson);
    assert_problem(
        new_upload(
            app,
            token,
            json!({"name": "x.exe", "content_type": "application/x-msdownload", "size_bytes": 10}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(
        new_upload(
            app,
            token,
            json!({"name": "big.pdf", "content_type": "application/pdf", "size_bytes": 1001}),
        )
        .await
        .status(),
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(
        app.send(
            Method::POST,
            "/api/v1/chat/uploads",
            None,
            Some(&json!({"name": "a.txt", "content_type": "text/plain", "size_bytes": 1}))
        )
        .await
        .status(),
        StatusCode::UNAUTHORIZED
    );

    // Announced but never uploaded: refused.
    let r = new_upload(
        app,
        token,
        json!({"name": "notes.txt", "content_type": "text/plain", "size_bytes": 5}),
    )
    .await;
    let never: Value = r.json().await.unwrap();
    let mut c = Client::connect(app.addr, token).await;
    c.send(
        json!({"type": "send", "channel": room, "client_id": "n-1", "body": "see file",
                  "attachment_id": never["id"]}),
    )
    .await;
    assert_eq!(reply(&mut c, "n-1").await["code"], "invalid");

    // Not what it claims to be (attachments are served with the declared type): refused.
    let html = b"<html><script>document.cookie</script></html>";
    let fake = upload(app, token, "cat.png", "image/png", html).await;
    c.send(
        json!({"type": "send", "channel": room, "client_id": "f-1", "body": "",
                  "attachment_id": fake["id"]}),
    )
    .await;
    let refused = reply(&mut c, "f-1").await;
    assert_eq!(refused["code"], "invalid", "{refused}");
    assert!(
        refused["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("not of its declared type"),
        "{refused}"
    );

    // Uploaded, unused, expired: the cleanup deletes the object and the upload.
    let up = upload(app, token, "notes.txt", "text/plain", b"hello").await;
    let mut db = PgConnection::connect(&app.database_url).await.unwrap();
    sqlx::query(
        "UPDATE chat_attachments SET expires_at = now() - interval '1 second' WHERE id = $1::uuid",
    )
    .bind(up["id"].as_str().unwrap())
    .execute(&mut db)
    .await
    .unwrap();
    let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
    let storage = app.storage().await;
    assert!(
        wemaster::chat::attachments::cleanup(&pool, &storage)
            .await
            .unwrap()
            >= 1
    );
    let key = wemaster::chat::attachments::object_key(
        up["id"].as_str().unwrap().parse().unwrap(),
        "text/plain",
    );
    assert!(storage.head(&key).await.is_err(), "the object is gone");
    c.send(
        json!({"type": "send", "channel": room, "client_id": "n-2", "body": "see file",
                  "attachment_id": up["id"]}),
    )
    .await;
    assert_eq!(reply(&mut c, "n-2").await["code"], "not_found");
}
