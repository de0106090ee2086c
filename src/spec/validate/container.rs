//! Validation of containers and init containers: names, images, ports, environment, limits, mounts, probes and sidecars.

use std::collections::{BTreeMap, BTreeSet};

use super::names::{
    is_dns1123_label, is_env_var_name, is_iana_svc_name, DNS1123_LABEL, ENV_VAR_NAME, IANA_SVC_NAME,
};
use super::non_negative;
use super::pod::VolumeNames;
use super::refs::{descending_path, field_ref, object_key, object_name, quantity, resource_field_ref};
use crate::spec::container::{Container, EnvFromSource, EnvVar, MountPropagationMode, Probe};
use crate::spec::downward::Usage;
use crate::spec::issue::{FieldPath, Issues};
use crate::spec::pod::PodSpec;
use crate::spec::quantity::IntOrString;

/// Resource limits everynode enforces.
const ENFORCED_LIMITS: &[&str] = &["cpu", "memory"];

pub(crate) fn containers(out: &mut Issues, pod: &FieldPath, spec: &PodSpec, volumes: &VolumeNames) {
    let path = pod.child("containers");
    if spec.containers.is_empty() {
        out.required(&path)
            .hint("a DaemonSet needs at least one container under spec.template.spec.containers");
    }
    // Names are unique across containers and init containers; the app containers are checked
    // first, so a clash is reported on the init container, as Kubernetes does.
    let mut names = BTreeSet::new();
    // (hostPort, protocol) across all containers, as Kubernetes checks them.
    let mut host_ports = BTreeSet::new();
    for (i, c) in spec.containers.iter().enumerate() {
        let p = path.index(i);
        common(out, &p, c, spec, volumes, &mut names, &mut host_ports);
        probes(out, &p, c);
        if c.restart_policy.is_some() {
            out.err(
                &p.child("restartPolicy"),
                "Forbidden: may not be set for non-init containers",
            )
            .hint("a container with restartPolicy: Always is a sidecar: list it under spec.template.spec.initContainers");
        }
    }
    let init = pod.child("initContainers");
    for (i, c) in spec.init_containers.iter().enumerate() {
        let p = init.index(i);
        // Init containers run one at a time, so Kubernetes checks host ports within each alone.
        let mut own_ports = BTreeSet::new();
        common(out, &p, c, spec, volumes, &mut names, &mut own_ports);
        if c.is_sidecar() {
            probes(out, &p, c);
            continue;
        }
        // A regular init container runs to completion: there is nothing to probe.
        for (name, probe) in [
            ("readinessProbe", &c.readiness_probe),
            ("livenessProbe", &c.liveness_probe),
            ("startupProbe", &c.startup_probe),
        ] {
            if probe.is_some() {
                out.err(
                    &p.child(name),
                    "Forbidden: may not be set for init containers without restartPolicy=Always",
                )
                .hint("remove the probe, or set restartPolicy: Always to make this init container a sidecar");
            }
        }
    }
}

/// The rules every container follows, app or init: name, image, ports, env, limits, mounts and
/// security context.
fn common<'a>(
    out: &mut Issues,
    p: &FieldPath,
    c: &'a Container,
    spec: &PodSpec,
    volumes: &VolumeNames,
    names: &mut BTreeSet<&'a str>,
    host_ports: &mut BTreeSet<(i32, &'static str)>,
) {
    if c.name.is_empty() {
        out.required(&p.child("name"));
    } else if !is_dns1123_label(&c.name) {
        out.invalid(&p.child("name"), &c.name, DNS1123_LABEL);
    } else if !names.insert(c.name.as_str()) {
        out.duplicate(&p.child("name"), &c.name);
    }
    if c.image.is_empty() {
        out.required(&p.child("image"))
            .hint("name the image to run, e.g. quay.io/prometheus/node-exporter:v1.8.2");
    } else if c.image.trim() != c.image {
        out.invalid(
            &p.child("image"),
            &c.image,
            "must not have leading or trailing whitespace",
        );
    }
    ports(out, p, c, spec.host_network, host_ports);
    for (j, from) in c.env_from.iter().enumerate() {
        env_from(out, &p.child("envFrom").index(j), from);
    }
    for (j, env) in c.env.iter().enumerate() {
        // resourceFieldRef names one of the app containers, as the node's resolver reads them.
        env_var(out, &p.child("env").index(j), env, &spec.containers);
    }
    resources(out, &p.child("resources"), c);
    mounts(out, p, c, volumes);
    if let Some(sc) = &c.security_context {
        security_context(out, &p.child("securityContext"), sc);
    }
}

