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

    // The studio previews unsaved text with the same rendering; students cannot use it.
    let preview = |token: String, md: &str| {
        let (app, body) = (&app, json!({"markdown": md}));
        async move {
            app.send(
                Method::POST,
                "/api/v1/courses/description-preview",
                Some(&token),
                Some(&body),
            )
            .await
        }
    };
    let p = json_of(
        preview(
            teacher.clone(),
            "# Welcome\n\n**bold** <img src=x onerror=alert(1)>\n\n<script>alert(1)</script>",
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        p["html"], course["description_html"],
        "the saved rendering, before saving"
    );
    assert_problem(
        preview(student.clone(), "hi").await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    let long = "x".repeat(50_001);
    assert_problem(
        preview(teacher.clone(), &long).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;

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

// ------------------------------------------------------------------------------------------
// Covers, deletion, ending lessons, the roster

/// An app whose object storage is a fresh bucket on the test S3 server (scripts/test).
async fn app_on_s3(tweak: impl FnOnce(&mut wemaster::config::Settings)) -> TestApp {
    let var = |n: &str| {
        std::env::var(n).unwrap_or_else(|_| panic!("{n} is not set: run through scripts/test"))
    };
    let bucket = format!("covers-{}", uuid::Uuid::new_v4().simple());
    let (endpoint, access, secret) = (
        var("WEMASTER_TEST_S3_ENDPOINT"),
        var("WEMASTER_TEST_S3_ACCESS_KEY"),
        var("WEMASTER_TEST_S3_SECRET_KEY"),
    );
    spawn_app_with(move |s| {
        s.storage.backend = wemaster::config::StorageBackend::S3;
        s.storage.s3.endpoint = endpoint;
        s.storage.s3.bucket = bucket;
        s.storage.s3.access_key_id = access;
        s.storage.s3.secret_access_key = wemaster::config::Secret::new(secret);
        s.storage.s3.force_path_style = true;
        s.storage.s3.create_bucket = true;
        tweak(s);
    })
    .await
}

fn png(len: usize) -> Vec<u8> {
    let mut b = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    b.extend((0..len).map(|i| (i % 251) as u8));
    b
}

fn jpeg(len: usize) -> Vec<u8> {
    let mut b = vec![0xff, 0xd8, 0xff, 0xe0, 0, 16, b'J', b'F', b'I', b'F'];
    b.extend((0..len).map(|i| (i % 241) as u8));
    b
}

async fn put_cover(
    app: &TestApp,
    token: &str,
    course: &str,
    body: Vec<u8>,
    content_type: &str,
) -> reqwest::Response {
    app.client
        .put(app.url(&format!("/api/v1/courses/{course}/cover")))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn cover_key(app: &TestApp, course: &str) -> Option<String> {
    let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
    sqlx::query_scalar("SELECT cover_key FROM courses WHERE id = $1::uuid")
        .bind(course)
        .fetch_one(&pool)
        .await
        .unwrap()
}

async fn object_exists(app: &TestApp, key: &str) -> bool {
    let key = wemaster::storage::ObjectKey::parse(key).unwrap();
    match app.storage().await.head(&key).await {
        Ok(_) => true,
        Err(wemaster::storage::StorageError::NotFound(_)) => false,
        Err(e) => panic!("head {key:?}: {e}"),
    }
}

#[tokio::test]
async fn a_cover_is_checked_by_its_bytes_stored_in_s3_served_publicly_and_replaced() {
    let app = app_on_s3(|s| s.courses.cover_max_bytes = 64 * 1024).await;
    let (_, teacher) = user(&app, "teacher", &[Role::Teacher]).await;
    let (_, student) = user(&app, "student", &[Role::Student]).await;
    let course = create_course(&app, &teacher, json!({"title": "Painting"})).await;
    let cid = course["id"].as_str().unwrap().to_string();
    assert_eq!(course["cover_url"], Value::Null);

    // The type comes from the bytes: a GIF or an SVG called image/png is refused, and so is a
    // body over the cap. Students cannot set covers.
    for (body, ct) in [
        (b"GIF89a\x01\0\x01\0".to_vec(), "image/png"),
        (
            b"<svg xmlns='http://www.w3.org/2000/svg'/>".to_vec(),
            "image/png",
        ),
    ] {
        assert_problem(
            put_cover(&app, &teacher, &cid, body, ct).await,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        )
        .await;
    }
    assert_problem(
        put_cover(&app, &teacher, &cid, png(70 * 1024), "image/png").await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    )
    .await;
    assert_problem(
        put_cover(&app, &student, &cid, png(100), "image/png").await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_eq!(cover_key(&app, &cid).await, None);

    // A PNG sent as application/octet-stream (the header does not matter), above the 1 MiB
    // default body limit of JSON routes... within this app's 64 KiB cover cap.
    let first = png(60 * 1024);
    let c = json_of(
        put_cover(
            &app,
            &teacher,
            &cid,
            first.clone(),
            "application/octet-stream",
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let first_key = cover_key(&app, &cid).await.expect("a cover key");
    assert!(
        first_key.starts_with(&format!("courses/{cid}/cover-")) && first_key.ends_with(".png"),
        "{first_key}"
    );
    assert!(
        object_exists(&app, &first_key).await,
        "stored in the bucket"
    );
    // A draft: the URL is a presigned storage URL, and the public route refuses strangers.
    let draft_url = c["cover_url"].as_str().unwrap();
    assert!(!draft_url.contains("/api/v1/courses/"), "{draft_url}");
    let path = format!("/api/v1/courses/{cid}/cover");
    assert_problem(app.get(&path).await, StatusCode::NOT_FOUND, "not_found").await;
    let r = app.get_auth(&path, &teacher).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "private, no-store");
    assert_eq!(r.bytes().await.unwrap().as_ref(), first.as_slice());

    // Published: a stable public URL, served to anyone with the stored type and cacheable.
    let c = json_of(
        app.send(
            Method::PATCH,
            &format!("/api/v1/courses/{cid}"),
            Some(&teacher),
            Some(&json!({"visibility": "published"})),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let url1 = c["cover_url"].as_str().unwrap().to_string();
    assert!(
        url1.starts_with(&format!("{}/api/v1/courses/{cid}/cover?v=", app.base)),
        "{url1}"
    );
    let r = app.client.get(&url1).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "image/png");
    assert_eq!(r.headers()["cache-control"], "public, max-age=86400");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert_eq!(r.bytes().await.unwrap().as_ref(), first.as_slice());
    let listed = json_of(app.get("/api/v1/courses").await, StatusCode::OK).await;
    assert_eq!(listed["items"][0]["cover_url"], url1.as_str());

    // Replacing: a new URL, the new bytes, and the old object is gone from the bucket.
    let second = jpeg(2000);
    let c = json_of(
        put_cover(&app, &teacher, &cid, second.clone(), "image/jpeg").await,
        StatusCode::OK,
    )
    .await;
    let url2 = c["cover_url"].as_str().unwrap().to_string();
    assert_ne!(url1, url2);
    let second_key = cover_key(&app, &cid).await.unwrap();
    assert!(second_key.ends_with(".jpg"), "{second_key}");
    assert!(!object_exists(&app, &first_key).await, "old cover deleted");
    let r = app.client.get(&url2).send().await.unwrap();
    assert_eq!(r.headers()["content-type"], "image/jpeg");
    assert_eq!(r.bytes().await.unwrap().as_ref(), second.as_slice());

    // Removing: no URL, the object is deleted, the route answers 404.
    let r = app
        .send(
            Method::DELETE,
            &format!("/api/v1/courses/{cid}/cover"),
            Some(&teacher),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(!object_exists(&app, &second_key).await);
    let c = json_of(
        app.get(&format!("/api/v1/courses/{cid}")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(c["cover_url"], Value::Null);
    assert_problem(app.get(&path).await, StatusCode::NOT_FOUND, "not_found").await;

    // Deleting the course deletes its cover too.
    let body = png(10);
    json_of(
        put_cover(&app, &teacher, &cid, body, "image/png").await,
        StatusCode::OK,
    )
    .await;
    let third_key = cover_key(&app, &cid).await.unwrap();
    let r = app
        .send(
            Method::DELETE,
            &format!("/api/v1/courses/{cid}"),
            Some(&teacher),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(!object_exists(&app, &third_key).await);
}

async fn live_stream_of(app: &TestApp, stream: &str) -> (Option<String>, String, Vec<String>) {
    let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
    let (deleted, status): (Option<time::OffsetDateTime>, String) =
        sqlx::query_as("SELECT deleted_at, status FROM live_streams WHERE id = $1::uuid")
            .bind(stream)
            .fetch_one(&pool)
            .await
            .unwrap();
    let events: Vec<String> = sqlx::query_scalar(
        "SELECT kind FROM live_stream_events WHERE live_stream_id = $1::uuid ORDER BY id",
    )
    .bind(stream)
    .fetch_all(&pool)
    .await
    .unwrap();
    (deleted.map(|d| d.to_string()), status, events)
}

#[tokio::test]
async fn courses_with_orders_are_archived_not_deleted_and_lessons_delete_with_their_stream() {
    let app = app().await;
    let (_, teacher) = user(&app, "teacher", &[Role::Teacher]).await;
    let (co_id, co) = user(&app, "co", &[Role::Teacher]).await;
    let (_, student) = user(&app, "student", &[Role::Student]).await;
    let (_, admin) = user(&app, "admin", &[Role::Admin]).await;

    // A free course with a lesson and a student.
    let free = create_course(
        &app,
        &teacher,
        json!({"title": "Free", "visibility": "published"}),
    )
    .await;
    let fid = free["id"].as_str().unwrap().to_string();
    let l1 = create_lesson(&app, &teacher, &fid, "broadcast", false).await;
    let l2 = create_lesson(&app, &teacher, &fid, "meeting", false).await;
    let (l1id, l1stream) = (
        l1["id"].as_str().unwrap().to_string(),
        l1["live_stream_id"].as_str().unwrap().to_string(),
    );
    json_of(
        app.send(
            Method::POST,
            &format!("/api/v1/courses/{fid}/enrollments"),
            Some(&student),
            Some(&json!({})),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    app.send(
        Method::PUT,
        &format!("/api/v1/courses/{fid}/members/{co_id}"),
        Some(&teacher),
        Some(&json!({"role": "co_teacher"})),
    )
    .await;

    // A lesson: students cannot delete it; a co-teacher can. It vanishes, its stream too.
    let path = format!("/api/v1/lessons/{l1id}");
    assert_problem(
        app.send(Method::DELETE, &path, Some(&student), None).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    let r = app.send(Method::DELETE, &path, Some(&co), None).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_problem(
        app.get_auth(&path, &teacher).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_problem(
        app.send(Method::DELETE, &path, Some(&co), None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let lessons = json_of(
        app.get_auth(&format!("/api/v1/courses/{fid}/lessons"), &teacher)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(lessons["items"].as_array().unwrap().len(), 1);
    assert_eq!(lessons["items"][0]["id"], l2["id"]);
    let (deleted, _, events) = live_stream_of(&app, &l1stream).await;
    assert!(deleted.is_some(), "the lesson's stream is deleted");
    assert!(
        events.contains(&"live_stream.deleted".to_string()),
        "{events:?}"
    );
    let r = app
        .get_auth(&format!("/api/v1/live-streams/{l1stream}"), &teacher)
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // The course: only its owner or an admin deletes it.
    let cpath = format!("/api/v1/courses/{fid}");
    assert_problem(
        app.send(Method::DELETE, &cpath, Some(&co), None).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    let l2stream = l2["live_stream_id"].as_str().unwrap().to_string();
    let r = app.send(Method::DELETE, &cpath, Some(&teacher), None).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_problem(app.get(&cpath).await, StatusCode::NOT_FOUND, "not_found").await;
    assert_problem(
        app.get(&format!("/api/v1/lessons/{}", l2["id"].as_str().unwrap()))
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let mine = json_of(
        app.get_auth("/api/v1/courses/enrolled", &student).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(mine["items"], json!([]));
    assert!(live_stream_of(&app, &l2stream).await.0.is_some());

    // A paid course with an order (still pending) cannot be deleted, not even by an admin,
    // nor behind the API's back; it is archived instead.
    let paid = create_course(
        &app,
        &teacher,
        json!({"title": "Paid", "visibility": "published", "price": {"amount": 500, "currency": "CNY"}}),
    )
    .await;
    let pid = paid["id"].as_str().unwrap().to_string();
    let r = app
        .send(
            Method::POST,
            "/api/v1/orders",
            Some(&student),
            Some(
                &json!({"kind": "course", "course_id": pid, "provider": "sandbox",
                         "amount": {"amount": 500, "currency": "CNY"}}),
            ),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    // The sandbox pays it a moment later; let that transaction finish first, so that the raw
    // DELETE below meets the foreign key, not a lock held by the payment (it once failed with a
    // deadlock under the full suite's load).
    let order: Value = r.json().await.unwrap();
    let opath = format!("/api/v1/orders/{}", order["id"].as_str().unwrap());
    let start = std::time::Instant::now();
    loop {
        let o: Value = app.get_auth(&opath, &student).await.json().await.unwrap();
        if o["status"] != "pending" {
            break;
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(20), "{o}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let ppath = format!("/api/v1/courses/{pid}");
    for who in [&teacher, &admin] {
        assert_problem(
            app.send(Method::DELETE, &ppath, Some(who), None).await,
            StatusCode::CONFLICT,
            "course_has_orders",
        )
        .await;
    }
    let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
    let e = sqlx::query("DELETE FROM courses WHERE id = $1::uuid")
        .bind(&pid)
        .execute(&pool)
        .await
        .unwrap_err();
    assert_eq!(
        e.as_database_error().and_then(|d| d.constraint()),
        Some("orders_course_id_fkey"),
        "{e}"
    );
    let archived = json_of(
        app.send(
            Method::PATCH,
            &ppath,
            Some(&teacher),
            Some(&json!({"visibility": "archived"})),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(archived["visibility"], "archived");
    let catalogue = json_of(app.get("/api/v1/courses").await, StatusCode::OK).await;
    assert_eq!(catalogue["items"], json!([]));
    // And an order for a course that does not exist is refused by the database.
    let e = sqlx::query(
        "INSERT INTO orders (id, user_id, kind, product_id, payee_id, platform_fee_bps, amount, currency, provider, expires_at)
         SELECT $1, user_id, 'course', $2, payee_id, 0, 1, 'CNY', 'sandbox', now() FROM orders LIMIT 1",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(uuid::Uuid::now_v7())
    .execute(&pool)
    .await
    .unwrap_err();
    assert_eq!(
        e.as_database_error().and_then(|d| d.constraint()),
        Some("orders_course_id_fkey")
    );
}

#[tokio::test]
async fn the_roster_shows_every_enrollment_with_its_state() {
    let app = app().await;
    let (teacher_id, teacher) = user(&app, "teacher", &[Role::Teacher]).await;
    let (a_id, a) = user(&app, "a", &[Role::Student]).await;
    let (b_id, _) = user(&app, "b", &[Role::Student]).await;
    let (assistant_id, assistant) = user(&app, "assistant", &[Role::Teacher]).await;
    let course = create_course(
        &app,
        &teacher,
        json!({"title": "Roster", "visibility": "published"}),
    )
    .await;
    let cid = course["id"].as_str().unwrap().to_string();
    let enroll = |token: String, body: Value| {
        let app = &app;
        let cid = cid.clone();
        async move {
            json_of(
                app.send(
                    Method::POST,
                    &format!("/api/v1/courses/{cid}/enrollments"),
                    Some(&token),
                    Some(&body),
                )
                .await,
                StatusCode::CREATED,
            )
            .await
        }
    };
    enroll(a.clone(), json!({})).await;
    enroll(teacher.clone(), json!({"user_id": b_id})).await;
    json_of(
        app.send(
            Method::POST,
            &format!("/api/v1/courses/{cid}/leave"),
            Some(&a),
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    app.send(
        Method::PUT,
        &format!("/api/v1/courses/{cid}/members/{assistant_id}"),
        Some(&teacher),
        Some(&json!({"role": "assistant"})),
    )
    .await;

    // Assistants see the roster too, with each state and where it came from.
    let roster = json_of(
        app.get_auth(&format!("/api/v1/courses/{cid}/enrollments"), &assistant)
            .await,
        StatusCode::OK,
    )
    .await;
    let items = roster["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    let of = |id: uuid::Uuid| {
        items
            .iter()
            .find(|e| e["user_id"] == id.to_string())
            .unwrap()
    };
    assert_eq!(of(a_id)["status"], "left");
    assert_eq!(of(a_id)["source"], "free");
    assert_eq!(of(a_id)["display_name"], "Test");
    assert_eq!(of(b_id)["status"], "active");
    assert_eq!(of(b_id)["source"], "grant");
    assert_eq!(of(b_id)["granted_by"], teacher_id.to_string());
    let left = json_of(
        app.get_auth(
            &format!("/api/v1/courses/{cid}/enrollments?status=left"),
            &teacher,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(left["items"].as_array().unwrap().len(), 1);
    assert_eq!(left["items"][0]["user_id"], a_id.to_string());
    assert_problem(
        app.get_auth(
            &format!("/api/v1/courses/{cid}/enrollments?status=gone"),
            &teacher,
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    // A student of the course does not see it.
    assert_problem(
        app.get_auth(&format!("/api/v1/courses/{cid}/enrollments"), &a)
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
}

#[tokio::test]
async fn ending_a_lesson_completes_its_live_session_and_keeps_encoders_out() {
    use crate::live_rtmp::{ffmpeg_publish, wait_child};
    use std::time::{Duration, Instant};
    let app = app().await;
    let (_, teacher) = user(&app, "teacher", &[Role::Teacher]).await;
    let (_, student) = user(&app, "student", &[Role::Student]).await;
    let course = create_course(
        &app,
        &teacher,
        json!({"title": "Live", "visibility": "published"}),
    )
    .await;
    let cid = course["id"].as_str().unwrap().to_string();
    json_of(
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
    let rtmp = |lesson: &Value| {
        format!(
            "rtmp://127.0.0.1:{}/live/{}",
            app.rtmp_addr.port(),
            lesson["stream_key"].as_str().unwrap()
        )
    };
    let status = |lid: String| {
        let app = &app;
        let student = student.clone();
        async move {
            json_of(
                app.get_auth(&format!("/api/v1/lessons/{lid}"), &student)
                    .await,
                StatusCode::OK,
            )
            .await["status"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let wait_status = |lid: String, want: &'static str| {
        let status = &status;
        async move {
            let start = Instant::now();
            loop {
                let s = status(lid.clone()).await;
                if s == want {
                    return;
                }
                assert!(
                    start.elapsed() < Duration::from_secs(20),
                    "lesson {lid} is {s}, not {want}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };

    // A lesson goes live; its teacher ends it: the publisher is cut off at once, the lesson is
    // ended, the stream disabled, and the encoder reconnecting is refused.
    let lesson = create_lesson(&app, &teacher, &cid, "broadcast", false).await;
    let lid = lesson["id"].as_str().unwrap().to_string();
    let stream = lesson["live_stream_id"].as_str().unwrap().to_string();
    let publisher = ffmpeg_publish(&rtmp(&lesson), 60, true);
    wait_status(lid.clone(), "live").await;
    // A recording with no segment has nothing to replay: wait for the first one (on a loaded
    // machine it can take a few seconds after the stream goes live).
    let play = json_of(
        app.get_auth(&format!("/api/v1/lessons/{lid}/playback"), &teacher)
            .await,
        StatusCode::OK,
    )
    .await;
    let live_url = play["live"]["hls_url"].as_str().unwrap().to_string();
    let start = Instant::now();
    loop {
        let r = app.client.get(&live_url).send().await.unwrap();
        if r.status().is_success() && r.text().await.unwrap().contains("#EXTINF") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no first segment"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_problem(
        app.send(
            Method::POST,
            &format!("/api/v1/lessons/{lid}/end"),
            Some(&student),
            None,
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    let ended = json_of(
        app.send(
            Method::POST,
            &format!("/api/v1/lessons/{lid}/end"),
            Some(&teacher),
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(ended["status"], "ended");
    let exit = wait_child(publisher, Duration::from_secs(15)).await;
    assert!(!exit.success(), "the publisher was cut off");
    assert_eq!(status(lid.clone()).await, "ended");
    // The session is complete: the live playlist has ended, and the recording becomes a replay.
    let start = Instant::now();
    let played = loop {
        let p = json_of(
            app.get_auth(&format!("/api/v1/lessons/{lid}/playback"), &student)
                .await,
            StatusCode::OK,
        )
        .await;
        if !p["replays"].as_array().unwrap().is_empty() {
            break p;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "no replay: {p}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let playlist = app
        .client
        .get(played["live"]["hls_url"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(playlist.contains("#EXT-X-ENDLIST"), "{playlist}");
    let replay = app
        .client
        .get(played["replays"][0]["hls_url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), StatusCode::OK);
    let (_, stream_status, events) = live_stream_of(&app, &stream).await;
    assert_eq!(stream_status, "disabled");
    assert!(
        events.contains(&"live_stream.disabled".to_string()),
        "{events:?}"
    );
    let again = ffmpeg_publish(&rtmp(&lesson), 5, true);
    let exit = wait_child(again, Duration::from_secs(15)).await;
    assert!(!exit.success(), "a disabled stream refuses publishers");
    assert_eq!(status(lid.clone()).await, "ended");
    // Ending again changes nothing.
    let again = json_of(
        app.send(
            Method::POST,
            &format!("/api/v1/lessons/{lid}/end"),
            Some(&teacher),
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(again["status"], "ended");

    // A lesson that never went live can be ended too (cancelled, in effect).
    let other = create_lesson(&app, &teacher, &cid, "meeting", false).await;
    let oid = other["id"].as_str().unwrap().to_string();
    assert_eq!(status(oid.clone()).await, "scheduled");
    json_of(
        app.send(
            Method::POST,
            &format!("/api/v1/lessons/{oid}/end"),
            Some(&teacher),
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(status(oid).await, "ended");

    // Deleting a lesson while it is live ends its session too.
    let third = create_lesson(&app, &teacher, &cid, "broadcast", false).await;
    let tid = third["id"].as_str().unwrap().to_string();
    let publisher = ffmpeg_publish(&rtmp(&third), 60, true);
    wait_status(tid.clone(), "live").await;
    let r = app
        .send(
            Method::DELETE,
            &format!("/api/v1/lessons/{tid}"),
            Some(&teacher),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let exit = wait_child(publisher, Duration::from_secs(15)).await;
    assert!(
        !exit.success(),
        "the publisher of a deleted lesson was cut off"
    );
}
