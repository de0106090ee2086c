//! Convergence benchmark: time from an apply being committed until every node reports its instance Running, for in-process nodes on the fake runtime and for real agents on the process runtime.
//!
//! Run with `cargo bench --bench converge`. Environment knobs:
//! `BENCH_PART` (`fake`, `process` or `both`, default `both`), `BENCH_NODES` (in-process nodes,
//! default 100), `BENCH_PROCESS_NODES` (agent processes, default 10), `BENCH_APPLIES` (applies
//! per part, default 10), `BENCH_ROLLOUTS` (timed rolling updates on the in-process nodes,
//! default 3; 0 skips them), `BENCH_GOSSIP_MS` (default: the product's).
//!
//! The rollout part rolls a DaemonSet with `maxUnavailable: 10%` and `minReadySeconds: 1` over
//! the in-process nodes and compares the time from commit to a complete rollout with the ideal
//! `waves x (one-wave update + minReadySeconds)`, where the one-wave update is the p50 measured
//! above; target: within 10% plus 1 s of it. It also samples every node's status during the
//! rollout and reports the most nodes seen unavailable at once against the budget.
//!
//! Every apply changes the template (an env value), so every node replaces its instance with
//! one of the new revision. The clock starts when `POST /v1/apply` is acknowledged (committed)
//! and stops when node-0, which took the apply, lists every node's instance of that revision
//! Running and ready: what `everynode get pods` would show. For the in-process part it also
//! reports when the last instance of the revision was created, which splits the figure into
//! "the store reached every node and its agent acted" and "the statuses came back by gossip".

mod common;

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use everynode::agent::status::PodStatus;
use everynode::api::pods::PodView;
use everynode::config::{AgentFlags, NodeConfig, RuntimeChoice};
use everynode::rollout::invariant::BudgetChecker;
use everynode::runtime::fake::FakeRuntime;
use everynode::runtime::InstanceState;
use serde_json::{json, Value};

use common::{env_u64, percentile, verdict};

/// Fine enough for sub-second figures, cheap enough not to steal the nodes' CPU.
const POLL: Duration = Duration::from_millis(20);
/// Only bounds a broken run.
const DEADLINE: Duration = Duration::from_secs(90);
/// Lets the statuses of one apply settle before the next.
const SETTLE: Duration = Duration::from_secs(1);

const TARGET_FAKE_P99: Duration = Duration::from_millis(1_500);
const DS: &str = "bench";

/// A loopback port free for both UDP (gossip) and TCP (API), never handed out twice, so one
/// port serves each node. Taken below the kernel's ephemeral range: each node's sealed gossip
/// binds helper sockets on ephemeral ports, which must not land on a port chosen for a node
/// that has not started yet.
fn free_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let _ = NEXT.compare_exchange(
        0,
        20_000 + (std::process::id() % 5_000) as u16,
        std::sync::atomic::Ordering::SeqCst,
        std::sync::atomic::Ordering::SeqCst,
    );
    loop {
        let port = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        assert!(port < 32_000, "no free port left below the ephemeral range");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() && UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Gossip and API addresses of `n` nodes, one port each.
fn addresses(n: usize) -> Vec<(SocketAddr, SocketAddr)> {
    (0..n)
        .map(|_| {
            let a = SocketAddr::from(([127, 0, 0, 1], free_port()));
            (a, a)
        })
        .collect()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

/// Revision `seq` of the benchmark DaemonSet: only an env value changes.
fn daemonset(seq: usize) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": DS},
        "spec": {
            "selector": {"matchLabels": {"app": DS}},
            // One wave: this measures how fast a change reaches every node, not the budget
            // (the rollout part measures waves).
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "100%"}},
            "template": {
                "metadata": {"labels": {"app": DS}},
                "spec": {
                    "terminationGracePeriodSeconds": 2,
                    "containers": [{
                        "name": "main",
                        "image": "bench:1",
                        "command": ["sleep", "3600"],
                        "env": [{"name": "SEQ", "value": seq.to_string()}]
                    }]
                }
            }
        }
    })
}

async fn get_json(http: &reqwest::Client, url: &str) -> Option<Value> {
    http.get(url).send().await.ok()?.json().await.ok()
}

