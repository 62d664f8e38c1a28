//! `/wallet` and `/wallet/transactions`, and the transaction list every view of the ledger
//! answers (the wallet's, a teacher's earnings', the admins').

use axum::{
    extract::State,
    http::header,
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::{
    domain::{Page, PageLimit},
    http::{
        error::{ApiError, Problem},
        extract::{AuthUser, Json, Query},
    },
    payments::{
        Currency, Money, ledger,
        transactions::{self, Transaction},
    },
    state::AppState,
};

#[derive(Debug, Serialize, ToSchema)]
pub struct Wallet {
    /// Settled balance.
    pub balance: Money,
    /// Held by pending transfers (e.g. refunds in flight).
    pub held: Money,
    /// What can be spent: balance - held.
    pub available: Money,
}

#[utoipa::path(get, path = "/wallet", tag = "payments", security(("bearer" = [])),
    responses((status = 200, body = Wallet), (status = 401, body = Problem)))]
pub(super) async fn get_wallet(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<Wallet>, ApiError> {
    let currency = Currency::try_from(state.settings.payments.currency.clone())?;
    let mut conn = state.db.acquire().await?;
    let account = ledger::account(
        &mut conn,
        &ledger::AccountRef::UserWallet(user.id),
        &currency,
    )
    .await?;
    let b = ledger::balance(&mut conn, account).await?;
    Ok(Json(Wallet {
        balance: Money::new(b.posted, currency.clone()),
        held: Money::new(b.held, currency.clone()),
        available: Money::new(b.available(), currency),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct TransactionParams {
    /// Transfer kind: topup, purchase, refund, refund_settle, reversal, adjustment, payout,
    /// payout_settle.
    pub kind: Option<String>,
    /// pending, posted, voided.
    pub state: Option<String>,
    pub order_id: Option<Uuid>,
    /// Admin view only: the account owner.
    pub user_id: Option<Uuid>,
    /// Admin view only: account kind (user_wallet, teacher_earnings, teacher_receivable,
    /// platform_revenue, ...).
    pub account_kind: Option<String>,
    /// `csv` for a CSV export of the page.
    pub format: Option<String>,
    pub cursor: Option<Uuid>,
    pub limit: Option<i64>,
}

impl TransactionParams {
    fn filter(&self) -> transactions::Filter {
        transactions::Filter {
            kind: self.kind.clone(),
            state: self.state.clone(),
            order_id: self.order_id,
            owner_id: self.user_id,
            account_kind: self.account_kind.clone(),
            before: self.cursor,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TransactionList {
    pub items: Vec<Transaction>,
    pub next_cursor: Option<Uuid>,
}

/// Legs of `accounts` (all accounts when `None`) matching `q`, as JSON or (`?format=csv`) CSV.
pub(super) async fn transactions_response(
    conn: &mut sqlx::PgConnection,
    q: &TransactionParams,
    accounts: Option<&[Uuid]>,
) -> Result<Response, ApiError> {
    let limit = PageLimit::parse(q.limit)?;
    let Page { items, next_cursor } =
        transactions::list(conn, &q.filter(), accounts, limit).await?;
    if q.format.as_deref() != Some("csv") {
        return Ok(Json(TransactionList { items, next_cursor }).into_response());
    }
    let out = transactions::to_csv(&items);
    let mut r = ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], out).into_response();
    if let Some(c) = next_cursor
        && let Ok(v) = header::HeaderValue::from_str(&format!("<?cursor={c}>; rel=\"next\""))
    {
        r.headers_mut().insert(header::LINK, v);
    }
    Ok(r)
}

#[utoipa::path(get, path = "/wallet/transactions", tag = "payments", params(TransactionParams),
    security(("bearer" = [])),
    responses((status = 200, body = TransactionList), (status = 401, body = Problem), (status = 422, body = Problem)))]
pub(super) async fn wallet_transactions(
    State(state): State<AppState>,
    user: AuthUser,
    Query(mut q): Query<TransactionParams>,
) -> Result<Response, ApiError> {
    let currency = Currency::try_from(state.settings.payments.currency.clone())?;
    let mut conn = state.db.acquire().await?;
    let account = ledger::account(
        &mut conn,
        &ledger::AccountRef::UserWallet(user.id),
        &currency,
    )
    .await?;
    q.user_id = None;
    q.account_kind = None;
    transactions_response(&mut conn, &q, Some(&[account])).await
}
