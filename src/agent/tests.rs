//! The agent in one process against the fake runtime: converge, crash and back-off, adoption across an agent restart, orphans, deselection, liveness and readiness.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::Actor;
use async_trait::async_trait;
use tokio::sync::watch;

use super::*;
use crate::agent::status::Phase;
use crate::control::store::{Command, Store};
use crate::runtime::fake::FakeRuntime;
use crate::runtime::{Instance, InstanceState};
use crate::scheduling::node::NodeInfo;

/// Collects the published statuses.
#[derive(Default)]
struct MapSink(Mutex<BTreeMap<String, PodStatus>>);

#[async_trait]
impl StatusSink for MapSink {
    async fn publish(&self, daemonset: &str, status: Option<&PodStatus>) {
        let mut map = self.0.lock().unwrap();
        match status {
            Some(s) => map.insert(daemonset.to_string(), s.clone()),
            None => map.remove(daemonset),
        };
    }
}

impl MapSink {
    fn get(&self, ds: &str) -> Option<PodStatus> {
        self.0.lock().unwrap().get(ds).cloned()
    }
}

fn daemonset(name: &str, extra_container: &str) -> crate::spec::DaemonSet {
    let yaml = format!(
        "apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: {name}}}
spec:
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      nodeSelector: {{role: agent}}
      containers:
      - name: main
        image: agent:1
        command: [sleep, '3600']
{extra_container}"
    );
    let m = crate::spec::parse(yaml.as_bytes(), "test.yaml").remove(0);
    m.into_valid()
        .expect("valid test manifest")
        .into_daemonset()
        .unwrap()
}

struct Harness {
    fake: FakeRuntime,
    sink: Arc<MapSink>,
    /// Shared by every agent the test starts, as the data dir is by a restarted agent.
    restarts: RestartBook,
    store_tx: watch::Sender<Arc<Store>>,
    store: Store,
}

impl Harness {
    fn new() -> Self {
        let store = Store {
            version: 1,
            ..Store::default()
        };
        let (store_tx, _) = watch::channel(Arc::new(store.clone()));
        Harness {
            fake: FakeRuntime::new(),
            sink: Arc::new(MapSink::default()),
            restarts: RestartBook::in_memory(),
            store_tx,
            store,
        }
    }

    fn commit(&mut self, cmd: Command) {
        self.store.apply(&cmd);
        self.store.version += 1;
        self.store_tx.send_replace(Arc::new(self.store.clone()));
    }

    /// What the leader's rollout planner would commit: `node` may run the current revision.
    fn grant(&mut self, ds: &str, node: &str) {
        let r = &self.store.daemonsets[ds];
        let step = Command::RolloutStep {
            name: ds.to_string(),
            seq: r.rollout.seq,
            revision: r.current_revision().hash.clone(),
            grant: vec![node.to_string()],
            failure: None,
            complete: false,
            at: 0,
            hold: Vec::new(),
            release: Vec::new(),
        };
        self.commit(step);
    }

    fn start_agent(&self) -> actix::Addr<NodeAgent> {
        let mut settings = AgentSettings::new("c1", "n1");
        settings.resync = Duration::from_millis(50);
        settings.orphan_grace = Duration::ZERO;
        settings.backoff = BackoffPolicy {
            initial: Duration::from_millis(600),
            max: Duration::from_secs(2),
            reset_after: Duration::from_secs(60),
        };
        let ctx = Arc::new(AgentContext::new(
            settings,
            Arc::new(self.fake.clone()),
            self.sink.clone(),
            self.restarts.clone(),
        ));
        let own = NodeInfo::local("n1").with_label("role", "agent");
        NodeAgent::new(ctx, own, self.store_tx.subscribe()).start()
    }

    fn running(&self, ds: &str) -> Vec<Instance> {
        self.fake
            .instances()
            .into_iter()
            .filter(|i| i.daemonset == ds && i.state == InstanceState::Running)
            .collect()
    }
}

