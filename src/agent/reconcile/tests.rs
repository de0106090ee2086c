//! Table tests of `reconcile`: one row per situation the agent meets.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use super::*;
use crate::runtime::test_support::spec;

const T0: Duration = Duration::from_secs(1_000_000);

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + T0 + Duration::from_secs(secs)
}

fn desired(revision: &str) -> Desired {
    let mut s = spec("ds", "n1");
    s.revision = revision.into();
    s.container_name = "main".into();
    Desired {
        specs: vec![s],
        containers: vec![],
        min_ready_secs: 0,
        surge: false,
        keep_outdated: false,
    }
}

/// An instance made from `d`'s spec (or a stale one when `stale_hash`).
fn inst(id: &str, d: &Desired, state: InstanceState, started: u64, stale_hash: bool) -> Instance {
    let s = &d.specs[0];
    let mut i = Instance::from_labels(id.into(), format!("everynode_{id}"), state, labels::for_spec(s));
    if stale_hash {
        i.spec_hash = Some("0000".into());
    }
    i.started_at = Some(at(started));
    i
}

fn exited() -> InstanceState {
    InstanceState::Exited { code: Some(1) }
}

/// Actions in a compact form: `remove:<id>:<why>` and `create` / `restart`.
fn summary(plan: &Plan) -> Vec<String> {
    plan.actions
        .iter()
        .map(|a| match a {
            Action::Remove { id, reason, .. } => format!("remove:{id}:{reason:?}"),
            Action::Create { restart: false, .. } => "create".into(),
            Action::Create { restart: true, .. } => "restart".into(),
        })
        .collect()
}

#[test]
fn reconcile_table() {
    let v1 = desired("v1");
    let v2 = desired("v2");
    let slot = |failures: u32, not_before: Option<u64>, waiting: Option<&str>, last: Option<&str>| Slot {
        failures,
        not_before: not_before.map(at),
        restarts: failures,
        waiting: waiting.map(|w| (w.to_string(), "boom".to_string())),
        last_id: last.map(str::to_string),
        killed: None,
        spec_hash: None,
    };
    struct Case {
        name: &'static str,
        desired: Option<Desired>,
        actual: Vec<Instance>,
        slot: Slot,
        now: u64,
        want: Vec<&'static str>,
        phase: Option<Phase>,
    }
    let cases = vec![
        Case {
            name: "nothing runs: create",
            desired: Some(v1.clone()),
            actual: vec![],
            slot: Slot::default(),
            now: 0,
            want: vec!["create"],
            phase: Some(Phase::ContainerCreating),
        },
        Case {
            name: "a running match is adopted, nothing else happens",
            desired: Some(v1.clone()),
            actual: vec![inst("a", &v1, InstanceState::Running, 0, false)],
            slot: Slot::default(),
            now: 5,
            want: vec![],
            phase: Some(Phase::Running),
        },
        Case {
            name: "old revision is replaced: remove first, then create",
            desired: Some(v2.clone()),
            actual: vec![inst("a", &v1, InstanceState::Running, 0, false)],
            slot: Slot::default(),
            now: 5,
            want: vec!["remove:a:Outdated", "create"],
            phase: Some(Phase::ContainerCreating),
        },
        Case {
            name: "a new revision after crashes: replaced at once, not counted as a restart",
            desired: Some(v2.clone()),
            actual: vec![inst("a", &v1, InstanceState::Running, 0, false)],
            slot: Slot {
                spec_hash: Some(v1.specs[0].spec_hash()),
                ..slot(3, Some(100), None, Some("a"))
            },
            now: 5,
            want: vec!["remove:a:Outdated", "create"],
            phase: Some(Phase::ContainerCreating),
        },
        Case {
            name: "the same spec after crashes still backs off",
            desired: Some(v1.clone()),
            actual: vec![inst("a", &v1, exited(), 0, false)],
            slot: Slot {
                spec_hash: Some(v1.specs[0].spec_hash()),
                ..slot(3, Some(100), None, Some("a"))
            },
            now: 5,
            want: vec![],
            phase: Some(Phase::CrashLoopBackOff),
        },
        Case {
            name: "same revision, drifted spec is replaced",
            desired: Some(v1.clone()),
            actual: vec![inst("a", &v1, InstanceState::Running, 0, true)],
            slot: Slot::default(),
            now: 5,
            want: vec!["remove:a:Outdated", "create"],
            phase: Some(Phase::ContainerCreating),
        },
        Case {
            name: "duplicates: the oldest running one stays",
            desired: Some(v1.clone()),
            actual: vec![
                inst("b", &v1, InstanceState::Running, 3, false),
                inst("a", &v1, InstanceState::Running, 1, false),
                inst("c", &v1, exited(), 4, false),
            ],
            slot: Slot::default(),
            now: 5,
            want: vec!["remove:b:Duplicate", "remove:c:Duplicate"],
            phase: Some(Phase::Running),
        },
        Case {
            name: "first crash restarts at once",
            desired: Some(v1.clone()),
            actual: vec![inst("a", &v1, exited(), 0, false)],
            slot: slot(0, None, None, Some("a")),
            now: 5,
            want: vec!["remove:a:Crashed", "restart"],
            phase: Some(Phase::ContainerCreating),
        },
        Case {
            name: "crash during back-off waits and keeps the exited instance for its logs",
            desired: Some(v1.clone()),
            actual: vec![inst("a", &v1, exited(), 0, false)],
            slot: slot(1, Some(10), None, Some("a")),
            now: 5,
            want: vec![],
            phase: Some(Phase::CrashLoopBackOff),
        },
        Case {
            name: "crash after back-off restarts",
            desired: Some(v1.clone()),
            actual: vec![inst("a", &v1, exited(), 0, false)],
            slot: slot(1, Some(10), None, Some("a")),
            now: 10,
            want: vec!["remove:a:Crashed", "restart"],
            phase: Some(Phase::ContainerCreating),
        },
        Case {
            name: "removed by hand: recreated as a restart",
            desired: Some(v1.clone()),
            actual: vec![],
            slot: slot(0, None, None, Some("a")),
            now: 5,
            want: vec!["restart"],
            phase: Some(Phase::ContainerCreating),
        },
        Case {
            name: "image pull failed: waits with the runtime's reason",
            desired: Some(v1.clone()),
            actual: vec![],
            slot: slot(1, Some(10), Some("ErrImagePull"), None),
            now: 5,
            want: vec![],
            phase: Some(Phase::Error("ErrImagePull".into())),
        },
        Case {
            name: "image pull failed: retried after the back-off",
            desired: Some(v1.clone()),
            actual: vec![],
            slot: slot(1, Some(10), Some("ErrImagePull"), None),
            now: 11,
            want: vec!["create"],
            phase: Some(Phase::ContainerCreating),
        },
        Case {
            name: "not wanted any more: everything is removed",
            desired: None,
            actual: vec![
                inst("a", &v1, InstanceState::Running, 0, false),
                inst("b", &v2, exited(), 0, false),
            ],
            slot: Slot::default(),
            now: 5,
            want: vec!["remove:a:Unwanted", "remove:b:Unwanted"],
            phase: Some(Phase::Terminating),
        },
        Case {
            name: "not wanted and nothing left: no status at all",
            desired: None,
            actual: vec![],
            slot: Slot::default(),
            now: 5,
            want: vec![],
            phase: None,
        },
        Case {
            name: "an instance of a container the template dropped is removed",
            desired: Some(v1.clone()),
            actual: vec![inst("a", &v1, InstanceState::Running, 0, false), {
                let mut sidecar = v1.clone();
                sidecar.specs[0].container_name = "sidecar".into();
                inst("s", &sidecar, InstanceState::Running, 0, false)
            }],
            slot: Slot::default(),
            now: 5,
            want: vec!["remove:s:Unwanted"],
            phase: Some(Phase::Running),
        },
        Case {
            name: "an instance the engine is restarting is left alone",
            desired: Some(v1.clone()),
            actual: vec![inst("a", &v1, InstanceState::Restarting, 0, false)],
            slot: Slot::default(),
            now: 5,
            want: vec![],
            phase: Some(Phase::Pending),
        },
    ];
    for c in cases {
        let slots = BTreeMap::from([("main".to_string(), c.slot.clone())]);
        let plan = reconcile(
            c.desired.as_ref(),
            &c.actual,
            &slots,
            Duration::from_secs(30),
            at(c.now),
        );
        assert_eq!(summary(&plan), c.want, "{}", c.name);
        assert_eq!(plan.phase, c.phase, "{}", c.name);
        // Idempotent: the same inputs give the same plan.
        let again = reconcile(
            c.desired.as_ref(),
            &c.actual,
            &slots,
            Duration::from_secs(30),
            at(c.now),
        );
        assert_eq!(plan, again, "{}", c.name);
    }
}

