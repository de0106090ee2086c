//! The pod template's spec: containers and init containers, host volumes, host namespaces and placement fields.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

use super::container::{secs, Container};
use super::meta::TemplateMeta;
use super::volume::{
    ConfigMapVolumeSource, DownwardAPIVolumeSource, EmptyDirVolumeSource, ProjectedVolumeSource,
    SecretVolumeSource,
};
use crate::scheduling::taint::TaintEffect;

/// `spec.template`: what runs on every selected node. Its hash is the revision identity.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodTemplateSpec {
    #[serde(default)]
    pub metadata: TemplateMeta,
    #[serde(default)]
    pub spec: PodSpec,
}

/// Kubernetes' default grace period between SIGTERM and SIGKILL.
pub const DEFAULT_TERMINATION_GRACE_SECONDS: i64 = 30;

fn default_grace() -> i64 {
    DEFAULT_TERMINATION_GRACE_SECONDS
}

/// The honoured part of a Kubernetes `PodSpec`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    #[serde(default)]
    pub containers: Vec<Container>,
    /// Run in order, each to completion, before the containers start (sidecars, with
    /// `restartPolicy: Always`, keep running instead). Left out of the JSON when empty, so
    /// templates without any keep their revision hash.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub init_containers: Vec<Container>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    /// Use the host's network namespace (the usual choice for node agents).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub host_network: bool,
    /// Use the host's process namespace.
    #[serde(default, rename = "hostPID", skip_serializing_if = "std::ops::Not::not")]
    pub host_pid: bool,
    /// Use the host's IPC namespace.
    #[serde(default, rename = "hostIPC", skip_serializing_if = "std::ops::Not::not")]
    pub host_ipc: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Pins the DaemonSet to one node, as Kubernetes does for a template with `nodeName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    #[serde(default = "default_grace")]
    pub termination_grace_period_seconds: i64,
    #[serde(default)]
    pub restart_policy: RestartPolicy,
}

impl Default for PodSpec {
    fn default() -> Self {
        PodSpec {
            containers: Vec::new(),
            init_containers: Vec::new(),
            volumes: Vec::new(),
            host_network: false,
            host_pid: false,
            host_ipc: false,
            node_selector: BTreeMap::new(),
            node_name: None,
            affinity: None,
            tolerations: Vec::new(),
            termination_grace_period_seconds: DEFAULT_TERMINATION_GRACE_SECONDS,
            restart_policy: RestartPolicy::Always,
        }
    }
}

impl PodSpec {
    /// How long a container gets between SIGTERM and SIGKILL.
    pub fn termination_grace_period(&self) -> Duration {
        secs(self.termination_grace_period_seconds)
    }

    /// The required node affinity, if any.
    pub fn required_node_affinity(&self) -> Option<&NodeSelector> {
        self.affinity
            .as_ref()?
            .node_affinity
            .as_ref()?
            .required_during_scheduling_ignored_during_execution
            .as_ref()
    }
}

/// Pod restart policy; a DaemonSet only allows `Always`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RestartPolicy {
    #[default]
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            RestartPolicy::Always => "Always",
            RestartPolicy::OnFailure => "OnFailure",
            RestartPolicy::Never => "Never",
        }
    }
}

/// A volume: a host path, objects of the store (ConfigMaps, Secrets), pod facts, or scratch
/// space. Exactly one source is set; validation checks that.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<HostPathVolumeSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapVolumeSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretVolumeSource>,
    #[serde(default, rename = "downwardAPI", skip_serializing_if = "Option::is_none")]
    pub downward_api: Option<DownwardAPIVolumeSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub projected: Option<ProjectedVolumeSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_dir: Option<EmptyDirVolumeSource>,
    /// Other volume sources (nfs, csi, persistentVolumeClaim...), kept so that the manifest
    /// round-trips and mounts of such volumes can be reported as not honoured.
    #[serde(flatten)]
    pub unsupported: BTreeMap<String, serde_json::Value>,
}

impl Volume {
    /// The names of the sources set, honoured ones first, as the manifest spells them.
    pub fn source_names(&self) -> Vec<&str> {
        let honoured = [
            ("hostPath", self.host_path.is_some()),
            ("configMap", self.config_map.is_some()),
            ("secret", self.secret.is_some()),
            ("downwardAPI", self.downward_api.is_some()),
            ("projected", self.projected.is_some()),
            ("emptyDir", self.empty_dir.is_some()),
        ];
        honoured
            .into_iter()
            .filter(|(_, set)| *set)
            .map(|(name, _)| name)
            .chain(self.unsupported.keys().map(String::as_str))
            .collect()
    }
}

/// A directory or file of the host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostPathVolumeSource {
    #[serde(default)]
    pub path: String,
    /// What must exist at `path` before the container starts; empty means "no check".
    #[serde(
        default,
        rename = "type",
        deserialize_with = "empty_as_default",
        skip_serializing_if = "Option::is_none"
    )]
    pub type_: Option<HostPathType>,
}

/// Checks made on a host path before mounting it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HostPathType {
    DirectoryOrCreate,
    Directory,
    FileOrCreate,
    File,
    Socket,
    CharDevice,
    BlockDevice,
}

/// `affinity`: only node affinity is honoured.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Affinity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_affinity: Option<NodeAffinity>,
}

/// `nodeAffinity`: only the required part decides placement.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeAffinity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_during_scheduling_ignored_during_execution: Option<NodeSelector>,
}

/// A node selector: terms ORed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeSelector {
    #[serde(default)]
    pub node_selector_terms: Vec<NodeSelectorTerm>,
}

/// One term: expressions and fields ANDed. An empty term matches no node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeSelectorTerm {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<NodeSelectorRequirement>,
    /// Only `metadata.name` is a valid field, as in Kubernetes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_fields: Vec<NodeSelectorRequirement>,
}

/// `key operator values`, matched against node labels (or node fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeSelectorRequirement {
    #[serde(default)]
    pub key: String,
    /// Required in manifests (loading reports a missing one); the serde default only lets
    /// the rest of such an object be read and checked.
    #[serde(default)]
    pub operator: NodeSelectorOperator,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// Node selector operators.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NodeSelectorOperator {
    #[default]
    In,
    NotIn,
    Exists,
    DoesNotExist,
    Gt,
    Lt,
}

impl NodeSelectorOperator {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeSelectorOperator::In => "In",
            NodeSelectorOperator::NotIn => "NotIn",
            NodeSelectorOperator::Exists => "Exists",
            NodeSelectorOperator::DoesNotExist => "DoesNotExist",
            NodeSelectorOperator::Gt => "Gt",
            NodeSelectorOperator::Lt => "Lt",
        }
    }
}

/// A toleration of node taints.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Toleration {
    /// Empty with `Exists` means "every key".
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
    #[serde(default, deserialize_with = "empty_as_default")]
    pub operator: TolerationOperator,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
    /// None (written as empty or absent) matches every effect.
    #[serde(
        default,
        deserialize_with = "empty_as_default",
        skip_serializing_if = "Option::is_none"
    )]
    pub effect: Option<TaintEffect>,
    /// For `NoExecute`: how long the instance may stay after the taint appears.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toleration_seconds: Option<i64>,
}

/// How a toleration compares values; empty means `Equal`, as in Kubernetes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TolerationOperator {
    #[default]
    Equal,
    Exists,
}

/// Reads `""` and `null` as the type's default, as Go reads an empty enum string.
fn empty_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned + Default,
{
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Null => Ok(T::default()),
        serde_json::Value::String(s) if s.is_empty() => Ok(T::default()),
        other => T::deserialize(other).map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_operator_and_effect_read_as_defaults() {
        let t: Toleration =
            serde_json::from_str(r#"{"key":"k","operator":"","effect":"","value":"v"}"#).unwrap();
        assert_eq!(t.operator, TolerationOperator::Equal);
        assert_eq!(t.effect, None);
        let t: Toleration = serde_json::from_str(r#"{"operator":"Exists","effect":"NoExecute"}"#).unwrap();
        assert_eq!(t.operator, TolerationOperator::Exists);
        assert_eq!(t.effect, Some(TaintEffect::NoExecute));
    }

    #[test]
    fn pod_spec_defaults_match_kubernetes() {
        let spec: PodSpec = serde_json::from_str("{}").unwrap();
        assert_eq!(spec.restart_policy, RestartPolicy::Always);
        assert_eq!(spec.termination_grace_period(), Duration::from_secs(30));
        assert_eq!(spec, PodSpec::default());
    }
}
