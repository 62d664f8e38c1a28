//! Every route of the OpenAPI document, walked as anonymous, student, teacher, admin and ops: the
//! answer must match the security the route declares. Routes come from the document the router
//! is built from, so a new route is walked without anyone adding it here, and a route that does
//! not declare its security fails the walk.
//!
//! Declarations: `security(())` public (`security((), ("bearer" = []))`: a token is optional); `security(("bearer" = []))` any authenticated caller;
//! `security(("bearer" = ["teacher", "admin"]))` a caller holding one of those roles.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use wemaster::users::Role;

use crate::helpers::{spawn_app, unique_email};

const PW: &str = "a fine passphrase";

#[derive(Debug)]
enum Declared {
    Public,
    Authenticated,
    Roles(Vec<String>),
}

fn declared(op: &Value, what: &str) -> Declared {
    let sec = op
        .get("security")
        .unwrap_or_else(|| panic!("{what} declares no security"))
        .as_array()
        .unwrap();
    // Any empty requirement makes authentication optional (OpenAPI): such routes answer
    // anonymous callers too, so they are walked as public.
    if sec
        .iter()
        .any(|r| r.as_object().is_some_and(|o| o.is_empty()))
    {
        return Declared::Public;
    }
    let scopes: Vec<String> = sec
        .iter()
        .filter_map(|r| r.get("bearer"))
        .flat_map(|s| {
            s.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
        })
        .collect();
    if scopes.is_empty() {
        Declared::Authenticated
    } else {
        Declared::Roles(scopes)
    }
}

#[tokio::test]
async fn every_route_answers_401_403_or_passes_as_it_declares() {
    let app = spawn_app().await;
    let doc: Value = app.get("/api/v1/openapi.json").await.json().await.unwrap();
    let mut callers: Vec<(&str, Option<String>)> = vec![("anonymous", None)];
    let mut emails = vec![];
    for (name, role) in [
        ("student", Role::Student),
        ("teacher", Role::Teacher),
        ("admin", Role::Admin),
    ] {
        let email = unique_email(name);
        let (_, token) = app.user_with(&email, PW, &[role]).await;
        callers.push((name, Some(token)));
        emails.push(email);
    }

    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                continue;
            }
            ops.push((path.clone(), method.to_uppercase(), op.clone()));
        }
    }
    // Logging out and signing out everywhere end the caller's sessions: walk them last, each
    // with fresh sessions.
    let ends_sessions =
        |p: &str, m: &str| p.ends_with("/logout") || (p == "/api/v1/me/sessions" && m == "DELETE");
    ops.sort_by_key(|(p, m, _)| ends_sessions(p, m));
    assert!(ops.len() >= 30, "the walk found only {} routes", ops.len());

    let id = uuid::Uuid::now_v7().to_string();
    let mut walked = 0;
    for (path, method, op) in &ops {
        if ends_sessions(path, method) {
            for (i, email) in emails.iter().enumerate() {
                let tokens = app.login(email, PW).await;
                callers[i + 1].1 = Some(tokens["access_token"].as_str().unwrap().to_string());
            }
        }
        let what = format!("{method} {path}");
        let decl = declared(op, &what);
        let url = path
            .replace("{role}", "student")
            .split('/')
            .map(|seg| {
                if seg.starts_with('{') {
                    id.clone()
                } else {
                    seg.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        for (caller, token) in &callers {
            let m = Method::from_bytes(method.as_bytes()).unwrap();
            let mut req = app.client.request(m.clone(), app.url(&url));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            if m != Method::GET && m != Method::DELETE {
                req = req.json(&json!({}));
            }
            let status = req.send().await.unwrap().status();
            let allowed = match &decl {
                Declared::Public => true,
                Declared::Authenticated => token.is_some(),
                Declared::Roles(roles) => token.is_some() && roles.iter().any(|r| r == caller),
            };
            let expected_refusal = match (&decl, token) {
                (Declared::Public, _) => None,
                (_, None) => Some(StatusCode::UNAUTHORIZED),
                _ if allowed => None,
                _ => Some(StatusCode::FORBIDDEN),
            };
            match expected_refusal {
                Some(s) => assert_eq!(status, s, "{what} as {caller}"),
                None => assert!(
                    status != StatusCode::UNAUTHORIZED
                        && status != StatusCode::FORBIDDEN
                        && !status.is_server_error(),
                    "{what} as {caller}: {status} but the route declares {decl:?}"
                ),
            }
        }
        walked += 1;
    }
    assert_eq!(walked, ops.len());
}
