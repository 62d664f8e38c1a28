//! The `wemaster` binary: configuration errors, `config`, `doctor`, `migrate`, and a graceful
//! stop of `serve` on SIGTERM.

use std::{process::Stdio, time::Duration};

use crate::helpers::{env_or_explain, free_port, fresh_database, wemaster_bin};

/// Every listener of a `wemaster` process on a free port (the suite runs other servers at the
/// same time, and a developer's own may hold the defaults), HTTP on `http`.
trait ListenFree {
    fn listen_free(&mut self, http: &str) -> &mut Self;
}

impl ListenFree for std::process::Command {
    fn listen_free(&mut self, http: &str) -> &mut Self {
        self.env("WEMASTER__HTTP__LISTEN", http)
            .env(
                "WEMASTER__RTMP__LISTEN",
                format!("127.0.0.1:{}", free_port()),
            )
            .env("WEMASTER__WHIP__UDP_LISTEN", "127.0.0.1:0")
    }
}

#[test]
fn a_bad_configuration_value_fails_fast_naming_the_key() {
    let out = wemaster_bin()
        .arg("config")
        .env("WEMASTER__HTTP__LISTEN", "not-an-address")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("http.listen"), "{stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );

    let out = wemaster_bin()
        .arg("serve")
        .env("WEMASTER__STORAGE__BACKEND", "floppy")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("storage.backend"));
}

#[test]
fn a_missing_config_file_is_named() {
    let out = wemaster_bin()
        .args(["--config", "/nonexistent/wemaster.toml", "config"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/wemaster.toml"));
}

#[test]
fn config_prints_the_effective_settings_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("override.toml");
    std::fs::write(&file, "[storage.s3]\nbucket = \"from-file\"\n").unwrap();
    let out = wemaster_bin()
        .args(["--config", file.to_str().unwrap(), "config"])
        .env(
            "WEMASTER__EMAIL__PASSWORD",
            "super-secret-value-that-is-32-bytes-long!",
        )
        .env(
            "DATABASE_URL",
            "postgres://app:db-password@db.example/wemaster",
        )
        .env("WEMASTER__HTTP__LISTEN", "127.0.0.1:9999")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("127.0.0.1:9999"), "{text}");
    assert!(text.contains("from-file"), "{text}");
    assert!(!text.contains("super-secret-value"), "{text}");
    assert!(!text.contains("db-password"), "{text}");
    assert!(text.contains("<redacted>"));
}

#[test]
fn version_is_printed() {
    let out = wemaster_bin().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("wemaster {}", env!("CARGO_PKG_VERSION"))
    );
}

/// `wemaster doctor` on free ports with the suite's PostgreSQL and Redis: every check passes
/// and says what it saw.
#[tokio::test]
async fn doctor_checks_the_machine_and_says_what_it_found() {
    let (url, _) = fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let doctor = |http: String| {
        let mut cmd = wemaster_bin();
        cmd.current_dir(dir.path())
            .arg("doctor")
            .env("DATABASE_URL", &url)
            .env("REDIS_URL", env_or_explain("REDIS_URL"))
            .listen_free(&http)
            .env("WEMASTER__RECORDINGS__MIN_FREE_BYTES", "1048576");
        // Async: a server of this test's runtime must be able to answer it meanwhile.
        async move { tokio::process::Command::from(cmd).output().await.unwrap() }
    };
    let out = doctor(format!("127.0.0.1:{}", free_port())).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for line in [
        "ok   GStreamer 1.",
        "ok   pipeline vod-mp4",
        "ok   http.listen 127.0.0.1:",
        "ok   whip.udp_listen",
        "ok   PostgreSQL 1",
        "ok   Redis ",
        "ok   clock within",
        "ok   object storage (local) is writable",
        "ok   media.spool_dir is writable",
        "0 problem(s)",
    ] {
        assert!(text.contains(line), "no {line:?} in:\n{text}");
    }
    // The empty database is behind this release: a warning with the fix, not a failure.
    assert!(text.contains("wemaster migrate"), "{text}");
    // A port something else holds: a failure, and the fix.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let out = doctor(held.local_addr().unwrap().to_string()).await;
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("FAIL http.listen"), "{text}");
    assert!(text.contains("another process holds it"), "{text}");
    // Beside a running server (one answering /healthz there): its ports are not a problem.
    let app = crate::helpers::spawn_app().await;
    let out = doctor(app.addr.to_string()).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("a server answers /healthz"), "{text}");
}

