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
/// A leader that no majority has acknowledged for this many heartbeats is cut off, or its
/// round trips outlast the heartbeat (followers elect another after 4 heartbeats at most): it
/// proposes nothing.
pub const QUORUM_ACK_FRESH_HEARTBEATS: u64 = 10;
/// What a forwarding node keeps for itself out of the time it gives the leader, so that the
/// leader's answer arrives before the forwarding node gives up on it.
const FORWARD_MARGIN: Duration = Duration::from_millis(500);
/// The path a node forwards writes to on the leader.
pub const FORWARD_PATH: &str = "/v1/internal/write";

/// A write forwarded from another node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ForwardedWrite {
    pub command: Command,
    /// How long the leader may take, in milliseconds [default: `WRITE_WAIT`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_ms: Option<u64>,
}

impl ForwardedWrite {
    pub fn wait(&self) -> Duration {
        self.wait_ms
            .map(Duration::from_millis)
            .unwrap_or(WRITE_WAIT)
            .min(WRITE_WAIT)
    }
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
        "no leader committed the write within {}s although {reachable} of {voters} voters are reachable from node {node} (a leader election may be under way); nothing was changed, retry in a few seconds. If this persists while every node is up, Raft round trips between nodes may take longer than --raft-heartbeat-ms allows",
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
    /// This node leads and a majority looks alive in gossip, yet no majority answered its Raft
    /// messages: round trips longer than the heartbeat, or traffic passing one way only.
    #[error(
        "node {node} leads, but no majority of the {voters} voters answered its Raft messages within {heartbeat_ms} ms while this write waited, although {reachable} of them are reachable by gossip; nothing was changed. If round trips between nodes can exceed {heartbeat_ms} ms, raise --raft-heartbeat-ms (raft_heartbeat_ms) on every node; otherwise check that every node reaches the others' API port"
    )]
    Unacknowledged {
        node: String,
        reachable: usize,
        voters: usize,
        heartbeat_ms: u64,
    },
    /// The leader refused a forwarded write without proposing it; its words, passed on.
    #[error("{0}")]
    LeaderRefused(String),
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

    /// Commits `command`, forwarding it to the leader when this node does not lead.
    pub async fn write(&self, command: Command) -> Result<Response, WriteError> {
        self.write_within(command, false, WRITE_WAIT).await
    }

    /// Commits a write another node forwarded; it is never forwarded again, so no loops form.
    pub async fn write_forwarded(&self, write: ForwardedWrite) -> Result<Response, WriteError> {
        let wait = write.wait();
        self.write_within(write.command, true, wait).await
    }

    async fn write_within(
        &self,
        command: Command,
        forwarded: bool,
        wait: Duration,
    ) -> Result<Response, WriteError> {
        let deadline = Instant::now() + wait;
        let heartbeat_ms = self.raft.config().heartbeat_interval;
        // The last refusal a leader gave without proposing: the best words for a timeout.
        let mut refused: Option<String> = None;
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
                // Gossip takes seconds to notice dead peers; Raft's own acknowledgements tell
                // at once that this leader lost its majority. Proposing then would leave an
                // entry that may or may not commit later, so wait without proposing instead.
                if !quorum_acked_recently(metrics.millis_since_quorum_ack, heartbeat_ms) {
                    if Instant::now() >= deadline {
                        return Err(match self.no_quorum().await {
                            WriteError::NoLeader {
                                node,
                                reachable,
                                voters,
                            } => WriteError::Unacknowledged {
                                node,
                                reachable,
                                voters,
                                heartbeat_ms,
                            },
                            other => other,
                        });
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
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
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left <= FORWARD_MARGIN {
                        break;
                    }
                    if let Some(result) = self.forward(&addr, &command, left, &mut refused).await {
                        return result;
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(match refused {
                    Some(words) => WriteError::LeaderRefused(words),
                    None => self.no_quorum().await,
                });
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

    /// `None` means "try again": the peer was unreachable, no longer leads, or refused without
    /// proposing (its words then go to `refused`). The leader gets `left` less a margin, so
    /// that its answer comes back before this node stops waiting for it.
    async fn forward(
        &self,
        api_addr: &str,
        command: &Command,
        left: Duration,
        refused: &mut Option<String>,
    ) -> Option<Result<Response, WriteError>> {
        let body = serde_json::to_vec(&ForwardedWrite {
            command: command.clone(),
            wait_ms: Some((left - FORWARD_MARGIN).as_millis() as u64),
        })
        .expect("commands serialize");
        let answer = match self
            .peer
            .call(Method::POST, api_addr, FORWARD_PATH, Some(body), Some(left))
            .await
        {
            Ok(answer) => answer,
            // Sent, but no answer came: the leader may have proposed (and may yet commit) it,
            // so trying again elsewhere or saying "nothing was changed" could both be wrong.
            Err(e) if sent_without_answer(&e) => return Some(Err(self.no_quorum().await.proposed())),
            // Never reached it (or a stranger answered): nothing was proposed there.
            Err(_) => return None,
        };
        // The leader words its errors for people; pass them on as they are.
        let message = || {
            serde_json::from_slice::<serde_json::Value>(&answer.body)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&answer.body).into_owned())
        };
        match answer.status.as_u16() {
            200 => Some(
                serde_json::from_slice::<Response>(&answer.body)
                    .map_err(|e| WriteError::Raft(format!("undecodable answer from the leader: {e}"))),
            ),
            409 => None,
            503 => {
                *refused = Some(message());
                None
            }
            _ => Some(Err(WriteError::Raft(format!(
                "the leader at {api_addr} refused: {}",
                message()
            )))),
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

/// Whether a majority of voters acknowledged this leader within the last
/// [`QUORUM_ACK_FRESH_HEARTBEATS`] heartbeats (`None`: not since it was elected).
pub(crate) fn quorum_acked_recently(millis_since_quorum_ack: Option<u64>, heartbeat_ms: u64) -> bool {
    millis_since_quorum_ack.is_some_and(|ms| ms <= heartbeat_ms * QUORUM_ACK_FRESH_HEARTBEATS)
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
    fn a_leader_without_recent_majority_acknowledgement_proposes_nothing() {
        assert!(quorum_acked_recently(Some(0), 100));
        assert!(quorum_acked_recently(Some(1_000), 100));
        assert!(!quorum_acked_recently(Some(1_001), 100));
        assert!(quorum_acked_recently(Some(1_001), 400));
        assert!(!quorum_acked_recently(None, 100));
    }

    #[test]
    fn a_leader_its_majority_cannot_answer_in_time_names_the_heartbeat_option() {
        let text = WriteError::Unacknowledged {
            node: "n0".into(),
            reachable: 5,
            voters: 5,
            heartbeat_ms: 100,
        }
        .to_string();
        assert!(text.contains("nothing was changed"), "{text}");
        assert!(text.contains("--raft-heartbeat-ms"), "{text}");
        assert!(text.contains("5 of them are reachable"), "{text}");
    }

    #[test]
    fn a_forwarded_write_gives_the_leader_less_time_than_its_sender_waits() {
        // A sender from before `wait_ms` sends only the command.
        let wire = serde_json::to_value(ForwardedWrite {
            command: Command::Delete { name: "x".into() },
            wait_ms: None,
        })
        .unwrap();
        assert!(wire.get("wait_ms").is_none(), "{wire}");
        let old_sender: ForwardedWrite = serde_json::from_value(wire).unwrap();
        assert_eq!(old_sender.wait(), WRITE_WAIT);
        let hurried = ForwardedWrite {
            wait_ms: Some(2_000),
            ..old_sender.clone()
        };
        assert_eq!(hurried.wait(), Duration::from_millis(2_000));
        let greedy = ForwardedWrite {
            wait_ms: Some(60_000),
            ..old_sender
        };
        assert_eq!(greedy.wait(), WRITE_WAIT);
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
