//! What only the Docker runtime promises, against the real engine; the behaviours every runtime shares are in `runtime_contract`.
//!
//! Two image versions are built locally from Debian's `busybox-static` (no registry is reachable).
//! Here: each revision runs its own image, PID 1 without a SIGTERM handler, env, mounts, user,
//! working dir and limits reaching the container, hostPort publishing, pull failures, and specs
//! Docker would misread.
//!
//! With no engine the tests print a loud SKIP, except under `CI=true` where they fail.

use crate::support::docker as docker_support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use everynode::runtime::docker::DockerRuntime;
use everynode::runtime::{
    ContainerRuntime, InstanceSpec, InstanceState, MountSpec, PortSpec, Protocol, PullPolicy, RuntimeError,
};
use tokio::sync::OnceCell;

const IMAGE_V1: &str = "everynode-test/busybox:v1";
const IMAGE_V2: &str = "everynode-test/busybox:v2";
/// On every container and image these tests make, so leftovers of a crashed run can be found.
const TEST_LABEL: &str = "io.everynode.test";
const TEST_LABEL_VALUE: &str = "runtime-docker";
/// One per test: the fixture removes exactly its own containers.
const RUN_LABEL: &str = "io.everynode.test-run";
const CLUSTER: &str = "everynode-test";
/// Number of tests holding a [`Fixture`]; the last one to finish removes the images. When a
/// filter runs fewer, the images stay until the next run's start-up cleanup.
const FIXTURE_TESTS: usize = 5;
static FIXTURES_DONE: AtomicUsize = AtomicUsize::new(0);
static IMAGES: OnceCell<()> = OnceCell::const_new();

/// A test's engine connection and cleanup; dropping it (also on panic) removes the test's
/// containers, and the last one removes the images.
struct Fixture {
    rt: DockerRuntime,
    /// Unique per test; used as the node name and the run label.
    run: String,
}

impl Fixture {
    /// Connects and builds the images once; `None` (after a loud SKIP) when there is no engine.
    async fn new(test: &str) -> Option<Fixture> {
        let rt = docker_support::runtime_or_skip(test).await?;
        IMAGES.get_or_init(|| prepare_images(rt.clone())).await;
        Some(Fixture {
            rt,
            run: format!("{test}-{}", std::process::id()),
        })
    }

    fn spec(&self, script: &str) -> InstanceSpec {
        InstanceSpec {
            cluster: CLUSTER.into(),
            node: self.run.clone(),
            daemonset: "shipper".into(),
            revision: "rev1".into(),
            container_name: "main".into(),
            image: IMAGE_V1.into(),
            command: vec!["sh".into(), "-c".into()],
            args: vec![script.into()],
            termination_grace: Duration::from_secs(10),
            labels: BTreeMap::from([
                (TEST_LABEL.to_string(), TEST_LABEL_VALUE.to_string()),
                (RUN_LABEL.to_string(), self.run.clone()),
                ("app".to_string(), "shipper".to_string()),
            ]),
            ..InstanceSpec::default()
        }
    }