async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    for _ in 0..200 {
        if let Some(v) = check() {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

fn apply(ds: crate::spec::DaemonSet) -> Command {
    Command::Apply {
        daemonsets: vec![ds],
        config_maps: vec![],
        secrets: vec![],
        warnings: Default::default(),
        at: 0,
    }
}

#[test]
fn converges_restarts_with_back_off_adopts_and_removes() {
    let mut h = Harness::new();
    let first_id = actix::System::new().block_on(async {
        h.start_agent();
        h.commit(apply(daemonset("logs", "")));
        let id = eventually("one running instance", || {
            let r = h.running("logs");
            (r.len() == 1).then(|| r[0].id.clone())
        })
        .await;
        eventually("Running and ready", || {
            h.sink
                .get("logs")
                .filter(|s| s.state == Phase::Running && s.ready)
        })
        .await;

        // First crash: restarted at once and counted.
        h.fake.crash(&id, 1);
        let second = eventually("a restart", || {
            let r = h.running("logs");
            (r.len() == 1 && r[0].id != id).then(|| r[0].id.clone())
        })
        .await;
        let s = eventually("restart counted", || {
            h.sink.get("logs").filter(|s| s.restarts == 1)
        })
        .await;
        assert!(s.last_error.unwrap_or_default().contains("exited with code 1"));
        // Second crash: CrashLoopBackOff, then a restart once the back-off passes.
        h.fake.crash(&second, 2);
        eventually("CrashLoopBackOff", || {
            h.sink.get("logs").filter(|s| s.state == Phase::CrashLoopBackOff)
        })
        .await;
        let third = eventually("restart after back-off", || {
            let r = h.running("logs");
            (r.len() == 1 && r[0].id != second).then(|| r[0].id.clone())
        })
        .await;
        assert_eq!(h.fake.instances().len(), 1, "crashed instances are removed");
        third
    });

    // A new agent (as after a restart) adopts the running instance: no create at all.
    let creates = h.fake.create_count();
    actix::System::new().block_on(async {
        h.start_agent();
        // An orphan of a DaemonSet the store does not have.
        let mut orphan = h.fake.spec_of(&first_id).expect("spec");
        orphan.daemonset = "gone".into();
        h.fake.insert_running(&orphan);
        let adopted = eventually("Running after adoption", || {
            h.sink.get("logs").filter(|s| s.state == Phase::Running)
        })
        .await;
        assert_eq!(adopted.restarts, 2, "restart counts outlive the agent");
        eventually("the orphan removed", || {
            h.running("gone").is_empty().then_some(())
        })
        .await;
        assert_eq!(h.fake.create_count(), creates, "adoption creates nothing");
        assert_eq!(h.running("logs")[0].id, first_id);

        // A label change deselects the node: the instance goes, and so does the status.
        h.commit(Command::LabelNode {
            node: "n1".into(),
            set: BTreeMap::new(),
            remove: ["role".to_string()].into(),
        });
        eventually("instance removed", || h.fake.instances().is_empty().then_some(())).await;
        eventually("status withdrawn", || h.sink.get("logs").is_none().then_some(())).await;

        // Selected again: back it comes.
        h.commit(Command::LabelNode {
            node: "n1".into(),
            set: [("role".to_string(), "agent".to_string())].into(),
            remove: Default::default(),
        });
        eventually("instance back", || (h.running("logs").len() == 1).then_some(())).await;

        // Deleted: removed.
        h.commit(Command::Delete { name: "logs".into() });
        eventually("deleted instance removed", || {
            h.fake.instances().is_empty().then_some(())
        })
        .await;
    });
}

#[test]
fn image_pull_errors_and_probes_show_in_the_status() {
    let mut h = Harness::new();
    actix::System::new().block_on(async {
        h.start_agent();
        h.fake.set_image_missing("agent:1");
        h.commit(apply(daemonset("pull", "")));
        let s = eventually("ErrImagePull", || {
            h.sink
                .get("pull")
                .filter(|s| s.state == Phase::Error("ErrImagePull".into()))
        })
        .await;
        assert!(s.last_error.unwrap_or_default().contains("agent:1"));
        h.fake.restore_image("agent:1");
        eventually("Running once the image exists", || {
            h.sink.get("pull").filter(|s| s.state == Phase::Running)
        })
        .await;

        let probes =
            "        readinessProbe: {exec: {command: [ready]}, periodSeconds: 1, failureThreshold: 1}
        livenessProbe: {exec: {command: [alive]}, periodSeconds: 1, failureThreshold: 2}
";
        let mut ds = daemonset("probed", "");
        let extra = daemonset("probed", probes);
        ds.spec.template = extra.spec.template;
        h.commit(apply(ds));
        let id = eventually("probed running", || {
            let r = h.running("probed");
            (r.len() == 1).then(|| r[0].id.clone())
        })
        .await;
        eventually("ready", || h.sink.get("probed").filter(|s| s.ready)).await;
        // Exec probes fail: not ready, then restarted by liveness.
        h.fake.set_exec_code(&id, 1);
        eventually("not ready", || h.sink.get("probed").filter(|s| !s.ready)).await;
        eventually("liveness restart", || {
            let r = h.running("probed");
            (r.len() == 1 && r[0].id != id).then_some(())
        })
        .await;
        let s = h.sink.get("probed").unwrap();
        assert!(s.last_error.unwrap_or_default().contains("Liveness probe failed"));
    });
}

#[test]
fn many_daemonsets_share_one_runtime_listing_per_resync() {
    let mut h = Harness::new();
    actix::System::new().block_on(async {
        h.start_agent();
        let names: Vec<String> = (0..10).map(|i| format!("ds{i}")).collect();
        h.commit(Command::Apply {
            daemonsets: names.iter().map(|n| daemonset(n, "")).collect(),
            config_maps: vec![],
            secrets: vec![],
            warnings: Default::default(),
            at: 0,
        });
        eventually("every DaemonSet Running", || {
            names
                .iter()
                .all(|n| h.sink.get(n).is_some_and(|s| s.state == Phase::Running))
                .then_some(())
        })
        .await;
        let lists = || {
            h.fake
                .calls()
                .iter()
                .filter(|c| matches!(c, crate::runtime::fake::Call::List { .. }))
                .count()
        };
        // Steady state: 11 periodic passes per resync (10 actors and the orphan sweep).
        let before = lists();
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        let per_resync = (lists() - before) as f64 / 20.0;
        assert!(
            per_resync < 3.0,
            "{per_resync} runtime lists per resync for 10 DaemonSets; they should share one"
        );

        // Sharing the listing does not slow repairs: an instance removed by hand comes back.
        let victim = h.running("ds3")[0].id.clone();
        h.fake.delete_behind_the_agents_back(&victim);
        eventually("ds3 recreated", || {
            let r = h.running("ds3");
            (r.len() == 1 && r[0].id != victim).then_some(())
        })
        .await;
    });
}

#[test]
fn updates_replace_at_once_and_are_not_counted_as_restarts() {
    let mut h = Harness::new();
    actix::System::new().block_on(async {
        h.start_agent();
        h.commit(apply(daemonset("upd", "")));
        let first = eventually("running", || {
            let r = h.running("upd");
            (r.len() == 1).then(|| r[0].id.clone())
        })
        .await;
        // Two crashes put the container in back-off (600 ms in this harness).
        h.fake.crash(&first, 1);
        let second = eventually("restarted", || {
            let r = h.running("upd");
            (r.len() == 1 && r[0].id != first).then(|| r[0].id.clone())
        })
        .await;
        h.fake.crash(&second, 1);
        eventually("restarted again", || {
            let r = h.running("upd");
            (r.len() == 1 && r[0].id != second).then_some(())
        })
        .await;
        eventually("two restarts", || h.sink.get("upd").filter(|s| s.restarts == 2)).await;

        // Several updates in a row: each is replaced at once, none waits for a back-off.
        for image in ["agent:2", "agent:3", "agent:4"] {
            let mut ds = daemonset("upd", "");
            ds.spec.template.spec.containers[0].image = image.into();
            h.commit(apply(ds));
            h.grant("upd", "n1");
            let s = eventually(&format!("{image} running"), || {
                let r = h.running("upd");
                let runs = r.len() == 1 && h.fake.spec_of(&r[0].id).is_some_and(|s| s.image == image);
                h.sink.get("upd").filter(|s| runs && s.state == Phase::Running)
            })
            .await;
            assert_eq!(s.restarts, 0, "an update is a new pod, not a restart");
        }
    });
}

/// The instances of one container of DaemonSet `ds`, in any state.
fn of_container(h: &Harness, ds: &str, container: &str) -> Vec<Instance> {
    h.fake
        .instances()
        .into_iter()
        .filter(|i| {
            i.daemonset == ds
                && i.labels
                    .get(crate::runtime::labels::CONTAINER)
                    .map(String::as_str)
                    == Some(container)
        })
        .collect()
}

/// The one running instance of `container`, once there is one that is not `not`.
async fn running_one(h: &Harness, ds: &str, container: &str, not: Option<&str>) -> String {
    eventually(&format!("{container} running"), || {
        let r: Vec<_> = of_container(h, ds, container)
            .into_iter()
            .filter(|i| i.state == InstanceState::Running && Some(i.id.as_str()) != not)
            .collect();
        (r.len() == 1).then(|| r[0].id.clone())
    })
    .await
}

async fn state_is(h: &Harness, ds: &str, shown: &str) -> PodStatus {
    eventually(shown, || h.sink.get(ds).filter(|s| s.state.as_str() == shown)).await
}

const TWO_INITS: &str = "      initContainers:
      - {name: first, image: agent:1, command: [sh, -c, 'true']}
      - {name: second, image: agent:1, command: [sh, -c, 'true']}
";

#[test]
fn init_containers_run_first_restart_on_failure_and_are_not_rerun_after_an_agent_restart() {
    let mut h = Harness::new();
    actix::System::new().block_on(async {
        h.start_agent();
        h.commit(apply(daemonset("init", TWO_INITS)));
        let first = running_one(&h, "init", "first", None).await;
        state_is(&h, "init", "Init:0/2").await;
        assert!(of_container(&h, "init", "second").is_empty() && of_container(&h, "init", "main").is_empty());

        h.fake.crash(&first, 0);
        let second = running_one(&h, "init", "second", None).await;
        state_is(&h, "init", "Init:1/2").await;
        assert!(
            of_container(&h, "init", "main").is_empty(),
            "the app waits for every init container"
        );

        // A failure restarts it, counted; the app still waits.
        h.fake.crash(&second, 1);
        let again = running_one(&h, "init", "second", Some(&second)).await;
        let s = eventually("the restart counted", || {
            h.sink.get("init").filter(|s| s.restarts == 1)
        })
        .await;
        assert!(s.last_error.unwrap_or_default().contains("exited with code 1"));
        assert!(of_container(&h, "init", "main").is_empty());
        // A second failure backs off (600 ms here) as a crashing app container does.
        h.fake.crash(&again, 1);
        state_is(&h, "init", "Init:CrashLoopBackOff").await;
        let last = running_one(&h, "init", "second", Some(&again)).await;
        h.fake.crash(&last, 0);
        running_one(&h, "init", "main", None).await;
        let s = eventually("Running and ready", || {
            h.sink
                .get("init")
                .filter(|s| s.state == Phase::Running && s.ready)
        })
        .await;
        assert_eq!(s.restarts, 2);
        assert_eq!(
            of_container(&h, "init", "first").len(),
            1,
            "completed instances are kept"
        );
        assert_eq!(of_container(&h, "init", "second").len(), 1);
    });

    // A restarted agent finds the init containers done: it creates nothing.
    let creates = h.fake.create_count();
    actix::System::new().block_on(async {
        h.start_agent();
        state_is(&h, "init", "Running").await;
        // Six resyncs of 50 ms: a rerun of an init container would have been created by now.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            h.fake.create_count(),
            creates,
            "adoption runs no init container again"
        );

        // An app crash restarts the app alone.
        let main = running_one(&h, "init", "main", None).await;
        h.fake.crash(&main, 1);
        running_one(&h, "init", "main", Some(&main)).await;
        assert_eq!(
            h.fake.create_count(),
            creates + 1,
            "only the app container was created"
        );

        // A new revision runs them again, and its removal takes the completed ones along.
        let mut ds = daemonset("init", TWO_INITS);
        ds.spec.template.spec.init_containers[0].image = "agent:2".into();
        h.commit(apply(ds));
        h.grant("init", "n1");
        let fresh = running_one(&h, "init", "first", None).await;
        assert_eq!(h.fake.spec_of(&fresh).unwrap().image, "agent:2");
        state_is(&h, "init", "Init:0/2").await;
        h.commit(Command::Delete { name: "init".into() });
        eventually("everything removed", || {
            h.fake.instances().is_empty().then_some(())
        })
        .await;
    });
}

#[test]
fn a_sidecar_runs_beside_the_app_and_counts_for_readiness() {
    let mut h = Harness::new();
    actix::System::new().block_on(async {
        h.start_agent();
        let sidecar = "      initContainers:
      - name: proxy
        image: agent:1
        restartPolicy: Always
        readinessProbe: {exec: {command: [ready]}, periodSeconds: 1, failureThreshold: 1}
      - {name: setup, image: agent:1, command: [sh, -c, 'true']}
";
        h.commit(apply(daemonset("side", sidecar)));
        // The sidecar runs first; the next init container starts once it does.
        running_one(&h, "side", "proxy", None).await;
        let setup = running_one(&h, "side", "setup", None).await;
        state_is(&h, "side", "Init:1/2").await;
        h.fake.crash(&setup, 0);
        running_one(&h, "side", "main", None).await;
        eventually("ready", || {
            h.sink
                .get("side")
                .filter(|s| s.state == Phase::Running && s.ready)
        })
        .await;

        // The sidecar's readiness is the pod's too.
        let proxy = running_one(&h, "side", "proxy", None).await;
        h.fake.set_exec_code(&proxy, 1);
        eventually("not ready with the sidecar unready", || {
            h.sink
                .get("side")
                .filter(|s| s.state == Phase::Running && !s.ready)
        })
        .await;
        h.fake.set_exec_code(&proxy, 0);
        eventually("ready again", || h.sink.get("side").filter(|s| s.ready)).await;

        // It is restarted like an app container when it dies, and nothing else reruns.
        let creates = h.fake.create_count();
        h.fake.crash(&proxy, 1);
        running_one(&h, "side", "proxy", Some(&proxy)).await;
        eventually("Running", || {
            h.sink.get("side").filter(|s| s.state == Phase::Running)
        })
        .await;
        assert_eq!(h.fake.create_count(), creates + 1);
    });
}
