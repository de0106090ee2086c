//! Every write goes through the leader: committed here when this node leads, forwarded otherwise, and refused with a clear reason when no majority answers.

use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, RaftError};
use openraft::ServerState;
use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::store::{Command, Response};
use super::types::Raft;
use crate::membership::{MemberState, Membership};
use crate::security::peer::PeerHttp;

/// How long a write waits for a leader (an election usually takes a second or two).
pub const WRITE_WAIT: Duration = Duration::from_secs(6);
/// The path a node forwards writes to on the leader.
pub const FORWARD_PATH: &str = "/v1/internal/write";

/// A write forwarded from another node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ForwardedWrite {
    pub command: Command,
}

/// Why a write was not committed; the messages are shown to users as they are.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// No leader could commit within [`WRITE_WAIT`]; nothing was written.
    #[error(
        "no leader can commit writes: {reachable} of {voters} voters reachable from node {node}, a majority ({majority}) is needed; nothing was changed (reads still work)"
    )]
    NoQuorum {
        node: String,
        reachable: usize,
        voters: usize,
        majority: usize,
    },
    /// The cluster has not been formed yet.
    #[error("the cluster has no leader yet (it is still forming: see the agent logs of the first seed); nothing was changed")]
    NotFormed,
    /// A forwarded write reached a node that is no longer the leader; the sender retries.
    #[error("this node is not the leader")]
    NotLeader,
    /// Raft refused the write for a reason other than leadership.
    #[error("the write failed: {0}")]
    Raft(String),
}

/// Commits or forwards writes; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    pub raft: Raft,
    pub raft_id: u64,
    pub membership: Membership,
    /// Signed calls to the leader.
    pub peer: PeerHttp,
}

impl Writer {
    pub fn new(raft: Raft, raft_id: u64, membership: Membership, peer: PeerHttp) -> Writer {
        Writer {
            raft,
            raft_id,
            membership,
            peer,
        }
    }

    /// Commits `command`. A `forwarded` write is never forwarded again, so no loops form.
    pub async fn write(&self, command: Command, forwarded: bool) -> Result<Response, WriteError> {
        let deadline = Instant::now() + WRITE_WAIT;
        loop {
            let metrics = self.raft.metrics().borrow().clone();
            if metrics.state == ServerState::Leader {
                let remaining = deadline.saturating_duration_since(Instant::now());
                match tokio::time::timeout(remaining, self.raft.client_write(command.clone())).await {
                    Ok(Ok(resp)) => return Ok(resp.data),
                    Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => {}
                    Ok(Err(e)) => return Err(WriteError::Raft(e.to_string())),
                    // A leader cut off from its majority cannot commit.
                    Err(_) => return Err(self.no_quorum().await),
                }
            } else if forwarded {
                return Err(WriteError::NotLeader);
            } else {
                for addr in self.leader_addrs().await {
                    if let Some(result) = self.forward(&addr, &command).await {
                        return result;
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(self.no_quorum().await);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Where the leader may be: Raft's own knowledge first, then who gossips the leader role
    /// (nodes outside the Raft group only know it from gossip).
    async fn leader_addrs(&self) -> Vec<String> {
        let metrics = self.raft.metrics().borrow().clone();
        let mut addrs = Vec::new();
        if let Some(leader) = metrics.current_leader.filter(|l| *l != self.raft_id) {
            if let Some(node) = metrics.membership_config.membership().get_node(&leader) {
                addrs.push(node.api_addr.clone());
            }
        }
        for m in self.membership.members().await {
            if m.role == super::controller::LEADER
                && m.state == MemberState::Alive
                && !addrs.contains(&m.api_addr)
            {
                addrs.push(m.api_addr);
            }
        }
        addrs
    }

    /// `None` means "try again": the peer was unreachable or no longer leads.
    async fn forward(&self, api_addr: &str, command: &Command) -> Option<Result<Response, WriteError>> {
        let body = serde_json::to_vec(&ForwardedWrite {
            command: command.clone(),
        })
        .expect("commands serialize");
        let answer = self
            .peer
            .call(Method::POST, api_addr, FORWARD_PATH, Some(body), Some(WRITE_WAIT))
            .await
            .ok()?;
        match answer.status.as_u16() {
            200 => Some(
                serde_json::from_slice::<Response>(&answer.body)
                    .map_err(|e| WriteError::Raft(format!("undecodable answer from the leader: {e}"))),
            ),
            409 | 503 => None,
            _ => {
                // The leader words its errors for people; pass them on as they are.
                let message = serde_json::from_slice::<serde_json::Value>(&answer.body)
                    .ok()
                    .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
                    .unwrap_or_else(|| String::from_utf8_lossy(&answer.body).into_owned());
                Some(Err(WriteError::Raft(format!(
                    "the leader at {api_addr} refused: {message}"
                ))))
            }
        }
    }

    async fn no_quorum(&self) -> WriteError {
        let metrics = self.raft.metrics().borrow().clone();
        let members = self.membership.members().await;
        let voter_names: Vec<String> = {
            let raft_voters: Vec<String> = metrics
                .membership_config
                .membership()
                .voter_ids()
                .filter_map(|id| {
                    metrics
                        .membership_config
                        .membership()
                        .get_node(&id)
                        .map(|n| n.name.clone())
                })
                .collect();
            if raft_voters.is_empty() {
                members
                    .iter()
                    .filter(|m| super::controller::votes(&m.role))
                    .map(|m| m.name.clone())
                    .collect()
            } else {
                raft_voters
            }
        };
        if voter_names.is_empty() {
            return WriteError::NotFormed;
        }
        let reachable = voter_names
            .iter()
            .filter(|name| {
                members
                    .iter()
                    .any(|m| &m.name == *name && m.state == MemberState::Alive)
            })
            .count();
        WriteError::NoQuorum {
            node: self.membership.node_id().to_string(),
            reachable,
            voters: voter_names.len(),
            majority: voter_names.len() / 2 + 1,
        }
    }
}
