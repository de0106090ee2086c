//! The store the Raft log builds: DaemonSets with their revision history, ConfigMaps and sealed Secrets, and node overrides; `apply` is deterministic so every replica computes the same state.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::configs::{ConfigKind, ConfigMapRecord, SealedSecret, SecretRecord};
use super::replica::Versioned;
use crate::rollout::state::{Failure, Grant, RolloutState};
use crate::scheduling::{Taint, TaintEffect};
use crate::spec::{revision_hash, ConfigMap, DaemonSet, OnFailure, PodTemplateSpec, RolloutPolicy};

/// Annotation whose value is recorded as a revision's change cause, as kubectl does.
pub const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";
/// Template annotation `rollout restart` sets, the one kubectl uses.
pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";

/// Everything the leader owns. `version` is the Raft index it was applied up to.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Store {
    pub version: u64,
    /// By name: names are unique across namespaces, so `get ds NAME` needs no namespace.
    pub daemonsets: BTreeMap<String, DaemonSetRecord>,
    /// By `namespace/name` (see [`super::configs::key`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config_maps: BTreeMap<String, ConfigMapRecord>,
    /// By `namespace/name`; values sealed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, SecretRecord>,
    /// Label and taint changes made with `everynode label/taint node`, by node name.
    pub nodes: BTreeMap<String, NodeOverride>,
    /// Nodes that left (`everynode leave`) or were removed (`everynode remove node`), with the
    /// last gossip generation that is gone: that one and older are listed as `left`; a later
    /// start of the same node id is a new member.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub departed: BTreeMap<String, u64>,
    /// When each of those left (unix seconds, leader clock), so the record can go once no
    /// gossip can show that generation any more.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub departed_at: BTreeMap<String, u64>,
    /// Which Raft group wrote this store (see [`Versioned::epoch`]): the version is an index in
    /// that group's log only, so a group formed anew (after losing its majority, or on wiped
    /// hosts) starts again at 1 and must still win over a copy of the old group.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub epoch: String,
}

impl Versioned for Store {
    fn version(&self) -> u64 {
        self.version
    }

    fn epoch(&self) -> &str {
        &self.epoch
    }
}

/// One DaemonSet as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DaemonSetRecord {
    /// The object as last applied (defaulted).
    pub daemonset: DaemonSet,
    /// Bumped on every change of the object, like `metadata.generation`.
    pub generation: u64,
    /// Unix seconds, from the leader's clock when the change was proposed.
    pub created_at: u64,
    pub updated_at: u64,
    /// Template history, oldest first; the last one is current.
    pub revisions: Vec<Revision>,
    /// What happened to the DaemonSet lately, newest last, at most [`MAX_EVENTS`].
    #[serde(default)]
    pub events: Vec<Event>,
    /// Which revision each node may run, and the rollout's pause and failure.
    #[serde(default)]
    pub rollout: RolloutState,
    /// What the last apply said the template asks for and everynode does not do.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_honoured: Vec<String>,
}

/// How long a departure is remembered: gossip forgets a dead generation after a day (chitchat's
/// dead-node grace, see `node.rs`), so after two no listing can show the old generation, and the
/// record would only grow the store with every node that ever left.
pub const DEPARTED_KEPT_SECS: u64 = 2 * 24 * 3600;

/// Events kept per DaemonSet; older ones are dropped, as Kubernetes expires them.
pub const MAX_EVENTS: usize = 20;

/// One thing that happened to a DaemonSet, shown by `describe`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Unix seconds, from the leader's clock when the change was proposed.
    pub at: u64,
    /// A CamelCase word, as Kubernetes events have.
    pub reason: String,
    pub message: String,
}

impl DaemonSetRecord {
    fn record_event(&mut self, at: u64, reason: &str, message: String) {
        self.events.push(Event {
            at,
            reason: reason.to_string(),
            message,
        });
        let excess = self.events.len().saturating_sub(MAX_EVENTS);
        self.events.drain(..excess);
    }
}

fn images(ds: &DaemonSet) -> String {
    let images: Vec<&str> = ds
        .spec
        .template
        .spec
        .containers
        .iter()
        .map(|c| c.image.as_str())
        .collect();
    images.join(",")
}

impl DaemonSetRecord {
    pub fn current_revision(&self) -> &Revision {
        self.revisions
            .last()
            .expect("a stored DaemonSet always has a revision")
    }

    /// The revision `node` may run: its grant, else the rollout's baseline, else the current
    /// one (also when the history no longer has the granted revision).
    pub fn granted_revision(&self, node: &str) -> &Revision {
        let current = self.current_revision();
        let target = self.rollout.target(node, &current.hash);
        self.revisions
            .iter()
            .find(|r| r.hash == target)
            .unwrap_or(current)
    }

    pub fn revision_by_hash(&self, hash: &str) -> Option<&Revision> {
        self.revisions.iter().find(|r| r.hash == hash)
    }
}

/// One pod template the DaemonSet has run, like a Kubernetes ControllerRevision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Revision {
    pub number: u64,
    pub hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_cause: Option<String>,
    pub created_at: u64,
    pub template: PodTemplateSpec,
}

/// Changes to a node's labels and taints, layered over the node's own flags.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeOverride {
    pub labels: BTreeMap<String, String>,
    /// Labels removed even if the node's own flags set them.
    pub removed_labels: BTreeSet<String>,
    pub taints: Vec<Taint>,
    /// Taints removed even if the node's own flags set them: (key, effect or all effects).
    pub removed_taints: Vec<(String, Option<TaintEffect>)>,
    /// Set by `everynode drain`: the node runs no DaemonSet until `everynode uncordon`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drained: bool,
}

