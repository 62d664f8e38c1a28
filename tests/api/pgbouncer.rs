//! The server behind PgBouncer in transaction pooling (docs/deploy.md): sqlx's named prepared
//! statements survive connections being handed between clients when PgBouncer keeps track of
//! them (`max_prepared_statements`, PgBouncer ≥ 1.21; scripts/test builds 1.24.1), migrations
//! go to PostgreSQL directly (`database.direct_url`), and a burst of requests on more client
//! connections than the pool has server connections answers without an error. The control: two
//! clients sharing one server connection through a PgBouncer that does not track prepared
//! statements (what Debian 12's 1.18 does) collide on sqlx's statement names, and do not when
//! it tracks them.

use std::{
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use reqwest::{Method, StatusCode};
use serde_json::json;
use sqlx::{Connection, PgConnection};
use wemaster::users::Role;

use crate::helpers::{TestApp, env_or_explain, free_port, spawn_app_with, unique_email};

const PW: &str = "a fine passphrase";
/// Server connections PgBouncer keeps per database: fewer than the app's pool.
const SERVER_CONNECTIONS: usize = 3;

struct Bouncer {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start PgBouncer in front of the database of `direct` (a postgres:// URL); returns it and the
/// URL that goes through it.
fn start_bouncer(
    direct: &str,
    max_prepared_statements: u32,
    pool_size: usize,
) -> (Bouncer, String) {
    let bin = env_or_explain("WEMASTER_TEST_PGBOUNCER");
    let url = url::Url::parse(direct).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let user = url.username();
    let password = url
        .password()
        .map(|p| format!(" password={p}"))
        .unwrap_or_default();
    let ini = format!(
        "[databases]\n* = host={host} port={pg_port} user={user}{password}\n\n\
         [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
         auth_type = trust\nauth_file = {dir}/users.txt\npool_mode = transaction\n\
         max_prepared_statements = {max_prepared_statements}\n\
         default_pool_size = {pool_size}\nmin_pool_size = 0\nreserve_pool_size = 0\n\
         max_client_conn = 500\nignore_startup_parameters = extra_float_digits\n\
         logfile = {dir}/pgbouncer.log\n",
        host = url.host_str().unwrap(),
        pg_port = url.port().unwrap_or(5432),
        dir = dir.path().display(),
    );
    std::fs::write(dir.path().join("pgbouncer.ini"), ini).unwrap();
    std::fs::write(dir.path().join("users.txt"), format!("\"{user}\" \"\"\n")).unwrap();
    let mut cmd = Command::new(&bin);
    // PgBouncer refuses to run as root: as root (CI here), it switches to `nobody`, which must
    // read the folder and write the log.
    if nix_is_root() {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let log = dir.path().join("pgbouncer.log");
        std::fs::write(&log, "").unwrap();
        let chown = Command::new("chown")
            .arg("nobody")
            .arg(&log)
            .status()
            .unwrap();
        assert!(chown.success());
        cmd.args(["-u", "nobody"]);
    }
    let child = cmd
        .arg(dir.path().join("pgbouncer.ini"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "PgBouncer did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut through = url.clone();
    through.set_host(Some("127.0.0.1")).unwrap();
    through.set_port(Some(port)).unwrap();
    through.set_password(None).unwrap();
    (Bouncer { child, _dir: dir }, through.to_string())
}

fn nix_is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// An app whose pool (12 connections) goes through a fresh PgBouncer; migrations go direct.
async fn app_behind_bouncer() -> (TestApp, Bouncer) {
    let bouncer: Arc<Mutex<Option<Bouncer>>> = Arc::default();
    let keep = bouncer.clone();
    let app = spawn_app_with(move |s| {
        let direct = s.database.url.expose().to_owned();
        let (b, through) = start_bouncer(&direct, 200, SERVER_CONNECTIONS);
        *keep.lock().unwrap() = Some(b);
        s.database.direct_url = wemaster::config::Secret::new(direct);
        s.database.url = wemaster::config::Secret::new(through);
        s.database.max_connections = 12;
    })
    .await;
    let b = bouncer.lock().unwrap().take().unwrap();
    (app, b)
}

/// 20 clients at once, each creating courses and streams and reading them back: statements of
/// every kind on more client connections than server connections. Returns the statuses.
async fn burst(app: &TestApp, token: &str) -> Vec<StatusCode> {
    let mut tasks = Vec::new();
    for t in 0..20 {
        let client = app.client.clone();
        let base = app.base.clone();
        let token = token.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for i in 0..8 {
                let calls = [
                    (
                        Method::POST,
                        "/api/v1/courses",
                        Some(json!({"title": format!("Pooled {t}-{i}")})),
                    ),
                    (Method::GET, "/api/v1/courses/teaching", None),
                    (Method::GET, "/api/v1/me", None),
                    (
                        Method::POST,
                        "/api/v1/live-streams",
                        Some(json!({"title": format!("Pooled {t}-{i}")})),
                    ),
                    (Method::GET, "/api/v1/live-streams", None),
                    (Method::GET, "/api/v1/courses?q=pooled", None),
                ];
                for (method, path, body) in calls {
                    let mut req = client
                        .request(method, format!("{base}{path}"))
                        .bearer_auth(&token);
                    if let Some(b) = body {
                        req = req.json(&b);
                    }
                    statuses.push(req.send().await.unwrap().status());
                }
            }
            statuses
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

#[tokio::test]
async fn the_server_runs_through_pgbouncer_in_transaction_pooling() {
    let (app, _bouncer) = app_behind_bouncer().await;
    assert_eq!(app.get("/readyz").await.status(), StatusCode::OK);
    let (_, teacher) = app
        .user_with(&unique_email("pooled"), PW, &[Role::Teacher])
        .await;
    let statuses = burst(&app, &teacher).await;
    let failed: Vec<_> = statuses.iter().filter(|s| !s.is_success()).collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {failed:?}",
        failed.len(),
        statuses.len()
    );
    // Everything was written (through the pooler) and reads back.
    let r = app
        .get_auth("/api/v1/courses/teaching?limit=100", &teacher)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    // PostgreSQL saw at most the pool's server connections for this database: the 12 client
    // connections really were multiplexed.
    let direct = app.settings.database.direct_url.expose().to_owned();
    let mut conn = PgConnection::connect(&direct).await.unwrap();
    // (Polled: the migrations' and the test's own direct connections take a moment to go.)
    let mut servers = i64::MAX;
    for _ in 0..50 {
        servers = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        if servers as usize <= SERVER_CONNECTIONS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        servers as usize <= SERVER_CONNECTIONS,
        "{servers} server connections for a pool of {SERVER_CONNECTIONS}"
    );
    // A periodic job and the webhook sender ran through it too (leases, SKIP LOCKED claims).
    let leases: i64 = sqlx::query_scalar("SELECT count(*) FROM job_leases")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(
        leases >= 1,
        "no periodic job claimed its lease through the pooler"
    );
    app.stop().await;
}

#[tokio::test]
async fn two_clients_on_one_server_connection_collide_without_statement_tracking() {
    let (direct, _) = crate::helpers::fresh_database().await;
    for (tracked, expect_ok) in [(0, false), (100, true)] {
        let (_bouncer, through) = start_bouncer(&direct, tracked, 1);
        // Two client connections, one server connection: each prepares its first statement,
        // which sqlx names sqlx_s_1 on both.
        let mut a = PgConnection::connect(&through).await.unwrap();
        let mut b = PgConnection::connect(&through).await.unwrap();
        let first: i32 = sqlx::query_scalar("SELECT $1::int4")
            .bind(7)
            .fetch_one(&mut a)
            .await
            .unwrap();
        assert_eq!(first, 7);
        let second = sqlx::query_scalar::<_, String>("SELECT $1::text")
            .bind("seven")
            .fetch_one(&mut b)
            .await;
        match (expect_ok, second) {
            (true, Ok(v)) => assert_eq!(v, "seven"),
            (false, Err(e)) => assert!(e.to_string().contains("already exists"), "{e}"),
            (true, Err(e)) => panic!("with max_prepared_statements = {tracked}: {e}"),
            (false, Ok(_)) => panic!(
                "no collision without tracking: the clients did not share the server connection"
            ),
        }
    }
}
