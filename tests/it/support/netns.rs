//! Hosts in Linux network namespaces on one bridge (MTU 1500), with nftables partitions and loss and a userspace packet delay between them, removed again even when a test fails.

use std::collections::{BTreeSet, VecDeque};
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Every namespace, link and table this harness makes starts with this, so a leftover of a
/// crashed run is recognised and removed by the next one.
pub const PREFIX: &str = "evn-";
/// The hub namespace holds the bridge. Bridging inside the host namespace would put the
/// traffic through the host's own firewall (a Docker host drops forwarded frames when
/// `bridge-nf-call-iptables` is on); a namespace of our own has no such rules.
const HUB: &str = "evn-hub";
const BRIDGE: &str = "evn-br";
/// The host side of the link to the bridge: admin commands run on the host reach every node
/// through it, and faults never apply to it, so the test can always ask any node.
const HOST_LINK: &str = "evn-host";
pub const HOST_ADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 254);
const TABLE: &str = "evn-fault";

/// What is missing for the network scenarios, if anything.
pub fn missing_capabilities() -> Option<String> {
    let mut missing = Vec::new();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        missing.push("root (network namespaces and nftables need CAP_NET_ADMIN)".to_string());
    }
    for (tool, package) in [("ip", "iproute2"), ("nft", "nftables"), ("iptables", "iptables")] {
        let found = Command::new(tool)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !found {
            missing.push(format!("the `{tool}` command (Debian package {package})"));
        }
    }
    (!missing.is_empty()).then(|| missing.join(", "))
}

/// Under `CI=true` a scenario that cannot run fails, naming what is missing; elsewhere it is
/// skipped, loudly. Returns whether the scenario may run.
pub fn require_capabilities(scenario: &str) -> bool {
    let Some(missing) = missing_capabilities() else {
        return true;
    };
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("fault scenario {scenario} cannot run: missing {missing}");
    }
    eprintln!("\n!!!!!!!! SKIPPED fault scenario {scenario}: missing {missing} !!!!!!!!\n");
    false
}

fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{args:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn must(args: &[&str]) {
    run(args).unwrap_or_else(|e| panic!("setting up the network: {e}"));
}

fn ns_names() -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output();
    let text = out
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(PREFIX))
        .map(str::to_string)
        .collect()
}

