//! What this node should run for one DaemonSet: the granted revision and the instance specs built from it.

use super::podfiles::{self, Objects};
use super::podsetup::{self, Masked, NoObjects, PodSetup};
use super::AgentError;
use crate::control::store::{DaemonSetRecord, Revision, Store};
use crate::runtime::{self, InstanceSpec, MountSpec, PortSpec, Propagation};
use crate::spec::container::{Container, MountPropagationMode, Protocol};
use crate::spec::downward::PodFacts;
use crate::spec::PodTemplateSpec;

/// The revision this node may run: the one the leader's rollout planner granted it (see
/// [`DaemonSetRecord::granted_revision`]).
pub fn granted_revision<'a>(_store: &Store, record: &'a DaemonSetRecord, node: &str) -> &'a Revision {
    record.granted_revision(node)
}

/// Instance label carrying the `delete pod` count of this node, so a deleted instance is
/// replaced even when its revision stays the same.
pub const POD_GENERATION_LABEL: &str = "everynode.io/pod-generation";

/// Everything one DaemonSet wants on this node: one instance per container of the template.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    /// One spec per container, in template order; container names are unique in a pod.
    pub specs: Vec<InstanceSpec>,
    /// The template's containers, same order, for their probes.
    pub containers: Vec<Container>,
    /// One spec per init container, in template order: they run in this order before `specs`.
    pub init: Vec<InstanceSpec>,
    /// The template's init containers, same order, for their restart policy (sidecars) and probes.
    pub init_containers: Vec<Container>,
    /// `minReadySeconds`, for the available count.
    pub min_ready_secs: u64,
    /// Rolling update with `maxSurge`: a new revision starts beside the old instance.
    pub surge: bool,
    /// Set by the actor for one pass while the surged new instance is not yet available:
    /// outdated running instances are kept until it is.
    pub keep_outdated: bool,
}

impl Desired {
    /// Marks every spec with the node's `delete pod` count (nothing when it is 0, so specs made
    /// before any delete keep their hash).
    pub fn with_pod_generation(mut self, generation: u64) -> Self {
        if generation > 0 {
            for s in self.specs.iter_mut().chain(self.init.iter_mut()) {
                s.labels
                    .insert(POD_GENERATION_LABEL.to_string(), generation.to_string());
                // The identity stands for the spec's hash, so it must change with the label.
                if let Some(id) = &s.identity {
                    let mixed = crate::runtime::fnv1a(format!("{id}/pod-generation/{generation}").as_bytes());
                    s.identity = Some(format!("{mixed:016x}"));
                }
            }
        }
        self
    }

    /// The revision hash every spec carries.
    pub fn revision(&self) -> &str {
        self.specs.first().map(|s| s.revision.as_str()).unwrap_or("")
    }
}

/// Builds the instance specs of `template` (revision `revision`) for `node` in `cluster`, for
/// a template that reads no ConfigMap or Secret (tests and simulations).
pub fn desired(
    cluster: &str,
    node: &str,
    daemonset: &str,
    namespace: &str,
    revision: &str,
    template: &PodTemplateSpec,
) -> Result<Desired, AgentError> {
    let setup = PodSetup {
        objects: &NoObjects,
        facts: PodFacts {
            name: format!("{daemonset}-{node}"),
            namespace: namespace.to_string(),
            node_name: node.to_string(),
            labels: template.metadata.labels.clone(),
            annotations: template.metadata.annotations.clone(),
            service_account_name: "default".into(),
            ..PodFacts::default()
        },
        allocatable: None,
        dir: podsetup::pod_dir(
            &std::env::temp_dir()
                .join("everynode-pods")
                .join(cluster)
                .join(node),
            namespace,
            daemonset,
            revision,
        ),
        seccomp_dir: std::env::temp_dir().join("everynode-seccomp"),
    };
    desired_with(cluster, node, daemonset, revision, template, &setup)
}

