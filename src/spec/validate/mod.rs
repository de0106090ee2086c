//! Kubernetes' validation of an `apps/v1` DaemonSet, reporting every problem with its path.
//!
//! Messages follow the API server's wording (`Required value`, `Invalid value: ...`,
//! `Unsupported value: ...`) so that they read as Kubernetes users expect; hints say what to
//! change. Warnings report honoured fields that everynode cannot fully apply.

mod config;
mod container;
mod names;
mod pod;
mod refs;
mod volume;

use std::collections::BTreeMap;

use super::daemonset::{DaemonSet, UpdateStrategyType, API_VERSION, KIND};
use super::issue::{FieldPath, Issue, Issues};
use super::meta::{LabelSelector, LabelSelectorOperator};
use super::quantity::IntOrString;
use super::strategy::IntOrPercent;
use crate::scheduling::labels::{validate_label_key, validate_label_value};

pub(crate) use config::{validate_config_map, validate_namespace, validate_secret};
pub(crate) use names::{is_dns1123_label, is_dns1123_subdomain, is_env_var_name};

/// Kubernetes' limit on the total size of an object's annotations.
const MAX_ANNOTATIONS_BYTES: usize = 256 * 1024;

/// Validates a (defaulted) DaemonSet; an empty result means valid without warnings.
pub fn validate(ds: &DaemonSet) -> Vec<Issue> {
    let mut out = Issues::default();
    let root = FieldPath::root();
    if ds.api_version != API_VERSION {
        let hint = if ds.api_version.is_empty() {
            "add `apiVersion: apps/v1`"
        } else {
            "DaemonSets are served as apps/v1 only since Kubernetes 1.16: change apiVersion to apps/v1 (which requires spec.selector)"
        };
        if ds.api_version.is_empty() {
            out.required(&root.child("apiVersion")).hint(hint);
        } else {
            out.unsupported(&root.child("apiVersion"), &ds.api_version, &[API_VERSION])
                .hint(hint);
        }
    }
    if ds.kind != KIND {
        if ds.kind.is_empty() {
            out.required(&root.child("kind")).hint("add `kind: DaemonSet`");
        } else {
            out.unsupported(&root.child("kind"), &ds.kind, &[KIND]);
        }
    }
    let meta = root.child("metadata");
    if ds.metadata.name.is_empty() {
        out.required(&meta.child("name"))
            .hint("give the DaemonSet a name: metadata.name");
    } else if !is_dns1123_subdomain(&ds.metadata.name) {
        out.invalid(&meta.child("name"), &ds.metadata.name, names::DNS1123_SUBDOMAIN);
    }
    if !is_dns1123_label(&ds.metadata.namespace) {
        out.invalid(
            &meta.child("namespace"),
            &ds.metadata.namespace,
            names::DNS1123_LABEL,
        );
    }
    labels(&mut out, &meta.child("labels"), &ds.metadata.labels);
    annotations(&mut out, &meta.child("annotations"), &ds.metadata.annotations);

    let spec = root.child("spec");
    let template = spec.child("template");
    let template_labels = &ds.spec.template.metadata.labels;
    match &ds.spec.selector {
        None => {
            out.required(&spec.child("selector"))
                .hint("apps/v1 needs a selector matching the template labels, e.g. matchLabels: {app: NAME}");
        }
        Some(sel) if sel.is_empty() => {
            out.invalid(
                &spec.child("selector"),
                "{}",
                "empty selector is invalid for daemonset",
            )
            .hint("select on the template labels, e.g. matchLabels: {app: NAME}");
        }
        Some(sel) => {
            let before = out.0.len();
            label_selector(&mut out, &spec.child("selector"), sel);
            // A selector with errors matches nothing; saying so again adds nothing.
            let selector_ok = out.0.len() == before;
            if selector_ok && !sel.matches(template_labels) {
                out.invalid(
                    &template.child("metadata").child("labels"),
                    template_labels,
                    "`selector` does not match template `labels`",
                )
                .hint("every matchLabels pair and matchExpressions entry of spec.selector must hold for spec.template.metadata.labels");
            }
        }
    }
    labels(
        &mut out,
        &template.child("metadata").child("labels"),
        template_labels,
    );
    annotations(
        &mut out,
        &template.child("metadata").child("annotations"),
        &ds.spec.template.metadata.annotations,
    );
    pod::pod_spec(&mut out, &template.child("spec"), &ds.spec.template.spec);

    non_negative(
        &mut out,
        &spec.child("minReadySeconds"),
        ds.spec.min_ready_seconds.into(),
    );
    non_negative(
        &mut out,
        &spec.child("revisionHistoryLimit"),
        ds.spec.revision_history_limit.into(),
    );
    update_strategy(&mut out, &spec.child("updateStrategy"), ds);
    out.into_vec()
}

