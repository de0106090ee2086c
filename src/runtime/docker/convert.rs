//! The pure half of the Docker runtime: an instance spec to a container-create body, and an inspect answer back to an instance.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, SystemTime};

use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum, HostConfig, PortBinding,
    RestartPolicy, RestartPolicyNameEnum,
};

use crate::runtime::{labels, Instance, InstanceSpec, InstanceState, Result, RuntimeError};

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
        let mode = if m.read_only { "ro" } else { "rw" };
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
        user: spec.run_as_user.map(|u| u.to_string()),
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
mod tests {
    use super::*;
    use crate::runtime::test_support::spec;
    use crate::runtime::{MountSpec, PortSpec, Protocol};

    /// A change to the base spec, and a check of the resulting config: one row of a table.
    type Edit = fn(&mut InstanceSpec);
    type Check = fn(&ContainerCreateBody);

    fn host(c: &ContainerCreateBody) -> &HostConfig {
        c.host_config.as_ref().unwrap()
    }

    #[test]
    fn spec_converts_to_container_config() {
        let cases: Vec<(&str, Edit, Check)> = vec![
            (
                "command is the entrypoint, args the cmd",
                |s| {
                    s.command = vec!["/bin/sh".into(), "-c".into()];
                    s.args = vec!["echo hi".into()];
                },
                |c| {
                    assert_eq!(
                        c.entrypoint.as_deref(),
                        Some(&["/bin/sh".to_string(), "-c".into()][..])
                    );
                    assert_eq!(c.cmd.as_deref(), Some(&["echo hi".to_string()][..]));
                },
            ),
            (
                "empty command and args keep the image's",
                |s| {
                    s.command.clear();
                    s.args.clear();
                },
                |c| {
                    assert_eq!(c.entrypoint, None);
                    assert_eq!(c.cmd, None);
                },
            ),
            (
                "env keeps its order",
                |s| s.env = vec![("B".into(), "2".into()), ("A".into(), "x=y".into())],
                |c| assert_eq!(c.env.as_deref(), Some(&["B=2".to_string(), "A=x=y".into()][..])),
            ),
            (
                "hostPort is published, a bare containerPort only exposed",
                |s| {
                    s.ports = vec![
                        PortSpec {
                            container_port: 80,
                            host_port: Some(8080),
                            protocol: Protocol::Tcp,
                        },
                        PortSpec {
                            container_port: 53,
                            host_port: None,
                            protocol: Protocol::Udp,
                        },
                    ]
                },
                |c| {
                    assert_eq!(
                        c.exposed_ports.as_deref(),
                        Some(&["80/tcp".to_string(), "53/udp".into()][..])
                    );
                    let b = host(c).port_bindings.as_ref().unwrap();
                    assert_eq!(b.len(), 1);
                    assert_eq!(
                        b["80/tcp"].as_ref().unwrap()[0].host_port.as_deref(),
                        Some("8080")
                    );
                    assert_eq!(host(c).network_mode, None);
                },
            ),
            (
                "host network publishes nothing and sets the mode",
                |s| {
                    s.host_network = true;
                    s.host_pid = true;
                    s.ports = vec![PortSpec {
                        container_port: 9100,
                        host_port: Some(9100),
                        protocol: Protocol::Tcp,
                    }];
                },
                |c| {
                    assert_eq!(host(c).network_mode.as_deref(), Some("host"));
                    assert_eq!(host(c).pid_mode.as_deref(), Some("host"));
                    assert_eq!(host(c).port_bindings, None);
                },
            ),
            (
                "mounts become binds with their mode",
                |s| {
                    s.mounts = vec![
                        MountSpec {
                            host_path: "/var/log".into(),
                            container_path: "/host/log".into(),
                            read_only: true,
                        },
                        MountSpec {
                            host_path: "/data".into(),
                            container_path: "/data".into(),
                            read_only: false,
                        },
                    ]
                },
                |c| {
                    assert_eq!(
                        host(c).binds.as_deref(),
                        Some(&["/var/log:/host/log:ro".to_string(), "/data:/data:rw".into()][..])
                    )
                },
            ),
            (
                "limits, privileged, user, working dir, grace",
                |s| {
                    s.cpu_limit_millis = Some(250);
                    s.memory_limit_bytes = Some(64 << 20);
                    s.privileged = true;
                    s.run_as_user = Some(1000);
                    s.working_dir = Some("/work".into());
                    s.termination_grace = Duration::from_secs(7);
                },
                |c| {
                    assert_eq!(host(c).nano_cpus, Some(250_000_000));
                    assert_eq!(host(c).memory, Some(64 << 20));
                    assert_eq!(host(c).privileged, Some(true));
                    assert_eq!(c.user.as_deref(), Some("1000"));
                    assert_eq!(c.working_dir.as_deref(), Some("/work"));
                    assert_eq!(c.stop_timeout, Some(7));
                },
            ),
            (
                "zero limits mean unlimited; defaults add nothing",
                |s| {
                    s.cpu_limit_millis = Some(0);
                    s.memory_limit_bytes = Some(0);
                },
                |c| {
                    let h = host(c);
                    assert_eq!((h.nano_cpus, h.memory, h.privileged), (None, None, None));
                    assert_eq!((h.binds.as_ref(), h.pid_mode.as_ref()), (None, None));
                    assert_eq!(c.user, None);
                    assert_eq!(
                        h.restart_policy.as_ref().unwrap().name,
                        Some(RestartPolicyNameEnum::NO)
                    );
                },
            ),
            (
                "labels carry identity and template labels",
                |s| {
                    s.labels.insert("app".into(), "example".into());
                },
                |c| {
                    let l = c.labels.as_ref().unwrap();
                    assert_eq!(l[labels::CLUSTER], "c1");
                    assert_eq!(l[labels::NODE], "n1");
                    assert_eq!(l[labels::DAEMONSET], "ds");
                    assert_eq!(l[labels::REVISION], "rev1");
                    assert_eq!(l[labels::CONTAINER], "main");
                    assert_eq!(l["app"], "example");
                    assert_eq!(l[labels::SPEC_HASH].len(), 16);
                },
            ),
        ];
        for (name, edit, check) in cases {
            let mut s = spec("ds", "n1");
            edit(&mut s);
            let config = container_config(&s).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(config.image.as_deref(), Some("busybox:v1"), "{name}");
            check(&config);
        }
    }

