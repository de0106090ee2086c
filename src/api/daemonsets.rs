//! DaemonSet endpoints: apply, list, get with per-node placement, delete.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::ApiState;
use crate::agent::status::{aggregate, node_count, Counts, NodeCount, NodeReport};
use crate::control::configs::SealedSecret;
use crate::control::nodes;
use crate::control::store::{Command, DaemonSetRecord, Response as StoreResponse, Store};
use crate::membership::{Member, MemberState};
use crate::spec::references::{key_refs, RefKind};
use crate::spec::{object_from_json, ConfigMap, DaemonSet, Object, Secret};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `POST /v1/apply`: the objects of one manifest (DaemonSets, ConfigMaps, Secrets), all
/// validated, then stored together.
#[derive(Debug, Serialize, Deserialize)]
pub struct ApplyRequest {
    pub objects: Vec<serde_json::Value>,
}

/// One object's result, with the warnings for fields everynode does not honour.
#[derive(Debug, Serialize, Deserialize)]
pub struct ApplyResult {
    #[serde(default = "crate::control::store::daemonset_kind")]
    pub kind: String,
    #[serde(default = "crate::spec::meta::default_namespace")]
    pub namespace: String,
    pub name: String,
    pub outcome: crate::control::store::ApplyOutcome,
    /// The revision number of a DaemonSet; the generation of a ConfigMap or Secret.
    pub revision: u64,
    pub warnings: Vec<String>,
}

/// What one apply request holds, by kind, once every object was read and checked.
#[derive(Default)]
struct Checked {
    daemonsets: Vec<DaemonSet>,
    config_maps: Vec<ConfigMap>,
    secrets: Vec<Secret>,
    warnings: BTreeMap<(String, String, String), Vec<String>>,
}

fn check(objects: &[serde_json::Value]) -> Result<Checked, ApiError> {
    let mut out = Checked::default();
    let mut errors: Vec<String> = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, obj) in objects.iter().enumerate() {
        let bytes = serde_json::to_vec(obj).expect("JSON values serialize");
        let valid = match object_from_json(&bytes) {
            Ok(v) => v,
            Err(invalid) => {
                errors.extend(
                    invalid
                        .errors
                        .iter()
                        .map(|e| format!("object {i} ({}): {e}", invalid.kind)),
                );
                continue;
            }
        };
        let object = valid.object;
        let id = (
            object.kind().to_string(),
            object.namespace().unwrap_or_default().to_string(),
            object.name().to_string(),
        );
        if !seen.insert(id.clone()) {
            errors.push(format!(
                "object {i}: {} appears twice in one apply",
                object.reference()
            ));
        }
        out.warnings
            .insert(id, valid.warnings.iter().map(|w| w.to_string()).collect());
        match object {
            Object::DaemonSet(ds) => out.daemonsets.push(ds),
            Object::ConfigMap(cm) => out.config_maps.push(cm),
            Object::Secret(s) => out.secrets.push(s),
            other => errors.push(format!(
                "object {i}: {} is not stored: only DaemonSets, ConfigMaps and Secrets are; leave it out of the request",
                other.reference()
            )),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError(StatusCode::UNPROCESSABLE_ENTITY, errors.join("\n")));
    }
    Ok(out)
}

