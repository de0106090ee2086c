//! Tables for env resolution: kubelet's order, expansion, every valueFrom source, optional objects.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::*;
use crate::agent::podfiles::ObjectMap;
use crate::spec::downward::{PodFacts, ResourceList};
use crate::spec::quantity::Quantity;

fn objects() -> ObjectMap {
    let data = |pairs: &[(&str, &[u8])]| -> BTreeMap<String, Vec<u8>> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_vec())).collect()
    };
    ObjectMap {
        config_maps: BTreeMap::from([
            (
                "agent-env".into(),
                data(&[
                    ("LOG_LEVEL", b"info"),
                    ("REGION", b"eu-1"),
                    ("log.format", b"json"),
                    ("1ST", b"one"),
                    ("bad=name", b"x"),
                ]),
            ),
            ("bin".into(), data(&[("BLOB", &[0xff, 0xfe]), ("TEXT", b"t")])),
        ]),
        secrets: BTreeMap::from([(
            "es".into(),
            data(&[("user", b"elastic"), ("password", b"s3cret")]),
        )]),
    }
}

fn facts() -> PodFacts {
    PodFacts {
        name: "agent-node-1".into(),
        namespace: "logging".into(),
        node_name: "node-1".into(),
        host_ip: "10.0.0.7".into(),
        host_ips: vec!["10.0.0.7".into(), "fd00::7".into()],
        labels: BTreeMap::from([("app".into(), "agent".into())]),
        ..PodFacts::default()
    }
}

fn resolve(container: Value) -> Result<Env, ConfigError> {
    let mut c = json!({"name": "agent", "image": "x:1"});
    c.as_object_mut()
        .unwrap()
        .extend(container.as_object().unwrap().clone());
    let containers: Vec<Container> = serde_json::from_value(json!([
        c,
        {"name": "sidecar", "image": "y:1", "resources": {"limits": {"memory": "32Mi"}}}
    ]))
    .unwrap();
    let facts = facts();
    let allocatable: ResourceList = BTreeMap::from([
        ("cpu".into(), Quantity("4".into())),
        ("memory".into(), Quantity("8Gi".into())),
    ]);
    let pod = PodContext {
        facts: &facts,
        containers: &containers,
        allocatable: Some(&allocatable),
    };
    resolve_env(&containers[0], &pod, &objects())
}

type Vars = Vec<(String, String)>;

