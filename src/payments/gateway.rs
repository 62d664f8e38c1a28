//! Outbound calls to payment providers: start a payment (Stripe PaymentIntent, Alipay
//! `alipay.trade.precreate`, WeChat Pay v3 Native), ask for a payment's state, close an unpaid
//! one, refund, and ask for a refund's state.
//!
//! Every call is idempotent at the provider, keyed by our ids, so a retry after a timeout can
//! never charge or refund twice: Stripe `Idempotency-Key: order-<id>` / `refund-<id>`, Alipay
//! `out_trade_no` / `out_request_no`, WeChat Pay `out_trade_no` / `out_refund_no`.
//!
//! Signing and parsing are plain functions (unit-tested below, without sockets); [`Gateways`]
//! only adds the HTTP round trip. Answers are authenticated where the provider signs them:
//! Alipay responses (RSA2 over the raw `*_response` JSON text) and WeChat Pay responses
//! (the same header signature as its callbacks). Stripe answers over TLS to a host we chose,
//! authenticated by the secret key we sent.
//!
//! Nothing here writes to the database: callers apply what comes back through the same code
//! as callbacks ([`super::events`]), so a state learnt by asking and one learnt by being told
//! are checked (amount, currency, merchant) and applied exactly alike.
//!
//! Size: over 800 lines because it holds, for three providers, the request signing and answer
//! parsing (pure functions, about half the file with their unit tests) beside the clients that
//! dispatch on [`Provider`]. The next split moves each provider's part next to its callback
//! verification in `payments/providers/<name>.rs`, leaving the dispatcher here.

use std::time::Duration;

use aws_lc_rs::{rand::SystemRandom, signature};
use base64::{Engine, engine::general_purpose::STANDARD as B64};
use serde_json::{Value, json};
use time::{OffsetDateTime, UtcOffset, macros::format_description};
use uuid::Uuid;

use super::{
    PaymentSettings, format_major_units, parse_major_units,
    providers::{self, Provider, WechatHeaders},
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

// ---------------------------------------------------------------------------------------------
// Keys

/// An RSA private key given as PEM or base64 DER, PKCS#8 or PKCS#1 (Alipay's key tool and
/// WeChat's `apiclient_key.pem` give either).
pub fn decode_private_key(text: &str) -> Result<signature::RsaKeyPair, GatewayError> {
    let body: String = text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .join("");
    let der = B64
        .decode(body.trim())
        .map_err(|_| GatewayError::Key("private key is not base64 DER or PEM".into()))?;
    signature::RsaKeyPair::from_pkcs8(&der)
        .or_else(|_| signature::RsaKeyPair::from_der(&der))
        .map_err(|e| GatewayError::Key(format!("not an RSA private key: {e}")))
}

fn rsa_sign(key: &signature::RsaKeyPair, msg: &[u8]) -> Result<String, GatewayError> {
    let mut sig = vec![0; key.public_modulus_len()];
    key.sign(
        &signature::RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        msg,
        &mut sig,
    )
    .map_err(|_| GatewayError::Key("signing failed".into()))?;
    Ok(B64.encode(sig))
}

fn rsa_verify(public_der: &[u8], msg: &[u8], sig_b64: &str) -> Result<(), GatewayError> {
    let sig = B64
        .decode(sig_b64.trim())
        .map_err(|_| GatewayError::BadSignature)?;
    signature::UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, public_der)
        .verify(msg, &sig)
        .map_err(|_| GatewayError::BadSignature)
}

// ---------------------------------------------------------------------------------------------
// Stripe (form-encoded requests, bearer secret key, JSON answers)

/// The form of `POST /v1/payment_intents`.
pub fn stripe_intent_form(order: &OrderRef) -> Vec<(String, String)> {
    vec![
        ("amount".into(), order.amount.to_string()),
        ("currency".into(), order.currency.to_ascii_lowercase()),
        ("payment_method_types[0]".into(), "card".into()),
        ("metadata[order_id]".into(), order.reference()),
    ]
}

