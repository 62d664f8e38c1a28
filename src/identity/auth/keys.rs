//! Access-token signing keys: Ed25519 (JWT `alg: EdDSA`), each named by a `kid`.
//!
//! `auth.keys_dir` holds one PKCS#8 PEM private key per file (`<kid>.pem`, as written by
//! `openssl genpkey -algorithm ed25519`). Every key there verifies tokens and is published in the
//! JWK set; one signs: `auth.signing_kid`, or else the last file name in sort order. Rotation is
//! therefore: add a key with a later name, restart (new tokens use it, old ones still verify),
//! and remove the old file once the longest access-token lifetime has passed.
//!
//! When the directory has no key, one is generated there (mode 0600) so development needs no
//! setup; production should provision its keys (and share them between nodes).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};
use aws_lc_rs::{
    rand::SystemRandom,
    signature::{Ed25519KeyPair, KeyPair},
};
use base64::Engine;
use jsonwebtoken::{DecodingKey, EncodingKey};
use serde::Serialize;

/// One public key as a JWK (RFC 8037 OKP).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Jwk {
    /// Always `OKP`.
    pub kty: &'static str,
    /// Always `Ed25519`.
    pub crv: &'static str,
    /// The public key, base64url.
    pub x: String,
    pub kid: String,
    /// Always `EdDSA`.
    pub alg: &'static str,
    /// Always `sig`.
    #[serde(rename = "use")]
    pub use_: &'static str,
}

/// `{"keys": [...]}` (RFC 7517).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct JwkSet {
    pub keys: Vec<Jwk>,
}

/// The loaded keys.
pub struct KeyRing {
    signing_kid: String,
    signing: EncodingKey,
    verifying: BTreeMap<String, DecodingKey>,
    jwks: JwkSet,
}

impl KeyRing {
    /// Load every `*.pem` of `dir` (generating a first key when there is none).
    pub fn load_or_generate(dir: &Path, signing_kid: &str) -> anyhow::Result<KeyRing> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("auth.keys_dir: cannot create {}", dir.display()))?;
        let mut files = pem_files(dir)?;
        if files.is_empty() {
            let path = generate(dir)?;
            tracing::warn!(path = %path.display(), "auth.keys_dir had no signing key: generated one (share it between nodes in production)");
            files = pem_files(dir)?;
        }
        let mut verifying = BTreeMap::new();
        let mut encoding = BTreeMap::new();
        let mut jwks = Vec::new();
        for path in &files {
            let kid = path
                .file_stem()
                .and_then(|s| s.to_str())
                .context("key file name")?
                .to_string();
            let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let der =
                pem_to_der(&pem).with_context(|| format!("{}: not a PEM key", path.display()))?;
            let pair = Ed25519KeyPair::from_pkcs8(&der).map_err(|e| {
                anyhow::anyhow!("{}: not an Ed25519 PKCS#8 key: {e}", path.display())
            })?;
            let x =
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
            verifying.insert(
                kid.clone(),
                DecodingKey::from_ed_components(&x).context("public key")?,
            );
            encoding.insert(
                kid.clone(),
                EncodingKey::from_ed_pem(&pem).context("private key")?,
            );
            jwks.push(Jwk {
                kty: "OKP",
                crv: "Ed25519",
                x,
                kid,
                alg: "EdDSA",
                use_: "sig",
            });
        }
        let signing_kid = if signing_kid.is_empty() {
            encoding.keys().next_back().cloned().context("no key")?
        } else {
            signing_kid.to_string()
        };
        let Some(signing) = encoding.remove(&signing_kid) else {
            bail!("auth.signing_kid: no key {signing_kid}.pem in auth.keys_dir");
        };
        Ok(KeyRing {
            signing_kid,
            signing,
            verifying,
            jwks: JwkSet { keys: jwks },
        })
    }

    pub fn signing(&self) -> (&str, &EncodingKey) {
        (&self.signing_kid, &self.signing)
    }

    pub fn verifying(&self, kid: &str) -> Option<&DecodingKey> {
        self.verifying.get(kid)
    }

    pub fn jwks(&self) -> &JwkSet {
        &self.jwks
    }
}

fn pem_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("auth.keys_dir: cannot read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pem"))
        .collect();
    files.sort();
    Ok(files)
}

/// Write a new Ed25519 key named after the current time (so it sorts last).
pub fn generate(dir: &Path) -> anyhow::Result<PathBuf> {
    // PKCS#8 v1 (RFC 8410), the form `openssl genpkey` writes and every tool reads; the v2
    // form (with the public key) of `generate_pkcs8` is refused by OpenSSL 3.
    let doc = Ed25519KeyPair::generate_pkcs8v1(&SystemRandom::new())
        .map_err(|e| anyhow::anyhow!("generating an Ed25519 key: {e}"))?;
    let now = time::OffsetDateTime::now_utc();
    let kid = format!(
        "ed25519-{}{:02}{:02}{:02}{:02}{:02}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    );
    let b64 = base64::engine::general_purpose::STANDARD.encode(doc.as_ref());
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    let path = dir.join(format!("{kid}.pem"));
    write_private(&path, pem.as_bytes())?;
    Ok(path)
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)?;
    Ok(())
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("creating {}", path.display()))
}

fn pem_to_der(pem: &[u8]) -> anyhow::Result<Vec<u8>> {
    let text = std::str::from_utf8(pem)?;
    let body: String = text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::trim)
        .collect();
    Ok(base64::engine::general_purpose::STANDARD.decode(body)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_loads_and_the_last_one_signs() {
        let dir = tempfile::tempdir().unwrap();
        let ring = KeyRing::load_or_generate(dir.path(), "").unwrap();
        assert_eq!(ring.jwks().keys.len(), 1);
        let first = ring.signing().0.to_string();
        std::fs::copy(
            dir.path().join(format!("{first}.pem")),
            dir.path().join("zz-next.pem"),
        )
        .unwrap();
        let ring = KeyRing::load_or_generate(dir.path(), "").unwrap();
        assert_eq!(ring.signing().0, "zz-next");
        assert!(ring.verifying(&first).is_some());
        let ring = KeyRing::load_or_generate(dir.path(), &first).unwrap();
        assert_eq!(ring.signing().0, first);
        assert!(KeyRing::load_or_generate(dir.path(), "missing").is_err());
    }

    #[test]
    fn a_generated_key_is_standard_pkcs8_that_openssl_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = generate(dir.path()).unwrap();
        let der = pem_to_der(&std::fs::read(&path).unwrap()).unwrap();
        // RFC 8410 PrivateKeyInfo: version 0, id-Ed25519, the 32-byte seed; nothing else.
        assert_eq!(der.len(), 48);
        assert_eq!(hex::encode(&der[..16]), "302e020100300506032b657004220420");
        let ring = KeyRing::load_or_generate(dir.path(), "").unwrap();
        let x = &ring.jwks().keys[0].x;
        let Ok(out) = std::process::Command::new("openssl")
            .args(["pkey", "-in"])
            .arg(&path)
            .args(["-pubout", "-outform", "DER"])
            .output()
        else {
            eprintln!("no openssl binary: its check is skipped");
            return;
        };
        assert!(
            out.status.success(),
            "openssl pkey: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The public key OpenSSL derives is the one published in the JWK set.
        let public = &out.stdout[out.stdout.len() - 32..];
        assert_eq!(
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(public),
            *x
        );
    }
}
