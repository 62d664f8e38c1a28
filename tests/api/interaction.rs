//! Live interaction and learning records (docs/interaction.md) against the real server,
//! PostgreSQL and Redis: questions, polls, hands, reactions and markers over the chat socket;
//! attendance, replay coverage, the replay's timeline and viewing quality over REST; two
//! `wemaster serve` nodes sharing one lesson; a node killed mid-lesson.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::Connection;

use crate::{
    chat::{Class, Client},
    chat_scale::{Node, enrolled_student},
    helpers::assert_problem,
};

/// Send a live tools' frame and wait for its ack or error (other frames are skipped).
async fn act(c: &mut Client, frame: Value) -> Value {
    let cid = frame["client_id"].clone();
    c.send(frame).await;
    for _ in 0..500 {
        let v = c.next().await;
        assert_ne!(v["type"], "_closed", "closed while waiting for {cid}");
        if (v["type"] == "ack" || v["type"] == "error") && v["client_id"] == cid {
            return v;
        }
    }
    panic!("no answer to {cid}");
}

/// The next frame of type `ty` that satisfies `pred` (10 s per frame at most).
async fn wait_for(c: &mut Client, ty: &str, pred: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..2000 {
        let v = c.next().await;
        assert_ne!(v["type"], "_closed", "closed while waiting for {ty}");
        if v["type"] == ty && pred(&v) {
            return v;
        }
    }
    panic!("no matching {ty}");
}

async fn joined(addr: std::net::SocketAddr, token: &str, room: &str) -> Client {
    let mut c = Client::connect(addr, token).await;
    let s = c.subscribe(room, None).await;
    assert_eq!(s["type"], "subscribed", "{s}");
    c
}

async fn json_ok(r: reqwest::Response, status: StatusCode) -> Value {
    let got = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    assert_eq!(got, status, "{body}");
    body
}

#[tokio::test]
async fn questions_are_voted_once_per_student_anonymous_to_classmates_and_refused_when_muted() {
    let class = Class::new(|_| {}).await;
    let room = format!("lesson:{}", class.lesson);
    let addr = class.app.addr;
    let classmate = enrolled_student(&class).await;
    let mut teacher = joined(addr, &class.teacher.1, &room).await;
    let mut student = joined(addr, &class.student.1, &room).await;
    let mut other = joined(addr, &classmate.1, &room).await;

    // Frames need a subscription, and a lesson room.
    let mut lonely = Client::connect(addr, &class.student.1).await;
    let r = act(
        &mut lonely,
        json!({"type": "ask", "channel": room, "client_id": "q-x", "body": "hi"}),
    )
    .await;
    assert_eq!(r["code"], "not_subscribed", "{r}");
    let mut stranger = Client::connect(addr, &class.stranger.1).await;
    assert_eq!(stranger.subscribe(&room, None).await["code"], "forbidden");

    // An anonymous question: the author's ack names them, classmates do not see who asked, the
    // teacher does.
    let ask = json!({"type": "ask", "channel": room, "client_id": "q-1",
                     "body": "  Why is the sky blue?  ", "anonymous": true});
    let a = act(&mut student, ask.clone()).await;
    assert_eq!(a["type"], "ack", "{a}");
    let q = &a["question"];
    assert_eq!(q["body"], "Why is the sky blue?");
    assert_eq!(q["author_id"], class.student.0.to_string());
    assert_eq!(q["mine"], true);
    let qid = q["id"].as_str().unwrap().to_string();
    let seen = wait_for(&mut other, "question", |v| v["question"]["id"] == qid).await;
    assert!(seen["question"]["author_id"].is_null(), "{seen}");
    let seen = wait_for(&mut teacher, "question", |v| v["question"]["id"] == qid).await;
    assert_eq!(seen["question"]["author_id"], class.student.0.to_string());
    // A retry (same client id) stores nothing new.
    let again = act(&mut student, ask).await;
    assert_eq!(again["question"]["id"], qid.as_str());

    // One vote per student: twice, from two connections, counts once; the author cannot vote;
    // teachers do not vote.
    let vote = |cid: &str, on: bool| json!({"type": "vote", "channel": room, "client_id": cid, "question_id": qid, "on": on});
    assert_eq!(
        act(&mut other, vote("v-1", true)).await["question"]["votes"],
        1
    );
    let mut other2 = joined(addr, &classmate.1, &room).await;
    let twice = act(&mut other2, vote("v-2", true)).await;
    assert_eq!(twice["question"]["votes"], 1, "{twice}");
    assert_eq!(twice["question"]["voted"], true);
    assert_eq!(
        act(&mut student, vote("v-3", true)).await["code"],
        "forbidden"
    );
    assert_eq!(
        act(&mut teacher, vote("v-4", true)).await["code"],
        "forbidden"
    );

    // The teacher answers it; everyone hears.
    let s = act(
        &mut teacher,
        json!({"type": "question_state", "channel": room, "client_id": "s-1",
               "question_id": qid, "state": "answered"}),
    )
    .await;
    assert_eq!(s["question"]["state"], "answered", "{s}");
    wait_for(&mut student, "question", |v| {
        v["question"]["state"] == "answered"
    })
    .await;
    let bad = act(
        &mut teacher,
        json!({"type": "question_state", "channel": room, "client_id": "s-2",
               "question_id": qid, "state": "gone"}),
    )
    .await;
    assert_eq!(bad["code"], "invalid");
    assert_eq!(
        act(
            &mut student,
            json!({"type": "question_state", "channel": room, "client_id": "s-3",
                   "question_id": qid, "state": "pinned"})
        )
        .await["code"],
        "forbidden"
    );

    // The snapshot: the reader's own flags; the author hidden from classmates.
    let snap = json_ok(
        class
            .app
            .send(
                Method::GET,
                &format!("/api/v1/lessons/{}/interaction", class.lesson),
                Some(&classmate.1),
                None,
            )
            .await,
        StatusCode::OK,
    )
    .await;
    let q = &snap["questions"][0];
    assert_eq!(
        (q["voted"].clone(), q["mine"].clone()),
        (json!(true), json!(false))
    );
    assert!(q["author_id"].is_null(), "{snap}");
    let stranger_snap = class
        .app
        .send(
            Method::GET,
            &format!("/api/v1/lessons/{}/interaction", class.lesson),
            Some(&class.stranger.1),
            None,
        )
        .await;
    assert_problem(stranger_snap, StatusCode::FORBIDDEN, "forbidden").await;

    // A muted student cannot ask.
    let muted = class
        .app
        .send(
            Method::PUT,
            &format!("/api/v1/chat/channels/{room}/mutes/{}", classmate.0),
            Some(&class.teacher.1),
            Some(&json!({})),
        )
        .await;
    assert!(muted.status().is_success(), "{}", muted.status());
    let refused = act(
        &mut other,
        json!({"type": "ask", "channel": room, "client_id": "q-m", "body": "may I?"}),
    )
    .await;
    assert_eq!(refused["code"], "muted", "{refused}");
}