fn vars(pairs: &[(&str, &str)]) -> Vars {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn variables_resolve_in_kubelet_order() {
    let cases: Vec<(&str, Value, Vars)> = vec![
        (
            "literal values, an empty one, and expansion of earlier ones only",
            json!({"env": [
                {"name": "A", "value": "1"},
                {"name": "B", "value": "$(A)-$(C)"},
                {"name": "C", "value": "3"},
                {"name": "E"},
                {"name": "ESC", "value": "$$(A)"}
            ]}),
            vars(&[
                ("A", "1"),
                ("B", "1-$(C)"),
                ("C", "3"),
                ("E", ""),
                ("ESC", "$(A)"),
            ]),
        ),
        (
            "envFrom first, in key order, then env replacing in place",
            json!({
                "envFrom": [{"configMapRef": {"name": "agent-env"}}],
                "env": [
                    {"name": "X", "value": "$(REGION)/$(LOG_LEVEL)"},
                    {"name": "LOG_LEVEL", "value": "debug"}
                ]
            }),
            vars(&[
                ("1ST", "one"),
                ("LOG_LEVEL", "debug"),
                ("REGION", "eu-1"),
                ("log.format", "json"),
                ("X", "eu-1/info"),
            ]),
        ),
        (
            "prefixes, and a later envFrom replacing an earlier one",
            json!({"envFrom": [
                {"prefix": "ES_", "secretRef": {"name": "es"}},
                {"prefix": "ES_", "configMapRef": {"name": "bin"}},
                {"secretRef": {"name": "missing", "optional": true}}
            ]}),
            vars(&[
                ("ES_password", "s3cret"),
                ("ES_user", "elastic"),
                ("ES_TEXT", "t"),
            ]),
        ),
        (
            "a variable redefined by itself sees its earlier value",
            json!({"env": [{"name": "PATH", "value": "/bin"}, {"name": "PATH", "value": "/opt/bin:$(PATH)"}]}),
            vars(&[("PATH", "/opt/bin:/bin")]),
        ),
        (
            "every valueFrom source",
            json!({"env": [
                {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                {"name": "IPS", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIPs"}}},
                {"name": "CPUS", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
                {"name": "SIDECAR_MI", "valueFrom": {"resourceFieldRef": {"containerName": "sidecar", "resource": "limits.memory", "divisor": "1Mi"}}},
                {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "agent-env", "key": "LOG_LEVEL"}}},
                {"name": "USER", "valueFrom": {"secretKeyRef": {"name": "es", "key": "user"}}},
                {"name": "URL", "value": "http://$(USER)@$(NODE):9200"}
            ]}),
            vars(&[
                ("NODE", "node-1"),
                ("POD", "agent-node-1"),
                ("APP", "agent"),
                ("IPS", "10.0.0.7,fd00::7"),
                ("CPUS", "4"),
                ("SIDECAR_MI", "32"),
                ("LEVEL", "info"),
                ("USER", "elastic"),
                ("URL", "http://elastic@node-1:9200"),
            ]),
        ),
        (
            "missing optional objects and keys leave the variable unset, or as it was",
            json!({
                "envFrom": [{"configMapRef": {"name": "agent-env"}, "prefix": "CM_"}],
                "env": [
                    {"name": "T", "valueFrom": {"secretKeyRef": {"name": "es", "key": "token", "optional": true}}},
                    {"name": "G", "valueFrom": {"configMapKeyRef": {"name": "gone", "key": "k", "optional": true}}},
                    {"name": "CM_REGION", "valueFrom": {"configMapKeyRef": {"name": "gone", "key": "k", "optional": true}}},
                    {"name": "F", "valueFrom": {"fileKeyRef": {"path": "p", "key": "k", "volumeName": "v"}}}
                ]
            }),
            vars(&[
                ("CM_1ST", "one"),
                ("CM_LOG_LEVEL", "info"),
                ("CM_REGION", "eu-1"),
                ("CM_log.format", "json"),
            ]),
        ),
    ];
    for (name, container, want) in cases {
        let env = resolve(container).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(env.vars, want, "{name}");
    }
}

#[test]
fn keys_that_cannot_be_variables_are_skipped_and_reported() {
    let env = resolve(json!({"envFrom": [
        {"configMapRef": {"name": "agent-env"}},
        {"configMapRef": {"name": "bin"}}
    ]}))
    .unwrap();
    let skipped: Vec<(&str, &str, SkipReason)> = env
        .skipped
        .iter()
        .map(|s| (s.object.as_str(), s.name.as_str(), s.reason))
        .collect();
    assert_eq!(
        skipped,
        [
            ("agent-env", "bad=name", SkipReason::InvalidName),
            ("bin", "BLOB", SkipReason::NotText)
        ]
    );
    assert!(env.vars.iter().all(|(k, _)| k != "bad=name" && k != "BLOB"));
}

#[test]
fn missing_objects_and_keys_are_errors_naming_them() {
    let cases = [
        (
            json!({"envFrom": [{"configMapRef": {"name": "fluent-bit-config"}}]}),
            "configmap \"fluent-bit-config\" not found",
        ),
        (
            json!({"env": [{"name": "K", "valueFrom": {"configMapKeyRef": {"name": "agent-env", "key": "y"}}}]}),
            "configmap \"agent-env\" has no key \"y\"",
        ),
        (
            json!({"env": [{"name": "K", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k"}}}]}),
            "secret \"nope\" not found",
        ),
        (
            json!({"env": [{"name": "B", "valueFrom": {"configMapKeyRef": {"name": "bin", "key": "BLOB"}}}]}),
            "configmap \"bin\" key \"BLOB\" is not UTF-8 text, so it cannot be an environment variable",
        ),
        (
            json!({"env": [{"name": "R", "valueFrom": {"resourceFieldRef": {"containerName": "ghost", "resource": "limits.cpu"}}}]}),
            "container \"ghost\" not found",
        ),
        (
            json!({"env": [{"name": "S", "valueFrom": {"resourceFieldRef": {"resource": "limits.ephemeral-storage"}}}]}),
            "env S: limits.ephemeral-storage is not limited and the node's allocatable limits.ephemeral-storage is unknown",
        ),
    ];
    for (container, want) in cases {
        assert_eq!(resolve(container).unwrap_err().to_string(), want);
    }
}

#[test]
fn commands_expand_against_the_environment() {
    let env = vars(&[("NODE", "node-1"), ("PORT", "2020")]);
    let args: Vec<String> = [
        "--node=$(NODE)",
        "--listen=:$(PORT)",
        "$(UNSET)",
        "$$(NODE)",
        "sh -c 'echo $HOME'",
    ]
    .map(String::from)
    .to_vec();
    assert_eq!(
        expand_command(&args, &env),
        [
            "--node=node-1",
            "--listen=:2020",
            "$(UNSET)",
            "$(NODE)",
            "sh -c 'echo $HOME'"
        ]
    );
}