/// The form of `POST /v1/refunds`.
pub fn stripe_refund_form(payment_intent: &str, refund: &RefundRef) -> Vec<(String, String)> {
    vec![
        ("payment_intent".into(), payment_intent.into()),
        ("amount".into(), refund.amount.to_string()),
        ("metadata[refund_id]".into(), refund.id.to_string()),
    ]
}

/// A PaymentIntent as a [`RemotePayment`].
pub fn stripe_payment_state(pi: &Value, account: &str) -> Result<RemotePayment, GatewayError> {
    let status = pi["status"]
        .as_str()
        .ok_or_else(|| GatewayError::Malformed("payment_intent.status".into()))?;
    Ok(match status {
        "succeeded" => RemotePayment::Paid {
            amount: pi["amount"]
                .as_i64()
                .ok_or_else(|| GatewayError::Malformed("payment_intent.amount".into()))?,
            currency: pi["currency"].as_str().unwrap_or("").to_ascii_uppercase(),
            // Asked with our own key: the merchant is the one configured.
            merchant: Some(account.to_string()),
            provider_ref: pi["id"].as_str().unwrap_or("").to_string(),
            raw: pi.clone(),
        },
        "canceled" => RemotePayment::Closed { raw: pi.clone() },
        _ => RemotePayment::Open,
    })
}

/// A Stripe Refund as a [`RemoteRefund`].
pub fn stripe_refund_state(r: &Value) -> Result<RemoteRefund, GatewayError> {
    let provider_ref = r["id"].as_str().map(str::to_string);
    Ok(match r["status"].as_str() {
        Some("succeeded") => RemoteRefund::Succeeded { provider_ref },
        Some("failed") | Some("canceled") => RemoteRefund::Failed {
            reason: r["failure_reason"].as_str().unwrap_or("failed").to_string(),
        },
        Some(_) => RemoteRefund::Pending { provider_ref },
        None => return Err(GatewayError::Malformed("refund.status".into())),
    })
}

// ---------------------------------------------------------------------------------------------
// Alipay (OpenAPI gateway: form-encoded common parameters + `biz_content`, RSA2 both ways)

/// The request parameters of one Alipay OpenAPI call, signed with the app's private key.
pub fn alipay_request(
    app_id: &str,
    key: &signature::RsaKeyPair,
    method: &str,
    biz_content: &Value,
    notify_url: Option<&str>,
    now: OffsetDateTime,
) -> Result<Vec<(String, String)>, GatewayError> {
    // Alipay reads `timestamp` as Beijing time.
    let beijing = now.to_offset(UtcOffset::from_hms(8, 0, 0).expect("valid offset"));
    let timestamp = beijing
        .format(format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second]"
        ))
        .map_err(|e| GatewayError::Malformed(e.to_string()))?;
    let mut params: Vec<(String, String)> = vec![
        ("app_id".into(), app_id.into()),
        ("method".into(), method.into()),
        ("format".into(), "JSON".into()),
        ("charset".into(), "utf-8".into()),
        ("sign_type".into(), "RSA2".into()),
        ("timestamp".into(), timestamp),
        ("version".into(), "1.0".into()),
        ("biz_content".into(), biz_content.to_string()),
    ];
    if let Some(url) = notify_url {
        params.push(("notify_url".into(), url.into()));
    }
    // Requests are signed like notifications: everything but `sign`, sorted, `k=v&…`
    // (`sign_type` is part of a request's signed content, unlike a notification's).
    let mut signed: Vec<&(String, String)> = params.iter().filter(|(_, v)| !v.is_empty()).collect();
    signed.sort_by(|a, b| a.0.cmp(&b.0));
    let content = signed
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let sign = rsa_sign(key, content.as_bytes())?;
    params.push(("sign".into(), sign));
    Ok(params)
}

