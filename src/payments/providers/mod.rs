//! Provider callbacks, verified as each provider documents it. Sans-IO: functions take the
//! headers/body/params, the keys and the current time, and return a [`VerifiedEvent`] or why
//! not. Nothing here touches the database; [`super::events`] applies what these accept.
//!
//! - Stripe style (also the built-in `sandbox`, with its own secret and header
//!   `Sandbox-Signature`): `Stripe-Signature: t=<unix>,v1=<hex>[,v1=...]`, HMAC-SHA256 with the
//!   endpoint secret over `"<t>.<raw body>"`, compared in constant time, `t` within the
//!   tolerance (300 s).
//! - Alipay (async notify, form-encoded): RSA2 = RSA-SHA256 (PKCS#1 v1.5) with Alipay's public
//!   key over every parameter but `sign` and `sign_type`, empty values left out, sorted by name,
//!   joined as `k=v&k=v` (values URL-decoded). Amounts arrive in yuan as "88.88".
//! - WeChat Pay v3: RSA-SHA256 (PKCS#1 v1.5) with the platform key named by `Wechatpay-Serial`
//!   over `"<Wechatpay-Timestamp>\n<Wechatpay-Nonce>\n<body>\n"`, signature base64 in
//!   `Wechatpay-Signature`; the `resource` is AEAD_AES_256_GCM with the APIv3 key, the resource's
//!   `nonce` and `associated_data` (ciphertext base64, tag appended).
//!
//! One module per provider ([`stripe`], [`alipay`], [`wechatpay`], [`sandbox`]), each owning its
//! callback verification, the merchant its events must name and the reply it expects, and now
//! also its outbound request signing and answer parsing; [`Provider`] is the name parsed at the
//! edge. [`rsa`] holds the RSA keys and signatures Alipay and WeChat Pay share for outbound
//! calls, which [`super::gateway`] dispatches.

pub mod alipay;
pub mod rsa;
pub mod sandbox;
pub mod stripe;
pub mod wechatpay;

use aws_lc_rs::signature;
use base64::{Engine, engine::general_purpose::STANDARD as B64};
use serde_json::Value;

pub use self::{
    alipay::{alipay_sign_content, verify_alipay},
    stripe::{parse_stripe_event, stripe_signature_header, verify_stripe_signature},
    wechatpay::{WechatHeaders, verify_wechat, wechat_decrypt, wechat_message},
};
use crate::config::PaymentSettings;

/// A payment provider whose callbacks we take (`/payments/webhooks/{provider}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    /// The built-in test provider (Stripe's signature scheme, its own secret).
    Sandbox,
    Stripe,
    Alipay,
    Wechatpay,
}

impl Provider {
    pub const ALL: [Provider; 4] = [
        Provider::Sandbox,
        Provider::Stripe,
        Provider::Alipay,
        Provider::Wechatpay,
    ];

    pub fn parse(name: &str) -> Option<Provider> {
        Provider::ALL.into_iter().find(|p| p.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Sandbox => "sandbox",
            Provider::Stripe => "stripe",
            Provider::Alipay => "alipay",
            Provider::Wechatpay => "wechatpay",
        }
    }

    /// Whether `payments.<provider>.enabled`.
    pub fn enabled(self, settings: &PaymentSettings) -> bool {
        match self {
            Provider::Sandbox => settings.sandbox.enabled,
            Provider::Stripe => settings.stripe.enabled,
            Provider::Alipay => settings.alipay.enabled,
            Provider::Wechatpay => settings.wechatpay.enabled,
        }
    }

    /// The merchant this provider's events must name (`None`: the sandbox names none).
    pub fn expected_merchant(self, settings: &PaymentSettings) -> Option<String> {
        match self {
            Provider::Sandbox => None,
            Provider::Stripe => Some(stripe::expected_merchant(&settings.stripe)),
            Provider::Alipay => Some(alipay::expected_merchant(&settings.alipay)),
            Provider::Wechatpay => Some(wechatpay::expected_merchant(&settings.wechatpay)),
        }
    }

