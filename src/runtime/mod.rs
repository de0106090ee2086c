//! Container runtimes: the `ContainerRuntime` trait the agent drives, and what it speaks in.
//!
//! The agent turns a DaemonSet into plain [`InstanceSpec`]s and asks a runtime to run them; the
//! runtime never sees Kubernetes types. What runs is found again through labels (see [`labels`]),
//! so the runtime, not the agent's memory, is the source of truth after an agent restart.
//!
//! # Layout
//! - [`labels`]: every label key the runtimes put on an instance, and the label set of a spec.
//! - [`docker`]: the Docker engine through bollard (API 1.41 and later); the pure conversion of
//!   a spec to Docker's create options in `docker/convert.rs`, the engine connection apart.
//! - [`select`]: choosing Docker or processes for this node (`--runtime auto`).
//! - [`process`]: child processes with JSON records in a state dir, for hosts without Docker;
//!   records, `/proc` and signals (all the `unsafe`), and logs (tails, rotation, following) apart.
//! - [`fake`]: the in-memory runtime with failure knobs, for tests and simulations.

pub mod docker;
pub mod fake;
pub mod labels;
pub mod process;
pub mod select;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// Boxed cause kept inside [`RuntimeError`] so callers can walk `source()` chains without this
/// module naming every backend's error type.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The runtime a node actually uses, after `auto` was resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    Docker,
    Process,
    /// The in-memory test runtime; never chosen from configuration.
    Fake,
}

impl RuntimeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeKind::Docker => "docker",
            RuntimeKind::Process => "process",
            RuntimeKind::Fake => "fake",
        }
    }
}

/// When to pull an image, with Kubernetes' meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum PullPolicy {
    /// Pull every time; a failed pull is an error even if an older copy is local.
    Always,
    /// Use the local image if there is one, else pull.
    #[default]
    IfNotPresent,
    /// Never pull; a missing image is an error.
    Never,
}

/// Transport protocol of a container port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// The lowercase name Docker uses in port keys such as `80/tcp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// A container port, published on the host when `host_port` is set (Kubernetes `hostPort`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSpec {
    pub container_port: u16,
    /// `None` declares the port without publishing it, as a DaemonSet without `hostPort` does.
    pub host_port: Option<u16>,
    pub protocol: Protocol,
}

/// A host directory or file bound into the container (a `volumeMount` of a hostPath, or of
/// the directory where the agent keeps a configMap, secret, downwardAPI, projected or emptyDir
/// volume).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountSpec {
    pub host_path: String,
    pub container_path: String,
    pub read_only: bool,
    /// `None` is private propagation; kept out of the JSON (and the spec hash) when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub propagation: Option<Propagation>,
}

/// Mount propagation (Kubernetes `mountPropagation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Propagation {
    /// Nothing travels (Docker `rprivate`).
    Private,
    /// Mounts made on the host later appear inside (Docker `rslave`).
    HostToContainer,
    /// Both ways (Docker `rshared`).
    Bidirectional,
}

