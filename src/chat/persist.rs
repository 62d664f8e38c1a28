//! The persister: moves chat writes from the Redis stream `wm:chat:in` into PostgreSQL, then
//! publishes them to every node.
//!
//! One persister works at a time in a cluster (a Redis lease, `wm:chat:persister`, renewed
//! while it works): with a single writer, events leave in sequence order per channel and every
//! node's hub sees them in that order, so no node has to reorder. Another node takes over when
//! the lease lapses and first claims the entries the old one left pending (`XAUTOCLAIM`).
//!
//! For each batch: read up to `persist_batch` entries → one transaction applies them in stream
//! order ([`store::apply`]: a retried write finds its first row by `(sender, client_id)`) →
//! commit → `PUBLISH` the outcomes in order → `XACK` + `XDEL`. The stream only ever holds what
//! is not yet stored, so it needs no trimming and trimming can never drop a message.

use std::time::{Duration, Instant};

use redis::{
    AsyncCommands,
    streams::{StreamAutoClaimOptions, StreamAutoClaimReply, StreamReadOptions, StreamReadReply},
};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{
    Canonical, GROUP, Keys,
    hub::Wire,
    store::{self, Outcome, Write},
};
use crate::cache::Redis;

/// A write as it waits in the stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub op: Op,
    pub channel: String,
    pub sender: Option<Uuid>,
    pub client_id: String,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub html: String,
    #[serde(default)]
    pub data: Option<serde_json::Value>,
    /// The message a `remove` removes.
    #[serde(default)]
    pub message: Option<Uuid>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Send,
    Remove,
}

impl Entry {
    fn to_write(&self) -> Option<Write> {
        Some(match self.op {
            Op::Send => Write::Send {
                channel: Canonical(self.channel.clone()),
                sender: self.sender,
                client_id: self.client_id.clone(),
                kind: match self.kind.as_deref() {
                    Some("notice") => "notice",
                    _ => "text",
                },
                body: self.body.clone(),
                html: self.html.clone(),
                data: self.data.clone(),
            },
            Op::Remove => Write::Remove {
                sender: self.sender?,
                client_id: self.client_id.clone(),
                message: self.message?,
            },
        })
    }
}

/// Queue one write (the socket's side). Returns once Redis has it.
pub async fn enqueue(redis: &Redis, keys: &Keys, entry: &Entry) -> redis::RedisResult<()> {
    let mut conn = redis.conn();
    let json = serde_json::to_string(entry).expect("entries serialize");
    let _: String = conn.xadd(keys.inbox(), "*", &[("j", json)]).await?;
    Ok(())
}

/// Start the persister task (every node runs one; one of them holds the lease).
pub fn spawn(
    db: PgPool,
    redis: Redis,
    keys: Keys,
    batch: usize,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let node = format!("node-{}", Uuid::new_v4().simple());
        let mut p = Persister {
            db,
            redis,
            batch: batch.max(1),
            node,
            keys,
            leader_until: None,
        };
        p.run(shutdown).await;
    })
}

struct Persister {
    db: PgPool,
    redis: Redis,
    batch: usize,
    /// This process's consumer name in the group (and its lease value).
    node: String,
    keys: Keys,
    /// When the lease was last renewed plus its length (safety margin applied).
    leader_until: Option<Instant>,
}

const LEASE: Duration = Duration::from_secs(10);
/// Entries another consumer has held this long unacknowledged are taken over.
const CLAIM_IDLE_MS: usize = 5_000;
/// How long one read waits for new entries (short, so the lease is renewed in time).
const BLOCK: Duration = Duration::from_secs(1);

