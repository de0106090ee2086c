//! The Docker runtime: each instance is a labelled container, driven through bollard.
//!
//! The client speaks the engine's API version (1.41, Docker 20.10, or later) and uses nothing newer.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, ListContainersOptionsBuilder,
    RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use bollard::{ClientVersion, Docker, API_DEFAULT_VERSION};
use futures_util::StreamExt;

mod convert;
mod engine;

pub use convert::{container_config, with_default_tag};
pub use engine::docker_socket;

use crate::runtime::{
    instance_name, labels, random_suffix, ContainerRuntime, Instance, InstanceSpec, PullPolicy, Result,
    RuntimeError, RuntimeKind,
};
use convert::instance_from_inspect;
use engine::{classify, is_connection_error, ping_api_version, server_message, status_of, unavailable};

/// The oldest engine API this module is written against (Docker 20.10); nothing newer is used.
pub const MIN_API_VERSION: ClientVersion = ClientVersion {
    major_version: 1,
    minor_version: 41,
};

/// Per-request timeout for ordinary calls; `stop` and pulls get their own, longer ones.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a pull may take before it is reported as `ErrImagePull`.
const PULL_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Containers on one Docker engine, found again by their `io.everynode.*` labels.
#[derive(Debug, Clone)]
pub struct DockerRuntime {
    /// Cheap to clone; already pinned to a version the engine accepts.
    docker: Docker,
}

impl DockerRuntime {
    /// Connects to the local engine (`DOCKER_HOST` or `/var/run/docker.sock`).
    pub async fn connect() -> Result<Self> {
        Self::connect_to(&docker_socket()?).await
    }

    /// Connects to the engine at `socket`, at the highest API version both sides speak.
    ///
    /// bollard starts at its own newest version (1.53) and `negotiate_version` asks `/v1.53/version`,
    /// which Docker 20.10 refuses ("client version 1.53 is too new"); so the engine's version is
    /// read first from the unversioned `/_ping`, and the client is built at that version.
    pub async fn connect_to(socket: &Path) -> Result<Self> {
        let server = ping_api_version(socket).await?;
        if server < MIN_API_VERSION {
            return Err(RuntimeError::Unavailable {
                reason: format!(
                    "the Docker engine at {} speaks API {server}; everynode needs {MIN_API_VERSION} (Docker 20.10) or later",
                    socket.display()
                ),
                source: None,
            });
        }
        let version = if server < *API_DEFAULT_VERSION {
            server
        } else {
            *API_DEFAULT_VERSION
        };
        let docker =
            Docker::connect_with_unix(&socket.to_string_lossy(), REQUEST_TIMEOUT.as_secs(), &version)
                .map_err(|e| unavailable(format!("connecting to {}", socket.display()), e))?;
        tracing::debug!(socket = %socket.display(), api = %version, "connected to Docker");
        Ok(DockerRuntime { docker })
    }

    /// The bollard client, for callers (tests, `logs`) that need more than the trait offers.
    pub fn client(&self) -> &Docker {
        &self.docker
    }

    /// Makes `image` available locally as `policy` says; every failure is `ImagePull`.
    pub async fn ensure_image(&self, image: &str, policy: PullPolicy) -> Result<()> {
        let image = with_default_tag(image);
        match policy {
            PullPolicy::Always => self.pull(&image).await,
            PullPolicy::IfNotPresent => {
                if self.image_present(&image).await? {
                    Ok(())
                } else {
                    self.pull(&image).await
                }
            }
            PullPolicy::Never => {
                if self.image_present(&image).await? {
                    Ok(())
                } else {
                    Err(RuntimeError::ImagePull {
                        image,
                        reason: "not present on this node and imagePullPolicy is Never".into(),
                        source: None,
                    })
                }
            }
        }
    }

    async fn image_present(&self, image: &str) -> Result<bool> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) if status_of(&e) == Some(404) => Ok(false),
            Err(e) => Err(classify(e, format!("inspecting image {image}"), None)),
        }
    }

    async fn pull(&self, image: &str) -> Result<()> {
        tracing::info!(image, "pulling image");
        let options = CreateImageOptionsBuilder::default().from_image(image).build();
        let docker = self.docker.clone().with_timeout(PULL_TIMEOUT);
        let mut progress = docker.create_image(Some(options), None, None);
        while let Some(step) = progress.next().await {
            if let Err(e) = step {
                if is_connection_error(&e) {
                    return Err(unavailable(format!("pulling image {image}"), e));
                }
                return Err(RuntimeError::ImagePull {
                    image: image.to_string(),
                    reason: server_message(&e),
                    source: Some(e.into()),
                });
            }
        }
        Ok(())
    }
}

