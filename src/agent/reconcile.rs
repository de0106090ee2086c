//! The pure heart of the agent: compare what one DaemonSet wants on this node with what the runtime reports, and decide what to do.
//!
//! `reconcile` is idempotent: called again with the same inputs it plans the same actions, so
//! the actor can run it on every change and on a timer without keeping anything but the
//! back-off state between calls.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use super::desired::Desired;
pub use super::status::Phase;
use crate::runtime::{labels, Instance, InstanceSpec, InstanceState};

/// How crashed containers are restarted, as kubelet's CrashLoopBackOff does it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// Wait after the first restart (kubelet: 10s); the first restart itself is immediate.
    pub initial: Duration,
    /// Longest wait (kubelet: 5 minutes).
    pub max: Duration,
    /// A container that ran this long without crashing starts with a clean slate (kubelet: 10 minutes).
    pub reset_after: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(300),
            reset_after: Duration::from_secs(600),
        }
    }
}

impl BackoffPolicy {
    /// The wait after the `failures`-th restart in a row: 10s, 20s, 40s, ... up to `max`.
    pub fn delay(&self, failures: u32) -> Duration {
        let factor = 1u32.checked_shl(failures.saturating_sub(1)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// What the actor remembers about one container between reconciles.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Slot {
    /// Restarts or failed starts in a row; drives the back-off delay.
    pub failures: u32,
    /// No create before this time.
    pub not_before: Option<SystemTime>,
    /// Restarts since the agent started, for the status.
    pub restarts: u32,
    /// Set while the last create failed: the status reason (`ErrImagePull`...) and message.
    pub waiting: Option<(String, String)>,
    /// The instance last kept, so one that vanishes counts as a restart when recreated.
    pub last_id: Option<String>,
    /// An instance this agent stopped for a failed probe, and why: its exit is reported as that.
    pub killed: Option<(String, String)>,
    /// The spec hash the failures and restarts above are about. A new revision (or spec) is a
    /// new pod in Kubernetes' terms: it starts without back-off and is not a restart.
    pub spec_hash: Option<String>,
}

impl Slot {
    /// Records a restart or a failed create at `now`.
    pub fn failed(&mut self, policy: &BackoffPolicy, now: SystemTime) {
        self.failures = self.failures.saturating_add(1);
        self.not_before = Some(now + policy.delay(self.failures));
    }

    /// Forgets past failures once a container has run for `reset_after`.
    pub fn observe_running(
        &mut self,
        policy: &BackoffPolicy,
        started_at: Option<SystemTime>,
        now: SystemTime,
    ) {
        let ran = started_at
            .and_then(|s| now.duration_since(s).ok())
            .unwrap_or_default();
        if ran >= policy.reset_after {
            self.failures = 0;
            self.not_before = None;
        }
    }

    fn may_create(&self, now: SystemTime) -> bool {
        self.not_before.is_none_or(|t| now >= t)
    }
}

/// Why an instance is removed, for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoveReason {
    /// Another revision or spec than the granted one.
    Outdated,
    /// A second instance of the same container.
    Duplicate,
    /// Nothing on this node wants it any more.
    Unwanted,
    /// It exited and is replaced by a fresh one.
    Crashed,
}

/// One step for the actor to carry out, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Stop with `grace`, then remove.
    Remove {
        id: String,
        grace: Duration,
        reason: RemoveReason,
    },
    /// Create and start an instance; `restart` counts it as a restart of the container.
    Create { spec: Box<InstanceSpec>, restart: bool },
}

/// The decision for one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerPlan {
    pub container: String,
    pub phase: Phase,
    /// The instance kept (running), if any: probes run against it.
    pub kept: Option<Instance>,
}

/// Everything `reconcile` decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub containers: Vec<ContainerPlan>,
    /// The worst container phase; `None` when nothing is wanted and nothing is left.
    pub phase: Option<Phase>,
}

