//! The applied state (the store, last applied entry, membership) and its snapshots, in redb.

use std::io::Cursor;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftSnapshotBuilder};
use redb::{Database, Durability};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::control::db::{blocking, get_json, put_json, DbError, SM, SM_STATE, SNAPSHOT_DATA, SNAPSHOT_META};
use crate::control::store::{Response, Store};
use crate::control::types::{
    Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};

/// Everything a restarted node needs to resume applying where it stopped.
#[derive(Serialize, Deserialize, Default, Clone, Debug)]
struct AppliedState {
    /// openraft resumes applying after this entry instead of replaying the whole log.
    last_applied: Option<LogId>,
    /// The membership as of `last_applied`; openraft asks for it at startup.
    last_membership: StoredMembership,
    /// The application state itself.
    store: Store,
}

/// The Raft state machine: applies committed commands to the [`Store`], persists the result
/// after every batch and publishes each new store to subscribers.
pub struct StateMachineStore {
    /// Shared with the log store; see `db.rs`.
    db: Arc<Database>,
    /// In-memory copy of what is persisted, so reads and snapshots need no disk access.
    state: AppliedState,
    /// Latest store for the rest of the node (API reads, agents, distribution).
    published: watch::Sender<Arc<Store>>,
}

impl StateMachineStore {
    /// Loads the persisted state (or starts empty).
    pub(crate) fn load(db: Arc<Database>) -> Result<Self, DbError> {
        let state: AppliedState = {
            let tx = db.begin_read()?;
            get_json(&tx.open_table(SM)?, SM_STATE)?.unwrap_or_default()
        };
        let (published, _) = watch::channel(Arc::new(state.store.clone()));
        Ok(Self { db, state, published })
    }

    /// A receiver that always holds the latest applied store. Take it before handing the
    /// state machine to `Raft::new`, which keeps the state machine to itself. The store
    /// loaded from disk is visible at once, before any leader is in reach.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Store>> {
        self.published.subscribe()
    }

    /// Writes the applied state, plus a snapshot when given, in one durable transaction.
    async fn persist(&self, snapshot: Option<(SnapshotMeta, Vec<u8>)>) -> Result<(), DbError> {
        let state = serde_json::to_vec(&self.state)?;
        let db = self.db.clone();
        blocking(move || {
            let mut tx = db.begin_write()?;
            tx.set_durability(Durability::Immediate);
            {
                let mut table = tx.open_table(SM)?;
                table.insert(SM_STATE, state.as_slice())?;
                if let Some((meta, data)) = snapshot {
                    put_json(&mut table, SNAPSHOT_META, &meta)?;
                    table.insert(SNAPSHOT_DATA, data.as_slice())?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    fn publish(&self) {
        self.published.send_replace(Arc::new(self.state.store.clone()));
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.state.last_applied, self.state.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut replies = Vec::new();
        for entry in entries {
            let reply = match &entry.payload {
                EntryPayload::Blank => Response::default(),
                EntryPayload::Normal(cmd) => self.state.store.apply(cmd),
                EntryPayload::Membership(m) => {
                    self.state.last_membership = StoredMembership::new(Some(entry.log_id), m.clone());
                    Response::default()
                }
            };
            self.state.last_applied = Some(entry.log_id);
            self.state.store.version = entry.log_id.index;
            if self.state.store.epoch.is_empty() {
                self.state.store.epoch = epoch_of(&self.state.last_membership);
            }
            replies.push(reply);
        }
        if replies.is_empty() {
            return Ok(replies);
        }
        self.persist(None).await.map_err(|e| {
            let subject = match self.state.last_applied {
                Some(log_id) => ErrorSubject::Apply(log_id),
                None => ErrorSubject::StateMachine,
            };
            e.storage(subject, ErrorVerb::Write)
        })?;
        self.publish();
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        // A copy, so that building runs concurrently with further applies (openraft spawns
        // it) and still sees one consistent state.
        SnapshotBuilder {
            db: self.db.clone(),
            state: self.state.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let sto_err =
            |e: DbError| e.storage(ErrorSubject::Snapshot(Some(meta.signature())), ErrorVerb::Write);
        let mut store: Store = serde_json::from_slice(&data).map_err(|e| sto_err(e.into()))?;
        store.version = meta.last_log_id.map_or(0, |id| id.index);
        self.state = AppliedState {
            last_applied: meta.last_log_id,
            last_membership: meta.last_membership.clone(),
            store,
        };
        self.persist(Some((meta.clone(), data))).await.map_err(sto_err)?;
        self.publish();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        read_snapshot(&self.db).map_err(|e| e.storage(ErrorSubject::Snapshot(None), ErrorVerb::Read))
    }
}

fn read_snapshot(db: &Database) -> Result<Option<Snapshot>, DbError> {
    let tx = db.begin_read()?;
    let table = tx.open_table(SM)?;
    let Some(meta) = get_json::<SnapshotMeta, _>(&table, SNAPSHOT_META)? else {
        return Ok(None);
    };
    let data = table
        .get(SNAPSHOT_DATA)?
        .map(|v| v.value().to_vec())
        .unwrap_or_default();
    Ok(Some(Snapshot {
        meta,
        snapshot: Box::new(Cursor::new(data)),
    }))
}

/// Builds a snapshot from a frozen copy of the applied state and keeps it as the current
/// snapshot, which openraft sends to followers that are too far behind the log.
pub struct SnapshotBuilder {
    db: Arc<Database>,
    state: AppliedState,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let sto_err = |e: DbError| e.storage(ErrorSubject::Snapshot(None), ErrorVerb::Write);
        let data = serde_json::to_vec(&self.state.store).map_err(|e| sto_err(e.into()))?;
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let snapshot_id = match self.state.last_applied {
            Some(id) => format!("{}-{}-{millis}", id.leader_id.term, id.index),
            None => format!("none-{millis}"),
        };
        let meta = SnapshotMeta {
            last_log_id: self.state.last_applied,
            last_membership: self.state.last_membership.clone(),
            snapshot_id,
        };
        let (db, to_save) = (self.db.clone(), (meta.clone(), data.clone()));
        blocking(move || save_snapshot_if_newer(&db, &to_save.0, &to_save.1))
            .await
            .map_err(sto_err)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

/// Keeps the newest snapshot: a build started before an install may finish after it, and
/// must not replace the installed, newer snapshot.
fn save_snapshot_if_newer(db: &Database, meta: &SnapshotMeta, data: &[u8]) -> Result<(), DbError> {
    let tx = db.begin_write()?;
    {
        let mut table = tx.open_table(SM)?;
        let current: Option<SnapshotMeta> = get_json(&table, SNAPSHOT_META)?;
        if current.is_some_and(|cur| cur.last_log_id > meta.last_log_id) {
            return Ok(());
        }
        put_json(&mut table, SNAPSHOT_META, meta)?;
        table.insert(SNAPSHOT_DATA, data)?;
    }
    tx.commit()?;
    Ok(())
}

/// The group's identity as every member derives it at the same log position: the lowest voter
/// id of the membership in force when the store first applied an entry. Raft ids are random per
/// data dir, so a group formed anew has another one; the formation term alone would not do, as
/// every group starts at term 1. Empty until a membership is known.
pub(crate) fn epoch_of(membership: &StoredMembership) -> String {
    membership
        .membership()
        .voter_ids()
        .min()
        .map(|id| format!("{id:016x}"))
        .unwrap_or_default()
}