impl NodeOverride {
    /// The node's effective labels and taints given its own.
    pub fn layer(&self, labels: &mut BTreeMap<String, String>, taints: &mut Vec<Taint>) {
        labels.retain(|k, _| !self.removed_labels.contains(k));
        labels.extend(self.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        taints.retain(|t| !self.removed_taints.iter().any(|r| taint_matches(t, r)));
        for t in &self.taints {
            taints.retain(|o| !(o.key == t.key && o.effect == t.effect));
            taints.push(t.clone());
        }
    }
}

fn taint_matches(t: &Taint, (key, effect): &(String, Option<TaintEffect>)) -> bool {
    t.key == *key && effect.is_none_or(|e| e == t.effect)
}

/// A write, as committed through Raft. Validation happens before proposing; applying
/// never fails except for the outcomes in [`Response`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Command {
    /// Several objects at once (one manifest file): all are stored, or none.
    Apply {
        daemonsets: Vec<DaemonSet>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        config_maps: Vec<ConfigMap>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        secrets: Vec<SealedSecret>,
        /// By DaemonSet name: the template's fields everynode does not honour, with why, as
        /// the validator words them, so `describe` can say so after the fact.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        warnings: BTreeMap<String, Vec<String>>,
        at: u64,
    },
    Delete {
        name: String,
    },
    /// Deletes a ConfigMap or Secret.
    DeleteConfig {
        kind: ConfigKind,
        namespace: String,
        name: String,
    },
    LabelNode {
        node: String,
        set: BTreeMap<String, String>,
        remove: BTreeSet<String>,
    },
    TaintNode {
        node: String,
        add: Vec<Taint>,
        remove: Vec<(String, Option<TaintEffect>)>,
    },
    /// `drain` (true) or `uncordon` (false) a node.
    DrainNode {
        node: String,
        drained: bool,
    },
    /// Drops every override of a node that left the cluster.
    ForgetNode {
        node: String,
    },
    /// Drops the grants, holds and `delete pod` counts of nodes gossip no longer lists (dead for
    /// longer than its dead-node grace); their label and taint overrides stay, an operator's.
    ForgetRolloutNodes {
        nodes: Vec<String>,
    },
    /// One step of the rollout planner, valid only against the rollout state `seq` it was
    /// computed from and the current revision `revision`. With `complete`, the nodes of
    /// `hold` (selected but absent) keep what they run; `release` ends holds on nodes gone for
    /// good.
    RolloutStep {
        name: String,
        seq: u64,
        revision: String,
        grant: Vec<String>,
        failure: Option<Failure>,
        complete: bool,
        at: u64,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        hold: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        release: Vec<String>,
    },
    /// `rollout pause` (true) or `resume` (false); resuming also clears a paused failure.
    PauseRollout {
        name: String,
        paused: bool,
        at: u64,
    },
    /// `rollout undo`: the template of revision `to_revision` (default: the one before the
    /// current) becomes current again, under a new number.
    Undo {
        name: String,
        to_revision: Option<u64>,
        at: u64,
    },
    /// `rollout restart`: a new revision with the same template and a `restartedAt` annotation.
    RestartRollout {
        name: String,
        at: u64,
    },
    /// `delete pod`: the node replaces its instance, at the current revision.
    DeletePod {
        name: String,
        node: String,
        at: u64,
    },
    /// A node left or was removed: its overrides, grants and pod generations are dropped and its
    /// generation `generation`
    /// (and older ones) is recorded as gone, so every node lists it as `left` and the leader
    /// gives its Raft seat away.
    NodeLeft {
        node: String,
        generation: u64,
        /// Unix seconds (leader clock) of the departure, after which its record is kept for
        /// [`DEPARTED_KEPT_SECS`]; 0 from a node of an older version.
        #[serde(default)]
        at: u64,
    },
}

/// What happened to an applied object, as kubectl words it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApplyOutcome {
    Created,
    Configured,
    Unchanged,
}

/// What apply did to one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub name: String,
    pub outcome: ApplyOutcome,
    /// The current revision number after the apply (the generation, for a ConfigMap or Secret).
    pub revision: u64,
    #[serde(default = "daemonset_kind")]
    pub kind: String,
    #[serde(default = "crate::spec::meta::default_namespace")]
    pub namespace: String,
}

/// `kind` of an apply result written before results named their kind.
pub(crate) fn daemonset_kind() -> String {
    "DaemonSet".into()
}

impl Applied {
    fn daemonset(ds: &DaemonSet, outcome: ApplyOutcome, revision: u64) -> Applied {
        Applied {
            name: ds.metadata.name.clone(),
            outcome,
            revision,
            kind: daemonset_kind(),
            namespace: ds.metadata.namespace.clone(),
        }
    }
}

/// The result of one command.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    #[default]
    Ok,
    Applied {
        results: Vec<Applied>,
    },
    NotFound {
        name: String,
    },
    Conflict {
        message: String,
    },
}