/// The raw text of the JSON value of `key` in an object (what Alipay signs in its answers:
/// the `*_response` member exactly as sent). Top-level members only.
pub fn raw_member<'a>(body: &'a str, key: &str) -> Option<&'a str> {
    let b = body.as_bytes();
    let needle = format!("\"{key}\"");
    let mut from = 0;
    while let Some(pos) = body[from..].find(&needle) {
        let mut i = from + pos + needle.len();
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= b.len() || b[i] != b':' {
            from = from + pos + needle.len();
            continue;
        }
        i += 1;
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let start = i;
        if i >= b.len() || (b[i] != b'{' && b[i] != b'[') {
            return None;
        }
        // Walk to the matching bracket, skipping strings (and escapes inside them).
        let (mut depth, mut in_str, mut esc) = (0i32, false, false);
        while i < b.len() {
            let c = b[i];
            if in_str {
                if esc {
                    esc = false;
                } else if c == b'\\' {
                    esc = true;
                } else if c == b'"' {
                    in_str = false;
                }
            } else {
                match c {
                    b'"' => in_str = true,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(&body[start..=i]);
                        }
                    }
                    _ => {}
                }
            }
            i += 1;
        }
        return None;
    }
    None
}

/// Verify an Alipay answer and return its `*_response` object. Error answers (code ≠ 10000)
/// are returned too: the caller decides what each `sub_code` means.
pub fn alipay_response(
    method: &str,
    body: &str,
    alipay_public_der: &[u8],
) -> Result<Value, GatewayError> {
    let key = format!("{}_response", method.replace('.', "_"));
    let raw = raw_member(body, &key)
        .ok_or_else(|| GatewayError::Malformed(format!("no {key} in the answer")))?;
    let v: Value =
        serde_json::from_str(body).map_err(|e| GatewayError::Malformed(e.to_string()))?;
    match v["sign"].as_str() {
        Some(sign) => rsa_verify(alipay_public_der, raw.as_bytes(), sign)?,
        // Alipay leaves `sign` out only of some gateway-level errors (bad app id, bad
        // signature of ours): nothing in them can move money, but nothing in them is trusted.
        None => {
            let r: Value = serde_json::from_str(raw).unwrap_or_default();
            return Err(GatewayError::Refused {
                code: r["code"].as_str().unwrap_or("unsigned").to_string(),
                message: r["sub_msg"]
                    .as_str()
                    .or(r["msg"].as_str())
                    .unwrap_or("unsigned answer")
                    .to_string(),
            });
        }
    }
    serde_json::from_str(raw).map_err(|e| GatewayError::Malformed(e.to_string()))
}

fn alipay_ok(r: &Value) -> bool {
    r["code"].as_str() == Some("10000")
}

fn alipay_refused(r: &Value) -> GatewayError {
    GatewayError::Refused {
        code: r["sub_code"]
            .as_str()
            .or(r["code"].as_str())
            .unwrap_or("unknown")
            .to_string(),
        message: r["sub_msg"]
            .as_str()
            .or(r["msg"].as_str())
            .unwrap_or("")
            .to_string(),
    }
}

/// `sub_code`s that mean "try again later" rather than "no".
fn alipay_transient(r: &Value) -> bool {
    matches!(
        r["sub_code"].as_str(),
        Some("ACQ.SYSTEM_ERROR") | Some("isp.unknow-error") | Some("aop.ACQ.SYSTEM_ERROR")
    ) || r["code"].as_str() == Some("20000")
}

/// An `alipay.trade.query` answer as a [`RemotePayment`].
pub fn alipay_payment_state(r: &Value, merchant: &str) -> Result<RemotePayment, GatewayError> {
    if !alipay_ok(r) {
        return match r["sub_code"].as_str() {
            Some("ACQ.TRADE_NOT_EXIST") => Ok(RemotePayment::NotFound),
            _ if alipay_transient(r) => Err(GatewayError::Transport(alipay_refused(r).to_string())),
            _ => Err(alipay_refused(r)),
        };
    }
    Ok(match r["trade_status"].as_str() {
        Some("TRADE_SUCCESS") | Some("TRADE_FINISHED") => RemotePayment::Paid {
            amount: r["total_amount"]
                .as_str()
                .and_then(parse_major_units)
                .ok_or_else(|| GatewayError::Malformed("total_amount".into()))?,
            currency: r["trans_currency"].as_str().unwrap_or("CNY").to_string(),
            merchant: Some(merchant.to_string()),
            provider_ref: r["trade_no"].as_str().unwrap_or("").to_string(),
            raw: r.clone(),
        },
        Some("TRADE_CLOSED") => RemotePayment::Closed { raw: r.clone() },
        _ => RemotePayment::Open,
    })
}

