//! Test harness: real `everynode agent` processes on loopback with free ports, condition waits, and cleanup even on panic.

pub mod busybox_image;
pub mod docker;
pub mod manifest;
pub mod netns;
pub mod raft_write;
pub mod rollout;

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The machine as the tests share it: tests that start agents or time things hold a share; the
/// fault scenarios (five agents under timing faults) hold it whole, as they did when they ran in
/// a binary of their own, so a CPU-hungry neighbour can never pass for a fault.
static MACHINE: RwLock<()> = RwLock::new(());

/// A share of the machine, held for a whole test. Async tests hold it across their awaits; the
/// lock is only ever taken at the start of a test, never inside one, so this cannot deadlock an
/// executor (the reason clippy warns about guards held across awaits).
pub struct MachineShare(#[allow(dead_code)] RwLockReadGuard<'static, ()>);

/// A share of the machine, for a test that starts agents or measures time.
pub fn shared_machine() -> MachineShare {
    MachineShare(MACHINE.read().unwrap_or_else(|e| e.into_inner()))
}

/// The whole machine, for a fault scenario.
pub fn whole_machine() -> RwLockWriteGuard<'static, ()> {
    MACHINE.write().unwrap_or_else(|e| e.into_inner())
}

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_everynode")
}

/// A command for the binary with no `EVERYNODE_*` variables leaking in from the caller.
pub fn everynode() -> Command {
    let mut cmd = Command::new(bin());
    for (key, _) in std::env::vars() {
        if key.starts_with("EVERYNODE_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("RUST_LOG", "info");
    cmd
}

/// A loopback port free for both TCP and UDP, never handed out twice in this process.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    loop {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("binding a probe socket");
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        let mut given = GIVEN.lock().unwrap();
        if given.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
}

/// Polls `check` until it returns `Ok`, or panics after `timeout` with the last reason.
pub fn wait_until<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(v) => return v,
            Err(reason) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}: {reason}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Checks `check` all through `window` (every 100 ms) and panics at the first failure: the form of
