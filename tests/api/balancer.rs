//! Three `wemaster serve` nodes behind HAProxy (Debian's), as a school that outgrew one machine
//! runs them: the API, chat's WebSocket, live HLS and RTMP all go through the balancer. The node
//! holding a live lesson is killed (SIGKILL) mid-lesson: the publisher reconnects through the
//! balancer, viewers keep playing after a reload, chat resumes without losing a message, and
//! the lesson goes on in the same session and the same recording, missing only the reconnect.

use std::{net::SocketAddr, time::Duration};

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::{
    chat::{Class, Client},
    helpers::free_port,
    live_rtmp::{ffmpeg_publish, segment_uris},
    recordings::Server,
};

/// HAProxy in front of the nodes: HTTP (WebSocket upgrades included) checked on `/readyz`, RTMP
/// as TCP checked by connecting; a refused connection is retried on another node.
struct Balancer {
    child: std::process::Child,
    http: SocketAddr,
    rtmp: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Balancer {
    fn start(nodes: &[&Server]) -> Balancer {
        let dir = tempfile::tempdir().unwrap();
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let rtmp: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut cfg = format!(
            "global\n  maxconn 4000\n\
             defaults\n  timeout connect 1s\n  timeout client 60s\n  timeout server 60s\n  timeout tunnel 1h\n  retries 3\n  option redispatch\n\
             frontend http\n  mode http\n  bind {http}\n  default_backend nodes\n\
             backend nodes\n  mode http\n  balance roundrobin\n  option forwardfor\n  option httpchk GET /readyz\n  retry-on conn-failure empty-response\n"
        );
        for (i, n) in nodes.iter().enumerate() {
            cfg += &format!(
                "  server n{i} 127.0.0.1:{} check inter 300ms fall 2 rise 2\n",
                n.port
            );
        }
        cfg += &format!(
            "frontend rtmp\n  mode tcp\n  bind {rtmp}\n  default_backend rtmp\n\
             backend rtmp\n  mode tcp\n  balance roundrobin\n"
        );
        for (i, n) in nodes.iter().enumerate() {
            cfg += &format!(
                "  server r{i} 127.0.0.1:{} check inter 300ms fall 2 rise 2\n",
                n.rtmp_port
            );
        }
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, cfg).unwrap();
        let child = std::process::Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("haproxy (Debian's package; scripts/test installs it)");
        Balancer {
            child,
            http,
            rtmp,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The live playlist through the balancer (a lesson's stream is private: with a playback
/// token), if it answers 200.
async fn playlist(
    http: &reqwest::Client,
    lb: &Balancer,
    stream: Uuid,
    token: &str,
) -> Option<String> {
    let r = http
        .get(lb.url(&format!("/hls/live/{stream}/index.m3u8?token={token}")))
        .send()
        .await
        .ok()?;
    if r.status() != StatusCode::OK {
        return None;
    }
    r.text().await.ok()
}

/// The session id in a live playlist's segment URIs (`{session}/segment-N.ts`).
fn media_sequence(playlist: &str) -> u64 {
    playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("a live playlist has a media sequence")
}

fn session_of(playlist: &str) -> Option<String> {
    segment_uris(playlist)
        .first()
        .and_then(|u| u.split('/').next())
        .map(str::to_owned)
}

/// Read chat frames until `n` messages of `room` were seen (in the order they came), or 30 s
/// passed.
async fn messages_until(c: &mut Client, room: &str, n: usize, seen: &mut Vec<i64>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while seen.len() < n {
        assert!(tokio::time::Instant::now() < deadline, "only {seen:?}");
        let v = c.next().await;
        assert_ne!(v["type"], "_closed", "closed while waiting");
        // The lesson room's messages only (notifications come on the user's own channel).
        if v["type"] == "message" && v["channel"] == room {
            seen.push(v["message"]["seq"].as_i64().unwrap());
        }
    }
}

/// Whether the connection still answers (a ping, its pong); the messages that arrive meanwhile
/// are counted in `seen`.
async fn alive(c: &mut Client, room: &str, seen: &mut Vec<i64>) -> bool {
    let ping = yawc::Frame::text(json!({"type": "ping", "nonce": 1}).to_string());
    if futures::SinkExt::send(&mut c.ws, ping).await.is_err() {
        return false;
    }
    loop {
        match tokio::time::timeout(Duration::from_secs(3), c.ws.next()).await {
            Ok(Some(f)) if f.opcode() == yawc::OpCode::Text => {
                let v: Value = serde_json::from_slice(f.payload()).unwrap();
                if v["type"] == "pong" {
                    return true;
                }
                if v["type"] == "message" && v["channel"] == room {
                    seen.push(v["message"]["seq"].as_i64().unwrap());
                }
            }
            Ok(Some(f)) if f.opcode() != yawc::OpCode::Close => {}
            _ => return false,
        }
    }
}

#[tokio::test]
async fn three_nodes_behind_haproxy_carry_a_lesson_through_the_death_of_its_node() {
    // The school's data (users, a course, a lesson, an enrolled student), made by an app in
    // this process whose database and signing keys the three nodes share.
    let class = Class::new(|_| {}).await;
    let db = PgPool::connect(&class.app.database_url).await.unwrap();
    let stream: Uuid = sqlx::query_scalar("SELECT live_stream_id FROM lessons WHERE id = $1")
        .bind(Uuid::parse_str(&class.lesson).unwrap())
        .fetch_one(&db)
        .await
        .unwrap();
    let shared = tempfile::tempdir().unwrap();
    let tag = Uuid::new_v4().simple().to_string();
    let settings = vec![
        (
            "WEMASTER__STORAGE__LOCAL__ROOT".to_string(),
            shared.path().join("objects").display().to_string(),
        ),
        (
            "WEMASTER__AUTH__KEYS_DIR".into(),
            class.app.settings.auth.keys_dir.display().to_string(),
        ),
        ("WEMASTER__LIVE__NODE_HEARTBEAT_S".into(), "1".into()),
        ("WEMASTER__LIVE__NODE_LOST_AFTER_S".into(), "3".into()),
        // The balancer and the other nodes pass on the viewer's address.
        (
            "WEMASTER__HTTP__TRUSTED_PROXIES".into(),
            "127.0.0.0/8".into(),
        ),
        (
            "WEMASTER__CHAT__KEY_PREFIX".into(),
            format!("wm:chat:lb-{tag}:"),
        ),
        (
            "WEMASTER__AUTH__LIMITS__KEY_PREFIX".into(),
            format!("wm:rl:lb-{tag}:"),
        ),
    ];
    let mut nodes: Vec<Server> = (0..3)
        .map(|i| {
            Server::start_with(
                &class.app.database_url,
                &shared.path().join(format!("node{i}")),
                free_port(),
                free_port(),
                settings.clone(),
            )
        })
        .collect();
    for n in &nodes {
        n.wait_ready().await;
    }
    let lb = Balancer::start(&nodes.iter().collect::<Vec<_>>());
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while http
        .get(lb.url("/readyz"))
        .send()
        .await
        .map(|r| r.status())
        .ok()
        != Some(StatusCode::OK)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "HAProxy never answered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The API through the balancer: the teacher gets a stream key for the lesson's stream.
    let teacher = &class.teacher.1;
    let api = |method: reqwest::Method, path: String| {
        let r = http.request(method, lb.url(&path)).bearer_auth(teacher);
        async move { r.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let key = api(
        reqwest::Method::POST,
        format!("/api/v1/live-streams/{stream}/reset-stream-key"),
    )
    .await;
    let key = key["stream_key"].as_str().expect("a key").to_string();
    let rtmp_url = format!("rtmp://{}/live/{key}", lb.rtmp);
    let grant = api(
        reqwest::Method::POST,
        format!("/api/v1/live-streams/{stream}/playback-token"),
    )
    .await;
    let viewing = grant["token"]
        .as_str()
        .expect("a playback token")
        .to_string();

    // Chat through the balancer (round robin: the two land on different nodes).
    let room = format!("lesson:{}", class.lesson);
    let mut t = Client::connect(lb.http, teacher).await;
    let mut s = Client::connect(lb.http, &class.student.1).await;
    t.subscribe(&room, None).await;
    s.subscribe(&room, None).await;
    // A sender sees its own message in its ack; the others as a message frame.
    let (mut t_seen, mut s_seen) = (Vec::new(), Vec::new());
    let ack = t.say(&room, "before-1", "before the crash").await;
    assert_eq!(ack["type"], "ack", "{ack}");
    t_seen.push(ack["message"]["seq"].as_i64().unwrap());
    messages_until(&mut s, &room, 1, &mut s_seen).await;

    // The lesson goes live through the balancer; a viewer plays it through the balancer.
    let mut publisher = ffmpeg_publish(&rtmp_url, 60, true);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let first_session = loop {
        if let Some(p) = playlist(&http, &lb, stream, &viewing).await
            && segment_uris(&p).len() >= 2
        {
            break session_of(&p).unwrap();
        }
        if tokio::time::Instant::now() > deadline {
            let st = api(
                reqwest::Method::GET,
                format!("/api/v1/live-streams/{stream}"),
            )
            .await;
            let exited = publisher.try_wait().unwrap();
            let mut err = String::new();
            if exited.is_some() {
                use std::io::Read;
                publisher
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .unwrap();
            }
            let p = http
                .get(lb.url(&format!("/hls/live/{stream}/index.m3u8")))
                .send()
                .await
                .unwrap();
            panic!(
                "never live through the balancer: {st}\nffmpeg: {exited:?} {err}\nplaylist: {} {}",
                p.status(),
                p.text().await.unwrap()
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    // Two segments uploaded, so the first recording has something to finish.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (up,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM recording_segments WHERE uploaded_at IS NOT NULL")
                .fetch_one(&db)
                .await
                .unwrap();
        if up >= 2 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "nothing recorded");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Where the viewer's playlist stood before the crash: its numbering must go on from there.
    let before = playlist(&http, &lb, stream, &viewing).await.expect("live");
    let next_before = media_sequence(&before) + segment_uris(&before).len() as u64;

    // Kill the node holding the lesson, without warning.
    let holder: String = sqlx::query_scalar(
        "SELECT n.internal_url FROM live_streams s JOIN cluster_nodes n ON n.id = s.node_id
          WHERE s.id = $1",
    )
    .bind(stream)
    .fetch_one(&db)
    .await
    .unwrap();
    let victim = nodes
        .iter()
        .position(|n| holder.ends_with(&format!(":{}", n.port)))
        .expect("the holder is one of the three");
    let killed_at = tokio::time::Instant::now();
    nodes[victim].kill9();
    // The encoder's connection died with the node: like OBS, it connects again (through the
    // balancer, which sends it to a node that is up).
    let _ = publisher.wait();
    let publisher = ffmpeg_publish(&rtmp_url, 12, true);

    // The viewer: the playlist it reloads goes on — the same session, its numbering continued
    // after a discontinuity (at most one reload shows it unavailable in between) — and keeps
    // playing.
    let deadline = killed_at + Duration::from_secs(30);
    let resumed = loop {
        if let Some(p) = playlist(&http, &lb, stream, &viewing).await
            && p.contains("#EXT-X-DISCONTINUITY\n")
        {
            break p;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the lesson never came back"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(
        session_of(&resumed).as_deref(),
        Some(first_session.as_str()),
        "the same session goes on: {resumed}"
    );
    assert!(
        media_sequence(&resumed) >= next_before,
        "numbering goes on from {next_before}: {resumed}"
    );
    for uri in segment_uris(&resumed) {
        assert!(
            !before.contains(&format!("\n{uri}")),
            "{uri} named another segment before the crash"
        );
    }
    let reconnected_in = killed_at.elapsed();
    for _ in 0..6 {
        assert!(
            playlist(&http, &lb, stream, &viewing).await.is_some(),
            "a reload failed after the lesson came back"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Chat: a client whose node died connects again through the balancer and catches up from
    // the last message it saw; nothing is lost, nothing repeated.
    let mut clients = Vec::new();
    for (c, token, mut seen) in [
        (t, teacher.clone(), t_seen),
        (s, class.student.1.clone(), s_seen),
    ] {
        let mut c = c;
        if !alive(&mut c, &room, &mut seen).await {
            c = Client::connect(lb.http, &token).await;
            let sub = c.subscribe(&room, seen.last().copied()).await;
            assert_eq!(sub["type"], "subscribed", "{sub}");
        }
        clients.push((c, seen));
    }
    let (mut t, mut t_seen) = clients.remove(0);
    let (mut s, mut s_seen) = clients.remove(0);
    // The chat persister's lease may have been on the dead node: it moves within 10 s. A
    // retried client id is stored once.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        t.send(json!({"type": "send", "channel": room, "client_id": "after-1", "body": "after the crash"}))
            .await;
        let v =
            tokio::time::timeout(Duration::from_secs(5), t.next_of_any(&["ack", "error"])).await;
        if let Ok(v) = v
            && v["type"] == "ack"
        {
            t_seen.push(v["message"]["seq"].as_i64().unwrap());
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "chat never acknowledged again"
        );
    }
    messages_until(&mut s, &room, 2, &mut s_seen).await;
    let ack = s.say(&room, "after-2", "and another").await;
    assert_eq!(ack["type"], "ack", "{ack}");
    s_seen.push(ack["message"]["seq"].as_i64().unwrap());
    messages_until(&mut t, &room, 3, &mut t_seen).await;
    assert_eq!(t_seen, vec![1, 2, 3], "the teacher's messages");
    assert_eq!(s_seen, vec![1, 2, 3], "the student's messages");

    // The recording: one, the lesson's — what the dead node uploaded, then (after a
    // discontinuity) the new node's part; between them no more than the reconnect.
    assert!(
        crate::live_rtmp::wait_child(publisher, Duration::from_secs(60))
            .await
            .success()
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let rows = loop {
        let rows: Vec<(
            String,
            time::OffsetDateTime,
            Option<time::OffsetDateTime>,
            i64,
        )> = sqlx::query_as(
            "SELECT status, started_at, ended_at, duration_ms FROM recordings
                  WHERE live_stream_id = $1 ORDER BY started_at",
        )
        .bind(stream)
        .fetch_all(&db)
        .await
        .unwrap();
        if !rows.is_empty() && rows.iter().all(|r| r.0 == "ready") {
            break rows;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "recordings: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(rows.len(), 1, "one recording of the lesson: {rows:?}");
    let segments: Vec<(i32, bool, bool, Option<Uuid>, time::OffsetDateTime, i32)> = sqlx::query_as(
        "SELECT s.seq, s.discontinuity, s.lost, s.node_id, s.started_at, s.duration_ms
           FROM recording_segments s JOIN recordings r ON r.id = s.recording_id
          WHERE r.live_stream_id = $1 ORDER BY s.seq",
    )
    .bind(stream)
    .fetch_all(&db)
    .await
    .unwrap();
    // The part each node recorded: the dead node's (stored before the crash; what it never
    // uploaded is marked lost), then the new node's, from a discontinuity on.
    let cut = segments
        .iter()
        .position(|s| s.1)
        .expect("a discontinuity where the new node goes on");
    let (old, new) = segments.split_at(cut);
    let old_node = old[0].3;
    assert!(old.iter().all(|s| s.3 == old_node), "{segments:?}");
    assert!(
        new.iter()
            .all(|s| s.3 == new[0].3 && s.3 != old_node && !s.2),
        "{segments:?}"
    );
    assert!(old.iter().filter(|s| !s.2).count() >= 2, "{segments:?}");
    let stored_old = old.iter().rfind(|s| !s.2).unwrap();
    let old_end = stored_old.4 + time::Duration::milliseconds(stored_old.5.into());
    let gap = (new[0].4 - old_end).as_seconds_f64();
    assert!(
        gap < reconnected_in.as_secs_f64() + 4.0,
        "{gap:.1} s missing from the recording; the lesson came back in {reconnected_in:?}"
    );
    let new_ms: i64 = new.iter().map(|s| i64::from(s.5)).sum();
    assert!(
        new_ms >= 8_000,
        "the new node recorded the rest: {segments:?}"
    );
    assert!(
        rows[0].3 >= new_ms + 3_000,
        "the recording holds both parts: {rows:?} {segments:?}"
    );
    let lost = old.iter().filter(|s| s.2).count();
    println!(
        "lesson back through the balancer {reconnected_in:.1?} after the kill, the same session; one recording of {:.1} s: {:.1} s from the dead node ({lost} segment(s) it never uploaded), {gap:.1} s gap, {:.1} s from the new one",
        rows[0].3 as f64 / 1000.0,
        (rows[0].3 - new_ms) as f64 / 1000.0,
        new_ms as f64 / 1000.0
    );
}
