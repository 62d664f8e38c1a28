//! Alipay (async notify, form-encoded): RSA2 = RSA-SHA256 (PKCS#1 v1.5) with Alipay's public
//! key over every parameter but `sign` and `sign_type`, empty values left out, sorted by name,
//! joined as `k=v&k=v` (values URL-decoded). Amounts arrive in yuan as "88.88". Acknowledged
//! with the text `success`.
//!
//! Its outbound side is here too: OpenAPI requests signed with the app's private key, answers
//! checked against Alipay's key, and what they mean, which [`crate::payments::gateway::Gateways`]
//! dispatches to.

use aws_lc_rs::signature;
use base64::{Engine, engine::general_purpose::STANDARD as B64};
use serde_json::Value;
use time::{OffsetDateTime, UtcOffset, macros::format_description};

use super::{
    EventKind, VerifiedEvent, VerifyError, decode_public_key,
    rsa::{rsa_sign, rsa_verify},
    rsa_sha256_verify,
};
use crate::{
    config::AlipaySettings,
    payments::{
        gateway::{GatewayError, RemotePayment, transport},
        parse_major_units,
    },
};

/// Verify an Alipay notification (the form body carries its signature).
pub fn verify_callback(
    settings: &AlipaySettings,
    body: &[u8],
) -> Result<VerifiedEvent, VerifyError> {
    let key = decode_public_key(&settings.public_key)?;
    let params: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
    verify_alipay(&key, &params)
}

/// The merchant notifications must name: `<app_id>/<seller_id>`.
pub fn expected_merchant(settings: &AlipaySettings) -> String {
    format!("{}/{}", settings.app_id, settings.seller_id)
}

/// The string Alipay signs: params but `sign`/`sign_type` and empty values, sorted, `k=v&...`.
pub fn alipay_sign_content(params: &[(String, String)]) -> String {
    let mut kv: Vec<&(String, String)> = params
        .iter()
        .filter(|(k, v)| k != "sign" && k != "sign_type" && !v.is_empty())
        .collect();
    kv.sort_by(|a, b| a.0.cmp(&b.0));
    kv.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Verify an Alipay async notification (form parameters, URL-decoded).
pub fn verify_alipay(
    public_key_der: &[u8],
    params: &[(String, String)],
) -> Result<VerifiedEvent, VerifyError> {
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let sign = get("sign").ok_or(VerifyError::Missing("sign"))?;
    if get("sign_type").as_deref().unwrap_or("RSA2") != "RSA2" {
        return Err(VerifyError::Malformed("sign_type must be RSA2".into()));
    }
    let sig = B64
        .decode(sign.as_bytes())
        .map_err(|_| VerifyError::Malformed("sign is not base64".into()))?;
    rsa_sha256_verify(public_key_der, alipay_sign_content(params).as_bytes(), &sig)?;
    let event_id = get("notify_id").ok_or(VerifyError::Missing("notify_id"))?;
    let status = get("trade_status").unwrap_or_default();
    let order_ref = get("out_trade_no").ok_or(VerifyError::Missing("out_trade_no"))?;
    let kind = match status.as_str() {
        "TRADE_SUCCESS" | "TRADE_FINISHED" => EventKind::PaymentSucceeded {
            order_ref,
            amount: get("total_amount")
                .as_deref()
                .and_then(crate::payments::parse_major_units)
                .ok_or_else(|| VerifyError::Malformed("total_amount".into()))?,
            currency: get("trans_currency").unwrap_or_else(|| "CNY".into()),
            merchant: Some(format!(
                "{}/{}",
                get("app_id").unwrap_or_default(),
                get("seller_id").unwrap_or_default()
            )),
            provider_ref: get("trade_no").unwrap_or_default(),
        },
        "TRADE_CLOSED" => EventKind::PaymentFailed { order_ref },
        _ => EventKind::Ignored,
    };
    let payload = Value::Object(
        params
            .iter()
            .filter(|(k, _)| k != "sign")
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    );
    Ok(VerifiedEvent {
        event_id,
        event_type: format!("trade_status.{status}"),
        kind,
        payload,
    })
}

// ---------------------------------------------------------------------------------------------
// Outbound (OpenAPI gateway: form-encoded common parameters + `biz_content`, RSA2 both ways)

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

pub(crate) fn alipay_ok(r: &Value) -> bool {
    r["code"].as_str() == Some("10000")
}

pub(crate) fn alipay_refused(r: &Value) -> GatewayError {
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
pub(crate) fn alipay_transient(r: &Value) -> bool {
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

/// Alipay's `time_expire`: Beijing time as `yyyy-MM-dd HH:mm:ss`, like a request's `timestamp`.
pub(crate) fn beijing(t: OffsetDateTime) -> String {
    t.to_offset(UtcOffset::from_hms(8, 0, 0).expect("valid offset"))
        .format(format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second]"
        ))
        .unwrap_or_default()
}

/// The outbound client, built from `[payments.alipay]` when an app private key is set.
pub(crate) struct Alipay {
    pub(crate) gateway_url: String,
    pub(crate) app_id: String,
    pub(crate) merchant: String,
    pub(crate) key: signature::RsaKeyPair,
    pub(crate) alipay_public: Vec<u8>,
    pub(crate) notify_url: String,
}

pub(crate) async fn alipay_call(
    http: &reqwest::Client,
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
    let r = http
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::payments::providers::{rsa::keypair, wechatpay::wechat_time};

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
}
