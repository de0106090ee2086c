//! Secret data sealed at rest: ChaCha20-Poly1305 under a key derived from the cluster secret, so a store copy on disk or on the wire shows key names and sizes, never values.
//!
//! The nonce is an HMAC of the object's identity and the plaintext (a synthetic IV): the same
//! data sealed twice gives the same bytes, so re-applying an unchanged Secret is `unchanged`
//! and every replica stores identical records; two different plaintexts never share a nonce.
//! The identity (`namespace/name`) is the associated data, so a sealed value moved to another
//! Secret does not open.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::hmac;
use thiserror::Error;

/// Seals and opens Secret data with the cluster's at-rest key.
#[derive(Clone)]
pub struct SecretBox {
    seal: LessSafeKey,
    nonce: hmac::Key,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

/// A sealed value that does not open: another cluster's secret, or damaged bytes.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("cannot open the sealed data of secret {identity}: it was sealed under another cluster secret or is damaged")]
pub struct OpenError {
    pub identity: String,
}

impl SecretBox {
    pub fn new(key: &[u8; 32]) -> SecretBox {
        // Separate keys for the cipher and the nonce derivation, both from the one at-rest key.
        let sub = |label: &[u8]| {
            let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), label);
            let mut out = [0u8; 32];
            out.copy_from_slice(&tag.as_ref()[..32]);
            out
        };
        let cipher = UnboundKey::new(&CHACHA20_POLY1305, &sub(b"cipher"))
            .expect("a 32-byte key fits ChaCha20-Poly1305");
        SecretBox {
            seal: LessSafeKey::new(cipher),
            nonce: hmac::Key::new(hmac::HMAC_SHA256, &sub(b"nonce")),
        }
    }

    /// Seals `plaintext` for the object `identity`; base64 of nonce and ciphertext.
    pub fn seal(&self, identity: &str, plaintext: &[u8]) -> String {
        let mut ctx = hmac::Context::with_key(&self.nonce);
        ctx.update(&(identity.len() as u64).to_be_bytes());
        ctx.update(identity.as_bytes());
        ctx.update(plaintext);
        let tag = ctx.sign();
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&tag.as_ref()[..NONCE_LEN]);
        let mut buf = plaintext.to_vec();
        self.seal
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(identity.as_bytes()),
                &mut buf,
            )
            .expect("ChaCha20-Poly1305 seals any message below 256 GiB");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        STANDARD.encode(out)
    }

    /// Opens what [`SecretBox::seal`] made for the same `identity`.
    pub fn open(&self, identity: &str, sealed: &str) -> Result<Vec<u8>, OpenError> {
        let err = || OpenError {
            identity: identity.to_string(),
        };
        let bytes = STANDARD.decode(sealed).map_err(|_| err())?;
        if bytes.len() < NONCE_LEN {
            return Err(err());
        }
        let (nonce, rest) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| err())?;
        let mut buf = rest.to_vec();
        let plain = self
            .seal
            .open_in_place(nonce, Aad::from(identity.as_bytes()), &mut buf)
            .map_err(|_| err())?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealing_is_deterministic_and_opens_for_the_same_identity_only() {
        let b = SecretBox::new(&[7; 32]);
        let a1 = b.seal("kube-system/creds", b"token=hunter2");
        let a2 = b.seal("kube-system/creds", b"token=hunter2");
        assert_eq!(a1, a2, "same data seals to the same bytes");
        assert_ne!(a1, b.seal("kube-system/creds", b"token=hunter3"));
        assert_ne!(a1, b.seal("default/creds", b"token=hunter2"));
        assert!(!a1.contains("hunter2"));
        assert_eq!(b.open("kube-system/creds", &a1).unwrap(), b"token=hunter2");
        assert!(b.open("default/creds", &a1).is_err(), "moved to another secret");
    }

    #[test]
    fn another_key_or_damaged_bytes_do_not_open() {
        let b = SecretBox::new(&[7; 32]);
        let other = SecretBox::new(&[8; 32]);
        let sealed = b.seal("ns/s", b"v");
        assert!(other.open("ns/s", &sealed).is_err());
        let mut bytes = STANDARD.decode(&sealed).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(b.open("ns/s", &STANDARD.encode(bytes)).is_err());
        assert!(b.open("ns/s", "!!").is_err());
        assert!(b.open("ns/s", "").is_err());
    }
}
