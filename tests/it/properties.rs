//! Properties: tolerate-all tolerates everything, no input makes parsing panic, and the
//! revision hash depends on the template's content only.

use everynode::scheduling::toleration::tolerates;
use everynode::scheduling::{should_run, NodeInfo, Taint, TaintEffect};
use everynode::spec::{self, DaemonSet, Toleration, TolerationOperator};
use proptest::prelude::*;
use serde_json::{json, Value};

fn effect() -> impl Strategy<Value = TaintEffect> {
    prop_oneof![
        Just(TaintEffect::NoSchedule),
        Just(TaintEffect::PreferNoSchedule),
        Just(TaintEffect::NoExecute),
    ]
}

fn taint() -> impl Strategy<Value = Taint> {
    (
        "([a-z0-9]{1,8}\\.)?[a-z][a-z0-9-]{0,10}[a-z0-9]/?[a-z0-9]{0,8}",
        "[A-Za-z0-9]{0,12}",
        effect(),
    )
        .prop_map(|(key, value, effect)| Taint {
            key: key.trim_end_matches('/').to_string(),
            value,
            effect,
        })
}

fn tolerate_all() -> Toleration {
    Toleration {
        operator: TolerationOperator::Exists,
        ..Toleration::default()
    }
}

proptest! {
    #[test]
    fn exists_with_an_empty_key_tolerates_every_taint(t in taint()) {
        prop_assert!(tolerates(&tolerate_all(), &t));
    }

    #[test]
    fn a_daemonset_tolerating_everything_runs_on_any_tainted_node(taints in proptest::collection::vec(taint(), 0..6)) {
        let mut ds = DaemonSet::default();
        ds.spec.template.spec.tolerations.push(tolerate_all());
        let node = NodeInfo { name: "n".into(), taints, ..NodeInfo::default() };
        let p = should_run(&ds, &node);
        prop_assert!(p.should_run && p.keep_running && p.eviction.is_none(), "{}", p.summary());
    }

    #[test]
    fn arbitrary_bytes_are_refused_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let manifests = spec::parse(&bytes, "fuzz");
        prop_assert!(!manifests.is_empty());
        prop_assert!(manifests.iter().all(|m| !m.is_valid()));
    }

    #[test]
    fn yaml_token_soup_never_panics(tokens in proptest::collection::vec(prop_oneof![
        Just("apiVersion: apps/v1\n"), Just("kind: DaemonSet\n"), Just("kind: List\n"), Just("items:\n"),
        Just("metadata:\n"), Just("spec:\n"), Just("  "), Just("- "), Just("\n"), Just("{"), Just("}"),
        Just("["), Just("]"), Just(", "), Just(": "), Just("&a "), Just("*a "), Just("<<: *a\n"),
        Just("---\n"), Just("...\n"), Just("\""), Just("'"), Just("# c\n"), Just("containers:"),
        Just("name: x"), Just("image: 5"), Just("-1"), Just("true"), Just("null"), Just("|\n"),
        Just("!!binary "), Just("? "), Just("\t"), Just("%YAML 1.2\n"), Just("1e999"), Just("0x1F"),
    ], 0..80)) {
        let text: String = tokens.concat();
        let _ = spec::parse(text.as_bytes(), "soup");
    }

    #[test]
    fn mutated_manifests_never_panic(pos in 0usize..2000, cut in 0usize..50, insert in proptest::collection::vec(any::<u8>(), 0..20)) {
        let mut bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/manifests/valid/node-exporter.yaml")).unwrap();
        let pos = pos.min(bytes.len());
        let end = (pos + cut).min(bytes.len());
        bytes.splice(pos..end, insert);
        let _ = spec::parse(&bytes, "mutated");
    }

    #[test]
    fn revision_ignores_key_order_formatting_and_format(doc in daemonset(), seed in any::<u64>()) {
        let sorted = serde_json::to_string(&doc).unwrap();
        let shuffled = write_shuffled(&doc, seed);
        let as_yaml = format!("# flow-style YAML, read by the YAML parser\n{}", serde_json::to_string_pretty(&doc).unwrap());
        let revisions: Vec<String> = [sorted, shuffled, as_yaml]
            .iter()
            .map(|text| {
                let m = spec::parse(text.as_bytes(), "doc").remove(0);
                let errors: Vec<String> = m.errors().map(ToString::to_string).collect();
                assert!(m.is_valid(), "{errors:?}\n{text}");
                m.revision().unwrap()
            })
            .collect();
        prop_assert_eq!(&revisions[0], &revisions[1]);
        prop_assert_eq!(&revisions[0], &revisions[2]);
    }

    #[test]
    fn revision_follows_the_template_only(doc in daemonset(), label in "[a-z]{1,8}", n in 0i32..100) {
        let revision = |d: &Value| spec::parse(d.to_string().as_bytes(), "d").remove(0).revision().unwrap();
        let base = revision(&doc);
        let mut outside = doc.clone();
        outside["metadata"]["labels"]["extra"] = json!(label);
        outside["spec"]["minReadySeconds"] = json!(n);
        outside["spec"]["revisionHistoryLimit"] = json!(n);
        outside["spec"]["updateStrategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": format!("{}%", n + 1)}});
        prop_assert_eq!(&base, &revision(&outside));
        let mut inside = doc.clone();
        inside["spec"]["template"]["metadata"]["annotations"] = json!({"changed": label});
        prop_assert_ne!(&base, &revision(&inside));
        let mut image = doc;
        image["spec"]["template"]["spec"]["containers"][0]["image"] = json!(format!("other/{label}:{n}"));
        prop_assert_ne!(&base, &revision(&image));
    }
}

