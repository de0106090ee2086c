//! Faults across real network boundaries: five agents in network namespaces (MTU 1500) through partitions, packet loss and delay, lost and frozen nodes, leader kills and restarts, checking that nothing acknowledged is lost.
//!
//! The scenarios share fixed namespace names and addresses, so they run one at a time (each holds
//! the whole machine, `support::whole_machine`), each on a fresh network and cluster. Each prints
//! one `SUMMARY` line. Delay comes from the harness's NFQUEUE delayer (the kernel here has no
//! netem).

use crate::support;
use crate::support::netns;
use crate::support::rollout as rollout_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use everynode::rollout::invariant::BudgetChecker;
use netns::Net;
use rollout_support::{leader_index, rollout, wait_revision, Sampler};
use serde_json::Value;
use support::manifest::Manifest;
use support::{everynode, wait_until, Cluster, Node};

const HOSTS: usize = 5;
const GOSSIP_PORT: u16 = 9494;
const API_PORT: u16 = 9495;

/// The network and the agents on it. The agents go first (field order): they must be killed
/// before their namespaces disappear under them.
struct Fleet {
    cluster: Cluster,
    net: Net,
    dir: PathBuf,
    started: Instant,
    /// Whether a host's data dir was wiped in this scenario.
    wiped: bool,
    /// Voters the cluster forms with (`--voters`).
    voters: usize,
}

/// Starts five agents, one per namespace, all seeded with the first two hosts and all voters
/// (so a 2 | 3 split leaves the two with 2 of 5 voters), and waits until they form one cluster.
fn fleet(scenario: &str) -> Option<Fleet> {
    fleet_with(scenario, &[])
}

/// [`fleet`] with `extra` flags for every agent.
fn fleet_with(scenario: &str, extra: &[&str]) -> Option<Fleet> {
    fleet_of(scenario, HOSTS, extra)
}

/// [`fleet_with`] with `voters` voters; the other hosts stay outside Raft.
fn fleet_of(scenario: &str, voters: usize, extra: &[&str]) -> Option<Fleet> {
    if !netns::require_capabilities(scenario) {
        return None;
    }
    let started = Instant::now();
    let net = Net::create(HOSTS);
    let root = tempfile::Builder::new().prefix("evn-faults-").tempdir().unwrap();
    let seeds = format!("{}:{GOSSIP_PORT},{}:{GOSSIP_PORT}", Net::addr(0), Net::addr(1));
    let mut nodes = Vec::new();
    for i in 0..HOSTS {
        let voter_count = voters.to_string();
        let args = [
            "--gossip-interval-ms",
            "100",
            "--seed",
            &seeds,
            "--voters",
            &voter_count,
        ];
        let mut node = Node::new(
            root.path(),
            &format!("node-{i}"),
            args.iter().chain(extra).map(|s| s.to_string()).collect(),
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
        wiped: false,
        voters,
    };
    fleet.wait_formed(Duration::from_secs(60));
    Some(fleet)
}

impl Fleet {
    fn node(&self, i: usize) -> &Node {
        &self.cluster.nodes[i]
    }

    /// Every running node sees the same leader and all of the fleet's voters.
    fn wait_formed(&self, timeout: Duration) -> String {
        wait_until(
            &format!("one cluster with {} voters", self.voters),
            timeout,
            || {
                let mut leaders = BTreeSet::new();
                for node in self.cluster.nodes.iter().filter(|n| n.is_running()) {
                    let view = json(node, &["cluster", "-o", "json"])?;
                    let voters = view["voters"].as_array().map_or(0, Vec::len);
                    let leader = view["leader"].as_str().unwrap_or_default().to_string();
                    if voters != self.voters || leader.is_empty() {
                        return Err(format!("{}: {view}", node.name));
                    }
                    leaders.insert(leader);
                }
                match leaders.len() {
                    1 => Ok(leaders.into_iter().next().unwrap()),
                    _ => Err(format!("leaders {leaders:?}")),
                }
            },
        )
    }

    fn leader(&self) -> usize {
        leader_index(&self.cluster)
    }

    /// The host is re-imaged: its agent and instances die, its data dir is gone, and the agent
    /// starts again under the same name (so as a new Raft member).
    fn wipe(&mut self, i: usize) {
        self.cluster.nodes[i].kill();
        kill_instances(&self.cluster.nodes[i]);
        let dir = self.cluster.nodes[i].data_dir.clone();
        std::fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("wiping {}: {e}", dir.display()));
        self.cluster.nodes[i].start();
    }

    fn summary(&self, scenario: &str, faults: &str, acknowledged: usize, lost: usize, converge: Duration) {
        // Straight to the process's stdout: the test harness captures `println!` of passing
        // tests, and these lines are the suite's report in CI.
        use std::io::Write;
        let line = format!(
            "SUMMARY {scenario}: faults: {faults}; operations acknowledged: {acknowledged}; operations lost: {lost}; converged {:.1}s after healing; scenario took {:.0}s\n",
            converge.as_secs_f64(),
            self.started.elapsed().as_secs_f64()
        );
        let _ = std::io::stdout().lock().write_all(line.as_bytes());
    }
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
    let mut m = Manifest::new(name)
        .change_cause(&format!("deploy {version}"))
        .min_ready(min_ready)
        .history_limit(100)
        .max_unavailable("1")
        .env("VERSION", version);
    if let Some(node) = selector {
        m = m.node_selector("kubernetes.io/hostname", node);
    }
    m.yaml()
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

/// Kills every instance running under `node` (their whole process groups) behind its agent's
/// back, as an operator's `kill` or an OOM kill would; returns how many.
fn kill_instances(node: &Node) -> usize {
    let dir = node.data_dir.join("process").join("instances");
    let mut killed = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".exit.json") || !name.ends_with(".json") {
            continue;
        }
        let pid = std::fs::read(entry.path())
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .and_then(|v| v["pid"].as_i64())
            .unwrap_or(0) as i32;
        // SAFETY: the pid is an instance's, which leads its own process group (setsid).
        if pid > 1 && unsafe { libc::kill(-pid, libc::SIGKILL) } == 0 {
            killed += 1;
        }
    }
    killed
}

