//! Identity and access against real PostgreSQL, Redis and SMTP: accounts and mail, sessions and
//! token rotation, keys, two-factor, roles, API tokens, the audit log and abuse limits.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use wemaster::{auth::mfa, users::Role};

use crate::helpers::{
    TestApp, assert_problem, free_port, spawn_app, spawn_app_with, token_from_mail, unique_email,
    wait_for_mail,
};

const PW: &str = "a fine passphrase";

fn at(v: &Value) -> &str {
    v["access_token"].as_str().unwrap()
}

async fn register(app: &TestApp, email: &str, locale: &str) -> Value {
    app.register_with(
        &json!({"email": email, "password": PW, "display_name": "Li Lei", "locale": locale}),
    )
    .await
}

#[tokio::test]
async fn registration_mails_a_one_time_verification_link_in_the_users_language() {
    let app = spawn_app().await;
    let email = unique_email("verify");
    let user = register(&app, &email, "zh-CN").await;
    assert_eq!(user["email_verified"], false);
    assert_eq!(user["locale"], "zh-CN");

    let mail = wait_for_mail(&email, 1).await.remove(0);
    assert!(mail.contains("multipart/alternative"), "{mail}");
    assert!(mail.contains("text/html") && mail.contains("text/plain"));
    // The subject is encoded (RFC 2047) because it is Chinese.
    assert!(mail.contains("Subject: =?utf-8?"), "{mail}");
    let token = token_from_mail(&mail);

    let r = app
        .post_json("/api/v1/auth/verify-email", &json!({"token": token}))
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let t = app.login(&email, PW).await;
    let me: Value = app
        .get_auth("/api/v1/me", at(&t))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["email_verified"], true);

    // Single use.
    let again = app
        .post_json("/api/v1/auth/verify-email", &json!({"token": token}))
        .await;
    assert_problem(again, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
}

#[tokio::test]
async fn common_passwords_are_refused_and_long_ones_accepted() {
    let app = spawn_app().await;
    for (pw, ok) in [
        ("password123", false),
        ("Iloveyou1", false),
        (&*"long enough ".repeat(10), true),
    ] {
        let r = app
            .post_json(
                "/api/v1/auth/register",
                &json!({"email": unique_email("pw"), "password": pw, "display_name": "P"}),
            )
            .await;
        if ok {
            assert_eq!(r.status(), StatusCode::ACCEPTED, "{pw}");
        } else {
            let body =
                assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
            assert_eq!(body["field"], "password");
        }
    }
}

