//! `GET /v1/pods`: one row per DaemonSet instance, from the nodes' gossiped statuses.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::ApiState;
use crate::agent::status::PodStatus;
use crate::control::store::{DaemonSetRecord, Store};
use crate::membership::{Member, MemberState};

/// One DaemonSet instance on one node, from the node's gossiped status.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PodView {
    pub daemonset: String,
    pub node: String,
    pub node_state: MemberState,
    /// Revision number, when the store still has the revision the node reports.
    pub revision: Option<u64>,
    pub revision_hash: String,
    pub state: String,
    pub ready: bool,
    pub restarts: u32,
    pub started_at: Option<u64>,
    pub ready_since: Option<u64>,
    pub last_error: Option<String>,
    /// The template labels of the DaemonSet, for `get pods -l`.
    pub labels: BTreeMap<String, String>,
}

/// Builds the pod list: one entry per (node, DaemonSet) status, sorted by DaemonSet then node.
pub fn pods(members: &[Member], store: &Store) -> Vec<PodView> {
    let mut out = Vec::new();
    // A node that left runs nothing; whatever it last said is history.
    for m in members.iter().filter(|m| m.state != MemberState::Left) {
        for (name, st) in &m.pods {
            let record = store.daemonsets.get(name);
            out.push(pod_view(m, name, st, record));
        }
    }
    out.sort_by(|a, b| (&a.daemonset, &a.node).cmp(&(&b.daemonset, &b.node)));
    out
}

fn pod_view(m: &Member, name: &str, st: &PodStatus, record: Option<&DaemonSetRecord>) -> PodView {
    PodView {
        daemonset: name.to_string(),
        node: m.name.clone(),
        node_state: m.state,
        revision: record.and_then(|r| {
            r.revisions
                .iter()
                .find(|rev| rev.hash == st.revision)
                .map(|rev| rev.number)
        }),
        revision_hash: st.revision.clone(),
        state: st.state.to_string(),
        ready: st.ready,
        restarts: st.restarts,
        started_at: st.started_at,
        ready_since: st.ready_since,
        last_error: st.last_error.clone(),
        labels: record
            .map(|r| r.daemonset.spec.template.metadata.labels.clone())
            .unwrap_or_default(),
    }
}

pub async fn list_pods(State(s): State<ApiState>) -> Json<Vec<PodView>> {
    let store = s.control.replica.current();
    let members = s.membership.members().await;
    Json(pods(&members, &store))
}
