//! The member view users see, computed by a pure function from chitchat's node states.

use std::collections::{BTreeMap, HashMap, HashSet};

use chitchat::{ChitchatId, NodeState};
use serde::{Deserialize, Serialize};

use super::keys;
use crate::scheduling::Taint;

/// Whether the failure detector currently hears from a member.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberState {
    /// Heard of, but its heartbeat has not yet been seen rising; new nodes start here.
    #[default]
    Joining,
    Alive,
    Dead,
    /// Left the cluster (`everynode leave`) or was removed (`everynode remove node`): listed
    /// for the record, counted nowhere. A later start of the node is a new member.
    Left,
}

impl std::fmt::Display for MemberState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MemberState::Joining => "joining",
            MemberState::Alive => "alive",
            MemberState::Dead => "dead",
            MemberState::Left => "left",
        })
    }
}

/// One node as seen by the local node: its newest generation only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub name: String,
    pub state: MemberState,
    /// Start time of this incarnation; a restarted node has a higher one.
    pub generation: u64,
    pub gossip_addr: String,
    /// Empty when the node has not published it yet.
    pub api_addr: String,
    /// Empty until the control plane assigns one.
    pub role: String,
    pub runtime: String,
    pub version: String,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    /// Unix seconds at which this generation started.
    pub started_at: Option<u64>,
    /// Unix seconds since which the node answering has seen this one dead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_since: Option<u64>,
    /// Version of the committed store copy the node holds.
    #[serde(default)]
    pub store_version: Option<u64>,
    /// The epoch (Raft group) of that copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_epoch: Option<String>,
    /// The node's Raft id, once it has one.
    #[serde(default)]
    pub raft_id: Option<u64>,
    /// The node's instance status per DaemonSet, as its agent publishes it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pods: BTreeMap<String, crate::agent::status::PodStatus>,
}

/// Builds the member list: one entry per node id, the highest generation winning, so a
/// restarted node replaces its old self; alive when that generation is live, dead when it was
/// live once (since `dead_since`, unix seconds), joining otherwise; left when `departed`
/// records that generation (or a later one) as gone. Sorted by name.
pub fn members_from_states<'a>(
    states: impl IntoIterator<Item = (&'a ChitchatId, &'a NodeState)>,
    live: &HashSet<ChitchatId>,
    ever_live: &HashSet<ChitchatId>,
    dead_since: &HashMap<ChitchatId, u64>,
    departed: &BTreeMap<String, u64>,
) -> Vec<Member> {
    let mut newest: BTreeMap<&str, (&ChitchatId, &NodeState)> = BTreeMap::new();
    for (id, state) in states {
        let entry = newest.entry(&id.node_id).or_insert((id, state));
        if id.generation_id > entry.0.generation_id {
            *entry = (id, state);
        }
    }
    newest
        .into_values()
        .map(|(id, state)| Member {
            name: id.node_id.to_string(),
            state: if departed
                .get(&id.node_id[..])
                .is_some_and(|gen| id.generation_id <= *gen)
            {
                MemberState::Left
            } else if live.contains(id) {
                MemberState::Alive
            } else if ever_live.contains(id) {
                MemberState::Dead
            } else {
                MemberState::Joining
            },
            generation: id.generation_id,
            gossip_addr: id.gossip_advertise_addr.to_string(),
            api_addr: keys::string(state, keys::API_ADDR).unwrap_or_default(),
            role: keys::string(state, keys::ROLE).unwrap_or_default(),
            runtime: keys::string(state, keys::RUNTIME).unwrap_or_default(),
            version: keys::string(state, keys::VERSION).unwrap_or_default(),
            labels: keys::labels(state),
            taints: keys::taints(state),
            started_at: keys::number(state, keys::STARTED_AT),
            dead_since: (!live.contains(id))
                .then(|| dead_since.get(id).copied())
                .flatten(),
            store_version: keys::number(state, keys::STORE_VERSION),
            store_epoch: keys::string(state, keys::STORE_EPOCH),
            raft_id: keys::number(state, keys::RAFT_ID),
            pods: keys::pod_statuses(state),
        })
        .collect()
}
