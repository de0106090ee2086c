//! What a pod template takes from ConfigMaps, Secrets and the downward API, made into files and variables as kubelet makes them.
//!
//! # Layout
//! - [`project`]: configMap, secret, downwardAPI and projected volumes as lists of files.
//! - [`env`]: `envFrom` and `env` resolved into the container's variables, and `$(VAR)` in
//!   command and args.
//! - [`atomic`]: kubelet's atomic writer, so a running container never sees half an update.
//! - [`empty_dir`]: what host directory an emptyDir needs.
//!
//! Everything but [`atomic`] is pure: objects come in through [`Objects`], pod facts
//! through [`PodContext`], and a [`ConfigError`] is what kubelet would report as
//! `CreateContainerConfigError`.

pub mod atomic;
pub mod empty_dir;
pub mod env;
pub mod project;

use std::collections::BTreeMap;
use std::fmt;

use thiserror::Error;

pub use atomic::write_atomically;
pub use empty_dir::{empty_dir, EmptyDir};
pub use env::{expand_command, resolve_env, Env, SkipReason, SkippedKey};
pub use project::{project, File};

use crate::spec::container::Container;
use crate::spec::downward::{DownwardError, PodFacts, ResourceList};

/// The keys of one ConfigMap or Secret and their bytes.
pub type Data = BTreeMap<String, Vec<u8>>;

/// Where ConfigMaps and Secrets are read: the store, in a node.
pub trait Objects {
    /// A ConfigMap of the pod's namespace, `data` and `binaryData` merged.
    fn config_map(&self, name: &str) -> Option<Data>;
    /// A Secret of the pod's namespace, its values decoded.
    fn secret(&self, name: &str) -> Option<Data>;
}

/// Objects held in memory: a snapshot of the store, or a test's fixtures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectMap {
    pub config_maps: BTreeMap<String, Data>,
    pub secrets: BTreeMap<String, Data>,
}

impl Objects for ObjectMap {
    fn config_map(&self, name: &str) -> Option<Data> {
        self.config_maps.get(name).cloned()
    }

    fn secret(&self, name: &str) -> Option<Data> {
        self.secrets.get(name).cloned()
    }
}

/// The two kinds of object a pod can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectKind {
    ConfigMap,
    Secret,
}

impl ObjectKind {
    fn get(self, objects: &dyn Objects, name: &str) -> Option<Data> {
        match self {
            ObjectKind::ConfigMap => objects.config_map(name),
            ObjectKind::Secret => objects.secret(name),
        }
    }
}

impl fmt::Display for ObjectKind {
    /// Lowercase, as kubelet's messages name them (`configmap "x" not found`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ObjectKind::ConfigMap => "configmap",
            ObjectKind::Secret => "secret",
        })
    }
}

/// What the pod's files and variables are made from, besides objects.
#[derive(Debug, Clone, Copy)]
pub struct PodContext<'a> {
    pub facts: &'a PodFacts,
    /// The template's containers, which `resourceFieldRef.containerName` names.
    pub containers: &'a [Container],
    /// The node's allocatable (`cpu`, `memory`, `ephemeral-storage`), which kubelet reads
    /// for a limit the container does not set.
    pub allocatable: Option<&'a ResourceList>,
}

impl PodContext<'_> {
    fn container(&self, name: &str) -> Result<&Container, ConfigError> {
        self.containers
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| ConfigError::ContainerNotFound { name: name.into() })
    }
}

/// Why a container cannot be configured yet; the agent shows it as
/// `CreateContainerConfigError` and retries, as kubelet does.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// A ConfigMap or Secret that is not optional does not exist.
    #[error("{kind} {name:?} not found")]
    ObjectNotFound { kind: ObjectKind, name: String },
    /// A key an item or variable names is not in the (non-optional) object.
    #[error("{kind} {name:?} has no key {key:?}")]
    KeyNotFound {
        kind: ObjectKind,
        name: String,
        key: String,
    },
    /// A variable's value must be text, and this key holds other bytes.
    #[error("{kind} {name:?} key {key:?} is not UTF-8 text, so it cannot be an environment variable")]
    NotText {
        kind: ObjectKind,
        name: String,
        key: String,
    },
    /// A downward API field or resource that cannot be read.
    #[error("{what}: {source}")]
    Downward {
        /// The variable or file it was for (`env NODE_IP`, `file labels`).
        what: String,
        #[source]
        source: DownwardError,
    },
    /// `resourceFieldRef.containerName` names no container of the pod.
    #[error("container {name:?} not found")]
    ContainerNotFound { name: String },
}

/// Reads an object once per resolution, so every key of it comes from the same version
/// even if the store changes meanwhile, and a large object is not copied per key.
struct Cache<'a> {
    objects: &'a dyn Objects,
    seen: BTreeMap<(ObjectKind, String), Option<Data>>,
}

impl<'a> Cache<'a> {
    fn new(objects: &'a dyn Objects) -> Self {
        Cache {
            objects,
            seen: BTreeMap::new(),
        }
    }

    /// The object, or None when it is missing.
    fn get(&mut self, kind: ObjectKind, name: &str) -> Option<&Data> {
        self.seen
            .entry((kind, name.to_string()))
            .or_insert_with(|| kind.get(self.objects, name))
            .as_ref()
    }

    /// The object; a missing one is an error unless `optional` (then None).
    fn require(
        &mut self,
        kind: ObjectKind,
        name: &str,
        optional: bool,
    ) -> Result<Option<&Data>, ConfigError> {
        match self.get(kind, name) {
            Some(data) => Ok(Some(data)),
            None if optional => Ok(None),
            None => Err(ConfigError::ObjectNotFound {
                kind,
                name: name.into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_like_kubelet() {
        let cases = [
            (
                ConfigError::ObjectNotFound {
                    kind: ObjectKind::ConfigMap,
                    name: "fluent-bit-config".into(),
                },
                "configmap \"fluent-bit-config\" not found",
            ),
            (
                ConfigError::KeyNotFound {
                    kind: ObjectKind::ConfigMap,
                    name: "x".into(),
                    key: "y".into(),
                },
                "configmap \"x\" has no key \"y\"",
            ),
            (
                ConfigError::ObjectNotFound {
                    kind: ObjectKind::Secret,
                    name: "es".into(),
                },
                "secret \"es\" not found",
            ),
        ];
        for (err, want) in cases {
            assert_eq!(err.to_string(), want);
        }
    }
}
