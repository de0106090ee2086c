//! The wave planner: a pure function from the strategy, the node statuses and the current grants to the nodes that may move to the new revision now.
//!
//! It follows the Kubernetes DaemonSet controller: an old instance that is already unavailable
//! is replaced at once (it costs no availability); an available one only while fewer than
//! `maxUnavailable` nodes are unavailable (or, with surge, fewer than `maxSurge` new instances
//! are still on their way). A node granted the new revision counts as unavailable until it
//! reports the new revision available, so a step never relies on statuses that have not
//! caught up with earlier grants, whichever leader made them.
//!
//! Nodes that are absent (dead or cut off, still within `--dead-node-grace`) are left out of
//! the budget so that they never hold a rollout hostage, but not forgotten: the rollout
//! finishes without them by holding them on what they ran, and they are updated like any
//! other node, within the budget, once they return.

use crate::agent::status::PodStatus;
use crate::spec::{RolloutPolicy, Strategy};

use super::state::{Failure, RolloutState};

/// One eligible node: alive, selected by the DaemonSet and not drained.
#[derive(Debug, Clone, Copy)]
pub struct NodeView<'a> {
    pub name: &'a str,
    /// What the node gossips for this DaemonSet, if anything yet.
    pub status: Option<&'a PodStatus>,
}

/// Everything a planning step looks at.
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    pub strategy: Strategy,
    pub min_ready_secs: u64,
    pub policy: RolloutPolicy,
    /// The DaemonSet's current revision hash.
    pub current: &'a str,
    pub state: &'a RolloutState,
    /// Eligible nodes only: dead, unreachable or unselected nodes are left out of the budget.
    pub nodes: &'a [NodeView<'a>],
    /// Selected nodes that are not eligible now but still count as the DaemonSet's (dead or
    /// cut off for less than `--dead-node-grace`): held back when the rollout finishes. A held
    /// node in neither list is gone for good and released.
    pub absent: &'a [&'a str],
    /// Unix seconds on the leader's clock (grant times, deadlines).
    pub now: u64,
    /// The same in milliseconds, for availability (`minReadySeconds`).
    pub now_ms: u64,
}

/// Where one eligible node stands in the rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeClass {
    /// Runs the current revision, available.
    Updated,
    /// Should run the current revision but does not report it available yet.
    UpdatedPending,
    /// Keeps an older revision, available: a candidate for the next wave.
    OldAvailable,
    /// Keeps an older revision that is not available: replacing it costs nothing.
    OldUnavailable,
}

/// Counts for `rollout status` and `get ds`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Progress {
    /// Eligible nodes.
    pub desired: usize,
    /// Nodes granted the current revision (running it or about to).
    pub updated: usize,
    /// Nodes whose instance is available, whatever its revision.
    pub available: usize,
    /// Nodes that run the current revision and are available.
    pub updated_available: usize,
    /// Nodes granted the current revision that do not report it available yet.
    pub pending: Vec<String>,
}

/// What one planning step decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    /// Nodes to grant the current revision, in order.
    pub grant: Vec<String>,
    /// A failure newly found (the progress deadline passed on these nodes).
    pub failure: Option<Failure>,
    /// Every eligible node runs the current revision available: the rollout is over.
    pub complete: bool,
    /// With `complete`: absent nodes that do not run the current revision, to be held on theirs.
    pub hold: Vec<String>,
    /// Held nodes that are gone for good (neither eligible nor absent): no longer held.
    pub release: Vec<String>,
    pub progress: Progress,
}

impl Decision {
    /// Whether the step changes the stored state.
    pub fn is_noop(&self) -> bool {
        self.grant.is_empty() && self.failure.is_none() && !self.complete && self.release.is_empty()
    }
}

/// A further constraint on which candidates a wave may take, applied in order before the
/// budget: a canary wave, one topology zone at a time, a maintenance window. A filter keeps or
/// drops candidates and may reorder them; it can never widen the budget.
pub trait WaveFilter {
    fn admit<'a>(&self, input: &PlanInput<'_>, candidates: Vec<&'a str>) -> Vec<&'a str>;
}

fn available(status: Option<&PodStatus>, min_ready_secs: u64, now_ms: u64) -> bool {
    status.is_some_and(|s| {
        s.state != crate::agent::status::Phase::Terminating && s.available_ms(min_ready_secs, now_ms)
    })
}

