//! Control-plane endpoints: Raft RPCs between nodes, the store copy, forwarded writes, and the DaemonSet and node-override API.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::ApiState;
use crate::agent::status::{aggregate, node_count, Counts, NodeCount, NodeReport, PodStatus};
use crate::control::network;
use crate::control::nodes;
use crate::control::store::{Command, DaemonSetRecord, Response as StoreResponse, Store};
use crate::control::writer::{ForwardedWrite, WriteError};
use crate::membership::{Member, MemberState};
use crate::scheduling::{Taint, TaintEffect};
use crate::spec::DaemonSet;

/// An error answer: `{"error": "..."}` with a status code scripts can branch on.
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

impl From<WriteError> for ApiError {
    fn from(e: WriteError) -> Self {
        let code = match e {
            WriteError::NotLeader => StatusCode::CONFLICT,
            WriteError::NoQuorum { .. }
            | WriteError::NoLeader { .. }
            | WriteError::Unacknowledged { .. }
            | WriteError::LeaderRefused(_)
            | WriteError::NotFormed => StatusCode::SERVICE_UNAVAILABLE,
            // Not 503: a forwarding node must pass this on, not retry and then claim nothing changed.
            WriteError::Unconfirmed { .. } => StatusCode::GATEWAY_TIMEOUT,
            WriteError::Raft(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(code, e.to_string())
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

// ---- between nodes ----

/// 421 Misdirected Request: the sender counts this node as unreachable for that member.
fn refuse_misdirected(s: &ApiState, to: &network::Addressee) -> Result<(), ApiError> {
    match network::misdirected(&s.control.raft, to) {
        Some(why) => Err(ApiError(StatusCode::MISDIRECTED_REQUEST, why)),
        None => Ok(()),
    }
}

pub async fn raft_append(
    State(s): State<ApiState>,
    Query(to): Query<network::Addressee>,
    Json(req): Json<crate::control::types::AppendEntriesRequest>,
) -> Result<impl IntoResponse, ApiError> {
    refuse_misdirected(&s, &to)?;
    Ok(Json(network::handle_append(&s.control.raft, req).await))
}

pub async fn raft_vote(
    State(s): State<ApiState>,
    Query(to): Query<network::Addressee>,
    Json(req): Json<crate::control::types::VoteRequest>,
) -> Result<impl IntoResponse, ApiError> {
    refuse_misdirected(&s, &to)?;
    Ok(Json(network::handle_vote(&s.control.raft, req).await))
}

pub async fn raft_snapshot(
    State(s): State<ApiState>,
    Query(to): Query<network::Addressee>,
    Json(req): Json<network::SnapshotRequest>,
) -> Result<impl IntoResponse, ApiError> {
    refuse_misdirected(&s, &to)?;
    Ok(Json(network::handle_snapshot(&s.control.raft, req).await))
}

pub async fn store_copy(State(s): State<ApiState>) -> Json<Store> {
    Json((*s.control.replica.current()).clone())
}

pub async fn forwarded_write(
    State(s): State<ApiState>,
    Json(req): Json<ForwardedWrite>,
) -> Result<Json<StoreResponse>, ApiError> {
    Ok(Json(s.control.writer.write_forwarded(req).await?))
}

// ---- DaemonSets ----

/// `POST /v1/apply`: the objects of one manifest, all validated, then stored together.
#[derive(Debug, Serialize, Deserialize)]
pub struct ApplyRequest {
    pub objects: Vec<serde_json::Value>,
}

/// One object's result, with the warnings for fields everynode does not honour.
#[derive(Debug, Serialize, Deserialize)]
pub struct ApplyResult {
    pub name: String,
    pub outcome: crate::control::store::ApplyOutcome,
    pub revision: u64,
    pub warnings: Vec<String>,
}

pub async fn apply(
    State(s): State<ApiState>,
    Json(req): Json<ApplyRequest>,
) -> Result<Json<Vec<ApplyResult>>, ApiError> {
    if req.objects.is_empty() {
        return Err(ApiError(StatusCode::BAD_REQUEST, "no objects to apply".into()));
    }
    let mut valid: Vec<DaemonSet> = Vec::new();
    let mut warnings: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut errors: Vec<String> = Vec::new();
    let mut names = BTreeSet::new();
    for (i, obj) in req.objects.iter().enumerate() {
        let bytes = serde_json::to_vec(obj).expect("JSON values serialize");
        match DaemonSet::from_json(&bytes) {
            Ok(v) => {
                let name = v.daemonset.metadata.name.clone();
                if !names.insert(name.clone()) {
                    errors.push(format!("object {i}: daemonset {name} appears twice in one apply"));
                }
                warnings.insert(name, v.warnings.iter().map(|w| w.to_string()).collect());
                valid.push(v.daemonset);
            }
            Err(invalid) => errors.extend(invalid.errors.iter().map(|e| format!("object {i}: {e}"))),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError(StatusCode::UNPROCESSABLE_ENTITY, errors.join("\n")));
    }
    let cmd = Command::Apply {
        daemonsets: valid,
        at: now(),
    };
    match s.control.writer.write(cmd).await? {
        StoreResponse::Applied { results } => Ok(Json(
            results
                .into_iter()
                .map(|r| ApplyResult {
                    warnings: warnings.remove(&r.name).unwrap_or_default(),
                    name: r.name,
                    outcome: r.outcome,
                    revision: r.revision,
                })
                .collect(),
        )),
        StoreResponse::Conflict { message } => Err(ApiError(StatusCode::CONFLICT, message)),
        other => Err(ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("unexpected result {other:?}"),
        )),
    }
}

/// Where one DaemonSet runs (or not) on one node, and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodePlacement {
    pub node: String,
    pub node_state: MemberState,
    pub should_run: bool,
    pub reason: String,
}

/// A DaemonSet as `get` and `describe` show it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DaemonSetView {
    pub name: String,
    pub namespace: String,
    /// Nodes the DaemonSet selects that are alive, or dead for less than `--dead-node-grace`.
    pub desired: usize,
    pub revision: u64,
    pub revision_hash: String,
    pub images: Vec<String>,
    pub node_selector: BTreeMap<String, String>,
    pub created_at: u64,
    /// Kubernetes' status numbers, from the statuses the nodes gossip.
    #[serde(default)]
    pub status: Counts,
    pub record: DaemonSetRecord,
    /// Where the rollout of the current revision stands.
    pub rollout: super::rollout::RolloutView,
    /// Filled for `describe` (one DaemonSet): every known node with the placement verdict.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub placement: Vec<NodePlacement>,
}

fn view(
    record: &DaemonSetRecord,
    members: &[Member],
    store: &Store,
    with_placement: bool,
    dead_node_grace: Duration,
) -> DaemonSetView {
    let ds = &record.daemonset;
    let now = now();
    let mut placement = Vec::new();
    let mut reports = Vec::new();
    for m in members {
        let mut p = crate::scheduling::placement::should_run(ds, &nodes::effective(m, store));
        if store.is_drained(&m.name) {
            p.should_run = false;
            p.reasons.clear();
        }
        let dead_for = m.dead_since.map(|s| Duration::from_secs(now.saturating_sub(s)));
        match node_count(m.state, dead_for, dead_node_grace) {
            NodeCount::Counted => reports.push(NodeReport {
                selected: p.should_run,
                status: m.pods.get(&ds.metadata.name),
                lost: false,
            }),
            NodeCount::Lost => reports.push(NodeReport {
                selected: p.should_run,
                status: None,
                lost: true,
            }),
            NodeCount::Ignored => {}
        }
        if with_placement && m.state != MemberState::Left {
            placement.push(NodePlacement {
                node: m.name.clone(),
                node_state: m.state,
                should_run: p.should_run,
                reason: if store.is_drained(&m.name) {
                    "does not run here: the node is drained (`everynode uncordon` ends it)".into()
                } else {
                    p.summary()
                },
            });
        }
    }
    let current = record.current_revision();
    let status = aggregate(reports, &current.hash, ds.spec.min_ready().as_secs(), now);
    DaemonSetView {
        rollout: super::rollout::rollout_view(record, members, store),
        desired: status.desired,
        status,
        name: ds.metadata.name.clone(),
        namespace: ds.metadata.namespace.clone(),
        revision: current.number,
        revision_hash: current.hash.clone(),
        images: ds
            .spec
            .template
            .spec
            .containers
            .iter()
            .map(|c| c.image.clone())
            .collect(),
        node_selector: ds.spec.template.spec.node_selector.clone(),
        created_at: record.created_at,
        record: record.clone(),
        placement,
    }
}

pub async fn list_daemonsets(State(s): State<ApiState>) -> Json<Vec<DaemonSetView>> {
    let store = s.control.replica.current();
    let members = s.membership.members().await;
    Json(
        store
            .daemonsets
            .values()
            .map(|r| view(r, &members, &store, false, s.dead_node_grace))
            .collect(),
    )
}

pub async fn get_daemonset(
    State(s): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<DaemonSetView>, ApiError> {
    let store = s.control.replica.current();
    let record = store
        .daemonsets
        .get(&name)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("daemonset {name} not found")))?;
    let members = s.membership.members().await;
    Ok(Json(view(record, &members, &store, true, s.dead_node_grace)))
}