/// Applies `file` on `node` until acknowledged, failing once writes have stopped committing for
/// two minutes since `t0` (`during` says under what). Returns how long the acknowledged apply
/// took and how many were retried before it.
fn apply_until_acknowledged(node: &Node, file: &Path, t0: Instant, during: &str) -> (Duration, usize) {
    let mut retried = 0;
    loop {
        let started = Instant::now();
        match apply(node, file) {
            (Outcome::Ok, _) => return (started.elapsed(), retried),
            (_, err) => {
                retried += 1;
                assert!(
                    t0.elapsed() < Duration::from_secs(120),
                    "writes stopped committing {during}: {err}"
                );
            }
        }
    }
}

/// Raft terms and leaderless moments as the voters report them, sampled during a scenario: how
/// much leadership churns under a fault.
#[derive(Default)]
struct RaftWatch {
    terms: BTreeSet<u64>,
    samples: usize,
    leaderless: usize,
}

impl RaftWatch {
    fn sample(&mut self, fleet: &Fleet) {
        for node in &fleet.cluster.nodes {
            let Ok(v) = json(node, &["cluster", "-o", "json"]) else {
                continue;
            };
            // Only nodes inside the Raft group know a term.
            let Some(term) = v["term"].as_u64() else { continue };
            self.samples += 1;
            self.terms.insert(term);
            if v["leader"].is_null() {
                self.leaderless += 1;
            }
        }
    }

    fn report(&self) -> String {
        let (first, last) = (
            self.terms.first().copied().unwrap_or(0),
            self.terms.last().copied().unwrap_or(0),
        );
        format!(
            "Raft term {first} to {last} ({} elections); a voter without a leader in {} of {} samples",
            last - first,
            self.leaderless,
            self.samples
        )
    }
}

