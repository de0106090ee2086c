//! ConfigMap and Secret endpoints: list, get and delete; Secret values only to the admin token, and only when asked for.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use super::auth::Role;
use super::error::ApiError;
use super::ApiState;
use crate::control::configs::{key, ConfigKind, ConfigMapRecord, SecretRecord};
use crate::control::store::{Command, Response as StoreResponse};
use crate::spec::meta::ObjectMeta;

/// `?namespace=NS` narrows a list; `?values=true` asks for Secret values (admin token only).
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    pub namespace: Option<String>,
    #[serde(default)]
    pub values: bool,
}

/// A Secret as the API shows it: keys and sizes always, values only to the admin on request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SecretView {
    pub metadata: ObjectMeta,
    #[serde(rename = "type")]
    pub type_: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immutable: Option<bool>,
    /// Bytes of each value, by key.
    pub sizes: BTreeMap<String, usize>,
    /// Base64 values, as Kubernetes' `data`; `None` unless asked for with the admin token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<BTreeMap<String, String>>,
    pub generation: u64,
    pub created_at: u64,
    pub updated_at: u64,
}

fn in_namespace(k: &str, namespace: Option<&str>) -> bool {
    namespace.is_none_or(|ns| k.split_once('/').is_some_and(|(n, _)| n == ns))
}

pub async fn list_config_maps(
    State(s): State<ApiState>,
    Query(q): Query<ListQuery>,
) -> Json<Vec<ConfigMapRecord>> {
    let store = s.control.replica.current();
    Json(
        store
            .config_maps
            .iter()
            .filter(|(k, _)| in_namespace(k, q.namespace.as_deref()))
            .map(|(_, r)| r.clone())
            .collect(),
    )
}

pub async fn get_config_map(
    State(s): State<ApiState>,
    Path((namespace, name)): Path<(String, String)>,
) -> Result<Json<ConfigMapRecord>, ApiError> {
    let store = s.control.replica.current();
    store
        .config_maps
        .get(&key(&namespace, &name))
        .cloned()
        .map(Json)
        .ok_or_else(|| not_found(ConfigKind::ConfigMap, &namespace, &name))
}

pub async fn list_secrets(
    State(s): State<ApiState>,
    Extension(role): Extension<Role>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<SecretView>>, ApiError> {
    may_see_values(role, q.values)?;
    let store = s.control.replica.current();
    store
        .secrets
        .iter()
        .filter(|(k, _)| in_namespace(k, q.namespace.as_deref()))
        .map(|(_, r)| secret_view(&s, r, q.values))
        .collect::<Result<Vec<_>, _>>()
        .map(Json)
}

pub async fn get_secret(
    State(s): State<ApiState>,
    Extension(role): Extension<Role>,
    Path((namespace, name)): Path<(String, String)>,
    Query(q): Query<ListQuery>,
) -> Result<Json<SecretView>, ApiError> {
    may_see_values(role, q.values)?;
    let store = s.control.replica.current();
    let record = store
        .secrets
        .get(&key(&namespace, &name))
        .ok_or_else(|| not_found(ConfigKind::Secret, &namespace, &name))?;
    secret_view(&s, record, q.values).map(Json)
}

fn may_see_values(role: Role, values: bool) -> Result<(), ApiError> {
    if values && role != Role::Admin {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "the read-only token sees Secret keys and sizes, not their values; use the admin token (DATA_DIR/admin-token on any node)".into(),
        ));
    }
    Ok(())
}

fn secret_view(s: &ApiState, r: &SecretRecord, values: bool) -> Result<SecretView, ApiError> {
    let data = if values {
        let opened = r
            .secret
            .open(&s.secrets)
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        Some(opened.data)
    } else {
        None
    };
    Ok(SecretView {
        metadata: r.secret.metadata.clone(),
        type_: r.secret.type_.clone(),
        immutable: r.secret.immutable,
        sizes: r.secret.sizes.clone(),
        data,
        generation: r.generation,
        created_at: r.created_at,
        updated_at: r.updated_at,
    })
}

pub async fn delete_config_map(
    State(s): State<ApiState>,
    Path((namespace, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    delete(&s, ConfigKind::ConfigMap, namespace, name).await
}

pub async fn delete_secret(
    State(s): State<ApiState>,
    Path((namespace, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    delete(&s, ConfigKind::Secret, namespace, name).await
}

async fn delete(
    s: &ApiState,
    kind: ConfigKind,
    namespace: String,
    name: String,
) -> Result<StatusCode, ApiError> {
    let cmd = Command::DeleteConfig {
        kind,
        namespace: namespace.clone(),
        name: name.clone(),
    };
    match s.control.writer.write(cmd).await? {
        StoreResponse::NotFound { .. } => Err(not_found(kind, &namespace, &name)),
        _ => Ok(StatusCode::NO_CONTENT),
    }
}

fn not_found(kind: ConfigKind, namespace: &str, name: &str) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        format!("{} {name} not found in namespace {namespace}", kind.as_str()),
    )
}