pub async fn delete_daemonset(
    State(s): State<ApiState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    match s
        .control
        .writer
        .write(Command::Delete { name: name.clone() })
        .await?
    {
        StoreResponse::NotFound { .. } => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("daemonset {name} not found"),
        )),
        _ => Ok(StatusCode::NO_CONTENT),
    }
}

// ---- pods ----

/// One DaemonSet instance on one node, from the node's gossiped status.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PodView {
    pub daemonset: String,
    pub node: String,
    pub node_state: MemberState,
    /// Revision number, when the store still has the revision the node reports.
    pub revision: Option<u64>,
    pub revision_hash: String,
    pub state: String,
    pub ready: bool,
    pub restarts: u32,
    pub started_at: Option<u64>,
    pub ready_since: Option<u64>,
    pub last_error: Option<String>,
    /// The template labels of the DaemonSet, for `get pods -l`.
    pub labels: BTreeMap<String, String>,
}

/// Builds the pod list: one entry per (node, DaemonSet) status, sorted by DaemonSet then node.
pub fn pods(members: &[Member], store: &Store) -> Vec<PodView> {
    let mut out = Vec::new();
    // A node that left runs nothing; whatever it last said is history.
    for m in members.iter().filter(|m| m.state != MemberState::Left) {
        for (name, st) in &m.pods {
            let record = store.daemonsets.get(name);
            out.push(pod_view(m, name, st, record));
        }
    }
    out.sort_by(|a, b| (&a.daemonset, &a.node).cmp(&(&b.daemonset, &b.node)));
    out
}