/// Lists the members every node sees and notes in `seen` each one not alive; returns how many
/// listings answered.
fn record_not_alive(fleet: &Fleet, t0: Instant, seen: &mut Vec<String>) -> usize {
    let mut polls = 0;
    for node in &fleet.cluster.nodes {
        let Ok(members) = json(node, &["members", "-o", "json"]) else {
            continue;
        };
        polls += 1;
        for m in members.as_array().into_iter().flatten() {
            if m["state"] != "alive" {
                seen.push(format!(
                    "{} saw {} {} after {:.0}s",
                    node.name,
                    m["name"],
                    m["state"],
                    t0.elapsed().as_secs_f64()
                ));
            }
        }
    }
    polls
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
    let _machine = crate::support::whole_machine();
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

    // A user sees the cut in `members` first; the refusal then names the missing majority.
    for &i in &minority {
        wait_until(
            &format!("{} to see 3 nodes gone", fleet.node(i).name),
            Duration::from_secs(30),
            || {
                let members = json(fleet.node(i), &["members", "-o", "json"])?;
                let alive = members
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|m| m["state"] == "alive")
                    .count();
                if alive == 2 {
                    Ok(())
                } else {
                    Err(format!("{alive} alive"))
                }
            },
        );
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
fn s12_a_leader_cut_off_longer_than_the_dead_voter_grace_rejoins_after_healing() {
    let _machine = crate::support::whole_machine();
    // Three voters and two others, a grace far shorter than the cut: the cut-off leader sees
    // both other voters dead past their grace while a live node stands beside it.
    let Some(mut fleet) = fleet_of(
        "12 (leader cut off past the dead-voter grace)",
        3,
        &["--dead-voter-grace", "2"],
    ) else {
        return;
    };
    let dir = fleet.dir.clone();
    apply_ok(fleet.node(0), &write_manifest(&dir, "keep", "v1", 0));
    let leader = fleet.leader();
    let view = json(fleet.node(leader), &["cluster", "-o", "json"]).unwrap();
    let voters: Vec<String> = view["voters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let companion = (0..HOSTS)
        .find(|i| !voters.contains(&fleet.node(*i).name))
        .expect("a node that does not vote");
    let minority = [leader, companion];
    let majority: Vec<usize> = (0..HOSTS).filter(|i| !minority.contains(i)).collect();
    fleet.net.partition(&[&minority, &majority]);
    let t0 = Instant::now();
    apply_ok(fleet.node(majority[0]), &write_manifest(&dir, "during", "v1", 0));
    // Long enough for gossip to call the majority dead and for the grace to pass, twice over.
    let cut = Duration::from_secs(10);
    std::thread::sleep(cut.saturating_sub(t0.elapsed()));
    fleet.net.heal();
    let healed = Instant::now();

    // Every node names one live leader, the old one included, and it takes writes.
    let rejoined = wait_until(
        "one leader everywhere after healing",
        Duration::from_secs(60),
        || {
            let mut leaders = BTreeSet::new();
            for node in &fleet.cluster.nodes {
                let v = json(node, &["cluster", "-o", "json"])?;
                let leader = v["leader"]
                    .as_str()
                    .ok_or(format!("{}: no leader: {v}", node.name))?;
                leaders.insert(leader.to_string());
                let members = json(node, &["members", "-o", "json"])?;
                let listed: Vec<&str> = members
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|m| m["role"] == "leader" && m["state"] == "alive")
                    .filter_map(|m| m["name"].as_str())
                    .collect();
                if listed.len() != 1 {
                    return Err(format!("{} lists leaders {listed:?}", node.name));
                }
            }
            (leaders.len() == 1)
                .then(|| healed.elapsed())
                .ok_or(format!("leaders named: {leaders:?}"))
        },
    );
    apply_ok(fleet.node(leader), &write_manifest(&dir, "after", "v1", 0));
    let want = BTreeMap::from([
        ("keep".to_string(), "v1".to_string()),
        ("during".to_string(), "v1".to_string()),
        ("after".to_string(), "v1".to_string()),
    ]);
    let converge = wait_converged(&fleet, &want, Duration::from_secs(60));
    fleet.summary(
        "scenario 12 (leader cut off past the dead-voter grace)",
        &format!(
            "leader {} and {} cut off for {:.0}s with a 2 s dead-voter grace; one leader everywhere {:.1}s after healing",
            fleet.node(leader).name,
            fleet.node(companion).name,
            cut.as_secs_f64(),
            rejoined.as_secs_f64()
        ),
        3,
        0,
        converge,
    );
}

#[test]
fn s2_a_leader_killed_mid_rollout_finishes_within_budget() {
    let _machine = crate::support::whole_machine();
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
    let _machine = crate::support::whole_machine();
    let Some(mut fleet) = fleet("3 (node lost mid-rollout)") else {
        return;
    };
    let dir = fleet.dir.clone();
    apply_ok(fleet.node(0), &write_manifest(&dir, "lost", "v1", 1));
    wait_revision(fleet.node(0), "lost", 1, HOSTS);
    let leader = fleet.leader();
    apply_ok(fleet.node(leader), &write_manifest(&dir, "lost", "v2", 1));
    // Lose a node the rollout has not reached yet, so that it has to catch up afterwards.
    // The leader's grants say who the rollout has reached (a node's own status lags behind its
    // grant); the last in name order is reached last.
    let victim = wait_until("a node not granted revision 2", Duration::from_secs(30), || {
        let r = rollout(fleet.node(leader), "lost");
        if r["revision"] != 2 || r["wave"].as_u64() < Some(1) {
            return Err(format!("{r}"));
        }
        r["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|n| n["granted"] == 1 && n["running"] == 1)
            .filter_map(|n| {
                fleet
                    .cluster
                    .nodes
                    .iter()
                    .position(|node| n["node"] == node.name.as_str())
            })
            .filter(|i| *i != leader)
            .max()
            .ok_or_else(|| format!("{r}"))
    });
    let others: Vec<usize> = (0..HOSTS).filter(|i| *i != victim).collect();
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
    // A write the lost node also misses.
    apply_ok(fleet.node(leader), &write_manifest(&dir, "missed", "v1", 0));
    let on_victim = rollout_support::pods(fleet.node(victim), "lost").unwrap();
    let mine = on_victim
        .iter()
        .find(|p| p["node"] == fleet.node(victim).name.as_str());
    assert_eq!(
        mine.map(|p| p["revision"].clone()),
        Some(1.into()),
        "the lost node still runs revision 1: {on_victim:?}"
    );
    assert!(!stored(fleet.node(victim)).unwrap().contains_key("missed"));
    fleet.net.heal();
    let want = BTreeMap::from([
        ("lost".to_string(), "v2".to_string()),
        ("missed".to_string(), "v1".to_string()),
    ]);
    let healed = Instant::now();
    wait_converged(&fleet, &want, Duration::from_secs(60));
    // Caught up: the returning node runs revision 2, ready (minReadySeconds counted).
    wait_revision(fleet.node(leader), "lost", 2, HOSTS);
    let converge = healed.elapsed();
    fleet.summary(
        "scenario 3 (node lost mid-rollout)",
        &format!(
            "{} (still on revision 1) cut off from all others after wave 1, healed after the rollout completed without it and one more write",
            fleet.node(victim).name
        ),
        3,
        0,
        converge,
    );
}

#[test]
fn s11_a_minority_returning_behind_after_a_rollout_is_updated_within_the_budget() {
    let _machine = crate::support::whole_machine();
    let Some(mut fleet) = fleet("11 (minority returns behind)") else {
        return;
    };
    let dir = fleet.dir.clone();
    apply_ok(fleet.node(0), &write_manifest(&dir, "heal", "v1", 1));
    wait_revision(fleet.node(0), "heal", 1, HOSTS);
    // As in scenario 1 the leader goes to the minority, so the rollout runs under a new leader
    // that must hold back nodes it only knows as dead.
    let old_leader = fleet.leader();
    let minority = [old_leader, (old_leader + 1) % HOSTS];
    let majority: Vec<usize> = (0..HOSTS).filter(|i| !minority.contains(i)).collect();
    fleet.net.partition(&[&minority, &majority]);
    let observer = fleet.node(majority[0]);
    wait_until(
        "the majority to see the two dead",
        Duration::from_secs(30),
        || {
            let members = json(observer, &["members", "-o", "json"])?;
            let dead = members
                .as_array()
                .into_iter()
                .flatten()
                .filter(|m| m["state"] == "dead")
                .count();
            (dead == 2).then_some(()).ok_or(format!("{dead} dead"))
        },
    );
    apply_ok(observer, &write_manifest(&dir, "heal", "v2", 1));
    let status = cli_within(
        observer,
        &["rollout", "status", "ds", "heal", "--timeout", "120s"],
        Duration::from_secs(130),
    )
    .expect("rollout status answers");
    let said = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(
        status.status.success(),
        "complete once the live nodes are updated: {said}{}",
        String::from_utf8_lossy(&status.stderr)
    );
    eprintln!("rollout status on the majority: {}", said.trim_end());
    let mut away: Vec<&str> = minority.iter().map(|&i| fleet.node(i).name.as_str()).collect();
    away.sort();
    for name in &away {
        assert!(
            said.contains(&format!("{name} (revision 1)")),
            "names the held nodes: {said}"
        );
    }
    let held = rollout(observer, "heal")["held"].clone();
    let names: Vec<&str> = held
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|h| h["node"].as_str())
        .collect();
    assert_eq!(names, away, "{held}");

    let leader = fleet.leader();
    let sampler = Sampler::start(
        Arc::new(Mutex::new(fleet.node(leader).server())),
        fleet.node(0).admin_token(),
        "heal",
        BudgetChecker::new(1, 0, 1),
    );
    let healed = Instant::now();
    fleet.net.heal();
    wait_revision(fleet.node(leader), "heal", 2, HOSTS);
    let converge = healed.elapsed();
    let checker = sampler.finish();
    checker.assert_held();
    assert!(
        rollout(fleet.node(leader), "heal")["held"].is_null(),
        "nothing held once they are updated"
    );
    fleet.summary(
        "scenario 11 (minority returns behind)",
        &format!(
            "partition 2 | 3 (leader in the minority), revision 2 rolled out on the majority, healed; budget held over {} samples (at most {} unavailable of 1)",
            checker.samples, checker.worst_unavailable
        ),
        2,
        0,
        converge,
    );
}

#[test]
fn s4_every_node_restarted_at_once_adopts_every_instance() {
    let _machine = crate::support::whole_machine();
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
    wait_converged(&fleet, &want, Duration::from_secs(60));
    let converge = t0.elapsed();
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
    let _machine = crate::support::whole_machine();
    let Some(mut fleet) = fleet("5 (20% packet loss)") else {
        return;
    };
    let dir = fleet.dir.clone();
    fleet.net.set_loss(20);
    let t0 = Instant::now();
    let (mut acknowledged, mut retried, mut polls) = (0, 0, 0);
    let mut want = BTreeMap::new();
    let mut dead_seen = Vec::new();
    let mut stale_reads = Vec::new();
    let mut raft = RaftWatch::default();
    let mut k = 0;
    while t0.elapsed() < Duration::from_secs(60) {
        let version = format!("v{k}");
        let name = format!("loss{}", k % 4);
        let file = write_manifest(&dir, &name, &version, 0);
        let (_, retries) = apply_until_acknowledged(fleet.node(k % HOSTS), &file, t0, "under loss");
        retried += retries;
        acknowledged += 1;
        // Read your writes: the node that acknowledged the apply serves it at once, so
        // `apply && rollout status` there never reports the previous revision.
        let served = json(fleet.node(k % HOSTS), &["get", "ds", &name, "-o", "json"]);
        let env = served
            .as_ref()
            .map(|d| d["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"].clone());
        if env.as_ref().ok().and_then(|v| v.as_str()) != Some(version.as_str()) {
            stale_reads.push(format!(
                "{} served {name} as {env:?} right after acknowledging {version}",
                fleet.node(k % HOSTS).name
            ));
        }
        want.insert(name, version);
        k += 1;
        polls += record_not_alive(&fleet, t0, &mut dead_seen);
        raft.sample(&fleet);
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        dead_seen.is_empty(),
        "nodes wrongly declared dead under 20% loss: {dead_seen:?}"
    );
    assert!(
        stale_reads.is_empty(),
        "reads missed acknowledged writes: {stale_reads:?}"
    );
    fleet.net.heal();
    let converge = wait_converged(&fleet, &want, Duration::from_secs(60));
    fleet.summary(
        "scenario 5 (20% packet loss, 60s)",
        &format!("20% of packets between hosts dropped for 60s; {polls} member listings, none showed a node not alive; {retried} writes retried; {}", raft.report()),
        acknowledged,
        0,
        converge,
    );
}

#[test]
fn s6_two_hundred_daemonsets_reach_every_node_at_mtu_1500() {
    let _machine = crate::support::whole_machine();
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

/// Every link delayed by `one_way` (plus up to `jitter`) for 45 s while writes go to every
/// node in turn and a rollout runs: nobody may be declared dead, every write must commit, the
/// rollout must finish within its budget. Returns the faults text and the writes acknowledged.
fn delayed_links(fleet: &mut Fleet, one_way: Duration, jitter: Duration) -> (String, usize, Duration) {
    let dir = fleet.dir.clone();
    apply_ok(fleet.node(0), &write_manifest(&dir, "roll", "v1", 1));
    wait_revision(fleet.node(0), "roll", 1, HOSTS);
    let mut want = BTreeMap::from([("roll".to_string(), "v1".to_string())]);
    fleet.net.set_delay(one_way, jitter);
    let t0 = Instant::now();
    let (mut acknowledged, mut retried, mut polls) = (1, 0, 0);
    let mut latencies = Vec::new();
    let mut dead_seen = Vec::new();
    let mut k = 0;
    let sampler = Sampler::start(
        Arc::new(Mutex::new(fleet.node(fleet.leader()).server())),
        fleet.node(0).admin_token(),
        "roll",
        BudgetChecker::new(1, 0, 1),
    );
    while t0.elapsed() < Duration::from_secs(45) {
        if k == 3 {
            apply_ok(fleet.node(2), &write_manifest(&dir, "roll", "v2", 1));
            acknowledged += 1;
            want.insert("roll".into(), "v2".into());
        }
        let version = format!("v{k}");
        let name = format!("slow{}", k % 3);
        let file = write_manifest(&dir, &name, &version, 0);
        let (took, retries) = apply_until_acknowledged(
            fleet.node(k % HOSTS),
            &file,
            t0,
            &format!("with {one_way:?} delay"),
        );
        latencies.push(took);
        retried += retries;
        acknowledged += 1;
        want.insert(name, version);
        k += 1;
        polls += record_not_alive(fleet, t0, &mut dead_seen);
        std::thread::sleep(Duration::from_millis(300));
    }
    let status = cli_within(
        fleet.node(3),
        &["rollout", "status", "ds", "roll", "--timeout", "60s"],
        Duration::from_secs(70),
    )
    .expect("rollout status answers");
    let checker = sampler.finish();
    assert!(
        status.status.success(),
        "rollout under delay: {}{}",
        String::from_utf8_lossy(&status.stdout),
        String::from_utf8_lossy(&status.stderr)
    );
    checker.assert_held();
    assert!(
        dead_seen.is_empty(),
        "nodes wrongly declared dead under delay: {dead_seen:?}"
    );
    fleet.net.heal();
    let converge = wait_converged(fleet, &want, Duration::from_secs(60));
    latencies.sort();
    let faults = format!(
        "every link delayed {}..{} ms one way for 45s; {polls} member listings, none showed a node not alive; {retried} writes retried; acknowledged apply took p50 {:.2}s, max {:.2}s; rollout v1 -> v2 within budget over {} samples",
        one_way.as_millis(),
        (one_way + jitter).as_millis(),
        latencies[latencies.len() / 2].as_secs_f64(),
        latencies.last().copied().unwrap_or_default().as_secs_f64(),
        checker.samples
    );
    (faults, acknowledged, converge)
}

#[test]
fn s9_a_nearby_round_trip_commits_with_default_timings() {
    let _machine = crate::support::whole_machine();
    let Some(mut fleet) = fleet("9 (15 ms delay)") else {
        return;
    };
    let (faults, acknowledged, converge) =
        delayed_links(&mut fleet, Duration::from_millis(15), Duration::from_millis(5));
    fleet.summary(
        "scenario 9 (15 ms delay, default timings)",
        &faults,
        acknowledged,
        0,
        converge,
    );
}

/// Round trips of 120 ms and more once left the cluster without a leader for good: openraft
/// gives an AppendEntries one heartbeat (100 ms) and a vote 2.5, so no leader ever heard a
/// majority. `--raft-heartbeat-ms` now scales every Raft timing.
#[test]
fn s10_a_cross_region_round_trip_commits_once_the_raft_heartbeat_covers_it() {
    let _machine = crate::support::whole_machine();
    let Some(mut fleet) = fleet_with("10 (60 ms delay)", &["--raft-heartbeat-ms", "400"]) else {
        return;
    };
    let (faults, acknowledged, converge) =
        delayed_links(&mut fleet, Duration::from_millis(60), Duration::from_millis(10));
    fleet.summary(
        "scenario 10 (60 ms delay, --raft-heartbeat-ms 400)",
        &faults,
        acknowledged,
        0,
        converge,
    );
}

/// Whether a refusal says "N of M voters reachable ..., a majority (K) is needed" with N >= K,
/// as writes refused during an election once did.
fn claims_a_missing_majority_it_has(message: &str) -> bool {
    let number_before = |text: &str, marker: &str| -> Option<usize> {
        let head = &text[..text.find(marker)?];
        head.rsplit(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
    };
    let Some(rest) = message.split("no leader can commit writes: ").nth(1) else {
        return false;
    };
    match (number_before(rest, " of "), number_before(rest, ") is needed")) {
        (Some(reachable), Some(majority)) => reachable >= majority,
        _ => false,
    }
}

#[test]
fn a_refusal_naming_a_reachable_majority_is_recognised_as_contradictory() {
    assert!(claims_a_missing_majority_it_has(
        "error: no leader can commit writes: 5 of 5 voters reachable from node node-0, a majority (3) is needed; nothing was changed"
    ));
    assert!(!claims_a_missing_majority_it_has(
        "error: no leader can commit writes: 2 of 5 voters reachable from node node-0, a majority (3) is needed; nothing was changed"
    ));
}

/// A small deterministic generator, so a failing history can be replayed with `FAULT_SEED`.
struct Rng(u64);

impl Rng {
    fn from_env() -> Rng {
        let seed = std::env::var("FAULT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("scenario 7 seed: FAULT_SEED={seed}");
        Rng(seed | 1)
    }

    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// One write of the random workload and what its caller learnt.
#[derive(Debug)]
struct Op {
    name: String,
    /// The version the write stores, `None` for a delete.
    value: Option<String>,
    outcome: Outcome,
    node: usize,
    detail: String,
}

/// Where the workload sends its writes; plain data, since the fault thread owns the nodes.
struct Target {
    server: String,
    token: String,
}

fn write_at(target: &Target, args: &[&str]) -> (Outcome, String) {
    let mut cmd = everynode();
    cmd.arg("--server")
        .arg(&target.server)
        .env("EVERYNODE_TOKEN", &target.token)
        .args(args);
    let child = cmd
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
    let Ok(out) = rx.recv_timeout(Duration::from_secs(20)) else {
        // SAFETY: killing the CLI process started above.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let _ = rx.recv();
        return (Outcome::Unknown, "no answer within 20s".into());
    };
    let out = out.unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() {
        (Outcome::Ok, String::from_utf8_lossy(&out.stdout).into_owned())
    } else if err.contains("nothing was changed") {
        (Outcome::Failed, err)
    } else {
        (Outcome::Unknown, err)
    }
}

/// Injects one random fault, holds it for a few seconds, and heals it. Returns what it did.
fn random_fault(fleet: &mut Fleet, rng: &mut Rng) -> String {
    let hold = Duration::from_millis(3000 + rng.below(4000) as u64);
    let mut hosts: Vec<usize> = (0..HOSTS).collect();
    for i in (1..HOSTS).rev() {
        hosts.swap(i, rng.below(i + 1));
    }
    let what = match rng.below(9) {
        0 => {
            fleet.net.partition(&[&hosts[..2], &hosts[2..]]);
            std::thread::sleep(hold);
            format!("partition {:?} | {:?}", &hosts[..2], &hosts[2..])
        }
        1 => {
            fleet.net.partition(&[&hosts[..1], &hosts[1..]]);
            std::thread::sleep(hold);
            format!("isolate {}", hosts[0])
        }
        2 => {
            fleet.net.set_loss(20);
            std::thread::sleep(hold);
            "20% loss".to_string()
        }
        3 => {
            fleet.cluster.nodes[hosts[0]].signal(libc::SIGSTOP);
            std::thread::sleep(hold);
            fleet.cluster.nodes[hosts[0]].signal(libc::SIGCONT);
            format!("freeze {}", hosts[0])
        }
        4 => {
            // A majority stops answering without being declared dead at once: whatever the
            // two others propose cannot commit until it resumes.
            for &i in &hosts[..3] {
                fleet.cluster.nodes[i].signal(libc::SIGSTOP);
            }
            std::thread::sleep(hold);
            for &i in &hosts[..3] {
                fleet.cluster.nodes[i].signal(libc::SIGCONT);
            }
            format!("freeze {:?}", &hosts[..3])
        }
        5 => {
            // Beyond what the default Raft timings allow: leaders come and go meanwhile.
            let one_way = Duration::from_millis(20 + rng.below(120) as u64);
            fleet.net.set_delay(one_way, Duration::from_millis(10));
            std::thread::sleep(hold);
            format!("{} ms delay on every link", one_way.as_millis())
        }
        6 => {
            let killed = kill_instances(&fleet.cluster.nodes[hosts[0]]);
            std::thread::sleep(hold);
            format!("{killed} instances killed under {}", hosts[0])
        }
        // One wipe a run: a wiped voter's old seat counts until it is replaced (30 s), and
        // three lost seats of five would lose the cluster for good, as Raft must.
        7 if !fleet.wiped => {
            fleet.wiped = true;
            fleet.wipe(hosts[0]);
            std::thread::sleep(hold);
            format!("data dir of {} wiped", hosts[0])
        }
        _ => {
            fleet.cluster.nodes[hosts[0]].kill();
            std::thread::sleep(hold);
            fleet.cluster.nodes[hosts[0]].start();
            format!("kill and restart {}", hosts[0])
        }
    };
    fleet.net.heal();
    format!("{what} for {:.1}s", hold.as_secs_f64())
}

/// The values a DaemonSet may hold at the end, given its history of writes: that of the last
/// acknowledged one (absent before any), or of any later write whose outcome is unknown.
/// A refused write's value is never allowed: each write stores a value of its own.
fn allowed_values(ops: &[&Op]) -> Vec<Option<String>> {
    let last_ok = ops.iter().rposition(|o| o.outcome == Outcome::Ok);
    let mut allowed = vec![last_ok.and_then(|i| ops[i].value.clone())];
    let after = last_ok.map_or(0, |i| i + 1);
    allowed.extend(
        ops[after..]
            .iter()
            .filter(|o| o.outcome == Outcome::Unknown)
            .map(|o| o.value.clone()),
    );
    allowed
}

#[test]
fn s7_a_random_workload_under_random_faults_loses_no_acknowledged_write() {
    let _machine = crate::support::whole_machine();
    let Some(mut fleet) = fleet("7 (random workload under random faults)") else {
        return;
    };
    let dir = fleet.dir.clone();
    let mut rng = Rng::from_env();
    let mut fault_rng = Rng(rng.0.rotate_left(17) | 1);
    let token = fleet.node(0).admin_token();
    let targets: Vec<Target> = fleet
        .cluster
        .nodes
        .iter()
        .map(|n| Target {
            server: n.server(),
            token: token.clone(),
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    // Faults are injected from this thread and the workload runs on another: an agent gets
    // SIGKILL when the thread that started it ends (PR_SET_PDEATHSIG), so agents restarted
    // mid-run must be started by the thread that lives as long as the test.
    let (ops, faults) = std::thread::scope(|scope| {
        let workload = scope.spawn(move || {
            let mut ops: Vec<Op> = Vec::new();
            let mut seq = 0;
            while Instant::now() < deadline {
                seq += 1;
                let name = format!("w{}", rng.below(5));
                let node = rng.below(HOSTS);
                let (value, (outcome, detail)) = if rng.below(4) == 0 {
                    (None, write_at(&targets[node], &["delete", "ds", &name]))
                } else {
                    let version = format!("o{seq}");
                    let file = dir.join(format!("{name}-{version}.yaml"));
                    std::fs::write(&file, manifest(&name, &version, 0, None)).unwrap();
                    (
                        Some(version),
                        write_at(&targets[node], &["apply", "-f", file.to_str().unwrap()]),
                    )
                };
                ops.push(Op {
                    name,
                    value,
                    outcome,
                    node,
                    detail,
                });
            }
            ops
        });
        let mut faults = Vec::new();
        while Instant::now() < deadline {
            faults.push(random_fault(&mut fleet, &mut fault_rng));
            std::thread::sleep(Duration::from_millis(1000 + fault_rng.below(2000) as u64));
        }
        (workload.join().unwrap(), faults)
    });

    // Heal everything: the injector healed its last fault; every agent runs again.
    fleet.net.heal();
    let healed = Instant::now();
    fleet.wait_formed(Duration::from_secs(60));
    let end = wait_until(
        "every node to hold the same store",
        Duration::from_secs(60),
        || {
            let first = stored(fleet.node(0))?;
            for node in &fleet.cluster.nodes[1..] {
                let other = stored(node)?;
                if other != first {
                    return Err(format!("node-0 {first:?} vs {} {other:?}", node.name));
                }
            }
            Ok(first)
        },
    );
    let converge = wait_converged(&fleet, &end, Duration::from_secs(60)).max(healed.elapsed());

    let mut lost = Vec::new();
    for name in (0..5).map(|k| format!("w{k}")) {
        let history: Vec<&Op> = ops.iter().filter(|o| o.name == name).collect();
        let allowed = allowed_values(&history);
        let actual = end.get(&name).cloned();
        if !allowed.contains(&actual) {
            let history: Vec<String> = history
                .iter()
                .map(|o| {
                    format!(
                        "  {:?} on node-{}: {:?} {}",
                        o.value,
                        o.node,
                        o.outcome,
                        o.detail.trim()
                    )
                })
                .collect();
            lost.push(format!(
                "{name}: holds {actual:?}, allowed {allowed:?}, history:\n{}",
                history.join("\n")
            ));
        }
        if end.contains_key(&name) {
            let revisions = json(fleet.node(0), &["rollout", "history", "ds", &name, "-o", "json"]).unwrap();
            let causes: Vec<&str> = revisions
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r["change_cause"].as_str())
                .collect();
            // Every revision is a write that took effect: never one its caller was told failed.
            for cause in &causes {
                let version = cause.trim_start_matches("deploy ");
                if let Some(op) = ops.iter().find(|o| o.value.as_deref() == Some(version)) {
                    if op.outcome == Outcome::Failed {
                        lost.push(format!(
                            "{name}: revision {version} exists, but its write to node-{} was refused: {}",
                            op.node,
                            op.detail.trim()
                        ));
                    }
                }
            }
            let distinct: BTreeSet<&&str> = causes.iter().collect();
            assert_eq!(
                distinct.len(),
                causes.len(),
                "{name}: a write became two revisions: {causes:?}"
            );
        }
    }
    let count = |o: Outcome| ops.iter().filter(|op| op.outcome == o).count();
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for op in ops.iter().filter(|op| op.outcome != Outcome::Ok) {
        let reason: String = op
            .detail
            .lines()
            .next()
            .unwrap_or_default()
            .chars()
            .take(100)
            .collect();
        *reasons.entry(reason).or_default() += 1;
    }
    eprintln!("scenario 7: writes not acknowledged, by reason: {reasons:#?}");
    let contradictory: Vec<&String> = reasons
        .keys()
        .filter(|r| claims_a_missing_majority_it_has(r))
        .collect();
    assert!(
        contradictory.is_empty(),
        "refusals that contradict themselves: {contradictory:?}"
    );
    assert!(
        lost.is_empty(),
        "acknowledged writes lost or refused writes visible:\n{}",
        lost.join("\n")
    );
    assert!(
        count(Outcome::Ok) >= 5,
        "too few writes were acknowledged to mean anything: {} of {}",
        count(Outcome::Ok),
        ops.len()
    );
    fleet.summary(
        "scenario 7 (random workload under random faults, 60s)",
        &format!(
            "{} faults ({}); {} writes: {} refused with nothing changed, {} unknown",
            faults.len(),
            faults.join(", "),
            ops.len(),
            count(Outcome::Failed),
            count(Outcome::Unknown)
        ),
        count(Outcome::Ok),
        lost.len(),
        converge,
    );
}

#[test]
fn s8_a_write_refused_while_a_majority_is_frozen_never_takes_effect() {
    let _machine = crate::support::whole_machine();
    let Some(fleet) = fleet("8 (majority frozen under a write)") else {
        return;
    };
    let dir = fleet.dir.clone();
    let (mut acknowledged, mut refused, mut unknown) = (0, 0, 0);
    let mut converge = Duration::ZERO;
    for round in 0..3 {
        let leader = fleet.leader();
        let frozen: Vec<usize> = (1..=3).map(|k| (leader + k) % HOSTS).collect();
        for &i in &frozen {
            fleet.node(i).signal(libc::SIGSTOP);
        }
        // Right away the leader still believes in its followers and proposes; once gossip has
        // declared them dead it must refuse before proposing.
        let mut writes = Vec::new();
        let now = format!("frozen{round}-now");
        writes.push((
            now.clone(),
            apply(fleet.node(leader), &write_manifest(&dir, &now, "v1", 0)),
        ));
        std::thread::sleep(Duration::from_secs(3));
        let later = format!("frozen{round}-later");
        let (outcome, detail) = apply(fleet.node(leader), &write_manifest(&dir, &later, "v1", 0));
        assert!(
            outcome == Outcome::Failed && detail.contains("2 of 5 voters reachable"),
            "a leader that sees 2 of 5 voters refuses: {outcome:?} {detail}"
        );
        writes.push((later, (outcome, detail)));
        for &i in &frozen {
            fleet.node(i).signal(libc::SIGCONT);
        }
        let t0 = Instant::now();
        fleet.wait_formed(Duration::from_secs(60));
        let end = wait_until(
            "every node to hold the same store",
            Duration::from_secs(60),
            || {
                let first = stored(fleet.node(0))?;
                for node in &fleet.cluster.nodes[1..] {
                    if stored(node)? != first {
                        return Err(format!("{} differs from node-0", node.name));
                    }
                }
                Ok(first)
            },
        );
        converge = converge.max(t0.elapsed());
        for (name, (outcome, detail)) in writes {
            eprintln!(
                "{name}: {outcome:?} {}; stored afterwards: {}",
                detail.trim(),
                end.contains_key(&name)
            );
            match outcome {
                Outcome::Ok => {
                    acknowledged += 1;
                    assert!(end.contains_key(&name), "acknowledged and lost: {name}")
                }
                Outcome::Failed => {
                    refused += 1;
                    assert!(
                        !end.contains_key(&name),
                        "the write of {name} was refused with `{}`, yet it took effect once the majority resumed",
                        detail.trim()
                    );
                }
                Outcome::Unknown => unknown += 1,
            }
        }
    }
    fleet.summary(
        "scenario 8 (majority frozen under a write)",
        &format!(
            "3 rounds of SIGSTOP on 3 of 5 agents around two writes to the leader (at once, after 3s); {refused} refused, {unknown} unknown"
        ),
        acknowledged,
        0,
        converge,
    );
}
