//! Chat over WebSocket against the real server, PostgreSQL and Redis: a course with a lesson,
//! its teacher, an enrolled student and a stranger, talking through `GET /api/v1/ws`.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use redis::AsyncCommands;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use wemaster::users::Role;
use yawc::{Frame, OpCode, Options, close::CloseCode};

use crate::helpers::{TestApp, assert_problem, spawn_app_with, unique_email};

const PW: &str = "a fine passphrase";

/// A chat client: the WebSocket plus what it has seen, with typed waits.
pub(crate) struct Client {
    pub(crate) ws: yawc::TcpWebSocket,
    pub hello: Value,
}

impl Client {
    pub(crate) async fn connect(addr: std::net::SocketAddr, token: &str) -> Client {
        Self::connect_with(addr, token, Options::default()).await
    }

    pub(crate) async fn connect_with(
        addr: std::net::SocketAddr,
        token: &str,
        options: Options,
    ) -> Client {
        let url = format!("ws://{addr}/api/v1/ws?v=1").parse().unwrap();
        let ws = yawc::WebSocket::connect(url)
            .with_request(
                yawc::HttpRequestBuilder::new().header("Authorization", format!("Bearer {token}")),
            )
            .with_options(options)
            .await
            .expect("websocket connects");
        let mut c = Client {
            ws,
            hello: Value::Null,
        };
        c.hello = c.next().await;
        assert_eq!(c.hello["type"], "hello", "{}", c.hello);
        // Every connection starts subscribed to its own notification channel.
        let own = c.next_of("subscribed").await;
        assert!(own["channel"].as_str().unwrap().starts_with("user:"));
        c
    }

    pub(crate) async fn send(&mut self, v: Value) {
        self.ws.send(Frame::text(v.to_string())).await.unwrap();
    }

    /// The next JSON frame (10 s at most).
    pub(crate) async fn next(&mut self) -> Value {
        loop {
            let f = tokio::time::timeout(Duration::from_secs(10), self.ws.next())
                .await
                .expect("a frame within 10 s")
                .expect("connection open");
            match f.opcode() {
                OpCode::Text => return serde_json::from_slice(f.payload()).unwrap(),
                OpCode::Close => {
                    return json!({"type": "_closed", "code": u16::from(f.close_code().unwrap_or(CloseCode::Normal))});
                }
                _ => continue,
            }
        }
    }

    /// The next frame of type `ty`, skipping others (typing, presence, read...).
    pub(crate) async fn next_of(&mut self, ty: &str) -> Value {
        for _ in 0..200 {
            let v = self.next().await;
            if v["type"] == ty {
                return v;
            }
            assert_ne!(v["type"], "_closed", "closed while waiting for {ty}");
        }
        panic!("no {ty} frame");
    }

    /// Nothing of type `ty` arrives for `d`.
    pub(crate) async fn silent(&mut self, ty: &str, d: Duration) {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return;
            }
            match tokio::time::timeout(left, self.ws.next()).await {
                Err(_) => return,
                Ok(Some(f)) if f.opcode() == OpCode::Text => {
                    let v: Value = serde_json::from_slice(f.payload()).unwrap();
                    assert_ne!(v["type"], ty, "unexpected {v}");
                }
                Ok(_) => {}
            }
        }
    }

    pub(crate) async fn subscribe(&mut self, channel: &str, since: Option<i64>) -> Value {
        let mut f = json!({"type": "subscribe", "channel": channel});
        if let Some(s) = since {
            f["since_seq"] = json!(s);
        }
        self.send(f).await;
        self.next_of_any(&["subscribed", "error"]).await
    }

    pub(crate) async fn next_of_any(&mut self, types: &[&str]) -> Value {
        for _ in 0..200 {
            let v = self.next().await;
            if types.iter().any(|t| v["type"] == *t) {
                return v;
            }
        }
        panic!("none of {types:?}");
    }

    /// Send a message and wait for its ack (or error).
    pub(crate) async fn say(&mut self, channel: &str, client_id: &str, body: &str) -> Value {
        self.send(
            json!({"type": "send", "channel": channel, "client_id": client_id, "body": body}),
        )
        .await;
        loop {
            let v = self.next_of_any(&["ack", "error"]).await;
            if v["client_id"] == client_id || v["client_id"].is_null() {
                return v;
            }
        }
    }
}

/// A published free course with one lesson; its teacher, an enrolled student and a stranger.
pub(crate) struct Class {
    pub app: TestApp,
    pub teacher: (uuid::Uuid, String),
    pub student: (uuid::Uuid, String),
    pub stranger: (uuid::Uuid, String),
    pub course: String,
    pub lesson: String,
}

