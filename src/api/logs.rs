//! Instance logs: read or followed on this node, or through it from the node that runs the instance.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::ApiState;
use crate::membership::MemberState;

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

/// `GET /v1/local/logs/{daemonset}`: this node's instance of the DaemonSet (an app container's
/// over an init container's, then the running one, else the most recent), read from the
/// runtime: JSON ([`LogsView`]), or with `follow=true` plain text streamed as it is written.
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
        // An app container's output before an init container's, as kubectl logs shows the
        // first container unless told otherwise; init output while the pod initializes.
        .max_by_key(|i| {
            let app = crate::runtime::labels::init_index(&i.labels).is_none();
            (app, i.state.is_running(), i.started_at)
        })
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
