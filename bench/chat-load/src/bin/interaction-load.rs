//! Interaction load tool (`bench/chat.sh --scenario interaction` runs it): a lesson of N
//! students (one account and one WebSocket each) and its teacher. The teacher opens a poll;
//! every student answers within `answer_window_s` (a share of them sends its answer twice, as a
//! client retrying would) and reacts `reactions_per_s` times a second for `duration_s`
//! (some reactions retried with the same client id). Measured:
//! - answers: acked, and the teacher's final tally (must equal the students: each counted once);
//! - the teacher's aggregate delay: for each answer, from its ack to the first `poll_results`
//!   the teacher receives that counts it (answers ranked by ack time; p50/p99/max);
//! - reactions: counted by the server (acks with `counted: true`) against the sums of the
//!   `reactions` frames a listener receives (equal: none lost, none twice), and `reactions`
//!   frames per listener per second (bounded by the one-per-second window, whatever the rate);
//! - the server's CPU over the interaction phase.
//!
//! Setup: the teacher logs in and creates a free published course and a lesson; students
//! (`<prefix><i>@bench.example`, created beforehand) log in and enroll.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use clap::Parser;
use futures::{SinkExt, StreamExt, stream};
use serde_json::{Value, json};
use tokio::sync::{Mutex, watch};
use wemaster_chat_load::{Api, connect, next_json, open, proc_stats};
use yawc::{Frame, OpCode, TcpWebSocket};