/// Builds the instance specs of `template` with what `setup` says of this node, its objects
/// and the pod's volume directory. Volume files are written by [`podsetup::prepare`].
pub fn desired_with(
    cluster: &str,
    node: &str,
    daemonset: &str,
    revision: &str,
    template: &PodTemplateSpec,
    setup: &PodSetup,
) -> Result<Desired, AgentError> {
    let build = |objects: &dyn Objects| -> Result<(Vec<InstanceSpec>, Vec<InstanceSpec>), AgentError> {
        let apps = template
            .spec
            .containers
            .iter()
            .map(|c| instance_spec(cluster, node, daemonset, revision, template, c, setup, objects))
            .collect::<Result<Vec<_>, _>>()?;
        let inits = init_specs(cluster, node, daemonset, revision, template, setup, objects)?;
        Ok((apps, inits))
    };
    let (mut specs, mut init) = build(setup.objects)?;
    // An instance's identity leaves out the values of ConfigMaps and Secrets, which Kubernetes
    // reads when a container starts: a new value reaches files at once and variables at the
    // next start, and replaces nothing.
    let (masked, masked_init) = build(&Masked(setup.objects))?;
    for (spec, m) in specs
        .iter_mut()
        .zip(masked)
        .chain(init.iter_mut().zip(masked_init))
    {
        spec.identity = Some(m.spec_hash());
    }
    Ok(Desired {
        specs,
        containers: template.spec.containers.clone(),
        init,
        init_containers: template.spec.init_containers.clone(),
        min_ready_secs: 0,
        surge: false,
        keep_outdated: false,
    })
}

/// The init containers' specs: built as app containers are, marked with their position.
fn init_specs(
    cluster: &str,
    node: &str,
    daemonset: &str,
    revision: &str,
    template: &PodTemplateSpec,
    setup: &PodSetup,
    objects: &dyn Objects,
) -> Result<Vec<InstanceSpec>, AgentError> {
    let mut specs = Vec::new();
    for (i, c) in template.spec.init_containers.iter().enumerate() {
        let mut spec = instance_spec(cluster, node, daemonset, revision, template, c, setup, objects)
            .map_err(|e| match e {
                // The builder names fields as under `containers`; this one is an init container.
                AgentError::InvalidTemplate {
                    daemonset,
                    field,
                    reason,
                } => AgentError::InvalidTemplate {
                    daemonset,
                    field: field.replacen(".containers[", ".initContainers[", 1),
                    reason,
                },
                other => other,
            })?;
        spec.init_index = Some(u32::try_from(i).unwrap_or(u32::MAX));
        specs.push(spec);
    }
    Ok(specs)
}

#[allow(clippy::too_many_arguments)]
fn instance_spec(
    cluster: &str,
    node: &str,
    daemonset: &str,
    revision: &str,
    template: &PodTemplateSpec,
    c: &Container,
    setup: &PodSetup,
    objects: &dyn Objects,
) -> Result<InstanceSpec, AgentError> {
    let pod = &template.spec;
    let invalid = |field: String, reason: String| AgentError::InvalidTemplate {
        daemonset: daemonset.to_string(),
        field: format!("spec.template.spec.containers[{}].{field}", c.name),
        reason,
    };
    let resolved = podfiles::resolve_env(c, &setup.context(template), objects)
        .map_err(|e| podsetup::config_error(daemonset, e))?;
    let env = resolved.vars;
    let ports = c
        .ports
        .iter()
        .map(|p| {
            let container_port = u16::try_from(p.container_port).map_err(|_| {
                invalid(
                    "ports".into(),
                    format!("containerPort {} is out of range", p.container_port),
                )
            })?;
            let host_port = match p.host_port {
                0 => None,
                n => Some(
                    u16::try_from(n)
                        .map_err(|_| invalid("ports".into(), format!("hostPort {n} is out of range")))?,
                ),
            };
            Ok(PortSpec {
                container_port,
                host_port,
                protocol: match p.protocol {
                    Protocol::Tcp => runtime::Protocol::Tcp,
                    Protocol::Udp => runtime::Protocol::Udp,
                    Protocol::Sctp => runtime::Protocol::Sctp,
                },
            })
        })
        .collect::<Result<Vec<_>, AgentError>>()?;
    let mounts = mounts(c, template, setup);
    let cpu_limit_millis = match c.resources.cpu_limit_millis() {
        None => None,
        Some(Ok(v)) => u64::try_from(v).ok().filter(|v| *v > 0),
        Some(Err(e)) => return Err(invalid("resources.limits.cpu".into(), e.to_string())),
    };
    let memory_limit_bytes = match c.resources.memory_limit_bytes() {
        None => None,
        Some(Ok(v)) => u64::try_from(v).ok().filter(|v| *v > 0),
        Some(Err(e)) => return Err(invalid("resources.limits.memory".into(), e.to_string())),
    };
    let security = c.security_context.clone().unwrap_or_default();
    let run_as_user = match security.run_as_user {
        None => None,
        Some(uid) => Some(u32::try_from(uid).map_err(|_| {
            invalid(
                "securityContext.runAsUser".into(),
                format!("{uid} is not a valid user id"),
            )
        })?),
    };
    let policy = c
        .image_pull_policy
        .unwrap_or_else(|| crate::spec::PullPolicy::default_for(&c.image));
    Ok(InstanceSpec {
        cluster: cluster.to_string(),
        node: node.to_string(),
        daemonset: daemonset.to_string(),
        revision: revision.to_string(),
        container_name: c.name.clone(),
        // Set by `init_specs` for an init container.
        init_index: None,
        image: c.image.clone(),
        image_pull_policy: match policy {
            crate::spec::PullPolicy::Always => runtime::PullPolicy::Always,
            crate::spec::PullPolicy::IfNotPresent => runtime::PullPolicy::IfNotPresent,
            crate::spec::PullPolicy::Never => runtime::PullPolicy::Never,
        },
        command: podfiles::expand_command(&c.command, &env),
        args: podfiles::expand_command(&c.args, &env),
        env,
        ports,
        host_network: pod.host_network,
        host_pid: pod.host_pid,
        mounts,
        cpu_limit_millis,
        memory_limit_bytes,
        privileged: security.privileged.unwrap_or(false),
        run_as_user,
        working_dir: c.working_dir.clone(),
        termination_grace: pod.termination_grace_period(),
        labels: template.metadata.labels.clone(),
        identity: None,
        security: security_spec(&security, pod.host_ipc, setup)
            .map_err(|(field, reason)| invalid(field, reason))?,
    })
}

