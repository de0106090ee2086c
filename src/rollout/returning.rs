//! Nodes that come back behind after a rollout finished without them: the store's holds, the driver's view of who is absent, and an in-process simulation of a 2 | 3 partition healing under the budget checker.

use std::collections::BTreeMap;
use std::time::Duration;

use super::driver::{absent, decide, step};
use super::invariant::BudgetChecker;
use crate::agent::status::PodStatus;
use crate::control::store::{Command, Response, Store};
use crate::membership::{Member, MemberState};

const DS: &str = "agent";
const GRACE: Duration = Duration::from_secs(300);

fn daemonset(image: &str, max_unavailable: u32) -> crate::spec::DaemonSet {
    let yaml = format!(
        "apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: {DS}}}
spec:
  selector: {{matchLabels: {{app: {DS}}}}}
  updateStrategy: {{type: RollingUpdate, rollingUpdate: {{maxUnavailable: {max_unavailable}}}}}
  template:
    metadata: {{labels: {{app: {DS}}}}}
    spec:
      containers:
      - name: main
        image: {image}
        command: [sleep, '3600']
"
    );
    let m = crate::spec::parse(yaml.as_bytes(), "test.yaml").remove(0);
    m.into_valid()
        .expect("valid test manifest")
        .into_daemonset()
        .unwrap()
}

fn apply(s: &mut Store, image: &str, at: u64) {
    let r = s.apply(&Command::Apply {
        daemonsets: vec![daemonset(image, 1)],
        config_maps: vec![],
        secrets: vec![],
        warnings: Default::default(),
        at,
    });
    assert!(matches!(r, Response::Applied { .. }), "{r:?}");
}

fn rollout_step(s: &Store, grant: &[&str], complete: bool, hold: &[&str], release: &[&str]) -> Command {
    let r = &s.daemonsets[DS];
    Command::RolloutStep {
        name: DS.into(),
        seq: r.rollout.seq,
        revision: r.current_revision().hash.clone(),
        grant: grant.iter().map(|n| n.to_string()).collect(),
        failure: None,
        complete,
        at: 100,
        hold: hold.iter().map(|n| n.to_string()).collect(),
        release: release.iter().map(|n| n.to_string()).collect(),
    }
}

/// A store where revision 2 rolled out to n1 and completed while n2 and n3 were away.
fn completed_without_n2_n3() -> Store {
    let mut s = Store::default();
    apply(&mut s, "agent:1", 1);
    apply(&mut s, "agent:2", 2);
    assert_eq!(s.apply(&rollout_step(&s, &["n1"], false, &[], &[])), Response::Ok);
    assert_eq!(
        s.apply(&rollout_step(&s, &[], true, &["n2", "n3"], &[])),
        Response::Ok
    );
    s
}

#[test]
fn completing_without_absent_nodes_keeps_them_on_their_revision_and_new_nodes_on_the_current() {
    let s = completed_without_n2_n3();
    let r = &s.daemonsets[DS];
    assert!(!r.rollout.in_progress(), "the rollout of the live nodes is over");
    let numbers = |n: &str| r.granted_revision(n).number;
    assert_eq!(
        (numbers("n1"), numbers("n2"), numbers("n3"), numbers("new-node")),
        (2, 1, 1, 2)
    );
    assert_eq!(r.rollout.held["n2"].since, 100);
    let done = r.events.last().unwrap();
    assert_eq!(done.reason, "RolloutComplete");
    assert!(
        done.message
            .contains("absent n2 (revision 1), n3 (revision 1) stay on their revision"),
        "{}",
        done.message
    );
}

#[test]
fn a_grant_release_departure_or_deleted_pod_ends_a_hold() {
    let mut s = completed_without_n2_n3();
    s.apply(&rollout_step(&s, &["n2"], false, &[], &[]));
    let r = &s.daemonsets[DS];
    assert!(
        !r.rollout.held.contains_key("n2"),
        "the grant supersedes the hold"
    );
    assert_eq!(r.granted_revision("n2").number, 2);
    s.apply(&rollout_step(&s, &[], false, &[], &["n3"]));
    let r = &s.daemonsets[DS];
    assert!(r.rollout.held.is_empty());
    assert_eq!(r.events.last().unwrap().reason, "HoldReleased");

    let mut s = completed_without_n2_n3();
    s.apply(&Command::NodeLeft {
        node: "n2".into(),
        generation: 1,
        at: 0,
    });
    s.apply(&Command::DeletePod {
        name: DS.into(),
        node: "n3".into(),
        at: 5,
    });
    let r = &s.daemonsets[DS];
    assert!(!r.rollout.held.contains_key("n2"));
    assert_eq!(
        r.granted_revision("n3").number,
        2,
        "delete pod asks for the current revision"
    );
    // Finishing (n3 away again) must not send it back to the revision it was held on.
    s.apply(&rollout_step(&s, &[], true, &["n3"], &[]));
    let r = &s.daemonsets[DS];
    assert!(
        r.rollout.held.is_empty() && !r.rollout.in_progress(),
        "{:?}",
        r.rollout
    );
    assert_eq!(r.granted_revision("n3").number, 2);
}

