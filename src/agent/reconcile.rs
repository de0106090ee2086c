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
use crate::spec::Container;

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

/// A slot with no history, for a container whose slot was about another spec.
static FRESH: Slot = Slot {
    failures: 0,
    not_before: None,
    restarts: 0,
    waiting: None,
    last_id: None,
    killed: None,
    spec_hash: None,
};

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

/// Which part of the pod a container is, which decides how it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// One of `spec.containers`: started once the init containers are done, kept running.
    App,
    /// A regular init container: runs to completion, in order, before the app containers.
    Init,
    /// An init container with `restartPolicy: Always`: started in its place in the order, then
    /// kept running beside the app containers and counted for readiness as they are.
    Sidecar,
}

/// The decision for one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerPlan {
    pub container: String,
    pub role: Role,
    /// Its own phase; a completed init container is [`Phase::Completed`].
    pub phase: Phase,
    /// The instance kept (running, or an init container's completed one), if any: probes run
    /// against a running app or sidecar one.
    pub kept: Option<Instance>,
}

/// Everything `reconcile` decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub containers: Vec<ContainerPlan>,
    /// While the init containers run, the `Init:...` status; else the worst phase of the app
    /// containers and sidecars; `None` when nothing is wanted and nothing is left.
    pub phase: Option<Phase>,
}

/// The containers that serve once the pod runs, with their specs: the app containers and the
/// sidecars. Kubernetes counts both for readiness, so the actor probes and counts both.
pub fn serving(d: &Desired) -> impl Iterator<Item = (&InstanceSpec, &Container)> {
    let sidecars = d
        .init
        .iter()
        .zip(&d.init_containers)
        .filter(|(_, c)| c.is_sidecar());
    d.specs.iter().zip(&d.containers).chain(sidecars)
}

/// Plans the actions that bring `actual` (this DaemonSet's instances on this node) to
/// `desired` (`None`: nothing should run). `grace` is used to stop instances no spec names.
///
/// The init containers of the current spec run first, in order: a regular one to completion
/// (exit 0), restarted with back-off when it fails; a sidecar until it runs. Only then do the
/// app containers start. Completed init instances are kept, so an agent restart finds them
/// done instead of running them again; they go with their revision, as outdated instances.
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
    let init: &[InstanceSpec] = desired.map(|d| d.init.as_slice()).unwrap_or_default();
    // Instances of containers no spec names (or of a DaemonSet no longer wanted) go first.
    for i in actual {
        let container = i.labels.get(labels::CONTAINER).map(String::as_str).unwrap_or("");
        if !specs.iter().chain(init).any(|s| s.container_name == container) {
            actions.push(Action::Remove {
                id: i.id.clone(),
                grace,
                reason: RemoveReason::Unwanted,
            });
        }
    }
    let slot_of = |spec: &InstanceSpec| slots.get(&spec.container_name).unwrap_or(&FRESH);
    let keep_outdated = desired.is_some_and(|d| d.keep_outdated);
    let mut push = |(plan, mut steps): (ContainerPlan, Vec<Action>)| {
        containers.push(plan);
        actions.append(&mut steps);
    };
    // Kubelet's rule: once an app container of this pod has an instance, the init containers
    // have run, even if their instances are gone since; they do not run again (an app crash
    // restarts the container, not the pod). This also keeps an agent upgrade from running the
    // init containers of pods that started before they were honoured.
    let app_started = specs
        .iter()
        .any(|s| actual.iter().any(|i| is_of(i, s) && matches(i, s)));
    // Set at the first init container that is not done: the status, and the end of the order.
    let mut initializing: Option<Phase> = None;
    for (n, spec) in init.iter().enumerate() {
        let sidecar = desired.is_some_and(|d| d.init_containers.get(n).is_some_and(Container::is_sidecar));
        let slot = slot_of(spec);
        if sidecar && initializing.is_none() {
            // Running is enough to go on. Kubernetes waits for the sidecar's startup probe
            // (`started`); here the next one starts once the instance runs, so a sidecar that
            // needs time to come up should have its followers wait for it themselves.
            let (mut plan, steps) = container(spec, actual, slot, keep_outdated, now);
            plan.role = Role::Sidecar;
            if plan.kept.is_none() && !app_started {
                initializing = Some(init_phase(&plan.phase, n, init.len()));
            }
            push((plan, steps));
        } else if sidecar {
            push(settle(spec, actual, keep_outdated, Role::Sidecar));
        } else if initializing.is_none() && !app_started {
            let (plan, steps, waiting) =
                init_container(spec, actual, slot, keep_outdated, now, n, init.len());
            initializing = waiting;
            push((plan, steps));
        } else {
            push(settle(spec, actual, keep_outdated, Role::Init));
        }
    }
    for spec in specs {
        if initializing.is_some() {
            push(settle(spec, actual, keep_outdated, Role::App));
        } else {
            push(container(spec, actual, slot_of(spec), keep_outdated, now));
        }
    }
    // Removes before creates, so a replaced instance frees its host ports first.
    actions.sort_by_key(|a| matches!(a, Action::Create { .. }));
    let phase = match desired {
        None if actual.is_empty() => None,
        None => Some(Phase::Terminating),
        Some(_) => initializing.or_else(|| {
            containers
                .iter()
                .filter(|c| c.role != Role::Init)
                .map(|c| c.phase.clone())
                .max()
        }),
    };
    Plan {
        actions,
        containers,
        phase,
    }
}