/// Everything a runtime needs to run one instance of one DaemonSet on one node.
///
/// Plain data built by the agent from a DaemonSet revision plus the node it runs on, so the
/// runtimes stay independent of the manifest types and tests can build it by hand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceSpec {
    /// Cluster name, so two clusters sharing one Docker engine never adopt each other's containers.
    pub cluster: String,
    /// The node this instance belongs to; several simulated nodes can share one engine.
    pub node: String,
    /// DaemonSet name (with its namespace if the agent uses one, e.g. `kube-system/fluentd`).
    pub daemonset: String,
    /// Revision hash the leader granted; lets old and new revisions coexist during a surge.
    pub revision: String,
    /// Name of the container inside the pod template, kept for status and logs.
    pub container_name: String,
    /// Position among the pod's init containers; `None` for an app container. Left out of the
    /// JSON (so of the spec hash) when `None`, so app instances keep the hash they had before
    /// init containers existed and an agent upgrade adopts them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_index: Option<u32>,
    /// Image reference; ignored by the process runtime.
    pub image: String,
    pub image_pull_policy: PullPolicy,
    /// Kubernetes `command`: replaces the image entrypoint when not empty.
    pub command: Vec<String>,
    /// Kubernetes `args`: replaces the image cmd when not empty.
    pub args: Vec<String>,
    /// Ordered because later entries may refer to earlier ones in Kubernetes; kept as given.
    pub env: Vec<(String, String)>,
    pub ports: Vec<PortSpec>,
    pub host_network: bool,
    pub host_pid: bool,
    pub mounts: Vec<MountSpec>,
    /// CPU limit in millicores (`500m` = 500); `None` is unlimited.
    pub cpu_limit_millis: Option<u64>,
    /// Memory limit in bytes; `None` is unlimited.
    pub memory_limit_bytes: Option<u64>,
    pub privileged: bool,
    /// Numeric user to run as (`securityContext.runAsUser`); `None` keeps the image's user.
    pub run_as_user: Option<u32>,
    /// `None` keeps the image's working directory (`/` for the process runtime).
    pub working_dir: Option<String>,
    /// How long `stop` waits after SIGTERM before SIGKILL (`terminationGracePeriodSeconds`).
    pub termination_grace: Duration,
    /// Pod template labels copied onto the instance, so `get pods -l` can select on them.
    pub labels: BTreeMap<String, String>,
    /// What [`InstanceSpec::spec_hash`] answers instead of hashing this spec: the hash of the
    /// spec made with ConfigMap and Secret values emptied, so a changed value does not replace
    /// a running instance (Kubernetes resolves them when a container starts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// The rest of the container's securityContext, and hostIPC; left out of the JSON (and so
    /// of the spec hash) when nothing is set.
    #[serde(default, skip_serializing_if = "SecuritySpec::is_unset")]
    pub security: SecuritySpec,
}

/// What a container may do beyond `privileged` and `run_as_user`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecuritySpec {
    /// Primary group (`runAsGroup`); needs `run_as_user` on Docker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_group: Option<u32>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only_root_fs: bool,
    /// `allowPrivilegeEscalation: false`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_new_privileges: bool,
    /// Capability names without `CAP_`, or `ALL`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp: Option<Seccomp>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub host_ipc: bool,
}

impl SecuritySpec {
    pub fn is_unset(&self) -> bool {
        *self == SecuritySpec::default()
    }
}

/// The seccomp filter of a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Seccomp {
    /// The runtime's default profile (also what Docker applies when none is named).
    RuntimeDefault,
    Unconfined,
    /// A profile's JSON, read by the agent from the node's seccomp directory.
    Localhost(String),
}

/// An empty spec with Kubernetes' defaults (`IfNotPresent`, a 30 s grace), for building specs
/// field by field.
impl Default for InstanceSpec {
    fn default() -> Self {
        InstanceSpec {
            cluster: String::new(),
            node: String::new(),
            daemonset: String::new(),
            revision: String::new(),
            container_name: String::new(),
            init_index: None,
            image: String::new(),
            image_pull_policy: PullPolicy::IfNotPresent,
            command: Vec::new(),
            args: Vec::new(),
            env: Vec::new(),
            ports: Vec::new(),
            host_network: false,
            host_pid: false,
            mounts: Vec::new(),
            cpu_limit_millis: None,
            memory_limit_bytes: None,
            privileged: false,
            run_as_user: None,
            working_dir: None,
            termination_grace: Duration::from_secs(30),
            labels: BTreeMap::new(),
            identity: None,
            security: SecuritySpec::default(),
        }
    }
}

