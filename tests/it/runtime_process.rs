//! The process runtime against real processes.
//!
//! Start, list, adoption after an agent restart, graceful and forced stop of the whole process
//! group, exec probes, and bad specs.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use everynode::runtime::process::ProcessRuntime;
use everynode::runtime::{
    ContainerRuntime, InstanceSpec, InstanceState, PullPolicy, RuntimeError, RuntimeKind,
};

fn spec(node: &str, script: &str) -> InstanceSpec {
    InstanceSpec {
        cluster: "test-cluster".into(),
        node: node.into(),
        daemonset: "shipper".into(),
        revision: "rev1".into(),
        container_name: "main".into(),
        image: "ignored:v1".into(),
        image_pull_policy: PullPolicy::IfNotPresent,
        command: vec!["sh".into(), "-c".into()],
        args: vec![script.into()],
        env: vec![("FOO".into(), "bar".into())],
        ports: vec![],
        host_network: false,
        host_pid: false,
        mounts: vec![],
        cpu_limit_millis: None,
        memory_limit_bytes: None,
        privileged: false,
        run_as_user: None,
        working_dir: None,
        termination_grace: Duration::from_secs(5),
        labels: BTreeMap::from([("app".to_string(), "shipper".to_string())]),
    }
}

/// Polls `check` until it holds or `within` passes; tests wait on facts, not on guessed sleeps.
async fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check()
}

fn log_of(rt: &ProcessRuntime, id: &str) -> String {
    std::fs::read_to_string(rt.log_path(id)).unwrap_or_default()
}

fn pid_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with(['Z', 'X'])
        })
        .unwrap_or(false)
}

/// Kills whatever a failed test left running, so a failure does not leak sleeping processes.
struct KillOnDrop(Vec<u32>);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for pid in &self.0 {
            // SAFETY: kill has no memory-safety preconditions; pids are our instances' groups.
            unsafe {
                libc::kill(-(*pid as i32), libc::SIGKILL);
            }
        }
    }
}

#[test]
fn a_restarted_agent_adopts_the_running_process_instead_of_restarting_it() {
    let _machine = crate::support::shared_machine();
    let dir = tempfile::tempdir().unwrap();
    // The first "agent" lives in its own tokio runtime, dropped like an agent that exits.
    let first = {
        let rt = ProcessRuntime::new(dir.path()).unwrap();
        let tokio = tokio::runtime::Runtime::new().unwrap();
        tokio.block_on(async {
            let i = rt
                .create_and_start(&spec("n1", "echo started $FOO; exec sleep 300"))
                .await
                .unwrap();
            assert!(
                eventually(Duration::from_secs(5), || log_of(&rt, &i.id)
                    .contains("started bar"))
                .await
            );
            i
        })
    };
    let _guard = KillOnDrop(vec![first.pid.unwrap()]);
    assert_eq!(first.state, InstanceState::Running);
    assert!(
        first.name.starts_with("everynode_shipper_n1_rev1_"),
        "{}",
        first.name
    );
    assert_eq!(first.labels["app"], "shipper");

    let tokio = tokio::runtime::Runtime::new().unwrap();
    tokio.block_on(async {
        let rt = ProcessRuntime::new(dir.path()).unwrap();
        assert_eq!(rt.kind(), RuntimeKind::Process);
        let listed = rt.list("test-cluster", "n1").await.unwrap();
        assert_eq!(listed.len(), 1, "{listed:?}");
        let adopted = &listed[0];
        assert_eq!(adopted.id, first.id);
        assert_eq!(adopted.pid, first.pid, "the same process, not a new one");
        assert_eq!(adopted.state, InstanceState::Running);
        assert_eq!(
            (adopted.daemonset.as_str(), adopted.revision.as_str()),
            ("shipper", "rev1")
        );
        assert!(rt.list("test-cluster", "n2").await.unwrap().is_empty());
        assert!(rt.list("other-cluster", "n1").await.unwrap().is_empty());

        // A second start of the same revision coexists (surge) under another id.
        let second = rt.create_and_start(&spec("n1", "exec sleep 300")).await.unwrap();
        assert_ne!(second.id, first.id);
        assert_eq!(rt.list("test-cluster", "n1").await.unwrap().len(), 2);

        // Adopted processes are not our children, yet stop still works on them.
        rt.stop(&first.id, Duration::from_secs(5)).await.unwrap();
        assert!(!pid_alive(first.pid.unwrap()));
        let stopped = rt.inspect(&first.id).await.unwrap();
        assert!(
            matches!(stopped.state, InstanceState::Exited { .. }),
            "{stopped:?}"
        );

        for id in [&first.id, &second.id] {
            rt.remove(id).await.unwrap();
            assert!(matches!(rt.inspect(id).await, Err(RuntimeError::NotFound { .. })));
            assert!(!rt.log_path(id).exists());
        }
        assert!(rt.list("test-cluster", "n1").await.unwrap().is_empty());
        assert!(matches!(
            rt.remove(&first.id).await,
            Err(RuntimeError::NotFound { .. })
        ));
        assert!(matches!(
            rt.stop(&first.id, Duration::from_secs(1)).await,
            Err(RuntimeError::NotFound { .. })
        ));
    });
}

