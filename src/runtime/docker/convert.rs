//! The pure half of the Docker runtime: an instance spec to a container-create body, and an inspect answer back to an instance.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, SystemTime};

use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum, HostConfig, PortBinding,
    RestartPolicy, RestartPolicyNameEnum,
};

use crate::runtime::{labels, Instance, InstanceSpec, InstanceState, Result, RuntimeError};

/// Docker's `User`: `uid` or `uid:gid`.
fn user(spec: &InstanceSpec) -> Result<Option<String>> {
    match (spec.run_as_user, spec.security.run_as_group) {
        (None, None) => Ok(None),
        (Some(u), None) => Ok(Some(u.to_string())),
        (Some(u), Some(g)) => Ok(Some(format!("{u}:{g}"))),
        (None, Some(g)) => Err(RuntimeError::invalid(format!(
            "runAsGroup {g} without runAsUser: Docker sets a group only with a user; set runAsUser too"
        ))),
    }
}

/// `no-new-privileges` and the seccomp profile, as Docker's `--security-opt` takes them.
fn security_opt(spec: &InstanceSpec) -> Option<Vec<String>> {
    let mut opts = Vec::new();
    if spec.security.no_new_privileges {
        opts.push("no-new-privileges".to_string());
    }
    match &spec.security.seccomp {
        Some(crate::runtime::Seccomp::Unconfined) => opts.push("seccomp=unconfined".into()),
        // The engine takes the profile itself, not a path (the CLI reads the file).
        Some(crate::runtime::Seccomp::Localhost(json)) => opts.push(format!("seccomp={json}")),
        Some(crate::runtime::Seccomp::RuntimeDefault) | None => {}
    }
    (!opts.is_empty()).then_some(opts)
}

/// Turns a spec into the body of `POST /containers/create`, validating what Docker would reject
/// late or silently misread. Pure, so a table of cases tests it.
pub fn container_config(spec: &InstanceSpec) -> Result<ContainerCreateBody> {
    if spec.image.trim().is_empty() {
        return Err(RuntimeError::invalid("image is empty"));
    }
    let mut env = Vec::with_capacity(spec.env.len());
    for (k, v) in &spec.env {
        if k.is_empty() || k.contains('=') {
            return Err(RuntimeError::invalid(format!(
                "env name {k:?} must be non-empty and contain no '='"
            )));
        }
        env.push(format!("{k}={v}"));
    }

    let mut exposed = Vec::new();
    let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    let mut host_ports = HashSet::new();
    for p in &spec.ports {
        if p.container_port == 0 {
            return Err(RuntimeError::invalid("containerPort 0 is not a port"));
        }
        let key = format!("{}/{}", p.container_port, p.protocol.as_str());
        if let Some(host) = p.host_port {
            if host == 0 {
                return Err(RuntimeError::invalid(format!(
                    "hostPort 0 for {key} is not a port"
                )));
            }
            if !host_ports.insert((host, p.protocol)) {
                return Err(RuntimeError::invalid(format!(
                    "hostPort {host}/{} is used twice",
                    p.protocol.as_str()
                )));
            }
            // On the host network the container port *is* the host port, as Kubernetes requires.
            if spec.host_network && host != p.container_port {
                return Err(RuntimeError::invalid(format!(
                    "with hostNetwork, hostPort {host} must equal containerPort {}",
                    p.container_port
                )));
            }
            if !spec.host_network {
                bindings.insert(
                    key.clone(),
                    Some(vec![PortBinding {
                        host_ip: None,
                        host_port: Some(host.to_string()),
                    }]),
                );
            }
        }
        exposed.push(key);
    }

    let mut binds = Vec::with_capacity(spec.mounts.len());
    for m in &spec.mounts {
        for path in [&m.host_path, &m.container_path] {
            if !path.starts_with('/') {
                return Err(RuntimeError::invalid(format!(
                    "mount path {path:?} must be absolute"
                )));
            }
            // The bind syntax is `src:dst:mode`; a colon inside a path would be misread.
            if path.contains(':') {
                return Err(RuntimeError::invalid(format!(
                    "mount path {path:?} must not contain ':'"
                )));
            }
        }
        // Binds, not Mounts: like a hostPath volume, a missing host directory is created.
        let mut mode = if m.read_only { "ro" } else { "rw" }.to_string();
        if let Some(p) = m.propagation {
            mode.push_str(match p {
                crate::runtime::Propagation::Private => ",rprivate",
                crate::runtime::Propagation::HostToContainer => ",rslave",
                crate::runtime::Propagation::Bidirectional => ",rshared",
            });
        }
        binds.push(format!("{}:{}:{mode}", m.host_path, m.container_path));
    }

    let nano_cpus = match spec.cpu_limit_millis {
        None | Some(0) => None,
        Some(m) => Some(i64::try_from(m.saturating_mul(1_000_000)).unwrap_or(i64::MAX)),
    };
    let memory = match spec.memory_limit_bytes {
        None | Some(0) => None,
        Some(b) => Some(i64::try_from(b).unwrap_or(i64::MAX)),
    };
    if let Some(dir) = &spec.working_dir {
        if !dir.starts_with('/') {
            return Err(RuntimeError::invalid(format!(
                "workingDir {dir:?} must be absolute"
            )));
        }
    }

    let host_config = HostConfig {
        binds: (!binds.is_empty()).then_some(binds),
        port_bindings: (!bindings.is_empty()).then_some(bindings),
        network_mode: spec.host_network.then(|| "host".to_string()),
        pid_mode: spec.host_pid.then(|| "host".to_string()),
        privileged: spec.privileged.then_some(true),
        ipc_mode: spec.security.host_ipc.then(|| "host".to_string()),
        readonly_rootfs: spec.security.read_only_root_fs.then_some(true),
        cap_add: (!spec.security.cap_add.is_empty()).then(|| spec.security.cap_add.clone()),
        cap_drop: (!spec.security.cap_drop.is_empty()).then(|| spec.security.cap_drop.clone()),
        security_opt: security_opt(spec),
        nano_cpus,
        memory,
        // The agent restarts with back-off and counts restarts; the engine must not race it.
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::NO),
            maximum_retry_count: None,
        }),
        ..Default::default()
    };

    Ok(ContainerCreateBody {
        image: Some(spec.image.clone()),
        entrypoint: (!spec.command.is_empty()).then(|| spec.command.clone()),
        cmd: (!spec.args.is_empty()).then(|| spec.args.clone()),
        env: (!env.is_empty()).then_some(env),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        user: user(spec)?,
        working_dir: spec.working_dir.clone(),
        labels: Some(labels::for_spec(spec).into_iter().collect()),
        // So a `docker stop` by hand honours the grace period too.
        stop_timeout: Some(i64::try_from(spec.termination_grace.as_secs()).unwrap_or(i64::MAX)),
        host_config: Some(host_config),
        ..Default::default()
    })
}

