//! Every gossip key a node publishes about itself, in one place, with typed readers that log and default on bad values.

use std::collections::BTreeMap;

use chitchat::NodeState;
use tracing::warn;

use crate::scheduling::Taint;

/// `HOST:PORT` of the node's HTTP API, as other nodes should dial it.
pub const API_ADDR: &str = "api_addr";
/// JSON object of the node's labels, builtin ones included.
pub const LABELS: &str = "labels";
/// JSON array of the node's taints as `key=value:Effect` strings.
pub const TAINTS: &str = "taints";
/// The container runtime the node chose (`docker` or `process`).
pub const RUNTIME: &str = "runtime";
/// The node's control-plane role (`leader`, `voter`, `learner`); empty until it has one.
pub const ROLE: &str = "role";
/// Unix seconds at which this generation of the node started; drives the AGE column.
pub const STARTED_AT: &str = "started_at";
/// The everynode version the node runs, to spot mixed-version fleets.
pub const VERSION: &str = "version";
/// Version (Raft index) of the committed store copy the node holds; peers behind it fetch
/// the copy over HTTP, so the store itself never rides in gossip.
pub const STORE_VERSION: &str = "store_version";
/// The epoch (Raft group) of that copy: versions of two epochs do not compare.
pub const STORE_EPOCH: &str = "store_epoch";
/// The node's Raft id, once it has one.
pub const RAFT_ID: &str = "raft_id";

/// Reads a JSON-encoded key, logging and defaulting when it is missing or malformed, so one
/// bad peer never breaks the listing.
fn read_json<T: serde::de::DeserializeOwned + Default>(state: &NodeState, key: &str) -> T {
    match state.get(key) {
        None => T::default(),
        Some(raw) => serde_json::from_str(raw).unwrap_or_else(|e| {
            warn!(node = %state.chitchat_id().node_id, key, error = %e, "ignoring malformed gossip value");
            T::default()
        }),
    }
}

pub fn labels(state: &NodeState) -> BTreeMap<String, String> {
    read_json(state, LABELS)
}

pub fn taints(state: &NodeState) -> Vec<Taint> {
    read_json(state, TAINTS)
}

pub fn string(state: &NodeState, key: &str) -> Option<String> {
    state.get(key).filter(|v| !v.is_empty()).map(str::to_string)
}

/// Reads an unsigned number key, logging and ignoring a malformed value.
pub fn number(state: &NodeState, key: &str) -> Option<u64> {
    let raw = state.get(key)?;
    raw.parse()
        .map_err(|e| warn!(node = %state.chitchat_id().node_id, key, value = raw, error = %e, "ignoring malformed number"))
        .ok()
}

/// Encodes labels for [`LABELS`].
pub fn encode_labels(labels: &BTreeMap<String, String>) -> String {
    serde_json::to_string(labels).expect("a string map always serializes")
}

/// Encodes taints for [`TAINTS`].
pub fn encode_taints(taints: &[Taint]) -> String {
    serde_json::to_string(taints).expect("taints always serialize")
}

/// Prefix of the per-DaemonSet status keys: `ds/<name>` holds this node's
/// [`PodStatus`](crate::agent::status::PodStatus) as small JSON. One key per DaemonSet keeps
/// every value far below chitchat's packet limit; a DaemonSet that no longer runs here has
/// its key deleted.
pub const DS_STATUS_PREFIX: &str = "ds/";

/// The status key of one DaemonSet.
pub fn ds_status_key(daemonset: &str) -> String {
    format!("{DS_STATUS_PREFIX}{daemonset}")
}

/// Every DaemonSet status a node publishes, by DaemonSet name; malformed ones are logged and skipped.
pub fn pod_statuses(state: &NodeState) -> BTreeMap<String, crate::agent::status::PodStatus> {
    state
        .iter_prefix(DS_STATUS_PREFIX)
        .filter_map(|(key, value)| {
            let name = key.strip_prefix(DS_STATUS_PREFIX)?;
            match serde_json::from_str(&value.value) {
                Ok(status) => Some((name.to_string(), status)),
                Err(e) => {
                    warn!(node = %state.chitchat_id().node_id, key, error = %e, "ignoring malformed status");
                    None
                }
            }
        })
        .collect()
}

/// Encodes a status for [`ds_status_key`].
pub fn encode_pod_status(status: &crate::agent::status::PodStatus) -> String {
    serde_json::to_string(status).expect("a status always serializes")
}
