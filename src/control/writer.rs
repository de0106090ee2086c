//! Every write goes through the leader: committed here when this node leads, forwarded otherwise, and refused with a clear reason when no majority answers.

use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, RaftError};
use openraft::ServerState;
use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::store::{Command, Response};
use super::types::Raft;
use crate::membership::{MemberState, Membership};
use crate::security::peer::{PeerError, PeerHttp};

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
    /// Enough voters are reachable, yet no leader committed within [`WRITE_WAIT`] (an election
    /// was under way, or the leader did not answer); this node proposed nothing.
    #[error(
        "no leader committed the write within {}s although {reachable} of {voters} voters are reachable from node {node} (a leader election may be under way); nothing was changed, retry in a few seconds",
        WRITE_WAIT.as_secs()
    )]
    NoLeader {
        node: String,
        reachable: usize,
        voters: usize,
    },
    /// This node led and proposed the write, but no majority confirmed it in time: the entry
    /// may still commit, so saying "nothing was changed" would be a lie.
    #[error(
        "the write was not confirmed within {}s ({reachable} of {voters} voters reachable from node {node}); it may still take effect: check with `everynode get` before retrying",
        WRITE_WAIT.as_secs()
    )]
    Unconfirmed {
        node: String,
        reachable: usize,
        voters: usize,
    },
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
                // A leader that can see no majority refuses before proposing, so that its
                // "nothing was changed" stays true.
                if let refusal @ (WriteError::NoQuorum { .. } | WriteError::NotFormed) =
                    self.no_quorum().await
                {
                    return Err(refusal);
                }
                let remaining = deadline.saturating_duration_since(Instant::now());
                match tokio::time::timeout(remaining, self.raft.client_write(command.clone())).await {
                    Ok(Ok(resp)) => return Ok(resp.data),
                    Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => {}
                    Ok(Err(e)) => return Err(WriteError::Raft(e.to_string())),
                    // Proposed but not committed in time: it may still commit.
                    Err(_) => return Err(self.no_quorum().await.proposed()),
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
        let answer = match self
            .peer
            .call(Method::POST, api_addr, FORWARD_PATH, Some(body), Some(WRITE_WAIT))
            .await
        {
            Ok(answer) => answer,
            // Sent, but no answer came: the leader may have proposed (and may yet commit) it,
            // so trying again elsewhere or saying "nothing was changed" could both be wrong.
            Err(e) if sent_without_answer(&e) => return Some(Err(self.no_quorum().await.proposed())),
            // Never reached it (or a stranger answered): nothing was proposed there.
            Err(_) => return None,
        };
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
        refusal(
            self.membership.node_id().to_string(),
            reachable,
            voter_names.len(),
        )
    }
}

/// Why no write was committed, as far as this node can tell from which voters gossip reaches.
fn refusal(node: String, reachable: usize, voters: usize) -> WriteError {
    let majority = voters / 2 + 1;
    if reachable >= majority {
        WriteError::NoLeader {
            node,
            reachable,
            voters,
        }
    } else {
        WriteError::NoQuorum {
            node,
            reachable,
            voters,
            majority,
        }
    }
}

/// Whether a forwarded write went out but its answer never came back (as opposed to a
/// connection that was never made).
fn sent_without_answer(e: &PeerError) -> bool {
    match e {
        PeerError::Unreachable { source, .. } => source.is_timeout() && !source.is_connect(),
        PeerError::Transfer { .. } => true,
        PeerError::Unauthentic { .. } => false,
    }
}

impl WriteError {
    /// The same refusal for a write this node already proposed as leader.
    fn proposed(self) -> WriteError {
        match self {
            WriteError::NoQuorum {
                node,
                reachable,
                voters,
                ..
            }
            | WriteError::NoLeader {
                node,
                reachable,
                voters,
            } => WriteError::Unconfirmed {
                node,
                reachable,
                voters,
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_with_a_reachable_majority_does_not_claim_the_majority_is_missing() {
        let text = refusal("n0".into(), 5, 5).to_string();
        assert!(!text.contains("a majority (3) is needed"), "{text}");
        assert!(
            text.contains("5 of 5 voters are reachable") && text.contains("election"),
            "{text}"
        );
        let text = refusal("n2".into(), 2, 5).to_string();
        assert!(
            text.contains("no leader can commit writes: 2 of 5 voters reachable from node n2, a majority (3) is needed; nothing was changed"),
            "{text}"
        );
    }

    #[test]
    fn a_proposed_write_that_timed_out_is_not_reported_as_unchanged() {
        for (reachable, voters) in [(1, 3), (2, 5), (5, 5)] {
            let text = refusal("n1".into(), reachable, voters).proposed().to_string();
            assert!(!text.contains("nothing was changed"), "{text}");
            assert!(text.contains("may still take effect"), "{text}");
        }
    }

    #[tokio::test]
    async fn a_forwarded_write_without_an_answer_is_not_taken_for_an_unsent_one() {
        // A leader that takes the request and never answers: it may have proposed the write.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((conn, _)) = silent.accept().await {
                held.push(conn);
            }
        });
        let peer = PeerHttp::new(None, None, Duration::from_millis(500), None).unwrap();
        let body = Some(b"{}".to_vec());
        let err = peer
            .call(
                Method::POST,
                &addr,
                FORWARD_PATH,
                body.clone(),
                Some(Duration::from_millis(300)),
            )
            .await
            .unwrap_err();
        assert!(sent_without_answer(&err), "{err}");
        // Nobody listens: the write never left this node, so trying elsewhere is safe.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .to_string();
        let err = peer
            .call(
                Method::POST,
                &closed,
                FORWARD_PATH,
                body,
                Some(Duration::from_millis(300)),
            )
            .await
            .unwrap_err();
        assert!(!sent_without_answer(&err), "{err}");
    }
}
