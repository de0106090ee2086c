//! Rolling updates against the real Docker engine: five agents roll from image v1 to v2 within budget, a broken image pauses or rolls back, undo, pause/resume and OnDelete.
//!
//! With no engine the test prints a loud SKIP, except under `CI=true` where it fails.

use crate::support;
use crate::support::docker as docker_support;
use crate::support::rollout as rollout_support;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use docker_support::{build_images, containers, Cleanup};
use everynode::rollout::invariant::BudgetChecker;
use rollout_support::{apply, leader_index, pods, rollout, run_ok, wait_revision, Sampler};
use support::manifest::Manifest;
use support::{wait_until, Cluster};

const IMAGE_V1: &str = "everynode-e2e/docker-rollout:v1";
const IMAGE_V2: &str = "everynode-e2e/docker-rollout:v2";
const LABEL_VALUE: &str = "e2e-docker-rollout";
const BROKEN: &str = "everynode-e2e/busybox:does-not-exist";

fn manifest(dir: &Path, tag: &str, image: &str, strategy: &str, on_failure: Option<&str>) -> PathBuf {
    let mut m = Manifest::new("agent")
        .local_image(image)
        .script("exec sleep 3600")
        .change_cause(tag)
        .annotation("everynode.io/progress-deadline-seconds", "8")
        .min_ready(2)
        .strategy(strategy);
    if let Some(policy) = on_failure {
        m = m.annotation("everynode.io/on-failure", policy);
    }
    m.write(dir, &format!("agent-{tag}.yaml"))
}

const ROLLING: &str = "type: RollingUpdate\nrollingUpdate: {maxUnavailable: 1}";

