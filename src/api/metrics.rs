//! Prometheus text exposition of the node's gauges and counters.
//!
//! Values are read at scrape time from the live objects, so a tiny writer is simpler than
//! registering collectors in a metrics crate.

use std::fmt::Write;

use super::ApiState;
use crate::membership::{Member, MemberState};

/// Accumulates metric families in the text format (version 0.0.4).
#[derive(Default)]
struct Exposition(String);

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let escaped = v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
                let _ = write!(self.0, "{k}=\"{escaped}\"");
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }
}

/// Renders every metric of this node.
pub async fn render(state: &ApiState) -> String {
    let membership = &state.membership;
    let members: Vec<Member> = membership.members().await;
    let count = |state| members.iter().filter(|m| m.state == state).count() as u64;
    let alive = count(MemberState::Alive);
    let left = count(MemberState::Left);
    let dead = members.len() as u64 - alive - left;
    let [packets_sent, bytes_sent, packets_received, bytes_received] = membership.stats().snapshot();

    let mut out = Exposition::default();
    out.family(
        "everynode_members",
        "gauge",
        "Cluster members known to this node, by state.",
    );
    out.sample("everynode_members", &[("state", "alive")], alive);
    out.sample("everynode_members", &[("state", "dead")], dead);
    out.sample("everynode_members", &[("state", "left")], left);
    out.family(
        "everynode_gossip_packets_total",
        "counter",
        "Gossip datagrams, by direction.",
    );
    out.sample(
        "everynode_gossip_packets_total",
        &[("direction", "sent")],
        packets_sent,
    );
    out.sample(
        "everynode_gossip_packets_total",
        &[("direction", "received")],
        packets_received,
    );
    out.family(
        "everynode_gossip_bytes_total",
        "counter",
        "Gossip payload bytes, by direction.",
    );
    out.sample(
        "everynode_gossip_bytes_total",
        &[("direction", "sent")],
        bytes_sent,
    );
    out.sample(
        "everynode_gossip_bytes_total",
        &[("direction", "received")],
        bytes_received,
    );
    out.family(
        "everynode_gossip_rejected_total",
        "counter",
        "Gossip datagrams dropped unopened, by reason (malformed, unauthentic, replayed, stale).",
    );
    for (reason, count) in membership.stats().rejected_snapshot() {
        out.sample("everynode_gossip_rejected_total", &[("reason", reason)], count);
    }
    out.family(
        "everynode_api_refused_total",
        "counter",
        "API requests refused before any handler ran, by reason.",
    );
    for (reason, count) in state.auth.refused.snapshot() {
        out.sample("everynode_api_refused_total", &[("reason", reason)], count);
    }
    let raft = state.control.raft.metrics().borrow().clone();
    out.family("everynode_raft_term", "gauge", "Raft term this node knows.");
    out.sample("everynode_raft_term", &[], raft.current_term);
    out.family(
        "everynode_raft_leader",
        "gauge",
        "1 when this node is the Raft leader.",
    );
    out.sample(
        "everynode_raft_leader",
        &[],
        u64::from(raft.state == openraft::ServerState::Leader),
    );
    out.family(
        "everynode_raft_applied_index",
        "gauge",
        "Highest Raft log index applied on this node.",
    );
    out.sample(
        "everynode_raft_applied_index",
        &[],
        raft.last_applied.map(|l| l.index).unwrap_or(0),
    );
    let store = state.control.replica.current();
    out.family(
        "everynode_store_version",
        "gauge",
        "Version of the store copy this node serves.",
    );
    out.sample("everynode_store_version", &[], store.version);
    out.family(
        "everynode_store_copy_stale",
        "gauge",
        "1 while peers hold a newer store that this node could not fetch or save (see the log).",
    );
    out.sample(
        "everynode_store_copy_stale",
        &[],
        u64::from(state.control.replica.stale().is_some()),
    );
    out.family("everynode_daemonsets", "gauge", "DaemonSets in the store copy.");
    out.sample("everynode_daemonsets", &[], store.daemonsets.len() as u64);
    out.family(
        "everynode_build_info",
        "gauge",
        "The everynode version this node runs.",
    );
    out.sample(
        "everynode_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
    out.0
}
