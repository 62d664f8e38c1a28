//! Authentication core: password hashing, access tokens (JWT) and refresh tokens.
//!
//! This is the foundation's minimal login; the identity work replaces HS256 with rotatable
//! asymmetric keys and adds two-factor and OAuth2 on the same shapes.
//!
//! - Passwords: argon2id with the crate defaults (m = 19 MiB, t = 2, p = 1), hashed on the
//!   blocking pool so a login never stalls the async runtime.
//! - Access token: short-lived JWT with `iss`, `aud`, `sub`, `sid`, `exp`, `iat`, `roles`.
//! - Refresh token: 256 random bits, shown once; Redis keeps only its SHA-256, with a TTL.
//!   Refresh rotates it; logout revokes the session (`sid`) on every node via Redis.

use std::time::Duration;

use anyhow::Context;
use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{cache::Redis, config::AuthSettings, users::Role};

/// Hash a password with argon2id (blocking pool).
pub async fn hash_password(password: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("argon2: {e}"))
    })
    .await
    .context("password hashing task")?
}

/// A valid hash of a random password: verified against when the email is unknown, so that an
/// unknown account costs the same time as a wrong password and cannot be told apart.
static DUMMY_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    Argon2::default()
        .hash_password(b"wemaster-dummy-password")
        .map(|h| h.to_string())
        .unwrap_or_default()
});

/// Check a password against a PHC hash, or against a dummy hash when `hash` is `None`.
pub async fn verify_password(password: String, hash: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || {
        let (hash, real) = match hash {
            Some(h) => (h, true),
            None => (DUMMY_HASH.clone(), false),
        };
        // The PHC string carries the salt and parameters it was made with.
        Argon2::default()
            .verify_password(password.as_bytes(), hash.as_str())
            .is_ok()
            && real
    })
    .await
    .unwrap_or(false)
}

/// Claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub sub: Uuid,
    /// The session this token belongs to; revoking the session revokes its tokens.
    pub sid: Uuid,
    pub iat: i64,
    pub exp: i64,
    pub roles: Vec<Role>,
}

/// Why a bearer token was refused (always HTTP 401; the reason goes to logs and `detail`).
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the access token is invalid: {0}")]
    Invalid(String),
    #[error("the access token has expired")]
    Expired,
    #[error("the session was revoked")]
    Revoked,
}

/// Signs and checks tokens; holds the keys.
#[derive(Clone)]
pub struct TokenService {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    settings: AuthSettings,
    redis: Redis,
}

/// A freshly issued pair.
pub struct IssuedTokens {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: u64,
}

#[derive(Serialize, Deserialize)]
struct RefreshRecord {
    user_id: Uuid,
    sid: Uuid,
    roles: Vec<Role>,
}

const REFRESH_PREFIX: &str = "wm:auth:refresh:";
const REVOKED_PREFIX: &str = "wm:auth:revoked-sid:";

impl TokenService {
    pub fn new(settings: &AuthSettings, redis: Redis) -> TokenService {
        let secret: Vec<u8> = if settings.jwt_secret.is_empty() {
            tracing::warn!(
                "auth.jwt_secret is empty: using a random key, tokens will not survive a restart"
            );
            random_bytes(32)
        } else {
            settings.jwt_secret.expose().as_bytes().to_vec()
        };
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[&settings.issuer]);
        validation.set_audience(&[&settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 5;
        TokenService {
            encoding: EncodingKey::from_secret(&secret),
            decoding: DecodingKey::from_secret(&secret),
            validation,
            settings: settings.clone(),
            redis,
        }
    }

    /// Start a new session for a user and issue its first token pair.
    pub async fn issue(&self, user_id: Uuid, roles: Vec<Role>) -> anyhow::Result<IssuedTokens> {
        self.issue_for_session(user_id, Uuid::now_v7(), roles).await
    }

    async fn issue_for_session(
        &self,
        user_id: Uuid,
        sid: Uuid,
        roles: Vec<Role>,
    ) -> anyhow::Result<IssuedTokens> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let claims = Claims {
            iss: self.settings.issuer.clone(),
            aud: self.settings.audience.clone(),
            sub: user_id,
            sid,
            iat: now,
            exp: now + self.settings.access_token_ttl_s as i64,
            roles: roles.clone(),
        };
        let access_token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
                .context("signing access token")?;
        let refresh_token =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes(32));
        let record = serde_json::to_string(&RefreshRecord {
            user_id,
            sid,
            roles,
        })?;
        let mut conn = self.redis.conn();
        let _: () = conn
            .set_ex(
                refresh_key(&refresh_token),
                record,
                self.settings.refresh_token_ttl_s,
            )
            .await
            .context("storing refresh token")?;
        Ok(IssuedTokens {
            access_token,
            refresh_token,
            expires_in: self.settings.access_token_ttl_s,
        })
    }

    /// Check an access token: signature, algorithm, `iss`, `aud`, `exp`, and revocation.
    pub async fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                other => TokenError::Invalid(format!("{other:?}")),
            })?;
        let mut conn = self.redis.conn();
        let revoked: bool = conn
            .exists(format!("{REVOKED_PREFIX}{}", data.claims.sid))
            .await
            .map_err(|e| TokenError::Invalid(format!("revocation check failed: {e}")))?;
        if revoked {
            return Err(TokenError::Revoked);
        }
        Ok(data.claims)
    }

    /// Exchange a refresh token for a new pair. The old refresh token is consumed atomically
    /// (GETDEL), so a token can be used once; `None` when unknown, used or expired.
    pub async fn refresh(&self, refresh_token: &str) -> anyhow::Result<Option<IssuedTokens>> {
        let mut conn = self.redis.conn();
        let record: Option<String> = conn.get_del(refresh_key(refresh_token)).await?;
        let Some(record) = record else {
            return Ok(None);
        };
        let record: RefreshRecord = serde_json::from_str(&record)?;
        let revoked: bool = conn
            .exists(format!("{REVOKED_PREFIX}{}", record.sid))
            .await?;
        if revoked {
            return Ok(None);
        }
        Ok(Some(
            self.issue_for_session(record.user_id, record.sid, record.roles)
                .await?,
        ))
    }

    /// Revoke a session: its access tokens stop working on every node at the next request.
    pub async fn revoke_session(
        &self,
        sid: Uuid,
        refresh_token: Option<&str>,
    ) -> anyhow::Result<()> {
        let mut conn = self.redis.conn();
        // Kept as long as a refresh token of the session could live.
        let ttl = self
            .settings
            .refresh_token_ttl_s
            .max(self.settings.access_token_ttl_s);
        let _: () = conn
            .set_ex(format!("{REVOKED_PREFIX}{sid}"), 1, ttl)
            .await?;
        if let Some(t) = refresh_token {
            let _: () = conn.del(refresh_key(t)).await?;
        }
        Ok(())
    }

    pub fn access_token_ttl(&self) -> Duration {
        Duration::from_secs(self.settings.access_token_ttl_s)
    }
}

fn refresh_key(token: &str) -> String {
    format!(
        "{REFRESH_PREFIX}{}",
        hex::encode(Sha256::digest(token.as_bytes()))
    )
}

/// `n` bytes from the OS CSPRNG.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    rand::rng().fill_bytes(&mut b);
    b
}
