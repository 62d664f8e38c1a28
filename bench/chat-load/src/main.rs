//! Chat load tool (bench/chat.sh runs it): opens N WebSocket connections to `GET /api/v1/ws`,
//! subscribes `room_size` of them to one lesson room and the rest to `other_rooms` other lesson
//! rooms, then publishes into the big room at `rate` messages/s for `duration_s` and measures
//! - delivery latency (send → receipt; the body carries the send time in µs since the epoch;
//!   client and server share the host clock),
//! - lost, duplicated and out-of-order messages per listener (by `seq` against the acks),
//! - the server's CPU (utime+stime from /proc/<pid>/stat) and RSS (VmRSS) per connection.
//!
//! Setup through the public API: the teacher logs in and creates a free published course with
//! its lessons; students (created beforehand with `wemaster admin create-user`) log in and
//! enroll. Connections are spread over the students (raise `chat.max_connections_per_user`).

use std::{
    collections::HashSet,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use clap::Parser;
use futures::{SinkExt, StreamExt, stream};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::watch;
use wemaster_chat_load::{Api, connect, next_json, now_us, open, pct, proc_stats};
use yawc::{Frame, OpCode, TcpWebSocket};

#[derive(Parser, Debug, Clone)]
struct Args {
    /// The server's base URL.
    #[arg(long, default_value = "http://127.0.0.1:18490")]
    url: String,
    /// The teacher (publisher) account.
    #[arg(long)]
    teacher_email: String,
    /// Password of the teacher and of every student.
    #[arg(long, env = "BENCH_PASSWORD")]
    password: String,
    /// Students are `<student_prefix><i>@bench.example`, i in 0..students.
    #[arg(long, default_value = "bench-student-")]
    student_prefix: String,
    #[arg(long, default_value_t = 50)]
    students: usize,
    /// WebSocket connections in total (the publisher's not counted).
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// Listeners in the big room (the first `room_size` connections).
    #[arg(long, default_value_t = 2_000)]
    room_size: usize,
    /// Other lesson rooms the remaining connections are spread over (idle).
    #[arg(long, default_value_t = 40)]
    other_rooms: usize,
    /// Messages per second published into the big room.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    #[arg(long, default_value_t = 60)]
    duration_s: u64,
    /// Connections opened at once.
    #[arg(long, default_value_t = 50)]
    concurrency: usize,
    /// Seconds of idle measurement (all connections open, nothing published).
    #[arg(long, default_value_t = 10)]
    idle_s: u64,
    /// The server's pid, for CPU and RSS.
    #[arg(long)]
    server_pid: Option<u32>,
    /// More processes whose CPU and RSS are reported one by one over the same windows (the
    /// nodes of a cluster and its balancer: bench/cluster.sh), comma-separated.
    #[arg(long, value_delimiter = ',')]
    watch_pids: Vec<u32>,
    /// Write the summary JSON here too.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Deserialize)]
struct Incoming<'a> {
    r#type: &'a str,
    #[serde(default, borrow)]
    message: Option<Msg<'a>>,
}

#[derive(Deserialize)]
struct Msg<'a> {
    seq: i64,
    body: &'a str,
}

/// What one listener saw.
#[derive(Default)]
struct Heard {
    seqs: Vec<i64>,
    latencies_us: Vec<u32>,
    closed: bool,
}

