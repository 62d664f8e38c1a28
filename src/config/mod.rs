//! Typed configuration tree.
//!
//! Layers, later ones win: `config/default.toml` (compiled in, so the binary runs anywhere) →
//! the set-up file `scripts/run` writes (`.data/wemaster.toml`, read by the CLI when present,
//! so every command finds the database, Redis and secrets it chose) →
//! the file named by `--config`/`WEMASTER_CONFIG` → `WEMASTER__SECTION__KEY` environment
//! variables → `DATABASE_URL`/`REDIS_URL`. Everything is validated once, in [`Settings::load`];
//! an error names the key and the reason in one line, so a bad deployment fails fast instead of
//! half-starting.
//!
//! One file per section: each defines its `*Settings` types and, where it has rules, its own
//! `validate()`. This module imports no domain module (only the shared value types of
//! [`crate::domain`]); domains import their section from here.

mod auth;
mod chat;
mod courses;
mod database;
mod email;
mod http;
mod jitsi;
mod live;
mod log;
mod media;
mod notifications;
mod oidc;
mod payments;
mod playback;
mod recordings;
mod redis;
mod rtmp;
mod secret;
mod storage;
mod webhooks;
mod whep;
mod whip;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use self::secret::resolve_file;
pub use self::{
    auth::{AuthLimits, AuthSettings},
    chat::ChatSettings,
    courses::CourseSettings,
    database::DatabaseSettings,
    email::{EmailSettings, SmtpTls},
    http::HttpSettings,
    jitsi::{JitsiAlgorithm, JitsiSettings},
    live::LiveSettings,
    log::{LogFormat, LogSettings},
    media::MediaSettings,
    notifications::NotificationSettings,
    oidc::{OidcProviderSettings, OidcSettings},
    payments::{
        AlipaySettings, PaymentSettings, SandboxSettings, StripeSettings, WechatPaySettings,
    },
    playback::PlaybackSettings,
    recordings::RecordingSettings,
    redis::RedisSettings,
    rtmp::RtmpSettings,
    secret::Secret,
    storage::{LocalStorageSettings, S3Settings, StorageBackend, StorageSettings},
    webhooks::WebhookSettings,
    whep::WhepSettings,
    whip::WhipSettings,
};

/// The defaults, compiled in; `config/default.toml` documents every key.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

/// A configuration problem, reported as `key: reason`.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct ConfigError {
    pub key: String,
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub http: HttpSettings,
    pub rtmp: RtmpSettings,
    pub whip: WhipSettings,
    pub whep: WhepSettings,
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
    pub payments: PaymentSettings,
    pub chat: ChatSettings,
    pub notifications: NotificationSettings,
    pub webhooks: WebhookSettings,
}

