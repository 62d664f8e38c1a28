//! Typed configuration tree.
//!
//! Layers, later ones win: `config/default.toml` (compiled in, so the binary runs anywhere) →
//! the file named by `--config`/`WEMASTER_CONFIG` → `WEMASTER__SECTION__KEY` environment
//! variables → `DATABASE_URL`/`REDIS_URL`. Everything is validated once, in [`Settings::load`];
//! an error names the key and the reason in one line, so a bad deployment fails fast instead of
//! half-starting.

use std::{fmt, net::SocketAddr, path::PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};
use url::Url;

/// The defaults, compiled in; `config/default.toml` documents every key.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// A configuration problem, reported as `key: reason`.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct ConfigError {
    pub key: String,
    pub reason: String,
}

impl ConfigError {
    fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// A secret configuration value: never printed by `Debug`, serialized as `"<redacted>"`.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(SecretString);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(SecretString::from(value.into()))
    }
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
    pub fn is_empty(&self) -> bool {
        self.expose().is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if self.is_empty() { "" } else { "<redacted>" })
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub http: HttpSettings,
    pub rtmp: RtmpSettings,
    pub whip: WhipSettings,
    pub live: LiveSettings,
    pub log: LogSettings,
    pub database: DatabaseSettings,
    pub redis: RedisSettings,
    pub auth: AuthSettings,
    pub email: EmailSettings,
    pub oidc: OidcSettings,
    pub playback: PlaybackSettings,
    pub storage: StorageSettings,
    pub recordings: RecordingSettings,
    pub media: MediaSettings,
    pub jitsi: JitsiSettings,
    pub courses: CourseSettings,
    pub payments: crate::payments::PaymentSettings,
    pub chat: crate::chat::ChatSettings,
    pub notifications: crate::notifications::NotificationSettings,
}

/// Courses (see `docs/courses.md`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CourseSettings {
    /// Largest cover image accepted, in bytes.
    pub cover_max_bytes: usize,
}

/// Jitsi Meet integration (meeting lessons): see `docs/courses.md`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JitsiSettings {
    /// Where meetings are held: meeting URLs are `<base_url>/<room>?jwt=...`.
    pub base_url: Url,
    /// `iss` of meeting tokens: prosody's `app_id` (or one of `asap_accepted_issuers`).
    pub app_id: String,
    /// HS256 key shared with prosody (`app_secret`).
    pub app_secret: Secret,
    #[serde(default, skip_serializing)]
    pub app_secret_file: Option<PathBuf>,
    /// `aud` of meeting tokens (one of prosody's `asap_accepted_audiences`).
    pub audience: String,
    /// `sub` of meeting tokens: the Jitsi domain, or the tenant.
    pub subject: String,
    pub algorithm: JitsiAlgorithm,
    /// RS256: the PKCS#8 PEM private key (generated there when missing).
    pub rs256_key_file: PathBuf,
    /// RS256: the `kid` header; its public key is served at `<asap_key_path>/<sha256(kid)>.pem`.
    pub rs256_kid: String,
    /// Path prefix under which the public key is served (Jitsi's `asap_key_server`).
    pub asap_key_path: String,
    /// Lifetime of a meeting token, in seconds.
    pub token_ttl_s: u64,
    /// `nbf` is this many seconds in the past (prosody allows no clock skew).
    pub nbf_skew_s: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum JitsiAlgorithm {
    #[serde(rename = "HS256")]
    Hs256,
    #[serde(rename = "RS256")]
    Rs256,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RecordingSettings {
    pub max_spool_bytes: u64,
    pub min_free_bytes: u64,
    pub upload_concurrency: usize,
    pub finalize_concurrency: usize,
    pub retention_days: u32,
    pub retention_interval_s: u64,
    pub replay_redirect: bool,
    pub replay_redirect_ttl_s: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    pub listen: SocketAddr,
    pub public_url: Url,
    pub body_limit_bytes: usize,
    pub upload_limit_bytes: u64,
    pub shutdown_grace_s: u64,
    pub cors_allowed_origins: Vec<String>,
    /// Reverse proxies whose `X-Forwarded-For` is believed (addresses or CIDR ranges). The
    /// client's address is the right-most hop not in this list; empty: the TCP peer, always.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RtmpSettings {
    pub listen: SocketAddr,
    pub max_message_bytes: usize,
    pub idle_timeout_s: u64,
    pub max_connections: usize,
}

/// WHIP (WebRTC) ingest: `POST /whip/{live_stream_id}`, media on one UDP port.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WhipSettings {
    /// The UDP socket every WHIP session's media arrives on.
    pub udp_listen: SocketAddr,
    /// Addresses put in SDP answers as host candidates (the socket's port); empty = the bound
    /// address, or 127.0.0.1 when bound to 0.0.0.0 (local clients only).
    pub public_ips: Vec<std::net::IpAddr>,
    /// ICE servers advertised to clients in `Link` headers (`stun:`/`turn:` URLs).
    pub ice_servers: Vec<String>,
    /// Accept VP8 (what browsers prefer) and transcode it to H.264 with the `whip-vp8-h264`
    /// pipeline; false refuses VP8-only offers with 406.
    pub transcode_vp8: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LiveSettings {
    pub segment_duration_s: f64,
    pub window_segments: usize,
    pub frame_queue: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    pub url: Secret,
    #[serde(default, skip_serializing)]
    pub url_file: Option<PathBuf>,
    pub max_connections: u32,
    pub acquire_timeout_s: u64,
    pub migrate_on_start: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    pub url: Secret,
    #[serde(default, skip_serializing)]
    pub url_file: Option<PathBuf>,
    pub timeout_s: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    pub keys_dir: PathBuf,
    pub signing_kid: String,
    pub issuer: String,
    pub audience: String,
    pub access_token_ttl_s: u64,
    pub session_idle_ttl_s: u64,
    pub session_absolute_ttl_s: u64,
    pub email_verification_ttl_s: u64,
    pub password_reset_ttl_s: u64,
    pub mfa_challenge_ttl_s: u64,
    pub require_totp_for: Vec<crate::users::Role>,
    pub limits: AuthLimits,
}

/// Abuse limits (Redis counters over a sliding hour).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthLimits {
    pub key_prefix: String,
    pub login_failures_per_account_hour: u64,
    pub login_failures_per_ip_hour: u64,
    pub login_free_failures: u64,
    pub login_max_delay_s: u64,
    pub registrations_per_ip_hour: u64,
    pub mails_per_address_hour: u64,
    pub mails_per_ip_hour: u64,
}

