//! One behaviour suite for container runtimes, run against the fake, the process and the Docker runtime.
//!
//! In the manner of openraft's storage `Suite`: every behaviour the agent relies on is written
//! once in [`suite`], generic over a [`Harness`] that makes a runtime and speaks for the program
//! an instance runs. `contract_tests!` turns each behaviour into one test per runtime, with the
//! same name in `fake`, `process` and `docker`, so `cargo test --test it runtime_contract::docker::`
//! runs one runtime, and a behaviour's name alone (`cargo test --test it stop_kills`) runs it on
//! all three.
//!
//! The fake runs no programs. Its harness plays, through the fake's knobs, what the program
//! would do by itself (print, exit, handle or ignore SIGTERM, answer a probe), and the suite
//! checks the same facts of all three runtimes. Where a runtime promises less by design, the
//! check says so in a comment instead of skipping (an adopted process's exit code, for one).
//!
//! With no Docker engine the `docker` tests print a loud SKIP, except under `CI=true` where they
//! fail.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use everynode::runtime::docker::DockerRuntime;
use everynode::runtime::fake::{FakeRuntime, OnTerm};
use everynode::runtime::process::ProcessRuntime;
use everynode::runtime::{
    ContainerRuntime, Instance, InstanceSpec, InstanceState, RuntimeError, RuntimeKind,
};
use tokio::sync::OnceCell;

use crate::support::busybox_image::TEST_LABEL;
use crate::support::docker as docker_support;

/// What the program of an instance does, said once; each harness turns it into a spec, and the
/// fake's harness also plays it.
#[derive(Debug, Clone, Copy)]
pub enum Workload {
    /// Prints `ready` once its SIGTERM handler is in place, then runs until SIGTERM, on which it
    /// exits 0.
    Serve,
    /// Prints `ready` once it ignores SIGTERM, then runs until it is killed.
    IgnoreTerm,
    /// Exits at once with this code.
    Exit(i32),
    /// Prints `before`, waits for [`Harness::release`], then prints `after` a line every 0.2 s
    /// and exits 0.
    Staged {
        before: &'static [&'static str],
        after: &'static [&'static str],
    },
}

/// One runtime under test, with this test's own cluster, node and state.
///
/// Plain `async fn`s: every test drives its harness on one thread, so the futures need not be
/// `Send`.
pub trait Harness: Sized + Sync {
    const KIND: RuntimeKind;

    /// `None` (after a loud SKIP) when the runtime cannot be had on this machine.
    async fn new(test: &str) -> Option<Self>;

    /// A new runtime object over this test's state: another call is what a restarted agent
    /// gets (a new `ProcessRuntime` on the same data dir, a new Docker connection, a new handle
    /// on the same fake store).
    async fn open(&self) -> Arc<dyn ContainerRuntime>;

    /// A spec of this test's cluster and node, DaemonSet `shipper`, revision `rev1`, the
    /// harness's first image, pod label `app: shipper`, running `workload`.
    fn spec(&self, workload: Workload) -> InstanceSpec;

    /// The image of a second revision (real on Docker; only recorded by the others).
    fn image_v2(&self) -> &'static str;

    /// Called once `instance` of `workload` was created: the fake's harness plays here what the
    /// program does by itself; a real program needs nothing.
    async fn started(&self, _instance: &Instance, _workload: Workload) {}

    /// Lets a [`Workload::Staged`] instance go on past its wait.
    async fn release(&self, rt: &dyn ContainerRuntime, instance: &Instance, workload: Workload);

    /// An exec probe command that exits with `code` in `instance`.
    async fn probe(&self, _instance: &Instance, code: i32) -> Vec<String> {
        sh(&format!("exit {code}"))
    }

    /// An exec probe command that runs far longer than any probe timeout.
    async fn hanging_probe(&self, _instance: &Instance) -> Vec<String> {
        sh("sleep 30")
    }

    /// A spec whose program does not exist, which the runtime refuses at create; the error
    /// names [`MISSING_PROGRAM`].
    fn unrunnable(&self) -> InstanceSpec {
        let mut spec = self.spec(Workload::Serve);
        spec.command = vec![MISSING_PROGRAM.into()];
        spec.args.clear();
        spec
    }
}

/// The program of [`Harness::unrunnable`].
const MISSING_PROGRAM: &str = "/definitely/not/here";

