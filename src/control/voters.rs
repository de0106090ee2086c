//! Which nodes vote: a pure planner that grows the voter set to an odd target and replaces dead voters, never passing through an even count.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// A gossip member that can take part in Raft.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub raft_id: u64,
    pub name: String,
    pub api_addr: String,
    /// `None` while alive; otherwise how long gossip has seen it dead.
    pub dead_for: Option<Duration>,
    /// It left the cluster or was removed: its seat goes at once, with or without a successor.
    pub left: bool,
}

/// What the leader knows when it plans.
#[derive(Debug, Clone)]
pub struct VoterView {
    pub voters: BTreeSet<u64>,
    pub learners: BTreeSet<u64>,
    /// Every member gossip knows with a Raft id, alive or dead.
    pub members: Vec<Candidate>,
    /// Entries each learner is behind the leader's log; missing means unknown.
    pub learner_lag: BTreeMap<u64, u64>,
    /// The configured voter count (odd).
    pub target: usize,
    /// How long a voter may be dead before it is replaced.
    pub dead_grace: Duration,
}

/// One membership change for the leader to commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Start replicating to a node so it can catch up before it votes.
    AddLearner {
        raft_id: u64,
        name: String,
        api_addr: String,
    },
    /// Commit this voter set (joint consensus makes any change safe).
    SetVoters(BTreeSet<u64>),
    /// Forget learners that have been dead past the grace period.
    RemoveLearners(BTreeSet<u64>),
}

/// A learner this close to the leader's log can vote without stalling commits.
pub const CAUGHT_UP_LAG: u64 = 64;

/// The largest odd number of voters the live members allow, capped by the target.
pub fn desired_voters(target: usize, alive: usize) -> usize {
    let n = target.min(alive).max(1);
    if n.is_multiple_of(2) {
        n - 1
    } else {
        n
    }
}

