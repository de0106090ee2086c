//! Node-to-node HTTP authentication: an HMAC over each request (time, nonce, method, path, body) and over its answer, keyed from the cluster secret.
//!
//! Raft RPCs, forwarded writes and store copies carry the cluster's state, so both directions
//! are signed: a request without a valid signature is refused, and an answer without one is
//! ignored (a host on the path cannot hand a node a forged store). A request is accepted once
//! within [`WINDOW_MS`] of its time stamp; its nonce is remembered for that long, so a captured
//! request cannot be replayed.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use ring::{digest, hmac};

use super::{hex, unhex};

/// Request header: `v1 TIME_MS NONCE MAC`.
pub const REQUEST_HEADER: &str = "x-everynode-node";
/// Answer header: the MAC of the answer, bound to the request's nonce.
pub const ANSWER_HEADER: &str = "x-everynode-node-answer";
/// How far a request's time may be from the receiver's clock (hosts are expected to run NTP).
pub const WINDOW_MS: u64 = 60_000;
/// Nonces remembered at most; at the fastest normal pace (Raft heartbeats) a node sees far fewer
/// within one window, so only a flood by a key holder could push old nonces out.
const MAX_SEEN: usize = 200_000;

/// Why a node-to-node request or answer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeAuthError {
    /// No signature at all: not a node of this cluster (or an old version).
    #[error("no node signature (header {REQUEST_HEADER}); only nodes of this cluster may call node-to-node endpoints")]
    Missing,
    /// The header does not parse.
    #[error("malformed node signature header {REQUEST_HEADER}")]
    Malformed,
    /// The time stamp is outside the window.
    #[error("the node signature is {skew_secs} s away from this node's clock (at most {} s allowed); check that NTP runs on both hosts", WINDOW_MS / 1000)]
    Stale { skew_secs: u64 },
    /// The MAC does not match: the caller does not hold the cluster secret, or the message was changed.
    #[error("bad node signature: the caller does not hold this cluster's secret (check --cluster-secret-file on both nodes)")]
    Forged,
    /// The nonce was seen before.
    #[error("replayed node request (its nonce was already used)")]
    Replayed,
}

/// Signs and checks node-to-node messages with the cluster's node key.
pub struct NodeAuth {
    key: hmac::Key,
    /// Nonces accepted within the window, oldest first, for replay refusal.
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    order: VecDeque<(u64, [u8; 16])>,
    set: HashSet<[u8; 16]>,
}

/// A signed request: the header value to send and the nonce its answer is bound to.
pub struct SignedRequest {
    pub header: String,
    pub nonce: [u8; 16],
}

impl NodeAuth {
    pub fn new(key: &[u8; 32]) -> NodeAuth {
        NodeAuth {
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
            seen: Mutex::new(Seen::default()),
        }
    }

    fn request_message(time_ms: u64, nonce: &[u8; 16], method: &str, path: &str, body: &[u8]) -> Vec<u8> {
        let mut msg = format!(
            "everynode node request v1\n{time_ms}\n{}\n{}\n{path}\n",
            hex(nonce),
            method.to_ascii_uppercase()
        )
        .into_bytes();
        msg.extend_from_slice(digest::digest(&digest::SHA256, body).as_ref());
        msg
    }

    fn answer_message(nonce: &[u8; 16], status: u16, body: &[u8]) -> Vec<u8> {
        let mut msg = format!("everynode node answer v1\n{}\n{status}\n", hex(nonce)).into_bytes();
        msg.extend_from_slice(digest::digest(&digest::SHA256, body).as_ref());
        msg
    }

    /// Signs a request to `path` (with its query) carrying `body`.
    pub fn sign_request(&self, method: &str, path: &str, body: &[u8], now_ms: u64) -> SignedRequest {
        let nonce = super::random_bytes::<16>();
        let tag = hmac::sign(
            &self.key,
            &Self::request_message(now_ms, &nonce, method, path, body),
        );
        SignedRequest {
            header: format!("v1 {now_ms} {} {}", hex(&nonce), hex(tag.as_ref())),
            nonce,
        }
    }

    /// Checks a request's signature, freshness and nonce; returns the nonce to bind the answer to.
    pub fn verify_request(
        &self,
        header: Option<&str>,
        method: &str,
        path: &str,
        body: &[u8],
        now_ms: u64,
    ) -> Result<[u8; 16], NodeAuthError> {
        let header = header.ok_or(NodeAuthError::Missing)?;
        let mut parts = header.split(' ');
        let (Some("v1"), Some(time), Some(nonce), Some(mac), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(NodeAuthError::Malformed);
        };
        let time_ms: u64 = time.parse().map_err(|_| NodeAuthError::Malformed)?;
        let nonce: [u8; 16] = unhex(nonce)
            .and_then(|n| n.try_into().ok())
            .ok_or(NodeAuthError::Malformed)?;
        let mac = unhex(mac).ok_or(NodeAuthError::Malformed)?;
        hmac::verify(
            &self.key,
            &Self::request_message(time_ms, &nonce, method, path, body),
            &mac,
        )
        .map_err(|_| NodeAuthError::Forged)?;
        let skew = now_ms.abs_diff(time_ms);
        if skew > WINDOW_MS {
            return Err(NodeAuthError::Stale {
                skew_secs: skew / 1000,
            });
        }
        let mut seen = self.seen.lock().expect("nonce cache lock poisoned");
        while let Some((t, n)) = seen.order.front().copied() {
            if t + WINDOW_MS < now_ms || seen.order.len() >= MAX_SEEN {
                seen.order.pop_front();
                seen.set.remove(&n);
            } else {
                break;
            }
        }
        if !seen.set.insert(nonce) {
            return Err(NodeAuthError::Replayed);
        }
        seen.order.push_back((time_ms, nonce));
        Ok(nonce)
    }

