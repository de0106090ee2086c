//! What the store keeps about a DaemonSet's rollout: the revision each node is granted, pause, and failure.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The rollout part of a stored DaemonSet. Committed through Raft, so a new leader continues
/// from exactly where the old one stopped.
///
/// A node runs the revision of its grant, else the baseline, else the current revision. A
/// template change sets the baseline to the revision that ran before it, so nothing moves
/// until the planner grants the new revision node by node; a finished rollout clears both.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutState {
    /// The revision hash that nodes without a grant keep running while a rollout is under way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<String>,
    /// Per-node grants of a revision other than the baseline, by node name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub grants: BTreeMap<String, Grant>,
    /// `everynode rollout pause`: no node is granted anything until `resume`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    /// Why the rollout stopped (or was rolled back), until the next template change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// Grant steps taken in the current rollout, shown as the wave number.
    #[serde(default)]
    pub wave: u64,
    /// Bumped per node by `everynode delete pod`, so the node replaces its instance even at the
    /// same revision. Kept after the rollout ends: clearing it would replace the instance again.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_generations: BTreeMap<String, u64>,
    /// Bumped by every change of this state, so a planner step computed on an older state is
    /// refused instead of granting beyond the budget.
    #[serde(default)]
    pub seq: u64,
}

/// One node's grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// Revision hash.
    pub revision: String,
    /// Unix seconds (leader clock) when granted, for the progress deadline.
    pub at: u64,
}

/// A rollout that did not make progress in time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// Unix seconds (leader clock).
    pub at: u64,
    /// The revision hash that failed.
    pub revision: String,
    /// Nodes whose new instance was not available in time.
    pub nodes: Vec<String>,
    pub reason: String,
    /// Set when the failure policy rolled the DaemonSet back: the revision number it returned to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back_to: Option<u64>,
}

impl RolloutState {
    /// The revision hash `node` should run, given the DaemonSet's current revision hash.
    pub fn target<'a>(&'a self, node: &str, current: &'a str) -> &'a str {
        self.grants
            .get(node)
            .map(|g| g.revision.as_str())
            .or(self.baseline.as_deref())
            .unwrap_or(current)
    }

    /// Whether a rollout is under way (some node may still run another revision than the current one).
    pub fn in_progress(&self) -> bool {
        self.baseline.is_some() || !self.grants.is_empty()
    }

    /// The `delete pod` counter of `node`'s grant.
    pub fn pod_generation(&self, node: &str) -> u64 {
        self.pod_generations.get(node).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_is_grant_then_baseline_then_current() {
        let mut s = RolloutState::default();
        assert_eq!(s.target("n1", "v2"), "v2");
        s.baseline = Some("v1".into());
        assert_eq!(s.target("n1", "v2"), "v1");
        s.grants.insert(
            "n1".into(),
            Grant {
                revision: "v2".into(),
                at: 5,
            },
        );
        assert_eq!(s.target("n1", "v2"), "v2");
        assert_eq!(s.target("n2", "v2"), "v1");
        assert!(s.in_progress());
    }
}