#[derive(Parser, Debug, Clone)]
struct Args {
    #[arg(long, default_value = "http://127.0.0.1:18490")]
    url: String,
    #[arg(long)]
    teacher_email: String,
    #[arg(long, env = "BENCH_PASSWORD")]
    password: String,
    #[arg(long, default_value = "bench-student-")]
    student_prefix: String,
    /// Students, each with their own account and connection.
    #[arg(long, default_value_t = 2000)]
    students: usize,
    /// Every student answers at a random moment within this window after the poll opens.
    #[arg(long, default_value_t = 5.0)]
    answer_window_s: f64,
    /// Reactions per second per student.
    #[arg(long, default_value_t = 2.0)]
    reactions_per_s: f64,
    /// Seconds of reacting (the poll opens at its start).
    #[arg(long, default_value_t = 20)]
    duration_s: u64,
    /// One in this many answers and reactions is sent twice with the same client id.
    #[arg(long, default_value_t = 10)]
    retry_every: usize,
    #[arg(long, default_value_t = 50)]
    concurrency: usize,
    #[arg(long)]
    server_pid: Option<u32>,
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

/// What one student saw and did.
#[derive(Default)]
struct Student {
    answer_acked_at: Option<Instant>,
    reactions_counted: u64,
    errors: u64,
    /// `reactions` frames received, by second since the start.
    frames_per_s: HashMap<u64, u32>,
    reaction_sum: u64,
    closed: bool,
}

/// A small, fast, seedable generator (no new dependency for a bench).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

const REACTIONS: [&str; 6] = ["thumbs_up", "heart", "laugh", "wow", "clap", "lost"];

#[allow(clippy::too_many_arguments)]
async fn student(
    ws: TcpWebSocket,
    i: usize,
    room: String,
    poll: watch::Receiver<Option<(String, Instant)>>,
    args: Args,
    run: String,
    t0: Instant,
) -> Student {
    let mut s = Student::default();
    let (mut sink, mut source) = ws.split();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (i as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D));
    let mut poll = poll;
    // Wait for the poll.
    let (poll_id, opened) = loop {
        if let Some(p) = poll.borrow().clone() {
            break p;
        }
        tokio::select! {
            _ = poll.changed() => {}
            f = source.next() => match f {
                None => { s.closed = true; return s; }
                Some(f) if f.opcode() == OpCode::Ping => {
                    let _ = sink.send(Frame::pong(f.payload().to_vec())).await;
                }
                Some(_) => {}
            },
        }
    };
    let answer_at = opened + Duration::from_secs_f64(rng.next() * args.answer_window_s);
    let end = opened + Duration::from_secs(args.duration_s);
    let period = Duration::from_secs_f64(1.0 / args.reactions_per_s);
    let mut next_reaction = opened + period.mul_f64(rng.next());
    let mut answered = false;
    let mut n = 0usize;
    let answer_cid = format!("{run}-a-{i}");
    loop {
        let now = Instant::now();
        if now >= end + Duration::from_secs(3) {
            break;
        }
        let wake = if !answered {
            answer_at.min(next_reaction)
        } else {
            next_reaction
        };
        let wake = if now >= end {
            end + Duration::from_secs(3)
        } else {
            wake
        };
        tokio::select! {
            _ = tokio::time::sleep_until(wake.into()) => {
                let now = Instant::now();
                if !answered && now >= answer_at {
                    answered = true;
                    let choice = i % 4;
                    let f = json!({"type": "poll_answer", "channel": room, "client_id": answer_cid,
                                   "poll_id": poll_id, "choices": [choice]}).to_string();
                    let _ = sink.send(Frame::text(f.clone())).await;
                    if i % args.retry_every == 0 {
                        let _ = sink.send(Frame::text(f)).await;
                    }
                }
                if now >= next_reaction && now < end {
                    next_reaction += period;
                    n += 1;
                    let f = json!({"type": "live_reaction", "channel": room,
                                   "client_id": format!("{run}-r-{i}-{n}"),
                                   "reaction": REACTIONS[(i + n) % REACTIONS.len()]}).to_string();
                    let _ = sink.send(Frame::text(f.clone())).await;
                    if n % args.retry_every == 0 {
                        let _ = sink.send(Frame::text(f)).await;
                    }
                }
            }
            f = source.next() => {
                let Some(f) = f else { s.closed = true; break };
                match f.opcode() {
                    OpCode::Ping => { let _ = sink.send(Frame::pong(f.payload().to_vec())).await; continue; }
                    OpCode::Close => { s.closed = true; break; }
                    OpCode::Text => {}
                    _ => continue,
                }
                let Ok(v) = serde_json::from_slice::<Value>(f.payload()) else { continue };
                match v["type"].as_str() {
                    Some("reactions") => {
                        *s.frames_per_s.entry(t0.elapsed().as_secs()).or_default() += 1;
                        if let Some(c) = v["counts"].as_object() {
                            s.reaction_sum += c.iter()
                                .filter(|(k, _)| k.as_str() != "confused")
                                .map(|(_, n)| n.as_u64().unwrap_or(0)).sum::<u64>();
                        }
                    }
                    Some("ack") if v["client_id"] == answer_cid.as_str() => {
                        s.answer_acked_at.get_or_insert(Instant::now());
                    }
                    Some("ack") if v.get("reaction").is_some() => {
                        if v["reaction"]["counted"] == true { s.reactions_counted += 1; }
                    }
                    Some("error") => {
                        s.errors += 1;
                    }
                    _ => {}
                }
            }
        }
    }
    let _ = sink
        .send(Frame::close(yawc::close::CloseCode::Normal, ""))
        .await;
    s
}