/// A current-thread runtime per test: the first agent of the adoption test must be able to
/// die with its own.
fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Generates one `#[test]` per behaviour of [`suite`] for the harness `$harness`; invoked once
/// per runtime module, so the list of behaviours is written here only.
macro_rules! contract_tests {
    ($harness:ty) => {
        contract_tests!(@tests $harness;
            async: [
                a_created_instance_runs_and_is_listed_with_its_labels,
                the_same_spec_started_twice_runs_twice,
                a_new_revision_runs_beside_the_old_one_until_the_old_one_is_removed,
                template_labels_cannot_disguise_an_instance,
                instances_of_another_node_or_cluster_are_not_listed,
                stop_lets_an_instance_that_handles_sigterm_exit_before_the_grace,
                stop_kills_an_instance_that_ignores_sigterm_once_the_grace_is_over,
                a_crashing_instance_reports_its_exit_code,
                logs_give_the_tail_and_follow_streams_new_output_until_the_instance_exits,
                followed_logs_start_when_asked_not_when_first_read,
                exec_returns_the_exit_code_and_times_out,
                the_agents_exec_probes_pass_fail_and_time_out,
                remove_kills_a_running_instance_and_forgets_it,
                a_spec_that_cannot_run_fails_and_leaves_nothing,
            ],
            // Builds its own tokio runtimes: the first agent's must die before the second starts.
            sync: [a_restarted_agent_adopts_the_running_instance],
        );
    };
    (@tests $harness:ty; async: [$($behaviour:ident),+ $(,)?], sync: [$($sync:ident),+ $(,)?] $(,)?) => {
        /// How many tests this module has, so the Docker harness can tell the last one.
        #[allow(dead_code)] // only the Docker harness counts
        pub const TESTS: usize = [$(stringify!($behaviour)),+, $(stringify!($sync)),+].len();
        $(
            #[test]
            fn $behaviour() {
                let _machine = crate::support::shared_machine();
                let tokio = super::tokio_runtime();
                let name = stringify!($behaviour);
                let harness = tokio.block_on(<$harness as super::Harness>::new(name));
                if let Some(harness) = harness {
                    tokio.block_on(super::suite::$behaviour(&harness));
                }
            }
        )+
        $(
            #[test]
            fn $sync() {
                let _machine = crate::support::shared_machine();
                let name = stringify!($sync);
                let harness = super::tokio_runtime().block_on(<$harness as super::Harness>::new(name));
                if let Some(harness) = harness {
                    super::suite::$sync(&harness);
                }
            }
        )+
    };
}

mod fake {
    contract_tests!(super::FakeHarness);
}
mod process {
    contract_tests!(super::ProcessHarness);
}
mod docker {
    contract_tests!(super::DockerHarness);
}

/// The behaviours, each an async fn over any [`Harness`].
mod suite {
    use super::*;

    use everynode::agent::probe::{self, Kind};
    use everynode::runtime::labels;
    use everynode::spec::container::{Container, ExecAction, Probe};
    use futures_util::StreamExt;

    /// Long enough for a loaded machine (two cores, other suites running) to start a container.
    const PATIENCE: Duration = Duration::from_secs(15);

    async fn start<H: Harness>(
        h: &H,
        rt: &dyn ContainerRuntime,
        spec: &InstanceSpec,
        workload: Workload,
    ) -> Instance {
        let instance = rt
            .create_and_start(spec)
            .await
            .unwrap_or_else(|e| panic!("{:?}: creating {workload:?}: {e}", H::KIND));
        h.started(&instance, workload).await;
        instance
    }