/// Classifies one eligible node.
pub fn classify(input: &PlanInput<'_>, node: &NodeView<'_>) -> NodeClass {
    let target = input.state.target(node.name, input.current);
    let reports = |rev: &str| node.status.is_some_and(|s| s.revision == rev && !s.surging);
    let up = available(node.status, input.min_ready_secs, input.now_ms);
    match (target == input.current, reports(target) && up) {
        (true, true) => NodeClass::Updated,
        (true, false) => NodeClass::UpdatedPending,
        (false, true) => NodeClass::OldAvailable,
        (false, false) => NodeClass::OldUnavailable,
    }
}

/// One planning step. Deterministic: the same input gives the same decision.
pub fn plan(input: &PlanInput<'_>, filters: &[&dyn WaveFilter]) -> Decision {
    let mut decision = Decision::default();
    let mut old_unavailable = Vec::new();
    let mut candidates = Vec::new();
    let mut in_flight = 0u32;
    let mut overdue = Vec::new();
    let progress = &mut decision.progress;
    progress.desired = input.nodes.len();
    for node in input.nodes {
        if available(node.status, input.min_ready_secs, input.now_ms) {
            progress.available += 1;
        }
        match classify(input, node) {
            NodeClass::Updated => {
                progress.updated += 1;
                progress.updated_available += 1;
            }
            NodeClass::UpdatedPending => {
                progress.updated += 1;
                progress.pending.push(node.name.to_string());
                in_flight += 1;
                let deadline = input.policy.progress_deadline_secs;
                if let Some(g) = input.state.grants.get(node.name) {
                    if g.revision == input.current && g.at.saturating_add(deadline) <= input.now {
                        overdue.push(*node);
                    }
                }
            }
            NodeClass::OldAvailable => candidates.push(node.name),
            NodeClass::OldUnavailable => old_unavailable.push(node.name.to_string()),
        }
    }
    let state = input.state;
    if !state.unfinished() {
        return decision;
    }
    decision.release = state
        .held
        .keys()
        .filter(|n| !input.nodes.iter().any(|v| v.name == n.as_str()) && !input.absent.contains(&n.as_str()))
        .cloned()
        .collect();
    if candidates.is_empty() && old_unavailable.is_empty() && in_flight == 0 {
        // Only held nodes left, all still away: nothing to finish again.
        if state.in_progress() {
            decision.complete = true;
            decision.hold = input
                .absent
                .iter()
                .filter(|n| state.target(n, input.current) != input.current)
                .map(|n| n.to_string())
                .collect();
        }
        return decision;
    }
    let failed = input
        .state
        .failure
        .as_ref()
        .is_some_and(|f| f.rolled_back_to.is_none());
    if !overdue.is_empty() && input.state.failure.is_none() {
        decision.failure = Some(failure(input, &overdue));
        return decision;
    }
    if input.state.paused || failed {
        return decision;
    }
    let Some(budget) = input.strategy.budget(input.nodes.len() as u32) else {
        // OnDelete: only `delete pod` moves a node.
        return decision;
    };
    for f in filters {
        candidates = f.admit(input, candidates);
    }
    // Stricter than Kubernetes, which also takes down available nodes while old ones are
    // already down: here an available instance is taken down only while the total of
    // unavailable nodes stays within the budget, so a rollout never adds to an outage.
    let room = if budget.max_surge > 0 {
        budget.max_surge.saturating_sub(in_flight)
    } else {
        budget
            .max_unavailable
            .saturating_sub(in_flight + old_unavailable.len() as u32)
    } as usize;
    decision.grant = old_unavailable;
    decision
        .grant
        .extend(candidates.into_iter().take(room).map(str::to_string));
    decision
}

fn failure(input: &PlanInput<'_>, overdue: &[NodeView<'_>]) -> Failure {
    let deadline = input.policy.progress_deadline_secs;
    let details: Vec<String> = overdue
        .iter()
        .map(|n| {
            let what = match n.status {
                None => "no status reported".to_string(),
                Some(s) if s.revision != input.current => {
                    format!("still reports revision {} ({})", s.revision, s.state)
                }
                Some(s) => match &s.last_error {
                    Some(e) => format!("{}: {e}", s.state),
                    None if s.ready => "ready, but not yet for minReadySeconds".to_string(),
                    None => format!("{}, not ready", s.state),
                },
            };
            format!("node {}: {what}", n.name)
        })
        .collect();
    Failure {
        at: input.now,
        revision: input.current.to_string(),
        nodes: overdue.iter().map(|n| n.name.to_string()).collect(),
        reason: format!(
            "the new revision was not available within the progress deadline of {deadline}s on {} node(s): {}",
            overdue.len(),
            details.join("; ")
        ),
        rolled_back_to: None,
    }
}

#[cfg(test)]
mod tests;
