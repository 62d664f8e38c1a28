//! The reconciliation job: asks providers about open orders and refunds (see
//! [`super::remote::check_open`]: paid ones are applied, closed ones cancelled, unpaid ones past
//! their deadline closed at the provider and expired, refunds resolved or re-submitted),
//! expires pending orders of providers it cannot ask, expires payout requests nobody decided
//! in time, voids expired holds, purges old idempotency keys, and checks the ledger (balances
//! equal the sum of transfers; posted legs sum to zero per currency) — logging loudly if it
//! ever does not.

use std::{sync::Arc, time::Duration};

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::{
    PaymentSettings,
    gateway::Gateways,
    idempotency, ledger, orders, payouts,
    remote::{self, CheckReport},
};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// What asking the providers found.
    pub providers: CheckReport,
    pub orders_expired: u64,
    pub payouts_expired: u64,
    pub holds_voided: u64,
    pub keys_purged: u64,
    pub ledger_mismatches: usize,
}

pub async fn run_once(
    pool: &PgPool,
    settings: &PaymentSettings,
    gateways: &Gateways,
    on_paid: &remote::OnPaid,
) -> Result<Report, sqlx::Error> {
    let providers = match remote::check_open(pool, gateways, settings, on_paid).await {
        Ok(r) => r,
        Err(super::PaymentError::Db(e)) => return Err(e),
        Err(e) => {
            tracing::warn!(error = %e, "asking providers about open payments failed");
            CheckReport::default()
        }
    };
    let payouts_expired = payouts::expire_stale(pool).await?;
    let mut conn = pool.acquire().await?;
    let orders_expired =
        orders::expire_stale(&mut conn, &gateways.callable()).await? + providers.orders_expired;
    let holds_voided = ledger::void_expired(&mut conn).await?;
    let keys_purged = idempotency::purge(&mut conn, settings.idempotency_ttl_h).await?;
    let (mismatched, unbalanced) = ledger::audit(&mut conn).await?;
    if !mismatched.is_empty() || !unbalanced.is_empty() {
        tracing::error!(?mismatched, ?unbalanced, "ledger audit failed");
    }
    Ok(Report {
        providers,
        orders_expired,
        payouts_expired,
        holds_voided,
        keys_purged,
        ledger_mismatches: mismatched.len() + unbalanced.len(),
    })
}

/// Start the periodic reconciliation; it ends when `stop` is cancelled.
pub fn spawn(
    pool: PgPool,
    settings: PaymentSettings,
    gateways: Arc<Gateways>,
    on_paid: Arc<remote::OnPaid>,
    lease: crate::jobs::Lease,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let every = Duration::from_secs(settings.reconcile_interval_s);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every.max(Duration::from_secs(1)));
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            if !lease.claim_every("payments.reconcile", every).await {
                continue;
            }
            match run_once(&pool, &settings, &gateways, &*on_paid).await {
                Ok(r) if r != Report::default() => tracing::info!(?r, "payments reconciliation"),
                Ok(_) => {}
                Err(e) => {
                    metrics::counter!("payments_reconcile_failures_total").increment(1);
                    tracing::warn!(error = %e, "payments reconciliation failed")
                }
            }
        }
    })
}
