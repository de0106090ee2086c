//! Node selectors and required node affinity, matched as Kubernetes matches them.

use std::collections::BTreeMap;
use std::fmt;

use super::node::NodeInfo;
use crate::spec::pod::{NodeSelector, NodeSelectorOperator, NodeSelectorRequirement};

/// Kubernetes' only node field for `matchFields`.
const NODE_NAME_FIELD: &str = "metadata.name";

/// Whether one requirement holds for a set of labels (or fields).
///
/// `NotIn` and `DoesNotExist` hold for a missing key; `Gt`/`Lt` compare base-10 int64s and
/// fail when either side is not one. A malformed requirement (e.g. `In` without values)
/// never holds, as Kubernetes ignores a term it cannot parse.
pub fn requirement_matches(req: &NodeSelectorRequirement, labels: &BTreeMap<String, String>) -> bool {
    use NodeSelectorOperator::*;
    let value = labels.get(&req.key);
    match req.operator {
        In => !req.values.is_empty() && value.is_some_and(|v| req.values.contains(v)),
        NotIn => !req.values.is_empty() && value.is_none_or(|v| !req.values.contains(v)),
        Exists => req.values.is_empty() && value.is_some(),
        DoesNotExist => req.values.is_empty() && value.is_none(),
        Gt | Lt => {
            let [bound] = req.values.as_slice() else {
                return false;
            };
            let (Some(v), Ok(bound)) = (value, bound.parse::<i64>()) else {
                return false;
            };
            let Ok(v) = v.parse::<i64>() else {
                return false;
            };
            if req.operator == Gt {
                v > bound
            } else {
                v < bound
            }
        }
    }
}

/// Why a node failed one term of a node affinity: the first requirement that did not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnmetTerm {
    /// Index in `nodeSelectorTerms`.
    pub term: usize,
    /// The requirement, as `key Op [values]`; None for an empty term.
    pub requirement: Option<String>,
    /// The node's value for the key, if it has one.
    pub node_value: Option<String>,
}

impl fmt::Display for UnmetTerm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.requirement {
            None => write!(f, "term {} is empty and matches no node", self.term),
            Some(req) => {
                write!(f, "term {}: `{req}` does not hold", self.term)?;
                match &self.node_value {
                    Some(v) => write!(f, " (node has {v:?})"),
                    None => write!(f, " (node has no such label)"),
                }
            }
        }
    }
}

/// A field requirement must name `metadata.name` and use `In`/`NotIn`; Kubernetes refuses
/// (and so never matches) anything else.
fn valid_for(
    req: &NodeSelectorRequirement,
    set: &BTreeMap<String, String>,
    fields: &BTreeMap<String, String>,
) -> bool {
    !std::ptr::eq(set, fields)
        || req.key == NODE_NAME_FIELD
            && matches!(
                req.operator,
                NodeSelectorOperator::In | NodeSelectorOperator::NotIn
            )
}

fn describe(req: &NodeSelectorRequirement) -> String {
    if req.values.is_empty() {
        format!("{} {}", req.key, req.operator.as_str())
    } else {
        format!(
            "{} {} [{}]",
            req.key,
            req.operator.as_str(),
            req.values.join(", ")
        )
    }
}