/// Waits until `api` lists `n` members alive and the Raft group has a leader and three voters.
async fn wait_formed(http: &reqwest::Client, api: SocketAddr, n: usize) -> Duration {
    let start = Instant::now();
    loop {
        let members = get_json(http, &format!("http://{api}/v1/members")).await;
        let alive = members
            .as_ref()
            .and_then(Value::as_array)
            .map_or(0, |m| m.iter().filter(|m| m["state"] == "alive").count());
        let cluster = get_json(http, &format!("http://{api}/v1/cluster")).await;
        let voters = cluster
            .as_ref()
            .and_then(|c| c["voters"].as_array().map(Vec::len))
            .unwrap_or(0);
        let leader = cluster.as_ref().is_some_and(|c| c["leader"].is_string());
        if alive == n && leader && voters == 3.min(n) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < DEADLINE,
            "the cluster did not form: {alive}/{n} alive, {voters} voters, leader {leader}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Applies `object` through node `api`; returns when the commit was acknowledged and the
/// DaemonSet's revision number after it.
async fn apply_one(http: &reqwest::Client, api: SocketAddr, object: Value) -> (Instant, u64) {
    let resp = http
        .post(format!("http://{api}/v1/apply"))
        .json(&json!({"objects": [object]}))
        .send()
        .await
        .expect("apply sent");
    let committed = Instant::now();
    assert!(
        resp.status().is_success(),
        "apply refused: {}",
        resp.text().await.unwrap_or_default()
    );
    let results: Value = resp.json().await.expect("apply answer");
    (
        committed,
        results[0]["revision"].as_u64().expect("a revision number"),
    )
}

/// One apply: returns (commit latency, commit to all Running, commit to all created if known).
async fn one_apply(
    http: &reqwest::Client,
    api: SocketAddr,
    n: usize,
    seq: usize,
    fake: Option<&FakeRuntime>,
) -> (Duration, Duration, Option<Duration>) {
    let sent = Instant::now();
    let (committed, revision) = apply_one(http, api, daemonset(seq)).await;
    let view = get_json(http, &format!("http://{api}/v1/daemonsets/{DS}"))
        .await
        .expect("the DaemonSet");
    let hash = view["revision_hash"].as_str().unwrap_or_default().to_string();

    let mut created = None;
    loop {
        if created.is_none() {
            if let Some(fake) = fake {
                let fresh = fake
                    .instances()
                    .iter()
                    .filter(|i| i.revision == hash && i.state == InstanceState::Running)
                    .count();
                if fresh >= n {
                    created = Some(committed.elapsed());
                }
            }
        }
        let pods: Vec<PodView> = match http.get(format!("http://{api}/v1/pods")).send().await {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        let running = pods
            .iter()
            .filter(|p| p.daemonset == DS && p.revision == Some(revision) && p.state == "Running" && p.ready)
            .count();
        if running >= n {
            return (committed - sent, committed.elapsed(), created);
        }
        assert!(
            committed.elapsed() < DEADLINE,
            "apply {seq}: only {running}/{n} Running after {DEADLINE:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

struct Series {
    commit: Vec<Duration>,
    running: Vec<Duration>,
    created: Vec<Duration>,
}

async fn applies(
    http: &reqwest::Client,
    api: SocketAddr,
    n: usize,
    count: usize,
    fake: Option<&FakeRuntime>,
) -> Series {
    let mut s = Series {
        commit: Vec::new(),
        running: Vec::new(),
        created: Vec::new(),
    };
    // Apply 0 creates the DaemonSet; it is not timed, since a first start is not an update.
    for seq in 0..=count {
        let (commit, running, created) = one_apply(http, api, n, seq, fake).await;
        if seq > 0 {
            println!(
                "  apply {seq:2}: committed in {:.1} ms, all {n} Running after {}{}",
                commit.as_secs_f64() * 1000.0,
                secs(running),
                created
                    .map(|c| format!(" (all created after {})", secs(c)))
                    .unwrap_or_default()
            );
            s.commit.push(commit);
            s.running.push(running);
            s.created.extend(created);
        }
        tokio::time::sleep(SETTLE).await;
    }
    s
}

fn report(title: &str, s: &Series, target: Option<Duration>) {
    println!("{title}");
    println!(
        "  apply committed (client round trip): p50 {} p99 {}",
        secs(percentile(&s.commit, 50.0)),
        secs(percentile(&s.commit, 99.0))
    );
    if !s.created.is_empty() {
        println!(
            "  commit -> every instance of the revision created: p50 {} p99 {}",
            secs(percentile(&s.created, 50.0)),
            secs(percentile(&s.created, 99.0))
        );
    }
    let p99 = percentile(&s.running, 99.0);
    println!(
        "  commit -> every node reports Running (seen by node-0): p50 {} p99 {}{}",
        secs(percentile(&s.running, 50.0)),
        secs(p99),
        target
            .map(|t| format!("   target p99 < {} -> {}", secs(t), verdict(p99 < t)))
            .unwrap_or_default()
    );
}

// ---- in-process nodes on the fake runtime ----

/// One node running `everynode::node::run_with` in its own thread and actix System.
struct SimNode {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SimNode {
    #[allow(clippy::too_many_arguments)]
    fn start(
        i: usize,
        root: &Path,
        gossip: SocketAddr,
        api: SocketAddr,
        seed: SocketAddr,
        gossip_ms: u64,
        fake: &FakeRuntime,
        secret: &Path,
    ) -> SimNode {
        let flags = AgentFlags {
            node_id: Some(format!("node-{i}")),
            data_dir: Some(root.join(format!("node-{i}"))),
            cluster: Some("bench-converge".into()),
            gossip_addr: Some(gossip),
            api_addr: Some(api),
            seeds: vec![seed.to_string()],
            runtime: Some(RuntimeChoice::Process),
            gossip_interval_ms: Some(gossip_ms),
            cluster_secret_file: Some(secret.to_path_buf()),
            ..AgentFlags::default()
        };
        let config = NodeConfig::resolve(&flags).expect("valid node settings");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let runtime: Arc<dyn everynode::runtime::ContainerRuntime> = Arc::new(fake.clone());
        let thread = std::thread::Builder::new()
            .name(format!("node-{i}"))
            .spawn(move || {
                // Each node gets its own System, as its agent's actors need one.
                let system = actix::System::new();
                let overrides = everynode::node::Overrides {
                    runtime: Some(runtime),
                };
                let shutdown = async move {
                    let _ = stopped.await;
                };
                if let Err(e) =
                    system.block_on(everynode::node::run_with(config, shutdown, |_| {}, overrides))
                {
                    eprintln!("node-{i} stopped with an error: {e:#}");
                }
            })
            .expect("spawning a node thread");
        SimNode {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for SimNode {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn fake_part(
    rt: &tokio::runtime::Runtime,
    http: &reqwest::Client,
    (n, count, rollouts): (usize, usize, usize),
    gossip_ms: u64,
    secret: &Path,
) {
    let root = tempfile::Builder::new()
        .prefix("everynode-bench-converge-")
        .tempdir()
        .expect("a temporary directory");
    let fake = FakeRuntime::new();
    let addrs = addresses(n);
    println!("{n} in-process nodes (node::run_with, fake runtime, UDP gossip on loopback, Raft on redb), gossip every {gossip_ms} ms");
    let nodes: Vec<SimNode> = addrs
        .iter()
        .enumerate()
        .map(|(i, (g, a))| SimNode::start(i, root.path(), *g, *a, addrs[0].0, gossip_ms, &fake, secret))
        .collect();
    let api = addrs[0].1;
    let formed = rt.block_on(wait_formed(http, api, n));
    println!(
        "  formed (all alive, 3 voters) after {}; load average {}",
        secs(formed),
        loadavg()
    );
    let series = rt.block_on(applies(http, api, n, count, Some(&fake)));
    report(
        &format!(
            "{n} in-process nodes, fake runtime, {count} applies (load average {}):",
            loadavg()
        ),
        &series,
        Some(TARGET_FAKE_P99),
    );
    if rollouts > 0 {
        let restart = percentile(&series.running, 50.0);
        rt.block_on(rollout_part(http, api, n, rollouts, restart));
    }
    drop(nodes);
}

// ---- real agents on the process runtime ----

struct Agent {
    data_dir: PathBuf,
    child: Option<Child>,
}

impl Agent {
    fn start(
        i: usize,
        root: &Path,
        gossip: SocketAddr,
        api: SocketAddr,
        seed: SocketAddr,
        gossip_ms: u64,
        secret: &Path,
    ) -> Agent {
        let data_dir = root.join(format!("node-{i}"));
        let log = std::fs::File::create(root.join(format!("node-{i}.log"))).expect("agent log");
        let mut cmd = common::agent_command();
        cmd.args(["--node-id", &format!("node-{i}"), "--runtime", "process"])
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--gossip-addr", &gossip.to_string()])
            .args(["--api-addr", &api.to_string()])
            .args(["--seed", &seed.to_string()])
            .args(["--gossip-interval-ms", &gossip_ms.to_string()])
            .arg("--cluster-secret-file")
            .arg(secret)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        // SAFETY: prctl is async-signal-safe; the kernel kills the agent if we die first.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        Agent {
            data_dir,
            child: Some(cmd.spawn().expect("spawning everynode agent")),
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Instances outlive their agent by design: end whatever this one left behind.
        let records = self.data_dir.join("process").join("instances");
        for entry in std::fs::read_dir(records).into_iter().flatten().flatten() {
            let record: Option<Value> = std::fs::read(entry.path())
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            if let Some(pid) = record.and_then(|r| r["pid"].as_i64()).filter(|p| *p > 1) {
                // SAFETY: signalling the process group of an instance this benchmark started.
                unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
            }
        }
    }
}

fn process_part(
    rt: &tokio::runtime::Runtime,
    http: &reqwest::Client,
    n: usize,
    count: usize,
    gossip_ms: u64,
    secret: &Path,
) {
    let root = tempfile::Builder::new()
        .prefix("everynode-bench-converge-")
        .tempdir()
        .expect("a temporary directory");
    let addrs = addresses(n);
    println!(
        "{n} agent processes (release build, --runtime process) on loopback, gossip every {gossip_ms} ms"
    );
    let agents: Vec<Agent> = addrs
        .iter()
        .enumerate()
        .map(|(i, (g, a))| Agent::start(i, root.path(), *g, *a, addrs[0].0, gossip_ms, secret))
        .collect();
    let api = addrs[0].1;
    let formed = rt.block_on(wait_formed(http, api, n));
    println!(
        "  formed (all alive, 3 voters) after {}; load average {}",
        secs(formed),
        loadavg()
    );
    let series = rt.block_on(applies(http, api, n, count, None));
    report(
        &format!(
            "{n} agent processes, process runtime, {count} applies (load average {}):",
            loadavg()
        ),
        &series,
        None,
    );
    // Delete, so the agents stop their instances themselves before they are killed.
    rt.block_on(async {
        let _ = http
            .delete(format!("http://{api}/v1/daemonsets/{DS}"))
            .send()
            .await;
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            let pods: Vec<PodView> = match http.get(format!("http://{api}/v1/pods")).send().await {
                Ok(r) => r.json().await.unwrap_or_default(),
                Err(_) => Vec::new(),
            };
            if pods.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    drop(agents);
}

fn main() {
    let part = std::env::var("BENCH_PART").unwrap_or_else(|_| "both".into());
    assert!(
        ["fake", "process", "both"].contains(&part.as_str()),
        "BENCH_PART={part:?}: use fake, process or both"
    );
    let nodes = env_u64("BENCH_NODES", 100).max(1) as usize;
    let process_nodes = env_u64("BENCH_PROCESS_NODES", 10).max(1) as usize;
    let count = env_u64("BENCH_APPLIES", 10).max(1) as usize;
    let rollouts = env_u64("BENCH_ROLLOUTS", 3) as usize;
    let default_gossip = NodeConfig::resolve(&AgentFlags::default())
        .expect("default node settings")
        .gossip_interval;
    let gossip_ms = env_u64("BENCH_GOSSIP_MS", default_gossip.as_millis() as u64);
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    println!(
        "everynode convergence benchmark: apply committed -> every node reports Running; {cores} cores, load average {}",
        loadavg()
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let secret_dir = tempfile::tempdir().expect("a temporary directory");
    let (secret, keys) = common::cluster_secret(secret_dir.path());
    let http = common::admin_client(&keys.admin_token, Duration::from_secs(10));
    if part != "process" {
        fake_part(&rt, &http, (nodes, count, rollouts), gossip_ms, &secret);
    }
    if part != "fake" {
        process_part(&rt, &http, process_nodes, count, gossip_ms, &secret);
    }
}

// ---- rolling updates on the in-process nodes ----

const WAVE_DS: &str = "waves";
const MIN_READY: u64 = 1;
const MAX_UNAVAILABLE_PCT: u64 = 10;

fn wave_daemonset(seq: usize) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": WAVE_DS},
        "spec": {
            "selector": {"matchLabels": {"app": WAVE_DS}},
            "minReadySeconds": MIN_READY,
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": format!("{MAX_UNAVAILABLE_PCT}%")}},
            "template": {
                "metadata": {"labels": {"app": WAVE_DS}},
                "spec": {
                    "terminationGracePeriodSeconds": 2,
                    "containers": [{
                        "name": "main",
                        "image": "bench:1",
                        "command": ["sleep", "3600"],
                        "env": [{"name": "SEQ", "value": seq.to_string()}]
                    }]
                }
            }
        }
    })
}

/// Applies revision `seq` and waits until the rollout is complete on revision `revision`,
/// sampling the nodes' statuses meanwhile; returns (time from commit, budget checker).
async fn one_rollout(
    http: &reqwest::Client,
    api: SocketAddr,
    n: usize,
    seq: usize,
) -> (Duration, BudgetChecker) {
    let budget = (n as u64 * MAX_UNAVAILABLE_PCT).div_ceil(100) as usize;
    let mut checker = BudgetChecker::new(budget, 0, MIN_READY);
    let (committed, revision) = apply_one(http, api, wave_daemonset(seq)).await;
    loop {
        let rollout = get_json(http, &format!("http://{api}/v1/daemonsets/{WAVE_DS}/rollout")).await;
        if let Ok(pods) = http.get(format!("http://{api}/v1/pods")).send().await {
            let pods: Vec<PodView> = pods.json().await.unwrap_or_default();
            let statuses: Vec<(String, PodStatus)> = pods
                .into_iter()
                .filter(|p| p.daemonset == WAVE_DS)
                .map(|p| {
                    let status = PodStatus {
                        revision: p.revision_hash,
                        state: p.state.into(),
                        ready: p.ready,
                        ready_since: p.ready_since,
                        ..PodStatus::default()
                    };
                    (p.node, status)
                })
                .collect();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            checker.sample(statuses.iter().map(|(n, s)| (n.as_str(), Some(s))), 0, now);
        }
        if let Some(r) = rollout {
            if r["phase"] == "Complete" && r["revision"] == revision && r["updated_available"] == n {
                return (committed.elapsed(), checker);
            }
            assert!(
                committed.elapsed() < Duration::from_secs(300),
                "rollout {seq} did not complete: {r}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn rollout_part(http: &reqwest::Client, api: SocketAddr, n: usize, count: usize, one_wave: Duration) {
    let budget = (n as u64 * MAX_UNAVAILABLE_PCT).div_ceil(100);
    let waves = (n as u64).div_ceil(budget);
    let ideal = (one_wave + Duration::from_secs(MIN_READY)) * waves as u32;
    let target = ideal.mul_f64(1.1) + Duration::from_secs(1);
    println!(
        "rolling updates on the {n} nodes: maxUnavailable {MAX_UNAVAILABLE_PCT}% ({budget} nodes), minReadySeconds {MIN_READY}: \
         ideal {waves} waves x ({} one-wave update p50 + {MIN_READY} s) = {}; target <= {}",
        secs(one_wave),
        secs(ideal),
        secs(target)
    );
    // The first apply creates the DaemonSet everywhere at once; it is not a rollout.
    one_rollout(http, api, n, 0).await;
    tokio::time::sleep(Duration::from_secs(MIN_READY + 1)).await;
    let mut times = Vec::new();
    for seq in 1..=count {
        let (took, checker) = one_rollout(http, api, n, seq).await;
        println!(
            "  rollout {seq}: complete after {} ({:.2}x ideal); {} samples, at most {} unavailable at once (budget {budget}), {} over budget -> {}",
            secs(took),
            took.as_secs_f64() / ideal.as_secs_f64(),
            checker.samples,
            checker.worst_unavailable,
            checker.violations.len(),
            verdict(took <= target)
        );
        times.push(took);
        tokio::time::sleep(Duration::from_secs(MIN_READY + 1)).await;
    }
    let p50 = percentile(&times, 50.0);
    let worst = percentile(&times, 100.0);
    println!(
        "  rollout time p50 {} worst {} against ideal {} (target <= {}) -> {}",
        secs(p50),
        secs(worst),
        secs(ideal),
        secs(target),
        verdict(worst <= target)
    );
}
