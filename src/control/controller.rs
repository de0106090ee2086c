//! The control loop every node runs: forms or joins the Raft cluster, publishes its role, and on the leader keeps the voter set healthy.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use openraft::ServerState;
use tracing::{info, warn};

use super::bootstrap::{self, Bootstrap, BootstrapView};
use super::replica::Replica;
use super::store::Store;
use super::types::{Raft, RaftNode};
use super::voters::{self, Candidate, Step, VoterView};
use crate::membership::{keys, Member, MemberState, Membership};

/// Settings of the control loop.
#[derive(Debug, Clone)]
pub struct ControlSettings {
    /// Voters to aim for (odd).
    pub voters: usize,
    /// Members to wait for before the bootstrap node forms the cluster.
    pub bootstrap_expect: usize,
    /// How long a voter may be dead before a live node replaces it.
    pub dead_voter_grace: Duration,
    /// How long to listen to gossip before forming a new cluster.
    pub discovery_window: Duration,
    /// How often the loop runs.
    pub tick: Duration,
}

/// Default for `--dead-voter-grace`: long enough to ride out a reboot, short enough to heal.
pub const DEFAULT_DEAD_VOTER_GRACE: Duration = Duration::from_secs(30);

impl Default for ControlSettings {
    fn default() -> Self {
        ControlSettings {
            voters: 3,
            bootstrap_expect: 1,
            dead_voter_grace: DEFAULT_DEAD_VOTER_GRACE,
            discovery_window: Duration::from_secs(2),
            tick: Duration::from_millis(500),
        }
    }
}

/// Everything the loop acts on.
pub struct Controller {
    pub raft: Raft,
    pub raft_id: u64,
    pub name: String,
    pub api_addr: String,
    pub gossip_addr: SocketAddr,
    /// The resolved seed list; `None` when a seed did not resolve, so this node never forms.
    pub seeds: Option<Vec<SocketAddr>>,
    pub membership: Membership,
    pub settings: ControlSettings,
}

/// Roles a node publishes. Learners are catching up to become voters; non-voters run
/// workloads and follow the store without taking part in Raft.
pub const LEADER: &str = "leader";
pub const VOTER: &str = "voter";
pub const LEARNER: &str = "learner";
pub const NON_VOTER: &str = "non-voter";

/// Whether a published role is a vote in the Raft group, as nodes outside it see voters.
pub fn votes(role: &str) -> bool {
    matches!(role, LEADER | VOTER)
}

/// Whether a published role means "this node belongs to a formed cluster".
pub fn in_raft(role: &str) -> bool {
    matches!(role, LEADER | VOTER | LEARNER)
}

/// The role a node publishes, from its Raft metrics.
pub fn role_of(
    raft_id: u64,
    state: ServerState,
    voters: &BTreeSet<u64>,
    learners: &BTreeSet<u64>,
) -> &'static str {
    if state == ServerState::Leader {
        LEADER
    } else if voters.contains(&raft_id) {
        VOTER
    } else if learners.contains(&raft_id) {
        LEARNER
    } else {
        NON_VOTER
    }
}