impl InstanceSpec {
    /// A stable hash of the whole spec, stored as a label so the agent can tell that an instance
    /// was made from an older spec of the same revision (e.g. a node-specific env value changed).
    ///
    /// FNV-1a over the JSON form, because `DefaultHasher` may change between Rust releases and the
    /// value must survive an agent upgrade.
    pub fn spec_hash(&self) -> String {
        if let Some(identity) = &self.identity {
            return identity.clone();
        }
        let bytes = serde_json::to_vec(self).expect("an InstanceSpec always serializes");
        format!("{:016x}", fnv1a(&bytes))
    }
}

/// 64-bit FNV-1a: tiny, stable, and good enough for change detection and name suffixes.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// The lifecycle phase of an instance as the runtime reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InstanceState {
    /// Created but never started (Docker only; a start failure can leave one behind).
    Created,
    Running,
    Paused,
    /// The engine is restarting it by its own policy; everynode never asks for one.
    Restarting,
    /// Being stopped or removed right now, or exited a moment ago with its exit status not
    /// recorded yet (the process runtime's reaper is a little behind the kernel).
    Terminating,
    /// Finished. `code` is `None` when the runtime could not learn it, e.g. a process adopted
    /// from an earlier agent that has since exited (only a parent can read an exit status).
    Exited {
        code: Option<i32>,
    },
    /// Docker's `dead`: removal failed half-way; only removing it helps.
    Dead,
}

impl InstanceState {
    pub fn is_running(self) -> bool {
        matches!(self, InstanceState::Running)
    }
}

/// One instance as observed in the runtime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// Runtime handle passed back to `stop`, `remove`, `inspect` and `exec`.
    pub id: String,
    /// Human-readable name (`everynode_<ds>_<node>_<revision>_<suffix>`).
    pub name: String,
    /// From the `daemonset` label; empty if the label is missing.
    pub daemonset: String,
    /// From the `revision` label; empty if the label is missing.
    pub revision: String,
    /// From the `spec-hash` label, to detect drift within a revision.
    pub spec_hash: Option<String>,
    pub state: InstanceState,
    pub started_at: Option<SystemTime>,
    pub finished_at: Option<SystemTime>,
    /// Why it stopped or failed when the runtime says (e.g. `OOMKilled`, Docker's state error).
    pub reason: Option<String>,
    /// Host pid of the main process while running, for logs and debugging.
    pub pid: Option<u32>,
    pub image: String,
    /// All labels, including the `io.everynode.*` ones.
    pub labels: BTreeMap<String, String>,
}

impl Instance {
    /// Fills the label-derived fields from `labels`, so every runtime derives them the same way.
    pub(crate) fn from_labels(
        id: String,
        name: String,
        state: InstanceState,
        labels: BTreeMap<String, String>,
    ) -> Self {
        let get = |k: &str| labels.get(k).cloned();
        Instance {
            id,
            name,
            daemonset: get(labels::DAEMONSET).unwrap_or_default(),
            revision: get(labels::REVISION).unwrap_or_default(),
            spec_hash: get(labels::SPEC_HASH),
            state,
            started_at: None,
            finished_at: None,
            reason: None,
            pid: None,
            image: String::new(),
            labels,
        }
    }
}

/// Everything that can go wrong in a runtime, shaped so the agent can show a status for it.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The image could not be pulled, or is absent under `Never`; the agent shows `ErrImagePull`
    /// and backs off instead of crashing.
    #[error("image {image}: {reason}")]
    ImagePull {
        image: String,
        reason: String,
        #[source]
        source: Option<BoxError>,
    },
    /// The spec cannot run on this runtime (bad path, missing command, unknown user, ...): retrying
    /// will not help until the DaemonSet changes.
    #[error("invalid instance spec: {reason}")]
    InvalidSpec {
        reason: String,
        #[source]
        source: Option<BoxError>,
    },
    /// No instance with this id; for `stop` and `remove` the agent may treat it as done.
    #[error("instance {id} not found")]
    NotFound { id: String },
    /// `exec` on an instance that is not running.
    #[error("instance {id} is not running")]
    NotRunning { id: String },
    /// The runtime itself cannot be reached (Docker socket gone, state dir unwritable).
    #[error("runtime unavailable: {reason}")]
    Unavailable {
        reason: String,
        #[source]
        source: Option<BoxError>,
    },
    /// An operation with a deadline (an exec probe) did not finish in time.
    #[error("{what} timed out after {after:?}")]
    Timeout { what: String, after: Duration },
    /// Anything else, with what was being done.
    #[error("{context}")]
    Other {
        context: String,
        #[source]
        source: Option<BoxError>,
    },
}

