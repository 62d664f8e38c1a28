//! Payments: a double-entry ledger whose invariants PostgreSQL enforces, orders paid through
//! providers, verified provider callbacks, refunds, idempotency keys and the reconciliation job.
//!
//! Layout: [`ledger`] (accounts, transfers, holds), [`orders`] (orders and what confirming a
//! payment writes), [`providers`] (callback verification for sandbox, Stripe, Alipay and WeChat
//! Pay v3, sans-IO), [`events`] (applying verified callbacks exactly once), [`refunds`],
//! [`idempotency`] (`Idempotency-Key`), [`payouts`] (teacher earnings withdrawn through
//! requests an admin decides), [`teacher_share`] (a course's teacher share between earnings
//! and the receivable: clawback and repayment), [`reconcile`] (expiry of stale orders, holds
//! and payout requests).
//! The database schema and its triggers are in `migrations/20261127000002_payments.sql` (and
//! the later payments migrations);
//! docs/payments.md tells the whole story.

pub mod events;
pub mod gateway;
pub mod idempotency;
pub mod ledger;
pub mod orders;
pub mod payouts;
pub mod providers;
pub mod reconcile;
pub mod refunds;
pub mod remote;
pub mod status;
pub mod teacher_share;
pub mod transactions;

use crate::{config::PaymentSettings, users::InvalidInput};

pub use crate::domain::{Currency, Money};

/// A positive amount, as orders and refunds take them.
pub fn positive(m: &Money, field: &'static str) -> Result<(), InvalidInput> {
    if m.amount > 0 {
        Ok(())
    } else {
        Err(InvalidInput {
            field,
            reason: "must be a positive integer amount in minor units",
        })
    }
}

/// Parse a decimal major-unit string ("88.88", as Alipay sends) into minor units exactly, with
/// no float: at most two decimals.
pub fn parse_major_units(s: &str) -> Option<i64> {
    let (whole, frac) = match s.split_once('.') {
        Some((w, f)) => (w, f),
        None => (s, ""),
    };
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) || frac.len() > 2 {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: i64 = whole.parse().ok()?;
    let frac: i64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<2}").parse().ok()?
    };
    whole.checked_mul(100)?.checked_add(frac)
}

/// Format minor units as a decimal major-unit string (for providers that want "88.88").
pub fn format_major_units(minor: i64) -> String {
    format!("{}.{:02}", minor / 100, (minor % 100).abs())
}

/// Why a payments operation was refused; each maps to an API status in `http::payments`.
#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    /// 422 `insufficient_funds`: the wallet's available balance is too small.
    #[error("insufficient funds")]
    InsufficientFunds,
    /// 404 `not_found`.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// 409 with a code: the resource is not in a state that allows this.
    #[error("{1}")]
    Conflict(&'static str, String),
    /// 422 `validation_failed`.
    #[error("{0}")]
    Invalid(#[from] InvalidInput),
    /// 422 with a code, e.g. `refund_exceeds_paid`, `provider_unavailable`.
    #[error("{1}")]
    Unprocessable(&'static str, String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl PaymentError {
    /// Map a database error raised by the ledger's constraints.
    pub fn from_db(e: sqlx::Error) -> PaymentError {
        if let sqlx::Error::Database(d) = &e {
            if d.constraint() == Some("ledger_accounts_non_negative") {
                return PaymentError::InsufficientFunds;
            }
        }
        PaymentError::Db(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn major_units_parse_exactly() {
        assert_eq!(parse_major_units("88.88"), Some(8888));
        assert_eq!(parse_major_units("0.1"), Some(10));
        assert_eq!(parse_major_units("12"), Some(1200));
        assert_eq!(parse_major_units("1.005"), None);
        assert_eq!(parse_major_units("-1"), None);
        assert_eq!(parse_major_units("1e3"), None);
        assert_eq!(format_major_units(8888), "88.88");
        assert_eq!(format_major_units(5), "0.05");
    }
}
