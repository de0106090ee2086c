//! The update strategy resolved into numbers: how many nodes may be unavailable or surged.

use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::daemonset::{DaemonSetUpdateStrategy, UpdateStrategyType};
use super::quantity::IntOrString;

/// An absolute count or a percentage of the eligible nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IntOrPercent {
    Int(u32),
    Percent(u32),
}

/// Why an int-or-string is not a count or a percentage.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IntOrPercentError {
    #[error("must be greater than or equal to 0")]
    Negative,
    #[error("a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')")]
    NotAPercent,
    #[error("must not be greater than 100%")]
    OverHundred,
}

impl IntOrPercent {
    /// Reads `3` or `"25%"` the way Kubernetes validates `maxUnavailable` and `maxSurge`.
    pub fn parse(v: &IntOrString) -> Result<Self, IntOrPercentError> {
        match v {
            IntOrString::Int(n) => u32::try_from(*n)
                .map(IntOrPercent::Int)
                .map_err(|_| IntOrPercentError::Negative),
            IntOrString::String(s) => {
                let digits = s.strip_suffix('%').ok_or(IntOrPercentError::NotAPercent)?;
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(IntOrPercentError::NotAPercent);
                }
                let pct: u32 = digits.parse().map_err(|_| IntOrPercentError::OverHundred)?;
                if pct > 100 {
                    return Err(IntOrPercentError::OverHundred);
                }
                Ok(IntOrPercent::Percent(pct))
            }
        }
    }

    /// The count for `total` nodes; percentages round up, as Kubernetes does for both
    /// `maxUnavailable` and `maxSurge` of a DaemonSet.
    pub fn scaled(self, total: u32) -> u32 {
        match self {
            IntOrPercent::Int(n) => n,
            IntOrPercent::Percent(p) => {
                let up = (u64::from(p) * u64::from(total)).div_ceil(100);
                u32::try_from(up).unwrap_or(u32::MAX)
            }
        }
    }

    pub fn is_zero(self) -> bool {
        matches!(self, IntOrPercent::Int(0) | IntOrPercent::Percent(0))
    }
}

impl fmt::Display for IntOrPercent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntOrPercent::Int(n) => write!(f, "{n}"),
            IntOrPercent::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// The update strategy with defaults applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Strategy {
    OnDelete,
    RollingUpdate {
        max_unavailable: IntOrPercent,
        max_surge: IntOrPercent,
    },
}

/// How many eligible nodes a rolling update may touch at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Budget {
    /// Nodes whose instance may be down at the same time.
    pub max_unavailable: u32,
    /// Nodes that may run an old and a new instance at the same time.
    pub max_surge: u32,
}

/// Kubernetes' defaults for a rolling update.
pub const DEFAULT_MAX_UNAVAILABLE: IntOrPercent = IntOrPercent::Int(1);
pub const DEFAULT_MAX_SURGE: IntOrPercent = IntOrPercent::Int(0);

impl Strategy {
    /// Resolves a validated update strategy; values that fail to parse (only possible for an
    /// unvalidated spec) fall back to the defaults.
    pub fn from_spec(s: &DaemonSetUpdateStrategy) -> Strategy {
        match s.type_ {
            UpdateStrategyType::OnDelete => Strategy::OnDelete,
            UpdateStrategyType::RollingUpdate => {
                let ru = s.rolling_update.as_ref();
                let read = |v: Option<&IntOrString>, default| {
                    v.and_then(|v| IntOrPercent::parse(v).ok()).unwrap_or(default)
                };
                Strategy::RollingUpdate {
                    max_unavailable: read(
                        ru.and_then(|r| r.max_unavailable.as_ref()),
                        DEFAULT_MAX_UNAVAILABLE,
                    ),
                    max_surge: read(ru.and_then(|r| r.max_surge.as_ref()), DEFAULT_MAX_SURGE),
                }
            }
        }
    }

