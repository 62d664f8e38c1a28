//! Outbound calls to payment providers: start a payment (Stripe PaymentIntent, Alipay
//! `alipay.trade.precreate`, WeChat Pay v3 Native), ask for a payment's state, close an unpaid
//! one, refund, and ask for a refund's state.
//!
//! Every call is idempotent at the provider, keyed by our ids, so a retry after a timeout can
//! never charge or refund twice: Stripe `Idempotency-Key: order-<id>` / `refund-<id>`, Alipay
//! `out_trade_no` / `out_request_no`, WeChat Pay `out_trade_no` / `out_refund_no`.
//!
//! This is the dispatcher: [`Gateways`] holds the configured clients and `match`es on
//! [`Provider`], and the types all providers answer in are here. Each provider's request
//! signing, HTTP round trip and answer parsing sit next to its callback verification in
//! [`providers::stripe`], [`providers::alipay`] and [`providers::wechatpay`] (RSA keys and
//! signatures in [`providers::rsa`]); signing and parsing are plain functions, unit-tested there
//! without sockets. Answers are authenticated where the provider signs them:
//! Alipay responses (RSA2 over the raw `*_response` JSON text) and WeChat Pay responses
//! (the same header signature as its callbacks). Stripe answers over TLS to a host we chose,
//! authenticated by the secret key we sent.
//!
//! Nothing here writes to the database: callers apply what comes back through the same code
//! as callbacks ([`super::events`]), so a state learnt by asking and one learnt by being told
//! are checked (amount, currency, merchant) and applied exactly alike.

use std::time::Duration;

use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    PaymentSettings, format_major_units,
    providers::{
        self, Provider,
        alipay::{
            Alipay, alipay_call, alipay_ok, alipay_payment_state, alipay_refused, alipay_transient,
            beijing,
        },
        rsa::decode_private_key,
        stripe::{
            Stripe, stripe_get, stripe_intent_form, stripe_payment_state, stripe_post,
            stripe_refund_form, stripe_refund_state,
        },
        wechatpay::{
            Wechat, wechat_call, wechat_payment_state, wechat_refund_state, wechat_refused,
            wechat_time,
        },
    },
};

/// How long one call to a provider may take (connect + answer).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No outbound credentials are configured for this provider.
    #[error("provider {0} has no API credentials configured")]
    NotConfigured(String),
    #[error("provider unreachable: {0}")]
    Transport(String),
    /// The provider answered with an error that retrying will not fix.
    #[error("provider refused: {code}: {message}")]
    Refused { code: String, message: String },
    #[error("provider answer does not verify")]
    BadSignature,
    #[error("malformed provider answer: {0}")]
    Malformed(String),
    #[error("bad provider key: {0}")]
    Key(String),
}

impl GatewayError {
    /// Worth trying again later (the provider may have done it, or may do it next time).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            GatewayError::Transport(_) | GatewayError::Malformed(_)
        )
    }
}

/// What the payer needs to pay at the provider.
#[derive(Debug, Clone, PartialEq)]
pub struct Started {
    /// The provider's payment id when it has one (Stripe PaymentIntent id).
    pub provider_ref: Option<String>,
    /// `{"client_secret": …}` (Stripe), `{"qr_code": …}` (Alipay), `{"code_url": …}` (WeChat).
    pub instructions: Value,
}

/// A payment as the provider sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum RemotePayment {
    Paid {
        amount: i64,
        currency: String,
        merchant: Option<String>,
        provider_ref: String,
        raw: Value,
    },
    /// Not paid (yet); can still be paid.
    Open,
    /// Closed, cancelled or failed: can no longer be paid.
    Closed { raw: Value },
    /// The provider has never heard of it (Alipay precreated trades until scanned, too).
    NotFound,
}

/// A refund as the provider sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum RemoteRefund {
    Succeeded { provider_ref: Option<String> },
    Pending { provider_ref: Option<String> },
    Failed { reason: String },
    NotFound,
}