impl Store {
    /// Applies one committed command. Must stay deterministic: no clocks, no randomness.
    pub fn apply(&mut self, cmd: &Command) -> Response {
        match cmd {
            Command::Apply {
                daemonsets,
                config_maps,
                secrets,
                warnings,
                at,
            } => {
                self.prune_departed(*at);
                // Check every object first so that a conflict stores none of them.
                for ds in daemonsets {
                    if let Some(message) = self.conflict(ds) {
                        return Response::Conflict { message };
                    }
                }
                if let Some(message) = self.config_conflict(config_maps, secrets) {
                    return Response::Conflict { message };
                }
                // Configuration first, as kubectl orders a bundle: the DaemonSet's instances
                // find what they mount.
                let mut results: Vec<Applied> = config_maps
                    .iter()
                    .map(|cm| self.apply_config_map(cm, *at))
                    .collect();
                results.extend(secrets.iter().map(|s| self.apply_secret(s, *at)));
                results.extend(daemonsets.iter().map(|ds| self.apply_daemonset(ds, *at)));
                for ds in daemonsets {
                    if let Some(record) = self.daemonsets.get_mut(&ds.metadata.name) {
                        record.not_honoured = warnings.get(&ds.metadata.name).cloned().unwrap_or_default();
                    }
                }
                Response::Applied { results }
            }
            Command::DeleteConfig {
                kind,
                namespace,
                name,
            } => self.delete_config(*kind, namespace, name),
            Command::Delete { name } => match self.daemonsets.remove(name) {
                Some(_) => Response::Ok,
                None => Response::NotFound { name: name.clone() },
            },
            Command::LabelNode { node, set, remove } => {
                let o = self.nodes.entry(node.clone()).or_default();
                for key in remove {
                    o.labels.remove(key);
                    o.removed_labels.insert(key.clone());
                }
                for (k, v) in set {
                    o.removed_labels.remove(k);
                    o.labels.insert(k.clone(), v.clone());
                }
                self.prune_node(node);
                Response::Ok
            }
            Command::ForgetRolloutNodes { nodes } => {
                for record in self.daemonsets.values_mut() {
                    for node in nodes {
                        record.rollout.forget_node(node);
                    }
                }
                Response::Ok
            }
            Command::ForgetNode { node } => {
                self.nodes.remove(node);
                for record in self.daemonsets.values_mut() {
                    record.rollout.forget_node(node);
                }
                Response::Ok
            }
            Command::RolloutStep {
                name,
                seq,
                revision,
                grant,
                failure,
                complete,
                at,
                hold,
                release,
            } => self.rollout_step(
                name,
                *seq,
                revision,
                grant,
                failure.as_ref(),
                (*complete).then_some(hold.as_slice()),
                release,
                *at,
            ),
            Command::PauseRollout { name, paused, at } => {
                let Some(record) = self.daemonsets.get_mut(name) else {
                    return Response::NotFound { name: name.clone() };
                };
                let r = &mut record.rollout;
                r.paused = *paused;
                r.seq += 1;
                let mut message = if *paused {
                    "rollout paused"
                } else {
                    "rollout resumed"
                }
                .to_string();
                if !*paused {
                    if let Some(f) = r.failure.take_if(|f| f.rolled_back_to.is_none()) {
                        message.push_str(&format!(
                            "; the failure on {} is cleared and its nodes get a new deadline",
                            f.nodes.join(", ")
                        ));
                    }
                    let current = record
                        .revisions
                        .last()
                        .map(|r| r.hash.clone())
                        .unwrap_or_default();
                    for g in r.grants.values_mut().filter(|g| g.revision == current) {
                        g.at = *at;
                    }
                }
                let reason = if *paused { "Paused" } else { "Resumed" };
                record.record_event(*at, reason, message);
                Response::Ok
            }
            Command::Undo {
                name,
                to_revision,
                at,
            } => self.undo(name, *to_revision, *at),
            Command::RestartRollout { name, at } => {
                let Some(record) = self.daemonsets.get(name) else {
                    return Response::NotFound { name: name.clone() };
                };
                let mut ds = record.daemonset.clone();
                ds.spec
                    .template
                    .metadata
                    .annotations
                    .insert(RESTARTED_AT.into(), rfc3339(*at));
                let applied = self.apply_daemonset(&ds, *at);
                Response::Applied {
                    results: vec![applied],
                }
            }
            Command::DeletePod { name, node, at } => {
                let Some(record) = self.daemonsets.get_mut(name) else {
                    return Response::NotFound { name: name.clone() };
                };
                let current = record.current_revision().hash.clone();
                let r = &mut record.rollout;
                *r.pod_generations.entry(node.clone()).or_default() += 1;
                // Also a node held back: deleting its instance is asking for the current one.
                if r.target(node, &current) != current {
                    r.grants.insert(
                        node.clone(),
                        Grant {
                            revision: current,
                            at: *at,
                        },
                    );
                }
                r.seq += 1;
                record.record_event(
                    *at,
                    "PodDeleted",
                    format!("instance on node {node} deleted; it is replaced at the current revision"),
                );
                Response::Ok
            }
            Command::NodeLeft { node, generation, at } => {
                self.nodes.remove(node);
                // Nothing more runs there: its grants, holds and pod generations would only
                // grow the store with every node that ever left.
                for record in self.daemonsets.values_mut() {
                    record.rollout.forget_node(node);
                }
                let gone = self.departed.entry(node.clone()).or_insert(0);
                *gone = (*gone).max(*generation);
                self.departed_at.insert(node.clone(), *at);
                self.prune_departed(*at);
                Response::Ok
            }
            Command::DrainNode { node, drained } => {
                self.nodes.entry(node.clone()).or_default().drained = *drained;
                self.prune_node(node);
                Response::Ok
            }
            Command::TaintNode { node, add, remove } => {
                let o = self.nodes.entry(node.clone()).or_default();
                for r in remove {
                    o.taints.retain(|t| !taint_matches(t, r));
                    if !o.removed_taints.contains(r) {
                        o.removed_taints.push(r.clone());
                    }
                }
                for t in add {
                    o.removed_taints.retain(|r| !taint_matches(t, r));
                    o.taints.retain(|x| !(x.key == t.key && x.effect == t.effect));
                    o.taints.push(t.clone());
                }
                self.prune_node(node);
                Response::Ok
            }
        }
    }

