//! Control-plane benchmark: leader failover, durable write latency and sustained write throughput of 3 real agents on loopback.
//!
//! Run with `cargo bench --bench control`. Environment knobs: `BENCH_FAILOVERS` (leader kills,
//! default 10), `BENCH_WRITES` (sequential writes per latency series, default 300),
//! `BENCH_CLIENTS` (concurrent clients, default 16), `BENCH_SUSTAIN_SECS` (seconds per throughput
//! run, default 5), `BENCH_GOSSIP_MS` and `BENCH_RAFT_HEARTBEAT_MS` (default: the product's);
//! the failover target is 10 heartbeats (1 s at the default 100 ms).
//!
//! The DaemonSets written select no node (`nodeSelector` on a label nobody has), so the figures
//! are those of the control plane alone: validation, forwarding, Raft replication and the fsyncs
//! of the log and the state machine, not of containers starting.

mod common;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use everynode::config::{AgentFlags, NodeConfig};
use everynode::security::node_auth::NodeAuth;
use serde_json::{json, Value};

use common::{env_u64, percentile, verdict};

/// How often cluster state is polled while waiting; fine enough for second-scale waits.
const POLL: Duration = Duration::from_millis(50);
/// Only bounds a broken run; a healthy cluster forms or heals in seconds.
const DEADLINE: Duration = Duration::from_secs(60);
/// A client gives up on one request after this; the server's own write wait is 6 s.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Failover takes 6.5 to 9.5 heartbeats by design (see `control::raft_config`).
const TARGET_FAILOVER_HEARTBEATS: u32 = 10;
const TARGET_WRITE_P99: Duration = Duration::from_millis(20);
const TARGET_WRITES_PER_SEC: f64 = 500.0;

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// A loopback port free for both UDP (gossip) and TCP (API), so one port serves each node.
fn free_port() -> u16 {
    loop {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("binding a probe socket");
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// One `everynode agent` process; killed when dropped, so a panicking benchmark leaves no
/// agent behind (and `PR_SET_PDEATHSIG` covers a benchmark killed outright).
struct Agent {
    name: String,
    gossip: SocketAddr,
    api: SocketAddr,
    data_dir: PathBuf,
    log: PathBuf,
    /// The cluster secret file every agent of the run shares.
    secret: PathBuf,
    /// `--raft-heartbeat-ms`.
    heartbeat_ms: u64,
    child: Option<Child>,
}

impl Agent {
    fn start(&mut self, seeds: &str, gossip_ms: u64) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("opening the agent log");
        let mut cmd = common::agent_command();
        cmd.args(["--node-id", &self.name, "--runtime", "process"])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--gossip-addr", &self.gossip.to_string()])
            .args(["--api-addr", &self.api.to_string()])
            .args(["--seed", seeds])
            .arg("--cluster-secret-file")
            .arg(&self.secret)
            .args(["--gossip-interval-ms", &gossip_ms.to_string()])
            .args(["--raft-heartbeat-ms", &self.heartbeat_ms.to_string()])
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
        self.child = Some(cmd.spawn().expect("spawning everynode agent"));
    }

    /// SIGKILL: the node vanishes mid-flight, as in a power loss.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.api)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A DaemonSet that no node runs, so only the control plane works; `image` makes each write a
/// new template revision.
fn daemonset(name: &str, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "nodeSelector": {"everynode.io/bench": "nowhere"},
                    "containers": [{"name": "main", "image": image, "command": ["sleep", "3600"]}]
                }
            }
        }
    })
}

/// One durable write: `POST /v1/apply`, acknowledged once committed by a majority.
async fn apply(http: &reqwest::Client, agent_url: &str, name: &str, image: &str) -> Result<(), String> {
    let resp = http
        .post(agent_url)
        .json(&json!({"objects": [daemonset(name, image)]}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            resp.status(),
            resp.text().await.unwrap_or_default()
        ))
    }
}

/// `POST /v1/nodes/NODE/labels`: the smallest write there is.
async fn label(http: &reqwest::Client, url: &str, value: &str) -> Result<(), String> {
    let resp = http
        .post(url)
        .json(&json!({"set": {"bench": value}}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            resp.status(),
            resp.text().await.unwrap_or_default()
        ))
    }
}