#[test]
fn back_off_doubles_from_ten_seconds_to_five_minutes() {
    let p = BackoffPolicy::default();
    let delays: Vec<u64> = (1..=8).map(|n| p.delay(n).as_secs()).collect();
    assert_eq!(delays, vec![10, 20, 40, 80, 160, 300, 300, 300]);
    assert_eq!(p.delay(1000).as_secs(), 300);
}

#[test]
fn a_long_run_resets_the_back_off() {
    let p = BackoffPolicy::default();
    let mut s = Slot::default();
    s.failed(&p, at(0));
    s.failed(&p, at(1));
    assert_eq!(s.failures, 2);
    assert_eq!(s.not_before, Some(at(21)));
    s.observe_running(&p, Some(at(30)), at(100));
    assert_eq!(s.failures, 2, "a short run keeps the count");
    s.observe_running(&p, Some(at(30)), at(30 + 600));
    assert_eq!((s.failures, s.not_before), (0, None));
}

#[test]
fn removal_uses_the_template_grace_period() {
    let mut d = desired("v2");
    d.specs[0].termination_grace = Duration::from_secs(7);
    let old = inst("a", &desired("v1"), InstanceState::Running, 0, false);
    let plan = reconcile(Some(&d), &[old], &BTreeMap::new(), Duration::from_secs(30), at(0));
    assert!(matches!(
        plan.actions[0],
        Action::Remove { grace, .. } if grace == Duration::from_secs(7)
    ));
}

#[test]
fn surge_keeps_the_outdated_instance_until_the_new_one_is_available() {
    let v1 = desired("v1");
    let mut v2 = desired("v2");
    v2.surge = true;
    v2.keep_outdated = true;
    let old = inst("old", &v1, InstanceState::Running, 0, false);
    let plan = reconcile(
        Some(&v2),
        std::slice::from_ref(&old),
        &BTreeMap::new(),
        Duration::from_secs(5),
        at(10),
    );
    assert_eq!(
        summary(&plan),
        vec!["create"],
        "the new one starts beside the old one"
    );
    let new = inst("new", &v2, InstanceState::Running, 11, false);
    let both = [old, new];
    let plan = reconcile(Some(&v2), &both, &BTreeMap::new(), Duration::from_secs(5), at(12));
    assert!(summary(&plan).is_empty(), "the old one serves meanwhile");
    v2.keep_outdated = false;
    let plan = reconcile(Some(&v2), &both, &BTreeMap::new(), Duration::from_secs(5), at(20));
    assert_eq!(summary(&plan), vec!["remove:old:Outdated"]);
}
