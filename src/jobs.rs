//! Periodic jobs once per cluster: every node runs the same loops (retention, payments
//! reconciliation, lesson notifications, chat upload clean-up), and before each run a node
//! claims the job's lease in PostgreSQL (`job_leases`). The claim holds for the job's interval,
//! so one node runs each job per interval and the others skip their ticks; a node that dies
//! mid-run leaves a lease that simply runs out.
//!
//! A lease row rather than an advisory lock: it works through PgBouncer's transaction pooling
//! (a session lock would stay on whichever server connection the pooler picked), it also
//! spaces the runs (a lock only keeps them apart), and `job_leases` shows ops who ran what last.
//!
//! The jobs stay idempotent on their own (retention's delete is conditional, notifications are
//! keyed, orders and refunds are claimed `FOR UPDATE SKIP LOCKED`): a run that outlasts its lease
//! may overlap the next one without harm. The lease saves the duplicate work and log lines.

use std::time::Duration;

use sqlx::PgPool;

/// This node's claim on periodic jobs.
#[derive(Clone)]
pub struct Lease {
    db: PgPool,
    holder: String,
}

impl Lease {
    /// A holder named after this process (host, pid and a random suffix: a restarted node is
    /// another holder).
    pub fn new(db: PgPool) -> Lease {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "node".into());
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        Lease::with_holder(
            db,
            format!("{host}:{}:{}", std::process::id(), &suffix[..8]),
        )
    }

    pub fn with_holder(db: PgPool, holder: String) -> Lease {
        Lease { db, holder }
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Claim job `name` for `span`: true when this node is to run it now (no lease, or the last
    /// one ran out). A database error counts as "not now": the job would fail anyway.
    pub async fn claim(&self, name: &str, span: Duration) -> bool {
        let span_s = span.as_secs_f64();
        let claimed = sqlx::query_scalar!(
            r#"INSERT INTO job_leases (name, holder, started_at, until)
               VALUES ($1, $2, now(), now() + make_interval(secs => $3))
               ON CONFLICT (name) DO UPDATE
                   SET holder = EXCLUDED.holder, started_at = EXCLUDED.started_at,
                       until = EXCLUDED.until
                   WHERE job_leases.until <= now()
               RETURNING name"#,
            name,
            self.holder,
            span_s
        )
        .fetch_optional(&self.db)
        .await;
        match claimed {
            Ok(row) => {
                if row.is_some() {
                    metrics::counter!("jobs_runs_total", "task" => name.to_owned()).increment(1);
                }
                row.is_some()
            }
            Err(e) => {
                tracing::debug!(job = name, error = %e, "job lease not claimed");
                false
            }
        }
    }

    /// Claim for a job that runs every `interval`: the lease ends a little before this node's
    /// next tick (timers never fire early, but the claim's own round trip lands after the tick),
    /// so the node that ran it may run it again, while another node's tick in between skips.
    pub async fn claim_every(&self, name: &str, interval: Duration) -> bool {
        self.claim(name, interval.mul_f64(0.9)).await
    }
}
