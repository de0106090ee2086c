//! Placement decisions for one DaemonSet and one node, case by case.

use std::time::Duration;

use super::*;
use crate::spec::pod::{
    Affinity, NodeAffinity, NodeSelector, NodeSelectorOperator, NodeSelectorRequirement, NodeSelectorTerm,
    Toleration, TolerationOperator,
};

fn taint(s: &str) -> Taint {
    s.parse().unwrap()
}

fn ds() -> DaemonSet {
    DaemonSet::default()
}

fn node() -> NodeInfo {
    NodeInfo {
        name: "n1".into(),
        ..NodeInfo::default()
    }
    .with_label("kubernetes.io/os", "linux")
    .with_label("zone", "a")
}

fn with_selector(pairs: &[(&str, &str)]) -> DaemonSet {
    let mut d = ds();
    for (k, v) in pairs {
        d.spec
            .template
            .spec
            .node_selector
            .insert(k.to_string(), v.to_string());
    }
    d
}

fn with_affinity(key: &str, op: NodeSelectorOperator, values: &[&str]) -> DaemonSet {
    let mut d = ds();
    d.spec.template.spec.affinity = Some(Affinity {
        node_affinity: Some(NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: vec![NodeSelectorTerm {
                    match_expressions: vec![NodeSelectorRequirement {
                        key: key.into(),
                        operator: op,
                        values: values.iter().map(|v| v.to_string()).collect(),
                    }],
                    match_fields: vec![],
                }],
            }),
        }),
    });
    d
}

fn with_toleration(
    key: &str,
    op: TolerationOperator,
    effect: Option<TaintEffect>,
    seconds: Option<i64>,
) -> DaemonSet {
    let mut d = ds();
    d.spec.template.spec.tolerations.push(Toleration {
        key: key.into(),
        operator: op,
        value: String::new(),
        effect,
        toleration_seconds: seconds,
    });
    d
}

