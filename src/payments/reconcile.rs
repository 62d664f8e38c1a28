//! The reconciliation job: expires pending orders past their deadline, expires payout requests
//! nobody decided in time, voids expired holds, purges old idempotency keys, and checks the
//! ledger (balances equal the sum of transfers; posted legs sum to zero per currency) — logging
//! loudly if it ever does not.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::{idempotency, ledger, orders, payouts};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub orders_expired: u64,
    pub payouts_expired: u64,
    pub holds_voided: u64,
    pub keys_purged: u64,
    pub ledger_mismatches: usize,
}

pub async fn run_once(pool: &PgPool, idempotency_ttl_h: u64) -> Result<Report, sqlx::Error> {
    let payouts_expired = payouts::expire_stale(pool).await?;
    let mut conn = pool.acquire().await?;
    let orders_expired = orders::expire_stale(&mut conn).await?;
    let holds_voided = ledger::void_expired(&mut conn).await?;
    let keys_purged = idempotency::purge(&mut conn, idempotency_ttl_h).await?;
    let (mismatched, unbalanced) = ledger::audit(&mut conn).await?;
    if !mismatched.is_empty() || !unbalanced.is_empty() {
        tracing::error!(?mismatched, ?unbalanced, "ledger audit failed");
    }
    Ok(Report {
        orders_expired,
        payouts_expired,
        holds_voided,
        keys_purged,
        ledger_mismatches: mismatched.len() + unbalanced.len(),
    })
}

pub fn spawn(pool: PgPool, idempotency_ttl_h: u64, every: Duration, stop: CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every.max(Duration::from_secs(1)));
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            match run_once(&pool, idempotency_ttl_h).await {
                Ok(r) if r != Report::default() => tracing::info!(?r, "payments reconciliation"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "payments reconciliation failed"),
            }
        }
    });
}
