//! Publish tokens: short-lived credentials that open one live stream for publishing, so that a
//! signed-in teacher can go live from the browser (WHIP) without ever seeing or replacing the
//! stream key that OBS or Jibri keeps using.
//!
//! Shape: `wmpub.<stream id, 32 hex>.<expires unix s>.<base64url HMAC>` — the HMAC is the
//! playback signer's over `publish/<stream id>` (same key, another resource, so a playback
//! token can never pass as a publish token). Accepted wherever a stream key is (WHIP bearer,
//! RTMP stream name) until it expires; a publish already running is not cut at expiry.

use time::OffsetDateTime;
use uuid::Uuid;

use crate::playback::{PlaybackSigner, TokenCheck};

pub const PREFIX: &str = "wmpub.";

fn resource(stream: Uuid) -> String {
    format!("publish/{}", stream.simple())
}

pub fn sign(signer: &PlaybackSigner, stream: Uuid, expires: OffsetDateTime) -> String {
    format!(
        "{PREFIX}{}.{}",
        stream.simple(),
        signer.sign(&resource(stream), expires)
    )
}

/// The stream a valid, unexpired publish token opens; None for anything else (a stream key
/// included: callers try that next).
pub fn verify(signer: &PlaybackSigner, token: &str, now: OffsetDateTime) -> Option<Uuid> {
    let rest = token.strip_prefix(PREFIX)?;
    let (id, signed) = rest.split_once('.')?;
    let id = Uuid::try_parse(id).ok()?;
    (signer.verify(&resource(id), Some(signed), now) == TokenCheck::Valid).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[test]
    fn a_publish_token_opens_its_stream_until_it_expires() {
        let signer = PlaybackSigner::new(&Secret::new("k".repeat(32)));
        let id = Uuid::now_v7();
        let now = OffsetDateTime::now_utc();
        let token = sign(&signer, id, now + time::Duration::minutes(5));
        assert_eq!(verify(&signer, &token, now), Some(id));
        assert_eq!(
            verify(&signer, &token, now + time::Duration::minutes(6)),
            None
        );
        let other = Uuid::now_v7();
        let forged = token.replace(&id.simple().to_string(), &other.simple().to_string());
        assert_eq!(verify(&signer, &forged, now), None);
        // A playback token of the same stream is not a publish token.
        let playback = signer.sign(&format!("live/{id}"), now + time::Duration::minutes(5));
        assert_eq!(
            verify(&signer, &format!("{PREFIX}{}.{playback}", id.simple()), now),
            None
        );
    }
}