#[test]
fn placement_table() {
    use NodeSelectorOperator::*;
    use TaintEffect::*;
    use TolerationOperator::Exists;
    // (case, daemonset, node, should_run, keep_running)
    let cases: Vec<(&str, DaemonSet, NodeInfo, bool, bool)> = vec![
        ("plain node", ds(), node(), true, true),
        (
            "selector matches",
            with_selector(&[("kubernetes.io/os", "linux")]),
            node(),
            true,
            true,
        ),
        (
            "selector value differs",
            with_selector(&[("zone", "b")]),
            node(),
            false,
            false,
        ),
        (
            "selector label missing",
            with_selector(&[("gpu", "true")]),
            node(),
            false,
            false,
        ),
        (
            "affinity In",
            with_affinity("zone", In, &["a"]),
            node(),
            true,
            true,
        ),
        (
            "affinity NotIn missing label",
            with_affinity("rack", NotIn, &["r1"]),
            node(),
            true,
            true,
        ),
        (
            "affinity DoesNotExist",
            with_affinity("edge", DoesNotExist, &[]),
            node(),
            true,
            true,
        ),
        (
            "affinity Exists fails",
            with_affinity("edge", NodeSelectorOperator::Exists, &[]),
            node(),
            false,
            false,
        ),
        (
            "affinity Gt",
            with_affinity("cores", Gt, &["4"]),
            node().with_label("cores", "8"),
            true,
            true,
        ),
        (
            "affinity Lt fails",
            with_affinity("cores", Lt, &["4"]),
            node().with_label("cores", "8"),
            false,
            false,
        ),
        (
            "NoSchedule taint blocks, keeps running",
            ds(),
            node().with_taint(taint("dedicated=db:NoSchedule")),
            false,
            true,
        ),
        (
            "NoExecute taint blocks and evicts",
            ds(),
            node().with_taint(taint("maintenance:NoExecute")),
            false,
            false,
        ),
        (
            "PreferNoSchedule never blocks",
            ds(),
            node().with_taint(taint("soft:PreferNoSchedule")),
            true,
            true,
        ),
        (
            "tolerated NoSchedule",
            with_toleration("dedicated", Exists, Some(NoSchedule), None),
            node().with_taint(taint("dedicated=db:NoSchedule")),
            true,
            true,
        ),
        (
            "toleration effect differs",
            with_toleration("maintenance", Exists, Some(NoSchedule), None),
            node().with_taint(taint("maintenance:NoExecute")),
            false,
            false,
        ),
        (
            "tolerate everything",
            with_toleration("", Exists, None, None),
            node()
                .with_taint(taint("a:NoSchedule"))
                .with_taint(taint("b=c:NoExecute")),
            true,
            true,
        ),
        (
            "builtin: not-ready",
            ds(),
            node().with_taint(taint("node.kubernetes.io/not-ready:NoExecute")),
            true,
            true,
        ),
        (
            "builtin: unreachable",
            ds(),
            node().with_taint(taint("node.kubernetes.io/unreachable:NoExecute")),
            true,
            true,
        ),
        (
            "builtin: disk-pressure",
            ds(),
            node().with_taint(taint("node.kubernetes.io/disk-pressure:NoSchedule")),
            true,
            true,
        ),
        (
            "builtin: memory-pressure",
            ds(),
            node().with_taint(taint("node.kubernetes.io/memory-pressure:NoSchedule")),
            true,
            true,
        ),
        (
            "builtin: pid-pressure",
            ds(),
            node().with_taint(taint("node.kubernetes.io/pid-pressure:NoSchedule")),
            true,
            true,
        ),
        (
            "builtin: cordoned",
            ds(),
            node().with_taint(taint("node.kubernetes.io/unschedulable:NoSchedule")),
            true,
            true,
        ),
        (
            "network-unavailable without host network",
            ds(),
            node().with_taint(taint("node.kubernetes.io/network-unavailable:NoSchedule")),
            false,
            true,
        ),
        (
            "pressure NoExecute is not tolerated",
            ds(),
            node().with_taint(taint("node.kubernetes.io/memory-pressure:NoExecute")),
            false,
            false,
        ),
    ];
    for (name, d, n, run, keep) in cases {
        let p = should_run(&d, &n);
        assert_eq!(
            (p.should_run, p.keep_running),
            (run, keep),
            "{name}: {}",
            p.summary()
        );
        assert_eq!(p.reasons.is_empty(), run, "{name}: reasons iff not running");
    }
}

#[test]
fn network_unavailable_is_tolerated_with_host_network() {
    let mut d = ds();
    d.spec.template.spec.host_network = true;
    let n = node().with_taint(taint("node.kubernetes.io/network-unavailable:NoSchedule"));
    assert!(should_run(&d, &n).should_run);
}

#[test]
fn node_name_pins_one_node() {
    let mut d = ds();
    d.spec.template.spec.node_name = Some("n2".into());
    let p = should_run(&d, &node());
    assert_eq!(p.reasons, [Reason::NodeName { wanted: "n2".into() }]);
    d.spec.template.spec.node_name = Some("n1".into());
    assert!(should_run(&d, &node()).should_run);
}

#[test]
fn toleration_seconds_become_an_eviction_delay() {
    let d = with_toleration(
        "maintenance",
        TolerationOperator::Exists,
        Some(TaintEffect::NoExecute),
        Some(120),
    );
    let p = should_run(&d, &node().with_taint(taint("maintenance:NoExecute")));
    assert!(p.should_run && p.keep_running);
    let e = p.eviction.clone().expect("eviction");
    assert_eq!(e.after, Duration::from_secs(120));
    assert_eq!(e.taint.key, "maintenance");
    assert!(p
        .summary()
        .contains("evicted 120s after taint maintenance:NoExecute"));
}

#[test]
fn every_reason_is_reported() {
    let mut d = with_selector(&[("zone", "b")]);
    d.spec.template.spec.node_name = Some("other".into());
    let p = should_run(&d, &node().with_taint(taint("x:NoSchedule")));
    assert_eq!(p.reasons.len(), 3, "{}", p.summary());
    let text = p.summary();
    assert!(
        text.contains("nodeSelector wants zone=b, the node has zone=a"),
        "{text}"
    );
    assert!(text.contains("taint x:NoSchedule"), "{text}");
}