fn pod_view(m: &Member, name: &str, st: &PodStatus, record: Option<&DaemonSetRecord>) -> PodView {
    PodView {
        daemonset: name.to_string(),
        node: m.name.clone(),
        node_state: m.state,
        revision: record.and_then(|r| {
            r.revisions
                .iter()
                .find(|rev| rev.hash == st.revision)
                .map(|rev| rev.number)
        }),
        revision_hash: st.revision.clone(),
        state: st.state.clone(),
        ready: st.ready,
        restarts: st.restarts,
        started_at: st.started_at,
        ready_since: st.ready_since,
        last_error: st.last_error.clone(),
        labels: record
            .map(|r| r.daemonset.spec.template.metadata.labels.clone())
            .unwrap_or_default(),
    }
}

pub async fn list_pods(State(s): State<ApiState>) -> Json<Vec<PodView>> {
    let store = s.control.replica.current();
    let members = s.membership.members().await;
    Json(pods(&members, &store))
}

/// `?tail=N&follow=true` of the logs endpoints (`node=NAME` on `/v1/logs`).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct LogsQuery {
    pub tail: Option<usize>,
    #[serde(default)]
    pub follow: bool,
    /// The node whose instance to read (`/v1/logs` only).
    pub node: Option<String>,
}

impl LogsQuery {
    /// The query string for the same read on another node (without `node`).
    fn forward(&self) -> String {
        let mut q = Vec::new();
        if let Some(n) = self.tail {
            q.push(format!("tail={n}"));
        }
        if self.follow {
            q.push("follow=true".to_string());
        }
        if q.is_empty() {
            String::new()
        } else {
            format!("?{}", q.join("&"))
        }
    }
}

