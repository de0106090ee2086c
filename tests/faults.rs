//! Faults across real network boundaries: five agents in network namespaces (MTU 1500) through partitions, packet loss, lost and frozen nodes, leader kills and restarts, checking that nothing acknowledged is lost.
//!
//! The scenarios share fixed namespace names and addresses, so they run one at a time (a lock),
//! each on a fresh network and cluster. Each prints one `SUMMARY` line. Packet delay is not
//! emulated: the kernel here has no netem, and nftables can only drop.

#[path = "support/netns.rs"]
mod netns;
#[path = "support/rollout.rs"]
mod rollout_support;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use everynode::rollout::invariant::BudgetChecker;
use netns::Net;
use rollout_support::{leader_index, rollout, wait_revision, Sampler};
use serde_json::Value;
use support::{everynode, wait_until, Cluster, Node};

const HOSTS: usize = 5;
const GOSSIP_PORT: u16 = 9494;
const API_PORT: u16 = 9495;

/// The scenarios reuse one set of namespace names and addresses.
static SERIAL: Mutex<()> = Mutex::new(());

/// The network and the agents on it. The agents go first (field order): they must be killed
/// before their namespaces disappear under them.
struct Fleet {
    cluster: Cluster,
    net: Net,
    dir: PathBuf,
    started: Instant,
}

/// Starts five agents, one per namespace, all seeded with the first two hosts and all voters
/// (so a 2 | 3 split leaves the two with 2 of 5 voters), and waits until they form one cluster.
fn fleet(scenario: &str) -> Option<Fleet> {
    if !netns::require_capabilities(scenario) {
        return None;
    }
    let started = Instant::now();
    let net = Net::create(HOSTS);
    let root = tempfile::Builder::new().prefix("evn-faults-").tempdir().unwrap();
    let seeds = format!("{}:{GOSSIP_PORT},{}:{GOSSIP_PORT}", Net::addr(0), Net::addr(1));
    let mut nodes = Vec::new();
    for i in 0..HOSTS {
        let args = ["--gossip-interval-ms", "100", "--seed", &seeds, "--voters", "5"];
        let mut node = Node::new(
            root.path(),
            &format!("node-{i}"),
            args.iter().map(|s| s.to_string()).collect(),
        );
        node.gossip = (Net::addr(i), GOSSIP_PORT).into();
        node.api = (Net::addr(i), API_PORT).into();
        node.netns = Some(Net::ns_path(i));
        nodes.push(node);
    }
    for node in &mut nodes {
        node.start();
    }
    let dir = root.path().to_path_buf();
    let fleet = Fleet {
        cluster: Cluster { nodes, root },
        net,
        dir,
        started,
    };
    fleet.wait_formed(Duration::from_secs(60));
    Some(fleet)
}

impl Fleet {
    fn node(&self, i: usize) -> &Node {
        &self.cluster.nodes[i]
    }

    /// Every running node sees the same leader and five voters.
    fn wait_formed(&self, timeout: Duration) -> String {
        wait_until("one cluster with 5 voters", timeout, || {
            let mut leaders = BTreeSet::new();
            for node in self.cluster.nodes.iter().filter(|n| n.is_running()) {
                let view = json(node, &["cluster", "-o", "json"])?;
                let voters = view["voters"].as_array().map_or(0, Vec::len);
                let leader = view["leader"].as_str().unwrap_or_default().to_string();
                if voters != HOSTS || leader.is_empty() {
                    return Err(format!("{}: {view}", node.name));
                }
                leaders.insert(leader);
            }
            match leaders.len() {
                1 => Ok(leaders.into_iter().next().unwrap()),
                _ => Err(format!("leaders {leaders:?}")),
            }
        })
    }

    fn leader(&self) -> usize {
        leader_index(&self.cluster)
    }

    fn summary(&self, scenario: &str, faults: &str, acknowledged: usize, lost: usize, converge: Duration) {
        println!(
            "SUMMARY {scenario}: faults: {faults}; operations acknowledged: {acknowledged}; operations lost: {lost}; converged {:.1}s after healing; scenario took {:.0}s",
            converge.as_secs_f64(),
            self.started.elapsed().as_secs_f64()
        );
    }
}

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// An admin command that gives up after `limit` (a frozen node never answers).
fn cli_within(node: &Node, args: &[&str], limit: Duration) -> Option<Output> {
    let child = everynode()
        .arg("--server")
        .arg(node.server())
        .env("EVERYNODE_DATA_DIR", &node.data_dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => Some(out.unwrap()),
        Err(_) => {
            // SAFETY: killing the CLI process this function started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let _ = rx.recv();
            None
        }
    }
}

