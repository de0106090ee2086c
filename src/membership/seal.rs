//! Sealed gossip datagrams: ChaCha20-Poly1305 under per-sender keys derived from the cluster's gossip key, with freshness and replay checks and at most two fragments per message.
//!
//! Wire format of one datagram (all integers big-endian):
//! ```text
//! version (1) | fragment (1: index << 4 | count) | sender (16) | counter (8) | time_ms (8) | ciphertext | tag (16)
//! ```
//! The whole header is the AEAD's associated data, so none of it can be changed. Each sender
//! (one per gossip socket, i.e. per agent start) draws a random 16-byte id and seals under its
//! own key, HKDF(gossip key, sender id), with its counter as the nonce: nonces never repeat
//! under one key without any coordination between nodes. A receiver accepts a counter once
//! (a 64-wide sliding window per sender, as in IPsec) and only within [`FRESHNESS_MS`] of its
//! own clock, so a packet replayed after the receiver restarted (and forgot its windows) is
//! still refused once it is older than that.
//!
//! chitchat fills datagrams up to 65 507 bytes (the largest UDP payload; IP fragments them at
//! the link MTU). The [`OVERHEAD`] added here would push such a datagram over that limit, so a
//! message larger than [`MAX_FRAGMENT`] is split in two sealed fragments and reassembled on the
//! other side; only authenticated fragments are ever buffered.

use std::collections::HashMap;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use ring::hkdf;

/// Format version, first byte of every datagram.
pub const VERSION: u8 = 1;
/// Bytes before the ciphertext.
pub const HEADER_LEN: usize = 1 + 1 + 16 + 8 + 8;
/// The AEAD tag after the ciphertext.
pub const TAG_LEN: usize = 16;
/// Bytes a sealed datagram adds to the message it carries.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// The largest UDP payload over IPv4, which chitchat sizes its messages to.
pub const MAX_DATAGRAM: usize = 65_507;
/// The largest message part one datagram carries.
pub const MAX_FRAGMENT: usize = MAX_DATAGRAM - OVERHEAD;
/// Fragments per message: chitchat's messages never exceed [`MAX_DATAGRAM`], so two suffice.
pub const MAX_FRAGMENTS: usize = 2;
/// How far a datagram's time may be from the receiver's clock (hosts are expected to run NTP).
pub const FRESHNESS_MS: u64 = 60_000;
/// Senders whose replay windows are kept; the least recently heard is forgotten beyond this.
/// Only authenticated senders take a place, so only key holders can churn it.
const MAX_SENDERS: usize = 4096;
/// Incomplete messages kept; a fragment older than [`FRAGMENT_TTL_MS`] is dropped.
const MAX_PARTIAL: usize = 64;
const FRAGMENT_TTL_MS: u64 = 5_000;

/// Why a datagram was dropped; each reason has its own counter in `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Reject {
    /// Too short, unknown version or impossible fragment numbers.
    Malformed,
    /// The tag does not verify: wrong key, no key, or altered bytes.
    Unauthentic,
    /// Authentic, but this counter was already accepted.
    Replayed,
    /// Authentic, but its time is too far from ours.
    Stale,
}

impl Reject {
    pub fn as_str(self) -> &'static str {
        match self {
            Reject::Malformed => "malformed",
            Reject::Unauthentic => "unauthentic",
            Reject::Replayed => "replayed",
            Reject::Stale => "stale",
        }
    }
}

/// The cluster's gossip key, from which every sender's key is derived.
pub struct GossipKey(hkdf::Prk);

impl GossipKey {
    pub fn new(key: &[u8; 32]) -> GossipKey {
        GossipKey(hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, key))
    }

    fn sender_key(&self, sender: &[u8; 16]) -> LessSafeKey {
        let info: [&[u8]; 2] = [b"everynode gossip sender v1", sender];
        let mut bytes = [0u8; 32];
        self.0
            .expand(&info, &CHACHA20_POLY1305)
            .and_then(|okm| okm.fill(&mut bytes))
            .expect("a ChaCha20-Poly1305 key is a valid HKDF output length");
        LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &bytes).expect("32-byte key"))
    }
}