fn update_strategy(out: &mut Issues, path: &FieldPath, ds: &DaemonSet) {
    const MSG: &str = "may not be 0 when `maxSurge` is 0";
    let strategy = &ds.spec.update_strategy;
    let Some(ru) = &strategy.rolling_update else {
        return;
    };
    if strategy.type_ == UpdateStrategyType::OnDelete {
        // Kubernetes accepts and ignores it; say so, since the user probably expects waves.
        out.warn(
            &path.child("rollingUpdate"),
            "not honoured by everynode: ignored because type is OnDelete",
        );
        return;
    }
    let path = path.child("rollingUpdate");
    let mut read = |name: &str, v: &Option<_>| {
        let v = v.as_ref()?;
        match IntOrPercent::parse(v) {
            Ok(p) => Some(p),
            Err(e) => {
                let issue = match v {
                    IntOrString::Int(n) => out.invalid(&path.child(name), n, &e.to_string()),
                    IntOrString::String(s) => out.invalid(&path.child(name), s, &e.to_string()),
                };
                issue.hint("write a count such as 1 or a percentage such as \"10%\"");
                None
            }
        }
    };
    let unavailable = read("maxUnavailable", &ru.max_unavailable);
    let surge = read("maxSurge", &ru.max_surge);
    if let (Some(u), Some(s)) = (unavailable, surge) {
        if u.is_zero() && s.is_zero() {
            let issue = match u {
                IntOrPercent::Int(n) => out.invalid(&path.child("maxUnavailable"), n, MSG),
                IntOrPercent::Percent(_) => out.invalid(&path.child("maxUnavailable"), u.to_string(), MSG),
            };
            issue.hint("allow at least one of maxUnavailable or maxSurge, or a rollout could never start");
        }
    }
    if let Some(s) = surge.filter(|s| !s.is_zero()) {
        surge_port_conflict(out, &path.child("maxSurge"), s, ds);
    }
}

/// With surge the new instance starts beside the old one on the same host, so a host port (or
/// the host's network namespace) would be bound twice: the new instance could never start and
/// the rollout would hang on every node. Kubernetes accepts this and fails at run time.
fn surge_port_conflict(out: &mut Issues, path: &FieldPath, surge: IntOrPercent, ds: &DaemonSet) {
    let pod = &ds.spec.template.spec;
    // Sidecars keep running too, so they hold their host ports beside the old instance's.
    let ports: Vec<String> = pod
        .containers
        .iter()
        .chain(pod.init_containers.iter().filter(|c| c.is_sidecar()))
        .flat_map(|c| {
            c.ports
                .iter()
                .filter(|p| p.host_port != 0)
                .map(move |p| format!("{}:{}", c.name, p.host_port))
        })
        .collect();
    let what = if pod.host_network {
        "the pod uses hostNetwork".to_string()
    } else if !ports.is_empty() {
        format!("hostPort {} is used", ports.join(", "))
    } else {
        return;
    };
    out.invalid(
        path,
        surge.to_string(),
        &format!("must be 0 when {what}: with surge the new instance starts beside the old one on the same node, and both cannot bind the same host port"),
    )
    .hint("set maxSurge: 0 and use maxUnavailable to roll, or drop hostPort/hostNetwork");
}

pub(crate) fn non_negative(out: &mut Issues, path: &FieldPath, v: i64) {
    if v < 0 {
        out.invalid(path, v, "must be greater than or equal to 0");
    }
}

pub(crate) fn labels(out: &mut Issues, path: &FieldPath, labels: &BTreeMap<String, String>) {
    for (k, v) in labels {
        if let Err(e) = validate_label_key(k) {
            out.invalid(path, k, &e);
        }
        if let Err(e) = validate_label_value(v) {
            out.invalid(&path.key(k), v, &e);
        }
    }
}

fn annotations(out: &mut Issues, path: &FieldPath, annotations: &BTreeMap<String, String>) {
    annotation_syntax(out, path, annotations);
    if let Err(errors) = super::strategy::RolloutPolicy::from_annotations(annotations) {
        for (key, value, why) in errors {
            out.invalid(&path.key(key), value, why);
        }
    }
}

/// Keys and total size, as for every Kubernetes object.
pub(crate) fn annotation_syntax(out: &mut Issues, path: &FieldPath, annotations: &BTreeMap<String, String>) {
    let mut total = 0;
    for (k, v) in annotations {
        if let Err(e) = validate_label_key(k) {
            out.invalid(path, k, &e);
        }
        total += k.len() + v.len();
    }
    if total > MAX_ANNOTATIONS_BYTES {
        out.err(
            path,
            format!("Too long: must have at most {MAX_ANNOTATIONS_BYTES} bytes"),
        );
    }
}

pub(crate) fn label_selector(out: &mut Issues, path: &FieldPath, sel: &LabelSelector) {
    labels(out, &path.child("matchLabels"), &sel.match_labels);
    for (i, req) in sel.match_expressions.iter().enumerate() {
        let p = path.child("matchExpressions").index(i);
        if let Err(e) = validate_label_key(&req.key) {
            out.invalid(&p.child("key"), &req.key, &e);
        }
        match req.operator {
            LabelSelectorOperator::In | LabelSelectorOperator::NotIn => {
                if req.values.is_empty() {
                    out.required(&p.child("values"))
                        .hint("must be specified when `operator` is 'In' or 'NotIn'");
                }
            }
            LabelSelectorOperator::Exists | LabelSelectorOperator::DoesNotExist => {
                if !req.values.is_empty() {
                    out.err(
                        &p.child("values"),
                        "Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    );
                }
            }
        }
        for (j, v) in req.values.iter().enumerate() {
            if let Err(e) = validate_label_value(v) {
                out.invalid(&p.child("values").index(j), v, &e);
            }
        }
    }
}

#[cfg(test)]
mod tests;