/// Keys a DaemonSet names in a ConfigMap or Secret that exists (in this apply or the store)
/// but lacks: refused now, with the field, rather than found later on every node. An object
/// that does not exist yet is no error: the instances wait for it.
fn missing_keys(checked: &Checked, store: &Store) -> Vec<String> {
    let keys_of = |kind: RefKind, namespace: &str, name: &str| -> Option<BTreeSet<String>> {
        match kind {
            RefKind::ConfigMap => checked
                .config_maps
                .iter()
                .find(|c| c.metadata.namespace == namespace && c.metadata.name == name)
                .map(|c| c.bytes().into_keys().collect())
                .or_else(|| {
                    store
                        .config_maps
                        .get(&crate::control::configs::key(namespace, name))
                        .map(|r| r.config_map.bytes().into_keys().collect())
                }),
            RefKind::Secret => checked
                .secrets
                .iter()
                .find(|s| s.metadata.namespace == namespace && s.metadata.name == name)
                .map(|s| s.data.keys().cloned().collect())
                .or_else(|| {
                    store
                        .secrets
                        .get(&crate::control::configs::key(namespace, name))
                        .map(|r| r.secret.sizes.keys().cloned().collect())
                }),
        }
    };
    let mut errors = Vec::new();
    for ds in &checked.daemonsets {
        let ns = &ds.metadata.namespace;
        for r in key_refs(&ds.spec.template) {
            if let Some(keys) = keys_of(r.kind, ns, &r.name) {
                if !keys.contains(&r.key) {
                    errors.push(format!(
                        "daemonset {}: {}: Not found: {:?}: {} {}/{} has no key {:?} (its keys: {}); fix the key, add it to the {}, or mark the reference optional",
                        ds.metadata.name,
                        r.path,
                        r.key,
                        r.kind.as_str(),
                        ns,
                        r.name,
                        r.key,
                        keys.iter().cloned().collect::<Vec<_>>().join(", "),
                        r.kind.as_str()
                    ));
                }
            }
        }
    }
    errors
}

pub async fn apply(
    State(s): State<ApiState>,
    Json(req): Json<ApplyRequest>,
) -> Result<Json<Vec<ApplyResult>>, ApiError> {
    if req.objects.is_empty() {
        return Err(ApiError(StatusCode::BAD_REQUEST, "no objects to apply".into()));
    }
    let mut checked = check(&req.objects)?;
    let missing = missing_keys(&checked, &s.control.replica.current());
    if !missing.is_empty() {
        return Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{}\nnothing was applied", missing.join("\n")),
        ));
    }
    let sealed: Vec<SealedSecret> = checked
        .secrets
        .iter()
        .map(|secret| SealedSecret::seal(secret, &s.secrets))
        .collect();
    let warnings = checked
        .daemonsets
        .iter()
        .filter_map(|ds| {
            let id = (
                "DaemonSet".to_string(),
                ds.metadata.namespace.clone(),
                ds.metadata.name.clone(),
            );
            let w = checked.warnings.get(&id).filter(|w| !w.is_empty())?;
            Some((ds.metadata.name.clone(), w.clone()))
        })
        .collect();
    let cmd = Command::Apply {
        daemonsets: checked.daemonsets.clone(),
        config_maps: checked.config_maps.clone(),
        secrets: sealed,
        warnings,
        at: now(),
    };
    match s.control.writer.write(cmd).await? {
        StoreResponse::Applied { results } => {
            await_local_copy(&s, &checked.daemonsets).await;
            Ok(Json(
                results
                    .into_iter()
                    .map(|r| ApplyResult {
                        warnings: checked
                            .warnings
                            .remove(&(r.kind.clone(), r.namespace.clone(), r.name.clone()))
                            .unwrap_or_default(),
                        kind: r.kind,
                        namespace: r.namespace,
                        name: r.name,
                        outcome: r.outcome,
                        revision: r.revision,
                    })
                    .collect(),
            ))
        }
        StoreResponse::Conflict { message } => Err(ApiError(StatusCode::CONFLICT, message)),
        other => Err(ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("unexpected result {other:?}"),
        )),
    }
}

/// How long an apply's answer waits for this node's copy of the store to hold the write.
const READ_YOUR_WRITES: Duration = Duration::from_secs(5);

/// Read your writes: reads are served from this node's copy, which the leader's commit reaches a
/// moment later, so `apply && rollout status` would otherwise report the previous revision as
/// rolled out. The answer waits until the copy holds every applied object, at most
/// [`READ_YOUR_WRITES`]; past that it is sent anyway, the write being committed.
async fn await_local_copy(s: &ApiState, applied: &[DaemonSet]) {
    let mut copies = s.control.replica.subscribe();
    let deadline = tokio::time::Instant::now() + READ_YOUR_WRITES;
    loop {
        let holds = {
            let store = copies.borrow_and_update();
            applied.iter().all(|ds| {
                store
                    .daemonsets
                    .get(&ds.metadata.name)
                    .is_some_and(|r| r.daemonset == *ds)
            })
        };
        if holds {
            return;
        }
        if !matches!(
            tokio::time::timeout_at(deadline, copies.changed()).await,
            Ok(Ok(()))
        ) {
            tracing::warn!(
                "this node's store copy did not show an applied write within {READ_YOUR_WRITES:?}; answering anyway"
            );
            return;
        }
    }
}

