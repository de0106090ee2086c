//! Bootstrap races: 3 and 5 whole nodes in one process, started at once or staggered in every order, form exactly one Raft cluster.
//!
//! Each case runs real nodes (`everynode::node::run_observed`: gossip over loopback UDP, Raft
//! over HTTP, redb in a temp data dir) started identically, with the same seed list, and checks:
//! - every node inside Raft names the same leader, the same voters and the same learners, and
//!   exactly one of them is in the leader state;
//! - the voters are as many as the planner wants (`voters::desired_voters`) and every other
//!   node is outside Raft, never in a Raft group of its own;
//! - every node's `GET /v1/members` (gossip roles, what users see) shows that one leader and
//!   those voters;
//! - over the whole run no term ever had two leaders, which is what two clusters formed side by
//!   side would show, even if one of them later died out.
//!
//! Node `node-0` always has the lowest seed address, so it is the one the bootstrap rule lets
//! form the cluster; the orders below are named after where it starts.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use everynode::config::{AgentFlags, NodeConfig, RuntimeChoice};
use everynode::control::voters::desired_voters;
use everynode::control::Raft;
use openraft::ServerState;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The gossip round of these tests (`--gossip-interval-ms 100`).
const GOSSIP_MS: u64 = 100;
/// Bounds a broken case; a healthy one converges in 2-6 s.
const CONVERGE: Duration = Duration::from_secs(30);
/// How long the converged cluster must stay as it is, so a late second bootstrap would show.
const HOLD: Duration = Duration::from_millis(700);

/// Leaders seen per term, by any node, over a whole case.
type LeaderHistory = Arc<Mutex<BTreeMap<u64, BTreeSet<u64>>>>;

/// One in-process node and what it takes to stop it.
struct TestNode {
    /// `node-{i}`: the node id, also its name in member lists.
    name: String,
    /// Where its HTTP API listens, for `GET /v1/members`.
    api: SocketAddr,
    /// The admin token the node wrote into its data dir, for the API.
    token: String,
    /// Its Raft handle, handed out by `run_observed`, for the metrics.
    raft: Raft,
    /// Resolves the node's shutdown future; taken when the node is stopped.
    stop: Option<oneshot::Sender<()>>,
    /// `node::run_observed`, which returns once the node has shut down.
    task: JoinHandle<anyhow::Result<()>>,
}

/// The addresses and flags every node of a case is started with.
struct Case {
    /// Names the case in failure messages and in the summary line.
    label: String,
    /// Gossip addresses in ascending order, so node 0 is the bootstrap node.
    gossip: Vec<SocketAddr>,
    /// API addresses, by node.
    api: Vec<SocketAddr>,
    /// The seed list every node gets, as on a command line.
    seeds: Vec<String>,
    /// `--voters`: the voter count aimed for.
    voters: usize,
    /// `--bootstrap-expect`: members the bootstrap node waits for.
    bootstrap_expect: u16,
    /// Holds every node's data dir; removed when the case ends.
    root: tempfile::TempDir,
    /// Every (term, leader) any node reported during the case.
    history: LeaderHistory,
}

impl Case {
    /// `n` nodes on free loopback ports; node `i` gets the `i`-th lowest gossip port, so
    /// `node-0` is the bootstrap node. The first `seeds` nodes are the seed list.
    fn new(label: &str, n: usize, seeds: usize, voters: usize) -> Case {
        let mut ports: Vec<u16> = (0..n).map(|_| support::free_port()).collect();
        ports.sort();
        let gossip: Vec<SocketAddr> = ports
            .iter()
            .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
            .collect();
        let api = (0..n)
            .map(|_| SocketAddr::from(([127, 0, 0, 1], support::free_port())))
            .collect();
        Case {
            label: label.to_string(),
            seeds: gossip.iter().take(seeds).map(|a| a.to_string()).collect(),
            gossip,
            api,
            voters,
            bootstrap_expect: 1,
            root: tempfile::Builder::new()
                .prefix("everynode-race-")
                .tempdir()
                .unwrap(),
            history: LeaderHistory::default(),
        }
    }

