//! The rollout budget invariant as a checker: tests feed it samples of every node's status during a rollout, and it reports any sample that exceeded the budget.

use serde::Serialize;

use crate::agent::status::PodStatus;

/// Samples node statuses and remembers every moment the budget was exceeded.
#[derive(Debug, Clone, Serialize)]
pub struct BudgetChecker {
    pub max_unavailable: usize,
    pub max_surge: usize,
    pub min_ready_secs: u64,
    pub samples: usize,
    /// The most unavailable eligible nodes seen in one sample.
    pub worst_unavailable: usize,
    /// The most extra (surge) instances seen in one sample.
    pub worst_surge: usize,
    pub violations: Vec<String>,
}

impl BudgetChecker {
    pub fn new(max_unavailable: usize, max_surge: usize, min_ready_secs: u64) -> Self {
        BudgetChecker {
            max_unavailable,
            max_surge,
            min_ready_secs,
            samples: 0,
            worst_unavailable: 0,
            worst_surge: 0,
            violations: Vec::new(),
        }
    }

    /// One sample: the statuses of the eligible (alive, selected) nodes at unix second `now`,
    /// and how many instances beyond one per node exist (0 where that cannot be seen).
    pub fn sample<'a>(
        &mut self,
        nodes: impl IntoIterator<Item = (&'a str, Option<&'a PodStatus>)>,
        extra_instances: usize,
        now: u64,
    ) {
        self.samples += 1;
        let down: Vec<&str> = nodes
            .into_iter()
            .filter(|(_, s)| {
                !s.is_some_and(|s| {
                    s.state != crate::agent::status::Phase::Terminating
                        && s.available(self.min_ready_secs, now)
                })
            })
            .map(|(n, _)| n)
            .collect();
        self.worst_unavailable = self.worst_unavailable.max(down.len());
        self.worst_surge = self.worst_surge.max(extra_instances);
        if down.len() > self.max_unavailable {
            self.violations.push(format!(
                "sample {}: {} nodes unavailable ({}), budget {}",
                self.samples,
                down.len(),
                down.join(", "),
                self.max_unavailable
            ));
        }
        if extra_instances > self.max_surge {
            self.violations.push(format!(
                "sample {}: {extra_instances} extra instances, maxSurge {}",
                self.samples, self.max_surge
            ));
        }
    }

    /// Panics with every violation, for tests.
    pub fn assert_held(&self) {
        assert!(
            self.violations.is_empty(),
            "rollout budget exceeded in {} of {} samples:\n{}",
            self.violations.len(),
            self.samples,
            self.violations.join("\n")
        );
        assert!(self.samples > 0, "the budget checker took no sample");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(ready_since: Option<u64>) -> PodStatus {
        PodStatus {
            revision: "r".into(),
            state: "Running".into(),
            ready: ready_since.is_some(),
            ready_since,
            ..PodStatus::default()
        }
    }

    #[test]
    fn flags_samples_over_budget_only() {
        let mut c = BudgetChecker::new(1, 0, 5);
        let up = st(Some(0));
        let fresh = st(Some(98));
        c.sample([("a", Some(&up)), ("b", Some(&fresh)), ("c", Some(&up))], 0, 100);
        assert!(c.violations.is_empty());
        c.sample([("a", None), ("b", Some(&fresh)), ("c", Some(&up))], 0, 100);
        assert_eq!(c.violations.len(), 1);
        assert!(c.violations[0].contains("a, b"), "{:?}", c.violations);
        c.sample([("a", Some(&up))], 1, 100);
        assert_eq!(c.worst_unavailable, 2);
        assert_eq!(c.violations.len(), 2, "one extra instance with maxSurge 0");
    }
}