impl RuntimeError {
    /// The Kubernetes-style reason the agent publishes as the instance state on this error.
    pub fn status_reason(&self) -> &'static str {
        match self {
            RuntimeError::ImagePull { .. } => "ErrImagePull",
            RuntimeError::InvalidSpec { .. } => "CreateContainerConfigError",
            RuntimeError::NotFound { .. } => "NotFound",
            RuntimeError::NotRunning { .. } => "NotRunning",
            RuntimeError::Unavailable { .. } => "RuntimeUnavailable",
            RuntimeError::Timeout { .. } => "Timeout",
            RuntimeError::Other { .. } => "CreateContainerError",
        }
    }

    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        RuntimeError::InvalidSpec {
            reason: reason.into(),
            source: None,
        }
    }

    pub(crate) fn other(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        RuntimeError::Other {
            context: context.into(),
            source: Some(source.into()),
        }
    }
}

/// Shorthand used throughout the runtime module.
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// What the agent needs from a place that runs containers.
///
/// Every method is safe to call again after a failure or an agent restart: state lives in the
/// runtime, and instances are found by their labels.
#[async_trait]
pub trait ContainerRuntime: Send + Sync {
    /// Which implementation this is, for logs and status.
    fn kind(&self) -> RuntimeKind;

    /// Every instance labelled for this cluster and node, in any state, so the agent can adopt
    /// running ones, restart exited ones and remove orphans.
    async fn list(&self, cluster: &str, node: &str) -> Result<Vec<Instance>>;

    /// Makes the image available as the pull policy says, creates the instance with a fresh name
    /// (two revisions can coexist) and starts it.
    async fn create_and_start(&self, spec: &InstanceSpec) -> Result<Instance>;

    /// SIGTERM, then SIGKILL once `grace` has passed. Stopping a stopped instance is `Ok`.
    async fn stop(&self, id: &str, grace: Duration) -> Result<()>;

    /// Deletes the instance and what the runtime keeps for it; a running one is killed first.
    async fn remove(&self, id: &str) -> Result<()>;

    /// The current view of one instance.
    async fn inspect(&self, id: &str) -> Result<Instance>;

    /// Runs `cmd` for an exec probe and returns its exit code; `Timeout` after `timeout`.
    async fn exec(&self, id: &str, cmd: &[String], timeout: Duration) -> Result<i32>;

    /// The instance's output (stdout and stderr), the last `tail` lines when given.
    async fn logs(&self, id: &str, _tail: Option<usize>) -> Result<String> {
        Err(RuntimeError::other(
            format!("reading the logs of {id}"),
            format!("the {} runtime keeps no logs", self.kind().as_str()),
        ))
    }

    /// The last `tail` lines of output (all of it when `None`), then whatever the instance
    /// writes next, as it is written; the stream ends once the instance has stopped and its
    /// output is drained, or it is removed. Dropping the stream stops following.
    async fn follow_logs(&self, id: &str, _tail: Option<usize>) -> Result<LogStream> {
        Err(RuntimeError::other(
            format!("following the logs of {id}"),
            format!("the {} runtime keeps no logs", self.kind().as_str()),
        ))
    }
}

/// Output chunks of one instance as they are written (see [`ContainerRuntime::follow_logs`]).
pub type LogStream = std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<Vec<u8>>> + Send>>;

