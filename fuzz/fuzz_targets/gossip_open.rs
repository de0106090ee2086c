//! Fuzzes the gossip receive path: arbitrary datagrams must never open (nor panic), and a sealed
//! message must open to itself once, and never after any one byte of it is changed.
#![no_main]

use everynode::membership::seal::{GossipKey, Opener, Sealer};
use libfuzzer_sys::fuzz_target;

const KEY: [u8; 32] = [42; 32];
const NOW: u64 = 1_700_000_000_000;

fuzz_target!(|data: &[u8]| {
    let mut opener = Opener::new(GossipKey::new(&KEY));
    assert!(opener.open(data, NOW).is_err(), "a datagram nobody sealed opened");

    let mut sealer = Sealer::with_sender(&GossipKey::new(&KEY), [7; 16]);
    let datagrams = sealer.seal(data, NOW);
    let mut opened = None;
    for d in &datagrams {
        opened = opener.open(d, NOW).expect("a sealed datagram opens");
    }
    assert_eq!(opened.as_deref(), Some(data));
    for d in &datagrams {
        assert!(opener.open(d, NOW).is_err(), "a replay opened");
    }

    let mut sealer = Sealer::with_sender(&GossipKey::new(&KEY), [8; 16]);
    let mut d = sealer.seal(data, NOW).remove(0);
    let at = data.iter().fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(*b as usize)) % d.len();
    d[at] ^= 1 << (data.len() % 8);
    let mut fresh = Opener::new(GossipKey::new(&KEY));
    assert!(!matches!(fresh.open(&d, NOW), Ok(Some(_))), "a changed datagram opened");
});
