//! Backups that restore (issue #21): a server with users, a course, a paid order, chat and a
//! recording is backed up by `wemaster admin backup` while it runs, restored by `wemaster admin
//! restore` into a fresh database and a fresh storage folder, and a server on the restored
//! pair has everything: the logins, the course, the wallet and the order, a clean ledger, the
//! chat, and a recording whose MP4 plays.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use wemaster::users::Role;

use crate::{
    chat::Client,
    helpers::{fresh_database, spawn_app_with, unique_email, wemaster_bin},
    live_rtmp::{Live, ffmpeg_publish, wait_child},
    payments::{paid_topup, post, wallet_of},
    recordings::probe_duration,
};

const PW: &str = "a fine passphrase";
const SIGNING_KEY: &str = "test-signing-key-0123456789abcdef0123456789";

fn cli(database_url: &str, storage_root: &std::path::Path, args: &[&str]) -> std::process::Output {
    let out = wemaster_bin()
        .args(args)
        .env("DATABASE_URL", database_url)
        .env("WEMASTER__STORAGE__LOCAL__ROOT", storage_root)
        .env("WEMASTER__STORAGE__LOCAL__SIGNING_KEY", SIGNING_KEY)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[tokio::test]
async fn a_backup_restores_into_a_fresh_database_and_storage_with_everything() {
    // A recorded lesson of the teacher (ffmpeg over RTMP), ready with its MP4.
    let live = Live::on(spawn_app_with(|_| {}).await, 0, "public").await;
    assert!(
        wait_child(
            ffmpeg_publish(&live.rtmp_url(), 4, false),
            Duration::from_secs(60)
        )
        .await
        .success()
    );
    let rec = live.wait_ready(Duration::from_secs(40)).await;
    let app = &live.app;
    // A paid course, bought from a wallet topped up through the sandbox provider.
    let student_email = unique_email("student");
    let (_, student) = app.user_with(&student_email, PW, &[Role::Student]).await;
    let course: Value = post(
        app,
        "/api/v1/courses",
        &live.token,
        None,
        &json!({"title": "Backed up", "price": {"amount": 300, "currency": "CNY"}, "visibility": "published"}),
    )
    .await
    .json()
    .await
    .unwrap();
    let course_id = course["id"].as_str().unwrap().to_string();
    paid_topup(app, &student, 500).await;
    let r = post(
        app,
        "/api/v1/orders",
        &student,
        None,
        &json!({"kind": "course", "course_id": course_id, "provider": "wallet",
                "amount": {"amount": 300, "currency": "CNY"}}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let wallet = wallet_of(app, &student).await;
    // Chat in the course's lesson room.
    let lesson: Value = post(
        app,
        &format!("/api/v1/courses/{course_id}/lessons"),
        &live.token,
        None,
        &json!({"title": "Live one", "kind": "broadcast",
                "starts_at": "2026-12-01T09:00:00Z", "duration_minutes": 45}),
    )
    .await
    .json()
    .await
    .unwrap();
    let room = format!("lesson:{}", lesson["id"].as_str().unwrap());
    let mut chat = Client::connect(app.addr, &student).await;
    assert_eq!(chat.subscribe(&room, None).await["type"], "subscribed");
    for (i, body) in ["before the backup", "and a second line"]
        .iter()
        .enumerate()
    {
        let ack = chat.say(&room, &format!("c{i}"), body).await;
        assert_eq!(ack["type"], "ack", "{ack}");
    }
    drop(chat);
    // Messages reach PostgreSQL through the persister: wait until they are there.
    let db = sqlx::PgPool::connect(&app.database_url).await.unwrap();
    for _ in 0..100 {
        let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM chat_messages WHERE kind = 'text'")
            .fetch_one(&db)
            .await
            .unwrap();
        if n >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Back up while the server runs.
    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("backup");
    let out = cli(
        &app.database_url,
        &app.storage_root,
        &["admin", "backup", "--to", backup.to_str().unwrap()],
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(summary["objects"].as_u64().unwrap() >= 4, "{summary}");
    assert!(backup.join("manifest.json").is_file());

    // Restore into an empty database and an empty storage folder.
    let (restored_db, _) = fresh_database().await;
    let restored_root = dir.path().join("restored-objects");
    cli(
        &restored_db,
        &restored_root,
        &["admin", "restore", "--from", backup.to_str().unwrap()],
    );
    // A second restore into the now full database is refused.
    let again = wemaster_bin()
        .args(["admin", "restore", "--from", backup.to_str().unwrap()])
        .env("DATABASE_URL", &restored_db)
        .env("WEMASTER__STORAGE__LOCAL__ROOT", &restored_root)
        .env("WEMASTER__STORAGE__LOCAL__SIGNING_KEY", SIGNING_KEY)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("restore into an empty database"));

    // A server on the restored pair.
    let (url, root) = (restored_db.clone(), restored_root.clone());
    let restored = spawn_app_with(move |s| {
        s.database.url = wemaster::config::Secret::new(url);
        s.storage.local.root = root;
    })
    .await;
    let teacher = restored.login("teacher@school.example", PW).await["access_token"]
        .as_str()
        .expect("the teacher signs in on the restored server")
        .to_string();
    let student = restored.login(&student_email, PW).await["access_token"]
        .as_str()
        .expect("the student signs in on the restored server")
        .to_string();
    assert_eq!(wallet_of(&restored, &student).await, wallet, "the wallet");
    let r = restored
        .get_auth(&format!("/api/v1/courses/{course_id}"), &student)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let rdb = sqlx::PgPool::connect(&restored_db).await.unwrap();
    let (paid,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM orders WHERE status = 'paid' AND kind = 'course' AND product_id = $1::uuid",
    )
    .bind(&course_id)
    .fetch_one(&rdb)
    .await
    .unwrap();
    assert_eq!(paid, 1, "the paid order");
    // The ledger audit on the restored database (`restored.database_url` is the spare one
    // spawn_app_with made before the tweak pointed the server elsewhere).
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&restored_db)
        .await
        .unwrap();
    let (mismatched, unbalanced) = wemaster::payments::ledger::audit(&mut conn).await.unwrap();
    assert!(
        mismatched.is_empty() && unbalanced.is_empty(),
        "the ledger: {mismatched:?} {unbalanced:?}"
    );
    let bodies: Vec<(String,)> =
        sqlx::query_as("SELECT body FROM chat_messages WHERE kind = 'text' ORDER BY seq")
            .fetch_all(&rdb)
            .await
            .unwrap();
    assert_eq!(
        bodies.into_iter().map(|b| b.0).collect::<Vec<_>>(),
        ["before the backup", "and a second line"]
    );
    // The recording plays from the restored storage, through the restored server.
    let r: Value = restored
        .get_auth(
            &format!("/api/v1/recordings/{}", rec["id"].as_str().unwrap()),
            &teacher,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["status"], "ready", "{r}");
    let mp4 = probe_duration(r["mp4_url"].as_str().unwrap()).await;
    assert!((mp4 - 4.0).abs() <= 1.0, "the MP4 plays: {mp4} s");
}