/// `(name, role)` of every alive member, as `agent` sees them.
async fn roles(http: &reqwest::Client, agent: &Agent) -> Result<BTreeMap<String, String>, String> {
    let members: Vec<Value> = http
        .get(agent.url("/v1/members"))
        .send()
        .await
        .map_err(|e| format!("{}: {e}", agent.name))?
        .json()
        .await
        .map_err(|e| format!("{}: {e}", agent.name))?;
    Ok(members
        .iter()
        .filter(|m| m["state"] == "alive")
        .map(|m| {
            (
                m["name"].as_str().unwrap_or_default().to_string(),
                m["role"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect())
}

/// Waits until every agent lists all of them alive, one leader and the others voters, and a
/// write through every node commits; returns the leader's index.
async fn wait_healthy(http: &reqwest::Client, agents: &[Agent]) -> usize {
    let start = Instant::now();
    let mut last = String::new();
    'poll: loop {
        assert!(
            start.elapsed() < DEADLINE,
            "the cluster did not become healthy within {DEADLINE:?}: {last}"
        );
        tokio::time::sleep(POLL).await;
        let mut leader: Option<String> = None;
        for agent in agents {
            let view = match roles(http, agent).await {
                Ok(v) => v,
                Err(e) => {
                    last = e;
                    continue 'poll;
                }
            };
            let leaders: Vec<&String> = view
                .iter()
                .filter(|(_, r)| *r == "leader")
                .map(|(n, _)| n)
                .collect();
            let voters = view.values().filter(|r| *r == "voter").count();
            if view.len() != agents.len() || leaders.len() != 1 || voters != agents.len() - 1 {
                last = format!("{} sees {view:?}", agent.name);
                continue 'poll;
            }
            if leader.as_ref().is_some_and(|l| l != leaders[0]) {
                last = format!("leaders disagree: {leader:?} / {}", leaders[0]);
                continue 'poll;
            }
            leader = Some(leaders[0].clone());
        }
        let leader = leader.expect("at least one agent");
        for agent in agents {
            if let Err(e) = apply(
                http,
                &agent.url("/v1/apply"),
                "warmup",
                &format!("warmup:{}", agent.name),
            )
            .await
            {
                last = format!("warm-up write through {}: {e}", agent.name);
                continue 'poll;
            }
        }
        return agents
            .iter()
            .position(|a| a.name == leader)
            .expect("the leader is one of ours");
    }
}

/// Summary of one series of request latencies.
struct Series {
    p50: Duration,
    p99: Duration,
    max: Duration,
    per_sec: f64,
}

fn series(samples: &[Duration], elapsed: Duration) -> Series {
    Series {
        p50: percentile(samples, 50.0),
        p99: percentile(samples, 99.0),
        max: *samples.iter().max().unwrap(),
        per_sec: samples.len() as f64 / elapsed.as_secs_f64(),
    }
}

/// `count` sequential writes, each timed at the client.
async fn sequential<F, Fut>(count: usize, mut write: F) -> Series
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let mut samples = Vec::with_capacity(count);
    let start = Instant::now();
    for i in 0..count {
        let t = Instant::now();
        write(i).await.unwrap_or_else(|e| panic!("write {i} failed: {e}"));
        samples.push(t.elapsed());
    }
    series(&samples, start.elapsed())
}

/// utime + stime of a process, from `/proc/<pid>/stat`.
fn cpu_of(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may contain spaces and parentheses; the fields after the last `)` do not.
    let Some(end) = stat.rfind(')') else {
        return Duration::ZERO;
    };
    let fields: Vec<&str> = stat[end + 2..].split_whitespace().collect();
    // Fields 14 and 15 of stat(5); the slice starts at field 3.
    let ticks: u64 = fields[11].parse::<u64>().unwrap_or(0) + fields[12].parse::<u64>().unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Duration::from_secs_f64(ticks as f64 / per_sec)
}

/// CPU used so far by the agents (by pid) and by this process, which plays the clients.
fn cpu_used(pids: &[u32]) -> (Duration, Duration) {
    (pids.iter().map(|p| cpu_of(*p)).sum(), cpu_of(std::process::id()))
}

/// Throughput under load, and how busy the machine was meanwhile.
struct Load {
    series: Series,
    failed: u64,
    /// Share of all cores the three agents used.
    agents_cpu: f64,
    /// Share of all cores the benchmark's clients used.
    clients_cpu: f64,
}

/// `clients` concurrent clients, each applying its own DaemonSet in a loop for `duration`;
/// client `c` talks to `urls[c % urls.len()]`.
async fn sustained(
    http: &reqwest::Client,
    urls: &[String],
    clients: usize,
    duration: Duration,
    pids: &[u32],
) -> Load {
    let failures = Arc::new(AtomicU64::new(0));
    let cpu_before = cpu_used(pids);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (http, url, failures) = (http.clone(), urls[c % urls.len()].clone(), failures.clone());
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            let name = format!("load-{c}");
            let mut i = 0u64;
            while start.elapsed() < duration {
                let t = Instant::now();
                match apply(&http, &url, &name, &format!("load:{i}")).await {
                    Ok(()) => samples.push(t.elapsed()),
                    Err(_) => {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
                i += 1;
            }
            samples
        }));
    }
    let mut samples = Vec::new();
    for t in tasks {
        samples.extend(t.await.expect("a client task panicked"));
    }
    let elapsed = start.elapsed();
    let cpu_after = cpu_used(pids);
    assert!(!samples.is_empty(), "no write succeeded under load");
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get()) as f64;
    let share = |d: Duration| d.as_secs_f64() / elapsed.as_secs_f64() / cores;
    Load {
        series: series(&samples, elapsed),
        failed: failures.load(Ordering::Relaxed),
        agents_cpu: share(cpu_after.0 - cpu_before.0),
        clients_cpu: share(cpu_after.1 - cpu_before.1),
    }
}

