//! What only the process runtime promises, against real processes; the behaviours every runtime shares are in `runtime_contract`.
//!
//! Here: the spec's env and working dir (not the agent's) for the program and its exec probes,
//! the whole process group killed after the grace, removal leaving no files, specs it cannot run,
//! switching user, instances outliving the agent process, no inherited descriptors, and
//! processes whose record was never written.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use everynode::runtime::process::ProcessRuntime;
use everynode::runtime::{ContainerRuntime, InstanceSpec, InstanceState, RuntimeError};

fn spec(node: &str, script: &str) -> InstanceSpec {
    InstanceSpec {
        cluster: "test-cluster".into(),
        node: node.into(),
        daemonset: "shipper".into(),
        revision: "rev1".into(),
        container_name: "main".into(),
        image: "ignored:v1".into(),
        command: vec!["sh".into(), "-c".into()],
        args: vec![script.into()],
        env: vec![("FOO".into(), "bar".into())],
        termination_grace: Duration::from_secs(5),
        labels: BTreeMap::from([("app".to_string(), "shipper".to_string())]),
        ..InstanceSpec::default()
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

/// The contract checks the timing and the 137; here, that SIGKILL reaches the whole group, as
/// it would a whole container.
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

    rt.stop(&i.id, Duration::from_millis(800)).await.unwrap();
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
async fn specs_the_process_runtime_cannot_run_are_invalid_not_fatal() {
    let _machine = crate::support::shared_machine();
    let dir = tempfile::tempdir().unwrap();
    let rt = ProcessRuntime::new(dir.path()).unwrap();

    let mut no_command = spec("n1", "true");
    no_command.command.clear();
    let err = rt.create_and_start(&no_command).await.unwrap_err();
    assert!(matches!(err, RuntimeError::InvalidSpec { .. }), "{err:?}");
    assert!(err.to_string().contains("needs a command"), "{err}");

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
async fn the_program_and_its_exec_probes_get_the_spec_env_and_working_dir_not_the_agents() {
    let _machine = crate::support::shared_machine();
    let dir = tempfile::tempdir().unwrap();
    let rt = ProcessRuntime::new(dir.path()).unwrap();
    // cargo sets this one for every test, so the agent's environment is known to hold it.
    assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
    let mut s = spec(
        "n1",
        r#"echo "started $FOO in $(pwd) ${CARGO_MANIFEST_DIR:-alone}"; exec sleep 300"#,
    );
    s.working_dir = Some("/tmp".into());
    let i = rt.create_and_start(&s).await.unwrap();
    let _guard = KillOnDrop(vec![i.pid.unwrap()]);
    assert!(
        eventually(Duration::from_secs(5), || log_of(&rt, &i.id)
            .contains("started bar in /tmp alone"))
        .await,
        "log: {}",
        log_of(&rt, &i.id)
    );

    let sh = |script: &str| vec!["sh".to_string(), "-c".to_string(), script.to_string()];
    let t = Duration::from_secs(5);
    assert_eq!(rt.exec(&i.id, &sh(r#"test "$FOO" = bar"#), t).await.unwrap(), 0);
    assert_eq!(
        rt.exec(&i.id, &sh(r#"test "$(pwd)" = /tmp"#), t).await.unwrap(),
        0
    );
    assert_eq!(
        rt.exec(&i.id, &sh(r#"test -z "$CARGO_MANIFEST_DIR""#), t)
            .await
            .unwrap(),
        0
    );
    rt.remove(&i.id).await.unwrap();
}

/// The contract checks that a removed instance is gone from every call; here, that nothing of
/// it stays on disk or in the process table.
#[tokio::test]
async fn remove_leaves_no_record_exit_status_log_or_process() {
    let _machine = crate::support::shared_machine();
    let dir = tempfile::tempdir().unwrap();
    let rt = ProcessRuntime::new(dir.path()).unwrap();
    let exited = rt.create_and_start(&spec("n1", "echo bye")).await.unwrap();
    let running = rt.create_and_start(&spec("n1", "exec sleep 300")).await.unwrap();
    let _guard = KillOnDrop(vec![running.pid.unwrap()]);
    let files = |id: &str| {
        let instances = dir.path().join("instances");
        [
            instances.join(format!("{id}.json")),
            instances.join(format!("{id}.exit.json")),
            rt.log_path(id),
        ]
    };
    assert!(
        eventually(Duration::from_secs(5), || files(&exited.id)
            .iter()
            .all(|f| f.exists()))
        .await,
        "the exited instance has a record, an exit status and a log"
    );

    for i in [&exited, &running] {
        rt.remove(&i.id).await.unwrap();
        for file in files(&i.id) {
            assert!(!file.exists(), "{} outlived the removal", file.display());
        }
    }
    assert!(
        !pid_alive(running.pid.unwrap()),
        "remove kills a running instance first"
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