    /// The budget for `eligible` nodes, or None for `OnDelete`.
    ///
    /// As in the Kubernetes DaemonSet controller, a strategy that resolves to zero
    /// unavailable and zero surge (a small percentage of few nodes cannot, as both percentages
    /// round up, but an unvalidated spec could) allows one unavailable node, so that a rollout
    /// can never stall.
    pub fn budget(&self, eligible: u32) -> Option<Budget> {
        match *self {
            Strategy::OnDelete => None,
            Strategy::RollingUpdate {
                max_unavailable,
                max_surge,
            } => {
                let mut budget = Budget {
                    max_unavailable: max_unavailable.scaled(eligible),
                    max_surge: max_surge.scaled(eligible),
                };
                if eligible > 0 && budget.max_unavailable == 0 && budget.max_surge == 0 {
                    budget.max_unavailable = 1;
                }
                Some(budget)
            }
        }
    }
}

/// Annotation: seconds a node's new instance has to become available before the rollout fails.
pub const PROGRESS_DEADLINE_ANNOTATION: &str = "everynode.io/progress-deadline-seconds";
/// Annotation: what a failed rollout does, `pause` (the default) or `rollback`.
pub const ON_FAILURE_ANNOTATION: &str = "everynode.io/on-failure";
/// Kubernetes' default `progressDeadlineSeconds` for Deployments.
pub const DEFAULT_PROGRESS_DEADLINE_SECS: u64 = 600;

/// What a rollout does when a node's new instance does not become available in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Stop granting the new revision to more nodes; the updated ones stay as they are.
    #[default]
    Pause,
    /// Return every updated node to the revision before the rollout, under the same budget.
    Rollback,
}

/// The failure handling of a rollout, read from the DaemonSet's annotations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RolloutPolicy {
    pub progress_deadline_secs: u64,
    pub on_failure: OnFailure,
}

impl Default for RolloutPolicy {
    fn default() -> Self {
        RolloutPolicy {
            progress_deadline_secs: DEFAULT_PROGRESS_DEADLINE_SECS,
            on_failure: OnFailure::Pause,
        }
    }
}

impl RolloutPolicy {
    /// Reads the annotations; each error is (annotation, value, what is wrong).
    pub fn from_annotations(
        annotations: &std::collections::BTreeMap<String, String>,
    ) -> Result<RolloutPolicy, Vec<(&'static str, String, &'static str)>> {
        let mut policy = RolloutPolicy::default();
        let mut errors = Vec::new();
        if let Some(v) = annotations.get(PROGRESS_DEADLINE_ANNOTATION) {
            match v.trim().parse::<u64>() {
                Ok(n) if n > 0 => policy.progress_deadline_secs = n,
                _ => errors.push((
                    PROGRESS_DEADLINE_ANNOTATION,
                    v.clone(),
                    "must be a whole number of seconds greater than 0",
                )),
            }
        }
        if let Some(v) = annotations.get(ON_FAILURE_ANNOTATION) {
            match v.as_str() {
                "pause" => policy.on_failure = OnFailure::Pause,
                "rollback" => policy.on_failure = OnFailure::Rollback,
                _ => errors.push((ON_FAILURE_ANNOTATION, v.clone(), "must be `pause` or `rollback`")),
            }
        }
        if errors.is_empty() {
            Ok(policy)
        } else {
            Err(errors)
        }
    }

