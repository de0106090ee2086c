//! The HTTP Raft network end to end on loopback: three nodes behind axum replicate a write,
//! a fourth catches up by a snapshot sent over `/raft/snapshot`, and a node signing with
//! another cluster's key is refused.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Json;
use everynode::api::auth::{require_node, ApiAuth};
use everynode::control::network::{
    handle_append, handle_snapshot, handle_vote, HttpNetwork, SnapshotRequest, APPEND_PATH, SNAPSHOT_PATH,
    VOTE_PATH,
};
use everynode::control::store::{Command, Store};
use everynode::control::types::{
    AppendEntriesRequest, Entry, EntryPayload, LogId, NodeId, RPCError, Vote, VoteRequest,
};
use everynode::control::{open, raft_config, Raft, RaftNode};
use everynode::security::node_auth::NodeAuth;
use everynode::security::peer::PeerHttp;
use everynode::security::secret::ClusterSecret;
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::CommittedLeaderId;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::support::raft_write;
use raft_write::write_through_leader;

const KEY: [u8; 32] = [7; 32];
const SETTLE: Duration = Duration::from_secs(5);

/// The node signature check the node's API applies to these routes.
fn routes(raft: Raft) -> axum::Router {
    let auth = Arc::new(ApiAuth::new(&ClusterSecret::from_bytes(&KEY).keys()));
    axum::Router::new()
        .route(
            APPEND_PATH,
            post(
                |State(raft): State<Raft>, Json(req): Json<AppendEntriesRequest>| async move {
                    Json(handle_append(&raft, req).await)
                },
            ),
        )
        .route(
            VOTE_PATH,
            post(
                |State(raft): State<Raft>, Json(req): Json<VoteRequest>| async move {
                    Json(handle_vote(&raft, req).await)
                },
            ),
        )
        .route(
            SNAPSHOT_PATH,
            post(
                |State(raft): State<Raft>, Json(req): Json<SnapshotRequest>| async move {
                    Json(handle_snapshot(&raft, req).await)
                },
            ),
        )
        .route_layer(axum::middleware::from_fn_with_state(auth, require_node))
        .with_state(raft)
}

/// A network signing with the node key derived from `secret`.
fn network(secret: &[u8]) -> HttpNetwork {
    let keys = ClusterSecret::from_bytes(secret).keys();
    let auth = Arc::new(NodeAuth::new(&keys.node_http));
    HttpNetwork::new(PeerHttp::new(Some(auth), None, Duration::from_secs(1), None).unwrap())
}

struct Node {
    raft: Raft,
    info: RaftNode,
    store: watch::Receiver<Arc<Store>>,
    server: tokio::task::JoinHandle<()>,
    _dir: TempDir,
}

async fn start_node(id: NodeId) -> Node {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let info = RaftNode {
        name: format!("n{id}"),
        api_addr: format!("http://{}", listener.local_addr().unwrap()),
    };
    let dir = tempfile::tempdir().unwrap();
    let (log, sm) = open(dir.path()).await.unwrap();
    let store = sm.subscribe();
    let network = network(&KEY);
    let raft = Raft::new(
        id,
        Arc::new(raft_config(std::time::Duration::from_millis(
            everynode::config::DEFAULT_RAFT_HEARTBEAT_MS,
        ))),
        network,
        log,
        sm,
    )
    .await
    .unwrap();
    let app = routes(raft.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Node {
        raft,
        info,
        store,
        server,
        _dir: dir,
    }
}

async fn wait_store(node: &Node, what: &str, pred: impl FnMut(&Arc<Store>) -> bool) -> Store {
    let mut rx = node.store.clone();
    let store = tokio::time::timeout(SETTLE, rx.wait_for(pred))
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for: {what}"))
        .unwrap();
    (**store).clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_replicate_over_http_and_a_newcomer_gets_a_snapshot() {
    let _machine = crate::support::shared_machine();
    let mut nodes = BTreeMap::new();
    for id in 1..=3 {
        nodes.insert(id, start_node(id).await);
    }
    let members: BTreeMap<NodeId, RaftNode> = nodes.iter().map(|(id, n)| (*id, n.info.clone())).collect();
    nodes[&1].raft.initialize(members).await.unwrap();
    nodes[&1]
        .raft
        .wait(Some(SETTLE))
        .metrics(|m| m.current_leader.is_some(), "leader elected")
        .await
        .unwrap();

    let put = Command::LabelNode {
        node: "a".into(),
        set: [("image".to_string(), "busybox".to_string())].into(),
        remove: Default::default(),
    };
    let (took, resp) = write_through_leader(nodes.values().map(|n| &n.raft), put, SETTLE).await;
    let last = resp.log_id.index;
    let leader = &nodes[&took].raft;
    for node in nodes.values() {
        wait_store(node, "a replicated", |s| s.version >= last).await;
    }

    leader.trigger().snapshot().await.unwrap();
    leader
        .wait(Some(SETTLE))
        .metrics(|m| m.snapshot.is_some_and(|s| s.index >= last), "snapshot")
        .await
        .unwrap();
    leader.trigger().purge_log(last).await.unwrap();
    leader
        .wait(Some(SETTLE))
        .metrics(|m| m.purged.is_some_and(|p| p.index >= last), "purged")
        .await
        .unwrap();

    let newcomer = start_node(4).await;
    leader.add_learner(4, newcomer.info.clone(), true).await.unwrap();
    let store = wait_store(&newcomer, "snapshot installed over HTTP", |s| s.version >= last).await;
    assert_eq!(store.nodes["a"].labels["image"], "busybox");

    for node in nodes.values().chain([&newcomer]) {
        node.raft.shutdown().await.unwrap();
        node.server.abort();
    }
}

#[tokio::test]
async fn a_peer_that_refuses_our_signature_is_unreachable_not_a_remote_error() {
    let _machine = crate::support::shared_machine();
    let node = start_node(1).await;
    let mut peer = network(&[8; 32]).new_client(1, &node.info).await;
    let err = peer
        .vote(
            VoteRequest::new(Vote::new(1, 2), None),
            RPCOption::new(Duration::from_secs(1)),
        )
        .await
        .unwrap_err();
    match err {
        RPCError::Unreachable(e) => assert!(e.to_string().contains("401"), "{e}"),
        other => panic!("expected Unreachable, got {other:?}"),
    }
    node.raft.shutdown().await.unwrap();
    node.server.abort();
}

#[tokio::test]
async fn an_append_over_the_peer_body_limit_asks_openraft_for_smaller_batches() {
    let _machine = crate::support::shared_machine();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let info = RaftNode {
        name: "n9".into(),
        api_addr: listener.local_addr().unwrap().to_string(),
    };
    let app = axum::Router::new().route(APPEND_PATH, post(|| async { StatusCode::PAYLOAD_TOO_LARGE }));
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let mut peer = HttpNetwork::new(PeerHttp::unsigned()).new_client(9, &info).await;
    let entries = (1..=4)
        .map(|i| Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), i),
            payload: EntryPayload::Blank,
        })
        .collect();
    let rpc = AppendEntriesRequest {
        vote: Vote::new_committed(1, 1),
        prev_log_id: None,
        leader_commit: None,
        entries,
    };
    let err = peer
        .append_entries(rpc, RPCOption::new(Duration::from_secs(1)))
        .await
        .unwrap_err();
    match err {
        RPCError::PayloadTooLarge(e) => assert_eq!(e.entries_hint(), 2),
        other => panic!("expected PayloadTooLarge, got {other:?}"),
    }
    server.abort();
}
