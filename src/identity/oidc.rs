//! OpenID Connect login: authorization code flow with PKCE (S256), `state` and `nonce`, against
//! any provider found by issuer discovery (`oidc.providers`).
//!
//! [`Oidc::begin`] makes the authorization URL and keeps the PKCE verifier, the nonce and what
//! the sign-in is for (login, or linking to a logged-in account) in Redis under the `state`, for
//! `oidc.state_ttl_s`. [`Oidc::finish`] takes that record once (GETDEL: a state works once),
//! exchanges the code with the verifier, and verifies the ID token (signature by the provider's
//! JWKS, issuer, audience, expiry, nonce). The redirect URI is exact:
//! `<http.public_url>/api/v1/auth/oidc/<name>/callback`. Provider metadata is discovered at first
//! use and kept for the life of the process.

use std::collections::HashMap;

use anyhow::Context;
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
    core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata},
};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{cache::Redis, config::OidcProviderSettings, config::Settings};

/// Why a sign-in failed.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// HTTP 404: no provider of that name.
    #[error("no OpenID provider named {0}")]
    UnknownProvider(String),
    /// HTTP 401: unknown, used or expired `state`, a provider error, or an ID token that does
    /// not verify.
    #[error("the sign-in could not be completed: {0}")]
    Rejected(String),
    /// HTTP 503: the provider cannot be reached.
    #[error("the OpenID provider is unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Who the provider says signed in.
#[derive(Debug, Clone)]
pub struct Identity {
    pub provider: String,
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
    /// Set when the sign-in was started to link the provider to this logged-in user.
    pub link_to: Option<Uuid>,
}

#[derive(Serialize, Deserialize)]
struct Pending {
    provider: String,
    verifier: String,
    nonce: String,
    link_to: Option<Uuid>,
}

const STATE_PREFIX: &str = "wm:oidc:state:";

#[derive(Clone)]
pub struct Oidc {
    providers: HashMap<String, OidcProviderSettings>,
    metadata: std::sync::Arc<tokio::sync::Mutex<HashMap<String, CoreProviderMetadata>>>,
    http: openidconnect::reqwest::Client,
    redis: Redis,
    public_url: String,
    state_ttl_s: u64,
}

impl Oidc {
    pub fn new(settings: &Settings, redis: Redis) -> anyhow::Result<Oidc> {
        let http = openidconnect::reqwest::ClientBuilder::new()
            // Following redirects would let a provider point us anywhere (SSRF).
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .context("OIDC HTTP client")?;
        Ok(Oidc {
            providers: settings
                .oidc
                .providers
                .iter()
                .map(|p| (p.name.clone(), p.clone()))
                .collect(),
            metadata: Default::default(),
            http,
            redis,
            public_url: settings
                .http
                .default_public_url()
                .as_str()
                .trim_end_matches('/')
                .to_string(),
            state_ttl_s: settings.oidc.state_ttl_s,
        })
    }

    /// The configured provider names.
    pub fn names(&self) -> Vec<String> {
        let mut n: Vec<String> = self.providers.keys().cloned().collect();
        n.sort();
        n
    }

    pub fn redirect_uri(&self, name: &str) -> String {
        format!("{}/api/v1/auth/oidc/{name}/callback", self.public_url)
    }