    /// Waits until the instance's output contains `text`: the program got that far.
    async fn wait_for_output(rt: &dyn ContainerRuntime, id: &str, text: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let out = rt.logs(id, None).await.unwrap();
            if out.contains(text) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{id} never printed {text:?}; output: {out:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until `inspect` reports `want`: an exit status may be recorded a moment after the
    /// program ends (the process runtime's reaper writes it).
    async fn wait_for_state(rt: &dyn ContainerRuntime, id: &str, want: InstanceState) -> Instance {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let now = rt.inspect(id).await.unwrap();
            if now.state == want {
                return now;
            }
            assert!(
                Instant::now() < deadline,
                "{id} never reached {want:?}; last: {now:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn ids(instances: &[Instance]) -> Vec<&str> {
        let mut ids: Vec<&str> = instances.iter().map(|i| i.id.as_str()).collect();
        ids.sort();
        ids
    }

    fn not_found<T>(result: Result<T, RuntimeError>) -> bool {
        matches!(result, Err(RuntimeError::NotFound { .. }))
    }

    pub async fn a_created_instance_runs_and_is_listed_with_its_labels<H: Harness>(h: &H) {
        let rt = h.open().await;
        assert_eq!(rt.kind(), H::KIND);
        let spec = h.spec(Workload::Serve);
        let created = start(h, rt.as_ref(), &spec, Workload::Serve).await;
        assert_eq!(created.state, InstanceState::Running);
        // The same name on every runtime, so `get pods` reads the same everywhere.
        let prefix = format!("everynode_shipper_{}_rev1_", spec.node);
        assert!(
            created.name.starts_with(&prefix),
            "{} lacks {prefix}",
            created.name
        );
        assert_eq!(created.image, spec.image);
        assert_eq!(
            (created.daemonset.as_str(), created.revision.as_str()),
            ("shipper", "rev1")
        );
        assert_eq!(created.spec_hash, Some(spec.spec_hash()));
        // Every label the agent adopts by, and the pod template's own.
        for (key, value) in labels::for_spec(&spec) {
            assert_eq!(created.labels.get(&key), Some(&value), "label {key}");
        }
        assert_eq!(created.labels["app"], "shipper");
        assert!(
            created.started_at.is_some() && created.pid.is_some(),
            "{created:?}"
        );
        assert_eq!(created.finished_at, None);

        let listed = rt.list(&spec.cluster, &spec.node).await.unwrap();
        assert_eq!(listed, vec![created.clone()], "list reports what create returned");
        assert_eq!(rt.inspect(&created.id).await.unwrap(), created);
        rt.remove(&created.id).await.unwrap();
    }

    /// A surge of one revision (a second instance before the first is gone) must not collide.
    pub async fn the_same_spec_started_twice_runs_twice<H: Harness>(h: &H) {
        let rt = h.open().await;
        let spec = h.spec(Workload::Serve);
        let a = start(h, rt.as_ref(), &spec, Workload::Serve).await;
        let b = start(h, rt.as_ref(), &spec, Workload::Serve).await;
        assert_ne!(a.id, b.id);
        assert_ne!(a.name, b.name);
        let listed = rt.list(&spec.cluster, &spec.node).await.unwrap();
        assert_eq!(ids(&listed), ids(&[a.clone(), b.clone()]));
        assert!(listed.iter().all(|i| i.state.is_running()), "{listed:?}");
        for id in [&a.id, &b.id] {
            rt.remove(id).await.unwrap();
        }
    }

    pub async fn a_new_revision_runs_beside_the_old_one_until_the_old_one_is_removed<H: Harness>(h: &H) {
        let rt = h.open().await;
        let old_spec = h.spec(Workload::Serve);
        let mut new_spec = old_spec.clone();
        new_spec.revision = "rev2".into();
        new_spec.image = h.image_v2().into();
        let old = start(h, rt.as_ref(), &old_spec, Workload::Serve).await;
        let new = start(h, rt.as_ref(), &new_spec, Workload::Serve).await;

        let listed = rt.list(&old_spec.cluster, &old_spec.node).await.unwrap();
        assert_eq!(listed.len(), 2, "{listed:?}");
        for (spec, id) in [(&old_spec, &old.id), (&new_spec, &new.id)] {
            let i = listed
                .iter()
                .find(|i| &i.id == id)
                .expect("both revisions listed");
            assert!(i.state.is_running(), "{i:?}");
            assert_eq!(i.revision, spec.revision);
            assert_eq!(i.image, spec.image);
            assert_eq!(i.spec_hash, Some(spec.spec_hash()));
        }

        rt.stop(&old.id, Duration::from_secs(5)).await.unwrap();
        rt.remove(&old.id).await.unwrap();
        let listed = rt.list(&old_spec.cluster, &old_spec.node).await.unwrap();
        assert_eq!(ids(&listed), vec![new.id.as_str()]);
        assert!(
            listed[0].state.is_running(),
            "the new revision kept running: {listed:?}"
        );
        rt.remove(&new.id).await.unwrap();
    }

    /// A pod template that sets everynode's own label keys must not move an instance to
    /// another cluster, node or DaemonSet, where an agent would adopt or remove it.
    pub async fn template_labels_cannot_disguise_an_instance<H: Harness>(h: &H) {
        let rt = h.open().await;
        let mut spec = h.spec(Workload::Serve);
        let own = labels::for_spec(&spec);
        for key in [
            labels::CLUSTER,
            labels::NODE,
            labels::DAEMONSET,
            labels::REVISION,
            labels::SPEC_HASH,
            labels::CONTAINER,
        ] {
            spec.labels.insert(key.into(), "forged".into());
        }
        spec.labels.insert("tier".into(), "agents".into());
        let i = start(h, rt.as_ref(), &spec, Workload::Serve).await;

        let listed = rt.list(&spec.cluster, &spec.node).await.unwrap();
        assert_eq!(ids(&listed), vec![i.id.as_str()]);
        let l = &listed[0];
        for key in [
            labels::CLUSTER,
            labels::NODE,
            labels::DAEMONSET,
            labels::REVISION,
            labels::CONTAINER,
        ] {
            assert_eq!(l.labels[key], own[key], "label {key}");
        }
        assert_eq!(l.labels[labels::SPEC_HASH], spec.spec_hash());
        assert_eq!((l.daemonset.as_str(), l.revision.as_str()), ("shipper", "rev1"));
        assert_eq!(l.labels["tier"], "agents", "other template labels are kept");
        assert!(rt.list("forged", "forged").await.unwrap().is_empty());
        assert!(rt.list(&spec.cluster, "forged").await.unwrap().is_empty());
        rt.remove(&i.id).await.unwrap();
    }

    /// An agent removes every listed instance it does not want: another node's or cluster's
    /// instances (simulated nodes and clusters sharing one engine) must never be among them.
    pub async fn instances_of_another_node_or_cluster_are_not_listed<H: Harness>(h: &H) {
        let rt = h.open().await;
        let mine = h.spec(Workload::Serve);
        let mut other_node = mine.clone();
        other_node.node = format!("{}-other", mine.node);
        let mut other_cluster = mine.clone();
        other_cluster.cluster = format!("{}-other", mine.cluster);
        let mut started = Vec::new();
        for spec in [&mine, &other_node, &other_cluster] {
            started.push(start(h, rt.as_ref(), spec, Workload::Serve).await);
        }

        for (spec, instance) in [&mine, &other_node, &other_cluster].into_iter().zip(&started) {
            let listed = rt.list(&spec.cluster, &spec.node).await.unwrap();
            assert_eq!(
                ids(&listed),
                vec![instance.id.as_str()],
                "{}/{} lists only its own",
                spec.cluster,
                spec.node
            );
        }
        assert!(rt.list(&mine.cluster, "never-seen").await.unwrap().is_empty());
        for i in &started {
            rt.remove(&i.id).await.unwrap();
        }
    }

    pub async fn stop_lets_an_instance_that_handles_sigterm_exit_before_the_grace<H: Harness>(h: &H) {
        let rt = h.open().await;
        let i = start(h, rt.as_ref(), &h.spec(Workload::Serve), Workload::Serve).await;
        wait_for_output(rt.as_ref(), &i.id, "ready").await;

        let started = Instant::now();
        rt.stop(&i.id, Duration::from_secs(20)).await.unwrap();
        let took = started.elapsed();
        assert!(took < Duration::from_secs(5), "took {took:?} of a 20 s grace");
        // 0 is the handler's own exit: a program ended by SIGTERM itself reports 143.
        let stopped = wait_for_state(rt.as_ref(), &i.id, InstanceState::Exited { code: Some(0) }).await;
        assert!(stopped.finished_at.is_some(), "{stopped:?}");
        assert_eq!(stopped.pid, None);
        // Stopping a stopped instance is fine (the agent retries after errors).
        rt.stop(&i.id, Duration::from_secs(1)).await.unwrap();
        rt.remove(&i.id).await.unwrap();
    }

    pub async fn stop_kills_an_instance_that_ignores_sigterm_once_the_grace_is_over<H: Harness>(h: &H) {
        let rt = h.open().await;
        let i = start(
            h,
            rt.as_ref(),
            &h.spec(Workload::IgnoreTerm),
            Workload::IgnoreTerm,
        )
        .await;
        wait_for_output(rt.as_ref(), &i.id, "ready").await;

        // Not whole seconds, so a runtime that rounds (Docker takes seconds) must round up.
        let grace = Duration::from_millis(800);
        let started = Instant::now();
        rt.stop(&i.id, grace).await.unwrap();
        let took = started.elapsed();
        assert!(took >= grace, "killed before the grace period ended: {took:?}");
        assert!(took < grace + Duration::from_secs(3), "took {took:?}");
        let killed = wait_for_state(rt.as_ref(), &i.id, InstanceState::Exited { code: Some(137) }).await;
        assert_eq!(killed.pid, None);
        rt.remove(&i.id).await.unwrap();
    }

    /// The agent restarts crashed instances with back-off, so it must see them, exited, in
    /// `list` (not only in `inspect`), with their code.
    pub async fn a_crashing_instance_reports_its_exit_code<H: Harness>(h: &H) {
        let rt = h.open().await;
        let spec = h.spec(Workload::Exit(7));
        let i = start(h, rt.as_ref(), &spec, Workload::Exit(7)).await;
        let deadline = Instant::now() + PATIENCE;
        let crashed = loop {
            let listed = rt.list(&spec.cluster, &spec.node).await.unwrap();
            assert_eq!(
                ids(&listed),
                vec![i.id.as_str()],
                "an exited instance is still listed"
            );
            if listed[0].state == (InstanceState::Exited { code: Some(7) }) {
                break listed[0].clone();
            }
            assert!(Instant::now() < deadline, "never saw exit code 7: {listed:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(crashed.finished_at.is_some(), "{crashed:?}");
        assert_eq!(crashed.pid, None);
        assert_eq!(rt.inspect(&i.id).await.unwrap().state, crashed.state);
        let probe = h.probe(&i, 0).await;
        assert!(matches!(
            rt.exec(&i.id, &probe, Duration::from_secs(5)).await,
            Err(RuntimeError::NotRunning { .. })
        ));
        rt.remove(&i.id).await.unwrap();
    }

    const STAGED: Workload = Workload::Staged {
        before: &["one", "two"],
        after: &["line 3", "line 4", "line 5"],
    };

    /// A staged instance that has printed its first lines and waits to be released.
    async fn staged<H: Harness>(h: &H, rt: &dyn ContainerRuntime) -> Instance {
        let i = start(h, rt, &h.spec(STAGED), STAGED).await;
        wait_for_output(rt, &i.id, "two\n").await;
        i
    }

    pub async fn logs_give_the_tail_and_follow_streams_new_output_until_the_instance_exits<H: Harness>(
        h: &H,
    ) {
        let rt = h.open().await;
        let i = staged(h, rt.as_ref()).await;
        assert_eq!(rt.logs(&i.id, None).await.unwrap(), "one\ntwo\n");
        assert_eq!(rt.logs(&i.id, Some(1)).await.unwrap(), "two\n");

        let mut stream = rt.follow_logs(&i.id, Some(1)).await.unwrap();
        let tail = tokio::time::timeout(PATIENCE, stream.next()).await;
        let tail = tail.expect("the tail comes at once").expect("a tail").unwrap();
        assert_eq!(String::from_utf8_lossy(&tail), "two\n");

        h.release(rt.as_ref(), &i, STAGED).await;
        let mut seen = String::new();
        let mut live = None;
        let ended = tokio::time::timeout(PATIENCE, async {
            while let Some(chunk) = stream.next().await {
                seen.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
                if live.is_none() {
                    // The program runs 0.6 s past its first new line: a stream that holds
                    // output back until the end sees it exited here.
                    live = Some(rt.inspect(&i.id).await.unwrap().state);
                }
            }
        })
        .await;
        assert!(
            ended.is_ok(),
            "the stream did not end after the instance exited: {seen:?}"
        );
        assert_eq!(seen, "line 3\nline 4\nline 5\n", "every new line once");
        assert_eq!(
            live,
            Some(InstanceState::Running),
            "new output came as it was written, not all at the end"
        );
        wait_for_state(rt.as_ref(), &i.id, InstanceState::Exited { code: Some(0) }).await;
        // An exited instance keeps its output, as `everynode logs` of a crashed pod needs.
        assert_eq!(rt.logs(&i.id, Some(2)).await.unwrap(), "line 4\nline 5\n");

        assert!(not_found(
            rt.follow_logs("everynode_no_such_instance", None).await
        ));
        assert!(not_found(rt.logs("everynode_no_such_instance", None).await));
        rt.remove(&i.id).await.unwrap();
    }

    /// The trait promises the last `tail` lines, then whatever comes next: the tail is taken
    /// when `follow_logs` is called. A caller may read the stream later (an HTTP handler under
    /// load, a client slow to connect); what was written meanwhile must not fall out of the tail.
    pub async fn followed_logs_start_when_asked_not_when_first_read<H: Harness>(h: &H) {
        let rt = h.open().await;
        let i = staged(h, rt.as_ref()).await;
        let stream = rt.follow_logs(&i.id, Some(1)).await.unwrap();
        h.release(rt.as_ref(), &i, STAGED).await;
        wait_for_output(rt.as_ref(), &i.id, "line 3\n").await;

        let read = tokio::time::timeout(PATIENCE, stream.map(|c| c.unwrap()).concat()).await;
        let seen = String::from_utf8(read.expect("the stream ends with the instance")).unwrap();
        assert_eq!(
            seen, "two\nline 3\nline 4\nline 5\n",
            "the tail as it was when asked, then the rest"
        );
        rt.remove(&i.id).await.unwrap();
    }

    pub async fn exec_returns_the_exit_code_and_times_out<H: Harness>(h: &H) {
        let rt = h.open().await;
        let i = start(h, rt.as_ref(), &h.spec(Workload::Serve), Workload::Serve).await;
        let t = Duration::from_secs(10);
        assert_eq!(rt.exec(&i.id, &h.probe(&i, 0).await, t).await.unwrap(), 0);
        assert_eq!(rt.exec(&i.id, &h.probe(&i, 3).await, t).await.unwrap(), 3);
        assert!(matches!(
            rt.exec(&i.id, &[], t).await,
            Err(RuntimeError::InvalidSpec { .. })
        ));

        // A hung probe must not hang the agent.
        let hang = h.hanging_probe(&i).await;
        let started = Instant::now();
        let err = rt
            .exec(&i.id, &hang, Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(matches!(err, RuntimeError::Timeout { .. }), "{err:?}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        assert!(
            rt.inspect(&i.id).await.unwrap().state.is_running(),
            "a probe timeout ends nothing"
        );

        rt.stop(&i.id, Duration::from_secs(5)).await.unwrap();
        let probe = h.probe(&i, 0).await;
        assert!(matches!(
            rt.exec(&i.id, &probe, t).await,
            Err(RuntimeError::NotRunning { .. })
        ));
        assert!(not_found(rt.exec("everynode_no_such_instance", &probe, t).await));
        rt.remove(&i.id).await.unwrap();
    }

    fn with_liveness(command: Vec<String>) -> Container {
        Container {
            name: "main".into(),
            liveness_probe: Some(Probe {
                exec: Some(ExecAction { command }),
                timeout_seconds: 1,
                ..Probe::default()
            }),
            ..Container::default()
        }
    }

    /// The agent's own probe code (`agent::probe::run`) over each runtime: what an exec
    /// probe's result means must not depend on where the instance runs.
    pub async fn the_agents_exec_probes_pass_fail_and_time_out<H: Harness>(h: &H) {
        let rt = h.open().await;
        let spec = h.spec(Workload::Serve);
        let i = start(h, rt.as_ref(), &spec, Workload::Serve).await;
        let run = |container: Container| {
            let (rt, id, spec) = (rt.clone(), i.id.clone(), spec.clone());
            async move { probe::run(rt.as_ref(), &id, &spec, &container, Kind::Liveness).await }
        };

        assert_eq!(run(with_liveness(h.probe(&i, 0).await)).await, Ok(()));
        let failed = run(with_liveness(h.probe(&i, 3).await)).await.unwrap_err();
        assert!(failed.contains("exited with 3"), "{failed}");
        let started = Instant::now();
        let hung = run(with_liveness(h.hanging_probe(&i).await)).await.unwrap_err();
        assert!(hung.contains("timed out"), "{hung}");
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{:?}",
            started.elapsed()
        );

        rt.stop(&i.id, Duration::from_secs(5)).await.unwrap();
        let stopped = run(with_liveness(h.probe(&i, 0).await)).await.unwrap_err();
        assert!(stopped.contains("not running"), "{stopped}");
        rt.remove(&i.id).await.unwrap();
    }

    pub async fn remove_kills_a_running_instance_and_forgets_it<H: Harness>(h: &H) {
        let rt = h.open().await;
        let spec = h.spec(Workload::IgnoreTerm);
        let i = start(h, rt.as_ref(), &spec, Workload::IgnoreTerm).await;
        wait_for_output(rt.as_ref(), &i.id, "ready").await;
        let mut stream = rt.follow_logs(&i.id, None).await.unwrap();

        // No stop first, and a program that ignores SIGTERM: remove alone must end it.
        let started = Instant::now();
        rt.remove(&i.id).await.unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        assert!(not_found(rt.inspect(&i.id).await));
        assert!(rt.list(&spec.cluster, &spec.node).await.unwrap().is_empty());
        let ended = tokio::time::timeout(PATIENCE, async { while stream.next().await.is_some() {} }).await;
        assert!(ended.is_ok(), "a followed log outlived its instance");

        // The agent may repeat a removal, or stop what another reconcile removed.
        assert!(not_found(rt.remove(&i.id).await));
        assert!(not_found(rt.stop(&i.id, Duration::from_secs(1)).await));
        assert!(not_found(rt.logs(&i.id, None).await));
        assert!(not_found(rt.follow_logs(&i.id, None).await));
        assert!(not_found(
            rt.exec(&i.id, &h.probe(&i, 0).await, Duration::from_secs(5))
                .await
        ));
    }

    pub async fn a_spec_that_cannot_run_fails_and_leaves_nothing<H: Harness>(h: &H) {
        let rt = h.open().await;
        let spec = h.unrunnable();
        let err = rt.create_and_start(&spec).await.unwrap_err();
        assert!(err.to_string().contains(MISSING_PROGRAM), "{err}");
        // Retrying cannot help until the DaemonSet changes: the agent shows a config error.
        assert!(matches!(err, RuntimeError::InvalidSpec { .. }), "{err:?}");
        // Else every retry of the agent would leave one more behind.
        let left = rt.list(&spec.cluster, &spec.node).await.unwrap();
        assert!(left.is_empty(), "a failed start left {left:?}");
    }

    pub fn a_restarted_agent_adopts_the_running_instance<H: Harness>(h: &H) {
        // The first agent lives in a tokio runtime of its own, dropped with all its tasks (the
        // process runtime's reaper among them), as when an agent exits.
        let (spec, first) = tokio_runtime().block_on(async {
            let rt = h.open().await;
            let spec = h.spec(Workload::Serve);
            let first = start(h, rt.as_ref(), &spec, Workload::Serve).await;
            wait_for_output(rt.as_ref(), &first.id, "ready").await;
            (spec, first)
        });

        tokio_runtime().block_on(async {
            let rt = h.open().await;
            let listed = rt.list(&spec.cluster, &spec.node).await.unwrap();
            assert_eq!(ids(&listed), vec![first.id.as_str()], "{listed:?}");
            let adopted = &listed[0];
            assert_eq!(adopted.state, InstanceState::Running, "adopted, not restarted");
            assert_eq!(adopted.pid, first.pid, "the same program, not a new one");
            assert_eq!(adopted.started_at, first.started_at);
            assert_eq!(adopted.spec_hash, Some(spec.spec_hash()));
            assert_eq!(
                (adopted.daemonset.as_str(), adopted.revision.as_str()),
                ("shipper", "rev1")
            );
            assert!(rt.logs(&first.id, None).await.unwrap().contains("ready"));

            // What an earlier agent started (for processes: not this agent's child) still stops.
            let started = Instant::now();
            rt.stop(&first.id, Duration::from_secs(20)).await.unwrap();
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{:?}",
                started.elapsed()
            );
            let stopped = rt.inspect(&first.id).await.unwrap();
            // Only a parent can read an exit status, so the process runtime reports `None`
            // for a process an earlier agent started; the others know the handler's 0.
            assert!(
                matches!(stopped.state, InstanceState::Exited { code: None | Some(0) }),
                "{stopped:?}"
            );
            rt.remove(&first.id).await.unwrap();
            assert!(rt.list(&spec.cluster, &spec.node).await.unwrap().is_empty());
        });
    }
}

/// The shell script of `workload`, for the runtimes that run real programs.
fn script(workload: Workload) -> String {
    // `sleep 0.1` steps because a shell runs its trap only between commands.
    match workload {
        Workload::Serve => "trap 'exit 0' TERM; echo ready; while true; do sleep 0.1; done".into(),
        Workload::IgnoreTerm => "trap '' TERM; echo ready; while true; do sleep 0.1; done".into(),
        Workload::Exit(code) => format!("exit {code}"),
        Workload::Staged { before, after } => {
            let mut script: String = before.iter().map(|l| format!("echo {l}; ")).collect();
            // `go` in the working dir: both harnesses' `release` create it there.
            script.push_str("while [ ! -e go ]; do sleep 0.05; done; ");
            for line in after {
                script.push_str(&format!("echo {line}; sleep 0.2; "));
            }
            script
        }
    }
}

fn sh(script: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script.into()]
}

/// The spec every harness starts from; `node` is unique per test (and per run for Docker).
fn base_spec(cluster: &str, node: &str, image: &str, workload: Workload) -> InstanceSpec {
    InstanceSpec {
        cluster: cluster.into(),
        node: node.into(),
        daemonset: "shipper".into(),
        revision: "rev1".into(),
        container_name: "main".into(),
        image: image.into(),
        command: vec!["sh".into(), "-c".into()],
        args: vec![script(workload)],
        termination_grace: Duration::from_secs(5),
        labels: [("app".to_string(), "shipper".to_string())].into(),
        ..InstanceSpec::default()
    }
}

/// Node names become part of instance names, where `_` separates the parts.
fn node_name(test: &str) -> String {
    format!("{}-{}", test.replace('_', "-"), std::process::id())
}

const CLUSTER: &str = "everynode-contract";

/// The in-memory runtime: one store per test, and the programs played through its knobs.
pub struct FakeHarness {
    store: FakeRuntime,
    node: String,
}

impl Harness for FakeHarness {
    const KIND: RuntimeKind = RuntimeKind::Fake;

    async fn new(test: &str) -> Option<Self> {
        Some(FakeHarness {
            store: FakeRuntime::new(),
            node: node_name(test),
        })
    }

    async fn open(&self) -> Arc<dyn ContainerRuntime> {
        Arc::new(self.store.clone())
    }

    fn spec(&self, workload: Workload) -> InstanceSpec {
        base_spec(CLUSTER, &self.node, "busybox:v1", workload)
    }

    fn image_v2(&self) -> &'static str {
        "busybox:v2"
    }

    async fn started(&self, instance: &Instance, workload: Workload) {
        let id = &instance.id;
        match workload {
            Workload::Serve => {
                self.store.set_on_term(id, OnTerm::Exit(0));
                self.store.print(id, "ready\n");
            }
            Workload::IgnoreTerm => {
                self.store.set_on_term(id, OnTerm::Ignore);
                self.store.print(id, "ready\n");
            }
            Workload::Exit(code) => {
                self.store.crash(id, code);
            }
            Workload::Staged { before, .. } => {
                for line in before {
                    self.store.print(id, &format!("{line}\n"));
                }
            }
        }
    }

    async fn release(&self, _rt: &dyn ContainerRuntime, instance: &Instance, workload: Workload) {
        let Workload::Staged { after, .. } = workload else {
            panic!("only a staged workload waits to be released");
        };
        // Written over time as the program would, so the follower must stream it.
        let (store, id) = (self.store.clone(), instance.id.clone());
        tokio::spawn(async move {
            for line in after {
                store.print(&id, &format!("{line}\n"));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            store.crash(&id, 0);
        });
    }

    async fn probe(&self, instance: &Instance, code: i32) -> Vec<String> {
        // The fake runs no probe command: the code it answers is set here.
        self.store.set_exec_delay(None);
        self.store.set_exec_code(&instance.id, code);
        sh(&format!("exit {code}"))
    }

    async fn hanging_probe(&self, _instance: &Instance) -> Vec<String> {
        self.store.set_exec_delay(Some(Duration::from_secs(30)));
        sh("sleep 30")
    }

    fn unrunnable(&self) -> InstanceSpec {
        // The fake refuses only what it is told to; what it promises is the rest: an error as
        // the real runtimes give it, and nothing left behind.
        self.store.fail_next_create(RuntimeError::InvalidSpec {
            reason: format!("cannot run {MISSING_PROGRAM:?}: no such file"),
            source: None,
        });
        let mut spec = self.spec(Workload::Serve);
        spec.command = vec![MISSING_PROGRAM.into()];
        spec.args.clear();
        spec
    }
}

/// Child processes with their records in a temporary data dir.
pub struct ProcessHarness {
    state: tempfile::TempDir,
    /// The working dir of every instance, where a staged workload waits for `go`.
    work: tempfile::TempDir,
    node: String,
}

impl Harness for ProcessHarness {
    const KIND: RuntimeKind = RuntimeKind::Process;

    async fn new(test: &str) -> Option<Self> {
        Some(ProcessHarness {
            state: tempfile::tempdir().unwrap(),
            work: tempfile::tempdir().unwrap(),
            node: node_name(test),
        })
    }

    async fn open(&self) -> Arc<dyn ContainerRuntime> {
        Arc::new(ProcessRuntime::new(self.state.path()).unwrap())
    }

    fn spec(&self, workload: Workload) -> InstanceSpec {
        let mut spec = base_spec(CLUSTER, &self.node, "ignored:v1", workload);
        spec.working_dir = Some(self.work.path().to_string_lossy().into_owned());
        spec
    }

    fn image_v2(&self) -> &'static str {
        "ignored:v2"
    }

    async fn release(&self, _rt: &dyn ContainerRuntime, _instance: &Instance, _workload: Workload) {
        std::fs::write(self.work.path().join("go"), "").unwrap();
    }
}

impl Drop for ProcessHarness {
    /// Instances outlive their agent by design, so a failed test must end them itself: every
    /// recorded process group whose leader still carries its instance's mark.
    fn drop(&mut self) {
        let records = self.state.path().join("instances");
        for entry in std::fs::read_dir(records).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".exit.json") || !name.ends_with(".json") {
                continue;
            }
            let Some(record) = std::fs::read(entry.path())
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            else {
                continue;
            };
            let (Some(id), Some(pid)) = (record["id"].as_str(), record["pid"].as_i64()) else {
                continue;
            };
            if pid > 1 && carries_mark(pid, id) {
                // SAFETY: kill has no memory-safety preconditions; the group is this test's.
                unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
            }
        }
    }
}