/// The output of one DaemonSet's instance on the node that serves the request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogsView {
    pub daemonset: String,
    pub node: String,
    pub instance: String,
    pub logs: String,
}

/// `GET /v1/local/logs/{daemonset}`: this node's instance of the DaemonSet (the running one,
/// else the most recent), read from the runtime: JSON ([`LogsView`]), or with `follow=true`
/// plain text streamed as it is written.
pub async fn local_logs(
    State(s): State<ApiState>,
    Path(daemonset): Path<String>,
    axum::extract::Query(q): axum::extract::Query<LogsQuery>,
) -> Result<Response, ApiError> {
    let agent = s.agent.as_ref().ok_or_else(|| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "no agent runs on this node".into(),
        )
    })?;
    let node = agent.settings.node.clone();
    let unavailable =
        |e: crate::runtime::RuntimeError| ApiError(StatusCode::BAD_GATEWAY, format!("node {node}: {e}"));
    let instances = agent
        .runtime
        .list(&agent.settings.cluster, &node)
        .await
        .map_err(unavailable)?;
    let instance = instances
        .into_iter()
        .filter(|i| i.daemonset == daemonset)
        .max_by_key(|i| (i.state.is_running(), i.started_at))
        .ok_or_else(|| {
            ApiError(
                StatusCode::NOT_FOUND,
                format!("daemonset {daemonset} has no instance on node {node}; `everynode get pods` shows where it runs"),
            )
        })?;
    if q.follow {
        let stream = agent
            .runtime
            .follow_logs(&instance.id, q.tail)
            .await
            .map_err(unavailable)?;
        return Ok((
            [(axum::http::header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            axum::body::Body::from_stream(stream),
        )
            .into_response());
    }
    let logs = agent
        .runtime
        .logs(&instance.id, q.tail)
        .await
        .map_err(unavailable)?;
    Ok(Json(LogsView {
        daemonset,
        node,
        instance: instance.id,
        logs,
    })
    .into_response())
}

/// `GET /v1/logs/{daemonset}?node=NAME`: the instance's output on any node, read here when
/// NAME is this node, else streamed through from NAME's own API, so a client only needs to
/// reach one node.
pub async fn logs(
    State(s): State<ApiState>,
    Path(daemonset): Path<String>,
    query: axum::extract::Query<LogsQuery>,
) -> Result<Response, ApiError> {
    let Some(node) = query.node.clone() else {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "say whose instance to read with ?node=NAME".into(),
        ));
    };
    if node == s.membership.node_id() {
        return local_logs(State(s), Path(daemonset), query).await;
    }
    let members = s.membership.members().await;
    let member = members.iter().find(|m| m.name == node).ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            format!("node {node} not found; `everynode get nodes` lists the members"),
        )
    })?;
    if member.state != MemberState::Alive || member.api_addr.is_empty() {
        return Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "node {node} is {} and cannot be asked for its logs; `everynode get nodes` shows its state",
                member.state
            ),
        ));
    }
    let peer = &s.control.writer.peer;
    let url = peer.url(
        &member.api_addr,
        &format!("/v1/local/logs/{daemonset}{}", query.forward()),
    );
    // A followed stream lasts as long as the reader wants it: no overall timeout then.
    let http = peer
        .stream_client((!query.follow).then_some(Duration::from_secs(30)))
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    // Reading logs needs no more than the read-only token, which every node derives alike.
    let upstream = http
        .get(&url)
        .bearer_auth(&s.auth.readonly_token)
        .send()
        .await
        .map_err(|e| {
            ApiError(
                StatusCode::BAD_GATEWAY,
                format!(
                    "cannot reach node {node} at {} for its logs: {e}",
                    member.api_addr
                ),
            )
        })?;
    let status = StatusCode::from_u16(upstream.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = upstream
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string();
    // Chunks are passed on as they come; when the reader goes away this stream is dropped
    // and with it the connection to the other node, which stops following there too.
    let body = futures_util::stream::unfold(Some(upstream), |resp| async move {
        let mut resp = resp?;
        match resp.chunk().await {
            Ok(Some(chunk)) => Some((Ok(chunk), Some(resp))),
            Ok(None) => None,
            Err(e) => Some((Err(e), None)),
        }
    });
    Ok((
        status,
        [(axum::http::header::CONTENT_TYPE, content_type)],
        axum::body::Body::from_stream(body),
    )
        .into_response())
}

