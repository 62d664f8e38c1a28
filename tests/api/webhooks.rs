//! Outgoing webhooks (docs/webhooks.md) against a real receiver (an HTTP server in the test)
//! whose signatures are checked with the Standard Webhooks project's own Rust verifier
//! (`standardwebhooks` from crates.io, not our code): events of a lesson and of a purchase
//! and refund reach exactly the endpoints subscribed to them; a failing receiver is retried
//! with the same `webhook-id` until it answers 2xx; one that never does is given up and
//! replayed; a rotated secret signs beside the old one; two nodes deliver each event once.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{body::Bytes, extract::State, http::HeaderMap, routing};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::Connection;
use wemaster::users::Role;

use crate::{
    helpers::{TestApp, assert_problem, spawn_app_with, unique_email},
    live_rtmp::{Live, ffmpeg_publish, wait_child},
    payments::{fund, pool, post, wait_order},
};

const PW: &str = "a fine passphrase";

#[derive(Clone, Debug)]
struct Received {
    headers: HeaderMap,
    body: Bytes,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
    fn id(&self) -> String {
        self.headers["webhook-id"].to_str().unwrap().to_owned()
    }
    /// Checked by the reference verifier with `secret`.
    fn verifies_with(&self, secret: &str) -> bool {
        standardwebhooks::Webhook::new(secret)
            .unwrap()
            .verify(&self.body, &self.headers)
            .is_ok()
    }
}

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    /// Statuses to answer with, in order; 200 once they run out.
    plan: Arc<Mutex<VecDeque<u16>>>,
}

