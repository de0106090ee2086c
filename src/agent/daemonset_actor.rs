//! The actor that keeps one DaemonSet converged on this node: a thin shell that lists the runtime, runs `reconcile`, carries out its actions, probes, and publishes the status.
//!
//! One reconcile runs at a time: a change arriving mid-pass marks the actor dirty and the pass
//! is repeated once it ends. Handlers never panic (a panic would kill the actor): every runtime
//! error becomes a status.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use tracing::{info, warn};

use super::desired::Desired;
use super::probe::{self, Probes, Verdict};
use super::reconcile::{reconcile, serving, Action, Phase, RemoveReason, Role, Slot};
use super::status::PodStatus;
use super::AgentContext;
use crate::runtime::{InstanceState, RuntimeError};

/// How soon a pass that acted is followed by another, to report what its actions did.
const RECHECK: Duration = Duration::from_millis(200);

/// What the supervisor wants from this DaemonSet on this node.
#[derive(Debug, Clone, PartialEq)]
pub enum Want {
    /// Run these instances.
    Run(Box<Desired>),
    /// The template cannot run here; the message says why (shown as `CreateContainerConfigError`).
    Invalid(String),
    /// This node's policy refuses the template; the message says why (shown as `PolicyDenied`).
    Refused(String),
    /// Stop everything (grace periods honoured), withdraw the status, then stop the actor.
    Retire,
}

/// Sets what the actor converges to; a no-op when unchanged.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetWant(pub Want);

/// Sent to the supervisor once a retiring actor has removed everything and stopped.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Retired {
    pub daemonset: String,
}

/// Runs one pass now (used on runtime events and by tests).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Poke;

/// Per-node actor of one DaemonSet.
pub struct DaemonSetActor {
    daemonset: String,
    ctx: Arc<AgentContext>,
    want: Want,
    /// Back-off and restart counts per container; survives passes. Restart counts also live
    /// in the shared [`RestartBook`](super::RestartBook), which outlives the agent.
    slots: BTreeMap<String, Slot>,
    /// Probe state per container of its current instance.
    probes: BTreeMap<String, Probes>,
    /// Grace period for instances no spec names: the last template's, else the orphan default.
    grace: Duration,
    last_error: Option<String>,
    /// Ready since (unix milliseconds), while ready without a break.
    ready_since: Option<u64>,
    /// A pass is running.
    busy: bool,
    /// Something changed during the pass: run another one right after.
    dirty: bool,
    supervisor: Recipient<Retired>,
}

impl DaemonSetActor {
    pub fn new(daemonset: &str, ctx: Arc<AgentContext>, want: Want, supervisor: Recipient<Retired>) -> Self {
        let grace = ctx.settings.orphan_grace;
        // Restarts counted by an earlier agent (or an earlier actor) carry on from there.
        let slots = ctx
            .restarts
            .get(daemonset)
            .into_iter()
            .map(|(container, restarts)| {
                (
                    container,
                    Slot {
                        restarts,
                        ..Slot::default()
                    },
                )
            })
            .collect();
        DaemonSetActor {
            daemonset: daemonset.to_string(),
            ctx,
            want,
            slots,
            probes: BTreeMap::new(),
            grace,
            last_error: None,
            ready_since: None,
            busy: false,
            dirty: false,
            supervisor,
        }
    }

    fn pass(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            self.dirty = true;
            return;
        }
        self.busy = true;
        let input = Pass {
            daemonset: self.daemonset.clone(),
            ctx: self.ctx.clone(),
            want: self.want.clone(),
            slots: std::mem::take(&mut self.slots),
            probes: std::mem::take(&mut self.probes),
            grace: self.grace,
            last_error: self.last_error.take(),
            ready_since: self.ready_since,
        };
        ctx.spawn(input.run().into_actor(self).map(|out, act, ctx| {
            act.busy = false;
            act.slots = out.slots;
            act.probes = out.probes;
            act.grace = out.grace;
            act.last_error = out.last_error;
            act.ready_since = out.ready_since;
            if out.retired {
                act.ctx.restarts.forget(&act.daemonset);
                act.supervisor.do_send(Retired {
                    daemonset: act.daemonset.clone(),
                });
                ctx.stop();
                return;
            }
            if act.dirty {
                act.dirty = false;
                act.pass(ctx);
            } else if out.acted {
                // Look again soon to report the outcome, but never in a tight loop.
                ctx.run_later(RECHECK, |act, ctx| act.pass(ctx));
            }
        }));
    }
}

