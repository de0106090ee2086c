//! Node overrides: labels, taints, drain and uncordon.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::ApiState;
use crate::control::store::Command;
use crate::scheduling::{Taint, TaintEffect};

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
