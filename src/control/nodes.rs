//! A node as placement sees it: its own gossiped labels and taints with the cluster's overrides layered on top.

use crate::control::store::Store;
use crate::membership::Member;
use crate::scheduling::node::NodeInfo;

/// Effective labels and taints of a member under the store's `label`/`taint node` overrides.
pub fn effective(member: &Member, store: &Store) -> NodeInfo {
    let mut labels = member.labels.clone();
    let mut taints = member.taints.clone();
    if let Some(o) = store.nodes.get(&member.name) {
        o.layer(&mut labels, &mut taints);
    }
    NodeInfo {
        name: member.name.clone(),
        labels,
        taints,
    }
}
