//! The per-DaemonSet status a node publishes in gossip, and how `get ds` sums them up as Kubernetes does.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest `last_error` published; gossip values must stay small (see DESIGN: chitchat limits).
pub const MAX_ERROR_CHARS: usize = 200;

/// What every init container status starts with, as in kubectl's STATUS column.
const INIT_PREFIX: &str = "Init:";

/// The phase of one DaemonSet's instance on this node, with Kubernetes' names.
///
/// Gossiped and shown as its name (`Running`, `ErrImagePull`...), so the wire form is a plain
/// string and a name this version does not know reads back as `Error` with that name.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum Phase {
    Running,
    /// An init container that exited 0: its part is done. Never the phase of a whole pod here,
    /// since a DaemonSet's app containers always run.
    Completed,
    /// Wanted but not created yet.
    #[default]
    Pending,
    ContainerCreating,
    /// The init containers are not done: the whole status as kubectl shows it, `Init:1/2`
    /// while one runs, `Init:Error`, `Init:CrashLoopBackOff`, `Init:ErrImagePull`... while one
    /// failed. Made by [`Phase::init_progress`] and [`Phase::init_waiting`].
    Init(String),
    /// Being stopped: the DaemonSet no longer selects this node, or was deleted.
    Terminating,
    /// Crashed and waiting for its back-off to pass.
    CrashLoopBackOff,
    /// A create failed; the runtime's reason (`ErrImagePull`, `CreateContainerConfigError`...).
    Error(String),
}

impl Phase {
    /// `Init:<done>/<total>`: init container `done` (counting from 0) of `total` runs.
    pub fn init_progress(done: usize, total: usize) -> Phase {
        Phase::Init(format!("{INIT_PREFIX}{done}/{total}"))
    }

    /// `Init:<reason>`: an init container waits after a failure (`Error`, `CrashLoopBackOff`...).
    pub fn init_waiting(reason: &str) -> Phase {
        Phase::Init(format!("{INIT_PREFIX}{reason}"))
    }

    pub fn as_str(&self) -> &str {
        match self {
            Phase::Running => "Running",
            Phase::Completed => "Completed",
            Phase::Pending => "Pending",
            Phase::ContainerCreating => "ContainerCreating",
            Phase::Init(status) => status,
            Phase::Terminating => "Terminating",
            Phase::CrashLoopBackOff => "CrashLoopBackOff",
            Phase::Error(reason) => reason,
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for Phase {
    fn from(name: &str) -> Phase {
        match name {
            "Running" => Phase::Running,
            "Completed" => Phase::Completed,
            "Pending" => Phase::Pending,
            "ContainerCreating" => Phase::ContainerCreating,
            "Terminating" => Phase::Terminating,
            "CrashLoopBackOff" => Phase::CrashLoopBackOff,
            init if init.starts_with(INIT_PREFIX) => Phase::Init(init.to_string()),
            other => Phase::Error(other.to_string()),
        }
    }
}

impl From<String> for Phase {
    fn from(name: String) -> Phase {
        Phase::from(name.as_str())
    }
}

impl From<Phase> for String {
    fn from(phase: Phase) -> String {
        phase.as_str().to_string()
    }
}

/// One node's instance of one DaemonSet, as gossiped under `ds/<name>`. Short field names keep
/// the value small, since every node carries every other node's keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodStatus {
    /// Revision hash of the instance that runs (or is being started).
    #[serde(rename = "rev", default)]
    pub revision: String,
    #[serde(rename = "st", default)]
    pub state: Phase,
    #[serde(rename = "rdy", default)]
    pub ready: bool,
    /// Unix seconds since which it has been ready without a break.
    #[serde(rename = "rs", default, skip_serializing_if = "Option::is_none")]
    pub ready_since: Option<u64>,
    /// The same in unix milliseconds: with whole seconds, `minReadySeconds: 1` would wait up
    /// to two seconds, and every rollout wave with it.
    #[serde(rename = "rsm", default, skip_serializing_if = "Option::is_none")]
    pub ready_since_ms: Option<u64>,
    /// Unix seconds at which the running instance started, for AGE.
    #[serde(rename = "sa", default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<u64>,
    #[serde(rename = "rc", default)]
    pub restarts: u32,
    #[serde(rename = "err", default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// A surged update is under way: an instance of an older revision still serves beside the
    /// new one, so the node is not done yet whatever the new instance reports.
    #[serde(rename = "sg", default, skip_serializing_if = "std::ops::Not::not")]
    pub surging: bool,
}

impl PodStatus {
    /// Cuts `last_error` to [`MAX_ERROR_CHARS`] so the gossip value stays small.
    pub fn clamp(mut self) -> Self {
        if let Some(e) = &mut self.last_error {
            if e.chars().count() > MAX_ERROR_CHARS {
                *e = e.chars().take(MAX_ERROR_CHARS - 1).collect::<String>() + "…";
            }
        }
        self
    }

    /// Ready for `minReadySeconds` at unix millisecond `now_ms`, to the millisecond when the
    /// node published it.
    pub fn available_ms(&self, min_ready_secs: u64, now_ms: u64) -> bool {
        self.ready
            && self
                .ready_since_ms
                .or(self.ready_since.map(|s| s.saturating_mul(1000)))
                .is_some_and(|s| s.saturating_add(min_ready_secs.saturating_mul(1000)) <= now_ms)
    }

    /// Ready long enough to count as available (`minReadySeconds`), in whole seconds.
    pub fn available(&self, min_ready_secs: u64, now: u64) -> bool {
        self.ready
            && self
                .ready_since
                .is_some_and(|s| s.saturating_add(min_ready_secs) <= now)
    }
}

/// The DaemonSet status fields of Kubernetes, summed over nodes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Live nodes the DaemonSet selects (`desiredNumberScheduled`).
    pub desired: usize,
    /// Selected nodes that report an instance (`currentNumberScheduled`).
    pub current: usize,
    /// Selected nodes whose instance is ready (`numberReady`).
    pub ready: usize,
    /// Selected nodes that run the current revision (`updatedNumberScheduled`).
    pub up_to_date: usize,
    /// Ready for at least `minReadySeconds` (`numberAvailable`).
    pub available: usize,
    /// `desired - available` (`numberUnavailable`).
    pub unavailable: usize,
    /// Nodes that report an instance but are not selected (`numberMisscheduled`).
    pub misscheduled: usize,
}

/// How one member counts in DaemonSet statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeCount {
    /// Alive: counted with the status it reports.
    Counted,
    /// Dead for less than the grace period: still desired where selected, and unavailable
    /// whatever it last reported, since nobody can vouch for it.
    Lost,
    /// Joining, left, or dead past the grace period: counts for nothing.
    Ignored,
}

