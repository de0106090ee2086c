//! The volume sources a node can provide from its own knowledge: ConfigMaps, Secrets, the downward API, projections of those, and emptyDir.

use serde::{Deserialize, Serialize};

use super::container::{ObjectFieldSelector, ResourceFieldSelector};
use super::quantity::Quantity;

/// Kubernetes' `defaultMode` for configMap, secret, downwardAPI and projected volumes
/// (0644), filled in by the API server and here by serde so that writing it or not gives
/// the same template and the same revision.
pub const DEFAULT_FILE_MODE: i32 = 0o644;

fn default_mode() -> i32 {
    DEFAULT_FILE_MODE
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// One key of a ConfigMap or Secret, projected to a file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyToPath {
    #[serde(default)]
    pub key: String,
    /// Relative to the volume root; may name subdirectories.
    #[serde(default)]
    pub path: String,
    /// Overrides the volume's `defaultMode` for this file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<i32>,
}

/// `configMap`: the keys of a ConfigMap as files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapVolumeSource {
    #[serde(default)]
    pub name: String,
    /// Without items every key becomes a file named after it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<KeyToPath>,
    #[serde(default = "default_mode")]
    pub default_mode: i32,
    /// A missing ConfigMap (or key) is then no error.
    #[serde(default, skip_serializing_if = "is_false")]
    pub optional: bool,
}

impl Default for ConfigMapVolumeSource {
    fn default() -> Self {
        ConfigMapVolumeSource {
            name: String::new(),
            items: Vec::new(),
            default_mode: DEFAULT_FILE_MODE,
            optional: false,
        }
    }
}

/// `secret`: the keys of a Secret as files. Kubernetes names the field `secretName` here,
/// unlike every other reference to a Secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretVolumeSource {
    #[serde(default)]
    pub secret_name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<KeyToPath>,
    #[serde(default = "default_mode")]
    pub default_mode: i32,
    #[serde(default, skip_serializing_if = "is_false")]
    pub optional: bool,
}

impl Default for SecretVolumeSource {
    fn default() -> Self {
        SecretVolumeSource {
            secret_name: String::new(),
            items: Vec::new(),
            default_mode: DEFAULT_FILE_MODE,
            optional: false,
        }
    }
}

/// One file of a downwardAPI volume: a pod field or a container resource.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DownwardAPIVolumeFile {
    #[serde(default)]
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_ref: Option<ObjectFieldSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_field_ref: Option<ResourceFieldSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<i32>,
}

/// `downwardAPI`: pod facts as files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DownwardAPIVolumeSource {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<DownwardAPIVolumeFile>,
    #[serde(default = "default_mode")]
    pub default_mode: i32,
}

impl Default for DownwardAPIVolumeSource {
    fn default() -> Self {
        DownwardAPIVolumeSource {
            items: Vec::new(),
            default_mode: DEFAULT_FILE_MODE,
        }
    }
}

/// `projected`: several sources merged into one directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectedVolumeSource {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<VolumeProjection>,
    #[serde(default = "default_mode")]
    pub default_mode: i32,
}

impl Default for ProjectedVolumeSource {
    fn default() -> Self {
        ProjectedVolumeSource {
            sources: Vec::new(),
            default_mode: DEFAULT_FILE_MODE,
        }
    }
}

/// One source of a projected volume; exactly one field is set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeProjection {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapProjection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretProjection>,
    #[serde(default, rename = "downwardAPI", skip_serializing_if = "Option::is_none")]
    pub downward_api: Option<DownwardAPIProjection>,
    /// Sources that need a Kubernetes API (serviceAccountToken, clusterTrustBundle...),
    /// kept so the manifest round-trips and validation still sees that a source was given.
    #[serde(flatten)]
    pub unsupported: std::collections::BTreeMap<String, serde_json::Value>,
}

/// A ConfigMap inside a projected volume (the modes come from the projected volume).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapProjection {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<KeyToPath>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub optional: bool,
}

/// A Secret inside a projected volume; here Kubernetes calls the field `name`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretProjection {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<KeyToPath>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub optional: bool,
}

/// Pod facts inside a projected volume.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DownwardAPIProjection {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<DownwardAPIVolumeFile>,
}

/// `emptyDir`: a scratch directory that lives as long as the instance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EmptyDirVolumeSource {
    #[serde(default, skip_serializing_if = "StorageMedium::is_default")]
    pub medium: StorageMedium,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_limit: Option<Quantity>,
}

/// Where an emptyDir lives: the node's disk (`""`) or memory (`Memory`, a tmpfs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StorageMedium {
    #[default]
    #[serde(rename = "")]
    Default,
    Memory,
}

impl StorageMedium {
    fn is_default(&self) -> bool {
        *self == StorageMedium::Default
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_modes_are_0644_as_kubernetes_defaults_them() {
        let cm: ConfigMapVolumeSource = serde_json::from_str(r#"{"name":"c"}"#).unwrap();
        assert_eq!((cm.default_mode, cm.optional), (0o644, false));
        let s: SecretVolumeSource = serde_json::from_str(r#"{"secretName":"s"}"#).unwrap();
        assert_eq!(s.default_mode, 420);
        let d: DownwardAPIVolumeSource = serde_json::from_str("{}").unwrap();
        assert_eq!(d.default_mode, 420);
        let p: ProjectedVolumeSource = serde_json::from_str("{}").unwrap();
        assert_eq!(p.default_mode, 420);
        assert_eq!(ConfigMapVolumeSource::default(), cm_named(""));
    }

    fn cm_named(name: &str) -> ConfigMapVolumeSource {
        serde_json::from_value(serde_json::json!({ "name": name })).unwrap()
    }

    #[test]
    fn projection_keeps_sources_it_cannot_honour() {
        let p: VolumeProjection =
            serde_json::from_str(r#"{"serviceAccountToken":{"path":"token"}}"#).unwrap();
        assert!(p.config_map.is_none() && p.secret.is_none() && p.downward_api.is_none());
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"serviceAccountToken":{"path":"token"}}"#
        );
    }

    #[test]
    fn empty_dir_medium_reads_empty_and_memory() {
        let e: EmptyDirVolumeSource = serde_json::from_str(r#"{"medium":""}"#).unwrap();
        assert_eq!(e.medium, StorageMedium::Default);
        assert_eq!(serde_json::to_string(&e).unwrap(), "{}");
        let e: EmptyDirVolumeSource =
            serde_json::from_str(r#"{"medium":"Memory","sizeLimit":"64Mi"}"#).unwrap();
        assert_eq!(e.medium, StorageMedium::Memory);
        assert_eq!(e.size_limit, Some(Quantity("64Mi".into())));
    }
}
