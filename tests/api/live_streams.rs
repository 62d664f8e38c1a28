//! The live stream resource, `/api/v1/live-streams`: what a teacher's app creates, lists and
//! acts on, who may see what (the key above all), and the events each change leaves behind.

use std::{collections::HashSet, time::Duration};

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;
use wemaster::{
    live::{events::CHANNEL, keys::StreamKey, store},
    users::{self, DisplayName, Email, Role},
};

use crate::helpers::{TestApp, assert_problem, free_port, spawn_app, spawn_app_with};

const PASSWORD: &str = "a fine passphrase";

async fn db(app: &TestApp) -> PgConnection {
    PgConnection::connect(&app.database_url).await.unwrap()
}

/// Create a user with `roles` directly in the database and log in through the API; returns
/// the user's id and access token.
async fn user_with(app: &TestApp, email: &str, roles: &[Role]) -> (Uuid, String) {
    let hash = wemaster::auth::hash_password(PASSWORD.into())
        .await
        .unwrap();
    let user = users::create_user(
        &mut db(app).await,
        &Email::parse(email).unwrap(),
        &DisplayName::parse("Test").unwrap(),
        &hash,
        roles,
    )
    .await
    .unwrap();
    let tokens = app.login(email, PASSWORD).await;
    (
        user.id,
        tokens["access_token"].as_str().unwrap().to_string(),
    )
}

async fn teacher(app: &TestApp, email: &str) -> (Uuid, String) {
    user_with(app, email, &[Role::Teacher]).await
}

async fn send(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut req = app.client.request(method, app.url(path)).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.expect("request")
}

