//! Raft RPCs over HTTP: the reqwest client openraft uses, and the handlers the API mounts.
//!
//! Wire contract: each RPC is a `POST` of a JSON request to `{api_addr}{PATH}`; the server
//! answers `200` with the handler's `Result` as JSON (`{"Ok": ...}` or `{"Err": ...}`), e.g.
//! `Json(handle_append(&raft, req).await)` in axum. Any other status means "not served here"
//! (no such route, auth refused, node starting) and counts as unreachable.

use std::future::Future;
use std::io::{self, Cursor};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RemoteError, ReplicationClosed, StreamingError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{InstallSnapshotRequest, InstallSnapshotResponse};
use openraft::OptionalSend;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::control::types::{
    AppendEntriesRequest, AppendEntriesResponse, Fatal, NodeId, RPCError, Raft, RaftError, RaftNode,
    Snapshot, SnapshotMeta, SnapshotResponse, TypeConfig, Vote, VoteRequest, VoteResponse,
};
use crate::security::peer::{PeerError, PeerHttp};

/// The Raft member a request is meant for (`?to=ID`); older senders leave it out.
#[derive(Debug, Default, Deserialize)]
pub struct Addressee {
    pub to: Option<NodeId>,
}

/// Why a Raft request must not be answered here, if it must not: it names another Raft member
/// than this node. A host whose data dir was wiped comes back at the same address as a new
/// member with an empty log; were it to answer for the member it replaced, a leader would see
/// that member's log shrink (openraft stops on that) and a candidate could count a vote from
/// a log that lost committed entries.
pub fn misdirected(raft: &Raft, to: &Addressee) -> Option<String> {
    let me = raft.metrics().borrow().id;
    to.to.filter(|id| *id != me).map(|id| {
        format!(
            "this node is Raft member {me}, not {id}: the member at this address was replaced (its data dir is new); the leader replaces the old member once it has been gone for the dead-voter grace"
        )
    })
}

pub const APPEND_PATH: &str = "/raft/append";
pub const VOTE_PATH: &str = "/raft/vote";
pub const SNAPSHOT_PATH: &str = "/raft/snapshot";

/// A whole snapshot in one request: the leader's vote, the snapshot's metadata and its data.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct SnapshotRequest {
    pub vote: Vote,
    pub meta: SnapshotMeta,
    /// The state machine's snapshot bytes (a JSON `Store` today; opaque here).
    pub data: Vec<u8>,
}

/// Serves an AppendEntries RPC (replication and heartbeats) from the leader.
pub async fn handle_append(
    raft: &Raft,
    req: AppendEntriesRequest,
) -> Result<AppendEntriesResponse, RaftError> {
    raft.append_entries(req).await
}

/// Serves a RequestVote RPC from a candidate.
pub async fn handle_vote(raft: &Raft, req: VoteRequest) -> Result<VoteResponse, RaftError> {
    raft.vote(req).await
}

/// Installs a complete snapshot sent by the leader to a follower that fell behind its log.
pub async fn handle_snapshot(raft: &Raft, req: SnapshotRequest) -> Result<SnapshotResponse, Fatal> {
    let snapshot = Snapshot {
        meta: req.meta,
        snapshot: Box::new(Cursor::new(req.data)),
    };
    raft.install_full_snapshot(req.vote, snapshot).await
}

/// Creates one HTTP client per peer for openraft. Cheap to clone; all peers share one
/// connection pool.
#[derive(Clone)]
pub struct HttpNetwork {
    /// Signs every RPC with the cluster's node key and checks the answers' signatures.
    peer: PeerHttp,
}

impl HttpNetwork {
    pub fn new(peer: PeerHttp) -> Self {
        Self { peer }
    }
}

impl RaftNetworkFactory<TypeConfig> for HttpNetwork {
    type Network = HttpPeer;

    async fn new_client(&mut self, target: NodeId, node: &RaftNode) -> HttpPeer {
        HttpPeer {
            network: self.clone(),
            target,
            node: node.clone(),
        }
    }
}

/// The connection to one peer, as openraft's replication and election tasks see it.
pub struct HttpPeer {
    network: HttpNetwork,
    target: NodeId,
    /// Where to call, and, in error reports, the node's name and address.
    node: RaftNode,
}

