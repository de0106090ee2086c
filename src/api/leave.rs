//! Taking nodes out of the cluster: `POST /v1/local/leave` on a node that leaves by itself, `POST /v1/nodes/{name}/remove` for a dead one.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use tracing::info;

use super::cluster::ClusterView;
use super::error::ApiError;
use super::ApiState;
use crate::control::controller;
use crate::control::store::Command;
use crate::membership::MemberState;

/// Added to the longest grace period of the DaemonSets when waiting for instances to stop.
const STOP_SLACK: Duration = Duration::from_secs(30);
/// How long a leaving node waits for the leader to give its Raft seat away.
const HANDOFF_WAIT: Duration = Duration::from_secs(30);
/// How soon the agent stops once it has answered, so the answer reaches the caller first.
const EXIT_DELAY: Duration = Duration::from_millis(300);

/// What became of a leaving node's Raft seat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Seat {
    /// It voted or was catching up to vote; the leader has given the seat away.
    HandedOver,
    /// It was not part of the Raft group (a non-voter).
    NoSeat,
    /// No other node votes: nobody could take the seat, and the Raft group ends with it.
    LastVoter,
}

/// What `everynode leave` did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaveView {
    pub node: String,
    /// Instances stopped (grace periods honoured) before leaving.
    pub stopped: usize,
    pub seat: Seat,
}

/// `POST /v1/local/leave`: stop every instance here, record the node as gone in the store,
/// wait until the leader has given its Raft seat away, answer, then stop the agent.
pub async fn leave(State(s): State<ApiState>) -> Result<Json<LeaveView>, ApiError> {
    let agent = s.agent.clone().ok_or_else(|| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "no agent runs on this node, so it cannot leave".into(),
        )
    })?;
    let node = s.membership.node_id().to_string();
    let generation = s.membership.self_id().generation_id;
    let runtime_error = |e: crate::runtime::RuntimeError| {
        ApiError(
            StatusCode::BAD_GATEWAY,
            format!("node {node}: cannot list its instances: {e}; nothing was changed"),
        )
    };
    let listed = |agent: &crate::agent::AgentContext| {
        let runtime = agent.runtime.clone();
        let (cluster, node) = (agent.settings.cluster.clone(), agent.settings.node.clone());
        async move { runtime.list(&cluster, &node).await }
    };
    let stopped = listed(&agent).await.map_err(runtime_error)?.len();

    info!(node = %node, "leaving the cluster");
    agent.leaving.send_replace(true);
    let store = s.control.replica.current();
    let longest_grace = store
        .daemonsets
        .values()
        .map(|r| r.daemonset.spec.template.spec.termination_grace_period())
        .max()
        .unwrap_or_default();
    let deadline = Instant::now() + longest_grace + STOP_SLACK;
    loop {
        let left = listed(&agent).await.map_err(runtime_error)?;
        if left.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            let ids: Vec<&str> = left.iter().map(|i| i.id.as_str()).collect();
            return Err(ApiError(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "node {node}: {} instance(s) still run {:?} after their grace periods ({}); the node stays in the cluster running nothing new; check the agent log, then run `everynode leave` again",
                    ids.len(),
                    longest_grace + STOP_SLACK,
                    ids.join(", ")
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    s.control
        .writer
        .write(
            Command::NodeLeft {
                node: node.clone(),
                generation,
                at: crate::rollout::driver::unix_now(),
            },
        )
        .await
        .map_err(|e| {
            let ApiError(code, message) = ApiError::from(e);
            ApiError(
                code,
                format!("node {node} stopped its instances but could not record that it leaves: {message}; run `everynode leave` again once a leader answers"),
            )
        })?;

    let seat = wait_for_handoff(&s, &node).await?;
    info!(node = %node, stopped, ?seat, "left the cluster; stopping the agent");
    let stop = s.shutdown.clone();
    tokio::spawn(async move {
        tokio::time::sleep(EXIT_DELAY).await;
        stop.notify_one();
    });
    Ok(Json(LeaveView { node, stopped, seat }))
}

/// Waits until a voter other than this node no longer lists it as a voter or learner.
async fn wait_for_handoff(s: &ApiState, node: &str) -> Result<Seat, ApiError> {
    let metrics = s.control.raft.metrics().borrow().clone();
    let membership = metrics.membership_config.membership();
    let in_raft = membership
        .voter_ids()
        .chain(membership.learner_ids())
        .any(|id| id == metrics.id);
    if !in_raft {
        return Ok(Seat::NoSeat);
    }
    let peer = &s.control.writer.peer;
    let http = peer
        .stream_client(Some(Duration::from_secs(2)))
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let deadline = Instant::now() + HANDOFF_WAIT;
    loop {
        let peers: Vec<String> = s
            .membership
            .members()
            .await
            .into_iter()
            .filter(|m| m.name != node && m.state == MemberState::Alive && controller::votes(&m.role))
            .map(|m| m.api_addr)
            .collect();
        if peers.is_empty() {
            return Ok(Seat::LastVoter);
        }
        for addr in &peers {
            let request = http
                .get(peer.url(addr, "/v1/cluster"))
                .bearer_auth(&s.auth.readonly_token);
            let Ok(resp) = request.send().await else {
                continue;
            };
            let Ok(view) = resp.json::<ClusterView>().await else {
                continue;
            };
            let seated: BTreeSet<&str> = view
                .voters
                .iter()
                .chain(&view.learners)
                .map(String::as_str)
                .collect();
            let leads_elsewhere = view.leader.as_deref().is_some_and(|l| l != node);
            if leads_elsewhere && !seated.contains(node) {
                return Ok(Seat::HandedOver);
            }
        }
        if Instant::now() >= deadline {
            return Err(ApiError(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "node {node} stopped its instances and is recorded as gone, but after {HANDOFF_WAIT:?} the leader still lists it as a Raft member; `everynode cluster` shows the voters; run `everynode leave` again"
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What `everynode remove node` did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoveView {
    pub node: String,
    /// The state the node was in: `dead`, or `left` when it was already gone (nothing to do).
    pub was: MemberState,
}

/// `POST /v1/nodes/{name}/remove`: forget a dead node. A live node is refused: it would keep
/// running DaemonSets nobody tracks.
pub async fn remove(
    State(s): State<ApiState>,
    Path(node): Path<String>,
) -> Result<Json<RemoveView>, ApiError> {
    let members = s.membership.members().await;
    let member = members.iter().find(|m| m.name == node).ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            format!("node {node} not found; `everynode get nodes` lists the members"),
        )
    })?;
    match member.state {
        MemberState::Alive | MemberState::Joining => Err(ApiError(
            StatusCode::CONFLICT,
            format!(
                "node {node} is {}: removing a running node would leave its instances running untracked; run `everynode leave --server http://{}` to take it out gracefully, or stop its agent and run this again once `everynode get nodes` shows it dead",
                member.state, member.api_addr
            ),
        )),
        MemberState::Left => Ok(Json(RemoveView {
            node,
            was: MemberState::Left,
        })),
        MemberState::Dead => {
            s.control
                .writer
                .write(
                    Command::NodeLeft {
                        node: node.clone(),
                        generation: member.generation,
                        at: crate::rollout::driver::unix_now(),
                    },
                )
                .await?;
            info!(node = %node, "removed a dead node");
            Ok(Json(RemoveView {
                node,
                was: MemberState::Dead,
            }))
        }
    }
}