/// Plans the actions that bring `actual` (this DaemonSet's instances on this node) to
/// `desired` (`None`: nothing should run). `grace` is used to stop instances no spec names.
pub fn reconcile(
    desired: Option<&Desired>,
    actual: &[Instance],
    slots: &BTreeMap<String, Slot>,
    grace: Duration,
    now: SystemTime,
) -> Plan {
    let mut actions = Vec::new();
    let mut containers = Vec::new();
    let specs: &[InstanceSpec] = desired.map(|d| d.specs.as_slice()).unwrap_or_default();
    // Instances of containers no spec names (or of a DaemonSet no longer wanted) go first.
    for i in actual {
        let container = i.labels.get(labels::CONTAINER).map(String::as_str).unwrap_or("");
        if !specs.iter().any(|s| s.container_name == container) {
            actions.push(Action::Remove {
                id: i.id.clone(),
                grace,
                reason: RemoveReason::Unwanted,
            });
        }
    }
    let empty = Slot::default();
    for spec in specs {
        let slot = slots.get(&spec.container_name).unwrap_or(&empty);
        let keep_outdated = desired.is_some_and(|d| d.keep_outdated);
        let (plan, mut steps) = container(spec, actual, slot, keep_outdated, now);
        containers.push(plan);
        actions.append(&mut steps);
    }
    // Removes before creates, so a replaced instance frees its host ports first.
    actions.sort_by_key(|a| matches!(a, Action::Create { .. }));
    let phase = match desired {
        None if actual.is_empty() => None,
        None => Some(Phase::Terminating),
        Some(_) => containers.iter().map(|c| c.phase.clone()).max(),
    };
    Plan {
        actions,
        containers,
        phase,
    }
}

/// One container: keep the best matching instance, remove the others, restart after back-off.
fn container(
    spec: &InstanceSpec,
    actual: &[Instance],
    slot: &Slot,
    keep_outdated: bool,
    now: SystemTime,
) -> (ContainerPlan, Vec<Action>) {
    let hash = spec.spec_hash();
    let grace = spec.termination_grace;
    // Back-off and restarts belong to the spec they were counted for; replacing an instance
    // for a new revision is an update, not a crash.
    let fresh = Slot::default();
    let slot = match &slot.spec_hash {
        Some(h) if *h != hash => &fresh,
        _ => slot,
    };
    let mine: Vec<&Instance> = actual
        .iter()
        .filter(|i| i.labels.get(labels::CONTAINER) == Some(&spec.container_name))
        .collect();
    let matches = |i: &Instance| i.revision == spec.revision && i.spec_hash.as_deref() == Some(hash.as_str());
    // Prefer a running match (the oldest: adopting it keeps the longest-lived one), else the
    // most recently started match, whose exit is the one to back off from.
    let keeper = mine
        .iter()
        .filter(|i| matches(i) && i.state.is_running())
        .min_by_key(|i| (i.started_at, i.id.clone()))
        .or_else(|| {
            mine.iter()
                .filter(|i| matches(i))
                .max_by_key(|i| (i.started_at, i.id.clone()))
        })
        .copied();
    // With surge, a running outdated instance serves until the new one is available.
    let held = |i: &Instance| keep_outdated && !matches(i) && i.state.is_running();
    let replacing = mine.iter().any(|i| !matches(i));
    let mut actions: Vec<Action> = mine
        .iter()
        .filter(|i| Some(i.id.as_str()) != keeper.map(|k| k.id.as_str()) && !held(i))
        .map(|i| Action::Remove {
            id: i.id.clone(),
            grace,
            reason: if matches(i) {
                RemoveReason::Duplicate
            } else {
                RemoveReason::Outdated
            },
        })
        .collect();
    let create = |restart| Action::Create {
        spec: Box::new(spec.clone()),
        restart,
    };
    let waiting = || match &slot.waiting {
        Some((reason, _)) => Phase::Error(reason.clone()),
        None => Phase::CrashLoopBackOff,
    };
    let (phase, kept) = match keeper {
        Some(k) => match k.state {
            InstanceState::Running => (Phase::Running, Some(k.clone())),
            // The engine is busy with it; look again on the next pass.
            InstanceState::Paused | InstanceState::Restarting | InstanceState::Terminating => {
                (Phase::Pending, None)
            }
            InstanceState::Created | InstanceState::Exited { .. } | InstanceState::Dead => {
                if slot.may_create(now) {
                    actions.push(Action::Remove {
                        id: k.id.clone(),
                        grace: Duration::ZERO,
                        reason: RemoveReason::Crashed,
                    });
                    actions.push(create(true));
                    (Phase::ContainerCreating, None)
                } else {
                    (waiting(), None)
                }
            }
        },
        None if slot.may_create(now) => {
            // One that vanished (removed by hand) is recreated as a restart; one that replaces
            // another revision or spec is a new instance.
            actions.push(create(slot.last_id.is_some() && !replacing));
            (Phase::ContainerCreating, None)
        }
        None if slot.waiting.is_some() || slot.last_id.is_some() => (waiting(), None),
        None => (Phase::Pending, None),
    };
    (
        ContainerPlan {
            container: spec.container_name.clone(),
            phase,
            kept,
        },
        actions,
    )
}

#[cfg(test)]
mod tests;