    /// The policy of a validated object; invalid annotations (refused at apply) give the defaults.
    pub fn of(annotations: &std::collections::BTreeMap<String, String>) -> RolloutPolicy {
        Self::from_annotations(annotations).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::daemonset::RollingUpdateDaemonSet;

    fn rolling(unavailable: Option<IntOrString>, surge: Option<IntOrString>) -> Strategy {
        Strategy::from_spec(&DaemonSetUpdateStrategy {
            type_: UpdateStrategyType::RollingUpdate,
            rolling_update: Some(RollingUpdateDaemonSet {
                max_unavailable: unavailable,
                max_surge: surge,
            }),
        })
    }

    fn s(v: &str) -> Option<IntOrString> {
        Some(IntOrString::String(v.into()))
    }

    fn i(v: i32) -> Option<IntOrString> {
        Some(IntOrString::Int(v))
    }

    #[test]
    fn percentages_round_up_against_the_node_count() {
        let cases = [
            (rolling(None, None), 10, (1, 0)),
            (rolling(s("10%"), None), 10, (1, 0)),
            (rolling(s("10%"), None), 11, (2, 0)),
            (rolling(s("25%"), None), 3, (1, 0)),
            (rolling(s("100%"), None), 7, (7, 0)),
            (rolling(i(0), s("10%")), 11, (0, 2)),
            (rolling(i(0), i(3)), 2, (0, 3)),
            (rolling(i(5), i(0)), 2, (5, 0)),
            (rolling(s("33%"), s("1%")), 100, (33, 1)),
            (rolling(s("50%"), None), 0, (0, 0)),
        ];
        for (strategy, nodes, (unavailable, surge)) in cases {
            let b = strategy.budget(nodes).unwrap();
            assert_eq!(
                (b.max_unavailable, b.max_surge),
                (unavailable, surge),
                "{strategy:?} on {nodes} nodes"
            );
        }
    }

    #[test]
    fn zero_budget_falls_back_to_one_unavailable() {
        let strategy = Strategy::RollingUpdate {
            max_unavailable: IntOrPercent::Int(0),
            max_surge: IntOrPercent::Percent(0),
        };
        assert_eq!(strategy.budget(5).unwrap().max_unavailable, 1);
    }

    #[test]
    fn rollout_policy_from_annotations() {
        let ann = |pairs: &[(&str, &str)]| -> std::collections::BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            RolloutPolicy::from_annotations(&ann(&[])),
            Ok(RolloutPolicy::default())
        );
        let p = RolloutPolicy::from_annotations(&ann(&[
            (PROGRESS_DEADLINE_ANNOTATION, "30"),
            (ON_FAILURE_ANNOTATION, "rollback"),
        ]))
        .unwrap();
        assert_eq!(
            (p.progress_deadline_secs, p.on_failure),
            (30, OnFailure::Rollback)
        );
        for (k, v) in [
            (PROGRESS_DEADLINE_ANNOTATION, "0"),
            (PROGRESS_DEADLINE_ANNOTATION, "ten"),
            (ON_FAILURE_ANNOTATION, "retry"),
        ] {
            let errors = RolloutPolicy::from_annotations(&ann(&[(k, v)])).unwrap_err();
            assert_eq!(errors[0].0, k, "{k}={v}");
        }
    }

    #[test]
    fn on_delete_has_no_budget() {
        let strategy = Strategy::from_spec(&DaemonSetUpdateStrategy {
            type_: UpdateStrategyType::OnDelete,
            rolling_update: None,
        });
        assert_eq!(strategy, Strategy::OnDelete);
        assert_eq!(strategy.budget(10), None);
    }

    #[test]
    fn int_or_percent_parsing() {
        use IntOrPercentError::*;
        let cases: [(IntOrString, Result<IntOrPercent, IntOrPercentError>); 8] = [
            (IntOrString::Int(2), Ok(IntOrPercent::Int(2))),
            (IntOrString::Int(-1), Err(Negative)),
            (IntOrString::String("25%".into()), Ok(IntOrPercent::Percent(25))),
            (IntOrString::String("0%".into()), Ok(IntOrPercent::Percent(0))),
            (IntOrString::String("101%".into()), Err(OverHundred)),
            (IntOrString::String("5".into()), Err(NotAPercent)),
            (IntOrString::String("-5%".into()), Err(NotAPercent)),
            (IntOrString::String("%".into()), Err(NotAPercent)),
        ];
        for (input, want) in cases {
            assert_eq!(IntOrPercent::parse(&input), want, "{input:?}");
        }
    }
}