    /// The settings an operator would give on the command line, resolved the way the agent
    /// resolves its flags.
    fn config(&self, i: usize) -> NodeConfig {
        let flags = AgentFlags {
            cluster_secret_file: Some(support::cluster_secret(self.root.path())),
            node_id: Some(format!("node-{i}")),
            data_dir: Some(self.root.path().join(format!("node-{i}"))),
            cluster: Some(format!("race-{}", self.gossip[0].port())),
            gossip_addr: Some(self.gossip[i]),
            api_addr: Some(self.api[i]),
            seeds: self.seeds.clone(),
            runtime: Some(RuntimeChoice::Process),
            voters: Some(self.voters),
            bootstrap_expect: Some(self.bootstrap_expect),
            gossip_interval_ms: Some(GOSSIP_MS),
            ..AgentFlags::default()
        };
        NodeConfig::resolve(&flags).expect("valid node settings")
    }

    /// Starts node `i` and returns once its Raft is up; records every leader it sees.
    async fn start(&self, i: usize) -> TestNode {
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (raft_tx, raft_rx) = oneshot::channel::<Raft>();
        let config = self.config(i);
        // A node runs its agent's actors, which need an actix System: each node gets its own,
        // on its own thread, as `everynode agent` does.
        let task = tokio::task::spawn_blocking(move || {
            let system = actix::System::with_tokio_rt(|| {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .expect("building a node runtime")
            });
            system.block_on(everynode::node::run_observed(
                config,
                async move {
                    let _ = stop_rx.await;
                },
                move |raft| {
                    let _ = raft_tx.send(raft);
                },
            ))
        });
        let raft = match raft_rx.await {
            Ok(raft) => raft,
            Err(_) => panic!(
                "{}: node-{i} stopped before Raft started: {:?}",
                self.label,
                task.await
            ),
        };
        let mut metrics = raft.metrics();
        let history = self.history.clone();
        tokio::spawn(async move {
            loop {
                let (term, leader) = {
                    let m = metrics.borrow_and_update();
                    (m.current_term, m.current_leader)
                };
                if let Some(leader) = leader {
                    history.lock().unwrap().entry(term).or_default().insert(leader);
                }
                // Ends when the node's Raft shuts down.
                if metrics.changed().await.is_err() {
                    return;
                }
            }
        });
        let token_file = self.root.path().join(format!("node-{i}")).join("admin-token");
        TestNode {
            name: format!("node-{i}"),
            api: self.api[i],
            token: std::fs::read_to_string(token_file)
                .expect("a started node has written its admin token")
                .trim()
                .to_string(),
            raft,
            stop: Some(stop_tx),
            task,
        }
    }
}

/// One cluster as a set of nodes agreeing on it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Agreed {
    /// The leader's Raft id.
    leader: u64,
    /// Raft ids of the voters.
    voters: BTreeSet<u64>,
    /// Raft ids of members that replicate but do not vote.
    learners: BTreeSet<u64>,
}

/// `Ok` once every node inside Raft agrees on one leader and membership, exactly one node
/// leads, the voter count is what the planner wants, and every node outside Raft knows no
/// leader and no membership (so it formed nothing of its own).
fn one_cluster(nodes: &[TestNode], voters_wanted: usize) -> Result<Agreed, String> {
    let mut agreed: Option<Agreed> = None;
    let mut leading = Vec::new();
    let mut inside = 0;
    for node in nodes {
        let m = node.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let learners: BTreeSet<u64> = membership.learner_ids().collect();
        if m.state == ServerState::Leader {
            leading.push(node.name.clone());
        }
        if !voters.contains(&m.id) && !learners.contains(&m.id) {
            if !voters.is_empty() || m.current_leader.is_some() {
                return Err(format!(
                    "{} is outside Raft but knows voters {voters:?} / leader {:?}",
                    node.name, m.current_leader
                ));
            }
            continue;
        }
        inside += 1;
        let Some(leader) = m.current_leader else {
            return Err(format!(
                "{} knows no leader yet (term {})",
                node.name, m.current_term
            ));
        };
        let view = Agreed {
            leader,
            voters,
            learners,
        };
        match &agreed {
            None => agreed = Some(view),
            Some(first) if *first != view => {
                return Err(format!(
                    "{} sees {view:?}, another node sees {first:?}",
                    node.name
                ))
            }
            Some(_) => {}
        }
    }
    let Some(agreed) = agreed else {
        return Err("no node is in a cluster yet".into());
    };
    if leading.len() != 1 {
        return Err(format!("nodes in the leader state: {leading:?}"));
    }
    if agreed.voters.len() != voters_wanted {
        return Err(format!("{} voters, want {voters_wanted}", agreed.voters.len()));
    }
    let ids: BTreeSet<u64> = nodes.iter().map(|n| n.raft.metrics().borrow().id).collect();
    if !agreed.voters.is_subset(&ids) || !agreed.learners.is_subset(&ids) {
        return Err(format!(
            "membership {agreed:?} names nodes that are not running ({ids:?})"
        ));
    }
    if inside != agreed.voters.len() + agreed.learners.len() {
        return Err(format!("{inside} nodes inside Raft, membership {agreed:?}"));
    }
    Ok(agreed)
}