fn json(node: &Node, args: &[&str]) -> Result<Value, String> {
    let out = cli_within(node, args, Duration::from_secs(15)).ok_or("no answer within 15s")?;
    if !out.status.success() {
        return Err(format!(
            "{}: {}",
            node.name,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("{}: bad JSON: {e}", node.name))
}

/// A DaemonSet running `sleep`, its template marked with `version` (so every write is told
/// apart), selecting the nodes `selector` names (none: every node).
fn manifest(name: &str, version: &str, min_ready: u64, selector: Option<&str>) -> String {
    let selector = selector.map_or(String::new(), |s| {
        format!("      nodeSelector: {{kubernetes.io/hostname: {s}}}\n")
    });
    format!(
        "apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: {name}
  annotations:
    kubernetes.io/change-cause: deploy {version}
spec:
  selector:
    matchLabels: {{app: {name}}}
  minReadySeconds: {min_ready}
  updateStrategy:
    type: RollingUpdate
    rollingUpdate: {{maxUnavailable: 1}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      terminationGracePeriodSeconds: 1
{selector}      containers:
      - name: main
        image: busybox:1
        command: [sleep, '3600']
        env:
        - {{name: VERSION, value: {version}}}
"
    )
}

fn write_manifest(dir: &Path, name: &str, version: &str, min_ready: u64) -> PathBuf {
    let path = dir.join(format!("{name}-{version}.yaml"));
    std::fs::write(&path, manifest(name, version, min_ready, None)).unwrap();
    path
}

/// What a write's caller learnt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Acknowledged: it must be visible unless superseded.
    Ok,
    /// The clear refusal ("nothing was changed"): it must never become visible.
    Failed,
    /// No answer or another error: either may be true.
    Unknown,
}

fn write(node: &Node, args: &[&str]) -> (Outcome, String) {
    match cli_within(node, args, Duration::from_secs(20)) {
        None => (Outcome::Unknown, "no answer within 20s".into()),
        Some(out) => {
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            if out.status.success() {
                (Outcome::Ok, String::from_utf8_lossy(&out.stdout).into_owned())
            } else if err.contains("nothing was changed") {
                (Outcome::Failed, err)
            } else {
                (Outcome::Unknown, err)
            }
        }
    }
}

fn apply(node: &Node, file: &Path) -> (Outcome, String) {
    write(node, &["apply", "-f", file.to_str().unwrap()])
}

/// Applies until acknowledged (a leader may be in the middle of an election).
fn apply_ok(node: &Node, file: &Path) {
    wait_until("an acknowledged apply", Duration::from_secs(60), || {
        match apply(node, file) {
            (Outcome::Ok, _) => Ok(()),
            (_, err) => Err(err),
        }
    });
}

/// The stored DaemonSets as this node knows them: name -> the version its template carries.
fn stored(node: &Node) -> Result<BTreeMap<String, String>, String> {
    let list = json(node, &["get", "ds", "-o", "json"])?;
    Ok(list["items"]
        .as_array()
        .ok_or("no items")?
        .iter()
        .map(|d| {
            (
                d["metadata"]["name"].as_str().unwrap_or_default().to_string(),
                d["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect())
}

/// Instances that run under a node, from the process runtime's records: DaemonSet -> ids.
fn running(node: &Node) -> BTreeMap<String, BTreeSet<String>> {
    let dir = node.data_dir.join("process").join("instances");
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".exit.json") || !name.ends_with(".json") {
            continue;
        }
        let Some(v) = std::fs::read(entry.path())
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        else {
            continue;
        };
        let pid = v["pid"].as_i64().unwrap_or(0) as i32;
        // SAFETY: signal 0 only asks whether the process exists.
        let alive = pid > 1 && unsafe { libc::kill(pid, 0) } == 0;
        if alive {
            out.entry(
                v["labels"]["io.everynode.daemonset"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
            .or_default()
            .insert(v["id"].as_str().unwrap_or_default().to_string());
        }
    }
    out
}

/// Waits until every node stores exactly `want` and runs one instance of each; returns how long it took.
fn wait_converged(fleet: &Fleet, want: &BTreeMap<String, String>, timeout: Duration) -> Duration {
    let t0 = Instant::now();
    for node in fleet.cluster.nodes.iter() {
        wait_until(&format!("{} to converge", node.name), timeout, || {
            let have = stored(node)?;
            if &have != want {
                return Err(format!("stores {have:?}, want {want:?}"));
            }
            let runs = running(node);
            let counts: BTreeMap<&String, usize> = runs.iter().map(|(k, v)| (k, v.len())).collect();
            if counts.len() == want.len() && counts.iter().all(|(k, n)| want.contains_key(*k) && *n == 1) {
                Ok(())
            } else {
                Err(format!("runs {counts:?}"))
            }
        });
    }
    t0.elapsed()
}

#[test]
fn s1_a_2_3_partition_keeps_the_majority_writing_and_the_minority_running() {
    let _serial = serial();
    let Some(mut fleet) = fleet("1 (partition 2 | 3)") else {
        return;
    };
    let dir = fleet.dir.clone();
    apply_ok(fleet.node(2), &write_manifest(&dir, "keep", "v1", 0));
    let mut want = BTreeMap::from([("keep".to_string(), "v1".to_string())]);
    wait_converged(&fleet, &want, Duration::from_secs(60));
    let before: Vec<_> = fleet.cluster.nodes.iter().map(running).collect();

    // The leader goes to the minority side, so the majority must elect a new one.
    let leader = fleet.leader();
    let minority = [leader, (leader + 1) % HOSTS];
    let majority: Vec<usize> = (0..HOSTS).filter(|i| !minority.contains(i)).collect();
    fleet.net.partition(&[&minority, &majority]);
    let mut acknowledged = 0;

    let t0 = Instant::now();
    apply_ok(fleet.node(majority[0]), &write_manifest(&dir, "maj", "v1", 0));
    acknowledged += 1;
    eprintln!(
        "majority took its first write {:.1}s after the split",
        t0.elapsed().as_secs_f64()
    );
    apply_ok(fleet.node(majority[1]), &write_manifest(&dir, "maj2", "v1", 0));
    acknowledged += 1;
    want.insert("maj".into(), "v1".into());
    want.insert("maj2".into(), "v1".into());
    for &i in &majority {
        wait_until("the majority to converge", Duration::from_secs(30), || {
            let have = stored(fleet.node(i))?;
            let runs = running(fleet.node(i));
            if have == want && runs.len() == 3 {
                Ok(())
            } else {
                Err(format!("{have:?} {runs:?}"))
            }
        });
    }

    let refused = write_manifest(&dir, "minor", "v1", 0);
    for &i in &minority {
        let (outcome, err) = apply(fleet.node(i), &refused);
        assert_eq!(outcome, Outcome::Failed, "{}: {err}", fleet.node(i).name);
        assert!(
            err.contains("no leader can commit writes: 2 of 5 voters reachable")
                && err.contains("nothing was changed"),
            "{}: {err}",
            fleet.node(i).name
        );
        assert_eq!(
            stored(fleet.node(i)).unwrap(),
            BTreeMap::from([("keep".to_string(), "v1".to_string())]),
            "reads still work on the minority"
        );
        assert_eq!(
            running(fleet.node(i)),
            before[i],
            "{}: keeps its instance",
            fleet.node(i).name
        );
    }

    fleet.net.heal();
    let converge = wait_converged(&fleet, &want, Duration::from_secs(60));
    for (i, node) in fleet.cluster.nodes.iter().enumerate() {
        assert_eq!(
            running(node)["keep"],
            before[i]["keep"],
            "{}: keep was not restarted",
            node.name
        );
    }
    fleet.summary(
        "scenario 1 (partition 2 | 3)",
        "1 partition (leader in the minority of 2), 2 refused writes on the minority",
        acknowledged,
        0,
        converge,
    );
}

#[test]
fn s2_a_leader_killed_mid_rollout_finishes_within_budget() {
    let _serial = serial();
    let Some(mut fleet) = fleet("2 (leader killed mid-rollout)") else {
        return;
    };
    let dir = fleet.dir.clone();
    apply_ok(fleet.node(0), &write_manifest(&dir, "roll", "v1", 2));
    wait_revision(fleet.node(0), "roll", 1, HOSTS);
    let leader = fleet.leader();
    let server = Arc::new(Mutex::new(fleet.node(leader).server()));
    let sampler = Sampler::start(
        server.clone(),
        fleet.node(0).admin_token(),
        "roll",
        BudgetChecker::new(1, 0, 2),
    );
    apply_ok(fleet.node(0), &write_manifest(&dir, "roll", "v2", 2));
    wait_until("wave 2", Duration::from_secs(60), || {
        let r = rollout(fleet.node(leader), "roll");
        if r["wave"].as_u64() >= Some(2) {
            Ok(())
        } else {
            Err(format!("{r}"))
        }
    });
    fleet.cluster.nodes[leader].kill();
    let next = fleet.leader();
    *server.lock().unwrap() = fleet.node(next).server();
    let status = cli_within(
        fleet.node(next),
        &["rollout", "status", "ds", "roll", "--timeout", "120s"],
        Duration::from_secs(130),
    )
    .expect("rollout status answers");
    let checker = sampler.finish();
    assert!(
        status.status.success(),
        "rollout status: {}{}",
        String::from_utf8_lossy(&status.stdout),
        String::from_utf8_lossy(&status.stderr)
    );
    checker.assert_held();
    let t0 = Instant::now();
    fleet.cluster.nodes[leader].start();
    let want = BTreeMap::from([("roll".to_string(), "v2".to_string())]);
    wait_converged(&fleet, &want, Duration::from_secs(60));
    wait_revision(fleet.node(next), "roll", 2, HOSTS);
    fleet.summary(
        "scenario 2 (leader killed mid-rollout)",
        &format!(
            "leader {} SIGKILLed at wave 2, restarted after the rollout; budget held over {} samples (at most {} unavailable of 1)",
            fleet.node(leader).name,
            checker.samples,
            checker.worst_unavailable
        ),
        2,
        0,
        t0.elapsed(),
    );
}

#[test]
fn s3_a_node_lost_mid_rollout_catches_up_when_it_returns() {
    let _serial = serial();
    let Some(mut fleet) = fleet("3 (node lost mid-rollout)") else {
        return;
    };
    let dir = fleet.dir.clone();
    apply_ok(fleet.node(0), &write_manifest(&dir, "lost", "v1", 1));
    wait_revision(fleet.node(0), "lost", 1, HOSTS);
    let leader = fleet.leader();
    let victim = (leader + 2) % HOSTS;
    let others: Vec<usize> = (0..HOSTS).filter(|i| *i != victim).collect();
    apply_ok(fleet.node(leader), &write_manifest(&dir, "lost", "v2", 1));
    wait_until("wave 1", Duration::from_secs(60), || {
        let r = rollout(fleet.node(leader), "lost");
        if r["wave"].as_u64() >= Some(1) {
            Ok(())
        } else {
            Err(format!("{r}"))
        }
    });
    fleet.net.partition(&[&others, &[victim]]);
    let status = cli_within(
        fleet.node(leader),
        &["rollout", "status", "ds", "lost", "--timeout", "120s"],
        Duration::from_secs(130),
    )
    .expect("rollout status answers");
    assert!(
        status.status.success(),
        "the rollout completes without the lost node: {}{}",
        String::from_utf8_lossy(&status.stdout),
        String::from_utf8_lossy(&status.stderr)
    );
    wait_revision(fleet.node(leader), "lost", 2, HOSTS - 1);
    fleet.net.heal();
    let want = BTreeMap::from([("lost".to_string(), "v2".to_string())]);
    let converge = wait_converged(&fleet, &want, Duration::from_secs(60));
    wait_revision(fleet.node(leader), "lost", 2, HOSTS);
    fleet.summary(
        "scenario 3 (node lost mid-rollout)",
        &format!(
            "{} cut off from all others after wave 1, healed after the rollout",
            fleet.node(victim).name
        ),
        2,
        0,
        converge,
    );
}

#[test]
fn s4_every_node_restarted_at_once_adopts_every_instance() {
    let _serial = serial();
    let Some(mut fleet) = fleet("4 (all restarted at once)") else {
        return;
    };
    let dir = fleet.dir.clone();
    apply_ok(fleet.node(0), &write_manifest(&dir, "a", "v1", 0));
    apply_ok(fleet.node(3), &write_manifest(&dir, "b", "v1", 0));
    let want = BTreeMap::from([
        ("a".to_string(), "v1".to_string()),
        ("b".to_string(), "v1".to_string()),
    ]);
    wait_converged(&fleet, &want, Duration::from_secs(60));
    let before: Vec<_> = fleet.cluster.nodes.iter().map(|n| n.instances()).collect();

    for node in &mut fleet.cluster.nodes {
        node.kill();
    }
    let t0 = Instant::now();
    for node in &mut fleet.cluster.nodes {
        node.start();
    }
    fleet.wait_formed(Duration::from_secs(60));
    let converge = wait_converged(&fleet, &want, Duration::from_secs(60)) + t0.elapsed();
    // Give every agent time to act on what it found before judging.
    std::thread::sleep(Duration::from_secs(3));
    for (i, node) in fleet.cluster.nodes.iter().enumerate() {
        assert_eq!(
            node.instances(),
            before[i],
            "{}: same instance ids and pids",
            node.name
        );
        assert_eq!(
            running(node).values().map(BTreeSet::len).sum::<usize>(),
            2,
            "{}: both still run",
            node.name
        );
    }
    fleet.summary(
        "scenario 4 (all restarted at once)",
        "5 agents SIGKILLed together and restarted; 10 instances adopted, 0 restarted",
        2,
        0,
        converge,
    );
}

#[test]
fn s5_twenty_percent_loss_declares_nobody_dead_and_writes_commit() {
    let _serial = serial();
    let Some(mut fleet) = fleet("5 (20% packet loss)") else {
        return;
    };
    let dir = fleet.dir.clone();
    fleet.net.set_loss(20);
    let t0 = Instant::now();
    let (mut acknowledged, mut retried, mut polls) = (0, 0, 0);
    let mut want = BTreeMap::new();
    let mut dead_seen = Vec::new();
    let mut k = 0;
    while t0.elapsed() < Duration::from_secs(60) {
        let version = format!("v{k}");
        let name = format!("loss{}", k % 4);
        let file = write_manifest(&dir, &name, &version, 0);
        let node = fleet.node(k % HOSTS);
        loop {
            match apply(node, &file) {
                (Outcome::Ok, _) => break,
                (_, err) => {
                    retried += 1;
                    assert!(
                        t0.elapsed() < Duration::from_secs(120),
                        "writes stopped committing under loss: {err}"
                    );
                }
            }
        }
        acknowledged += 1;
        want.insert(name, version);
        k += 1;
        for node in &fleet.cluster.nodes {
            let Ok(members) = json(node, &["members", "-o", "json"]) else {
                continue;
            };
            polls += 1;
            for m in members.as_array().into_iter().flatten() {
                if m["state"] != "alive" {
                    dead_seen.push(format!(
                        "{} saw {} {} after {:.0}s",
                        node.name,
                        m["name"],
                        m["state"],
                        t0.elapsed().as_secs_f64()
                    ));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        dead_seen.is_empty(),
        "nodes wrongly declared dead under 20% loss: {dead_seen:?}"
    );
    fleet.net.heal();
    let converge = wait_converged(&fleet, &want, Duration::from_secs(60));
    fleet.summary(
        "scenario 5 (20% packet loss, 60s)",
        &format!("20% of packets between hosts dropped for 60s; {polls} member listings, none showed a node not alive; {retried} writes retried"),
        acknowledged,
        0,
        converge,
    );
}

#[test]
fn s6_two_hundred_daemonsets_reach_every_node_at_mtu_1500() {
    let _serial = serial();
    let Some(fleet) = fleet("6 (200 DaemonSets)") else {
        return;
    };
    let dir = fleet.dir.clone();
    // Every node learns all 200; one node runs them all, so its 200 status keys must cross
    // the 1500-byte links to everyone (200 x 5 sleeps would only load this 2-core machine).
    let docs: Vec<String> = (0..200)
        .map(|k| manifest(&format!("many-{k:03}"), "v1", 0, Some("node-4")))
        .collect();
    let file = dir.join("many.yaml");
    std::fs::write(&file, docs.join("---\n")).unwrap();
    let t0 = Instant::now();
    apply_ok(fleet.node(1), &file);
    for node in &fleet.cluster.nodes {
        wait_until(
            &format!("{} to know 200 DaemonSets", node.name),
            Duration::from_secs(60),
            || {
                let n = stored(node)?.len();
                if n == 200 {
                    Ok(())
                } else {
                    Err(format!("{n}"))
                }
            },
        );
    }
    let known = t0.elapsed();
    wait_until("node-4 to run 200 instances", Duration::from_secs(120), || {
        let n = running(fleet.node(4)).len();
        if n == 200 {
            Ok(())
        } else {
            Err(format!("{n}"))
        }
    });
    for node in &fleet.cluster.nodes {
        wait_until(
            &format!("{} to see 200 Running statuses of node-4", node.name),
            Duration::from_secs(60),
            || {
                let pods = json(node, &["get", "pods", "-o", "json"])?;
                let n = pods
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|p| p["node"] == "node-4" && p["state"] == "Running")
                    .count();
                if n == 200 {
                    Ok(())
                } else {
                    Err(format!("{n}"))
                }
            },
        );
    }
    fleet.summary(
        "scenario 6 (200 DaemonSets at MTU 1500)",
        &format!("none; every node knew all 200 after {:.1}s, every node saw node-4's 200 Running statuses after {:.1}s", known.as_secs_f64(), t0.elapsed().as_secs_f64()),
        1,
        0,
        Duration::ZERO,
    );
}
