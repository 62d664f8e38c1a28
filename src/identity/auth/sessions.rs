//! Sessions: one row per login, with opaque refresh tokens rotated at each use.
//!
//! Invariants:
//! - a refresh token is 256 random bits, shown once, stored as its SHA-256;
//! - a refresh token is used at most once (`used_at` is set under a row lock); presenting a used
//!   one again means it was copied: the whole session is revoked (`refresh_token_reuse`);
//! - a session ends at `expires_at` (absolute) or when not refreshed before `idle_expires_at`;
//! - revoking writes `revoked_at` (durable) and the Redis revocation key (every node, next request).

use serde::Serialize;
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{TokenService, random_token, token_hash};
use crate::config::AuthSettings;

/// A freshly issued pair.
#[derive(Debug)]
pub struct IssuedTokens {
    pub session_id: Uuid,
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: u64,
}

/// What came of presenting a refresh token.
#[derive(Debug)]
pub enum RefreshOutcome {
    Rotated(IssuedTokens),
    /// Unknown token, or its session expired or was revoked.
    Refused,
    /// A used token came back: its session is now revoked.
    Reused {
        user_id: Uuid,
        session_id: Uuid,
    },
}

/// A session as its user sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionInfo {
    pub id: Uuid,
    pub auth_method: String,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub last_used_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
    /// True for the session of the access token that asked.
    pub current: bool,
}

/// Where a login came from (shown in the session list).
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

#[derive(Clone)]
pub struct SessionService {
    db: PgPool,
    tokens: TokenService,
    settings: AuthSettings,
}

impl SessionService {
    pub fn new(db: PgPool, tokens: TokenService, settings: &AuthSettings) -> SessionService {
        SessionService {
            db,
            tokens,
            settings: settings.clone(),
        }
    }

    pub fn tokens(&self) -> &TokenService {
        &self.tokens
    }

    fn idle(&self) -> time::Duration {
        time::Duration::seconds(self.settings.session_idle_ttl_s as i64)
    }

    /// Start a session and issue its first pair.
    pub async fn start(
        &self,
        user_id: Uuid,
        auth_method: &str,
        client: &ClientInfo,
    ) -> anyhow::Result<IssuedTokens> {
        let now = OffsetDateTime::now_utc();
        let sid = Uuid::now_v7();
        let absolute = now + time::Duration::seconds(self.settings.session_absolute_ttl_s as i64);
        let refresh = random_token("");
        let mut tx = self.db.begin().await?;
        sqlx::query!(
            r#"INSERT INTO sessions (id, user_id, auth_method, user_agent, ip, idle_expires_at, expires_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7)"#,
            sid,
            user_id,
            auth_method,
            client.user_agent.as_deref().map(|s| truncate(s, 300)),
            client.ip.as_deref(),
            (now + self.idle()).min(absolute),
            absolute,
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query!(
            "INSERT INTO refresh_tokens (token_hash, session_id) VALUES ($1, $2)",
            token_hash(&refresh),
            sid,
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(IssuedTokens {
            session_id: sid,
            access_token: self.tokens.sign(user_id, sid)?,
            refresh_token: refresh,
            expires_in: self.tokens.access_token_ttl_s(),
        })
    }

    /// Rotate a refresh token (see the module invariants).
    pub async fn refresh(&self, refresh_token: &str) -> anyhow::Result<RefreshOutcome> {
        let now = OffsetDateTime::now_utc();
        let mut tx = self.db.begin().await?;
        // The row lock makes two concurrent uses of one token see each other: one rotates, the
        // other finds it used.
        let found = sqlx::query!(
            r#"SELECT t.session_id, t.used_at, s.user_id, s.revoked_at, s.idle_expires_at,
                      s.expires_at, u.status
               FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id
               JOIN users u ON u.id = s.user_id
               WHERE t.token_hash = $1 FOR UPDATE OF t, s"#,
            token_hash(refresh_token),
        )
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = found else {
            return Ok(RefreshOutcome::Refused);
        };
        if row.used_at.is_some() {
            if row.revoked_at.is_none() {
                revoke_in(&mut tx, &[row.session_id], "refresh_token_reuse").await?;
                tx.commit().await?;
                self.tokens.publish_revocation(&[row.session_id]).await?;
            }
            return Ok(RefreshOutcome::Reused {
                user_id: row.user_id,
                session_id: row.session_id,
            });
        }
        if row.revoked_at.is_some()
            || row.idle_expires_at <= now
            || row.expires_at <= now
            || row.status != "active"
        {
            return Ok(RefreshOutcome::Refused);
        }
        let next = random_token("");
        sqlx::query!(
            "UPDATE refresh_tokens SET used_at = now() WHERE token_hash = $1",
            token_hash(refresh_token)
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query!(
            "INSERT INTO refresh_tokens (token_hash, session_id) VALUES ($1, $2)",
            token_hash(&next),
            row.session_id,
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query!(
            "UPDATE sessions SET last_used_at = now(), idle_expires_at = least($2, expires_at) WHERE id = $1",
            row.session_id,
            now + self.idle(),
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(RefreshOutcome::Rotated(IssuedTokens {
            session_id: row.session_id,
            access_token: self.tokens.sign(row.user_id, row.session_id)?,
            refresh_token: next,
            expires_in: self.tokens.access_token_ttl_s(),
        }))
    }

    /// Revoke one session of a user; false when it is not theirs or already ended.
    pub async fn revoke(&self, user_id: Uuid, sid: Uuid, reason: &str) -> anyhow::Result<bool> {
        let mut tx = self.db.begin().await?;
        let owned = sqlx::query_scalar!(
            "SELECT id FROM sessions WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
            sid,
            user_id
        )
        .fetch_optional(&mut *tx)
        .await?;
        if owned.is_none() {
            return Ok(false);
        }
        revoke_in(&mut tx, &[sid], reason).await?;
        tx.commit().await?;
        self.tokens.publish_revocation(&[sid]).await?;
        Ok(true)
    }

    /// Revoke every live session of a user (password change or reset, disabling, admin).
    pub async fn revoke_all(&self, user_id: Uuid, reason: &str) -> anyhow::Result<Vec<Uuid>> {
        let mut tx = self.db.begin().await?;
        let sids = sqlx::query_scalar!(
            "SELECT id FROM sessions WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now()",
            user_id
        )
        .fetch_all(&mut *tx)
        .await?;
        revoke_in(&mut tx, &sids, reason).await?;
        tx.commit().await?;
        self.tokens.publish_revocation(&sids).await?;
        Ok(sids)
    }

    /// The live sessions of a user, newest first.
    pub async fn list(&self, user_id: Uuid, current: Uuid) -> anyhow::Result<Vec<SessionInfo>> {
        let rows = sqlx::query!(
            r#"SELECT id, auth_method, user_agent, ip, created_at, last_used_at, expires_at
               FROM sessions
               WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now()
                 AND idle_expires_at > now()
               ORDER BY id DESC LIMIT 200"#,
            user_id
        )
        .fetch_all(&self.db)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| SessionInfo {
                current: r.id == current,
                id: r.id,
                auth_method: r.auth_method,
                user_agent: r.user_agent,
                ip: r.ip,
                created_at: r.created_at,
                last_used_at: r.last_used_at,
                expires_at: r.expires_at,
            })
            .collect())
    }
}

async fn revoke_in(
    tx: &mut sqlx::PgConnection,
    sids: &[Uuid],
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE sessions SET revoked_at = now(), revoked_reason = $2 WHERE id = ANY($1) AND revoked_at IS NULL",
        sids,
        reason
    )
    .execute(tx)
    .await?;
    Ok(())
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
