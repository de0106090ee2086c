//! End to end against the real Docker engine: three agents keep one container per node, with images built locally.
//!
//! With no engine the test prints a loud SKIP, except under `CI=true` where it fails.

use crate::support;
use crate::support::docker as docker_support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::query_parameters::KillContainerOptionsBuilder;
use docker_support::{build_images, containers, running_by_node, Cleanup};
use serde_json::Value;
use support::manifest::Manifest;
use support::{wait_until, Cluster, Node};

const IMAGE_V1: &str = "everynode-e2e/docker-agent:v1";
const IMAGE_V2: &str = "everynode-e2e/docker-agent:v2";
const LABEL_VALUE: &str = "e2e-docker-agent";

fn manifest(dir: &Path, name: &str, image: &str) -> PathBuf {
    Manifest::new(name)
        .local_image(image)
        .script("exec sleep 3600")
        .node_name_env("NODE_NAME")
        .write(dir, &format!("{name}.yaml"))
}

fn pods(node: &Node, ds: &str) -> Result<Vec<Value>, String> {
    let out = node.cli(&["get", "pods", "-o", "json"]);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let all: Vec<Value> = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    Ok(all.into_iter().filter(|p| p["daemonset"] == ds).collect())
}

#[test]
fn docker_agents_converge_recreate_adopt_report_pull_errors_evict_and_remove() {
    let _machine = crate::support::shared_machine();
    let Some((rt, docker)) = docker_support::connect("e2e_docker_agent") else {
        return;
    };
    let cluster_name = format!("everynode-e2e-{}", std::process::id());
    let _cleanup = Cleanup {
        cluster: cluster_name.clone(),
        label_value: LABEL_VALUE,
    };
    rt.block_on(build_images(&docker, LABEL_VALUE, [IMAGE_V1, IMAGE_V2]));

    let mut cluster = Cluster::start_seeded(3, 1, &["--runtime", "docker", "--cluster", &cluster_name]);
    let file = manifest(cluster.root.path(), "agent", IMAGE_V1);
    crate::support::rollout::apply(&cluster.nodes[0], &file);
    let names = ["node-0", "node-1", "node-2"];
    let ids = wait_until("one running container per node", Duration::from_secs(60), || {
        let running = running_by_node(&docker, &rt, &cluster_name);
        let all = rt.block_on(containers(&docker, &cluster_name));
        if running.len() == 3 && all.len() == 3 {
            Ok(running)
        } else {
            Err(format!("{all:?}"))
        }
    });
    for c in rt.block_on(containers(&docker, &cluster_name)) {
        assert!(
            c.3.contains(&format!("NODE_NAME={}", c.1)),
            "env of {}: {:?}",
            c.1,
            c.3
        );
    }
    wait_until("every pod Running", Duration::from_secs(30), || {
        let p = pods(&cluster.nodes[0], "agent")?;
        let n = p.iter().filter(|p| p["state"] == "Running").count();
        if n == 3 {
            Ok(())
        } else {
            Err(format!("{p:?}"))
        }
    });

    // Killed by hand: back within seconds.
    let victim = ids["node-0"].clone();
    let kill = KillContainerOptionsBuilder::default().signal("SIGKILL").build();
    rt.block_on(docker.kill_container(&victim, Some(kill))).unwrap();
    wait_until("killed container replaced", Duration::from_secs(30), || {
        let running = running_by_node(&docker, &rt, &cluster_name);
        match running.get("node-0") {
            Some(id) if *id != victim => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });

    // An agent restart keeps the container.
    let before = running_by_node(&docker, &rt, &cluster_name);
    cluster.nodes[1].stop();
    cluster.nodes[1].start();
    wait_until("restarted agent reports Running", Duration::from_secs(40), || {
        let p = pods(&cluster.nodes[1], "agent")?;
        if p.iter().any(|p| p["node"] == "node-1" && p["state"] == "Running") {
            Ok(())
        } else {
            Err(format!("{p:?}"))
        }
    });
    support::holds_for(
        "the restarted agent keeping every container id",
        Duration::from_secs(2),
        "the agent resyncs every second, so two resyncs have seen the containers",
        || {
            let now = running_by_node(&docker, &rt, &cluster_name);
            if now == before {
                Ok(())
            } else {
                Err(format!("{now:?} != {before:?}"))
            }
        },
    );

    // A missing image is a status, and the agent stays healthy.
    let missing = manifest(cluster.root.path(), "missing", "everynode-e2e/nope:v9");
    let out = cluster.nodes[0].cli(&["apply", "-f", missing.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_until("ErrImagePull everywhere", Duration::from_secs(40), || {
        let p = pods(&cluster.nodes[2], "missing")?;
        if p.len() == 3 && p.iter().all(|p| p["state"] == "ErrImagePull") {
            Ok(())
        } else {
            Err(format!("{p:?}"))
        }
    });
    for node in &cluster.nodes {
        assert!(
            node.cli(&["get", "nodes"]).status.success(),
            "{} healthy",
            node.name
        );
    }
    let out = cluster.nodes[0].cli(&["delete", "ds", "missing"]);
    assert!(out.status.success());

    // A NoExecute taint evicts.
    let out = cluster.nodes[0].cli(&["taint", "node", "node-2", "evict=now:NoExecute"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_until("node-2 evicted", Duration::from_secs(30), || {
        let all = rt.block_on(containers(&docker, &cluster_name));
        if all.iter().all(|c| c.1 != "node-2") && all.len() == 2 {
            Ok(())
        } else {
            Err(format!("{all:?}"))
        }
    });

    // Delete removes every container.
    let out = cluster.nodes[1].cli(&["delete", "ds", "agent"]);
    assert!(out.status.success());
    wait_until("all containers removed", Duration::from_secs(30), || {
        let all = rt.block_on(containers(&docker, &cluster_name));
        if all.is_empty() {
            Ok(())
        } else {
            Err(format!("{all:?}"))
        }
    });
    let _ = names;
}
