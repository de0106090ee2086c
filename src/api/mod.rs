//! The HTTP JSON API every node serves: members, health and Prometheus metrics.

pub mod metrics;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};

use crate::membership::{Member, Membership};

/// What the handlers share; cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    pub membership: Membership,
}

/// The API routes, ready to be served on a listener.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/members", get(members))
        .route("/metrics", get(metrics_text))
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
        metrics::render(&state.membership).await,
    )
}