/// `Init:<reason>` for a waiting init container (as kubectl shows `Init:CrashLoopBackOff` or
/// `Init:ErrImagePull`), else `Init:<done>/<total>`.
fn init_phase(phase: &Phase, n: usize, total: usize) -> Phase {
    match phase {
        Phase::CrashLoopBackOff | Phase::Error(_) => Phase::init_waiting(phase.as_str()),
        _ => Phase::init_progress(n, total),
    }
}

/// Whether `i` is an instance of `spec`'s container.
fn is_of(i: &Instance, spec: &InstanceSpec) -> bool {
    i.labels.get(labels::CONTAINER) == Some(&spec.container_name)
}

/// Whether `i` was made from exactly `spec` (revision and whole spec).
fn matches(i: &Instance, spec: &InstanceSpec) -> bool {
    i.revision == spec.revision && i.spec_hash.as_deref() == Some(spec.spec_hash().as_str())
}

/// Exited 0: an init container that has done its work.
fn succeeded(i: &Instance) -> bool {
    i.state == InstanceState::Exited { code: Some(0) }
}

/// What one container has in the runtime: the instance to keep, and the others to remove.
struct Found<'a> {
    keeper: Option<&'a Instance>,
    /// Some instance of another revision or spec is there: a create is an update, not a restart.
    replacing: bool,
    removals: Vec<Action>,
}

/// Picks the instance of `spec` to keep and removes the others: duplicates, and outdated ones
/// unless a surge holds them (`keep_outdated`: a running outdated instance serves until the
/// new one is available). The keeper is the oldest running match (adopting it keeps the
/// longest-lived one), else the most recently started match, whose exit is the one to back
/// off from; for an init container a completed match comes first, since it is done.
fn find<'a>(spec: &InstanceSpec, actual: &'a [Instance], keep_outdated: bool, init: bool) -> Found<'a> {
    let mine: Vec<&Instance> = actual.iter().filter(|i| is_of(i, spec)).collect();
    let oldest = |pick: &dyn Fn(&Instance) -> bool| {
        mine.iter()
            .filter(|i| matches(i, spec) && pick(i))
            .min_by_key(|i| (i.started_at, i.id.clone()))
            .copied()
    };
    let keeper = init
        .then(|| oldest(&succeeded))
        .flatten()
        .or_else(|| oldest(&|i| i.state.is_running()))
        .or_else(|| {
            mine.iter()
                .filter(|i| matches(i, spec))
                .max_by_key(|i| (i.started_at, i.id.clone()))
                .copied()
        });
    let held = |i: &Instance| keep_outdated && !matches(i, spec) && i.state.is_running();
    let removals = mine
        .iter()
        .filter(|i| Some(i.id.as_str()) != keeper.map(|k| k.id.as_str()) && !held(i))
        .map(|i| Action::Remove {
            id: i.id.clone(),
            grace: spec.termination_grace,
            reason: if matches(i, spec) {
                RemoveReason::Duplicate
            } else {
                RemoveReason::Outdated
            },
        })
        .collect();
    Found {
        keeper,
        replacing: mine.iter().any(|i| !matches(i, spec)),
        removals,
    }
}

/// Back-off and restarts belong to the spec they were counted for; replacing an instance for a
/// new revision is an update, not a crash.
fn slot_for<'a>(slot: &'a Slot, spec: &InstanceSpec) -> &'a Slot {
    match &slot.spec_hash {
        Some(h) if *h != spec.spec_hash() => &FRESH,
        _ => slot,
    }
}

/// The waiting phase after a failure: the create error's reason, else CrashLoopBackOff.
fn waiting(slot: &Slot) -> Phase {
    match &slot.waiting {
        Some((reason, _)) => Phase::Error(reason.clone()),
        None => Phase::CrashLoopBackOff,
    }
}

fn create(spec: &InstanceSpec, restart: bool) -> Action {
    Action::Create {
        spec: Box::new(spec.clone()),
        restart,
    }
}