/// Whether process `pid` is still the one started for instance `id` (a pid can be reused).
fn carries_mark(pid: i64, id: &str) -> bool {
    let mark = format!("EVERYNODE_INSTANCE={id}");
    std::fs::read(Path::new("/proc").join(pid.to_string()).join("environ"))
        .map(|env| env.split(|b| *b == 0).any(|var| var == mark.as_bytes()))
        .unwrap_or(false)
}

/// Images of the Docker harness: their own tags and label, so other Docker suites running at
/// the same time neither retag nor remove them.
const DOCKER_IMAGE_V1: &str = "everynode-contract/busybox:v1";
const DOCKER_IMAGE_V2: &str = "everynode-contract/busybox:v2";
const DOCKER_LABEL_VALUE: &str = "runtime-contract";
/// On every container of one test, so its cleanup removes exactly its own.
const RUN_LABEL: &str = "io.everynode.test-run";
static DOCKER_IMAGES: OnceCell<()> = OnceCell::const_new();
/// Docker tests finished so far; the last removes the images. When a filter runs fewer, the
/// images stay until the next run's start-up cleanup.
static DOCKER_DONE: AtomicUsize = AtomicUsize::new(0);

/// The Docker engine, with busybox images built for the suite.
pub struct DockerHarness {
    /// Unique per test and run: the node name and the run label.
    run: String,
}

