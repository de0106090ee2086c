//! Validation of the pod spec: restart policy, volume names, node selection and tolerations.

use std::collections::BTreeSet;

use super::names::{is_dns1123_label, DNS1123_LABEL, DNS1123_SUBDOMAIN};
use super::{container, is_dns1123_subdomain, labels, non_negative, volume};
use crate::scheduling::labels::{validate_label_key, validate_label_value};
use crate::scheduling::taint::TaintEffect;
use crate::spec::issue::{FieldPath, Issues};
use crate::spec::pod::{
    NodeSelector, NodeSelectorOperator, NodeSelectorRequirement, PodSpec, RestartPolicy, Toleration,
    TolerationOperator,
};

/// Kubernetes' only node field usable in `matchFields`.
pub(crate) const NODE_NAME_FIELD: &str = "metadata.name";

pub(crate) fn pod_spec(out: &mut Issues, path: &FieldPath, spec: &PodSpec) {
    let volumes = volumes(out, &path.child("volumes"), spec);
    container::containers(out, path, spec, &volumes);
    if spec.restart_policy != RestartPolicy::Always {
        out.unsupported(
            &path.child("restartPolicy"),
            spec.restart_policy.as_str(),
            &["Always"],
        )
        .hint("a DaemonSet's instances always restart; remove restartPolicy");
    }
    non_negative(
        out,
        &path.child("terminationGracePeriodSeconds"),
        spec.termination_grace_period_seconds,
    );
    labels(out, &path.child("nodeSelector"), &spec.node_selector);
    if let Some(name) = &spec.node_name {
        if !is_dns1123_subdomain(name) {
            out.invalid(&path.child("nodeName"), name, DNS1123_SUBDOMAIN);
        }
    }
    if let Some(required) = spec.required_node_affinity() {
        node_selector(
            out,
            &path
                .child("affinity")
                .child("nodeAffinity")
                .child("requiredDuringSchedulingIgnoredDuringExecution"),
            required,
        );
    }
    for (i, t) in spec.tolerations.iter().enumerate() {
        toleration(out, &path.child("tolerations").index(i), t);
    }
}

/// Facts about the volumes that container validation needs: which names exist, and which
/// of them will actually be mounted.
pub(crate) struct VolumeNames {
    /// Every declared name, also of volumes with errors (already reported there).
    pub declared: BTreeSet<String>,
    pub not_mounted: BTreeSet<String>,
}

fn volumes(out: &mut Issues, path: &FieldPath, spec: &PodSpec) -> VolumeNames {
    let mut names = VolumeNames {
        declared: BTreeSet::new(),
        not_mounted: BTreeSet::new(),
    };
    for (i, v) in spec.volumes.iter().enumerate() {
        let p = path.index(i);
        if v.name.is_empty() {
            out.required(&p.child("name"));
        } else if !is_dns1123_label(&v.name) {
            out.invalid(&p.child("name"), &v.name, DNS1123_LABEL);
        } else if !names.declared.insert(v.name.clone()) {
            out.duplicate(&p.child("name"), &v.name);
        }
        if !volume::source(out, &p, v, &spec.containers) {
            names.not_mounted.insert(v.name.clone());
        }
    }
    names
}

fn toleration(out: &mut Issues, p: &FieldPath, t: &Toleration) {
    if !t.key.is_empty() {
        if let Err(e) = validate_label_key(&t.key) {
            out.invalid(&p.child("key"), &t.key, &e);
        }
    } else if t.operator != TolerationOperator::Exists {
        out.invalid(
            &p.child("operator"),
            "Equal",
            "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
        );
    }
    match t.operator {
        TolerationOperator::Exists if !t.value.is_empty() => {
            out.invalid(
                &p.child("operator"),
                &t.value,
                "value must be empty when `operator` is 'Exists'",
            );
        }
        TolerationOperator::Equal => {
            if let Err(e) = validate_label_value(&t.value) {
                out.invalid(&p.child("value"), &t.value, &e);
            }
        }
        _ => {}
    }
    if t.toleration_seconds.is_some() && t.effect != Some(TaintEffect::NoExecute) {
        out.invalid(
            &p.child("effect"),
            t.effect.map_or("", TaintEffect::as_str),
            "effect must be 'NoExecute' when `tolerationSeconds` is set",
        );
    }
}

fn node_selector(out: &mut Issues, path: &FieldPath, ns: &NodeSelector) {
    let terms = path.child("nodeSelectorTerms");
    if ns.node_selector_terms.is_empty() {
        out.required(&terms)
            .hint("must have at least one node selector term");
    }
    for (i, term) in ns.node_selector_terms.iter().enumerate() {
        let p = terms.index(i);
        for (j, req) in term.match_expressions.iter().enumerate() {
            expression(out, &p.child("matchExpressions").index(j), req);
        }
        for (j, req) in term.match_fields.iter().enumerate() {
            field(out, &p.child("matchFields").index(j), req);
        }
    }
}

fn expression(out: &mut Issues, p: &FieldPath, req: &NodeSelectorRequirement) {
    use NodeSelectorOperator::*;
    if let Err(e) = validate_label_key(&req.key) {
        out.invalid(&p.child("key"), &req.key, &e);
    }
    let values = p.child("values");
    match req.operator {
        In | NotIn if req.values.is_empty() => {
            out.required(&values)
                .hint("must be specified when `operator` is 'In' or 'NotIn'");
        }
        Exists | DoesNotExist if !req.values.is_empty() => {
            out.err(
                &values,
                "Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            );
        }
        Gt | Lt if req.values.len() != 1 => {
            out.required(&values)
                .hint("must be specified single value when `operator` is 'Lt' or 'Gt'");
        }
        Gt | Lt if req.values[0].parse::<i64>().is_err() => {
            out.invalid(
                &values.index(0),
                &req.values[0],
                "must be an integer for 'Gt' and 'Lt'",
            );
        }
        _ => {}
    }
    for (i, v) in req.values.iter().enumerate() {
        if let Err(e) = validate_label_value(v) {
            out.invalid(&values.index(i), v, &e);
        }
    }
}

fn field(out: &mut Issues, p: &FieldPath, req: &NodeSelectorRequirement) {
    if req.key != NODE_NAME_FIELD {
        out.unsupported(&p.child("key"), &req.key, &[NODE_NAME_FIELD]);
    }
    match req.operator {
        NodeSelectorOperator::In | NodeSelectorOperator::NotIn => {
            if req.values.len() != 1 {
                out.required(&p.child("values")).hint(
                    "must be only one value when `operator` is 'In' or 'NotIn' for node field selector",
                );
            }
        }
        other => {
            out.unsupported(&p.child("operator"), other.as_str(), &["In", "NotIn"]);
        }
    }
}
