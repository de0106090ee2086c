//! Rollout endpoints: progress of a DaemonSet's rollout, pause/resume/undo/restart, and deleting one node's instance.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::ApiState;
use crate::control::store::{Command, DaemonSetRecord, Response as StoreResponse, Store};
use crate::membership::{Member, MemberState};
use crate::rollout::driver::{decide, selects, unix_now, unix_now_ms};
use crate::rollout::Failure;
use crate::spec::{RolloutPolicy, Strategy};

/// The phase of a rollout, as `get ds` and `rollout status` show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Every eligible node runs the current revision, available.
    Complete,
    Progressing,
    /// `rollout pause`.
    Paused,
    /// The progress deadline passed and the policy is `pause`.
    Failed,
    /// The progress deadline passed and the DaemonSet is returning to the earlier revision.
    RollingBack,
    /// Back on the earlier revision after a failure.
    RolledBack,
}

impl Phase {
    /// `rollout status` stops waiting: 0 for `Complete`, non-zero for the others here.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Phase::Complete | Phase::Failed | Phase::Paused | Phase::RolledBack
        )
    }
}

/// One node in a rollout.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeRollout {
    pub node: String,
    /// The revision number the node may run (granted, or kept from before the rollout).
    pub granted: Option<u64>,
    /// The revision number the node reports running, if any.
    pub running: Option<u64>,
    pub state: String,
    pub available: bool,
}

/// A node the last rollout finished without, kept on an older revision until it returns.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeldNode {
    pub node: String,
    /// The revision number it keeps (none if the history no longer has it).
    pub revision: Option<u64>,
    /// Unix seconds since it has been held.
    pub since: u64,
    /// Back and waiting for its wave; otherwise still absent.
    pub returned: bool,
}

/// A DaemonSet's rollout, for `rollout status` and `describe`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RolloutView {
    pub name: String,
    pub phase: Phase,
    pub strategy: String,
    pub revision: u64,
    pub revision_hash: String,
    pub wave: u64,
    pub paused: bool,
    /// Eligible (alive, selected) nodes.
    pub desired: usize,
    /// Nodes granted the current revision.
    pub updated: usize,
    /// Nodes whose instance is available, whatever its revision.
    pub available: usize,
    pub updated_available: usize,
    /// Nodes granted the current revision that do not report it available yet.
    pub pending: Vec<String>,
    pub failure: Option<Failure>,
    pub nodes: Vec<NodeRollout>,
    /// Nodes the rollout finished without (selected, but dead or cut off): they keep their
    /// older revision and are updated within the budget when they return. `Complete` means
    /// every eligible node is updated; these are not eligible until they return.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held: Vec<HeldNode>,
}

fn strategy_text(record: &DaemonSetRecord) -> String {
    let spec = &record.daemonset.spec;
    let policy = RolloutPolicy::of(&record.daemonset.metadata.annotations);
    let failure = format!(
        "progress deadline {}s, on failure {}",
        policy.progress_deadline_secs,
        match policy.on_failure {
            crate::spec::OnFailure::Pause => "pause",
            crate::spec::OnFailure::Rollback => "rollback",
        }
    );
    match Strategy::from_spec(&spec.update_strategy) {
        Strategy::OnDelete => format!("OnDelete, {failure}"),
        Strategy::RollingUpdate {
            max_unavailable,
            max_surge,
        } => format!(
            "RollingUpdate maxUnavailable {max_unavailable}, maxSurge {max_surge}, minReadySeconds {}, {failure}",
            spec.min_ready_seconds
        ),
    }
}

/// Builds the rollout view from the store copy and the gossiped statuses; `grace` is
/// `--dead-node-grace`.
pub fn rollout_view(
    record: &DaemonSetRecord,
    members: &[Member],
    store: &Store,
    grace: std::time::Duration,
) -> RolloutView {
    let now_ms = unix_now_ms();
    let d = decide(record, members, store, now_ms, grace);
    let r = &record.rollout;
    let current = record.current_revision();
    let p = d.progress;
    let done = p.updated_available == p.desired;
    let rolled_back = r.failure.as_ref().is_some_and(|f| f.rolled_back_to.is_some());
    let phase = if r.failure.is_some() && !rolled_back {
        Phase::Failed
    } else if r.paused {
        Phase::Paused
    } else if rolled_back {
        if done {
            Phase::RolledBack
        } else {
            Phase::RollingBack
        }
    } else if done && !r.in_progress() {
        Phase::Complete
    } else {
        // Every live node updated but the leader has not recorded the end yet (it is what
        // holds absent nodes back on their revision): a moment more, so that `rollout status`
        // reports the rollout as it ends, held nodes included.
        Phase::Progressing
    };
    let min_ready = record.daemonset.spec.min_ready().as_secs();
    let number = |hash: &str| record.revision_by_hash(hash).map(|r| r.number);
    let nodes = members
        .iter()
        .filter(|m| m.state == MemberState::Alive && selects(record, m, store))
        .map(|m| {
            let st = m.pods.get(&record.daemonset.metadata.name);
            NodeRollout {
                node: m.name.clone(),
                granted: Some(record.granted_revision(&m.name).number),
                running: st.and_then(|s| number(&s.revision)),
                state: st.map_or_else(|| "-".to_string(), |s| s.state.to_string()),
                available: st.is_some_and(|s| s.available_ms(min_ready, now_ms)),
            }
        })
        .collect::<Vec<NodeRollout>>();
    let held = r
        .held
        .iter()
        .map(|(node, h)| HeldNode {
            node: node.clone(),
            revision: number(&h.revision),
            since: h.since,
            returned: nodes.iter().any(|n| n.node == *node),
        })
        .collect();
    RolloutView {
        name: record.daemonset.metadata.name.clone(),
        phase,
        strategy: strategy_text(record),
        revision: current.number,
        revision_hash: current.hash.clone(),
        wave: r.wave,
        paused: r.paused,
        desired: p.desired,
        updated: p.updated,
        available: p.available,
        updated_available: p.updated_available,
        pending: p.pending,
        failure: r.failure.clone(),
        nodes,
        held,
    }
}