/// What an outbound call needs to know about the order.
#[derive(Debug, Clone)]
pub struct OrderRef {
    pub id: Uuid,
    pub amount: i64,
    pub currency: String,
    /// The provider's payment id, once known (Stripe's PaymentIntent).
    pub provider_ref: Option<String>,
    pub description: String,
    pub expires_at: OffsetDateTime,
}

impl OrderRef {
    /// Our reference at the provider: the UUID without hyphens (32 chars fits every provider).
    pub fn reference(&self) -> String {
        self.id.simple().to_string()
    }
}

#[derive(Debug, Clone)]
pub struct RefundRef {
    pub id: Uuid,
    pub amount: i64,
    pub provider_ref: Option<String>,
    pub reason: String,
}

impl RefundRef {
    pub fn reference(&self) -> String {
        self.id.simple().to_string()
    }
}

/// A transport failure as a [`GatewayError`] (shared by every provider's calls).
pub(crate) fn transport(e: reqwest::Error) -> GatewayError {
    // Never the URL with its query: it may carry identifiers; the error kind is enough.
    GatewayError::Transport(e.without_url().to_string())
}

/// The providers this node can call, built from `[payments.*]`. A provider with callbacks
/// configured but no API credentials is left out: its orders work as before (paid when the
/// callback comes, expired by time alone).
pub struct Gateways {
    http: reqwest::Client,
    stripe: Option<Stripe>,
    alipay: Option<Alipay>,
    wechat: Option<Wechat>,
}