/// Adds `:latest` to an untagged reference: asked for a bare name, the engine pulls *every* tag.
pub fn with_default_tag(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') || last.contains(':') {
        image.to_string()
    } else {
        format!("{image}:latest")
    }
}

pub(super) fn instance_from_inspect(r: ContainerInspectResponse) -> Instance {
    let config = r.config.unwrap_or_default();
    let labels: BTreeMap<String, String> = config.labels.unwrap_or_default().into_iter().collect();
    let state = r.state.unwrap_or_default();
    let exit_code = state.exit_code.and_then(|c| i32::try_from(c).ok());
    let phase = match state.status {
        Some(ContainerStateStatusEnum::CREATED) => InstanceState::Created,
        Some(ContainerStateStatusEnum::RUNNING) => InstanceState::Running,
        Some(ContainerStateStatusEnum::PAUSED) => InstanceState::Paused,
        Some(ContainerStateStatusEnum::RESTARTING) => InstanceState::Restarting,
        Some(ContainerStateStatusEnum::REMOVING) | Some(ContainerStateStatusEnum::STOPPING) => {
            InstanceState::Terminating
        }
        Some(ContainerStateStatusEnum::DEAD) => InstanceState::Dead,
        Some(ContainerStateStatusEnum::EXITED) => InstanceState::Exited { code: exit_code },
        // Unknown or empty status: trust the booleans.
        _ if state.running == Some(true) => InstanceState::Running,
        _ => InstanceState::Exited { code: exit_code },
    };
    let name = r.name.unwrap_or_default().trim_start_matches('/').to_string();
    let mut instance = Instance::from_labels(r.id.unwrap_or_default(), name, phase, labels);
    instance.started_at = state.started_at.as_deref().and_then(parse_docker_time);
    instance.finished_at = state.finished_at.as_deref().and_then(parse_docker_time);
    instance.reason = if state.oom_killed == Some(true) {
        Some("OOMKilled".to_string())
    } else {
        state.error.filter(|e| !e.is_empty())
    };
    instance.pid = state.pid.and_then(|p| u32::try_from(p).ok()).filter(|p| *p != 0);
    instance.image = config.image.unwrap_or_default();
    instance
}

/// Parses Docker's RFC 3339 times (`2024-05-07T21:09:36.123456789Z`); the zero time Docker uses
/// for "never" (`0001-01-01T00:00:00Z`) and anything unparsable become `None`.
pub(super) fn parse_docker_time(s: &str) -> Option<SystemTime> {
    let (date, rest) = s.split_once('T')?;
    let mut d = date.splitn(3, '-');
    let year: i64 = d.next()?.parse().ok()?;
    let month: u32 = d.next()?.parse().ok()?;
    let day: u32 = d.next()?.parse().ok()?;
    if year < 1970 || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let tz_at = rest.find(['Z', '+', '-'])?;
    let (time, tz) = rest.split_at(tz_at);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.splitn(3, ':');
    let h: i64 = t.next()?.parse().ok()?;
    let m: i64 = t.next()?.parse().ok()?;
    let sec: i64 = t.next()?.parse().ok()?;
    let nanos: u32 = if frac.is_empty() {
        0
    } else {
        let digits: String = frac.chars().take(9).collect();
        digits.parse::<u32>().ok()? * 10u32.pow(9 - digits.len() as u32)
    };
    let offset = if tz == "Z" {
        0
    } else {
        let sign = if tz.starts_with('-') { -1 } else { 1 };
        let (oh, om) = tz[1..].split_once(':')?;
        sign * (oh.parse::<i64>().ok()? * 3600 + om.parse::<i64>().ok()? * 60)
    };
    // Days from civil date (Howard Hinnant's algorithm), so no date crate is needed.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(month) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + m * 60 + sec - offset;
    let secs = u64::try_from(secs).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::new(secs, nanos))
}

/// Splits log output taken with `timestamps=true` into (timestamp, line with its newline).
/// Docker puts an RFC 3339 timestamp and a space before every line.
pub(super) fn timestamped_lines(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    bytes
        .split_inclusive(|b| *b == b'\n')
        .map(|line| match line.iter().position(|b| *b == b' ') {
            Some(space) => (
                String::from_utf8_lossy(&line[..space]).into_owned(),
                line[space + 1..].to_vec(),
            ),
            None => (String::new(), line.to_vec()),
        })
        .collect()
}

#[cfg(test)]
mod tests;