impl Persister {
    async fn run(&mut self, shutdown: CancellationToken) {
        let mut reader = None;
        let mut own_pending = true;
        let mut failures = 0u32;
        while !shutdown.is_cancelled() {
            if reader.is_none() {
                // Blocking reads need their own connection (see `Redis::blocking_conn`).
                match self.redis.blocking_conn(BLOCK).await {
                    Ok(c) => reader = Some(c),
                    Err(e) => {
                        tracing::warn!(error = %e, "chat persister: cannot connect to Redis");
                        pause(&shutdown, Duration::from_secs(1)).await;
                        continue;
                    }
                }
            }
            match self.lead().await {
                Ok(true) => {}
                Ok(false) => {
                    pause(&shutdown, Duration::from_secs(1)).await;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "chat persister: lease check failed");
                    pause(&shutdown, Duration::from_secs(1)).await;
                    continue;
                }
            }
            let conn = reader.as_mut().expect("connected above");
            let step = tokio::select! {
                r = self.step(conn, own_pending, failures) => r,
                () = shutdown.cancelled() => break,
            };
            match step {
                Ok(n) => {
                    failures = 0;
                    if own_pending && n == 0 {
                        own_pending = false;
                    }
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = %e, failures, "chat persister: batch failed; retrying");
                    metrics::counter!("chat_persist_errors_total").increment(1);
                    // Whatever was read stays pending: read our own pending entries next.
                    own_pending = true;
                    reader = None;
                    pause(
                        &shutdown,
                        Duration::from_millis(200 * u64::from(failures.min(10))),
                    )
                    .await;
                }
            }
        }
        // Hand the lease over at once instead of letting it lapse.
        if self.leader_until.is_some() {
            let mut c = self.redis.conn();
            let _: redis::RedisResult<i64> = redis::Script::new(
                "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end",
            )
            .key(self.keys.leader())
            .arg(&self.node)
            .invoke_async(&mut c)
            .await;
        }
    }

    /// Hold (or take) the lease. `Ok(false)`: another node persists.
    async fn lead(&mut self) -> anyhow::Result<bool> {
        if let Some(until) = self.leader_until
            && until.saturating_duration_since(Instant::now()) > LEASE * 2 / 3
        {
            return Ok(true);
        }
        let mut c = self.redis.conn();
        let ms = LEASE.as_millis() as u64;
        let held: i64 = redis::Script::new(
            r"local v = redis.call('GET', KEYS[1])
              if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
              if not v then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 2 end
              return 0",
        )
        .key(self.keys.leader())
        .arg(&self.node)
        .arg(ms)
        .invoke_async(&mut c)
        .await?;
        let was = self.leader_until.is_some();
        if held == 0 {
            if was {
                tracing::warn!(node = %self.node, "chat persister: lost the lease");
            }
            self.leader_until = None;
            return Ok(false);
        }
        // Renewal happens well before expiry; a third of the lease is the safety margin.
        self.leader_until = Some(Instant::now() + LEASE);
        if held == 2 {
            tracing::info!(node = %self.node, "chat persister: took the lease");
            self.create_group().await?;
        }
        Ok(true)
    }

    /// One batch: entries claimed from a consumer that died, our own pending entries (after a
    /// failure), or new entries. After repeated failures the batch shrinks to one entry, and an
    /// entry that fails alone again and again is rejected (a poison entry must not stop chat).
    async fn step(
        &mut self,
        conn: &mut crate::cache::RedisConn,
        own_pending: bool,
        failures: u32,
    ) -> anyhow::Result<usize> {
        let count = if failures >= 3 { 1 } else { self.batch };
        let claimed: redis::RedisResult<StreamAutoClaimReply> = conn
            .xautoclaim_options(
                self.keys.inbox(),
                GROUP,
                &self.node,
                CLAIM_IDLE_MS,
                "0-0",
                StreamAutoClaimOptions::default().count(count),
            )
            .await;
        let claimed = match claimed {
            Err(e) if is_nogroup(&e) => return self.create_group().await.map(|_| 0),
            r => r?,
        };
        let entries: Vec<(String, Option<Entry>)> = if !claimed.claimed.is_empty() {
            tracing::info!(
                entries = claimed.claimed.len(),
                "chat persister: took over pending entries"
            );
            claimed.claimed.iter().map(parse).collect()
        } else {
            let opts = StreamReadOptions::default()
                .group(GROUP, &self.node)
                .count(count);
            // Our own pending entries are re-read from the start of our PEL ("0"); new ones
            // with ">" and a bounded block so the lease is renewed in time.
            let (start, opts) = if own_pending {
                ("0", opts)
            } else {
                (">", opts.block(BLOCK.as_millis() as usize))
            };
            let reply = tokio::time::timeout(
                Duration::from_secs(5),
                conn.xread_options::<_, _, StreamReadReply>(&[self.keys.inbox()], &[start], &opts),
            )
            .await
            .map_err(|_| anyhow::anyhow!("XREADGROUP timed out"))?;
            let reply = match reply {
                Err(e) if is_nogroup(&e) => return self.create_group().await.map(|_| 0),
                r => r?,
            };
            reply
                .keys
                .iter()
                .flat_map(|k| k.ids.iter())
                .map(parse)
                .collect()
        };
        if entries.is_empty() {
            return Ok(0);
        }
        let started = Instant::now();
        let events = match self.store(&entries).await {
            Ok(events) => events,
            // Only an entry the database itself refuses is poison; an outage is retried forever.
            Err(e) if failures >= 6 && entries.len() == 1 && is_refused(&e) => {
                tracing::error!(error = %e, id = %entries[0].0, "chat persister: entry keeps failing; rejected");
                metrics::counter!("chat_persist_rejected_total").increment(1);
                entries
                    .iter()
                    .filter_map(|(_, e)| e.as_ref())
                    .map(|e| event(e, Outcome::Rejected("unavailable")))
                    .collect()
            }
            Err(e) => return Err(e),
        };
        let stored = events
            .iter()
            .filter(|e| matches!(e, Wire::Stored { .. }))
            .count();
        let mut pipe = redis::pipe();
        for e in &events {
            pipe.publish(
                self.keys.events(),
                serde_json::to_string(e).expect("events serialize"),
            )
            .ignore();
        }
        let ids: Vec<&str> = entries.iter().map(|(id, _)| id.as_str()).collect();
        pipe.xack(self.keys.inbox(), GROUP, &ids)
            .ignore()
            .xdel(self.keys.inbox(), &ids)
            .ignore();
        let mut c = self.redis.conn();
        pipe.query_async::<()>(&mut c).await?;
        metrics::counter!("chat_messages_stored_total").increment(stored as u64);
        metrics::histogram!("chat_persist_batch_seconds").record(started.elapsed().as_secs_f64());
        Ok(entries.len())
    }

    /// Apply a batch in one transaction, in stream order.
    async fn store(&self, entries: &[(String, Option<Entry>)]) -> anyhow::Result<Vec<Wire>> {
        let mut tx = self.db.begin().await?;
        let mut events = Vec::with_capacity(entries.len());
        for (_, entry) in entries {
            let Some(entry) = entry else { continue };
            let Some(write) = entry.to_write() else {
                continue;
            };
            let outcome = store::apply(&mut tx, &write).await?;
            events.push(event(entry, outcome));
        }
        tx.commit().await?;
        Ok(events)
    }

    async fn create_group(&self) -> anyhow::Result<()> {
        let mut c = self.redis.conn();
        let r: redis::RedisResult<String> = c
            .xgroup_create_mkstream(self.keys.inbox(), GROUP, "0")
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(e) if e.to_string().contains("BUSYGROUP") => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

fn is_refused(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<sqlx::Error>(),
        Some(sqlx::Error::Database(_))
    )
}