impl Class {
    pub(crate) async fn new(tweak: impl FnOnce(&mut wemaster::config::Settings)) -> Class {
        let app = spawn_app_with(tweak).await;
        let teacher = app
            .user_with(&unique_email("teacher"), PW, &[Role::Teacher])
            .await;
        let student = app
            .user_with(&unique_email("student"), PW, &[Role::Student])
            .await;
        let stranger = app
            .user_with(&unique_email("stranger"), PW, &[Role::Student])
            .await;
        let course = ok(
            app.send(
                Method::POST,
                "/api/v1/courses",
                Some(&teacher.1),
                Some(
                    &json!({"title": "Chatty course", "price": {"amount": 0, "currency": "CNY"},
                             "visibility": "published"}),
                ),
            )
            .await,
            StatusCode::CREATED,
        )
        .await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let lesson = ok(
            app.send(
                Method::POST,
                &format!("/api/v1/courses/{course}/lessons"),
                Some(&teacher.1),
                Some(&json!({"title": "Live one", "kind": "broadcast",
                             "starts_at": "2026-12-01T09:00:00Z", "duration_minutes": 45})),
            )
            .await,
            StatusCode::CREATED,
        )
        .await["id"]
            .as_str()
            .unwrap()
            .to_string();
        ok(
            app.send(
                Method::POST,
                &format!("/api/v1/courses/{course}/enrollments"),
                Some(&student.1),
                Some(&json!({})),
            )
            .await,
            StatusCode::CREATED,
        )
        .await;
        Class {
            app,
            teacher,
            student,
            stranger,
            course,
            lesson,
        }
    }

    fn room(&self) -> String {
        format!("lesson:{}", self.lesson)
    }
}

async fn ok(r: reqwest::Response, status: StatusCode) -> Value {
    let got = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    assert_eq!(got, status, "{body}");
    body
}

#[tokio::test]
async fn a_lesson_room_delivers_every_message_in_order_acks_the_sender_and_refuses_strangers() {
    let class = Class::new(|_| {}).await;
    let room = class.room();
    let mut teacher = Client::connect(class.app.addr, &class.teacher.1).await;
    let mut student = Client::connect(class.app.addr, &class.student.1).await;
    assert_eq!(student.hello["protocol"], 1);
    assert_eq!(student.hello["user_id"], class.student.0.to_string());

    let sub = teacher.subscribe(&room, None).await;
    assert_eq!(sub["type"], "subscribed", "{sub}");
    assert_eq!(sub["seq"], 0);
    assert_eq!(student.subscribe(&room, None).await["type"], "subscribed");

    for i in 1..=5 {
        let ack = student
            .say(&room, &format!("m{i}"), &format!("hello **{i}**"))
            .await;
        assert_eq!(ack["type"], "ack", "{ack}");
        assert_eq!(ack["channel"], room);
        assert_eq!(ack["message"]["seq"], i);
        assert_eq!(ack["message"]["sender_id"], class.student.0.to_string());
        assert_eq!(
            ack["message"]["html"],
            format!("<p>hello <strong>{i}</strong></p>")
        );
    }
    // The teacher sees the five, in order, once each.
    for i in 1..=5 {
        let m = teacher.next_of("message").await;
        assert_eq!(m["channel"], room);
        assert_eq!(m["message"]["seq"], i, "{m}");
        assert_eq!(m["message"]["body"], format!("hello **{i}**"));
    }
    teacher.silent("message", Duration::from_millis(500)).await;

    // A stranger can neither listen nor speak; nothing they try is stored.
    let mut stranger = Client::connect(class.app.addr, &class.stranger.1).await;
    let refused = stranger.subscribe(&room, None).await;
    assert_eq!(refused["type"], "error");
    assert_eq!(refused["code"], "forbidden");
    let refused = stranger.say(&room, "s1", "let me in").await;
    assert_eq!(refused["code"], "forbidden");
    assert_eq!(refused["client_id"], "s1");
    teacher.silent("message", Duration::from_millis(300)).await;

    // Bad frames get error frames and the connection stays usable.
    student.send(json!({"type": "dance"})).await;
    assert_eq!(student.next_of("error").await["code"], "unknown_type");
    student.ws.send(Frame::text("{not json")).await.unwrap();
    assert_eq!(student.next_of("error").await["code"], "bad_frame");
    let e = student.say(&room, "m6", "   ").await;
    assert_eq!(e["code"], "invalid");
    let e = student.say(&room, "m7", &"x".repeat(4001)).await;
    assert_eq!(e["code"], "invalid");
    assert_eq!(
        student.say(&room, "m8", "still here").await["message"]["seq"],
        6
    );
    student.send(json!({"type": "ping", "nonce": 7})).await;
    assert_eq!(student.next_of("pong").await["nonce"], 7);
}

