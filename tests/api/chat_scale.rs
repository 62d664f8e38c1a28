//! Chat scale-out: two real `wemaster serve` processes sharing one PostgreSQL database, one
//! Redis and one `chat.key_prefix` (and one signing-key directory, so a token verifies on both).
//! Clients on either node see every message of a room once, in `seq` order; when the node
//! holding the persister lease is SIGKILLed mid-conversation the other takes over, nothing
//! acknowledged is lost, nothing is stored twice, and resuming clients get what they missed.

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    path::Path,
    time::{Duration, Instant},
};

use futures::{SinkExt, StreamExt};
use redis::AsyncCommands;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::Connection;
use wemaster::users::Role;
use yawc::{Frame, OpCode};

use crate::{
    chat::{Class, Client},
    helpers::{free_port, unique_email, wemaster_bin},
};

/// One `wemaster serve` child process.
pub(crate) struct Node {
    child: Option<std::process::Child>,
    pub(crate) addr: SocketAddr,
}

impl Node {
    fn start(class: &Class, prefix: &str, dir: &Path, name: &str) -> Node {
        Self::start_with(class, prefix, dir, name, &[])
    }

    /// A node with extra environment (settings) on top of the shared ones.
    pub(crate) fn start_with(
        class: &Class,
        prefix: &str,
        dir: &Path,
        name: &str,
        extra: &[(&str, &str)],
    ) -> Node {
        let port = free_port();
        let app = &class.app;
        let mut cmd = wemaster_bin();
        cmd.envs(extra.iter().copied());
        let child = cmd
            .arg("serve")
            .env("DATABASE_URL", &app.database_url)
            .envs(crate::helpers::redis_env())
            .env("WEMASTER__HTTP__LISTEN", format!("127.0.0.1:{port}"))
            // Tokens carry no node address, but keep every other setting the same on both.
            .env(
                "WEMASTER__HTTP__PUBLIC_URL",
                app.settings.http.default_public_url().to_string(),
            )
            .env("WEMASTER__RTMP__LISTEN", "127.0.0.1:0")
            .env("WEMASTER__WHIP__UDP_LISTEN", "127.0.0.1:0")
            .env("WEMASTER__STORAGE__LOCAL__ROOT", dir.join("objects"))
            .env(
                "WEMASTER__STORAGE__LOCAL__SIGNING_KEY",
                "test-signing-key-0123456789abcdef0123456789",
            )
            .env(
                "WEMASTER__MEDIA__SPOOL_DIR",
                dir.join(format!("spool-{name}")),
            )
            .env("WEMASTER__AUTH__KEYS_DIR", &app.settings.auth.keys_dir)
            .env(
                "WEMASTER__PLAYBACK__SECRET",
                "scale-playback-secret-0123456789abcdef",
            )
            .env("WEMASTER__CHAT__KEY_PREFIX", prefix)
            // A few hundred messages from four senders within seconds.
            .env("WEMASTER__CHAT__MESSAGES_PER_10S", "100000")
            .env("WEMASTER__CHAT__FRAMES_PER_10S", "100000")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        Node {
            child: Some(child),
            addr: format!("127.0.0.1:{port}").parse().unwrap(),
        }
    }