    async fn client(
        &self,
        name: &str,
    ) -> Result<(&OidcProviderSettings, CoreProviderMetadata), OidcError> {
        let p = self
            .providers
            .get(name)
            .ok_or_else(|| OidcError::UnknownProvider(name.to_string()))?;
        let mut cache = self.metadata.lock().await;
        if let Some(m) = cache.get(name) {
            return Ok((p, m.clone()));
        }
        let issuer = IssuerUrl::new(p.issuer.as_str().trim_end_matches('/').to_string())
            .map_err(|e| OidcError::Internal(anyhow::anyhow!("issuer URL: {e}")))?;
        let m = CoreProviderMetadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| OidcError::Unavailable(format!("discovery: {e}")))?;
        cache.insert(name.to_string(), m.clone());
        Ok((p, m))
    }

    /// The URL to send the browser to, for a login (`link_to: None`) or to link the provider to
    /// a logged-in user.
    pub async fn begin(&self, name: &str, link_to: Option<Uuid>) -> Result<String, OidcError> {
        let (p, metadata) = self.client(name).await?;
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(p.client_id.clone()),
            (!p.client_secret.is_empty())
                .then(|| ClientSecret::new(p.client_secret.expose().to_string())),
        )
        .set_redirect_uri(
            RedirectUrl::new(self.redirect_uri(name))
                .map_err(|e| OidcError::Internal(anyhow::anyhow!("redirect URI: {e}")))?,
        );
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut req = client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        for s in &p.scopes {
            req = req.add_scope(Scope::new(s.clone()));
        }
        let (url, state, nonce) = req.set_pkce_challenge(challenge).url();
        let pending = serde_json::to_string(&Pending {
            provider: name.to_string(),
            verifier: verifier.secret().clone(),
            nonce: nonce.secret().clone(),
            link_to,
        })
        .context("pending sign-in")?;
        let mut conn = self.redis.conn();
        let _: () = conn
            .set_ex(
                format!("{STATE_PREFIX}{}", state.secret()),
                pending,
                self.state_ttl_s,
            )
            .await
            .context("storing the sign-in state")?;
        Ok(url.to_string())
    }

    /// Complete a sign-in from the callback's `code` and `state`.
    pub async fn finish(&self, name: &str, code: &str, state: &str) -> Result<Identity, OidcError> {
        if state.len() > 128 || code.len() > 2048 {
            return Err(OidcError::Rejected("malformed callback".into()));
        }
        let mut conn = self.redis.conn();
        let pending: Option<String> = conn
            .get_del(format!("{STATE_PREFIX}{state}"))
            .await
            .context("reading the sign-in state")?;
        let pending: Pending = pending
            .and_then(|p| serde_json::from_str(&p).ok())
            .ok_or_else(|| OidcError::Rejected("unknown, used or expired state".into()))?;
        if pending.provider != name {
            return Err(OidcError::Rejected("state of another provider".into()));
        }
        let (p, metadata) = self.client(name).await?;
        let issuer = metadata.issuer().to_string();
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(p.client_id.clone()),
            (!p.client_secret.is_empty())
                .then(|| ClientSecret::new(p.client_secret.expose().to_string())),
        )
        .set_redirect_uri(
            RedirectUrl::new(self.redirect_uri(name))
                .map_err(|e| OidcError::Internal(anyhow::anyhow!("redirect URI: {e}")))?,
        );
        let token = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| OidcError::Internal(anyhow::anyhow!("token endpoint: {e}")))?
            .set_pkce_verifier(PkceCodeVerifier::new(pending.verifier))
            .request_async(&self.http)
            .await
            .map_err(|e| OidcError::Rejected(format!("code exchange: {e}")))?;
        let id_token = token
            .id_token()
            .ok_or_else(|| OidcError::Rejected("no ID token".into()))?;
        let claims = id_token
            .claims(&client.id_token_verifier(), &Nonce::new(pending.nonce))
            .map_err(|e| OidcError::Rejected(format!("ID token: {e}")))?;
        let mut email = claims.email().map(|e| e.to_string());
        let mut email_verified = claims.email_verified().unwrap_or(false);
        let mut name_claim = claims
            .name()
            .and_then(|n| n.get(None))
            .map(|n| n.to_string());
        let subject = claims.subject().clone();
        if email.is_none()
            && let Ok(req) = client.user_info(token.access_token().clone(), Some(subject.clone()))
        {
            // Some providers put profile claims only in the userinfo answer.
            let info: openidconnect::core::CoreUserInfoClaims = req
                .request_async(&self.http)
                .await
                .map_err(|e| OidcError::Rejected(format!("userinfo: {e}")))?;
            email = info.email().map(|e| e.to_string());
            email_verified = info.email_verified().unwrap_or(false);
            name_claim =
                name_claim.or(info.name().and_then(|n| n.get(None)).map(|n| n.to_string()));
        }
        Ok(Identity {
            provider: name.to_string(),
            issuer,
            subject: subject.to_string(),
            email,
            email_verified,
            name: name_claim,
            link_to: pending.link_to,
        })
    }

    pub fn link_by_email(&self, name: &str) -> bool {
        self.providers.get(name).is_some_and(|p| p.link_by_email)
    }
}
