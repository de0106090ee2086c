//! Tables for the spec-to-Docker conversion: each row an edit of a base spec and a check of the create body.

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
                        propagation: None,
                    },
                    MountSpec {
                        host_path: "/data".into(),
                        container_path: "/data".into(),
                        read_only: false,
                        propagation: None,
                    },
                    MountSpec {
                        host_path: "/var/lib/kubelet".into(),
                        container_path: "/var/lib/kubelet".into(),
                        read_only: false,
                        propagation: Some(crate::runtime::Propagation::Bidirectional),
                    },
                    MountSpec {
                        host_path: "/sys".into(),
                        container_path: "/sys".into(),
                        read_only: true,
                        propagation: Some(crate::runtime::Propagation::HostToContainer),
                    },
                ]
            },
            |c| {
                assert_eq!(
                    host(c).binds.as_deref(),
                    Some(
                        &[
                            "/var/log:/host/log:ro".to_string(),
                            "/data:/data:rw".into(),
                            "/var/lib/kubelet:/var/lib/kubelet:rw,rshared".into(),
                            "/sys:/sys:ro,rslave".into(),
                        ][..]
                    )
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
            "the security context: group, read-only root, capabilities, seccomp, no new privileges, host IPC",
            |s| {
                s.run_as_user = Some(1000);
                s.security = crate::runtime::SecuritySpec {
                    run_as_group: Some(2000),
                    read_only_root_fs: true,
                    no_new_privileges: true,
                    cap_add: vec!["NET_ADMIN".into()],
                    cap_drop: vec!["ALL".into()],
                    seccomp: Some(crate::runtime::Seccomp::Unconfined),
                    host_ipc: true,
                };
            },
            |c| {
                assert_eq!(c.user.as_deref(), Some("1000:2000"));
                assert_eq!(host(c).readonly_rootfs, Some(true));
                assert_eq!(host(c).cap_add.as_deref(), Some(&["NET_ADMIN".to_string()][..]));
                assert_eq!(host(c).cap_drop.as_deref(), Some(&["ALL".to_string()][..]));
                assert_eq!(
                    host(c).security_opt.as_deref(),
                    Some(&["no-new-privileges".to_string(), "seccomp=unconfined".into()][..])
                );
                assert_eq!(host(c).ipc_mode.as_deref(), Some("host"));
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
                assert!(!l.contains_key(labels::INIT), "an app container");
            },
        ),
        (
            "an init container's instance says which one it is, and Docker does not restart it",
            |s| s.init_index = Some(2),
            |c| {
                assert_eq!(c.labels.as_ref().unwrap()[labels::INIT], "2");
                assert_eq!(
                    host(c).restart_policy.as_ref().unwrap().name,
                    Some(RestartPolicyNameEnum::NO)
                );
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
        (
            |s| s.security.run_as_group = Some(5),
            "runAsGroup 5 without runAsUser",
        ),
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
                    propagation: None,
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
                    propagation: None,
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