fn pct_ms(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p / 100.0).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let api = Api {
        http: reqwest::Client::new(),
        base: args.url.trim_end_matches('/').to_owned(),
    };
    let ws_url = format!("{}/api/v1/ws?v=1", api.base.replacen("http://", "ws://", 1));
    let teacher = api.login(&args.teacher_email, &args.password).await?;
    let course = api
        .post(
            "/api/v1/courses",
            Some(&teacher),
            json!({"title": "Interaction bench", "price": {"amount": 0, "currency": "CNY"},
                   "visibility": "published"}),
        )
        .await?["id"]
        .as_str()
        .context("course id")?
        .to_owned();
    let lesson = api
        .post(
            &format!("/api/v1/courses/{course}/lessons"),
            Some(&teacher),
            json!({"title": "Big class", "kind": "broadcast",
                   "starts_at": "2026-12-01T09:00:00Z", "duration_minutes": 45}),
        )
        .await?["id"]
        .as_str()
        .context("lesson id")?
        .to_owned();
    let room = format!("lesson:{lesson}");
    let setup = Instant::now();
    let tokens: Vec<Result<String>> = stream::iter(0..args.students)
        .map(|i| {
            let api = &api;
            let course = &course;
            let args = &args;
            async move {
                let email = format!("{}{i}@bench.example", args.student_prefix);
                let t = api.login(&email, &args.password).await?;
                api.post(
                    &format!("/api/v1/courses/{course}/enrollments"),
                    Some(&t),
                    json!({}),
                )
                .await?;
                Ok(t)
            }
        })
        .buffered(8)
        .collect()
        .await;
    let tokens: Vec<String> = tokens.into_iter().collect::<Result<_>>()?;
    eprintln!(
        "setup: {} students logged in and enrolled in {:.0} s",
        tokens.len(),
        setup.elapsed().as_secs_f64()
    );

    let run = lesson[lesson.len() - 12..].to_owned();
    let (poll_tx, poll_rx) = watch::channel(None);
    let t0 = Instant::now();
    let opened: Vec<(usize, Result<TcpWebSocket>)> =
        stream::iter(tokens.iter().cloned().enumerate())
            .map(|(i, token)| {
                let ws_url = ws_url.clone();
                let room = room.clone();
                async move { (i, open(&ws_url, &token, &room).await) }
            })
            .buffer_unordered(args.concurrency)
            .collect()
            .await;
    let mut tasks = Vec::new();
    let mut failed = 0;
    for (i, ws) in opened {
        match ws {
            Ok(ws) => tasks.push(tokio::spawn(student(
                ws,
                i,
                room.clone(),
                poll_rx.clone(),
                args.clone(),
                run.clone(),
                t0,
            ))),
            Err(e) => {
                if failed < 5 {
                    eprintln!("student {i}: {e:#}");
                }
                failed += 1;
            }
        }
    }
    eprintln!(
        "{} connections open ({failed} failed) in {:.1} s",
        tasks.len(),
        t0.elapsed().as_secs_f64()
    );

    // The teacher: open the poll, then record every tally with its arrival time.
    let mut tws = connect(&ws_url, &teacher).await?;
    tws.send(Frame::text(
        json!({"type": "subscribe", "channel": room}).to_string(),
    ))
    .await?;
    loop {
        let v = next_json(&mut tws).await?;
        if v["type"] == "subscribed" && v["channel"] == room.as_str() {
            break;
        }
    }
    let cpu0 = proc_stats(args.server_pid);
    let phase = Instant::now();
    tws.send(Frame::text(
        json!({"type": "poll_open", "channel": room, "client_id": format!("{run}-poll"),
               "question": "Which one?", "options": ["a", "b", "c", "d"]})
        .to_string(),
    ))
    .await?;
    let poll_id = loop {
        let v = next_json(&mut tws).await?;
        match v["type"].as_str() {
            Some("ack") => break v["poll"]["id"].as_str().context("poll id")?.to_owned(),
            Some("error") => bail!("poll_open: {v}"),
            _ => {}
        }
    };
    let opened_at = Instant::now();
    poll_tx.send_replace(Some((poll_id.clone(), opened_at)));
    let tallies: Arc<Mutex<Vec<(Instant, i64, Vec<i64>)>>> = Arc::default();
    let teacher_task = {
        let tallies = tallies.clone();
        let until = opened_at + Duration::from_secs(args.duration_s + 3);
        tokio::spawn(async move {
            let mut frames = 0u64;
            while Instant::now() < until {
                let f = match tokio::time::timeout_at(until.into(), tws.next()).await {
                    Ok(Some(f)) => f,
                    _ => break,
                };
                match f.opcode() {
                    OpCode::Ping => {
                        let _ = tws.send(Frame::pong(f.payload().to_vec())).await;
                        continue;
                    }
                    OpCode::Text => {}
                    _ => continue,
                }
                frames += 1;
                let Ok(v) = serde_json::from_slice::<Value>(f.payload()) else {
                    continue;
                };
                if v["type"] == "poll_results" {
                    let counts = v["counts"]
                        .as_array()
                        .map(|a| a.iter().map(|n| n.as_i64().unwrap_or(0)).collect())
                        .unwrap_or_default();
                    tallies.lock().await.push((
                        Instant::now(),
                        v["answered"].as_i64().unwrap_or(0),
                        counts,
                    ));
                }
            }
            frames
        })
    };
    let mut students = Vec::new();
    for t in tasks {
        students.push(t.await?);
    }
    let phase_s = phase.elapsed().as_secs_f64();
    let cpu1 = proc_stats(args.server_pid);
    let teacher_frames = teacher_task.await?;
    let tallies = tallies.lock().await.clone();

    // Answers: each counted once; the delay until the teacher's tally includes it.
    let mut acks: Vec<Instant> = students.iter().filter_map(|s| s.answer_acked_at).collect();
    acks.sort();
    let mut delays = Vec::with_capacity(acks.len());
    for (rank, at) in acks.iter().enumerate() {
        let need = rank as i64 + 1;
        if let Some((t, _, _)) = tallies.iter().find(|(t, n, _)| *n >= need && *t >= *at) {
            delays.push(t.duration_since(*at).as_secs_f64() * 1000.0);
        }
    }
    delays.sort_by(f64::total_cmp);
    let final_tally = tallies.last().map(|t| (t.1, t.2.clone()));
    let expected: Vec<i64> = (0..4)
        .map(|c| {
            students
                .iter()
                .enumerate()
                .filter(|(i, s)| i % 4 == c && s.answer_acked_at.is_some())
                .count() as i64
        })
        .collect();

    // Reactions: what the server counted against what a listener heard.
    let counted: u64 = students.iter().map(|s| s.reactions_counted).sum();
    let heard: Vec<u64> = students.iter().map(|s| s.reaction_sum).collect();
    let heard_min = heard.iter().copied().min().unwrap_or(0);
    let heard_max = heard.iter().copied().max().unwrap_or(0);
    let max_fps = students
        .iter()
        .flat_map(|s| s.frames_per_s.values().copied())
        .max()
        .unwrap_or(0);
    let mean_fps = students
        .iter()
        .map(|s| s.frames_per_s.values().sum::<u32>() as f64)
        .sum::<f64>()
        / students.len().max(1) as f64
        / (args.duration_s as f64 + 3.0);
    let summary = json!({
        "students": args.students, "connections_failed": failed,
        "closed_early": students.iter().filter(|s| s.closed).count(),
        "answers": {"acked": acks.len(), "final_answered": final_tally.as_ref().map(|t| t.0),
                    "final_counts": final_tally.as_ref().map(|t| t.1.clone()), "expected_counts": expected,
                    "tallies_received": tallies.len()},
        "aggregate_delay_ms": {"p50": pct_ms(&delays, 50.0), "p99": pct_ms(&delays, 99.0),
                               "max": delays.last().copied(), "measured": delays.len()},
        "reactions": {"counted_by_server": counted, "heard_min": heard_min, "heard_max": heard_max,
                      "errors": students.iter().map(|s| s.errors).sum::<u64>(),
                      "frames_per_listener_per_s_max": max_fps, "frames_per_listener_per_s_mean": mean_fps},
        "teacher_frames": teacher_frames,
        "server": {"cpu_pct": cpu0.zip(cpu1).map(|(a, b)| 100.0 * (b.0 - a.0) / phase_s),
                   "rss_mib": cpu1.map(|s| s.1 as f64 / 1024.0)},
        "phase_s": phase_s,
    });
    println!("{}", serde_json::to_string_pretty(&summary)?);
    if let Some(out) = &args.out {
        std::fs::write(out, serde_json::to_string_pretty(&summary)?)?;
    }
    Ok(())
}
