//! Tables for the wave planner: budgets, surge, unavailable-first, dead nodes, deadlines, pause, OnDelete, filters.

use super::*;
use crate::rollout::state::Grant;
use crate::spec::strategy::IntOrPercent;

const NOW: u64 = 1_000;

fn rolling(unavailable: u32, surge: u32) -> Strategy {
    Strategy::RollingUpdate {
        max_unavailable: IntOrPercent::Int(unavailable),
        max_surge: IntOrPercent::Int(surge),
    }
}

/// `spec` per node: "old" (v1, available), "old-down" (v1, crashing), "new" (v2, available),
/// "new-starting" (v2, not ready), "none" (no status).
fn statuses(specs: &[&str]) -> Vec<(String, Option<PodStatus>)> {
    specs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let st = |rev: &str, ready: bool| {
                Some(PodStatus {
                    revision: rev.into(),
                    state: if ready { "Running" } else { "CrashLoopBackOff" }.into(),
                    ready,
                    ready_since: ready.then_some(NOW - 100),
                    ..PodStatus::default()
                })
            };
            let status = match *s {
                "old" => st("v1", true),
                "old-down" => st("v1", false),
                "new" => st("v2", true),
                "new-starting" => st("v2", false),
                "new-surging" => st("v2", true).map(|s| PodStatus { surging: true, ..s }),
                "none" => None,
                other => panic!("unknown spec {other}"),
            };
            (format!("n{i}"), status)
        })
        .collect()
}

/// A state mid-rollout from v1 to v2 where `granted` nodes have v2.
fn state(granted: &[usize], at: u64) -> RolloutState {
    RolloutState {
        baseline: Some("v1".into()),
        grants: granted
            .iter()
            .map(|i| {
                (
                    format!("n{i}"),
                    Grant {
                        revision: "v2".into(),
                        at,
                    },
                )
            })
            .collect(),
        ..RolloutState::default()
    }
}

fn run(strategy: Strategy, st: &RolloutState, specs: &[&str]) -> Decision {
    let nodes = statuses(specs);
    let views: Vec<NodeView> = nodes
        .iter()
        .map(|(n, s)| NodeView {
            name: n,
            status: s.as_ref(),
        })
        .collect();
    plan(
        &PlanInput {
            strategy,
            min_ready_secs: 10,
            policy: RolloutPolicy::default(),
            current: "v2",
            state: st,
            nodes: &views,
            now: NOW,
            now_ms: NOW * 1000,
        },
        &[],
    )
}

#[test]
fn waves_respect_max_unavailable() {
    // (strategy, granted before, node specs, expected grants)
    type Case = (Strategy, Vec<usize>, Vec<&'static str>, Vec<&'static str>);
    let cases: Vec<Case> = vec![
        (rolling(1, 0), vec![], vec!["old"; 5], vec!["n0"]),
        (rolling(2, 0), vec![], vec!["old"; 5], vec!["n0", "n1"]),
        // A granted node that has not reported the new revision yet holds its slot.
        (rolling(1, 0), vec![0], vec!["old", "old", "old"], vec![]),
        (
            rolling(2, 0),
            vec![0],
            vec!["new-starting", "old", "old"],
            vec!["n1"],
        ),
        // Once available it frees the slot.
        (rolling(1, 0), vec![0], vec!["new", "old", "old"], vec!["n1"]),
        // Old instances that are already down are replaced first and for free, but they
        // count as unavailable: no available one is taken down beside them.
        (rolling(1, 0), vec![], vec!["old", "old-down", "old"], vec!["n1"]),
        (
            rolling(2, 0),
            vec![],
            vec!["old", "old-down", "old"],
            vec!["n1", "n0"],
        ),
        (
            rolling(1, 0),
            vec![0],
            vec!["new-starting", "old-down", "none"],
            vec!["n1", "n2"],
        ),
        // Surge: up to maxSurge new instances on their way, old ones stay up meanwhile.
        (rolling(0, 2), vec![], vec!["old"; 4], vec!["n0", "n1"]),
        (
            rolling(0, 2),
            vec![0],
            vec!["new-starting", "old", "old"],
            vec!["n1"],
        ),
        (rolling(0, 1), vec![0], vec!["new-starting", "old", "old"], vec![]),
        // Ready, but its old instance still runs beside it: not done yet.
        (rolling(0, 1), vec![0], vec!["new-surging", "old", "old"], vec![]),
        (rolling(0, 1), vec![0], vec!["new", "old", "old"], vec!["n1"]),
    ];
    for (strategy, granted, specs, want) in cases {
        let d = run(strategy, &state(&granted, NOW), &specs);
        assert_eq!(d.grant, want, "{strategy:?} granted {granted:?} nodes {specs:?}");
        assert!(d.failure.is_none());
    }
}