#[tokio::test]
async fn a_poll_counts_each_student_once_and_shows_results_when_the_teacher_says() {
    let class = Class::new(|_| {}).await;
    let room = format!("lesson:{}", class.lesson);
    let addr = class.app.addr;
    let s2 = enrolled_student(&class).await;
    let mut teacher = joined(addr, &class.teacher.1, &room).await;
    let mut a = joined(addr, &class.student.1, &room).await;
    let mut b = joined(addr, &s2.1, &room).await;

    let bad = act(
        &mut teacher,
        json!({"type": "poll_open", "channel": room, "client_id": "p-0", "question": "?",
               "options": ["only one"]}),
    )
    .await;
    assert_eq!(bad["code"], "invalid");
    let opened = act(
        &mut teacher,
        json!({"type": "poll_open", "channel": room, "client_id": "p-1", "question": "2 + 2 = ?",
               "options": ["3", "4", "5"], "correct": [1]}),
    )
    .await;
    let poll = opened["poll"]["id"].as_str().unwrap().to_string();
    assert_eq!(opened["poll"]["correct"], json!([1]));
    // Students see the poll without the answer.
    let p = wait_for(&mut a, "poll", |v| v["poll"]["id"] == poll).await;
    assert!(
        p["poll"]["correct"].is_null() && p["poll"]["quiz"] == true,
        "{p}"
    );
    assert_eq!(
        act(
            &mut a,
            json!({"type": "poll_open", "channel": room, "client_id": "p-2", "question": "x",
                   "options": ["a", "b"]})
        )
        .await["code"],
        "forbidden"
    );

    let answer = |cid: &str, choices: Value| json!({"type": "poll_answer", "channel": room, "client_id": cid, "poll_id": poll, "choices": choices});
    assert_eq!(act(&mut a, answer("a-1", json!([0]))).await["type"], "ack");
    assert_eq!(act(&mut b, answer("b-1", json!([1]))).await["type"], "ack");
    assert_eq!(
        act(&mut b, answer("b-2", json!([0, 1]))).await["code"],
        "invalid"
    );
    // A changes their mind; the same answer again (a retry) changes nothing.
    act(&mut a, answer("a-2", json!([1]))).await;
    act(&mut a, answer("a-2", json!([1]))).await;
    let r = wait_for(&mut teacher, "poll_results", |v| {
        v["poll_id"] == poll && v["counts"] == json!([0, 2, 0])
    })
    .await;
    assert_eq!(r["answered"], 2, "{r}");
    // Students get no results until they are shown.
    a.silent("poll_results", Duration::from_millis(600)).await;

    // A student who reconnects keeps their answer.
    drop(b);
    let snap = json_ok(
        class
            .app
            .send(
                Method::GET,
                &format!("/api/v1/lessons/{}/interaction", class.lesson),
                Some(&s2.1),
                None,
            )
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(snap["polls"][0]["my_choices"], json!([1]), "{snap}");
    assert!(snap["polls"][0]["results"].is_null(), "{snap}");
    let mut b = joined(addr, &s2.1, &room).await;

    // Close and show: everyone sees the results and the right answer; answers are refused.
    act(
        &mut teacher,
        json!({"type": "poll_close", "channel": room, "client_id": "c-1", "poll_id": poll}),
    )
    .await;
    assert_eq!(
        act(&mut b, answer("b-3", json!([2]))).await["code"],
        "closed"
    );
    act(
        &mut teacher,
        json!({"type": "poll_show", "channel": room, "client_id": "r-1", "poll_id": poll, "show": true}),
    )
    .await;
    let p = wait_for(&mut b, "poll", |v| v["poll"]["results_shown"] == true).await;
    assert_eq!(p["poll"]["correct"], json!([1]));
    assert_eq!(p["poll"]["closed"], true);
    let r = wait_for(&mut b, "poll_results", |v| v["poll_id"] == poll).await;
    assert_eq!(r["counts"], json!([0, 2, 0]));

    // A timed poll closes by itself.
    let timed = act(
        &mut teacher,
        json!({"type": "poll_open", "channel": room, "client_id": "p-3", "question": "Ready?",
               "options": ["yes", "no"], "duration_s": 5}),
    )
    .await;
    let tid = timed["poll"]["id"].as_str().unwrap().to_string();
    assert!(timed["poll"]["closes_at"].is_string());
    let started = Instant::now();
    let closed = wait_for(&mut b, "poll", |v| {
        v["poll"]["id"] == tid && v["poll"]["closed"] == true
    })
    .await;
    assert!(closed["poll"]["closed"] == true);
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "{:?}",
        started.elapsed()
    );

    // Quiz scores reach attendance.
    let att = json_ok(
        class
            .app
            .send(
                Method::GET,
                &format!("/api/v1/lessons/{}/attendance/me", class.lesson),
                Some(&class.student.1),
                None,
            )
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        (att["quiz_correct"].clone(), att["quiz_total"].clone()),
        (json!(1), json!(1))
    );
}