/// A container that must not start now (an app container while the pod initializes, an init
/// container after an earlier one that is not done) or that is done starting (a regular init
/// container once the pod has initialized): keep what matches, remove the rest, create nothing.
fn settle(
    spec: &InstanceSpec,
    actual: &[Instance],
    keep_outdated: bool,
    role: Role,
) -> (ContainerPlan, Vec<Action>) {
    let found = find(spec, actual, keep_outdated, role == Role::Init);
    let kept = found.keeper.filter(|k| k.state.is_running() || succeeded(k));
    let phase = match kept {
        Some(k) if succeeded(k) => Phase::Completed,
        Some(_) => Phase::Running,
        None => Phase::Pending,
    };
    (
        ContainerPlan {
            container: spec.container_name.clone(),
            role,
            phase,
            kept: kept.cloned(),
        },
        found.removals,
    )
}

/// A regular init container whose turn it is: done once an instance of its spec exited 0;
/// else run it, restarting a failed one with back-off. The third value is the pod's `Init:...`
/// status while it is not done, `None` once it is.
fn init_container(
    spec: &InstanceSpec,
    actual: &[Instance],
    slot: &Slot,
    keep_outdated: bool,
    now: SystemTime,
    n: usize,
    total: usize,
) -> (ContainerPlan, Vec<Action>, Option<Phase>) {
    let slot = slot_for(slot, spec);
    let Found {
        keeper,
        replacing,
        mut removals,
    } = find(spec, actual, keep_outdated, true);
    let progress = Phase::init_progress(n, total);
    let (phase, kept, status) = match keeper {
        Some(k) if succeeded(k) => (Phase::Completed, Some(k.clone()), None),
        Some(k) => match k.state {
            InstanceState::Running => (Phase::Running, Some(k.clone()), Some(progress)),
            InstanceState::Paused | InstanceState::Restarting | InstanceState::Terminating => {
                (Phase::Pending, None, Some(progress))
            }
            // A failure: non-zero, or an exit status nobody could read (a process that ended
            // while no agent was its parent), which Kubernetes would not count as success
            // either. The init container runs again, as it must be able to.
            InstanceState::Created | InstanceState::Exited { .. } | InstanceState::Dead => {
                if slot.may_create(now) {
                    removals.push(Action::Remove {
                        id: k.id.clone(),
                        grace: Duration::ZERO,
                        reason: RemoveReason::Crashed,
                    });
                    removals.push(create(spec, true));
                    // The attempt that just ended failed; the next one is starting.
                    (Phase::ContainerCreating, None, Some(Phase::init_waiting("Error")))
                } else {
                    let w = waiting(slot);
                    let status = Phase::init_waiting(w.as_str());
                    (w, None, Some(status))
                }
            }
        },
        None if slot.may_create(now) => {
            // As for an app container: one that vanished is recreated as a restart.
            removals.push(create(spec, slot.last_id.is_some() && !replacing));
            (Phase::ContainerCreating, None, Some(progress))
        }
        None if slot.waiting.is_some() || slot.last_id.is_some() => {
            let w = waiting(slot);
            let status = Phase::init_waiting(w.as_str());
            (w, None, Some(status))
        }
        None => (Phase::Pending, None, Some(progress)),
    };
    (
        ContainerPlan {
            container: spec.container_name.clone(),
            role: Role::Init,
            phase,
            kept,
        },
        removals,
        status,
    )
}

/// An app container (or a sidecar): keep the best matching instance, remove the others,
/// restart after back-off.
fn container(
    spec: &InstanceSpec,
    actual: &[Instance],
    slot: &Slot,
    keep_outdated: bool,
    now: SystemTime,
) -> (ContainerPlan, Vec<Action>) {
    let slot = slot_for(slot, spec);
    let Found {
        keeper,
        replacing,
        mut removals,
    } = find(spec, actual, keep_outdated, false);
    let (phase, kept) = match keeper {
        Some(k) => match k.state {
            InstanceState::Running => (Phase::Running, Some(k.clone())),
            // The engine is busy with it; look again on the next pass.
            InstanceState::Paused | InstanceState::Restarting | InstanceState::Terminating => {
                (Phase::Pending, None)
            }
            InstanceState::Created | InstanceState::Exited { .. } | InstanceState::Dead => {
                if slot.may_create(now) {
                    removals.push(Action::Remove {
                        id: k.id.clone(),
                        grace: Duration::ZERO,
                        reason: RemoveReason::Crashed,
                    });
                    removals.push(create(spec, true));
                    (Phase::ContainerCreating, None)
                } else {
                    (waiting(slot), None)
                }
            }
        },
        None if slot.may_create(now) => {
            // One that vanished (removed by hand) is recreated as a restart; one that replaces
            // another revision or spec is a new instance.
            removals.push(create(spec, slot.last_id.is_some() && !replacing));
            (Phase::ContainerCreating, None)
        }
        None if slot.waiting.is_some() || slot.last_id.is_some() => (waiting(slot), None),
        None => (Phase::Pending, None),
    };
    (
        ContainerPlan {
            container: spec.container_name.clone(),
            role: Role::App,
            phase,
            kept,
        },
        removals,
    )
}

#[cfg(test)]
mod tests;
