//! The API's error answer: a status code and `{"error": "..."}`, and how write failures map to it.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::control::writer::WriteError;

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
