//! Tables for the downward API: which paths are accepted where, their values, and resources.

use std::collections::BTreeMap;

use super::*;
use crate::spec::container::ResourceRequirements;

fn facts() -> PodFacts {
    PodFacts {
        name: "agent-node-1".into(),
        namespace: "monitoring".into(),
        uid: "0d9c5e2a-uid".into(),
        labels: BTreeMap::from([("app".into(), "agent".into()), ("tier".into(), "node".into())]),
        annotations: BTreeMap::from([
            ("Example.com/Note".into(), "say \"hi\"\nbye".into()),
            ("a".into(), "1".into()),
        ]),
        node_name: "node-1".into(),
        service_account_name: "default".into(),
        host_ip: "10.0.0.1".into(),
        host_ips: vec!["10.0.0.1".into(), "fd00::1".into()],
        pod_ip: "10.0.0.1".into(),
        pod_ips: vec!["10.0.0.1".into(), "fd00::1".into()],
    }
}

#[test]
fn every_listed_field_resolves() {
    let f = facts();
    for field in FIELDS {
        assert!(resolve_field(field.path, &f).is_ok(), "{}", field.path);
    }
}

#[test]
fn fields_read_as_kubelet_writes_them() {
    let f = facts();
    let cases = [
        ("metadata.name", "agent-node-1"),
        ("metadata.namespace", "monitoring"),
        ("metadata.uid", "0d9c5e2a-uid"),
        ("metadata.labels['app']", "agent"),
        ("metadata.labels['missing']", ""),
        ("metadata.annotations['Example.com/Note']", "say \"hi\"\nbye"),
        ("metadata.labels", "app=\"agent\"\ntier=\"node\""),
        (
            "metadata.annotations",
            "Example.com/Note=\"say \\\"hi\\\"\\nbye\"\na=\"1\"",
        ),
        ("spec.nodeName", "node-1"),
        ("spec.serviceAccountName", "default"),
        ("status.hostIP", "10.0.0.1"),
        ("status.hostIPs", "10.0.0.1,fd00::1"),
        ("status.podIP", "10.0.0.1"),
        ("status.podIPs", "10.0.0.1,fd00::1"),
    ];
    for (path, want) in cases {
        assert_eq!(resolve_field(path, &f).as_deref(), Ok(want), "{path}");
    }
    assert_eq!(format_map(&BTreeMap::new()), "");
}

#[test]
fn unknown_and_badly_subscripted_fields_are_errors() {
    let f = facts();
    let cases = [
        ("spec.node", "unsupported fieldPath: spec.node"),
        (
            "metadata.labels[app]",
            "unsupported fieldPath: metadata.labels[app]",
        ),
        (
            "spec.nodeName['x']",
            "fieldPath \"spec.nodeName['x']\" does not support subscript",
        ),
        (
            "metadata.labels['bad key']",
            "invalid key subscript in metadata.labels['bad key']",
        ),
        ("", "unsupported fieldPath: "),
    ];
    for (path, want) in cases {
        let err = resolve_field(path, &f).unwrap_err().to_string();
        assert!(err.starts_with(want), "{path}: {err}");
    }
}

#[test]
fn each_field_is_accepted_only_where_kubernetes_accepts_it() {
    use Usage::{Env, Volume};
    let cases = [
        ("metadata.name", true, true),
        ("metadata.uid", true, true),
        ("metadata.labels", false, true),
        ("metadata.annotations", false, true),
        ("metadata.labels['app']", true, true),
        ("metadata.annotations['Example.com/Note']", true, true),
        ("spec.nodeName", true, false),
        ("spec.serviceAccountName", true, false),
        ("status.hostIP", true, false),
        ("status.podIPs", true, false),
        ("status.phase", false, false),
        ("spec.nodeName['x']", false, false),
        ("metadata.labels['-x']", false, false),
    ];
    for (path, env, volume) in cases {
        assert_eq!(check_field(path, Env).is_ok(), env, "{path} in env");
        assert_eq!(check_field(path, Volume).is_ok(), volume, "{path} in a volume");
    }
    assert!(supported(Env).contains(&"metadata.labels['<KEY>']".to_string()));
    assert!(!supported(Env).contains(&"metadata.labels".to_string()));
    assert!(!supported(Volume).contains(&"spec.nodeName".to_string()));
}