#[tokio::test]
async fn stop_lets_a_process_that_handles_sigterm_finish_within_its_grace() {
    let _machine = crate::support::shared_machine();
    let dir = tempfile::tempdir().unwrap();
    let rt = ProcessRuntime::new(dir.path()).unwrap();
    let i = rt
        .create_and_start(&spec(
            "n1",
            "trap 'echo got-term; exit 0' TERM; echo ready; while true; do sleep 0.1; done",
        ))
        .await
        .unwrap();
    let _guard = KillOnDrop(vec![i.pid.unwrap()]);
    assert!(eventually(Duration::from_secs(5), || log_of(&rt, &i.id).contains("ready")).await);

    let started = Instant::now();
    rt.stop(&i.id, Duration::from_secs(20)).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(log_of(&rt, &i.id).contains("got-term"));
    // The exit status is recorded by the task that reaps the child, a moment after it exits.
    let mut state = None;
    for _ in 0..100 {
        state = Some(rt.inspect(&i.id).await.unwrap().state);
        if state == Some(InstanceState::Exited { code: Some(0) }) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(state, Some(InstanceState::Exited { code: Some(0) }));
    // Stopping again is fine.
    rt.stop(&i.id, Duration::from_secs(1)).await.unwrap();
    rt.remove(&i.id).await.unwrap();
}

#[tokio::test]
async fn stop_sigkills_the_whole_group_once_the_grace_period_is_over() {
    let _machine = crate::support::shared_machine();
    let dir = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let rt = ProcessRuntime::new(dir.path()).unwrap();
    let mut s = spec(
        "n1",
        // Ignored signals are inherited, so the background sleep ignores SIGTERM too.
        "trap '' TERM; sleep 300 & echo $! > helper.pid; echo ready; while true; do sleep 0.1; done",
    );
    s.working_dir = Some(work.path().to_string_lossy().into_owned());
    let i = rt.create_and_start(&s).await.unwrap();
    let pid_file = work.path().join("helper.pid");
    assert!(eventually(Duration::from_secs(5), || log_of(&rt, &i.id).contains("ready")).await);
    let helper: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _guard = KillOnDrop(vec![i.pid.unwrap()]);
    assert!(pid_alive(helper));

    let grace = Duration::from_millis(800);
    let started = Instant::now();
    rt.stop(&i.id, grace).await.unwrap();
    let took = started.elapsed();
    assert!(
        took >= grace,
        "SIGKILL came before the grace period ended: {took:?}"
    );
    assert!(took < grace + Duration::from_secs(3), "took {took:?}");
    assert!(!pid_alive(i.pid.unwrap()));
    assert!(
        eventually(Duration::from_secs(2), || !pid_alive(helper)).await,
        "helper in the group survived"
    );

    let mut last = None;
    for _ in 0..100 {
        last = Some(rt.inspect(&i.id).await.unwrap());
        if last.as_ref().unwrap().state == (InstanceState::Exited { code: Some(137) }) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let last = last.unwrap();
    assert_eq!(last.state, InstanceState::Exited { code: Some(137) });
    assert_eq!(last.reason.as_deref(), Some("killed by signal 9"));
    rt.remove(&i.id).await.unwrap();
}

#[tokio::test]
async fn a_crashing_process_reports_its_exit_code() {
    let _machine = crate::support::shared_machine();
    let dir = tempfile::tempdir().unwrap();
    let rt = ProcessRuntime::new(dir.path()).unwrap();
    let i = rt.create_and_start(&spec("n1", "exit 7")).await.unwrap();
    let mut state = None;
    for _ in 0..250 {
        state = Some(rt.list("test-cluster", "n1").await.unwrap()[0].state);
        if state == Some(InstanceState::Exited { code: Some(7) }) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(state, Some(InstanceState::Exited { code: Some(7) }));
    assert!(rt.inspect(&i.id).await.unwrap().finished_at.is_some());
    rt.remove(&i.id).await.unwrap();
}

#[tokio::test]
async fn exec_runs_with_the_instance_env_and_returns_the_exit_code() {
    let _machine = crate::support::shared_machine();
    let dir = tempfile::tempdir().unwrap();
    let rt = ProcessRuntime::new(dir.path()).unwrap();
    let mut s = spec("n1", "exec sleep 300");
    s.working_dir = Some("/tmp".into());
    let i = rt.create_and_start(&s).await.unwrap();
    let _guard = KillOnDrop(vec![i.pid.unwrap()]);
    let sh = |script: &str| vec!["sh".to_string(), "-c".to_string(), script.to_string()];
    let t = Duration::from_secs(5);

    assert_eq!(rt.exec(&i.id, &sh(r#"test "$FOO" = bar"#), t).await.unwrap(), 0);
    assert_eq!(
        rt.exec(&i.id, &sh(r#"test "$(pwd)" = /tmp"#), t).await.unwrap(),
        0
    );
    assert_eq!(rt.exec(&i.id, &sh("exit 3"), t).await.unwrap(), 3);
    // The agent's own environment is not inherited (cargo sets this one for every test).
    assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
    assert_eq!(
        rt.exec(&i.id, &sh(r#"test -z "$CARGO_MANIFEST_DIR""#), t)
            .await
            .unwrap(),
        0
    );

    let started = Instant::now();
    let err = rt
        .exec(&i.id, &sh("sleep 30"), Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(err, RuntimeError::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3));

    rt.stop(&i.id, Duration::from_secs(5)).await.unwrap();
    assert!(matches!(
        rt.exec(&i.id, &sh("true"), t).await,
        Err(RuntimeError::NotRunning { .. })
    ));
    assert!(matches!(
        rt.exec("no-such-instance", &sh("true"), t).await,
        Err(RuntimeError::NotFound { .. })
    ));
    rt.remove(&i.id).await.unwrap();
}

#[tokio::test]
async fn specs_the_process_runtime_cannot_run_are_invalid_not_fatal() {
    let _machine = crate::support::shared_machine();
    let dir = tempfile::tempdir().unwrap();
    let rt = ProcessRuntime::new(dir.path()).unwrap();

    let mut no_command = spec("n1", "true");
    no_command.command.clear();
    let err = rt.create_and_start(&no_command).await.unwrap_err();
    assert!(matches!(err, RuntimeError::InvalidSpec { .. }), "{err:?}");
    assert!(err.to_string().contains("needs a command"), "{err}");

    let mut missing_program = spec("n1", "");
    missing_program.command = vec!["/definitely/not/here".into()];
    let err = rt.create_and_start(&missing_program).await.unwrap_err();
    assert!(matches!(err, RuntimeError::InvalidSpec { .. }), "{err:?}");

    let mut bad_dir = spec("n1", "true");
    bad_dir.working_dir = Some("/definitely/not/here".into());
    let err = rt.create_and_start(&bad_dir).await.unwrap_err();
    assert!(err.to_string().contains("workingDir"), "{err}");

    assert!(
        rt.list("test-cluster", "n1").await.unwrap().is_empty(),
        "failed starts leave no record"
    );
}

#[tokio::test]
async fn run_as_user_switches_user_when_the_agent_is_root() {
    let _machine = crate::support::shared_machine();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIP run_as_user_switches_user_when_the_agent_is_root: needs root to switch users");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rt = ProcessRuntime::new(dir.path()).unwrap();
    let mut s = spec("n1", "echo uid=$(id -u); exec sleep 300");
    s.run_as_user = Some(65534);
    let i = rt.create_and_start(&s).await.unwrap();
    let _guard = KillOnDrop(vec![i.pid.unwrap()]);
    assert!(
        eventually(Duration::from_secs(5), || log_of(&rt, &i.id)
            .contains("uid=65534"))
        .await,
        "log: {}",
        log_of(&rt, &i.id)
    );
    let sh = vec![
        "sh".to_string(),
        "-c".to_string(),
        r#"test "$(id -u)" = 65534"#.to_string(),
    ];
    assert_eq!(rt.exec(&i.id, &sh, Duration::from_secs(5)).await.unwrap(), 0);
    rt.remove(&i.id).await.unwrap();
    assert!(!Path::new(&rt.log_path(&i.id)).exists());
}

/// Set only in the child process of the test below, which plays an agent that starts an instance
/// and then dies abruptly.
const HELPER_ENV: &str = "EVERYNODE_TEST_AGENT_STATE_DIR";

#[test]
fn agent_process_helper() {
    let Some(dir) = std::env::var_os(HELPER_ENV) else {
        return;
    };
    let tokio = tokio::runtime::Runtime::new().unwrap();
    let id = tokio.block_on(async {
        let rt = ProcessRuntime::new(dir).unwrap();
        rt.create_and_start(&spec("n1", "exec sleep 300"))
            .await
            .unwrap()
            .id
    });
    println!("started {id}");
    // No destructors, no cleanup: like an agent that is killed.
    std::process::exit(0);
}

#[tokio::test]
async fn children_outlive_the_agent_process_that_started_them() {
    let _machine = crate::support::shared_machine();
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "runtime_process::agent_process_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER_ENV, dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("started everynode_"),
        "helper agent failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let rt = ProcessRuntime::new(dir.path()).unwrap();
    let listed = rt.list("test-cluster", "n1").await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    let i = &listed[0];
    let _guard = KillOnDrop(vec![i.pid.unwrap()]);
    assert_eq!(
        i.state,
        InstanceState::Running,
        "the instance died with its agent"
    );
    assert!(stdout.contains(&i.id));

    rt.stop(&i.id, Duration::from_secs(5)).await.unwrap();
    assert!(matches!(
        rt.inspect(&i.id).await.unwrap().state,
        InstanceState::Exited { .. }
    ));
    rt.remove(&i.id).await.unwrap();
}

#[tokio::test]
async fn instances_do_not_inherit_the_agents_open_descriptors() {
    let _machine = crate::support::shared_machine();
    let dir = tempfile::tempdir().unwrap();
    let rt = ProcessRuntime::new(dir.path()).unwrap();
    // A descriptor without close-on-exec, like a lock file a supervisor passed down to the agent.
    let held = std::fs::File::create(dir.path().join("held.lock")).unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&held);
    // SAFETY: clearing FD_CLOEXEC on a descriptor we own.
    unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
    let i = rt
        .create_and_start(&spec(
            "n1",
            "for f in /proc/$$/fd/*; do readlink $f; done; echo listed",
        ))
        .await
        .unwrap();
    let _guard = KillOnDrop(vec![i.pid.unwrap()]);
    assert!(eventually(Duration::from_secs(5), || log_of(&rt, &i.id).contains("listed")).await);
    let open = log_of(&rt, &i.id);
    assert!(
        !open.contains("held.lock"),
        "fd {fd} leaked into the instance:\n{open}"
    );
}

#[tokio::test]
async fn a_process_whose_record_was_never_written_is_killed_by_the_next_agent() {
    let _machine = crate::support::shared_machine();
    let dir = tempfile::tempdir().unwrap();
    let other_dir = tempfile::tempdir().unwrap();
    let rt = ProcessRuntime::new(dir.path()).unwrap();
    let other = ProcessRuntime::new(other_dir.path()).unwrap();
    let kept = rt.create_and_start(&spec("n1", "exec sleep 300")).await.unwrap();
    // A helper in the background shares the mark, as anything the instance starts does.
    let lost = rt
        .create_and_start(&spec("n1", "sleep 300 & exec sleep 301"))
        .await
        .unwrap();
    let neighbour = other
        .create_and_start(&spec("n1", "exec sleep 300"))
        .await
        .unwrap();
    let pids = [kept.pid.unwrap(), lost.pid.unwrap(), neighbour.pid.unwrap()];
    let _guard = KillOnDrop(pids.to_vec());
    // The agent "died" between spawning `lost` and writing its record.
    std::fs::remove_file(dir.path().join("instances").join(format!("{}.json", lost.id))).unwrap();
    assert!(
        rt.list("test-cluster", "n1")
            .await
            .unwrap()
            .iter()
            .all(|i| i.id != lost.id),
        "without a record nothing lists it, so nothing would ever stop it"
    );

    let reaped = ProcessRuntime::new(dir.path()).unwrap().reap_unrecorded();
    assert_eq!(reaped, vec![lost.id.clone()]);
    assert!(
        eventually(Duration::from_secs(5), || !pid_alive(pids[1])).await,
        "the unrecorded instance still runs"
    );
    // The helper got its SIGKILL with the main process but may take a moment longer to exit.
    let helpers_left = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read(e.path().join("environ")).ok())
            .filter(|env| String::from_utf8_lossy(env).contains(&lost.id))
            .count()
    };
    assert!(
        eventually(Duration::from_secs(5), || helpers_left() == 0).await,
        "its helper processes go too: {} left",
        helpers_left()
    );
    assert!(pid_alive(pids[0]), "a recorded instance is kept");
    assert!(pid_alive(pids[2]), "another node's instance is not ours to reap");
    assert!(!rt.log_path(&lost.id).exists(), "its log is dropped");
}

#[tokio::test]
async fn follow_logs_streams_new_output_and_ends_when_the_process_exits() {
    let _machine = crate::support::shared_machine();
    use futures_util::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let rt = ProcessRuntime::new(dir.path()).unwrap();
    // The new lines come only once the test says so, after the stream has taken its tail.
    let workdir = tempfile::tempdir().unwrap();
    let mut staged = spec(
        "n1",
        "echo one; echo two; while [ ! -e go ]; do sleep 0.05; done; for n in 3 4 5; do echo line $n; sleep 0.2; done",
    );
    staged.working_dir = Some(workdir.path().to_str().unwrap().to_string());
    let i = rt.create_and_start(&staged).await.unwrap();
    let _guard = KillOnDrop(vec![i.pid.unwrap()]);
    assert!(eventually(Duration::from_secs(5), || log_of(&rt, &i.id).contains("two")).await);

    let mut stream = rt.follow_logs(&i.id, Some(1)).await.unwrap();
    std::fs::write(workdir.path().join("go"), "").unwrap();
    let mut seen = String::new();
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(chunk) = stream.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the stream did not end after the process exited: {seen:?}"
    );
    assert_eq!(
        seen, "two\nline 3\nline 4\nline 5\n",
        "the tail, then every new line once"
    );

    assert!(matches!(
        rt.follow_logs("everynode_missing", None).await,
        Err(RuntimeError::NotFound { .. })
    ));
}
