//! The foundation's minimal login: a user made by `wemaster admin create-user` logs in, and
//! tokens behave (rotation, revocation, refusal of forged ones).

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    assert_problem, spawn_app, spawn_app_with, token_from_mail, unique_email, wait_for_mail,
    wemaster_bin,
};

#[tokio::test]
async fn admin_create_user_then_login_gives_a_working_token() {
    let app = spawn_app().await;
    let out = wemaster_bin()
        .args([
            "admin",
            "create-user",
            "--email",
            "Ops@School.example",
            "--role",
            "admin",
            "--role",
            "ops",
        ])
        .env("DATABASE_URL", &app.database_url)
        .env("WEMASTER_ADMIN_PASSWORD", "correct horse battery")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("argon2"),
        "the hash is never printed"
    );

    // Email matching is case-insensitive.
    let tokens = app
        .login("ops@school.example", "correct horse battery")
        .await;
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 900);
    assert!(tokens["refresh_token"].as_str().unwrap().len() >= 43);

    let me: Value = app
        .get_auth("/api/v1/me", tokens["access_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["id"], created["id"]);
    assert_eq!(me["email"], "Ops@School.example");
    assert_eq!(me["roles"], json!(["admin", "ops"]));
}

#[tokio::test]
async fn wrong_password_and_unknown_email_get_the_same_answer() {
    let app = spawn_app().await;
    app.register("student@school.example", "a fine passphrase")
        .await;
    for (email, password) in [
        ("student@school.example", "wrong passphrase"),
        ("nobody@school.example", "a fine passphrase"),
    ] {
        let r = app
            .post_json(
                "/api/v1/auth/login",
                &json!({"email": email, "password": password}),
            )
            .await;
        assert!(
            r.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer")
        );
        let body = assert_problem(r, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
        assert_eq!(body["detail"], "email or password is incorrect");
    }
}

/// Registration does not tell who has an account: a taken address gets the very answer a free
/// one gets, the account stays as it was, and its owner is mailed instead.
#[tokio::test]
async fn registering_a_taken_address_answers_as_a_free_one_and_mails_the_owner() {
    let app = spawn_app().await;
    let app = &app;
    let register = |email: &str, password: &str| {
        let body = json!({"email": email, "password": password, "display_name": "T"});
        async move { app.post_json("/api/v1/auth/register", &body).await }
    };
    let owner = unique_email("taken");
    let first = register(&owner, "a fine passphrase").await;
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let first: Value = first.json().await.unwrap();

    let taken = register(&owner, "another passphrase").await;
    let free_email = unique_email("free");
    let free = register(&free_email, "another passphrase").await;
    assert_eq!(taken.status(), free.status());
    let (taken, free): (Value, Value) = (taken.json().await.unwrap(), free.json().await.unwrap());
    assert_eq!(taken, first, "the same answer as when the account was made");
    assert_eq!(
        taken.as_object().unwrap().keys().collect::<Vec<_>>(),
        free.as_object().unwrap().keys().collect::<Vec<_>>()
    );
    assert_eq!(free["email"], free_email.as_str());

    // The account is untouched; its owner hears of the attempt (after the verification mail).
    assert_eq!(
        app.post_json(
            "/api/v1/auth/login",
            &json!({"email": owner, "password": "another passphrase"})
        )
        .await
        .status(),
        StatusCode::UNAUTHORIZED
    );
    app.login(&owner, "a fine passphrase").await;
    let mails = wait_for_mail(&owner, 2).await;
    assert!(
        mails
            .iter()
            .any(|m| m.contains("Subject: Someone tried to register with your address")),
        "{mails:?}"
    );
}

#[tokio::test]
async fn with_verification_required_a_login_waits_for_the_mailed_link() {
    let app = spawn_app_with(|s| s.auth.require_verified_email = true).await;
    let email = unique_email("unverified");
    let r = app
        .post_json(
            "/api/v1/auth/register",
            &json!({"email": email, "password": "a fine passphrase", "display_name": "T"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(
        r.json::<Value>().await.unwrap()["verification_required"],
        true
    );
    let login = json!({"email": email, "password": "a fine passphrase"});
    // The wrong password is refused as always: only the owner learns the address waits.
    assert_problem(
        app.post_json(
            "/api/v1/auth/login",
            &json!({"email": email, "password": "not the passphrase"}),
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    assert_problem(
        app.post_json("/api/v1/auth/login", &login).await,
        StatusCode::FORBIDDEN,
        "email_unverified",
    )
    .await;
    // That login mailed the link again; either link confirms the address.
    let mails = wait_for_mail(&email, 2).await;
    let r = app
        .post_json(
            "/api/v1/auth/verify-email",
            &json!({"token": token_from_mail(&mails[1])}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = app.post_json("/api/v1/auth/login", &login).await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn registration_validates_input_and_names_the_field() {
    let app = spawn_app().await;
    let r = app
        .post_json(
            "/api/v1/auth/register",
            &json!({"email": "x@school.example", "password": "short", "display_name": "T"}),
        )
        .await;
    let body = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(body["field"], "password");
}

#[tokio::test]
async fn refresh_rotates_and_a_used_refresh_token_is_refused() {
    let app = spawn_app().await;
    app.register("rotate@school.example", "a fine passphrase")
        .await;
    let first = app
        .login("rotate@school.example", "a fine passphrase")
        .await;
    let r = app
        .post_json(
            "/api/v1/auth/refresh",
            &json!({"refresh_token": first["refresh_token"]}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let second: Value = r.json().await.unwrap();
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    assert_eq!(
        app.get_auth("/api/v1/me", second["access_token"].as_str().unwrap())
            .await
            .status(),
        StatusCode::OK
    );

    let again = app
        .post_json(
            "/api/v1/auth/refresh",
            &json!({"refresh_token": first["refresh_token"]}),
        )
        .await;
    assert_problem(again, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn logout_revokes_the_session_at_once() {
    let app = spawn_app().await;
    app.register("bye@school.example", "a fine passphrase")
        .await;
    let t = app.login("bye@school.example", "a fine passphrase").await;
    let access = t["access_token"].as_str().unwrap();
    let r = app
        .client
        .post(app.url("/api/v1/auth/logout"))
        .bearer_auth(access)
        .json(&json!({"refresh_token": t["refresh_token"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_problem(
        app.get_auth("/api/v1/me", access).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    let r = app
        .post_json(
            "/api/v1/auth/refresh",
            &json!({"refresh_token": t["refresh_token"]}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn missing_forged_and_unsigned_tokens_are_refused() {
    let app = spawn_app().await;
    assert_problem(
        app.get("/api/v1/me").await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    assert_problem(
        app.get_auth("/api/v1/me", "not.a.jwt").await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;

    app.register("forge@school.example", "a fine passphrase")
        .await;
    let t = app.login("forge@school.example", "a fine passphrase").await;
    let real = t["access_token"].as_str().unwrap();
    let parts: Vec<&str> = real.split('.').collect();
    // Same claims, `alg: none`, no signature.
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let none = format!(
        "{}.{}.",
        b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
        parts[1]
    );
    assert_problem(
        app.get_auth("/api/v1/me", &none).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    // Claims changed after signing.
    let mut claims: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    claims["roles"] = json!(["admin"]);
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(claims.to_string()),
        parts[2]
    );
    assert_problem(
        app.get_auth("/api/v1/me", &tampered).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
}

/// Tokens signed with the server's own key (as a thief of the key file, or a bug, would make
/// them) still have to name a live session and be valid now.
#[tokio::test]
async fn a_validly_signed_token_is_refused_before_its_nbf_or_for_an_unknown_session() {
    use base64::Engine;
    let app = spawn_app().await;
    app.register("signed@school.example", "a fine passphrase")
        .await;
    let t = app
        .login("signed@school.example", "a fine passphrase")
        .await;
    let real = t["access_token"].as_str().unwrap();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let claims: Value =
        serde_json::from_slice(&b64.decode(real.split('.').nth(1).unwrap()).unwrap()).unwrap();
    assert!(claims["nbf"].is_i64(), "tokens carry nbf: {claims}");
    let ring =
        wemaster::auth::keys::KeyRing::load_or_generate(&app.settings.auth.keys_dir, "").unwrap();
    let (kid, key) = ring.signing();
    let sign = |c: &Value| {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        h.kid = Some(kid.to_string());
        jsonwebtoken::encode(&h, c, key).unwrap()
    };
    // The same claims signed again: accepted (the forgery below differs in one claim only).
    assert_eq!(
        app.get_auth("/api/v1/me", &sign(&claims)).await.status(),
        StatusCode::OK
    );
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut early = claims.clone();
    early["nbf"] = json!(now + 600);
    assert_problem(
        app.get_auth("/api/v1/me", &sign(&early)).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    let mut unknown = claims.clone();
    unknown["sid"] = json!(uuid::Uuid::now_v7());
    assert_problem(
        app.get_auth("/api/v1/me", &sign(&unknown)).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
}

#[tokio::test]
async fn json_in_another_charset_than_utf8_is_a_415_problem() {
    let app = spawn_app().await;
    let body = r#"{"email": "a@school.example", "password": "whatever it is"}"#;
    let post = |ct: &'static str| {
        app.client
            .post(app.url("/api/v1/auth/login"))
            .header("content-type", ct)
            .body(body)
            .send()
    };
    for ct in [
        "application/json; charset=utf-16",
        "application/json; charset=UTF-16LE",
        "application/json;charset=iso-8859-1",
        "application/json; charset=\"utf-32\"",
    ] {
        let r = post(ct).await.unwrap();
        let problem = assert_problem(
            r,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        )
        .await;
        assert!(
            problem["detail"].as_str().unwrap().contains("UTF-8"),
            "{ct}: {problem}"
        );
    }
    for ct in [
        "application/json",
        "application/json; charset=utf-8",
        "application/json; charset=\"UTF-8\"",
        "application/json;charset=utf8",
    ] {
        let r = post(ct).await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{ct}");
    }
}