/// Decides how a member counts: `dead_for` is how long it has been dead (`None` when unknown,
/// which is treated as just died), `grace` is `--dead-node-grace`.
pub fn node_count(
    state: crate::membership::MemberState,
    dead_for: Option<std::time::Duration>,
    grace: std::time::Duration,
) -> NodeCount {
    use crate::membership::MemberState;
    match state {
        MemberState::Alive => NodeCount::Counted,
        MemberState::Dead if dead_for.is_none_or(|d| d < grace) => NodeCount::Lost,
        MemberState::Dead | MemberState::Joining | MemberState::Left => NodeCount::Ignored,
    }
}

/// One node as the aggregation needs it.
#[derive(Debug, Clone)]
pub struct NodeReport<'a> {
    /// The DaemonSet selects this node.
    pub selected: bool,
    /// The node's published status for this DaemonSet, if any.
    pub status: Option<&'a PodStatus>,
    /// The node is dead but within its grace period ([`NodeCount::Lost`]): desired if selected,
    /// never current, ready or available.
    pub lost: bool,
}

/// Sums node reports into Kubernetes' status numbers.
pub fn aggregate<'a>(
    reports: impl IntoIterator<Item = NodeReport<'a>>,
    current_revision: &str,
    min_ready_secs: u64,
    now: u64,
) -> Counts {
    let mut c = Counts::default();
    for r in reports {
        if r.lost {
            c.desired += usize::from(r.selected);
            continue;
        }
        let present = r.status.filter(|s| s.state != Phase::Terminating);
        if !r.selected {
            if present.is_some() {
                c.misscheduled += 1;
            }
            continue;
        }
        c.desired += 1;
        let Some(s) = present else { continue };
        c.current += 1;
        if s.ready {
            c.ready += 1;
        }
        if s.revision == current_revision {
            c.up_to_date += 1;
        }
        if s.available(min_ready_secs, now) {
            c.available += 1;
        }
    }
    c.unavailable = c.desired.saturating_sub(c.available);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(rev: &str, state: &str, ready_since: Option<u64>) -> PodStatus {
        PodStatus {
            revision: rev.into(),
            state: state.into(),
            ready: ready_since.is_some(),
            ready_since,
            ..PodStatus::default()
        }
    }

    #[test]
    fn counts_follow_kubernetes() {
        let running_new = st("new", "Running", Some(100));
        let running_old = st("old", "Running", Some(50));
        let fresh = st("new", "Running", Some(118));
        let crashing = st("new", "CrashLoopBackOff", None);
        let leaving = st("new", "Terminating", None);
        let stray = st("old", "Running", Some(10));
        let reports = vec![
            NodeReport {
                selected: true,
                status: Some(&running_new),
                lost: false,
            },
            NodeReport {
                selected: true,
                status: Some(&running_old),
                lost: false,
            },
            NodeReport {
                selected: true,
                status: Some(&fresh),
                lost: false,
            },
            NodeReport {
                selected: true,
                status: Some(&crashing),
                lost: false,
            },
            NodeReport {
                selected: true,
                status: None,
                lost: false,
            },
            // Dead within its grace: desired and unavailable, whatever it said last.
            NodeReport {
                selected: true,
                status: Some(&running_new),
                lost: true,
            },
            NodeReport {
                selected: false,
                status: Some(&stray),
                lost: true,
            },
            NodeReport {
                selected: false,
                status: Some(&stray),
                lost: false,
            },
            NodeReport {
                selected: false,
                status: Some(&leaving),
                lost: false,
            },
        ];
        let c = aggregate(reports, "new", 10, 120);
        assert_eq!(
            c,
            Counts {
                desired: 6,
                current: 4,
                ready: 3,
                up_to_date: 3,
                available: 2,
                unavailable: 4,
                misscheduled: 1,
            }
        );
    }

    #[test]
    fn dead_nodes_count_as_unavailable_until_their_grace_ends() {
        use crate::membership::MemberState::*;
        use std::time::Duration;
        let grace = Duration::from_secs(300);
        let secs = |s| Some(Duration::from_secs(s));
        let cases = [
            (Alive, None, NodeCount::Counted),
            (Dead, secs(0), NodeCount::Lost),
            (Dead, secs(299), NodeCount::Lost),
            (Dead, None, NodeCount::Lost),
            (Dead, secs(300), NodeCount::Ignored),
            (Dead, secs(86_400), NodeCount::Ignored),
            (Joining, None, NodeCount::Ignored),
            (Left, None, NodeCount::Ignored),
        ];
        for (state, dead_for, want) in cases {
            assert_eq!(
                node_count(state, dead_for, grace),
                want,
                "{state} dead for {dead_for:?}"
            );
        }
        assert_eq!(node_count(Dead, secs(1), Duration::ZERO), NodeCount::Ignored);
    }

    #[test]
    fn init_phases_read_back_as_they_are_shown() {
        for (phase, shown) in [
            (Phase::init_progress(0, 2), "Init:0/2"),
            (Phase::init_progress(1, 2), "Init:1/2"),
            (Phase::init_waiting("Error"), "Init:Error"),
            (Phase::init_waiting("CrashLoopBackOff"), "Init:CrashLoopBackOff"),
            (Phase::Completed, "Completed"),
        ] {
            assert_eq!(phase.to_string(), shown);
            let status = PodStatus {
                state: phase.clone(),
                ..PodStatus::default()
            };
            let json = serde_json::to_string(&status).unwrap();
            assert!(json.contains(&format!("\"st\":\"{shown}\"")), "{json}");
            let back: PodStatus = serde_json::from_str(&json).unwrap();
            assert_eq!(back.state, phase, "{shown}");
        }
    }

    #[test]
    fn long_errors_are_cut_and_the_value_stays_small() {
        let s = PodStatus {
            revision: "0123456789".into(),
            state: "ErrImagePull".into(),
            last_error: Some("x".repeat(5000)),
            restarts: 3,
            ..PodStatus::default()
        }
        .clamp();
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.len() < 400, "{json}");
        let back: PodStatus = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn availability_counts_milliseconds_when_the_node_sent_them() {
        let s = PodStatus {
            ready: true,
            ready_since: Some(100),
            ready_since_ms: Some(100_700),
            ..PodStatus::default()
        };
        assert!(!s.available_ms(1, 101_699));
        assert!(
            s.available_ms(1, 101_700),
            "1 s after 100.7 s, not at the next whole second"
        );
        let old = PodStatus {
            ready_since_ms: None,
            ..s
        };
        assert!(
            old.available_ms(1, 101_000),
            "whole seconds from nodes that send no milliseconds"
        );
    }
}