/// Matches a required node affinity: terms ORed, requirements within a term ANDed.
/// Ok when a term matches; otherwise why each term failed.
pub fn node_affinity_matches(selector: &NodeSelector, node: &NodeInfo) -> Result<(), Vec<UnmetTerm>> {
    let fields = BTreeMap::from([(NODE_NAME_FIELD.to_string(), node.name.clone())]);
    let mut unmet = Vec::new();
    for (i, term) in selector.node_selector_terms.iter().enumerate() {
        if term.match_expressions.is_empty() && term.match_fields.is_empty() {
            unmet.push(UnmetTerm {
                term: i,
                requirement: None,
                node_value: None,
            });
            continue;
        }
        let failed = term
            .match_expressions
            .iter()
            .map(|r| (r, &node.labels))
            .chain(term.match_fields.iter().map(|r| (r, &fields)))
            .find(|(r, set)| !requirement_matches(r, set) || !valid_for(r, set, &fields));
        match failed {
            None => return Ok(()),
            Some((r, set)) => unmet.push(UnmetTerm {
                term: i,
                requirement: Some(describe(r)),
                node_value: set.get(&r.key).cloned(),
            }),
        }
    }
    Err(unmet)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::pod::NodeSelectorTerm;

    fn req(key: &str, op: NodeSelectorOperator, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op,
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    #[test]
    fn every_operator() {
        use NodeSelectorOperator::*;
        let labels: BTreeMap<String, String> = [("zone", "a"), ("cores", "16"), ("gen", "x7")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let cases = [
            (req("zone", In, &["a", "b"]), true),
            (req("zone", In, &["b"]), false),
            (req("missing", In, &["a"]), false),
            (req("zone", In, &[]), false),
            (req("zone", NotIn, &["b"]), true),
            (req("zone", NotIn, &["a"]), false),
            (req("missing", NotIn, &["a"]), true),
            (req("zone", Exists, &[]), true),
            (req("missing", Exists, &[]), false),
            (req("zone", DoesNotExist, &[]), false),
            (req("missing", DoesNotExist, &[]), true),
            (req("cores", Gt, &["8"]), true),
            (req("cores", Gt, &["16"]), false),
            (req("cores", Gt, &["-1"]), true),
            (req("cores", Lt, &["32"]), true),
            (req("cores", Lt, &["16"]), false),
            (req("missing", Gt, &["1"]), false),
            (req("missing", Lt, &["1"]), false),
            (req("gen", Gt, &["1"]), false),
            (req("cores", Gt, &["eight"]), false),
            (req("cores", Gt, &["1", "2"]), false),
            (req("cores", Gt, &[]), false),
        ];
        for (r, want) in cases {
            assert_eq!(requirement_matches(&r, &labels), want, "{}", describe(&r));
        }
    }

    #[test]
    fn terms_are_ored_and_expressions_anded() {
        use NodeSelectorOperator::*;
        let node = NodeInfo::default()
            .with_label("zone", "a")
            .with_label("disk", "ssd");
        let term = |exprs: Vec<NodeSelectorRequirement>| NodeSelectorTerm {
            match_expressions: exprs,
            match_fields: vec![],
        };
        let both = NodeSelector {
            node_selector_terms: vec![term(vec![req("zone", In, &["a"]), req("disk", In, &["ssd"])])],
        };
        assert!(node_affinity_matches(&both, &node).is_ok());
        let one_fails = NodeSelector {
            node_selector_terms: vec![term(vec![req("zone", In, &["a"]), req("disk", In, &["hdd"])])],
        };
        let unmet = node_affinity_matches(&one_fails, &node).unwrap_err();
        assert_eq!(
            unmet[0].to_string(),
            "term 0: `disk In [hdd]` does not hold (node has \"ssd\")"
        );
        let either = NodeSelector {
            node_selector_terms: vec![
                term(vec![req("zone", In, &["b"])]),
                term(vec![req("zone", In, &["a"])]),
            ],
        };
        assert!(node_affinity_matches(&either, &node).is_ok());
    }

    #[test]
    fn empty_terms_match_nothing() {
        let node = NodeInfo::default();
        let empty_term = NodeSelector {
            node_selector_terms: vec![NodeSelectorTerm::default()],
        };
        assert!(node_affinity_matches(&empty_term, &node).is_err());
        let no_terms = NodeSelector::default();
        assert_eq!(node_affinity_matches(&no_terms, &node), Err(vec![]));
    }

    #[test]
    fn match_fields_compare_the_node_name() {
        use NodeSelectorOperator::*;
        let node = NodeInfo {
            name: "edge-7".into(),
            ..NodeInfo::default()
        };
        let fields = |r| NodeSelector {
            node_selector_terms: vec![NodeSelectorTerm {
                match_expressions: vec![],
                match_fields: vec![r],
            }],
        };
        assert!(node_affinity_matches(&fields(req("metadata.name", In, &["edge-7"])), &node).is_ok());
        assert!(node_affinity_matches(&fields(req("metadata.name", In, &["edge-8"])), &node).is_err());
        assert!(node_affinity_matches(&fields(req("metadata.name", NotIn, &["edge-8"])), &node).is_ok());
        assert!(node_affinity_matches(&fields(req("metadata.labels", In, &["edge-7"])), &node).is_err());
        assert!(node_affinity_matches(&fields(req("metadata.labels", NotIn, &["x"])), &node).is_err());
        assert!(node_affinity_matches(&fields(req("metadata.name", Exists, &[])), &node).is_err());
    }
}
