//! The `wemaster` binary: configuration errors, `config`, `doctor`, `migrate`, and a graceful
//! stop of `serve` on SIGTERM.

use std::{process::Stdio, time::Duration};

use crate::helpers::{env_or_explain, free_port, fresh_database, wemaster_bin};

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

#[test]
fn doctor_finds_every_pipeline_element_installed() {
    let out = wemaster_bin().arg("doctor").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("GStreamer 1."), "{text}");
    assert!(text.contains("ok   pipeline vod-mp4"), "{text}");
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
        .env("WEMASTER__HTTP__LISTEN", format!("127.0.0.1:{port}"))
        .env("WEMASTER__STORAGE__LOCAL__ROOT", dir.path().join("objects"))
        .env(
            "WEMASTER__RTMP__LISTEN",
            format!("127.0.0.1:{}", free_port()),
        )
        // Every listener on a free port (the suite runs other servers at the same time).
        .env("WEMASTER__WHIP__UDP_LISTEN", "127.0.0.1:0")
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
