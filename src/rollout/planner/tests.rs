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
    run_with_absent(strategy, st, specs, &[])
}

/// [`run`] with the eligible nodes named `n{i}` for each `(i, spec)` of `live`, and `absent`
/// nodes (selected, dead within the grace) beside them.
fn run_live(strategy: Strategy, st: &RolloutState, live: &[(usize, &str)], absent: &[&str]) -> Decision {
    let nodes: Vec<(String, Option<PodStatus>)> = live
        .iter()
        .map(|(i, spec)| (format!("n{i}"), statuses(&[spec]).remove(0).1))
        .collect();
    plan_nodes(strategy, st, &nodes, absent)
}

fn run_with_absent(strategy: Strategy, st: &RolloutState, specs: &[&str], absent: &[&str]) -> Decision {
    plan_nodes(strategy, st, &statuses(specs), absent)
}

fn plan_nodes(
    strategy: Strategy,
    st: &RolloutState,
    nodes: &[(String, Option<PodStatus>)],
    absent: &[&str],
) -> Decision {
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
            absent,
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
        absent: &[],
        now: NOW,
        now_ms: NOW * 1000,
    };
    let d = plan(&input, &[&OnlyPrefix("n1")]);
    assert_eq!(d.grant, vec!["n1", "n10", "n11"]);
}

/// The state a rollout from v1 to v2 leaves once it completed without the absent nodes
/// `held`: no baseline, no grants, each held node on v1.
fn finished_holding(held: &[usize]) -> RolloutState {
    let mut st = RolloutState::default();
    for i in held {
        st.held.insert(
            format!("n{i}"),
            crate::rollout::state::Held {
                revision: "v1".into(),
                since: NOW - 60,
            },
        );
    }
    st
}

fn grant_v2(st: &mut RolloutState, node: &str) {
    st.held.remove(node);
    st.grants.insert(
        node.to_string(),
        Grant {
            revision: "v2".into(),
            at: NOW,
        },
    );
}

#[test]
fn a_rollout_completed_without_absent_nodes_holds_those_behind_on_their_revision() {
    // n0..n2 are live and updated; n3 (never granted) and n4 (granted before it was lost) are
    // away. Only n3 would otherwise be told v2 outside any wave.
    let st = state(&[0, 1, 2, 4], NOW);
    let d = run_with_absent(rolling(1, 0), &st, &["new", "new", "new"], &["n3", "n4"]);
    assert!(d.complete, "{d:?}");
    assert_eq!(d.hold, vec!["n3".to_string()], "n4 already runs (or will run) v2");
    assert_eq!(
        (d.progress.desired, d.progress.updated_available),
        (3, 3),
        "complete for the live nodes"
    );
    // Nothing away: nothing held.
    let d = run(rolling(1, 0), &st, &["new", "new", "new"]);
    assert!(d.complete && d.hold.is_empty(), "{d:?}");
}

#[test]
fn a_finished_rollout_with_only_absent_held_nodes_plans_nothing() {
    // Every live node updated, both held nodes still away: not "complete" again on each tick.
    let st = finished_holding(&[3, 4]);
    let d = run_with_absent(rolling(1, 0), &st, &["new", "new", "new"], &["n3", "n4"]);
    assert!(d.is_noop(), "{d:?}");
}

#[test]
fn two_held_nodes_returning_behind_are_granted_one_at_a_time_with_max_unavailable_1() {
    let mut st = finished_holding(&[3, 4]);
    // Both return at once, still on v1 and available: one wave, one node.
    let live = [(0, "new"), (1, "new"), (2, "new"), (3, "old"), (4, "old")];
    let d = run_live(rolling(1, 0), &st, &live, &[]);
    assert_eq!(d.grant, vec!["n3"], "{d:?}");
    assert!(!d.complete);
    grant_v2(&mut st, "n3");
    // n3 restarting on v2 holds the only slot.
    let live = [
        (0, "new"),
        (1, "new"),
        (2, "new"),
        (3, "new-starting"),
        (4, "old"),
    ];
    let d = run_live(rolling(1, 0), &st, &live, &[]);
    assert!(d.grant.is_empty() && !d.complete, "{d:?}");
    assert_eq!(d.progress.pending, vec!["n3".to_string()]);
    // Available again: n4's turn.
    let live = [(0, "new"), (1, "new"), (2, "new"), (3, "new"), (4, "old")];
    let d = run_live(rolling(1, 0), &st, &live, &[]);
    assert_eq!(d.grant, vec!["n4"], "{d:?}");
    grant_v2(&mut st, "n4");
    let live = [(0, "new"), (1, "new"), (2, "new"), (3, "new"), (4, "new")];
    let d = run_live(rolling(1, 0), &st, &live, &[]);
    assert!(d.complete && d.hold.is_empty(), "{d:?}");
}

#[test]
fn a_held_node_returning_while_a_live_one_is_down_waits_for_the_budget() {
    let st = finished_holding(&[3]);
    // n1 (updated) crashes: it is the one unavailable node the budget allows.
    let live = [(0, "new"), (1, "new-starting"), (2, "new"), (3, "old")];
    let d = run_live(rolling(1, 0), &st, &live, &[]);
    assert!(d.grant.is_empty(), "{d:?}");
    // With room for two, it goes.
    let d = run_live(rolling(2, 0), &st, &live, &[]);
    assert_eq!(d.grant, vec!["n3"]);
    // Paused: held nodes wait like any other.
    let mut paused = st.clone();
    paused.paused = true;
    let live = [(0, "new"), (1, "new"), (2, "new"), (3, "old")];
    assert!(run_live(rolling(1, 0), &paused, &live, &[]).grant.is_empty());
}

#[test]
fn held_nodes_gone_past_the_grace_are_released() {
    // n3 still away within the grace, n4 neither live nor absent any more.
    let st = finished_holding(&[3, 4]);
    let d = run_with_absent(rolling(1, 0), &st, &["new", "new", "new"], &["n3"]);
    assert_eq!(d.release, vec!["n4".to_string()]);
    assert!(!d.complete && d.grant.is_empty() && !d.is_noop(), "{d:?}");
    // Released along with a wave granting the other one.
    let live = [(0, "new"), (1, "new"), (2, "new"), (3, "old")];
    let d = run_live(rolling(1, 0), &st, &live, &[]);
    assert_eq!(
        (d.grant.clone(), d.release.clone()),
        (vec!["n3".to_string()], vec!["n4".to_string()])
    );
}