#[test]
fn go_quoting() {
    let cases = [
        ("", r#""""#),
        ("plain", r#""plain""#),
        ("a\"b\\c", r#""a\"b\\c""#),
        ("\u{7}\u{8}\u{c}\n\r\t\u{b}", r#""\a\b\f\n\r\t\v""#),
        ("\u{0}\u{1b}\u{7f}", r#""\x00\x1b\x7f""#),
        ("\u{85}\u{a0}", r#""\u0085\u00a0""#),
        ("zero\u{200b}width\u{feff}", r#""zero\u200bwidth\ufeff""#),
        ("\u{f0000}", r#""\U000f0000""#),
        ("ünïcødé 日本 🚀", "\"ünïcødé 日本 🚀\""),
    ];
    for (input, want) in cases {
        assert_eq!(go_quote(input), want, "{input:?}");
    }
}

fn container(limits: &[(&str, &str)], requests: &[(&str, &str)]) -> Container {
    let list = |pairs: &[(&str, &str)]| -> ResourceList {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
            .collect()
    };
    Container {
        resources: ResourceRequirements {
            limits: list(limits),
            requests: list(requests),
        },
        ..Container::default()
    }
}

fn selector(resource: &str, divisor: Option<&str>) -> ResourceFieldSelector {
    ResourceFieldSelector {
        container_name: String::new(),
        resource: resource.into(),
        divisor: divisor.map(|d| Quantity(d.into())),
    }
}

#[test]
fn resources_round_up_in_units_of_the_divisor() {
    let limited = container(
        &[("cpu", "250m"), ("memory", "100Mi"), ("ephemeral-storage", "1Gi")],
        &[("cpu", "100m")],
    );
    let bare = container(&[], &[]);
    let node: ResourceList = [("cpu", "4"), ("memory", "16Gi")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
        .collect();
    let cases: Vec<(&Container, &str, Option<&str>, &str)> = vec![
        (&limited, "limits.cpu", None, "1"),
        (&limited, "limits.cpu", Some("1"), "1"),
        (&limited, "limits.cpu", Some("1m"), "250"),
        (&limited, "limits.cpu", Some("0"), "1"),
        (&limited, "limits.memory", None, "104857600"),
        (&limited, "limits.memory", Some("1Mi"), "100"),
        (&limited, "limits.memory", Some("1Gi"), "1"),
        (&limited, "limits.memory", Some("1M"), "105"),
        (&limited, "limits.ephemeral-storage", Some("1Mi"), "1024"),
        (&limited, "requests.cpu", Some("1m"), "100"),
        // An unset request is the limit (the API server's default), else 0.
        (&limited, "requests.memory", Some("1Mi"), "100"),
        (&bare, "requests.cpu", None, "0"),
        (&bare, "requests.memory", None, "0"),
        // An unset limit is the node's allocatable.
        (&bare, "limits.cpu", None, "4"),
        (&bare, "limits.cpu", Some("1m"), "4000"),
        (&bare, "limits.memory", Some("1Gi"), "16"),
    ];
    for (c, resource, divisor, want) in cases {
        let got = resolve_resource(&selector(resource, divisor), c, Some(&node));
        assert_eq!(got.as_deref(), Ok(want), "{resource} / {divisor:?}");
    }
}

#[test]
fn resources_that_cannot_be_read_are_errors() {
    let bare = container(&[], &[]);
    let node = ResourceList::new();
    let cases = [
        (
            "limits.cpu",
            None,
            "limits.cpu is not limited and the node's allocatable limits.cpu is unknown",
        ),
        (
            "limits.nvidia.com/gpu",
            None,
            "unsupported container resource: limits.nvidia.com/gpu",
        ),
        ("cpu", None, "unsupported container resource: cpu"),
        ("requests.cpu", Some("lots"), "divisor: quantities must match"),
    ];
    for (resource, divisor, want) in cases {
        let err = resolve_resource(&selector(resource, divisor), &bare, Some(&node))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(want), "{resource}: {err}");
    }
    let unknown = resolve_resource(&selector("limits.memory", None), &bare, None);
    assert!(matches!(unknown, Err(DownwardError::NoAllocatable { .. })));
}
