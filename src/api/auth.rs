//! Who may call what: node-to-node routes need a node signature, every other route but `/healthz` a bearer token, and a read-only token may only read.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::security::node_auth::{NodeAuth, ANSWER_HEADER, REQUEST_HEADER};
use crate::security::{constant_time_eq, unix_millis};

/// The credentials this node accepts, all derived from the cluster secret.
pub struct ApiAuth {
    pub admin_token: String,
    pub readonly_token: String,
    pub node: Arc<NodeAuth>,
    /// Refused requests by reason, for `/metrics`.
    pub refused: Refused,
}

/// Counters of refused API requests.
#[derive(Debug, Default)]
pub struct Refused {
    pub no_token: AtomicU64,
    pub wrong_token: AtomicU64,
    pub read_only: AtomicU64,
    pub node_signature: AtomicU64,
}

impl Refused {
    pub fn snapshot(&self) -> [(&'static str, u64); 4] {
        [
            ("no_token", self.no_token.load(Ordering::Relaxed)),
            ("wrong_token", self.wrong_token.load(Ordering::Relaxed)),
            ("read_only", self.read_only.load(Ordering::Relaxed)),
            ("node_signature", self.node_signature.load(Ordering::Relaxed)),
        ]
    }
}

impl ApiAuth {
    pub fn new(keys: &crate::security::secret::ClusterKeys) -> ApiAuth {
        ApiAuth {
            admin_token: keys.admin_token.clone(),
            readonly_token: keys.readonly_token.clone(),
            node: Arc::new(NodeAuth::new(&keys.node_http)),
            refused: Refused::default(),
        }
    }
}

fn unauthorized(message: String) -> Response {
    let mut resp = ApiError(StatusCode::UNAUTHORIZED, message).into_response();
    resp.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}

/// Admin routes: the admin token may do anything, the read-only token only GET (and HEAD).
/// Which token a request came with, for handlers that show more to the admin (Secret values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Admin,
    ReadOnly,
}

pub async fn require_token(State(auth): State<Arc<ApiAuth>>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_string());
    let Some(token) = presented else {
        auth.refused.no_token.fetch_add(1, Ordering::Relaxed);
        return unauthorized(
            "no API token: send `Authorization: Bearer TOKEN`; the everynode CLI reads it from --token, \
             EVERYNODE_TOKEN or DATA_DIR/admin-token of a node"
                .into(),
        );
    };
    let mut req = req;
    if constant_time_eq(token.as_bytes(), auth.admin_token.as_bytes()) {
        req.extensions_mut().insert(Role::Admin);
        return next.run(req).await;
    }
    if constant_time_eq(token.as_bytes(), auth.readonly_token.as_bytes()) {
        if matches!(*req.method(), Method::GET | Method::HEAD) {
            req.extensions_mut().insert(Role::ReadOnly);
            return next.run(req).await;
        }
        auth.refused.read_only.fetch_add(1, Ordering::Relaxed);
        return ApiError(
            StatusCode::FORBIDDEN,
            format!(
                "this token is read-only: it may read (get, describe, members, cluster, logs, metrics) but not {} {}; \
                 use the admin token (DATA_DIR/admin-token on any node); nothing was changed",
                req.method(),
                req.uri().path()
            ),
        )
        .into_response();
    }
    auth.refused.wrong_token.fetch_add(1, Ordering::Relaxed);
    unauthorized(
        "wrong API token: it is neither this cluster's admin token nor its read-only token \
         (they are in DATA_DIR/admin-token and DATA_DIR/readonly-token on every node of the cluster)"
            .into(),
    )
}

/// Node-to-node routes: the request must carry a valid node signature; the answer is signed
/// back, bound to the request, so the caller can trust it too.
pub async fn require_node(State(auth): State<Arc<ApiAuth>>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, super::MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return ApiError(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body over {} bytes", super::MAX_BODY_BYTES),
            )
            .into_response()
        }
    };
    let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let signature = parts.headers.get(REQUEST_HEADER).and_then(|v| v.to_str().ok());
    let nonce = match auth
        .node
        .verify_request(signature, parts.method.as_str(), path, &bytes, unix_millis())
    {
        Ok(n) => n,
        Err(e) => {
            auth.refused.node_signature.fetch_add(1, Ordering::Relaxed);
            return unauthorized(e.to_string());
        }
    };
    let resp = next.run(Request::from_parts(parts, Body::from(bytes))).await;
    let (mut parts, body) = resp.into_parts();
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => {
            return ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("reading our own answer: {e}"),
            )
            .into_response()
        }
    };
    let mac = auth.node.sign_answer(&nonce, parts.status.as_u16(), &bytes);
    parts.headers.insert(
        ANSWER_HEADER,
        HeaderValue::from_str(&mac).expect("hex is a valid header value"),
    );
    Response::from_parts(parts, Body::from(bytes))
}