    /// Whether `everynode drain` keeps DaemonSets off this node.
    pub fn is_drained(&self, node: &str) -> bool {
        self.nodes.get(node).is_some_and(|o| o.drained)
    }

    /// Forgets departures older than [`DEPARTED_KEPT_SECS`] at `now`; a departure without a
    /// time (recorded by an older version) starts its clock now.
    fn prune_departed(&mut self, now: u64) {
        if now == 0 {
            return;
        }
        for node in self.departed.keys() {
            let since = self.departed_at.entry(node.clone()).or_insert(now);
            if *since == 0 {
                *since = now;
            }
        }
        let expired: Vec<String> = self
            .departed_at
            .iter()
            .filter(|(_, since)| since.saturating_add(DEPARTED_KEPT_SECS) < now)
            .map(|(node, _)| node.clone())
            .collect();
        for node in expired {
            self.departed.remove(&node);
            self.departed_at.remove(&node);
        }
    }

    fn prune_node(&mut self, node: &str) {
        if self
            .nodes
            .get(node)
            .is_some_and(|o| *o == NodeOverride::default())
        {
            self.nodes.remove(node);
        }
    }

    /// `complete`: the rollout is over, holding back the absent nodes given.
    #[allow(clippy::too_many_arguments)]
    fn rollout_step(
        &mut self,
        name: &str,
        seq: u64,
        revision: &str,
        grant: &[String],
        failure: Option<&Failure>,
        complete: Option<&[String]>,
        release: &[String],
        at: u64,
    ) -> Response {
        let Some(record) = self.daemonsets.get_mut(name) else {
            return Response::NotFound {
                name: name.to_string(),
            };
        };
        if record.rollout.seq != seq || record.current_revision().hash != revision {
            return Response::Conflict {
                message: format!("rollout step for {name} was planned on an older state; planning again"),
            };
        }
        let current = record.current_revision().clone();
        let r = &mut record.rollout;
        r.seq += 1;
        let released: Vec<String> = release
            .iter()
            .filter(|n| r.held.remove(*n).is_some())
            .cloned()
            .collect();
        if !released.is_empty() {
            record.record_event(
                at,
                "HoldReleased",
                format!(
                    "{} no longer held back (gone longer than the dead-node grace, left, or no longer selected): revision {} if it runs this DaemonSet again",
                    released.join(", "),
                    current.number
                ),
            );
        }
        let r = &mut record.rollout;
        if !grant.is_empty() {
            r.wave += 1;
            for node in grant {
                r.held.remove(node);
                r.grants.insert(
                    node.clone(),
                    Grant {
                        revision: current.hash.clone(),
                        at,
                    },
                );
            }
            let wave = r.wave;
            record.record_event(
                at,
                "RolloutWave",
                format!(
                    "wave {wave}: revision {} granted to {}",
                    current.number,
                    grant.join(", ")
                ),
            );
        }
        if let Some(absent) = complete {
            let held = record.rollout.finish(&current.hash, absent, at);
            let mut message = format!("every eligible node runs revision {}", current.number);
            if !held.is_empty() {
                let held: Vec<String> = held
                    .iter()
                    .map(|(node, hash)| match record.revision_by_hash(hash) {
                        Some(r) => format!("{node} (revision {})", r.number),
                        None => node.clone(),
                    })
                    .collect();
                message.push_str(&format!(
                    "; absent {} stay on their revision and are updated in waves when they return",
                    held.join(", ")
                ));
            }
            record.record_event(at, "RolloutComplete", message);
        }
        let Some(failure) = failure else {
            return Response::Ok;
        };
        let mut failure = failure.clone();
        record.record_event(at, "RolloutFailed", failure.reason.clone());
        let policy = RolloutPolicy::of(&record.daemonset.metadata.annotations);
        let back_to = record
            .rollout
            .baseline
            .as_ref()
            .filter(|b| **b != current.hash)
            .and_then(|b| record.revision_by_hash(b))
            .map(|r| r.number);
        match (policy.on_failure, back_to) {
            (OnFailure::Rollback, Some(number)) => {
                record.rollout.failure = Some(failure.clone());
                let Response::Applied { results } = self.undo(name, Some(number), at) else {
                    return Response::Ok;
                };
                failure.rolled_back_to = results.first().map(|a| a.revision);
                let record = self.daemonsets.get_mut(name).expect("just undone");
                // The undo is a template change, which clears the failure: keep it for status.
                record.rollout.failure = Some(failure);
            }
            _ => record.rollout.failure = Some(failure),
        }
        Response::Ok
    }

    fn undo(&mut self, name: &str, to_revision: Option<u64>, at: u64) -> Response {
        let Some(record) = self.daemonsets.get(name) else {
            return Response::NotFound {
                name: name.to_string(),
            };
        };
        let numbers: Vec<String> = record.revisions.iter().map(|r| r.number.to_string()).collect();
        let target = match to_revision {
            Some(n) => record.revisions.iter().find(|r| r.number == n),
            None => record.revisions.iter().rev().nth(1),
        };
        let Some(target) = target else {
            let asked = match to_revision {
                Some(n) => format!("has no revision {n}"),
                None => "has no earlier revision to return to".to_string(),
            };
            return Response::Conflict {
                message: format!(
                    "daemonset {name} {asked}; its revisions are {} (see `everynode rollout history ds {name}`)",
                    numbers.join(", ")
                ),
            };
        };
        if target.hash == record.current_revision().hash {
            return Response::Applied {
                results: vec![Applied::daemonset(
                    &record.daemonset,
                    ApplyOutcome::Unchanged,
                    target.number,
                )],
            };
        }
        let from = target.number;
        let mut ds = record.daemonset.clone();
        ds.spec.template = target.template.clone();
        let applied = self.apply_daemonset(&ds, at);
        if let Some(record) = self.daemonsets.get_mut(name) {
            record.record_event(
                at,
                "RolledBack",
                format!(
                    "template of revision {from} is current again as revision {}",
                    applied.revision
                ),
            );
        }
        Response::Applied {
            results: vec![applied],
        }
    }