fn nonce(counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

/// Seals this node's outgoing messages.
pub struct Sealer {
    key: LessSafeKey,
    sender: [u8; 16],
    /// Next nonce; never reused under this sender's key.
    counter: u64,
}

impl Sealer {
    /// A new sender with a fresh random id.
    pub fn new(key: &GossipKey) -> Sealer {
        Sealer::with_sender(key, crate::security::random_bytes::<16>())
    }

    /// A sender with a chosen id (tests and fuzzing only: a reused id reuses nonces).
    pub fn with_sender(key: &GossipKey, sender: [u8; 16]) -> Sealer {
        Sealer {
            key: key.sender_key(&sender),
            sender,
            counter: 0,
        }
    }

    /// The datagrams carrying `message`: one, or two when it does not fit in one.
    pub fn seal(&mut self, message: &[u8], now_ms: u64) -> Vec<Vec<u8>> {
        let parts: Vec<&[u8]> = if message.is_empty() {
            vec![message]
        } else {
            message.chunks(MAX_FRAGMENT).collect()
        };
        let count = parts.len() as u8;
        parts
            .into_iter()
            .enumerate()
            .map(|(index, part)| {
                let counter = self.counter;
                self.counter += 1;
                let mut out = Vec::with_capacity(part.len() + OVERHEAD);
                out.push(VERSION);
                out.push(((index as u8) << 4) | count);
                out.extend_from_slice(&self.sender);
                out.extend_from_slice(&counter.to_be_bytes());
                out.extend_from_slice(&now_ms.to_be_bytes());
                let mut body = part.to_vec();
                self.key
                    .seal_in_place_append_tag(nonce(counter), Aad::from(&out[..HEADER_LEN]), &mut body)
                    .expect("a gossip message is far below the AEAD's size limit");
                out.extend_from_slice(&body);
                out
            })
            .collect()
    }
}

/// What the receiver remembers of one sender.
struct SenderState {
    key: LessSafeKey,
    /// Highest counter accepted.
    highest: u64,
    /// Bit `i` set: counter `highest - i` was accepted.
    window: u64,
    last_heard_ms: u64,
}

impl SenderState {
    /// Accepts `counter` once; false for a counter seen before or too old for the window.
    fn accept(&mut self, counter: u64) -> bool {
        if counter > self.highest {
            let shift = counter - self.highest;
            self.window = if shift >= 64 { 0 } else { self.window << shift };
            self.window |= 1;
            self.highest = counter;
            return true;
        }
        let age = self.highest - counter;
        if age >= 64 || self.window & (1 << age) != 0 {
            return false;
        }
        self.window |= 1 << age;
        true
    }
}

/// A message waiting for its other fragments.
struct Partial {
    parts: Vec<Option<Vec<u8>>>,
    first_ms: u64,
}

/// Opens incoming datagrams; keeps the replay windows and the fragments waiting.
pub struct Opener {
    key: GossipKey,
    senders: HashMap<[u8; 16], SenderState>,
    /// By sender and the counter of the message's first fragment.
    partial: HashMap<([u8; 16], u64), Partial>,
}

impl Opener {
    pub fn new(key: GossipKey) -> Opener {
        Opener {
            key,
            senders: HashMap::new(),
            partial: HashMap::new(),
        }
    }

    /// The message a datagram completes (`Ok(None)` while fragments are missing), or why it
    /// was dropped. Nothing is remembered from a datagram that does not authenticate.
    pub fn open(&mut self, datagram: &[u8], now_ms: u64) -> Result<Option<Vec<u8>>, Reject> {
        if datagram.len() < OVERHEAD || datagram[0] != VERSION {
            return Err(Reject::Malformed);
        }
        let (header, sealed) = datagram.split_at(HEADER_LEN);
        let index = (header[1] >> 4) as usize;
        let count = (header[1] & 0x0f) as usize;
        if count == 0 || count > MAX_FRAGMENTS || index >= count {
            return Err(Reject::Malformed);
        }
        let sender: [u8; 16] = header[2..18].try_into().expect("16 bytes");
        let counter = u64::from_be_bytes(header[18..26].try_into().expect("8 bytes"));
        let time_ms = u64::from_be_bytes(header[26..34].try_into().expect("8 bytes"));

        let derived;
        let key = match self.senders.get(&sender) {
            Some(state) => &state.key,
            None => {
                derived = self.key.sender_key(&sender);
                &derived
            }
        };
        let mut body = sealed.to_vec();
        let plain_len = key
            .open_in_place(nonce(counter), Aad::from(header), &mut body)
            .map_err(|_| Reject::Unauthentic)?
            .len();
        body.truncate(plain_len);

        if now_ms.abs_diff(time_ms) > FRESHNESS_MS {
            return Err(Reject::Stale);
        }
        if !self.senders.contains_key(&sender) {
            if self.senders.len() >= MAX_SENDERS {
                let oldest = self
                    .senders
                    .iter()
                    .min_by_key(|(_, s)| s.last_heard_ms)
                    .map(|(id, _)| *id)
                    .expect("the map is full, so not empty");
                self.senders.remove(&oldest);
            }
            let key = self.key.sender_key(&sender);
            // Starts one below the first counter seen, so that counter is accepted below.
            self.senders.insert(
                sender,
                SenderState {
                    key,
                    highest: counter.saturating_sub(1),
                    window: 0,
                    last_heard_ms: now_ms,
                },
            );
        }
        let state = self.senders.get_mut(&sender).expect("inserted above");
        if !state.accept(counter) {
            return Err(Reject::Replayed);
        }
        state.last_heard_ms = now_ms;

        if count == 1 {
            return Ok(Some(body));
        }
        self.partial
            .retain(|_, p| now_ms.saturating_sub(p.first_ms) <= FRAGMENT_TTL_MS);
        let id = (sender, counter - index as u64);
        if !self.partial.contains_key(&id) && self.partial.len() >= MAX_PARTIAL {
            let oldest = self
                .partial
                .iter()
                .min_by_key(|(_, p)| p.first_ms)
                .map(|(k, _)| *k)
                .expect("the map is full, so not empty");
            self.partial.remove(&oldest);
        }
        let entry = self.partial.entry(id).or_insert_with(|| Partial {
            parts: vec![None; count],
            first_ms: now_ms,
        });
        if entry.parts.len() != count {
            return Err(Reject::Malformed);
        }
        entry.parts[index] = Some(body);
        if entry.parts.iter().all(Option::is_some) {
            let parts = self.partial.remove(&id).expect("present").parts;
            return Ok(Some(parts.into_iter().flatten().flatten().collect()));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000_000;

    fn pair() -> (Sealer, Opener) {
        (
            Sealer::new(&GossipKey::new(&[1; 32])),
            Opener::new(GossipKey::new(&[1; 32])),
        )
    }

    #[test]
    fn a_sealed_message_opens_once_with_the_same_key_only() {
        let (mut s, mut o) = pair();
        let d = s.seal(b"hello", NOW);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].len(), 5 + OVERHEAD);
        assert_eq!(o.open(&d[0], NOW + 10), Ok(Some(b"hello".to_vec())));
        assert_eq!(o.open(&d[0], NOW + 20), Err(Reject::Replayed));
        let mut stranger = Opener::new(GossipKey::new(&[2; 32]));
        assert_eq!(
            stranger.open(&s.seal(b"x", NOW)[0], NOW),
            Err(Reject::Unauthentic)
        );
    }

    #[test]
    fn any_changed_byte_is_refused() {
        let (mut s, mut o) = pair();
        let d = s.seal(b"some gossip", NOW).remove(0);
        for i in 0..d.len() {
            let mut bad = d.clone();
            bad[i] ^= 0x01;
            let r = o.open(&bad, NOW);
            assert!(
                matches!(r, Err(Reject::Unauthentic | Reject::Malformed)),
                "byte {i}: {r:?}"
            );
        }
        assert_eq!(o.open(&d, NOW), Ok(Some(b"some gossip".to_vec())));
    }

    #[test]
    fn junk_and_truncations_are_refused() {
        let (mut s, mut o) = pair();
        let d = s.seal(b"abc", NOW).remove(0);
        for len in 0..d.len() {
            assert!(o.open(&d[..len], NOW).is_err(), "len {len}");
        }
        assert_eq!(o.open(&[0u8; 100], NOW), Err(Reject::Malformed));
        let mut plain = vec![VERSION, 0x01];
        plain.extend([0u8; 60]);
        assert_eq!(o.open(&plain, NOW), Err(Reject::Unauthentic));
    }

    #[test]
    fn old_and_future_packets_are_stale() {
        let (mut s, mut o) = pair();
        let old = s.seal(b"a", NOW - FRESHNESS_MS - 1).remove(0);
        assert_eq!(o.open(&old, NOW), Err(Reject::Stale));
        let future = s.seal(b"b", NOW + FRESHNESS_MS + 1).remove(0);
        assert_eq!(o.open(&future, NOW), Err(Reject::Stale));
        let fresh = s.seal(b"c", NOW).remove(0);
        assert_eq!(o.open(&fresh, NOW), Ok(Some(b"c".to_vec())));
    }

    #[test]
    fn out_of_order_packets_pass_once_within_the_window() {
        let (mut s, mut o) = pair();
        let d: Vec<Vec<u8>> = (0..100).map(|i| s.seal(&[i], NOW).remove(0)).collect();
        assert!(o.open(&d[70], NOW).unwrap().is_some());
        assert!(o.open(&d[99], NOW).unwrap().is_some());
        // 99 - 40 < 64: still in the window, accepted once.
        assert!(o.open(&d[40], NOW).unwrap().is_some());
        assert_eq!(o.open(&d[40], NOW), Err(Reject::Replayed));
        // 99 - 10 >= 64: too old to tell, refused.
        assert_eq!(o.open(&d[10], NOW), Err(Reject::Replayed));
    }

    #[test]
    fn the_largest_message_fits_in_two_datagrams_within_the_udp_limit() {
        let (mut s, mut o) = pair();
        let big: Vec<u8> = (0..MAX_DATAGRAM).map(|i| i as u8).collect();
        let d = s.seal(&big, NOW);
        assert_eq!(d.len(), 2);
        assert!(d.iter().all(|x| x.len() <= MAX_DATAGRAM));
        // The second fragment arriving first is kept until the first arrives.
        assert_eq!(o.open(&d[1], NOW), Ok(None));
        assert_eq!(o.open(&d[0], NOW), Ok(Some(big.clone())));
        let fits: Vec<u8> = vec![7; MAX_FRAGMENT];
        let d = s.seal(&fits, NOW);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].len(), MAX_DATAGRAM);
        assert_eq!(o.open(&d[0], NOW), Ok(Some(fits)));
    }
}
