//! Should a DaemonSet run on a node? The decision of Kubernetes' `NodeShouldRunDaemonPod`,
//! with every reason kept for `describe`.

use std::fmt;

use serde::Serialize;

use super::node::NodeInfo;
use super::selector::{node_affinity_matches, UnmetTerm};
use super::taint::{Taint, TaintEffect};
use super::toleration::{eviction, untolerated, Eviction};
use crate::spec::daemonset::DaemonSet;

/// Why a DaemonSet does not run on a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "camelCase")]
pub enum Reason {
    /// The template pins another node with `nodeName`.
    NodeName { wanted: String },
    /// A `nodeSelector` pair does not hold.
    NodeSelector {
        key: String,
        wanted: String,
        actual: Option<String>,
    },
    /// No term of the required node affinity matches.
    NodeAffinity {
        #[serde(serialize_with = "display_all")]
        unmet: Vec<UnmetTerm>,
    },
    /// A `NoSchedule` or `NoExecute` taint that no toleration tolerates.
    Taint {
        #[serde(serialize_with = "display")]
        taint: Taint,
    },
}

fn display<S: serde::Serializer, T: fmt::Display>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

fn display_all<S: serde::Serializer>(v: &[UnmetTerm], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(ToString::to_string))
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NodeName { wanted } => {
                write!(f, "the template is pinned to node {wanted:?} (spec.template.spec.nodeName)")
            }
            Reason::NodeSelector {
                key,
                wanted,
                actual: Some(actual),
            } => write!(f, "nodeSelector wants {key}={wanted}, the node has {key}={actual}"),
            Reason::NodeSelector { key, wanted, .. } => {
                write!(f, "nodeSelector wants {key}={wanted}, the node has no label {key}")
            }
            Reason::NodeAffinity { unmet } if unmet.is_empty() => {
                f.write_str("required node affinity has no terms, so it matches no node")
            }
            Reason::NodeAffinity { unmet } => {
                f.write_str("required node affinity does not match: ")?;
                for (i, u) in unmet.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{u}")?;
                }
                Ok(())
            }
            Reason::Taint { taint } => write!(
                f,
                "the node has taint {taint} and the DaemonSet does not tolerate it (add a toleration to spec.template.spec.tolerations)"
            ),
        }
    }
}

/// The placement decision for one (DaemonSet, node) pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Start an instance here if there is none.
    pub should_run: bool,
    /// Keep an instance that already runs here. True while `should_run` is; also when the
    /// only obstacle is a new untolerated `NoSchedule` taint, which (as in Kubernetes) keeps
    /// new instances off but does not evict.
    pub keep_running: bool,
    /// Every reason the DaemonSet does not run here; empty when `should_run`.
    pub reasons: Vec<Reason>,
    /// Set when a tolerated `NoExecute` taint has a `tolerationSeconds`: stop the instance
    /// that long after the taint appeared.
    pub eviction: Option<Eviction>,
}

impl Placement {
    /// One line for `describe`.
    pub fn summary(&self) -> String {
        if self.should_run {
            match &self.eviction {
                Some(e) => format!(
                    "runs here; evicted {}s after taint {} appeared",
                    e.after.as_secs(),
                    e.taint
                ),
                None => "runs here".to_string(),
            }
        } else {
            let reasons: Vec<String> = self.reasons.iter().map(ToString::to_string).collect();
            format!("does not run here: {}", reasons.join("; "))
        }
    }
}

/// Decides whether `ds` runs on `node` with Kubernetes' semantics: `nodeName`, then
/// `nodeSelector` and required node affinity, then taints against the template's
/// tolerations plus the ones Kubernetes adds to every DaemonSet pod.
pub fn should_run(ds: &DaemonSet, node: &NodeInfo) -> Placement {
    let spec = &ds.spec.template.spec;
    let mut reasons = Vec::new();
    if let Some(wanted) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        if wanted != node.name {
            reasons.push(Reason::NodeName {
                wanted: wanted.to_string(),
            });
        }
    }
    for (key, wanted) in &spec.node_selector {
        let actual = node.labels.get(key);
        if actual != Some(wanted) {
            reasons.push(Reason::NodeSelector {
                key: key.clone(),
                wanted: wanted.clone(),
                actual: actual.cloned(),
            });
        }
    }
    if let Some(required) = spec.required_node_affinity() {
        if let Err(unmet) = node_affinity_matches(required, node) {
            reasons.push(Reason::NodeAffinity { unmet });
        }
    }
    let fits_node = reasons.is_empty();
    let tolerations = spec.effective_tolerations();
    let blocking = untolerated(&node.taints, &tolerations);
    let evicting = blocking.iter().any(|t| t.effect == TaintEffect::NoExecute);
    reasons.extend(blocking.into_iter().map(|t| Reason::Taint { taint: t.clone() }));
    let should_run = reasons.is_empty();
    Placement {
        should_run,
        keep_running: fits_node && !evicting,
        reasons,
        eviction: if fits_node && !evicting {
            eviction(&node.taints, &tolerations)
        } else {
            None
        },
    }
}

#[cfg(test)]
mod tests;