/// The last `tail` lines of `text` (all of it when `None`).
pub(crate) fn tail_lines(text: &str, tail: Option<usize>) -> String {
    match tail {
        None => text.to_string(),
        Some(n) => {
            let lines: Vec<&str> = text.lines().collect();
            let mut out = lines[lines.len().saturating_sub(n)..].join("\n");
            if !out.is_empty() {
                out.push('\n');
            }
            out
        }
    }
}

/// Builds the instance name shared by both real runtimes: `everynode_<ds>_<node>_<revision>_<suffix>`.
///
/// Each part is reduced to `[A-Za-z0-9.-]` because Docker names and file names allow little else,
/// and `_` is kept as the separator so a name splits back unambiguously for humans.
pub(crate) fn instance_name(spec: &InstanceSpec, suffix: &str) -> String {
    fn clean(s: &str) -> String {
        let cleaned: String = s
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        if cleaned.is_empty() {
            "-".to_string()
        } else {
            cleaned
        }
    }
    format!(
        "everynode_{}_{}_{}_{}",
        clean(&spec.daemonset),
        clean(&spec.node),
        clean(&spec.revision),
        suffix
    )
}

/// A short random-enough suffix: time, pid and a counter hashed, so no RNG dependency is needed
/// and two creates in the same nanosecond still differ.
pub(crate) fn random_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let seed = format!(
        "{nanos}/{}/{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    format!("{:08x}", fnv1a(seed.as_bytes()) as u32)
}

#[cfg(test)]
pub(crate) mod test_support {
    //! A spec builder shared by the unit tests of every runtime.
    use super::*;

    pub fn spec(ds: &str, node: &str) -> InstanceSpec {
        InstanceSpec {
            cluster: "c1".into(),
            node: node.into(),
            daemonset: ds.into(),
            revision: "rev1".into(),
            container_name: "main".into(),
            image: "busybox:v1".into(),
            command: vec!["sleep".into()],
            args: vec!["60".into()],
            ..InstanceSpec::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::spec;
    use super::*;

    #[test]
    fn spec_hash_is_stable_and_sensitive() {
        let a = spec("ds", "n1");
        assert_eq!(a.spec_hash(), a.clone().spec_hash());
        let mut b = a.clone();
        b.env.push(("K".into(), "V".into()));
        assert_ne!(a.spec_hash(), b.spec_hash());
        assert_eq!(a.spec_hash().len(), 16);
        let mut init = a.clone();
        init.init_index = Some(0);
        assert_ne!(
            a.spec_hash(),
            init.spec_hash(),
            "an init container is another instance"
        );
    }

    #[test]
    fn app_specs_hash_as_before_init_containers_existed() {
        // Pinned: a changed hash would replace every running instance on agent upgrade.
        assert_eq!(spec("ds", "n1").spec_hash(), "a7ef9ed71cc3ebb1");
    }

    #[test]
    fn instance_name_cleans_parts_for_docker_and_files() {
        let mut s = spec("kube-system/fluentd", "node 1");
        s.revision = "abc_1".into();
        assert_eq!(
            instance_name(&s, "deadbeef"),
            "everynode_kube-system-fluentd_node-1_abc-1_deadbeef"
        );
        s.daemonset = String::new();
        assert!(instance_name(&s, "x").starts_with("everynode_-_"));
    }

    #[test]
    fn random_suffixes_differ() {
        let a = random_suffix();
        let b = random_suffix();
        assert_ne!(a, b);
        assert_eq!(a.len(), 8);
    }

    #[test]
    fn every_error_maps_to_a_status_reason() {
        let e = RuntimeError::ImagePull {
            image: "x".into(),
            reason: "nope".into(),
            source: None,
        };
        assert_eq!(e.status_reason(), "ErrImagePull");
        assert_eq!(e.to_string(), "image x: nope");
        let e = RuntimeError::other("doing it", std::io::Error::other("boom"));
        assert!(std::error::Error::source(&e).is_some());
    }
}