/// How a request failed before any answer from the peer's Raft came back.
enum Failure {
    /// Down, refusing, partitioned or not serving Raft: openraft backs off before retrying.
    Unreachable(Unreachable),
    /// A failure mid-request or an undecodable answer: reported, retried on the next round.
    Network(NetworkError),
    /// HTTP 413: the peer's body limit is below the request. For AppendEntries openraft can
    /// send fewer entries per request; for anything else it is a misconfiguration.
    TooLarge(Unreachable),
}

impl Failure {
    fn into_rpc<E: std::error::Error>(self) -> RPCError<E> {
        match self {
            Failure::Unreachable(e) | Failure::TooLarge(e) => RPCError::Unreachable(e),
            Failure::Network(e) => RPCError::Network(e),
        }
    }
}

/// How long a Raft request may take to reach its peer after openraft stopped waiting for it.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(2);

impl HttpPeer {
    /// POSTs `req` and decodes the peer's `Result`. `timeout` comes from openraft's
    /// `RPCOption`, which is also how long openraft itself waits for this RPC.
    async fn post<Req, Resp, E>(
        &self,
        path: &str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Result<Resp, E>, Failure>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: DeserializeOwned,
    {
        let body = serde_json::to_vec(req).map_err(|e| Failure::Network(NetworkError::new(&e)))?;
        // Addressed to the Raft member, not just the address: see `misdirected`.
        let path = format!("{path}?to={}", self.target);
        // openraft drops this future once its own timeout passes (one heartbeat for an
        // append). A request dropped midway loses its connection, and under packet loss the
        // next one has to open another (a lost SYN waits a second), so heartbeats stop reaching
        // the follower, which then starts an election: 47 in a minute at 20% loss. The request
        // runs in a task of its own instead, so it still reaches the follower (resetting its
        // election timer) and its connection goes back to the pool; openraft only stops waiting.
        let (peer, api_addr, task_path) = (
            self.network.peer.clone(),
            self.node.api_addr.clone(),
            path.clone(),
        );
        let delivery = timeout.max(DELIVERY_TIMEOUT);
        let call = tokio::spawn(async move {
            peer.call(Method::POST, &api_addr, &task_path, Some(body), Some(delivery))
                .await
        });
        let answer = call
            .await
            .map_err(|e| Failure::Network(NetworkError::new(&e)))?
            .map_err(|e| match e {
                PeerError::Transfer { .. } => Failure::Network(NetworkError::new(&e)),
                // A stranger's answer is as good as none.
                PeerError::Unreachable { .. } | PeerError::Unauthentic { .. } => {
                    Failure::Unreachable(Unreachable::new(&e))
                }
            })?;
        let status = answer.status;
        if !status.is_success() {
            let msg = format!(
                "{} ({}): HTTP {status}: {}",
                self.network.peer.url(&self.node.api_addr, &path),
                self.node.name,
                String::from_utf8_lossy(&answer.body)
                    .chars()
                    .take(200)
                    .collect::<String>()
            );
            let e = Unreachable::new(&io::Error::other(msg));
            return Err(match status {
                StatusCode::PAYLOAD_TOO_LARGE => Failure::TooLarge(e),
                _ => Failure::Unreachable(e),
            });
        }
        serde_json::from_slice(&answer.body).map_err(|e| Failure::Network(NetworkError::new(&e)))
    }

    fn remote<E: std::error::Error>(&self, e: E) -> RemoteError<NodeId, RaftNode, E> {
        RemoteError::new_with_node(self.target, self.node.clone(), e)
    }
}

/// When this process last warned of slow Raft round trips (Unix seconds): once a minute is
/// enough to be seen without flooding the log at every heartbeat.
static SLOW_WARNED_AT: AtomicU64 = AtomicU64::new(0);

/// Watches one AppendEntries. openraft allows it one heartbeat and then drops it unanswered,
/// without a word of its own about why; a leader whose round trips outlast the heartbeat
/// hears no majority and commits nothing. So the dropping, or an answer that used most of the
/// time, is logged with what to do about it.
struct AppendWatch<'a> {
    peer: &'a str,
    allowed: Duration,
    started: Instant,
    /// `None` while waiting; `Some(false)` for a failure that says nothing of latency (a
    /// refused connection is quick).
    answered: Option<bool>,
}

