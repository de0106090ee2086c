//! Three Raft nodes in one process over an in-memory network that can cut nodes off: writes
//! commit through the leader, survive its loss, and a cut-off old leader cannot commit.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use everynode::control::network::{handle_append, handle_snapshot, handle_vote, SnapshotRequest};
use everynode::control::store::{Command, Store};
use everynode::control::types::{
    AppendEntriesRequest, AppendEntriesResponse, Fatal, NodeId, RPCError, RaftError, Snapshot,
    SnapshotResponse, Vote, VoteRequest, VoteResponse,
};
use everynode::control::{open, raft_config, Raft, RaftNode, TypeConfig};
use openraft::error::{InstallSnapshotError, RemoteError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{InstallSnapshotRequest, InstallSnapshotResponse};
use openraft::OptionalSend;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;
use tempfile::TempDir;
use tokio::sync::watch;

use crate::support::raft_write;
use raft_write::write_through_leader;

/// Upper bound for anything the cluster should do by itself (elect, replicate, converge).
const SETTLE: Duration = Duration::from_secs(5);

/// Routes RPCs straight to the target's `Raft` handle, through the same handler functions
/// and JSON types as the HTTP server. A cut node neither sends nor receives.
#[derive(Clone, Default)]
struct Router {
    nodes: Arc<Mutex<BTreeMap<NodeId, Raft>>>,
    cut: Arc<Mutex<BTreeSet<NodeId>>>,
}

impl Router {
    fn target(&self, from: NodeId, to: NodeId) -> Result<Raft, Unreachable> {
        let cut = self.cut.lock().unwrap();
        if cut.contains(&from) || cut.contains(&to) {
            let e = std::io::Error::other(format!("link {from} -> {to} is cut"));
            return Err(Unreachable::new(&e));
        }
        let raft = self.nodes.lock().unwrap().get(&to).cloned();
        raft.ok_or_else(|| Unreachable::new(&std::io::Error::other(format!("node {to} is not started"))))
    }

    fn set_cut(&self, node: NodeId, cut: bool) {
        let mut set = self.cut.lock().unwrap();
        if cut {
            set.insert(node);
        } else {
            set.remove(&node);
        }
    }
}

/// Sends a value through JSON, as the HTTP network does, so wire-format bugs show here too.
fn wire<T: Serialize + DeserializeOwned>(value: T) -> T {
    serde_json::from_slice(&serde_json::to_vec(&value).unwrap()).unwrap()
}

struct RouterFactory {
    router: Router,
    from: NodeId,
}

impl RaftNetworkFactory<TypeConfig> for RouterFactory {
    type Network = RouterPeer;

    async fn new_client(&mut self, target: NodeId, _node: &RaftNode) -> RouterPeer {
        RouterPeer {
            router: self.router.clone(),
            from: self.from,
            target,
        }
    }
}

struct RouterPeer {
    router: Router,
    from: NodeId,
    target: NodeId,
}

impl RouterPeer {
    async fn call<Req, Resp, F, Fut>(&self, req: Req, handler: F) -> Result<Resp, RPCError<RaftError>>
    where
        Req: Serialize + DeserializeOwned,
        Resp: Serialize + DeserializeOwned,
        F: FnOnce(Raft, Req) -> Fut,
        Fut: Future<Output = Result<Resp, RaftError>>,
    {
        let raft = self.router.target(self.from, self.target)?;
        match wire(handler(raft, wire(req)).await) {
            Ok(resp) => Ok(resp),
            Err(e) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
        }
    }
}

impl RaftNetwork<TypeConfig> for RouterPeer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse, RPCError<RaftError>> {
        self.call(rpc, |raft, req| async move { handle_append(&raft, req).await })
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest,
        _option: RPCOption,
    ) -> Result<VoteResponse, RPCError<RaftError>> {
        self.call(rpc, |raft, req| async move { handle_vote(&raft, req).await })
            .await
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<RaftError<InstallSnapshotError>>> {
        unreachable!("full_snapshot is overridden")
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        _cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse, StreamingError<TypeConfig, Fatal>> {
        let raft = self.router.target(self.from, self.target)?;
        let req = SnapshotRequest {
            vote,
            meta: snapshot.meta,
            data: snapshot.snapshot.into_inner(),
        };
        let resp: Result<SnapshotResponse, Fatal> = wire(handle_snapshot(&raft, wire(req)).await);
        resp.map_err(|e| StreamingError::RemoteError(RemoteError::new(self.target, e)))
    }
}

struct Node {
    raft: Raft,
    store: watch::Receiver<Arc<Store>>,
    _dir: TempDir,
}

fn raft_node(id: NodeId) -> RaftNode {
    RaftNode {
        name: format!("n{id}"),
        api_addr: format!("mem://{id}"),
    }
}

async fn start_node(router: &Router, id: NodeId) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let (log, sm) = open(dir.path()).await.unwrap();
    let store = sm.subscribe();
    let factory = RouterFactory {
        router: router.clone(),
        from: id,
    };
    let raft = Raft::new(
        id,
        Arc::new(raft_config(std::time::Duration::from_millis(
            everynode::config::DEFAULT_RAFT_HEARTBEAT_MS,
        ))),
        factory,
        log,
        sm,
    )
    .await
    .unwrap();
    router.nodes.lock().unwrap().insert(id, raft.clone());
    Node {
        raft,
        store,
        _dir: dir,
    }
}

/// Starts `ids` and initializes them as the voters of one cluster.
async fn start_cluster(router: &Router, ids: &[NodeId]) -> BTreeMap<NodeId, Node> {
    let mut nodes = BTreeMap::new();
    for &id in ids {
        nodes.insert(id, start_node(router, id).await);
    }
    let members = ids
        .iter()
        .map(|&id| (id, raft_node(id)))
        .collect::<BTreeMap<_, _>>();
    nodes[&ids[0]].raft.initialize(members).await.unwrap();
    nodes
}

/// Waits until `node` sees a leader other than `not`, and returns it.
async fn leader_seen_by(node: &Node, not: Option<NodeId>) -> NodeId {
    let metrics = node
        .raft
        .wait(Some(SETTLE))
        .metrics(
            |m| m.current_leader.is_some() && m.current_leader != not,
            "a leader is elected",
        )
        .await
        .unwrap();
    metrics.current_leader.unwrap()
}

/// Waits until every one of `nodes` names the same leader, and returns it.
async fn one_leader_seen_by(nodes: &[&Node]) -> NodeId {
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let seen: Vec<Option<NodeId>> = nodes
            .iter()
            .map(|n| n.raft.metrics().borrow().current_leader)
            .collect();
        if let Some(leader) = seen[0] {
            if seen.iter().all(|l| *l == Some(leader)) {
                return leader;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the nodes do not agree on a leader within {SETTLE:?}: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn store_where(node: &Node, what: &str, pred: impl FnMut(&Arc<Store>) -> bool) -> Store {
    let mut rx = node.store.clone();
    let store = tokio::time::timeout(SETTLE, rx.wait_for(pred))
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for: {what}"))
        .unwrap();
    (**store).clone()
}

fn put(key: &str, value: serde_json::Value) -> Command {
    Command::LabelNode {
        node: key.into(),
        set: [("value".to_string(), value.to_string().replace('"', ""))].into(),
        remove: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_survive_leader_loss_and_minority_cannot_commit() {
    let _machine = crate::support::shared_machine();
    let router = Router::default();
    let nodes = start_cluster(&router, &[1, 2, 3]).await;

    let all: Vec<&Node> = nodes.values().collect();
    let (old_leader, _) = write_through_leader(all.iter().map(|n| &n.raft), put("a", json!(1)), SETTLE).await;
    for node in nodes.values() {
        store_where(node, "a replicated", |s| s.nodes.contains_key("a")).await;
    }

    router.set_cut(old_leader, true);
    let survivors: Vec<&Node> = nodes
        .iter()
        .filter(|(id, _)| **id != old_leader)
        .map(|(_, n)| n)
        .collect();
    let new_leader = leader_seen_by(survivors[0], Some(old_leader)).await;
    assert_ne!(new_leader, old_leader);
    let (_, resp) = write_through_leader(survivors.iter().map(|n| &n.raft), put("b", json!(2)), SETTLE).await;
    let committed_at = resp.log_id.index;
    for node in &survivors {
        store_where(node, "b replicated to the majority", |s| {
            s.nodes.contains_key("b")
        })
        .await;
    }

    // The old leader may still believe it leads, but one vote of three is no quorum.
    let minority = tokio::time::timeout(
        Duration::from_secs(1),
        nodes[&old_leader].raft.client_write(put("c", json!(3))),
    );
    match minority.await {
        Err(_elapsed) => {}
        Ok(Err(_refused)) => {}
        Ok(Ok(resp)) => panic!("a cut-off node committed a write: {resp:?}"),
    }

    router.set_cut(old_leader, false);
    let healed = store_where(&nodes[&old_leader], "old leader catches up", |s| {
        s.nodes.contains_key("b") && s.version >= committed_at
    })
    .await;
    // The old leader follows the leader the others follow. Its term, raised while it was cut
    // off, may force one more election, so that leader need not be `new_leader`.
    one_leader_seen_by(&all).await;

    // Converged: one more write, then every store is identical and the unacknowledged
    // minority write is gone (truncated away on the old leader).
    let last = write_through_leader(all.iter().map(|n| &n.raft), put("d", json!(4)), SETTLE)
        .await
        .1
        .log_id
        .index;
    let mut stores = Vec::new();
    for node in nodes.values() {
        stores.push(store_where(node, "d everywhere", |s| s.version >= last).await);
    }
    assert!(
        stores.windows(2).all(|w| w[0] == w[1]),
        "stores differ: {stores:?}"
    );
    assert!(!healed.nodes.contains_key("c") && !stores[0].nodes.contains_key("c"));
    assert_eq!(stores[0].nodes.keys().collect::<Vec<_>>(), ["a", "b", "d"]);

    for node in nodes.values() {
        node.raft.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_behind_the_purged_log_catches_up_from_a_snapshot() {
    let _machine = crate::support::shared_machine();
    let router = Router::default();
    let nodes = start_cluster(&router, &[1, 2, 3]).await;
    let all: Vec<&Node> = nodes.values().collect();
    let mut last = 0;
    let mut took_last = 0;
    for i in 0..5 {
        let (id, resp) = write_through_leader(
            all.iter().map(|n| &n.raft),
            put(&format!("k{i}"), json!(i)),
            SETTLE,
        )
        .await;
        (took_last, last) = (id, resp.log_id.index);
    }
    let leader = &nodes[&took_last].raft;

    leader.trigger().snapshot().await.unwrap();
    leader
        .wait(Some(SETTLE))
        .metrics(|m| m.snapshot.is_some_and(|s| s.index >= last), "snapshot built")
        .await
        .unwrap();
    leader.trigger().purge_log(last).await.unwrap();
    leader
        .wait(Some(SETTLE))
        .metrics(|m| m.purged.is_some_and(|p| p.index >= last), "log purged")
        .await
        .unwrap();

    // The log no longer starts at 1, so the newcomer can only be brought up by a snapshot.
    let newcomer = start_node(&router, 4).await;
    leader.add_learner(4, raft_node(4), true).await.unwrap();
    let store = store_where(&newcomer, "snapshot installed", |s| s.version >= last).await;
    assert_eq!(store.nodes.len(), 5);
    newcomer
        .raft
        .wait(Some(SETTLE))
        .metrics(
            |m| m.snapshot.is_some_and(|s| s.index >= last),
            "caught up by a snapshot",
        )
        .await
        .unwrap();

    for node in nodes.values().chain([&newcomer]) {
        node.raft.shutdown().await.unwrap();
    }
}
