//! Per node, one task that turns many small events into few frames:
//! - reactions are added up per lesson and sent to the room once per second (one frame per
//!   listener per second per node, however many react), and stored per 10 s bucket;
//! - a poll that got answers has its results counted from the database and sent at most every
//!   200 ms (exact whichever node took each answer; `rev` orders tallies from several nodes);
//! - polls whose timer ran out are closed (one node wins each, by its `UPDATE`) and announced.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    time::Duration,
};

use serde_json::json;
use sqlx::PgPool;
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{Reaction, store};
use crate::{
    cache::Redis,
    chat::{
        Keys,
        hub::{self, Audience, Wire},
    },
};

/// How often dirty polls are counted and sent.
const RESULTS_EVERY: Duration = Duration::from_millis(200);
/// The reactions window.
const REACTIONS_EVERY: Duration = Duration::from_secs(1);

/// What the live counts hold: a reaction, or a `confused` marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Count {
    Reaction(Reaction),
    Confused,
}

impl Count {
    fn name(self) -> &'static str {
        match self {
            Count::Reaction(r) => r.as_str(),
            Count::Confused => "confused",
        }
    }
}

enum Cmd {
    Count { lesson: Uuid, what: Count },
    PollDirty { poll: Uuid },
}

/// Handle on the node's tally task (cheap to clone).
#[derive(Clone)]
pub struct Tally {
    tx: mpsc::Sender<Cmd>,
}

impl Tally {
    pub fn start(db: PgPool, redis: Redis, keys: Keys, shutdown: CancellationToken) -> Tally {
        let (tx, rx) = mpsc::channel(65_536);
        tokio::spawn(
            Task {
                db,
                redis,
                keys,
                counts: HashMap::new(),
                dirty: HashSet::new(),
            }
            .run(rx, shutdown),
        );
        Tally { tx }
    }

    /// Count a reaction (or a confused marker) in this second's window.
    pub async fn count(&self, lesson: Uuid, what: Count) {
        let _ = self.tx.send(Cmd::Count { lesson, what }).await;
    }

    /// A poll got an answer (or changed): send its results soon.
    pub async fn poll_changed(&self, poll: Uuid) {
        let _ = self.tx.send(Cmd::PollDirty { poll }).await;
    }
}

struct Task {
    db: PgPool,
    redis: Redis,
    keys: Keys,
    counts: HashMap<Uuid, BTreeMap<Count, i32>>,
    dirty: HashSet<Uuid>,
}

impl Task {
    async fn run(mut self, mut rx: mpsc::Receiver<Cmd>, shutdown: CancellationToken) {
        let mut results = tokio::time::interval(RESULTS_EVERY);
        let mut window = tokio::time::interval(REACTIONS_EVERY);
        results.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        window.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(Cmd::Count { lesson, what }) => {
                        *self.counts.entry(lesson).or_default().entry(what).or_default() += 1;
                    }
                    Some(Cmd::PollDirty { poll }) => {
                        self.dirty.insert(poll);
                    }
                    None => break,
                },
                _ = results.tick() => self.send_results().await,
                _ = window.tick() => {
                    self.flush_reactions().await;
                    self.expire_polls().await;
                }
                () = shutdown.cancelled() => break,
            }
        }
        // What was counted but not yet sent is still stored.
        self.flush_reactions().await;
    }

    async fn send_results(&mut self) {
        if self.dirty.is_empty() {
            return;
        }
        let polls: Vec<Uuid> = self.dirty.drain().collect();
        let Ok(mut db) = self.db.acquire().await else {
            // Try again on the next tick.
            self.dirty.extend(polls);
            return;
        };
        for id in polls {
            let r = async {
                let Some(p) = store::poll(&mut db, id).await? else {
                    return Ok(None);
                };
                let t = store::tally(&mut db, id, p.options.len()).await?;
                Ok::<_, sqlx::Error>(Some((p, t)))
            }
            .await;
            match r {
                Ok(Some((p, t))) => {
                    let wire = results_wire(&p, &t);
                    let _ = hub::publish(&self.redis, &self.keys, &wire).await;
                    metrics::counter!("poll_results_sent_total").increment(1);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "interaction: cannot count a poll");
                    self.dirty.insert(id);
                }
            }
        }
    }

    async fn flush_reactions(&mut self) {
        if self.counts.is_empty() {
            return;
        }
        let now = OffsetDateTime::now_utc();
        for (lesson, counts) in std::mem::take(&mut self.counts) {
            let frame = json!({
                "type": "reactions", "channel": format!("lesson:{lesson}"), "window_ms": 1000,
                "counts": counts.iter().map(|(k, n)| (k.name(), *n)).collect::<BTreeMap<_, _>>(),
            });
            let wire = Wire::Live {
                channel: format!("lesson:{lesson}"),
                audience: Audience::All,
                frame,
                staff_frame: None,
            };
            let _ = hub::publish(&self.redis, &self.keys, &wire).await;
            let stored: Vec<(Reaction, i32)> = counts
                .iter()
                .filter_map(|(k, n)| match k {
                    Count::Reaction(r) => Some((*r, *n)),
                    Count::Confused => None,
                })
                .collect();
            if stored.is_empty() {
                continue;
            }
            let r = async {
                let mut db = self.db.acquire().await?;
                store::add_reactions(&mut db, lesson, now, &stored).await
            }
            .await;
            if let Err(e) = r {
                tracing::warn!(error = %e, "interaction: cannot store reaction counts");
            }
        }
    }

    async fn expire_polls(&mut self) {
        let closed = async {
            let mut db = self.db.acquire().await?;
            store::expire_polls(&mut db).await
        }
        .await;
        match closed {
            Ok(polls) => {
                for p in polls {
                    let _ = hub::publish(&self.redis, &self.keys, &poll_wire(&p)).await;
                    self.dirty.insert(p.id);
                }
            }
            Err(e) => tracing::warn!(error = %e, "interaction: cannot close expired polls"),
        }
    }
}

/// `poll` to everyone (moderators' version with the right answer).
pub fn poll_wire(p: &store::PollRow) -> Wire {
    let channel = format!("lesson:{}", p.lesson_id);
    Wire::Live {
        frame: json!({"type": "poll", "channel": channel, "poll": p.view(false)}),
        staff_frame: Some(json!({"type": "poll", "channel": channel, "poll": p.view(true)})),
        channel,
        audience: Audience::All,
    }
}

/// `poll_results` to moderators, or to everyone while the results are shown.
pub fn results_wire(p: &store::PollRow, t: &super::PollResults) -> Wire {
    let channel = format!("lesson:{}", p.lesson_id);
    Wire::Live {
        frame: json!({"type": "poll_results", "channel": channel, "poll_id": p.id,
                      "counts": t.counts, "answered": t.answered, "rev": t.rev}),
        staff_frame: None,
        channel,
        audience: if p.results_shown {
            Audience::All
        } else {
            Audience::Staff
        },
    }
}