#[tokio::test]
async fn hands_are_a_queue_the_teacher_calls_on_with_a_meeting_link() {
    let class = Class::new(|_| {}).await;
    let addr = class.app.addr;
    // A meeting lesson: calling on a student hands them a Jitsi link with their own token.
    let meeting = json_ok(
        class
            .app
            .send(
                Method::POST,
                &format!("/api/v1/courses/{}/lessons", class.course),
                Some(&class.teacher.1),
                Some(&json!({"title": "Talk", "kind": "meeting",
                             "starts_at": "2026-12-01T10:00:00Z", "duration_minutes": 30})),
            )
            .await,
        StatusCode::CREATED,
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let room = format!("lesson:{meeting}");
    let s2 = enrolled_student(&class).await;
    let mut teacher = joined(addr, &class.teacher.1, &room).await;
    let mut a = joined(addr, &class.student.1, &room).await;
    let mut b = joined(addr, &s2.1, &room).await;

    let up =
        |cid: &str, up: bool| json!({"type": "hand", "channel": room, "client_id": cid, "up": up});
    assert_eq!(act(&mut a, up("h-1", true)).await["hand"]["up"], true);
    act(&mut b, up("h-2", true)).await;
    // Raising again keeps the first place.
    act(&mut a, up("h-3", true)).await;
    let q = wait_for(&mut teacher, "hands", |v| {
        v["queue"].as_array().unwrap().len() == 2
    })
    .await;
    assert_eq!(q["queue"][0]["user_id"], class.student.0.to_string(), "{q}");
    assert_eq!(
        act(&mut teacher, up("h-4", true)).await["code"],
        "forbidden"
    );
    // Students never hear the queue.
    a.silent("hands", Duration::from_millis(300)).await;

    let call = act(
        &mut teacher,
        json!({"type": "call_on", "channel": room, "client_id": "k-1", "user_id": class.student.0}),
    )
    .await;
    assert_eq!(call["type"], "ack", "{call}");
    let called = wait_for(&mut a, "called_on", |_| true).await;
    let url = called["meeting_url"].as_str().expect("a meeting link");
    assert!(url.contains("jwt="), "{url}");
    wait_for(&mut a, "hand", |v| v["up"] == false).await;
    let q = wait_for(&mut teacher, "hands", |v| {
        v["queue"].as_array().unwrap().len() == 1
    })
    .await;
    assert_eq!(q["queue"][0]["user_id"], s2.0.to_string());
    b.silent("called_on", Duration::from_millis(300)).await;

    act(
        &mut teacher,
        json!({"type": "hands_down", "channel": room, "client_id": "d-1"}),
    )
    .await;
    wait_for(&mut b, "hand", |v| v["up"] == false).await;
    wait_for(&mut teacher, "hands", |v| v["queue"] == json!([])).await;
}

#[tokio::test]
async fn reactions_are_counted_once_and_sent_as_one_frame_per_second() {
    let class = Class::new(|_| {}).await;
    let room = format!("lesson:{}", class.lesson);
    let addr = class.app.addr;
    let s2 = enrolled_student(&class).await;
    let mut teacher = joined(addr, &class.teacher.1, &room).await;
    let mut a = joined(addr, &class.student.1, &room).await;
    let mut b = joined(addr, &s2.1, &room).await;

    let react = |cid: &str, r: &str| json!({"type": "live_reaction", "channel": room, "client_id": cid, "reaction": r});
    assert_eq!(act(&mut a, react("x-0", "poop")).await["code"], "invalid");
    let mut sent = 0;
    for i in 0..4 {
        let r = act(&mut a, react(&format!("x-{}", i + 1), "thumbs_up")).await;
        assert_eq!(r["reaction"]["counted"], true, "{r}");
        sent += 1;
    }
    // A retried client id is not counted again.
    let retry = act(&mut a, react("x-1", "thumbs_up")).await;
    assert_eq!(retry["reaction"]["counted"], false, "{retry}");
    for i in 0..3 {
        act(&mut b, react(&format!("y-{i}"), "lost")).await;
    }
    let m = act(
        &mut b,
        json!({"type": "mark", "channel": room, "client_id": "m-1", "kind": "confused"}),
    )
    .await;
    assert_eq!(m["marker"]["kind"], "confused", "{m}");
    // More than 5 a second from one connection are refused.
    let mut limited = false;
    for i in 0..8 {
        if act(&mut b, react(&format!("z-{i}"), "clap")).await["code"] == "rate_limited" {
            limited = true;
        }
    }
    assert!(limited);

    // The teacher hears sums, in few frames.
    let mut thumbs = 0;
    let mut lost = 0;
    let mut confused = 0;
    let mut frames = 0;
    let start = Instant::now();
    while (thumbs < sent || lost < 3 || confused < 1) && start.elapsed() < Duration::from_secs(5) {
        let v = wait_for(&mut teacher, "reactions", |_| true).await;
        frames += 1;
        thumbs += v["counts"]["thumbs_up"].as_i64().unwrap_or(0);
        lost += v["counts"]["lost"].as_i64().unwrap_or(0);
        confused += v["counts"]["confused"].as_i64().unwrap_or(0);
        assert_eq!(v["window_ms"], 1000);
    }
    assert_eq!((thumbs, lost, confused), (sent, 3, 1));
    assert!(frames <= 3, "{frames} frames for one burst");

    // Stored per 10 s bucket for the replay (just after the frame went out).
    let mut db = sqlx::PgConnection::connect(&class.app.database_url)
        .await
        .unwrap();
    let mut stored = 0;
    for _ in 0..40 {
        stored = sqlx::query_scalar(
            "SELECT coalesce(sum(count), 0)::bigint FROM lesson_reaction_buckets
             WHERE lesson_id = $1 AND kind = 'thumbs_up'",
        )
        .bind(uuid::Uuid::parse_str(&class.lesson).unwrap())
        .fetch_one(&mut db)
        .await
        .unwrap();
        if stored == sent {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stored, sent);
}

/// A ready recording of the class's lesson that started `ago` seconds ago and lasts `secs`.
async fn recording(class: &Class, ago: i64, secs: i64) -> String {
    let mut db = sqlx::PgConnection::connect(&class.app.database_url)
        .await
        .unwrap();
    let id = uuid::Uuid::now_v7();
    sqlx::query(
        "INSERT INTO recordings (id, live_stream_id, owner_id, session_id, status, started_at,
                                 ended_at, ready_at, duration_ms)
         SELECT $1, l.live_stream_id, $2, $1, 'ready', now() - make_interval(secs => $3),
                now(), now(), $4
         FROM lessons l WHERE l.id = $5",
    )
    .bind(id)
    .bind(class.teacher.0)
    .bind(ago as f64)
    .bind(secs * 1000)
    .bind(uuid::Uuid::parse_str(&class.lesson).unwrap())
    .execute(&mut db)
    .await
    .unwrap();
    id.to_string()
}

#[tokio::test]
async fn replay_coverage_merges_overlapping_plays_and_the_timeline_replays_the_lesson() {
    let class = Class::new(|_| {}).await;
    let room = format!("lesson:{}", class.lesson);
    let addr = class.app.addr;
    let app = &class.app;
    // The lesson happened: a chat message, a pinned question, a confused mark, during a
    // recording that started 20 s ago and lasts 100 s.
    let rec = recording(&class, 20, 100).await;
    let mut teacher = joined(addr, &class.teacher.1, &room).await;
    let mut student = joined(addr, &class.student.1, &room).await;
    let said = student.say(&room, "c-1", "I *think* so").await;
    assert_eq!(said["type"], "ack");
    let q = act(
        &mut student,
        json!({"type": "ask", "channel": room, "client_id": "q-1", "body": "What is a photon?", "anonymous": true}),
    )
    .await;
    let qid = q["question"]["id"].as_str().unwrap().to_string();
    act(
        &mut teacher,
        json!({"type": "question_state", "channel": room, "client_id": "s-1", "question_id": qid, "state": "pinned"}),
    )
    .await;
    act(
        &mut student,
        json!({"type": "mark", "channel": room, "client_id": "m-1", "kind": "confused"}),
    )
    .await;
    act(
        &mut student,
        json!({"type": "mark", "channel": room, "client_id": "m-2", "kind": "bookmark"}),
    )
    .await;

    let progress = |ranges: Value| {
        let url = format!("/api/v1/recordings/{rec}/progress");
        let token = class.student.1.clone();
        async move {
            app.send(
                Method::POST,
                &url,
                Some(&token),
                Some(&json!({"ranges": ranges})),
            )
            .await
        }
    };
    let p = json_ok(progress(json!([[0, 30]])).await, StatusCode::OK).await;
    assert_eq!(p["watched_s"], 30);
    let p = json_ok(
        progress(json!([[20, 50], [60, 70.4]])).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(p["ranges"], json!([[0, 50], [60, 71]]), "{p}");
    assert_eq!(p["watched_s"], 61);
    // Watching the same seconds again adds nothing.
    let p = json_ok(progress(json!([[0, 50]])).await, StatusCode::OK).await;
    assert_eq!(p["watched_s"], 61);
    assert_problem(
        progress(json!([[10, 5]])).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_problem(
        progress(json!([[0, 500]])).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    let stranger = app
        .send(
            Method::POST,
            &format!("/api/v1/recordings/{rec}/progress"),
            Some(&class.stranger.1),
            Some(&json!({"ranges": [[0, 10]]})),
        )
        .await;
    assert_problem(stranger, StatusCode::NOT_FOUND, "not_found").await;

    let mine = |token: String| {
        let url = format!("/api/v1/lessons/{}/attendance/me", class.lesson);
        async move {
            json_ok(
                app.send(Method::GET, &url, Some(&token), None).await,
                StatusCode::OK,
            )
            .await
        }
    };
    let me = mine(class.student.1.clone()).await;
    assert_eq!(me["replay_coverage"], 0.61);
    assert_eq!(me["completed"], false);
    json_ok(progress(json!([[50, 60], [71, 95]])).await, StatusCode::OK).await;
    let me = mine(class.student.1.clone()).await;
    assert_eq!(me["completed"], true, "{me}");

    // The timeline: chat and the question at their moments, the pin as a chapter, the mark in
    // the heat strip, the student's bookmarks; an anonymous question's author is shown to its
    // author and to teachers only.
    let t = json_ok(
        app.send(
            Method::GET,
            &format!("/api/v1/recordings/{rec}/timeline"),
            Some(&class.student.1),
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(t["duration_s"], 100.0);
    let chat = t["chat"].as_array().unwrap();
    assert_eq!(chat.len(), 1, "{t}");
    let at = chat[0]["t"].as_f64().unwrap();
    assert!((15.0..=40.0).contains(&at), "chat at {at}");
    assert!(chat[0]["html"].as_str().unwrap().contains("<em>think</em>"));
    assert_eq!(t["questions"][0]["author_id"], class.student.0.to_string());
    let classmate = enrolled_student(&class).await;
    let seen_by_classmate = json_ok(
        app.send(
            Method::GET,
            &format!("/api/v1/recordings/{rec}/timeline"),
            Some(&classmate.1),
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert!(seen_by_classmate["questions"][0]["author_id"].is_null());
    assert_eq!(seen_by_classmate["bookmarks"], json!([]));
    assert!(
        t["chapters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["source"] == "pin"),
        "{t}"
    );
    let heat: i64 = t["heat"]["confused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .sum();
    assert_eq!(heat, 1);
    assert_eq!(t["heat"]["confused"].as_array().unwrap().len(), 10);
    let kinds: Vec<&str> = t["bookmarks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.len(), 2, "{t}");

    // Chapters by hand (teachers only); they join the pinned ones.
    let put = |token: &str, body: Value| {
        let url = format!("/api/v1/recordings/{rec}/chapters");
        let token = token.to_owned();
        async move { app.send(Method::PUT, &url, Some(&token), Some(&body)).await }
    };
    let forbidden = put(
        &class.student.1,
        json!({"chapters": [{"t": 0, "title": "Mine"}]}),
    )
    .await;
    assert_problem(forbidden, StatusCode::FORBIDDEN, "forbidden").await;
    let r = put(
        &class.teacher.1,
        json!({"chapters": [{"t": 0, "title": "Start"}, {"t": 60, "title": "Photons"}]}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let t = json_ok(
        app.send(
            Method::GET,
            &format!("/api/v1/recordings/{rec}/timeline"),
            Some(&class.teacher.1),
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let titles: Vec<&str> = t["chapters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles.first(), Some(&"Start"), "{t}");
    assert!(
        titles.contains(&"Photons") && titles.contains(&"What is a photon?"),
        "{titles:?}"
    );
    assert_eq!(t["questions"][0]["author_id"], class.student.0.to_string());
}

#[tokio::test]
async fn quality_reports_are_accepted_from_viewers_only_and_aggregated_for_teachers() {
    let class = Class::new(|_| {}).await;
    let app = &class.app;
    let report = |session: &str, startup: i64, rebuffer_ms: i64| {
        json!({"session_id": session, "lesson_id": class.lesson, "live": true, "mode": "webrtc",
               "rendition": "720p", "startup_ms": startup, "rebuffer_count": 1,
               "rebuffer_ms": rebuffer_ms, "played_ms": 9000, "errors": 0, "latency_ms": 400})
    };
    let post = |token: &str, body: Value| {
        let token = token.to_owned();
        async move {
            app.send(
                Method::POST,
                "/api/v1/playback/reports",
                Some(&token),
                Some(&body),
            )
            .await
        }
    };
    let s1 = uuid::Uuid::new_v4().to_string();
    let s2 = uuid::Uuid::new_v4().to_string();
    let r = post(
        &class.student.1,
        json!({"reports": [report(&s1, 800, 1000), report(&s2, 1200, 0)]}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    // A running total replaces the session's previous one.
    let r = post(
        &class.student.1,
        json!({"reports": [report(&s1, 800, 1000)]}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = post(
        &class.stranger.1,
        json!({"reports": [report(&uuid::Uuid::new_v4().to_string(), 1, 0)]}),
    )
    .await;
    assert_problem(r, StatusCode::NOT_FOUND, "not_found").await;
    let mut bad = report(&s1, 800, 0);
    bad["mode"] = json!("carrier-pigeon");
    assert_problem(
        post(&class.student.1, json!({"reports": [bad]})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_problem(
        post(&class.student.1, json!({"reports": []})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;

    let q = json_ok(
        app.send(
            Method::GET,
            &format!("/api/v1/lessons/{}/quality", class.lesson),
            Some(&class.teacher.1),
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(q["sessions"], 2, "{q}");
    assert_eq!(q["viewers_now"], 2);
    assert_eq!(q["startup_ms"]["p50"], 1000.0);
    assert_eq!(q["rebuffer_ratio"], 0.053, "{q}");
    assert_eq!(q["by_mode"][0]["mode"], "webrtc");
    let r = app
        .send(
            Method::GET,
            &format!("/api/v1/lessons/{}/quality", class.lesson),
            Some(&class.student.1),
            None,
        )
        .await;
    assert_problem(r, StatusCode::FORBIDDEN, "forbidden").await;

    // Ops see every lesson watched lately; teachers do not.
    let (_, ops) = app
        .user_with(
            &crate::helpers::unique_email("ops"),
            "a fine passphrase",
            &[wemaster::users::Role::Ops],
        )
        .await;
    let all = json_ok(
        app.send(
            Method::GET,
            "/api/v1/admin/playback-quality?minutes=5",
            Some(&ops),
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let mine = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["lesson_id"] == class.lesson.as_str())
        .expect("the lesson is in the overview");
    assert_eq!(mine["quality"]["sessions"], 2);
    let r = app
        .send(
            Method::GET,
            "/api/v1/admin/playback-quality",
            Some(&class.teacher.1),
            None,
        )
        .await;
    assert_problem(r, StatusCode::FORBIDDEN, "forbidden").await;
}

/// Mark the class's lesson live from now on (as the live supervisor does when a publisher
/// starts): attendance counts time in the room while the lesson is live.
async fn live_from_now(class: &Class) {
    let mut db = sqlx::PgConnection::connect(&class.app.database_url)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO live_stream_events (id, live_stream_id, kind)
         SELECT $1, live_stream_id, 'live_stream.active' FROM lessons WHERE id = $2",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(uuid::Uuid::parse_str(&class.lesson).unwrap())
    .execute(&mut db)
    .await
    .unwrap();
}

#[tokio::test]
async fn two_nodes_count_answers_and_votes_once_and_attendance_survives_a_node_killed_mid_lesson() {
    let class = Class::new(|_| {}).await;
    let room = format!("lesson:{}", class.lesson);
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("wm:chat:interact-{}:", uuid::Uuid::new_v4().simple());
    // Heartbeats every second, so attendance is fresh within a second.
    let env = [("WEMASTER__CHAT__PING_INTERVAL_S", "1")];
    let mut a = Node::start_with(&class, &prefix, dir.path(), "a", &env);
    let b = Node::start_with(&class, &prefix, dir.path(), "b", &env);
    a.wait_ready().await;
    b.wait_ready().await;
    live_from_now(&class).await;
    let s2 = enrolled_student(&class).await;

    let mut teacher_a = joined(a.addr, &class.teacher.1, &room).await;
    let mut teacher_b = joined(b.addr, &class.teacher.1, &room).await;
    // Student 1's presence starts inside this join (timed on both sides: the joins are slow
    // when the machine is loaded, and the bounds below must hold whatever they take).
    let before_join = Instant::now();
    let mut s1_a = joined(a.addr, &class.student.1, &room).await;
    let after_join = Instant::now();
    let mut s1_b = joined(b.addr, &class.student.1, &room).await;
    let mut s2_b = joined(b.addr, &s2.1, &room).await;

    let opened = act(
        &mut teacher_a,
        json!({"type": "poll_open", "channel": room, "client_id": "p-1", "question": "Which?",
               "options": ["a", "b"]}),
    )
    .await;
    let poll = opened["poll"]["id"].as_str().unwrap().to_string();
    let answer = |cid: &str, c: i64| json!({"type": "poll_answer", "channel": room, "client_id": cid, "poll_id": poll, "choices": [c]});
    // Student 1 answers on both nodes (a retry through another node), student 2 on B.
    act(&mut s1_a, answer("a-1", 0)).await;
    act(&mut s1_b, answer("a-1", 0)).await;
    act(&mut s2_b, answer("b-1", 1)).await;
    for t in [&mut teacher_a, &mut teacher_b] {
        let r = wait_for(t, "poll_results", |v| {
            v["poll_id"] == poll && v["answered"] == 2
        })
        .await;
        assert_eq!(r["counts"], json!([1, 1]), "{r}");
    }

    // A question voted by student 1 from both nodes counts once.
    let q = act(
        &mut s2_b,
        json!({"type": "ask", "channel": room, "client_id": "q-1", "body": "Again?"}),
    )
    .await;
    let qid = q["question"]["id"].as_str().unwrap().to_string();
    let vote = |cid: &str| json!({"type": "vote", "channel": room, "client_id": cid, "question_id": qid, "on": true});
    act(&mut s1_a, vote("v-1")).await;
    let v = act(&mut s1_b, vote("v-2")).await;
    assert_eq!(v["question"]["votes"], 1, "{v}");
    wait_for(&mut teacher_a, "question", |v| v["question"]["votes"] == 1).await;

    // Node A dies mid-lesson; student 1 comes back on a new node A' (down long enough that
    // losing B's interval would show: at least 4 s).
    tokio::time::sleep(Duration::from_secs(3)).await;
    a.kill9();
    drop((teacher_a, s1_a));
    tokio::time::sleep(Duration::from_secs(4)).await;
    let a2 = Node::start_with(&class, &prefix, dir.path(), "a2", &env);
    a2.wait_ready().await;
    // The switch from B to A' leaves a gap of at most this long.
    let switch = Instant::now();
    drop(s1_b);
    let mut s1_again = joined(a2.addr, &class.student.1, &room).await;
    let gap = switch.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let answered_again = act(&mut s1_again, answer("a-1", 0)).await;
    assert_eq!(answered_again["type"], "ack");

    // The attendance is read at some moment of the GET below: no earlier than this.
    let shortest = after_join.elapsed().as_secs_f64();
    let att = json_ok(
        reqwest::Client::new()
            .get(format!(
                "http://{}/api/v1/lessons/{}/attendance",
                b.addr, class.lesson
            ))
            .bearer_auth(&class.teacher.1)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    let me = att["students"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["user_id"] == class.student.0.to_string())
        .unwrap()
        .clone();
    let live_s = me["live_s"].as_f64().unwrap();
    let longest = before_join.elapsed().as_secs_f64();
    // Every second in the room counted (the connection on B kept it until the reconnect): at
    // most the switch's gap and the open interval's heartbeat (1 s, 2.5 s on a loaded machine)
    // missing, far less than the ≥ 4 s node A was down. None counted twice for the two tabs
    // (which overlapped for ≥ 7 s); the interval A left open ended at its last heartbeat.
    assert!(
        live_s >= shortest - gap - 2.5 && live_s <= longest + 0.1,
        "live {live_s}, in the room between {shortest:.1} and {longest:.1} s, gap {gap:.1} s: {me}"
    );
    assert!(!me["intervals"].as_array().unwrap().is_empty(), "{me}");

    // CSV for the teacher.
    let csv = reqwest::Client::new()
        .get(format!(
            "http://{}/api/v1/lessons/{}/attendance?format=csv",
            b.addr, class.lesson
        ))
        .bearer_auth(&class.teacher.1)
        .send()
        .await
        .unwrap();
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let body = csv.text().await.unwrap();
    assert!(
        body.starts_with("user_id,name,email,enrollment,live_minutes"),
        "{body}"
    );
    assert!(body.contains(&class.student.0.to_string()));
}

#[tokio::test]
async fn attendance_of_a_student_alone_ends_at_the_last_heartbeat_of_a_killed_node() {
    let class = Class::new(|_| {}).await;
    let room = format!("lesson:{}", class.lesson);
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("wm:chat:attend-{}:", uuid::Uuid::new_v4().simple());
    let env = [("WEMASTER__CHAT__PING_INTERVAL_S", "1")];
    let mut a = Node::start_with(&class, &prefix, dir.path(), "a", &env);
    a.wait_ready().await;
    live_from_now(&class).await;
    // Each presence is timed on both sides (joins and reads are slow on a loaded machine).
    let t0 = Instant::now();
    let s = joined(a.addr, &class.student.1, &room).await;
    let t1 = Instant::now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    a.kill9();
    let first = (t1.elapsed().as_secs_f64(), t0.elapsed().as_secs_f64());
    drop(s);
    // Down for 5 s, then the student is back for 3 s on a restarted node.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let a2 = Node::start_with(&class, &prefix, dir.path(), "a2", &env);
    a2.wait_ready().await;
    let t2 = Instant::now();
    let _s = joined(a2.addr, &class.student.1, &room).await;
    let t3 = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let second_min = t3.elapsed().as_secs_f64();
    let me = json_ok(
        reqwest::Client::new()
            .get(format!(
                "http://{}/api/v1/lessons/{}/attendance/me",
                a2.addr, class.lesson
            ))
            .bearer_auth(&class.student.1)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    let second_max = t2.elapsed().as_secs_f64();
    let live_s = me["live_s"].as_f64().unwrap();
    assert_eq!(me["intervals"].as_array().unwrap().len(), 2, "{me}");
    // ≈ 4 s + ≈ 3 s; the 5 s the node was down are not counted. Each open interval may lack up
    // to a heartbeat (1 s; 2 s on a loaded machine) at its end.
    let (lo, hi) = (first.0 + second_min - 4.0, first.1 + second_max + 0.1);
    assert!(
        (lo..=hi).contains(&live_s),
        "live {live_s}, expected {lo:.1}..{hi:.1}: {me}"
    );
}

#[tokio::test]
async fn the_players_live_sessions_count_as_attendance_without_a_socket() {
    let class = Class::new(|_| {}).await;
    live_from_now(&class).await;
    let app = &class.app;
    let session = uuid::Uuid::new_v4().to_string();
    let report = |played: i64| {
        json!({"reports": [{"session_id": session, "lesson_id": class.lesson, "live": true,
               "mode": "hls", "startup_ms": 900, "rebuffer_count": 0, "rebuffer_ms": 0,
               "played_ms": played, "errors": 0}]})
    };
    let post = |body: Value| {
        let token = class.student.1.clone();
        async move {
            app.send(
                Method::POST,
                "/api/v1/playback/reports",
                Some(&token),
                Some(&body),
            )
            .await
        }
    };
    assert_eq!(post(report(0)).await.status(), StatusCode::ACCEPTED);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(post(report(3000)).await.status(), StatusCode::ACCEPTED);
    let me = json_ok(
        app.send(
            Method::GET,
            &format!("/api/v1/lessons/{}/attendance/me", class.lesson),
            Some(&class.student.1),
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let live_s = me["live_s"].as_f64().unwrap();
    assert!((2.5..=4.0).contains(&live_s), "live {live_s}: {me}");
    assert_eq!(me["intervals"].as_array().unwrap().len(), 1, "{me}");
}