    async fn exec_sh(&self, id: &str, script: &str) -> i32 {
        let cmd = vec!["sh".to_string(), "-c".to_string(), script.to_string()];
        self.rt.exec(id, &cmd, Duration::from_secs(10)).await.unwrap()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let run = self.run.clone();
        let last = FIXTURES_DONE.fetch_add(1, Ordering::SeqCst) + 1 == FIXTURE_TESTS;
        // Drop cannot await, and may run while the test's runtime unwinds: use a fresh one.
        let cleaned = std::thread::spawn(move || {
            let tokio = tokio::runtime::Runtime::new().unwrap();
            tokio.block_on(async {
                let rt = DockerRuntime::connect().await?;
                remove_containers(&rt, &format!("{RUN_LABEL}={run}")).await;
                if last {
                    remove_images(&rt).await;
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

async fn remove_containers(rt: &DockerRuntime, label_filter: &str) {
    docker_support::remove_containers_labelled(rt.client(), label_filter).await;
}

async fn remove_images(rt: &DockerRuntime) {
    docker_support::remove_images_labelled(rt.client(), &format!("{TEST_LABEL}={TEST_LABEL_VALUE}")).await;
}

/// Removes what a crashed earlier run left, then builds both image versions.
async fn prepare_images(rt: DockerRuntime) {
    remove_containers(&rt, &format!("{TEST_LABEL}={TEST_LABEL_VALUE}")).await;
    remove_images(&rt).await;
    for (tag, version) in [(IMAGE_V1, "v1"), (IMAGE_V2, "v2")] {
        docker_support::build_image(rt.client(), tag, version, TEST_LABEL_VALUE).await;
    }
}

/// The contract checks that two revisions coexist; here, that each really runs its own image.
/// It also shows Docker's PID 1 rule, which the process runtime does not share: a program
/// without a SIGTERM handler ignores the signal as PID 1, so it is killed after the grace.
#[tokio::test]
async fn each_revision_runs_its_own_image_and_pid_1_without_a_handler_waits_out_the_grace() {
    let _machine = crate::support::shared_machine();
    let Some(fx) = Fixture::new("revisions").await else {
        return;
    };
    let v1 = fx.rt.create_and_start(&fx.spec("exec sleep 3600")).await.unwrap();
    let mut next = fx.spec("exec sleep 3600");
    next.revision = "rev2".into();
    next.image = IMAGE_V2.into();
    let v2 = fx.rt.create_and_start(&next).await.unwrap();
    assert_eq!(
        fx.exec_sh(&v1.id, "test $(cat /etc/everynode-version) = v1")
            .await,
        0
    );
    assert_eq!(
        fx.exec_sh(&v2.id, "test $(cat /etc/everynode-version) = v2")
            .await,
        0
    );

    let started = Instant::now();
    fx.rt.stop(&v2.id, Duration::from_secs(1)).await.unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(1),
        "killed before the grace period ended: {took:?}"
    );
    assert_eq!(
        fx.rt.inspect(&v2.id).await.unwrap().state,
        InstanceState::Exited { code: Some(137) }
    );
    for id in [&v1.id, &v2.id] {
        fx.rt.remove(id).await.unwrap();
    }
}

#[tokio::test]
async fn env_mounts_user_workdir_and_limits_reach_the_container() {
    let _machine = crate::support::shared_machine();
    let Some(fx) = Fixture::new("config").await else {
        return;
    };
    let ro = tempfile::tempdir().unwrap();
    std::fs::write(ro.path().join("hello"), "from-host").unwrap();
    let rw = tempfile::tempdir().unwrap();

    let mut s = fx.spec("exec sleep 3600");
    s.env = vec![("FOO".into(), "bar".into()), ("NODE_NAME".into(), fx.run.clone())];
    s.mounts = vec![
        MountSpec {
            host_path: ro.path().to_string_lossy().into_owned(),
            container_path: "/host/ro".into(),
            read_only: true,
            propagation: None,
        },
        MountSpec {
            host_path: rw.path().to_string_lossy().into_owned(),
            container_path: "/host/rw".into(),
            read_only: false,
            propagation: None,
        },
    ];
    s.run_as_user = Some(65534);
    s.working_dir = Some("/tmp".into());
    s.cpu_limit_millis = Some(250);
    s.memory_limit_bytes = Some(64 << 20);
    s.termination_grace = Duration::from_secs(1);
    let i = fx.rt.create_and_start(&s).await.unwrap();

    assert_eq!(fx.exec_sh(&i.id, r#"test "$FOO" = bar"#).await, 0);
    assert_eq!(
        fx.exec_sh(&i.id, &format!(r#"test "$NODE_NAME" = {}"#, fx.run))
            .await,
        0
    );
    assert_eq!(
        fx.exec_sh(&i.id, "test $(cat /host/ro/hello) = from-host").await,
        0
    );
    assert_ne!(
        fx.exec_sh(&i.id, "echo x > /host/ro/new").await,
        0,
        "a read-only mount was writable"
    );
    assert!(!ro.path().join("new").exists());
    // Root in the container, so the write does not depend on the host dir's owner.
    let root_write = vec![
        "sh".to_string(),
        "-c".to_string(),
        "echo x > /host/rw/new".to_string(),
    ];
    let created = fx
        .rt
        .client()
        .create_exec(
            &i.id,
            bollard::exec::CreateExecOptions {
                cmd: Some(root_write),
                user: Some("0".to_string()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    fx.rt
        .client()
        .start_exec(
            &created.id,
            Some(bollard::exec::StartExecOptions {
                detach: true,
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    let mut written = false;
    for _ in 0..100 {
        if rw.path().join("new").exists() {
            written = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(written, "a read-write mount did not reach the host");
    assert_eq!(fx.exec_sh(&i.id, r#"test "$(id -u)" = 65534"#).await, 0);
    assert_eq!(fx.exec_sh(&i.id, r#"test "$(pwd)" = /tmp"#).await, 0);

    let inspected = fx.rt.client().inspect_container(&i.id, None).await.unwrap();
    let host = inspected.host_config.unwrap();
    assert_eq!(host.nano_cpus, Some(250_000_000));
    assert_eq!(host.memory, Some(64 << 20));
    assert_eq!(inspected.config.unwrap().stop_timeout, Some(1));
    fx.rt.remove(&i.id).await.unwrap();
}

#[tokio::test]
async fn host_port_publishes_the_container_port_on_the_host() {
    let _machine = crate::support::shared_machine();
    let Some(fx) = Fixture::new("hostport").await else {
        return;
    };
    // A port free right now; the engine binds it on all addresses and we connect on loopback.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut s = fx.spec("mkdir -p /tmp/www && echo hello-from-container > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www");
    s.ports = vec![PortSpec {
        container_port: 8080,
        host_port: Some(port),
        protocol: Protocol::Tcp,
    }];
    let i = fx.rt.create_and_start(&s).await.unwrap();

    let body = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let attempt = (|| {
                let mut conn = std::net::TcpStream::connect(("127.0.0.1", port))?;
                conn.set_read_timeout(Some(Duration::from_secs(2)))?;
                conn.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")?;
                let mut reply = String::new();
                conn.read_to_string(&mut reply)?;
                Ok::<_, std::io::Error>(reply)
            })();
            match attempt {
                Ok(reply) if reply.contains("hello-from-container") => return reply,
                _ if Instant::now() > deadline => panic!("no answer on hostPort {port}: {attempt:?}"),
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    })
    .await
    .unwrap();
    assert!(body.contains("200"), "{body}");

    // A second instance wanting the same hostPort cannot start, and leaves nothing behind.
    let err = fx.rt.create_and_start(&s).await.unwrap_err();
    assert!(err.to_string().contains(&port.to_string()), "{err}");
    let left = fx.rt.list(CLUSTER, &fx.run).await.unwrap();
    assert_eq!(left.len(), 1, "the failed start left a container: {left:?}");
    fx.rt.remove(&i.id).await.unwrap();
}

#[tokio::test]
async fn a_missing_image_is_an_image_pull_error_not_a_crash() {
    let _machine = crate::support::shared_machine();
    let Some(fx) = Fixture::new("pull").await else {
        return;
    };
    for policy in [PullPolicy::IfNotPresent, PullPolicy::Always, PullPolicy::Never] {
        let mut s = fx.spec("true");
        s.image = "everynode-test/does-not-exist:v1".into();
        s.image_pull_policy = policy;
        let err = fx.rt.create_and_start(&s).await.unwrap_err();
        match &err {
            RuntimeError::ImagePull { image, reason, .. } => {
                assert_eq!(image, "everynode-test/does-not-exist:v1");
                assert!(!reason.is_empty());
            }
            other => panic!("{policy:?}: expected ImagePull, got {other:?}"),
        }
        assert_eq!(err.status_reason(), "ErrImagePull");
    }
    // Always pulls even a present image, and no registry answers here.
    let mut s = fx.spec("true");
    s.image_pull_policy = PullPolicy::Always;
    assert!(matches!(
        fx.rt.create_and_start(&s).await,
        Err(RuntimeError::ImagePull { .. })
    ));
    // Never is fine with a local image.
    let mut s = fx.spec("exec sleep 3600");
    s.image_pull_policy = PullPolicy::Never;
    let i = fx.rt.create_and_start(&s).await.unwrap();
    assert_eq!(fx.rt.list(CLUSTER, &fx.run).await.unwrap().len(), 1);
    fx.rt.remove(&i.id).await.unwrap();
}

/// `src:dst:mode` binds cannot say a relative path; refused before anything is pulled or made.
#[tokio::test]
async fn a_mount_docker_would_misread_is_refused_and_leaves_nothing() {
    let _machine = crate::support::shared_machine();
    let Some(fx) = Fixture::new("mounts").await else {
        return;
    };
    let mut bad = fx.spec("true");
    bad.mounts = vec![MountSpec {
        host_path: "relative".into(),
        container_path: "/x".into(),
        read_only: true,
        propagation: None,
    }];
    assert!(matches!(
        fx.rt.create_and_start(&bad).await,
        Err(RuntimeError::InvalidSpec { .. })
    ));
    assert!(fx.rt.list(CLUSTER, &fx.run).await.unwrap().is_empty());
}
