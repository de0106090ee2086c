//! The leader's rollout loop: feeds the planner the applied store and the gossiped node statuses, and commits its steps through Raft.
//!
//! Only a leader whose state machine has applied its whole log plans, so a step is never based
//! on a store that lacks an earlier grant; each step names the rollout `seq` it was planned on
//! and the store refuses it if anything changed meanwhile. The node statuses come from gossip
//! and may lag, which the planner tolerates by counting granted nodes as unavailable until they
//! report otherwise.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openraft::ServerState;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::planner::{plan, Decision, NodeView, PlanInput};
use crate::agent::status::{node_count, NodeCount};
use crate::control::nodes;
use crate::control::store::{Command, DaemonSetRecord, Response, Store};
use crate::control::Raft;
use crate::membership::{Member, MemberState, Membership};
use crate::scheduling::placement::should_run;
use crate::spec::{RolloutPolicy, Strategy};

/// How often the leader looks at every rollout. Grants also wait for gossip to carry the
/// statuses, so planning faster than a gossip round buys little.
pub const TICK: Duration = Duration::from_millis(200);

/// Whether `member` should run `record`'s DaemonSet: selected, not drained. Liveness aside.
pub fn selects(record: &DaemonSetRecord, member: &Member, store: &Store) -> bool {
    !store.is_drained(&member.name)
        && should_run(&record.daemonset, &nodes::effective(member, store)).should_run
}

/// The eligible nodes of a DaemonSet: alive and selected. Dead and unreachable nodes are left
/// out, so they never hold a rollout hostage; they converge when they return.
pub fn eligible<'a>(record: &'a DaemonSetRecord, members: &'a [Member], store: &Store) -> Vec<NodeView<'a>> {
    members
        .iter()
        .filter(|m| m.state == MemberState::Alive && selects(record, m, store))
        .map(|m| NodeView {
            name: &m.name,
            status: m.pods.get(&record.daemonset.metadata.name),
        })
        .collect()
}

/// The selected nodes that are not eligible but still the DaemonSet's, at unix second `now`:
/// dead for less than `grace` (`--dead-node-grace`, as `get ds` counts them), or held back and
/// not seen alive by this node (joining, or not heard of: a new leader may not know every node
/// at once) for less than `grace` since the rollout finished without them.
pub fn absent<'a>(
    record: &'a DaemonSetRecord,
    members: &'a [Member],
    store: &Store,
    now: u64,
    grace: Duration,
) -> Vec<&'a str> {
    let held = &record.rollout.held;
    let held_within = |name: &str| {
        held.get(name)
            .is_none_or(|h| h.since.saturating_add(grace.as_secs()) > now)
    };
    let mut out: Vec<&str> = members
        .iter()
        .filter(|m| match m.state {
            MemberState::Alive | MemberState::Left => false,
            MemberState::Dead => {
                let dead_for = m.dead_since.map(|s| Duration::from_secs(now.saturating_sub(s)));
                node_count(m.state, dead_for, grace) == NodeCount::Lost
            }
            MemberState::Joining => held_within(&m.name),
        })
        .filter(|m| selects(record, m, store))
        .map(|m| m.name.as_str())
        .collect();
    out.extend(
        held.keys()
            .filter(|n| !members.iter().any(|m| m.name == **n) && held_within(n))
            .map(String::as_str),
    );
    out
}

pub fn unix_now() -> u64 {
    unix_now_ms() / 1000
}

pub fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// One planning step for one DaemonSet at unix millisecond `now_ms`; `grace` is
/// `--dead-node-grace`.
pub fn decide(
    record: &DaemonSetRecord,
    members: &[Member],
    store: &Store,
    now_ms: u64,
    grace: Duration,
) -> Decision {
    let ds = &record.daemonset;
    let nodes = eligible(record, members, store);
    let absent = absent(record, members, store, now_ms / 1000, grace);
    plan(
        &PlanInput {
            strategy: Strategy::from_spec(&ds.spec.update_strategy),
            min_ready_secs: ds.spec.min_ready().as_secs(),
            policy: RolloutPolicy::of(&ds.metadata.annotations),
            current: &record.current_revision().hash,
            state: &record.rollout,
            nodes: &nodes,
            absent: &absent,
            now: now_ms / 1000,
            now_ms,
        },
        &[],
    )
}