/// Where one DaemonSet runs (or not) on one node, and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodePlacement {
    pub node: String,
    pub node_state: MemberState,
    pub should_run: bool,
    pub reason: String,
}

/// A DaemonSet as `get` and `describe` show it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DaemonSetView {
    pub name: String,
    pub namespace: String,
    /// Nodes the DaemonSet selects that are alive, or dead for less than `--dead-node-grace`.
    pub desired: usize,
    pub revision: u64,
    pub revision_hash: String,
    pub images: Vec<String>,
    pub node_selector: BTreeMap<String, String>,
    pub created_at: u64,
    /// Kubernetes' status numbers, from the statuses the nodes gossip.
    #[serde(default)]
    pub status: Counts,
    pub record: DaemonSetRecord,
    /// Where the rollout of the current revision stands.
    pub rollout: super::rollout::RolloutView,
    /// Filled for `describe` (one DaemonSet): every known node with the placement verdict.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub placement: Vec<NodePlacement>,
}

fn view(
    record: &DaemonSetRecord,
    members: &[Member],
    store: &Store,
    with_placement: bool,
    dead_node_grace: Duration,
) -> DaemonSetView {
    let ds = &record.daemonset;
    let now = now();
    let mut placement = Vec::new();
    let mut reports = Vec::new();
    for m in members {
        let mut p = crate::scheduling::placement::should_run(ds, &nodes::effective(m, store));
        if store.is_drained(&m.name) {
            p.should_run = false;
            p.reasons.clear();
        }
        let dead_for = m.dead_since.map(|s| Duration::from_secs(now.saturating_sub(s)));
        match node_count(m.state, dead_for, dead_node_grace) {
            NodeCount::Counted => reports.push(NodeReport {
                selected: p.should_run,
                status: m.pods.get(&ds.metadata.name),
                lost: false,
            }),
            NodeCount::Lost => reports.push(NodeReport {
                selected: p.should_run,
                status: None,
                lost: true,
            }),
            NodeCount::Ignored => {}
        }
        if with_placement && m.state != MemberState::Left {
            placement.push(NodePlacement {
                node: m.name.clone(),
                node_state: m.state,
                should_run: p.should_run,
                reason: if store.is_drained(&m.name) {
                    "does not run here: the node is drained (`everynode uncordon` ends it)".into()
                } else {
                    p.summary()
                },
            });
        }
    }
    let current = record.current_revision();
    let status = aggregate(reports, &current.hash, ds.spec.min_ready().as_secs(), now);
    DaemonSetView {
        rollout: super::rollout::rollout_view(record, members, store, dead_node_grace),
        desired: status.desired,
        status,
        name: ds.metadata.name.clone(),
        namespace: ds.metadata.namespace.clone(),
        revision: current.number,
        revision_hash: current.hash.clone(),
        images: ds
            .spec
            .template
            .spec
            .containers
            .iter()
            .map(|c| c.image.clone())
            .collect(),
        node_selector: ds.spec.template.spec.node_selector.clone(),
        created_at: record.created_at,
        record: record.clone(),
        placement,
    }
}

pub async fn list_daemonsets(State(s): State<ApiState>) -> Json<Vec<DaemonSetView>> {
    let store = s.control.replica.current();
    let members = s.membership.members().await;
    Json(
        store
            .daemonsets
            .values()
            .map(|r| view(r, &members, &store, false, s.dead_node_grace))
            .collect(),
    )
}

pub async fn get_daemonset(
    State(s): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<DaemonSetView>, ApiError> {
    let store = s.control.replica.current();
    let record = store
        .daemonsets
        .get(&name)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("daemonset {name} not found")))?;
    let members = s.membership.members().await;
    Ok(Json(view(record, &members, &store, true, s.dead_node_grace)))
}

pub async fn delete_daemonset(
    State(s): State<ApiState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    match s
        .control
        .writer
        .write(Command::Delete { name: name.clone() })
        .await?
    {
        StoreResponse::NotFound { .. } => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("daemonset {name} not found"),
        )),
        _ => Ok(StatusCode::NO_CONTENT),
    }
}