#[test]
fn a_template_change_starts_a_new_rollout_and_keeps_held_nodes_on_their_revision() {
    let mut s = completed_without_n2_n3();
    let v1 = s.daemonsets[DS].revisions[0].hash.clone();
    apply(&mut s, "agent:3", 3);
    let r = &s.daemonsets[DS];
    assert!(r.rollout.in_progress());
    assert_eq!(
        (
            r.granted_revision("n1").number,
            r.granted_revision("n2").hash.clone()
        ),
        (2, v1.clone()),
        "live nodes keep revision 2 until granted, held ones revision 1"
    );
    assert!(
        r.revision_by_hash(&v1).is_some(),
        "a held revision stays in the history"
    );
    // Back to the template n2 and n3 run: nothing left to hold them for.
    s.apply(&Command::Undo {
        name: DS.into(),
        to_revision: Some(1),
        at: 4,
    });
    assert!(s.daemonsets[DS].rollout.held.is_empty());
}

fn member(name: &str, state: MemberState, dead_since: Option<u64>) -> Member {
    Member {
        name: name.into(),
        state,
        dead_since,
        ..Member::default()
    }
}

#[test]
fn absent_nodes_are_the_dead_within_the_grace_and_held_ones_not_seen_alive_for_the_grace() {
    let s = completed_without_n2_n3();
    let record = &s.daemonsets[DS];
    // n3 was held at second 100; the grace is 300 s.
    let now = 350;
    let members = [
        member("n1", MemberState::Alive, None),
        member("n2", MemberState::Dead, Some(now - 10)),
        member("n4", MemberState::Dead, Some(now - 301)),
        member("n5", MemberState::Left, None),
        member("n6", MemberState::Joining, None),
    ];
    // n3 is held but unknown to this node (a new leader): it still counts within the grace.
    assert_eq!(absent(record, &members, &s, now, GRACE), vec!["n2", "n6", "n3"]);
    // Held since 100: past the grace, n3 is forgotten; a dead node counts by its own time.
    assert_eq!(absent(record, &members, &s, 100 + 300, GRACE), vec!["n2", "n6"]);
}

/// One simulated host: the store copy it last received and the instance it runs.
struct Host {
    name: String,
    copy: Store,
    /// Revision hash of its instance, and when that instance is (or was) ready, unix ms.
    running: Option<(String, u64)>,
    connected: bool,
    /// What the leader last heard from it.
    last_seen: Option<PodStatus>,
    dead_since: Option<u64>,
}

/// Restarting an instance on a new revision takes this long before it is ready.
const RESTART_MS: u64 = 700;
const TICK_MS: u64 = 100;

struct Sim {
    leader: Store,
    hosts: Vec<Host>,
    now_ms: u64,
    checker: BudgetChecker,
}

impl Sim {
    fn new(n: usize) -> Sim {
        let mut leader = Store::default();
        apply(&mut leader, "agent:1", 1);
        let now_ms = 1_700_000_000_000;
        let v1 = leader.daemonsets[DS].current_revision().hash.clone();
        let hosts = (0..n)
            .map(|i| Host {
                name: format!("n{i}"),
                copy: leader.clone(),
                running: Some((v1.clone(), now_ms - 60_000)),
                connected: true,
                last_seen: None,
                dead_since: None,
            })
            .collect();
        Sim {
            leader,
            hosts,
            now_ms,
            checker: BudgetChecker::new(1, 0, 0),
        }
    }

    fn status(&self, h: &Host) -> Option<PodStatus> {
        let (rev, ready_ms) = h.running.as_ref()?;
        let ready = *ready_ms <= self.now_ms;
        Some(PodStatus {
            revision: rev.clone(),
            state: if ready { "Running" } else { "ContainerCreating" }.into(),
            ready,
            ready_since: ready.then_some(ready_ms / 1000),
            ready_since_ms: ready.then_some(*ready_ms),
            ..PodStatus::default()
        })
    }

    /// The leader's member list: the hosts it reaches are alive with their statuses; the
    /// others dead, with what it heard last.
    fn members(&self) -> Vec<Member> {
        self.hosts
            .iter()
            .map(|h| Member {
                name: h.name.clone(),
                state: if h.connected {
                    MemberState::Alive
                } else {
                    MemberState::Dead
                },
                dead_since: h.dead_since,
                pods: h
                    .last_seen
                    .iter()
                    .map(|s| (DS.to_string(), s.clone()))
                    .collect::<BTreeMap<_, _>>(),
                ..Member::default()
            })
            .collect()
    }

