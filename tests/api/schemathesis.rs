//! The server against its own OpenAPI document, checked by an independent tool: Schemathesis
//! (installed by `scripts/test` into `.data/venv-schemathesis`) generates requests for every
//! operation — valid ones and, in its coverage and fuzzing phases, every kind of wrong one — and
//! checks each answer: no 5xx, a documented status, a documented content type, a body that
//! matches the documented schema.
//!
//! The caller holds every role (admin, ops, teacher, student), so every route is reachable. Excluded: the routes that end the
//! caller's own session (logout, "sign out everywhere", ending a session or all of a user's:
//! Schemathesis learns the caller's ids from earlier answers), which would turn the rest of the
//! run into 401s. The budget is bounded (`WEMASTER_SCHEMATHESIS_EXAMPLES` cases per operation and
//! phase, default 12) and the seed fixed (`WEMASTER_SCHEMATHESIS_SEED`), so a failure here
//! reproduces; a longer run is `WEMASTER_SCHEMATHESIS_EXAMPLES=200 scripts/test schemathesis`,
//! and `WEMASTER_SCHEMATHESIS_ARGS` adds options (`--report har` keeps every exchange).

use std::path::PathBuf;

use wemaster::users::Role;

use crate::helpers::spawn_app;

fn schemathesis() -> PathBuf {
    let st = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".data/venv-schemathesis/bin/st");
    assert!(
        st.exists(),
        "{} is missing: run the tests with `scripts/test`, which installs Schemathesis",
        st.display()
    );
    st
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_answers_as_its_openapi_document_says() {
    let app = spawn_app().await;
    // Every role, so that teachers' routes (courses, payouts, earnings) are tested past 403.
    let (_, token) = app
        .user_with(
            "schemathesis@school.example",
            "a passphrase for the fuzzer",
            &[Role::Admin, Role::Ops, Role::Teacher, Role::Student],
        )
        .await;
    let examples = std::env::var("WEMASTER_SCHEMATHESIS_EXAMPLES").unwrap_or("12".into());
    let seed = std::env::var("WEMASTER_SCHEMATHESIS_SEED").unwrap_or("20261202".into());
    let report = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".data/schemathesis");
    let out = tokio::process::Command::new(schemathesis())
        .arg("run")
        .arg(app.url("/api/v1/openapi.json"))
        .args(["--url", &app.base])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_schema_conformance",
        ])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", &examples, "--seed", &seed])
        .args(["--workers", "2", "--request-timeout", "20"])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--exclude-path", "/api/v1/auth/logout"])
        .args(["--exclude-operation-id", "revoke_all_sessions"])
        // Schemathesis learns ids from earlier answers: it finds the caller's own session id
        // (GET /me/sessions) and user id, and would end the session with them.
        .args(["--exclude-path", "/api/v1/me/sessions/{id}"])
        .args(["--exclude-path", "/api/v1/admin/users/{id}/revoke-sessions"])
        .args([
            "--exclude-path",
            "/api/v1/admin/users/{id}/sessions/{session_id}",
        ])
        .args(["--report", "junit", "--report-dir"])
        .arg(&report)
        .arg("--no-color")
        // More options for a local investigation, e.g. `--report har`.
        .args(
            std::env::var("WEMASTER_SCHEMATHESIS_ARGS")
                .unwrap_or_default()
                .split_whitespace(),
        )
        // A serializer for WHIP's application/sdp bodies.
        .env(
            "SCHEMATHESIS_HOOKS",
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis/hooks.py"),
        )
        .kill_on_drop(true)
        .output()
        .await
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The summary is at the end; the whole log can be long.
    let tail: String = {
        let chars: Vec<char> = stdout.chars().collect();
        chars[chars.len().saturating_sub(30_000)..].iter().collect()
    };
    assert!(
        out.status.success(),
        "Schemathesis found answers that differ from the OpenAPI document \
         (JUnit report in {}):\n{tail}\n{stderr}",
        report.display()
    );
    // The run was the admin's all along: its session survived, so the operations were tested
    // past authentication, not answered 401.
    let me = app.get_auth("/api/v1/me", &token).await;
    assert_eq!(
        me.status(),
        reqwest::StatusCode::OK,
        "the admin's session ended during the run"
    );
    // (Only 403s are possible on some: the run may take a role from its own user. WHIP takes a
    // stream key, not the caller's token, so it may answer only 401.)
    let only_401: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("401 Unauthorized ("))
        .skip(1)
        .take_while(|l| l.trim_start().starts_with("- "))
        .filter(|l| l.contains(" /api/v1/"))
        .collect();
    assert!(
        only_401.is_empty(),
        "API operations answered only 401: {only_401:?}\n{tail}"
    );
    let generated: u64 = stdout
        .lines()
        .find_map(|l| {
            l.trim()
                .split_once(" generated, ")
                .map(|(n, _)| n.to_string())
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        generated >= 1000,
        "Schemathesis generated {generated} test cases, too few:\n{tail}"
    );
    app.stop().await;
}
