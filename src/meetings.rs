//! Jitsi Meet: tokens for prosody's `token` authentication, and the public key Jitsi's
//! `asap_key_server` fetches for RS256.
//!
//! A token (what `mod_auth_token` / `token_verification.lua` checks):
//! - header `alg` HS256 (shared `app_secret`) or RS256 with a `kid`; for RS256 prosody fetches
//!   `<asap_key_server>/<sha256 hex of kid>.pem` (served here under `jitsi.asap_key_path`);
//! - `iss` = `app_id` (prosody's `app_id`, or one of `asap_accepted_issuers`), `aud` (one of
//!   `asap_accepted_audiences`), `sub` = the Jitsi domain or tenant, `room` = the room name;
//! - `exp` short, `nbf` slightly in the past: prosody allows no clock skew;
//! - `context.user` {id, name, email, avatar, affiliation: owner|member} and an explicit
//!   `context.features` — absent features mean everything is allowed, so they are always sent.

use std::path::Path;

use anyhow::Context as _;
use aws_lc_rs::{
    encoding::AsDer,
    rsa::{KeyPair as RsaKeyPair, KeySize},
    signature::KeyPair as _,
};
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::config::{JitsiAlgorithm, JitsiSettings};

/// Signs meeting tokens.
#[derive(Clone)]
pub struct Jitsi {
    settings: JitsiSettings,
    key: EncodingKey,
    algorithm: Algorithm,
    /// For RS256: the public key as SPKI PEM, served at `/<sha256(kid)>.pem`.
    public_pem: Option<String>,
}

/// Who joins, as Jitsi shows them.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MeetingUser {
    pub id: String,
    pub name: String,
    pub email: String,
    pub avatar: String,
    /// `owner` (teachers: moderator) or `member`.
    pub affiliation: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Features {
    pub recording: bool,
    pub livestreaming: bool,
    #[serde(rename = "screen-sharing")]
    pub screen_sharing: bool,
    #[serde(rename = "outbound-call")]
    pub outbound_call: bool,
    pub transcription: bool,
}

#[derive(Debug, Serialize)]
struct Context {
    user: MeetingUser,
    features: Features,
}

#[derive(Debug, Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    room: &'a str,
    iat: i64,
    nbf: i64,
    exp: i64,
    moderator: bool,
    context: Context,
}

/// An issued token.
pub struct MeetingToken {
    pub jwt: String,
    pub expires_at: OffsetDateTime,
    pub meeting_url: String,
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn unpem(text: &str) -> anyhow::Result<Vec<u8>> {
    let b64: String = text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::trim)
        .collect();
    Ok(base64::engine::general_purpose::STANDARD.decode(b64)?)
}

/// The file name Jitsi's `asap_key_server` asks for: `<hex sha256(kid)>.pem`.
pub fn asap_key_file(kid: &str) -> String {
    format!("{}.pem", hex::encode(Sha256::digest(kid.as_bytes())))
}

impl Jitsi {
    /// Load (or, for RS256 without a key file yet, generate and write) the signing key.
    pub fn new(settings: &JitsiSettings) -> anyhow::Result<Jitsi> {
        match settings.algorithm {
            JitsiAlgorithm::Hs256 => {
                let secret = if settings.app_secret.is_empty() {
                    tracing::warn!(
                        "jitsi.app_secret is empty: using a random key, Jitsi will refuse meeting tokens until it is set"
                    );
                    crate::auth::random_bytes(32)
                } else {
                    settings.app_secret.expose().as_bytes().to_vec()
                };
                Ok(Jitsi {
                    settings: settings.clone(),
                    key: EncodingKey::from_secret(&secret),
                    algorithm: Algorithm::HS256,
                    public_pem: None,
                })
            }
            JitsiAlgorithm::Rs256 => {
                let path = &settings.rs256_key_file;
                let pair = load_or_generate_rsa(path)?;
                let private = pem(
                    "PRIVATE KEY",
                    pair.as_der()
                        .map_err(|_| anyhow::anyhow!("cannot encode the RSA key"))?
                        .as_ref(),
                );
                let public = pem(
                    "PUBLIC KEY",
                    AsDer::as_der(pair.public_key())
                        .map_err(|_| anyhow::anyhow!("cannot encode the RSA public key"))?
                        .as_ref(),
                );
                Ok(Jitsi {
                    settings: settings.clone(),
                    key: EncodingKey::from_rsa_pem(private.as_bytes())
                        .context("jitsi.rs256_key_file")?,
                    algorithm: Algorithm::RS256,
                    public_pem: Some(public),
                })
            }
        }
    }

    pub fn settings(&self) -> &JitsiSettings {
        &self.settings
    }

    /// The public key for a `.pem` file name the asap key server is asked for, if it is ours.
    pub fn public_key_for(&self, file: &str) -> Option<&str> {
        let pem = self.public_pem.as_deref()?;
        (file == asap_key_file(&self.settings.rs256_kid)).then_some(pem)
    }

    /// A token for `user` in `room`; teachers (`owner`) get moderator rights and recording and
    /// livestreaming, students neither.
    pub fn token(
        &self,
        room: &str,
        user: MeetingUser,
        now: OffsetDateTime,
    ) -> anyhow::Result<MeetingToken> {
        let s = &self.settings;
        let teacher = user.affiliation == "owner";
        let exp = now + time::Duration::seconds(s.token_ttl_s as i64);
        let claims = Claims {
            iss: &s.app_id,
            aud: &s.audience,
            sub: &s.subject,
            room,
            iat: now.unix_timestamp(),
            nbf: now.unix_timestamp() - s.nbf_skew_s as i64,
            exp: exp.unix_timestamp(),
            moderator: teacher,
            context: Context {
                user,
                features: Features {
                    recording: teacher,
                    livestreaming: teacher,
                    screen_sharing: true,
                    outbound_call: false,
                    transcription: teacher,
                },
            },
        };
        let mut header = Header::new(self.algorithm);
        header.typ = Some("JWT".into());
        if self.algorithm == Algorithm::RS256 {
            header.kid = Some(s.rs256_kid.clone());
        }
        let jwt =
            jsonwebtoken::encode(&header, &claims, &self.key).context("signing a meeting token")?;
        let meeting_url = format!(
            "{}/{}?jwt={}",
            s.base_url.as_str().trim_end_matches('/'),
            room,
            jwt
        );
        Ok(MeetingToken {
            jwt,
            expires_at: exp,
            meeting_url,
        })
    }
}

fn load_or_generate_rsa(path: &Path) -> anyhow::Result<RsaKeyPair> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let der = unpem(&text).with_context(|| format!("reading {}", path.display()))?;
            RsaKeyPair::from_pkcs8(&der)
                .map_err(|e| anyhow::anyhow!("{}: not a PKCS#8 RSA key: {e}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let pair = RsaKeyPair::generate(KeySize::Rsa2048)
                .map_err(|_| anyhow::anyhow!("cannot generate an RSA key"))?;
            let der = pair
                .as_der()
                .map_err(|_| anyhow::anyhow!("cannot encode the RSA key"))?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            write_private(path, &pem("PRIVATE KEY", der.as_ref()))?;
            tracing::warn!(path = %path.display(), "jitsi.rs256_key_file did not exist: generated an RSA key there");
            Ok(pair)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// An unguessable room name: 128 random bits, lowercase hex (Jitsi lowercases room names).
pub fn new_room_name() -> String {
    format!("wm-{}", hex::encode(crate::auth::random_bytes(16)))
}
