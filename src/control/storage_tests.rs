//! Storage tests: openraft's conformance suite, and a restart that must lose nothing.

use std::collections::{BTreeMap, BTreeSet};

use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{CommittedLeaderId, Membership, RaftLogReader, RaftSnapshotBuilder};
use serde_json::json;
use tempfile::TempDir;

use crate::control::store::{Command, Response};
use crate::control::types::{Entry, EntryPayload, LogId, RaftNode, StorageError, TypeConfig, Vote};
use crate::control::{open, LogStore, StateMachineStore};

/// Gives every suite case its own database in a fresh temporary directory, removed when
/// the case ends.
struct TempDirBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for TempDirBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError> {
        let dir = tempfile::tempdir().expect("create temp dir");
        let (log, sm) = open(dir.path()).await?;
        Ok((dir, log, sm))
    }
}

/// Boxed because `StorageError` is large; `?` boxes it.
type TestResult = Result<(), Box<StorageError>>;

#[test]
fn storage_passes_openraft_conformance_suite() -> TestResult {
    Ok(Suite::test_all(TempDirBuilder)?)
}

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn entry(index: u64, payload: EntryPayload) -> Entry {
    Entry {
        log_id: log_id(1, index),
        payload,
    }
}

fn put(key: &str, value: serde_json::Value) -> EntryPayload {
    EntryPayload::Normal(Command::LabelNode {
        node: key.into(),
        set: [("value".to_string(), value.to_string().replace('"', ""))].into(),
        remove: Default::default(),
    })
}

#[tokio::test]
async fn restart_keeps_vote_log_applied_state_store_and_snapshot() -> TestResult {
    let dir = tempfile::tempdir().expect("create temp dir");
    let node = RaftNode {
        name: "n1".into(),
        api_addr: "127.0.0.1:7070".into(),
    };
    let membership = Membership::new(vec![BTreeSet::from([1])], BTreeMap::from([(1, node)]));
    let entries = vec![
        entry(1, EntryPayload::Blank),
        entry(2, EntryPayload::Membership(membership.clone())),
        entry(3, put("a", json!(1))),
        entry(4, put("b", json!("x"))),
        entry(5, EntryPayload::Normal(Command::ForgetNode { node: "a".into() })),
    ];
    let vote = Vote::new_committed(1, 1);

    let (want_store, want_snapshot) = {
        let (mut log, mut sm) = open(dir.path()).await?;
        let store_rx = sm.subscribe();
        log.save_vote(&vote).await?;
        log.blocking_append(entries.clone()).await?;
        log.save_committed(Some(log_id(1, 5))).await?;
        let replies = sm.apply(entries[..4].to_vec()).await?;
        assert_eq!(replies, vec![Response::Ok; 4]);
        let snapshot = sm.get_snapshot_builder().await.build_snapshot().await?;
        assert_eq!(sm.apply(entries[4..].to_vec()).await?, vec![Response::Ok]);

        let store = store_rx.borrow().clone();
        assert_eq!(store.version, 5, "version follows the last applied index");
        assert_eq!(store.nodes.keys().collect::<Vec<_>>(), vec!["b"]);
        ((*store).clone(), snapshot.meta)
    };

    let (mut log, mut sm) = open(dir.path()).await?;
    assert_eq!(log.read_vote().await?, Some(vote));
    assert_eq!(log.read_committed().await?, Some(log_id(1, 5)));
    let state = log.get_log_state().await?;
    assert_eq!(
        (state.last_purged_log_id, state.last_log_id),
        (None, Some(log_id(1, 5)))
    );
    assert_eq!(log.try_get_log_entries(1..6).await?, entries);

    let (last_applied, last_membership) = sm.applied_state().await?;
    assert_eq!(last_applied, Some(log_id(1, 5)));
    assert_eq!(last_membership.log_id(), &Some(log_id(1, 2)));
    assert_eq!(last_membership.membership(), &membership);
    assert_eq!(
        *sm.subscribe().borrow().as_ref(),
        want_store,
        "store is back without replay"
    );

    let snapshot = sm
        .get_current_snapshot()
        .await?
        .expect("snapshot survives restart");
    assert_eq!(snapshot.meta, want_snapshot);
    assert_eq!(snapshot.meta.last_log_id, Some(log_id(1, 4)));
    Ok(())
}

#[tokio::test]
async fn purge_survives_restart_and_keeps_log_end() -> TestResult {
    let dir = tempfile::tempdir().expect("create temp dir");
    {
        let (mut log, _sm) = open(dir.path()).await?;
        let entries: Vec<Entry> = (1..=3).map(|i| entry(i, EntryPayload::Blank)).collect();
        log.blocking_append(entries).await?;
        log.purge(log_id(1, 3)).await?;
    }
    let (mut log, _sm) = open(dir.path()).await?;
    let state = log.get_log_state().await?;
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 3)));
    assert_eq!(
        state.last_log_id,
        Some(log_id(1, 3)),
        "an emptied log still ends at the purge point"
    );
    assert!(log.try_get_log_entries(0..10).await?.is_empty());
    Ok(())
}