async fn listen(mut ws: TcpWebSocket, record: bool, mut stop: watch::Receiver<bool>) -> Heard {
    let mut h = Heard::default();
    loop {
        let f = tokio::select! {
            f = ws.next() => f,
            _ = stop.changed() => break,
        };
        let Some(f) = f else {
            h.closed = true;
            break;
        };
        match f.opcode() {
            OpCode::Close => {
                h.closed = true;
                break;
            }
            // yawc queues its automatic pong until the next write, and a listener never
            // writes: answer at once, or the server's idle timeout closes the connection.
            OpCode::Ping => {
                let _ = ws.send(Frame::pong(f.payload().to_vec())).await;
                continue;
            }
            OpCode::Text if record => {}
            _ => continue,
        }
        let Ok(v) = serde_json::from_slice::<Incoming>(f.payload()) else {
            continue;
        };
        if v.r#type != "message" {
            continue;
        }
        let Some(m) = v.message else { continue };
        let now = now_us();
        if let Some(t) = m.body.split(' ').nth(1).and_then(|t| t.parse::<u64>().ok()) {
            h.latencies_us
                .push(now.saturating_sub(t).min(u32::MAX as u64) as u32);
        }
        h.seqs.push(m.seq);
    }
    let _ = ws
        .send(Frame::close(yawc::close::CloseCode::Normal, ""))
        .await;
    h
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let api = Api {
        http: reqwest::Client::new(),
        base: args.url.trim_end_matches('/').to_owned(),
    };
    let ws_url = format!(
        "{}/api/v1/ws?v=1",
        api.base
            .replacen("http://", "ws://", 1)
            .replacen("https://", "wss://", 1)
    );

    // Setup: a fresh course per run, so the big room's seq starts at 0.
    let teacher = api.login(&args.teacher_email, &args.password).await?;
    let course = api
        .post(
            "/api/v1/courses",
            Some(&teacher),
            json!({"title": "Chat bench", "price": {"amount": 0, "currency": "CNY"},
                   "visibility": "published"}),
        )
        .await?["id"]
        .as_str()
        .context("course id")?
        .to_owned();
    let mut rooms = Vec::new();
    for i in 0..=args.other_rooms {
        let lesson = api
            .post(
                &format!("/api/v1/courses/{course}/lessons"),
                Some(&teacher),
                json!({"title": format!("Room {i}"), "kind": "broadcast",
                       "starts_at": "2026-12-01T09:00:00Z", "duration_minutes": 45}),
            )
            .await?;
        rooms.push(format!(
            "lesson:{}",
            lesson["id"].as_str().context("lesson id")?
        ));
    }
    let mut tokens = Vec::new();
    for i in 0..args.students {
        let email = format!("{}{i}@bench.example", args.student_prefix);
        let t = api.login(&email, &args.password).await?;
        api.post(
            &format!("/api/v1/courses/{course}/enrollments"),
            Some(&t),
            json!({}),
        )
        .await?;
        tokens.push(t);
    }
    eprintln!(
        "setup: course {course}, {} rooms, {} students",
        rooms.len(),
        tokens.len()
    );

    let base_stats = proc_stats(args.server_pid);
    let (stop_tx, stop_rx) = watch::channel(false);
    let started = Instant::now();
    let plan: Vec<(usize, String, String)> = (0..args.connections)
        .map(|i| {
            let room = if i < args.room_size {
                rooms[0].clone()
            } else if args.other_rooms > 0 {
                rooms[1 + (i - args.room_size) % args.other_rooms].clone()
            } else {
                rooms[0].clone()
            };
            (i, tokens[i % tokens.len()].clone(), room)
        })
        .collect();
    // Each connection is read (and its pings answered) from the moment it is open: opening
    // 10,000 takes longer than the server's idle timeout.
    let opened: Vec<(usize, Result<tokio::task::JoinHandle<Heard>>)> = stream::iter(plan)
        .map(|(i, token, room)| {
            let ws_url = ws_url.clone();
            let stop_rx = stop_rx.clone();
            let record = i < args.room_size;
            async move {
                let mut last = Err(anyhow::anyhow!("not tried"));
                for _ in 0..3 {
                    last = open(&ws_url, &token, &room).await;
                    if last.is_ok() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                (i, last.map(|ws| tokio::spawn(listen(ws, record, stop_rx))))
            }
        })
        .buffer_unordered(args.concurrency)
        .collect()
        .await;
    let open_s = started.elapsed().as_secs_f64();
    let mut failed = 0;
    let mut listeners = Vec::new();
    for (i, r) in opened {
        match r {
            Ok(task) => listeners.push((i < args.room_size, task)),
            Err(e) => {
                if failed < 5 {
                    eprintln!("connection {i} failed: {e:#}");
                }
                failed += 1;
            }
        }
    }
    eprintln!(
        "opened {} connections in {open_s:.1} s ({failed} failed)",
        listeners.len()
    );

    // Idle: every connection open, nothing published.
    let watched = |pids: &[u32]| -> Vec<Option<(f64, u64)>> {
        pids.iter().map(|p| proc_stats(Some(*p))).collect()
    };
    let w_idle0 = watched(&args.watch_pids);
    let idle0 = proc_stats(args.server_pid);
    tokio::time::sleep(Duration::from_secs(args.idle_s)).await;
    let idle1 = proc_stats(args.server_pid);
    let w_idle1 = watched(&args.watch_pids);

    // Publish: the teacher at `rate`, acks read by a separate task.
    let mut publisher = connect(&ws_url, &teacher).await?;
    next_json(&mut publisher).await?; // hello
    let (mut sink, mut source) = publisher.split();
    let room = rooms[0].clone();
    let acks = tokio::spawn(async move {
        let mut seqs = HashSet::new();
        let mut errors = 0u64;
        while let Some(f) = source.next().await {
            if f.opcode() != OpCode::Text {
                continue;
            }
            let v: Value = match serde_json::from_slice(f.payload()) {
                Ok(v) => v,
                Err(_) => continue,
            };
            match v["type"].as_str() {
                Some("ack") => {
                    seqs.insert(v["message"]["seq"].as_i64().unwrap_or(-1));
                }
                Some("error") => {
                    errors += 1;
                    if errors <= 5 {
                        eprintln!("publisher error: {v}");
                    }
                }
                _ => {}
            }
        }
        (seqs, errors)
    });
    // Client ids are unique per user for good: a retried id is acknowledged with the message
    // first stored under it (an earlier run's), so each run has its own.
    let run = &course[course.len() - 12..];
    let w_pub0 = watched(&args.watch_pids);
    let pub0 = proc_stats(args.server_pid);
    let pub_started = Instant::now();
    let total = (args.rate * args.duration_s as f64).round() as u64;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for n in 0..total {
        tick.tick().await;
        let frame = json!({"type": "send", "channel": room, "client_id": format!("{run}-{n}"),
                           "body": format!("{n} {}", now_us())});
        sink.send(Frame::text(frame.to_string())).await?;
    }
    let pub_s = pub_started.elapsed().as_secs_f64();
    let pub1 = proc_stats(args.server_pid);
    let w_pub1 = watched(&args.watch_pids);
    // Let the last messages arrive.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _ = sink
        .send(Frame::close(yawc::close::CloseCode::Normal, ""))
        .await;
    let (acked, pub_errors) = tokio::time::timeout(Duration::from_secs(10), acks)
        .await
        .map(|r| r.unwrap_or_default())
        .unwrap_or_default();
    let _ = stop_tx.send(true);

    let mut lat = Vec::new();
    let (mut lost, mut dup, mut disorder, mut closed, mut big) = (0u64, 0u64, 0u64, 0u64, 0u64);
    for (record, h) in listeners {
        let h = h.await?;
        closed += u64::from(h.closed);
        if !record {
            continue;
        }
        big += 1;
        let mut seen = HashSet::new();
        let mut prev = 0;
        for s in &h.seqs {
            if !seen.insert(*s) {
                dup += 1;
            }
            if *s <= prev {
                disorder += 1;
            }
            prev = *s;
        }
        lost += acked.iter().filter(|s| !seen.contains(s)).count() as u64;
        lat.extend(h.latencies_us);
    }
    lat.sort_unstable();
    let cpu = |a: Option<(f64, u64)>, b: Option<(f64, u64)>, secs: f64| {
        a.zip(b).map(|(a, b)| 100.0 * (b.0 - a.0) / secs)
    };
    let rss_per_conn = base_stats
        .zip(idle0)
        .map(|(a, b)| (b.1 as f64 - a.1 as f64) * 1024.0 / args.connections as f64);
    let watched: Vec<Value> = args
        .watch_pids
        .iter()
        .enumerate()
        .map(|(i, pid)| {
            json!({"pid": pid,
                   "cpu_idle_pct": cpu(w_idle0[i], w_idle1[i], args.idle_s as f64),
                   "cpu_publish_pct": cpu(w_pub0[i], w_pub1[i], pub_s),
                   "rss_end_mib": w_pub1[i].map(|s| s.1 as f64 / 1024.0)})
        })
        .collect();
    let summary = json!({
        "connections": args.connections, "failed": failed, "open_s": open_s,
        "room_size": args.room_size, "other_rooms": args.other_rooms,
        "rate": args.rate, "duration_s": args.duration_s,
        "published": total, "acked": acked.len(), "publisher_errors": pub_errors,
        "deliveries": lat.len(), "expected_deliveries": acked.len() as u64 * big,
        "lost": lost, "duplicated": dup, "out_of_order": disorder, "closed_early": closed,
        "latency_ms": {"p50": pct(&lat, 50.0), "p99": pct(&lat, 99.0),
                       "max": lat.last().map(|m| *m as f64 / 1000.0)},
        "server": {
            "rss_before_mib": base_stats.map(|s| s.1 as f64 / 1024.0),
            "rss_open_mib": idle0.map(|s| s.1 as f64 / 1024.0),
            "rss_end_mib": pub1.map(|s| s.1 as f64 / 1024.0),
            "rss_per_connection_kib": rss_per_conn.map(|b| b / 1024.0),
            "cpu_idle_pct": cpu(idle0, idle1, args.idle_s as f64),
            "cpu_publish_pct": cpu(pub0, pub1, pub_s),
            "cpu_open_s": base_stats.zip(idle0).map(|(a, b)| b.0 - a.0),
        },
        "watched": watched,
    });
    println!("{}", serde_json::to_string_pretty(&summary)?);
    if let Some(out) = &args.out {
        std::fs::write(out, serde_json::to_string_pretty(&summary)?)?;
    }
    Ok(())
}
