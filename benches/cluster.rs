//! Cluster benchmark: gossip convergence and failure detection of in-process nodes, and one idle agent's footprint.
//!
//! Run with `cargo bench --bench cluster`. Environment knobs: `BENCH_RUNS` (default 10),
//! `BENCH_NODES` (default 100), `BENCH_SETTLE_SECS` (steady state before a kill, default 3),
//! `BENCH_IDLE_SECS` (idle agent sampling, default 60), `BENCH_GOSSIP_MS` (default: the product's).

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chitchat::transport::ChannelTransport;
use everynode::config::{AgentFlags, NodeConfig};
use everynode::membership::{keys, MemberState, Membership, MembershipConfig};

use common::{env_u64, percentile, verdict};

/// The largest UDP payload, so the simulation refuses exactly the messages real UDP would.
const UDP_MTU: usize = 65_507;
/// Fine enough to resolve sub-second figures, coarse enough that polling 100 member lists
/// does not steal the two cores the gossip itself needs.
const POLL: Duration = Duration::from_millis(20);
/// Only bounds a broken run; a healthy one finishes in seconds.
const DEADLINE: Duration = Duration::from_secs(60);

const TARGET_CONVERGENCE: Duration = Duration::from_millis(1_500);
const TARGET_FAILURE_SEEN: Duration = Duration::from_secs(3);
const TARGET_RSS_MB: f64 = 20.0;
const TARGET_CPU_PERCENT: f64 = 1.0;

fn gossip_addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 10_000 + i as u16))
}

fn node_name(i: usize) -> String {
    format!("node-{i:03}")
}

/// Starts `n` nodes seeded with node 0, as an operator would start a fleet.
async fn start_cluster(n: usize, transport: &ChannelTransport, interval: Duration) -> Vec<Membership> {
    let mut nodes = Vec::with_capacity(n);
    for i in 0..n {
        let name = node_name(i);
        let labels = everynode::node::node_labels(&name, &Default::default());
        let config = MembershipConfig {
            node_id: name,
            generation: 1,
            cluster: "bench".into(),
            listen_addr: gossip_addr(i),
            advertise_addr: gossip_addr(i),
            seeds: vec![gossip_addr(0).to_string()],
            gossip_interval: interval,
            dead_node_grace: Duration::from_secs(24 * 3600),
            initial_keys: vec![
                (keys::API_ADDR.into(), format!("127.0.0.1:{}", 20_000 + i)),
                (keys::LABELS.into(), keys::encode_labels(&labels)),
                (keys::RUNTIME.into(), "process".into()),
            ],
        };
        nodes.push(
            Membership::start(config, Box::new(transport.clone()))
                .await
                .expect("starting a simulated node"),
        );
    }
    nodes
}

/// True once every node lists `n` members, and, when `alive`, all of them alive. Stops at the
/// first lagging node so that polling stays cheap while the cluster is still converging.
async fn converged(nodes: &[Membership], n: usize, alive: bool) -> bool {
    for node in nodes {
        let view = node.members().await;
        if view.len() != n || (alive && view.iter().any(|m| m.state != MemberState::Alive)) {
            return false;
        }
    }
    true
}

async fn all_see_dead(observers: &[Membership], victim: &str) -> bool {
    for node in observers {
        let view = node.members().await;
        if !view
            .iter()
            .any(|m| m.name == victim && m.state == MemberState::Dead)
        {
            return false;
        }
    }
    true
}

