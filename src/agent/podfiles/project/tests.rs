//! Tables for volume projection: keys, items, modes, optional objects, downward files, projections.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::*;
use crate::agent::podfiles::ObjectMap;
use crate::spec::container::Container;
use crate::spec::downward::{PodFacts, ResourceList};
use crate::spec::quantity::Quantity;

fn objects() -> ObjectMap {
    let data = |pairs: &[(&str, &str)]| -> BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    };
    ObjectMap {
        config_maps: BTreeMap::from([
            (
                "fluent-bit-config".into(),
                data(&[("fluent-bit.conf", "[INPUT]"), ("parsers.conf", "[PARSER]")]),
            ),
            ("empty".into(), BTreeMap::new()),
        ]),
        secrets: BTreeMap::from([("es".into(), data(&[("user", "elastic"), ("password", "s3cret")]))]),
    }
}

fn facts() -> PodFacts {
    PodFacts {
        name: "agent-node-1".into(),
        namespace: "logging".into(),
        labels: BTreeMap::from([("app".into(), "agent".into())]),
        node_name: "node-1".into(),
        ..PodFacts::default()
    }
}

fn containers() -> Vec<Container> {
    serde_json::from_value(json!([
        {"name": "agent", "image": "x:1", "resources": {"limits": {"cpu": "250m", "memory": "64Mi"}}},
        {"name": "bare", "image": "x:1"}
    ]))
    .unwrap()
}

/// `(path, text, mode)`.
type Shown = (String, String, u32);

/// Files of a volume given as JSON, as `(path, text, mode)`.
fn files(volume: Value) -> Result<Option<Vec<Shown>>, ConfigError> {
    let volume: Volume = serde_json::from_value(volume).unwrap();
    let (facts, containers) = (facts(), containers());
    let allocatable: ResourceList = BTreeMap::from([("cpu".into(), Quantity("8".into()))]);
    let pod = PodContext {
        facts: &facts,
        containers: &containers,
        allocatable: Some(&allocatable),
    };
    let files = project(&volume, &pod, &objects())?;
    Ok(files.map(|files| {
        files
            .into_iter()
            .map(|f| (f.path, String::from_utf8(f.data).unwrap(), f.mode))
            .collect()
    }))
}

fn file(path: &str, text: &str, mode: u32) -> Shown {
    (path.into(), text.into(), mode)
}