/// Kills the leader and times until a write through a survivor commits; then restarts the
/// killed node and waits for the cluster to heal. Returns the failover time.
async fn failover(
    http: &reqwest::Client,
    agents: &mut [Agent],
    seeds: &str,
    gossip_ms: u64,
    run: usize,
) -> Duration {
    let leader = wait_healthy(http, agents).await;
    let survivor = (leader + 1) % agents.len();
    let url = agents[survivor].url("/v1/apply");
    let image = format!("failover:{run}");
    agents[leader].kill();
    let killed = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        match apply(http, &url, "failover", &image).await {
            Ok(()) => break,
            Err(e) => {
                assert!(
                    killed.elapsed() < DEADLINE,
                    "no write committed {DEADLINE:?} after killing the leader: {e}"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    let took = killed.elapsed();
    println!(
        "  failover {:>2}: killed {}, write through {} committed after {} ({attempts} request{})",
        run + 1,
        agents[leader].name,
        agents[survivor].name,
        ms(took),
        if attempts == 1 { "" } else { "s" }
    );
    agents[leader].start(seeds, gossip_ms);
    took
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn main() {
    let failovers = env_u64("BENCH_FAILOVERS", 10).max(1) as usize;
    let writes = env_u64("BENCH_WRITES", 300).max(1) as usize;
    let clients = env_u64("BENCH_CLIENTS", 16).max(1) as usize;
    let sustain = Duration::from_secs(env_u64("BENCH_SUSTAIN_SECS", 5).max(1));
    let default_gossip = NodeConfig::resolve(&AgentFlags::default())
        .expect("default node settings")
        .gossip_interval;
    let gossip_ms = env_u64("BENCH_GOSSIP_MS", default_gossip.as_millis() as u64);
    let heartbeat = Duration::from_millis(env_u64(
        "BENCH_RAFT_HEARTBEAT_MS",
        everynode::config::DEFAULT_RAFT_HEARTBEAT_MS,
    ));
    let target_failover_p50 = heartbeat * TARGET_FAILOVER_HEARTBEATS;
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());

    let root = tempfile::Builder::new()
        .prefix("everynode-bench-control-")
        .tempdir()
        .expect("a temporary directory");
    let (secret_file, keys) = common::cluster_secret(root.path());
    let mut agents: Vec<Agent> = (0..3)
        .map(|i| {
            let port = free_port();
            Agent {
                name: format!("node-{i}"),
                gossip: SocketAddr::from(([127, 0, 0, 1], port)),
                api: SocketAddr::from(([127, 0, 0, 1], port)),
                data_dir: root.path().join(format!("node-{i}")),
                log: root.path().join(format!("node-{i}.log")),
                secret: secret_file.clone(),
                heartbeat_ms: heartbeat.as_millis() as u64,
                child: None,
            }
        })
        .collect();
    let seeds = agents
        .iter()
        .map(|a| a.gossip.to_string())
        .collect::<Vec<_>>()
        .join(",");

    // Print the agents' log tails if anything below panics; the guards then kill them.
    let logs: Vec<PathBuf> = agents.iter().map(|a| a.log.clone()).collect();
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        for log in &logs {
            eprintln!("--- {} (last 20 lines)\n{}", log.display(), tail(log, 20));
        }
        default_hook(info);
    }));

    println!(
        "everynode control-plane benchmark: 3 agents (--runtime process) on loopback, gossip every {gossip_ms} ms, Raft heartbeat {} ms, {cores} cores, load average {}",
        heartbeat.as_millis(),
        loadavg()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("building the tokio runtime");
    // Every admin request carries the cluster's admin token, derived from the secret as the
    // agents derive it.
    let http = common::admin_client(&keys.admin_token, REQUEST_TIMEOUT);

    for agent in &mut agents {
        agent.start(&seeds, gossip_ms);
    }
    let formed = Instant::now();
    rt.block_on(wait_healthy(&http, &agents));
    println!(
        "  cluster formed and took a write on every node in {}",
        ms(formed.elapsed())
    );

    // ---- failover ----
    let mut failover_times = Vec::new();
    for run in 0..failovers {
        let took = rt.block_on(failover(&http, &mut agents, &seeds, gossip_ms, run));
        failover_times.push(took);
    }
    let leader = rt.block_on(wait_healthy(&http, &agents));
    let follower = (leader + 1) % agents.len();

    // ---- sequential write latency ----
    let leader_apply = agents[leader].url("/v1/apply");
    let follower_apply = agents[follower].url("/v1/apply");
    let (h, url) = (&http, &leader_apply);
    let via_leader = rt.block_on(sequential(writes, |i| async move {
        apply(h, url, "latency", &format!("latency:{i}")).await
    }));
    let url = &follower_apply;
    let via_follower = rt.block_on(sequential(writes, |i| async move {
        apply(h, url, "latency", &format!("latency-f:{i}")).await
    }));
    let label_url = agents[leader].url(&format!("/v1/nodes/{}/labels", agents[follower].name));
    let url = &label_url;
    let labels = rt.block_on(sequential(writes, |i| async move {
        label(h, url, &format!("v{i}")).await
    }));

    // ---- sustained throughput ----
    let all_urls: Vec<String> = agents.iter().map(|a| a.url("/v1/apply")).collect();
    let pids: Vec<u32> = agents
        .iter()
        .filter_map(|a| a.child.as_ref().map(|c| c.id()))
        .collect();
    let load_leader = rt.block_on(sustained(
        &http,
        std::slice::from_ref(&leader_apply),
        clients,
        sustain,
        &pids,
    ));
    let load_all = rt.block_on(sustained(&http, &all_urls, clients, sustain, &pids));

    // The state machine persists the whole store after every applied batch, so its size is
    // part of each write's cost.
    let store_bytes = rt
        .block_on(async {
            let path = everynode::control::distribute::STORE_PATH;
            let signed = NodeAuth::new(&keys.node_http).sign_request(
                "GET",
                path,
                b"",
                everynode::security::unix_millis(),
            );
            http.get(agents[leader].url(path))
                .header(everynode::security::node_auth::REQUEST_HEADER, signed.header)
                .send()
                .await?
                .bytes()
                .await
        })
        .map_or(0, |b| b.len());

    println!();
    println!(
        "summary (p99 is nearest-rank; load average now {}; store at the end: {} DaemonSets, {:.0} KB as JSON)",
        loadavg(),
        clients + 3,
        store_bytes as f64 / 1e3
    );
    let (f50, f99) = (
        percentile(&failover_times, 50.0),
        percentile(&failover_times, 99.0),
    );
    println!(
        "  leader failover, SIGKILL of the leader to a write through a survivor committed ({failovers} runs):  p50 {}  p99 {}  target p50 < {}  {}",
        ms(f50),
        ms(f99),
        ms(target_failover_p50),
        verdict(f50 < target_failover_p50)
    );
    for (what, s) in [
        ("apply via the leader", &via_leader),
        ("apply via a follower (forwarded)", &via_follower),
        ("label node via the leader", &labels),
    ] {
        println!(
            "  write latency, {what} ({writes} sequential):  p50 {}  p99 {}  max {}  ({:.0}/s)  target p99 < {}  {}",
            ms(s.p50),
            ms(s.p99),
            ms(s.max),
            s.per_sec,
            ms(TARGET_WRITE_P99),
            verdict(s.p99 < TARGET_WRITE_P99)
        );
    }
    for (what, load) in [
        ("all to the leader", &load_leader),
        ("spread over the 3 nodes", &load_all),
    ] {
        let s = &load.series;
        println!(
            "  sustained applies, {clients} clients {what}, {} s:  {:.0} writes/s  (latency p50 {}  p99 {}, {} failed; CPU: agents {:.0}%, clients {:.0}% of {cores} cores)  target >= {TARGET_WRITES_PER_SEC:.0}/s  {}",
            sustain.as_secs(),
            s.per_sec,
            ms(s.p50),
            ms(s.p99),
            load.failed,
            100.0 * load.agents_cpu,
            100.0 * load.clients_cpu,
            verdict(s.per_sec >= TARGET_WRITES_PER_SEC)
        );
    }
    drop(agents);
}
