//! The HTTP JSON API every node serves: members, DaemonSets, node overrides, health, Prometheus metrics, and the node-to-node control endpoints.
//!
//! # Layout
//! - `auth`: bearer tokens for people, signatures for nodes, as route layers.
//! - `error`: the error answer every handler returns.
//! - `internal`: node-to-node routes (Raft RPCs, the store copy, forwarded writes).
//! - `daemonsets`, `configs` (ConfigMaps, Secrets), `rollout`, `pods`, `logs`, `nodes`, `cluster`,
//!   `leave`: one file per resource.
//! - `metrics`: the Prometheus text of `/metrics`.

pub mod auth;
pub mod cluster;
pub mod configs;
pub mod daemonsets;
pub mod error;
pub mod internal;
pub mod leave;
pub mod logs;
pub mod metrics;
pub mod nodes;
pub mod pods;
pub mod rollout;

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::{Json, Router};

use crate::control::replica::Replica;
use crate::control::store::Store;
use crate::control::types::Raft;
use crate::control::writer::Writer;
use crate::membership::{Member, Membership};

/// Largest request body accepted; a manifest of hundreds of DaemonSets fits easily.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// The control plane as the API sees it.
pub struct ControlHandle {
    pub raft: Raft,
    pub replica: Replica<Store>,
    pub writer: Writer,
}

/// What the handlers share; cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    pub membership: Membership,
    pub control: Arc<ControlHandle>,
    /// This node's agent (runtime and identity), for `logs`; `None` where no agent runs.
    pub agent: Option<Arc<crate::agent::AgentContext>>,
    /// The tokens and node key requests are checked against.
    pub auth: Arc<auth::ApiAuth>,
    /// Seals and opens Secret data (the cluster's at-rest key).
    pub secrets: Arc<crate::security::at_rest::SecretBox>,
    /// How long a dead node still counts in DaemonSet statuses (`--dead-node-grace`).
    pub dead_node_grace: std::time::Duration,
    /// Notified to stop the node from within (after `everynode leave`).
    pub shutdown: Arc<tokio::sync::Notify>,
}

/// The API routes, ready to be served on a listener. `/healthz` is open; node-to-node routes
/// need a node signature; everything else a bearer token (see [`auth`]).
pub fn router(state: ApiState) -> Router {
    let internal = Router::new()
        .route("/raft/append", post(internal::raft_append))
        .route("/raft/vote", post(internal::raft_vote))
        .route("/raft/snapshot", post(internal::raft_snapshot))
        .route(crate::control::distribute::STORE_PATH, get(internal::store_copy))
        .route(
            crate::control::writer::FORWARD_PATH,
            post(internal::forwarded_write),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.auth.clone(),
            auth::require_node,
        ));
    let admin = Router::new()
        .route("/metrics", get(metrics_text))
        .route("/v1/members", get(members))
        .route("/v1/cluster", get(cluster::cluster))
        .route("/v1/apply", post(daemonsets::apply))
        .route("/v1/daemonsets", get(daemonsets::list_daemonsets))
        .route("/v1/daemonsets/{name}", get(daemonsets::get_daemonset))
        .route("/v1/daemonsets/{name}", delete(daemonsets::delete_daemonset))
        .route("/v1/daemonsets/{name}/rollout", get(rollout::get_rollout))
        .route("/v1/daemonsets/{name}/rollout/pause", post(rollout::pause))
        .route("/v1/daemonsets/{name}/rollout/resume", post(rollout::resume))
        .route("/v1/daemonsets/{name}/rollout/restart", post(rollout::restart))
        .route("/v1/daemonsets/{name}/rollout/undo", post(rollout::undo))
        .route("/v1/daemonsets/{name}/pods/{node}", delete(rollout::delete_pod))
        .route("/v1/configmaps", get(configs::list_config_maps))
        .route(
            "/v1/configmaps/{namespace}/{name}",
            get(configs::get_config_map).delete(configs::delete_config_map),
        )
        .route("/v1/secrets", get(configs::list_secrets))
        .route(
            "/v1/secrets/{namespace}/{name}",
            get(configs::get_secret).delete(configs::delete_secret),
        )
        .route("/v1/pods", get(pods::list_pods))
        .route("/v1/local/logs/{daemonset}", get(logs::local_logs))
        .route("/v1/logs/{daemonset}", get(logs::logs))
        .route("/v1/nodes/{name}/labels", post(nodes::label_node))
        .route("/v1/nodes/{name}/taints", post(nodes::taint_node))
        .route("/v1/nodes/{name}/drain", post(nodes::drain_node))
        .route("/v1/nodes/{name}/remove", post(leave::remove))
        .route("/v1/local/leave", post(leave::leave))
        .route_layer(axum::middleware::from_fn_with_state(
            state.auth.clone(),
            auth::require_token,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .merge(internal)
        .merge(admin)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn members(State(state): State<ApiState>) -> Json<Vec<Member>> {
    Json(state.membership.members().await)
}

async fn metrics_text(State(state): State<ApiState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        metrics::render(&state).await,
    )
}