    fn conflict(&self, ds: &DaemonSet) -> Option<String> {
        let existing = self.daemonsets.get(&ds.metadata.name)?;
        (existing.daemonset.metadata.namespace != ds.metadata.namespace).then(|| {
            format!(
                "daemonset {} already exists in namespace {}; DaemonSet names are unique across namespaces in everynode, rename one of them",
                ds.metadata.name, existing.daemonset.metadata.namespace
            )
        })
    }

    fn apply_daemonset(&mut self, ds: &DaemonSet, at: u64) -> Applied {
        let name = ds.metadata.name.clone();
        let hash = revision_hash(&ds.spec.template);
        let cause = ds.metadata.annotations.get(CHANGE_CAUSE).cloned();
        let Some(record) = self.daemonsets.get_mut(&name) else {
            self.daemonsets.insert(
                name,
                DaemonSetRecord {
                    daemonset: ds.clone(),
                    generation: 1,
                    created_at: at,
                    updated_at: at,
                    revisions: vec![Revision {
                        number: 1,
                        hash,
                        change_cause: cause,
                        created_at: at,
                        template: ds.spec.template.clone(),
                    }],
                    events: vec![Event {
                        at,
                        reason: "Created".into(),
                        message: format!("created with revision 1 ({})", images(ds)),
                    }],
                    rollout: RolloutState::default(),
                    not_honoured: Vec::new(),
                },
            );
            return Applied::daemonset(ds, ApplyOutcome::Created, 1);
        };
        if record.daemonset == *ds {
            return Applied::daemonset(ds, ApplyOutcome::Unchanged, record.current_revision().number);
        }
        record.daemonset = ds.clone();
        record.generation += 1;
        record.updated_at = at;
        if record.current_revision().hash != hash {
            let next = record.current_revision().number + 1;
            let previous = record.current_revision().hash.clone();
            // Returning to an old template reuses its revision under a new number, as
            // Kubernetes does with ControllerRevisions, so history shows each template once.
            record.revisions.retain(|r| r.hash != hash);
            record.revisions.push(Revision {
                number: next,
                hash,
                change_cause: cause,
                created_at: at,
                template: ds.spec.template.clone(),
            });
            let r = &mut record.rollout;
            if !r.in_progress() {
                // Nodes keep what ran before until the planner grants them the new revision.
                r.baseline = Some(previous);
                r.wave = 0;
            }
            r.failure = None;
            r.seq += 1;
            prune_history(
                &mut record.revisions,
                ds.spec.revision_history_limit.max(0) as usize,
                &r.revisions_in_use(),
            );
            let known: BTreeSet<String> = record.revisions.iter().map(|r| r.hash.clone()).collect();
            r.retain_revisions(&known, &record.revisions.last().expect("has a revision").hash);
            record.record_event(
                at,
                "TemplateChanged",
                format!("new revision {next} ({})", images(ds)),
            );
        } else {
            if let Some(cause) = cause {
                record.revisions.last_mut().expect("has a revision").change_cause = Some(cause);
            }
            record.record_event(
                at,
                "Configured",
                format!("generation {} without a template change", record.generation),
            );
        }
        Applied::daemonset(ds, ApplyOutcome::Configured, record.current_revision().number)
    }
}

/// Drops the oldest old revisions beyond `limit`, as Kubernetes' DaemonSet controller does, but
/// never one in `in_use` (the baseline nodes run until granted, a revision granted to a node, or
/// one a node is held on):
/// the planner needs those to hold the budget, whatever the limit, and a node must always be told
/// a template it may run. Revisions in use count toward the limit but are never removed.
fn prune_history(revisions: &mut Vec<Revision>, limit: usize, in_use: &BTreeSet<String>) {
    let old = revisions.len().saturating_sub(1);
    let mut to_drop = old.saturating_sub(limit);
    let mut index = 0;
    revisions.retain(|r| {
        let is_old = index < old;
        index += 1;
        if to_drop > 0 && is_old && !in_use.contains(&r.hash) {
            to_drop -= 1;
            return false;
        }
        true
    });
}

