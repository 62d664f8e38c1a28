//! Courses, lessons, enrollment, the access policy at the HTTP edge, lesson playback and Jitsi
//! meeting tokens.

use base64::Engine;
use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use wemaster::users::Role;

use crate::helpers::{TestApp, assert_problem, spawn_app_with, unique_email};

const PW: &str = "a fine passphrase";
const JITSI_SECRET: &str = "jitsi-shared-secret-0123456789abcdef";
const PLAYBACK_SECRET: &str = "playback-secret-0123456789abcdef0123";

async fn app() -> TestApp {
    spawn_app_with(|s| {
        s.jitsi.app_secret = wemaster::config::Secret::new(JITSI_SECRET);
        s.jitsi.app_id = "wemaster-test".into();
        s.jitsi.audience = "jitsi".into();
        s.jitsi.subject = "meet.school.example".into();
        s.jitsi.base_url = "https://meet.school.example".parse().unwrap();
        s.playback.secret = wemaster::config::Secret::new(PLAYBACK_SECRET);
    })
    .await
}

async fn user(app: &TestApp, tag: &str, roles: &[Role]) -> (uuid::Uuid, String) {
    app.user_with(&unique_email(tag), PW, roles).await
}

async fn json_of(r: reqwest::Response, status: StatusCode) -> Value {
    let got = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    assert_eq!(got, status, "{body}");
    body
}

async fn create_course(app: &TestApp, token: &str, body: Value) -> Value {
    json_of(
        app.send(Method::POST, "/api/v1/courses", Some(token), Some(&body))
            .await,
        StatusCode::CREATED,
    )
    .await
}

async fn create_lesson(
    app: &TestApp,
    token: &str,
    course: &str,
    kind: &str,
    preview: bool,
) -> Value {
    json_of(
        app.send(
            Method::POST,
            &format!("/api/v1/courses/{course}/lessons"),
            Some(token),
            Some(&json!({"title": "Lesson one", "kind": kind,
                         "starts_at": "2026-12-01T09:00:00+08:00", "duration_minutes": 45,
                         "time_zone": "Asia/Shanghai", "free_preview": preview})),
        )
        .await,
        StatusCode::CREATED,
    )
    .await
}

fn b64d(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .expect("base64url")
}

/// What prosody's token verification (`token_verification.lua`, documented in
/// jitsi-meet/doc/tokens.md / prosody-plugins) checks, for HS256 with the shared app secret:
/// three parts, the `alg` it is configured for (never `none`), the signature, `iss` = app id,
/// `aud` accepted, `sub` = domain, `room` = the room joined, `exp` in the future and `nbf` not
/// in the future with no leeway. It also requires the `context.features` we rely on.
fn prosody_verify_hs256(jwt: &str, secret: &str, room: &str) -> Value {
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWS compact token");
    let header: Value = serde_json::from_slice(&b64d(parts[0])).unwrap();
    assert_eq!(header["alg"], "HS256", "alg");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
    mac.verify_slice(&b64d(parts[2])).expect("signature");
    let claims: Value = serde_json::from_slice(&b64d(parts[1])).unwrap();
    check_claims(&claims, room);
    claims
}

fn check_claims(claims: &Value, room: &str) {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert_eq!(claims["iss"], "wemaster-test", "iss = app_id");
    assert_eq!(claims["aud"], "jitsi", "aud");
    assert_eq!(claims["sub"], "meet.school.example", "sub = domain");
    assert_eq!(claims["room"], room, "room");
    let exp = claims["exp"].as_i64().expect("exp");
    let nbf = claims["nbf"].as_i64().expect("nbf");
    assert!(exp > now, "not expired");
    assert!(exp - now <= 3600, "short-lived: {}", exp - now);
    assert!(nbf <= now, "nbf in the past (prosody allows no skew)");
    let features = &claims["context"]["features"];
    assert!(features.is_object(), "explicit features: {claims}");
    assert!(features["recording"].is_boolean() && features["livestreaming"].is_boolean());
    let u = &claims["context"]["user"];
    for k in ["id", "name", "email", "avatar", "affiliation"] {
        assert!(u[k].is_string(), "context.user.{k}: {claims}");
    }
}