    #[test]
    fn invalid_specs_are_refused_with_the_field() {
        let cases: Vec<(Edit, &str)> = vec![
            (|s| s.image = " ".into(), "image is empty"),
            (|s| s.env = vec![("".into(), "v".into())], "env name"),
            (|s| s.env = vec![("A=B".into(), "v".into())], "env name"),
            (
                |s| {
                    s.ports = vec![PortSpec {
                        container_port: 0,
                        host_port: None,
                        protocol: Protocol::Tcp,
                    }]
                },
                "containerPort 0",
            ),
            (
                |s| {
                    s.ports = vec![PortSpec {
                        container_port: 80,
                        host_port: Some(0),
                        protocol: Protocol::Tcp,
                    }]
                },
                "hostPort 0",
            ),
            (
                |s| {
                    s.ports = vec![
                        PortSpec {
                            container_port: 80,
                            host_port: Some(8080),
                            protocol: Protocol::Tcp,
                        },
                        PortSpec {
                            container_port: 81,
                            host_port: Some(8080),
                            protocol: Protocol::Tcp,
                        },
                    ]
                },
                "used twice",
            ),
            (
                |s| {
                    s.host_network = true;
                    s.ports = vec![PortSpec {
                        container_port: 80,
                        host_port: Some(8080),
                        protocol: Protocol::Tcp,
                    }];
                },
                "must equal containerPort",
            ),
            (
                |s| {
                    s.mounts = vec![MountSpec {
                        host_path: "rel".into(),
                        container_path: "/x".into(),
                        read_only: true,
                    }]
                },
                "must be absolute",
            ),
            (
                |s| {
                    s.mounts = vec![MountSpec {
                        host_path: "/a:b".into(),
                        container_path: "/x".into(),
                        read_only: true,
                    }]
                },
                "must not contain ':'",
            ),
            (|s| s.working_dir = Some("work".into()), "workingDir"),
        ];
        for (edit, expected) in cases {
            let mut s = spec("ds", "n1");
            edit(&mut s);
            match container_config(&s) {
                Err(RuntimeError::InvalidSpec { reason, .. }) => {
                    assert!(
                        reason.contains(expected),
                        "{reason:?} should mention {expected:?}"
                    )
                }
                other => panic!("expected InvalidSpec mentioning {expected:?}, got {other:?}"),
            }
        }
    }