/// Unix seconds as RFC 3339 in UTC, as kubectl writes `restartedAt`.
fn rfc3339(at: u64) -> String {
    chrono::DateTime::from_timestamp(at as i64, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds(name: &str, image: &str) -> DaemonSet {
        let yaml = format!(
            "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {{name: {name}}}\nspec:\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      containers: [{{name: main, image: \"{image}\"}}]\n"
        );
        let m = crate::spec::parse(yaml.as_bytes(), "test.yaml")
            .into_iter()
            .next()
            .unwrap();
        m.into_valid().unwrap().into_daemonset().unwrap()
    }

    fn apply(store: &mut Store, d: &DaemonSet) -> Response {
        store.apply(&Command::Apply {
            daemonsets: vec![d.clone()],
            config_maps: vec![],
            secrets: vec![],
            warnings: Default::default(),
            at: 100,
        })
    }

    fn applied(outcome: ApplyOutcome, revision: u64) -> Response {
        Response::Applied {
            results: vec![Applied {
                name: "agent".into(),
                outcome,
                revision,
                kind: "DaemonSet".into(),
                namespace: "default".into(),
            }],
        }
    }

    #[test]
    fn apply_creates_configures_and_leaves_unchanged() {
        let mut s = Store::default();
        let v1 = ds("agent", "agent:1");
        assert_eq!(apply(&mut s, &v1), applied(ApplyOutcome::Created, 1));
        assert_eq!(apply(&mut s, &v1), applied(ApplyOutcome::Unchanged, 1));
        let v2 = ds("agent", "agent:2");
        assert_eq!(apply(&mut s, &v2), applied(ApplyOutcome::Configured, 2));
        // A label on the DaemonSet is a change but not a new revision.
        let mut v2l = v2.clone();
        v2l.metadata.labels.insert("team".into(), "obs".into());
        assert_eq!(apply(&mut s, &v2l), applied(ApplyOutcome::Configured, 2));
        assert_eq!(s.daemonsets["agent"].generation, 3);
    }

    #[test]
    fn returning_to_an_old_template_renumbers_it_and_history_is_bounded() {
        let mut s = Store::default();
        apply(&mut s, &ds("agent", "agent:1"));
        apply(&mut s, &ds("agent", "agent:2"));
        apply(&mut s, &ds("agent", "agent:1"));
        let numbers: Vec<u64> = s.daemonsets["agent"].revisions.iter().map(|r| r.number).collect();
        assert_eq!(numbers, vec![2, 3]);
        let mut limited = ds("agent", "agent:9");
        limited.spec.revision_history_limit = 1;
        apply(&mut s, &limited);
        let numbers: Vec<u64> = s.daemonsets["agent"].revisions.iter().map(|r| r.number).collect();
        assert_eq!(numbers, vec![3, 4]);
    }

    #[test]
    fn pruning_never_removes_a_revision_a_node_runs_or_is_granted() {
        use crate::rollout::state::Grant;
        let numbers =
            |s: &Store| -> Vec<u64> { s.daemonsets["agent"].revisions.iter().map(|r| r.number).collect() };
        let with_limit = |image: &str, limit: i32| {
            let mut d = ds("agent", image);
            d.spec.revision_history_limit = limit;
            d
        };
        let mut s = Store::default();
        apply(&mut s, &with_limit("agent:1", 0));
        apply(&mut s, &with_limit("agent:2", 0));
        assert_eq!(
            numbers(&s),
            vec![1, 2],
            "every node still runs revision 1, the baseline"
        );
        let record = s.daemonsets.get_mut("agent").unwrap();
        let h2 = record.revisions[1].hash.clone();
        record
            .rollout
            .grants
            .insert("n1".into(), Grant { revision: h2, at: 0 });
        // Interrupted by more template changes than the limit: the baseline and the granted
        // revision stay, so the planner keeps its budget.
        apply(&mut s, &with_limit("agent:3", 0));
        apply(&mut s, &with_limit("agent:4", 0));
        assert_eq!(numbers(&s), vec![1, 2, 4]);
        let r = &s.daemonsets["agent"].rollout;
        assert_eq!(
            r.baseline.as_deref(),
            Some(s.daemonsets["agent"].revisions[0].hash.as_str())
        );
        assert_eq!(r.grants.len(), 1, "the grant survives: {r:?}");
        // Once the rollout is over, nothing is in use but the current revision.
        let record = s.daemonsets.get_mut("agent").unwrap();
        record.rollout.baseline = None;
        record.rollout.grants.clear();
        apply(&mut s, &with_limit("agent:5", 0));
        assert_eq!(numbers(&s), vec![4, 5], "revision 4 is the new baseline");
    }

    #[test]
    fn departures_are_forgotten_once_gossip_can_no_longer_show_them() {
        let mut s = Store::default();
        let leave = |node: &str, at| Command::NodeLeft {
            node: node.into(),
            generation: 7,
            at,
        };
        let t0 = 1_700_000_000;
        s.apply(&leave("n1", t0));
        // Recorded by an older version: no time yet.
        s.departed.insert("old".into(), 3);
        let write_at = |s: &mut Store, at| {
            s.apply(&Command::Apply {
                daemonsets: vec![],
                config_maps: vec![],
                secrets: vec![],
                warnings: Default::default(),
                at,
            })
        };
        write_at(&mut s, t0 + 3600);
        assert!(s.departed.contains_key("n1") && s.departed.contains_key("old"));
        assert_eq!(
            s.departed_at["old"],
            t0 + 3600,
            "its clock starts at the next write"
        );
        write_at(&mut s, t0 + DEPARTED_KEPT_SECS + 1);
        assert!(!s.departed.contains_key("n1") && !s.departed_at.contains_key("n1"));
        assert!(
            s.departed.contains_key("old"),
            "the older record has not had its time yet"
        );
        write_at(&mut s, t0 + 3600 + DEPARTED_KEPT_SECS + 1);
        assert!(
            s.departed.is_empty() && s.departed_at.is_empty(),
            "{:?}",
            s.departed
        );
    }

    #[test]
    fn events_tell_what_happened_and_are_bounded() {
        let mut s = Store::default();
        apply(&mut s, &ds("agent", "agent:1"));
        apply(&mut s, &ds("agent", "agent:2"));
        let reasons: Vec<&str> = s.daemonsets["agent"]
            .events
            .iter()
            .map(|e| e.reason.as_str())
            .collect();
        assert_eq!(reasons, vec!["Created", "TemplateChanged"]);
        assert!(s.daemonsets["agent"].events[1].message.contains("agent:2"));
        for i in 0..30 {
            apply(&mut s, &ds("agent", &format!("agent:{}", i + 3)));
        }
        assert_eq!(s.daemonsets["agent"].events.len(), MAX_EVENTS);
    }

    #[test]
    fn change_cause_is_recorded() {
        let mut s = Store::default();
        let mut d = ds("agent", "agent:1");
        d.metadata
            .annotations
            .insert(CHANGE_CAUSE.into(), "first deploy".into());
        apply(&mut s, &d);
        assert_eq!(
            s.daemonsets["agent"].current_revision().change_cause.as_deref(),
            Some("first deploy")
        );
    }

    #[test]
    fn same_name_in_another_namespace_is_a_conflict() {
        let mut s = Store::default();
        apply(&mut s, &ds("agent", "agent:1"));
        let mut other = ds("agent", "agent:1");
        other.metadata.namespace = "monitoring".into();
        let fresh = ds("fresh", "fresh:1");
        let both = Command::Apply {
            daemonsets: vec![fresh, other],
            config_maps: vec![],
            secrets: vec![],
            warnings: Default::default(),
            at: 1,
        };
        assert!(matches!(s.apply(&both), Response::Conflict { .. }));
        assert!(
            !s.daemonsets.contains_key("fresh"),
            "a refused apply stores nothing"
        );
    }

    #[test]
    fn delete_and_not_found() {
        let mut s = Store::default();
        apply(&mut s, &ds("agent", "agent:1"));
        assert_eq!(s.apply(&Command::Delete { name: "agent".into() }), Response::Ok);
        assert_eq!(
            s.apply(&Command::Delete { name: "agent".into() }),
            Response::NotFound { name: "agent".into() }
        );
    }

    #[test]
    fn node_overrides_layer_over_the_nodes_own_labels_and_taints() {
        let mut s = Store::default();
        s.apply(&Command::LabelNode {
            node: "n1".into(),
            set: [("zone".to_string(), "b".to_string())].into(),
            remove: ["tier".to_string()].into(),
        });
        s.apply(&Command::TaintNode {
            node: "n1".into(),
            add: vec!["maintenance:NoExecute".parse().unwrap()],
            remove: vec![("gpu".into(), None)],
        });
        let mut labels: BTreeMap<String, String> = [
            ("zone".to_string(), "a".to_string()),
            ("tier".to_string(), "web".to_string()),
        ]
        .into();
        let mut taints: Vec<Taint> = vec!["gpu=yes:NoSchedule".parse().unwrap()];
        s.nodes["n1"].layer(&mut labels, &mut taints);
        assert_eq!(labels, [("zone".to_string(), "b".to_string())].into());
        assert_eq!(taints, vec!["maintenance:NoExecute".parse::<Taint>().unwrap()]);

        // Undoing every change leaves no override behind.
        s.apply(&Command::LabelNode {
            node: "n1".into(),
            set: BTreeMap::new(),
            remove: ["zone".to_string()].into(),
        });
        assert!(s.nodes["n1"].removed_labels.contains("zone"));
    }

    #[test]
    fn a_node_that_left_loses_its_overrides_grants_and_pod_generations_and_only_newer_generations_come_back()
    {
        let mut s = Store::default();
        s.apply(&Command::DrainNode {
            node: "n1".into(),
            drained: true,
        });
        let left = |generation| Command::NodeLeft {
            node: "n1".into(),
            generation,
            at: 1_000,
        };
        apply(&mut s, &ds("agent", "agent:1"));
        let rollout = &mut s.daemonsets.get_mut("agent").unwrap().rollout;
        let grant = crate::rollout::state::Grant {
            revision: "h".into(),
            at: 0,
        };
        rollout.grants.insert("n1".into(), grant.clone());
        rollout.grants.insert("n2".into(), grant);
        rollout.pod_generations.insert("n1".into(), 3);
        assert_eq!(s.apply(&left(20)), Response::Ok);
        assert!(!s.is_drained("n1") && s.nodes.is_empty());
        let rollout = &s.daemonsets["agent"].rollout;
        assert!(
            !rollout.grants.contains_key("n1") && rollout.grants.contains_key("n2"),
            "{rollout:?}"
        );
        assert!(rollout.pod_generations.is_empty(), "{rollout:?}");
        assert_eq!(s.departed["n1"], 20);
        s.apply(&left(10));
        assert_eq!(
            s.departed["n1"], 20,
            "an older generation never un-leaves a newer one"
        );
    }

    #[test]
    fn drain_marks_the_node_and_uncordon_forgets_it() {
        let mut s = Store::default();
        let drain = |drained| Command::DrainNode {
            node: "n1".into(),
            drained,
        };
        assert_eq!(s.apply(&drain(true)), Response::Ok);
        assert!(s.is_drained("n1") && !s.is_drained("n2"));
        s.apply(&drain(false));
        assert!(!s.is_drained("n1"));
        assert!(s.nodes.is_empty(), "an empty override is pruned");
    }

    fn step(s: &Store, grant: &[&str], failure: Option<Failure>, complete: bool) -> Command {
        let r = &s.daemonsets["agent"];
        Command::RolloutStep {
            name: "agent".into(),
            seq: r.rollout.seq,
            revision: r.current_revision().hash.clone(),
            grant: grant.iter().map(|g| g.to_string()).collect(),
            failure,
            complete,
            at: 200,
            hold: Vec::new(),
            release: Vec::new(),
        }
    }

    #[test]
    fn a_template_change_starts_a_rollout_from_the_old_revision() {
        let mut s = Store::default();
        apply(&mut s, &ds("agent", "agent:1"));
        let v1 = s.daemonsets["agent"].current_revision().hash.clone();
        assert!(
            !s.daemonsets["agent"].rollout.in_progress(),
            "a new DaemonSet runs everywhere at once"
        );
        apply(&mut s, &ds("agent", "agent:2"));
        let r = &s.daemonsets["agent"];
        assert_eq!(r.rollout.baseline.as_deref(), Some(v1.as_str()));
        assert_eq!(
            r.granted_revision("n1").number,
            1,
            "nodes keep revision 1 until granted"
        );

        // A step planned on an older state is refused.
        let stale = step(&s, &["n1"], None, false);
        s.apply(&Command::PauseRollout {
            name: "agent".into(),
            paused: false,
            at: 1,
        });
        assert!(matches!(s.apply(&stale), Response::Conflict { .. }));
        assert_eq!(s.daemonsets["agent"].granted_revision("n1").number, 1);

        assert_eq!(s.apply(&step(&s, &["n1"], None, false)), Response::Ok);
        let r = &s.daemonsets["agent"];
        assert_eq!(
            (r.granted_revision("n1").number, r.granted_revision("n2").number),
            (2, 1)
        );
        assert_eq!(r.rollout.wave, 1);
        s.apply(&step(&s, &[], None, true));
        let r = &s.daemonsets["agent"];
        assert!(!r.rollout.in_progress());
        assert_eq!(r.granted_revision("n2").number, 2);
    }

    fn failure(revision: &str) -> Failure {
        Failure {
            at: 200,
            revision: revision.into(),
            nodes: vec!["n1".into()],
            reason: "not available in time".into(),
            rolled_back_to: None,
        }
    }

    #[test]
    fn a_failure_pauses_or_rolls_back_by_annotation() {
        for (policy, want_current) in [("pause", 2), ("rollback", 3)] {
            let mut s = Store::default();
            let mut v1 = ds("agent", "agent:1");
            v1.metadata
                .annotations
                .insert(crate::spec::strategy::ON_FAILURE_ANNOTATION.into(), policy.into());
            apply(&mut s, &v1);
            let mut v2 = v1.clone();
            v2.spec.template.spec.containers[0].image = "agent:broken".into();
            apply(&mut s, &v2);
            s.apply(&step(&s, &["n1"], None, false));
            let broken = s.daemonsets["agent"].current_revision().hash.clone();
            s.apply(&step(&s, &[], Some(failure(&broken)), false));
            let r = &s.daemonsets["agent"];
            assert_eq!(r.current_revision().number, want_current, "{policy}");
            let f = r
                .rollout
                .failure
                .as_ref()
                .expect("the failure is kept for status");
            if policy == "rollback" {
                assert_eq!(f.rolled_back_to, Some(3));
                assert_eq!(r.daemonset.spec.template.spec.containers[0].image, "agent:1");
                // n1 still holds its grant of the broken revision: the planner moves it back.
                assert_eq!(r.granted_revision("n1").hash, broken);
                assert_eq!(r.granted_revision("n2").number, 3, "same template as revision 1");
                assert!(r.events.iter().any(|e| e.reason == "RolledBack"));
            } else {
                assert_eq!(f.rolled_back_to, None);
                // Resume clears it.
                s.apply(&Command::PauseRollout {
                    name: "agent".into(),
                    paused: false,
                    at: 300,
                });
                let r = &s.daemonsets["agent"];
                assert!(r.rollout.failure.is_none());
                assert_eq!(r.rollout.grants["n1"].at, 300, "a fresh deadline");
            }
        }
    }

    #[test]
    fn undo_restart_and_delete_pod() {
        let mut s = Store::default();
        apply(&mut s, &ds("agent", "agent:1"));
        apply(&mut s, &ds("agent", "agent:2"));
        let undo = |to| Command::Undo {
            name: "agent".into(),
            to_revision: to,
            at: 5,
        };
        assert_eq!(s.apply(&undo(None)), applied(ApplyOutcome::Configured, 3));
        assert_eq!(
            s.daemonsets["agent"].daemonset.spec.template.spec.containers[0].image,
            "agent:1"
        );
        match s.apply(&undo(Some(9))) {
            Response::Conflict { message } => assert!(
                message.contains("has no revision 9; its revisions are 2, 3"),
                "{message}"
            ),
            other => panic!("{other:?}"),
        }
        let before = s.daemonsets["agent"].current_revision().hash.clone();
        s.apply(&Command::RestartRollout {
            name: "agent".into(),
            at: 0,
        });
        let r = &s.daemonsets["agent"];
        assert_ne!(r.current_revision().hash, before, "restart makes a new revision");
        assert_eq!(
            r.daemonset.spec.template.metadata.annotations[RESTARTED_AT],
            "1970-01-01T00:00:00Z"
        );
        s.apply(&Command::DeletePod {
            name: "agent".into(),
            node: "n1".into(),
            at: 9,
        });
        let r = &s.daemonsets["agent"];
        assert_eq!(r.rollout.pod_generation("n1"), 1);
        assert_eq!(r.granted_revision("n1").hash, r.current_revision().hash);
        assert_eq!(
            r.granted_revision("n2").hash,
            before,
            "others wait for the planner"
        );
        s.apply(&Command::ForgetNode { node: "n1".into() });
        assert_eq!(s.daemonsets["agent"].rollout.pod_generation("n1"), 0);
    }
}
