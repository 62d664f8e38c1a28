//! System notifications against the real server, PostgreSQL, Redis and the SMTP test server:
//! a notice in the user's channel when connected, a mail otherwise, per the user's choices,
//! and never twice for one event.

use std::time::Duration;

use redis::AsyncCommands;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use crate::{
    chat::{Class, Client},
    helpers::{TestApp, assert_problem, wait_for_mail},
};

async fn email_of(app: &TestApp, token: &str) -> String {
    let me: Value = app
        .get_auth("/api/v1/me", token)
        .await
        .json()
        .await
        .unwrap();
    me["email"].as_str().unwrap().to_string()
}

/// Mails to `to` whose headers or text contain `needle`.
fn with(mails: &[String], needle: &str) -> usize {
    mails
        .iter()
        .filter(|m| m.replace("=\r\n", "").replace("=\n", "").contains(needle))
        .count()
}

/// All mails to `to` after a quiet moment (for "no more mail" checks).
async fn settled_mail(to: &str, at_least: usize) -> Vec<String> {
    let _ = wait_for_mail(to, at_least).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    wait_for_mail(to, at_least).await
}

/// The next notice on the connection's own channel.
async fn next_notice(c: &mut Client) -> Value {
    loop {
        let f = c.next_of("message").await;
        if f["channel"]
            .as_str()
            .is_some_and(|ch| ch.starts_with("user:"))
            && f["message"]["kind"] == "notice"
        {
            return f["message"].clone();
        }
    }
}

async fn put_prefs(app: &TestApp, token: &str, items: Value) -> reqwest::Response {
    app.send(
        Method::PUT,
        "/api/v1/me/notification-preferences",
        Some(token),
        Some(&json!({ "items": items })),
    )
    .await
}

