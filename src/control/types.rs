//! Raft type configuration for the control plane, and short aliases for the openraft types.

use std::fmt;
// `declare_raft_types!` names `Cursor` unqualified in its default for `SnapshotData`.
use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::control::store::{Command, Response};

/// The address card of a Raft member, stored in the membership config of the log so that
/// every node can reach every other node after a restart, without gossip.
#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq, Eq)]
pub struct RaftNode {
    /// The node's stable name (the membership node id), for logs and error messages.
    pub name: String,
    /// Base URL of the node's HTTP API, e.g. `http://10.0.0.5:7070`; Raft RPCs are POSTed
    /// under `{api_addr}/raft/...`.
    pub api_addr: String,
}

impl fmt::Display for RaftNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.api_addr)
    }
}

openraft::declare_raft_types!(
    /// Ties openraft to our command, response and node types.
    pub TypeConfig:
        D = Command,
        R = Response,
        NodeId = u64,
        Node = RaftNode,
        SnapshotData = Cursor<Vec<u8>>,
);

/// Raft node ids are numbers; the node layer maps its stable names onto them.
pub type NodeId = u64;
/// A running Raft instance of the control plane.
pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type EntryPayload = openraft::EntryPayload<TypeConfig>;
pub type StoredMembership = openraft::StoredMembership<NodeId, RaftNode>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, RaftNode>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;
pub type LogState = openraft::storage::LogState<TypeConfig>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type RaftMetrics = openraft::RaftMetrics<NodeId, RaftNode>;

/// Request and response types of the Raft RPCs, as carried over HTTP.
pub type AppendEntriesRequest = openraft::raft::AppendEntriesRequest<TypeConfig>;
pub type AppendEntriesResponse = openraft::raft::AppendEntriesResponse<NodeId>;
pub type VoteRequest = openraft::raft::VoteRequest<NodeId>;
pub type VoteResponse = openraft::raft::VoteResponse<NodeId>;
pub type SnapshotResponse = openraft::raft::SnapshotResponse<NodeId>;
pub type ClientWriteResponse = openraft::raft::ClientWriteResponse<TypeConfig>;

/// Errors returned by the Raft API and carried back to the caller of an RPC.
pub type RaftError<E = openraft::error::Infallible> = openraft::error::RaftError<NodeId, E>;
pub type Fatal = openraft::error::Fatal<NodeId>;
pub type ClientWriteError = openraft::error::ClientWriteError<NodeId, RaftNode>;
pub type RPCError<E = openraft::error::Infallible> = openraft::error::RPCError<NodeId, RaftNode, E>;