/// Kills every process inside namespace `ns` (agents and the instances they started, which
/// inherit it) and deletes it; its veth ends go with it.
fn remove_ns(ns: &str) {
    let out = Command::new("ip").args(["netns", "pids", ns]).output();
    let pids = out
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    for pid in pids.lines().filter_map(|p| p.trim().parse::<i32>().ok()) {
        // SAFETY: signalling processes that live in a namespace only this harness creates.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let _ = run(&["ip", "netns", "del", ns]);
}

/// Removes whatever an earlier run left behind (it may have been killed before its destructors ran).
pub fn remove_leftovers() {
    for ns in ns_names() {
        remove_ns(&ns);
    }
    let _ = run(&["ip", "link", "del", HOST_LINK]);
}

/// `hosts` namespaces `evn-h0..`, host i at 10.77.0.(i+1) on one bridge.
pub struct Net {
    pub hosts: usize,
    /// The faults each host applies to what it receives: the hosts it cannot hear, and the
    /// share of packets from other hosts it drops.
    cut: Vec<BTreeSet<usize>>,
    loss: Vec<u8>,
    /// One delayer per host while packets are delayed.
    delayers: Vec<Delayer>,
}

impl Net {
    pub fn create(hosts: usize) -> Net {
        assert!(
            hosts <= 30,
            "hosts must fit 10.77.0.0/27, which the delay rule matches"
        );
        remove_leftovers();
        let net = Net {
            hosts,
            cut: vec![BTreeSet::new(); hosts],
            loss: vec![0; hosts],
            delayers: Vec::new(),
        };
        must(&["ip", "netns", "add", HUB]);
        must(&["ip", "-n", HUB, "link", "set", "lo", "up"]);
        must(&["ip", "-n", HUB, "link", "add", BRIDGE, "type", "bridge"]);
        must(&["ip", "-n", HUB, "link", "set", BRIDGE, "up"]);
        must(&[
            "ip",
            "link",
            "add",
            HOST_LINK,
            "type",
            "veth",
            "peer",
            "name",
            "evn-hostp",
            "netns",
            HUB,
        ]);
        must(&[
            "ip",
            "-n",
            HUB,
            "link",
            "set",
            "evn-hostp",
            "master",
            BRIDGE,
            "up",
        ]);
        must(&["ip", "addr", "add", &format!("{HOST_ADDR}/24"), "dev", HOST_LINK]);
        must(&["ip", "link", "set", HOST_LINK, "mtu", "1500", "up"]);
        for i in 0..hosts {
            let ns = Net::ns(i);
            let port = format!("evn-p{i}");
            must(&["ip", "netns", "add", &ns]);
            // Sealed gossip runs chitchat's codec through loopback sockets: lo must be up.
            must(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
            must(&[
                "ip", "-n", HUB, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ]);
            must(&["ip", "-n", HUB, "link", "set", &port, "master", BRIDGE, "up"]);
            must(&[
                "ip",
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", Net::addr(i)),
                "dev",
                "eth0",
            ]);
            must(&["ip", "-n", &ns, "link", "set", "eth0", "mtu", "1500", "up"]);
            net.apply(i);
        }
        net
    }

    pub fn ns(i: usize) -> String {
        format!("{PREFIX}h{i}")
    }

    /// The file that names host `i`'s namespace, for `setns`.
    pub fn ns_path(i: usize) -> PathBuf {
        PathBuf::from("/run/netns").join(Net::ns(i))
    }

    pub fn addr(i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, 0, i as u8 + 1)
    }

    /// Rewrites host `i`'s fault table from `cut` and `loss`. Only receiving is filtered:
    /// both ends of a cut drop what the other sends, so each packet is judged once.
    fn apply(&self, i: usize) {
        let mut rules = String::new();
        if !self.cut[i].is_empty() {
            let addrs: Vec<String> = self.cut[i].iter().map(|h| Net::addr(*h).to_string()).collect();
            rules += &format!("    ip saddr {{ {} }} drop\n", addrs.join(", "));
        }
        if self.loss[i] > 0 {
            rules += &format!(
                "    ip saddr 10.77.0.0/24 ip saddr != {HOST_ADDR} numgen random mod 100 < {} drop\n",
                self.loss[i]
            );
        }
        // Declaring the table first makes the delete succeed on the first run too.
        let script = format!(
            "table inet {TABLE} {{}}\ndelete table inet {TABLE}\ntable inet {TABLE} {{\n  chain input {{\n    type filter hook input priority -10; policy accept;\n{rules}  }}\n}}\n"
        );
        let mut child = Command::new("ip")
            .args(["netns", "exec", &Net::ns(i), "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running nft");
        child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "nft in {}: {}\n{script}",
            Net::ns(i),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Splits the hosts into `groups`: hosts hear only hosts of their own group. Hosts in no
    /// group hear nobody.
    pub fn partition(&mut self, groups: &[&[usize]]) {
        for i in 0..self.hosts {
            let mine: Vec<usize> = groups
                .iter()
                .find(|g| g.contains(&i))
                .map(|g| g.to_vec())
                .unwrap_or_default();
            self.cut[i] = (0..self.hosts).filter(|h| *h != i && !mine.contains(h)).collect();
            self.apply(i);
        }
    }

    /// Drops `percent` of the packets every host receives from the other hosts.
    pub fn set_loss(&mut self, percent: u8) {
        for i in 0..self.hosts {
            self.loss[i] = percent;
            self.apply(i);
        }
    }

    /// Delays every packet a host receives from another host by `delay` plus up to `jitter`
    /// (so a round trip between two hosts takes twice that), in the order they arrived.
    /// Replaces any delay set before.
    pub fn set_delay(&mut self, delay: Duration, jitter: Duration) {
        self.clear_delay();
        for i in 0..self.hosts {
            self.delayers.push(Delayer::start(i, delay, jitter));
        }
    }

    /// Lets every packet through at once again.
    pub fn clear_delay(&mut self) {
        for delayer in self.delayers.drain(..) {
            delayer.stop();
        }
    }

    /// Removes every partition, all loss and all delay.
    pub fn heal(&mut self) {
        self.clear_delay();
        for i in 0..self.hosts {
            self.cut[i].clear();
            self.loss[i] = 0;
            self.apply(i);
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.clear_delay();
        remove_leftovers();
    }
}

/// Packet delay without netem (this kernel has none, and nftables can only drop or pass): an
/// iptables rule in the host's namespace queues what it receives from other hosts to
/// NFQUEUE 0, and a thread of the test process, bound to that queue inside the namespace,
/// lets each packet through once its delay has passed. `--queue-bypass` passes packets
/// untouched whenever no thread is bound, so a stopped delayer never blackholes a host.
struct Delayer {
    host: usize,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

const QUEUE: u16 = 0;

impl Delayer {
    /// Inserts (`-I`) or deletes (`-D`) host `host`'s queueing rule.
    fn rule(host: usize, action: &str) -> Result<(), String> {
        let ns = Net::ns(host);
        // Hosts are 10.77.0.1..; the test side (10.77.0.254) is never delayed.
        run(&[
            "ip",
            "netns",
            "exec",
            &ns,
            "iptables",
            "-w",
            action,
            "INPUT",
            "-s",
            "10.77.0.0/27",
            "-j",
            "NFQUEUE",
            "--queue-num",
            "0",
            "--queue-bypass",
        ])
    }

    fn start(host: usize, delay: Duration, jitter: Duration) -> Delayer {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let bound = enter_ns(host).and_then(|()| {
                let mut queue = nfq::Queue::open()?;
                queue.bind(QUEUE)?;
                // Only the verdict matters: copy no payload, and pass packets rather than drop
                // them should the queue ever fill.
                queue.set_copy_range(QUEUE, 0)?;
                queue.set_queue_max_len(QUEUE, 65_536)?;
                queue.set_fail_open(QUEUE, true)?;
                queue.set_nonblocking(true);
                Ok(queue)
            });
            match bound {
                Ok(queue) => {
                    ready_tx.send(Ok(())).unwrap();
                    delay_loop(queue, delay, jitter, host, &flag);
                }
                Err(e) => ready_tx.send(Err(e.to_string())).unwrap(),
            }
        });
        if let Err(e) = ready_rx.recv().unwrap() {
            panic!("binding NFQUEUE {QUEUE} in {}: {e}", Net::ns(host));
        }
        Delayer::rule(host, "-I").unwrap_or_else(|e| panic!("setting up the network: {e}"));
        Delayer {
            host,
            stop,
            thread: Some(thread),
        }
    }

    /// Removes the rule first, so nothing new is queued, then lets the held packets go.
    fn stop(mut self) {
        let _ = Delayer::rule(self.host, "-D");
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Moves the calling thread (only it) into host `host`'s network namespace.
fn enter_ns(host: usize) -> std::io::Result<()> {
    let ns = std::fs::File::open(Net::ns_path(host))?;
    // SAFETY: setns on a valid namespace descriptor affects only this thread.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Holds each packet until its time has come, keeping arrival order (netem without reordering).
fn delay_loop(mut queue: nfq::Queue, delay: Duration, jitter: Duration, host: usize, stop: &AtomicBool) {
    let mut held: VecDeque<(Instant, nfq::Message)> = VecDeque::new();
    let mut rng = (host as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let jitter_us = jitter.as_micros() as u64;
    while !stop.load(Ordering::Relaxed) {
        let mut idle = true;
        loop {
            match queue.recv() {
                Ok(mut msg) => {
                    idle = false;
                    msg.set_verdict(nfq::Verdict::Accept);
                    // xorshift: a spread of delays, the same for every run with the same seed.
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let extra = if jitter_us == 0 { 0 } else { rng % (jitter_us + 1) };
                    let due = Instant::now() + delay + Duration::from_micros(extra);
                    let due = held.back().map_or(due, |(last, _)| due.max(*last));
                    held.push_back((due, msg));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("NFQUEUE in {}: {e}", Net::ns(host)),
            }
        }
        let now = Instant::now();
        while held.front().is_some_and(|(due, _)| *due <= now) {
            let (_, msg) = held.pop_front().unwrap();
            queue.verdict(msg).expect("NFQUEUE verdict");
        }
        if idle {
            std::thread::sleep(Duration::from_micros(500));
        }
    }
    for (_, msg) in held {
        let _ = queue.verdict(msg);
    }
}