pub fn plan(view: &VoterView) -> Option<Step> {
    let by_id: BTreeMap<u64, &Candidate> = view.members.iter().map(|m| (m.raft_id, m)).collect();
    let failed = |id: &u64| match by_id.get(id) {
        None => true,
        Some(m) => m.left || m.dead_for.is_some_and(|d| d >= view.dead_grace),
    };
    let alive_count = view
        .members
        .iter()
        .filter(|m| m.dead_for.is_none() && !m.left)
        .count();
    let healthy: BTreeSet<u64> = view.voters.iter().copied().filter(|id| !failed(id)).collect();
    let failed_voters = view.voters.len() - healthy.len();
    let want = desired_voters(view.target, alive_count).max(healthy.len());

    if healthy.len() < want || failed_voters > 0 {
        // Candidates in name order, so every leader makes the same choice.
        let mut candidates: Vec<&Candidate> = view
            .members
            .iter()
            .filter(|m| m.dead_for.is_none() && !m.left && !view.voters.contains(&m.raft_id))
            .collect();
        candidates.sort_by(|a, b| a.name.cmp(&b.name));
        if candidates.is_empty() {
            // Nobody can take a departed voter's seat. It is not coming back, and keeping it
            // would only count a vote that never answers, so give the seat up.
            let departed: BTreeSet<u64> = view
                .voters
                .iter()
                .copied()
                .filter(|id| by_id.get(id).is_some_and(|m| m.left))
                .collect();
            let remaining: BTreeSet<u64> = view.voters.difference(&departed).copied().collect();
            if !departed.is_empty() && !remaining.is_empty() {
                return Some(Step::SetVoters(remaining));
            }
        }
        // The whole next voter set at once: growing one seat at a time would commit an even
        // count on the way (1, 2, 3), and with two voters the loss of either stops the cluster.
        // Voters never shrink without a successor, so failed ones keep their seats until enough
        // live nodes can take them.
        let size = want.max(view.voters.len());
        let chosen: Vec<&Candidate> = candidates
            .into_iter()
            .take(size.saturating_sub(healthy.len()))
            .collect();
        let mut next: BTreeSet<u64> = healthy
            .iter()
            .copied()
            .chain(chosen.iter().map(|c| c.raft_id))
            .collect();
        let mut failed_sorted = view.voters.difference(&healthy).copied();
        while next.len() < size {
            match failed_sorted.next() {
                Some(id) => next.insert(id),
                None => break,
            };
        }
        if next != view.voters && next.len() % 2 == 1 {
            // Every newcomer replicates as a learner first; they are promoted together, once
            // all of them have caught up, in one (joint) membership change.
            if let Some(c) = chosen.iter().find(|c| !view.learners.contains(&c.raft_id)) {
                return Some(Step::AddLearner {
                    raft_id: c.raft_id,
                    name: c.name.clone(),
                    api_addr: c.api_addr.clone(),
                });
            }
            let all_caught_up = chosen.iter().all(|c| {
                view.learner_lag
                    .get(&c.raft_id)
                    .is_some_and(|lag| *lag <= CAUGHT_UP_LAG)
            });
            if all_caught_up {
                return Some(Step::SetVoters(next));
            }
        }
    }

    let dead_learners: BTreeSet<u64> = view.learners.iter().copied().filter(|id| failed(id)).collect();
    if !dead_learners.is_empty() {
        return Some(Step::RemoveLearners(dead_learners));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64, dead_secs: Option<u64>) -> Candidate {
        Candidate {
            raft_id: id,
            name: format!("n{id}"),
            api_addr: format!("10.0.0.{id}:9495"),
            dead_for: dead_secs.map(Duration::from_secs),
            left: false,
        }
    }

    fn departed(id: u64) -> Candidate {
        Candidate {
            left: true,
            ..member(id, Some(0))
        }
    }

    fn view(voters: &[u64], learners: &[u64], members: Vec<Candidate>) -> VoterView {
        VoterView {
            voters: voters.iter().copied().collect(),
            learners: learners.iter().copied().collect(),
            learner_lag: learners.iter().map(|id| (*id, 0)).collect(),
            members,
            target: 3,
            dead_grace: Duration::from_secs(30),
        }
    }

    #[test]
    fn desired_voter_counts_are_odd_and_capped() {
        for (target, alive, want) in [
            (3, 1, 1),
            (3, 2, 1),
            (3, 3, 3),
            (3, 10, 3),
            (5, 4, 3),
            (5, 5, 5),
            (5, 0, 1),
        ] {
            assert_eq!(
                desired_voters(target, alive),
                want,
                "target {target} alive {alive}"
            );
        }
    }

    #[test]
    fn grows_from_one_voter_straight_to_three_never_through_two() {
        let members = vec![member(1, None), member(2, None), member(3, None), member(4, None)];
        let v = view(&[1], &[], members.clone());
        assert!(matches!(plan(&v), Some(Step::AddLearner { raft_id: 2, .. })));
        let v = view(&[1], &[2], members.clone());
        assert!(
            matches!(plan(&v), Some(Step::AddLearner { raft_id: 3, .. })),
            "both newcomers learn before either votes"
        );
        let mut v = view(&[1], &[2, 3], members.clone());
        v.learner_lag.insert(3, 10_000);
        assert_eq!(plan(&v), None, "n3 is far behind: nobody is promoted yet");
        let v = view(&[1], &[2, 3], members.clone());
        assert_eq!(plan(&v), Some(Step::SetVoters([1, 2, 3].into())));
        let v = view(&[1, 2, 3], &[], members.clone());
        assert_eq!(plan(&v), None);
        // From an even count left by an older version, the next odd one.
        let v = view(&[1, 2], &[3], members);
        assert_eq!(plan(&v), Some(Step::SetVoters([1, 2, 3].into())));
    }

    #[test]
    fn five_voters_grow_from_one_in_one_change_and_from_three_by_two() {
        let members: Vec<Candidate> = (1..=6).map(|id| member(id, None)).collect();
        let mut v = view(&[1], &[2, 3, 4, 5], members.clone());
        v.target = 5;
        assert_eq!(plan(&v), Some(Step::SetVoters([1, 2, 3, 4, 5].into())));
        let mut v = view(&[1, 2, 3], &[4], members);
        v.target = 5;
        assert!(matches!(plan(&v), Some(Step::AddLearner { raft_id: 5, .. })));
    }

    #[test]
    fn no_plan_ever_commits_an_even_voter_count() {
        // Every mix of up to 7 members alive, briefly dead, dead past grace or departed, voter
        // sets of 1, 3 and 5, learners caught up.
        let states = [None, Some(5), Some(600)];
        for n in 1..=7u64 {
            for mask in 0..3u64.pow(n as u32) {
                let mut members = Vec::new();
                let mut m = mask;
                for id in 1..=n {
                    members.push(member(id, states[(m % 3) as usize]));
                    m /= 3;
                }
                for voters in [vec![1], vec![1, 2, 3], vec![1, 2, 3, 4, 5]] {
                    if voters.len() as u64 > n {
                        continue;
                    }
                    let learners: Vec<u64> = (1..=n).filter(|id| !voters.contains(id)).collect();
                    for target in [3, 5] {
                        let mut v = view(&voters, &learners, members.clone());
                        v.target = target;
                        if let Some(Step::SetVoters(next)) = plan(&v) {
                            assert!(
                                next.len() % 2 == 1,
                                "{members:?} voters {voters:?} target {target}: {next:?}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_lagging_learner_is_not_promoted_yet() {
        let members = vec![member(1, None), member(2, None)];
        let mut v = view(&[1], &[2], members);
        v.target = 3;
        v.learner_lag.insert(2, 10_000);
        // Two alive: desired is 1, already met.
        assert_eq!(plan(&v), None);
        v.members.push(member(3, None));
        assert!(matches!(plan(&v), Some(Step::AddLearner { raft_id: 3, .. })));
        v.learners.insert(3);
        v.learner_lag.insert(3, 0);
        assert_eq!(plan(&v), None, "n2 is far behind, wait for it");
    }

    #[test]
    fn two_dead_voters_are_replaced_in_one_change() {
        let members = vec![
            member(1, None),
            member(2, Some(60)),
            member(3, Some(60)),
            member(4, None),
            member(5, None),
        ];
        let v = view(&[1, 2, 3], &[4], members.clone());
        assert!(matches!(plan(&v), Some(Step::AddLearner { raft_id: 5, .. })));
        let v = view(&[1, 2, 3], &[4, 5], members);
        assert_eq!(plan(&v), Some(Step::SetVoters([1, 4, 5].into())));
    }

    #[test]
    fn a_voter_dead_past_grace_is_replaced_by_a_live_node() {
        let members = vec![
            member(1, None),
            member(2, None),
            member(3, Some(60)),
            member(4, None),
        ];
        let v = view(&[1, 2, 3], &[], members.clone());
        assert!(matches!(plan(&v), Some(Step::AddLearner { raft_id: 4, .. })));
        let v = view(&[1, 2, 3], &[4], members);
        assert_eq!(plan(&v), Some(Step::SetVoters([1, 2, 4].into())));
    }

    #[test]
    fn a_briefly_dead_voter_is_kept_and_voters_never_shrink_without_replacement() {
        let members = vec![member(1, None), member(2, None), member(3, Some(5))];
        assert_eq!(plan(&view(&[1, 2, 3], &[], members)), None);
        let members = vec![member(1, None), member(2, None), member(3, Some(600))];
        assert_eq!(
            plan(&view(&[1, 2, 3], &[], members)),
            None,
            "no live replacement: keep n3"
        );
    }

    #[test]
    fn a_departed_voter_hands_its_seat_over_at_once() {
        let members = vec![member(1, None), member(2, None), departed(3), member(4, None)];
        let v = view(&[1, 2, 3], &[], members.clone());
        assert!(
            matches!(plan(&v), Some(Step::AddLearner { raft_id: 4, .. })),
            "no grace period for a node that said goodbye"
        );
        let v = view(&[1, 2, 3], &[4], members);
        assert_eq!(plan(&v), Some(Step::SetVoters([1, 2, 4].into())));
        // Nobody to take the seat: it is given up all the same.
        let members = vec![member(1, None), member(2, None), departed(3)];
        assert_eq!(
            plan(&view(&[1, 2, 3], &[], members)),
            Some(Step::SetVoters([1, 2].into()))
        );
        // A departed learner is dropped too.
        let members = vec![member(1, None), departed(5)];
        assert_eq!(
            plan(&view(&[1], &[5], members)),
            Some(Step::RemoveLearners([5].into()))
        );
    }

    #[test]
    fn dead_learners_are_forgotten() {
        let members = vec![member(1, None), member(5, Some(600))];
        assert_eq!(
            plan(&view(&[1], &[5], members)),
            Some(Step::RemoveLearners([5].into()))
        );
    }
}
