//! The Raft log, vote and commit index, persisted in redb (openraft `RaftLogStorage`).

use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader};
use redb::{Database, Durability, ReadableTable};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::control::db::{
    blocking, get_json, put_json, DbError, COMMITTED, LAST_PURGED, LOGS, RAFT_META, VOTE,
};
use crate::control::types::{Entry, LogId, LogState, StorageError, TypeConfig, Vote};

/// Handle on the Raft log in the shared database. Cloning is cheap; clones are the log
/// readers that openraft's replication tasks use concurrently with appends.
#[derive(Clone)]
pub struct LogStore {
    /// The database also holds the state machine; redb serializes the write transactions.
    db: Arc<Database>,
}

impl LogStore {
    pub(crate) fn new(db: Arc<Database>) -> Self {
        Self { db }
    }

    fn read_meta<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, DbError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(RAFT_META)?;
        get_json(&table, key)
    }

    async fn write_meta<T>(&self, key: &'static str, value: T, durability: Durability) -> Result<(), DbError>
    where
        T: Serialize + Send + 'static,
    {
        let db = self.db.clone();
        blocking(move || {
            let mut tx = db.begin_write()?;
            tx.set_durability(durability);
            put_json(&mut tx.open_table(RAFT_META)?, key, &value)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    fn read_range<RB: RangeBounds<u64>>(&self, range: RB) -> Result<Vec<Entry>, DbError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(LOGS)?;
        let mut entries = Vec::new();
        for item in table.range(range)? {
            let (_, value) = item?;
            entries.push(serde_json::from_slice(value.value())?);
        }
        Ok(entries)
    }

    fn log_state(&self) -> Result<LogState, DbError> {
        let tx = self.db.begin_read()?;
        let last_purged: Option<LogId> = get_json(&tx.open_table(RAFT_META)?, LAST_PURGED)?;
        let last_entry: Option<Entry> = match tx.open_table(LOGS)?.last()? {
            Some((_, value)) => Some(serde_json::from_slice(value.value())?),
            None => None,
        };
        // An empty log after a purge still ends where the purge ended.
        let last_log_id = last_entry.map(|e| e.log_id).or(last_purged);
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id,
        })
    }

    /// Removes the entries in `range` and optionally records `purged` in the same
    /// transaction, so a crash never leaves entries gone without the purge marker.
    async fn remove_range<RB>(&self, range: RB, purged: Option<LogId>) -> Result<(), DbError>
    where
        RB: RangeBounds<u64> + Send + 'static,
    {
        let db = self.db.clone();
        blocking(move || {
            let tx = db.begin_write()?;
            {
                if let Some(purged) = purged {
                    put_json(&mut tx.open_table(RAFT_META)?, LAST_PURGED, &purged)?;
                }
                tx.open_table(LOGS)?.retain_in(range, |_, _| false)?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        self.read_range(range)
            .map_err(|e| e.storage(ErrorSubject::Logs, ErrorVerb::Read))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState, StorageError> {
        self.log_state()
            .map_err(|e| e.storage(ErrorSubject::Logs, ErrorVerb::Read))
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        // A vote must survive a crash, or a node could vote twice in one term.
        self.write_meta(VOTE, *vote, Durability::Immediate)
            .await
            .map_err(|e| e.storage(ErrorSubject::Vote, ErrorVerb::Write))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.read_meta(VOTE)
            .map_err(|e| e.storage(ErrorSubject::Vote, ErrorVerb::Read))
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // The commit index is only a hint that lets a restarted node re-apply committed
        // entries before it hears from a leader; losing the latest value is safe. So skip the
        // fsync here: the next durable commit (an append or an apply) flushes it anyway.
        self.write_meta(COMMITTED, committed, Durability::None)
            .await
            .map_err(|e| e.storage(ErrorSubject::Store, ErrorVerb::Write))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        self.read_meta::<Option<LogId>>(COMMITTED)
            .map(Option::flatten)
            .map_err(|e| e.storage(ErrorSubject::Store, ErrorVerb::Read))
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let encoded: Result<Vec<(u64, Vec<u8>)>, serde_json::Error> = entries
            .into_iter()
            .map(|e| Ok((e.log_id.index, serde_json::to_vec(&e)?)))
            .collect();
        let db = self.db.clone();
        let res = match encoded {
            Err(e) => Err(DbError::from(e)),
            Ok(encoded) => {
                blocking(move || {
                    let mut tx = db.begin_write()?;
                    // Raft may only count this node towards a quorum once the entries are on
                    // disk; Immediate makes commit() return after fsync.
                    tx.set_durability(Durability::Immediate);
                    {
                        let mut table = tx.open_table(LOGS)?;
                        for (index, bytes) in &encoded {
                            table.insert(*index, bytes.as_slice())?;
                        }
                    }
                    tx.commit()?;
                    Ok(())
                })
                .await
            }
        };
        // The callback is what tells openraft the entries are durable, so it is called only
        // now, after the commit returned.
        match res {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(io::Error::other(e.to_string())));
                Err(e.storage(ErrorSubject::Logs, ErrorVerb::Write))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::debug!(%log_id, "truncating raft log");
        self.remove_range(log_id.index.., None)
            .await
            .map_err(|e| e.storage(ErrorSubject::Logs, ErrorVerb::Delete))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::debug!(%log_id, "purging raft log");
        self.remove_range(..=log_id.index, Some(log_id))
            .await
            .map_err(|e| e.storage(ErrorSubject::Logs, ErrorVerb::Delete))
    }
}