/// OpenID Connect login providers.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OidcSettings {
    pub providers: Vec<OidcProviderSettings>,
    /// Seconds a sign-in may take between leaving for the provider and coming back.
    pub state_ttl_s: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OidcProviderSettings {
    /// The name in the routes: `/api/v1/auth/oidc/<name>/login`.
    pub name: String,
    /// Issuer URL; its `/.well-known/openid-configuration` is discovered.
    pub issuer: Url,
    pub client_id: String,
    #[serde(default = "empty_secret")]
    pub client_secret: Secret,
    #[serde(default, skip_serializing)]
    pub client_secret_file: Option<PathBuf>,
    /// Scopes besides `openid`.
    #[serde(default = "default_oidc_scopes")]
    pub scopes: Vec<String>,
    /// Sign in to an existing account whose (verified) email matches the provider's verified one.
    #[serde(default = "yes")]
    pub link_by_email: bool,
}

fn empty_secret() -> Secret {
    Secret::new("")
}
fn default_oidc_scopes() -> Vec<String> {
    vec!["email".into(), "profile".into()]
}
fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain SMTP (a relay on localhost or a test server).
    None,
    /// STARTTLS upgrade, required.
    Starttls,
    /// Implicit TLS (SMTPS, port 465).
    Tls,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EmailSettings {
    pub from: String,
    pub app_url: Url,
    pub smtp_host: String,
    pub smtp_port: u16,
    pub tls: SmtpTls,
    pub username: String,
    pub password: Secret,
    #[serde(default, skip_serializing)]
    pub password_file: Option<PathBuf>,
    pub timeout_s: u64,
    pub poll_interval_ms: u64,
    pub retry_base_s: u64,
    pub retry_max_s: u64,
    pub max_attempts: i32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PlaybackSettings {
    pub secret: Secret,
    #[serde(default, skip_serializing)]
    pub secret_file: Option<PathBuf>,
    pub token_ttl_s: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    Local,
    S3,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSettings {
    pub backend: StorageBackend,
    pub local: LocalStorageSettings,
    pub s3: S3Settings,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LocalStorageSettings {
    pub root: PathBuf,
    pub signing_key: Secret,
    #[serde(default, skip_serializing)]
    pub signing_key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct S3Settings {
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: Secret,
    #[serde(default, skip_serializing)]
    pub secret_access_key_file: Option<PathBuf>,
    pub force_path_style: bool,
    pub multipart_part_size_bytes: u64,
    pub multipart_concurrency: usize,
    pub request_timeout_s: u64,
    pub create_bucket: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MediaSettings {
    pub pipelines_dir: PathBuf,
    pub spool_dir: PathBuf,
}

/// Where settings come from besides the compiled-in defaults.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    /// `--config` or `WEMASTER_CONFIG`.
    pub file: Option<PathBuf>,
    /// Environment variables; `None` reads the process environment.
    pub env: Option<Vec<(String, String)>>,
}

const MIN_PART: u64 = 5 * 1024 * 1024;
const MAX_PART: u64 = 5 * 1024 * 1024 * 1024;

impl Settings {
    /// Load every layer, resolve `*_file` secrets and validate. The error names the key.
    pub fn load(sources: &Sources) -> Result<Settings, ConfigError> {
        let env: Vec<(String, String)> = match &sources.env {
            Some(vars) => vars.clone(),
            None => std::env::vars().collect(),
        };
        let mut builder = config::Config::builder().add_source(config::File::from_str(
            DEFAULT_TOML,
            config::FileFormat::Toml,
        ));
        let file = sources.file.clone().or_else(|| {
            env.iter()
                .find(|(k, _)| k == "WEMASTER_CONFIG")
                .map(|(_, v)| PathBuf::from(v))
        });
        if let Some(path) = &file {
            if !path.is_file() {
                return Err(ConfigError::new(
                    "--config",
                    format!("{} is not a readable file", path.display()),
                ));
            }
            builder = builder
                .add_source(config::File::from(path.as_path()).format(config::FileFormat::Toml));
        }
        let env_map: config::Map<String, String> = env
            .iter()
            .filter(|(k, _)| k.starts_with("WEMASTER__"))
            .cloned()
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix("WEMASTER")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("http.cors_allowed_origins")
                .with_list_parse_key("http.trusted_proxies")
                .with_list_parse_key("whip.public_ips")
                .with_list_parse_key("whip.ice_servers")
                .with_list_parse_key("auth.require_totp_for")
                .source(Some(env_map)),
        );
        for (var, key) in [("DATABASE_URL", "database.url"), ("REDIS_URL", "redis.url")] {
            if let Some((_, v)) = env
                .iter()
                .find(|(k, _)| k == var)
                .filter(|(_, v)| !v.is_empty())
            {
                builder = builder
                    .set_override(key, v.clone())
                    .map_err(|e| ConfigError::new(key, e.to_string()))?;
            }
        }
        let raw = builder.build().map_err(from_config_error)?;
        let mut settings: Settings = raw.try_deserialize().map_err(from_config_error)?;
        settings.resolve_secret_files()?;
        settings.validate()?;
        Ok(settings)
    }

    fn resolve_secret_files(&mut self) -> Result<(), ConfigError> {
        resolve_file(
            &mut self.database.url,
            &self.database.url_file,
            "database.url_file",
        )?;
        resolve_file(&mut self.redis.url, &self.redis.url_file, "redis.url_file")?;
        for (i, p) in self.oidc.providers.iter_mut().enumerate() {
            resolve_file(
                &mut p.client_secret,
                &p.client_secret_file,
                &format!("oidc.providers[{i}].client_secret_file"),
            )?;
        }
        resolve_file(
            &mut self.email.password,
            &self.email.password_file,
            "email.password_file",
        )?;
        resolve_file(
            &mut self.jitsi.app_secret,
            &self.jitsi.app_secret_file,
            "jitsi.app_secret_file",
        )?;
        resolve_file(
            &mut self.playback.secret,
            &self.playback.secret_file,
            "playback.secret_file",
        )?;
        resolve_file(
            &mut self.storage.local.signing_key,
            &self.storage.local.signing_key_file,
            "storage.local.signing_key_file",
        )?;
        resolve_file(
            &mut self.storage.s3.secret_access_key,
            &self.storage.s3.secret_access_key_file,
            "storage.s3.secret_access_key_file",
        )?;
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        fn err(key: &str, reason: impl Into<String>) -> ConfigError {
            ConfigError::new(key, reason)
        }
        if !matches!(self.http.public_url.scheme(), "http" | "https") {
            return Err(err("http.public_url", "must be an http:// or https:// URL"));
        }
        if !self.jitsi.asap_key_path.starts_with('/')
            || self.jitsi.asap_key_path.ends_with('/')
            || self.jitsi.asap_key_path.contains(['{', '}'])
        {
            return Err(err(
                "jitsi.asap_key_path",
                "must start with '/', not end with '/' (e.g. /jitsi/asap)",
            ));
        }
        if !(10..=86_400).contains(&self.jitsi.token_ttl_s) {
            return Err(err("jitsi.token_ttl_s", "must be between 10 and 86400"));
        }
        if self.http.body_limit_bytes == 0 {
            return Err(err("http.body_limit_bytes", "must be greater than 0"));
        }
        if self.http.upload_limit_bytes == 0 {
            return Err(err("http.upload_limit_bytes", "must be greater than 0"));
        }
        for origin in &self.http.cors_allowed_origins {
            if origin != "*" && !origin.parse::<Url>().is_ok_and(|u| u.origin().is_tuple()) {
                return Err(err(
                    "http.cors_allowed_origins",
                    format!("{origin:?} is not \"*\" nor an origin like https://example.com"),
                ));
            }
        }
        if !(64 * 1024..=64 * 1024 * 1024).contains(&self.rtmp.max_message_bytes) {
            return Err(err(
                "rtmp.max_message_bytes",
                "must be between 64 KiB and 64 MiB",
            ));
        }
        if self.rtmp.idle_timeout_s == 0 || self.rtmp.max_connections == 0 {
            return Err(err(
                "rtmp.idle_timeout_s",
                "timeouts and connection limits must be at least 1",
            ));
        }
        if !(0.5..=30.0).contains(&self.live.segment_duration_s) {
            return Err(err(
                "live.segment_duration_s",
                "must be between 0.5 and 30 seconds",
            ));
        }
        if !(2..=100).contains(&self.live.window_segments) {
            return Err(err("live.window_segments", "must be between 2 and 100"));
        }
        if !(16..=100_000).contains(&self.live.frame_queue) {
            return Err(err("live.frame_queue", "must be between 16 and 100000"));
        }
        if !(1..=64).contains(&self.recordings.upload_concurrency) {
            return Err(err(
                "recordings.upload_concurrency",
                "must be between 1 and 64",
            ));
        }
        if !(1..=64).contains(&self.recordings.finalize_concurrency) {
            return Err(err(
                "recordings.finalize_concurrency",
                "must be between 1 and 64",
            ));
        }
        if self.recordings.retention_days > 36_500 {
            return Err(err(
                "recordings.retention_days",
                "must be at most 36500 (0 = off)",
            ));
        }
        if !(10..=7 * 86_400).contains(&self.recordings.replay_redirect_ttl_s) {
            return Err(err(
                "recordings.replay_redirect_ttl_s",
                "must be between 10 and 604800",
            ));
        }
        if self.recordings.retention_interval_s == 0 {
            return Err(err("recordings.retention_interval_s", "must be at least 1"));
        }
        if !(1024..=50 * 1024 * 1024).contains(&self.courses.cover_max_bytes) {
            return Err(err(
                "courses.cover_max_bytes",
                "must be between 1 KiB and 50 MiB",
            ));
        }
        if self.payments.payout_hold_s < 60 {
            return Err(err("payments.payout_hold_s", "must be at least 60"));
        }
        if self.payments.payout_min_amount < 1 {
            return Err(err("payments.payout_min_amount", "must be at least 1"));
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| err("log.level", format!("not a valid filter: {e}")))?;
        match self.database.url.expose().parse::<Url>() {
            Ok(u) if matches!(u.scheme(), "postgres" | "postgresql") => {}
            _ => return Err(err("database.url", "must be a postgres:// URL")),
        }
        if self.database.max_connections == 0 {
            return Err(err("database.max_connections", "must be at least 1"));
        }
        if self.database.acquire_timeout_s == 0 {
            return Err(err("database.acquire_timeout_s", "must be at least 1"));
        }
        match self.redis.url.expose().parse::<Url>() {
            Ok(u) if matches!(u.scheme(), "redis" | "rediss" | "unix" | "redis+unix") => {}
            _ => {
                return Err(err(
                    "redis.url",
                    "must be a redis://, rediss:// or unix:// URL",
                ));
            }
        }
        if self.redis.timeout_s == 0 {
            return Err(err("redis.timeout_s", "must be at least 1"));
        }
        if !(10..=3600).contains(&self.auth.access_token_ttl_s) {
            return Err(err(
                "auth.access_token_ttl_s",
                "must be between 10 s and 1 hour",
            ));
        }
        if self.auth.session_idle_ttl_s == 0
            || self.auth.session_idle_ttl_s > self.auth.session_absolute_ttl_s
        {
            return Err(err(
                "auth.session_idle_ttl_s",
                "must be at least 1 s and at most auth.session_absolute_ttl_s",
            ));
        }
        if !(60..=1800).contains(&self.auth.password_reset_ttl_s) {
            return Err(err(
                "auth.password_reset_ttl_s",
                "must be between 60 s and 30 minutes",
            ));
        }
        if self.auth.email_verification_ttl_s < 60 || self.auth.mfa_challenge_ttl_s < 30 {
            return Err(err(
                "auth.email_verification_ttl_s",
                "token lifetimes must be at least a minute",
            ));
        }
        if self.auth.limits.login_failures_per_account_hour == 0
            || self.auth.limits.login_failures_per_account_hour > 100
        {
            return Err(err(
                "auth.limits.login_failures_per_account_hour",
                "must be between 1 and 100",
            ));
        }
        if !matches!(self.email.app_url.scheme(), "http" | "https") {
            return Err(err("email.app_url", "must be an http:// or https:// URL"));
        }
        if self.email.from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(err(
                "email.from",
                "must be an address like \"WeMaster <no-reply@example.com>\"",
            ));
        }
        if self.email.smtp_host.is_empty() || self.email.smtp_port == 0 {
            return Err(err("email.smtp_host", "host and port must be set"));
        }
        if self.email.timeout_s == 0 || self.email.poll_interval_ms == 0 {
            return Err(err("email.timeout_s", "must be at least 1"));
        }
        if self.email.retry_base_s == 0 || self.email.retry_max_s < self.email.retry_base_s {
            return Err(err(
                "email.retry_base_s",
                "must be at least 1 and at most email.retry_max_s",
            ));
        }
        let mut names = std::collections::HashSet::new();
        for p in &self.oidc.providers {
            let ok = !p.name.is_empty()
                && p.name.len() <= 32
                && p.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !ok || !names.insert(p.name.clone()) {
                return Err(err(
                    "oidc.providers.name",
                    format!("{:?}: names are unique, 1-32 of a-z 0-9 -", p.name),
                ));
            }
            if !matches!(p.issuer.scheme(), "http" | "https") || p.client_id.is_empty() {
                return Err(err(
                    "oidc.providers",
                    format!(
                        "{}: issuer must be an http(s) URL and client_id set",
                        p.name
                    ),
                ));
            }
        }
        if !(60..=3600).contains(&self.oidc.state_ttl_s) {
            return Err(err("oidc.state_ttl_s", "must be between 60 and 3600"));
        }
        if self.email.max_attempts < 1 {
            return Err(err("email.max_attempts", "must be at least 1"));
        }
        if !self.playback.secret.is_empty() && self.playback.secret.expose().len() < 32 {
            return Err(err(
                "playback.secret",
                "must be at least 32 bytes (or empty for a random one)",
            ));
        }
        if !(60..=7 * 86_400).contains(&self.playback.token_ttl_s) {
            return Err(err(
                "playback.token_ttl_s",
                "must be between 60 s and 7 days",
            ));
        }
        if self.storage.local.root.as_os_str().is_empty() {
            return Err(err("storage.local.root", "must not be empty"));
        }
        if !self.storage.local.signing_key.is_empty()
            && self.storage.local.signing_key.expose().len() < 32
        {
            return Err(err(
                "storage.local.signing_key",
                "must be at least 32 bytes (or empty for a random one)",
            ));
        }
        let s3 = &self.storage.s3;
        if !s3.endpoint.is_empty()
            && !s3
                .endpoint
                .parse::<Url>()
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
        {
            return Err(err(
                "storage.s3.endpoint",
                "must be an http:// or https:// URL, or empty for AWS",
            ));
        }
        if !(MIN_PART..=MAX_PART).contains(&s3.multipart_part_size_bytes) {
            return Err(err(
                "storage.s3.multipart_part_size_bytes",
                "must be between 5 MiB and 5 GiB",
            ));
        }
        if s3.multipart_concurrency == 0 || s3.multipart_concurrency > 64 {
            return Err(err(
                "storage.s3.multipart_concurrency",
                "must be between 1 and 64",
            ));
        }
        if s3.request_timeout_s == 0 {
            return Err(err("storage.s3.request_timeout_s", "must be at least 1"));
        }
        if self.storage.backend == StorageBackend::S3 {
            if s3.bucket.is_empty() {
                return Err(err(
                    "storage.s3.bucket",
                    "must be set when storage.backend = \"s3\"",
                ));
            }
            if s3.region.is_empty() {
                return Err(err(
                    "storage.s3.region",
                    "must be set when storage.backend = \"s3\"",
                ));
            }
            if s3.access_key_id.is_empty() != s3.secret_access_key.is_empty() {
                return Err(err(
                    "storage.s3.secret_access_key",
                    "access_key_id and secret_access_key go together",
                ));
            }
        }
        Ok(())
    }

    /// The effective configuration as TOML, secrets redacted (`wemaster config`).
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self)
            .unwrap_or_else(|e| format!("# cannot render configuration: {e}\n"))
    }
}

