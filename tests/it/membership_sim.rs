//! Simulated clusters of real `Membership` handles gossiping over chitchat's in-process channel transport.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chitchat::transport::ChannelTransport;
use everynode::membership::{keys, Member, MemberState, Membership, MembershipConfig};

/// The largest UDP payload, so the simulation refuses exactly the messages real UDP would.
const UDP_MTU: usize = 65_507;
/// Short enough for a quick test, long enough that two tests sharing two cores do not starve
/// heartbeats for the 8 intervals that would make a healthy node look dead.
const GOSSIP_INTERVAL: Duration = Duration::from_millis(100);
/// Generous: convergence takes a few seconds; the deadline only bounds a broken run (and a
/// run slowed down by other tests sharing the cores).
const DEADLINE: Duration = Duration::from_secs(60);

fn gossip_addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 10_000 + i as u16))
}

fn node_name(i: usize) -> String {
    format!("node-{i:03}")
}

/// Starts `n` nodes that all know only node 0 as their seed, as an operator would start them.
async fn start_cluster(n: usize, transport: &ChannelTransport) -> Vec<Membership> {
    let mut nodes = Vec::with_capacity(n);
    for i in 0..n {
        let name = node_name(i);
        let labels = everynode::node::node_labels(&name, &BTreeMap::new());
        let config = MembershipConfig {
            node_id: name,
            generation: 1,
            cluster: "sim".into(),
            listen_addr: gossip_addr(i),
            advertise_addr: gossip_addr(i),
            seeds: vec![gossip_addr(0).to_string()],
            gossip_interval: GOSSIP_INTERVAL,
            // As in production: a dead node stays listed (as dead) for the whole test.
            dead_node_grace: Duration::from_secs(3600),
            // Realistic payloads, so message sizes resemble a real fleet's.
            initial_keys: vec![
                (keys::API_ADDR.into(), format!("127.0.0.1:{}", 20_000 + i)),
                (keys::LABELS.into(), keys::encode_labels(&labels)),
                (keys::RUNTIME.into(), "process".into()),
            ],
        };
        let node = Membership::start(config, Box::new(transport.clone()))
            .await
            .expect("starting a simulated node");
        nodes.push(node);
    }
    nodes
}

async fn views(nodes: &[Membership]) -> Vec<Vec<Member>> {
    let mut views = Vec::with_capacity(nodes.len());
    for node in nodes {
        views.push(node.members().await);
    }
    views
}

/// One line per node: what it lists and which expected names it lacks, so a timeout shows where
/// the views disagree.
fn describe(nodes: &[Membership], views: &[Vec<Member>], expected: &[String]) -> String {
    let mut out = String::new();
    for (node, view) in nodes.iter().zip(views) {
        let alive = view.iter().filter(|m| m.state == MemberState::Alive).count();
        let dead: Vec<&str> = view
            .iter()
            .filter(|m| m.state == MemberState::Dead)
            .map(|m| m.name.as_str())
            .collect();
        let missing: Vec<&str> = expected
            .iter()
            .filter(|name| !view.iter().any(|m| &m.name == *name))
            .map(String::as_str)
            .collect();
        out.push_str(&format!(
            "  {}: {} listed, {alive} alive, dead {dead:?}, missing {missing:?}\n",
            node.node_id(),
            view.len()
        ));
    }
    out
}

/// Polls `check` until it returns `Ok`, failing with its last explanation at the deadline.
async fn wait_until<F, Fut>(what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let start = Instant::now();
    loop {
        let outcome = check().await;
        match outcome {
            Ok(()) => return start.elapsed(),
            Err(explanation) if start.elapsed() > DEADLINE => {
                panic!("timed out after {DEADLINE:?} waiting until {what}:\n{explanation}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Every node in `observers` lists every name in `expected` alive, each exactly once, and
/// nothing else.
async fn all_see_alive(observers: &[Membership], expected: &[String]) -> Result<(), String> {
    let views = views(observers).await;
    if every_view_lists_alive(&views, expected) {
        Ok(())
    } else {
        Err(describe(observers, &views, expected))
    }
}

/// Every view lists every name in `expected` alive, each exactly once, and nothing else.
fn every_view_lists_alive(views: &[Vec<Member>], expected: &[String]) -> bool {
    views.iter().all(|view| {
        view.len() == expected.len()
            && expected.iter().all(|name| {
                let entries: Vec<&Member> = view.iter().filter(|m| &m.name == name).collect();
                entries.len() == 1 && entries[0].state == MemberState::Alive
            })
    })
}

async fn shutdown_all(nodes: &[Membership]) {
    for node in nodes {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_nodes_seeded_by_one_converge_to_one_view() {
    let _machine = crate::support::shared_machine();
    const N: usize = 50;
    let transport = ChannelTransport::with_mtu(UDP_MTU);
    let nodes = start_cluster(N, &transport).await;
    let names: Vec<String> = (0..N).map(node_name).collect();

    // One view means the same members with the same published keys everywhere. Every member
    // alive somewhere does not yet mean every key everywhere, so both are waited for, on the
    // same snapshot of the views.
    let took = wait_until(
        "all 50 nodes list 50 alive members and agree on one view",
        || async {
            let views = views(&nodes).await;
            if !every_view_lists_alive(&views, &names) {
                return Err(describe(&nodes, &views, &names));
            }
            for (node, view) in nodes.iter().zip(&views) {
                if view != &views[0] {
                    let differs = view
                        .iter()
                        .zip(&views[0])
                        .find(|(a, b)| a != b)
                        .map(|(a, b)| format!("{a:?}\n  vs {b:?}"))
                        .unwrap_or_default();
                    return Err(format!(
                        "{} disagrees with {}: {differs}",
                        node.node_id(),
                        nodes[0].node_id()
                    ));
                }
            }
            Ok(())
        },
    )
    .await;
    eprintln!("50 nodes converged to one view in {took:?}");
    shutdown_all(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_off_node_is_seen_dead_then_alive_again_once_links_return() {
    let _machine = crate::support::shared_machine();
    const N: usize = 20;
    // Not the seed: peers must rediscover it through gossip, not through their seed list.
    const CUT: usize = 7;
    let transport = ChannelTransport::with_mtu(UDP_MTU);
    let nodes = start_cluster(N, &transport).await;
    let names: Vec<String> = (0..N).map(node_name).collect();
    wait_until("all nodes list every node alive", || {
        all_see_alive(&nodes, &names)
    })
    .await;

    for other in (0..N).filter(|&i| i != CUT) {
        transport.remove_link(gossip_addr(CUT), gossip_addr(other)).await;
    }
    let survivors: Vec<Membership> = nodes
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != CUT)
        .map(|(_, node)| node.clone())
        .collect();
    let cut_name = node_name(CUT);
    let took = wait_until("every other node lists the cut-off node as dead", || async {
        let views = views(&survivors).await;
        let all_dead = views.iter().all(|view| {
            view.iter()
                .any(|m| m.name == cut_name && m.state == MemberState::Dead)
        });
        if all_dead {
            Ok(())
        } else {
            Err(describe(&survivors, &views, &names))
        }
    })
    .await;
    eprintln!("cut-off node seen dead by all in {took:?}");

    for other in (0..N).filter(|&i| i != CUT) {
        transport.add_link(gossip_addr(CUT), gossip_addr(other)).await;
    }
    let took = wait_until("every node lists the healed node alive, exactly once", || {
        all_see_alive(&nodes, &names)
    })
    .await;
    eprintln!("healed node seen alive by all in {took:?}");
    shutdown_all(&nodes).await;
}
