//! The node agent: one `NodeAgent` actor per node starts one `DaemonSetActor` per DaemonSet that selects the node; each keeps its instances converged.
//!
//! # Layout
//! - [`desired`]: the revision granted to this node and the instance specs built from it.
//! - [`podfiles`]: ConfigMaps, Secrets and the downward API as files and variables (pure);
//!   [`podsetup`]: the host side (store objects, volume directories, hostPath checks).
//! - [`reconcile`]: the pure decision (create, adopt, replace, remove, restart with back-off).
//! - [`probe`]: startup, liveness and readiness probes (exec, HTTP GET, TCP connect).
//! - [`status`]: the per-DaemonSet status gossiped by each node, and its aggregation.
//! - [`daemonset_actor`]: the thin actor around `reconcile` that talks to the runtime.
//! - [`node_agent`]: the supervisor that follows the store and this node's labels and taints.
//! - [`policy`]: what this host's owner refuses to run (privileged, host network, host paths).
//! - [`snapshot`]: one runtime listing per resync, shared by every actor of the node.
//! - [`restarts`]: restart counts kept in the data dir across agent restarts.

pub mod daemonset_actor;
pub mod desired;
pub mod node_agent;
pub mod podfiles;
pub mod podsetup;
pub mod policy;
pub mod probe;
pub mod reconcile;
pub mod restarts;
pub mod snapshot;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use desired::{granted_revision, Desired};
pub use node_agent::NodeAgent;
pub use reconcile::BackoffPolicy;
pub use restarts::RestartBook;
pub use snapshot::InstanceCache;
pub use status::PodStatus;

use crate::membership::{keys, Membership};
use crate::runtime::ContainerRuntime;

/// What can go wrong turning a DaemonSet into instances on this node.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AgentError {
    /// The template passed validation but cannot become an instance here (a value out of range).
    #[error("daemonset {daemonset}: {field}: {reason}; fix the manifest and apply it again")]
    InvalidTemplate {
        daemonset: String,
        field: String,
        reason: String,
    },
    /// A ConfigMap, Secret or key the template reads is missing (`CreateContainerConfigError`
    /// in Kubernetes); the instance starts once it is applied.
    #[error("daemonset {daemonset}: {reason}; apply it, or mark the reference optional")]
    Config { daemonset: String, reason: String },
    /// A volume cannot be set up on this host (a hostPath of the wrong type, a full disk).
    #[error("daemonset {daemonset}: volume {volume}: {reason}")]
    Volume {
        daemonset: String,
        volume: String,
        reason: String,
    },
}

/// Knobs of the agent; tests shorten the intervals.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    /// Cluster name, put on every instance so clusters sharing an engine never mix.
    pub cluster: String,
    /// This node's id.
    pub node: String,
    /// How often each DaemonSet is reconciled and probed even when nothing changed.
    pub resync: Duration,
    /// Crash restart back-off.
    pub backoff: BackoffPolicy,
    /// Grace period for instances of DaemonSets the store no longer has.
    pub orphan_grace: Duration,
    /// What this host refuses to run, whatever the cluster asks.
    pub policy: policy::NodePolicy,
    /// Where instances' volume files live (configMap, secret, downwardAPI, projected, emptyDir).
    pub pod_root: std::path::PathBuf,
    /// Where `seccompProfile: {type: Localhost}` profiles are read from.
    pub seccomp_dir: std::path::PathBuf,
    /// This node's advertised address: `status.hostIP` (and `status.podIP` where the instance
    /// shares the host's network).
    pub host_ip: String,
    /// Opens the store's sealed Secrets; without it no Secret can be read on this node.
    pub seal: Option<Arc<crate::security::at_rest::SecretBox>>,
    /// This host's CPU and memory, for `resourceFieldRef` without a limit.
    pub allocatable: crate::spec::downward::ResourceList,
}

impl AgentSettings {
    pub fn new(cluster: &str, node: &str) -> Self {
        AgentSettings {
            cluster: cluster.to_string(),
            node: node.to_string(),
            resync: Duration::from_secs(1),
            backoff: BackoffPolicy::default(),
            orphan_grace: Duration::from_secs(10),
            policy: policy::NodePolicy::default(),
            pod_root: std::env::temp_dir()
                .join("everynode-pods")
                .join(cluster)
                .join(node),
            seccomp_dir: std::env::temp_dir().join("everynode-seccomp"),
            host_ip: String::new(),
            seal: None,
            allocatable: podsetup::allocatable(),
        }
    }
}

/// Where statuses go: gossip in a node, a map in tests.
#[async_trait]
pub trait StatusSink: Send + Sync {
    /// Publishes (`Some`) or withdraws (`None`) this node's status for one DaemonSet.
    async fn publish(&self, daemonset: &str, status: Option<&PodStatus>);
}

#[async_trait]
impl StatusSink for Membership {
    async fn publish(&self, daemonset: &str, status: Option<&PodStatus>) {
        let key = keys::ds_status_key(daemonset);
        match status {
            Some(s) => self.set_local(&key, keys::encode_pod_status(s)).await,
            None => self.delete_local(&key).await,
        }
    }
}

/// What every actor of one node shares.
pub struct AgentContext {
    pub settings: AgentSettings,
    pub runtime: Arc<dyn ContainerRuntime>,
    pub sink: Arc<dyn StatusSink>,
    /// This node's instances, listed once per resync for all actors rather than once per actor.
    pub instances: InstanceCache,
    /// Restart counts, which must outlive the actors (and, in a node, the agent process).
    pub restarts: RestartBook,
    /// Set by `everynode leave`: every DaemonSet is retired here and none starts again.
    pub leaving: tokio::sync::watch::Sender<bool>,
}

impl AgentContext {
    pub fn new(
        settings: AgentSettings,
        runtime: Arc<dyn ContainerRuntime>,
        sink: Arc<dyn StatusSink>,
        restarts: RestartBook,
    ) -> Self {
        let instances = InstanceCache::new(
            runtime.clone(),
            &settings.cluster,
            &settings.node,
            settings.resync,
        );
        AgentContext {
            settings,
            runtime,
            sink,
            instances,
            restarts,
            leaving: tokio::sync::watch::channel(false).0,
        }
    }
}

#[cfg(test)]
mod tests;