// ---------------------------------------------------------------------------------------------
// WeChat Pay v3 (JSON, `Authorization: WECHATPAY2-SHA256-RSA2048 …`, signed answers)

/// The `Authorization` header of a v3 request: RSA-SHA256 with the merchant's private key over
/// `"{METHOD}\n{path and query}\n{timestamp}\n{nonce}\n{body}\n"`.
pub fn wechat_authorization(
    mchid: &str,
    serial: &str,
    key: &signature::RsaKeyPair,
    method: &str,
    path_and_query: &str,
    timestamp: i64,
    nonce: &str,
    body: &str,
) -> Result<String, GatewayError> {
    let msg = format!("{method}\n{path_and_query}\n{timestamp}\n{nonce}\n{body}\n");
    let sig = rsa_sign(key, msg.as_bytes())?;
    Ok(format!(
        "WECHATPAY2-SHA256-RSA2048 mchid=\"{mchid}\",nonce_str=\"{nonce}\",signature=\"{sig}\",timestamp=\"{timestamp}\",serial_no=\"{serial}\""
    ))
}

/// A `GET /v3/pay/transactions/out-trade-no/{…}` answer as a [`RemotePayment`].
pub fn wechat_payment_state(r: &Value) -> Result<RemotePayment, GatewayError> {
    Ok(match r["trade_state"].as_str() {
        Some("SUCCESS") | Some("REFUND") => RemotePayment::Paid {
            amount: r["amount"]["total"]
                .as_i64()
                .ok_or_else(|| GatewayError::Malformed("amount.total".into()))?,
            currency: r["amount"]["currency"]
                .as_str()
                .unwrap_or("CNY")
                .to_string(),
            merchant: Some(format!(
                "{}/{}",
                r["mchid"].as_str().unwrap_or(""),
                r["appid"].as_str().unwrap_or("")
            )),
            provider_ref: r["transaction_id"].as_str().unwrap_or("").to_string(),
            raw: r.clone(),
        },
        Some("CLOSED") | Some("REVOKED") | Some("PAYERROR") => {
            RemotePayment::Closed { raw: r.clone() }
        }
        Some(_) => RemotePayment::Open,
        None => return Err(GatewayError::Malformed("trade_state".into())),
    })
}

/// A v3 refund (`POST /v3/refund/domestic/refunds` or its query) as a [`RemoteRefund`].
pub fn wechat_refund_state(r: &Value) -> Result<RemoteRefund, GatewayError> {
    let provider_ref = r["refund_id"].as_str().map(str::to_string);
    Ok(match r["status"].as_str() {
        Some("SUCCESS") => RemoteRefund::Succeeded { provider_ref },
        Some("PROCESSING") => RemoteRefund::Pending { provider_ref },
        Some(s @ ("CLOSED" | "ABNORMAL")) => RemoteRefund::Failed {
            reason: s.to_string(),
        },
        _ => return Err(GatewayError::Malformed("refund status".into())),
    })
}

// ---------------------------------------------------------------------------------------------
// The clients

struct Stripe {
    api_base: String,
    secret_key: String,
    account: String,
}

struct Alipay {
    gateway_url: String,
    app_id: String,
    merchant: String,
    key: signature::RsaKeyPair,
    alipay_public: Vec<u8>,
    notify_url: String,
}

