//! Cluster security: the shared secret and the keys derived from it, node-to-node HTTP authentication, API tokens and TLS.
//!
//! # Layout
//! - [`secret`]: the cluster secret file (checked, or generated for a new cluster) and every key derived from it.
//! - [`at_rest`]: Secret data sealed in the store under a key derived from the cluster secret.
//! - [`node_auth`]: HMAC signatures on node-to-node HTTP requests and their answers, with a replay cache.
//! - [`peer`]: the HTTP client nodes use to talk to each other (signing, TLS trust).
//! - [`tls`]: loading the API certificate and serving the API over TLS.

pub mod at_rest;
pub mod node_auth;
pub mod peer;
pub mod secret;
pub mod tls;

/// Milliseconds since the Unix epoch; signatures and gossip packets carry it for freshness checks.
pub fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Lowercase hex, for tokens and signatures in headers and files.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Parses lowercase or uppercase hex; `None` on an odd length or a non-hex digit.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Compares secrets in time independent of where they differ, so response timing does not
/// reveal how much of a guessed token was right.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Fresh random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    use ring::rand::SecureRandom;
    let mut out = [0u8; N];
    ring::rand::SystemRandom::new()
        .fill(&mut out)
        .expect("the operating system's random source failed");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_rejects_junk() {
        assert_eq!(hex(&[0, 0xab, 0xff]), "00abff");
        assert_eq!(unhex("00abFF"), Some(vec![0, 0xab, 0xff]));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
