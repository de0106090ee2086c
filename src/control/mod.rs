//! The control plane: one Raft group (openraft, persisted in redb) whose leader owns the DaemonSets, and the copy of its store every node keeps.
//!
//! # Layout
//! - `types`: openraft type configuration and aliases.
//! - `store`: the replicated state (DaemonSets, revisions, node overrides) and its commands;
//!   `configs`: its ConfigMaps and sealed Secrets.
//! - `db`, `log_store`, `state_machine`: the Raft log and the store, persisted in redb.
//! - `network`: Raft RPCs over HTTP (client and server handlers).
//! - `bootstrap`: the rule that lets exactly one node form a new cluster.
//! - `voters`: the planner that keeps an odd voter set and replaces dead voters.
//! - `controller`: the loop that forms or joins the cluster and applies the planner.
//! - `writer`: commits writes on the leader or forwards them to it.
//! - `replica`, `distribute`: every node's on-disk store copy, spread by gossip plus HTTP.
//! - `nodes`: a node's effective labels and taints under the cluster's overrides.

pub mod bootstrap;
pub mod configs;
pub mod controller;
pub mod db;
pub mod distribute;
pub mod log_store;
pub mod network;
pub mod nodes;
pub mod replica;
pub mod state_machine;
pub mod store;
pub mod types;
pub mod voters;
pub mod writer;

#[cfg(test)]
mod storage_tests;

use std::path::Path;

use openraft::{ErrorSubject, ErrorVerb};

pub use db::DbError;
pub use log_store::LogStore;
pub use network::{handle_append, handle_snapshot, handle_vote, HttpNetwork, SnapshotRequest};
pub use state_machine::StateMachineStore;
pub use types::{Raft, RaftNode, TypeConfig};

/// Opens (or creates) the Raft storage in `dir` (file `raft.redb`): the log store and the
/// state machine, both over one database so they share its single writer.
pub async fn open(dir: &Path) -> Result<(LogStore, StateMachineStore), types::StorageError> {
    let dir = dir.to_path_buf();
    let opened = db::blocking(move || {
        let db = db::open_db(&dir)?;
        let sm = StateMachineStore::load(db.clone())?;
        Ok((LogStore::new(db), sm))
    })
    .await;
    opened.map_err(|e| e.storage(ErrorSubject::Store, ErrorVerb::Read))
}

/// Raft timings scaled from the heartbeat (`--raft-heartbeat-ms`, 100 ms by default).
///
/// openraft 0.9 makes a follower that knows a leader wait out a leader lease of
/// `election_timeout_max` *before* its own randomized election timeout, so a dead leader is
/// replaced after `max + rand(min..max)` of silence, plus up to one tick (1.5 heartbeats).
/// With elections at 2.5..4 heartbeats that is 6.5..9.5 heartbeats (650..950 ms by default),
/// while a follower still tolerates over four lost heartbeats before it disrupts the cluster.
/// The heartbeat interval is also openraft's timeout for one AppendEntries RPC (including the
/// follower's fsync): a leader whose round trips take longer never hears a majority and
/// commits nothing, hence the option. The vote RPC gets `election_timeout_min`.
pub fn raft_config(heartbeat: std::time::Duration) -> openraft::Config {
    let heartbeat = heartbeat.as_millis().max(1) as u64;
    let config = openraft::Config {
        cluster_name: "everynode".into(),
        heartbeat_interval: heartbeat,
        election_timeout_min: heartbeat * 5 / 2,
        election_timeout_max: heartbeat * 4,
        // The timeout of one whole-snapshot request. The store is small, but a snapshot goes
        // to a node that is behind and maybe busy catching up.
        install_snapshot_timeout: 10_000.max(heartbeat * 10),
        ..Default::default()
    };
    config
        .validate()
        .expect("raft timings derived from a valid heartbeat")
}
