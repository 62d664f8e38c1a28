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

/// Node B: the same database and signing key as `a`, its own spool (so its own node id).
async fn second_node(
    a: &crate::helpers::TestApp,
    tweak: impl FnOnce(&mut wemaster::config::Settings) + Send + 'static,
) -> crate::helpers::TestApp {
    let url = a.database_url.clone();
    let keys = a.settings.auth.keys_dir.clone();
    spawn_app_with(move |s| {
        s.database.url = wemaster::config::Secret::new(url);
        s.auth.keys_dir = keys;
        tweak(s);
    })
    .await
}

#[tokio::test]
async fn a_second_node_starting_leaves_the_first_nodes_lesson_live_and_its_recording_whole() {
    let live = Live::on(spawn_app_with(|_| {}).await, 2, "public").await;
    let db = PgPool::connect(&live.app.database_url).await.unwrap();
    // Ten seconds in real time: the second node starts in the middle of it.
    let publisher = ffmpeg_publish(&live.rtmp_url(), 10, true);
    wait_status(&live, "active", Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    let b = second_node(&live.app, |_| {}).await;
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

/// Behind a load balancer a viewer reaches any node: a node that does not hold the stream
/// forwards its HLS requests to the one that does — playlists (plain and LL), segments, the
/// holder's own answers to a missing or bad token — and the holder counts the viewers by the
/// addresses the forwarding node saw.
#[tokio::test]
async fn any_node_serves_the_live_hls_of_a_stream_another_node_holds() {
    let trusted = || vec!["127.0.0.0/8".parse().unwrap()];
    let live = Live::on(
        spawn_app_with(move |s| s.http.trusted_proxies = trusted()).await,
        2,
        "private",
    )
    .await;
    let b = second_node(&live.app, move |s| s.http.trusted_proxies = trusted()).await;
    let grant: Value = live.action("playback-token").await.json().await.unwrap();
    let token = grant["token"].as_str().unwrap().to_string();
    let path = format!("/hls/live/{}/index.m3u8?token={token}", live.id());
    // Not live anywhere yet: B answers for itself.
    crate::helpers::assert_problem(b.get(&path).await, StatusCode::NOT_FOUND, "not_found").await;

    let publisher = ffmpeg_publish(&live.rtmp_url(), 8, true);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let (on_a, on_b) = loop {
        let a = crate::playlists::fetch(&live.app.client, &live.app.url(&path)).await;
        let via_b = b
            .client
            .get(b.url(&path))
            .header("x-forwarded-for", "203.0.113.7")
            .send()
            .await
            .unwrap();
        if let (Ok(a), StatusCode::OK) = (a, via_b.status()) {
            assert_eq!(
                via_b.headers()["content-type"],
                "application/vnd.apple.mpegurl"
            );
            assert!(
                via_b.headers()["cache-control"]
                    .to_str()
                    .unwrap()
                    .contains("private"),
                "the holder's caching travels with its answer"
            );
            let text = via_b.text().await.unwrap();
            crate::playlists::check(&b.url(&path), &text);
            if crate::live_rtmp::segment_uris(&a).len() >= 2 {
                break (a, text);
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "B never served A's live playlist"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    // The same session's segments (the window may have moved on by one between the two GETs).
    let uri = crate::live_rtmp::segment_uris(&on_a)[0].clone();
    assert!(
        on_b.contains(uri.split('?').next().unwrap()),
        "{on_a}\n{on_b}"
    );
    let segment = format!("/hls/live/{}/{uri}", live.id());
    let from_a = live.app.get(&segment).await.bytes().await.unwrap();
    let r = b.get(&segment).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "video/mp2t");
    let from_b = r.bytes().await.unwrap();
    assert!(from_a.len() > 1000 && from_a == from_b, "the same bytes");

    // The holder checks the token, whoever asks.
    let bare = format!("/hls/live/{}/index.m3u8", live.id());
    crate::helpers::assert_problem(b.get(&bare).await, StatusCode::UNAUTHORIZED, "unauthorized")
        .await;
    // Low-latency HLS too (the first LL request waits for the next keyframe at the holder).
    let ll = format!("/hls/live/{}/ll.m3u8?token={token}", live.id());
    let r = b.get(&ll).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("#EXT-X-PART-INF"));

    // A second viewer through B: the holder counts both by the addresses B saw, beside the
    // test's own address (its direct requests to A, and the LL one through B).
    let r = b
        .client
        .get(b.url(&path))
        .header("x-forwarded-for", "203.0.113.8")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let s = live.stream_json().await;
    assert_eq!(s["active_session"]["viewers"], 3, "{s}");
    // The teacher's studio may be served by B: it shows the session's figures as A publishes
    // them (every 2 s).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let via_b: Value = b
            .get_auth(&format!("/api/v1/live-streams/{}", live.id()), &live.token)
            .await
            .json()
            .await
            .unwrap();
        let session = &via_b["active_session"];
        if session["viewers"] == 3 {
            assert_eq!(session["session_id"], s["active_session"]["session_id"]);
            assert_eq!(session["protocol"], "rtmp");
            assert_eq!(session["started_at"], s["active_session"]["started_at"]);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "B never showed A's session: {via_b}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    assert!(
        wait_child(publisher, Duration::from_secs(60))
            .await
            .success()
    );
}

/// Behind a load balancer the publisher and the teacher's actions may each reach any node: a
/// publisher that reaches another node while the lesson is live takes it over there — the same
/// session goes on there (src/live/resume.rs), the old node only ends its part (no `idle`, and
/// its end does not mark the stream idle under the new one) — and "end the lesson" sent to a
/// node that does not hold it ends it where it runs.
#[tokio::test]
async fn a_publisher_and_actions_on_another_node_reach_the_session_where_it_runs() {
    let live = Live::on(spawn_app_with(|_| {}).await, 30, "public").await;
    let b = second_node(&live.app, |_| {}).await;
    let db = PgPool::connect(&live.app.database_url).await.unwrap();
    let holder = || async {
        sqlx::query_scalar::<_, Option<Uuid>>("SELECT node_id FROM live_streams WHERE id = $1")
            .bind(Uuid::parse_str(live.id()).unwrap())
            .fetch_one(&db)
            .await
            .unwrap()
    };

    let first = ffmpeg_publish(&live.rtmp_url(), 60, true);
    wait_status(&live, "active", Duration::from_secs(20)).await;
    let a_node = holder().await.expect("A holds the session");
    let session_on_a = live.stream_json().await["active_session"]["session_id"].clone();
    assert!(session_on_a.is_string(), "A's session");
    // A has recorded part of the lesson.
    wait_uploaded(&db, 1, Duration::from_secs(30)).await;
    let on_b = format!(
        "rtmp://127.0.0.1:{}/live/{}",
        b.rtmp_addr.port(),
        live.stream["stream_key"].as_str().unwrap()
    );
    let second = ffmpeg_publish(&on_b, 60, true);
    // A cuts its publisher and ends its session; B holds the stream now.
    wait_child(first, Duration::from_secs(30)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while holder().await == Some(a_node) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "B never took the stream"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ended_on_a = tokio::time::Instant::now();
    let playlist = format!("/hls/live/{}/index.m3u8", live.id());
    loop {
        let r = b.get(&playlist).await;
        if r.status() == StatusCode::OK {
            break;
        }
        assert!(
            ended_on_a.elapsed() < Duration::from_secs(20),
            "B's session never made a playlist: {}",
            r.status()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s = live.stream_json().await;
    assert_eq!(
        s["status"], "active",
        "A's end marked B's live stream idle: {s}"
    );
    let (idle_events,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM live_stream_events WHERE live_stream_id = $1
            AND kind = 'live_stream.idle'",
    )
    .bind(Uuid::parse_str(live.id()).unwrap())
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(idle_events, 0, "the session goes on on B: it did not end");
    let (continued,): (Option<String>,) = sqlx::query_as(
        "SELECT payload->>'continued_from_node' FROM live_stream_events
          WHERE live_stream_id = $1 AND kind = 'live_stream.connected' ORDER BY id DESC LIMIT 1",
    )
    .bind(Uuid::parse_str(live.id()).unwrap())
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(
        continued,
        Some(a_node.to_string()),
        "B continued A's session"
    );
    // The same session, wherever the studio is served from.
    let via_b: Value = b
        .get_auth(&format!("/api/v1/live-streams/{}", live.id()), &live.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        via_b["active_session"]["session_id"], session_on_a,
        "{via_b}"
    );

    // "End the lesson" sent to A, which no longer holds it: B's session ends.
    assert_eq!(live.action("complete").await.status(), StatusCode::OK);
    wait_child(second, Duration::from_secs(20)).await;
    wait_status(&live, "idle", Duration::from_secs(20)).await;

    // One recording of the session, finished by B: A's part (A handed it over instead of
    // finishing it), then B's from a discontinuity on.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let rows: Vec<(String, Option<Uuid>)> =
            sqlx::query_as("SELECT status, node_id FROM recordings WHERE live_stream_id = $1")
                .bind(Uuid::parse_str(live.id()).unwrap())
                .fetch_all(&db)
                .await
                .unwrap();
        if rows.len() == 1 && rows[0].0 == "ready" {
            assert_ne!(rows[0].1, Some(a_node), "B finished it");
            break;
        }
        assert!(
            rows.len() <= 1 && tokio::time::Instant::now() < deadline,
            "one recording, ready: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let segments: Vec<(Option<Uuid>, bool, bool)> = sqlx::query_as(
        "SELECT s.node_id, s.discontinuity, s.uploaded_at IS NOT NULL
           FROM recording_segments s JOIN recordings r ON r.id = s.recording_id
          WHERE r.live_stream_id = $1 ORDER BY s.seq",
    )
    .bind(Uuid::parse_str(live.id()).unwrap())
    .fetch_all(&db)
    .await
    .unwrap();
    let cut = segments
        .iter()
        .position(|s| s.0 != Some(a_node))
        .expect("B's part");
    assert!(cut >= 1, "A's part first: {segments:?}");
    assert!(
        segments[cut].1,
        "B's part starts after a discontinuity: {segments:?}"
    );
    assert!(
        segments[cut..]
            .iter()
            .all(|s| s.0 == segments[cut].0 && s.2),
        "then B's segments only, all stored: {segments:?}"
    );
    assert!(segments[..cut].iter().all(|s| s.2), "{segments:?}");
}

/// A WHEP viewer may reach any node behind the balancer: its offer goes to the node holding
/// the stream, whose answer names that node's ICE candidates, so the picture flows from there;
/// its `DELETE`, sent to the node it reached, ends it there too.
#[tokio::test]
async fn a_whep_viewer_reaching_another_node_watches_from_the_node_holding_the_stream() {
    let live = crate::whep::live("public").await;
    let b = second_node(&live.app, |_| {}).await;
    let mut publisher = crate::live_rtmp::ffmpeg_publish_gop(&live.rtmp_url(), 30, true, 30);
    crate::whep::wait_live(&live).await;

    let mut viewer = crate::whep::aiortc_viewer(b.url(&format!("/whep/{}", live.id())), "", "4");
    let answer = viewer.step("answer").await;
    crate::whep::assert_answered(&live, &answer);
    // The holder counts it beside this test's own playlist polling (one address).
    crate::live_whip::wait_active(&live, "2 viewers", |s| s["viewers"] == 2).await;
    let played = viewer.step("played").await;
    assert_eq!(played["state"], "connected", "{played}");
    assert!(
        played["video_frames"].as_u64().unwrap() >= 60,
        "4 s at 30 fps, from A: {played}"
    );
    assert!(played["audio_frames"].as_u64().unwrap() >= 100, "{played}");
    assert_eq!(
        viewer.step("delete").await["status"],
        204,
        "DELETE through B"
    );
    viewer.finish().await;
    let _ = publisher.kill();
    let _ = publisher.wait();
}