/// A valid DaemonSet with random labels, containers, env and tolerations.
fn daemonset() -> impl Strategy<Value = Value> {
    let labels = proptest::collection::btree_map("[a-z]{1,6}", "[a-z0-9]{1,6}", 0..4);
    let container = (
        "[a-z]{1,6}",
        "[a-z]{1,8}:[0-9]\\.[0-9]",
        proptest::collection::btree_map("[A-Z]{1,6}", "[ -~]{0,10}", 0..3),
    );
    let containers = proptest::collection::btree_map("[a-z]{1,6}", container, 1..3);
    (labels, containers, any::<bool>(), 0i64..600).prop_map(|(labels, containers, host_network, seconds)| {
        let mut template_labels = labels.clone();
        template_labels.insert("app".into(), "agent".into());
        let containers: Vec<Value> = containers
            .into_iter()
            .map(|(name, (_, image, env))| {
                let env: Vec<Value> = env.into_iter().map(|(k, v)| json!({"name": k, "value": v})).collect();
                json!({"name": name, "image": image, "env": env, "args": ["--a", name]})
            })
            .collect();
        json!({
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": "agent", "labels": labels},
            "spec": {
                "selector": {"matchLabels": {"app": "agent"}},
                "template": {
                    "metadata": {"labels": template_labels},
                    "spec": {
                        "hostNetwork": host_network,
                        "containers": containers,
                        "tolerations": [{"key": "maintenance", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": seconds}]
                    }
                }
            }
        })
    })
}

/// JSON with every object's keys in a seed-dependent order.
fn write_shuffled(v: &Value, seed: u64) -> String {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by_key(|(k, _)| {
                k.bytes()
                    .fold(seed, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
            });
            let inner: Vec<String> = entries
                .into_iter()
                .map(|(k, v)| format!("{}:\n  {}", Value::String(k.clone()), write_shuffled(v, seed)))
                .collect();
            format!("{{ {} }}", inner.join(" ,\n"))
        }
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(|i| write_shuffled(i, seed)).collect();
            format!("[{}]", inner.join(","))
        }
        other => other.to_string(),
    }
}