#[tokio::test]
async fn a_password_reset_link_works_once_and_ends_every_session() {
    let app = spawn_app().await;
    let email = unique_email("reset");
    register(&app, &email, "en").await;
    let old = app.login(&email, PW).await;

    // Unknown addresses get the same answer.
    for e in [email.as_str(), "nobody-at-all@school.example"] {
        let r = app
            .post_json("/api/v1/auth/password-reset", &json!({"email": e}))
            .await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
    }
    let mails = wait_for_mail(&email, 2).await; // verification + reset
    let reset = mails
        .iter()
        .find(|m| m.contains("Reset your password"))
        .expect("a reset mail");
    let token = token_from_mail(reset);
    assert!(reset.contains("30 minutes"));

    let r = app
        .post_json(
            "/api/v1/auth/password-reset/confirm",
            &json!({"token": token, "new_password": "a brand new passphrase"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.get_auth("/api/v1/me", at(&old)).await.status(),
        StatusCode::UNAUTHORIZED,
        "sessions end with a reset"
    );
    app.login(&email, "a brand new passphrase").await;
    let again = app
        .post_json(
            "/api/v1/auth/password-reset/confirm",
            &json!({"token": token, "new_password": "yet another passphrase"}),
        )
        .await;
    assert_problem(again, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
}

#[tokio::test]
async fn changing_the_password_needs_the_current_one_and_revokes_sessions() {
    let app = spawn_app().await;
    let email = unique_email("change");
    register(&app, &email, "en").await;
    let t = app.login(&email, PW).await;
    let other = app.login(&email, PW).await;
    let wrong = app
        .send(
            Method::POST,
            "/api/v1/me/password",
            Some(at(&t)),
            Some(&json!({"current_password": "not it at all", "new_password": "a second passphrase"})),
        )
        .await;
    assert_problem(wrong, StatusCode::FORBIDDEN, "reauthentication_failed").await;
    let ok = app
        .send(
            Method::POST,
            "/api/v1/me/password",
            Some(at(&t)),
            Some(&json!({"current_password": PW, "new_password": "a second passphrase"})),
        )
        .await;
    assert_eq!(ok.status(), StatusCode::NO_CONTENT);
    for s in [&t, &other] {
        assert_eq!(
            app.get_auth("/api/v1/me", at(s)).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    app.login(&email, "a second passphrase").await;
    let mails = wait_for_mail(&email, 2).await;
    assert!(
        mails
            .iter()
            .any(|m| m.contains("your password was changed"))
    );
}

#[tokio::test]
async fn a_reused_refresh_token_revokes_the_whole_session() {
    let app = spawn_app().await;
    let email = unique_email("reuse");
    register(&app, &email, "en").await;
    let first = app.login(&email, PW).await;
    let second: Value = app
        .post_json(
            "/api/v1/auth/refresh",
            &json!({"refresh_token": first["refresh_token"]}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        app.get_auth("/api/v1/me", at(&second)).await.status(),
        StatusCode::OK
    );
    // The stolen copy of the first token comes back.
    let reuse = app
        .post_json(
            "/api/v1/auth/refresh",
            &json!({"refresh_token": first["refresh_token"]}),
        )
        .await;
    assert_problem(reuse, StatusCode::UNAUTHORIZED, "unauthorized").await;
    // The whole session is gone: the newest refresh and access tokens too.
    let r = app
        .post_json(
            "/api/v1/auth/refresh",
            &json!({"refresh_token": second["refresh_token"]}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = app.get_auth("/api/v1/me", at(&second)).await;
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn sessions_are_listed_and_revoked_by_their_user() {
    let app = spawn_app().await;
    let email = unique_email("sessions");
    register(&app, &email, "en").await;
    let a = app.login(&email, PW).await;
    let b = app.login(&email, PW).await;
    let list: Value = app
        .get_auth("/api/v1/me/sessions", at(&a))
        .await
        .json()
        .await
        .unwrap();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    let other = items.iter().find(|s| s["current"] == false).unwrap();
    let r = app
        .send(
            Method::DELETE,
            &format!("/api/v1/me/sessions/{}", other["id"].as_str().unwrap()),
            Some(at(&a)),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.get_auth("/api/v1/me", at(&b)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.get_auth("/api/v1/me", at(&a)).await.status(),
        StatusCode::OK
    );
}

/// The address a session records: the TCP peer, or the client named by a trusted proxy's
/// `X-Forwarded-For` (right-most untrusted hop; what the client itself wrote is not believed).
#[tokio::test]
async fn client_addresses_come_from_trusted_proxies_only() {
    async fn session_ip(app: &TestApp, email: &str, xff: &str) -> String {
        let r = app
            .client
            .post(app.url("/api/v1/auth/login"))
            .header("x-forwarded-for", xff)
            .json(&json!({"email": email, "password": PW}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let login: Value = r.json().await.unwrap();
        let list: Value = app
            .get_auth("/api/v1/me/sessions", at(&login))
            .await
            .json()
            .await
            .unwrap();
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["current"] == true)
            .unwrap()["ip"]
            .as_str()
            .unwrap()
            .to_string()
    }
    // The tests reach the server from 127.0.0.1: as if through a proxy there.
    let behind = spawn_app_with(|s| {
        s.http.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    let email = unique_email("proxied");
    register(&behind, &email, "en").await;
    assert_eq!(
        session_ip(&behind, &email, "203.0.113.7").await,
        "203.0.113.7"
    );
    assert_eq!(
        session_ip(&behind, &email, "198.51.100.9, 203.0.113.8").await,
        "203.0.113.8"
    );
    let direct = spawn_app().await;
    let email = unique_email("direct");
    register(&direct, &email, "en").await;
    assert_eq!(
        session_ip(&direct, &email, "203.0.113.7").await,
        "127.0.0.1"
    );
}

#[tokio::test]
async fn access_tokens_are_eddsa_with_a_published_kid_and_foreign_keys_are_refused() {
    use base64::Engine;
    let app = spawn_app().await;
    let email = unique_email("jwks");
    register(&app, &email, "en").await;
    let t = app.login(&email, PW).await;
    let jwks: Value = app
        .get("/.well-known/jwks.json")
        .await
        .json()
        .await
        .unwrap();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let token = at(&t);
    let header: Value =
        serde_json::from_slice(&b64.decode(token.split('.').next().unwrap()).unwrap()).unwrap();
    assert_eq!(header["alg"], "EdDSA");
    let key = &jwks["keys"][0];
    assert_eq!(key["kid"], header["kid"]);
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["crv"], "Ed25519");

    // A token from another server's key (same issuer and audience) is refused.
    let other = spawn_app().await;
    let email2 = unique_email("jwks2");
    register(&other, &email2, "en").await;
    let foreign = other.login(&email2, PW).await;
    let r = app.get_auth("/api/v1/me", at(&foreign)).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
    // HS256 signed with the public key as the secret (algorithm confusion) is refused.
    let parts: Vec<&str> = token.split('.').collect();
    let hs = format!(
        "{}.{}.{}",
        b64.encode(r#"{"alg":"HS256","typ":"JWT","kid":"x"}"#),
        parts[1],
        parts[2]
    );
    assert_eq!(
        app.get_auth("/api/v1/me", &hs).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn an_expired_access_token_is_refused() {
    let app = spawn_app_with(|s| s.auth.access_token_ttl_s = 10).await;
    let email = unique_email("expire");
    register(&app, &email, "en").await;
    let t = app.login(&email, PW).await;
    assert_eq!(t["expires_in"], 10);
    // 10 s lifetime + 5 s leeway.
    tokio::time::sleep(std::time::Duration::from_secs(16)).await;
    let r = app.get_auth("/api/v1/me", at(&t)).await;
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("expired")
    );
    assert_problem(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn two_factor_login_takes_a_code_once_per_step_and_recovery_codes_once() {
    let app = spawn_app().await;
    let email = unique_email("totp");
    register(&app, &email, "en").await;
    let t = app.login(&email, PW).await;
    let e: Value = app
        .send(
            Method::POST,
            "/api/v1/me/two-factor",
            Some(at(&t)),
            Some(&json!({"password": PW})),
        )
        .await
        .json()
        .await
        .unwrap();
    assert!(
        e["otpauth_uri"]
            .as_str()
            .unwrap()
            .starts_with("otpauth://totp/")
    );
    assert!(
        e["qr_png"]
            .as_str()
            .unwrap()
            .starts_with("data:image/png;base64,")
    );
    let secret = e["secret"].as_str().unwrap();
    let code = mfa::current_code(secret).unwrap();
    let r = app
        .send(
            Method::POST,
            "/api/v1/me/two-factor/confirm",
            Some(at(&t)),
            Some(&json!({"code": code})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let codes: Value = r.json().await.unwrap();
    let recovery: Vec<String> = serde_json::from_value(codes["recovery_codes"].clone()).unwrap();
    assert_eq!(recovery.len(), 10);

    // Password step: a challenge, no tokens.
    let step1: Value = app
        .post_json(
            "/api/v1/auth/login",
            &json!({"email": email, "password": PW}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(step1["mfa_required"], true);
    assert!(step1.get("access_token").is_none());
    // The code that confirmed enrolment was for this time step: it is not accepted again.
    let r = app
        .post_json(
            "/api/v1/auth/login/mfa",
            &json!({"challenge_token": step1["challenge_token"], "code": code}),
        )
        .await;
    assert_problem(r, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    // A recovery code works, once.
    let r = app
        .post_json(
            "/api/v1/auth/login/mfa",
            &json!({"challenge_token": step1["challenge_token"], "recovery_code": recovery[0]}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let tokens: Value = r.json().await.unwrap();
    assert!(tokens["access_token"].is_string());
    let step1b: Value = app
        .post_json(
            "/api/v1/auth/login",
            &json!({"email": email, "password": PW}),
        )
        .await
        .json()
        .await
        .unwrap();
    let r = app
        .post_json(
            "/api/v1/auth/login/mfa",
            &json!({"challenge_token": step1b["challenge_token"], "recovery_code": recovery[0]}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // The used challenge is gone.
    let r = app
        .post_json(
            "/api/v1/auth/login/mfa",
            &json!({"challenge_token": step1["challenge_token"], "recovery_code": recovery[1]}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // A password reset does not bypass two-factor.
    app.post_json("/api/v1/auth/password-reset", &json!({"email": email}))
        .await;
    let mails = wait_for_mail(&email, 3).await;
    let reset = mails
        .iter()
        .find(|m| m.contains("Reset your password"))
        .unwrap();
    let r = app
        .post_json(
            "/api/v1/auth/password-reset/confirm",
            &json!({"token": token_from_mail(reset), "new_password": "another fine passphrase"}),
        )
        .await;
    assert_problem(r, StatusCode::FORBIDDEN, "mfa_required").await;

    // Disabling needs the password and a code.
    let r = app
        .send(
            Method::POST,
            "/api/v1/me/two-factor/disable",
            Some(at(&tokens)),
            Some(&json!({"password": PW})),
        )
        .await;
    assert_problem(r, StatusCode::FORBIDDEN, "mfa_required").await;
    let r = app
        .send(
            Method::POST,
            "/api/v1/me/two-factor/disable",
            Some(at(&tokens)),
            Some(&json!({"password": PW, "recovery_code": recovery[2]})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let plain: Value = app.login(&email, PW).await;
    assert!(plain["access_token"].is_string());
}

#[tokio::test]
async fn an_admin_cannot_lock_themselves_out() {
    let app = spawn_app().await;
    let (admin_id, admin) = app
        .user_with(&unique_email("admin"), PW, &[Role::Admin, Role::Teacher])
        .await;
    let (other_id, other) = app
        .user_with(&unique_email("admin2"), PW, &[Role::Admin])
        .await;
    let r = app
        .send(
            Method::POST,
            &format!("/api/v1/admin/users/{admin_id}/disable"),
            Some(&admin),
            None,
        )
        .await;
    assert_problem(r, StatusCode::CONFLICT, "cannot_disable_self").await;
    let r = app
        .send(
            Method::DELETE,
            &format!("/api/v1/admin/users/{admin_id}/roles/admin"),
            Some(&admin),
            None,
        )
        .await;
    assert_problem(r, StatusCode::CONFLICT, "cannot_demote_self").await;
    // Still an admin, still signed in; a role other than admin can go.
    assert_eq!(
        app.get_auth("/api/v1/admin/users", &admin).await.status(),
        StatusCode::OK
    );
    let r = app
        .send(
            Method::DELETE,
            &format!("/api/v1/admin/users/{admin_id}/roles/teacher"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    // Another admin can do both.
    let r = app
        .send(
            Method::DELETE,
            &format!("/api/v1/admin/users/{other_id}/roles/admin"),
            Some(&admin),
            Some(&json!({})),
        )
        .await;
    assert_problem(r, StatusCode::CONFLICT, "last_role").await;
    let r = app
        .send(
            Method::POST,
            &format!("/api/v1/admin/users/{other_id}/disable"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.get_auth("/api/v1/me", &other).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn an_admin_sees_a_users_devices_and_signs_one_of_them_out() {
    let app = spawn_app().await;
    let (_, admin) = app
        .user_with(&unique_email("admin"), PW, &[Role::Admin])
        .await;
    let email = unique_email("two-devices");
    let user = register(&app, &email, "en").await;
    let id = user["id"].as_str().unwrap();
    let phone = app.login(&email, PW).await;
    let laptop = app.login(&email, PW).await;
    let sessions = |token: String| {
        let app = &app;
        let path = format!("/api/v1/admin/users/{id}/sessions");
        async move { app.get_auth(&path, &token).await }
    };

    let r = sessions(admin.clone()).await;
    assert_eq!(r.status(), StatusCode::OK);
    let list: Value = r.json().await.unwrap();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{list}");
    assert!(
        items
            .iter()
            .all(|s| s["auth_method"] == "password" && s["current"] == false)
    );
    // Newest first: the laptop's login.
    let (laptop_sid, phone_sid) = (
        items[0]["id"].as_str().unwrap(),
        items[1]["id"].as_str().unwrap(),
    );
    assert!(laptop_sid > phone_sid);

    // The phone is lost: the admin ends its session only.
    let r = app
        .send(
            Method::DELETE,
            &format!("/api/v1/admin/users/{id}/sessions/{phone_sid}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.get_auth("/api/v1/me", at(&phone)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.get_auth("/api/v1/me", at(&laptop)).await.status(),
        StatusCode::OK
    );
    let list: Value = sessions(admin.clone()).await.json().await.unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["items"][0]["id"], laptop_sid);
    // Again: gone. Another user's session id under this user: not found either.
    for path in [
        format!("/api/v1/admin/users/{id}/sessions/{phone_sid}"),
        format!(
            "/api/v1/admin/users/{}/sessions/{laptop_sid}",
            uuid::Uuid::new_v4()
        ),
    ] {
        let r = app.send(Method::DELETE, &path, Some(&admin), None).await;
        assert_problem(r, StatusCode::NOT_FOUND, "not_found").await;
    }
    assert_eq!(
        app.get_auth("/api/v1/me", at(&laptop)).await.status(),
        StatusCode::OK
    );
    let r = app
        .get_auth(
            &format!("/api/v1/admin/users/{}/sessions", uuid::Uuid::new_v4()),
            &admin,
        )
        .await;
    assert_problem(r, StatusCode::NOT_FOUND, "not_found").await;

    // The user cannot read the admin view, even of themselves.
    assert_problem(
        sessions(at(&laptop).to_owned()).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;

    // The audit log says who ended which session.
    let log: Value = app
        .get_auth(
            &format!("/api/v1/admin/audit-log?user_id={id}&action=session."),
            &admin,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(log["items"][0]["action"], "session.revoked", "{log}");
    assert_eq!(log["items"][0]["detail"]["session_id"], phone_sid, "{log}");
}

#[tokio::test]
async fn admins_grant_and_remove_roles_and_disabling_ends_sessions() {
    let app = spawn_app().await;
    let (_, admin) = app
        .user_with(&unique_email("admin"), PW, &[Role::Admin])
        .await;
    let email = unique_email("member");
    let user = register(&app, &email, "en").await;
    let id = user["id"].as_str().unwrap();
    let t = app.login(&email, PW).await;
    let create = json!({"title": "Algebra"});
    let r = app
        .send(
            Method::POST,
            "/api/v1/live-streams",
            Some(at(&t)),
            Some(&create),
        )
        .await;
    assert_problem(r, StatusCode::FORBIDDEN, "forbidden").await;

    let r = app
        .send(
            Method::POST,
            &format!("/api/v1/admin/users/{id}/roles"),
            Some(&admin),
            Some(&json!({"role": "teacher"})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let u: Value = r.json().await.unwrap();
    assert_eq!(u["roles"], json!(["student", "teacher"]));
    // Takes effect at the next request, same access token.
    let r = app
        .send(
            Method::POST,
            "/api/v1/live-streams",
            Some(at(&t)),
            Some(&create),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);

    let r = app
        .send(
            Method::DELETE,
            &format!("/api/v1/admin/users/{id}/roles/teacher"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .send(
            Method::POST,
            "/api/v1/live-streams",
            Some(at(&t)),
            Some(&create),
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = app
        .send(
            Method::DELETE,
            &format!("/api/v1/admin/users/{id}/roles/student"),
            Some(&admin),
            None,
        )
        .await;
    assert_problem(r, StatusCode::CONFLICT, "last_role").await;

    let r = app
        .send(
            Method::POST,
            &format!("/api/v1/admin/users/{id}/disable"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.get_auth("/api/v1/me", at(&t)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let r = app
        .post_json(
            "/api/v1/auth/login",
            &json!({"email": email, "password": PW}),
        )
        .await;
    assert_problem(r, StatusCode::UNAUTHORIZED, "invalid_credentials").await;

    // Everything above is in the audit log, filterable.
    let log: Value = app
        .get_auth(
            &format!("/api/v1/admin/audit-log?user_id={id}&action=user."),
            &admin,
        )
        .await
        .json()
        .await
        .unwrap();
    let actions: Vec<&str> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "user.disabled",
            "user.roles_changed",
            "user.roles_changed",
            "user.registered"
        ]
    );
    let logins: Value = app
        .get_auth(
            &format!("/api/v1/admin/audit-log?user_id={id}&action=auth.login"),
            &admin,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(logins["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn api_tokens_act_with_their_scopes_until_revoked() {
    let app = spawn_app().await;
    let (_, teacher) = app
        .user_with(&unique_email("ci"), PW, &[Role::Teacher, Role::Student])
        .await;
    let r = app
        .send(
            Method::POST,
            "/api/v1/me/api-tokens",
            Some(&teacher),
            Some(&json!({"name": "CI", "scopes": ["admin"]})),
        )
        .await;
    assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let r = app
        .send(
            Method::POST,
            "/api/v1/me/api-tokens",
            Some(&teacher),
            Some(&json!({"name": "CI", "scopes": ["student"]})),
        )
        .await;
    let student_only: Value = r.json().await.unwrap();
    let r = app
        .send(
            Method::POST,
            "/api/v1/me/api-tokens",
            Some(&teacher),
            Some(&json!({"name": "CI", "scopes": ["teacher"]})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let created: Value = r.json().await.unwrap();
    let secret = created["secret"].as_str().unwrap();
    assert!(secret.starts_with("wmt_"));

    let create = json!({"title": "From CI"});
    let r = app
        .send(
            Method::POST,
            "/api/v1/live-streams",
            Some(secret),
            Some(&create),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = app
        .send(
            Method::POST,
            "/api/v1/live-streams",
            Some(student_only["secret"].as_str().unwrap()),
            Some(&create),
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Tokens cannot manage the account.
    let r = app
        .send(
            Method::POST,
            "/api/v1/me/api-tokens",
            Some(secret),
            Some(&json!({"name": "more", "scopes": ["teacher"]})),
        )
        .await;
    assert_problem(r, StatusCode::FORBIDDEN, "session_required").await;
    let list: Value = app
        .get_auth("/api/v1/me/api-tokens", &teacher)
        .await
        .json()
        .await
        .unwrap();
    assert!(!list.to_string().contains(secret), "secrets are shown once");

    let r = app
        .send(
            Method::DELETE,
            &format!("/api/v1/me/api-tokens/{}", created["id"].as_str().unwrap()),
            Some(&teacher),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = app
        .send(Method::GET, "/api/v1/live-streams", Some(secret), None)
        .await;
    assert_problem(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn failed_logins_are_limited_per_account_with_retry_after_and_unknown_emails_alike() {
    let app = spawn_app_with(|s| {
        s.auth.limits.login_failures_per_account_hour = 4;
        s.auth.limits.login_free_failures = 100;
    })
    .await;
    let email = unique_email("limit");
    register(&app, &email, "en").await;
    for account in [email.as_str(), "ghost@school.example"] {
        for _ in 0..4 {
            let r = app
                .post_json(
                    "/api/v1/auth/login",
                    &json!({"email": account, "password": "wrong guess here"}),
                )
                .await;
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        }
        let r = app
            .post_json(
                "/api/v1/auth/login",
                &json!({"email": account, "password": PW}),
            )
            .await;
        let retry: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(retry > 0 && retry <= 3600);
        assert_problem(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    }
    let failures: Value = {
        let (_, admin) = app
            .user_with(&unique_email("auditor"), PW, &[Role::Admin])
            .await;
        app.get_auth("/api/v1/admin/audit-log?action=auth.login_failed", &admin)
            .await
            .json()
            .await
            .unwrap()
    };
    assert_eq!(failures["items"].as_array().unwrap().len(), 8);
}

#[tokio::test]
async fn failures_beyond_the_free_ones_bring_growing_delays() {
    let app = spawn_app_with(|s| s.auth.limits.login_free_failures = 2).await;
    let email = unique_email("delay");
    register(&app, &email, "en").await;
    let bad = json!({"email": email, "password": "wrong guess here"});
    for _ in 0..3 {
        assert_eq!(
            app.post_json("/api/v1/auth/login", &bad).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    // The third failure set a 1 s delay: even the right password waits.
    let r = app
        .post_json(
            "/api/v1/auth/login",
            &json!({"email": email, "password": PW}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        app.post_json("/api/v1/auth/login", &bad).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let r = app.post_json("/api/v1/auth/login", &bad).await;
    assert_eq!(r.headers()["retry-after"], "2", "the delay doubles");
}

#[tokio::test]
async fn mail_queued_while_smtp_is_down_is_delivered_when_it_comes_back() {
    // The app talks to a port where nothing listens yet; later a relay to the real test SMTP
    // server opens there.
    let port = free_port();
    let app = spawn_app_with(|s| s.email.smtp_port = port).await;
    let email = unique_email("outage");
    register(&app, &email, "en").await;
    let mut db = sqlx::PgConnection::connect(&app.database_url)
        .await
        .unwrap();
    use sqlx::Connection;
    let mut failed = false;
    for _ in 0..50 {
        let (attempts, sent): (i32, bool) = sqlx::query_as(
            "SELECT attempts, sent_at IS NOT NULL FROM email_outbox WHERE to_address = $1",
        )
        .bind(&email)
        .fetch_one(&mut db)
        .await
        .unwrap();
        assert!(!sent);
        if attempts >= 1 {
            failed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(failed, "a delivery was attempted and failed");

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let relay = tokio::spawn(async move {
        loop {
            let (mut inbound, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut out =
                    tokio::net::TcpStream::connect(("127.0.0.1", crate::helpers::smtp_port()))
                        .await
                        .unwrap();
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
            });
        }
    });
    let mail = wait_for_mail(&email, 1).await;
    assert!(mail[0].contains("Confirm your email address"));
    relay.abort();
}

#[tokio::test]
async fn an_avatar_is_stored_and_served_through_a_signed_url() {
    let app = spawn_app().await;
    let email = unique_email("avatar");
    register(&app, &email, "en").await;
    let t = app.login(&email, PW).await;
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    let r = app
        .client
        .put(app.url("/api/v1/me/avatar"))
        .bearer_auth(at(&t))
        .header("content-type", "image/png")
        .body(png.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let me: Value = r.json().await.unwrap();
    let url = me["avatar_url"].as_str().unwrap();
    let got = app.client.get(url).send().await.unwrap();
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(got.bytes().await.unwrap().to_vec(), png);
    let r = app
        .client
        .put(app.url("/api/v1/me/avatar"))
        .bearer_auth(at(&t))
        .body("<svg/>")
        .send()
        .await
        .unwrap();
    assert_problem(
        r,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    // The cap is the avatar's 2 MiB, not the 1 MiB JSON body limit; beyond it, a problem.
    let mut big = png.clone();
    big.resize(1536 * 1024, 7);
    let r = app
        .client
        .put(app.url("/api/v1/me/avatar"))
        .bearer_auth(at(&t))
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let mut huge = png.clone();
    huge.resize(2 * 1024 * 1024 + 1, 7);
    let r = app
        .client
        .put(app.url("/api/v1/me/avatar"))
        .bearer_auth(at(&t))
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_problem(r, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    let r = app
        .send(
            Method::PATCH,
            "/api/v1/me",
            Some(at(&t)),
            Some(&json!({"display_name": "韩梅梅", "locale": "zh-CN"})),
        )
        .await;
    let me: Value = r.json().await.unwrap();
    assert_eq!(me["display_name"], "韩梅梅");
    assert_eq!(me["locale"], "zh-CN");
    assert!(me["time_zone"].is_null(), "none until chosen: {me}");

    // The time zone the studio plans in: set, kept when absent, refused when unknown, cleared.
    let patch = |body: Value| {
        let (app, token) = (&app, at(&t).to_owned());
        async move {
            app.send(Method::PATCH, "/api/v1/me", Some(&token), Some(&body))
                .await
        }
    };
    let me: Value = patch(json!({"time_zone": "Asia/Shanghai"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["time_zone"], "Asia/Shanghai");
    let me: Value = patch(json!({"display_name": "Han Meimei"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["time_zone"], "Asia/Shanghai", "{me}");
    for bad in ["Mars/Olympus_Mons", "Asia/Shang hai"] {
        let r = patch(json!({"time_zone": bad})).await;
        assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    }
    let me: Value = app
        .get_auth("/api/v1/me", at(&t))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["time_zone"], "Asia/Shanghai");
    let me: Value = patch(json!({"time_zone": null}))
        .await
        .json()
        .await
        .unwrap();
    assert!(me["time_zone"].is_null(), "{me}");
}

#[tokio::test]
async fn a_revocation_on_one_node_takes_effect_on_another_at_the_next_request() {
    let a = spawn_app().await;
    // A second node: same database, Redis and signing keys.
    let db = a.database_url.clone();
    let keys = a.settings.auth.keys_dir.clone();
    let b = spawn_app_with(move |s| {
        s.database.url = wemaster::config::Secret::new(db);
        s.auth.keys_dir = keys;
    })
    .await;
    let email = unique_email("nodes");
    register(&a, &email, "en").await;
    let t = a.login(&email, PW).await;
    assert_eq!(
        b.get_auth("/api/v1/me", at(&t)).await.status(),
        StatusCode::OK
    );
    let r = a
        .send(Method::POST, "/api/v1/auth/logout", Some(at(&t)), None)
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = b.get_auth("/api/v1/me", at(&t)).await;
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("revoked")
    );
    assert_problem(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn a_session_not_refreshed_within_its_idle_lifetime_ends() {
    let app = spawn_app_with(|s| s.auth.session_idle_ttl_s = 2).await;
    let email = unique_email("idle");
    register(&app, &email, "en").await;
    let t = app.login(&email, PW).await;
    let r = app
        .post_json(
            "/api/v1/auth/refresh",
            &json!({"refresh_token": t["refresh_token"]}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let t2: Value = r.json().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let r = app
        .post_json(
            "/api/v1/auth/refresh",
            &json!({"refresh_token": t2["refresh_token"]}),
        )
        .await;
    assert_problem(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let list: Value = app
        .get_auth("/api/v1/me/sessions", at(&t2))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        list["items"],
        json!([]),
        "an idle session is no longer listed"
    );
}

#[tokio::test]
async fn roles_configured_to_require_two_factor_cannot_log_in_without_it() {
    let app = spawn_app_with(|s| s.auth.require_totp_for = vec![Role::Admin, Role::Ops]).await;
    let email = unique_email("ops");
    app.user_with(&unique_email("student"), PW, &[Role::Student])
        .await;
    let hash = wemaster::auth::hash_password(PW.into()).await.unwrap();
    let mut db = <sqlx::PgConnection as sqlx::Connection>::connect(&app.database_url)
        .await
        .unwrap();
    wemaster::users::create_user(
        &mut db,
        &wemaster::users::Email::parse(&email).unwrap(),
        &wemaster::users::DisplayName::parse("Ops").unwrap(),
        &hash,
        &[Role::Ops],
    )
    .await
    .unwrap();
    let r = app
        .post_json(
            "/api/v1/auth/login",
            &json!({"email": email, "password": PW}),
        )
        .await;
    assert_problem(r, StatusCode::FORBIDDEN, "totp_required").await;
}

#[tokio::test]
async fn unknown_emails_take_about_as_long_as_wrong_passwords() {
    let app = spawn_app().await;
    let email = unique_email("timing");
    register(&app, &email, "en").await;
    async fn attempt(app: &TestApp, email: &str) -> std::time::Duration {
        let start = std::time::Instant::now();
        let r = app
            .post_json(
                "/api/v1/auth/login",
                &json!({"email": email, "password": "wrong guess here"}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        start.elapsed()
    }
    // Interleaved, so that a load on the machine that comes and goes (the whole suite runs
    // at once) weighs on both kinds alike; medians of 5 (the 6th failure of an account would
    // start the login delays).
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        known.push(attempt(&app, &email).await);
        unknown.push(attempt(&app, "nobody-here@school.example").await);
    }
    known.sort();
    unknown.sort();
    let (known, unknown) = (known[2], unknown[2]);
    let ratio = unknown.as_secs_f64() / known.as_secs_f64();
    assert!(
        (0.5..2.0).contains(&ratio),
        "known {known:?}, unknown {unknown:?}"
    );
}

#[tokio::test]
async fn the_audit_log_refuses_changes() {
    let app = spawn_app().await;
    register(&app, &unique_email("audit"), "en").await;
    let mut db = <sqlx::PgConnection as sqlx::Connection>::connect(&app.database_url)
        .await
        .unwrap();
    for sql in [
        "UPDATE audit_log SET action = 'x.y'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ] {
        let e = sqlx::query(sql).execute(&mut db).await.unwrap_err();
        assert!(e.to_string().contains("append-only"), "{sql}: {e}");
    }
}