impl Drop for AppendWatch<'_> {
    fn drop(&mut self) {
        let took = self.started.elapsed();
        let slow = match self.answered {
            None => true,
            Some(true) => took * 10 > self.allowed * 8,
            Some(false) => false,
        };
        if !slow || std::thread::panicking() {
            return;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = SLOW_WARNED_AT.load(Ordering::Relaxed);
        if now < last + 60
            || SLOW_WARNED_AT
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let allowed_ms = self.allowed.as_millis();
        if self.answered.is_some() {
            tracing::warn!(
                peer = self.peer,
                took_ms = took.as_millis() as u64,
                allowed_ms = allowed_ms as u64,
                "a Raft round trip used most of the time the heartbeat allows; if round trips grow, writes stop committing: raise --raft-heartbeat-ms on every node (warned at most once a minute)"
            );
        } else {
            tracing::warn!(
                peer = self.peer,
                allowed_ms = allowed_ms as u64,
                "a Raft append got no answer within the heartbeat; if this peer is up and reachable, round trips to it are longer than --raft-heartbeat-ms and writes cannot commit: raise it on every node (warned at most once a minute)"
            );
        }
    }
}

impl RaftNetwork<TypeConfig> for HttpPeer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse, RPCError<RaftError>> {
        let entries = rpc.entries.len() as u64;
        let mut watch = AppendWatch {
            peer: &self.node.name,
            allowed: option.hard_ttl(),
            started: Instant::now(),
            answered: None,
        };
        let sent = self.post(APPEND_PATH, &rpc, option.hard_ttl()).await;
        watch.answered = Some(sent.is_ok());
        drop(watch);
        match sent {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(RPCError::RemoteError(self.remote(e))),
            // Halving converges on a size the peer accepts; one entry too large for the
            // peer's limit stays stuck, which the warning in the logs then shows.
            Err(Failure::TooLarge(e)) if entries > 1 => {
                tracing::warn!(target = self.target, entries, "append too large for peer: {e}");
                Err(RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint(
                    entries / 2,
                )))
            }
            Err(f) => Err(f.into_rpc()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest,
        option: RPCOption,
    ) -> Result<VoteResponse, RPCError<RaftError>> {
        match self.post(VOTE_PATH, &rpc, option.hard_ttl()).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(RPCError::RemoteError(self.remote(e))),
            Err(f) => Err(f.into_rpc()),
        }
    }

    /// Never called: `full_snapshot` below sends the whole snapshot in one request, and
    /// openraft 0.9 only reaches this chunked RPC through the default `full_snapshot`. The
    /// trait still requires it unless the `generic-snapshot-data` feature is on.
    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<RaftError<InstallSnapshotError>>> {
        let e = io::Error::new(
            io::ErrorKind::Unsupported,
            "chunked snapshots are not served; use full_snapshot",
        );
        Err(RPCError::Network(NetworkError::new(&e)))
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse, StreamingError<TypeConfig, Fatal>> {
        let req = SnapshotRequest {
            vote,
            meta: snapshot.meta,
            data: snapshot.snapshot.into_inner(),
        };
        // The replication task cancels a transfer when it stops (e.g. this node lost its
        // leadership); don't keep a large upload going for nothing.
        let sent = tokio::select! {
            closed = cancel => return Err(StreamingError::Closed(closed)),
            sent = self.post(SNAPSHOT_PATH, &req, option.hard_ttl()) => sent,
        };
        match sent {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(StreamingError::RemoteError(self.remote(e))),
            Err(Failure::Unreachable(e) | Failure::TooLarge(e)) => Err(StreamingError::Unreachable(e)),
            Err(Failure::Network(e)) => Err(StreamingError::Network(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_peer_that_refuses_connections_is_unreachable() {
        // Bind then drop a listener to get a loopback port that nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let node = RaftNode {
            name: "n2".into(),
            api_addr: format!("127.0.0.1:{port}"),
        };
        let mut peer = HttpNetwork::new(PeerHttp::unsigned()).new_client(2, &node).await;
        let req = VoteRequest::new(Vote::new(1, 1), None);
        let err = peer
            .vote(req, RPCOption::new(Duration::from_secs(1)))
            .await
            .unwrap_err();
        assert!(matches!(err, RPCError::Unreachable(_)), "{err:?}");
    }
}
