//! The sender: a task on every node that claims due deliveries and POSTs them.
//!
//! A pass claims up to `concurrency × 4` due deliveries in one statement (`FOR UPDATE SKIP
//! LOCKED`, so nodes never claim the same row) and moves their `next_attempt_at` past the time
//! the batch can take (its rounds of sends at their time limit): that is the claim's lease — a
//! node that dies mid-send leaves rows that become due again. Then it sends them, `concurrency`
//! at a time, and writes each outcome: a 2xx is delivered; anything else (an error status, a redirect — not followed —, a time-out, a
//! refused connection) waits for the next retry, or fails once past the give-up time.

use std::time::{Duration, Instant};

use futures::StreamExt;
use sqlx::PgPool;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::WebhookSettings;

/// How much of a receiver's answer is kept with the attempt.
const RESPONSE_EXCERPT: usize = 1024;
/// How often events past `webhooks.keep_days` are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Start the sender; it stops at `shutdown` after the sends in flight.
pub fn spawn(
    settings: WebhookSettings,
    db: PgPool,
    lease: crate::jobs::Lease,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let targets = super::targets::Targets::new(settings.allow_internal_networks.clone());
    let client = reqwest::Client::builder()
        // Host names resolve here, to allowed addresses only (src/webhooks/targets.rs).
        .dns_resolver(std::sync::Arc::new(targets.clone()))
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(settings.timeout_s))
        .connect_timeout(Duration::from_secs(settings.timeout_s.min(5)))
        .user_agent(concat!("WeMaster-Webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("the webhook HTTP client builds");
    tokio::spawn(async move {
        let poll = Duration::from_millis(settings.poll_interval_ms);
        let mut pruned = None::<Instant>;
        loop {
            // Old events go once an hour, on one node of the cluster.
            if pruned.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
                pruned = Some(Instant::now());
                if lease.claim_every("webhooks.prune", PRUNE_EVERY).await {
                    let done = async {
                        let mut conn = db.acquire().await?;
                        super::store::prune(&mut conn, settings.keep_days).await
                    };
                    match done.await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(events = n, "old webhook events deleted"),
                        Err(e) => tracing::warn!(error = %e, "cannot delete old webhook events"),
                    }
                }
            }
            // Shutdown does not wait for slow receivers: a try cut short keeps its claim's
            // lease, so it is sent again later (at least once).
            let outcome = tokio::select! {
                () = shutdown.cancelled() => break,
                outcome = pass(&settings, &db, &client, &targets) => outcome,
            };
            match outcome {
                // A full batch: more may be due, look again at once.
                Ok(n) if n == batch(&settings) => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "webhook pass failed"),
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(poll) => {}
            }
        }
    })
}

fn batch(settings: &WebhookSettings) -> usize {
    settings.concurrency * 4
}

struct Due {
    id: Uuid,
    attempts: i32,
    give_up_at: OffsetDateTime,
    url: String,
    secret: String,
    previous_secret: Option<String>,
    event_id: Uuid,
    event_type: String,
    data: serde_json::Value,
    event_at: OffsetDateTime,
}

/// One pass: claim, send, record. Returns how many were claimed.
pub async fn pass(
    settings: &WebhookSettings,
    db: &PgPool,
    client: &reqwest::Client,
    targets: &super::targets::Targets,
) -> Result<usize, sqlx::Error> {
    // The claim must outlast the whole batch: `concurrency` at a time, each up to the limit.
    let rounds = batch(settings).div_ceil(settings.concurrency) as u64;
    let lease_s = (settings.timeout_s * rounds + 30) as f64;
    let give_up_s = settings.give_up_after_s as f64;
    let due = sqlx::query_as!(
        Due,
        r#"WITH claimed AS (
               SELECT d.id FROM webhook_deliveries d
                 JOIN webhook_endpoints e ON e.id = d.endpoint_id AND e.enabled
                WHERE d.status = 'pending' AND d.next_attempt_at <= now()
                ORDER BY d.next_attempt_at LIMIT $1
                FOR UPDATE OF d SKIP LOCKED)
           UPDATE webhook_deliveries d
              SET next_attempt_at = now() + make_interval(secs => $2), attempts = d.attempts + 1
             FROM claimed, webhook_endpoints e, webhook_events ev
            WHERE d.id = claimed.id AND e.id = d.endpoint_id AND ev.id = d.event_id
        RETURNING d.id AS "id!", d.attempts AS "attempts!",
                  coalesce(d.give_up_at, ev.created_at + make_interval(secs => $3)) AS "give_up_at!",
                  e.url AS "url!", e.secret AS "secret!",
                  CASE WHEN e.previous_secret_until > now() THEN e.previous_secret END AS previous_secret,
                  ev.id AS "event_id!", ev.type AS "event_type!", ev.data AS "data!",
                  ev.created_at AS "event_at!""#,
        batch(settings) as i64,
        lease_s,
        give_up_s
    )
    .fetch_all(db)
    .await?;
    let n = due.len();
    futures::stream::iter(due)
        .for_each_concurrent(settings.concurrency, |d| async move {
            let outcome = send(client, targets, &d).await;
            if let Err(e) = record(settings, db, &d, &outcome).await {
                // The claim's lease runs out and the delivery is tried again: at least once.
                tracing::warn!(error = %e, delivery_id = %d.id, "cannot record a webhook attempt");
            }
        })
        .await;
    Ok(n)
}

