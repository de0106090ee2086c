//! Helpers for rollout tests: apply and wait, find the leader, and a sampler that feeds the budget checker from the leader's view of every node.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use everynode::agent::status::PodStatus;
use everynode::rollout::invariant::BudgetChecker;
use serde_json::Value;

use crate::support::{everynode, wait_until, Cluster, Node};

pub fn run_ok(node: &Node, args: &[&str]) -> String {
    let out = node.cli(args);
    assert!(
        out.status.success(),
        "everynode {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn apply(node: &Node, file: &Path) {
    wait_until("apply accepted", Duration::from_secs(60), || {
        let out = node.cli(&["apply", "-f", file.to_str().unwrap()]);
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    });
}

pub fn pods(node: &Node, ds: &str) -> Result<Vec<Value>, String> {
    let out = node.cli(&["get", "pods", "-o", "json"]);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let all: Vec<Value> = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    Ok(all.into_iter().filter(|p| p["daemonset"] == ds).collect())
}

/// Waits until every alive node runs revision number `revision` of `ds`, Running and ready
/// for long enough to count as available (`minReadySeconds` of up to 3).
pub fn wait_revision(node: &Node, ds: &str, revision: u64, nodes: usize) -> Vec<Value> {
    wait_until(
        &format!("{ds} revision {revision} Running on {nodes} nodes"),
        Duration::from_secs(90),
        || {
            let pods = pods(node, ds)?;
            let ok = pods
                .iter()
                .filter(|p| {
                    p["node_state"] == "alive"
                        && p["revision"] == revision
                        && p["state"] == "Running"
                        && p["ready_since"].as_u64().is_some_and(|t| t + 3 <= now())
                })
                .count();
            if ok == nodes {
                Ok(pods)
            } else {
                Err(format!("{ok} of {nodes}: {pods:?}"))
            }
        },
    )
}

pub fn rollout(node: &Node, ds: &str) -> Value {
    let out = node.cli(&["rollout", "status", "ds", ds, "--timeout", "0", "-o", "json"]);
    serde_json::from_slice::<Value>(&out.stdout).unwrap_or(Value::Null)["rollout"].clone()
}

pub fn leader_index(cluster: &Cluster) -> usize {
    wait_until("a leader", Duration::from_secs(30), || {
        for n in cluster.nodes.iter().filter(|n| n.is_running()) {
            let out = n.cli(&["cluster", "-o", "json"]);
            if let Ok(v) = serde_json::from_slice::<Value>(&out.stdout) {
                if let Some(leader) = v["leader"].as_str() {
                    if let Some(i) = cluster
                        .nodes
                        .iter()
                        .position(|n| n.name == leader && n.is_running())
                    {
                        return Ok(i);
                    }
                }
            }
        }
        Err("no leader known".to_string())
    })
}

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// Samples `ds` statuses from the leader's view until stopped, feeding the budget checker.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    checker: Arc<Mutex<BudgetChecker>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    /// `token`: the cluster's admin token (every node accepts the same one).
    pub fn start(
        servers: Arc<Mutex<String>>,
        token: String,
        ds: &'static str,
        checker: BudgetChecker,
    ) -> Sampler {
        Sampler::start_with_extra(servers, token, ds, checker, || 0)
    }

    /// Also samples `extra()`: instances beyond one per node, as the runtime shows them.
    pub fn start_with_extra(
        servers: Arc<Mutex<String>>,
        token: String,
        ds: &'static str,
        checker: BudgetChecker,
        extra: impl Fn() -> usize + Send + 'static,
    ) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let checker = Arc::new(Mutex::new(checker));
        let (s, c) = (stop.clone(), checker.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let server = servers.lock().unwrap().clone();
                let out = everynode()
                    .args(["--server", &server, "get", "pods", "-o", "json"])
                    .env("EVERYNODE_TOKEN", &token)
                    .output()
                    .unwrap();
                if let Ok(all) = serde_json::from_slice::<Vec<Value>>(&out.stdout) {
                    let statuses: Vec<(String, PodStatus)> = all
                        .iter()
                        .filter(|p| p["daemonset"] == ds && p["node_state"] == "alive")
                        .map(|p| {
                            (
                                p["node"].as_str().unwrap_or_default().to_string(),
                                PodStatus {
                                    revision: p["revision_hash"].as_str().unwrap_or_default().into(),
                                    state: p["state"].as_str().unwrap_or_default().into(),
                                    ready: p["ready"] == true,
                                    ready_since: p["ready_since"].as_u64(),
                                    ..PodStatus::default()
                                },
                            )
                        })
                        .collect();
                    c.lock().unwrap().sample(
                        statuses.iter().map(|(n, s)| (n.as_str(), Some(s))),
                        extra(),
                        now(),
                    );
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Sampler {
            stop,
            checker,
            thread: Some(thread),
        }
    }

    pub fn finish(mut self) -> BudgetChecker {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        let c = self.checker.lock().unwrap().clone();
        c
    }
}