impl Receiver {
    /// Listen on a free loopback port; the URL to subscribe.
    async fn start() -> (Receiver, String) {
        let receiver = Receiver::default();
        async fn take(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
            r.got.lock().unwrap().push(Received { headers, body });
            let status = r.plan.lock().unwrap().pop_front().unwrap_or(200);
            StatusCode::from_u16(status).unwrap()
        }
        let app = axum::Router::new()
            .route("/hook", routing::post(take))
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, url)
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    fn types(&self) -> Vec<String> {
        self.got()
            .iter()
            .map(|r| r.json()["type"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Wait until a request of `ty` came; returns it.
    async fn wait_for(&self, ty: &str, timeout: Duration) -> Received {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(r) = self.got().into_iter().find(|r| r.json()["type"] == ty) {
                return r;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {ty} within {timeout:?}; got {:?}",
                self.types()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Fast polling and retries: tries 1 s apart, given up after `give_up_s`.
fn quick(s: &mut wemaster::config::Settings, give_up_s: u64) {
    s.webhooks.poll_interval_ms = 100;
    s.webhooks.retry_delays_s = vec![1];
    s.webhooks.give_up_after_s = give_up_s;
    s.webhooks.timeout_s = 5;
    // The test's receivers listen on loopback: an internal address, allowed here.
    s.webhooks.allow_internal_networks = vec!["127.0.0.0/8".parse().unwrap()];
}

async fn subscribe(app: &TestApp, admin: &str, url: &str, events: &[&str]) -> Value {
    let r = app
        .send(
            Method::POST,
            "/api/v1/admin/webhooks",
            Some(admin),
            Some(&json!({"url": url, "events": events, "description": "LMS"})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    r.json().await.unwrap()
}

async fn admin(app: &TestApp) -> String {
    app.user_with(&unique_email("hooks-admin"), PW, &[Role::Admin])
        .await
        .1
}

async fn delivery_of(app: &TestApp, admin: &str, endpoint: &Value, status: &str) -> Vec<Value> {
    let r = app
        .get_auth(
            &format!(
                "/api/v1/admin/webhooks/{}/deliveries?status={status}",
                endpoint["id"].as_str().unwrap()
            ),
            admin,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let page: Value = r.json().await.unwrap();
    page["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_purchase_and_its_refund_reach_the_endpoints_subscribed_to_them_signed() {
    let app = spawn_app_with(|s| quick(s, 60)).await;
    let admin = admin(&app).await;
    let (everything, all_url) = Receiver::start().await;
    let (payments_only, pay_url) = Receiver::start().await;
    let a = subscribe(
        &app,
        &admin,
        &all_url,
        &[
            "enrollment.created",
            "payment.confirmed",
            "payment.refunded",
            "stream.started",
        ],
    )
    .await;
    let b = subscribe(&app, &admin, &pay_url, &["payment.confirmed"]).await;
    let secret_a = a["secret"].as_str().unwrap().to_owned();
    assert!(secret_a.starts_with("whsec_"), "{a}");
    assert_ne!(a["secret"], b["secret"]);
    // The secret is shown once: the endpoint's own page has a hint only.
    let shown: Value = app
        .get_auth(
            &format!("/api/v1/admin/webhooks/{}", a["id"].as_str().unwrap()),
            &admin,
        )
        .await
        .json()
        .await
        .unwrap();
    assert!(shown.get("secret").is_none(), "{shown}");
    assert!(secret_a.starts_with(shown["secret_hint"].as_str().unwrap().trim_end_matches('…')));

    // A teacher's course bought from the wallet, then refunded in full by an admin.
    let (_, teacher) = app
        .user_with(&unique_email("hooks-teacher"), PW, &[Role::Teacher])
        .await;
    let course: Value = post(&app, "/api/v1/courses", &teacher, None,
        &json!({"title": "Hooked", "price": {"amount": 5000, "currency": "CNY"}, "visibility": "published"}))
        .await.json().await.unwrap();
    let (student_id, student) = app
        .user_with(&unique_email("hooks-student"), PW, &[Role::Student])
        .await;
    fund(&pool(&app).await, student_id, 5000).await;
    let order: Value = post(
        &app,
        "/api/v1/orders",
        &student,
        None,
        &json!({"kind": "course", "course_id": course["id"], "provider": "wallet",
                "amount": {"amount": 5000, "currency": "CNY"}}),
    )
    .await
    .json()
    .await
    .unwrap();
    let order_id = order["id"].as_str().unwrap().to_owned();
    wait_order(&app, &student, &order_id, "paid").await;

    let paid = everything
        .wait_for("payment.confirmed", Duration::from_secs(10))
        .await;
    let enrolled = everything
        .wait_for("enrollment.created", Duration::from_secs(10))
        .await;
    let paid_b = payments_only
        .wait_for("payment.confirmed", Duration::from_secs(10))
        .await;
    // Signed per the specification: the reference verifier accepts each with its endpoint's
    // secret, and refuses it with the other endpoint's.
    assert!(paid.verifies_with(&secret_a));
    assert!(enrolled.verifies_with(&secret_a));
    assert!(paid_b.verifies_with(b["secret"].as_str().unwrap()));
    assert!(!paid_b.verifies_with(&secret_a));
    // One event, one id: the same `webhook-id` at both endpoints, and it is the body's id.
    assert_eq!(paid.id(), paid_b.id());
    let body = paid.json();
    assert_eq!(body["id"], paid.id().as_str());
    assert_eq!(body["data"]["order_id"], order_id.as_str());
    assert_eq!(body["data"]["course_id"], course["id"]);
    assert_eq!(body["data"]["user_id"], student_id.to_string());
    assert_eq!(
        body["data"]["amount"],
        json!({"amount": 5000, "currency": "CNY"})
    );
    assert_eq!(body["data"]["provider"], "wallet");
    assert!(body["timestamp"].as_str().unwrap().ends_with('Z'), "{body}");
    let e = enrolled.json();
    assert_eq!(e["data"]["course_id"], course["id"]);
    assert_eq!(e["data"]["source"], "order");
    assert_eq!(e["data"]["order_id"], order_id.as_str());

    let r = post(
        &app,
        "/api/v1/refunds",
        &admin,
        None,
        &json!({"order_id": order_id, "reason": "changed their mind"}),
    )
    .await;
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    wait_order(&app, &student, &order_id, "refunded").await;
    let refunded = everything
        .wait_for("payment.refunded", Duration::from_secs(10))
        .await;
    assert!(refunded.verifies_with(&secret_a));
    let rb = refunded.json();
    assert_eq!(rb["data"]["order_id"], order_id.as_str());
    assert_eq!(rb["data"]["amount"]["amount"], 5000);
    assert_eq!(rb["data"]["order_status"], "refunded");

    // Nothing else: the payments-only endpoint got one event; the other, three (no stream
    // started), each once.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(payments_only.types(), ["payment.confirmed"]);
    let mut types = everything.types();
    types.sort();
    assert_eq!(
        types,
        [
            "enrollment.created",
            "payment.confirmed",
            "payment.refunded"
        ]
    );
    assert_eq!(delivery_of(&app, &admin, &a, "delivered").await.len(), 3);
    assert!(delivery_of(&app, &admin, &a, "pending").await.is_empty());
}

#[tokio::test]
async fn a_lesson_going_live_ending_and_its_recording_are_announced() {
    let app = spawn_app_with(|s| quick(s, 60)).await;
    let admin = admin(&app).await;
    let (receiver, url) = Receiver::start().await;
    let endpoint = subscribe(
        &app,
        &admin,
        &url,
        &["stream.started", "stream.ended", "recording.ready"],
    )
    .await;
    let secret = endpoint["secret"].as_str().unwrap().to_owned();
    let live = Live::on(app, 1, "public").await;
    let status = wait_child(
        ffmpeg_publish(&live.rtmp_url(), 4, false),
        Duration::from_secs(60),
    )
    .await;
    assert!(status.success());

    let started = receiver
        .wait_for("stream.started", Duration::from_secs(20))
        .await;
    let ended = receiver
        .wait_for("stream.ended", Duration::from_secs(20))
        .await;
    let ready = receiver
        .wait_for("recording.ready", Duration::from_secs(60))
        .await;
    for r in [&started, &ended, &ready] {
        assert!(r.verifies_with(&secret), "{:?}", r.json());
    }
    let (s, e, rd) = (started.json(), ended.json(), ready.json());
    assert_eq!(s["data"]["live_stream_id"], live.id());
    assert_eq!(s["data"]["title"], live.stream["title"]);
    assert_eq!(e["data"]["session_id"], s["data"]["session_id"]);
    assert!(e["data"]["duration_s"].as_f64().unwrap() > 0.0, "{e}");
    assert_eq!(e["data"]["reason"], "reconnect window passed");
    assert_eq!(rd["data"]["live_stream_id"], live.id());
    assert_eq!(rd["data"]["session_id"], s["data"]["session_id"]);
    let d = rd["data"]["duration_s"].as_f64().unwrap();
    assert!((d - 4.0).abs() < 1.0, "{rd}");
    assert!(rd["data"]["size_bytes"].as_i64().unwrap() > 0, "{rd}");
    // In the order they happened.
    assert_eq!(
        receiver.types(),
        ["stream.started", "stream.ended", "recording.ready"]
    );
}

#[tokio::test]
async fn a_failing_receiver_is_retried_with_the_same_id_then_given_up_and_replayed() {
    let app = spawn_app_with(|s| quick(s, 4)).await;
    let admin = admin(&app).await;
    let (receiver, url) = Receiver::start().await;
    let endpoint = subscribe(&app, &admin, &url, &["payment.confirmed"]).await;
    let id = endpoint["id"].as_str().unwrap().to_owned();

    // 500, then a redirect (not followed), then 204: three tries of one event.
    receiver.plan.lock().unwrap().extend([500, 302]);
    let delivery = test_ping(&app, &admin, &id).await;
    let detail = wait_delivery(&app, &admin, &delivery, "delivered").await;
    let got = receiver.got();
    assert_eq!(got.len(), 3);
    assert!(
        got.iter().all(|r| r.id() == got[0].id()),
        "one webhook-id on every try"
    );
    assert_eq!(got[0].json()["type"], "webhook.test");
    let tries: Vec<Value> = detail["tries"].as_array().unwrap().clone();
    let statuses: Vec<i64> = tries
        .iter()
        .map(|t| t["status"].as_i64().unwrap())
        .collect();
    assert_eq!(statuses, [500, 302, 200]);
    assert!(
        tries[1]["error"]
            .as_str()
            .unwrap()
            .contains("redirects are not followed")
    );
    assert_eq!(detail["attempts"], 3);
    // Retries are spaced by the configured wait (1 s), not sent back to back.
    let at = |i: usize| {
        time::OffsetDateTime::parse(
            tries[i]["at"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    };
    assert!(at(1) - at(0) >= time::Duration::milliseconds(900));

    // A receiver that never answers 2xx: given up after the 4 s window, then replayed by hand.
    receiver.plan.lock().unwrap().extend([503; 20]);
    let before = receiver.got().len();
    let failing = test_ping(&app, &admin, &id).await;
    let failed = wait_delivery(&app, &admin, &failing, "failed").await;
    let tries = failed["tries"].as_array().unwrap().len();
    assert!((3..=6).contains(&tries), "{failed}");
    assert_eq!(failed["last_status"], 503);
    assert_eq!(
        delivery_of(&app, &admin, &endpoint, "failed").await.len(),
        1
    );
    let listed: Value = app
        .get_auth(&format!("/api/v1/admin/webhooks/{id}"), &admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["failed"], 1);
    // Nothing more is sent once given up.
    let sent = receiver.got().len();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.got().len(), sent);
    assert_eq!(sent - before, tries);

    receiver.plan.lock().unwrap().clear();
    let r = app
        .send(
            Method::POST,
            &format!("/api/v1/admin/webhooks/deliveries/{failing}/replay"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    wait_delivery(&app, &admin, &failing, "delivered").await;
    let last = receiver.got().last().unwrap().clone();
    assert_eq!(
        last.id(),
        failed["event_id"].as_str().unwrap(),
        "a replay keeps the id"
    );
}

#[tokio::test]
async fn a_rotated_secret_signs_beside_the_old_one_and_a_disabled_endpoint_gets_nothing() {
    let app = spawn_app_with(|s| quick(s, 60)).await;
    let admin = admin(&app).await;
    let (receiver, url) = Receiver::start().await;
    let endpoint = subscribe(&app, &admin, &url, &["payment.confirmed"]).await;
    let id = endpoint["id"].as_str().unwrap().to_owned();
    let old = endpoint["secret"].as_str().unwrap().to_owned();
    let r = app
        .send(
            Method::POST,
            &format!("/api/v1/admin/webhooks/{id}/secret"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let new = r.json::<Value>().await.unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(new, old);
    test_ping(&app, &admin, &id).await;
    let ping = receiver
        .wait_for("webhook.test", Duration::from_secs(10))
        .await;
    assert!(ping.verifies_with(&new), "the new secret signs");
    assert!(
        ping.verifies_with(&old),
        "the old one still does, for a while"
    );
    assert!(!ping.verifies_with(&wemaster::webhooks::new_secret()));

    // Disabled: an event waits; enabled again, it goes out.
    let r = app
        .send(
            Method::PATCH,
            &format!("/api/v1/admin/webhooks/{id}"),
            Some(&admin),
            Some(&json!({"enabled": false})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    test_ping(&app, &admin, &id).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(receiver.got().len(), 1);
    assert_eq!(
        delivery_of(&app, &admin, &endpoint, "pending").await.len(),
        1
    );
    app.send(
        Method::PATCH,
        &format!("/api/v1/admin/webhooks/{id}"),
        Some(&admin),
        Some(&json!({"enabled": true})),
    )
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while receiver.got().len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the waiting event never went out"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Bad input is refused naming the field; deleting ends it.
    for (body, field) in [
        (
            json!({"url": "ftp://x.example/", "events": ["payment.confirmed"]}),
            "url",
        ),
        (
            json!({"url": "https://u:p@x.example/", "events": ["payment.confirmed"]}),
            "url",
        ),
        (json!({"url": "https://x.example/", "events": []}), "events"),
    ] {
        let r = app
            .send(
                Method::POST,
                "/api/v1/admin/webhooks",
                Some(&admin),
                Some(&body),
            )
            .await;
        let p = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(p["field"], field, "{p}");
    }
    let r = app
        .send(
            Method::POST,
            "/api/v1/admin/webhooks",
            Some(&admin),
            Some(&json!({"url": "https://x.example/", "events": ["lesson.exploded"]})),
        )
        .await;
    assert_eq!(
        r.status().as_u16() / 100,
        4,
        "an unknown event type is refused"
    );
    let r = app
        .send(
            Method::DELETE,
            &format!("/api/v1/admin/webhooks/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = app
        .get_auth(&format!("/api/v1/admin/webhooks/{id}"), &admin)
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // Every change is in the audit log.
    let log: Value = app
        .get_auth(
            "/api/v1/admin/audit-log?action=webhook.secret_rotated",
            &admin,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(log["items"].as_array().map(Vec::len), Some(1), "{log}");
}

#[tokio::test]
async fn two_nodes_deliver_each_event_once() {
    let a = spawn_app_with(|s| quick(s, 60)).await;
    let url = a.database_url.clone();
    let keys = a.settings.auth.keys_dir.clone();
    let b = spawn_app_with(move |s| {
        quick(s, 60);
        s.database.url = wemaster::config::Secret::new(url);
        s.auth.keys_dir = keys;
    })
    .await;
    let admin = admin(&a).await;
    let (receiver, hook) = Receiver::start().await;
    let endpoint = subscribe(&a, &admin, &hook, &["payment.confirmed"]).await;
    let id = endpoint["id"].as_str().unwrap().to_owned();
    // 40 pings queued at once, with both nodes polling every 100 ms.
    for _ in 0..20 {
        test_ping(&a, &admin, &id).await;
        test_ping(&b, &admin, &id).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while receiver.got().len() < 40 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of 40",
            receiver.got().len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let mut ids: Vec<String> = receiver.got().iter().map(Received::id).collect();
    assert_eq!(ids.len(), 40, "no delivery sent twice");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 40);
    drop(b);
}

#[tokio::test]
async fn old_events_are_pruned_once_nothing_is_pending() {
    let app = spawn_app_with(|s| quick(s, 60)).await;
    let admin = admin(&app).await;
    let endpoint = subscribe(
        &app,
        &admin,
        "http://127.0.0.1:9/never",
        &["payment.confirmed"],
    )
    .await;
    let id = endpoint["id"].as_str().unwrap().to_owned();
    // Three events: delivered 40 days ago, still pending after 40 days, delivered yesterday.
    let mut conn = sqlx::PgConnection::connect(&app.database_url)
        .await
        .unwrap();
    let mut events = Vec::new();
    for (age_days, status) in [(40, "delivered"), (40, "pending"), (1, "delivered")] {
        let ev = uuid::Uuid::now_v7();
        sqlx::query(
            "INSERT INTO webhook_events (id, type, data, created_at)
             VALUES ($1, 'payment.confirmed', '{}', now() - make_interval(days => $2))",
        )
        .bind(ev)
        .bind(age_days)
        .execute(&mut conn)
        .await
        .unwrap();
        // Pending ones wait far in the future, out of the sender's way.
        sqlx::query(
            "INSERT INTO webhook_deliveries (id, event_id, endpoint_id, status, next_attempt_at)
             VALUES ($1, $2, $3, $4, now() + interval '1 day')",
        )
        .bind(uuid::Uuid::now_v7())
        .bind(ev)
        .bind(id.parse::<uuid::Uuid>().unwrap())
        .bind(status)
        .execute(&mut conn)
        .await
        .unwrap();
        events.push(ev);
    }
    let pruned = wemaster::webhooks::store::prune(&mut conn, 30)
        .await
        .unwrap();
    assert_eq!(pruned, 1);
    let left: Vec<(uuid::Uuid,)> = sqlx::query_as("SELECT id FROM webhook_events ORDER BY id")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(left, [(events[1],), (events[2],)]);
    let deliveries: (i64,) = sqlx::query_as("SELECT count(*) FROM webhook_deliveries")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(deliveries.0, 2, "the pruned event's delivery went with it");
}

async fn test_ping(app: &TestApp, admin: &str, endpoint: &str) -> String {
    let r = app
        .send(
            Method::POST,
            &format!("/api/v1/admin/webhooks/{endpoint}/test"),
            Some(admin),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    r.json::<Value>().await.unwrap()["delivery_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn wait_delivery(app: &TestApp, admin: &str, id: &str, status: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let d: Value = app
            .get_auth(&format!("/api/v1/admin/webhooks/deliveries/{id}"), admin)
            .await
            .json()
            .await
            .unwrap();
        if d["status"] == status {
            return d;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never {status}: {d}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The server must not be a way into the network it sits in: an endpoint naming an internal
/// address (loopback, the cloud's metadata service) is refused when saved, and one whose name
/// resolves to one gets no request — its tries say why — until ops allow that network.
#[tokio::test]
async fn internal_addresses_get_no_webhooks_unless_their_network_is_allowed() {
    let app = spawn_app_with(|s| {
        quick(s, 60);
        s.webhooks.allow_internal_networks = vec![];
    })
    .await;
    let admin = admin(&app).await;
    let (receiver, url) = Receiver::start().await;
    for refused in [
        url.as_str(),
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://[::1]/hook",
        "http://10.0.0.7/hook",
    ] {
        let r = app
            .send(
                Method::POST,
                "/api/v1/admin/webhooks",
                Some(&admin),
                Some(&json!({"url": refused, "events": ["payment.confirmed"]})),
            )
            .await;
        assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    }
    // A host name is resolved at each delivery: "localhost" is loopback, so no request.
    let by_name = url.replace("127.0.0.1", "localhost");
    let endpoint = subscribe(&app, &admin, &by_name, &["payment.confirmed"]).await;
    let id = endpoint["id"].as_str().unwrap();
    let ping = test_ping(&app, &admin, id).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let tries = loop {
        let d: Value = app
            .get_auth(&format!("/api/v1/admin/webhooks/deliveries/{ping}"), &admin)
            .await
            .json()
            .await
            .unwrap();
        if let Some(t) = d["tries"].as_array().filter(|a| !a.is_empty()) {
            break t.clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "never tried: {d}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let error = tries[0]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("internal addresses") && error.contains("allow_internal_networks"),
        "{tries:?}"
    );
    assert!(receiver.got().is_empty(), "the receiver got a request");
    drop(app);

    // Allowed: the same name is delivered to.
    let app = spawn_app_with(|s| quick(s, 60)).await;
    let admin = crate::webhooks::admin(&app).await;
    let endpoint = subscribe(&app, &admin, &by_name, &["payment.confirmed"]).await;
    let ping = test_ping(&app, &admin, endpoint["id"].as_str().unwrap()).await;
    wait_delivery(&app, &admin, &ping, "delivered").await;
    receiver
        .wait_for("webhook.test", Duration::from_secs(10))
        .await;
}
