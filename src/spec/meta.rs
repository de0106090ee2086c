//! Object metadata and label selectors, shaped as in `k8s.io/apimachinery` `meta/v1`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `metadata` of a DaemonSet: only the fields everynode honours.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    /// Identity of the DaemonSet within its namespace; also names its containers on each host.
    #[serde(default)]
    pub name: String,
    /// Kept so that manifests from several namespaces do not collide; defaults to `default`
    /// as `kubectl` does without `-n`.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

pub fn default_namespace() -> String {
    "default".to_string()
}

/// `metadata` of a pod template: labels and annotations are part of the template (and so of
/// its revision); a name or namespace there means nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TemplateMeta {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// `spec.selector`: which pods (here: instances) belong to the DaemonSet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One `matchExpressions` entry of a label selector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelectorRequirement {
    #[serde(default)]
    pub key: String,
    /// Required in manifests (loading reports a missing one); the serde default only lets
    /// the rest of such an object be read and checked.
    #[serde(default)]
    pub operator: LabelSelectorOperator,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// Label selector operators; unlike node selectors they have no `Gt`/`Lt`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LabelSelectorOperator {
    #[default]
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl LabelSelector {
    /// True when the selector has no requirement at all; Kubernetes refuses such a selector
    /// for a DaemonSet because it would claim every pod in the namespace.
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }

    /// Whether a set of labels satisfies the selector (all requirements ANDed).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| {
                let value = labels.get(&r.key);
                match r.operator {
                    LabelSelectorOperator::In => value.is_some_and(|v| r.values.contains(v)),
                    LabelSelectorOperator::NotIn => value.is_none_or(|v| !r.values.contains(v)),
                    LabelSelectorOperator::Exists => value.is_some(),
                    LabelSelectorOperator::DoesNotExist => value.is_none(),
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expr(key: &str, operator: LabelSelectorOperator, values: &[&str]) -> LabelSelector {
        LabelSelector {
            match_labels: BTreeMap::new(),
            match_expressions: vec![LabelSelectorRequirement {
                key: key.into(),
                operator,
                values: values.iter().map(|v| v.to_string()).collect(),
            }],
        }
    }

    #[test]
    fn label_selector_operators() {
        use LabelSelectorOperator::*;
        let app = labels(&[("app", "agent")]);
        let none = labels(&[]);
        let cases = [
            (expr("app", In, &["agent", "x"]), &app, true),
            (expr("app", In, &["x"]), &app, false),
            (expr("app", In, &["agent"]), &none, false),
            (expr("app", NotIn, &["x"]), &app, true),
            (expr("app", NotIn, &["agent"]), &app, false),
            (expr("app", NotIn, &["agent"]), &none, true),
            (expr("app", Exists, &[]), &app, true),
            (expr("app", Exists, &[]), &none, false),
            (expr("app", DoesNotExist, &[]), &app, false),
            (expr("app", DoesNotExist, &[]), &none, true),
        ];
        for (i, (selector, labels, want)) in cases.into_iter().enumerate() {
            assert_eq!(selector.matches(labels), want, "case {i}: {selector:?}");
        }
    }

    #[test]
    fn match_labels_need_every_pair() {
        let selector = LabelSelector {
            match_labels: labels(&[("app", "a"), ("tier", "node")]),
            match_expressions: vec![],
        };
        assert!(selector.matches(&labels(&[("app", "a"), ("tier", "node"), ("x", "y")])));
        assert!(!selector.matches(&labels(&[("app", "a")])));
    }
}