/// The probes of an app container or a sidecar.
fn probes(out: &mut Issues, p: &FieldPath, c: &Container) {
    for (name, probe) in [
        ("readinessProbe", &c.readiness_probe),
        ("livenessProbe", &c.liveness_probe),
        ("startupProbe", &c.startup_probe),
    ] {
        if let Some(probe) = probe {
            self::probe(out, &p.child(name), c, probe, name != "readinessProbe");
        }
    }
}

fn security_context(out: &mut Issues, p: &FieldPath, sc: &crate::spec::container::SecurityContext) {
    for (name, id) in [("runAsUser", sc.run_as_user), ("runAsGroup", sc.run_as_group)] {
        if let Some(id) = id.filter(|id| !(0..=i64::from(i32::MAX)).contains(id)) {
            out.invalid(&p.child(name), id, "must be between 0 and 2147483647, inclusive");
        }
    }
    if sc.run_as_non_root == Some(true) && sc.run_as_user == Some(0) {
        out.invalid(
            &p.child("runAsNonRoot"),
            true,
            "runAsUser 0 is root: the container would never start",
        )
        .hint("set runAsUser to a non-zero uid, or drop runAsNonRoot");
    }
    if sc.allow_privilege_escalation == Some(false) && sc.privileged == Some(true) {
        out.invalid(
            &p.child("allowPrivilegeEscalation"),
            false,
            "cannot set allowPrivilegeEscalation to false and privileged to true",
        );
    }
    if let Some(caps) = &sc.capabilities {
        for (list, names) in [("add", &caps.add), ("drop", &caps.drop)] {
            for (i, name) in names.iter().enumerate() {
                let ok = !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
                if !ok {
                    out.invalid(
                        &p.child("capabilities").child(list).index(i),
                        name,
                        "a capability is written in capitals without CAP_, e.g. NET_ADMIN or ALL",
                    );
                }
            }
        }
    }
    if let Some(profile) = &sc.seccomp_profile {
        let path = p.child("seccompProfile").child("localhostProfile");
        match (profile.type_.as_str(), &profile.localhost_profile) {
            ("Localhost", None) => {
                out.required(&path)
                    .hint("name the profile file, relative to the node's DATA_DIR/seccomp");
            }
            ("Localhost", Some(file)) if file.starts_with('/') || file.split('/').any(|c| c == "..") => {
                out.invalid(&path, file, "must be a relative path without '..'");
            }
            ("RuntimeDefault" | "Unconfined", Some(_)) => {
                out.err(&path, "Forbidden: can only be set if type is Localhost");
            }
            _ => {}
        }
    }
}