struct Outcome {
    status: Option<u16>,
    error: Option<String>,
    response: String,
    took: Duration,
}

impl Outcome {
    fn delivered(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

async fn send(client: &reqwest::Client, targets: &super::targets::Targets, d: &Due) -> Outcome {
    // An address in the URL itself is not resolved, so not filtered by the resolver; and the
    // allowed networks may have changed since the endpoint was saved.
    if let Ok(url) = url::Url::parse(&d.url)
        && let Some(ip) = targets.refused_literal(&url)
    {
        return Outcome {
            status: None,
            error: Some(format!(
                "refused: {ip} is an internal address (allow its network in webhooks.allow_internal_networks)"
            )),
            response: String::new(),
            took: Duration::ZERO,
        };
    }
    let body = serde_json::json!({
        "id": d.event_id,
        "type": d.event_type,
        "timestamp": d.event_at.format(&time::format_description::well_known::Rfc3339).ok(),
        "data": d.data,
    })
    .to_string();
    let id = d.event_id.to_string();
    let ts = OffsetDateTime::now_utc().unix_timestamp();
    let mut signatures = super::signature(&d.secret, &id, ts, body.as_bytes());
    if let Some(previous) = &d.previous_secret {
        signatures.push(' ');
        signatures.push_str(&super::signature(previous, &id, ts, body.as_bytes()));
    }
    let started = Instant::now();
    let answer = client
        .post(&d.url)
        .header("content-type", "application/json")
        .header("webhook-id", &id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", signatures)
        .body(body)
        .send()
        .await;
    let mut outcome = Outcome {
        status: None,
        error: None,
        response: String::new(),
        took: Duration::ZERO,
    };
    match answer {
        Ok(mut resp) => {
            let status = resp.status();
            outcome.status = Some(status.as_u16());
            let mut kept = Vec::new();
            while kept.len() < RESPONSE_EXCERPT {
                match resp.chunk().await {
                    Ok(Some(chunk)) => kept.extend_from_slice(&chunk),
                    _ => break,
                }
            }
            kept.truncate(RESPONSE_EXCERPT);
            outcome.response = String::from_utf8_lossy(&kept).into_owned();
            if !status.is_success() {
                outcome.error = Some(if status.is_redirection() {
                    format!("answered {status}: redirects are not followed")
                } else {
                    format!("answered {status}")
                });
            }
        }
        Err(e) => {
            outcome.error = Some(if let Some(refused) = super::targets::refusal(&e) {
                format!("refused: {refused}")
            } else if e.is_timeout() {
                "timed out".to_owned()
            } else if e.is_connect() {
                "cannot connect".to_owned()
            } else {
                "request failed".to_owned()
            });
        }
    }
    outcome.took = started.elapsed();
    outcome
}

async fn record(
    settings: &WebhookSettings,
    db: &PgPool,
    d: &Due,
    o: &Outcome,
) -> Result<(), sqlx::Error> {
    let next = OffsetDateTime::now_utc() + settings.retry_delay(d.attempts.max(1) as u32);
    let (status, label) = if o.delivered() {
        ("delivered", "delivered")
    } else if next >= d.give_up_at {
        ("failed", "failed")
    } else {
        ("pending", "retry")
    };
    metrics::counter!("webhook_deliveries_total", "outcome" => label).increment(1);
    metrics::histogram!("webhook_delivery_seconds").record(o.took.as_secs_f64());
    if status == "failed" {
        tracing::warn!(delivery_id = %d.id, url = %d.url, attempts = d.attempts,
            error = o.error.as_deref().unwrap_or(""), "webhook delivery given up");
    }
    let last_status = o.status.map(i32::from);
    let mut tx = db.begin().await?;
    sqlx::query!(
        "INSERT INTO webhook_attempts (id, delivery_id, status, error, duration_ms, response)
         VALUES ($1, $2, $3, $4, $5, $6)",
        Uuid::now_v7(),
        d.id,
        last_status,
        o.error,
        o.took.as_millis().min(i32::MAX as u128) as i32,
        o.response
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        "UPDATE webhook_deliveries SET status = $2, last_status = $3, last_error = $4,
                next_attempt_at = $5, delivered_at = CASE WHEN $2 = 'delivered' THEN now() END
          WHERE id = $1",
        d.id,
        status,
        last_status,
        o.error,
        next
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}
