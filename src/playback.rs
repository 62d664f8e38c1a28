//! Signed, expiring playback tokens for private media (`?token=` on HLS playlists and
//! segments, MP4 downloads).
//!
//! A token is `<expires unix s>.<base64url HMAC-SHA256(key, "<resource>\n<expires>")>`, where
//! the resource names what it opens (`live/<live_stream_id>`, later `vod/<recording_id>`). It
//! is checked with a constant-time compare on every playlist and segment request; nothing is
//! stored, so checking costs one HMAC and no round trip.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use time::OffsetDateTime;

use crate::config::Secret;

type HmacSha256 = Hmac<Sha256>;
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Signs and checks playback tokens.
#[derive(Clone)]
pub struct PlaybackSigner {
    key: Vec<u8>,
}

/// Why a token was refused: a missing one is 401, a bad or expired one 403.
#[derive(Debug, PartialEq, Eq)]
pub enum TokenCheck {
    Valid,
    Missing,
    Invalid,
    Expired,
}

impl PlaybackSigner {
    /// An empty secret means a random key: tokens then die with the process.
    pub fn new(secret: &Secret) -> PlaybackSigner {
        let key = if secret.is_empty() {
            tracing::warn!(
                "playback.secret is empty: using a random key, playback tokens will not survive a restart"
            );
            crate::auth::random_bytes(32)
        } else {
            secret.expose().as_bytes().to_vec()
        };
        PlaybackSigner { key }
    }

    fn mac(&self, resource: &str, expires: i64) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(resource.as_bytes());
        mac.update(b"\n");
        mac.update(expires.to_string().as_bytes());
        mac
    }

    /// A token for `resource` valid until `expires`.
    pub fn sign(&self, resource: &str, expires: OffsetDateTime) -> String {
        let exp = expires.unix_timestamp();
        let sig = self.mac(resource, exp).finalize().into_bytes();
        format!("{exp}.{}", B64.encode(sig))
    }

    /// Check a token for `resource` at `now`.
    pub fn verify(&self, resource: &str, token: Option<&str>, now: OffsetDateTime) -> TokenCheck {
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return TokenCheck::Missing;
        };
        if token.len() > 128 {
            return TokenCheck::Invalid;
        }
        let Some((exp, sig)) = token.split_once('.') else {
            return TokenCheck::Invalid;
        };
        let (Ok(exp), Ok(sig)) = (exp.parse::<i64>(), B64.decode(sig)) else {
            return TokenCheck::Invalid;
        };
        if self.mac(resource, exp).verify_slice(&sig).is_err() {
            return TokenCheck::Invalid;
        }
        if exp < now.unix_timestamp() {
            TokenCheck::Expired
        } else {
            TokenCheck::Valid
        }
    }
}

/// The resource name of a live stream's playback.
pub fn live_resource(stream_id: uuid::Uuid) -> String {
    format!("live/{stream_id}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;

    #[test]
    fn tokens_open_their_resource_until_they_expire() {
        let s = PlaybackSigner::new(&Secret::new("k".repeat(32)));
        let now = OffsetDateTime::now_utc();
        let t = s.sign("live/a", now + Duration::minutes(5));
        assert_eq!(s.verify("live/a", Some(&t), now), TokenCheck::Valid);
        assert_eq!(s.verify("live/b", Some(&t), now), TokenCheck::Invalid);
        assert_eq!(
            s.verify("live/a", Some(&t), now + Duration::minutes(6)),
            TokenCheck::Expired
        );
        assert_eq!(s.verify("live/a", None, now), TokenCheck::Missing);
        // A later expiry with the same signature is refused.
        let (_, sig) = t.split_once('.').unwrap();
        let forged = format!("{}.{sig}", (now + Duration::days(9)).unix_timestamp());
        assert_eq!(s.verify("live/a", Some(&forged), now), TokenCheck::Invalid);
        let other = PlaybackSigner::new(&Secret::new("x".repeat(32)));
        assert_eq!(other.verify("live/a", Some(&t), now), TokenCheck::Invalid);
        assert_eq!(
            s.verify("live/a", Some("garbage"), now),
            TokenCheck::Invalid
        );
    }
}
