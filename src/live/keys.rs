//! Stream keys: the secret a publisher (OBS, ffmpeg, Jibri, a WHIP client) presents.
//!
//! Shape: `wmk_` followed by 43 characters of `[A-Za-z0-9]` drawn uniformly from the OS-seeded
//! CSPRNG: 43 × log2(62) ≈ 256 bits. Base62 rather than base64 so that the key survives every
//! URL, shell and double-click selection untouched; the prefix makes a leaked key recognisable
//! to secret scanners and to people.
//!
//! Keys are stored only as their SHA-256 ([`StreamKeyHash`]): with 256 bits of entropy a fast
//! hash cannot be reversed by brute force, so no slow KDF is needed and lookups stay one indexed
//! query. After the lookup the hashes are compared in constant time.

use std::fmt;

use rand::{Rng, distr::Alphanumeric};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::users::InvalidInput;

/// A well-formed stream key. Exists only if it has the documented shape; `Debug` shows the
/// display prefix only, and there is deliberately no `Display`: use [`StreamKey::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct StreamKey(String);

impl StreamKey {
    /// Every key starts with this.
    pub const PREFIX: &'static str = "wmk_";
    /// Random base62 characters after the prefix.
    pub const SECRET_CHARS: usize = 43;
    /// Total length in bytes (all ASCII).
    pub const LEN: usize = Self::PREFIX.len() + Self::SECRET_CHARS;
    /// Characters kept in the database and shown in lists to tell keys apart (`wmk_` + 4).
    pub const DISPLAY_PREFIX_LEN: usize = Self::PREFIX.len() + 4;

    /// A new random key.
    pub fn generate() -> StreamKey {
        let mut s = String::with_capacity(Self::LEN);
        s.push_str(Self::PREFIX);
        // `Alphanumeric` samples [A-Za-z0-9] uniformly (rejection sampling, no modulo bias).
        s.extend(
            rand::rng()
                .sample_iter(Alphanumeric)
                .take(Self::SECRET_CHARS)
                .map(char::from),
        );
        StreamKey(s)
    }

    /// Parse a key presented by a client (RTMP stream name, WHIP bearer token). Surrounding
    /// whitespace is not tolerated: a key is machine-copied, and a lenient parser would make two
    /// spellings of one secret.
    pub fn parse(s: &str) -> Result<StreamKey, InvalidInput> {
        let bad = |reason| InvalidInput {
            field: "stream_key",
            reason,
        };
        if s.len() != Self::LEN {
            return Err(bad("must be 47 characters"));
        }
        let secret = s
            .strip_prefix(Self::PREFIX)
            .ok_or(bad("must start with wmk_"))?;
        if !secret.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(bad("must be wmk_ followed by letters and digits"));
        }
        Ok(StreamKey(s.to_string()))
    }

    /// The secret itself, for the one answer that shows it and for URLs built from it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The first characters (`wmk_` + 4), safe to store and display.
    pub fn display_prefix(&self) -> &str {
        &self.0[..Self::DISPLAY_PREFIX_LEN]
    }

    /// SHA-256 of the key's bytes: what the database stores and looks up.
    pub fn hash(&self) -> StreamKeyHash {
        StreamKeyHash(Sha256::digest(self.0.as_bytes()).into())
    }
}

impl TryFrom<&str> for StreamKey {
    type Error = InvalidInput;
    fn try_from(s: &str) -> Result<StreamKey, InvalidInput> {
        StreamKey::parse(s)
    }
}

impl fmt::Debug for StreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamKey({}…<redacted>)", self.display_prefix())
    }
}

/// SHA-256 of a stream key, as stored in `live_streams.stream_key_hash`.
#[derive(Clone, Copy)]
pub struct StreamKeyHash(pub [u8; 32]);

impl StreamKeyHash {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Constant-time comparison with a stored hash (any length; a wrong length is unequal).
    pub fn matches(&self, stored: &[u8]) -> bool {
        self.0.as_slice().ct_eq(stored).into()
    }
}

impl fmt::Debug for StreamKeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StreamKeyHash(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_the_documented_shape_and_differ() {
        let a = StreamKey::generate();
        let b = StreamKey::generate();
        assert_eq!(a.expose().len(), StreamKey::LEN);
        assert!(a.expose().starts_with("wmk_"));
        assert!(a.expose()[4..].bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
        assert_eq!(StreamKey::parse(a.expose()).unwrap(), a);
    }

    #[test]
    fn malformed_keys_are_refused_at_the_edge() {
        let good = StreamKey::generate();
        let secret = &good.expose()[4..];
        for bad in [
            String::new(),
            "wmk_".into(),
            format!("xmk_{secret}"),
            format!("wmk_{}", &secret[1..]),
            format!("wmk_{secret}A"),
            format!("wmk_{}-", &secret[1..]),
            format!("wmk_{}é", &secret[2..]),
            format!(" wmk_{}", &secret[1..]),
        ] {
            let err = StreamKey::parse(&bad).unwrap_err();
            assert_eq!(err.field, "stream_key", "{bad:?}");
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let k = StreamKey::generate();
        let shown = format!("{k:?}");
        assert!(!shown.contains(&k.expose()[8..]), "{shown}");
        assert!(shown.contains(k.display_prefix()));
    }

    #[test]
    fn hashes_compare_in_constant_time_and_by_value() {
        let k = StreamKey::generate();
        let h = k.hash();
        assert!(h.matches(k.hash().as_bytes()));
        assert!(!h.matches(StreamKey::generate().hash().as_bytes()));
        assert!(!h.matches(&h.as_bytes()[..31]));
        // The stored value is the plain SHA-256 of the key's text.
        assert_eq!(
            hex::encode(h.as_bytes()),
            hex::encode(Sha256::digest(k.expose().as_bytes()))
        );
    }
}
