//! `apps/v1` DaemonSet manifests: the model, loading, validation and revision identity.
//!
//! # Layout
//! - `daemonset`, `pod`, `container`, `volume`, `meta`, `quantity`: the serde model of the
//!   honoured fields, in Kubernetes' JSON shape (camelCase), so it round-trips and can be stored.
//! - `load`: files, directories and stdin, `kind: List`, bounded input; `documents`: YAML
//!   (multi-document) and JSON streams cut into documents, under alias and size budgets.
//! - `tree`: documents as trees of positioned nodes; `schema` + `fields`: the table of every
//!   Kubernetes field; `walk`: checks a tree against it, finding unknown fields (errors with
//!   the nearest name), wrong types and ignored Kubernetes fields (warnings).
//! - `defaults`: what the API server would fill in; `validate`: Kubernetes' rules, every
//!   problem at once; `manifest`: the result for one object.
//! - `downward`: the pod facts a node knows and the downward API fields read from them;
//!   `expand`: Kubernetes' `$(VAR)` expansion in env values, commands and args.
//! - `revision`: the pod template hash; `strategy`: the update budget; `tolerations`: the
//!   tolerations every DaemonSet instance gets.
//!
//! # Use
//! ```
//! let yaml = br#"
//! apiVersion: apps/v1
//! kind: DaemonSet
//! metadata: {name: agent}
//! spec:
//!   selector: {matchLabels: {app: agent}}
//!   template:
//!     metadata: {labels: {app: agent}}
//!     spec:
//!       containers: [{name: agent, image: "agent:1.0"}]
//! "#;
//! let manifests = everynode::spec::parse(yaml, "agent.yaml");
//! let valid = manifests.into_iter().next().unwrap().into_valid().unwrap();
//! let daemonset = valid.into_daemonset().unwrap();
//! assert_eq!(daemonset.metadata.name, "agent");
//! let revision = everynode::spec::revision_hash(&daemonset.spec.template);
//! assert_eq!(revision.len(), 10);
//! ```

pub mod config;
pub mod container;
pub mod daemonset;
pub mod defaults;
mod documents;
pub mod downward;
pub mod expand;
mod fields;
pub mod issue;
pub mod load;
pub mod manifest;
pub mod meta;
pub mod pod;
pub mod quantity;
pub mod references;
pub mod revision;
mod schema;
pub mod strategy;
pub mod tolerations;
pub mod tree;
mod validate;
pub mod volume;
mod walk;

pub use config::{ConfigMap, Namespace, Secret};
pub use container::{Container, PullPolicy};
pub use daemonset::{DaemonSet, DaemonSetSpec, UpdateStrategyType};
pub use issue::{Issue, Location, Severity};
pub use load::{load, parse, LoadError, MAX_INPUT_BYTES};
pub use manifest::{InvalidManifest, Manifest, Object, Origin, Skipped, Valid};
pub use pod::{PodSpec, PodTemplateSpec, Toleration, TolerationOperator};
pub use quantity::{IntOrString, Quantity};
pub use revision::revision_hash;
pub use strategy::{Budget, IntOrPercent, OnFailure, RolloutPolicy, Strategy};
pub(crate) use validate::is_env_var_name;
pub use validate::validate;

impl DaemonSet {
    /// The revision hash of this DaemonSet's pod template.
    pub fn revision(&self) -> String {
        revision_hash(&self.spec.template)
    }

    /// The update strategy with Kubernetes' defaults applied.
    pub fn strategy(&self) -> Strategy {
        Strategy::from_spec(&self.spec.update_strategy)
    }

    /// Builds a DaemonSet from JSON as the control plane stores it (or as an API client
    /// sends it), with the same checks as a manifest file: unknown fields, defaults,
    /// validation. Returns it with its warnings.
    pub fn from_json(bytes: &[u8]) -> Result<(DaemonSet, Vec<Issue>), InvalidManifest> {
        let valid = object_from_json(bytes)?;
        match valid.object {
            Object::DaemonSet(ds) => Ok((ds, valid.warnings)),
            other => Err(InvalidManifest {
                kind: other.kind().to_string(),
                origin: Origin::whole("<json>"),
                errors: vec![Issue::error(
                    "kind",
                    format!("expected a DaemonSet, got {}", other.kind()),
                )],
            }),
        }
    }
}

/// Reads one object from JSON as an API client sends it, with the checks of a manifest file.
pub fn object_from_json(bytes: &[u8]) -> Result<Valid, InvalidManifest> {
    let mut manifests = parse(bytes, "<json>");
    if manifests.len() != 1 {
        return Err(InvalidManifest {
            kind: "object".into(),
            origin: Origin::whole("<json>"),
            errors: vec![Issue::error(
                "",
                format!("expected exactly one object, found {}", manifests.len()),
            )],
        });
    }
    manifests.remove(0).into_valid()
}