async fn poll_until<F, Fut>(what: &str, mut done: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !done().await {
        assert!(
            start.elapsed() < DEADLINE,
            "no result after {DEADLINE:?} waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
    start.elapsed()
}

struct ClusterRun {
    listed: Duration,
    converge: Duration,
    started_in: Duration,
    failure_seen: Duration,
    gossip_bytes_per_node_sec: f64,
}

/// One fresh cluster: converge from cold, run in steady state, kill one node, watch it die.
async fn cluster_run(run: usize, n: usize, interval: Duration, settle: Duration) -> ClusterRun {
    let transport = ChannelTransport::with_mtu(UDP_MTU);
    let t0 = Instant::now();
    let nodes = start_cluster(n, &transport, interval).await;
    let started_in = t0.elapsed();
    // Split in two: learning that a node exists (dissemination) versus the failure detector
    // trusting it (it needs three increasing heartbeats and then a gossip round).
    poll_until("every node listing every node", || converged(&nodes, n, false)).await;
    let listed = t0.elapsed();
    poll_until("convergence", || converged(&nodes, n, true)).await;
    let converge = t0.elapsed();

    // Failures in a real fleet hit a cluster whose detectors have learned the heartbeat rhythm,
    // not one that has just formed.
    let bytes_before: u64 = nodes.iter().map(|m| m.stats().snapshot()[1]).sum();
    let settle_start = Instant::now();
    tokio::time::sleep(settle).await;
    let bytes_after: u64 = nodes.iter().map(|m| m.stats().snapshot()[1]).sum();
    let gossip_bytes_per_node_sec =
        (bytes_after - bytes_before) as f64 / n as f64 / settle_start.elapsed().as_secs_f64();
    assert!(
        converged(&nodes, n, true).await,
        "run {run}: the cluster stopped agreeing during steady state"
    );

    // Never the seed: a survivor must learn about the death by gossip alone.
    let victim = 1 + (run * 37) % (n - 1);
    let victim_name = node_name(victim);
    let survivors: Vec<Membership> = nodes
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != victim)
        .map(|(_, m)| m.clone())
        .collect();
    let killed_at = Instant::now();
    nodes[victim].shutdown().await;
    poll_until("failure detection", || all_see_dead(&survivors, &victim_name)).await;
    let failure_seen = killed_at.elapsed();

    for node in &nodes {
        node.shutdown().await;
    }
    ClusterRun {
        listed,
        converge,
        started_in,
        failure_seen,
        gossip_bytes_per_node_sec,
    }
}

/// Kills the agent when the benchmark ends, panics included, so no process outlives it.
struct AgentGuard(Child);

impl Drop for AgentGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port_udp() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_port_tcp() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Resident set size in kibibytes, from `/proc/<pid>/status`.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("reading the agent's status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

/// utime + stime in clock ticks, from `/proc/<pid>/stat`.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("reading the agent's stat");
    // The command name may contain spaces and parentheses; the fields after the last `)` do not.
    let after_comm = &stat[stat.rfind(')').expect("comm in /proc/<pid>/stat") + 2..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); `after_comm` starts at field 3.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

struct IdleAgent {
    rss_max_kib: u64,
    rss_last_kib: u64,
    cpu_percent: f64,
    window: Duration,
}

fn idle_agent(idle: Duration, interval: Duration) -> IdleAgent {
    let data_dir = tempfile::tempdir().expect("a temporary data dir");
    let log_path = data_dir.path().join("agent.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let api: SocketAddr = ([127, 0, 0, 1], free_port_tcp()).into();
    let gossip: SocketAddr = ([127, 0, 0, 1], free_port_udp()).into();
    let child = Command::new(env!("CARGO_BIN_EXE_everynode"))
        .arg("agent")
        .arg("--data-dir")
        .arg(data_dir.path().join("data"))
        .args(["--node-id", "bench", "--runtime", "process"])
        .args([
            "--gossip-addr",
            &gossip.to_string(),
            "--api-addr",
            &api.to_string(),
        ])
        .args(["--gossip-interval-ms", &interval.as_millis().to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawning the everynode agent");
    let mut agent = AgentGuard(child);
    let pid = agent.0.id();

    let ready_by = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect(api).is_err() {
        if let Some(status) = agent.0.try_wait().unwrap() {
            panic!(
                "the agent exited with {status} before serving its API; its log:\n{}",
                read_log(&log_path)
            );
        }
        assert!(
            Instant::now() < ready_by,
            "the agent did not serve {api} within 15 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // SAFETY: sysconf has no preconditions.
    let ticks_per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let start = Instant::now();
    let ticks_start = cpu_ticks(pid);
    let mut rss_max_kib = rss_kib(pid);
    let mut rss_last_kib = rss_max_kib;
    while start.elapsed() < idle {
        std::thread::sleep(Duration::from_secs(1).min(idle));
        rss_last_kib = rss_kib(pid);
        rss_max_kib = rss_max_kib.max(rss_last_kib);
    }
    let window = start.elapsed();
    let cpu_secs = (cpu_ticks(pid) - ticks_start) as f64 / ticks_per_sec;

    // A clean stop, so the agent's shutdown path is exercised too; the guard kills it otherwise.
    // SAFETY: signalling our own child by its pid.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let stop_by = Instant::now() + Duration::from_secs(5);
    while agent.0.try_wait().unwrap().is_none() && Instant::now() < stop_by {
        std::thread::sleep(Duration::from_millis(50));
    }
    IdleAgent {
        rss_max_kib,
        rss_last_kib,
        cpu_percent: 100.0 * cpu_secs / window.as_secs_f64(),
        window,
    }
}

/// User plus system CPU time this process has used so far.
fn self_cpu() -> Duration {
    // SAFETY: getrusage only writes into the zeroed struct we pass.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1_000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| format!("(unreadable: {e})"))
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

fn main() {
    let runs = env_u64("BENCH_RUNS", 10).max(1) as usize;
    let n = env_u64("BENCH_NODES", 100).max(2) as usize;
    let settle = Duration::from_secs(env_u64("BENCH_SETTLE_SECS", 3));
    let idle = Duration::from_secs(env_u64("BENCH_IDLE_SECS", 60).max(1));
    // The product default, read from the same place the agent reads it.
    let default_interval = NodeConfig::resolve(&AgentFlags::default())
        .expect("default node settings")
        .gossip_interval;
    let interval = Duration::from_millis(env_u64("BENCH_GOSSIP_MS", default_interval.as_millis() as u64));
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());

    println!("everynode cluster benchmark: {n} in-process nodes, {runs} runs, gossip every {interval:?}, {cores} cores");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("building the tokio runtime");
    let mut results = Vec::with_capacity(runs);
    let cpu_before = self_cpu();
    let wall_before = Instant::now();
    for run in 0..runs {
        let r = rt.block_on(cluster_run(run, n, interval, settle));
        println!(
            "  run {:>2}: all listed {}, converged {} (all {n} started within {:.0} ms), killed node seen dead by all in {}, {:.0} gossip B/s per node",
            run + 1,
            secs(r.listed),
            secs(r.converge),
            r.started_in.as_secs_f64() * 1000.0,
            secs(r.failure_seen),
            r.gossip_bytes_per_node_sec
        );
        results.push(r);
    }
    drop(rt);
    // Timings only mean something if the simulation was not starved of CPU.
    println!(
        "  simulation used {:.0}% of the {cores} cores",
        100.0 * (self_cpu() - cpu_before).as_secs_f64() / wall_before.elapsed().as_secs_f64() / cores as f64
    );

    println!("idle agent: sampling for {idle:?}...");
    let agent = idle_agent(idle, interval);

    let converge: Vec<Duration> = results.iter().map(|r| r.converge).collect();
    let failure: Vec<Duration> = results.iter().map(|r| r.failure_seen).collect();
    let (c50, c99) = (percentile(&converge, 50.0), percentile(&converge, 99.0));
    let (f50, f99) = (percentile(&failure, 50.0), percentile(&failure, 99.0));
    let rss_mb = agent.rss_max_kib as f64 * 1024.0 / 1e6;

    println!();
    println!("summary ({runs} runs; p99 is nearest-rank, i.e. the slowest run when runs < 100)");
    println!(
        "  convergence, from starting all {n} nodes to every node listing {n} alive:  p50 {}  p99 {}  target p99 < {}  {}",
        secs(c50),
        secs(c99),
        secs(TARGET_CONVERGENCE),
        verdict(c99 < TARGET_CONVERGENCE)
    );
    println!(
        "  failure seen, from killing one node to all {} survivors listing it dead:  p50 {}  p99 {}  target p99 < {}  {}",
        n - 1,
        secs(f50),
        secs(f99),
        secs(TARGET_FAILURE_SEEN),
        verdict(f99 < TARGET_FAILURE_SEEN)
    );
    println!(
        "  idle agent RSS, max over {:.0} s:  {rss_mb:.1} MB (last {:.1} MB)  target < {TARGET_RSS_MB} MB  {}",
        agent.window.as_secs_f64(),
        agent.rss_last_kib as f64 * 1024.0 / 1e6,
        verdict(rss_mb < TARGET_RSS_MB)
    );
    println!(
        "  idle agent CPU, utime+stime over {:.0} s:  {:.2}% of one core  target < {TARGET_CPU_PERCENT}%  {}",
        agent.window.as_secs_f64(),
        agent.cpu_percent,
        verdict(agent.cpu_percent < TARGET_CPU_PERCENT)
    );
}