/// The securityContext beyond privileged and runAsUser, checked against what the runtimes can do.
fn security_spec(
    sc: &crate::spec::container::SecurityContext,
    host_ipc: bool,
    setup: &PodSetup,
) -> Result<runtime::SecuritySpec, (String, String)> {
    let run_as_group = match sc.run_as_group {
        None => None,
        Some(g) => Some(u32::try_from(g).map_err(|_| {
            (
                "securityContext.runAsGroup".to_string(),
                format!("{g} is not a valid group id"),
            )
        })?),
    };
    if sc.run_as_non_root == Some(true) && sc.run_as_user.is_none() {
        // kubelet would check the image's user; the agent cannot read it before the start.
        return Err((
            "securityContext.runAsNonRoot".into(),
            "needs runAsUser here: the image's user is not known before the container starts; set runAsUser to a non-zero uid".into(),
        ));
    }
    let seccomp = match &sc.seccomp_profile {
        None => None,
        Some(p) => Some(match p.type_.as_str() {
            "Unconfined" => runtime::Seccomp::Unconfined,
            "Localhost" => {
                let file = setup
                    .seccomp_dir
                    .join(p.localhost_profile.as_deref().unwrap_or_default());
                let json = std::fs::read_to_string(&file).map_err(|e| {
                    (
                        "securityContext.seccompProfile.localhostProfile".to_string(),
                        format!(
                            "cannot read the profile {}: {e}; put it in the node's DATA_DIR/seccomp",
                            file.display()
                        ),
                    )
                })?;
                runtime::Seccomp::Localhost(json)
            }
            _ => runtime::Seccomp::RuntimeDefault,
        }),
    };
    let caps = sc.capabilities.clone().unwrap_or_default();
    Ok(runtime::SecuritySpec {
        run_as_group,
        read_only_root_fs: sc.read_only_root_filesystem == Some(true),
        no_new_privileges: sc.allow_privilege_escalation == Some(false),
        cap_add: caps.add,
        cap_drop: caps.drop,
        seccomp,
        host_ipc,
    })
}