#[tokio::test]
async fn a_retried_client_id_is_acknowledged_again_and_stored_once() {
    let class = Class::new(|_| {}).await;
    let room = class.room();
    let mut teacher = Client::connect(class.app.addr, &class.teacher.1).await;
    teacher.subscribe(&room, None).await;
    let mut student = Client::connect(class.app.addr, &class.student.1).await;

    // Sent twice back to back (a client retrying before its ack), then again after the ack and
    // from a new connection: one message, the same ack every time.
    for _ in 0..2 {
        student
            .send(json!({"type": "send", "channel": room, "client_id": "dup-1", "body": "once"}))
            .await;
    }
    let first = student.next_of("ack").await;
    let again = student.say(&room, "dup-1", "once").await;
    assert_eq!(again["message"]["id"], first["message"]["id"]);
    let mut other = Client::connect(class.app.addr, &class.student.1).await;
    let third = other.say(&room, "dup-1", "changed body, same id").await;
    assert_eq!(third["message"]["id"], first["message"]["id"]);
    assert_eq!(third["message"]["body"], "once");

    assert_eq!(teacher.next_of("message").await["message"]["seq"], 1);
    teacher.silent("message", Duration::from_millis(500)).await;
    let page = ok(
        class
            .app
            .get_auth(
                &format!("/api/v1/chat/channels/{room}/messages"),
                &class.teacher.1,
            )
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");
}

#[tokio::test]
async fn a_client_that_comes_back_gets_what_it_missed_or_a_reset_when_too_far_behind() {
    let class = Class::new(|s| s.chat.resume_max_messages = 5).await;
    let room = class.room();
    let mut teacher = Client::connect(class.app.addr, &class.teacher.1).await;
    let mut student = Client::connect(class.app.addr, &class.student.1).await;
    student.subscribe(&room, None).await;
    teacher.say(&room, "t1", "one").await;
    assert_eq!(student.next_of("message").await["message"]["seq"], 1);
    drop(student);

    for i in 2..=4 {
        teacher.say(&room, &format!("t{i}"), &format!("n{i}")).await;
    }
    let mut student = Client::connect(class.app.addr, &class.student.1).await;
    let sub = student.subscribe(&room, Some(1)).await;
    assert_eq!(sub["seq"], 4);
    for i in 2..=4 {
        let m = student.next_of("message").await;
        assert_eq!(m["message"]["seq"], i);
        assert_eq!(m["message"]["body"], format!("n{i}"));
    }
    // Live delivery continues after the backlog, without repeats.
    teacher.say(&room, "t5", "n5").await;
    assert_eq!(student.next_of("message").await["message"]["seq"], 5);
    drop(student);

    for i in 6..=12 {
        teacher.say(&room, &format!("t{i}"), "more").await;
    }
    let mut student = Client::connect(class.app.addr, &class.student.1).await;
    let sub = student.subscribe(&room, Some(5)).await;
    assert_eq!(sub["seq"], 12);
    let reset = student.next_of_any(&["reset", "message"]).await;
    assert_eq!(reset["type"], "reset", "{reset}");
    assert_eq!(reset["seq"], 12);
    teacher.say(&room, "t13", "after the reset").await;
    assert_eq!(student.next_of("message").await["message"]["seq"], 13);
}

#[tokio::test]
async fn history_pages_before_after_and_around_a_message() {
    let class = Class::new(|_| {}).await;
    let room = class.room();
    let mut teacher = Client::connect(class.app.addr, &class.teacher.1).await;
    let mut ids = vec![String::new()];
    for i in 1..=12 {
        let ack = teacher.say(&room, &format!("h{i}"), &format!("m{i}")).await;
        ids.push(ack["message"]["id"].as_str().unwrap().to_string());
    }
    let page = |q: String| {
        let app = &class.app;
        let token = class.student.1.clone();
        let room = room.clone();
        async move {
            ok(
                app.get_auth(&format!("/api/v1/chat/channels/{room}/messages{q}"), &token)
                    .await,
                StatusCode::OK,
            )
            .await
        }
    };
    let seqs = |p: &Value| -> Vec<i64> {
        p["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["seq"].as_i64().unwrap())
            .collect()
    };
    let latest = page("?limit=5".into()).await;
    assert_eq!(seqs(&latest), vec![8, 9, 10, 11, 12]);
    assert_eq!(latest["next_cursor"], ids[8].as_str());
    let older = page(format!("?limit=5&before={}", ids[8])).await;
    assert_eq!(seqs(&older), vec![3, 4, 5, 6, 7]);
    let oldest = page(format!("?limit=5&before={}", ids[3])).await;
    assert_eq!(seqs(&oldest), vec![1, 2]);
    assert_eq!(oldest["next_cursor"], Value::Null);
    let after = page(format!("?limit=2&after={}", ids[3])).await;
    assert_eq!(seqs(&after), vec![4, 5]);
    assert_eq!(after["next_cursor"], ids[5].as_str());
    let around = page(format!("?limit=4&around={}", ids[6])).await;
    assert_eq!(seqs(&around), vec![4, 5, 6, 7]);
    assert_eq!(
        seqs(&page(String::new()).await).len(),
        12,
        "default limit 50"
    );

    let app = &class.app;
    let r = app
        .get_auth(
            &format!("/api/v1/chat/channels/{room}/messages?limit=101"),
            &class.student.1,
        )
        .await;
    assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let r = app
        .get_auth(
            &format!("/api/v1/chat/channels/{room}/messages"),
            &class.stranger.1,
        )
        .await;
    assert_problem(r, StatusCode::NOT_FOUND, "not_found").await;
    let r = app
        .get_auth("/api/v1/chat/channels/room:nope/messages", &class.student.1)
        .await;
    assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
}

#[tokio::test]
async fn read_markers_move_forward_and_unread_counts_follow_them() {
    let class = Class::new(|_| {}).await;
    let room = class.room();
    let mut student = Client::connect(class.app.addr, &class.student.1).await;
    student.subscribe(&room, None).await;
    let mut teacher = Client::connect(class.app.addr, &class.teacher.1).await;
    teacher.subscribe(&room, None).await;
    for i in 1..=3 {
        teacher.say(&room, &format!("r{i}"), "news").await;
    }
    async fn unread(class: &Class) -> Value {
        let list = ok(
            class
                .app
                .get_auth("/api/v1/chat/channels", &class.student.1)
                .await,
            StatusCode::OK,
        )
        .await;
        let room = class.room();
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["channel"] == room)
            .cloned()
            .unwrap()
    }
    let c = unread(&class).await;
    assert_eq!(
        (c["unread"].as_i64(), c["last_seq"].as_i64()),
        (Some(3), Some(3))
    );

    // Over the socket: the room hears that the student read up to 2.
    student
        .send(json!({"type": "read", "channel": room, "seq": 2}))
        .await;
    let r = teacher.next_of("read").await;
    assert_eq!(
        (r["user_id"].as_str(), r["seq"].as_i64()),
        (Some(class.student.0.to_string().as_str()), Some(2))
    );
    assert_eq!(unread(&class).await["unread"], 1);
    // Markers never move back, and never past the last message.
    let back = ok(
        class
            .app
            .send(
                Method::POST,
                &format!("/api/v1/chat/channels/{room}/read"),
                Some(&class.student.1),
                Some(&json!({"seq": 1})),
            )
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(back["read_seq"], 2);
    let far = ok(
        class
            .app
            .send(
                Method::POST,
                &format!("/api/v1/chat/channels/{room}/read"),
                Some(&class.student.1),
                Some(&json!({"seq": 99})),
            )
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(far["read_seq"], 3);
    assert_eq!(unread(&class).await["unread"], 0);
}

#[tokio::test]
async fn senders_recall_within_the_window_moderators_remove_anything_and_everyone_sees_tombstones()
{
    let class = Class::new(|s| s.chat.recall_window_s = 2).await;
    let room = class.room();
    let mut teacher = Client::connect(class.app.addr, &class.teacher.1).await;
    teacher.subscribe(&room, None).await;
    let mut student = Client::connect(class.app.addr, &class.student.1).await;
    student.subscribe(&room, None).await;

    let sent = student.say(&room, "oops", "wrong room, sorry").await;
    let id = sent["message"]["id"].as_str().unwrap().to_string();
    student
        .send(json!({"type": "recall", "client_id": "undo-1", "message_id": id}))
        .await;
    let ack = student.next_of("ack").await;
    assert_eq!(ack["client_id"], "undo-1");
    assert_eq!(ack["message"]["kind"], "tombstone");
    assert_eq!(ack["message"]["refers_to"], id.as_str());
    // The teacher saw the message, then its tombstone.
    assert_eq!(
        teacher.next_of("message").await["message"]["id"],
        id.as_str()
    );
    let tomb = teacher.next_of("message").await;
    assert_eq!(tomb["message"]["refers_to"], id.as_str());
    let page = ok(
        class
            .app
            .get_auth(
                &format!("/api/v1/chat/channels/{room}/messages"),
                &class.teacher.1,
            )
            .await,
        StatusCode::OK,
    )
    .await;
    let original = &page["items"][0];
    assert_eq!(original["deleted"], true);
    assert_eq!(original["body"], "");
    assert_eq!(original["deleted_by"], class.student.0.to_string());

    // Past the window the sender cannot; the teacher still can, over REST.
    let late = student.say(&room, "late", "second thoughts").await;
    let late_id = late["message"]["id"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    student
        .send(json!({"type": "recall", "client_id": "undo-2", "message_id": late_id}))
        .await;
    assert_eq!(student.next_of("error").await["code"], "recall_expired");
    let removed = ok(
        class
            .app
            .send(
                Method::DELETE,
                &format!("/api/v1/chat/messages/{late_id}"),
                Some(&class.teacher.1),
                None,
            )
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(removed["kind"], "tombstone");
    // A student cannot remove someone else's message; a stranger does not even see it.
    let t = teacher.say(&room, "tm", "teacher's words").await;
    let tid = t["message"]["id"].as_str().unwrap();
    let r = class
        .app
        .send(
            Method::DELETE,
            &format!("/api/v1/chat/messages/{tid}"),
            Some(&class.student.1),
            None,
        )
        .await;
    assert_problem(r, StatusCode::FORBIDDEN, "forbidden").await;
    let r = class
        .app
        .send(
            Method::DELETE,
            &format!("/api/v1/chat/messages/{tid}"),
            Some(&class.stranger.1),
            None,
        )
        .await;
    assert_problem(r, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn teachers_mute_a_student_mute_the_room_set_slow_mode_and_ban() {
    let class = Class::new(|_| {}).await;
    let room = class.room();
    let app = &class.app;
    let mut teacher = Client::connect(app.addr, &class.teacher.1).await;
    teacher.subscribe(&room, None).await;
    let mut student = Client::connect(app.addr, &class.student.1).await;
    student.subscribe(&room, None).await;
    let sid = class.student.0;
    let put = |path: String, token: String, body: Value| async move {
        app.send(Method::PUT, &path, Some(&token), Some(&body))
            .await
    };

    // Students cannot moderate.
    let r = put(
        format!("/api/v1/chat/channels/{room}/mutes/{}", class.teacher.0),
        class.student.1.clone(),
        json!({}),
    )
    .await;
    assert_problem(r, StatusCode::FORBIDDEN, "forbidden").await;

    let r = put(
        format!("/api/v1/chat/channels/{room}/mutes/{sid}"),
        class.teacher.1.clone(),
        json!({"duration_s": 600}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        student.say(&room, "x1", "can I speak?").await["code"],
        "muted"
    );
    let r = app
        .send(
            Method::DELETE,
            &format!("/api/v1/chat/channels/{room}/mutes/{sid}"),
            Some(&class.teacher.1),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(student.say(&room, "x2", "thanks").await["type"], "ack");

    // The whole room muted: only moderators speak; everyone is told.
    let r = app
        .send(
            Method::PATCH,
            &format!("/api/v1/chat/channels/{room}/room"),
            Some(&class.teacher.1),
            Some(&json!({"muted": true})),
        )
        .await;
    assert_eq!(ok(r, StatusCode::OK).await["muted"], true);
    assert_eq!(student.next_of("room").await["muted"], true);
    assert_eq!(student.say(&room, "x3", "hello?").await["code"], "muted");
    assert_eq!(
        teacher.say(&room, "t1", "quiet please").await["type"],
        "ack"
    );

    // Slow mode: one message per 60 s for students.
    let r = app
        .send(
            Method::PATCH,
            &format!("/api/v1/chat/channels/{room}/room"),
            Some(&class.teacher.1),
            Some(&json!({"muted": false, "slow_mode_s": 60})),
        )
        .await;
    assert_eq!(ok(r, StatusCode::OK).await["slow_mode_s"], 60);
    assert_eq!(student.say(&room, "x4", "first").await["type"], "ack");
    assert_eq!(
        student.say(&room, "x5", "second").await["code"],
        "slow_mode"
    );
    assert_eq!(
        teacher.say(&room, "t2", "teachers are not slowed").await["type"],
        "ack"
    );
    assert_eq!(teacher.say(&room, "t3", "at all").await["type"], "ack");

    // A ban ends the student's subscription at once and keeps them out of the course's chat.
    let r = put(
        format!("/api/v1/chat/channels/{room}/bans/{sid}"),
        class.teacher.1.clone(),
        json!({"reason": "spam"}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let gone = student.next_of("unsubscribed").await;
    assert_eq!(gone["reason"], "banned");
    assert_eq!(student.subscribe(&room, None).await["code"], "forbidden");
    let course_channel = format!("course:{}", class.course);
    assert_eq!(
        student.subscribe(&course_channel, None).await["code"],
        "forbidden"
    );
    let r = app
        .send(
            Method::DELETE,
            &format!("/api/v1/chat/channels/{room}/bans/{sid}"),
            Some(&class.teacher.1),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        student.subscribe(&course_channel, None).await["type"],
        "subscribed"
    );
}

#[tokio::test]
async fn moderators_list_who_is_muted_in_a_channel_and_who_is_banned_from_the_course() {
    let class = Class::new(|_| {}).await;
    let app = &class.app;
    let room = class.room();
    let course_channel = format!("course:{}", class.course);
    let classmate = crate::chat_scale::enrolled_student(&class).await;
    let third = crate::chat_scale::enrolled_student(&class).await;
    let teacher = class.teacher.1.as_str();
    let send = |m: Method, path: String, token: &str, body: Option<Value>| {
        let token = token.to_owned();
        async move { app.send(m, &path, Some(&token), body.as_ref()).await }
    };
    let lists = |channel: String, token: &str| {
        let token = token.to_owned();
        async move {
            app.send(
                Method::GET,
                &format!("/api/v1/chat/channels/{channel}/moderation"),
                Some(&token),
                None,
            )
            .await
        }
    };
    let ids = |v: &Value, list: &str| -> Vec<String> {
        v[list]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["user_id"].as_str().unwrap().to_owned())
            .collect()
    };

    // Muted in the room: the student for 10 minutes, a classmate until lifted, a third for a
    // second (which runs out before the list is read); the third is banned from the course.
    for (who, body) in [
        (class.student.0, json!({"duration_s": 600})),
        (classmate.0, json!({})),
        (third.0, json!({"duration_s": 1})),
    ] {
        let r = send(
            Method::PUT,
            format!("/api/v1/chat/channels/{room}/mutes/{who}"),
            teacher,
            Some(body),
        )
        .await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
    }
    let r = send(
        Method::PUT,
        format!("/api/v1/chat/channels/{course_channel}/bans/{}", third.0),
        teacher,
        Some(json!({"reason": "spam links"})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    tokio::time::sleep(Duration::from_millis(1200)).await;

    let v = ok(lists(room.clone(), teacher).await, StatusCode::OK).await;
    assert_eq!(
        ids(&v, "mutes"),
        vec![classmate.0.to_string(), class.student.0.to_string()],
        "newest first, the run-out mute left out: {v}"
    );
    let student_mute = &v["mutes"][1];
    assert!(student_mute["until"].is_string(), "{v}");
    assert!(v["mutes"][0]["until"].is_null(), "{v}");
    assert_eq!(student_mute["muted_by"], class.teacher.0.to_string());
    assert!(!student_mute["display_name"].as_str().unwrap().is_empty());
    assert_eq!(ids(&v, "bans"), vec![third.0.to_string()]);
    assert_eq!(v["bans"][0]["reason"], "spam links");
    assert_eq!(
        (v["muted"].clone(), v["slow_mode_s"].clone()),
        (json!(false), json!(0))
    );

    // Mutes belong to a channel, bans to the course: the course channel shows only the ban.
    let c = ok(lists(course_channel.clone(), teacher).await, StatusCode::OK).await;
    assert!(ids(&c, "mutes").is_empty(), "{c}");
    assert_eq!(ids(&c, "bans"), vec![third.0.to_string()]);

    // Lifting takes them off the lists.
    let sid = class.student.0;
    let r = send(
        Method::DELETE,
        format!("/api/v1/chat/channels/{room}/mutes/{sid}"),
        teacher,
        None,
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = send(
        Method::DELETE,
        format!("/api/v1/chat/channels/{room}/bans/{}", third.0),
        teacher,
        None,
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let v = ok(lists(room.clone(), teacher).await, StatusCode::OK).await;
    assert_eq!(ids(&v, "mutes"), vec![classmate.0.to_string()]);
    assert!(ids(&v, "bans").is_empty(), "{v}");

    // Students may not see the lists; strangers do not learn the channel exists.
    assert_problem(
        lists(room.clone(), &class.student.1).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_problem(
        lists(room.clone(), &class.stranger.1).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn typing_and_presence_are_shared_with_the_room() {
    let class = Class::new(|_| {}).await;
    let room = class.room();
    let mut teacher = Client::connect(class.app.addr, &class.teacher.1).await;
    teacher.subscribe(&room, None).await;
    let mut student = Client::connect(class.app.addr, &class.student.1).await;
    student.subscribe(&room, None).await;
    // The room hears the student arrive (the teacher's own arrival came first).
    let sid = class.student.0.to_string();
    let p = loop {
        let p = teacher.next_of("presence").await;
        if p["user_id"] == sid.as_str() {
            break p;
        }
    };
    assert_eq!(p["online"], true);

    student
        .send(json!({"type": "typing", "channel": room}))
        .await;
    let t = teacher.next_of("typing").await;
    assert_eq!(t["user_id"], class.student.0.to_string());

    let (ids, _) = room_presence(&mut teacher, &room).await;
    let mut want = vec![class.teacher.0.to_string(), class.student.0.to_string()];
    want.sort();
    assert_eq!(ids, want);

    drop(student);
    let left = teacher.next_of("presence").await;
    assert_eq!(
        (left["user_id"].as_str(), left["online"].as_bool()),
        (Some(class.student.0.to_string().as_str()), Some(false))
    );
}

#[tokio::test]
async fn direct_messages_reach_the_other_side_and_strangers_cannot_start_them() {
    let class = Class::new(|_| {}).await;
    let (sid, tid) = (class.student.0, class.teacher.0);
    let mut teacher = Client::connect(class.app.addr, &class.teacher.1).await;
    assert_eq!(
        teacher.subscribe(&format!("dm:{sid}"), None).await["type"],
        "subscribed"
    );
    let mut student = Client::connect(class.app.addr, &class.student.1).await;
    // The student writes without subscribing; each side names the channel after the other.
    let ack = student.say(&format!("dm:{tid}"), "d1", "a question").await;
    assert_eq!(ack["channel"], format!("dm:{tid}"));
    let got = teacher.next_of("message").await;
    assert_eq!(got["channel"], format!("dm:{sid}"));
    assert_eq!(got["message"]["body"], "a question");

    // A stranger shares no course with the student.
    let mut stranger = Client::connect(class.app.addr, &class.stranger.1).await;
    assert_eq!(
        stranger.say(&format!("dm:{sid}"), "d2", "hi").await["code"],
        "forbidden"
    );
    // Nobody reads someone else's notifications.
    assert_eq!(
        stranger.subscribe(&format!("user:{sid}"), None).await["code"],
        "forbidden"
    );
}

#[tokio::test]
async fn the_websocket_route_refuses_anonymous_and_plain_requests_with_problems() {
    let class = Class::new(|_| {}).await;
    let app = &class.app;
    assert_problem(
        app.get("/api/v1/ws").await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    assert_problem(
        app.get_auth("/api/v1/ws", &class.student.1).await,
        StatusCode::BAD_REQUEST,
        "websocket_required",
    )
    .await;
    assert_problem(
        app.get_auth("/api/v1/ws?v=2", &class.student.1).await,
        StatusCode::BAD_REQUEST,
        "unsupported_protocol",
    )
    .await;
    // Browsers pass the token in the query.
    let (status, headers) = raw_handshake(
        app.addr,
        &format!("/api/v1/ws?token={}", class.student.1),
        "",
    )
    .await;
    assert_eq!(status, 101, "{headers}");
    let (status, _) = raw_handshake(app.addr, "/api/v1/ws?token=not-a-token", "").await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn compression_is_negotiated_and_an_inflated_frame_over_the_cap_closes_the_connection() {
    let class = Class::new(|s| {
        s.chat.max_frame_bytes = 16 * 1024;
        s.chat.compression = true;
    })
    .await;
    let (status, headers) = raw_handshake(
        class.app.addr,
        &format!("/api/v1/ws?token={}", class.student.1),
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
    )
    .await;
    assert_eq!(status, 101);
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("sec-websocket-extensions: permessage-deflate"),
        "{headers}"
    );

    let compressed = Options::default().with_balanced_compression();
    let mut c = Client::connect_with(class.app.addr, &class.student.1, compressed).await;
    let room = class.room();
    assert_eq!(c.subscribe(&room, None).await["type"], "subscribed");
    // Under the cap works; 200 KiB of one letter deflates to a few hundred bytes but inflates
    // past the 16 KiB cap: the server closes with 1009 (message too big).
    assert_eq!(
        c.say(&room, "z1", "small and compressed").await["type"],
        "ack"
    );
    let bomb =
        json!({"type": "send", "channel": room, "client_id": "z2", "body": "a".repeat(200 * 1024)});
    c.send(bomb).await;
    let closed = c.next_of("_closed").await;
    assert_eq!(closed["code"], 1009, "{closed}");
}

#[tokio::test]
async fn silent_connections_are_closed_after_the_idle_timeout() {
    let class = Class::new(|s| {
        s.chat.ping_interval_s = 1;
        s.chat.idle_timeout_s = 2;
    })
    .await;
    // A raw client that completes the handshake and then never answers pings.
    let mut stream = TcpStream::connect(class.app.addr).await.unwrap();
    let req = format!(
        "GET /api/v1/ws?token={} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        class.student.1
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let started = std::time::Instant::now();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    let mut opcodes = Vec::new();
    // Parse the server's (unmasked) frames until a close frame or the end of the stream.
    let closed = 'read: loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break 'read true,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => break 'read false,
        }
        // Skip the HTTP response head once.
        if opcodes.is_empty() && !got.is_empty() && got.starts_with(b"HTTP/") {
            let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            got.drain(..end + 4);
            opcodes.push(0xff);
        }
        while got.len() >= 2 {
            let (mut len, mut head) = ((got[1] & 0x7f) as usize, 2);
            if len == 126 {
                if got.len() < 4 {
                    break;
                }
                len = u16::from_be_bytes([got[2], got[3]]) as usize;
                head = 4;
            } else if len == 127 {
                if got.len() < 10 {
                    break;
                }
                len = u64::from_be_bytes(got[2..10].try_into().unwrap()) as usize;
                head = 10;
            }
            if got.len() < head + len {
                break;
            }
            let op = got[0] & 0x0f;
            opcodes.push(op);
            got.drain(..head + len);
            if op == 0x8 {
                break 'read true;
            }
        }
    };
    assert!(closed, "the server kept a dead connection");
    assert!(
        opcodes.contains(&0x9),
        "the server pinged first: {opcodes:?}"
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(8),
        "{waited:?}"
    );
}

#[tokio::test]
async fn entries_a_dead_node_left_pending_are_stored_once_by_the_live_persister() {
    let class = Class::new(|_| {}).await;
    let prefix = class.app.settings.chat.key_prefix.clone();
    let inbox = format!("{prefix}in");
    let room = class.room();
    let mut teacher = Client::connect(class.app.addr, &class.teacher.1).await;
    teacher.subscribe(&room, None).await;
    // Make sure the channel exists (the student's first send creates nothing by itself).
    let mut redis = crate::helpers::test_redis().await.conn();
    let entry = json!({"op": "send", "channel": room, "sender": class.student.0,
                       "client_id": "crash-1", "body": "written before the crash",
                       "html": "<p>written before the crash</p>"})
    .to_string();
    // A node that read the entry and died before storing it (never acknowledged), and the same
    // entry queued twice (a crash after storing and before acknowledging replays it).
    let _: String = redis
        .xadd(&inbox, "*", &[("j", entry.clone())])
        .await
        .unwrap();
    let _: String = redis.xadd(&inbox, "*", &[("j", entry)]).await.unwrap();
    let m = teacher.next_of("message").await;
    assert_eq!(m["message"]["body"], "written before the crash");
    assert_eq!(m["message"]["seq"], 1);
    teacher.silent("message", Duration::from_millis(800)).await;

    let _: redis::RedisResult<String> = redis.xgroup_create_mkstream(&inbox, "persist", "0").await;
    let orphan = json!({"op": "send", "channel": room, "sender": class.student.0,
                        "client_id": "crash-2", "body": "orphaned", "html": "<p>orphaned</p>"})
    .to_string();
    // Add it and claim it as a consumer that then vanishes: it sits in that consumer's PEL.
    let stolen: redis::Value = redis::cmd("EVAL")
        .arg("redis.call('XADD', KEYS[1], '*', 'j', ARGV[1]) return redis.call('XREADGROUP', 'GROUP', 'persist', 'dead-node', 'COUNT', 10, 'STREAMS', KEYS[1], '>')")
        .arg(1)
        .arg(&inbox)
        .arg(orphan)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(
        !matches!(stolen, redis::Value::Nil),
        "the dead node read it"
    );
    // After the claim delay (5 s idle) the live persister takes it over and stores it.
    let m = teacher.next_of("message").await;
    assert_eq!(m["message"]["body"], "orphaned");
    assert_eq!(m["message"]["seq"], 2);
    let len: i64 = redis.xlen(&inbox).await.unwrap();
    assert_eq!(len, 0, "stored entries leave the stream");
}

/// An HTTP/1.1 upgrade request by hand: the status and the response headers.
async fn raw_handshake(addr: std::net::SocketAddr, path: &str, extra: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 8192];
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[tokio::test]
async fn leaving_the_course_ends_the_students_subscriptions_at_once() {
    let class = Class::new(|_| {}).await;
    let room = class.room();
    let mut student = Client::connect(class.app.addr, &class.student.1).await;
    assert_eq!(student.subscribe(&room, None).await["type"], "subscribed");
    ok(
        class
            .app
            .send(
                Method::POST,
                &format!("/api/v1/courses/{}/leave", class.course),
                Some(&class.student.1),
                Some(&json!({})),
            )
            .await,
        StatusCode::OK,
    )
    .await;
    let gone = student.next_of("unsubscribed").await;
    assert_eq!(gone["channel"], room);
    assert_eq!(gone["reason"], "left_course");
    let mut teacher = Client::connect(class.app.addr, &class.teacher.1).await;
    teacher.say(&room, "after", "not for former students").await;
    student.silent("message", Duration::from_millis(500)).await;
    assert_eq!(
        student.say(&room, "s1", "still here?").await["code"],
        "forbidden"
    );
}

/// Ask who is present in `room`: the user ids, sorted, and the whole frame (join and leave
/// events on the way are skipped).
async fn room_presence(c: &mut Client, room: &str) -> (Vec<String>, serde_json::Value) {
    c.send(json!({"type": "presence", "channel": room})).await;
    let here = loop {
        let p = c.next_of("presence").await;
        if p.get("user_ids").is_some() {
            break p;
        }
    };
    let mut ids: Vec<String> = here["user_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    ids.sort();
    (ids, here)
}

#[tokio::test]
async fn presence_in_a_room_outlives_its_expiry_while_the_connection_stays() {
    // Presence entries expire three ping intervals after their last refresh (3 s here): the
    // node's keep-alive must refresh every connection's, or an idle student would vanish.
    let class = Class::new(|s| s.chat.ping_interval_s = 1).await;
    let room = class.room();
    let mut teacher = Client::connect(class.app.addr, &class.teacher.1).await;
    teacher.subscribe(&room, None).await;
    let mut student = Client::connect(class.app.addr, &class.student.1).await;
    student.subscribe(&room, None).await;
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let (ids, here) = room_presence(&mut teacher, &room).await;
    let mut want = vec![class.teacher.0.to_string(), class.student.0.to_string()];
    want.sort();
    assert_eq!(ids, want, "{here}");
    drop(student);
}

#[tokio::test]
async fn compression_is_not_negotiated_unless_configured() {
    // Off by default: a compressed socket keeps its own deflate state (~230 KiB) and compresses
    // every room message for itself (docs/benchmarks.md, Chat).
    let class = Class::new(|_| {}).await;
    let (status, headers) = raw_handshake(
        class.app.addr,
        &format!("/api/v1/ws?token={}", class.student.1),
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
    )
    .await;
    assert_eq!(status, 101);
    assert!(
        !headers
            .to_ascii_lowercase()
            .contains("sec-websocket-extensions"),
        "{headers}"
    );
}
