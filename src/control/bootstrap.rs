//! Who may form a new Raft cluster: a pure rule that lets exactly one node of a seed list bootstrap.
//!
//! The rule: a node initializes a cluster only when (1) it has no Raft state of its own, (2) no
//! member it can see belongs to a cluster, (3) it is the bootstrap node — the first entry of the
//! seed list in sorted order, or any node started without seeds, (4) it has listened to gossip for
//! a discovery window, and (5) it sees at least `bootstrap_expect` members. Every host runs with
//! the same seed list, so at most one node in the fleet satisfies (3): two clusters cannot form
//! from a fresh start whatever the start order. Every other node waits to be added by the leader.

use std::net::SocketAddr;
use std::time::Duration;

/// What the local node sees when it decides; plain data so a table of cases tests the rule.
#[derive(Debug, Clone)]
pub struct BootstrapView<'a> {
    /// This node's gossip address as others see it.
    pub self_addr: SocketAddr,
    /// The configured seeds, resolved; empty when the node was started alone.
    pub seeds: &'a [SocketAddr],
    /// Whether this node already has Raft state (a vote, a log or a membership).
    pub initialized: bool,
    /// Alive members seen by gossip (self included) and whether each reports being in a cluster.
    pub alive: &'a [(String, bool)],
    /// How long this node has been gossiping.
    pub listened: Duration,
    /// Minimum gossip time before forming a cluster, so an existing one is heard first.
    pub discovery_window: Duration,
    /// Members required before forming the cluster (`--bootstrap-expect`).
    pub bootstrap_expect: usize,
}

/// The rule's verdict, with the reason shown in logs while waiting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootstrap {
    /// Already part of a cluster; nothing to decide.
    AlreadyMember,
    /// A cluster exists; wait for its leader to add this node.
    Join,
    /// Form the cluster now.
    Form,
    /// Not yet; the message says what we wait for.
    Wait(String),
}

/// The node allowed to form a cluster: the lowest seed address (or self, without seeds).
pub fn bootstrap_node(self_addr: SocketAddr, seeds: &[SocketAddr]) -> SocketAddr {
    seeds.iter().copied().min().unwrap_or(self_addr)
}

pub fn decide(view: &BootstrapView<'_>) -> Bootstrap {
    if view.initialized {
        return Bootstrap::AlreadyMember;
    }
    if view.alive.iter().any(|(_, in_cluster)| *in_cluster) {
        return Bootstrap::Join;
    }
    let leader_to_be = bootstrap_node(view.self_addr, view.seeds);
    if leader_to_be != view.self_addr {
        return Bootstrap::Wait(format!(
            "waiting for the bootstrap node {leader_to_be} (the first seed) to form the cluster"
        ));
    }
    if view.listened < view.discovery_window {
        return Bootstrap::Wait("listening for an existing cluster before forming one".into());
    }
    if view.alive.len() < view.bootstrap_expect {
        return Bootstrap::Wait(format!(
            "waiting for {} members before forming the cluster (bootstrap-expect), {} seen",
            view.bootstrap_expect,
            view.alive.len()
        ));
    }
    Bootstrap::Form
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], port))
    }

    fn view<'a>(self_port: u16, seeds: &'a [SocketAddr], alive: &'a [(String, bool)]) -> BootstrapView<'a> {
        BootstrapView {
            self_addr: addr(self_port),
            seeds,
            initialized: false,
            alive,
            listened: Duration::from_secs(5),
            discovery_window: Duration::from_secs(2),
            bootstrap_expect: 1,
        }
    }

    #[test]
    fn a_lone_node_without_seeds_forms_its_cluster() {
        let alive = [("a".to_string(), false)];
        assert_eq!(decide(&view(1, &[], &alive)), Bootstrap::Form);
    }

    #[test]
    fn only_the_lowest_seed_forms_the_cluster() {
        let seeds = [addr(3), addr(1), addr(2)];
        let alive = [
            ("a".to_string(), false),
            ("b".to_string(), false),
            ("c".to_string(), false),
        ];
        let formers: Vec<u16> = (1..=4)
            .filter(|p| decide(&view(*p, &seeds, &alive)) == Bootstrap::Form)
            .collect();
        assert_eq!(formers, vec![1]);
    }

    #[test]
    fn an_existing_cluster_is_joined_never_reformed() {
        let seeds = [addr(1)];
        let alive = [("a".to_string(), false), ("b".to_string(), true)];
        assert_eq!(decide(&view(1, &seeds, &alive)), Bootstrap::Join);
        let mut v = view(1, &seeds, &alive);
        v.initialized = true;
        assert_eq!(decide(&v), Bootstrap::AlreadyMember);
    }

    #[test]
    fn the_bootstrap_node_listens_first_and_honours_bootstrap_expect() {
        let seeds = [addr(1)];
        let alive = [("a".to_string(), false), ("b".to_string(), false)];
        let mut v = view(1, &seeds, &alive);
        v.listened = Duration::from_millis(500);
        assert!(matches!(decide(&v), Bootstrap::Wait(m) if m.contains("listening")));
        v.listened = Duration::from_secs(3);
        v.bootstrap_expect = 3;
        assert!(matches!(decide(&v), Bootstrap::Wait(m) if m.contains("3 members")));
        v.bootstrap_expect = 2;
        assert_eq!(decide(&v), Bootstrap::Form);
    }
}