struct Wechat {
    api_base: String,
    mchid: String,
    appid: String,
    serial: String,
    key: signature::RsaKeyPair,
    platform: Vec<(String, Vec<u8>)>,
    notify_url: String,
    tolerance_s: i64,
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
                        self.stripe_get(s, &format!("/v1/payment_intents/{id}"))
                            .await?
                    }
                    None => {
                        self.stripe_post(
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
                let r = self
                    .alipay_call(
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
                let (status, r) = self
                    .wechat_call(w, "POST", "/v3/pay/transactions/native", Some(&body))
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
                let pi = self
                    .stripe_get(s, &format!("/v1/payment_intents/{id}"))
                    .await?;
                stripe_payment_state(&pi, &s.account)
            }
            Some(Provider::Alipay) => {
                let a = self.alipay_client()?;
                let r = self
                    .alipay_call(
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
                let (status, r) = self.wechat_call(w, "GET", &path, None).await?;
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
                self.stripe_post(
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
                let r = self
                    .alipay_call(
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
                let (status, r) = self
                    .wechat_call(w, "POST", &path, Some(&json!({"mchid": w.mchid})))
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
                let r = self
                    .stripe_post(
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
                let r = self
                    .alipay_call(
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
                let (status, r) = self
                    .wechat_call(w, "POST", "/v3/refund/domestic/refunds", Some(&body))
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
                stripe_refund_state(&self.stripe_get(s, &format!("/v1/refunds/{id}")).await?)
            }
            Some(Provider::Alipay) => {
                let a = self.alipay_client()?;
                let r = self
                    .alipay_call(
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
                let (status, r) = self.wechat_call(w, "GET", &path, None).await?;
                match status {
                    200 => wechat_refund_state(&r),
                    404 => Ok(RemoteRefund::NotFound),
                    _ => Err(GatewayError::Transport(wechat_refused(&r).to_string())),
                }
            }
            _ => Err(Self::not_configured(provider)),
        }
    }

    // --- transport -------------------------------------------------------------------------

    async fn stripe_get(&self, s: &Stripe, path: &str) -> Result<Value, GatewayError> {
        let r = self
            .http
            .get(format!("{}{path}", s.api_base))
            .bearer_auth(&s.secret_key)
            .send()
            .await
            .map_err(transport)?;
        stripe_answer(r).await
    }

    async fn stripe_post(
        &self,
        s: &Stripe,
        path: &str,
        idempotency_key: &str,
        form: &[(String, String)],
    ) -> Result<Value, GatewayError> {
        let r = self
            .http
            .post(format!("{}{path}", s.api_base))
            .bearer_auth(&s.secret_key)
            .header("Idempotency-Key", idempotency_key)
            .form(form)
            .send()
            .await
            .map_err(transport)?;
        stripe_answer(r).await
    }

    async fn alipay_call(
        &self,
        a: &Alipay,
        method: &str,
        biz: &Value,
        notify: bool,
    ) -> Result<Value, GatewayError> {
        let params = alipay_request(
            &a.app_id,
            &a.key,
            method,
            biz,
            notify.then_some(a.notify_url.as_str()),
            OffsetDateTime::now_utc(),
        )?;
        // Built before the request: the serializer is not Send and must not live across await.
        let form = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter())
            .finish();
        let r = self
            .http
            .post(&a.gateway_url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded;charset=utf-8",
            )
            .body(form)
            .send()
            .await
            .map_err(transport)?;
        if r.status().is_server_error() {
            return Err(GatewayError::Transport(format!("HTTP {}", r.status())));
        }
        let body = r.text().await.map_err(transport)?;
        alipay_response(method, &body, &a.alipay_public)
    }

    /// One v3 call; the answer's signature is checked (all but 5xx answers are signed).
    async fn wechat_call(
        &self,
        w: &Wechat,
        method: &str,
        path_and_query: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), GatewayError> {
        let body = body.map(Value::to_string).unwrap_or_default();
        let ts = OffsetDateTime::now_utc().unix_timestamp();
        let nonce = Uuid::new_v4().simple().to_string();
        let auth = wechat_authorization(
            &w.mchid,
            &w.serial,
            &w.key,
            method,
            path_and_query,
            ts,
            &nonce,
            &body,
        )?;
        let url = format!("{}{path_and_query}", w.api_base);
        let mut req = match method {
            "GET" => self.http.get(url),
            _ => self
                .http
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body),
        };
        req = req
            .header(reqwest::header::AUTHORIZATION, auth)
            .header(reqwest::header::ACCEPT, "application/json");
        let r = req.send().await.map_err(transport)?;
        let status = r.status().as_u16();
        if status >= 500 {
            return Err(GatewayError::Transport(format!("HTTP {status}")));
        }
        let h = |n: &str| {
            r.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
                .ok_or(GatewayError::BadSignature)
        };
        let headers = WechatHeaders {
            timestamp: h("wechatpay-timestamp")?,
            nonce: h("wechatpay-nonce")?,
            signature: h("wechatpay-signature")?,
            serial: h("wechatpay-serial")?,
        };
        let bytes = r.bytes().await.map_err(transport)?;
        verify_wechat_answer(
            &w.platform,
            &headers,
            &bytes,
            OffsetDateTime::now_utc().unix_timestamp(),
            w.tolerance_s,
        )?;
        let v = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).map_err(|e| GatewayError::Malformed(e.to_string()))?
        };
        Ok((status, v))
    }
}

/// Check a WeChat Pay v3 answer's signature (the callback scheme, over the answer's body).
pub fn verify_wechat_answer(
    keys: &[(String, Vec<u8>)],
    h: &WechatHeaders,
    body: &[u8],
    now: i64,
    tolerance_s: i64,
) -> Result<(), GatewayError> {
    let key = keys
        .iter()
        .find(|(serial, _)| *serial == h.serial)
        .ok_or(GatewayError::BadSignature)?;
    rsa_verify(
        &key.1,
        &providers::wechat_message(&h.timestamp, &h.nonce, body),
        &h.signature,
    )?;
    let ts: i64 = h
        .timestamp
        .parse()
        .map_err(|_| GatewayError::BadSignature)?;
    if (now - ts).abs() > tolerance_s {
        return Err(GatewayError::BadSignature);
    }
    Ok(())
}

fn wechat_refused(r: &Value) -> GatewayError {
    GatewayError::Refused {
        code: r["code"].as_str().unwrap_or("unknown").to_string(),
        message: r["message"].as_str().unwrap_or("").to_string(),
    }
}

fn beijing(t: OffsetDateTime) -> String {
    t.to_offset(UtcOffset::from_hms(8, 0, 0).expect("valid offset"))
        .format(format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second]"
        ))
        .unwrap_or_default()
}