fn not_found(name: &str) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        format!("daemonset {name} not found (see `everynode get ds`)"),
    )
}

pub async fn get_rollout(
    State(s): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<RolloutView>, ApiError> {
    let store = s.control.replica.current();
    let record = store.daemonsets.get(&name).ok_or_else(|| not_found(&name))?;
    let members = s.membership.members().await;
    Ok(Json(rollout_view(record, &members, &store, s.dead_node_grace)))
}

/// Body of `POST .../rollout/undo`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct UndoRequest {
    pub to_revision: Option<u64>,
}

/// What a rollout command did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RolloutActionResult {
    pub name: String,
    pub action: String,
    /// The current revision afterwards.
    pub revision: u64,
    pub changed: bool,
}

async fn write(
    s: &ApiState,
    name: &str,
    action: &str,
    cmd: Command,
) -> Result<Json<RolloutActionResult>, ApiError> {
    let resp = s.control.writer.write(cmd).await?;
    let changed = match resp {
        StoreResponse::NotFound { .. } => return Err(not_found(name)),
        StoreResponse::Conflict { message } => return Err(ApiError(StatusCode::CONFLICT, message)),
        StoreResponse::Applied { results } => results
            .first()
            .is_some_and(|a| a.outcome != crate::control::store::ApplyOutcome::Unchanged),
        StoreResponse::Ok => true,
    };
    // The writer returns once committed; this node's copy may lag a moment behind.
    let revision = wait_for_copy(s, name).await;
    Ok(Json(RolloutActionResult {
        name: name.to_string(),
        action: action.to_string(),
        revision,
        changed,
    }))
}

/// The current revision number of `name` once the local copy has caught up with the leader.
async fn wait_for_copy(s: &ApiState, name: &str) -> u64 {
    let target = s
        .control
        .raft
        .metrics()
        .borrow()
        .last_applied
        .map(|l| l.index)
        .unwrap_or(0);
    let mut rx = s.control.replica.subscribe();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        rx.wait_for(|st| st.version >= target),
    )
    .await;
    s.control
        .replica
        .current()
        .daemonsets
        .get(name)
        .map(|r| r.current_revision().number)
        .unwrap_or(0)
}

pub async fn pause(
    State(s): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<RolloutActionResult>, ApiError> {
    let cmd = Command::PauseRollout {
        name: name.clone(),
        paused: true,
        at: unix_now(),
    };
    write(&s, &name, "paused", cmd).await
}

pub async fn resume(
    State(s): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<RolloutActionResult>, ApiError> {
    let cmd = Command::PauseRollout {
        name: name.clone(),
        paused: false,
        at: unix_now(),
    };
    write(&s, &name, "resumed", cmd).await
}

pub async fn restart(
    State(s): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<RolloutActionResult>, ApiError> {
    let cmd = Command::RestartRollout {
        name: name.clone(),
        at: unix_now(),
    };
    write(&s, &name, "restarted", cmd).await
}

pub async fn undo(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    Json(req): Json<UndoRequest>,
) -> Result<Json<RolloutActionResult>, ApiError> {
    let cmd = Command::Undo {
        name: name.clone(),
        to_revision: req.to_revision,
        at: unix_now(),
    };
    write(&s, &name, "rolled back", cmd).await
}

pub async fn delete_pod(
    State(s): State<ApiState>,
    Path((name, node)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let members = s.membership.members().await;
    if !members.iter().any(|m| m.name == node) {
        let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("node {node} is not a member; members are {}", names.join(", ")),
        ));
    }
    let cmd = Command::DeletePod {
        name: name.clone(),
        node: node.clone(),
        at: unix_now(),
    };
    let _ = write(&s, &name, "deleted", cmd).await?;
    Ok(StatusCode::NO_CONTENT)
}