#[test]
fn doctor_names_the_package_of_a_missing_element() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("broken.gst"),
        "fakesrc ! no_such_element_xyz ! fakesink\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("needs-x264.gst"),
        "videotestsrc ! x264enc_not_here ! fakesink\n",
    )
    .unwrap();
    let out = wemaster_bin()
        .arg("doctor")
        .env("WEMASTER__MEDIA__PIPELINES_DIR", dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("FAIL pipeline broken: element no_such_element_xyz missing"),
        "{text}"
    );
}

#[tokio::test]
async fn migrate_applies_the_schema_to_an_empty_database() {
    let (url, _) = fresh_database().await;
    let out = wemaster_bin()
        .arg("migrate")
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 0);
    // Twice is fine.
    let again = wemaster_bin()
        .arg("migrate")
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(again.status.success());
}

#[tokio::test]
async fn serve_stops_cleanly_on_sigterm() {
    let (url, _) = fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // From a folder holding nothing of the repository: the binary needs only its settings
    // (pipeline templates and the web app are built in).
    let mut child = wemaster_bin()
        .current_dir(dir.path())
        .arg("serve")
        .env("DATABASE_URL", &url)
        .env("REDIS_URL", env_or_explain("REDIS_URL"))
        .listen_free(&format!("127.0.0.1:{port}"))
        .env("WEMASTER__STORAGE__LOCAL__ROOT", dir.path().join("objects"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..200 {
        if let Ok(r) = client
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
        {
            ready = r.status().is_success();
            if ready {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "server never became ready");
    // The web app at / (built in), from a folder without the repository.
    let page = client
        .get(format!("http://127.0.0.1:{port}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), reqwest::StatusCode::OK);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let pid = child.id() as i32;
    // SAFETY-free: plain kill(2) through the shell utility.
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut exited = None;
    for _ in 0..100 {
        if let Some(s) = child.try_wait().unwrap() {
            exited = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let exited = exited.expect("serve did not stop within 10 s of SIGTERM");
    assert!(exited.success(), "exit status {exited:?}");
}

/// The README's commands after `scripts/run` work as written: every CLI command reads the
/// set-up file scripts/run writes (`.data/wemaster.toml` in the current folder) and finds the
/// database it chose without `DATABASE_URL`; `--config` and the environment still win.
#[tokio::test]
async fn cli_commands_find_the_set_up_scripts_run_wrote() {
    let (url, _) = fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join(".data")).unwrap();
    std::fs::write(
        dir.path().join(".data/wemaster.toml"),
        format!("# written by scripts/run\n[database]\nurl = \"{url}\"\n[http]\nlisten = \"127.0.0.1:18081\"\n"),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let mut cmd = wemaster_bin();
        cmd.env_remove("WEMASTER_LOCAL_CONFIG")
            .env_remove("DATABASE_URL")
            .current_dir(dir.path())
            .args(args);
        cmd
    };
    let out = run(&["migrate"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&[
        "admin",
        "create-user",
        "--email",
        "first@school.example",
        "--role",
        "admin",
    ])
    .env("WEMASTER_ADMIN_PASSWORD", "a fine passphrase")
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let db = sqlx::PgPool::connect(&url).await.unwrap();
    let (n,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM users WHERE email = 'first@school.example'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(n, 1, "the user is in the database scripts/run chose");
    // The environment wins over the file.
    let out = run(&["config"])
        .env("WEMASTER__HTTP__LISTEN", "127.0.0.1:18082")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("127.0.0.1:18082"), "{text}");
    let out = run(&["config"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("127.0.0.1:18081"), "{text}");
}

/// A first admin without a shell: a server with no admin prints a setup link in its log; the
/// link's token creates the first admin once (`POST /api/v1/setup`), a wrong one is refused,
/// and afterwards setup is gone (the web app's page: tests/api/web.rs).
#[tokio::test]
async fn a_server_without_an_admin_prints_a_setup_link_that_makes_the_first_one() {
    use tokio::io::AsyncBufReadExt;
    let (url, _) = fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut cmd = wemaster_bin();
    cmd.current_dir(dir.path())
        .arg("serve")
        .env("DATABASE_URL", &url)
        .env("REDIS_URL", env_or_explain("REDIS_URL"))
        .listen_free(&format!("127.0.0.1:{port}"))
        // Its own abuse counters and setup key (the suite shares one Redis).
        .env(
            "WEMASTER__AUTH__LIMITS__KEY_PREFIX",
            format!("wm:rl:test-{}:", uuid::Uuid::new_v4().simple()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = tokio::process::Command::from(cmd)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // The log goes to stdout.
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let link = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(i) = line.find("http://") {
                let rest = &line[i..];
                if rest.contains("/setup#token=") {
                    return rest
                        .split(|c: char| c.is_whitespace() || c == '"')
                        .next()
                        .unwrap()
                        .to_string();
                }
            }
        }
        panic!("the server exited without a setup link");
    })
    .await
    .expect("a setup link in the log within 30 s");
    // Keep reading the log so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let base = format!("http://127.0.0.1:{port}");
    assert!(
        link.starts_with(&format!("{base}/setup#token=wms_")),
        "{link}"
    );
    let token = link.split("#token=").nth(1).unwrap().to_string();
    let client = reqwest::Client::new();
    let status = || async {
        client
            .get(format!("{base}/api/v1/setup"))
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()["needed"]
            .clone()
    };
    assert_eq!(status().await, true);
    let setup = |token: String, email: &'static str| {
        let client = client.clone();
        let base = base.clone();
        async move {
            client
                .post(format!("{base}/api/v1/setup"))
                .json(&serde_json::json!({"token": token, "email": email,
                    "password": "a fine passphrase", "display_name": "Head of IT"}))
                .send()
                .await
                .unwrap()
        }
    };
    let wrong = setup(format!("{token}x"), "intruder@school.example").await;
    assert_eq!(wrong.status(), reqwest::StatusCode::FORBIDDEN);
    let body: serde_json::Value = wrong.json().await.unwrap();
    assert_eq!(body["code"], "setup_token_invalid");
    let made = setup(token.clone(), "it@school.example").await;
    assert_eq!(made.status(), reqwest::StatusCode::CREATED);
    // The first admin signs in, and is an admin.
    let login: serde_json::Value = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&serde_json::json!({"email": "it@school.example", "password": "a fine passphrase"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = login["access_token"]
        .as_str()
        .expect("signed in")
        .to_string();
    let users = client
        .get(format!("{base}/api/v1/admin/users"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(users.status(), reqwest::StatusCode::OK, "an admin's route");
    // Setup is gone: the same token (and any other) makes no second admin.
    let again = setup(token, "second@school.example").await;
    assert_eq!(again.status(), reqwest::StatusCode::CONFLICT);
    let body: serde_json::Value = again.json().await.unwrap();
    assert_eq!(body["code"], "setup_done");
    assert_eq!(status().await, false);
    let _ = child.kill().await;
}

/// Nodes starting together migrate once (sqlx's advisory lock), and a release never runs on a
/// schema a newer release migrated: `migrate` and `serve` refuse it, saying which to run.
#[tokio::test]
async fn migrations_run_once_under_concurrent_starts_and_a_newer_schema_is_refused() {
    let (url, _) = fresh_database().await;
    let spawn = || {
        let mut cmd = wemaster_bin();
        cmd.arg("migrate").env("DATABASE_URL", &url);
        tokio::process::Command::from(cmd).output()
    };
    let (a, b, c) = tokio::join!(spawn(), spawn(), spawn());
    for out in [a, b, c] {
        let out = out.unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let db = sqlx::PgPool::connect(&url).await.unwrap();
    let (rows, versions): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT version) FROM _sqlx_migrations WHERE success",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "sql")
        })
        .count() as i64;
    assert_eq!((rows, versions), (files, files), "each migration once");

    // A newer release migrated this database since.
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (99991231000000, 'from the future', true, '\\x00', 1)",
    )
    .execute(&db)
    .await
    .unwrap();
    for args in [&["migrate"][..], &["serve"][..]] {
        let out = wemaster_bin()
            .args(args)
            .env("DATABASE_URL", &url)
            .env("REDIS_URL", env_or_explain("REDIS_URL"))
            .listen_free(&format!("127.0.0.1:{}", free_port()))
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} ran on a newer schema");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("newer than this release") && stderr.contains("99991231000000"),
            "{args:?}: {stderr}"
        );
    }
}