/// The container's mounts: host paths as they are, the agent's volume directories for the
/// others (read-only for configMap, secret, downwardAPI and projected volumes, as kubelet
/// mounts them whatever `readOnly` says). Volumes of unsupported sources are left out; the
/// validator warns about them.
fn mounts(c: &Container, template: &PodTemplateSpec, setup: &PodSetup) -> Vec<MountSpec> {
    c.volume_mounts
        .iter()
        .filter_map(|m| {
            let v = template.spec.volumes.iter().find(|v| v.name == m.name)?;
            let (root, forced_ro) = if let Some(hp) = &v.host_path {
                (std::path::PathBuf::from(&hp.path), false)
            } else if v.empty_dir.is_some() {
                (setup.volume_dir(&v.name), false)
            } else if v.config_map.is_some()
                || v.secret.is_some()
                || v.downward_api.is_some()
                || v.projected.is_some()
            {
                (setup.volume_dir(&v.name), true)
            } else {
                return None;
            };
            // A subPath into a projected volume goes through its `key -> ..data/key` link,
            // which the bind resolves at start: like Kubernetes, it sees no later update.
            let host = if m.sub_path.is_empty() {
                root
            } else {
                root.join(&m.sub_path)
            };
            Some(MountSpec {
                host_path: host.to_string_lossy().into_owned(),
                container_path: m.mount_path.clone(),
                read_only: m.read_only || forced_ro,
                propagation: m.mount_propagation.map(|p| match p {
                    MountPropagationMode::None => Propagation::Private,
                    MountPropagationMode::HostToContainer => Propagation::HostToContainer,
                    MountPropagationMode::Bidirectional => Propagation::Bidirectional,
                }),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(yaml_container: serde_json::Value, extra_pod: serde_json::Value) -> PodTemplateSpec {
        let mut pod = serde_json::json!({
            "containers": [yaml_container],
            "terminationGracePeriodSeconds": 7,
        });
        if let (Some(p), Some(e)) = (pod.as_object_mut(), extra_pod.as_object()) {
            p.extend(e.clone());
        }
        serde_json::from_value(serde_json::json!({
            "metadata": {"labels": {"app": "x"}},
            "spec": pod,
        }))
        .unwrap()
    }

    #[test]
    fn node_name_field_ref_becomes_the_node_name() {
        let t = template(
            serde_json::json!({
                "name": "main", "image": "busybox:v1",
                "command": ["sh", "-c", "sleep 1"],
                "env": [
                    {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                    {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                    {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
                    {"name": "PLAIN", "value": "v"},
                ],
                "ports": [{"containerPort": 9100, "hostPort": 9100}, {"containerPort": 80}],
                "resources": {"limits": {"cpu": "250m", "memory": "64Mi"}},
                "securityContext": {"privileged": true, "runAsUser": 1000},
                "volumeMounts": [{"name": "logs", "mountPath": "/var/log", "readOnly": true},
                                 {"name": "cfg", "mountPath": "/cfg"}],
            }),
            serde_json::json!({
                "hostNetwork": true,
                "volumes": [{"name": "logs", "hostPath": {"path": "/var/log"}},
                            {"name": "cfg", "configMap": {"name": "c"}}],
            }),
        );
        let d = desired("c1", "node-7", "agent", "default", "abc", &t).unwrap();
        assert_eq!(d.revision(), "abc");
        let s = &d.specs[0];
        assert_eq!(
            s.env,
            vec![
                ("NODE_NAME".to_string(), "node-7".to_string()),
                ("NS".to_string(), "default".to_string()),
                ("IP".to_string(), String::new()),
                ("PLAIN".to_string(), "v".to_string()),
            ]
        );
        assert_eq!(s.ports.len(), 2);
        assert_eq!(s.ports[0].host_port, Some(9100));
        assert_eq!(s.ports[1].host_port, None);
        assert_eq!(s.cpu_limit_millis, Some(250));
        assert_eq!(s.memory_limit_bytes, Some(64 * 1024 * 1024));
        assert!(s.privileged && s.host_network);
        assert_eq!(s.run_as_user, Some(1000));
        assert_eq!(
            s.mounts[0],
            MountSpec {
                host_path: "/var/log".into(),
                container_path: "/var/log".into(),
                read_only: true,
                propagation: None,
            }
        );
        // A configMap volume is the agent's directory for it, read-only whatever readOnly says.
        assert_eq!(s.mounts[1].container_path, "/cfg");
        assert!(
            s.mounts[1].read_only && s.mounts[1].host_path.ends_with("/abc/volumes/cfg"),
            "{:?}",
            s.mounts[1]
        );
        assert_eq!(s.termination_grace, std::time::Duration::from_secs(7));
        assert_eq!(s.labels["app"], "x");
        assert_eq!(s.image_pull_policy, runtime::PullPolicy::IfNotPresent);
    }

    #[test]
    fn init_containers_become_specs_in_order_marked_with_their_position() {
        let mut t = template(
            serde_json::json!({"name": "main", "image": "i:1"}),
            serde_json::json!({"initContainers": [
                {"name": "first", "image": "i:1", "command": ["sh", "-c", "true"]},
                {"name": "proxy", "image": "i:1", "restartPolicy": "Always", "ports": [{"containerPort": 99999}]},
            ]}),
        );
        let e = desired("c1", "n1", "ds", "default", "r", &t)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("spec.template.spec.initContainers[proxy].ports"),
            "{e}"
        );
        t.spec.init_containers[1].ports.clear();
        let d = desired("c1", "n1", "ds", "default", "r", &t)
            .unwrap()
            .with_pod_generation(2);
        let names: Vec<_> = d
            .init
            .iter()
            .map(|s| (s.container_name.as_str(), s.init_index))
            .collect();
        assert_eq!(names, [("first", Some(0)), ("proxy", Some(1))]);
        assert_eq!(d.init[0].command, ["sh", "-c", "true"]);
        assert_eq!(d.init_containers[1].name, "proxy");
        assert_eq!(d.specs[0].init_index, None);
        assert!(d
            .init
            .iter()
            .all(|s| s.revision == "r" && s.labels[POD_GENERATION_LABEL] == "2"));
    }

    #[test]
    fn a_deleted_pod_gets_a_new_identity_and_config_values_do_not() {
        let t = template(
            serde_json::json!({"name": "main", "image": "i:1"}),
            serde_json::json!({}),
        );
        let d = desired("c1", "n1", "ds", "default", "r", &t).unwrap();
        let before = d.specs[0].spec_hash();
        assert_eq!(d.clone().with_pod_generation(0).specs[0].spec_hash(), before);
        let after = d.with_pod_generation(1).specs[0].spec_hash();
        assert_ne!(after, before, "delete pod must replace the instance");

        let t = template(
            serde_json::json!({"name": "main", "image": "i:1", "env": [
                {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "level"}}}
            ]}),
            serde_json::json!({}),
        );
        let with = |level: &str, extra_key: bool| {
            let mut data =
                std::collections::BTreeMap::from([("level".to_string(), level.as_bytes().to_vec())]);
            if extra_key {
                data.insert("other".into(), b"x".to_vec());
            }
            let objects = podfiles::ObjectMap {
                config_maps: std::collections::BTreeMap::from([("cfg".to_string(), data)]),
                ..Default::default()
            };
            let setup = PodSetup {
                objects: &objects,
                facts: PodFacts::default(),
                allocatable: None,
                dir: std::env::temp_dir(),
                seccomp_dir: std::env::temp_dir(),
            };
            let d = desired_with("c1", "n1", "ds", "r", &t, &setup).unwrap();
            (d.specs[0].env.clone(), d.specs[0].spec_hash())
        };
        let (env_info, info) = with("info", false);
        let (env_debug, debug) = with("debug", false);
        assert_eq!(env_info, [("LEVEL".to_string(), "info".to_string())]);
        assert_eq!(env_debug, [("LEVEL".to_string(), "debug".to_string())]);
        assert_eq!(info, debug, "a changed value replaces nothing");
        assert_eq!(
            with("info", true).1,
            info,
            "nor does a key the container does not read"
        );
    }

    #[test]
    fn the_spec_differs_per_node_so_the_hash_does_too() {
        let t = template(
            serde_json::json!({"name": "main", "image": "i:latest"}),
            serde_json::json!({}),
        );
        let a = desired("c1", "n1", "ds", "default", "r", &t).unwrap();
        let b = desired("c1", "n2", "ds", "default", "r", &t).unwrap();
        assert_ne!(a.specs[0].spec_hash(), b.specs[0].spec_hash());
        assert_eq!(a.specs[0].image_pull_policy, runtime::PullPolicy::Always);
    }
}
