//! WeChat Pay v3: RSA-SHA256 (PKCS#1 v1.5) with the platform key named by `Wechatpay-Serial`
//! over `"<Wechatpay-Timestamp>\n<Wechatpay-Nonce>\n<body>\n"`, signature base64 in
//! `Wechatpay-Signature`; the `resource` is AEAD_AES_256_GCM with the APIv3 key, the resource's
//! `nonce` and `associated_data` (ciphertext base64, tag appended). Acknowledged with 204.
//!
//! Its outbound side is here too: the `Authorization` header of v3 requests, the check of its
//! signed answers (the callback scheme) and what they mean, which
//! [`crate::payments::gateway::Gateways`] dispatches to.

use aws_lc_rs::{aead, signature};
use base64::{Engine, engine::general_purpose::STANDARD as B64};
use serde_json::Value;
use time::{OffsetDateTime, UtcOffset, macros::format_description};
use uuid::Uuid;

use super::{
    EventKind, HeaderLookup, VerifiedEvent, VerifyError, decode_public_key,
    rsa::{rsa_sign, rsa_verify},
    rsa_sha256_verify, str_at,
};
use crate::{
    config::WechatPaySettings,
    payments::gateway::{GatewayError, RemotePayment, RemoteRefund, transport},
};

/// Verify a WeChat Pay callback (`Wechatpay-*` headers, encrypted resource).
pub fn verify_callback(
    settings: &WechatPaySettings,
    header: HeaderLookup<'_, '_>,
    body: &[u8],
    now: i64,
    tolerance: i64,
) -> Result<VerifiedEvent, VerifyError> {
    let key = decode_public_key(&settings.platform_public_key)?;
    let h = WechatHeaders {
        timestamp: header("wechatpay-timestamp")?.to_string(),
        nonce: header("wechatpay-nonce")?.to_string(),
        signature: header("wechatpay-signature")?.to_string(),
        serial: header("wechatpay-serial")?.to_string(),
    };
    verify_wechat(
        &[(settings.platform_serial.clone(), key)],
        settings.apiv3_key.expose().as_bytes(),
        &h,
        body,
        now,
        tolerance,
    )
}

/// The merchant callbacks must name: `<mchid>/<appid>`.
pub fn expected_merchant(settings: &WechatPaySettings) -> String {
    format!("{}/{}", settings.mchid, settings.appid)
}

/// The `Wechatpay-*` headers of a callback.
#[derive(Debug, Clone)]
pub struct WechatHeaders {
    pub timestamp: String,
    pub nonce: String,
    pub signature: String,
    pub serial: String,
}

/// The message WeChat Pay signs.
pub fn wechat_message(timestamp: &str, nonce: &str, body: &[u8]) -> Vec<u8> {
    let mut m = format!("{timestamp}\n{nonce}\n").into_bytes();
    m.extend_from_slice(body);
    m.push(b'\n');
    m
}

/// Decrypt a v3 `resource` (AEAD_AES_256_GCM with the 32-byte APIv3 key).
pub fn wechat_decrypt(apiv3_key: &[u8], resource: &Value) -> Result<Vec<u8>, VerifyError> {
    if resource["algorithm"].as_str() != Some("AEAD_AES_256_GCM") {
        return Err(VerifyError::Malformed("resource.algorithm".into()));
    }
    let nonce = resource["nonce"]
        .as_str()
        .ok_or(VerifyError::Missing("resource.nonce"))?;
    let aad = resource["associated_data"].as_str().unwrap_or("");
    let mut data = B64
        .decode(
            resource["ciphertext"]
                .as_str()
                .ok_or(VerifyError::Missing("resource.ciphertext"))?,
        )
        .map_err(|_| VerifyError::Malformed("resource.ciphertext".into()))?;
    let key =
        aead::UnboundKey::new(&aead::AES_256_GCM, apiv3_key).map_err(|_| VerifyError::Decrypt)?;
    let key = aead::LessSafeKey::new(key);
    let nonce = aead::Nonce::try_assume_unique_for_key(nonce.as_bytes())
        .map_err(|_| VerifyError::Decrypt)?;
    let plain = key
        .open_in_place(nonce, aead::Aad::from(aad.as_bytes()), &mut data)
        .map_err(|_| VerifyError::Decrypt)?;
    Ok(plain.to_vec())
}

