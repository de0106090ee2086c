//! What the store keeps about a DaemonSet's rollout: the revision each node is granted, the nodes held back, pause, and failure.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// The rollout part of a stored DaemonSet. Committed through Raft, so a new leader continues
/// from exactly where the old one stopped.
///
/// A node runs the revision of its grant, else the one it is held on, else the baseline, else
/// the current revision. A template change sets the baseline to the revision that ran before
/// it, so nothing moves until the planner grants the new revision node by node; a finished
/// rollout clears both, holding the nodes it finished without on what they ran.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutState {
    /// The revision hash that nodes without a grant keep running while a rollout is under way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<String>,
    /// Per-node grants of a revision other than the baseline, by node name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub grants: BTreeMap<String, Grant>,
    /// Nodes the last rollout finished without (selected, but dead or cut off), by node name.
    /// Without this they would all take the current revision the moment they return, outside
    /// any wave; held, they keep what they ran and the planner updates them within the budget,
    /// as Kubernetes keeps the pod of a NotReady node on its old revision. A grant supersedes
    /// the hold; a node absent longer than `--dead-node-grace` is released.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub held: BTreeMap<String, Held>,
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

/// A node held back on an older revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    /// Revision hash it keeps running until the planner grants it the current one.
    pub revision: String,
    /// Unix seconds (leader clock) when the rollout finished without it: a leader that does not
    /// know the node releases it once `--dead-node-grace` has passed since.
    pub since: u64,
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
            .or(self.held.get(node).map(|h| h.revision.as_str()))
            .or(self.baseline.as_deref())
            .unwrap_or(current)
    }

    /// Whether a rollout is under way: a template change not yet rolled out to every live node.
    /// Nodes held back after it finished do not count: a new template change starts a new
    /// rollout with its own baseline.
    pub fn in_progress(&self) -> bool {
        self.baseline.is_some() || !self.grants.is_empty()
    }

    /// Whether some node may still be told another revision than the current one: a rollout
    /// under way, or nodes held back by one that finished.
    pub fn unfinished(&self) -> bool {
        self.in_progress() || !self.held.is_empty()
    }

    /// Ends the rollout at revision hash `current`: grants and baseline go, and every node of
    /// `absent` that would not run `current` is held on what it runs now (a node already held
    /// keeps its hold and its time). Returns the nodes held, for the event.
    pub fn finish(&mut self, current: &str, absent: &[String], at: u64) -> Vec<(String, String)> {
        let held: Vec<(String, String)> = absent
            .iter()
            .map(|node| (node.clone(), self.target(node, current).to_string()))
            .filter(|(_, revision)| revision != current)
            .collect();
        // A grant superseded the hold (`delete pod` grants without lifting it): with the grant
        // gone, the old hold would send the node back.
        for node in self.grants.keys() {
            self.held.remove(node);
        }
        self.baseline = None;
        self.grants.clear();
        for (node, revision) in &held {
            self.held.entry(node.clone()).or_insert(Held {
                revision: revision.clone(),
                since: at,
            });
        }
        held
    }

    /// Drops everything kept about `node`, for a node that left the cluster.
    pub fn forget_node(&mut self, node: &str) {
        self.grants.remove(node);
        self.held.remove(node);
        self.pod_generations.remove(node);
    }

    /// Revision hashes some node may be told to run: the history keeps them whatever its limit.
    pub fn revisions_in_use(&self) -> BTreeSet<String> {
        self.baseline
            .iter()
            .cloned()
            .chain(self.grants.values().map(|g| g.revision.clone()))
            .chain(self.held.values().map(|h| h.revision.clone()))
            .collect()
    }

    /// After the history changed: drops the grants, holds and baseline that name a revision no
    /// longer in `known`, and the holds on `current` (a rollback to the revision a node was held
    /// on leaves nothing to update there).
    pub fn retain_revisions(&mut self, known: &BTreeSet<String>, current: &str) {
        self.grants.retain(|_, g| known.contains(&g.revision));
        self.held
            .retain(|_, h| known.contains(&h.revision) && h.revision != current);
        if self.baseline.as_ref().is_some_and(|b| !known.contains(b)) {
            self.baseline = None;
        }
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

    #[test]
    fn a_held_node_keeps_its_revision_over_the_baseline_until_granted() {
        let mut s = RolloutState {
            baseline: Some("v2".into()),
            ..RolloutState::default()
        };
        s.held.insert(
            "n3".into(),
            Held {
                revision: "v1".into(),
                since: 0,
            },
        );
        assert_eq!(s.target("n3", "v3"), "v1");
        assert_eq!(s.target("n1", "v3"), "v2");
        s.grants.insert(
            "n3".into(),
            Grant {
                revision: "v3".into(),
                at: 5,
            },
        );
        assert_eq!(s.target("n3", "v3"), "v3");
        assert_eq!(s.revisions_in_use().len(), 3);
        // Finished with both away: n3's grant of the current revision ends its hold for good
        // (it must not fall back to v1 once the grant is cleared); n4 is held on the baseline.
        let held = s.finish("v3", &["n3".to_string(), "n4".to_string()], 9);
        assert_eq!(held, vec![("n4".to_string(), "v2".to_string())]);
        assert!(!s.in_progress() && s.unfinished());
        assert_eq!((s.target("n3", "v3"), s.target("n4", "v3")), ("v3", "v2"));
        assert_eq!(s.held.keys().collect::<Vec<_>>(), ["n4"]);
        assert_eq!(s.held["n4"].since, 9);
    }
}