impl Controller {
    /// Runs until the process ends.
    pub async fn run(
        self,
        replica: Replica<Store>,
        mut applied: tokio::sync::watch::Receiver<std::sync::Arc<Store>>,
    ) {
        // Committed changes applied by this node's state machine become its store copy; the
        // state machine is this node's own word on its group, whatever epoch the copy had.
        tokio::spawn(async move {
            loop {
                let store = (**applied.borrow_and_update()).clone();
                if let Err(e) = replica.replace(store) {
                    warn!(error = %e, "cannot save the store copy");
                }
                if applied.changed().await.is_err() {
                    return;
                }
            }
        });

        let started = Instant::now();
        let mut last_wait = String::new();
        let mut published_role = None;
        let mut gone_since: HashMap<u64, Instant> = HashMap::new();
        // Whether this leader last found itself without an acknowledging majority (logged once).
        let mut cut_off = false;
        loop {
            tokio::time::sleep(self.settings.tick).await;
            let metrics = self.raft.metrics().borrow().clone();
            let membership = metrics.membership_config.membership();
            let voter_ids: BTreeSet<u64> = membership.voter_ids().collect();
            let learner_ids: BTreeSet<u64> = membership.learner_ids().collect();
            let role = role_of(self.raft_id, metrics.state, &voter_ids, &learner_ids);
            if published_role != Some(role) {
                self.membership.set_local(keys::ROLE, role).await;
                info!(role, "control-plane role");
                published_role = Some(role);
            }

            let members = self.membership.members().await;
            let initialized = voter_ids.contains(&self.raft_id) || learner_ids.contains(&self.raft_id);
            if !initialized {
                let alive: Vec<(String, bool)> = members
                    .iter()
                    .filter(|m| matches!(m.state, MemberState::Alive | MemberState::Joining))
                    .map(|m| (m.name.clone(), in_raft(&m.role)))
                    .collect();
                let Some(seeds) = &self.seeds else { continue };
                let decision = bootstrap::decide(&BootstrapView {
                    self_addr: self.gossip_addr,
                    seeds,
                    initialized: self.raft.is_initialized().await.unwrap_or(true),
                    alive: &alive,
                    listened: started.elapsed(),
                    discovery_window: self.settings.discovery_window,
                    bootstrap_expect: self.settings.bootstrap_expect,
                });
                match decision {
                    Bootstrap::Form => self.form(&members).await,
                    Bootstrap::Wait(why) if why != last_wait => {
                        info!("{why}");
                        last_wait = why;
                    }
                    _ => {}
                }
                continue;
            }
            // Every node keeps these ages current, leader or not, so that a node becoming
            // leader never judges a voter dead by what it saw in an earlier term.
            let candidates = candidates(
                &members,
                voter_ids.iter().chain(&learner_ids).copied(),
                &mut gone_since,
                Instant::now(),
                crate::rollout::driver::unix_now(),
            );
            if metrics.state != ServerState::Leader {
                continue;
            }

            // Leader: keep the voter set at its target and replace dead voters.
            let last = metrics.last_log_index.unwrap_or(0);
            let learner_lag: BTreeMap<u64, u64> = metrics
                .replication
                .as_ref()
                .map(|r| {
                    r.iter()
                        .map(|(id, matched)| {
                            (*id, last.saturating_sub(matched.map(|l| l.index).unwrap_or(0)))
                        })
                        .collect()
                })
                .unwrap_or_default();
            // A leader its majority no longer answers (cut off in a minority) would propose a
            // voter change it can never commit, and after the partition heals that uncommitted
            // membership keeps it campaigning in a configuration nobody else has: it would
            // never rejoin. Voter changes wait until a majority acknowledges this leader.
            if !super::writer::quorum_acked_recently(
                metrics.millis_since_quorum_ack,
                self.raft.config().heartbeat_interval,
            ) {
                if !cut_off {
                    info!("no majority acknowledges this leader lately; voter changes wait");
                    cut_off = true;
                }
                continue;
            }
            cut_off = false;
            let step = voters::plan(&VoterView {
                voters: voter_ids,
                learners: learner_ids,
                members: candidates,
                learner_lag,
                target: self.settings.voters,
                dead_grace: self.settings.dead_voter_grace,
            });
            if let Some(step) = step {
                self.apply_step(step).await;
            }
        }
    }

    async fn form(&self, members: &[crate::membership::Member]) {
        let mut nodes = BTreeMap::new();
        nodes.insert(
            self.raft_id,
            RaftNode {
                name: self.name.clone(),
                api_addr: self.api_addr.clone(),
            },
        );
        // With --bootstrap-expect, the awaited members vote from the start.
        if self.settings.bootstrap_expect > 1 {
            let wanted = voters::desired_voters(self.settings.voters, self.settings.bootstrap_expect);
            let mut others: Vec<_> = members
                .iter()
                .filter(|m| m.state == MemberState::Alive && m.name != self.name)
                .filter_map(|m| Some((m.raft_id?, m)))
                .collect();
            others.sort_by(|a, b| a.1.name.cmp(&b.1.name));
            for (id, m) in others.into_iter().take(wanted.saturating_sub(1)) {
                nodes.insert(
                    id,
                    RaftNode {
                        name: m.name.clone(),
                        api_addr: m.api_addr.clone(),
                    },
                );
            }
        }
        let names: Vec<&str> = nodes.values().map(|n| n.name.as_str()).collect();
        info!(voters = ?names, "forming a new cluster");
        if let Err(e) = self.raft.initialize(nodes.clone()).await {
            warn!(error = %e, "could not form the cluster");
        }
    }

