//! The corpus agents placed on a small mixed fleet, as Kubernetes would place them.

use std::time::Duration;

use everynode::scheduling::node::builtin_labels;
use everynode::scheduling::{should_run, NodeInfo, Taint};
use everynode::spec::{self, DaemonSet};

fn corpus() -> Vec<DaemonSet> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/manifests/valid");
    spec::load(dir)
        .unwrap()
        .into_iter()
        .map(|m| m.into_valid().unwrap().into_daemonset().unwrap())
        .collect()
}

fn node(name: &str, os: &str, arch: &str, extra: &[(&str, &str)], taints: &[&str]) -> NodeInfo {
    let mut labels = builtin_labels(name, os, arch);
    for (k, v) in extra {
        labels.insert(k.to_string(), v.to_string());
    }
    NodeInfo {
        name: name.into(),
        labels,
        taints: taints.iter().map(|t| t.parse::<Taint>().unwrap()).collect(),
    }
}

fn fleet() -> Vec<NodeInfo> {
    vec![
        node("worker-1", "linux", "amd64", &[], &[]),
        node(
            "control-1",
            "linux",
            "amd64",
            &[],
            &["node-role.kubernetes.io/control-plane:NoSchedule"],
        ),
        node("db-1", "linux", "amd64", &[], &["dedicated=db:NoSchedule"]),
        node(
            "edge-1",
            "linux",
            "arm64",
            &[("node-role.example.com/edge", ""), ("example.com/cores", "4")],
            &[],
        ),
        node(
            "edge-2",
            "linux",
            "riscv64",
            &[("node-role.example.com/edge", ""), ("example.com/cores", "8")],
            &[],
        ),
        node("gateway-0", "linux", "amd64", &[], &[]),
        node("win-1", "windows", "amd64", &[], &[]),
        node("maint-1", "linux", "amd64", &[], &["maintenance:NoExecute"]),
        node(
            "sick-1",
            "linux",
            "amd64",
            &[],
            &[
                "node.kubernetes.io/not-ready:NoExecute",
                "node.kubernetes.io/disk-pressure:NoSchedule",
            ],
        ),
    ]
}

fn placed(ds: &DaemonSet) -> Vec<String> {
    fleet()
        .into_iter()
        .filter(|n| should_run(ds, n).should_run)
        .map(|n| n.name)
        .collect()
}

#[test]
fn the_corpus_lands_where_kubernetes_would_put_it() {
    let expected: &[(&str, &[&str])] = &[
        // nodeSelector linux; no tolerations beyond the DaemonSet ones.
        (
            "datadog-agent",
            &["worker-1", "edge-1", "edge-2", "gateway-0", "sick-1"],
        ),
        // Tolerates the control plane, not the dedicated db node nor maintenance.
        (
            "fluent-bit",
            &[
                "worker-1",
                "control-1",
                "edge-1",
                "edge-2",
                "gateway-0",
                "win-1",
                "sick-1",
            ],
        ),
        // Tolerates everything; linux only.
        (
            "kube-proxy",
            &[
                "worker-1",
                "control-1",
                "db-1",
                "edge-1",
                "edge-2",
                "gateway-0",
                "maint-1",
                "sick-1",
            ],
        ),
        (
            "node-problem-detector",
            &["worker-1", "edge-1", "edge-2", "gateway-0", "win-1", "sick-1"],
        ),
        (
            "cadvisor",
            &["worker-1", "edge-1", "edge-2", "gateway-0", "win-1", "sick-1"],
        ),
        (
            "node-exporter",
            &[
                "worker-1",
                "control-1",
                "db-1",
                "edge-1",
                "edge-2",
                "gateway-0",
                "maint-1",
                "sick-1",
            ],
        ),
        // Edge nodes on amd64/arm64 with more than 2 cores, or the gateway by name.
        ("envoy", &["edge-1", "gateway-0"]),
        // Tolerates db and (for a while) maintenance.
        (
            "security-agent",
            &[
                "worker-1",
                "db-1",
                "edge-1",
                "edge-2",
                "gateway-0",
                "win-1",
                "maint-1",
                "sick-1",
            ],
        ),
    ];
    let corpus = corpus();
    assert_eq!(corpus.len(), expected.len());
    for (name, nodes) in expected {
        let ds = corpus.iter().find(|d| d.metadata.name == *name).unwrap();
        assert_eq!(placed(ds), *nodes, "{name}");
    }
}

#[test]
fn describe_reasons_name_the_obstacle() {
    let corpus = corpus();
    let envoy = corpus.iter().find(|d| d.metadata.name == "envoy").unwrap();
    let riscv = &fleet()[4];
    let p = should_run(envoy, riscv);
    assert!(!p.should_run && !p.keep_running);
    assert_eq!(
        p.summary(),
        "does not run here: required node affinity does not match: term 0: `kubernetes.io/arch In [amd64, arm64]` does not hold (node has \"riscv64\"); term 1: `metadata.name In [gateway-0]` does not hold (node has \"edge-2\")"
    );
    let fluent = corpus.iter().find(|d| d.metadata.name == "fluent-bit").unwrap();
    let p = should_run(fluent, &fleet()[2]);
    assert!(
        !p.should_run && p.keep_running,
        "a NoSchedule taint keeps running instances"
    );
    assert!(
        p.summary().contains("taint dedicated=db:NoSchedule"),
        "{}",
        p.summary()
    );
}

#[test]
fn maintenance_evicts_the_security_agent_after_ten_minutes() {
    let corpus = corpus();
    let agent = corpus
        .iter()
        .find(|d| d.metadata.name == "security-agent")
        .unwrap();
    let p = should_run(agent, &fleet()[7]);
    let e = p.eviction.expect("a timed eviction");
    assert_eq!(e.after, Duration::from_secs(600));
    assert_eq!(e.taint.to_string(), "maintenance:NoExecute");
}