/// The command that commits `decision`, planned on `record` (DaemonSet `name`) at unix second `at`.
pub fn step(name: &str, record: &DaemonSetRecord, decision: Decision, at: u64) -> Command {
    Command::RolloutStep {
        name: name.to_string(),
        seq: record.rollout.seq,
        revision: record.current_revision().hash.clone(),
        grant: decision.grant,
        failure: decision.failure,
        complete: decision.complete,
        at,
        hold: decision.hold,
        release: decision.release,
    }
}

/// How long a leader must have run before it takes a node gossip does not know for gone: long
/// enough to have heard of every live member (gossip converges in seconds; a node dead for
/// less than chitchat's dead-node grace of a day is still listed as dead).
pub const FORGET_AFTER_UPTIME: Duration = Duration::from_secs(600);

/// Nodes the rollout state still names (grants, holds, `delete pod` counts) that gossip does
/// not list at all, not even as dead: gone for longer than chitchat's dead-node grace. Their
/// records would otherwise stay forever (a node that simply died never sends `NodeLeft`).
pub fn forgotten_nodes(store: &Store, members: &[Member]) -> Vec<String> {
    let known: std::collections::BTreeSet<&str> = members.iter().map(|m| m.name.as_str()).collect();
    let mut named = std::collections::BTreeSet::new();
    for r in store.daemonsets.values() {
        let s = &r.rollout;
        named.extend(
            s.grants
                .keys()
                .chain(s.held.keys())
                .chain(s.pod_generations.keys())
                .cloned(),
        );
    }
    named
        .into_iter()
        .filter(|n| !known.contains(n.as_str()))
        .collect()
}

/// Runs on every node; acts only while this node leads. `grace` is `--dead-node-grace`.
pub async fn run(raft: Raft, applied: watch::Receiver<Arc<Store>>, membership: Membership, grace: Duration) {
    let started = std::time::Instant::now();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_prune = started;
    loop {
        tick.tick().await;
        let metrics = raft.metrics().borrow().clone();
        if metrics.state != ServerState::Leader {
            continue;
        }
        // A fresh leader applies the entries of earlier terms first; plan only on all of them.
        let applied_index = metrics.last_applied.map(|l| l.index);
        if applied_index < metrics.last_log_index {
            continue;
        }
        let store = applied.borrow().clone();
        if started.elapsed() > FORGET_AFTER_UPTIME && last_prune.elapsed() > Duration::from_secs(60) {
            last_prune = std::time::Instant::now();
            let gone = forgotten_nodes(&store, &membership.members().await);
            if !gone.is_empty() {
                info!(nodes = ?gone, "forgetting the rollout records of nodes gossip no longer lists (gone for over a day)");
                let cmd = Command::ForgetRolloutNodes { nodes: gone };
                if let Err(e) = raft.client_write(cmd).await {
                    debug!(error = %e, "forgetting gone nodes not committed");
                }
                continue;
            }
        }
        if store.daemonsets.values().all(|r| !r.rollout.unfinished()) {
            continue;
        }
        let members = membership.members().await;
        let now_ms = unix_now_ms();
        let now = now_ms / 1000;
        for (name, record) in &store.daemonsets {
            let decision = decide(record, &members, &store, now_ms, grace);
            if decision.is_noop() {
                continue;
            }
            if !decision.grant.is_empty() {
                info!(daemonset = %name, nodes = ?decision.grant, revision = record.current_revision().number, "rollout wave");
            }
            if let Some(f) = &decision.failure {
                warn!(daemonset = %name, reason = %f.reason, "rollout failed");
            }
            if !decision.hold.is_empty() {
                info!(daemonset = %name, nodes = ?decision.hold, "rollout finished; absent nodes held back until they return");
            }
            if !decision.release.is_empty() {
                info!(daemonset = %name, nodes = ?decision.release, "held nodes released: gone past the dead-node grace, left, or no longer selected");
            }
            let cmd = step(name, record, decision, now);
            match raft.client_write(cmd).await {
                Ok(r) if matches!(r.data, Response::Ok) => {}
                Ok(r) => debug!(daemonset = %name, response = ?r.data, "rollout step not taken"),
                // Lost the leadership meanwhile: the next leader plans again from the store.
                Err(e) => debug!(daemonset = %name, error = %e, "rollout step not committed"),
            }
        }
    }
}