#[test]
fn percent_budgets_round_up_over_eligible_nodes() {
    let strategy = Strategy::RollingUpdate {
        max_unavailable: IntOrPercent::Percent(10),
        max_surge: IntOrPercent::Int(0),
    };
    let d = run(strategy, &state(&[], NOW), &["old"; 11]);
    assert_eq!(d.grant.len(), 2, "10% of 11 rounds up to 2");
}

#[test]
fn complete_when_every_eligible_node_runs_the_new_revision_available() {
    let d = run(rolling(1, 0), &state(&[0, 1], NOW), &["new", "new"]);
    assert!(d.complete && d.grant.is_empty());
    assert_eq!(d.progress.updated_available, 2);
    // Not while one is still starting.
    let d = run(rolling(1, 0), &state(&[0, 1], NOW), &["new", "new-starting"]);
    assert!(!d.complete);
    assert_eq!(d.progress.pending, vec!["n1".to_string()]);
    // No rollout under way: nothing to do.
    let d = run(rolling(1, 0), &RolloutState::default(), &["new", "none"]);
    assert!(d.is_noop());
}

#[test]
fn a_node_past_the_deadline_fails_the_rollout_and_stops_the_waves() {
    let deadline = RolloutPolicy::default().progress_deadline_secs;
    let late = state(&[0], NOW - deadline);
    let d = run(rolling(1, 0), &late, &["new-starting", "old", "old"]);
    let f = d.failure.expect("a failure");
    assert_eq!(f.nodes, vec!["n0".to_string()]);
    assert!(f.reason.contains("node n0: CrashLoopBackOff"), "{}", f.reason);
    assert!(d.grant.is_empty());
    // Within the deadline nothing fails.
    let d = run(
        rolling(1, 0),
        &state(&[0], NOW - deadline + 1),
        &["new-starting", "old", "old"],
    );
    assert!(d.failure.is_none());
    // Once failed (pause policy), no more grants even with room in the budget.
    let mut failed = state(&[0], NOW - deadline);
    failed.failure = Some(f);
    let d = run(rolling(3, 0), &failed, &["new-starting", "old", "old"]);
    assert!(d.is_noop(), "{d:?}");
}

#[test]
fn paused_and_on_delete_grant_nothing() {
    let mut paused = state(&[], NOW);
    paused.paused = true;
    assert!(run(rolling(5, 0), &paused, &["old"; 3]).grant.is_empty());
    let d = run(Strategy::OnDelete, &state(&[], NOW), &["old", "old-down"]);
    assert!(d.grant.is_empty());
    let d = run(Strategy::OnDelete, &state(&[0, 1], NOW), &["new", "new"]);
    assert!(d.complete);
}

#[test]
fn dead_nodes_are_not_passed_in_and_hold_nothing() {
    // The driver leaves dead nodes out: with two of three gone, the last one completes it.
    let d = run(rolling(1, 0), &state(&[0], NOW), &["new"]);
    assert!(d.complete);
}

struct OnlyPrefix(&'static str);

impl WaveFilter for OnlyPrefix {
    fn admit<'a>(&self, _: &PlanInput<'_>, candidates: Vec<&'a str>) -> Vec<&'a str> {
        candidates.into_iter().filter(|n| n.starts_with(self.0)).collect()
    }
}

#[test]
fn filters_narrow_the_candidates_before_the_budget() {
    let nodes = statuses(&["old"; 12]);
    let views: Vec<NodeView> = nodes
        .iter()
        .map(|(n, s)| NodeView {
            name: n,
            status: s.as_ref(),
        })
        .collect();
    let st = state(&[], NOW);
    let input = PlanInput {
        strategy: rolling(5, 0),
        min_ready_secs: 0,
        policy: RolloutPolicy::default(),
        current: "v2",
        state: &st,
        nodes: &views,
        now: NOW,
        now_ms: NOW * 1000,
    };
    let d = plan(&input, &[&OnlyPrefix("n1")]);
    assert_eq!(d.grant, vec!["n1", "n10", "n11"]);
}
