//! Guessing two-factor codes (issue #17, finding 1): wrong codes are counted per account across
//! challenges and routes, and per client IP; past the limits every route that checks a code
//! answers 429 with `Retry-After` — even to the right code — and the owner is alerted.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;
use wemaster::{auth::mfa, config::Settings, users::Role};

use crate::helpers::{TestApp, assert_problem, spawn_app_with, unique_email};

const PW: &str = "a fine passphrase";

/// A user with two-factor on.
struct TotpUser {
    id: Uuid,
    /// Access token of a session opened before two-factor was on.
    token: String,
    email: String,
    secret: String,
}

async fn user_with_totp(app: &TestApp) -> TotpUser {
    let email = unique_email("guess");
    let (id, token) = app.user_with(&email, PW, &[Role::Student]).await;
    let e: Value = app
        .send(
            Method::POST,
            "/api/v1/me/two-factor",
            Some(&token),
            Some(&json!({"password": PW})),
        )
        .await
        .json()
        .await
        .unwrap();
    let secret = e["secret"].as_str().unwrap().to_string();
    let r = app
        .send(
            Method::POST,
            "/api/v1/me/two-factor/confirm",
            Some(&token),
            Some(&json!({"code": mfa::current_code(&secret).unwrap()})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    TotpUser {
        id,
        token,
        email,
        secret,
    }
}

/// A well-formed code that is not valid now (nor one step either side).
fn wrong_code(secret: &str) -> String {
    (0..1_000_000u64)
        .map(|n| format!("{:06}", (n * 7919 + 123_457) % 1_000_000))
        .find(|c| mfa::check_code(secret, c).unwrap().is_none())
        .unwrap()
}

/// The password step: a fresh challenge token.
async fn challenge(app: &TestApp, email: &str) -> String {
    let r: Value = app
        .post_json(
            "/api/v1/auth/login",
            &json!({"email": email, "password": PW}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["mfa_required"], true, "{r}");
    r["challenge_token"].as_str().unwrap().to_string()
}

async fn mfa_step(app: &TestApp, challenge: &str, code: &str) -> reqwest::Response {
    app.post_json(
        "/api/v1/auth/login/mfa",
        &json!({"challenge_token": challenge, "code": code}),
    )
    .await
}

fn limits(per_account: u64, per_ip: u64, free: u64) -> impl FnOnce(&mut Settings) {
    move |s| {
        s.auth.limits.mfa_failures_per_account_hour = per_account;
        s.auth.limits.mfa_failures_per_ip_hour = per_ip;
        s.auth.limits.mfa_free_failures = free;
    }
}

fn retry_after(r: &reqwest::Response) -> u64 {
    r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Poll the user's own channel (up to 10 s) for security notices of `event`.
async fn security_notices(app: &TestApp, user: Uuid, token: &str, event: &str) -> usize {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let page: Value = app
            .get_auth(
                &format!("/api/v1/chat/channels/user:{user}/messages"),
                token,
            )
            .await
            .json()
            .await
            .unwrap();
        let n = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["data"]["event"] == event)
            .count();
        if n > 0 || std::time::Instant::now() > deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn new_challenges_do_not_reset_the_count_of_wrong_codes_and_the_right_code_then_fails_too() {
    let app = spawn_app_with(limits(4, 100, 100)).await;
    let TotpUser {
        id,
        token,
        email,
        secret,
    } = user_with_totp(&app).await;
    let (email, secret) = (email.as_str(), secret.as_str());
    let wrong = wrong_code(secret);

    // Four wrong codes, each on a fresh challenge (a challenge alone would allow five).
    for _ in 0..4 {
        let c = challenge(&app, email).await;
        let r = mfa_step(&app, &c, &wrong).await;
        assert_problem(r, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }
    // Held back: a new challenge with the right code is refused, with a Retry-After.
    let c = challenge(&app, email).await;
    let r = mfa_step(&app, &c, &mfa::current_code(secret).unwrap()).await;
    let retry = retry_after(&r);
    assert!(retry > 0 && retry <= 3600, "{retry}");
    assert_problem(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;

    // Each wrong code is in the audit log, and the owner was told.
    let (_, admin) = app
        .user_with(&unique_email("auditor"), PW, &[Role::Admin])
        .await;
    let audit: Value = app
        .get_auth(
            &format!("/api/v1/admin/audit-log?action=auth.mfa_failed&user_id={id}"),
            &admin,
        )
        .await
        .json()
        .await
        .unwrap();
    let items = audit["items"].as_array().unwrap();
    assert_eq!(items.len(), 4, "{audit}");
    assert!(items.iter().all(|e| {
        e["detail"]["context"] == "login"
            && e["ip"]
                .as_str()
                .is_some_and(|ip| ip.starts_with("127.0.0.1"))
    }));
    assert_eq!(
        security_notices(&app, id, &token, "two_factor_failures").await,
        1
    );
}

#[tokio::test]
async fn turning_two_factor_off_is_limited_too_and_shares_the_count_with_login() {
    let app = spawn_app_with(limits(3, 100, 100)).await;
    let TotpUser {
        token,
        email,
        secret,
        ..
    } = user_with_totp(&app).await;
    let (email, secret) = (email.as_str(), secret.as_str());
    let wrong = wrong_code(secret);
    let disable = |code: String| {
        let token = token.clone();
        let app = &app;
        async move {
            app.send(
                Method::POST,
                "/api/v1/me/two-factor/disable",
                Some(&token),
                Some(&json!({"password": PW, "code": code})),
            )
            .await
        }
    };

    // One wrong code at login, two on the disable route: the account's three.
    let c = challenge(&app, email).await;
    assert_eq!(
        mfa_step(&app, &c, &wrong).await.status(),
        StatusCode::UNAUTHORIZED
    );
    for _ in 0..2 {
        let r = disable(wrong.clone()).await;
        assert_problem(r, StatusCode::FORBIDDEN, "mfa_required").await;
    }
    let r = disable(mfa::current_code(secret).unwrap()).await;
    assert!(r.headers().contains_key("retry-after"));
    assert_problem(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // Two-factor is still on: the password alone gives a challenge, not tokens.
    challenge(&app, email).await;
}

#[tokio::test]
async fn wrong_codes_bring_growing_delays_during_which_the_right_code_is_refused() {
    let app = spawn_app_with(limits(100, 100, 2)).await;
    let u = user_with_totp(&app).await;
    let (email, secret) = (u.email.as_str(), u.secret.as_str());
    let wrong = wrong_code(secret);
    let c = challenge(&app, email).await;
    for _ in 0..3 {
        assert_eq!(
            mfa_step(&app, &c, &wrong).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    // The third failure set a 1 s delay. (The current step's code confirmed the enrolment:
    // the next step's is the one still unused.)
    let right = mfa::code_in(secret, 1).unwrap();
    let r = mfa_step(&app, &c, &right).await;
    assert_eq!(retry_after(&r), 1);
    assert_problem(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // The refused attempt did not spend the code: after the delay it works.
    let c = challenge(&app, email).await;
    let r = mfa_step(&app, &c, &right).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.json::<Value>().await.unwrap()["access_token"].is_string());
}

#[tokio::test]
async fn one_address_guessing_across_accounts_is_held_back() {
    let app = spawn_app_with(limits(100, 3, 100)).await;
    let first = user_with_totp(&app).await;
    let second = user_with_totp(&app).await;
    for u in [&first, &first, &second] {
        let c = challenge(&app, &u.email).await;
        let r = mfa_step(&app, &c, &wrong_code(&u.secret)).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let c = challenge(&app, &second.email).await;
    let r = mfa_step(&app, &c, &mfa::current_code(&second.secret).unwrap()).await;
    assert_problem(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
}

/// A user who lost both the phone and the recovery codes: an admin resets two-factor; the
/// password alone logs in again, the old sessions are gone, the audit log says who did it.
#[tokio::test]
async fn an_admin_resets_a_lost_two_factor() {
    let app = spawn_app_with(|_: &mut Settings| {}).await;
    let user = user_with_totp(&app).await;
    let (admin_id, admin) = app
        .user_with(&unique_email("admin"), PW, &[Role::Admin])
        .await;
    // Before: the password leads to a challenge, not a session.
    let r: Value = app
        .post_json(
            "/api/v1/auth/login",
            &json!({"email": user.email, "password": PW}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["mfa_required"], true, "{r}");

    // Not by the user, not on the admin's own account.
    let path = format!("/api/v1/admin/users/{}/reset-two-factor", user.id);
    let r = app.send(Method::POST, &path, Some(&user.token), None).await;
    assert_problem(r, StatusCode::FORBIDDEN, "forbidden").await;
    let own = format!("/api/v1/admin/users/{admin_id}/reset-two-factor");
    let r = app.send(Method::POST, &own, Some(&admin), None).await;
    assert_problem(r, StatusCode::CONFLICT, "cannot_reset_self").await;
    let none = format!("/api/v1/admin/users/{}/reset-two-factor", Uuid::now_v7());
    let r = app.send(Method::POST, &none, Some(&admin), None).await;
    assert_problem(r, StatusCode::NOT_FOUND, "not_found").await;

    let r = app.send(Method::POST, &path, Some(&admin), None).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    // The old session is gone; the password alone gives a session now.
    assert_eq!(
        app.get_auth("/api/v1/me", &user.token).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let r = app.login(&user.email, PW).await;
    assert!(r["access_token"].is_string(), "{r}");
    let me: Value = app
        .get_auth("/api/v1/me", r["access_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["two_factor_enabled"], false, "{me}");
    let log: Value = app
        .get_auth(
            &format!(
                "/api/v1/admin/audit-log?user_id={}&action=user.two_factor_reset",
                user.id
            ),
            &admin,
        )
        .await
        .json()
        .await
        .unwrap();
    let entry = &log["items"][0];
    assert_eq!(entry["actor_id"], admin_id.to_string(), "{log}");
    assert_eq!(entry["detail"]["had_two_factor"], true, "{log}");
}
