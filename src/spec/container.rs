//! The container part of a pod template: image, command, env, ports, limits, mounts, probes.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::quantity::{IntOrString, Quantity, QuantityError};

/// One container of the pod template; everynode runs each as one container (or process).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub image: String,
    /// Replaces the image's entrypoint, as in Kubernetes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Replaces the image's cmd, as in Kubernetes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Whole ConfigMaps and Secrets as variables, set before `env` (which wins).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_from: Vec<EnvFromSource>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ContainerPort>,
    #[serde(default, skip_serializing_if = "ResourceRequirements::is_empty")]
    pub resources: ResourceRequirements,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
    /// None until defaulting fills it from the image tag (see [`PullPolicy::default_for`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<Probe>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<Probe>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_probe: Option<Probe>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<SecurityContext>,
    /// `Always` makes an init container a sidecar: started in its place among the init
    /// containers, then kept running beside the app containers. Only init containers may set it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<ContainerRestartPolicy>,
}

/// A container's own restart policy; Kubernetes allows only `Always`, on init containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ContainerRestartPolicy {
    Always,
}

impl Container {
    /// An init container with `restartPolicy: Always`: one that keeps running.
    pub fn is_sidecar(&self) -> bool {
        self.restart_policy == Some(ContainerRestartPolicy::Always)
    }
}

/// When to pull the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl PullPolicy {
    /// Kubernetes' default: `Always` for an untagged or `:latest` image, else `IfNotPresent`.
    pub fn default_for(image: &str) -> PullPolicy {
        if image.contains('@') {
            return PullPolicy::IfNotPresent;
        }
        // A `:` before the last `/` belongs to a registry port, not to a tag.
        let last = image.rsplit('/').next().unwrap_or(image);
        match last.split_once(':') {
            Some((_, tag)) if tag != "latest" => PullPolicy::IfNotPresent,
            _ => PullPolicy::Always,
        }
    }
}

/// An environment variable: a literal value or one taken from the pod (here: the node).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<EnvVarSource>,
}

/// `valueFrom`: a pod field, a container resource, or a key of a ConfigMap or Secret.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvVarSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_ref: Option<ObjectFieldSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_field_ref: Option<ResourceFieldSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<ConfigMapKeySelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeySelector>,
    /// Sources everynode cannot resolve (fileKeyRef), kept so the manifest round-trips and
    /// validation still sees that a source was given.
    #[serde(flatten)]
    pub unsupported: BTreeMap<String, serde_json::Value>,
}

impl EnvVarSource {
    /// How many sources are set, unsupported ones included; Kubernetes wants exactly one.
    pub fn source_count(&self) -> usize {
        let honoured = [
            self.field_ref.is_some(),
            self.resource_field_ref.is_some(),
            self.config_map_key_ref.is_some(),
            self.secret_key_ref.is_some(),
        ];
        honoured.into_iter().filter(|set| *set).count() + self.unsupported.len()
    }
}

/// `fieldRef`: a field of the pod, such as `spec.nodeName`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectFieldSelector {
    #[serde(default)]
    pub field_path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
}

/// `resourceFieldRef`: a limit or request of a container, in units of `divisor`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceFieldSelector {
    /// Empty in `env` means this container; required in volumes.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub container_name: String,
    #[serde(default)]
    pub resource: String,
    /// None (or zero) means 1, as in Kubernetes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub divisor: Option<Quantity>,
}

/// `configMapKeyRef`: one key of a ConfigMap.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapKeySelector {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub key: String,
    /// A missing ConfigMap or key then leaves the variable unset instead of failing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

/// `secretKeyRef`: one key of a Secret.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeySelector {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub key: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

/// `envFrom`: every key of a ConfigMap or Secret as a variable, optionally prefixed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvFromSource {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<ObjectRef>,
}

/// `configMapRef` / `secretRef` of `envFrom`: Kubernetes' `ConfigMapEnvSource` and
/// `SecretEnvSource`, which have the same two fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

/// A port the container listens on, optionally bound on the host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPort {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub container_port: i32,
    /// 0 means "not bound on the host", as in Kubernetes.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub host_port: i32,
    #[serde(default)]
    pub protocol: Protocol,
}

fn is_zero(v: &i32) -> bool {
    *v == 0
}

/// Transport protocol of a port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Protocol {
    #[default]
    #[serde(rename = "TCP")]
    Tcp,
    #[serde(rename = "UDP")]
    Udp,
    #[serde(rename = "SCTP")]
    Sctp,
}

/// `resources`: only `limits` of `cpu` and `memory` are enforced; `requests` reserve
/// nothing and are read only by `resourceFieldRef`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRequirements {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, Quantity>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub requests: BTreeMap<String, Quantity>,
}

impl ResourceRequirements {
    pub fn is_empty(&self) -> bool {
        self.limits.is_empty() && self.requests.is_empty()
    }

    /// The CPU limit in millicores, if one is set.
    pub fn cpu_limit_millis(&self) -> Option<Result<i64, QuantityError>> {
        self.limits.get("cpu").map(Quantity::milli_value)
    }

    /// The memory limit in bytes, if one is set.
    pub fn memory_limit_bytes(&self) -> Option<Result<i64, QuantityError>> {
        self.limits.get("memory").map(Quantity::value)
    }
}

/// Where a volume appears inside the container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeMount {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub mount_path: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    /// A path inside the volume to mount instead of its root.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sub_path: String,
    /// None is Kubernetes' default (`None` propagation), kept apart so it round-trips.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_propagation: Option<MountPropagationMode>,
}

/// How mounts made later below a mount point travel between host and container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MountPropagationMode {
    /// Private: nothing travels (Docker's `rprivate`).
    None,
    /// Host mounts appear in the container (`rslave`).
    HostToContainer,
    /// Both ways (`rshared`); Kubernetes allows it only in privileged containers.
    Bidirectional,
}