#[test]
fn volumes_become_files_as_kubelet_writes_them() {
    let cases: Vec<(&str, Value, Vec<Shown>)> = vec![
        (
            "every key, named by the key, with the default mode",
            json!({"name": "v", "configMap": {"name": "fluent-bit-config"}}),
            vec![
                file("fluent-bit.conf", "[INPUT]", 0o644),
                file("parsers.conf", "[PARSER]", 0o644),
            ],
        ),
        (
            "defaultMode for every key",
            json!({"name": "v", "secret": {"secretName": "es", "defaultMode": 0o400}}),
            vec![file("password", "s3cret", 0o400), file("user", "elastic", 0o400)],
        ),
        (
            "only the items, at their paths, item mode first",
            json!({"name": "v", "configMap": {"name": "fluent-bit-config", "defaultMode": 0o440, "items": [
                {"key": "parsers.conf", "path": "conf.d/parsers/parsers.conf", "mode": 0o600},
                {"key": "fluent-bit.conf", "path": "./main//fluent-bit.conf"}
            ]}}),
            vec![
                file("conf.d/parsers/parsers.conf", "[PARSER]", 0o600),
                file("main/fluent-bit.conf", "[INPUT]", 0o440),
            ],
        ),
        (
            "one key twice",
            json!({"name": "v", "secret": {"secretName": "es", "items": [
                {"key": "user", "path": "a"}, {"key": "user", "path": "b"}
            ]}}),
            vec![file("a", "elastic", 0o644), file("b", "elastic", 0o644)],
        ),
        (
            "an empty object gives no files",
            json!({"name": "v", "configMap": {"name": "empty"}}),
            vec![],
        ),
        (
            "a missing optional object gives no files",
            json!({"name": "v", "configMap": {"name": "nope", "optional": true}}),
            vec![],
        ),
        (
            "a missing key of an optional object is skipped",
            json!({"name": "v", "secret": {"secretName": "es", "optional": true, "items": [
                {"key": "token", "path": "token"}, {"key": "user", "path": "user"}
            ]}}),
            vec![file("user", "elastic", 0o644)],
        ),
        (
            "downward fields and resources",
            json!({"name": "v", "downwardAPI": {"defaultMode": 0o444, "items": [
                {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                {"path": "meta/name", "fieldRef": {"fieldPath": "metadata.name"}, "mode": 0o400},
                {"path": "cpu_millis", "resourceFieldRef": {"containerName": "agent", "resource": "limits.cpu", "divisor": "1m"}},
                {"path": "mem_mi", "resourceFieldRef": {"containerName": "agent", "resource": "limits.memory", "divisor": "1Mi"}},
                {"path": "node_cpus", "resourceFieldRef": {"containerName": "bare", "resource": "limits.cpu"}}
            ]}}),
            vec![
                file("cpu_millis", "250", 0o444),
                file("labels", "app=\"agent\"", 0o444),
                file("mem_mi", "64", 0o444),
                file("meta/name", "agent-node-1", 0o400),
                file("node_cpus", "8", 0o444),
            ],
        ),
        (
            "projected sources share one directory and the volume's mode",
            json!({"name": "v", "projected": {"defaultMode": 0o440, "sources": [
                {"configMap": {"name": "fluent-bit-config", "items": [{"key": "fluent-bit.conf", "path": "conf/main.conf"}]}},
                {"secret": {"name": "es", "items": [{"key": "password", "path": "creds/password", "mode": 0o400}]}},
                {"secret": {"name": "nope", "optional": true}},
                {"downwardAPI": {"items": [{"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
                {"serviceAccountToken": {"path": "token"}}
            ]}}),
            vec![
                file("conf/main.conf", "[INPUT]", 0o440),
                file("creds/password", "s3cret", 0o400),
                file("ns", "logging", 0o440),
            ],
        ),
    ];
    for (name, volume, want) in cases {
        assert_eq!(files(volume), Ok(Some(want)), "{name}");
    }
}

#[test]
fn missing_objects_and_keys_are_errors_naming_them() {
    let cases = [
        (
            json!({"name": "v", "configMap": {"name": "fluent-bit-config-v2"}}),
            "configmap \"fluent-bit-config-v2\" not found",
        ),
        (
            json!({"name": "v", "secret": {"secretName": "es", "items": [{"key": "token", "path": "t"}]}}),
            "secret \"es\" has no key \"token\"",
        ),
        (
            json!({"name": "v", "projected": {"sources": [{"configMap": {"name": "gone"}}]}}),
            "configmap \"gone\" not found",
        ),
        (
            json!({"name": "v", "downwardAPI": {"items": [{"path": "c", "resourceFieldRef": {"containerName": "other", "resource": "limits.cpu"}}]}}),
            "container \"other\" not found",
        ),
        (
            json!({"name": "v", "downwardAPI": {"items": [{"path": "m", "resourceFieldRef": {"containerName": "bare", "resource": "limits.memory"}}]}}),
            "file m: limits.memory is not limited and the node's allocatable limits.memory is unknown",
        ),
    ];
    for (volume, want) in cases {
        let err = files(volume).unwrap_err();
        assert_eq!(err.to_string(), want);
    }
}

#[test]
fn volumes_without_files_are_none() {
    for volume in [
        json!({"name": "v", "hostPath": {"path": "/var/log"}}),
        json!({"name": "v", "emptyDir": {}}),
        json!({"name": "v", "nfs": {"server": "nas", "path": "/"}}),
    ] {
        assert_eq!(files(volume.clone()), Ok(None), "{volume}");
    }
}

#[test]
fn binary_keys_are_written_as_bytes() {
    let objects = ObjectMap {
        config_maps: BTreeMap::from([("bin".into(), BTreeMap::from([("blob".into(), vec![0, 159, 255])]))]),
        ..ObjectMap::default()
    };
    let volume: Volume = serde_json::from_value(json!({"name": "v", "configMap": {"name": "bin"}})).unwrap();
    let facts = facts();
    let pod = PodContext {
        facts: &facts,
        containers: &[],
        allocatable: None,
    };
    let files = project(&volume, &pod, &objects).unwrap().unwrap();
    assert_eq!(files[0].data, [0, 159, 255]);
}