// ---- node overrides ----

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct LabelRequest {
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    #[serde(default)]
    pub remove: BTreeSet<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct TaintRequest {
    #[serde(default)]
    pub add: Vec<Taint>,
    #[serde(default)]
    pub remove: Vec<(String, Option<TaintEffect>)>,
}

async fn known_node(s: &ApiState, node: &str) -> Result<(), ApiError> {
    if s.membership.members().await.iter().any(|m| m.name == node) {
        Ok(())
    } else {
        Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("node {node} not found; `everynode get nodes` lists the members"),
        ))
    }
}

pub async fn label_node(
    State(s): State<ApiState>,
    Path(node): Path<String>,
    Json(req): Json<LabelRequest>,
) -> Result<StatusCode, ApiError> {
    known_node(&s, &node).await?;
    for (k, v) in &req.set {
        crate::scheduling::labels::validate_label_key(k)
            .and_then(|_| crate::scheduling::labels::validate_label_value(v))
            .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))?;
    }
    s.control
        .writer
        .write(Command::LabelNode {
            node,
            set: req.set,
            remove: req.remove,
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn taint_node(
    State(s): State<ApiState>,
    Path(node): Path<String>,
    Json(req): Json<TaintRequest>,
) -> Result<StatusCode, ApiError> {
    known_node(&s, &node).await?;
    s.control
        .writer
        .write(Command::TaintNode {
            node,
            add: req.add,
            remove: req.remove,
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- cluster ----

/// `GET /v1/cluster`: the Raft group as this node sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterView {
    /// The node answering.
    pub node: String,
    /// This node's role: leader, voter, learner or non-voter.
    pub role: String,
    /// Raft term this node knows; `None` on nodes outside the Raft group.
    pub term: Option<u64>,
    pub leader: Option<String>,
    pub voters: Vec<String>,
    pub learners: Vec<String>,
    /// Highest log index committed and applied here (the leader's is the cluster's).
    pub commit_index: Option<u64>,
    /// Version of the store copy this node serves reads from.
    pub store_version: u64,
}

pub async fn cluster(State(s): State<ApiState>) -> Json<ClusterView> {
    use crate::control::controller::{self as roles, role_of};
    let m = s.control.raft.metrics().borrow().clone();
    let membership = m.membership_config.membership();
    let name_of = |id: u64| {
        membership
            .get_node(&id)
            .map(|n| n.name.clone())
            .unwrap_or_else(|| id.to_string())
    };
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    let learners: BTreeSet<u64> = membership.learner_ids().collect();
    let role = role_of(m.id, m.state, &voters, &learners).to_string();
    let members = s.membership.members().await;
    let in_group = voters.contains(&m.id) || learners.contains(&m.id);
    // Nodes outside the Raft group know the group only from gossip.
    let (leader, voter_names) = if in_group {
        (
            m.current_leader.map(name_of),
            voters.iter().map(|id| name_of(*id)).collect(),
        )
    } else {
        let leader = members
            .iter()
            .find(|x| x.role == roles::LEADER)
            .map(|x| x.name.clone());
        let voters = members
            .iter()
            .filter(|x| roles::votes(&x.role))
            .map(|x| x.name.clone())
            .collect();
        (leader, voters)
    };
    Json(ClusterView {
        node: s.membership.node_id().to_string(),
        role,
        term: in_group.then_some(m.current_term),
        leader,
        voters: voter_names,
        learners: learners.iter().map(|id| name_of(*id)).collect(),
        commit_index: in_group.then(|| m.last_applied.map(|l| l.index)).flatten(),
        store_version: s.control.replica.version(),
    })
}

/// `POST /v1/nodes/{name}/drain`: `{"drained": true}` drains, `false` uncordons.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct DrainRequest {
    pub drained: bool,
}

pub async fn drain_node(
    State(s): State<ApiState>,
    Path(node): Path<String>,
    Json(req): Json<DrainRequest>,
) -> Result<StatusCode, ApiError> {
    known_node(&s, &node).await?;
    s.control
        .writer
        .write(Command::DrainNode {
            node,
            drained: req.drained,
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