/// WeChat Pay's time format: `yyyy-MM-DDTHH:mm:ss+08:00` (RFC 3339 without fractions or `Z`).
pub fn wechat_time(t: OffsetDateTime) -> String {
    t.to_offset(UtcOffset::from_hms(8, 0, 0).expect("valid offset"))
        .format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]+08:00"
        ))
        .unwrap_or_default()
}

fn transport(e: reqwest::Error) -> GatewayError {
    // Never the URL with its query: it may carry identifiers; the error kind is enough.
    GatewayError::Transport(e.without_url().to_string())
}

async fn stripe_answer(r: reqwest::Response) -> Result<Value, GatewayError> {
    let status = r.status();
    if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 409 {
        // 409: an idempotent request still in flight at Stripe; 429: rate limited.
        return Err(GatewayError::Transport(format!("HTTP {status}")));
    }
    let v: Value = r.json().await.map_err(transport)?;
    if !status.is_success() {
        return Err(GatewayError::Refused {
            code: v["error"]["code"]
                .as_str()
                .or(v["error"]["type"].as_str())
                .unwrap_or("error")
                .to_string(),
            message: v["error"]["message"].as_str().unwrap_or("").to_string(),
        });
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::{encoding::AsDer, rsa::KeySize, signature::KeyPair};

    fn keypair() -> (signature::RsaKeyPair, Vec<u8>) {
        let k = signature::RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
        let public = k.public_key().as_der().unwrap().as_ref().to_vec();
        (k, public)
    }

    #[test]
    fn raw_member_returns_the_exact_text() {
        let body = r#"{"alipay_trade_query_response":{"code":"10000","msg":"Success","x":"a}\"b","n":{"k":[1,2]}},"sign":"abc"}"#;
        assert_eq!(
            raw_member(body, "alipay_trade_query_response"),
            Some(r#"{"code":"10000","msg":"Success","x":"a}\"b","n":{"k":[1,2]}}"#)
        );
        assert_eq!(raw_member(body, "missing"), None);
        // An escaped mention of the key inside a string value does not match.
        let tricky = r#"{"a":"\"alipay_x_response\"","alipay_x_response" : {"code":"1"}}"#;
        assert_eq!(
            raw_member(tricky, "alipay_x_response"),
            Some(r#"{"code":"1"}"#)
        );
        assert_eq!(raw_member(r#"{"k":{"unterminated""#, "k"), None);
    }

    #[test]
    fn alipay_answers_verify_over_the_raw_response_text() {
        let (alipay, public) = keypair();
        let inner = r#"{"code":"10000","msg":"Success","trade_status":"TRADE_SUCCESS","total_amount":"88.88","trade_no":"2026"}"#;
        let sign = rsa_sign(&alipay, inner.as_bytes()).unwrap();
        let body = format!(r#"{{"alipay_trade_query_response":{inner},"sign":"{sign}"}}"#);
        let r = alipay_response("alipay.trade.query", &body, &public).unwrap();
        assert_eq!(
            alipay_payment_state(&r, "app/seller").unwrap(),
            RemotePayment::Paid {
                amount: 8888,
                currency: "CNY".into(),
                merchant: Some("app/seller".into()),
                provider_ref: "2026".into(),
                raw: r.clone()
            }
        );
        // One changed byte in the signed text: refused.
        let forged = body.replace("88.88", "88.89");
        assert!(matches!(
            alipay_response("alipay.trade.query", &forged, &public),
            Err(GatewayError::BadSignature)
        ));
        // Unsigned answers are never trusted.
        assert!(matches!(
            alipay_response(
                "alipay.trade.query",
                r#"{"alipay_trade_query_response":{"code":"40002","msg":"Invalid Arguments"}}"#,
                &public
            ),
            Err(GatewayError::Refused { .. })
        ));
    }

    #[test]
    fn alipay_request_signature_verifies_with_the_app_public_key() {
        let (app, public) = keypair();
        let now = OffsetDateTime::from_unix_timestamp(1_790_000_000).unwrap();
        let params = alipay_request(
            "2021000",
            &app,
            "alipay.trade.query",
            &json!({"out_trade_no": "abc"}),
            None,
            now,
        )
        .unwrap();
        let get = |k: &str| params.iter().find(|(n, _)| n == k).unwrap().1.clone();
        assert_eq!(get("timestamp"), "2026-09-21 22:13:20"); // 14:13:20 UTC + 8 h
        assert_eq!(wechat_time(now), "2026-09-21T22:13:20+08:00");
        assert_eq!(beijing(now), "2026-09-21 22:13:20");
        let mut signed: Vec<_> = params.iter().filter(|(k, _)| k != "sign").collect();
        signed.sort();
        let content = signed
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        rsa_verify(&public, content.as_bytes(), &get("sign")).unwrap();
    }

    #[test]
    fn alipay_states() {
        let r = json!({"code": "40004", "sub_code": "ACQ.TRADE_NOT_EXIST"});
        assert_eq!(
            alipay_payment_state(&r, "m").unwrap(),
            RemotePayment::NotFound
        );
        let r = json!({"code": "20000", "msg": "Service Currently Unavailable"});
        assert!(alipay_payment_state(&r, "m").unwrap_err().is_transient());
        let r = json!({"code": "10000", "trade_status": "WAIT_BUYER_PAY"});
        assert_eq!(alipay_payment_state(&r, "m").unwrap(), RemotePayment::Open);
        let r = json!({"code": "10000", "trade_status": "TRADE_CLOSED"});
        assert!(matches!(
            alipay_payment_state(&r, "m").unwrap(),
            RemotePayment::Closed { .. }
        ));
    }

    #[test]
    fn wechat_authorization_signs_the_documented_message() {
        let (merchant, public) = keypair();
        let auth = wechat_authorization(
            "1900000001",
            "SERIAL1",
            &merchant,
            "GET",
            "/v3/pay/transactions/out-trade-no/abc?mchid=1900000001",
            1_790_000_000,
            "n0nce",
            "",
        )
        .unwrap();
        assert!(auth.starts_with(
            "WECHATPAY2-SHA256-RSA2048 mchid=\"1900000001\",nonce_str=\"n0nce\",signature=\""
        ));
        assert!(auth.ends_with(",timestamp=\"1790000000\",serial_no=\"SERIAL1\""));
        let sig = auth
            .split("signature=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        rsa_verify(
            &public,
            b"GET\n/v3/pay/transactions/out-trade-no/abc?mchid=1900000001\n1790000000\nn0nce\n\n",
            sig,
        )
        .unwrap();
    }

    #[test]
    fn wechat_answers_must_be_signed_by_the_platform_key() {
        let (platform, public) = keypair();
        let body = br#"{"trade_state":"NOTPAY"}"#;
        let sig = rsa_sign(&platform, &providers::wechat_message("100", "n", body)).unwrap();
        let keys = vec![("P1".to_string(), public)];
        let h = WechatHeaders {
            timestamp: "100".into(),
            nonce: "n".into(),
            signature: sig,
            serial: "P1".into(),
        };
        verify_wechat_answer(&keys, &h, body, 150, 300).unwrap();
        assert!(
            verify_wechat_answer(&keys, &h, br#"{"trade_state":"SUCCESS"}"#, 150, 300).is_err()
        );
        assert!(verify_wechat_answer(&keys, &h, body, 1000, 300).is_err());
        let other = WechatHeaders {
            serial: "P2".into(),
            ..h
        };
        assert!(verify_wechat_answer(&keys, &other, body, 150, 300).is_err());
    }

    #[test]
    fn wechat_and_stripe_states() {
        let paid = json!({"trade_state": "SUCCESS", "amount": {"total": 500, "currency": "CNY"},
                          "mchid": "m", "appid": "a", "transaction_id": "42"});
        assert!(matches!(
            wechat_payment_state(&paid).unwrap(),
            RemotePayment::Paid { amount: 500, ref merchant, .. } if merchant.as_deref() == Some("m/a")
        ));
        assert_eq!(
            wechat_payment_state(&json!({"trade_state": "NOTPAY"})).unwrap(),
            RemotePayment::Open
        );
        assert!(matches!(
            wechat_refund_state(&json!({"status": "ABNORMAL"})).unwrap(),
            RemoteRefund::Failed { .. }
        ));
        let pi = json!({"id": "pi_1", "status": "succeeded", "amount": 900, "currency": "cny"});
        assert!(matches!(
            stripe_payment_state(&pi, "").unwrap(),
            RemotePayment::Paid { amount: 900, ref currency, .. } if currency == "CNY"
        ));
        assert_eq!(
            stripe_payment_state(&json!({"status": "requires_payment_method"}), "").unwrap(),
            RemotePayment::Open
        );
        assert!(matches!(
            stripe_refund_state(&json!({"id": "re_1", "status": "pending"})).unwrap(),
            RemoteRefund::Pending { .. }
        ));
    }

    #[test]
    fn private_keys_load_from_pkcs8_pem() {
        let k = signature::RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
        let der = k.as_der().unwrap();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            B64.encode(der.as_ref())
        );
        decode_private_key(&pem).unwrap();
        assert!(decode_private_key("not a key").is_err());
    }
}