    /// The answer header for a request with `nonce`.
    pub fn sign_answer(&self, nonce: &[u8; 16], status: u16, body: &[u8]) -> String {
        hex(hmac::sign(&self.key, &Self::answer_message(nonce, status, body)).as_ref())
    }

    /// Checks an answer to the request that carried `nonce`.
    pub fn verify_answer(
        &self,
        nonce: &[u8; 16],
        status: u16,
        header: Option<&str>,
        body: &[u8],
    ) -> Result<(), NodeAuthError> {
        let mac = unhex(header.ok_or(NodeAuthError::Missing)?).ok_or(NodeAuthError::Malformed)?;
        hmac::verify(&self.key, &Self::answer_message(nonce, status, body), &mac)
            .map_err(|_| NodeAuthError::Forged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000_000;

    #[test]
    fn a_signed_request_passes_once_and_only_unchanged() {
        let auth = NodeAuth::new(&[7; 32]);
        let s = auth.sign_request("POST", "/raft/vote", b"{}", NOW);
        let h = Some(s.header.as_str());
        assert_eq!(
            auth.verify_request(h, "POST", "/raft/vote", b"{}", NOW + 5),
            Ok(s.nonce)
        );
        assert_eq!(
            auth.verify_request(h, "POST", "/raft/vote", b"{}", NOW + 6),
            Err(NodeAuthError::Replayed)
        );
        let s = auth.sign_request("POST", "/raft/vote", b"{}", NOW);
        let h = Some(s.header.as_str());
        for (method, path, body) in [
            ("GET", "/raft/vote", &b"{}"[..]),
            ("POST", "/raft/append", b"{}"),
            ("POST", "/raft/vote", b"{ }"),
        ] {
            assert_eq!(
                auth.verify_request(h, method, path, body, NOW),
                Err(NodeAuthError::Forged),
                "{method} {path}"
            );
        }
    }

    #[test]
    fn strangers_old_and_malformed_requests_are_refused() {
        let ours = NodeAuth::new(&[7; 32]);
        let theirs = NodeAuth::new(&[8; 32]);
        let s = theirs.sign_request("GET", "/v1/internal/store", b"", NOW);
        assert_eq!(
            ours.verify_request(Some(&s.header), "GET", "/v1/internal/store", b"", NOW),
            Err(NodeAuthError::Forged)
        );
        let s = ours.sign_request("GET", "/v1/internal/store", b"", NOW - WINDOW_MS - 1000);
        assert!(matches!(
            ours.verify_request(Some(&s.header), "GET", "/v1/internal/store", b"", NOW),
            Err(NodeAuthError::Stale { skew_secs: 61 })
        ));
        assert_eq!(
            ours.verify_request(None, "GET", "/", b"", NOW),
            Err(NodeAuthError::Missing)
        );
        for junk in [
            "",
            "v1",
            "v2 1 00 00",
            "v1 x 00 00",
            "v1 1 0g 00",
            "v1 1 00 00 00",
        ] {
            assert_eq!(
                ours.verify_request(Some(junk), "GET", "/", b"", NOW),
                Err(NodeAuthError::Malformed),
                "{junk:?}"
            );
        }
    }

    #[test]
    fn answers_are_bound_to_their_request() {
        let auth = NodeAuth::new(&[7; 32]);
        let a = auth.sign_request("GET", "/v1/internal/store", b"", NOW);
        let b = auth.sign_request("GET", "/v1/internal/store", b"", NOW);
        let mac = auth.sign_answer(&a.nonce, 200, b"{\"version\":3}");
        assert!(auth
            .verify_answer(&a.nonce, 200, Some(&mac), b"{\"version\":3}")
            .is_ok());
        assert!(auth
            .verify_answer(&b.nonce, 200, Some(&mac), b"{\"version\":3}")
            .is_err());
        assert!(auth
            .verify_answer(&a.nonce, 200, Some(&mac), b"{\"version\":9}")
            .is_err());
        assert!(auth
            .verify_answer(&a.nonce, 500, Some(&mac), b"{\"version\":3}")
            .is_err());
        assert!(auth
            .verify_answer(&a.nonce, 200, None, b"{\"version\":3}")
            .is_err());
    }
}