#[tokio::test]
async fn a_teacher_builds_a_course_a_student_enrolls_and_plays_and_a_stranger_is_refused() {
    let app = app().await;
    let (teacher_id, teacher) = user(&app, "teacher", &[Role::Teacher]).await;
    let (student_id, student) = user(&app, "student", &[Role::Student]).await;
    let (_, stranger) = user(&app, "stranger", &[Role::Student]).await;

    let course = create_course(
        &app,
        &teacher,
        json!({"title": "Rust for teachers", "summary": "Ownership without tears",
               "description": "# Welcome\n\n**bold** <img src=x onerror=alert(1)>\n\n<script>alert(1)</script>",
               "price": {"amount": 0, "currency": "CNY"}, "visibility": "published",
               "tags": ["Rust", "systems"], "language": "en"}),
    )
    .await;
    assert_eq!(course["owner_id"], teacher_id.to_string());
    assert_eq!(course["price"], json!({"amount": 0, "currency": "CNY"}));
    assert_eq!(course["tags"], json!(["rust", "systems"]));
    let html = course["description_html"].as_str().unwrap();
    assert!(html.contains("<h1>Welcome</h1>") && html.contains("<strong>bold</strong>"));
    assert!(
        !html.contains("script") && !html.contains("onerror"),
        "{html}"
    );
    let cid = course["id"].as_str().unwrap().to_string();

    let lesson = create_lesson(&app, &teacher, &cid, "meeting", false).await;
    assert_eq!(lesson["status"], "scheduled");
    assert_eq!(lesson["starts_at"], "2026-12-01T01:00:00Z", "stored in UTC");
    assert_eq!(lesson["time_zone"], "Asia/Shanghai");
    assert!(lesson["rtmp_url"].as_str().unwrap().starts_with("rtmp://"));
    assert!(lesson["stream_key"].as_str().unwrap().starts_with("wmk_"));
    assert_eq!(lesson["access"]["moderate"], true);
    let lid = lesson["id"].as_str().unwrap().to_string();
    let stream_id = lesson["live_stream_id"].as_str().unwrap().to_string();

    // The student enrolls in the free course and finds it under "my courses".
    let e = json_of(
        app.send(
            Method::POST,
            &format!("/api/v1/courses/{cid}/enrollments"),
            Some(&student),
            Some(&json!({})),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(e["status"], "active");
    assert_eq!(e["source"], "free");
    let mine = json_of(
        app.get_auth("/api/v1/courses/enrolled", &student).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(mine["items"][0]["id"], cid.as_str());

    // A student sees the lesson without the teacher's ingest details.
    let seen = json_of(
        app.get_auth(&format!("/api/v1/lessons/{lid}"), &student)
            .await,
        StatusCode::OK,
    )
    .await;
    assert!(seen.get("rtmp_url").is_none() && seen.get("live_stream_id").is_none());
    assert_eq!(
        seen["access"],
        json!({"join_meeting": true, "watch_live": true,
        "watch_replay": true, "chat": true, "moderate": false})
    );

    // Playback: a signed live URL that the HLS route's signer accepts.
    let p = json_of(
        app.get_auth(&format!("/api/v1/lessons/{lid}/playback"), &student)
            .await,
        StatusCode::OK,
    )
    .await;
    let url = p["live"]["hls_url"].as_str().unwrap();
    assert!(
        url.contains(&format!("/hls/live/{stream_id}/index.m3u8?token=")),
        "{url}"
    );
    let token = url.split("token=").nth(1).unwrap();
    let signer =
        wemaster::playback::PlaybackSigner::new(&wemaster::config::Secret::new(PLAYBACK_SECRET));
    assert_eq!(
        signer.verify(
            &wemaster::playback::live_resource(stream_id.parse().unwrap()),
            Some(token),
            time::OffsetDateTime::now_utc()
        ),
        wemaster::playback::TokenCheck::Valid
    );
    assert_eq!(p["replays"], json!([]));

    // Meeting token: a member without recording or livestreaming.
    let m = json_of(
        app.get_auth(&format!("/api/v1/lessons/{lid}/meeting-token"), &student)
            .await,
        StatusCode::OK,
    )
    .await;
    let room = m["room"].as_str().unwrap();
    assert!(room.len() >= 32, "unguessable room name: {room}");
    assert_eq!(
        m["meeting_url"],
        format!(
            "https://meet.school.example/{room}?jwt={}",
            m["token"].as_str().unwrap()
        )
    );
    let claims = prosody_verify_hs256(m["token"].as_str().unwrap(), JITSI_SECRET, room);
    assert_eq!(claims["context"]["user"]["id"], student_id.to_string());
    assert_eq!(claims["context"]["user"]["affiliation"], "member");
    assert_eq!(claims["context"]["features"]["recording"], false);
    assert_eq!(claims["context"]["features"]["livestreaming"], false);
    assert!(m.get("rtmp_url").is_none());
    // A token signed with another secret fails the same verification.
    let r = std::panic::catch_unwind(|| {
        prosody_verify_hs256(m["token"].as_str().unwrap(), "wrong", room)
    });
    assert!(r.is_err(), "a wrong secret must fail");

    // The teacher is the owner, with recording and livestreaming, and gets the RTMP server.
    let t = json_of(
        app.get_auth(&format!("/api/v1/lessons/{lid}/meeting-token"), &teacher)
            .await,
        StatusCode::OK,
    )
    .await;
    let claims = prosody_verify_hs256(t["token"].as_str().unwrap(), JITSI_SECRET, room);
    assert_eq!(claims["context"]["user"]["affiliation"], "owner");
    assert_eq!(claims["context"]["features"]["recording"], true);
    assert_eq!(claims["context"]["features"]["livestreaming"], true);
    assert!(t["rtmp_url"].as_str().unwrap().starts_with("rtmp://"));

    // A stranger: 403 for both; anonymous: 401.
    assert_problem(
        app.get_auth(&format!("/api/v1/lessons/{lid}/playback"), &stranger)
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_problem(
        app.get_auth(&format!("/api/v1/lessons/{lid}/meeting-token"), &stranger)
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_problem(
        app.get(&format!("/api/v1/lessons/{lid}/playback")).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;

    // Leaving ends access.
    let left = json_of(
        app.send(
            Method::POST,
            &format!("/api/v1/courses/{cid}/leave"),
            Some(&student),
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(left["status"], "left");
    assert_problem(
        app.get_auth(&format!("/api/v1/lessons/{lid}/playback"), &student)
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
}

#[tokio::test]
async fn paid_courses_open_by_grant_and_free_previews_play_for_everyone() {
    let app = app().await;
    let (_, teacher) = user(&app, "teacher", &[Role::Teacher]).await;
    let (co_id, co) = user(&app, "co", &[Role::Teacher]).await;
    let (student_id, student) = user(&app, "student", &[Role::Student]).await;
    let course = create_course(
        &app,
        &teacher,
        json!({"title": "Paid course", "price": {"amount": 9900, "currency": "CNY"}, "visibility": "published"}),
    )
    .await;
    let cid = course["id"].as_str().unwrap().to_string();
    let lesson = create_lesson(&app, &teacher, &cid, "broadcast", false).await;
    let lid = lesson["id"].as_str().unwrap().to_string();
    let preview = create_lesson(&app, &teacher, &cid, "broadcast", true).await;
    let pid = preview["id"].as_str().unwrap().to_string();

    assert_problem(
        app.send(
            Method::POST,
            &format!("/api/v1/courses/{cid}/enrollments"),
            Some(&student),
            Some(&json!({})),
        )
        .await,
        StatusCode::FORBIDDEN,
        "payment_required",
    )
    .await;
    // The free preview plays for anyone, even anonymous, but a broadcast has no meeting.
    json_of(
        app.get(&format!("/api/v1/lessons/{pid}/playback")).await,
        StatusCode::OK,
    )
    .await;
    assert_problem(
        app.get_auth(&format!("/api/v1/lessons/{pid}/meeting-token"), &student)
            .await,
        StatusCode::CONFLICT,
        "not_a_meeting",
    )
    .await;
    assert_problem(
        app.get_auth(&format!("/api/v1/lessons/{lid}/playback"), &student)
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;

    // A co-teacher may grant; the student then plays.
    let r = app
        .send(
            Method::PUT,
            &format!("/api/v1/courses/{cid}/members/{co_id}"),
            Some(&teacher),
            Some(&json!({"role": "co_teacher"})),
        )
        .await;
    json_of(r, StatusCode::OK).await;
    let g = json_of(
        app.send(
            Method::POST,
            &format!("/api/v1/courses/{cid}/enrollments"),
            Some(&co),
            Some(&json!({"user_id": student_id})),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(g["source"], "grant");
    json_of(
        app.get_auth(&format!("/api/v1/lessons/{lid}/playback"), &student)
            .await,
        StatusCode::OK,
    )
    .await;
    // A student cannot grant.
    assert_problem(
        app.send(
            Method::POST,
            &format!("/api/v1/courses/{cid}/enrollments"),
            Some(&student),
            Some(&json!({"user_id": co_id})),
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    let roster = json_of(
        app.get_auth(&format!("/api/v1/courses/{cid}/enrollments"), &co)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(roster["items"].as_array().unwrap().len(), 1);
    let teaching = json_of(
        app.get_auth("/api/v1/courses/teaching", &co).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(teaching["items"][0]["id"], cid.as_str());
}

#[tokio::test]
async fn the_catalogue_lists_published_courses_with_search_filters_and_cursors() {
    let app = app().await;
    let (_, teacher) = user(&app, "teacher", &[Role::Teacher]).await;
    let (_, student) = user(&app, "student", &[Role::Student]).await;
    for (title, tags, price, vis) in [
        ("Rust ownership", vec!["rust"], 0, "published"),
        ("Calculus basics", vec!["math"], 5000, "published"),
        (
            "Advanced Rust async",
            vec!["rust", "async"],
            9900,
            "published",
        ),
        ("Secret draft about rust", vec!["rust"], 0, "draft"),
    ] {
        create_course(
            &app,
            &teacher,
            json!({"title": title, "tags": tags, "visibility": vis,
            "price": {"amount": price, "currency": "CNY"}}),
        )
        .await;
    }
    let all = json_of(app.get("/api/v1/courses").await, StatusCode::OK).await;
    assert_eq!(
        all["items"].as_array().unwrap().len(),
        3,
        "drafts are not listed"
    );
    let rust = json_of(app.get("/api/v1/courses?q=rust").await, StatusCode::OK).await;
    assert_eq!(rust["items"].as_array().unwrap().len(), 2);
    let tag = json_of(app.get("/api/v1/courses?tag=async").await, StatusCode::OK).await;
    assert_eq!(tag["items"][0]["title"], "Advanced Rust async");
    let free = json_of(app.get("/api/v1/courses?free=true").await, StatusCode::OK).await;
    assert_eq!(free["items"].as_array().unwrap().len(), 1);

    // Price order, one at a time through the cursor.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/courses?sort=price_desc&limit=1&cursor={c}"),
            None => "/api/v1/courses?sort=price_desc&limit=1".into(),
        };
        let page = json_of(app.get(&path).await, StatusCode::OK).await;
        for c in page["items"].as_array().unwrap() {
            seen.push(c["price"]["amount"].as_i64().unwrap());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, vec![9900, 5000, 0]);

    // A draft is 404 to students, visible to its teacher.
    let mine = json_of(
        app.get_auth("/api/v1/courses/teaching", &teacher).await,
        StatusCode::OK,
    )
    .await;
    let draft = mine["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["visibility"] == "draft")
        .unwrap();
    let did = draft["id"].as_str().unwrap();
    assert_problem(
        app.get_auth(&format!("/api/v1/courses/{did}"), &student)
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    json_of(
        app.get_auth(&format!("/api/v1/courses/{did}"), &teacher)
            .await,
        StatusCode::OK,
    )
    .await;
    // Another teacher cannot edit it.
    let (_, other) = user(&app, "other", &[Role::Teacher]).await;
    let r = app
        .send(
            Method::PATCH,
            &format!("/api/v1/courses/{did}"),
            Some(&other),
            Some(&json!({"title": "x"})),
        )
        .await;
    assert_problem(r, StatusCode::NOT_FOUND, "not_found").await;
    assert_problem(
        app.get("/api/v1/courses?sort=sideways").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
}

#[tokio::test]
async fn rs256_meeting_tokens_verify_with_the_key_served_for_the_asap_key_server() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("jitsi.pem");
    let app = spawn_app_with(|s| {
        s.jitsi.algorithm = wemaster::config::JitsiAlgorithm::Rs256;
        s.jitsi.rs256_key_file = key_file.clone();
        s.jitsi.rs256_kid = "wemaster-test-kid".into();
        s.jitsi.app_id = "wemaster-test".into();
        s.jitsi.subject = "meet.school.example".into();
    })
    .await;
    let (_, teacher) = user(&app, "teacher", &[Role::Teacher]).await;
    let course = create_course(
        &app,
        &teacher,
        json!({"title": "Meetings", "visibility": "published"}),
    )
    .await;
    let cid = course["id"].as_str().unwrap().to_string();
    let lesson = create_lesson(&app, &teacher, &cid, "meeting", false).await;
    let lid = lesson["id"].as_str().unwrap();
    let m = json_of(
        app.get_auth(&format!("/api/v1/lessons/{lid}/meeting-token"), &teacher)
            .await,
        StatusCode::OK,
    )
    .await;
    let jwt = m["token"].as_str().unwrap();

    // Prosody: read `kid`, fetch <asap_key_server>/<sha256(kid) hex>.pem, verify RS256.
    let header: Value = serde_json::from_slice(&b64d(jwt.split('.').next().unwrap())).unwrap();
    assert_eq!(header["alg"], "RS256");
    let kid = header["kid"].as_str().unwrap();
    assert_eq!(kid, "wemaster-test-kid");
    let file = format!("{}.pem", hex::encode(Sha256::digest(kid.as_bytes())));
    let r = app.get(&format!("/jitsi/asap/{file}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let pem = r.text().await.unwrap();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.leeway = 0;
    v.set_audience(&["jitsi"]);
    v.set_issuer(&["wemaster-test"]);
    v.validate_nbf = true;
    let data = jsonwebtoken::decode::<Value>(
        jwt,
        &jsonwebtoken::DecodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
        &v,
    )
    .expect("RS256 signature, iss, aud, exp, nbf");
    check_claims(&data.claims, m["room"].as_str().unwrap());
    // Unknown key files are 404; the key file was written.
    assert_eq!(
        app.get("/jitsi/asap/0000.pem").await.status(),
        StatusCode::NOT_FOUND
    );
    assert!(key_file.exists());
}