    pub(crate) async fn wait_ready(&self) {
        let client = reqwest::Client::new();
        for _ in 0..300 {
            if let Ok(r) = client
                .get(format!("http://{}/readyz", self.addr))
                .send()
                .await
                && r.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("node never became ready");
    }

    pub(crate) fn kill9(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A listener's view of the room: every `message` frame's `seq` and client id.
#[derive(Default)]
struct Seen {
    seqs: Vec<i64>,
    ids: Vec<String>,
}

impl Seen {
    fn last(&self) -> i64 {
        self.seqs.last().copied().unwrap_or(0)
    }
}

/// Read frames until `want` messages were seen in total or `within` passed; `None` when the
/// connection closed (its node died).
async fn listen(c: &mut Client, seen: &mut Seen, want: usize, within: Duration) -> Option<()> {
    let deadline = tokio::time::Instant::now() + within;
    while seen.seqs.len() < want {
        let f = tokio::time::timeout_at(deadline, c.ws.next()).await.ok()?;
        let f = f?;
        match f.opcode() {
            OpCode::Close => return None,
            OpCode::Text => {}
            _ => continue,
        }
        let v: Value = serde_json::from_slice(f.payload()).unwrap();
        if v["type"] == "message" {
            seen.seqs.push(v["message"]["seq"].as_i64().unwrap());
            seen.ids.push(format!(
                "{}/{}",
                v["message"]["sender_id"].as_str().unwrap(),
                v["message"]["client_id"].as_str().unwrap()
            ));
        }
    }
    Some(())
}

/// `seq` 1..=n, each once, in order.
fn assert_complete(who: &str, seen: &Seen, n: i64) {
    let want: Vec<i64> = (1..=n).collect();
    assert_eq!(seen.seqs, want, "{who}: every message once, in seq order");
    let distinct: HashSet<&String> = seen.ids.iter().collect();
    assert_eq!(distinct.len(), seen.ids.len(), "{who}: no message twice");
}

/// Send `client_ids` in order, each resent (same client id) until acknowledged; reconnects to
/// `fallback` when the node goes away. Returns the acknowledged `seq` per client id.
async fn send_all(
    mut c: Client,
    token: String,
    fallback: SocketAddr,
    room: String,
    client_ids: Vec<String>,
    pause: Duration,
) -> HashMap<String, i64> {
    let mut acked = HashMap::new();
    for cid in client_ids {
        loop {
            let frame = json!({"type": "send", "channel": room, "client_id": cid,
                               "body": format!("from {cid}")});
            let sent = c.ws.send(Frame::text(frame.to_string())).await.is_ok();
            // The ack, an error (ack_timeout: resend), or the node's death (reconnect, resend).
            let outcome = if sent {
                wait_outcome(&mut c, &cid).await
            } else {
                None
            };
            match outcome {
                Some(v) if v["type"] == "ack" => {
                    acked.insert(cid.clone(), v["message"]["seq"].as_i64().unwrap());
                    break;
                }
                Some(v) => {
                    assert_eq!(v["code"], "ack_timeout", "{v}");
                }
                None => {
                    c = Client::connect(fallback, &token).await;
                }
            }
        }
        tokio::time::sleep(pause).await;
    }
    acked
}

async fn wait_outcome(c: &mut Client, cid: &str) -> Option<Value> {
    loop {
        let f = tokio::time::timeout(Duration::from_secs(30), c.ws.next())
            .await
            .expect("an ack, an error or a close within 30 s")?;
        match f.opcode() {
            OpCode::Close => return None,
            OpCode::Text => {}
            _ => continue,
        }
        let v: Value = serde_json::from_slice(f.payload()).unwrap();
        if (v["type"] == "ack" || v["type"] == "error") && v["client_id"] == cid {
            return Some(v);
        }
    }
}

pub(crate) async fn enrolled_student(class: &Class) -> (uuid::Uuid, String) {
    let s = class
        .app
        .user_with(
            &unique_email("student"),
            "a fine passphrase",
            &[Role::Student],
        )
        .await;
    let r = class
        .app
        .send(
            Method::POST,
            &format!("/api/v1/courses/{}/enrollments", class.course),
            Some(&s.1),
            Some(&json!({})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    s
}

#[tokio::test]
async fn two_nodes_share_a_room_in_order_and_survive_the_persister_dying() {
    let class = Class::new(|_| {}).await;
    let room = format!("lesson:{}", class.lesson);
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("wm:chat:scale-{}:", uuid::Uuid::new_v4().simple());
    let lease = format!("{prefix}persister");
    let mut redis = crate::helpers::test_redis().await.conn();

    // Node A starts alone and takes the persister lease; B joins once A holds it.
    let mut a = Node::start(&class, &prefix, dir.path(), "a");
    a.wait_ready().await;
    let mut holder: Option<String> = None;
    for _ in 0..100 {
        holder = redis.get(&lease).await.unwrap();
        if holder.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let holder_a = holder.expect("node A took the persister lease");
    let b = Node::start(&class, &prefix, dir.path(), "b");
    b.wait_ready().await;

    let s2 = enrolled_student(&class).await;
    let s3 = enrolled_student(&class).await;
    // Senders: two on each node, from four users. Listeners: two on each node.
    let senders = [
        (a.addr, class.teacher.1.clone()),
        (b.addr, class.student.1.clone()),
        (a.addr, s2.1.clone()),
        (b.addr, s3.1.clone()),
    ];
    let mut listeners = Vec::new();
    for (addr, token) in [
        (a.addr, &class.teacher.1),
        (a.addr, &class.student.1),
        (b.addr, &s2.1),
        (b.addr, &s3.1),
    ] {
        let mut c = Client::connect(addr, token).await;
        assert_eq!(c.subscribe(&room, None).await["type"], "subscribed");
        listeners.push((addr, token.clone(), c, Seen::default()));
    }

    // Phase 1: 4 × 75 messages, concurrently from both nodes.
    let per_sender = 75;
    let mut tasks = Vec::new();
    for (i, (addr, token)) in senders.iter().enumerate() {
        let c = Client::connect(*addr, token).await;
        let ids = (0..per_sender).map(|n| format!("p1-{i}-{n}")).collect();
        tasks.push(tokio::spawn(send_all(
            c,
            token.clone(),
            b.addr,
            room.clone(),
            ids,
            Duration::ZERO,
        )));
    }
    let mut acked_seqs = HashSet::new();
    for t in tasks {
        for (_, seq) in t.await.unwrap() {
            assert!(acked_seqs.insert(seq), "two acks with seq {seq}");
        }
    }
    let n1 = 4 * per_sender as i64;
    assert_eq!(acked_seqs, (1..=n1).collect::<HashSet<i64>>());
    for (i, (_, _, c, seen)) in listeners.iter_mut().enumerate() {
        listen(c, seen, n1 as usize, Duration::from_secs(30))
            .await
            .unwrap_or_else(|| panic!("listener {i} lost its node"));
        assert_complete(&format!("listener {i}"), seen, n1);
    }

    // Phase 2: the same four senders keep writing (one message every 20 ms each); A, which
    // holds the lease, is SIGKILLed while messages are in flight. Senders on A reconnect to B
    // and resend what was not acknowledged (same client id).
    assert_eq!(
        redis.get::<_, Option<String>>(&lease).await.unwrap(),
        Some(holder_a.clone()),
        "A still holds the lease"
    );
    let per_sender2 = 60;
    let mut tasks = Vec::new();
    for (i, (addr, token)) in senders.iter().enumerate() {
        let c = Client::connect(*addr, token).await;
        let ids = (0..per_sender2).map(|n| format!("p2-{i}-{n}")).collect();
        tasks.push(tokio::spawn(send_all(
            c,
            token.clone(),
            b.addr,
            room.clone(),
            ids,
            Duration::from_millis(20),
        )));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    a.kill9();
    let killed = Instant::now();

    // B takes the lease over within the lease (10 s) plus a renewal period.
    let mut took = None;
    for _ in 0..200 {
        let h: Option<String> = redis.get(&lease).await.unwrap();
        if h.as_ref().is_some_and(|h| *h != holder_a) {
            took = Some(killed.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = took.expect("node B took the persister lease");
    assert!(took < Duration::from_secs(12), "takeover took {took:?}");

    let mut acked = HashMap::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    let n = n1 + 4 * per_sender2 as i64;
    assert_eq!(acked.len(), 4 * per_sender2);
    let acked_seqs: HashSet<i64> = acked.values().copied().collect();
    assert_eq!(
        acked_seqs,
        ((n1 + 1)..=n).collect::<HashSet<i64>>(),
        "every acknowledged message has its own seq, without gaps"
    );

    // Listeners on B got everything live; those on A resume on B from their last seq.
    for (i, (addr, token, c, seen)) in listeners.iter_mut().enumerate() {
        let who = format!("listener {i}");
        if *addr == b.addr {
            listen(c, seen, n as usize, Duration::from_secs(30))
                .await
                .unwrap_or_else(|| panic!("{who} lost node B"));
        } else {
            // Drain what A delivered before it died, then resume on B.
            let _ = listen(c, seen, n as usize, Duration::from_secs(2)).await;
            let mut resumed = Client::connect(b.addr, token).await;
            let sub = resumed.subscribe(&room, Some(seen.last())).await;
            assert_eq!(sub["type"], "subscribed", "{sub}");
            listen(&mut resumed, seen, n as usize, Duration::from_secs(30))
                .await
                .unwrap_or_else(|| panic!("{who} lost node B"));
            *c = resumed;
        }
        assert_complete(&who, seen, n);
    }

    // Stored once each: the database agrees with the acks.
    let mut db = sqlx::PgConnection::connect(&class.app.database_url)
        .await
        .unwrap();
    let (count, distinct, max): (i64, i64, Option<i64>) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT (m.sender_id, m.client_id)), max(m.seq)
           FROM chat_messages m JOIN chat_channels c ON c.id = m.channel_id WHERE c.name = $1",
    )
    .bind(&room)
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!((count, distinct, max), (n, n, Some(n)));
    // Nothing left waiting in the stream.
    let left: usize = redis.xlen(format!("{prefix}in")).await.unwrap();
    assert_eq!(left, 0, "the stream holds only what is not stored yet");
}
