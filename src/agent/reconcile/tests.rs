//! Table tests of `reconcile`: one row per situation the agent meets.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use super::*;
use crate::runtime::test_support::spec;
use crate::spec::Container;

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
        init: vec![],
        init_containers: vec![],
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

/// `d` with init containers `(name, sidecar)` in this order, built like its app container.
fn with_init(mut d: Desired, init: &[(&str, bool)]) -> Desired {
    for (n, (name, sidecar)) in init.iter().enumerate() {
        let mut s = d.specs[0].clone();
        s.container_name = name.to_string();
        s.init_index = Some(n as u32);
        d.init.push(s);
        d.init_containers.push(Container {
            name: name.to_string(),
            restart_policy: sidecar.then_some(crate::spec::container::ContainerRestartPolicy::Always),
            ..Container::default()
        });
    }
    d
}

/// The spec of container `name` in `d`, app or init.
fn spec_of<'a>(d: &'a Desired, name: &str) -> &'a InstanceSpec {
    d.specs
        .iter()
        .chain(&d.init)
        .find(|s| s.container_name == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

/// An instance of container `name` of `d`, started at `started`.
fn of(id: &str, d: &Desired, name: &str, state: InstanceState, started: u64) -> Instance {
    let mut i = Instance::from_labels(
        id.into(),
        format!("everynode_{id}"),
        state,
        labels::for_spec(spec_of(d, name)),
    );
    i.started_at = Some(at(started));
    i
}

fn done() -> InstanceState {
    InstanceState::Exited { code: Some(0) }
}

/// Actions naming the container they create: `create:<name>`, `restart:<name>`, `remove:<id>:<why>`.
fn named(plan: &Plan) -> Vec<String> {
    plan.actions
        .iter()
        .map(|a| match a {
            Action::Remove { id, reason, .. } => format!("remove:{id}:{reason:?}"),
            Action::Create { spec, restart: false } => format!("create:{}", spec.container_name),
            Action::Create { spec, restart: true } => format!("restart:{}", spec.container_name),
        })
        .collect()
}

#[test]
fn init_containers_run_in_order_to_completion_before_the_app_containers() {
    let v1 = with_init(desired("v1"), &[("first", false), ("second", false)]);
    let v2 = with_init(desired("v2"), &[("first", false), ("second", false)]);
    let sc = with_init(desired("v1"), &[("proxy", true), ("setup", false)]);
    let mut surging = v2.clone();
    surging.surge = true;
    surging.keep_outdated = true;
    let deleted = v1.clone().with_pod_generation(1);
    let last = |id: &str| Slot {
        last_id: Some(id.to_string()),
        ..Slot::default()
    };
    let backing_off = |id: &str, until: u64| Slot {
        failures: 2,
        not_before: Some(at(until)),
        restarts: 2,
        last_id: Some(id.to_string()),
        ..Slot::default()
    };
    struct Case {
        name: &'static str,
        desired: Desired,
        actual: Vec<Instance>,
        slots: Vec<(&'static str, Slot)>,
        want: Vec<&'static str>,
        phase: Phase,
    }
    let i = Phase::init_progress;
    let w = Phase::init_waiting;
    let cases = vec![
        Case {
            name: "fresh start: only the first init container is created",
            desired: v1.clone(),
            actual: vec![],
            slots: vec![],
            want: vec!["create:first"],
            phase: i(0, 2),
        },
        Case {
            name: "the first one runs: nothing else starts",
            desired: v1.clone(),
            actual: vec![of("f", &v1, "first", InstanceState::Running, 1)],
            slots: vec![("first", last("f"))],
            want: vec![],
            phase: i(0, 2),
        },
        Case {
            name: "the first one exited 0: it is kept and the second starts",
            desired: v1.clone(),
            actual: vec![of("f", &v1, "first", done(), 1)],
            slots: vec![("first", last("f"))],
            want: vec!["create:second"],
            phase: i(1, 2),
        },
        Case {
            name: "all done: the app container starts, the completed ones stay",
            desired: v1.clone(),
            actual: vec![
                of("f", &v1, "first", done(), 1),
                of("s", &v1, "second", done(), 2),
            ],
            slots: vec![],
            want: vec!["create:main"],
            phase: Phase::ContainerCreating,
        },
        Case {
            name: "running beside completed init instances: nothing to do",
            desired: v1.clone(),
            actual: vec![
                of("f", &v1, "first", done(), 1),
                of("s", &v1, "second", done(), 2),
                of("m", &v1, "main", InstanceState::Running, 3),
            ],
            slots: vec![],
            want: vec![],
            phase: Phase::Running,
        },
        Case {
            name: "a failed init container restarts at once the first time; the app waits",
            desired: v1.clone(),
            actual: vec![
                of("f", &v1, "first", done(), 1),
                of("s", &v1, "second", exited(), 2),
            ],
            slots: vec![("second", last("s"))],
            want: vec!["remove:s:Crashed", "restart:second"],
            phase: w("Error"),
        },
        Case {
            name: "failed again: it backs off and nothing else starts",
            desired: v1.clone(),
            actual: vec![
                of("f", &v1, "first", done(), 1),
                of("s", &v1, "second", exited(), 2),
            ],
            slots: vec![("second", backing_off("s", 30))],
            want: vec![],
            phase: w("CrashLoopBackOff"),
        },
        Case {
            name: "the back-off passed: restarted",
            desired: v1.clone(),
            actual: vec![
                of("f", &v1, "first", done(), 1),
                of("s", &v1, "second", exited(), 2),
            ],
            slots: vec![("second", backing_off("s", 5))],
            want: vec!["remove:s:Crashed", "restart:second"],
            phase: w("Error"),
        },
        Case {
            name: "an init image that cannot be pulled shows why",
            desired: v1.clone(),
            actual: vec![],
            slots: vec![(
                "first",
                Slot {
                    failures: 1,
                    not_before: Some(at(30)),
                    waiting: Some(("ErrImagePull".into(), "no such image".into())),
                    ..Slot::default()
                },
            )],
            want: vec![],
            phase: w("ErrImagePull"),
        },
        Case {
            name: "an exit status nobody could read is no success: the init container runs again",
            desired: v1.clone(),
            actual: vec![of("f", &v1, "first", InstanceState::Exited { code: None }, 1)],
            slots: vec![],
            want: vec!["remove:f:Crashed", "restart:first"],
            phase: w("Error"),
        },
        Case {
            name: "two completed instances of one init container: the older is kept",
            desired: v1.clone(),
            actual: vec![
                of("f2", &v1, "first", done(), 2),
                of("f1", &v1, "first", done(), 1),
            ],
            slots: vec![],
            want: vec!["remove:f2:Duplicate", "create:second"],
            phase: i(1, 2),
        },
        Case {
            name: "an app crash restarts the app, not the init containers",
            desired: v1.clone(),
            actual: vec![
                of("f", &v1, "first", done(), 1),
                of("s", &v1, "second", done(), 2),
                of("m", &v1, "main", exited(), 3),
            ],
            slots: vec![("main", last("m"))],
            want: vec!["remove:m:Crashed", "restart:main"],
            phase: Phase::ContainerCreating,
        },
        Case {
            name: "an app crash after the init instances were removed by hand still reruns none",
            desired: v1.clone(),
            actual: vec![of("m", &v1, "main", exited(), 3)],
            slots: vec![("main", last("m"))],
            want: vec!["remove:m:Crashed", "restart:main"],
            phase: Phase::ContainerCreating,
        },
        Case {
            name: "adopted after an agent restart: completed init instances count as done",
            desired: v1.clone(),
            actual: vec![
                of("f", &v1, "first", done(), 1),
                of("s", &v1, "second", done(), 2),
            ],
            slots: vec![],
            want: vec!["create:main"],
            phase: Phase::ContainerCreating,
        },
        Case {
            name: "a new revision removes the old pod and runs the init containers again",
            desired: v2.clone(),
            actual: vec![
                of("f", &v1, "first", done(), 1),
                of("s", &v1, "second", done(), 2),
                of("m", &v1, "main", InstanceState::Running, 3),
            ],
            slots: vec![("main", last("m"))],
            want: vec![
                "remove:f:Outdated",
                "remove:s:Outdated",
                "remove:m:Outdated",
                "create:first",
            ],
            phase: i(0, 2),
        },
        Case {
            name: "delete pod (a new pod generation) runs the init containers again",
            desired: deleted.clone(),
            actual: vec![
                of("f", &v1, "first", done(), 1),
                of("s", &v1, "second", done(), 2),
                of("m", &v1, "main", InstanceState::Running, 3),
            ],
            slots: vec![],
            want: vec![
                "remove:f:Outdated",
                "remove:s:Outdated",
                "remove:m:Outdated",
                "create:first",
            ],
            phase: i(0, 2),
        },
        Case {
            name: "surge: the new revision's init containers run beside the old app container",
            desired: surging.clone(),
            actual: vec![
                of("f", &v1, "first", done(), 1),
                of("s", &v1, "second", done(), 2),
                of("m", &v1, "main", InstanceState::Running, 3),
            ],
            slots: vec![],
            want: vec!["remove:f:Outdated", "remove:s:Outdated", "create:first"],
            phase: i(0, 2),
        },
        Case {
            name: "surge: the new app container starts beside the old one once its inits are done",
            desired: surging.clone(),
            actual: vec![
                of("m", &v1, "main", InstanceState::Running, 3),
                of("f", &v2, "first", done(), 4),
                of("s", &v2, "second", done(), 5),
            ],
            slots: vec![],
            want: vec!["create:main"],
            phase: Phase::ContainerCreating,
        },
        Case {
            name: "a sidecar is started in its place in the order",
            desired: sc.clone(),
            actual: vec![],
            slots: vec![],
            want: vec!["create:proxy"],
            phase: i(0, 2),
        },
        Case {
            name: "the next init container starts once the sidecar runs",
            desired: sc.clone(),
            actual: vec![of("p", &sc, "proxy", InstanceState::Running, 1)],
            slots: vec![],
            want: vec!["create:setup"],
            phase: i(1, 2),
        },
        Case {
            name: "a sidecar that crashes while the pod initializes is restarted; the rest waits",
            desired: sc.clone(),
            actual: vec![of("p", &sc, "proxy", exited(), 1)],
            slots: vec![("proxy", backing_off("p", 30))],
            want: vec![],
            phase: w("CrashLoopBackOff"),
        },
        Case {
            name: "the sidecar keeps running beside the app container",
            desired: sc.clone(),
            actual: vec![
                of("p", &sc, "proxy", InstanceState::Running, 1),
                of("s", &sc, "setup", done(), 2),
                of("m", &sc, "main", InstanceState::Running, 3),
            ],
            slots: vec![],
            want: vec![],
            phase: Phase::Running,
        },
        Case {
            name: "a sidecar dying beside the app is restarted as an app container is",
            desired: sc.clone(),
            actual: vec![
                of("p", &sc, "proxy", exited(), 1),
                of("s", &sc, "setup", done(), 2),
                of("m", &sc, "main", InstanceState::Running, 3),
            ],
            slots: vec![("proxy", last("p"))],
            want: vec!["remove:p:Crashed", "restart:proxy"],
            phase: Phase::ContainerCreating,
        },
        Case {
            name: "a sidecar in back-off beside the app shows CrashLoopBackOff, not an init status",
            desired: sc.clone(),
            actual: vec![
                of("p", &sc, "proxy", exited(), 1),
                of("s", &sc, "setup", done(), 2),
                of("m", &sc, "main", InstanceState::Running, 3),
            ],
            slots: vec![("proxy", backing_off("p", 30))],
            want: vec![],
            phase: Phase::CrashLoopBackOff,
        },
    ];
    for c in cases {
        let slots: BTreeMap<String, Slot> = c.slots.iter().map(|(n, s)| (n.to_string(), s.clone())).collect();
        let plan = reconcile(
            Some(&c.desired),
            &c.actual,
            &slots,
            Duration::from_secs(30),
            at(10),
        );
        assert_eq!(named(&plan), c.want, "{}", c.name);
        assert_eq!(plan.phase, Some(c.phase), "{}", c.name);
        let again = reconcile(
            Some(&c.desired),
            &c.actual,
            &slots,
            Duration::from_secs(30),
            at(10),
        );
        assert_eq!(plan, again, "{}: idempotent", c.name);
    }
}

#[test]
fn plans_say_which_containers_serve_the_running_pod() {
    let sc = with_init(desired("v1"), &[("proxy", true), ("setup", false)]);
    let actual = [
        of("p", &sc, "proxy", InstanceState::Running, 1),
        of("s", &sc, "setup", done(), 2),
        of("m", &sc, "main", InstanceState::Running, 3),
    ];
    let plan = reconcile(
        Some(&sc),
        &actual,
        &BTreeMap::new(),
        Duration::from_secs(30),
        at(10),
    );
    let roles: Vec<(&str, Role, Phase, Option<&str>)> = plan
        .containers
        .iter()
        .map(|c| {
            (
                c.container.as_str(),
                c.role,
                c.phase.clone(),
                c.kept.as_ref().map(|k| k.id.as_str()),
            )
        })
        .collect();
    assert_eq!(
        roles,
        [
            ("proxy", Role::Sidecar, Phase::Running, Some("p")),
            ("setup", Role::Init, Phase::Completed, Some("s")),
            ("main", Role::App, Phase::Running, Some("m")),
        ]
    );
    // Probes and readiness go to the app container and the sidecar, in that order.
    let mut sc = sc;
    sc.containers = vec![Container {
        name: "main".into(),
        ..Container::default()
    }];
    let serving: Vec<&str> = serving(&sc).map(|(s, _)| s.container_name.as_str()).collect();
    assert_eq!(serving, ["main", "proxy"]);
}

#[test]
fn removing_the_daemonset_removes_completed_init_instances_too() {
    let v1 = with_init(desired("v1"), &[("first", false)]);
    let actual = [
        of("f", &v1, "first", done(), 1),
        of("m", &v1, "main", InstanceState::Running, 2),
    ];
    let plan = reconcile(None, &actual, &BTreeMap::new(), Duration::from_secs(30), at(10));
    assert_eq!(named(&plan), ["remove:f:Unwanted", "remove:m:Unwanted"]);
    assert_eq!(plan.phase, Some(Phase::Terminating));
}
