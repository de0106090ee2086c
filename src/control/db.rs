//! The redb file shared by the Raft log and the state machine: tables, codec and errors.

use std::path::Path;
use std::sync::Arc;

use openraft::{AnyError, ErrorSubject, ErrorVerb, StorageIOError};
use redb::{Database, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::control::types::StorageError;

/// Name of the database file inside the node's Raft directory.
pub const DB_FILE: &str = "raft.redb";

/// Log entries by index, each a JSON-encoded `openraft::Entry`.
pub(crate) const LOGS: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_logs");
/// Small Raft records of the log store: [`VOTE`], [`COMMITTED`], [`LAST_PURGED`].
pub(crate) const RAFT_META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");
/// State machine records: [`SM_STATE`], [`SNAPSHOT_META`], [`SNAPSHOT_DATA`].
pub(crate) const SM: TableDefinition<&str, &[u8]> = TableDefinition::new("state_machine");

pub(crate) const VOTE: &str = "vote";
pub(crate) const COMMITTED: &str = "committed";
pub(crate) const LAST_PURGED: &str = "last_purged";
pub(crate) const SM_STATE: &str = "state";
pub(crate) const SNAPSHOT_META: &str = "snapshot_meta";
pub(crate) const SNAPSHOT_DATA: &str = "snapshot_data";

/// Why a storage operation failed, before openraft sees it as a `StorageError`.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// redb could not open, read or commit; the file or the disk is in trouble. Boxed:
    /// `redb::Error` is large and this error travels through every storage call.
    #[error("raft database: {0}")]
    Redb(#[source] Box<redb::Error>),
    /// A stored record does not decode (or a value does not encode) as JSON.
    #[error("raft database record: {0}")]
    Codec(#[from] serde_json::Error),
    /// The blocking task that ran the transaction panicked or was cancelled.
    #[error("raft database task: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The data dir cannot be created.
    #[error("cannot create raft directory: {0}")]
    Io(#[from] std::io::Error),
}

/// redb has one error type per operation; funnel them all into [`DbError::Redb`] so `?`
/// works in every transaction body.
macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for DbError {
            fn from(e: $t) -> Self {
                DbError::Redb(Box::new(e.into()))
            }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

impl DbError {
    /// Wraps the error for openraft, naming what was being read or written. openraft shuts
    /// the Raft node down on any storage error, which is what we want: a node that cannot
    /// persist must stop voting and acknowledging.
    pub(crate) fn storage(self, subject: ErrorSubject<u64>, verb: ErrorVerb) -> StorageError {
        StorageIOError::new(subject, verb, AnyError::new(&self)).into()
    }
}

/// The redb page cache of a node.
pub const CACHE_BYTES: usize = 16 * 1024 * 1024;

/// Opens (or creates) the database in `dir` and makes sure every table exists, so that
/// read transactions never meet a missing table.
pub(crate) fn open_db(dir: &Path) -> Result<Arc<Database>, DbError> {
    std::fs::create_dir_all(dir)?;
    // redb caches up to 1 GiB by default, which a node agent must not take: a few large
    // DaemonSets written a few times grew an agent by tens of MB. Reads here are the Raft log
    // tail and one store record; the OS page cache serves the rest.
    let db = redb::Builder::new()
        .set_cache_size(CACHE_BYTES)
        .create(dir.join(DB_FILE))?;
    let tx = db.begin_write()?;
    {
        tx.open_table(LOGS)?;
        tx.open_table(RAFT_META)?;
        tx.open_table(SM)?;
    }
    tx.commit()?;
    Ok(Arc::new(db))
}

/// Reads and decodes one JSON record of a string-keyed table.
pub(crate) fn get_json<T, Tb>(table: &Tb, key: &str) -> Result<Option<T>, DbError>
where
    T: DeserializeOwned,
    Tb: ReadableTable<&'static str, &'static [u8]>,
{
    match table.get(key)? {
        Some(v) => Ok(Some(serde_json::from_slice(v.value())?)),
        None => Ok(None),
    }
}

/// Encodes and writes one JSON record of a string-keyed table.
pub(crate) fn put_json<T: Serialize>(
    table: &mut redb::Table<&'static str, &'static [u8]>,
    key: &str,
    value: &T,
) -> Result<(), DbError> {
    let bytes = serde_json::to_vec(value)?;
    table.insert(key, bytes.as_slice())?;
    Ok(())
}

/// Runs a redb transaction on the blocking pool: a commit waits for fsync, and the other
/// tasks of the node (replication streams, HTTP handlers, agents) must keep running on the
/// async workers meanwhile; nodes may have as few as two cores.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, DbError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, DbError> + Send + 'static,
{
    tokio::task::spawn_blocking(f).await?
}