    #[test]
    fn same_host_port_on_two_protocols_is_fine() {
        let mut s = spec("ds", "n1");
        s.ports = vec![
            PortSpec {
                container_port: 53,
                host_port: Some(53),
                protocol: Protocol::Tcp,
            },
            PortSpec {
                container_port: 53,
                host_port: Some(53),
                protocol: Protocol::Udp,
            },
        ];
        assert!(container_config(&s).is_ok());
    }

    #[test]
    fn untagged_images_get_latest() {
        for (input, expected) in [
            ("busybox", "busybox:latest"),
            ("busybox:v1", "busybox:v1"),
            ("localhost:5000/a/b", "localhost:5000/a/b:latest"),
            ("localhost:5000/a/b:v2", "localhost:5000/a/b:v2"),
            ("a@sha256:abcd", "a@sha256:abcd"),
        ] {
            assert_eq!(with_default_tag(input), expected);
        }
    }

    #[test]
    fn timestamped_log_lines_split_into_stamp_and_line() {
        let out = b"2026-12-04T03:00:00.100000000Z one\n2026-12-04T03:00:00.200000000Z two words\n";
        let lines = timestamped_lines(out);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].0, "2026-12-04T03:00:00.100000000Z");
        assert_eq!(lines[1].1, b"two words\n");
        assert!(lines[0].0 < lines[1].0, "fixed-width stamps compare as strings");
        assert!(parse_docker_time(&lines[1].0).is_some());
    }

    #[test]
    fn docker_times_parse() {
        let t = parse_docker_time("2024-05-07T21:09:36.5Z").unwrap();
        let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(d.as_secs(), 1_715_116_176);
        assert_eq!(d.subsec_millis(), 500);
        let t = parse_docker_time("2024-05-07T23:09:36.123456789+02:00").unwrap();
        assert_eq!(
            t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(),
            1_715_116_176
        );
        assert_eq!(
            parse_docker_time("1970-01-01T00:00:00Z"),
            Some(SystemTime::UNIX_EPOCH)
        );
        assert_eq!(parse_docker_time("0001-01-01T00:00:00Z"), None);
        assert_eq!(parse_docker_time("garbage"), None);
        assert_eq!(parse_docker_time(""), None);
    }

    #[test]
    fn inspect_response_maps_state_and_labels() {
        let json = serde_json::json!({
            "Id": "abc",
            "Name": "/everynode_ds_n1_rev1_1234",
            "Config": {"Image": "busybox:v1", "Labels": {
                labels::DAEMONSET: "ds", labels::REVISION: "rev1", labels::SPEC_HASH: "h"}},
            "State": {"Status": "exited", "Running": false, "ExitCode": 137, "OOMKilled": true,
                      "Pid": 0, "StartedAt": "2024-05-07T21:09:36Z", "FinishedAt": "0001-01-01T00:00:00Z"}
        });
        let r: ContainerInspectResponse = serde_json::from_value(json).unwrap();
        let i = instance_from_inspect(r);
        assert_eq!(i.id, "abc");
        assert_eq!(i.name, "everynode_ds_n1_rev1_1234");
        assert_eq!(i.state, InstanceState::Exited { code: Some(137) });
        assert_eq!(i.reason.as_deref(), Some("OOMKilled"));
        assert_eq!((i.daemonset.as_str(), i.revision.as_str()), ("ds", "rev1"));
        assert_eq!(i.spec_hash.as_deref(), Some("h"));
        assert_eq!(i.pid, None);
        assert!(i.started_at.is_some());
        assert_eq!(i.finished_at, None);
    }
}