    /// One tick: hosts in reach receive the store, every host acts on its own copy, the budget
    /// is sampled over the hosts in reach, and every other tick the leader plans and commits.
    fn tick(&mut self, n: u64) {
        self.now_ms += TICK_MS;
        for i in 0..self.hosts.len() {
            if self.hosts[i].connected {
                self.hosts[i].copy = self.leader.clone();
            }
            let h = &self.hosts[i];
            let target = h.copy.daemonsets[DS].granted_revision(&h.name).hash.clone();
            if h.running.as_ref().map(|r| &r.0) != Some(&target) {
                self.hosts[i].running = Some((target, self.now_ms + RESTART_MS));
            }
            if self.hosts[i].connected {
                self.hosts[i].last_seen = self.status(&self.hosts[i]);
            }
        }
        let statuses: Vec<(String, Option<PodStatus>)> = self
            .hosts
            .iter()
            .filter(|h| h.connected)
            .map(|h| (h.name.clone(), self.status(h)))
            .collect();
        self.checker.sample(
            statuses.iter().map(|(n, s)| (n.as_str(), s.as_ref())),
            0,
            self.now_ms / 1000,
        );
        if n.is_multiple_of(2) {
            let members = self.members();
            let record = &self.leader.daemonsets[DS];
            let decision = decide(record, &members, &self.leader, self.now_ms, GRACE);
            if !decision.is_noop() {
                let cmd = step(DS, record, decision, self.now_ms / 1000);
                self.leader.apply(&cmd);
                self.leader.version += 1;
            }
        }
    }

    fn run_until(&mut self, what: &str, done: impl Fn(&Sim) -> bool) {
        for n in 0..3_000 {
            if done(self) {
                return;
            }
            self.tick(n);
        }
        panic!("simulation: {what} never happened");
    }

    fn runs(&self, host: usize) -> u64 {
        let h = &self.hosts[host];
        let hash = &h.running.as_ref().expect("runs an instance").0;
        self.leader.daemonsets[DS]
            .revision_by_hash(hash)
            .expect("a known revision")
            .number
    }

    fn all_run_available(&self, revision: u64, hosts: &[usize]) -> bool {
        hosts.iter().all(|&i| {
            self.runs(i) == revision && self.hosts[i].running.as_ref().is_some_and(|r| r.1 <= self.now_ms)
        })
    }
}

#[test]
fn two_nodes_returning_behind_after_a_partition_are_updated_within_the_budget() {
    let mut sim = Sim::new(5);
    let (majority, minority) = ([0, 1, 2], [3, 4]);
    for &i in &minority {
        sim.hosts[i].connected = false;
        sim.hosts[i].dead_since = Some(sim.now_ms / 1000);
    }
    // The majority takes a new template and rolls it out without the two.
    apply(&mut sim.leader, "agent:2", sim.now_ms / 1000);
    sim.run_until("the rollout completes on the majority", |s| {
        !s.leader.daemonsets[DS].rollout.in_progress()
    });
    assert!(sim.all_run_available(2, &majority));
    let r = &sim.leader.daemonsets[DS];
    assert_eq!(
        r.rollout.held.keys().collect::<Vec<_>>(),
        ["n3", "n4"],
        "the two absent nodes are held back"
    );
    assert_eq!((sim.runs(3), sim.runs(4)), (1, 1));

    // The partition heals: both come back at the same moment, still on revision 1.
    for &i in &minority {
        sim.hosts[i].connected = true;
        sim.hosts[i].dead_since = None;
    }
    sim.run_until("every node runs revision 2, available", |s| {
        s.all_run_available(2, &[0, 1, 2, 3, 4]) && s.leader.daemonsets[DS].rollout.held.is_empty()
    });
    sim.checker.assert_held();
    assert_eq!(
        sim.checker.worst_unavailable, 1,
        "the returning nodes were updated, one at a time"
    );
}

#[test]
fn nodes_gossip_no_longer_lists_are_forgotten_by_the_rollout_state_only() {
    let mut s = completed_without_n2_n3();
    s.nodes.insert("n3".into(), Default::default());
    // n2 is dead but still listed (within chitchat's dead-node grace): kept. n3 is not listed.
    let members = [
        member("n1", MemberState::Alive, None),
        member("n2", MemberState::Dead, Some(10)),
    ];
    let gone = super::driver::forgotten_nodes(&s, &members);
    assert_eq!(gone, vec!["n3".to_string()]);
    assert!(s.daemonsets[DS].rollout.held.contains_key("n3"));
    assert_eq!(
        s.apply(&Command::ForgetRolloutNodes { nodes: gone }),
        Response::Ok
    );
    let r = &s.daemonsets[DS].rollout;
    assert!(!r.held.contains_key("n3") && !r.grants.contains_key("n3"));
    assert!(r.held.contains_key("n2"), "a listed dead node keeps its hold");
    assert!(s.nodes.contains_key("n3"), "an operator's overrides stay");
    assert!(super::driver::forgotten_nodes(&s, &members).is_empty());
}