fn is_nogroup(e: &redis::RedisError) -> bool {
    e.to_string().contains("NOGROUP")
}

fn parse(id: &redis::streams::StreamId) -> (String, Option<Entry>) {
    let entry = id.get::<String>("j").and_then(|j| {
        serde_json::from_str::<Entry>(&j)
            .inspect_err(|e| tracing::error!(id = %id.id, error = %e, "chat persister: unreadable entry dropped"))
            .ok()
    });
    (id.id.clone(), entry)
}

fn event(entry: &Entry, outcome: Outcome) -> Wire {
    match outcome {
        Outcome::Stored(ch, message) => Wire::Stored {
            channel: ch.0,
            sender: entry.sender,
            client_id: entry.client_id.clone(),
            message,
        },
        Outcome::Duplicate(ch, message) => Wire::Duplicate {
            channel: ch.0,
            sender: entry.sender,
            client_id: entry.client_id.clone(),
            message,
        },
        Outcome::Rejected(code) => Wire::Rejected {
            channel: entry.channel.clone(),
            sender: entry.sender,
            client_id: entry.client_id.clone(),
            code: code.into(),
        },
    }
}

async fn pause(shutdown: &CancellationToken, d: Duration) {
    tokio::select! {
        () = tokio::time::sleep(d) => {}
        () = shutdown.cancelled() => {}
    }
}
