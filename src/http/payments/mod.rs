//! Payments API: orders, the wallet and its transactions, refunds, teachers' earnings and
//! payouts, provider callbacks, and the admin views. Money-moving POSTs (`/orders`, `/refunds`,
//! the payout requests and decisions) honour `Idempotency-Key`.
//!
//! Access: a user sees their own orders, refunds and wallet, a teacher their earnings and
//! payouts; admins and ops see all (filter by `user_id` / `teacher_id`). Refunds are created by
//! admins and ops; payouts are decided by admins. Callbacks are public and verified by
//! signature (400 `invalid_callback` when not).
//!
//! One file per resource: [`orders`], [`wallet`] (and the transaction lists every view
//! shares), [`refunds`], [`payouts`] (earnings, payout requests and their decisions),
//! [`webhooks`] (provider callbacks), [`admin`] (ledger, reconciliation, provider events).
//! What is not HTTP lives in [`crate::payments`].

mod admin;
mod orders;
mod payouts;
mod providers;
mod refunds;
mod wallet;
mod webhooks;

use axum::{
    body::Bytes,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use futures::future::BoxFuture;
use serde_json::Value;
use sqlx::PgConnection;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{error::ApiError, extract::AuthUser};
use crate::{
    payments::{PaymentError, idempotency},
    state::AppState,
    users::Role,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(orders::create_order, orders::list_orders))
        .routes(routes!(orders::get_order))
        .routes(routes!(orders::start_order_payment))
        .routes(routes!(wallet::get_wallet))
        .routes(routes!(wallet::wallet_transactions))
        .routes(routes!(refunds::create_refund, refunds::list_refunds))
        .routes(routes!(refunds::get_refund))
        .routes(routes!(webhooks::webhook))
        .routes(routes!(providers::list_providers))
        .routes(routes!(admin::admin_transactions))
        .routes(routes!(admin::admin_reconcile))
        .routes(routes!(admin::admin_events))
        .routes(routes!(payouts::get_earnings))
        .routes(routes!(payouts::earnings_transactions))
        .routes(routes!(payouts::create_payout, payouts::list_payouts))
        .routes(routes!(payouts::get_payout))
        .routes(routes!(payouts::cancel_payout))
        .routes(routes!(payouts::approve_payout))
        .routes(routes!(payouts::reject_payout))
        .routes(routes!(payouts::pay_payout))
}

impl From<PaymentError> for ApiError {
    fn from(e: PaymentError) -> Self {
        match e {
            PaymentError::InsufficientFunds => ApiError::Unprocessable(
                "insufficient_funds",
                "the wallet's available balance is too small".into(),
            ),
            PaymentError::NotFound(what) => ApiError::NotFound(what),
            PaymentError::Conflict(code, m) => ApiError::Conflict(code, m),
            PaymentError::Invalid(v) => ApiError::Validation(v),
            PaymentError::Unprocessable(code, m) => ApiError::Unprocessable(code, m),
            PaymentError::Db(e) => e.into(),
        }
    }
}

fn is_staff(user: &AuthUser) -> bool {
    user.has_role(Role::Admin) || user.has_role(Role::Ops)
}

// ------------------------------------------------------------------------------------------
// Idempotency

const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Result of an idempotent POST: the answer, and whether it was replayed.
struct Answer {
    status: StatusCode,
    body: Value,
    replayed: bool,
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(self.body)).into_response();
        if self.replayed {
            r.headers_mut().insert(
                "idempotent-replayed",
                header::HeaderValue::from_static("true"),
            );
        }
        r
    }
}

/// Run `work` in a transaction guarded by the request's `Idempotency-Key` (when given): see
/// [`idempotency::run`].
async fn idempotent<F>(
    state: &AppState,
    user: &AuthUser,
    route: &str,
    headers: &HeaderMap,
    body: &Value,
    work: F,
) -> Result<Answer, ApiError>
where
    F: for<'c> FnOnce(&'c mut PgConnection) -> BoxFuture<'c, Result<(StatusCode, Value), ApiError>>
        + Send
        + 'static,
{
    let key = headers
        .get(IDEMPOTENCY_KEY)
        .map(|v| idempotency::parse_key(v.to_str().unwrap_or("")))
        .transpose()?;
    let outcome = idempotency::run(
        &state.db,
        user.id,
        route,
        key.as_deref(),
        body,
        move |conn: &mut PgConnection| -> BoxFuture<'_, Result<(u16, Value), ApiError>> {
            Box::pin(async move {
                let (status, body) = work(conn).await?;
                Ok((status.as_u16(), body))
            })
        },
    )
    .await?;
    let status = |s: u16| StatusCode::from_u16(s).unwrap_or(StatusCode::OK);
    match outcome {
        idempotency::Outcome::Done { status: s, body } => Ok(Answer {
            status: status(s),
            body,
            replayed: false,
        }),
        idempotency::Outcome::Replayed { status: s, body } => Ok(Answer {
            status: status(s),
            body,
            replayed: true,
        }),
        idempotency::Outcome::KeyReused => Err(ApiError::Unprocessable(
            "idempotency_key_reused",
            "this Idempotency-Key was used with a different request".into(),
        )),
    }
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<(T, Value), ApiError> {
    // As the JSON extractor does: no text the database keeps may hold a NUL.
    if crate::domain::json_has_nul(body) {
        return Err(ApiError::BadRequest(
            "a string of the JSON body contains a NUL character (U+0000), which no text may hold"
                .into(),
        ));
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    let t = serde_json::from_value(value.clone())
        .map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    Ok((t, value))
}
