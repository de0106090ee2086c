//! End to end rolling updates with the process runtime: waves within budget (checked by sampling every node's status), a leader killed mid-rollout, failure with pause and with rollback, undo, pause/resume, restart, history and OnDelete.

use crate::support;
use crate::support::rollout as rollout_support;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use everynode::rollout::invariant::BudgetChecker;
use rollout_support::{apply, leader_index, pods, rollout, run_ok, wait_revision, Sampler};
use serde_json::Value;
use support::manifest::Manifest;
use support::{wait_until, Cluster};

struct Spec<'a> {
    version: &'a str,
    /// Shell run by the container; `exec sleep 3600` is a healthy instance.
    script: &'a str,
    strategy: &'a str,
    min_ready: u64,
    annotations: &'a [(&'a str, &'a str)],
}

fn write_manifest(dir: &Path, name: &str, s: &Spec) -> PathBuf {
    let mut m = Manifest::new(name)
        .change_cause(&format!("deploy {}", s.version))
        .min_ready(s.min_ready)
        .strategy(s.strategy)
        .script(s.script)
        .env("VERSION", s.version);
    for (key, value) in s.annotations {
        m = m.annotation(key, value);
    }
    m.write(dir, &format!("{name}-{}.yaml", s.version))
}

const ROLLING_1: &str = "type: RollingUpdate\nrollingUpdate: {maxUnavailable: 1}";
const HEALTHY: &str = "exec sleep 3600";
const DEADLINE: &str = "everynode.io/progress-deadline-seconds";

