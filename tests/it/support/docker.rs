//! Helpers for tests against the real Docker engine: connect (or skip loudly, or fail under CI), build the test images, list a cluster's containers, and clean up.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;

use bollard::query_parameters::{
    BuildImageOptionsBuilder, ListContainersOptionsBuilder, ListImagesOptionsBuilder,
    RemoveContainerOptionsBuilder, RemoveImageOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;

use crate::support::busybox_image;

/// The engine, or `None` after a loud SKIP line; under `CI=true` a missing engine fails.
pub fn connect(test: &str) -> Option<(tokio::runtime::Runtime, Docker)> {
    let rt = tokio();
    match Docker::connect_with_local_defaults() {
        Ok(d) if rt.block_on(d.ping()).is_ok() => Some((rt, d)),
        other => {
            let why = other
                .err()
                .map(|e| e.to_string())
                .unwrap_or_else(|| "no answer to ping".into());
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("CI=true and the Docker engine is unreachable: {why}");
            }
            let _ = writeln!(std::io::stderr(), "SKIP {test}: no Docker engine ({why})");
            None
        }
    }
}

/// The everynode Docker runtime, or `None` after a loud SKIP naming `test`; under `CI=true` a
/// missing engine fails the test.
pub async fn runtime_or_skip(test: &str) -> Option<everynode::runtime::docker::DockerRuntime> {
    match everynode::runtime::docker::DockerRuntime::connect().await {
        Ok(rt) => Some(rt),
        Err(e) => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("CI=true and the Docker engine is unreachable, so {test} cannot run: {e}");
            }
            // Straight to stderr: libtest captures `eprintln!` of passing tests, and a skip
            // must be seen.
            let _ = writeln!(
                std::io::stderr(),
                "\n*** SKIP {test}: Docker engine unreachable ({e}); set CI=true to make this a failure ***\n"
            );
            None
        }
    }
}

pub fn tokio() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

/// Removes this test's containers (by cluster label) and images, also on panic.
pub struct Cleanup {
    pub cluster: String,
    /// Value of the test label on the images this test built.
    pub label_value: &'static str,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let cluster = self.cluster.clone();
        let label_value = self.label_value;
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
                remove_images_labelled(&docker, &format!("{}={label_value}", busybox_image::TEST_LABEL))
                    .await;
            })
        })
        .join();
    }
}

/// This cluster's containers: (id, node label, state, env).
pub async fn containers(docker: &Docker, cluster: &str) -> Vec<(String, String, String, Vec<String>)> {
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

pub fn running_by_node(
    docker: &Docker,
    rt: &tokio::runtime::Runtime,
    cluster: &str,
) -> BTreeMap<String, String> {
    rt.block_on(containers(docker, cluster))
        .into_iter()
        .filter(|c| c.2.contains("running"))
        .map(|c| (c.1, c.0))
        .collect()
}

/// Builds `tags` (v1 and v2 of the test image), labelled with `label_value` for [`Cleanup`]. Each
/// test names its own tags: tests run side by side, and one test's cleanup must never remove an
/// image another still runs.
pub async fn build_images(docker: &Docker, label_value: &str, tags: [&str; 2]) {
    for (tag, version) in tags.into_iter().zip(["v1", "v2"]) {
        build_image(docker, tag, version, label_value).await;
    }
}

/// Builds the busybox image as `tag`, with `version` in `/etc/everynode-version` and the test
/// label set to `label_value`.
pub async fn build_image(docker: &Docker, tag: &str, version: &str, label_value: &str) {
    let context = busybox_image::image_context(version, label_value);
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

/// Force-removes every container carrying `label` (`key=value`), with its volumes.
pub async fn remove_containers_labelled(docker: &Docker, label: &str) {
    let filters = HashMap::from([("label", vec![label.to_string()])]);
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    for c in docker.list_containers(Some(options)).await.unwrap_or_default() {
        let force = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        let _ = docker
            .remove_container(c.id.as_deref().unwrap_or_default(), Some(force))
            .await;
    }
}

/// Force-removes every image carrying `label` (`key=value`).
pub async fn remove_images_labelled(docker: &Docker, label: &str) {
    let filters = HashMap::from([("label", vec![label.to_string()])]);
    let options = ListImagesOptionsBuilder::default().filters(&filters).build();
    for image in docker.list_images(Some(options)).await.unwrap_or_default() {
        let force = RemoveImageOptionsBuilder::default().force(true).build();
        let _ = docker.remove_image(&image.id, Some(force), None).await;
    }
}