#[async_trait]
impl ContainerRuntime for DockerRuntime {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Docker
    }

    async fn list(&self, cluster: &str, node: &str) -> Result<Vec<Instance>> {
        let filters = HashMap::from([(
            "label",
            vec![
                format!("{}={cluster}", labels::CLUSTER),
                format!("{}={node}", labels::NODE),
            ],
        )]);
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let summaries = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| classify(e, "listing containers".into(), None))?;
        // The summary lacks exit codes and start times, which the agent needs to decide on
        // restarts; a node runs a handful of instances, so one inspect each is cheap.
        let mut instances = Vec::with_capacity(summaries.len());
        for id in summaries.into_iter().filter_map(|s| s.id) {
            match self.inspect(&id).await {
                Ok(instance) => instances.push(instance),
                // Removed between the list and the inspect: it is simply gone.
                Err(RuntimeError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        instances.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(instances)
    }

    async fn create_and_start(&self, spec: &InstanceSpec) -> Result<Instance> {
        // Validate before pulling: a bad spec should not cost a download.
        let config = container_config(spec)?;
        self.ensure_image(&spec.image, spec.image_pull_policy).await?;
        let name = instance_name(spec, &random_suffix());
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        let created = self
            .docker
            .create_container(Some(options), config)
            .await
            .map_err(|e| match status_of(&e) {
                // The image vanished between the check and the create (someone ran `docker rmi`).
                Some(404) => RuntimeError::ImagePull {
                    image: spec.image.clone(),
                    reason: server_message(&e),
                    source: Some(e.into()),
                },
                _ => classify(e, format!("creating container {name}"), None),
            })?;
        for warning in &created.warnings {
            tracing::warn!(container = %name, %warning, "Docker warning on create");
        }
        if let Err(e) = self.docker.start_container(&created.id, None).await {
            // A container that cannot start (port taken, missing executable) would otherwise be
            // left behind once per retry.
            let force = RemoveContainerOptionsBuilder::default()
                .force(true)
                .v(true)
                .build();
            if let Err(rm) = self.docker.remove_container(&created.id, Some(force)).await {
                tracing::warn!(container = %name, error = %rm, "removing a container that failed to start");
            }
            return Err(classify(e, format!("starting container {name}"), None));
        }
        tracing::info!(container = %name, id = %created.id, "started container");
        self.inspect(&created.id).await
    }

    async fn stop(&self, id: &str, grace: Duration) -> Result<()> {
        // Docker takes whole seconds; rounding up never cuts a grace period short.
        let secs = grace.as_secs() + u64::from(grace.subsec_nanos() > 0);
        let secs = i32::try_from(secs).unwrap_or(i32::MAX);
        let options = StopContainerOptionsBuilder::default().t(secs).build();
        // The engine answers only after the container is gone, up to the grace period; the client
        // must outwait it or a long grace would look like a failure.
        let docker = self
            .docker
            .clone()
            .with_timeout(REQUEST_TIMEOUT + Duration::from_secs(secs as u64));
        docker
            .stop_container(id, Some(options))
            .await
            .map_err(|e| classify(e, format!("stopping container {id}"), Some(id)))
    }

    async fn remove(&self, id: &str) -> Result<()> {
        let options = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        match self.docker.remove_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            // "removal already in progress": another reconcile got there first.
            Err(e) if status_of(&e) == Some(409) && server_message(&e).contains("already in progress") => {
                Ok(())
            }
            Err(e) => Err(classify(e, format!("removing container {id}"), Some(id))),
        }
    }

    async fn inspect(&self, id: &str) -> Result<Instance> {
        let response = self
            .docker
            .inspect_container(id, None)
            .await
            .map_err(|e| classify(e, format!("inspecting container {id}"), Some(id)))?;
        Ok(instance_from_inspect(response))
    }

    async fn logs(&self, id: &str, tail: Option<usize>) -> Result<String> {
        let options = bollard::query_parameters::LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .tail(&tail.map(|n| n.to_string()).unwrap_or_else(|| "all".into()))
            .build();
        let mut stream = self.docker.logs(id, Some(options));
        let mut out = String::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| classify(e, format!("reading the logs of {id}"), Some(id)))?;
            out.push_str(&chunk.to_string());
        }
        Ok(out)
    }

    async fn follow_logs(&self, id: &str, tail: Option<usize>) -> Result<crate::runtime::LogStream> {
        // A missing container is a plain NotFound now rather than an error inside the stream.
        self.inspect(id).await?;
        // bollard sends a request only once its stream is first read, so a follow request
        // would take its tail then, and lose what the container wrote in between. The tail is
        // read now instead, with timestamps, and the follow request resumes after its last line.
        let options = bollard::query_parameters::LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .timestamps(true)
            // One line more than asked, so even a tail of 0 knows where output stands.
            .tail(&tail.map(|n| (n + 1).to_string()).unwrap_or_else(|| "all".into()))
            .build();
        let mut lines: Vec<(String, Vec<u8>)> = Vec::new();
        let mut stream = self.docker.logs(id, Some(options));
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| classify(e, format!("reading the logs of {id}"), Some(id)))?;
            lines.extend(convert::timestamped_lines(&chunk.into_bytes()));
        }
        let after = lines.last().map(|(ts, _)| ts.clone());
        let keep = tail.map_or(lines.len(), |n| n.min(lines.len()));
        let first: Vec<u8> = lines[lines.len() - keep..]
            .iter()
            .flat_map(|(_, l)| l.clone())
            .collect();
        let since = match &after {
            Some(ts) => convert::parse_docker_time(ts),
            None => Some(std::time::SystemTime::now()),
        }
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs() as i32);
        let options = bollard::query_parameters::LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .follow(true)
            .timestamps(true)
            .since(since)
            .tail("all")
            .build();
        let owned = id.to_string();
        // `since` is whole seconds: lines of that second already handed out are dropped by
        // their timestamps (fixed-width RFC 3339, so they compare as strings).
        let rest = self.docker.logs(id, Some(options)).map(move |chunk| {
            chunk
                .map(|c| {
                    convert::timestamped_lines(&c.into_bytes())
                        .into_iter()
                        .filter(|(ts, _)| after.as_ref().is_none_or(|a| ts > a))
                        .flat_map(|(_, line)| line)
                        .collect::<Vec<u8>>()
                })
                .map_err(|e| classify(e, format!("following the logs of {owned}"), Some(&owned)))
        });
        let head = futures_util::stream::iter((!first.is_empty()).then_some(Ok(first)));
        Ok(Box::pin(head.chain(rest.filter(|c| {
            std::future::ready(!matches!(c, Ok(bytes) if bytes.is_empty()))
        }))))
    }

    async fn exec(&self, id: &str, cmd: &[String], timeout: Duration) -> Result<i32> {
        if cmd.is_empty() {
            return Err(RuntimeError::invalid("exec needs a command"));
        }
        let run = async {
            let options = CreateExecOptions {
                cmd: Some(cmd.to_vec()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            };
            let created = self
                .docker
                .create_exec(id, options)
                .await
                .map_err(|e| match status_of(&e) {
                    Some(409) => RuntimeError::NotRunning { id: id.to_string() },
                    _ => classify(e, format!("creating exec in {id}"), Some(id)),
                })?;
            let started = self
                .docker
                .start_exec(&created.id, None::<StartExecOptions>)
                .await
                .map_err(|e| classify(e, format!("starting exec in {id}"), Some(id)))?;
            // Attached, so the stream ends when the command does; its output only helps debugging.
            if let StartExecResults::Attached { mut output, .. } = started {
                while let Some(chunk) = output.next().await {
                    match chunk {
                        Ok(out) => tracing::trace!(container = id, output = %out, "exec output"),
                        Err(e) => return Err(classify(e, format!("reading exec output in {id}"), Some(id))),
                    }
                }
            }
            // The exit code can lag the end of the stream by a moment.
            loop {
                let inspected = self
                    .docker
                    .inspect_exec(&created.id)
                    .await
                    .map_err(|e| classify(e, format!("inspecting exec in {id}"), Some(id)))?;
                if inspected.running != Some(true) {
                    let code = inspected.exit_code.unwrap_or(-1);
                    return Ok(i32::try_from(code).unwrap_or(-1));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        // Docker cannot kill an exec; on timeout the command may keep running in the container.
        tokio::time::timeout(timeout, run)
            .await
            .map_err(|_| RuntimeError::Timeout {
                what: format!("exec {:?} in {id}", cmd),
                after: timeout,
            })?
    }
}
