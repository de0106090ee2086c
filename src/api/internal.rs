//! Node-to-node endpoints: Raft RPCs, the store copy, and writes forwarded to the leader.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;

use super::error::ApiError;
use super::ApiState;
use crate::control::network;
use crate::control::store::{Response as StoreResponse, Store};
use crate::control::writer::ForwardedWrite;

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