/// The parts of the container security context everynode applies.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityContext {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privileged: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_user: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_group: Option<i64>,
    /// Refuses to start as uid 0 (checked against `runAsUser`; see the agent for the image's user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_non_root: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only_root_filesystem: Option<bool>,
    /// `false` sets `no_new_privs` (Docker's `no-new-privileges`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_privilege_escalation: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Capabilities>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp_profile: Option<SeccompProfile>,
}

/// Linux capabilities to add and drop, named as Kubernetes names them (`NET_ADMIN`, `ALL`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Capabilities {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drop: Vec<String>,
}

/// `seccompProfile`: the runtime's default, none, or a profile file of the node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeccompProfile {
    #[serde(default, rename = "type")]
    pub type_: String,
    /// For `Localhost`: a path relative to the node's seccomp directory (`DATA_DIR/seccomp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub localhost_profile: Option<String>,
}

/// A readiness, liveness or startup probe. Timing fields hold Kubernetes' defaults once the
/// manifest is defaulted (a 0 there means "default", as in Kubernetes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Probe {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_get: Option<HttpGetAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_socket: Option<TcpSocketAction>,
    #[serde(default)]
    pub initial_delay_seconds: i32,
    #[serde(default = "default_timeout")]
    pub timeout_seconds: i32,
    #[serde(default = "default_period")]
    pub period_seconds: i32,
    #[serde(default = "default_threshold_one")]
    pub success_threshold: i32,
    #[serde(default = "default_failure_threshold")]
    pub failure_threshold: i32,
    /// Probe kinds or fields everynode does not run (grpc...), kept for the round trip.
    #[serde(flatten)]
    pub unsupported: BTreeMap<String, serde_json::Value>,
}

pub(crate) const DEFAULT_PROBE_TIMEOUT: i32 = 1;
pub(crate) const DEFAULT_PROBE_PERIOD: i32 = 10;
pub(crate) const DEFAULT_PROBE_FAILURES: i32 = 3;

fn default_timeout() -> i32 {
    DEFAULT_PROBE_TIMEOUT
}
fn default_period() -> i32 {
    DEFAULT_PROBE_PERIOD
}
fn default_threshold_one() -> i32 {
    1
}
fn default_failure_threshold() -> i32 {
    DEFAULT_PROBE_FAILURES
}

impl Default for Probe {
    fn default() -> Self {
        Probe {
            exec: None,
            http_get: None,
            tcp_socket: None,
            initial_delay_seconds: 0,
            timeout_seconds: DEFAULT_PROBE_TIMEOUT,
            period_seconds: DEFAULT_PROBE_PERIOD,
            success_threshold: 1,
            failure_threshold: DEFAULT_PROBE_FAILURES,
            unsupported: BTreeMap::new(),
        }
    }
}

impl Probe {
    pub fn initial_delay(&self) -> Duration {
        secs(self.initial_delay_seconds)
    }

    pub fn timeout(&self) -> Duration {
        secs(self.timeout_seconds.max(1))
    }

    pub fn period(&self) -> Duration {
        secs(self.period_seconds.max(1))
    }
}

/// Seconds as a duration; negative values (refused by validation) count as zero.
pub(crate) fn secs(s: impl Into<i64>) -> Duration {
    Duration::from_secs(u64::try_from(s.into()).unwrap_or(0))
}

/// Run a command inside the container; success is exit status 0.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecAction {
    #[serde(default)]
    pub command: Vec<String>,
}

/// An HTTP GET; success is a status in 200..400.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpGetAction {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// A number, or the name of one of the container's ports.
    #[serde(default)]
    pub port: IntOrString,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default)]
    pub scheme: Scheme,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http_headers: Vec<HttpHeader>,
}

/// URL scheme of an HTTP probe.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Scheme {
    #[default]
    #[serde(rename = "HTTP")]
    Http,
    #[serde(rename = "HTTPS")]
    Https,
}

/// A header sent with an HTTP probe.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpHeader {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub value: String,
}

/// A TCP connect; success is an accepted connection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpSocketAction {
    #[serde(default)]
    pub port: IntOrString,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

impl Container {
    /// Resolves a probe port given by name against this container's ports.
    pub fn resolve_port(&self, port: &IntOrString) -> Option<i32> {
        match port {
            IntOrString::Int(n) => Some(*n),
            IntOrString::String(name) => self
                .ports
                .iter()
                .find(|p| p.name.as_deref() == Some(name))
                .map(|p| p.container_port),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_pull_policy_follows_the_tag() {
        let cases = [
            ("nginx", PullPolicy::Always),
            ("nginx:latest", PullPolicy::Always),
            ("nginx:1.27", PullPolicy::IfNotPresent),
            ("registry:5000/agent", PullPolicy::Always),
            ("registry:5000/agent:v2", PullPolicy::IfNotPresent),
            (
                "quay.io/prometheus/node-exporter@sha256:abcd",
                PullPolicy::IfNotPresent,
            ),
        ];
        for (image, want) in cases {
            assert_eq!(PullPolicy::default_for(image), want, "{image}");
        }
    }

    #[test]
    fn probe_ports_resolve_by_name_or_number() {
        let c = Container {
            ports: vec![ContainerPort {
                name: Some("metrics".into()),
                container_port: 9100,
                ..ContainerPort::default()
            }],
            ..Container::default()
        };
        assert_eq!(c.resolve_port(&IntOrString::String("metrics".into())), Some(9100));
        assert_eq!(c.resolve_port(&IntOrString::Int(8080)), Some(8080));
        assert_eq!(c.resolve_port(&IntOrString::String("nope".into())), None);
    }
}