impl Harness for DockerHarness {
    const KIND: RuntimeKind = RuntimeKind::Docker;

    async fn new(test: &str) -> Option<Self> {
        let rt = docker_support::runtime_or_skip(&format!("runtime_contract::docker::{test}")).await?;
        DOCKER_IMAGES
            .get_or_init(|| async {
                let docker = rt.client();
                let ours = format!("{TEST_LABEL}={DOCKER_LABEL_VALUE}");
                // What a crashed earlier run left behind.
                docker_support::remove_containers_labelled(docker, &ours).await;
                docker_support::remove_images_labelled(docker, &ours).await;
                for (tag, version) in [(DOCKER_IMAGE_V1, "v1"), (DOCKER_IMAGE_V2, "v2")] {
                    docker_support::build_image(docker, tag, version, DOCKER_LABEL_VALUE).await;
                }
            })
            .await;
        Some(DockerHarness { run: node_name(test) })
    }

    async fn open(&self) -> Arc<dyn ContainerRuntime> {
        Arc::new(DockerRuntime::connect().await.unwrap())
    }

    fn spec(&self, workload: Workload) -> InstanceSpec {
        let mut spec = base_spec(CLUSTER, &self.run, DOCKER_IMAGE_V1, workload);
        // Writable by any user, for the staged workload's `go`.
        spec.working_dir = Some("/tmp".into());
        spec.labels.insert(TEST_LABEL.into(), DOCKER_LABEL_VALUE.into());
        spec.labels.insert(RUN_LABEL.into(), self.run.clone());
        spec
    }