#[test]
fn rolling_update_keeps_the_budget_and_a_new_leader_finishes_it() {
    let _machine = crate::support::shared_machine();
    let mut cluster = Cluster::start_seeded(5, 1, &[]);
    let dir = cluster.root.path().to_path_buf();
    let v1 = Spec {
        version: "v1",
        script: HEALTHY,
        strategy: ROLLING_1,
        min_ready: 2,
        annotations: &[],
    };
    apply(&cluster.nodes[0], &write_manifest(&dir, "agent", &v1));
    wait_revision(&cluster.nodes[0], "agent", 1, 5);
    let original: Vec<_> = cluster.nodes.iter().map(|n| n.instances()).collect();

    let leader = leader_index(&cluster);
    let server = Arc::new(Mutex::new(cluster.nodes[leader].server()));
    let sampler = Sampler::start(
        server.clone(),
        cluster.nodes[0].admin_token(),
        "agent",
        BudgetChecker::new(1, 0, 2),
    );
    let v2 = Spec { version: "v2", ..v1 };
    // Through a node that does not lead, and asked at once: `apply && rollout status` must see
    // the rollout the apply started, never report the previous revision as rolled out.
    let follower = (leader + 1) % cluster.nodes.len();
    apply(&cluster.nodes[follower], &write_manifest(&dir, "agent", &v2));
    let r = rollout(&cluster.nodes[follower], "agent");
    assert!(
        r["revision"] == 2 && r["phase"] != "Complete",
        "rollout status right after apply: {r}"
    );

    // Kill the leader once two waves have gone out.
    wait_until("wave 2", Duration::from_secs(60), || {
        let r = rollout(&cluster.nodes[leader], "agent");
        if r["wave"].as_u64() >= Some(2) {
            Ok(())
        } else {
            Err(format!("{r}"))
        }
    });
    let killed = cluster.nodes[leader].name.clone();
    cluster.nodes[leader].kill();
    let next = leader_index(&cluster);
    *server.lock().unwrap() = cluster.nodes[next].server();
    let status = cluster.nodes[next].cli(&["rollout", "status", "ds", "agent", "--timeout", "120s"]);
    let checker = sampler.finish();
    assert!(
        status.status.success(),
        "rollout status: {}{}",
        String::from_utf8_lossy(&status.stdout),
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(String::from_utf8_lossy(&status.stdout).contains("successfully rolled out"));
    checker.assert_held();
    eprintln!(
        "budget checker: {} samples, at most {} unavailable (budget 1)",
        checker.samples, checker.worst_unavailable
    );
    wait_revision(&cluster.nodes[next], "agent", 2, 4);

    // Every surviving node replaced its instance exactly once.
    for (i, node) in cluster.nodes.iter().enumerate().filter(|(_, n)| n.is_running()) {
        let now = node.instances();
        assert_eq!(now.len(), 1, "{}: one instance", node.name);
        assert!(
            original[i].keys().all(|id| !now.contains_key(id)),
            "{}: replaced",
            node.name
        );
    }

    // The killed node returns, adopts its old instance and catches up by itself.
    cluster.nodes[leader].start();
    wait_until(
        &format!("{killed} back on revision 2"),
        Duration::from_secs(60),
        || {
            let pods = pods(&cluster.nodes[next], "agent")?;
            pods.iter()
                .find(|p| {
                    p["node"] == killed.as_str()
                        && p["node_state"] == "alive"
                        && p["revision"] == 2
                        && p["state"] == "Running"
                })
                .map(|_| ())
                .ok_or_else(|| format!("{pods:?}"))
        },
    );
    let history = run_ok(&cluster.nodes[1], &["rollout", "history", "ds", "agent"]);
    assert!(
        history.contains("deploy v1") && history.contains("deploy v2"),
        "{history}"
    );
    assert!(history.contains("2 (current)"), "{history}");
}

#[test]
fn failed_rollouts_pause_or_roll_back_and_undo_pause_resume_restart_work() {
    let _machine = crate::support::shared_machine();
    let cluster = Cluster::start_seeded(4, 1, &[]);
    let dir = cluster.root.path().to_path_buf();
    let n0 = &cluster.nodes[0];
    let good = |version| Spec {
        version,
        script: HEALTHY,
        strategy: ROLLING_1,
        min_ready: 1,
        annotations: &[(DEADLINE, "4")],
    };
    apply(n0, &write_manifest(&dir, "web", &good("v1")));
    wait_revision(n0, "web", 1, 4);

    // A broken revision fails on its first node; the others keep revision 1.
    let broken = Spec {
        script: "echo broken; exit 1",
        ..good("v2")
    };
    apply(n0, &write_manifest(&dir, "web", &broken));
    let out = n0.cli(&["rollout", "status", "ds", "web", "--timeout", "60s"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success() && err.contains("failed and is paused"),
        "{err}"
    );
    let pods = pods(n0, "web").unwrap();
    let on_v2: Vec<&Value> = pods.iter().filter(|p| p["revision"] == 2).collect();
    assert_eq!(
        on_v2.len(),
        1,
        "only the first wave got the broken revision: {pods:?}"
    );
    assert_eq!(
        pods.iter()
            .filter(|p| p["revision"] == 1 && p["state"] == "Running")
            .count(),
        3
    );
    let describe = run_ok(n0, &["describe", "ds", "web"]);
    assert!(
        describe.contains("Failure:") && describe.contains("progress deadline"),
        "{describe}"
    );
    let table = run_ok(n0, &["get", "ds"]);
    assert!(table.contains("Failed"), "{table}");

    // Undo returns to revision 1's template as revision 3.
    let out = run_ok(n0, &["rollout", "undo", "ds", "web"]);
    assert!(out.contains("rolled back (revision 3)"), "{out}");
    run_ok(n0, &["rollout", "status", "ds", "web", "--timeout", "60s"]);
    wait_revision(n0, "web", 3, 4);

    // With on-failure: rollback the broken wave comes back by itself.
    let rollback = Spec {
        annotations: &[(DEADLINE, "4"), ("everynode.io/on-failure", "rollback")],
        ..broken
    };
    apply(n0, &write_manifest(&dir, "web", &rollback));
    let out = n0.cli(&["rollout", "status", "ds", "web", "--timeout", "90s"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success() && err.contains("rolled back to revision 5"),
        "{err}"
    );
    wait_revision(n0, "web", 5, 4);
    let history = run_ok(n0, &["rollout", "history", "ds", "web", "-o", "json"]);
    let history: Vec<Value> = serde_json::from_str(&history).unwrap();
    assert_eq!(history.last().unwrap()["revision"], 5);

    // Pause holds the waves; resume finishes them.
    let slow = Spec {
        min_ready: 3,
        annotations: &[],
        ..good("v3")
    };
    apply(n0, &write_manifest(&dir, "web", &slow));
    run_ok(n0, &["rollout", "pause", "ds", "web"]);
    support::holds_for(
        "the paused rollout holding at one wave",
        Duration::from_secs(5),
        "a wave takes an instance start plus minReadySeconds 3, so another would have begun",
        || {
            let r = rollout(n0, "web");
            if r["phase"] == "Paused" && r["updated"].as_u64() <= Some(1) {
                Ok(())
            } else {
                Err(format!("paused after at most one wave: {r}"))
            }
        },
    );
    let out = n0.cli(&["rollout", "status", "ds", "web", "--timeout", "1"]);
    assert!(!out.status.success());
    run_ok(n0, &["rollout", "resume", "ds", "web"]);
    run_ok(n0, &["rollout", "status", "ds", "web", "--timeout", "90s"]);
    wait_revision(n0, "web", 6, 4);

    // Restart replaces every instance under a new revision with the same template.
    let before: Vec<_> = cluster.nodes.iter().map(|n| n.instances()).collect();
    let out = run_ok(n0, &["rollout", "restart", "ds", "web"]);
    assert!(out.contains("restarted (revision 7)"), "{out}");
    run_ok(n0, &["rollout", "status", "ds", "web", "--timeout", "90s"]);
    wait_revision(n0, "web", 7, 4);
    for (i, node) in cluster.nodes.iter().enumerate() {
        let now = node.instances();
        assert!(
            before[i].keys().all(|id| !now.contains_key(id)),
            "{}: restarted",
            node.name
        );
    }
}

#[test]
fn on_delete_moves_a_node_only_when_its_instance_is_deleted() {
    let _machine = crate::support::shared_machine();
    let cluster = Cluster::start_seeded(3, 1, &[]);
    let dir = cluster.root.path().to_path_buf();
    let n0 = &cluster.nodes[0];
    let v1 = Spec {
        version: "v1",
        script: HEALTHY,
        strategy: "type: OnDelete",
        min_ready: 0,
        annotations: &[],
    };
    apply(n0, &write_manifest(&dir, "ondel", &v1));
    wait_revision(n0, "ondel", 1, 3);
    apply(n0, &write_manifest(&dir, "ondel", &Spec { version: "v2", ..v1 }));
    support::holds_for(
        "OnDelete leaving every instance on revision 1",
        Duration::from_secs(3),
        "with minReadySeconds 0 a RollingUpdate would have moved a node within 2 s",
        || {
            let pods = pods(n0, "ondel")?;
            if pods.iter().all(|p| p["revision"] == 1) {
                Ok(())
            } else {
                Err(format!("nothing moves by itself: {pods:?}"))
            }
        },
    );
    let out = n0.cli(&["rollout", "status", "ds", "ondel", "--timeout", "1"]);
    assert!(!out.status.success(), "OnDelete waits for deletes");

    let out = run_ok(n0, &["delete", "pod", "ondel", "--node", "node-1"]);
    assert!(out.contains("deleted"), "{out}");
    wait_until("node-1 on revision 2", Duration::from_secs(30), || {
        let pods = pods(n0, "ondel")?;
        let by_node = |n: &str| {
            pods.iter()
                .find(|p| p["node"] == n)
                .map(|p| (p["revision"].clone(), p["state"].clone()))
        };
        if by_node("node-1") == Some((2.into(), "Running".into()))
            && by_node("node-0").map(|p| p.0) == Some(1.into())
        {
            Ok(())
        } else {
            Err(format!("{pods:?}"))
        }
    });
    for n in ["node-0", "node-2"] {
        run_ok(n0, &["delete", "pod", "ondel", "--node", n]);
    }
    run_ok(n0, &["rollout", "status", "ds", "ondel", "--timeout", "60s"]);
    let out = n0.cli(&["delete", "pod", "ondel", "--node", "nope"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("node nope is not a member"));
}

/// Running instances per node of the process runtime (records whose process group lives).
fn running_instances(node: &support::Node) -> usize {
    node.instances()
        .values()
        // SAFETY: signal 0 only checks that the process exists.
        .filter(|pid| unsafe { libc::kill(**pid, 0) } == 0)
        .count()
}

#[test]
fn surge_starts_the_new_instance_beside_the_old_one() {
    let _machine = crate::support::shared_machine();
    let cluster = Cluster::start_seeded(3, 1, &[]);
    let dir = cluster.root.path().to_path_buf();
    let n0 = &cluster.nodes[0];
    let v1 = Spec {
        version: "v1",
        script: HEALTHY,
        strategy: "type: RollingUpdate\nrollingUpdate: {maxUnavailable: 0, maxSurge: 1}",
        min_ready: 2,
        annotations: &[],
    };
    apply(n0, &write_manifest(&dir, "surge", &v1));
    wait_revision(n0, "surge", 1, 3);
    apply(n0, &write_manifest(&dir, "surge", &Spec { version: "v2", ..v1 }));
    let (mut fewest, mut most_extra) = (usize::MAX, 0);
    let done = wait_until("surged rollout complete", Duration::from_secs(90), || {
        let counts: Vec<usize> = cluster.nodes.iter().map(running_instances).collect();
        fewest = fewest.min(*counts.iter().min().unwrap());
        most_extra = most_extra.max(counts.iter().sum::<usize>().saturating_sub(3));
        let r = rollout(n0, "surge");
        if r["phase"] == "Complete" && r["revision"] == 2 && counts == [1, 1, 1] {
            Ok(r)
        } else {
            std::thread::sleep(Duration::from_millis(50));
            Err(format!("{counts:?} {r}"))
        }
    });
    assert_eq!(done["updated_available"], 3);
    assert!(
        fewest >= 1,
        "with surge no node is ever without a running instance"
    );
    assert_eq!(
        most_extra, 1,
        "one new instance beside an old one at a time (maxSurge 1)"
    );
}