impl Gateways {
    pub fn new(settings: &PaymentSettings, public_url: &url::Url) -> Result<Self, GatewayError> {
        let notify = |p: &str| {
            public_url
                .join(&format!("api/v1/payments/webhooks/{p}"))
                .map(|u| u.to_string())
                .unwrap_or_default()
        };
        let s = &settings.stripe;
        let stripe = (s.enabled && !s.secret_key.is_empty()).then(|| Stripe {
            api_base: s.api_base.trim_end_matches('/').to_string(),
            secret_key: s.secret_key.expose().to_string(),
            account: s.account.clone(),
        });
        let a = &settings.alipay;
        let alipay = if a.enabled && !a.app_private_key.is_empty() {
            Some(Alipay {
                gateway_url: a.gateway_url.clone(),
                app_id: a.app_id.clone(),
                merchant: format!("{}/{}", a.app_id, a.seller_id),
                key: decode_private_key(a.app_private_key.expose())?,
                alipay_public: providers::decode_public_key(&a.public_key)
                    .map_err(|e| GatewayError::Key(e.to_string()))?,
                notify_url: notify("alipay"),
            })
        } else {
            None
        };
        let w = &settings.wechatpay;
        let wechat = if w.enabled && !w.merchant_private_key.is_empty() {
            Some(Wechat {
                api_base: w.api_base.trim_end_matches('/').to_string(),
                mchid: w.mchid.clone(),
                appid: w.appid.clone(),
                serial: w.merchant_serial.clone(),
                key: decode_private_key(w.merchant_private_key.expose())?,
                platform: vec![(
                    w.platform_serial.clone(),
                    providers::decode_public_key(&w.platform_public_key)
                        .map_err(|e| GatewayError::Key(e.to_string()))?,
                )],
                notify_url: notify("wechatpay"),
                tolerance_s: settings.webhook_tolerance_s,
            })
        } else {
            None
        };
        let http = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| GatewayError::Transport(e.to_string()))?;
        Ok(Gateways {
            http,
            stripe,
            alipay,
            wechat,
        })
    }

    /// Providers this node can call (reconciliation asks only these).
    pub fn callable(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.stripe.is_some() {
            v.push("stripe");
        }
        if self.alipay.is_some() {
            v.push("alipay");
        }
        if self.wechat.is_some() {
            v.push("wechatpay");
        }
        v
    }

    pub fn can_call(&self, provider: &str) -> bool {
        self.callable().contains(&provider)
    }

    fn not_configured(provider: &str) -> GatewayError {
        GatewayError::NotConfigured(provider.to_string())
    }

    fn stripe_client(&self) -> Result<&Stripe, GatewayError> {
        self.stripe
            .as_ref()
            .ok_or_else(|| Self::not_configured("stripe"))
    }

    fn alipay_client(&self) -> Result<&Alipay, GatewayError> {
        self.alipay
            .as_ref()
            .ok_or_else(|| Self::not_configured("alipay"))
    }

    fn wechat_client(&self) -> Result<&Wechat, GatewayError> {
        self.wechat
            .as_ref()
            .ok_or_else(|| Self::not_configured("wechatpay"))
    }

    /// Start (or, called again, resume) a payment.
    pub async fn start_payment(
        &self,
        provider: &str,
        order: &OrderRef,
    ) -> Result<Started, GatewayError> {
        match Provider::parse(provider) {
            Some(Provider::Stripe) => {
                let s = self.stripe_client()?;
                let pi = match &order.provider_ref {
                    Some(id) => {
                        stripe_get(&self.http, s, &format!("/v1/payment_intents/{id}")).await?
                    }
                    None => {
                        stripe_post(
                            &self.http,
                            s,
                            "/v1/payment_intents",
                            &format!("order-{}", order.id),
                            &stripe_intent_form(order),
                        )
                        .await?
                    }
                };
                Ok(Started {
                    provider_ref: pi["id"].as_str().map(str::to_string),
                    instructions: json!({
                        "client_secret": pi["client_secret"],
                        "payment_intent": pi["id"],
                    }),
                })
            }
            Some(Provider::Alipay) => {
                let a = self.alipay_client()?;
                let r = alipay_call(
                    &self.http,
                    a,
                    "alipay.trade.precreate",
                    &json!({
                        "out_trade_no": order.reference(),
                        "total_amount": format_major_units(order.amount),
                        "subject": order.description,
                        "time_expire": beijing(order.expires_at),
                    }),
                    true,
                )
                .await?;
                if !alipay_ok(&r) {
                    return Err(if alipay_transient(&r) {
                        GatewayError::Transport(alipay_refused(&r).to_string())
                    } else {
                        alipay_refused(&r)
                    });
                }
                Ok(Started {
                    provider_ref: None,
                    instructions: json!({"qr_code": r["qr_code"]}),
                })
            }
            Some(Provider::Wechatpay) => {
                let w = self.wechat_client()?;
                let body = json!({
                    "appid": w.appid,
                    "mchid": w.mchid,
                    "description": order.description,
                    "out_trade_no": order.reference(),
                    "time_expire": wechat_time(order.expires_at),
                    "notify_url": w.notify_url,
                    "amount": {"total": order.amount, "currency": order.currency},
                });
                let (status, r) = wechat_call(
                    &self.http,
                    w,
                    "POST",
                    "/v3/pay/transactions/native",
                    Some(&body),
                )
                .await?;
                if status != 200 {
                    return Err(wechat_refused(&r));
                }
                Ok(Started {
                    provider_ref: None,
                    instructions: json!({"code_url": r["code_url"]}),
                })
            }
            _ => Err(Self::not_configured(provider)),
        }
    }

    /// Ask the provider what became of a payment.
    pub async fn query_payment(
        &self,
        provider: &str,
        order: &OrderRef,
    ) -> Result<RemotePayment, GatewayError> {
        match Provider::parse(provider) {
            Some(Provider::Stripe) => {
                let s = self.stripe_client()?;
                // Without a PaymentIntent id nothing was ever created there to be paid.
                let Some(id) = &order.provider_ref else {
                    return Ok(RemotePayment::NotFound);
                };
                let pi = stripe_get(&self.http, s, &format!("/v1/payment_intents/{id}")).await?;
                stripe_payment_state(&pi, &s.account)
            }
            Some(Provider::Alipay) => {
                let a = self.alipay_client()?;
                let r = alipay_call(
                    &self.http,
                    a,
                    "alipay.trade.query",
                    &json!({"out_trade_no": order.reference()}),
                    false,
                )
                .await?;
                alipay_payment_state(&r, &a.merchant)
            }
            Some(Provider::Wechatpay) => {
                let w = self.wechat_client()?;
                let path = format!(
                    "/v3/pay/transactions/out-trade-no/{}?mchid={}",
                    order.reference(),
                    w.mchid
                );
                let (status, r) = wechat_call(&self.http, w, "GET", &path, None).await?;
                match status {
                    200 => wechat_payment_state(&r),
                    404 => Ok(RemotePayment::NotFound),
                    _ => Err(wechat_refused(&r)),
                }
            }
            _ => Err(Self::not_configured(provider)),
        }
    }

    /// Close an unpaid payment so it can no longer be paid (before we expire the order).
    pub async fn close_payment(
        &self,
        provider: &str,
        order: &OrderRef,
    ) -> Result<(), GatewayError> {
        match Provider::parse(provider) {
            Some(Provider::Stripe) => {
                let s = self.stripe_client()?;
                let Some(id) = &order.provider_ref else {
                    return Ok(());
                };
                stripe_post(
                    &self.http,
                    s,
                    &format!("/v1/payment_intents/{id}/cancel"),
                    &format!("order-{}-cancel", order.id),
                    &[],
                )
                .await
                .map(|_| ())
            }
            Some(Provider::Alipay) => {
                let a = self.alipay_client()?;
                let r = alipay_call(
                    &self.http,
                    a,
                    "alipay.trade.close",
                    &json!({"out_trade_no": order.reference()}),
                    false,
                )
                .await?;
                // A precreated trade nobody scanned does not exist at Alipay: nothing to close.
                if alipay_ok(&r) || r["sub_code"].as_str() == Some("ACQ.TRADE_NOT_EXIST") {
                    Ok(())
                } else {
                    Err(alipay_refused(&r))
                }
            }
            Some(Provider::Wechatpay) => {
                let w = self.wechat_client()?;
                let path = format!(
                    "/v3/pay/transactions/out-trade-no/{}/close",
                    order.reference()
                );
                let (status, r) = wechat_call(
                    &self.http,
                    w,
                    "POST",
                    &path,
                    Some(&json!({"mchid": w.mchid})),
                )
                .await?;
                match status {
                    200 | 204 => Ok(()),
                    _ => Err(wechat_refused(&r)),
                }
            }
            _ => Err(Self::not_configured(provider)),
        }
    }

    /// Ask the provider to refund (idempotent by our refund id).
    pub async fn refund(
        &self,
        provider: &str,
        order: &OrderRef,
        refund: &RefundRef,
    ) -> Result<RemoteRefund, GatewayError> {
        match Provider::parse(provider) {
            Some(Provider::Stripe) => {
                let s = self.stripe_client()?;
                let pi = order
                    .provider_ref
                    .as_deref()
                    .ok_or_else(|| GatewayError::Refused {
                        code: "no_payment_intent".into(),
                        message: "the order has no PaymentIntent".into(),
                    })?;
                let r = stripe_post(
                    &self.http,
                    s,
                    "/v1/refunds",
                    &format!("refund-{}", refund.id),
                    &stripe_refund_form(pi, refund),
                )
                .await?;
                stripe_refund_state(&r)
            }
            Some(Provider::Alipay) => {
                let a = self.alipay_client()?;
                let r = alipay_call(
                    &self.http,
                    a,
                    "alipay.trade.refund",
                    &json!({
                        "out_trade_no": order.reference(),
                        "refund_amount": format_major_units(refund.amount),
                        "out_request_no": refund.reference(),
                        "refund_reason": refund.reason,
                    }),
                    false,
                )
                .await?;
                if alipay_ok(&r) {
                    // `fund_change: N` with code 10000 is a repeat of a refund already made;
                    // the query tells whether the money moved.
                    Ok(if r["fund_change"].as_str() == Some("Y") {
                        RemoteRefund::Succeeded {
                            provider_ref: r["trade_no"].as_str().map(str::to_string),
                        }
                    } else {
                        RemoteRefund::Pending {
                            provider_ref: r["trade_no"].as_str().map(str::to_string),
                        }
                    })
                } else if alipay_transient(&r) {
                    Err(GatewayError::Transport(alipay_refused(&r).to_string()))
                } else {
                    Ok(RemoteRefund::Failed {
                        reason: alipay_refused(&r).to_string(),
                    })
                }
            }
            Some(Provider::Wechatpay) => {
                let w = self.wechat_client()?;
                let body = json!({
                    "out_trade_no": order.reference(),
                    "out_refund_no": refund.reference(),
                    "reason": refund.reason,
                    "notify_url": w.notify_url,
                    "amount": {"refund": refund.amount, "total": order.amount, "currency": order.currency},
                });
                let (status, r) = wechat_call(
                    &self.http,
                    w,
                    "POST",
                    "/v3/refund/domestic/refunds",
                    Some(&body),
                )
                .await?;
                match status {
                    200 => wechat_refund_state(&r),
                    s if s >= 500 || r["code"].as_str() == Some("SYSTEM_ERROR") => {
                        Err(GatewayError::Transport(wechat_refused(&r).to_string()))
                    }
                    _ => Ok(RemoteRefund::Failed {
                        reason: wechat_refused(&r).to_string(),
                    }),
                }
            }
            _ => Err(Self::not_configured(provider)),
        }
    }

    /// Ask the provider what became of a refund.
    pub async fn query_refund(
        &self,
        provider: &str,
        order: &OrderRef,
        refund: &RefundRef,
    ) -> Result<RemoteRefund, GatewayError> {
        match Provider::parse(provider) {
            Some(Provider::Stripe) => {
                let s = self.stripe_client()?;
                let Some(id) = &refund.provider_ref else {
                    return Ok(RemoteRefund::NotFound);
                };
                stripe_refund_state(&stripe_get(&self.http, s, &format!("/v1/refunds/{id}")).await?)
            }
            Some(Provider::Alipay) => {
                let a = self.alipay_client()?;
                let r = alipay_call(
                    &self.http,
                    a,
                    "alipay.trade.fastpay.refund.query",
                    &json!({
                        "out_trade_no": order.reference(),
                        "out_request_no": refund.reference(),
                    }),
                    false,
                )
                .await?;
                if !alipay_ok(&r) {
                    return match r["sub_code"].as_str() {
                        Some("ACQ.TRADE_NOT_EXIST") => Ok(RemoteRefund::NotFound),
                        _ => Err(GatewayError::Transport(alipay_refused(&r).to_string())),
                    };
                }
                // Alipay documents that an answer without refund data means no refund was
                // made for that out_request_no (it may be asked for again, same number).
                Ok(match r["refund_status"].as_str() {
                    Some("REFUND_SUCCESS") => RemoteRefund::Succeeded { provider_ref: None },
                    _ if r["refund_amount"].as_str().is_some() => {
                        RemoteRefund::Succeeded { provider_ref: None }
                    }
                    _ => RemoteRefund::NotFound,
                })
            }
            Some(Provider::Wechatpay) => {
                let w = self.wechat_client()?;
                let path = format!("/v3/refund/domestic/refunds/{}", refund.reference());
                let (status, r) = wechat_call(&self.http, w, "GET", &path, None).await?;
                match status {
                    200 => wechat_refund_state(&r),
                    404 => Ok(RemoteRefund::NotFound),
                    _ => Err(GatewayError::Transport(wechat_refused(&r).to_string())),
                }
            }
            _ => Err(Self::not_configured(provider)),
        }
    }
}