    fn image_v2(&self) -> &'static str {
        DOCKER_IMAGE_V2
    }

    async fn release(&self, rt: &dyn ContainerRuntime, instance: &Instance, _workload: Workload) {
        // Exec runs in the container's working dir, where the workload waits.
        let code = rt
            .exec(&instance.id, &sh("touch go"), Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(code, 0, "releasing {}", instance.id);
    }
}

impl Drop for DockerHarness {
    fn drop(&mut self) {
        let run = self.run.clone();
        let last = DOCKER_DONE.fetch_add(1, Ordering::SeqCst) + 1 == docker::TESTS;
        // Drop cannot await, and may run while the test unwinds: a thread with its own runtime.
        let cleaned = std::thread::spawn(move || {
            tokio_runtime().block_on(async {
                let rt = DockerRuntime::connect().await?;
                docker_support::remove_containers_labelled(rt.client(), &format!("{RUN_LABEL}={run}")).await;
                if last {
                    let ours = format!("{TEST_LABEL}={DOCKER_LABEL_VALUE}");
                    docker_support::remove_images_labelled(rt.client(), &ours).await;
                }
                Ok::<_, RuntimeError>(())
            })
        })
        .join();
        if !matches!(cleaned, Ok(Ok(()))) {
            eprintln!("cleanup of {} failed: {cleaned:?}", self.run);
        }
    }
}