/// Where settings come from besides the compiled-in defaults.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    /// The generated set-up file, read when it exists (see the module).
    pub local: Option<PathBuf>,
    /// `--config` or `WEMASTER_CONFIG`.
    pub file: Option<PathBuf>,
    /// Environment variables; `None` reads the process environment.
    pub env: Option<Vec<(String, String)>>,
}

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
        if let Some(local) = sources.local.as_deref().filter(|p| p.is_file()) {
            builder =
                builder.add_source(config::File::from(local).format(config::FileFormat::Toml));
        }
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
                .with_list_parse_key("webhooks.retry_delays_s")
                .with_list_parse_key("webhooks.allow_internal_networks")
                .with_list_parse_key("redis.cluster_seeds")
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
        resolve_file(
            &mut self.database.direct_url,
            &self.database.direct_url_file,
            "database.direct_url_file",
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
    /// Every section's rules, in one pass; the first broken one is the error.
    fn validate(&self) -> Result<(), ConfigError> {
        self.http.validate()?;
        self.jitsi.validate()?;
        self.rtmp.validate()?;
        self.live.validate()?;
        self.whep.validate()?;
        self.recordings.validate()?;
        self.courses.validate()?;
        self.payments.validate()?;
        self.log.validate()?;
        self.database.validate()?;
        self.redis.validate()?;
        self.auth.validate()?;
        self.email.validate()?;
        self.oidc.validate()?;
        self.playback.validate()?;
        self.webhooks.validate()?;
        self.storage.validate()
    }

    /// The effective configuration as TOML, secrets redacted (`wemaster config`).
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self)
            .unwrap_or_else(|e| format!("# cannot render configuration: {e}\n"))
    }
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
            local: None,
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
    fn cluster_seeds_come_by_environment_without_credentials() {
        let s = load(&[
            ("WEMASTER__REDIS__CLUSTER", "true"),
            (
                "WEMASTER__REDIS__CLUSTER_SEEDS",
                "redis://10.0.0.2:6379,redis://10.0.0.3:6379",
            ),
            ("REDIS_URL", "redis://:pw@10.0.0.1:6379"),
        ])
        .unwrap();
        assert_eq!(
            s.redis.seed_urls(),
            [
                "redis://:pw@10.0.0.1:6379",
                "redis://:pw@10.0.0.2:6379",
                "redis://:pw@10.0.0.3:6379"
            ]
        );
        let e = load(&[
            ("WEMASTER__REDIS__CLUSTER", "true"),
            (
                "WEMASTER__REDIS__CLUSTER_SEEDS",
                "redis://:pw@10.0.0.2:6379",
            ),
        ])
        .unwrap_err();
        assert_eq!(e.key, "redis.cluster_seeds");
        let e = load(&[("WEMASTER__REDIS__CLUSTER_SEEDS", "redis://10.0.0.2:6379")]).unwrap_err();
        assert_eq!(e.key, "redis.cluster_seeds", "only with redis.cluster");
    }

    #[test]
    fn the_internal_url_is_a_bare_http_origin() {
        let url = |u: &str| load(&[("WEMASTER__LIVE__INTERNAL_URL", u)]);
        assert_eq!(
            url("http://10.0.0.5:8080")
                .unwrap()
                .live
                .internal_url("0.0.0.0:8080".parse().unwrap()),
            "http://10.0.0.5:8080"
        );
        assert!(url("").unwrap().live.internal_url.is_none());
        assert_eq!(
            url("http://10.0.0.5:8080/api").unwrap_err().key,
            "live.internal_url"
        );
        assert_eq!(url("ftp://10.0.0.5").unwrap_err().key, "live.internal_url");
        let s = load(&[]).unwrap();
        assert_eq!(
            s.live.internal_url("127.0.0.1:9000".parse().unwrap()),
            "http://127.0.0.1:9000"
        );
    }

    #[test]
    fn hsts_needs_an_https_site() {
        let e = load(&[("WEMASTER__HTTP__HSTS_MAX_AGE_S", "600")]).unwrap_err();
        assert_eq!(e.key, "http.hsts_max_age_s");
        assert!(
            load(&[
                ("WEMASTER__HTTP__HSTS_MAX_AGE_S", "600"),
                ("WEMASTER__HTTP__PUBLIC_URL", "https://lessons.example.com"),
            ])
            .is_ok()
        );
    }

    #[test]
    fn the_stripe_card_form_takes_a_publishable_key_and_a_safe_script_url() {
        let key = |k: &str| load(&[("WEMASTER__PAYMENTS__STRIPE__PUBLISHABLE_KEY", k)]);
        assert!(key("pk_test_1").is_ok());
        let e = key("sk_live_oops").unwrap_err();
        assert_eq!(e.key, "payments.stripe.publishable_key");
        let url = |u: &str| load(&[("WEMASTER__PAYMENTS__STRIPE__JS_URL", u)]);
        assert!(url("https://js.stripe.com/v3/").is_ok());
        assert!(url("http://127.0.0.1:29040/js.stripe.com/v3/").is_ok());
        assert_eq!(
            url("http://cdn.example.com/stripe.js").unwrap_err().key,
            "payments.stripe.js_url"
        );
        assert!(url("javascript:alert(1)").is_err());
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
