//! End to end against the real Docker engine: three agents keep one container per node, with images built locally.
//!
//! With no engine the test prints a loud SKIP, except under `CI=true` where it fails.

#[path = "support/busybox_image.rs"]
mod busybox_image;
mod support;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::query_parameters::{
    BuildImageOptionsBuilder, KillContainerOptionsBuilder, ListContainersOptionsBuilder,
    ListImagesOptionsBuilder, RemoveContainerOptionsBuilder, RemoveImageOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;
use serde_json::Value;
use support::{wait_until, Cluster, Node};

const LABEL_VALUE: &str = "e2e-docker-agent";
const IMAGE_V1: &str = "everynode-e2e/busybox:v1";
const IMAGE_V2: &str = "everynode-e2e/busybox:v2";

fn tokio() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

/// Removes this test's containers (by cluster label) and images, also on panic.
struct Cleanup {
    cluster: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let cluster = self.cluster.clone();
        let _ = std::thread::spawn(move || {
            tokio().block_on(async {
                let Ok(docker) = Docker::connect_with_local_defaults() else {
                    return;
                };
                for c in containers(&docker, &cluster).await {
                    let force = RemoveContainerOptionsBuilder::default()
                        .force(true)
                        .v(true)
                        .build();
                    let _ = docker.remove_container(&c.0, Some(force)).await;
                }
                let filters = HashMap::from([(
                    "label",
                    vec![format!("{}={LABEL_VALUE}", busybox_image::TEST_LABEL)],
                )]);
                let options = ListImagesOptionsBuilder::default().filters(&filters).build();
                for image in docker.list_images(Some(options)).await.unwrap_or_default() {
                    let force = RemoveImageOptionsBuilder::default().force(true).build();
                    let _ = docker.remove_image(&image.id, Some(force), None).await;
                }
            })
        })
        .join();
    }
}

/// This cluster's containers: (id, node label, state, env).
async fn containers(docker: &Docker, cluster: &str) -> Vec<(String, String, String, Vec<String>)> {
    let filters = HashMap::from([("label", vec![format!("io.everynode.cluster={cluster}")])]);
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    let mut out = Vec::new();
    for c in docker.list_containers(Some(options)).await.unwrap_or_default() {
        let id = c.id.clone().unwrap_or_default();
        let node = c
            .labels
            .as_ref()
            .and_then(|l| l.get("io.everynode.node").cloned())
            .unwrap_or_default();
        let env = match docker.inspect_container(&id, None).await {
            Ok(i) => i.config.and_then(|c| c.env).unwrap_or_default(),
            Err(_) => continue,
        };
        let state = c
            .state
            .map(|s| format!("{s:?}").to_lowercase())
            .unwrap_or_default();
        out.push((id, node, state, env));
    }
    out
}

fn running_by_node(docker: &Docker, rt: &tokio::runtime::Runtime, cluster: &str) -> BTreeMap<String, String> {
    rt.block_on(containers(docker, cluster))
        .into_iter()
        .filter(|c| c.2.contains("running"))
        .map(|c| (c.1, c.0))
        .collect()
}

async fn build_images(docker: &Docker) {
    for (tag, version) in [(IMAGE_V1, "v1"), (IMAGE_V2, "v2")] {
        let context = busybox_image::image_context(version, LABEL_VALUE);
        let options = BuildImageOptionsBuilder::default()
            .dockerfile("Dockerfile")
            .t(tag)
            .rm(true)
            .forcerm(true)
            .build();
        let mut build = docker.build_image(options, None, Some(bollard::body_full(context.into())));
        while let Some(step) = build.next().await {
            if let Err(e) = step {
                panic!("building {tag}: {e}");
            }
        }
    }
}

fn manifest(dir: &Path, name: &str, image: &str) -> PathBuf {
    let path = dir.join(format!("{name}.yaml"));
    let yaml = format!(
        "apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: {name}
spec:
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: {image}
        imagePullPolicy: IfNotPresent
        command: [sh, -c, 'exec sleep 3600']
        env:
        - name: NODE_NAME
          valueFrom:
            fieldRef: {{fieldPath: spec.nodeName}}
"
    );
    std::fs::write(&path, yaml).unwrap();
    path
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
    let rt = tokio();
    let docker = match Docker::connect_with_local_defaults() {
        Ok(d) if rt.block_on(d.ping()).is_ok() => d,
        other => {
            let why = other
                .err()
                .map(|e| e.to_string())
                .unwrap_or_else(|| "no answer to ping".into());
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("CI=true and the Docker engine is unreachable: {why}");
            }
            let _ = writeln!(
                std::io::stderr(),
                "SKIP e2e_docker_agent: no Docker engine ({why})"
            );
            return;
        }
    };
    let cluster_name = format!("everynode-e2e-{}", std::process::id());
    let _cleanup = Cleanup {
        cluster: cluster_name.clone(),
    };
    rt.block_on(build_images(&docker));

    let mut cluster = Cluster::start_seeded(3, 1, &["--runtime", "docker", "--cluster", &cluster_name]);
    let file = manifest(cluster.root.path(), "agent", IMAGE_V1);
    wait_until("apply accepted", Duration::from_secs(60), || {
        let out = cluster.nodes[0].cli(&["apply", "-f", file.to_str().unwrap()]);
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    });
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
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        running_by_node(&docker, &rt, &cluster_name),
        before,
        "agent restart kept ids"
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