fn resolve_file(target: &mut Secret, file: &Option<PathBuf>, key: &str) -> Result<(), ConfigError> {
    let Some(path) = file else { return Ok(()) };
    let value = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(key, format!("cannot read {}: {e}", path.display())))?;
    *target = Secret::new(value.trim_end_matches(['\n', '\r']));
    Ok(())
}

/// `config` reports "... for key `a.b`"; turn that into our `key: reason` shape.
fn from_config_error(e: config::ConfigError) -> ConfigError {
    let text = e.to_string();
    let key = text
        .split("for key `")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
        .or_else(|| {
            text.split("unknown field `")
                .nth(1)
                .and_then(|r| r.split('`').next())
        })
        .unwrap_or("configuration")
        .to_string();
    ConfigError { key, reason: text }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::load(&Sources {
            file: None,
            env: Some(env),
        })
    }

    #[test]
    fn defaults_load_and_validate() {
        let s = load(&[]).expect("defaults are valid");
        assert_eq!(s.http.listen.port(), 8080);
        assert_eq!(s.rtmp.listen.port(), 1935);
        assert_eq!(s.storage.backend, StorageBackend::Local);
    }

    #[test]
    fn environment_overrides_nested_keys() {
        let s = load(&[
            ("WEMASTER__HTTP__LISTEN", "127.0.0.1:9000"),
            ("WEMASTER__STORAGE__S3__BUCKET", "lessons"),
            (
                "WEMASTER__HTTP__CORS_ALLOWED_ORIGINS",
                "https://a.example,https://b.example",
            ),
            ("DATABASE_URL", "postgres://u@db:5432/x"),
        ])
        .unwrap();
        assert_eq!(s.http.listen.to_string(), "127.0.0.1:9000");
        assert_eq!(s.storage.s3.bucket, "lessons");
        assert_eq!(
            s.http.cors_allowed_origins,
            vec!["https://a.example", "https://b.example"]
        );
        assert_eq!(s.database.url.expose(), "postgres://u@db:5432/x");
    }

    #[test]
    fn a_bad_value_names_its_key() {
        let e = load(&[("WEMASTER__HTTP__LISTEN", "not-an-address")]).unwrap_err();
        assert_eq!(e.key, "http.listen", "{e}");
        let e = load(&[("WEMASTER__STORAGE__BACKEND", "ftp")]).unwrap_err();
        assert_eq!(e.key, "storage.backend", "{e}");
        let e = load(&[("WEMASTER__STORAGE__S3__MULTIPART_PART_SIZE_BYTES", "1024")]).unwrap_err();
        assert_eq!(e.key, "storage.s3.multipart_part_size_bytes");
        let e = load(&[("REDIS_URL", "http://x")]).unwrap_err();
        assert_eq!(e.key, "redis.url");
    }

    #[test]
    fn secrets_come_from_files_and_are_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("playback");
        std::fs::write(&path, "0123456789abcdef0123456789abcdef-from-file\n").unwrap();
        let s = load(&[("WEMASTER__PLAYBACK__SECRET_FILE", path.to_str().unwrap())]).unwrap();
        assert_eq!(
            s.playback.secret.expose(),
            "0123456789abcdef0123456789abcdef-from-file"
        );
        let printed = s.to_redacted_toml();
        assert!(!printed.contains("from-file"), "{printed}");
        assert!(printed.contains("<redacted>"));
        assert!(!format!("{s:?}").contains("from-file"));
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = load(&[("WEMASTER__HTTP__LISTN", "127.0.0.1:1")]).unwrap_err();
        assert!(e.to_string().contains("listn"), "{e}");
    }
}