async fn create(app: &TestApp, token: &str, body: Value) -> Value {
    let r = send(
        app,
        reqwest::Method::POST,
        "/api/v1/live-streams",
        token,
        Some(body),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    r.json().await.unwrap()
}

async fn post(app: &TestApp, token: &str, path: &str) -> reqwest::Response {
    send(app, reqwest::Method::POST, path, token, None).await
}

async fn get_json(app: &TestApp, token: &str, path: &str) -> Value {
    let r = app.get_auth(path, token).await;
    assert_eq!(r.status(), StatusCode::OK, "GET {path}");
    r.json().await.unwrap()
}

/// An app whose RTMP port is fixed in its settings (the shared helper binds port 0), so the
/// `rtmp_url` it builds can be checked exactly.
async fn spawn_app_with_rtmp_port() -> (TestApp, u16) {
    let port = free_port();
    let app =
        spawn_app_with(|s| s.rtmp.listen = format!("127.0.0.1:{port}").parse().unwrap()).await;
    (app, port)
}

fn assert_key_shape(key: &str) {
    assert_eq!(key.len(), 47, "{key}");
    assert!(key.starts_with("wmk_"), "{key}");
    assert!(key[4..].bytes().all(|b| b.is_ascii_alphanumeric()), "{key}");
}

#[tokio::test]
async fn a_teacher_creates_a_stream_and_sees_its_key_and_urls_once() {
    let (app, rtmp_port) = spawn_app_with_rtmp_port().await;
    let (teacher_id, token) = teacher(&app, "t@school.example").await;

    let r = send(
        &app,
        reqwest::Method::POST,
        "/api/v1/live-streams",
        &token,
        Some(json!({"title": "  Algebra, lesson 1 "})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let s: Value = r.json().await.unwrap();

    let id = s["id"].as_str().unwrap();
    assert_eq!(Uuid::parse_str(id).unwrap().get_version_num(), 7);
    assert_eq!(location, format!("/api/v1/live-streams/{id}"));
    assert_eq!(s["title"], "Algebra, lesson 1");
    assert_eq!(s["owner_id"], teacher_id.to_string());
    assert_eq!(s["status"], "idle");
    assert_eq!(s["record"], true);
    assert_eq!(s["reconnect_window_s"], 60);
    assert_eq!(s["visibility"], "public");
    assert!(s["active_session"].is_null());
    assert!(s["created_at"].as_str().unwrap().ends_with('Z'));
    assert!(s["updated_at"].is_string());
    let key = s["stream_key"].as_str().unwrap();
    assert_key_shape(key);
    assert_eq!(s["stream_key_prefix"], &key[..8]);
    assert_eq!(
        s["rtmp_url"],
        format!("rtmp://127.0.0.1:{rtmp_port}/live/{key}")
    );
    assert_eq!(s["whip_url"], format!("{}/whip/{id}", app.base));
    assert_eq!(
        s["hls_url"],
        format!("{}/hls/live/{id}/index.m3u8", app.base)
    );

    // Stored hashed: a later read cannot show the key, only its prefix.
    let again = get_json(&app, &token, &location).await;
    assert!(again["stream_key"].is_null());
    assert_eq!(again["stream_key_prefix"], &key[..8]);
    assert_eq!(
        again["rtmp_url"],
        format!("rtmp://127.0.0.1:{rtmp_port}/live")
    );
    assert_eq!(again["created_at"], s["created_at"]);
    let body = serde_json::to_string(&again).unwrap();
    assert!(!body.contains(&key[8..]), "the key leaked: {body}");

    // And the database holds no trace of it either.
    let stored: Vec<u8> =
        sqlx::query_scalar("SELECT stream_key_hash FROM live_streams WHERE id = $1::uuid")
            .bind(id)
            .fetch_one(&mut db(&app).await)
            .await
            .unwrap();
    assert_eq!(stored, StreamKey::parse(key).unwrap().hash().0.to_vec());
}

#[tokio::test]
async fn create_takes_its_settings_and_names_a_bad_field() {
    let app = spawn_app().await;
    let (_, token) = teacher(&app, "t@school.example").await;
    let s = create(
        &app,
        &token,
        json!({"title": "Quiet", "record": false, "reconnect_window_s": 0, "visibility": "private"}),
    )
    .await;
    assert_eq!(s["record"], false);
    assert_eq!(s["reconnect_window_s"], 0);
    assert_eq!(s["visibility"], "private");

    for (body, field) in [
        (json!({}), "title"),
        (json!({"title": ""}), "title"),
        (json!({"title": "x".repeat(201)}), "title"),
        (
            json!({"title": "ok", "reconnect_window_s": 3601}),
            "reconnect_window_s",
        ),
        (
            json!({"title": "ok", "reconnect_window_s": -1}),
            "reconnect_window_s",
        ),
        (json!({"title": "ok", "visibility": "secret"}), "visibility"),
    ] {
        let r = send(
            &app,
            reqwest::Method::POST,
            "/api/v1/live-streams",
            &token,
            Some(body.clone()),
        )
        .await;
        let p = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(p["field"], field, "{body}");
    }
}

#[tokio::test]
async fn another_teacher_never_sees_the_stream_and_an_admin_sees_all() {
    let app = spawn_app().await;
    let (_, owner) = teacher(&app, "owner@school.example").await;
    let (_, stranger) = teacher(&app, "stranger@school.example").await;
    let (_, admin) = user_with(&app, "admin@school.example", &[Role::Admin]).await;
    let s = create(&app, &owner, json!({"title": "Mine"})).await;
    let path = format!("/api/v1/live-streams/{}", s["id"].as_str().unwrap());

    // Every route answers 404 to a stranger, as for an id that does not exist: no key, no
    // confirmation that the id is real.
    use reqwest::Method;
    for (method, p, body) in [
        (Method::GET, path.clone(), None),
        (
            Method::PATCH,
            path.clone(),
            Some(json!({"title": "Theirs"})),
        ),
        (Method::DELETE, path.clone(), None),
        (Method::POST, format!("{path}/reset-stream-key"), None),
        (Method::POST, format!("{path}/disable"), None),
        (Method::POST, format!("{path}/enable"), None),
        (Method::POST, format!("{path}/complete"), None),
        (Method::GET, format!("{path}/events"), None),
    ] {
        let r = send(&app, method.clone(), &p, &stranger, body).await;
        let text = assert_problem(r, StatusCode::NOT_FOUND, "not_found").await;
        assert!(!text.to_string().contains("wmk_"), "{method} {p}: {text}");
    }
    let theirs = get_json(&app, &stranger, "/api/v1/live-streams").await;
    assert_eq!(theirs["items"], json!([]));

    // Untouched by the attempts above.
    let mine = get_json(&app, &owner, &path).await;
    assert_eq!(mine["title"], "Mine");
    assert_eq!(mine["status"], "idle");
    assert_eq!(mine["stream_key_prefix"], s["stream_key_prefix"]);

    // An admin reaches every stream.
    let seen = get_json(&app, &admin, &path).await;
    assert_eq!(seen["id"], s["id"]);
    let all = get_json(&app, &admin, "/api/v1/live-streams").await;
    assert_eq!(all["items"].as_array().unwrap().len(), 1);
    let r = post(&app, &admin, &format!("{path}/disable")).await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn ops_see_every_stream_and_may_end_or_disable_one_but_change_nothing_else() {
    let app = spawn_app().await;
    let (_, owner) = teacher(&app, "owner@school.example").await;
    let (_, ops) = user_with(&app, "ops@school.example", &[Role::Ops]).await;
    let s = create(&app, &owner, json!({"title": "Mine"})).await;
    let path = format!("/api/v1/live-streams/{}", s["id"].as_str().unwrap());
    let all = get_json(&app, &ops, "/api/v1/live-streams").await;
    assert_eq!(all["items"][0]["id"], s["id"]);
    assert_eq!(all["items"][0]["stream_key"], Value::Null);
    assert_eq!(get_json(&app, &ops, &path).await["title"], "Mine");
    use reqwest::Method;
    for (method, p, body) in [
        (
            Method::PATCH,
            path.clone(),
            Some(json!({"title": "Theirs"})),
        ),
        (Method::DELETE, path.clone(), None),
        (Method::POST, format!("{path}/reset-stream-key"), None),
        (Method::POST, format!("{path}/enable"), None),
        (
            Method::POST,
            "/api/v1/live-streams".into(),
            Some(json!({"title": "New"})),
        ),
    ] {
        let r = send(&app, method.clone(), &p, &ops, body).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{method} {p}");
    }
    assert_eq!(
        post(&app, &ops, &format!("{path}/complete")).await.status(),
        StatusCode::OK
    );
    let r = post(&app, &ops, &format!("{path}/disable")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(get_json(&app, &owner, &path).await["status"], "disabled");
}

#[tokio::test]
async fn the_list_pages_with_a_cursor_newest_first() {
    let app = spawn_app().await;
    let (_, token) = teacher(&app, "t@school.example").await;
    let (_, other) = teacher(&app, "other@school.example").await;
    create(&app, &other, json!({"title": "not mine"})).await;
    let mut created = Vec::new();
    for i in 0..7 {
        let s = create(&app, &token, json!({"title": format!("stream {i}")})).await;
        created.push(s["id"].as_str().unwrap().to_string());
    }
    created.reverse(); // newest first

    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    let mut path = "/api/v1/live-streams?limit=3".to_string();
    loop {
        let page = get_json(&app, &token, &path).await;
        let items = page["items"].as_array().unwrap();
        sizes.push(items.len());
        for s in items {
            assert!(s["stream_key"].is_null(), "lists never show keys");
            seen.push(s["id"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/live-streams?limit=3&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(sizes, [3, 3, 1]);
    assert_eq!(seen, created);

    // Default page size is 20: everything fits, no cursor.
    let page = get_json(&app, &token, "/api/v1/live-streams").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 7);
    assert!(page["next_cursor"].is_null());

    for bad in ["limit=0", "limit=101", "status=live"] {
        let r = app
            .get_auth(&format!("/api/v1/live-streams?{bad}"), &token)
            .await;
        let p = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(p["field"], bad.split('=').next().unwrap());
    }
    for bad in ["cursor=not-a-uuid", "limit=many"] {
        let r = app
            .get_auth(&format!("/api/v1/live-streams?{bad}"), &token)
            .await;
        assert_problem(r, StatusCode::BAD_REQUEST, "bad_request").await;
    }
}

#[tokio::test]
async fn patch_changes_settings_and_names_a_bad_field() {
    let app = spawn_app().await;
    let (_, token) = teacher(&app, "t@school.example").await;
    let s = create(&app, &token, json!({"title": "Before"})).await;
    let path = format!("/api/v1/live-streams/{}", s["id"].as_str().unwrap());
    let patch = |body: Value| send(&app, reqwest::Method::PATCH, &path, &token, Some(body));

    for (body, field) in [
        (json!({"title": ""}), "title"),
        (json!({"title": "a\u{0007}b"}), "title"),
        (json!({"reconnect_window_s": 3601}), "reconnect_window_s"),
        (json!({"reconnect_window_s": -5}), "reconnect_window_s"),
        (json!({"visibility": "everyone"}), "visibility"),
    ] {
        let p = assert_problem(
            patch(body.clone()).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        assert_eq!(p["field"], field, "{body}");
    }
    // Fields that cannot be set this way are refused, not ignored.
    for body in [json!({"status": "active"}), json!({"stream_key": "wmk_x"})] {
        assert_problem(patch(body).await, StatusCode::BAD_REQUEST, "malformed_json").await;
    }
    // Nothing above changed anything.
    assert_eq!(get_json(&app, &token, &path).await["title"], "Before");

    let r = patch(json!({"title": "After", "record": false, "reconnect_window_s": 3600})).await;
    assert_eq!(r.status(), StatusCode::OK);
    let after: Value = r.json().await.unwrap();
    assert_eq!(after["title"], "After");
    assert_eq!(after["record"], false);
    assert_eq!(after["reconnect_window_s"], 3600);
    assert_eq!(after["visibility"], "public", "absent fields stay");
    assert!(after["stream_key"].is_null());
    assert_eq!(after["created_at"], s["created_at"]);
    let updated = time::OffsetDateTime::parse(
        after["updated_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let created = time::OffsetDateTime::parse(
        s["created_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert!(updated > created);
    assert_eq!(get_json(&app, &token, &path).await["title"], "After");
}

#[tokio::test]
async fn reset_gives_a_new_key_and_only_the_new_one_opens_the_stream() {
    let (app, rtmp_port) = spawn_app_with_rtmp_port().await;
    let (_, token) = teacher(&app, "t@school.example").await;
    let s = create(&app, &token, json!({"title": "Keys"})).await;
    let id: Uuid = s["id"].as_str().unwrap().parse().unwrap();
    let old = StreamKey::parse(s["stream_key"].as_str().unwrap()).unwrap();
    let mut conn = db(&app).await;
    let found = store::find_by_stream_key(&mut conn, &old).await.unwrap();
    assert_eq!(found.map(|f| f.id.0), Some(id));

    let r = post(
        &app,
        &token,
        &format!("/api/v1/live-streams/{id}/reset-stream-key"),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let reset: Value = r.json().await.unwrap();
    let new_key = reset["stream_key"].as_str().unwrap();
    assert_key_shape(new_key);
    assert_ne!(new_key, old.expose());
    assert_eq!(reset["id"], s["id"]);
    assert_eq!(reset["stream_key_prefix"], &new_key[..8]);
    assert_eq!(
        reset["rtmp_url"],
        format!("rtmp://127.0.0.1:{rtmp_port}/live/{new_key}")
    );

    let new = StreamKey::parse(new_key).unwrap();
    assert!(
        store::find_by_stream_key(&mut conn, &old)
            .await
            .unwrap()
            .is_none()
    );
    let found = store::find_by_stream_key(&mut conn, &new).await.unwrap();
    assert_eq!(found.map(|f| f.id.0), Some(id));
    // A well-formed key that was never issued opens nothing.
    assert!(
        store::find_by_stream_key(&mut conn, &StreamKey::generate())
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn disable_and_enable_move_the_status_and_are_idempotent() {
    let app = spawn_app().await;
    let (_, token) = teacher(&app, "t@school.example").await;
    let s = create(&app, &token, json!({"title": "Switch"})).await;
    let id = s["id"].as_str().unwrap();
    let path = format!("/api/v1/live-streams/{id}");

    for _ in 0..2 {
        let r = post(&app, &token, &format!("{path}/disable")).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.json::<Value>().await.unwrap()["status"], "disabled");
    }
    assert_eq!(get_json(&app, &token, &path).await["status"], "disabled");
    let disabled = get_json(&app, &token, "/api/v1/live-streams?status=disabled").await;
    assert_eq!(disabled["items"][0]["id"], id);
    let idle = get_json(&app, &token, "/api/v1/live-streams?status=idle").await;
    assert_eq!(idle["items"], json!([]));

    // The ingest still finds a disabled stream (to refuse it with the right reason).
    let key = StreamKey::parse(s["stream_key"].as_str().unwrap()).unwrap();
    let found = store::find_by_stream_key(&mut db(&app).await, &key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.status, wemaster::live::model::StreamStatus::Disabled);

    for _ in 0..2 {
        let r = post(&app, &token, &format!("{path}/enable")).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.json::<Value>().await.unwrap()["status"], "idle");
    }

    // One event per actual change, not per call.
    let events = get_json(&app, &token, &format!("{path}/events")).await;
    let kinds: Vec<&str> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "live_stream.enabled",
            "live_stream.disabled",
            "live_stream.created"
        ]
    );
}

#[tokio::test]
async fn complete_answers_with_the_stream_when_nothing_is_live() {
    let app = spawn_app().await;
    let (_, token) = teacher(&app, "t@school.example").await;
    let s = create(&app, &token, json!({"title": "Done"})).await;
    let r = post(
        &app,
        &token,
        &format!(
            "/api/v1/live-streams/{}/complete",
            s["id"].as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "idle");
    assert!(body["active_session"].is_null());
}

#[tokio::test]
async fn delete_is_idempotent_for_the_owner_and_the_key_dies_with_the_stream() {
    let app = spawn_app().await;
    let (_, token) = teacher(&app, "t@school.example").await;
    let (_, stranger) = teacher(&app, "stranger@school.example").await;
    let s = create(&app, &token, json!({"title": "Gone soon"})).await;
    let path = format!("/api/v1/live-streams/{}", s["id"].as_str().unwrap());

    assert_problem(
        send(&app, reqwest::Method::DELETE, &path, &stranger, None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_eq!(
        send(&app, reqwest::Method::DELETE, &path, &token, None)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        send(&app, reqwest::Method::DELETE, &path, &token, None)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    // Gone for the stranger too: still 404, not 204, so the id's existence never leaks.
    assert_problem(
        send(&app, reqwest::Method::DELETE, &path, &stranger, None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;

    assert_problem(
        app.get_auth(&path, &token).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let list = get_json(&app, &token, "/api/v1/live-streams").await;
    assert_eq!(list["items"], json!([]));
    let key = StreamKey::parse(s["stream_key"].as_str().unwrap()).unwrap();
    assert!(
        store::find_by_stream_key(&mut db(&app).await, &key)
            .await
            .unwrap()
            .is_none()
    );

    // An id that never existed.
    let r = send(
        &app,
        reqwest::Method::DELETE,
        &format!("/api/v1/live-streams/{}", Uuid::now_v7()),
        &token,
        None,
    )
    .await;
    assert_problem(r, StatusCode::NOT_FOUND, "not_found").await;

    // Soft: the row and its events stay for recordings and audits.
    let kinds: Vec<String> = sqlx::query_scalar(
        "SELECT kind FROM live_stream_events WHERE live_stream_id = $1::uuid ORDER BY id",
    )
    .bind(s["id"].as_str().unwrap())
    .fetch_all(&mut db(&app).await)
    .await
    .unwrap();
    assert_eq!(kinds, ["live_stream.created", "live_stream.deleted"]);
}

#[tokio::test]
async fn students_are_refused_and_anonymous_callers_unauthorized() {
    let app = spawn_app().await;
    app.register("student@school.example", PASSWORD).await;
    let student = app.login("student@school.example", PASSWORD).await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = send(
        &app,
        reqwest::Method::POST,
        "/api/v1/live-streams",
        &student,
        Some(json!({"title": "Nope"})),
    )
    .await;
    assert_problem(r, StatusCode::FORBIDDEN, "forbidden").await;
    assert_problem(
        app.get_auth("/api/v1/live-streams", &student).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;

    let r = app
        .post_json("/api/v1/live-streams", &json!({"title": "Nope"}))
        .await;
    assert_problem(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
    assert_problem(
        app.get("/api/v1/live-streams").await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    assert_problem(
        app.get(&format!("/api/v1/live-streams/{}", Uuid::now_v7()))
            .await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
}

#[tokio::test]
async fn an_id_that_is_not_a_uuid_is_a_bad_request() {
    let app = spawn_app().await;
    let (_, token) = teacher(&app, "t@school.example").await;
    for path in [
        "/api/v1/live-streams/42",
        "/api/v1/live-streams/not-a-uuid/events",
    ] {
        assert_problem(
            app.get_auth(path, &token).await,
            StatusCode::BAD_REQUEST,
            "bad_request",
        )
        .await;
    }
    let r = post(&app, &token, "/api/v1/live-streams/xyz/disable").await;
    assert_problem(r, StatusCode::BAD_REQUEST, "bad_request").await;
}

#[tokio::test]
async fn changes_are_stored_as_events_and_published_on_redis() {
    let app = spawn_app().await;
    let (teacher_id, token) = teacher(&app, "t@school.example").await;

    // A real subscriber, as another node or the webhook worker would be.
    let mut pubsub = crate::helpers::test_redis().await.pubsub().await.unwrap();
    pubsub.subscribe(CHANNEL).await.unwrap();
    let mut messages = pubsub.into_on_message();

    let s = create(&app, &token, json!({"title": "Evented"})).await;
    let id = s["id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/live-streams/{id}");
    assert_eq!(
        post(&app, &token, &format!("{path}/disable"))
            .await
            .status(),
        StatusCode::OK
    );
    let reset: Value = post(&app, &token, &format!("{path}/reset-stream-key"))
        .await
        .json()
        .await
        .unwrap();

    // Other tests publish on the same channel: keep only this stream's messages.
    let mut published = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while published.len() < 3 {
        let msg = tokio::time::timeout_at(deadline, messages.next())
            .await
            .expect("three events published within 10 s")
            .expect("subscription open");
        let event: Value = serde_json::from_str(&msg.get_payload::<String>().unwrap()).unwrap();
        if event["live_stream_id"] == id.as_str() {
            published.push(event);
        }
    }
    let kinds: Vec<&str> = published
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "live_stream.created",
            "live_stream.disabled",
            "live_stream.stream_key_reset"
        ]
    );
    assert_eq!(published[0]["payload"]["actor_id"], teacher_id.to_string());
    assert_eq!(
        published[2]["payload"]["stream_key_prefix"],
        reset["stream_key_prefix"]
    );
    let secret = reset["stream_key"].as_str().unwrap();
    assert!(
        !published.iter().any(|e| e.to_string().contains(secret)),
        "events never carry the key"
    );

    // The same events are stored, and listed newest first with a cursor.
    let first = get_json(&app, &token, &format!("{path}/events?limit=2")).await;
    let second = get_json(
        &app,
        &token,
        &format!(
            "{path}/events?limit=2&cursor={}",
            first["next_cursor"].as_str().unwrap()
        ),
    )
    .await;
    assert!(second["next_cursor"].is_null());
    let listed: Vec<Value> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["items"].as_array().unwrap())
        .cloned()
        .collect();
    let mut expected = published.clone();
    expected.reverse();
    assert_eq!(listed, expected, "stored rows are what was published");
    let ids: HashSet<&str> = listed.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 3);

    let rows: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM live_stream_events WHERE live_stream_id = $1::uuid",
    )
    .bind(&id)
    .fetch_one(&mut db(&app).await)
    .await
    .unwrap();
    assert_eq!(rows, 3);
}

#[tokio::test]
async fn the_openapi_document_describes_every_live_stream_route() {
    let app = spawn_app().await;
    let doc: Value = app.get("/api/v1/openapi.json").await.json().await.unwrap();
    for (path, methods) in [
        ("/api/v1/live-streams", &["get", "post"][..]),
        ("/api/v1/live-streams/{id}", &["get", "patch", "delete"][..]),
        ("/api/v1/live-streams/{id}/reset-stream-key", &["post"][..]),
        ("/api/v1/live-streams/{id}/disable", &["post"][..]),
        ("/api/v1/live-streams/{id}/enable", &["post"][..]),
        ("/api/v1/live-streams/{id}/complete", &["post"][..]),
        ("/api/v1/live-streams/{id}/events", &["get"][..]),
    ] {
        for m in methods {
            let op = &doc["paths"][path][m];
            assert!(op.is_object(), "{m} {path} missing");
            // Ops look and stop (list, get, disable, complete); nothing else.
            let watch = (*m == "get" && !path.ends_with("/events"))
                || path.ends_with("/disable")
                || path.ends_with("/complete");
            let roles = if watch {
                json!(["teacher", "admin", "ops"])
            } else {
                json!(["teacher", "admin"])
            };
            assert_eq!(op["security"], json!([{ "bearer": roles }]), "{m} {path}");
        }
    }
    let schema = &doc["components"]["schemas"]["LiveStreamResponse"]["properties"];
    for field in [
        "id",
        "title",
        "status",
        "stream_key",
        "rtmp_url",
        "whip_url",
        "hls_url",
        "record",
        "reconnect_window_s",
        "active_session",
    ] {
        assert!(schema[field].is_object(), "{field} not documented");
    }
}

/// Without `http.public_url`, the URLs a response holds follow the origin the client used, so a
/// server on any port or address (a school's LAN address, `localhost`) hands out URLs that
/// reach it; forwarded headers count only from a trusted proxy. (Every other test runs this
/// way too and follows the URLs it gets: HLS, replay, MP4, poster, cover, presigned objects.)
#[tokio::test]
async fn urls_follow_the_origin_the_client_used_when_no_public_url_is_set() {
    let live = crate::live_rtmp::Live::on(spawn_app().await, 0, "public").await;
    let port = live.app.addr.port();
    let path = format!("/api/v1/live-streams/{}", live.id());
    let get = |headers: Vec<(&'static str, String)>| {
        let mut r = live
            .app
            .client
            .get(live.app.url(&path))
            .bearer_auth(&live.token);
        for (k, v) in headers {
            r = r.header(k, v);
        }
        async move { r.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let direct = get(vec![]).await;
    let base = format!("http://127.0.0.1:{port}/");
    for key in ["hls_url", "whip_url"] {
        assert!(direct[key].as_str().unwrap().starts_with(&base), "{direct}");
    }
    assert!(
        direct["rtmp_url"]
            .as_str()
            .unwrap()
            .starts_with("rtmp://127.0.0.1:"),
        "{direct}"
    );
    let by_name = get(vec![
        ("host", format!("localhost:{port}")),
        // The peer is no trusted proxy: not believed.
        ("x-forwarded-host", "evil.example".to_string()),
        ("x-forwarded-proto", "https".to_string()),
    ])
    .await;
    let hls = by_name["hls_url"].as_str().unwrap();
    assert!(
        hls.starts_with(&format!("http://localhost:{port}/hls/live/")),
        "{by_name}"
    );
    assert!(
        by_name["rtmp_url"]
            .as_str()
            .unwrap()
            .starts_with("rtmp://localhost:"),
        "{by_name}"
    );

    // Behind a trusted proxy, its X-Forwarded-Host and -Proto are the origin.
    let proxied =
        spawn_app_with(|s| s.http.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()]).await;
    let proxied = crate::live_rtmp::Live::on(proxied, 0, "public").await;
    let r: Value = proxied
        .app
        .client
        .get(
            proxied
                .app
                .url(&format!("/api/v1/live-streams/{}", proxied.id())),
        )
        .bearer_auth(&proxied.token)
        .header("x-forwarded-host", "lessons.school.example")
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        r["hls_url"]
            .as_str()
            .unwrap()
            .starts_with("https://lessons.school.example/hls/live/"),
        "{r}"
    );
}