/// Verify a WeChat Pay v3 callback and decrypt its resource. `keys` are the platform public
/// keys (DER) by serial.
pub fn verify_wechat(
    keys: &[(String, Vec<u8>)],
    apiv3_key: &[u8],
    h: &WechatHeaders,
    body: &[u8],
    now: i64,
    tolerance_s: i64,
) -> Result<VerifiedEvent, VerifyError> {
    let key = keys
        .iter()
        .find(|(serial, _)| *serial == h.serial)
        .ok_or_else(|| VerifyError::UnknownKey(h.serial.clone()))?;
    let sig = B64
        .decode(h.signature.as_bytes())
        .map_err(|_| VerifyError::Malformed("Wechatpay-Signature".into()))?;
    rsa_sha256_verify(&key.1, &wechat_message(&h.timestamp, &h.nonce, body), &sig)?;
    let ts: i64 = h
        .timestamp
        .parse()
        .map_err(|_| VerifyError::Malformed("Wechatpay-Timestamp".into()))?;
    if (now - ts).abs() > tolerance_s {
        return Err(VerifyError::Stale);
    }
    let v: Value =
        serde_json::from_slice(body).map_err(|e| VerifyError::Malformed(e.to_string()))?;
    let event_id = str_at(&v, "/id")?;
    let event_type = str_at(&v, "/event_type")?;
    let resource: Value = serde_json::from_slice(&wechat_decrypt(apiv3_key, &v["resource"])?)
        .map_err(|e| VerifyError::Malformed(e.to_string()))?;
    let merchant = Some(format!(
        "{}/{}",
        resource["mchid"].as_str().unwrap_or(""),
        resource["appid"].as_str().unwrap_or("")
    ));
    let kind = match event_type.as_str() {
        "TRANSACTION.SUCCESS" if resource["trade_state"].as_str() == Some("SUCCESS") => {
            EventKind::PaymentSucceeded {
                order_ref: str_at(&resource, "/out_trade_no")?,
                amount: resource["amount"]["total"]
                    .as_i64()
                    .ok_or_else(|| VerifyError::Malformed("amount.total".into()))?,
                currency: resource["amount"]["currency"]
                    .as_str()
                    .unwrap_or("CNY")
                    .to_string(),
                merchant,
                provider_ref: resource["transaction_id"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            }
        }
        "REFUND.SUCCESS" => EventKind::RefundSucceeded {
            refund_ref: str_at(&resource, "/out_refund_no")?,
        },
        "REFUND.ABNORMAL" | "REFUND.CLOSED" => EventKind::RefundFailed {
            refund_ref: str_at(&resource, "/out_refund_no")?,
            reason: event_type.clone(),
        },
        _ => EventKind::Ignored,
    };
    let mut payload = v;
    payload["resource"] = resource;
    Ok(VerifiedEvent {
        event_id,
        event_type,
        kind,
        payload,
    })
}

// ---------------------------------------------------------------------------------------------
// Outbound (JSON, `Authorization: WECHATPAY2-SHA256-RSA2048 …`, signed answers)

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
        &wechat_message(&h.timestamp, &h.nonce, body),
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

pub(crate) fn wechat_refused(r: &Value) -> GatewayError {
    GatewayError::Refused {
        code: r["code"].as_str().unwrap_or("unknown").to_string(),
        message: r["message"].as_str().unwrap_or("").to_string(),
    }
}

/// WeChat Pay's time format: `yyyy-MM-DDTHH:mm:ss+08:00` (RFC 3339 without fractions or `Z`).
pub fn wechat_time(t: OffsetDateTime) -> String {
    t.to_offset(UtcOffset::from_hms(8, 0, 0).expect("valid offset"))
        .format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]+08:00"
        ))
        .unwrap_or_default()
}

/// The outbound client, built from `[payments.wechatpay]` when a merchant private key is set.
pub(crate) struct Wechat {
    pub(crate) api_base: String,
    pub(crate) mchid: String,
    pub(crate) appid: String,
    pub(crate) serial: String,
    pub(crate) key: signature::RsaKeyPair,
    pub(crate) platform: Vec<(String, Vec<u8>)>,
    pub(crate) notify_url: String,
    pub(crate) tolerance_s: i64,
}

/// One v3 call; the answer's signature is checked (all but 5xx answers are signed).
pub(crate) async fn wechat_call(
    http: &reqwest::Client,
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
        "GET" => http.get(url),
        _ => http
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::payments::providers::{self, rsa::keypair};

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
    fn wechat_states() {
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
    }
}
