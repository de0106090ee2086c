//! Prometheus text exposition of the node's gauges and counters.
//!
//! Values are read at scrape time from the live objects, so a tiny writer is simpler than
//! registering collectors in a metrics crate.

use std::fmt::Write;

use crate::membership::{Member, MemberState, Membership};

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
pub async fn render(membership: &Membership) -> String {
    let members: Vec<Member> = membership.members().await;
    let alive = members.iter().filter(|m| m.state == MemberState::Alive).count() as u64;
    let dead = members.len() as u64 - alive;
    let [packets_sent, bytes_sent, packets_received, bytes_received] = membership.stats().snapshot();

    let mut out = Exposition::default();
    out.family(
        "everynode_members",
        "gauge",
        "Cluster members known to this node, by state.",
    );
    out.sample("everynode_members", &[("state", "alive")], alive);
    out.sample("everynode_members", &[("state", "dead")], dead);
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
