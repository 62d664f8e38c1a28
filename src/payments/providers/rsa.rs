//! RSA-SHA256 (PKCS#1 v1.5) for outbound calls, shared by Alipay (RSA2 requests and answers)
//! and WeChat Pay v3 (the `Authorization` header and signed answers): the merchant's private
//! key, signing with it, and checking a provider's signature. Callbacks use
//! `rsa_sha256_verify` in [`super`] instead, which reports a [`super::VerifyError`].

use aws_lc_rs::{rand::SystemRandom, signature};
use base64::{Engine, engine::general_purpose::STANDARD as B64};

use crate::payments::gateway::GatewayError;

/// An RSA private key given as PEM or base64 DER, PKCS#8 or PKCS#1 (Alipay's key tool and
/// WeChat's `apiclient_key.pem` give either).
pub fn decode_private_key(text: &str) -> Result<signature::RsaKeyPair, GatewayError> {
    let body: String = text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .join("");
    let der = B64
        .decode(body.trim())
        .map_err(|_| GatewayError::Key("private key is not base64 DER or PEM".into()))?;
    signature::RsaKeyPair::from_pkcs8(&der)
        .or_else(|_| signature::RsaKeyPair::from_der(&der))
        .map_err(|e| GatewayError::Key(format!("not an RSA private key: {e}")))
}

pub(crate) fn rsa_sign(key: &signature::RsaKeyPair, msg: &[u8]) -> Result<String, GatewayError> {
    let mut sig = vec![0; key.public_modulus_len()];
    key.sign(
        &signature::RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        msg,
        &mut sig,
    )
    .map_err(|_| GatewayError::Key("signing failed".into()))?;
    Ok(B64.encode(sig))
}

pub(crate) fn rsa_verify(public_der: &[u8], msg: &[u8], sig_b64: &str) -> Result<(), GatewayError> {
    let sig = B64
        .decode(sig_b64.trim())
        .map_err(|_| GatewayError::BadSignature)?;
    signature::UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, public_der)
        .verify(msg, &sig)
        .map_err(|_| GatewayError::BadSignature)
}

/// A fresh 2048-bit key pair and its public key (DER), for the providers' tests.
#[cfg(test)]
pub(crate) fn keypair() -> (signature::RsaKeyPair, Vec<u8>) {
    use aws_lc_rs::{encoding::AsDer, rsa::KeySize, signature::KeyPair};
    let k = signature::RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let public = k.public_key().as_der().unwrap().as_ref().to_vec();
    (k, public)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::{encoding::AsDer, rsa::KeySize};

    #[test]
    fn private_keys_load_from_pkcs8_pem() {
        let k = signature::RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
        let der = k.as_der().unwrap();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            B64.encode(der.as_ref())
        );
        decode_private_key(&pem).unwrap();
        assert!(decode_private_key("not a key").is_err());
    }
}