impl Actor for DaemonSetActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.pass(ctx);
        ctx.run_interval(self.ctx.settings.resync, |act, ctx| act.pass(ctx));
    }
}

impl Handler<SetWant> for DaemonSetActor {
    type Result = ();

    fn handle(&mut self, msg: SetWant, ctx: &mut Context<Self>) {
        if msg.0 != self.want {
            self.want = msg.0;
            self.pass(ctx);
        }
    }
}

impl Handler<Poke> for DaemonSetActor {
    type Result = ();

    fn handle(&mut self, _: Poke, ctx: &mut Context<Self>) {
        self.pass(ctx);
    }
}

/// The inputs of one pass, moved out of the actor so the pass can run as a plain future.
struct Pass {
    daemonset: String,
    ctx: Arc<AgentContext>,
    want: Want,
    slots: BTreeMap<String, Slot>,
    probes: BTreeMap<String, Probes>,
    grace: Duration,
    last_error: Option<String>,
    ready_since: Option<u64>,
}

/// What a pass leaves for the next one.
struct PassOutput {
    slots: BTreeMap<String, Slot>,
    probes: BTreeMap<String, Probes>,
    grace: Duration,
    last_error: Option<String>,
    ready_since: Option<u64>,
    /// Actions were taken: look again at once to report the result.
    acted: bool,
    /// Retiring and nothing is left.
    retired: bool,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl Pass {
    async fn run(mut self) -> PassOutput {
        let shared = self.ctx.clone();
        let settings = &shared.settings;
        let runtime = shared.runtime.clone();
        let now = SystemTime::now();
        let mut acted = false;
        let mut retired = false;
        let status = match shared.instances.list().await {
            Err(e) => {
                warn!(daemonset = %self.daemonset, error = %e, "cannot list instances");
                self.last_error = Some(e.to_string());
                Some(self.status(Phase::Error(e.status_reason().into()), "", false, None))
            }
            Ok(all) => {
                let actual: Vec<_> = all
                    .iter()
                    .filter(|i| i.daemonset == self.daemonset)
                    .cloned()
                    .collect();
                let desired = match &self.want {
                    Want::Run(d) => {
                        if let Some(s) = d.specs.first() {
                            self.grace = s.termination_grace;
                        }
                        let mut d = d.as_ref().clone();
                        d.keep_outdated = d.surge && !self.surged_available(&d, &actual, now);
                        let new_spec = d.specs.iter().chain(&d.init).any(|spec| {
                            self.slots
                                .get(&spec.container_name)
                                .and_then(|s| s.spec_hash.as_ref())
                                .is_some_and(|h| *h != spec.spec_hash())
                        });
                        if new_spec {
                            // The last error was about the old spec.
                            self.last_error = None;
                        }
                        Some(d)
                    }
                    Want::Invalid(_) | Want::Refused(_) | Want::Retire => None,
                };
                let plan = reconcile(desired.as_ref(), &actual, &self.slots, self.grace, now);
                for action in plan.actions {
                    acted = true;
                    self.execute(action, &actual, now).await;
                }
                if acted {
                    shared.instances.invalidate();
                }
                let revision = desired
                    .as_ref()
                    .map(|d| d.revision().to_string())
                    .unwrap_or_default();
                let mut ready = desired.is_some() && !plan.containers.is_empty();
                let mut started_at = None;
                for c in &plan.containers {
                    let slot = self.slots.entry(c.container.clone()).or_default();
                    // A regular init container is not part of the running pod: never probed,
                    // and not counted for readiness (the app containers are not ready before
                    // it is done anyway).
                    let serves = c.role != Role::Init;
                    let Some(kept) = &c.kept else {
                        ready &= !serves;
                        self.probes.remove(&c.container);
                        continue;
                    };
                    slot.last_id = Some(kept.id.clone());
                    if kept.spec_hash.is_some() {
                        slot.spec_hash = kept.spec_hash.clone();
                    }
                    slot.observe_running(&settings.backoff, kept.started_at, now);
                    started_at = started_at.max(kept.started_at.map(unix));
                    let Some(d) = desired.as_ref().filter(|_| serves) else {
                        continue;
                    };
                    let Some((spec, container)) = serving(d).find(|(s, _)| s.container_name == c.container)
                    else {
                        continue;
                    };
                    let probes = self
                        .probes
                        .entry(c.container.clone())
                        .and_modify(|p| {
                            if p.instance != kept.id {
                                *p = Probes::new(&kept.id, container, Instant::now());
                            }
                        })
                        .or_insert_with(|| Probes::new(&kept.id, container, Instant::now()));
                    for kind in probes.due(container, Instant::now()) {
                        let result = probe::run(runtime.as_ref(), &kept.id, spec, container, kind).await;
                        if let Verdict::Restart(why) = probes.record(container, kind, result, Instant::now())
                        {
                            info!(daemonset = %self.daemonset, id = %kept.id, reason = %why, "restarting the container");
                            self.last_error = Some(why.clone());
                            if let Some(slot) = self.slots.get_mut(&c.container) {
                                slot.killed = Some((kept.id.clone(), why));
                            }
                            if let Err(e) = runtime.stop(&kept.id, spec.termination_grace).await {
                                warn!(daemonset = %self.daemonset, id = %kept.id, error = %e, "cannot stop the container");
                            }
                            shared.instances.invalidate();
                            acted = true;
                        }
                    }
                    if !probes.ready(container) {
                        ready = false;
                    }
                }
                if ready {
                    self.ready_since.get_or_insert(unix_ms(now));
                } else {
                    self.ready_since = None;
                }
                match plan.phase {
                    None => {
                        retired = matches!(self.want, Want::Retire);
                        None
                    }
                    Some(phase) => {
                        let phase = match &self.want {
                            Want::Invalid(why) => {
                                self.last_error = Some(why.clone());
                                Phase::Error("CreateContainerConfigError".into())
                            }
                            Want::Refused(why) => {
                                self.last_error = Some(why.clone());
                                Phase::Error(super::policy::REFUSED_STATE.into())
                            }
                            _ => phase,
                        };
                        let phase = if acted && phase == Phase::Running {
                            Phase::ContainerCreating
                        } else {
                            phase
                        };
                        let mut status = self.status(phase, &revision, ready, started_at);
                        // What was held this pass is still running: the actions removed the rest.
                        status.surging = desired.as_ref().is_some_and(|d| {
                            d.keep_outdated
                                && actual
                                    .iter()
                                    .any(|i| i.revision != d.revision() && i.state.is_running())
                        });
                        Some(status)
                    }
                }
            }
        };
        // An invalid template with nothing running still shows why.
        let status = match (&status, &self.want) {
            (None, Want::Invalid(why)) => {
                // Set first: the status carries it.
                self.last_error = Some(why.clone());
                Some(self.status(Phase::Error("CreateContainerConfigError".into()), "", false, None))
            }
            (None, Want::Refused(why)) => {
                self.last_error = Some(why.clone());
                Some(self.status(Phase::Error(super::policy::REFUSED_STATE.into()), "", false, None))
            }
            _ => status,
        };
        self.ctx.sink.publish(&self.daemonset, status.as_ref()).await;
        PassOutput {
            slots: self.slots,
            probes: self.probes,
            grace: self.grace,
            last_error: self.last_error,
            ready_since: self.ready_since,
            acted,
            retired,
        }
    }

    /// Whether every container of `d` that serves (app containers and sidecars) runs an
    /// instance of exactly its spec that has been ready for `minReadySeconds`: then a surged
    /// rollout may remove the outdated instances.
    fn surged_available(&self, d: &Desired, actual: &[crate::runtime::Instance], now: SystemTime) -> bool {
        let all_ready = serving(d).all(|(spec, container)| {
            let hash = spec.spec_hash();
            actual.iter().any(|i| {
                i.revision == spec.revision
                    && i.spec_hash.as_deref() == Some(hash.as_str())
                    && i.state.is_running()
                    && self
                        .probes
                        .get(&spec.container_name)
                        .is_some_and(|p| p.instance == i.id && p.ready(container))
            })
        });
        all_ready
            && self
                .ready_since
                .is_some_and(|s| s.saturating_add(d.min_ready_secs * 1000) <= unix_ms(now))
    }

    fn status(&self, phase: Phase, revision: &str, ready: bool, started_at: Option<u64>) -> PodStatus {
        PodStatus {
            revision: revision.to_string(),
            state: phase,
            ready,
            ready_since: if ready {
                self.ready_since.map(|ms| ms / 1000)
            } else {
                None
            },
            ready_since_ms: if ready { self.ready_since } else { None },
            started_at,
            restarts: self.slots.values().map(|s| s.restarts).sum(),
            last_error: self.last_error.clone(),
            surging: false,
        }
        .clamp()
    }

    async fn execute(&mut self, action: Action, actual: &[crate::runtime::Instance], now: SystemTime) {
        let runtime = self.ctx.runtime.clone();
        let policy = self.ctx.settings.backoff;
        match action {
            Action::Remove { id, grace, reason } => {
                let killed_by_probe = self
                    .slots
                    .values()
                    .any(|s| s.killed.as_ref().is_some_and(|(k, _)| *k == id));
                if reason == RemoveReason::Crashed && !killed_by_probe {
                    if let Some(i) = actual.iter().find(|i| i.id == id) {
                        let how = match i.state {
                            InstanceState::Exited { code: Some(code) } => format!("exited with code {code}"),
                            InstanceState::Exited { code: None } => "exited".to_string(),
                            other => format!("is {other:?}"),
                        };
                        let why = i.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default();
                        self.last_error = Some(format!("container {} {how}{why}", i.name));
                    }
                }
                info!(daemonset = %self.daemonset, %id, ?reason, "removing instance");
                let stopped = match runtime.stop(&id, grace).await {
                    Ok(()) | Err(RuntimeError::NotFound { .. }) => Ok(()),
                    Err(e) => Err(e),
                };
                let removed = match stopped {
                    Ok(()) => match runtime.remove(&id).await {
                        Ok(()) | Err(RuntimeError::NotFound { .. }) => Ok(()),
                        Err(e) => Err(e),
                    },
                    Err(e) => Err(e),
                };
                if let Err(e) = removed {
                    warn!(daemonset = %self.daemonset, %id, error = %e, "cannot remove instance; will retry");
                    self.last_error = Some(format!("removing {id}: {e}"));
                }
            }
            Action::Create { spec, restart } => {
                let slot = self.slots.entry(spec.container_name.clone()).or_default();
                let hash = spec.spec_hash();
                if slot.spec_hash.as_ref().is_some_and(|h| *h != hash) {
                    // A new revision is a new pod: no back-off, no restarts carried over.
                    *slot = Slot::default();
                    self.ctx.restarts.set(&self.daemonset, &spec.container_name, 0);
                }
                slot.spec_hash = Some(hash);
                if restart {
                    slot.restarts = slot.restarts.saturating_add(1);
                    slot.failed(&policy, now);
                    self.ctx
                        .restarts
                        .set(&self.daemonset, &spec.container_name, slot.restarts);
                }
                match runtime.create_and_start(&spec).await {
                    Ok(instance) => {
                        info!(daemonset = %self.daemonset, id = %instance.id, revision = %spec.revision, restart, "started instance");
                        slot.waiting = None;
                        slot.last_id = Some(instance.id);
                    }
                    Err(e) => {
                        warn!(daemonset = %self.daemonset, error = %e, "cannot start instance; backing off");
                        slot.waiting = Some((e.status_reason().to_string(), e.to_string()));
                        if !restart {
                            slot.failed(&policy, now);
                        }
                        self.last_error = Some(e.to_string());
                    }
                }
            }
        }
    }
}
