//! Spreads the committed store to every node: each node gossips the version it holds and fetches a newer copy over HTTP from a peer that has it.
//!
//! Only a version number rides in gossip (values near 64 KB never replicate in chitchat), so the
//! store can grow freely; a new version reaches every node in O(log N) gossip rounds plus one
//! fetch per node, from a random holder so no single node serves the whole fleet.

use std::time::Duration;

use reqwest::Method;
use tracing::{debug, info, warn};

use super::replica::{Replica, Versioned};
use crate::membership::{keys, MemberState, Membership};
use crate::security::peer::PeerHttp;

/// A store copy is small; a peer that takes longer is skipped for another.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The path every node serves its store copy on.
pub const STORE_PATH: &str = "/v1/internal/store";

/// Picks who to fetch from: the alive peers holding the highest version above ours.
pub fn pick_source(own_version: u64, peers: &[(String, u64)], salt: u64) -> Option<&str> {
    let best = peers.iter().map(|(_, v)| *v).max().filter(|v| *v > own_version)?;
    let holders: Vec<&str> = peers
        .iter()
        .filter(|(_, v)| *v == best)
        .map(|(a, _)| a.as_str())
        .collect();
    holders.get((salt % holders.len() as u64) as usize).copied()
}

/// Runs until the process ends: publishes our version and pulls newer copies.
/// Copies are fetched through `peer`, which signs the request and checks the copy's signature:
/// a store from anyone but a node of this cluster is never taken.
pub async fn run<S: Versioned>(
    replica: Replica<S>,
    membership: Membership,
    interval: Duration,
    peer: PeerHttp,
) {
    let mut published = None;
    let mut changes = replica.subscribe();
    let mut round: u64 = 0;
    let mut failures: u32 = 0;
    loop {
        let own = replica.version();
        if published != Some(own) {
            membership.set_local(keys::STORE_VERSION, own).await;
            published = Some(own);
        }
        let peers: Vec<(String, u64)> = membership
            .members()
            .await
            .into_iter()
            .filter(|m| {
                m.state == MemberState::Alive && m.name != membership.node_id() && !m.api_addr.is_empty()
            })
            .filter_map(|m| Some((m.api_addr, m.store_version?)))
            .collect();
        round = round.wrapping_add(1);
        let salt = round ^ (std::process::id() as u64).rotate_left(17);
        if let Some(addr) = pick_source(own, &peers, salt) {
            let failure = match fetch::<S>(&peer, addr).await {
                Ok(store) => {
                    let version = store.version();
                    match replica.offer(store) {
                        Ok(true) => {
                            info!(from = addr, version, "store copy updated");
                            None
                        }
                        Ok(false) => Some(format!(
                            "{addr} gossips a newer store than the copy it served (version {version})"
                        )),
                        Err(e) => Some(format!("cannot save the store copy: {e}")),
                    }
                }
                Err(e) => Some(format!("fetching the store from {addr} failed: {e}")),
            };
            match failure {
                None => {
                    failures = 0;
                    replica.set_stale(None);
                }
                Some(why) => {
                    failures += 1;
                    let wait = backoff(interval, failures);
                    // Once per failure streak at warn: the node runs an older store than its
                    // peers until this clears, which an operator must hear about.
                    if failures == 3 {
                        warn!(reason = %why, "this node's store copy is stale; retrying with back-off");
                    } else {
                        debug!(reason = %why, retry_in = ?wait, "store fetch did not update the copy");
                    }
                    replica.set_stale(Some(why));
                    tokio::time::sleep(wait).await;
                }
            }
            continue;
        }
        if failures > 0 {
            failures = 0;
            replica.set_stale(None);
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = changes.changed() => {}
        }
    }
}

/// The wait after `failures` fetches in a row that did not update the copy: the gossip interval,
/// doubling up to [`MAX_BACKOFF`], so a full disk or a peer serving an old copy is not hammered.
fn backoff(interval: Duration, failures: u32) -> Duration {
    interval
        .saturating_mul(1 << failures.saturating_sub(1).min(8))
        .min(MAX_BACKOFF)
}

/// The longest wait between fetch attempts while the copy cannot be updated.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

async fn fetch<S: Versioned>(peer: &PeerHttp, api_addr: &str) -> anyhow::Result<S> {
    let answer = peer
        .call(Method::GET, api_addr, STORE_PATH, None, Some(FETCH_TIMEOUT))
        .await?;
    if !answer.status.is_success() {
        anyhow::bail!(
            "HTTP {}: {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
                .chars()
                .take(200)
                .collect::<String>()
        );
    }
    Ok(serde_json::from_slice(&answer.body)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_fetches_back_off_doubling_up_to_a_cap() {
        let i = Duration::from_millis(200);
        let waits: Vec<Duration> = (1..=10).map(|f| backoff(i, f)).collect();
        assert_eq!(waits[0], i);
        assert_eq!(waits[1], i * 2);
        assert_eq!(waits[4], i * 16);
        assert_eq!(waits[9], MAX_BACKOFF);
        assert!(waits.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn fetches_only_from_holders_of_the_newest_version() {
        let peers = vec![
            ("a".to_string(), 3),
            ("b".to_string(), 7),
            ("c".to_string(), 7),
            ("d".to_string(), 5),
        ];
        assert_eq!(pick_source(9, &peers, 0), None);
        assert_eq!(pick_source(7, &peers, 0), None);
        let picked: std::collections::BTreeSet<&str> =
            (0..10).filter_map(|s| pick_source(1, &peers, s)).collect();
        assert_eq!(picked, ["b", "c"].into());
        assert_eq!(pick_source(0, &[], 0), None);
    }
}
