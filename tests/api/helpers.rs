//! `spawn_app()`: a real `Application` on a free loopback port, with its own fresh PostgreSQL
//! database, the shared test Redis and a temp dir for local storage. `scripts/test` provides
//! `DATABASE_URL` (a superuser URL) and `REDIS_URL`.

use std::{net::SocketAddr, path::PathBuf};

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};
use tokio_util::sync::CancellationToken;
use wemaster::{
    config::{Settings, Sources},
    startup::Application,
};

pub fn env_or_explain(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: the integration tests need PostgreSQL and Redis; run them with `scripts/test`")
    })
}

/// Settings as the tests' environment gives them (DATABASE_URL, REDIS_URL), nothing else; on
/// the Redis Cluster instead when `WEMASTER_TEST_REDIS=cluster` (scripts/test runs the suites
/// that use Redis a second time so).
pub fn base_settings() -> Settings {
    let mut env = vec![("DATABASE_URL".to_string(), env_or_explain("DATABASE_URL"))];
    env.extend(redis_env());
    Settings::load(&Sources {
        local: None,
        file: None,
        env: Some(env),
    })
    .expect("test settings")
}

/// Whether this run puts the servers on the test Redis Cluster.
pub fn on_redis_cluster() -> bool {
    std::env::var("WEMASTER_TEST_REDIS").as_deref() == Ok("cluster")
}

/// A node of the 3-master Redis Cluster scripts/test starts on loopback.
pub fn redis_cluster_url() -> String {
    env_or_explain("WEMASTER_TEST_REDIS_CLUSTER")
}

/// The environment that points a server (in process or a spawned `wemaster serve`) at this
/// run's Redis.
pub fn redis_env() -> Vec<(String, String)> {
    if on_redis_cluster() {
        vec![
            ("REDIS_URL".to_string(), redis_cluster_url()),
            ("WEMASTER__REDIS__CLUSTER".to_string(), "true".to_string()),
        ]
    } else {
        vec![("REDIS_URL".to_string(), env_or_explain("REDIS_URL"))]
    }
}

/// A connection to the Redis the servers of this run use (cluster-aware when it is one).
pub async fn test_redis() -> wemaster::cache::Redis {
    wemaster::cache::Redis::connect(&base_settings().redis)
        .await
        .expect("connect to the test Redis")
}

