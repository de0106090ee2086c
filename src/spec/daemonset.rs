//! The `apps/v1` DaemonSet object and its update strategy, as stored by the control plane.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::container::secs;
use super::meta::{LabelSelector, ObjectMeta};
use super::pod::PodTemplateSpec;
use super::quantity::IntOrString;

pub const API_VERSION: &str = "apps/v1";
pub const KIND: &str = "DaemonSet";

/// A DaemonSet: run the template once on every node it selects.
///
/// Only honoured fields are modelled; loading reports the others (see [`crate::spec::load`]).
/// Serialized as Kubernetes JSON (camelCase), so it can be stored and read back unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DaemonSet {
    /// Empty when missing from a manifest, which validation reports; `Default` fills it.
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: DaemonSetSpec,
}

fn api_version() -> String {
    API_VERSION.to_string()
}

fn kind() -> String {
    KIND.to_string()
}

impl Default for DaemonSet {
    fn default() -> Self {
        DaemonSet {
            api_version: api_version(),
            kind: kind(),
            metadata: ObjectMeta::default(),
            spec: DaemonSetSpec::default(),
        }
    }
}

/// Kubernetes keeps this many old revisions by default.
pub const DEFAULT_REVISION_HISTORY_LIMIT: i32 = 10;

fn default_history() -> i32 {
    DEFAULT_REVISION_HISTORY_LIMIT
}

/// `spec` of a DaemonSet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DaemonSetSpec {
    /// Required by `apps/v1`; must match the template's labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    #[serde(default)]
    pub template: PodTemplateSpec,
    #[serde(default)]
    pub update_strategy: DaemonSetUpdateStrategy,
    /// How long a new instance must be ready before it counts as available.
    #[serde(default)]
    pub min_ready_seconds: i32,
    #[serde(default = "default_history")]
    pub revision_history_limit: i32,
}

impl Default for DaemonSetSpec {
    fn default() -> Self {
        DaemonSetSpec {
            selector: None,
            template: PodTemplateSpec::default(),
            update_strategy: DaemonSetUpdateStrategy::default(),
            min_ready_seconds: 0,
            revision_history_limit: DEFAULT_REVISION_HISTORY_LIMIT,
        }
    }
}

impl DaemonSetSpec {
    pub fn min_ready(&self) -> Duration {
        secs(self.min_ready_seconds)
    }
}

/// `spec.updateStrategy` as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DaemonSetUpdateStrategy {
    #[serde(default, rename = "type")]
    pub type_: UpdateStrategyType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling_update: Option<RollingUpdateDaemonSet>,
}

/// How instances are replaced when the template changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum UpdateStrategyType {
    /// Replace instances in waves within the `maxUnavailable`/`maxSurge` budget.
    #[default]
    RollingUpdate,
    /// Replace an instance only when the user deletes it.
    OnDelete,
}

/// `spec.updateStrategy.rollingUpdate`; absent values take Kubernetes' defaults (1 and 0).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RollingUpdateDaemonSet {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_surge: Option<IntOrString>,
}