#[test]
fn docker_rollout_waves_failure_rollback_undo_pause_and_on_delete() {
    let _machine = crate::support::shared_machine();
    let Some((rt, docker)) = docker_support::connect("e2e_docker_rollout") else {
        return;
    };
    let cluster_name = format!("everynode-e2e-rollout-{}", std::process::id());
    let _cleanup = Cleanup {
        cluster: cluster_name.clone(),
        label_value: LABEL_VALUE,
    };
    rt.block_on(build_images(&docker, LABEL_VALUE, [IMAGE_V1, IMAGE_V2]));
    let cluster = Cluster::start_seeded(5, 1, &["--runtime", "docker", "--cluster", &cluster_name]);
    let dir = cluster.root.path().to_path_buf();
    let n0 = &cluster.nodes[0];
    // (node, image) of running containers.
    let running = || -> Vec<(String, String)> {
        let ids: Vec<(String, String)> = rt
            .block_on(containers(&docker, &cluster_name))
            .into_iter()
            .filter(|c| c.2.contains("running"))
            .map(|c| (c.0, c.1))
            .collect();
        ids.into_iter()
            .map(|(id, node)| {
                let image = rt
                    .block_on(docker.inspect_container(&id, None))
                    .ok()
                    .and_then(|i| i.config.and_then(|c| c.image))
                    .unwrap_or_default();
                (node, image)
            })
            .collect()
    };

    apply(n0, &manifest(&dir, "v1", IMAGE_V1, ROLLING, None));
    wait_revision(n0, "agent", 1, 5);

    // v1 -> v2, one node at a time, sampled throughout from the leader's view.
    let server = Arc::new(Mutex::new(cluster.nodes[leader_index(&cluster)].server()));
    let count = {
        let cluster_name = cluster_name.clone();
        move || {
            let rt = docker_support::tokio();
            let docker = bollard::Docker::connect_with_local_defaults().unwrap();
            let n = rt
                .block_on(containers(&docker, &cluster_name))
                .iter()
                .filter(|c| c.2.contains("running"))
                .count();
            n.saturating_sub(5)
        }
    };
    let sampler = Sampler::start_with_extra(
        server,
        cluster.nodes[0].admin_token(),
        "agent",
        BudgetChecker::new(1, 0, 2),
        count,
    );
    apply(n0, &manifest(&dir, "v2", IMAGE_V2, ROLLING, None));
    run_ok(n0, &["rollout", "status", "ds", "agent", "--timeout", "180s"]);
    let checker = sampler.finish();
    checker.assert_held();
    eprintln!(
        "docker budget checker: {} samples, at most {} unavailable (budget 1), at most {} extra containers",
        checker.samples, checker.worst_unavailable, checker.worst_surge
    );
    wait_revision(n0, "agent", 2, 5);
    let images = running();
    assert_eq!(images.len(), 5, "{images:?}");
    assert!(images.iter().all(|(_, i)| i == IMAGE_V2), "{images:?}");

    // A broken image stops after the first wave; the other nodes keep v2.
    apply(n0, &manifest(&dir, "broken", BROKEN, ROLLING, None));
    let out = n0.cli(&["rollout", "status", "ds", "agent", "--timeout", "120s"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success() && err.contains("failed and is paused"),
        "{err}"
    );
    assert!(
        err.contains("ErrImagePull"),
        "the reason names the pull error: {err}"
    );
    let p = pods(n0, "agent").unwrap();
    assert_eq!(p.iter().filter(|p| p["revision"] == 3).count(), 1, "{p:?}");
    let images = running();
    assert_eq!(
        images.iter().filter(|(_, i)| i == IMAGE_V2).count(),
        4,
        "{images:?}"
    );

    // Undo: back to v2 everywhere.
    run_ok(n0, &["rollout", "undo", "ds", "agent"]);
    run_ok(n0, &["rollout", "status", "ds", "agent", "--timeout", "120s"]);
    wait_revision(n0, "agent", 4, 5);

    // With on-failure: rollback the broken wave returns to v2 by itself.
    apply(
        n0,
        &manifest(&dir, "broken-rb", BROKEN, ROLLING, Some("rollback")),
    );
    let out = n0.cli(&["rollout", "status", "ds", "agent", "--timeout", "120s"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success() && err.contains("rolled back to revision 6"),
        "{err}"
    );
    wait_revision(n0, "agent", 6, 5);
    let images = running();
    assert!(
        images.len() == 5 && images.iter().all(|(_, i)| i == IMAGE_V2),
        "{images:?}"
    );

    // Pause holds the waves, resume finishes them.
    apply(n0, &manifest(&dir, "v1-again", IMAGE_V1, ROLLING, None));
    run_ok(n0, &["rollout", "pause", "ds", "agent"]);
    support::holds_for(
        "the paused rollout holding at one wave",
        Duration::from_secs(5),
        "a wave takes a container start plus minReadySeconds 2, so two more would have begun",
        || {
            let r = rollout(n0, "agent");
            if r["phase"] == "Paused" && r["updated"].as_u64() <= Some(1) {
                Ok(())
            } else {
                Err(r.to_string())
            }
        },
    );
    run_ok(n0, &["rollout", "resume", "ds", "agent"]);
    run_ok(n0, &["rollout", "status", "ds", "agent", "--timeout", "120s"]);
    wait_revision(n0, "agent", 7, 5);

    // OnDelete: nothing moves until an instance is deleted.
    apply(n0, &manifest(&dir, "ondelete", IMAGE_V2, "type: OnDelete", None));
    support::holds_for(
        "OnDelete leaving every container on v1",
        Duration::from_secs(4),
        "a RollingUpdate wave would have replaced a container within 3 s",
        || {
            let images = running();
            if images.iter().all(|(_, i)| i == IMAGE_V1) {
                Ok(())
            } else {
                Err(format!("{images:?}"))
            }
        },
    );
    run_ok(n0, &["delete", "pod", "agent", "--node", "node-3"]);
    wait_until("node-3 on v2 alone", Duration::from_secs(60), || {
        let images = running();
        let v2: Vec<&String> = images
            .iter()
            .filter(|(_, i)| i == IMAGE_V2)
            .map(|(n, _)| n)
            .collect();
        if v2 == ["node-3"] && images.len() == 5 {
            Ok(())
        } else {
            Err(format!("{images:?}"))
        }
    });
}