/// A new, empty database on the test server; returns its URL.
pub async fn fresh_database() -> (String, String) {
    let admin_url = env_or_explain("DATABASE_URL");
    let name = format!("wm_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = PgConnection::connect(&admin_url)
        .await
        .expect("connect to the test PostgreSQL");
    sqlx::query(sqlx::AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#)))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let mut url = url::Url::parse(&admin_url).expect("DATABASE_URL is a URL");
    url.set_path(&name);
    (url.to_string(), name)
}

/// Port of the test SMTP server (`WEMASTER_TEST_SMTP_PORT`, set by scripts/test).
pub fn smtp_port() -> u16 {
    env_or_explain("WEMASTER_TEST_SMTP_PORT")
        .parse()
        .expect("WEMASTER_TEST_SMTP_PORT is a port")
}

/// Directory where the test SMTP server writes every mail it receives, one file each.
pub fn mail_dir() -> PathBuf {
    PathBuf::from(env_or_explain("WEMASTER_TEST_MAIL_DIR"))
}

/// A unique address, so tests sharing the SMTP server find their own mail.
pub fn unique_email(tag: &str) -> String {
    format!("{tag}-{}@school.example", uuid::Uuid::new_v4().simple())
}

/// Wait (up to 15 s) for mails to `to`; returns the raw messages (headers and MIME parts).
pub async fn wait_for_mail(to: &str, count: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let mut found = Vec::new();
        if let Ok(entries) = std::fs::read_dir(mail_dir()) {
            let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
            paths.sort();
            for p in paths {
                if p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                {
                    continue;
                }
                let Ok(text) = std::fs::read_to_string(&p) else {
                    continue;
                };
                if text
                    .lines()
                    .any(|l| l.starts_with("X-RcptTo:") && l.contains(to))
                {
                    found.push(text);
                }
            }
        }
        if found.len() >= count {
            return found;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "expected {count} mail(s) to {to}, found {}",
            found.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The `token=` of the first link in a mail (quoted-printable soft breaks undone).
pub fn token_from_mail(mail: &str) -> String {
    let text = mail
        .replace("=\r\n", "")
        .replace("=\n", "")
        .replace("=3D", "=");
    let start = text.find("token=").expect("a link with a token") + "token=".len();
    text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_' || *c == '%')
        .collect()
}

/// A free loopback port (bound then released; good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub rtmp_addr: SocketAddr,
    pub base: String,
    pub client: reqwest::Client,
    pub database_url: String,
    pub storage_root: PathBuf,
    pub settings: Settings,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Spawn with settings adjusted by `tweak` (after the test defaults are applied).
pub async fn spawn_app_with(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    // WEMASTER_TEST_LOG=wemaster=debug,wemaster_media=debug: the apps' logs on the test output.
    if let Ok(filter) = std::env::var("WEMASTER_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
    let mut settings = base_settings();
    let (database_url, _) = fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    settings.database.url = wemaster::config::Secret::new(database_url.clone());
    settings.http.listen = format!("127.0.0.1:{port}").parse().unwrap();
    // No http.public_url: every URL the API hands out follows the request's own origin.
    settings.storage.local.root = dir.path().join("objects");
    settings.media.spool_dir = dir.path().join("spool");
    settings.media.pipelines_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("pipelines");
    settings.http.shutdown_grace_s = 2;
    settings.rtmp.listen = "127.0.0.1:0".parse().unwrap();
    settings.whip.udp_listen = "127.0.0.1:0".parse().unwrap();
    // Fixed keys so a test can presign with a second handle on the same storage.
    settings.storage.local.signing_key =
        wemaster::config::Secret::new("test-signing-key-0123456789abcdef0123456789");
    settings.auth.keys_dir = dir.path().join("keys");
    // Rate-limit counters are per app: tests share one Redis and one client IP (127.0.0.1).
    settings.auth.limits.key_prefix = format!("wm:rl:test-{}:", uuid::Uuid::new_v4().simple());
    // Chat streams and pub/sub are per app too (each app has its own database).
    settings.chat.key_prefix = format!("wm:chat:test-{}:", uuid::Uuid::new_v4().simple());
    // Mail goes to the test SMTP server scripts/test starts (aiosmtpd), polled quickly.
    settings.email.smtp_host = "127.0.0.1".into();
    settings.email.smtp_port = smtp_port();
    settings.email.poll_interval_ms = 100;
    settings.email.retry_base_s = 1;
    settings.email.retry_max_s = 1;
    tweak(&mut settings);
    let storage_root = settings.storage.local.root.clone();
    // The port was free when picked, but another socket (an outgoing connection's ephemeral
    // port) may take it before the server binds it: pick another (nothing was started yet).
    let mut attempts = 0;
    let app = loop {
        match Application::build(settings.clone()).await {
            Ok(app) => break app,
            Err(e) if attempts < 5 && format!("{e:#}").contains("cannot listen on http.listen") => {
                attempts += 1;
                let port = free_port();
                settings.http.listen = format!("127.0.0.1:{port}").parse().unwrap();
            }
            Err(e) => panic!("application builds: {e:?}"),
        }
    };
    let addr = app.local_addr();
    let rtmp_addr = app.rtmp_addr();
    let shutdown = app.shutdown_token();
    let server = tokio::spawn(app.run_until_stopped());
    TestApp {
        addr,
        rtmp_addr,
        base: format!("http://{addr}"),
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        database_url,
        storage_root,
        settings,
        shutdown,
        server,
        _dir: dir,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("GET")
    }

    pub async fn get_auth(&self, path: &str, token: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("GET")
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("POST")
    }

    /// Register a student through the API; returns the account as `GET /me` shows it (read
    /// from the database: registration's answer does not say whether an account was made).
    pub async fn register(&self, email: &str, password: &str) -> Value {
        self.register_with(&json!({"email": email, "password": password, "display_name": "Test"}))
            .await
    }

    /// Register with this request body (202 expected); returns the account made.
    pub async fn register_with(&self, body: &Value) -> Value {
        let r = self.post_json("/api/v1/auth/register", body).await;
        assert_eq!(r.status(), StatusCode::ACCEPTED, "register {body}");
        self.account(body["email"].as_str().unwrap()).await
    }

    /// The account of `email` as the API shows users, read from the database.
    pub async fn account(&self, email: &str) -> Value {
        let mut conn = PgConnection::connect(&self.database_url).await.unwrap();
        let found = wemaster::users::find_by_email(&mut conn, email)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no account for {email}"));
        serde_json::to_value(found.user).unwrap()
    }

    /// Log in; returns the token response.
    /// An admin's access token (the admin is created on first use).
    pub async fn admin_token(&self) -> String {
        let email = "ops-admin@school.example";
        let _ = wemaster_bin()
            .args(["admin", "create-user", "--email", email, "--role", "admin"])
            .env("DATABASE_URL", &self.database_url)
            .env("WEMASTER_ADMIN_PASSWORD", "an admin passphrase")
            .output()
            .unwrap();
        self.login(email, "an admin passphrase").await["access_token"]
            .as_str()
            .expect("admin login")
            .to_string()
    }

    /// A second handle on the app's object storage.
    pub async fn storage(&self) -> wemaster::storage::Storage {
        wemaster::storage::Storage::from_settings(
            &self.settings.storage,
            &self.settings.http.default_public_url(),
        )
        .await
        .unwrap()
    }

    pub async fn login(&self, email: &str, password: &str) -> Value {
        let r = self
            .post_json(
                "/api/v1/auth/login",
                &json!({"email": email, "password": password}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK, "login {email}");
        r.json().await.unwrap()
    }

    /// Create a user with `roles` directly in the database, log in through the API; returns the
    /// user's id and access token.
    pub async fn user_with(
        &self,
        email: &str,
        password: &str,
        roles: &[wemaster::users::Role],
    ) -> (uuid::Uuid, String) {
        use wemaster::users::{self, DisplayName, Email};
        let hash = wemaster::auth::hash_password(password.into())
            .await
            .unwrap();
        let mut conn = PgConnection::connect(&self.database_url).await.unwrap();
        let user = users::create_user(
            &mut conn,
            &Email::parse(email).unwrap(),
            &DisplayName::parse("Test").unwrap(),
            &hash,
            roles,
        )
        .await
        .unwrap();
        let tokens = self.login(email, password).await;
        (
            user.id,
            tokens["access_token"].as_str().unwrap().to_string(),
        )
    }

    /// Send `method path` with an optional bearer token and JSON body.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> reqwest::Response {
        let mut req = self.client.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        req.send().await.expect("request")
    }

    /// Stop gracefully and wait for the server task.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.server
            .await
            .expect("server task")
            .expect("server stopped cleanly");
    }
}

/// Assert a problem+json answer with this status and code; returns the body.
pub async fn assert_problem(resp: reqwest::Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(resp.status(), status, "status");
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    assert_eq!(ct.as_deref(), Some("application/problem+json"));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status.as_u16());
    assert!(
        body["title"].is_string() && body["detail"].is_string() && body["type"].is_string(),
        "{body}"
    );
    body
}

/// The `wemaster` binary built for these tests.
pub fn wemaster_bin() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_wemaster"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
    // Only what a test sets explicitly: no WEMASTER__ leaking from the developer's shell.
    for (k, _) in std::env::vars() {
        if k.starts_with("WEMASTER") && !k.starts_with("WEMASTER_TEST") {
            cmd.env_remove(k);
        }
    }
    cmd.env("RUST_LOG", "warn");
    // Not the set-up file a developer's scripts/run left in .data/.
    cmd.env("WEMASTER_LOCAL_CONFIG", "");
    cmd
}
