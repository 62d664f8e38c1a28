//! Authentication core: password hashing, signing keys, access tokens and sessions.
//!
//! - [`hash_password`]/[`verify_password`]: argon2id with m = 19 MiB, t = 2, p = 1 (OWASP's
//!   minimum), on the blocking pool so a login never stalls the async runtime, one per core at
//!   most so a burst of logins neither takes every core nor leaves 19 MiB behind per thread.
//! - [`keys`]: Ed25519 signing keys with a `kid`, loaded from `auth.keys_dir` (a dev key is
//!   generated there at first start); every key in the directory verifies, one signs; the public
//!   halves are served as a JWK set.
//! - [`tokens`]: short-lived access JWTs (EdDSA) checked for key, algorithm, `iss`, `aud`, `exp`,
//!   `nbf`, `sub`, `sid` and session revocation (Redis, so every node sees it at the next
//!   request); the authorization extractor then checks that the session exists and is live.
//! - [`sessions`]: one PostgreSQL row per login with idle and absolute lifetimes, opaque refresh
//!   tokens stored hashed and rotated at each use; a reused refresh token revokes its session.
//! - [`mfa`]: TOTP two-factor and recovery codes.

pub mod keys;
pub mod mfa;
pub mod sessions;
pub mod tokens;

use anyhow::Context;
use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};
use rand::RngCore;
use sha2::{Digest, Sha256};

pub use sessions::{IssuedTokens, RefreshOutcome, SessionInfo, SessionService};
pub use tokens::{Claims, TokenError, TokenService};

/// argon2id, m = 19 MiB, t = 2, p = 1 (OWASP Password Storage Cheat Sheet minimum). Written out
/// rather than relying on the crate's defaults, so an upgrade cannot weaken it silently.
fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// How many argon2 computations run at once: one per core. Each takes 19 MiB and a core for
/// tens of milliseconds; unbounded, a burst of logins ran one per blocking thread (up to 512):
/// 19 MiB each at once, and every core taken from the rest of the service. Callers past the
/// bound wait their turn (the login rate limits bound the queue). What a hash leaves behind in
/// malloc's arenas is `main.rs`'s concern (`tune_allocator`).
static ARGON2_SLOTS: std::sync::LazyLock<tokio::sync::Semaphore> = std::sync::LazyLock::new(|| {
    tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get()))
});

/// Hash a password with argon2id (blocking pool, [`ARGON2_SLOTS`] at once).
pub async fn hash_password(password: String) -> anyhow::Result<String> {
    let _slot = ARGON2_SLOTS.acquire().await.context("argon2 slots")?;
    tokio::task::spawn_blocking(move || {
        argon2()
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
    argon2()
        .hash_password(&random_bytes(16))
        .map(|h| h.to_string())
        .unwrap_or_default()
});

/// Check a password against a PHC hash, or against a dummy hash when `hash` is `None`.
pub async fn verify_password(password: String, hash: Option<String>) -> bool {
    let Ok(_slot) = ARGON2_SLOTS.acquire().await else {
        return false;
    };
    tokio::task::spawn_blocking(move || {
        let (hash, real) = match hash {
            Some(h) => (h, true),
            None => (DUMMY_HASH.clone(), false),
        };
        // The PHC string carries the salt and parameters it was made with.
        argon2()
            .verify_password(password.as_bytes(), hash.as_str())
            .is_ok()
            && real
    })
    .await
    .unwrap_or(false)
}

/// `n` bytes from the OS CSPRNG.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    rand::rng().fill_bytes(&mut b);
    b
}

/// A random opaque token: `prefix` + 256 bits in URL-safe base64 (43 characters).
pub fn random_token(prefix: &str) -> String {
    use base64::Engine;
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes(32))
    )
}

/// SHA-256 of a high-entropy token: what the database keeps instead of the token. (A slow hash
/// is for guessable secrets like passwords; a 256-bit token cannot be brute-forced.)
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_with_the_owasp_parameters_and_verify() {
        let h = hash_password("correct horse battery".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify_password("correct horse battery".into(), Some(h.clone())).await);
        assert!(!verify_password("wrong".into(), Some(h)).await);
        assert!(!verify_password("anything".into(), None).await);
    }

    #[test]
    fn random_tokens_carry_256_bits() {
        let t = random_token("p_");
        assert_eq!(t.len(), 2 + 43);
        assert_ne!(t, random_token("p_"));
    }
}