#[tokio::test]
async fn preferences_default_to_everything_and_security_cannot_be_turned_off() {
    let class = Class::new(|_| {}).await;
    let (app, token) = (&class.app, &class.student.1);
    let r = app
        .get_auth("/api/v1/me/notification-preferences", token)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let prefs: Value = r.json().await.unwrap();
    let items = prefs["items"].as_array().unwrap();
    assert_eq!(items.len(), 5);
    assert!(
        items
            .iter()
            .all(|p| p["in_app"] == true && p["email"] == true)
    );

    let r = put_prefs(
        app,
        token,
        json!([{"kind": "live_now", "in_app": true, "email": false},
               {"kind": "security", "in_app": false, "email": true}]),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let prefs: Value = r.json().await.unwrap();
    let live = prefs["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["kind"] == "live_now")
        .unwrap();
    assert_eq!(live["email"], false);

    assert_problem(
        put_prefs(
            app,
            token,
            json!([{"kind": "security", "in_app": false, "email": false}]),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    let r = put_prefs(
        app,
        token,
        json!([{"kind": "weather", "in_app": false, "email": false}]),
    )
    .await;
    assert!(r.status().is_client_error());
    assert_eq!(
        app.get("/api/v1/me/notification-preferences")
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_paid_order_is_mailed_to_an_offline_buyer_and_shown_to_a_connected_one() {
    let class = Class::new(|_| {}).await;
    let (app, token) = (&class.app, &class.student.1);
    let email = email_of(app, token).await;
    let topup = |amount: i64| json!({"kind": "wallet_topup", "amount": {"amount": amount, "currency": "CNY"}, "provider": "sandbox"});

    // Offline: a mail.
    let r = app
        .send(
            Method::POST,
            "/api/v1/orders",
            Some(token),
            Some(&topup(1234)),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let mails = settled_mail(&email, 1).await;
    assert_eq!(with(&mails, "Subject: Payment confirmed"), 1);
    assert_eq!(with(&mails, "12.34 CNY"), 1);

    // Connected: a notice, and no mail.
    let mut c = Client::connect(app.addr, token).await;
    let r = app
        .send(
            Method::POST,
            "/api/v1/orders",
            Some(token),
            Some(&topup(500)),
        )
        .await;
    let order: Value = r.json().await.unwrap();
    let notice = next_notice(&mut c).await;
    assert_eq!(notice["sender_id"], Value::Null);
    assert_eq!(notice["data"]["kind"], "payment_confirmed");
    assert_eq!(notice["data"]["order_id"], order["id"]);
    assert!(
        notice["html"]
            .as_str()
            .unwrap()
            .contains("<strong>Payment confirmed</strong>")
    );
    let mails = settled_mail(&email, 1).await;
    assert_eq!(with(&mails, "Subject: Payment confirmed"), 1);
}

#[tokio::test]
async fn security_alerts_follow_the_users_choice_and_wait_in_the_channel() {
    let class = Class::new(|_| {}).await;
    let (app, token) = (&class.app, &class.student.1);
    let email = email_of(app, token).await;
    let new_token = |name: &str| json!({"name": name, "scopes": ["student"]});

    // Offline, defaults: a mail (and the notice waits in the channel).
    let r = app
        .send(
            Method::POST,
            "/api/v1/me/api-tokens",
            Some(token),
            Some(&new_token("ci")),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let mails = settled_mail(&email, 1).await;
    assert_eq!(with(&mails, "a new API token was created"), 1);

    // Email off: the next alert is only in the channel.
    let r = put_prefs(
        app,
        token,
        json!([{"kind": "security", "in_app": true, "email": false}]),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    app.send(
        Method::POST,
        "/api/v1/me/api-tokens",
        Some(token),
        Some(&new_token("ci-2")),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mails = settled_mail(&email, 1).await;
    assert_eq!(with(&mails, "a new API token was created"), 1);

    // Both alerts wait in the user's channel, for the next connection or the history.
    let me = format!("user:{}", class.student.0);
    let page: Value = app
        .get_auth(&format!("/api/v1/chat/channels/{me}/messages"), token)
        .await
        .json()
        .await
        .unwrap();
    let items = page["items"].as_array().expect("a history page");
    assert_eq!(items.len(), 2, "{page}");
    for n in items {
        assert_eq!(n["kind"], "notice");
        assert_eq!(n["data"]["kind"], "security");
        assert_eq!(n["data"]["event"], "api_token_created");
    }
}

#[tokio::test]
async fn lessons_starting_soon_are_announced_once_to_students_and_teachers() {
    let class = Class::new(|s| s.notifications.scan_interval_s = 1).await;
    let app = &class.app;
    let student_email = email_of(app, &class.student.1).await;
    let mut teacher = Client::connect(app.addr, &class.teacher.1).await;
    let starts = time::OffsetDateTime::now_utc() + time::Duration::minutes(10);
    let r = app
        .send(
            Method::POST,
            &format!("/api/v1/courses/{}/lessons", class.course),
            Some(&class.teacher.1),
            Some(&json!({"title": "Soon", "kind": "broadcast",
                         "starts_at": starts.format(&time::format_description::well_known::Rfc3339).unwrap(),
                         "duration_minutes": 30})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let lesson: Value = r.json().await.unwrap();

    // The connected teacher: a notice; the offline student: a mail.
    let n = next_notice(&mut teacher).await;
    assert_eq!(n["data"]["kind"], "lesson_starting");
    assert_eq!(n["data"]["lesson_id"], lesson["id"]);
    assert!(n["body"].as_str().unwrap().contains("Starting soon: Soon"));
    let mails = settled_mail(&student_email, 1).await;
    assert_eq!(with(&mails, "Subject: Starting soon: Soon"), 1);
    // The job ran again since: nobody hears of it twice (the far-off lesson not at all).
    teacher.silent("message", Duration::from_millis(2500)).await;
    let mails = settled_mail(&student_email, 1).await;
    assert_eq!(with(&mails, "Starting soon"), 1);
}

#[tokio::test]
async fn a_lesson_going_live_notifies_its_students_once_per_live_session() {
    let class = Class::new(|_| {}).await;
    let app = &class.app;
    let mut student = Client::connect(app.addr, &class.student.1).await;
    let mut stranger = Client::connect(app.addr, &class.stranger.1).await;
    let mut db = PgConnection::connect(&app.database_url).await.unwrap();
    let stream: Uuid = sqlx::query_scalar("SELECT live_stream_id FROM lessons WHERE id = $1")
        .bind(Uuid::parse_str(&class.lesson).unwrap())
        .fetch_one(&mut db)
        .await
        .unwrap();
    // The event as the live runtime publishes it; delivered twice (two nodes, a retry).
    let event = json!({"id": Uuid::now_v7(), "live_stream_id": stream, "kind": "live_stream.active",
                       "payload": {}, "created_at": "2026-11-26T10:00:00Z"});
    let mut redis = crate::helpers::test_redis().await.conn();
    for _ in 0..2 {
        let _: i64 = redis
            .publish(wemaster::live::events::CHANNEL, event.to_string())
            .await
            .unwrap();
    }
    let n = next_notice(&mut student).await;
    assert_eq!(n["data"]["kind"], "live_now");
    assert_eq!(n["data"]["lesson_id"], json!(class.lesson));
    assert!(n["body"].as_str().unwrap().contains("Live now: Live one"));
    student.silent("message", Duration::from_millis(1500)).await;
    stranger.silent("message", Duration::from_millis(100)).await;
}

#[tokio::test]
async fn a_lesson_that_went_live_while_no_node_listened_is_still_announced_once() {
    let class = Class::new(|s| s.notifications.scan_interval_s = 1).await;
    let app = &class.app;
    let mut student = Client::connect(app.addr, &class.student.1).await;
    let mut db = PgConnection::connect(&app.database_url).await.unwrap();
    let stream: Uuid = sqlx::query_scalar("SELECT live_stream_id FROM lessons WHERE id = $1")
        .bind(Uuid::parse_str(&class.lesson).unwrap())
        .fetch_one(&mut db)
        .await
        .unwrap();
    // Recorded by the live runtime, but its Redis message reached nobody.
    sqlx::query(
        "INSERT INTO live_stream_events (id, live_stream_id, kind, created_at)
         VALUES ($1, $2, 'live_stream.active', now() - interval '15 seconds')",
    )
    .bind(Uuid::now_v7())
    .bind(stream)
    .execute(&mut db)
    .await
    .unwrap();
    let n = next_notice(&mut student).await;
    assert_eq!(n["data"]["kind"], "live_now");
    assert_eq!(n["data"]["lesson_id"], json!(class.lesson));
    // The scan runs every second: nobody hears of it twice.
    student.silent("message", Duration::from_millis(2500)).await;
}

#[tokio::test]
async fn a_ready_replay_is_mailed_to_offline_students_once() {
    let class = Class::new(|_| {}).await;
    let app = &class.app;
    let email = email_of(app, &class.student.1).await;
    let mut db = PgConnection::connect(&app.database_url).await.unwrap();
    let stream: Uuid = sqlx::query_scalar("SELECT live_stream_id FROM lessons WHERE id = $1")
        .bind(Uuid::parse_str(&class.lesson).unwrap())
        .fetch_one(&mut db)
        .await
        .unwrap();
    let recording = Uuid::now_v7();
    let mut redis = crate::helpers::test_redis().await.conn();
    // As the recorder publishes it, twice (a retried publication).
    for _ in 0..2 {
        let event = json!({"id": Uuid::now_v7(), "recording_id": recording,
                           "live_stream_id": stream, "kind": "recording.ready", "payload": {}});
        let _: i64 = redis
            .publish(
                wemaster::recordings::store::EVENTS_CHANNEL,
                event.to_string(),
            )
            .await
            .unwrap();
    }
    let mails = settled_mail(&email, 1).await;
    assert_eq!(with(&mails, "Subject: Replay ready: Live one"), 1);
}
