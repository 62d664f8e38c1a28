//! OpenID Connect login end to end against a real provider (oidc-provider, started by
//! scripts/test): the app redirects to the provider, a cookie-keeping client plays the browser
//! through the provider's login and consent forms, and the provider's redirect comes back to the
//! app's callback. Each test registers its own client (dynamic registration) with the exact
//! redirect URI of the app it spawns.

use reqwest::{Method, StatusCode, redirect::Policy};
use serde_json::{Value, json};
use wemaster::config::{OidcProviderSettings, Secret};

use crate::helpers::{
    TestApp, assert_problem, env_or_explain, free_port, spawn_app_with, unique_email,
};

const PW: &str = "a fine passphrase";

async fn app_with_provider() -> TestApp {
    let issuer = env_or_explain("WEMASTER_TEST_OIDC_ISSUER");
    let port = free_port();
    let public = format!("http://127.0.0.1:{port}");
    let redirect = format!("{public}/api/v1/auth/oidc/test/callback");
    let reg: Value = reqwest::Client::new()
        .post(format!("{issuer}/reg"))
        .json(&json!({"redirect_uris": [redirect], "grant_types": ["authorization_code"],
                      "response_types": ["code"], "token_endpoint_auth_method": "client_secret_basic"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    spawn_app_with(move |s| {
        s.http.listen = format!("127.0.0.1:{port}").parse().unwrap();
        s.http.public_url = Some(public.parse().unwrap());
        s.oidc.providers = vec![OidcProviderSettings {
            name: "test".into(),
            issuer: issuer.parse().unwrap(),
            client_id: reg["client_id"].as_str().unwrap().into(),
            client_secret: Secret::new(reg["client_secret"].as_str().unwrap()),
            client_secret_file: None,
            scopes: vec!["email".into(), "profile".into()],
            link_by_email: true,
        }];
    })
    .await
}

fn resolve(base: &str, location: &str) -> String {
    url::Url::parse(base)
        .unwrap()
        .join(location)
        .unwrap()
        .to_string()
}

/// Play the browser from `start` (the provider's authorization URL, or the app's login route)
/// through the provider's forms as `login`, until the provider sends it back to the app's
/// callback; returns the app's answer to the callback.
async fn browse(app: &TestApp, start: &str, login: &str) -> reqwest::Response {
    browse_with(app, start, login, false).await
}

/// [`browse`], the callback reached as a browser navigation (`Sec-Fetch-Mode: navigate`) when
/// `navigate`, as the web app's provider buttons do.
async fn browse_with(app: &TestApp, start: &str, login: &str, navigate: bool) -> reqwest::Response {
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(Policy::none())
        .build()
        .unwrap();
    let mut url = start.to_string();
    for _ in 0..20 {
        if url.starts_with(&app.base) && url.contains("/callback") {
            let mut req = browser.get(&url);
            if navigate {
                req = req.header("sec-fetch-mode", "navigate");
            }
            return req.send().await.unwrap();
        }
        let r = browser.get(&url).send().await.unwrap();
        if r.status().is_redirection() {
            url = resolve(&url, r.headers()["location"].to_str().unwrap());
            continue;
        }
        assert_eq!(r.status(), StatusCode::OK, "{url}");
        let page = r.text().await.unwrap();
        let form: Vec<(&str, &str)> = if page.contains(r#"name="prompt" value="login""#) {
            vec![
                ("prompt", "login"),
                ("login", login),
                ("password", "anything"),
            ]
        } else {
            assert!(page.contains(r#"name="prompt" value="consent""#), "{page}");
            vec![("prompt", "consent")]
        };
        // The dev forms post back to the interaction URL itself.
        let r = browser.post(&url).form(&form).send().await.unwrap();
        assert!(r.status().is_redirection(), "{}", r.status());
        url = resolve(&url, r.headers()["location"].to_str().unwrap());
    }
    panic!("the sign-in never came back to the app");
}

#[tokio::test]
async fn signing_in_with_a_provider_creates_a_verified_account_and_signs_in_again() {
    let app = app_with_provider().await;
    let providers: Value = app.get("/api/v1/auth/oidc").await.json().await.unwrap();
    assert_eq!(providers["items"], json!(["test"]));

    let r = app.get("/api/v1/auth/oidc/test/login").await;
    assert_eq!(r.status(), StatusCode::FOUND);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let auth = url::Url::parse(&location).unwrap();
    let q: std::collections::HashMap<_, _> = auth.query_pairs().into_owned().collect();
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["response_type"], "code");
    assert!(q["state"].len() >= 16 && q["nonce"].len() >= 16);
    assert_eq!(
        q["redirect_uri"],
        app.url("/api/v1/auth/oidc/test/callback")
    );

    let email = unique_email("oidc");
    let r = browse(&app, &location, &email).await;
    assert_eq!(r.status(), StatusCode::OK);
    let tokens: Value = r.json().await.unwrap();
    let me: Value = app
        .get_auth("/api/v1/me", tokens["access_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["email"], email);
    assert_eq!(me["email_verified"], true);
    assert_eq!(me["roles"], json!(["student"]));

    // The same provider account signs in to the same user.
    let location = app.get("/api/v1/auth/oidc/test/login").await.headers()["location"]
        .to_str()
        .unwrap()
        .to_string();
    let again: Value = browse(&app, &location, &email).await.json().await.unwrap();
    let me2: Value = app
        .get_auth("/api/v1/me", again["access_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me2["id"], me["id"]);
}

#[tokio::test]
async fn a_state_works_once_and_a_forged_one_is_refused() {
    let app = app_with_provider().await;
    let r = app
        .get("/api/v1/auth/oidc/test/callback?code=abc&state=forged-state-value")
        .await;
    assert_problem(r, StatusCode::UNAUTHORIZED, "unauthorized").await;

    let location = app.get("/api/v1/auth/oidc/test/login").await.headers()["location"]
        .to_str()
        .unwrap()
        .to_string();
    let email = unique_email("oidc-once");
    // Capture the callback URL instead of following it, then use it twice.
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(Policy::none())
        .build()
        .unwrap();
    let mut url = location;
    let callback = loop {
        if url.starts_with(&app.base) {
            break url;
        }
        let r = browser.get(&url).send().await.unwrap();
        if r.status().is_redirection() {
            url = resolve(&url, r.headers()["location"].to_str().unwrap());
            continue;
        }
        let page = r.text().await.unwrap();
        let form: Vec<(&str, &str)> = if page.contains(r#"value="login""#) {
            vec![("prompt", "login"), ("login", &email), ("password", "x")]
        } else {
            vec![("prompt", "consent")]
        };
        let r = browser.post(&url).form(&form).send().await.unwrap();
        url = resolve(&url, r.headers()["location"].to_str().unwrap());
    };
    assert_eq!(
        app.get(&callback[app.base.len()..]).await.status(),
        StatusCode::OK
    );
    let replay = app.get(&callback[app.base.len()..]).await;
    assert_problem(replay, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn an_existing_account_is_linked_by_verified_email_only_when_its_email_is_verified() {
    let app = app_with_provider().await;
    // Registered with a password, email not verified: a provider login must not take it over.
    let email = unique_email("oidc-existing");
    app.register(&email, PW).await;
    let start = app.get("/api/v1/auth/oidc/test/login").await.headers()["location"]
        .to_str()
        .unwrap()
        .to_string();
    let r = browse(&app, &start, &email).await;
    assert_problem(r, StatusCode::CONFLICT, "account_exists").await;

    // Once the account verified its address, the provider's verified email links to it.
    let mut db = <sqlx::PgConnection as sqlx::Connection>::connect(&app.database_url)
        .await
        .unwrap();
    sqlx::query("UPDATE users SET email_verified_at = now() WHERE lower(email) = lower($1)")
        .bind(&email)
        .execute(&mut db)
        .await
        .unwrap();
    let start = app.get("/api/v1/auth/oidc/test/login").await.headers()["location"]
        .to_str()
        .unwrap()
        .to_string();
    let tokens: Value = browse(&app, &start, &email).await.json().await.unwrap();
    let me: Value = app
        .get_auth("/api/v1/me", tokens["access_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["email"], email);
}

#[tokio::test]
async fn a_logged_in_user_links_a_provider_account_explicitly() {
    let app = app_with_provider().await;
    let email = unique_email("linker");
    app.register(&email, PW).await;
    let t = app.login(&email, PW).await;
    let access = t["access_token"].as_str().unwrap();
    let r = app
        .send(
            Method::POST,
            "/api/v1/me/oidc/test/link",
            Some(access),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let url: Value = r.json().await.unwrap();
    // A provider account with another (and unverified) email.
    let other = format!("unverified-{}", unique_email("alias"));
    let r = browse(&app, url["authorization_url"].as_str().unwrap(), &other).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["linked"], true);

    // Signing in with that provider account now reaches the linked user.
    let start = app.get("/api/v1/auth/oidc/test/login").await.headers()["location"]
        .to_str()
        .unwrap()
        .to_string();
    let tokens: Value = browse(&app, &start, &other).await.json().await.unwrap();
    let me: Value = app
        .get_auth("/api/v1/me", tokens["access_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["email"], email);

    // Unlinked, an unverified provider email creates nothing.
    let start = app.get("/api/v1/auth/oidc/test/login").await.headers()["location"]
        .to_str()
        .unwrap()
        .to_string();
    let r = browse(
        &app,
        &start,
        &format!("unverified-{}", unique_email("nobody")),
    )
    .await;
    assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
}

#[tokio::test]
async fn a_browser_coming_back_from_the_provider_gets_a_cookie_session_and_the_app() {
    let app = app_with_provider().await;
    let location = app.get("/api/v1/auth/oidc/test/login").await.headers()["location"]
        .to_str()
        .unwrap()
        .to_string();
    let email = unique_email("oidc-browser");
    let r = browse_with(&app, &location, &email, true).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/courses");
    let cookies: Vec<String> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let value = |name: &str| {
        cookies
            .iter()
            .find_map(|c| c.strip_prefix(&format!("{name}=")))
            .and_then(|rest| rest.split(';').next())
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no {name} cookie in {cookies:?}"))
    };
    let refresh_cookie = cookies
        .iter()
        .find(|c| c.starts_with("wm_refresh="))
        .unwrap();
    assert!(refresh_cookie.contains("HttpOnly"), "{refresh_cookie}");
    // The page restores the session from the cookies, as after any browser login.
    let (refresh, csrf) = (value("wm_refresh"), value("wm_csrf"));
    let r = app
        .client
        .post(app.url("/api/v1/auth/refresh"))
        .header("cookie", format!("wm_refresh={refresh}; wm_csrf={csrf}"))
        .header("x-csrf-token", &csrf)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let tokens: Value = r.json().await.unwrap();
    let me: Value = app
        .get_auth("/api/v1/me", tokens["access_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["email"], email);

    // A failed sign-in comes back to the login page with the error's code.
    let r = app
        .client
        .get(app.url("/api/v1/auth/oidc/test/callback?code=abc&state=forged-state-value"))
        .header("sec-fetch-mode", "navigate")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let to = r.headers()["location"].to_str().unwrap();
    assert!(to.starts_with("/login?oidc_error="), "{to}");
}
