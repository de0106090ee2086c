//! Kubernetes' defaulting: what the API server fills in before it stores an object.
//!
//! Applied before validation and before hashing, so that writing a default explicitly
//! (`protocol: TCP`, `timeoutSeconds: 1`) gives the same object and the same revision as
//! leaving it out.

use super::container::{
    ObjectFieldSelector, PullPolicy, DEFAULT_PROBE_FAILURES, DEFAULT_PROBE_PERIOD, DEFAULT_PROBE_TIMEOUT,
};
use super::daemonset::{DaemonSet, RollingUpdateDaemonSet, UpdateStrategyType};
use super::meta::default_namespace;
use super::pod::PodTemplateSpec;
use super::quantity::IntOrString;

/// Defaults a whole DaemonSet in place. Idempotent.
pub fn apply(ds: &mut DaemonSet) {
    if ds.metadata.namespace.is_empty() {
        ds.metadata.namespace = default_namespace();
    }
    let strategy = &mut ds.spec.update_strategy;
    if strategy.type_ == UpdateStrategyType::RollingUpdate {
        let ru = strategy
            .rolling_update
            .get_or_insert_with(RollingUpdateDaemonSet::default);
        ru.max_unavailable.get_or_insert(IntOrString::Int(1));
        ru.max_surge.get_or_insert(IntOrString::Int(0));
    }
    apply_template(&mut ds.spec.template);
}

/// Defaults a pod template in place. Idempotent.
pub fn apply_template(template: &mut PodTemplateSpec) {
    let spec = &mut template.spec;
    for c in spec.containers.iter_mut().chain(spec.init_containers.iter_mut()) {
        if c.image_pull_policy.is_none() {
            c.image_pull_policy = Some(PullPolicy::default_for(&c.image));
        }
        if spec.host_network {
            // With the host network a container port is a host port.
            for p in &mut c.ports {
                if p.host_port == 0 {
                    p.host_port = p.container_port;
                }
            }
        }
        for probe in [
            &mut c.readiness_probe,
            &mut c.liveness_probe,
            &mut c.startup_probe,
        ]
        .into_iter()
        .flatten()
        {
            zero_to(&mut probe.timeout_seconds, DEFAULT_PROBE_TIMEOUT);
            zero_to(&mut probe.period_seconds, DEFAULT_PROBE_PERIOD);
            zero_to(&mut probe.success_threshold, 1);
            zero_to(&mut probe.failure_threshold, DEFAULT_PROBE_FAILURES);
        }
        for env in &mut c.env {
            if let Some(r) = env.value_from.as_mut().and_then(|v| v.field_ref.as_mut()) {
                field_ref_version(r);
            }
        }
    }
    for v in &mut spec.volumes {
        let projected = v.projected.iter_mut().flat_map(|p| &mut p.sources);
        let items = v
            .downward_api
            .iter_mut()
            .flat_map(|d| &mut d.items)
            .chain(projected.flat_map(|s| s.downward_api.iter_mut().flat_map(|d| &mut d.items)));
        for r in items.filter_map(|i| i.field_ref.as_mut()) {
            field_ref_version(r);
        }
    }
}

/// Kubernetes defaults every `fieldRef.apiVersion` (env and downwardAPI volumes) to v1.
fn field_ref_version(r: &mut ObjectFieldSelector) {
    r.api_version.get_or_insert_with(|| "v1".to_string());
}

fn zero_to(v: &mut i32, default: i32) {
    if *v == 0 {
        *v = default;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::container::{Container, ContainerPort, Probe};

    #[test]
    fn defaults_are_filled_as_kubernetes_fills_them() {
        let mut ds = DaemonSet::default();
        ds.metadata.namespace.clear();
        ds.spec.template.spec.host_network = true;
        ds.spec.template.spec.containers.push(Container {
            image: "agent:1.0".into(),
            ports: vec![ContainerPort {
                container_port: 9100,
                ..ContainerPort::default()
            }],
            readiness_probe: Some(Probe {
                timeout_seconds: 0,
                period_seconds: 0,
                ..Probe::default()
            }),
            ..Container::default()
        });
        apply(&mut ds);
        let once = ds.clone();
        apply(&mut ds);
        assert_eq!(ds, once, "defaulting is idempotent");
        assert_eq!(ds.metadata.namespace, "default");
        let c = &ds.spec.template.spec.containers[0];
        assert_eq!(c.image_pull_policy, Some(PullPolicy::IfNotPresent));
        assert_eq!(c.ports[0].host_port, 9100);
        let probe = c.readiness_probe.as_ref().unwrap();
        assert_eq!((probe.timeout_seconds, probe.period_seconds), (1, 10));
        let ru = ds.spec.update_strategy.rolling_update.as_ref().unwrap();
        assert_eq!(ru.max_unavailable, Some(IntOrString::Int(1)));
        assert_eq!(ru.max_surge, Some(IntOrString::Int(0)));
    }

    #[test]
    fn init_containers_are_defaulted_as_containers_are() {
        let mut template: PodTemplateSpec = serde_json::from_value(serde_json::json!({"spec": {
            "hostNetwork": true,
            "initContainers": [{"name": "setup", "image": "setup", "ports": [{"containerPort": 53}],
                "env": [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]}],
        }}))
        .unwrap();
        apply_template(&mut template);
        let c = &template.spec.init_containers[0];
        assert_eq!(c.image_pull_policy, Some(PullPolicy::Always));
        assert_eq!(c.ports[0].host_port, 53);
        let r = c.env[0].value_from.as_ref().unwrap().field_ref.as_ref().unwrap();
        assert_eq!(r.api_version.as_deref(), Some("v1"));
    }

    #[test]
    fn downward_volume_field_refs_default_to_v1() {
        let mut template: PodTemplateSpec = serde_json::from_value(serde_json::json!({"spec": {"volumes": [
            {"name": "a", "downwardAPI": {"items": [{"path": "n", "fieldRef": {"fieldPath": "metadata.name"}}]}},
            {"name": "b", "projected": {"sources": [{"downwardAPI": {"items": [{"path": "n", "fieldRef": {"fieldPath": "metadata.name"}}]}}]}}
        ]}}))
        .unwrap();
        apply_template(&mut template);
        let vols = &template.spec.volumes;
        let a = &vols[0].downward_api.as_ref().unwrap().items[0];
        let b = &vols[1].projected.as_ref().unwrap().sources[0]
            .downward_api
            .as_ref()
            .unwrap()
            .items[0];
        for item in [a, b] {
            assert_eq!(
                item.field_ref.as_ref().unwrap().api_version.as_deref(),
                Some("v1")
            );
        }
    }
}