fn ports(
    out: &mut Issues,
    p: &FieldPath,
    c: &Container,
    host_network: bool,
    host_ports: &mut BTreeSet<(i32, &'static str)>,
) {
    let mut names = BTreeSet::new();
    for (j, port) in c.ports.iter().enumerate() {
        let pp = p.child("ports").index(j);
        if port.container_port == 0 {
            out.required(&pp.child("containerPort"));
        } else if !(1..=65535).contains(&port.container_port) {
            out.invalid(
                &pp.child("containerPort"),
                port.container_port,
                "must be between 1 and 65535, inclusive",
            );
        }
        if port.host_port != 0 && !(1..=65535).contains(&port.host_port) {
            out.invalid(
                &pp.child("hostPort"),
                port.host_port,
                "must be between 1 and 65535, inclusive",
            );
        }
        if host_network && port.host_port != port.container_port {
            out.invalid(
                &pp.child("hostPort"),
                port.host_port,
                "must match `containerPort` when `hostNetwork` is true",
            );
        }
        if let Some(name) = &port.name {
            if !is_iana_svc_name(name) {
                out.invalid(&pp.child("name"), name, IANA_SVC_NAME);
            } else if !names.insert(name.as_str()) {
                out.duplicate(&pp.child("name"), name);
            }
        }
        if port.host_port > 0 {
            let protocol = match port.protocol {
                crate::spec::container::Protocol::Tcp => "TCP",
                crate::spec::container::Protocol::Udp => "UDP",
                crate::spec::container::Protocol::Sctp => "SCTP",
            };
            let key = (port.host_port, protocol);
            if !host_ports.insert(key) {
                out.duplicate(&pp.child("hostPort"), format!("{}/{protocol}", port.host_port))
                    .hint("two ports cannot bind the same host port and protocol");
            }
        }
    }
}

fn env_from(out: &mut Issues, p: &FieldPath, from: &EnvFromSource) {
    if !from.prefix.is_empty() && !is_env_var_name(&from.prefix) {
        out.invalid(&p.child("prefix"), &from.prefix, ENV_VAR_NAME);
    }
    match (&from.config_map_ref, &from.secret_ref) {
        (Some(_), Some(_)) => {
            out.invalid(p, "", "may not have more than one field specified at a time");
        }
        (None, None) => {
            out.invalid(p, "", "must specify one of: `configMapRef` or `secretRef`");
        }
        (Some(r), None) => object_name(out, &p.child("configMapRef").child("name"), &r.name),
        (None, Some(r)) => object_name(out, &p.child("secretRef").child("name"), &r.name),
    }
}

fn env_var(out: &mut Issues, p: &FieldPath, env: &EnvVar, containers: &[Container]) {
    if env.name.is_empty() {
        out.required(&p.child("name"));
    } else if !is_env_var_name(&env.name) {
        out.invalid(&p.child("name"), &env.name, ENV_VAR_NAME);
    }
    let Some(from) = &env.value_from else { return };
    let fp = p.child("valueFrom");
    if env.value.as_deref().is_some_and(|v| !v.is_empty()) {
        out.invalid(&fp, "", "may not be specified when `value` is not empty");
    }
    match from.source_count() {
        0 => {
            out.invalid(
                &fp,
                "",
                "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
            );
        }
        1 => {}
        _ => {
            out.invalid(&fp, "", "may not have more than one field specified at a time");
        }
    }
    if let Some(r) = &from.field_ref {
        field_ref(out, &fp.child("fieldRef"), r, Usage::Env);
    }
    if let Some(r) = &from.resource_field_ref {
        resource_field_ref(out, &fp.child("resourceFieldRef"), r, containers, Usage::Env);
    }
    if let Some(r) = &from.config_map_key_ref {
        let rp = fp.child("configMapKeyRef");
        object_name(out, &rp.child("name"), &r.name);
        object_key(out, &rp.child("key"), &r.key);
    }
    if let Some(r) = &from.secret_key_ref {
        let rp = fp.child("secretKeyRef");
        object_name(out, &rp.child("name"), &r.name);
        object_key(out, &rp.child("key"), &r.key);
    }
}

fn resources(out: &mut Issues, p: &FieldPath, c: &Container) {
    let limits = p.child("limits");
    let mut limited = BTreeMap::new();
    for (name, q) in &c.resources.limits {
        let lp = limits.key(name);
        if let Some(v) = quantity(out, &lp, name, q) {
            limited.insert(name.as_str(), v);
            if !ENFORCED_LIMITS.contains(&name.as_str()) {
                out.warn(
                    &lp,
                    "not honoured by everynode: only cpu and memory limits are enforced",
                );
            }
        }
    }
    let requests = p.child("requests");
    for (name, q) in &c.resources.requests {
        let rp = requests.key(name);
        let Some(v) = quantity(out, &rp, name, q) else {
            continue;
        };
        if limited.get(name.as_str()).is_some_and(|limit| v > *limit) {
            let shown = &c.resources.limits[name].0;
            out.invalid(
                &rp,
                &q.0,
                &format!("must be less than or equal to {name} limit of {shown}"),
            );
        }
    }
    if !c.resources.requests.is_empty() {
        out.warn(
            &requests,
            "not honoured by everynode: nothing is reserved on a node; requests are only read by resourceFieldRef",
        );
    }
}

fn mounts(out: &mut Issues, p: &FieldPath, c: &Container, volumes: &VolumeNames) {
    let mut paths = BTreeSet::new();
    for (j, m) in c.volume_mounts.iter().enumerate() {
        let mp = p.child("volumeMounts").index(j);
        if m.name.is_empty() {
            out.required(&mp.child("name"));
        } else if volumes.not_mounted.contains(&m.name) {
            out.warn(
                &mp.child("name"),
                format!(
                    "not honoured by everynode: volume {:?} has no source everynode provides, so nothing is mounted at {}",
                    m.name, m.mount_path
                ),
            );
        } else if !volumes.declared.contains(&m.name) {
            out.err(&mp.child("name"), format!("Not found: {:?}", m.name))
                .hint("declare the volume under spec.template.spec.volumes");
        }
        if m.mount_path.is_empty() {
            out.required(&mp.child("mountPath"));
        } else if !paths.insert(m.mount_path.as_str()) {
            out.invalid(&mp.child("mountPath"), &m.mount_path, "must be unique");
        }
        if !m.sub_path.is_empty() {
            descending_path(out, &mp.child("subPath"), &m.sub_path);
        }
        let privileged = c.security_context.as_ref().and_then(|s| s.privileged);
        if m.mount_propagation == Some(MountPropagationMode::Bidirectional) && privileged != Some(true) {
            out.err(
                &mp.child("mountPropagation"),
                "Forbidden: Bidirectional mount propagation is available only to privileged containers",
            )
            .hint("set securityContext.privileged: true, or use HostToContainer");
        }
    }
}

fn probe(out: &mut Issues, p: &FieldPath, c: &Container, probe: &Probe, success_must_be_one: bool) {
    let handlers = [
        probe.exec.is_some(),
        probe.http_get.is_some(),
        probe.tcp_socket.is_some(),
    ]
    .into_iter()
    .filter(|h| *h)
    .count();
    if handlers == 0 && probe.unsupported.is_empty() {
        out.required(p)
            .hint("must specify a handler type: exec, httpGet or tcpSocket");
    } else if handlers > 1 {
        out.err(p, "Forbidden: may not specify more than 1 handler type");
    }
    if let Some(exec) = &probe.exec {
        if exec.command.is_empty() {
            out.required(&p.child("exec").child("command"));
        }
    }
    if let Some(h) = &probe.http_get {
        port(out, &p.child("httpGet").child("port"), c, &h.port);
    }
    if let Some(t) = &probe.tcp_socket {
        port(out, &p.child("tcpSocket").child("port"), c, &t.port);
    }
    for (name, v) in [
        ("initialDelaySeconds", probe.initial_delay_seconds),
        ("timeoutSeconds", probe.timeout_seconds),
        ("periodSeconds", probe.period_seconds),
        ("successThreshold", probe.success_threshold),
        ("failureThreshold", probe.failure_threshold),
    ] {
        non_negative(out, &p.child(name), v.into());
    }
    if success_must_be_one && probe.success_threshold != 1 {
        out.invalid(&p.child("successThreshold"), probe.success_threshold, "must be 1");
    }
}

fn port(out: &mut Issues, p: &FieldPath, c: &Container, port: &IntOrString) {
    match port {
        IntOrString::Int(n) if !(1..=65535).contains(n) => {
            out.invalid(p, n, "must be between 1 and 65535, inclusive");
        }
        IntOrString::String(name) if !is_iana_svc_name(name) => {
            out.invalid(p, name, IANA_SVC_NAME);
        }
        IntOrString::String(name) if c.resolve_port(port).is_none() => {
            // Kubernetes accepts this and the probe fails on the node; say it now.
            out.warn(
                p,
                format!(
                    "container {:?} has no port named {name:?}, so this probe will fail",
                    c.name
                ),
            );
        }
        _ => {}
    }
}