    async fn apply_step(&self, step: Step) {
        let result = match &step {
            Step::AddLearner {
                raft_id,
                name,
                api_addr,
            } => {
                info!(node = %name, raft_id, "adding a learner to catch up before it votes");
                let node = RaftNode {
                    name: name.clone(),
                    api_addr: api_addr.clone(),
                };
                self.raft.add_learner(*raft_id, node, false).await.map(|_| ())
            }
            Step::SetVoters(ids) => {
                info!(voters = ?ids, "changing the voter set");
                self.raft.change_membership(ids.clone(), false).await.map(|_| ())
            }
            Step::RemoveLearners(ids) => {
                info!(learners = ?ids, "removing dead learners");
                self.raft
                    .change_membership(openraft::ChangeMembers::RemoveNodes(ids.clone()), false)
                    .await
                    .map(|_| ())
            }
        };
        if let Err(e) = result {
            warn!(step = ?step, error = %e, "membership change failed; will retry");
        }
    }
}

/// The Raft-capable members as the voter planner sees them, with how long each has been dead.
///
/// The age comes from what gossip says now (`dead_since`, when this node's failure detector
/// declared the member dead), not from when this node happened to notice it while leading.
/// Raft members gossip no longer knows of (a wiped host back under a new id) count as dead from
/// when this node first missed them, kept in `gone_since`.
pub fn candidates(
    members: &[Member],
    raft_members: impl Iterator<Item = u64>,
    gone_since: &mut HashMap<u64, Instant>,
    now: Instant,
    unix_now: u64,
) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = Vec::new();
    let mut counted = BTreeSet::new();
    for m in members {
        let Some(id) = m.raft_id else { continue };
        let dead_for = match (m.state, m.dead_since) {
            (MemberState::Dead | MemberState::Left, Some(since)) => {
                Some(Duration::from_secs(unix_now.saturating_sub(since)))
            }
            // Gone without a time of death in gossip (a node that left): from when we noticed.
            (MemberState::Dead | MemberState::Left, None) => {
                counted.insert(id);
                Some(now - *gone_since.entry(id).or_insert(now))
            }
            _ => None,
        };
        out.push(Candidate {
            raft_id: id,
            name: m.name.clone(),
            api_addr: m.api_addr.clone(),
            dead_for,
            left: m.state == MemberState::Left,
        });
    }
    let known: BTreeSet<u64> = out.iter().map(|c| c.raft_id).collect();
    for id in raft_members {
        if !known.contains(&id) && counted.insert(id) {
            out.push(Candidate {
                raft_id: id,
                name: String::new(),
                api_addr: String::new(),
                dead_for: Some(now - *gone_since.entry(id).or_insert(now)),
                left: false,
            });
        }
    }
    gone_since.retain(|id, _| counted.contains(id));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64, state: MemberState, dead_since: Option<u64>) -> Member {
        Member {
            name: format!("n{id}"),
            state,
            dead_since,
            raft_id: Some(id),
            ..Member::default()
        }
    }

    #[test]
    fn dead_voters_age_from_what_gossip_says_now_not_from_an_earlier_term() {
        let t0 = Instant::now();
        let mut gone = HashMap::new();
        // n3 was missing long ago, while this node led in an earlier term...
        gone.insert(3, t0);
        let later = t0 + Duration::from_secs(600);
        // ...came back, and has just been declared dead again, 2 s ago.
        let members = [
            member(1, MemberState::Alive, None),
            member(3, MemberState::Dead, Some(998)),
        ];
        let c = candidates(&members, [1, 3].into_iter(), &mut gone, later, 1000);
        assert_eq!(c[1].dead_for, Some(Duration::from_secs(2)), "{c:?}");
        assert!(gone.is_empty(), "{gone:?}");
    }

    #[test]
    fn a_raft_member_gossip_does_not_know_ages_from_when_it_was_first_missed() {
        let t0 = Instant::now();
        let mut gone = HashMap::new();
        let members = [member(1, MemberState::Alive, None)];
        let c = candidates(&members, [1, 7].into_iter(), &mut gone, t0, 1000);
        assert_eq!(c[1].dead_for, Some(Duration::ZERO));
        let c = candidates(
            &members,
            [1, 7].into_iter(),
            &mut gone,
            t0 + Duration::from_secs(5),
            1005,
        );
        assert_eq!(c[1].dead_for, Some(Duration::from_secs(5)));
        // Back in gossip: forgotten.
        let members = [
            member(1, MemberState::Alive, None),
            member(7, MemberState::Alive, None),
        ];
        let c = candidates(
            &members,
            [1, 7].into_iter(),
            &mut gone,
            t0 + Duration::from_secs(6),
            1006,
        );
        assert_eq!(c[1].dead_for, None);
        assert!(gone.is_empty());
    }
}
