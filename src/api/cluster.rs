//! `GET /v1/cluster`: the Raft group as this node sees it.

use std::collections::BTreeSet;

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::ApiState;
use crate::membership::MemberState;

/// `GET /v1/cluster`: the Raft group as this node sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterView {
    /// The node answering.
    pub node: String,
    /// This node's role: leader, voter, learner or non-voter.
    pub role: String,
    /// Raft term this node knows; `None` on nodes outside the Raft group.
    pub term: Option<u64>,
    pub leader: Option<String>,
    pub voters: Vec<String>,
    pub learners: Vec<String>,
    /// Highest log index committed and applied here (the leader's is the cluster's).
    pub commit_index: Option<u64>,
    /// Version of the store copy this node serves reads from.
    pub store_version: u64,
    /// The Raft group (epoch) that copy belongs to.
    #[serde(default)]
    pub store_epoch: String,
}

pub async fn cluster(State(s): State<ApiState>) -> Json<ClusterView> {
    use crate::control::controller::{self as roles, role_of};
    let m = s.control.raft.metrics().borrow().clone();
    let membership = m.membership_config.membership();
    let name_of = |id: u64| {
        membership
            .get_node(&id)
            .map(|n| n.name.clone())
            .unwrap_or_else(|| id.to_string())
    };
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    let learners: BTreeSet<u64> = membership.learner_ids().collect();
    let role = role_of(m.id, m.state, &voters, &learners).to_string();
    let members = s.membership.members().await;
    let in_group = voters.contains(&m.id) || learners.contains(&m.id);
    // Nodes outside the Raft group know the group only from gossip.
    let (leader, voter_names) = if in_group {
        // A leader cut off from its majority stays leader in Raft's eyes until it hears a newer
        // term, but it is nobody's leader: it can commit nothing.
        let cut_off = m.state == openraft::ServerState::Leader
            && !crate::control::writer::quorum_acked_recently(
                m.millis_since_quorum_ack,
                s.control.raft.config().heartbeat_interval,
            );
        (
            m.current_leader.filter(|_| !cut_off).map(name_of),
            voters.iter().map(|id| name_of(*id)).collect(),
        )
    } else {
        // Only a live member leads: a dead leader keeps gossiping its role in its last state.
        let leader = members
            .iter()
            .find(|x| x.role == roles::LEADER && x.state == MemberState::Alive)
            .map(|x| x.name.clone());
        let voters = members
            .iter()
            .filter(|x| roles::votes(&x.role))
            .map(|x| x.name.clone())
            .collect();
        (leader, voters)
    };
    Json(ClusterView {
        node: s.membership.node_id().to_string(),
        role,
        term: in_group.then_some(m.current_term),
        leader,
        voters: voter_names,
        learners: learners.iter().map(|id| name_of(*id)).collect(),
        commit_index: in_group.then(|| m.last_applied.map(|l| l.index)).flatten(),
        store_version: s.control.replica.version(),
        store_epoch: s.control.replica.epoch(),
    })
}