    /// Verify a callback as this provider documents it. `header` looks a request header up by
    /// its lower-case name; `now` is the Unix time.
    pub fn verify_callback<'h>(
        self,
        settings: &PaymentSettings,
        header: &dyn Fn(&'static str) -> Option<&'h str>,
        body: &[u8],
        now: i64,
    ) -> Result<VerifiedEvent, VerifyError> {
        let tolerance = settings.webhook_tolerance_s;
        let header = |name: &'static str| header(name).ok_or(VerifyError::Missing(name));
        match self {
            Provider::Sandbox => {
                sandbox::verify_callback(&settings.sandbox, &header, body, now, tolerance)
            }
            Provider::Stripe => {
                stripe::verify_callback(&settings.stripe, &header, body, now, tolerance)
            }
            Provider::Alipay => alipay::verify_callback(&settings.alipay, body),
            Provider::Wechatpay => {
                wechatpay::verify_callback(&settings.wechatpay, &header, body, now, tolerance)
            }
        }
    }

    /// How this provider wants a recorded callback acknowledged.
    pub fn callback_reply(self) -> CallbackReply {
        match self {
            Provider::Sandbox | Provider::Stripe => CallbackReply::Ack,
            Provider::Alipay => CallbackReply::Text("success"),
            Provider::Wechatpay => CallbackReply::NoContent,
        }
    }
}

/// The answer a provider expects once its callback is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackReply {
    /// 200 with our JSON acknowledgement (`{received, outcome}`).
    Ack,
    /// 200 `text/plain` with this body (Alipay: `success`).
    Text(&'static str),
    /// 204 (WeChat Pay).
    NoContent,
}

/// A header lookup that names the missing header (see [`Provider::verify_callback`]).
pub type HeaderLookup<'a, 'h> = &'a dyn Fn(&'static str) -> Result<&'h str, VerifyError>;

/// Why a callback was refused (all answer 400 `invalid_callback`; none is applied).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing {0}")]
    Missing(&'static str),
    #[error("signature does not verify")]
    BadSignature,
    #[error("timestamp outside the tolerance")]
    Stale,
    #[error("unknown signing key {0}")]
    UnknownKey(String),
    #[error("malformed callback: {0}")]
    Malformed(String),
    #[error("resource does not decrypt")]
    Decrypt,
}

/// What a verified callback says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    PaymentSucceeded {
        /// Our order id as sent to the provider (simple or hyphenated UUID).
        order_ref: String,
        amount: i64,
        currency: String,
        /// The merchant the payment went to (Stripe account, Alipay app id + seller, WeChat mchid).
        merchant: Option<String>,
        provider_ref: String,
    },
    PaymentFailed {
        order_ref: String,
    },
    RefundSucceeded {
        refund_ref: String,
    },
    RefundFailed {
        refund_ref: String,
        reason: String,
    },
    /// Verified, but of a type we do not act on (recorded and acknowledged).
    Ignored,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedEvent {
    pub event_id: String,
    pub event_type: String,
    pub kind: EventKind,
    /// The event as stored (decrypted resource included for WeChat).
    pub payload: Value,
}

pub(super) fn str_at(v: &Value, pointer: &str) -> Result<String, VerifyError> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| VerifyError::Malformed(format!("missing {pointer}")))
}

pub(super) fn rsa_sha256_verify(
    public_key_der: &[u8],
    message: &[u8],
    sig: &[u8],
) -> Result<(), VerifyError> {
    signature::UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, public_key_der)
        .verify(message, sig)
        .map_err(|_| VerifyError::BadSignature)
}

/// Parse a public key given as base64 DER (SubjectPublicKeyInfo or PKCS#1, as Alipay shows
/// it) or as PEM.
pub fn decode_public_key(text: &str) -> Result<Vec<u8>, VerifyError> {
    let body: String = text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .join("");
    B64.decode(body.trim())
        .map_err(|_| VerifyError::Malformed("public key is not base64 DER or PEM".into()))
}
