//! Several nodes on one database (src/node.rs): a node starting up takes back only its own
//! streams and recordings — a second node starting while the first records a live lesson leaves
//! that lesson live and its recording whole — and the live streams of a node that went silent
//! are ended by another node, while those of a node that still beats are not; a node killed
//! mid-lesson has its recording finished by another from what reached storage.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::{
    helpers::{free_port, fresh_database, spawn_app_with},
    live_rtmp::{Live, ffmpeg_publish, wait_child},
    recordings::{Server, wait_uploaded},
};

async fn wait_status(live: &Live, status: &str, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let s = live.stream_json().await;
        if s["status"] == status {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never {status}: {s}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_second_node_starting_leaves_the_first_nodes_lesson_live_and_its_recording_whole() {
    let live = Live::on(spawn_app_with(|_| {}).await, 2, "public").await;
    let db = PgPool::connect(&live.app.database_url).await.unwrap();
    // Ten seconds in real time: the second node starts in the middle of it.
    let publisher = ffmpeg_publish(&live.rtmp_url(), 10, true);
    wait_status(&live, "active", Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Node B: the same database and signing key, its own spool (so its own node id).
    let url = live.app.database_url.clone();
    let keys = live.app.settings.auth.keys_dir.clone();
    let b = spawn_app_with(move |s| {
        s.database.url = wemaster::config::Secret::new(url);
        s.auth.keys_dir = keys;
    })
    .await;
    assert_eq!(b.get("/readyz").await.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // B's start-up recovery took neither the stream nor the recording.
    assert_eq!(
        live.stream_json().await["status"],
        "active",
        "B reset A's live stream"
    );
    let (status, lost): (String, i64) = sqlx::query_as(
        "SELECT r.status, (SELECT count(*) FROM recording_segments s WHERE s.recording_id = r.id AND s.lost)
           FROM recordings r",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(status, "recording", "B finalized A's recording mid-lesson");
    assert_eq!(lost, 0, "B marked A's pending segments lost");
    let nodes: Vec<(Uuid,)> = sqlx::query_as("SELECT id FROM cluster_nodes")
        .fetch_all(&db)
        .await
        .unwrap();
    assert_eq!(nodes.len(), 2, "each node beats under its own id");

    assert!(
        wait_child(publisher, Duration::from_secs(60))
            .await
            .success()
    );
    let rec = live.wait_ready(Duration::from_secs(60)).await;
    let duration = rec["duration_s"].as_f64().unwrap();
    assert!(
        (duration - 10.0).abs() < 1.5,
        "the whole lesson is recorded: {rec}"
    );
    let (lost,): (i64,) = sqlx::query_as("SELECT count(*) FROM recording_segments WHERE lost")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(lost, 0);
}

#[tokio::test]
async fn the_live_streams_of_a_lost_node_are_ended_by_another() {
    let app = spawn_app_with(|s| {
        s.live.node_heartbeat_s = 1;
        s.live.node_lost_after_s = 2;
    })
    .await;
    let live = Live::on(app, 60, "public").await;
    let second = live
        .app
        .client
        .post(live.app.url("/api/v1/live-streams"))
        .bearer_auth(&live.token)
        .json(&serde_json::json!({"title": "Held by a node that still beats"}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let db = PgPool::connect(&live.app.database_url).await.unwrap();
    // Two other nodes hold a session each: one went silent an hour ago, one keeps beating.
    let (lost_node, alive_node) = (Uuid::now_v7(), Uuid::now_v7());
    sqlx::query(
        "INSERT INTO cluster_nodes (id, name, heartbeat_at) VALUES
           ($1, 'lost', now() - interval '1 hour'), ($2, 'alive', now())",
    )
    .bind(lost_node)
    .bind(alive_node)
    .execute(&db)
    .await
    .unwrap();
    let session = Uuid::now_v7();
    for (stream, node) in [
        (live.id().to_owned(), lost_node),
        (second["id"].as_str().unwrap().to_owned(), alive_node),
    ] {
        let stream: Uuid = stream.parse().unwrap();
        sqlx::query("UPDATE live_streams SET status = 'active', node_id = $2 WHERE id = $1")
            .bind(stream)
            .bind(node)
            .execute(&db)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO live_stream_events (id, live_stream_id, kind, payload)
             VALUES ($1, $2, 'live_stream.active', jsonb_build_object('session_id', $3::text))",
        )
        .bind(Uuid::now_v7())
        .bind(stream)
        .bind(session.to_string())
        .execute(&db)
        .await
        .unwrap();
    }
    let beat = tokio::spawn({
        let db = db.clone();
        async move {
            loop {
                sqlx::query("UPDATE cluster_nodes SET heartbeat_at = now() WHERE id = $1")
                    .bind(alive_node)
                    .execute(&db)
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    });

    wait_status(&live, "idle", Duration::from_secs(15)).await;
    let events: Value = live
        .app
        .get_auth(
            &format!("/api/v1/live-streams/{}/events", live.id()),
            &live.token,
        )
        .await
        .json()
        .await
        .unwrap();
    let idle = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "live_stream.idle")
        .unwrap_or_else(|| panic!("no idle event: {events}"))
        .clone();
    assert_eq!(idle["payload"]["why"], "node_lost");
    assert_eq!(idle["payload"]["session_id"], session.to_string());
    assert_eq!(idle["payload"]["node_id"], lost_node.to_string());
    // The beating node's stream is left alone, sweep after sweep.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (status,): (String,) = sqlx::query_as("SELECT status FROM live_streams WHERE id = $1")
        .bind(second["id"].as_str().unwrap().parse::<Uuid>().unwrap())
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(status, "active");
    beat.abort();
}

#[tokio::test]
async fn a_node_killed_mid_lesson_has_its_recording_finished_by_another() {
    let (database_url, _) = fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    // Node A, a real process (to be killed), beating every second.
    let mut a = Server::start_with(
        &database_url,
        dir.path(),
        free_port(),
        free_port(),
        vec![("WEMASTER__LIVE__NODE_HEARTBEAT_S".into(), "1".into())],
    );
    a.wait_ready().await;
    let token = a.teacher_token().await;
    let (_, mut publisher) = a.go_live(&token, "Lost in the middle", 30).await;
    let db = PgPool::connect(&database_url).await.unwrap();
    let uploaded = wait_uploaded(&db, 3, Duration::from_secs(30)).await;
    a.kill9();
    let _ = publisher.kill();
    let _ = publisher.wait();

    // Node B shares the database and the object storage (not A's spool) and counts a node
    // silent for 3 s as lost.
    let url = database_url.clone();
    let objects = dir.path().join("objects");
    let b = spawn_app_with(move |s| {
        s.database.url = wemaster::config::Secret::new(url);
        s.storage.local.root = objects;
        s.live.node_heartbeat_s = 1;
        s.live.node_lost_after_s = 3;
    })
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let (status, mp4, segments, stream_status) = loop {
        let row: (String, Option<i64>, i32, String) = sqlx::query_as(
            "SELECT r.status, r.mp4_size_bytes, r.segment_count, s.status
               FROM recordings r JOIN live_streams s ON s.id = r.live_stream_id",
        )
        .fetch_one(&db)
        .await
        .unwrap();
        if row.0 == "ready" && row.1.is_some() {
            break row;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not finished by node B: {row:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(status, "ready");
    assert!(mp4.unwrap() > 0);
    assert!(
        i64::from(segments) >= uploaded,
        "{segments} segments, {uploaded} were uploaded before the kill"
    );
    assert_eq!(stream_status, "idle", "B ended A's session too");
    // B holds it now; the replay B serves plays what was recorded.
    let holder: (Option<Uuid>,) = sqlx::query_as("SELECT node_id FROM recordings")
        .fetch_one(&db)
        .await
        .unwrap();
    let b_node: Uuid = std::fs::read_to_string(b.settings.media.spool_dir.join("node-id"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(holder.0, Some(b_node));
    let (rec_id,): (Uuid,) = sqlx::query_as("SELECT id FROM recordings")
        .fetch_one(&db)
        .await
        .unwrap();
    let duration =
        crate::recordings::probe_duration(&b.url(&format!("/hls/vod/{rec_id}/index.m3u8"))).await;
    assert!(duration >= 4.0, "the replay lasts {duration} s");
}
