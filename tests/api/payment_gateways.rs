//! Outbound provider calls: starting payments, refunds and reconciliation that asks the
//! provider. Stripe is localstripe (an independent Stripe API emulator from PyPI, started by
//! scripts/test); Alipay and WeChat Pay have no emulator that runs here, so each is a small
//! server in this file speaking the documented API: it checks our request signatures with the
//! keys generated here (RSA2 over the sorted parameters; the v3 `Authorization` header), signs
//! its answers (over the raw `*_response` text; the `Wechatpay-*` headers) and calls back the
//! way the real ones do (signed async notification; signed callback with an AES-256-GCM
//! resource).

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use aws_lc_rs::{
    aead,
    encoding::AsDer,
    rand::SystemRandom,
    rsa::KeySize,
    signature::{self, KeyPair as _, RSA_PKCS1_SHA256, RsaKeyPair},
};
use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, Method, StatusCode as AxStatus, Uri},
    response::{IntoResponse, Response},
};
use base64::{Engine, engine::general_purpose::STANDARD as B64};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};
use wemaster::{payments::providers, users::Role};

use crate::helpers::{TestApp, spawn_app_with, unique_email};

const PW: &str = "a fine passphrase";

fn keypair() -> (Arc<RsaKeyPair>, String, String) {
    let k = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let public = B64.encode(k.public_key().as_der().unwrap().as_ref());
    let private_pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        B64.encode(k.as_der().unwrap().as_ref())
    );
    (Arc::new(k), public, private_pem)
}

fn sign(key: &RsaKeyPair, msg: &[u8]) -> String {
    let mut sig = vec![0; key.public_modulus_len()];
    key.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), msg, &mut sig)
        .unwrap();
    B64.encode(sig)
}

fn verify(public_b64: &str, msg: &[u8], sig_b64: &str) -> bool {
    let Ok(sig) = B64.decode(sig_b64) else {
        return false;
    };
    signature::UnparsedPublicKey::new(
        &signature::RSA_PKCS1_2048_8192_SHA256,
        B64.decode(public_b64).unwrap(),
    )
    .verify(msg, &sig)
    .is_ok()
}

async fn serve(router: Router) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, router).await.unwrap() });
    addr
}

async fn post(app: &TestApp, path: &str, token: &str, body: &Value) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn json_of(r: reqwest::Response) -> Value {
    r.json().await.unwrap()
}

async fn get(app: &TestApp, path: &str, token: &str) -> Value {
    let r = app.get_auth(path, token).await;
    assert_eq!(r.status(), StatusCode::OK, "{path}");
    r.json().await.unwrap()
}

async fn reconcile(app: &TestApp, ops: &str) -> Value {
    let r = post(app, "/api/v1/admin/payments/reconcile", ops, &json!({})).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v = json_of(r).await;
    assert_eq!(v["ledger_mismatches"], 0, "{v}");
    v
}

