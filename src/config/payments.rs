//! `[payments]` and one table per provider (`payments.{sandbox,stripe,alipay,wechatpay}`).

use serde::{Deserialize, Serialize};

use super::{ConfigError, Secret};

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
    pub secret: Secret,
    /// What the sandbox reports for a new payment or refund: "succeed", "fail" or "none".
    pub outcome: String,
    pub callback_delay_ms: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StripeSettings {
    pub enabled: bool,
    pub webhook_secret: Secret,
    /// Connected account id expected in events (empty: events must carry none).
    pub account: String,
    /// The API secret key (`sk_…`); empty: no outbound calls (callbacks only).
    pub secret_key: Secret,
    pub api_base: String,
    /// The publishable key (`pk_…`) the checkout page hands Stripe.js; empty: no card form (the
    /// order still gets its PaymentIntent for a client of the integrator's own).
    pub publishable_key: String,
    /// Where the page loads Stripe.js from (Stripe requires its own origin in production;
    /// tests point it elsewhere). Its origin is added to the pages' Content-Security-Policy.
    pub js_url: String,
}

impl StripeSettings {
    /// Whether the checkout page shows Stripe's card form: the provider is on, the page has a
    /// publishable key, and the server can make PaymentIntents (it needs the secret key).
    pub fn card_form(&self) -> bool {
        self.enabled && !self.publishable_key.is_empty() && !self.secret_key.is_empty()
    }
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
    pub app_private_key: Secret,
    pub gateway_url: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WechatPaySettings {
    pub enabled: bool,
    pub mchid: String,
    pub appid: String,
    pub apiv3_key: Secret,
    pub platform_serial: String,
    /// The platform public key (base64 DER or PEM) named by `platform_serial`.
    pub platform_public_key: String,
    /// The merchant API certificate's serial number and private key (`apiclient_key.pem`)
    /// that sign our requests; empty key: no outbound calls (callbacks only).
    pub merchant_serial: String,
    pub merchant_private_key: Secret,
    pub api_base: String,
}

impl PaymentSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.payout_hold_s < 60 {
            return Err(ConfigError::new(
                "payments.payout_hold_s",
                "must be at least 60",
            ));
        }
        if self.payout_min_amount < 1 {
            return Err(ConfigError::new(
                "payments.payout_min_amount",
                "must be at least 1",
            ));
        }
        let stripe = &self.stripe;
        if !stripe.publishable_key.is_empty() && !stripe.publishable_key.starts_with("pk_") {
            return Err(ConfigError::new(
                "payments.stripe.publishable_key",
                "must be a publishable key (pk_…), never the secret key",
            ));
        }
        if !web_origin_ok(&stripe.js_url) {
            return Err(ConfigError::new(
                "payments.stripe.js_url",
                "must be an https URL (http only on a loopback host)",
            ));
        }
        Ok(())
    }
}

/// An URL a page may load a script from: https, or http on a loopback host (tests).
fn web_origin_ok(url: &str) -> bool {
    let Ok(u) = url::Url::parse(url) else {
        return false;
    };
    match (u.scheme(), u.host()) {
        ("https", Some(_)) => true,
        ("http", Some(url::Host::Ipv4(ip))) => ip.is_loopback(),
        ("http", Some(url::Host::Ipv6(ip))) => ip.is_loopback(),
        ("http", Some(url::Host::Domain(d))) => d == "localhost",
        _ => false,
    }
}
