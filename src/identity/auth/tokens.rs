//! Access tokens: EdDSA JWTs with a `kid`, and the Redis revocation list every node checks.

use std::sync::Arc;

use anyhow::Context;
use jsonwebtoken::{Algorithm, Header, Validation};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::keys::{JwkSet, KeyRing};
use crate::{cache::Redis, config::AuthSettings};

/// Claims of an access token. Roles are not in the token: they are read at each request, so a
/// role removed by an admin stops working at once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub sub: Uuid,
    /// The session this token belongs to; revoking the session revokes its tokens.
    pub sid: Uuid,
    pub iat: i64,
    /// Not before: signed as `iat`. Checked when present (tokens signed before it was added
    /// have none, and lived an hour at most).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    pub exp: i64,
}

/// Why a bearer token was refused (always HTTP 401 with `WWW-Authenticate`).
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the access token is invalid: {0}")]
    Invalid(String),
    #[error("the access token has expired")]
    Expired,
    #[error("the session was revoked")]
    Revoked,
}

impl TokenError {
    /// The RFC 6750 `error_description`-safe reason.
    pub fn www_authenticate(&self) -> String {
        let desc = match self {
            TokenError::Invalid(_) => "invalid token",
            TokenError::Expired => "the access token expired",
            TokenError::Revoked => "the session was revoked",
        };
        format!("Bearer realm=\"wemaster\", error=\"invalid_token\", error_description=\"{desc}\"")
    }
}

/// Signs and checks access tokens; holds the keys.
#[derive(Clone)]
pub struct TokenService {
    keys: Arc<KeyRing>,
    validation: Validation,
    settings: AuthSettings,
    redis: Redis,
}

const REVOKED_PREFIX: &str = "wm:auth:revoked-sid:";

impl TokenService {
    pub fn new(settings: &AuthSettings, redis: Redis) -> anyhow::Result<TokenService> {
        let keys = KeyRing::load_or_generate(&settings.keys_dir, &settings.signing_kid)?;
        Ok(TokenService {
            keys: Arc::new(keys),
            validation: validation(settings),
            settings: settings.clone(),
            redis,
        })
    }

    /// Sign an access token for a session.
    pub fn sign(&self, user_id: Uuid, sid: Uuid) -> anyhow::Result<String> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let claims = Claims {
            iss: self.settings.issuer.clone(),
            aud: self.settings.audience.clone(),
            sub: user_id,
            sid,
            iat: now,
            nbf: Some(now),
            exp: now + self.settings.access_token_ttl_s as i64,
        };
        let (kid, key) = self.keys.signing();
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.to_string());
        jsonwebtoken::encode(&header, &claims, key).context("signing access token")
    }

    /// Check an access token: algorithm, key (`kid`), signature, `iss`, `aud`, `exp`, `nbf`,
    /// and revocation of its session (Redis). That its session exists at all is checked with
    /// the user's standing, in the same query ([`crate::users::standing`]).
    pub async fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let claims = decode(&self.keys, &self.validation, token)?;
        if self.is_revoked(claims.sid).await? {
            return Err(TokenError::Revoked);
        }
        Ok(claims)
    }

    async fn is_revoked(&self, sid: Uuid) -> Result<bool, TokenError> {
        let mut conn = self.redis.conn();
        conn.exists(format!("{REVOKED_PREFIX}{sid}"))
            .await
            // Fail closed: without the revocation list a token cannot be trusted.
            .map_err(|e| TokenError::Invalid(format!("revocation check failed: {e}")))
    }

    /// Tell every node that these sessions' access tokens are dead. Kept as long as an access
    /// token can live (plus leeway); the session row in PostgreSQL is the durable record.
    pub async fn publish_revocation(&self, sids: &[Uuid]) -> anyhow::Result<()> {
        if sids.is_empty() {
            return Ok(());
        }
        let ttl = self.settings.access_token_ttl_s + 60;
        let mut pipe = redis::pipe();
        for sid in sids {
            pipe.set_ex(format!("{REVOKED_PREFIX}{sid}"), 1, ttl)
                .ignore();
        }
        let mut conn = self.redis.conn();
        let _: () = pipe
            .query_async(&mut conn)
            .await
            .context("publishing session revocation to Redis")?;
        Ok(())
    }

    pub fn jwks(&self) -> &JwkSet {
        self.keys.jwks()
    }

    pub fn access_token_ttl_s(&self) -> u64 {
        self.settings.access_token_ttl_s
    }
}

/// What an access token must be: EdDSA only (`none`, HS256 with the public key as secret and
/// the like are refused before any key is touched), our issuer and audience, `exp` passed
/// and `nbf` reached (5 s leeway for clocks).
pub fn validation(settings: &AuthSettings) -> Validation {
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_issuer(&[&settings.issuer]);
    validation.set_audience(&[&settings.audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.validate_nbf = true;
    validation.leeway = 5;
    validation
}

/// Check a token's algorithm, key (`kid`), signature and claims; what
/// [`TokenService::verify`] does before asking Redis about revocation. Sans-IO, so the fuzzer
/// reaches it ([`crate::fuzzing::access_token`]).
pub fn decode(keys: &KeyRing, validation: &Validation, token: &str) -> Result<Claims, TokenError> {
    let header = jsonwebtoken::decode_header(token)
        .map_err(|e| TokenError::Invalid(format!("malformed: {e}")))?;
    if header.alg != Algorithm::EdDSA {
        return Err(TokenError::Invalid("algorithm not allowed".into()));
    }
    let kid = header
        .kid
        .ok_or_else(|| TokenError::Invalid("no kid".into()))?;
    let key = keys
        .verifying(&kid)
        .ok_or_else(|| TokenError::Invalid("unknown key".into()))?;
    let data =
        jsonwebtoken::decode::<Claims>(token, key, validation).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
            jsonwebtoken::errors::ErrorKind::ImmatureSignature => {
                TokenError::Invalid("not valid yet (nbf)".into())
            }
            other => TokenError::Invalid(format!("{other:?}")),
        })?;
    Ok(data.claims)
}