async fn wait_status(app: &TestApp, token: &str, path: &str, status: &str) -> Value {
    for _ in 0..200 {
        let v = get(app, path, token).await;
        if v["status"] == status {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{path} never became {status}");
}

async fn assert_ledger_sound(app: &TestApp) {
    let mut conn = PgConnection::connect(&app.database_url).await.unwrap();
    let (mismatched, unbalanced) = wemaster::payments::ledger::audit(&mut conn).await.unwrap();
    assert!(
        mismatched.is_empty() && unbalanced.is_empty(),
        "{mismatched:?} {unbalanced:?}"
    );
}

fn topup(amount: i64, provider: &str) -> Value {
    json!({"kind": "wallet_topup", "amount": {"amount": amount, "currency": "CNY"}, "provider": provider})
}

async fn users(app: &TestApp, tag: &str) -> (String, String) {
    let (_, student) = app
        .user_with(&unique_email(tag), PW, &[Role::Student])
        .await;
    let (_, ops) = app
        .user_with(&unique_email(&format!("{tag}-ops")), PW, &[Role::Ops])
        .await;
    (student, ops)
}

// ------------------------------------------------------------------------------------------
// Stripe, against localstripe

pub(crate) fn localstripe() -> String {
    std::env::var("WEMASTER_TEST_STRIPE_URL").expect("scripts/test starts localstripe")
}

pub(crate) const STRIPE_KEY: &str = "sk_test_wemaster";

/// The browser's part (Stripe.js): a card payment method attached and the intent confirmed.
async fn stripe_pay(pi: &str, card: &str) -> reqwest::Response {
    let c = reqwest::Client::new();
    let pm: Value = c
        .post(format!("{}/v1/payment_methods", localstripe()))
        .bearer_auth(STRIPE_KEY)
        .form(&[
            ("type", "card"),
            ("card[number]", card),
            ("card[exp_month]", "12"),
            ("card[exp_year]", "2030"),
            ("card[cvc]", "123"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = c
        .post(format!("{}/v1/payment_intents/{pi}", localstripe()))
        .bearer_auth(STRIPE_KEY)
        .form(&[("payment_method", pm["id"].as_str().unwrap())])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    c.post(format!("{}/v1/payment_intents/{pi}/confirm", localstripe()))
        .bearer_auth(STRIPE_KEY)
        .send()
        .await
        .unwrap()
}

async fn stripe_get(path: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{}{path}", localstripe()))
        .bearer_auth(STRIPE_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn stripe_app(webhooks: bool) -> TestApp {
    stripe_app_with(webhooks, |s| s.payments.order_ttl_s = 4).await
}

/// A server taking Stripe payments through localstripe (webhooks registered there when asked),
/// with `more` settings on top.
pub(crate) async fn stripe_app_with(
    webhooks: bool,
    more: impl FnOnce(&mut wemaster::config::Settings) + Send + 'static,
) -> TestApp {
    let secret = format!("whsec_{}", uuid::Uuid::new_v4().simple());
    let s2 = secret.clone();
    let app = spawn_app_with(move |s| {
        s.payments.stripe.enabled = true;
        s.payments.stripe.webhook_secret = wemaster::config::Secret::new(s2);
        s.payments.stripe.secret_key = wemaster::config::Secret::new(STRIPE_KEY);
        s.payments.stripe.api_base = localstripe();
        s.payments.reconcile_min_age_s = 0;
        more(s);
    })
    .await;
    if webhooks {
        // localstripe signs its events like Stripe (`Stripe-Signature`, HMAC-SHA256 over t.body).
        let r = reqwest::Client::new()
            .post(format!(
                "{}/_config/webhooks/wm{}",
                localstripe(),
                uuid::Uuid::new_v4().simple()
            ))
            .form(&[
                ("url", app.url("/api/v1/payments/webhooks/stripe")),
                ("secret", secret),
            ])
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }
    app
}

#[tokio::test]
async fn stripe_payment_intents_refunds_and_declines_against_localstripe() {
    let app = stripe_app(true).await;
    let (student, ops) = users(&app, "stripe").await;

    let r = post(&app, "/api/v1/orders", &student, &topup(5000, "stripe")).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let order = json_of(r).await;
    let pi = order["payment"]["instructions"]["payment_intent"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        order["payment"]["instructions"]["client_secret"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{pi}_secret_"))
    );
    let at_stripe = stripe_get(&format!("/v1/payment_intents/{pi}")).await;
    assert_eq!(at_stripe["amount"], 5000);
    assert_eq!(at_stripe["currency"], "cny");
    assert_eq!(
        at_stripe["metadata"]["order_id"],
        order["payment"]["reference"]
    );
    let path = format!("/api/v1/orders/{}", order["id"].as_str().unwrap());
    assert_eq!(
        get(&app, &path, &student).await["provider_ref"],
        pi.as_str()
    );
    // Asking again resumes the same PaymentIntent instead of making a second one.
    let again = json_of(post(&app, &format!("{path}/payment"), &student, &json!({})).await).await;
    assert_eq!(again["instructions"]["payment_intent"], pi.as_str());

    // The payer pays in the browser; Stripe's signed webhook makes the order paid.
    let r = stripe_pay(&pi, "4242424242424242").await;
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    wait_status(&app, &student, &path, "paid").await;
    assert_eq!(
        get(&app, "/api/v1/wallet", &student).await["balance"]["amount"],
        5000
    );

    // A refund goes to Stripe at once; its answer (succeeded) settles it.
    let r = post(
        &app,
        "/api/v1/refunds",
        &ops,
        &json!({"order_id": order["id"], "amount": {"amount": 2000, "currency": "CNY"}, "reason": "requested"}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let refund = json_of(r).await;
    assert_eq!(refund["status"], "succeeded", "{refund}");
    let at_stripe = stripe_get(&format!("/v1/refunds?payment_intent={pi}")).await;
    let refunds = at_stripe["data"].as_array().unwrap();
    assert_eq!(refunds.len(), 1, "{at_stripe}");
    assert_eq!(refunds[0]["amount"], 2000);
    assert_eq!(refunds[0]["metadata"]["refund_id"], refund["id"]);
    assert_eq!(
        get(&app, "/api/v1/wallet", &student).await["balance"]["amount"],
        3000
    );

    // A declined card is not the end of an order: the payer may try another card.
    let order2 = json_of(post(&app, "/api/v1/orders", &student, &topup(700, "stripe")).await).await;
    let pi2 = order2["payment"]["instructions"]["payment_intent"]
        .as_str()
        .unwrap()
        .to_string();
    // Stripe's test card that attaches but whose charge is declined.
    let r = stripe_pay(&pi2, "4000000000000341").await;
    assert_eq!(r.status().as_u16(), 402);
    tokio::time::sleep(Duration::from_millis(1500)).await; // localstripe's webhook delay
    let path2 = format!("/api/v1/orders/{}", order2["id"].as_str().unwrap());
    assert_eq!(get(&app, &path2, &student).await["status"], "pending");
    assert_ledger_sound(&app).await;
}

#[tokio::test]
async fn reconciliation_asks_stripe_about_orders_whose_webhook_never_came_and_cancels_stale_ones() {
    // No webhook registered for this app: only asking Stripe can tell.
    let app = stripe_app(false).await;
    let (student, ops) = users(&app, "stripe-rec").await;
    let paid = json_of(post(&app, "/api/v1/orders", &student, &topup(1200, "stripe")).await).await;
    let stale = json_of(post(&app, "/api/v1/orders", &student, &topup(300, "stripe")).await).await;
    let pi = paid["payment"]["instructions"]["payment_intent"]
        .as_str()
        .unwrap();
    let stale_pi = stale["payment"]["instructions"]["payment_intent"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        stripe_pay(pi, "4242424242424242")
            .await
            .status()
            .is_success()
    );

    let r = reconcile(&app, &ops).await;
    assert_eq!(r["orders_paid"], 1, "{r}");
    let path = format!("/api/v1/orders/{}", paid["id"].as_str().unwrap());
    assert_eq!(get(&app, &path, &student).await["status"], "paid");
    assert_eq!(
        get(&app, "/api/v1/wallet", &student).await["balance"]["amount"],
        1200
    );
    // Recorded like a callback, for the admins' view.
    let events = get(&app, "/api/v1/admin/payments/events?provider=stripe", &ops).await;
    let e = &events["items"][0];
    assert_eq!(e["event_type"], "wemaster.payment_state");
    assert_eq!(e["outcome"], "applied");
    // Asking again changes nothing.
    let r = reconcile(&app, &ops).await;
    assert_eq!(r["orders_paid"], 0, "{r}");

    // Past its deadline the unpaid one is cancelled at Stripe first, then expired here.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let r = reconcile(&app, &ops).await;
    assert!(r["orders_expired"].as_u64().unwrap() >= 1, "{r}");
    let path = format!("/api/v1/orders/{}", stale["id"].as_str().unwrap());
    assert_eq!(get(&app, &path, &student).await["status"], "expired");
    assert_eq!(
        stripe_get(&format!("/v1/payment_intents/{stale_pi}")).await["status"],
        "canceled"
    );
    assert_eq!(
        get(&app, "/api/v1/wallet", &student).await["balance"]["amount"],
        1200
    );
    assert_ledger_sound(&app).await;
}

// ------------------------------------------------------------------------------------------
// Alipay, a server speaking the OpenAPI gateway as documented

#[derive(Default)]
struct AliTrade {
    total: i64,
    /// precreated (not scanned: unknown to Alipay's query), WAIT_BUYER_PAY, TRADE_SUCCESS,
    /// TRADE_CLOSED.
    status: &'static str,
    notify_url: String,
    refunds: HashMap<String, i64>,
}

#[derive(Default)]
struct AliState {
    trades: HashMap<String, AliTrade>,
    methods: Vec<String>,
    /// Notifications are lost (the reconciliation test).
    mute: bool,
    /// Answers signed with another key (a forger between us and Alipay).
    forge: bool,
}

#[derive(Clone)]
struct Alipay {
    app_id: String,
    app_public: String,
    key: Arc<RsaKeyPair>,
    forger: Arc<RsaKeyPair>,
    state: Arc<Mutex<AliState>>,
}

async fn alipay_gateway(State(a): State<Alipay>, body: Bytes) -> Response {
    let params: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let get = |k: &str| {
        params
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let method = get("method");
    // Requests: every parameter but `sign`, empty ones left out, sorted, `k=v&…`.
    let mut signed: Vec<&(String, String)> = params
        .iter()
        .filter(|(k, v)| k != "sign" && !v.is_empty())
        .collect();
    signed.sort();
    let content = signed
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let resp_key = format!("{}_response", method.replace('.', "_"));
    if get("app_id") != a.app_id
        || get("sign_type") != "RSA2"
        || !verify(&a.app_public, content.as_bytes(), &get("sign"))
    {
        return format!(
            r#"{{"{resp_key}":{{"code":"40002","msg":"Invalid Arguments","sub_code":"isv.invalid-signature","sub_msg":"验签出错"}}}}"#
        )
        .into_response();
    }
    let biz: Value = serde_json::from_str(&get("biz_content")).unwrap();
    let no = biz["out_trade_no"].as_str().unwrap_or("").to_string();
    let mut st = a.state.lock().unwrap();
    st.methods.push(method.clone());
    let not_exist = json!({"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.TRADE_NOT_EXIST", "sub_msg": "交易不存在"});
    let inner = match method.as_str() {
        "alipay.trade.precreate" => {
            let total =
                wemaster::payments::parse_major_units(biz["total_amount"].as_str().unwrap())
                    .unwrap();
            st.trades.entry(no.clone()).or_insert(AliTrade {
                total,
                status: "precreated",
                notify_url: get("notify_url"),
                ..Default::default()
            });
            json!({"code": "10000", "msg": "Success", "out_trade_no": no,
                   "qr_code": format!("https://qr.alipay.com/bax0{}", &no[..8])})
        }
        "alipay.trade.query" => match st.trades.get(&no) {
            Some(t) if t.status != "precreated" => json!({
                "code": "10000", "msg": "Success", "out_trade_no": no, "trade_no": format!("2026{no}"),
                "trade_status": t.status, "total_amount": wemaster::payments::format_major_units(t.total),
            }),
            _ => not_exist,
        },
        "alipay.trade.close" => match st.trades.get_mut(&no) {
            Some(t) if t.status == "WAIT_BUYER_PAY" => {
                t.status = "TRADE_CLOSED";
                json!({"code": "10000", "msg": "Success", "out_trade_no": no})
            }
            Some(t) if t.status == "TRADE_SUCCESS" => {
                json!({"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.TRADE_STATUS_ERROR"})
            }
            _ => not_exist,
        },
        "alipay.trade.refund" => {
            let amount =
                wemaster::payments::parse_major_units(biz["refund_amount"].as_str().unwrap())
                    .unwrap();
            let req = biz["out_request_no"].as_str().unwrap().to_string();
            match st.trades.get_mut(&no) {
                Some(t) if t.status == "TRADE_SUCCESS" => {
                    let repeat = t.refunds.contains_key(&req);
                    let done: i64 = t.refunds.values().sum();
                    if !repeat && done + amount > t.total {
                        json!({"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL"})
                    } else {
                        t.refunds.insert(req, amount);
                        json!({"code": "10000", "msg": "Success", "out_trade_no": no,
                               "trade_no": format!("2026{no}"),
                               "refund_fee": wemaster::payments::format_major_units(t.refunds.values().sum()),
                               "fund_change": if repeat { "N" } else { "Y" }})
                    }
                }
                _ => not_exist,
            }
        }
        "alipay.trade.fastpay.refund.query" => {
            let req = biz["out_request_no"].as_str().unwrap();
            match st.trades.get(&no).and_then(|t| t.refunds.get(req)) {
                Some(amount) => json!({"code": "10000", "msg": "Success", "out_trade_no": no,
                    "out_request_no": req, "refund_status": "REFUND_SUCCESS",
                    "refund_amount": wemaster::payments::format_major_units(*amount)}),
                None => {
                    json!({"code": "10000", "msg": "Success", "out_trade_no": no, "out_request_no": req})
                }
            }
        }
        _ => json!({"code": "40004", "sub_code": "isv.invalid-method"}),
    };
    let inner = inner.to_string();
    let signer = if st.forge { &a.forger } else { &a.key };
    let sig = sign(signer, inner.as_bytes());
    format!(r#"{{"{resp_key}":{inner},"sign":"{sig}"}}"#).into_response()
}

impl Alipay {
    fn scan(&self, no: &str) {
        let mut st = self.state.lock().unwrap();
        st.trades.get_mut(no).unwrap().status = "WAIT_BUYER_PAY";
    }

    /// The buyer pays: the trade succeeds and Alipay sends its signed async notification.
    async fn pay(&self, no: &str, seller_id: &str) {
        let (params, url, mute) = {
            let mut st = self.state.lock().unwrap();
            let t = st.trades.get_mut(no).unwrap();
            t.status = "TRADE_SUCCESS";
            let params: Vec<(String, String)> = vec![
                ("notify_time".into(), "2026-11-26 20:00:00".into()),
                ("notify_type".into(), "trade_status_sync".into()),
                ("notify_id".into(), format!("ntf{no}")),
                ("app_id".into(), self.app_id.clone()),
                ("charset".into(), "utf-8".into()),
                ("version".into(), "1.0".into()),
                ("sign_type".into(), "RSA2".into()),
                ("trade_no".into(), format!("2026{no}")),
                ("out_trade_no".into(), no.into()),
                ("seller_id".into(), seller_id.into()),
                ("trade_status".into(), "TRADE_SUCCESS".into()),
                (
                    "total_amount".into(),
                    wemaster::payments::format_major_units(t.total),
                ),
            ];
            (params, t.notify_url.clone(), st.mute)
        };
        if mute {
            return;
        }
        let mut params = params;
        let s = sign(
            &self.key,
            providers::alipay_sign_content(&params).as_bytes(),
        );
        params.push(("sign".into(), s));
        let r = reqwest::Client::new()
            .post(url)
            .form(&params)
            .send()
            .await
            .unwrap();
        assert_eq!(r.text().await.unwrap(), "success");
    }
}

#[tokio::test]
async fn alipay_precreate_notify_refund_and_reconciliation_against_the_documented_gateway() {
    let (app_key, app_public, app_private_pem) = keypair();
    let (alipay_key, alipay_public, _) = keypair();
    let (forger, _, _) = keypair();
    let _ = app_key;
    let double = Alipay {
        app_id: "2021000000000001".into(),
        app_public,
        key: alipay_key,
        forger,
        state: Arc::default(),
    };
    let addr = serve(
        Router::new()
            .route("/gateway.do", axum::routing::post(alipay_gateway))
            .with_state(double.clone()),
    )
    .await;
    let app = spawn_app_with(move |s| {
        s.payments.alipay.enabled = true;
        s.payments.alipay.app_id = "2021000000000001".into();
        s.payments.alipay.seller_id = "2088000000000001".into();
        s.payments.alipay.public_key = alipay_public;
        s.payments.alipay.app_private_key = wemaster::config::Secret::new(app_private_pem);
        s.payments.alipay.gateway_url = format!("http://{addr}/gateway.do");
        s.payments.reconcile_min_age_s = 0;
        s.payments.order_ttl_s = 3;
    })
    .await;
    let (student, ops) = users(&app, "alipay-gw").await;

    // Precreate: a QR code for the payer; Alipay was asked with our notify URL and the amount
    // in yuan.
    let order = json_of(post(&app, "/api/v1/orders", &student, &topup(8888, "alipay")).await).await;
    let no = order["payment"]["reference"].as_str().unwrap().to_string();
    assert!(
        order["payment"]["instructions"]["qr_code"]
            .as_str()
            .unwrap()
            .starts_with("https://qr.alipay.com/")
    );
    {
        let st = double.state.lock().unwrap();
        let t = &st.trades[&no];
        assert_eq!(t.total, 8888);
        assert_eq!(t.notify_url, app.url("/api/v1/payments/webhooks/alipay"));
    }
    double.scan(&no);
    double.pay(&no, "2088000000000001").await;
    let path = format!("/api/v1/orders/{}", order["id"].as_str().unwrap());
    wait_status(&app, &student, &path, "paid").await;

    // Refund: Alipay answers fund_change Y, so it is final at once.
    let r = post(
        &app,
        "/api/v1/refunds",
        &ops,
        &json!({"order_id": order["id"], "amount": {"amount": 1000, "currency": "CNY"}}),
    )
    .await;
    let refund = json_of(r).await;
    assert_eq!(refund["status"], "succeeded", "{refund}");
    assert_eq!(
        double.state.lock().unwrap().trades[&no].refunds[&uuid::Uuid::parse_str(
            refund["id"].as_str().unwrap()
        )
        .unwrap()
        .simple()
        .to_string()],
        1000
    );
    assert_eq!(
        get(&app, "/api/v1/wallet", &student).await["balance"]["amount"],
        7888
    );

    // A lost notification: reconciliation asks alipay.trade.query and applies it.
    double.state.lock().unwrap().mute = true;
    let lost = json_of(post(&app, "/api/v1/orders", &student, &topup(500, "alipay")).await).await;
    let lost_no = lost["payment"]["reference"].as_str().unwrap().to_string();
    double.scan(&lost_no);
    double.pay(&lost_no, "2088000000000001").await;
    // Answers that do not verify change nothing.
    double.state.lock().unwrap().forge = true;
    let r = reconcile(&app, &ops).await;
    assert_eq!(r["orders_paid"], 0, "{r}");
    assert!(r["provider_errors"].as_u64().unwrap() >= 1, "{r}");
    double.state.lock().unwrap().forge = false;
    let r = reconcile(&app, &ops).await;
    assert_eq!(r["orders_paid"], 1, "{r}");
    let lost_path = format!("/api/v1/orders/{}", lost["id"].as_str().unwrap());
    assert_eq!(get(&app, &lost_path, &student).await["status"], "paid");
    assert_eq!(
        get(&app, "/api/v1/wallet", &student).await["balance"]["amount"],
        8388
    );

    // Scanned, never paid, past its deadline: closed at Alipay, then expired here.
    let stale = json_of(post(&app, "/api/v1/orders", &student, &topup(300, "alipay")).await).await;
    let stale_no = stale["payment"]["reference"].as_str().unwrap().to_string();
    double.scan(&stale_no);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let r = reconcile(&app, &ops).await;
    assert!(r["orders_expired"].as_u64().unwrap() >= 1, "{r}");
    assert_eq!(
        double.state.lock().unwrap().trades[&stale_no].status,
        "TRADE_CLOSED"
    );
    let stale_path = format!("/api/v1/orders/{}", stale["id"].as_str().unwrap());
    assert_eq!(get(&app, &stale_path, &student).await["status"], "expired");
    assert_eq!(
        get(&app, "/api/v1/wallet", &student).await["balance"]["amount"],
        8388
    );
    assert_ledger_sound(&app).await;
}

// ------------------------------------------------------------------------------------------
// WeChat Pay v3, a server speaking the documented API

#[derive(Default)]
struct WxTrade {
    total: i64,
    state: &'static str,
    notify_url: String,
}

#[derive(Default)]
struct WxState {
    trades: HashMap<String, WxTrade>,
    /// out_refund_no → (amount, status)
    refunds: HashMap<String, (i64, &'static str)>,
    /// The next refund request is lost (answered 500, not recorded).
    drop_next_refund: bool,
    requests: Vec<String>,
}

#[derive(Clone)]
struct Wechat {
    mchid: String,
    appid: String,
    merchant_serial: String,
    merchant_public: String,
    platform_serial: String,
    platform: Arc<RsaKeyPair>,
    apiv3_key: String,
    state: Arc<Mutex<WxState>>,
}

impl Wechat {
    fn answer(&self, status: AxStatus, body: Option<Value>) -> Response {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let ts = time::OffsetDateTime::now_utc().unix_timestamp().to_string();
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let sig = sign(
            &self.platform,
            &providers::wechat_message(&ts, &nonce, body.as_bytes()),
        );
        (
            status,
            [
                ("content-type", "application/json".to_string()),
                ("wechatpay-timestamp", ts),
                ("wechatpay-nonce", nonce),
                ("wechatpay-signature", sig),
                ("wechatpay-serial", self.platform_serial.clone()),
            ],
            body,
        )
            .into_response()
    }

    fn authorized(&self, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> bool {
        let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let Some(params) = auth.strip_prefix("WECHATPAY2-SHA256-RSA2048 ") else {
            return false;
        };
        let mut kv = HashMap::new();
        for part in params.split(',') {
            if let Some((k, v)) = part.split_once('=') {
                kv.insert(k.trim().to_string(), v.trim_matches('"').to_string());
            }
        }
        let msg = format!(
            "{}\n{}\n{}\n{}\n{}\n",
            method,
            uri.path_and_query().map(|p| p.as_str()).unwrap_or(""),
            kv.get("timestamp").cloned().unwrap_or_default(),
            kv.get("nonce_str").cloned().unwrap_or_default(),
            String::from_utf8_lossy(body)
        );
        kv.get("mchid") == Some(&self.mchid)
            && kv.get("serial_no") == Some(&self.merchant_serial)
            && verify(
                &self.merchant_public,
                msg.as_bytes(),
                kv.get("signature").map(String::as_str).unwrap_or(""),
            )
    }

    /// The payer pays: the transaction succeeds and WeChat Pay calls back, signed, with the
    /// transaction encrypted under the APIv3 key.
    async fn pay(&self, no: &str) {
        let (url, total) = {
            let mut st = self.state.lock().unwrap();
            let t = st.trades.get_mut(no).unwrap();
            t.state = "SUCCESS";
            (t.notify_url.clone(), t.total)
        };
        let transaction = json!({
            "mchid": self.mchid, "appid": self.appid, "out_trade_no": no,
            "transaction_id": format!("4200{no}"), "trade_type": "NATIVE", "trade_state": "SUCCESS",
            "amount": {"total": total, "payer_total": total, "currency": "CNY", "payer_currency": "CNY"}
        });
        let nonce = "fdasflkja484";
        let k = aead::LessSafeKey::new(
            aead::UnboundKey::new(&aead::AES_256_GCM, self.apiv3_key.as_bytes()).unwrap(),
        );
        let mut data = serde_json::to_vec(&transaction).unwrap();
        k.seal_in_place_append_tag(
            aead::Nonce::try_assume_unique_for_key(nonce.as_bytes()).unwrap(),
            aead::Aad::from(b"transaction".as_slice()),
            &mut data,
        )
        .unwrap();
        let body = serde_json::to_vec(&json!({
            "id": format!("EV-{no}"), "create_time": "2026-11-26T20:00:00+08:00",
            "resource_type": "encrypt-resource", "event_type": "TRANSACTION.SUCCESS",
            "resource": {"original_type": "transaction", "algorithm": "AEAD_AES_256_GCM",
                         "ciphertext": B64.encode(&data), "associated_data": "transaction", "nonce": nonce}
        }))
        .unwrap();
        let ts = time::OffsetDateTime::now_utc().unix_timestamp().to_string();
        let sig = sign(&self.platform, &providers::wechat_message(&ts, "n1", &body));
        let r = reqwest::Client::new()
            .post(url)
            .header("content-type", "application/json")
            .header("Wechatpay-Timestamp", ts)
            .header("Wechatpay-Nonce", "n1")
            .header("Wechatpay-Signature", sig)
            .header("Wechatpay-Serial", &self.platform_serial)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
    }
}

async fn wechat_api(
    State(w): State<Wechat>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !w.authorized(&method, &uri, &headers, &body) {
        return w.answer(
            AxStatus::UNAUTHORIZED,
            Some(json!({"code": "SIGN_ERROR", "message": "签名错误"})),
        );
    }
    let path = uri.path().to_string();
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut st = w.state.lock().unwrap();
    st.requests.push(format!("{method} {path}"));
    let trade_prefix = "/v3/pay/transactions/out-trade-no/";
    let refund_prefix = "/v3/refund/domestic/refunds/";
    if method == Method::POST && path == "/v3/pay/transactions/native" {
        let no = req["out_trade_no"].as_str().unwrap().to_string();
        st.trades.entry(no.clone()).or_insert(WxTrade {
            total: req["amount"]["total"].as_i64().unwrap(),
            state: "NOTPAY",
            notify_url: req["notify_url"].as_str().unwrap().to_string(),
        });
        drop(st);
        return w.answer(
            AxStatus::OK,
            Some(json!({"code_url": format!("weixin://wxpay/bizpayurl?pr={}", &no[..8])})),
        );
    }
    if let Some(rest) = path.strip_prefix(trade_prefix) {
        if let Some(no) = rest.strip_suffix("/close") {
            if let Some(t) = st.trades.get_mut(no) {
                t.state = "CLOSED";
            }
            drop(st);
            return w.answer(AxStatus::NO_CONTENT, None);
        }
        let answer = st.trades.get(rest).map(|t| {
            json!({"appid": w.appid, "mchid": w.mchid, "out_trade_no": rest,
                   "transaction_id": format!("4200{rest}"), "trade_state": t.state,
                   "amount": {"total": t.total, "currency": "CNY"}})
        });
        drop(st);
        return match answer {
            Some(a) => w.answer(AxStatus::OK, Some(a)),
            None => w.answer(
                AxStatus::NOT_FOUND,
                Some(json!({"code": "ORDER_NOT_EXIST", "message": "订单不存在"})),
            ),
        };
    }
    if method == Method::POST && path == "/v3/refund/domestic/refunds" {
        if std::mem::take(&mut st.drop_next_refund) {
            drop(st);
            return (AxStatus::INTERNAL_SERVER_ERROR, "").into_response();
        }
        let no = req["out_refund_no"].as_str().unwrap().to_string();
        let amount = req["amount"]["refund"].as_i64().unwrap();
        let status = st
            .refunds
            .entry(no.clone())
            .or_insert((amount, "PROCESSING"))
            .1;
        drop(st);
        return w.answer(
            AxStatus::OK,
            Some(json!({"refund_id": format!("5030{no}"), "out_refund_no": no, "status": status,
                        "amount": {"refund": amount, "total": req["amount"]["total"], "currency": "CNY"}})),
        );
    }
    if let Some(no) = path.strip_prefix(refund_prefix) {
        let answer = st.refunds.get(no).map(|(amount, status)| {
            json!({"refund_id": format!("5030{no}"), "out_refund_no": no, "status": status,
                   "amount": {"refund": amount, "currency": "CNY"}})
        });
        drop(st);
        return match answer {
            Some(a) => w.answer(AxStatus::OK, Some(a)),
            None => w.answer(
                AxStatus::NOT_FOUND,
                Some(json!({"code": "RESOURCE_NOT_EXISTS", "message": "退款单不存在"})),
            ),
        };
    }
    drop(st);
    w.answer(AxStatus::NOT_FOUND, Some(json!({"code": "NOT_FOUND"})))
}

#[tokio::test]
async fn wechat_native_payments_and_refunds_settled_by_asking_the_documented_api() {
    let (_, merchant_public, merchant_pem) = keypair();
    let (platform, platform_public, _) = keypair();
    let apiv3_key = "0123456789abcdef0123456789abcdef";
    let double = Wechat {
        mchid: "1900000001".into(),
        appid: "wxd678efh567hg6787".into(),
        merchant_serial: "MERCHANT0001".into(),
        merchant_public,
        platform_serial: "PLATFORM0001".into(),
        platform,
        apiv3_key: apiv3_key.into(),
        state: Arc::default(),
    };
    let addr = serve(
        Router::new()
            .fallback(wechat_api)
            .with_state(double.clone()),
    )
    .await;
    let app = spawn_app_with(move |s| {
        let w = &mut s.payments.wechatpay;
        w.enabled = true;
        w.mchid = "1900000001".into();
        w.appid = "wxd678efh567hg6787".into();
        w.apiv3_key = wemaster::config::Secret::new(apiv3_key);
        w.platform_serial = "PLATFORM0001".into();
        w.platform_public_key = platform_public;
        w.merchant_serial = "MERCHANT0001".into();
        w.merchant_private_key = wemaster::config::Secret::new(merchant_pem);
        w.api_base = format!("http://{addr}");
        s.payments.reconcile_min_age_s = 0;
        // Refund holds expire after 1 s: a refund WeChat settles later is still booked.
        s.payments.refund_hold_s = 1;
    })
    .await;
    let (student, ops) = users(&app, "wechat-gw").await;

    let order =
        json_of(post(&app, "/api/v1/orders", &student, &topup(2000, "wechatpay")).await).await;
    let no = order["payment"]["reference"].as_str().unwrap().to_string();
    assert!(
        order["payment"]["instructions"]["code_url"]
            .as_str()
            .unwrap()
            .starts_with("weixin://wxpay/bizpayurl")
    );
    double.pay(&no).await;
    let path = format!("/api/v1/orders/{}", order["id"].as_str().unwrap());
    wait_status(&app, &student, &path, "paid").await;

    // WeChat answers PROCESSING: the refund stays pending (its hold on the wallet counts).
    let refund = json_of(
        post(
            &app,
            "/api/v1/refunds",
            &ops,
            &json!({"order_id": order["id"], "amount": {"amount": 500, "currency": "CNY"}}),
        )
        .await,
    )
    .await;
    assert_eq!(refund["status"], "pending", "{refund}");
    let refund_path = format!("/api/v1/refunds/{}", refund["id"].as_str().unwrap());
    let wallet = get(&app, "/api/v1/wallet", &student).await;
    assert_eq!(wallet["available"]["amount"], 1500);
    let r = reconcile(&app, &ops).await;
    assert_eq!(r["refunds_resolved"], 0, "{r}");
    // WeChat finishes it after the hold's deadline; asking finds SUCCESS and books it.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let refund_no = uuid::Uuid::parse_str(refund["id"].as_str().unwrap())
        .unwrap()
        .simple()
        .to_string();
    double
        .state
        .lock()
        .unwrap()
        .refunds
        .get_mut(&refund_no)
        .unwrap()
        .1 = "SUCCESS";
    let r = reconcile(&app, &ops).await;
    assert_eq!(r["refunds_resolved"], 1, "{r}");
    assert_eq!(
        get(&app, &refund_path, &student).await["status"],
        "succeeded"
    );
    let wallet = get(&app, "/api/v1/wallet", &student).await;
    assert_eq!(wallet["balance"]["amount"], 1500);
    assert_eq!(wallet["held"]["amount"], 0);

    // A refund request lost on the way: WeChat never heard of it, so it is asked for again
    // (same out_refund_no: it cannot be refunded twice).
    double.state.lock().unwrap().drop_next_refund = true;
    let lost = json_of(
        post(
            &app,
            "/api/v1/refunds",
            &ops,
            &json!({"order_id": order["id"], "amount": {"amount": 300, "currency": "CNY"}}),
        )
        .await,
    )
    .await;
    assert_eq!(lost["status"], "pending");
    let lost_no = uuid::Uuid::parse_str(lost["id"].as_str().unwrap())
        .unwrap()
        .simple()
        .to_string();
    assert!(!double.state.lock().unwrap().refunds.contains_key(&lost_no));
    reconcile(&app, &ops).await;
    assert_eq!(
        double.state.lock().unwrap().refunds[&lost_no],
        (300, "PROCESSING")
    );
    double
        .state
        .lock()
        .unwrap()
        .refunds
        .get_mut(&lost_no)
        .unwrap()
        .1 = "SUCCESS";
    reconcile(&app, &ops).await;
    let lost_path = format!("/api/v1/refunds/{}", lost["id"].as_str().unwrap());
    assert_eq!(get(&app, &lost_path, &student).await["status"], "succeeded");
    assert_eq!(
        get(&app, "/api/v1/wallet", &student).await["balance"]["amount"],
        1200
    );
    let requests = double.state.lock().unwrap().requests.clone();
    assert_eq!(
        requests
            .iter()
            .filter(|r| *r == "POST /v3/refund/domestic/refunds")
            .count(),
        3,
        "{requests:?}"
    );
    assert_ledger_sound(&app).await;
}
