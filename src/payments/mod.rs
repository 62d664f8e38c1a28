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
pub mod teacher_share;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::users::InvalidInput;

/// An ISO 4217 currency code (three upper-case letters).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "CNY")]
pub struct Currency(String);

impl Currency {
    pub fn cny() -> Currency {
        Currency("CNY".into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// A code read back from the database (checked there by a CHECK constraint).
    pub fn from_db(s: String) -> Currency {
        Currency(s)
    }
}

impl TryFrom<String> for Currency {
    type Error = InvalidInput;
    fn try_from(s: String) -> Result<Self, InvalidInput> {
        if s.len() == 3 && s.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(Currency(s))
        } else {
            Err(InvalidInput {
                field: "currency",
                reason: "must be an ISO 4217 code such as CNY",
            })
        }
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> String {
        c.0
    }
}

/// Money: an integer amount in minor units (fen for CNY) and a currency. Never a float.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Money {
    /// Minor units (fen for CNY); may be negative in ledger records.
    pub amount: i64,
    pub currency: Currency,
}

impl Money {
    pub fn new(amount: i64, currency: Currency) -> Money {
        Money { amount, currency }
    }
}

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

/// `[payments]` settings (see config/default.toml for each key).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentSettings {
    pub currency: String,
    /// The platform's share of a course sale, in basis points (1000 = 10 %); the rest is the
    /// teacher's earnings.
    pub platform_fee_bps: i32,
    pub order_ttl_s: u64,
    pub max_topup: i64,
    pub refund_hold_s: u64,
    /// How long a payout request waits for an admin before its hold expires.
    pub payout_hold_s: u64,
    /// The smallest payout a teacher may ask for, in minor units.
    pub payout_min_amount: i64,
    pub idempotency_ttl_h: u64,
    pub reconcile_interval_s: u64,
    /// Reconciliation asks providers about open orders and refunds only once they are this
    /// old (the callback usually comes first).
    pub reconcile_min_age_s: u64,
    pub webhook_tolerance_s: i64,
    pub sandbox: SandboxSettings,
    pub stripe: StripeSettings,
    pub alipay: AlipaySettings,
    pub wechatpay: WechatPaySettings,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxSettings {
    pub enabled: bool,
    pub secret: crate::config::Secret,
    /// What the sandbox reports for a new payment or refund: "succeed", "fail" or "none".
    pub outcome: String,
    pub callback_delay_ms: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StripeSettings {
    pub enabled: bool,
    pub webhook_secret: crate::config::Secret,
    /// Connected account id expected in events (empty: events must carry none).
    pub account: String,
    /// The API secret key (`sk_…`); empty: no outbound calls (callbacks only).
    pub secret_key: crate::config::Secret,
    pub api_base: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AlipaySettings {
    pub enabled: bool,
    pub app_id: String,
    pub seller_id: String,
    /// Alipay's public key (base64 DER as the console shows it, or PEM).
    pub public_key: String,
    /// The app's private key (PKCS#8 or PKCS#1, base64 DER or PEM) that signs our requests;
    /// empty: no outbound calls (notifications only).
    pub app_private_key: crate::config::Secret,
    pub gateway_url: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WechatPaySettings {
    pub enabled: bool,
    pub mchid: String,
    pub appid: String,
    pub apiv3_key: crate::config::Secret,
    pub platform_serial: String,
    /// The platform public key (base64 DER or PEM) named by `platform_serial`.
    pub platform_public_key: String,
    /// The merchant API certificate's serial number and private key (`apiclient_key.pem`)
    /// that sign our requests; empty key: no outbound calls (callbacks only).
    pub merchant_serial: String,
    pub merchant_private_key: crate::config::Secret,
    pub api_base: String,
}
