//! The store the Raft log builds: DaemonSets with their revision history, and node overrides; `apply` is deterministic so every replica computes the same state.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::replica::Versioned;
use crate::scheduling::{Taint, TaintEffect};
use crate::spec::{revision_hash, DaemonSet, PodTemplateSpec};

/// Annotation whose value is recorded as a revision's change cause, as kubectl does.
pub const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";

/// Everything the leader owns. `version` is the Raft index it was applied up to.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Store {
    pub version: u64,
    /// By name: names are unique across namespaces, so `get ds NAME` needs no namespace.
    pub daemonsets: BTreeMap<String, DaemonSetRecord>,
    /// Label and taint changes made with `everynode label/taint node`, by node name.
    pub nodes: BTreeMap<String, NodeOverride>,
    /// Nodes that left (`everynode leave`) or were removed (`everynode remove node`), with the
    /// last gossip generation that is gone: that one and older are listed as `left`; a later
    /// start of the same node id is a new member.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub departed: BTreeMap<String, u64>,
}

impl Versioned for Store {
    fn version(&self) -> u64 {
        self.version
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
}

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
        at: u64,
    },
    Delete {
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
    /// A node left or was removed: its overrides are dropped and its generation `generation`
    /// (and older ones) is recorded as gone, so every node lists it as `left` and the leader
    /// gives its Raft seat away.
    NodeLeft {
        node: String,
        generation: u64,
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
    /// The current revision number after the apply.
    pub revision: u64,
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
            Command::Apply { daemonsets, at } => {
                // Check every object first so that a conflict stores none of them.
                for ds in daemonsets {
                    if let Some(message) = self.conflict(ds) {
                        return Response::Conflict { message };
                    }
                }
                let results = daemonsets
                    .iter()
                    .map(|ds| self.apply_daemonset(ds, *at))
                    .collect();
                Response::Applied { results }
            }
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
            Command::ForgetNode { node } => {
                self.nodes.remove(node);
                Response::Ok
            }
            Command::NodeLeft { node, generation } => {
                self.nodes.remove(node);
                let gone = self.departed.entry(node.clone()).or_insert(0);
                *gone = (*gone).max(*generation);
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

    fn prune_node(&mut self, node: &str) {
        if self
            .nodes
            .get(node)
            .is_some_and(|o| *o == NodeOverride::default())
        {
            self.nodes.remove(node);
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
                },
            );
            return Applied {
                name: ds.metadata.name.clone(),
                outcome: ApplyOutcome::Created,
                revision: 1,
            };
        };
        if record.daemonset == *ds {
            return Applied {
                name,
                outcome: ApplyOutcome::Unchanged,
                revision: record.current_revision().number,
            };
        }
        record.daemonset = ds.clone();
        record.generation += 1;
        record.updated_at = at;
        if record.current_revision().hash != hash {
            let next = record.current_revision().number + 1;
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
            let keep_old = ds.spec.revision_history_limit.max(0) as usize;
            let excess = record.revisions.len().saturating_sub(keep_old + 1);
            record.revisions.drain(..excess);
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
        Applied {
            name,
            outcome: ApplyOutcome::Configured,
            revision: record.current_revision().number,
        }
    }
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
        m.into_valid().unwrap().daemonset
    }

    fn apply(store: &mut Store, d: &DaemonSet) -> Response {
        store.apply(&Command::Apply {
            daemonsets: vec![d.clone()],
            at: 100,
        })
    }

    fn applied(outcome: ApplyOutcome, revision: u64) -> Response {
        Response::Applied {
            results: vec![Applied {
                name: "agent".into(),
                outcome,
                revision,
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
    fn a_node_that_left_loses_its_overrides_and_only_newer_generations_come_back() {
        let mut s = Store::default();
        s.apply(&Command::DrainNode {
            node: "n1".into(),
            drained: true,
        });
        let left = |generation| Command::NodeLeft {
            node: "n1".into(),
            generation,
        };
        assert_eq!(s.apply(&left(20)), Response::Ok);
        assert!(!s.is_drained("n1") && s.nodes.is_empty());
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
}