/// `Ok` when `node`'s member list shows exactly `leader` as leader and `voters` as voters.
async fn gossip_roles_agree(
    http: &reqwest::Client,
    node: &TestNode,
    leader: &str,
    voters: &BTreeSet<String>,
) -> Result<(), String> {
    let members: Vec<serde_json::Value> = http
        .get(format!("http://{}/v1/members", node.api))
        .bearer_auth(&node.token)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let with_role = |role: &str| -> BTreeSet<String> {
        members
            .iter()
            .filter(|m| m["role"] == role)
            .map(|m| m["name"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let leaders = with_role("leader");
    let mut voting = with_role("voter");
    voting.extend(leaders.iter().cloned());
    if leaders.len() == 1 && leaders.contains(leader) && voting == *voters {
        Ok(())
    } else {
        Err(format!(
            "{} lists leaders {leaders:?}, voters {voting:?}",
            node.name
        ))
    }
}

/// Starts the nodes in `order`, `gap` apart, and checks that they form exactly one cluster;
/// then stops every node cleanly.
async fn race(case: Case, order: &[usize], gap: Duration) {
    let n = case.gossip.len();
    let voters_wanted = desired_voters(case.voters, n);
    let t0 = Instant::now();
    let mut nodes: Vec<TestNode> = if gap.is_zero() {
        futures_util::future::join_all(order.iter().map(|&i| case.start(i))).await
    } else {
        let mut started = Vec::new();
        for (k, &i) in order.iter().enumerate() {
            if k > 0 {
                tokio::time::sleep(gap).await;
            }
            started.push(case.start(i).await);
        }
        started
    };
    nodes.sort_by(|a, b| a.name.cmp(&b.name));

    // Raft's own view, node by node.
    let agreed = loop {
        let why = match one_cluster(&nodes, voters_wanted) {
            Ok(agreed) => break agreed,
            Err(why) => why,
        };
        assert!(
            t0.elapsed() < CONVERGE,
            "{}: no single cluster after {CONVERGE:?}: {why}",
            case.label
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let formed_in = t0.elapsed();
    // It stays that way: no late bootstrap, same voters. A re-election (a heartbeat late on a
    // loaded machine) may be under way at any moment, so the check waits for one cluster
    // again; a second cluster, even a short-lived one, shows in the per-term leader history
    // checked at the end.
    tokio::time::sleep(HOLD).await;
    let held_by = Instant::now() + CONVERGE;
    let held = loop {
        match one_cluster(&nodes, voters_wanted) {
            Ok(held) => break held,
            Err(why) => assert!(
                Instant::now() < held_by,
                "{}: the cluster did not hold: {why}",
                case.label
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(held.voters, agreed.voters, "{}: voters changed", case.label);

    // What users see: every node's member list, voters and non-voters alike.
    let name_of = |id: u64| {
        nodes
            .iter()
            .find(|n| n.raft.metrics().borrow().id == id)
            .map(|n| n.name.clone())
            .unwrap()
    };
    let mut leader = name_of(held.leader);
    let voter_names: BTreeSet<String> = held.voters.iter().map(|id| name_of(*id)).collect();
    let http = reqwest::Client::new();
    for node in &nodes {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // The leader as Raft names it now: a re-election since may have moved it.
            let agrees = match one_cluster(&nodes, voters_wanted) {
                Ok(now) if now.voters != held.voters => Err(format!("Raft's voters are now {now:?}")),
                Ok(now) => {
                    leader = name_of(now.leader);
                    gossip_roles_agree(&http, node, &leader, &voter_names).await
                }
                Err(why) => Err(format!("Raft: {why}")),
            };
            match agrees {
                Ok(()) => break,
                Err(why) if Instant::now() > deadline => {
                    panic!("{}: gossip roles do not agree with Raft: {why}", case.label)
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    for node in &mut nodes {
        let _ = node.stop.take().unwrap().send(());
    }
    for node in nodes {
        let result = tokio::time::timeout(Duration::from_secs(10), node.task)
            .await
            .unwrap_or_else(|_| panic!("{}: {} did not stop within 10 s", case.label, node.name));
        result
            .expect("the node task panicked")
            .unwrap_or_else(|e| panic!("{}: {} failed: {e:#}", case.label, node.name));
    }

    let history = case.history.lock().unwrap().clone();
    for (term, leaders) in &history {
        assert_eq!(
            leaders.len(),
            1,
            "{}: term {term} had leaders {leaders:?}: two clusters formed",
            case.label
        );
    }
    eprintln!(
        "{}: one cluster in {formed_in:.1?}, leader {leader}, voters {voter_names:?}, terms seen {:?}",
        case.label,
        history.keys().collect::<Vec<_>>()
    );
}

fn label(n: usize, order: &[usize]) -> String {
    format!("{n} nodes, order {order:?}")
}

/// 3 nodes, all of them seeds: one order per test, so the cases run in parallel.
async fn three(order: [usize; 3]) {
    let case = Case::new(&label(3, &order), 3, 3, 3);
    // Shorter than the 1 s discovery window, so later nodes start while the first listens.
    race(case, &order, Duration::from_millis(400)).await;
}

/// 5 nodes, the first three seeds, `voters` voters wanted.
async fn five(order: [usize; 5], voters: usize, gap: Duration) {
    let case = Case::new(&format!("{}, {voters} voters", label(5, &order)), 5, 3, voters);
    race(case, &order, gap).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_started_at_once_form_one_cluster() {
    let _machine = crate::support::shared_machine();
    let case = Case::new("3 nodes at once", 3, 3, 3);
    race(case, &[0, 1, 2], Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_staggered_seed_first() {
    let _machine = crate::support::shared_machine();
    three([0, 1, 2]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_staggered_seed_first_others_reversed() {
    let _machine = crate::support::shared_machine();
    three([0, 2, 1]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_staggered_seed_second() {
    let _machine = crate::support::shared_machine();
    three([1, 0, 2]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_staggered_seed_second_others_reversed() {
    let _machine = crate::support::shared_machine();
    three([2, 0, 1]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_staggered_seed_last() {
    let _machine = crate::support::shared_machine();
    three([1, 2, 0]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_staggered_in_reverse() {
    let _machine = crate::support::shared_machine();
    three([2, 1, 0]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_started_at_once_form_one_cluster_of_three_voters() {
    let _machine = crate::support::shared_machine();
    five([0, 1, 2, 3, 4], 3, Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_started_at_once_form_one_cluster_of_five_voters() {
    let _machine = crate::support::shared_machine();
    five([0, 1, 2, 3, 4], 5, Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_staggered_seed_first() {
    let _machine = crate::support::shared_machine();
    five([0, 1, 2, 3, 4], 5, Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_staggered_seed_last() {
    let _machine = crate::support::shared_machine();
    five([1, 2, 3, 4, 0], 5, Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_staggered_in_reverse() {
    let _machine = crate::support::shared_machine();
    five([4, 3, 2, 1, 0], 3, Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_staggered_non_seeds_first_seed_in_the_middle() {
    let _machine = crate::support::shared_machine();
    five([3, 4, 1, 0, 2], 3, Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_staggered_seed_after_a_long_wait() {
    let _machine = crate::support::shared_machine();
    // The others have listened for longer than the discovery window before the seed comes.
    five([2, 4, 1, 3, 0], 5, Duration::from_millis(600)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_with_bootstrap_expect_staggered_seed_last() {
    let _machine = crate::support::shared_machine();
    // The bootstrap node forms only once it sees all three, with all three voting at once.
    let mut case = Case::new("3 nodes, bootstrap-expect 3, order [2, 1, 0]", 3, 3, 3);
    case.bootstrap_expect = 3;
    race(case, &[2, 1, 0], Duration::from_millis(400)).await;
}
