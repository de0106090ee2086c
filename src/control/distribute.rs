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

/// A peer's copy as it gossips it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCopy {
    pub api_addr: String,
    pub epoch: String,
    pub version: u64,
}

/// Which copy to fetch next, and from whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source<'a> {
    pub api_addr: &'a str,
    /// The copy belongs to another epoch than ours: the group in charge was formed anew, and
    /// its copy replaces ours whatever their version numbers.
    pub new_epoch: bool,
}

/// Picks who to fetch from: the alive peers holding the highest version above ours in the epoch
/// that counts, the one the live leader gossips (`in_charge`), else our own. Versions of two
/// epochs never compare: a group formed anew counts from 1 again.
pub fn pick_source<'a>(
    own_epoch: &str,
    own_version: u64,
    peers: &'a [PeerCopy],
    in_charge: Option<&str>,
    salt: u64,
) -> Option<Source<'a>> {
    let epoch = in_charge.filter(|e| !e.is_empty()).unwrap_or(own_epoch);
    // Our copy has no epoch yet (a fresh node, or one written before epochs): any epoch does.
    let new_epoch = epoch != own_epoch && !own_epoch.is_empty();
    let floor = if new_epoch { 0 } else { own_version };
    let eligible = |p: &&PeerCopy| {
        (p.epoch == epoch || own_epoch.is_empty() && in_charge.is_none()) && p.version > floor
    };
    let best = peers.iter().filter(eligible).map(|p| p.version).max()?;
    let holders: Vec<&str> = peers
        .iter()
        .filter(eligible)
        .filter(|p| p.version == best)
        .map(|p| p.api_addr.as_str())
        .collect();
    let api_addr = holders.get((salt % holders.len() as u64) as usize).copied()?;
    Some(Source { api_addr, new_epoch })
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
        let own_epoch = replica.epoch();
        if published.as_ref() != Some(&(own_epoch.clone(), own)) {
            membership.set_local(keys::STORE_EPOCH, own_epoch.clone()).await;
            membership.set_local(keys::STORE_VERSION, own).await;
            published = Some((own_epoch.clone(), own));
        }
        let members = membership.members().await;
        // The epoch of the group in charge, when the live leaders agree on one.
        let leader_epochs: std::collections::BTreeSet<&str> = members
            .iter()
            .filter(|m| m.state == MemberState::Alive && m.role == super::controller::LEADER)
            .filter_map(|m| m.store_epoch.as_deref())
            .collect();
        let in_charge = match leader_epochs.len() {
            1 => leader_epochs.first().map(|e| e.to_string()),
            _ => None,
        };
        let peers: Vec<PeerCopy> = members
            .iter()
            .filter(|m| {
                m.state == MemberState::Alive && m.name != membership.node_id() && !m.api_addr.is_empty()
            })
            .filter_map(|m| {
                Some(PeerCopy {
                    api_addr: m.api_addr.clone(),
                    epoch: m.store_epoch.clone().unwrap_or_default(),
                    version: m.store_version?,
                })
            })
            .collect();
        round = round.wrapping_add(1);
        let salt = round ^ (std::process::id() as u64).rotate_left(17);
        if let Some(Source {
            api_addr: addr,
            new_epoch,
        }) = pick_source(&own_epoch, own, &peers, in_charge.as_deref(), salt)
        {
            let failure = match fetch::<S>(&peer, addr).await {
                Ok(store) => {
                    let version = store.version();
                    let epoch = store.epoch().to_string();
                    let taken = if new_epoch && epoch == in_charge.clone().unwrap_or_default() {
                        replica.replace(store)
                    } else {
                        replica.offer(store)
                    };
                    match taken {
                        Ok(true) if new_epoch => {
                            warn!(from = addr, epoch = %epoch, version, old_epoch = %own_epoch, old_version = own,
                                "the Raft group was formed anew: this node's store copy is replaced by the new group's");
                            None
                        }
                        Ok(true) => {
                            info!(from = addr, version, "store copy updated");
                            None
                        }
                        Ok(false) => Some(format!(
                            "{addr} gossips a newer store than the copy it served (epoch {epoch}, version {version})"
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

    fn copy(addr: &str, epoch: &str, version: u64) -> PeerCopy {
        PeerCopy {
            api_addr: addr.into(),
            epoch: epoch.into(),
            version,
        }
    }

    #[test]
    fn fetches_only_from_holders_of_the_newest_version() {
        let peers = vec![
            copy("a", "e1", 3),
            copy("b", "e1", 7),
            copy("c", "e1", 7),
            copy("d", "e1", 5),
        ];
        assert_eq!(pick_source("e1", 9, &peers, Some("e1"), 0), None);
        assert_eq!(pick_source("e1", 7, &peers, Some("e1"), 0), None);
        let picked: std::collections::BTreeSet<&str> = (0..10)
            .filter_map(|s| pick_source("e1", 1, &peers, Some("e1"), s))
            .map(|s| s.api_addr)
            .collect();
        assert_eq!(picked, ["b", "c"].into());
        assert_eq!(pick_source("e1", 0, &[], None, 0), None);
    }

    #[test]
    fn a_group_formed_anew_wins_over_higher_versions_of_the_old_one() {
        // Non-voters kept epoch e1 at version 500; the voters were wiped and formed e2.
        let peers = vec![copy("old", "e1", 500), copy("new", "e2", 3)];
        let s = pick_source("e1", 400, &peers, Some("e2"), 0).unwrap();
        assert_eq!(
            s,
            Source {
                api_addr: "new",
                new_epoch: true
            }
        );
        // Without a live leader to say which group is in charge, only our own epoch counts.
        assert_eq!(pick_source("e1", 400, &peers, None, 0).unwrap().api_addr, "old");
        assert_eq!(pick_source("e1", 500, &peers, None, 0), None);
        // Once on e2, an e1 copy is never preferred, however high its number.
        assert_eq!(pick_source("e2", 3, &peers, Some("e2"), 0), None);
        assert_eq!(pick_source("e2", 3, &peers, None, 0), None);
        // A fresh node (no epoch) follows the group in charge, else the highest copy.
        assert_eq!(pick_source("", 0, &peers, Some("e2"), 0).unwrap().api_addr, "new");
        assert_eq!(pick_source("", 0, &peers, None, 0).unwrap().api_addr, "old");
    }
}