/// a "nothing happens" claim. `why` says why the window is long enough for the unwanted thing to
/// have shown if it were going to.
pub fn holds_for(what: &str, window: Duration, why: &str, mut check: impl FnMut() -> Result<(), String>) {
    let start = Instant::now();
    loop {
        if let Err(reason) = check() {
            panic!(
                "{what} stopped holding after {:?} of a {window:?} window ({why}): {reason}",
                start.elapsed()
            );
        }
        if start.elapsed() >= window {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The cluster secret file of the test cluster under `root`, created on first use (mode 0600):
/// every node of one test cluster shares it, as every host of a fleet does.
pub fn cluster_secret(root: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = root.join("cluster-secret");
    if !path.exists() {
        let secret: String = (0..4).map(|_| format!("{:016x}", rand_u64())).collect();
        fs::write(&path, secret).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    }
    path
}

/// Randomness good enough for test secrets, without a dependency.
fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.finish()
}

/// One agent process and everything needed to restart it as the same node.
pub struct Node {
    pub name: String,
    pub gossip: SocketAddr,
    pub api: SocketAddr,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    /// Flags given at every start besides the addresses and data dir.
    pub extra_args: Vec<String>,
    /// Environment variables given at every start.
    pub envs: Vec<(String, String)>,
    /// `--cluster-secret-file` given at every start; `None` lets the node generate its own.
    pub secret: Option<PathBuf>,
    /// The network namespace to start the agent in (a host of the fault tests); `None` is ours.
    pub netns: Option<PathBuf>,
    child: Option<Child>,
}

impl Node {
    pub fn new(root: &Path, name: &str, extra_args: Vec<String>) -> Node {
        Node {
            name: name.to_string(),
            gossip: SocketAddr::from(([127, 0, 0, 1], free_port())),
            api: SocketAddr::from(([127, 0, 0, 1], free_port())),
            data_dir: root.join(name),
            log: root.join(format!("{name}.log")),
            extra_args,
            envs: Vec::new(),
            secret: Some(cluster_secret(root)),
            netns: None,
            child: None,
        }
    }

    /// Starts the agent; `with_id` passes `--node-id` (without it, the data dir must know it).
    pub fn start_with(&mut self, with_id: bool) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = everynode();
        cmd.arg("agent")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--gossip-addr")
            .arg(self.gossip.to_string())
            .arg("--api-addr")
            .arg(self.api.to_string())
            .args(&self.extra_args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        // The process runtime unless the test chose one.
        if !self.extra_args.iter().any(|a| a == "--runtime") {
            cmd.arg("--runtime").arg("process");
        }
        if with_id {
            cmd.arg("--node-id").arg(&self.name);
        }
        if let Some(secret) = &self.secret {
            cmd.arg("--cluster-secret-file").arg(secret);
        }
        // Opened before the fork: the child may only make async-signal-safe calls.
        let netns = self
            .netns
            .as_ref()
            .map(|p| fs::File::open(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())));
        let netns_fd = netns.as_ref().map(std::os::fd::AsRawFd::as_raw_fd);
        // SAFETY: prctl and setns are async-signal-safe; prctl makes the kernel kill the agent
        // if the test process dies without running destructors.
        unsafe {
            cmd.pre_exec(move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                if let Some(fd) = netns_fd {
                    if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        self.child = Some(cmd.spawn().expect("spawning everynode agent"));
    }

    pub fn start(&mut self) {
        self.start_with(true)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Sends `signal` to the agent (not its instances), e.g. SIGSTOP to freeze it.
    pub fn signal(&self, signal: i32) {
        if let Some(child) = &self.child {
            // SAFETY: signalling our own child by pid.
            unsafe { libc::kill(child.id() as i32, signal) };
        }
    }

    /// SIGKILL: the node vanishes without saying goodbye.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("node is not running");
        // SAFETY: sending a signal to our own child by pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("{} did not stop within 15s of SIGTERM", self.name);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the agent to exit by itself (as after `everynode leave`); `None` on timeout.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.child.as_mut()?;
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn server(&self) -> String {
        format!("http://{}", self.api)
    }

    /// Runs an admin command against this node, with the admin token from its data dir (as on
    /// the node's own host).
    pub fn cli(&self, args: &[&str]) -> Output {
        everynode()
            .arg("--server")
            .arg(self.server())
            .env("EVERYNODE_DATA_DIR", &self.data_dir)
            .args(args)
            .output()
            .unwrap()
    }

    /// The admin token this node wrote into its data dir.
    pub fn admin_token(&self) -> String {
        fs::read_to_string(self.data_dir.join("admin-token"))
            .expect("the node has written its admin token")
            .trim()
            .to_string()
    }

    /// `members -o json` as seen by this node.
    pub fn members(&self) -> Result<Vec<Value>, String> {
        let out = self.cli(&["members", "-o", "json"]);
        if !out.status.success() {
            return Err(format!(
                "{}: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| format!("{}: bad JSON: {e}", self.name))
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let Ok(f) = fs::File::open(&self.log) else {
            return String::new();
        };
        let all: Vec<String> = BufReader::new(f).lines().map_while(Result::ok).collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Node {
    /// The instances the process runtime keeps records of for this node: id -> pid, which is
    /// also the process group id.
    pub fn instances(&self) -> BTreeMap<String, i32> {
        let dir = self.data_dir.join("process").join("instances");
        let mut out = BTreeMap::new();
        for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".exit.json") || !name.ends_with(".json") {
                continue;
            }
            let record = fs::read(entry.path())
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
            if let Some(v) = record {
                if let (Some(id), Some(pid)) = (v["id"].as_str(), v["pid"].as_i64()) {
                    out.insert(id.to_string(), pid as i32);
                }
            }
        }
        out
    }

    /// Kills the process groups of every instance the process runtime started for this node.
    /// Instances outlive their agent by design, so a test must end them itself.
    pub fn kill_instances(&self) {
        let mut groups: Vec<i32> = self.instances().into_values().collect();
        // An agent killed between starting an instance and writing its record leaves no record;
        // such a process is still found by its output, which goes to this node's log dir.
        let logs = self.data_dir.join("process").join("logs");
        for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let out = fs::read_link(entry.path().join("fd/1")).unwrap_or_default();
            if out.starts_with(&logs) {
                groups.push(pid);
            }
        }
        for pid in groups.into_iter().filter(|p| *p > 1) {
            // SAFETY: signalling process groups this test's agents created.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
        self.kill_instances();
    }
}

/// N agents on loopback, all joined through the first one's gossip address.
pub struct Cluster {
    pub nodes: Vec<Node>,
    pub root: tempfile::TempDir,
}

impl Cluster {
    pub fn start(n: usize) -> Cluster {
        Cluster::start_seeded(n, 1, &[])
    }

    /// N agents started identically: the same flags and the same list of `seeds` seed
    /// addresses (the first `seeds` nodes'), all at once.
    pub fn start_seeded(n: usize, seeds: usize, extra: &[&str]) -> Cluster {
        Cluster::start_seeded_with(n, seeds, |_| extra.iter().map(|s| s.to_string()).collect())
    }

    /// [`Cluster::start_seeded`] with flags chosen per node (by index).
    pub fn start_seeded_with(n: usize, seeds: usize, extra: impl Fn(usize) -> Vec<String>) -> Cluster {
        let root = tempfile::Builder::new()
            .prefix("everynode-test-")
            .tempdir()
            .unwrap();
        let gossip: Vec<SocketAddr> = (0..n)
            .map(|_| SocketAddr::from(([127, 0, 0, 1], free_port())))
            .collect();
        let seed_list: Vec<String> = gossip.iter().take(seeds.max(1)).map(|a| a.to_string()).collect();
        let mut nodes: Vec<Node> = Vec::new();
        for (i, addr) in gossip.iter().enumerate() {
            let mut args = vec!["--gossip-interval-ms".to_string(), "100".to_string()];
            args.push("--seed".into());
            args.push(seed_list.join(","));
            args.extend(extra(i));
            let mut node = Node::new(root.path(), &format!("node-{i}"), args);
            node.gossip = *addr;
            nodes.push(node);
        }
        for node in &mut nodes {
            node.start();
        }
        Cluster { nodes, root }
    }

    /// Names each node lists as alive, as a sorted set per node.
    pub fn alive_names(node: &Node) -> Result<Vec<String>, String> {
        Ok(node
            .members()?
            .iter()
            .filter(|m| m["state"] == "alive")
            .map(|m| m["name"].as_str().unwrap_or_default().to_string())
            .collect())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // The temp dir goes with the cluster: keep the whole logs, and show any panic of an
            // agent, which the tails may have scrolled past.
            let kept = std::env::temp_dir().join(format!("everynode-failed-{}", std::process::id()));
            let _ = fs::create_dir_all(&kept);
            for node in &self.nodes {
                eprintln!("---- last log lines of {} ----\n{}", node.name, node.log_tail(20));
                let _ = fs::copy(&node.log, kept.join(format!("{}.log", node.name)));
                let text = fs::read_to_string(&node.log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                for (i, _) in lines
                    .iter()
                    .enumerate()
                    .filter(|(_, l)| l.contains("panicked at"))
                    .take(3)
                {
                    eprintln!(
                        "---- {} panicked ----\n{}",
                        node.name,
                        lines[i..(i + 4).min(lines.len())].join("\n")
                    );
                }
            }
            eprintln!("---- whole agent logs kept in {} ----", kept.display());
        }
        for node in &mut self.nodes {
            node.kill();
            node.kill_instances();
        }
    }
}
