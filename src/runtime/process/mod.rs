//! The process runtime: each instance is a host process in its own session, with a JSON record.
//!
//! The records live in a state dir, so a restarted agent adopts running processes instead of
//! starting others.
//!
//! What it honours: `command` (required, the image has no entrypoint to fall back on) and `args`,
//! `env` (on top of a fixed `PATH`, nothing inherited from the agent), `working_dir` (default `/`),
//! `run_as_user` (only when the agent runs as root), and the grace period on stop, signalling the
//! whole process group. What it ignores, because a plain process has no such isolation: the image
//! and pull policy, ports and hostPort (the process binds what it binds, on the host network),
//! `host_network`/`host_pid` (always the host's), mounts (the whole host filesystem is visible),
//! CPU and memory limits, and `privileged` (it has the agent's privileges minus `run_as_user`).
//! `exec` runs the probe command on the host with the instance's env, user and working dir.
//! Logs (stdout and stderr together) are appended to `logs/<id>.log`, rotated past 10 MiB with
//! three older files kept (`logs/<id>.log.1` newest), and tails are read from the file's end.
//!
//! State dir layout: `instances/<id>.json` (written once at start), `instances/<id>.exit.json`
//! (written by the agent that started it, when it exits), `logs/<id>.log`.
//!
//! Every instance carries [`INSTANCE_ENV`] and [`STATE_DIR_ENV`] in its environment, so that a
//! process whose record was never written (the agent died between the spawn and the write) can
//! still be recognised as ours and removed: see [`ProcessRuntime::reap_unrecorded`].

use std::collections::HashSet;
use std::fs::{self, OpenOptions};
use std::io::{self};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;

mod logs;
mod procfs;
mod records;

use logs::Follow;
pub use logs::{DEFAULT_KEPT_LOGS, DEFAULT_MAX_LOG_BYTES};
pub(crate) use procfs::read_stat;
use procfs::{boot_id, child_command, process_alive, signal_group, user_switch};
use records::write_json_atomic;
pub(crate) use records::{ExitRecord, Record};

use crate::runtime::{
    instance_name, labels, random_suffix, ContainerRuntime, Instance, InstanceSpec, InstanceState, Result,
    RuntimeError, RuntimeKind,
};

/// `PATH` given to every instance unless its env sets one; the agent's own env is not inherited,
/// as a container's is not.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Environment variable naming the instance a process belongs to.
pub const INSTANCE_ENV: &str = "EVERYNODE_INSTANCE";
/// Environment variable naming the state dir of the runtime that started the process, so that
/// several nodes on one host only ever reap their own.
pub const STATE_DIR_ENV: &str = "EVERYNODE_STATE_DIR";

/// How often `stop` looks whether the process has gone.
const POLL: Duration = Duration::from_millis(20);
/// How long to wait for a SIGKILLed process to disappear before giving up.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// How long `stop` waits for the reaper to record an exit it has seen.
const REAP_WAIT: Duration = Duration::from_secs(1);

/// Runs instances as host processes; the state dir is its memory across agent restarts.
#[derive(Debug, Clone)]
pub struct ProcessRuntime {
    /// Root of `instances/` and `logs/`; one per node (its data dir), never shared by two nodes
    /// that could both remove the same record.
    state_dir: PathBuf,
    /// The state dir as an absolute path, as instances carry it in [`STATE_DIR_ENV`].
    marker: String,
    /// An instance log is rotated past this size ([`DEFAULT_MAX_LOG_BYTES`]).
    max_log_bytes: u64,
    /// Rotated files kept per instance ([`DEFAULT_KEPT_LOGS`]).
    kept_logs: usize,
    /// Instances this runtime started whose exit it has not recorded yet. Between the exit and
    /// the record (the reaper task is a little behind the kernel) such an instance reads as
    /// `Terminating`, not as an exit with an unknown status: that would count a finished init
    /// container as failed and run it again.
    reaping: Arc<Mutex<HashSet<String>>>,
}

impl ProcessRuntime {
    /// Uses (and creates) `state_dir`; `Unavailable` when it cannot be written.
    pub fn new(state_dir: impl Into<PathBuf>) -> Result<Self> {
        let state_dir = state_dir.into();
        for sub in ["instances", "logs"] {
            let dir = state_dir.join(sub);
            fs::create_dir_all(&dir)
                // Records hold the instances' environment, Secret values included.
                .and_then(|()| fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)))
                .map_err(|e| RuntimeError::Unavailable {
                    reason: format!("creating the process runtime state dir {}: {e}", dir.display()),
                    source: Some(e.into()),
                })?;
        }
        let marker = fs::canonicalize(&state_dir)
            .unwrap_or_else(|_| state_dir.clone())
            .to_string_lossy()
            .into_owned();
        Ok(ProcessRuntime {
            state_dir,
            marker,
            max_log_bytes: DEFAULT_MAX_LOG_BYTES,
            kept_logs: DEFAULT_KEPT_LOGS,
            reaping: Arc::default(),
        })
    }

    /// Rotates instance logs past `max_bytes`, keeping `keep` rotated files each.
    pub fn with_log_limits(mut self, max_bytes: u64, keep: usize) -> Self {
        self.max_log_bytes = max_bytes;
        self.kept_logs = keep;
        self
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Where an instance's stdout and stderr go, for `everynode logs`.
    pub fn log_path(&self, id: &str) -> PathBuf {
        self.state_dir.join("logs").join(format!("{id}.log"))
    }

    /// The instance as it is now: Running while the recorded process lives, else Exited.
    pub(crate) fn observe(&self, rec: &Record) -> Instance {
        let alive = process_alive(rec);
        let exit = if alive { None } else { self.read_exit(&rec.id) };
        let state = if alive {
            InstanceState::Running
        } else if exit.is_none() && self.is_reaping(&rec.id) {
            InstanceState::Terminating
        } else {
            InstanceState::Exited {
                code: exit.as_ref().map(|e| e.code),
            }
        };
        let mut instance = Instance::from_labels(rec.id.clone(), rec.id.clone(), state, rec.labels.clone());
        instance.started_at = Some(rec.started_at);
        instance.finished_at = exit.as_ref().map(|e| e.finished_at);
        instance.reason = match &exit {
            Some(ExitRecord {
                signal: Some(sig), ..
            }) => Some(format!("killed by signal {sig}")),
            // Adopted and gone: only its parent could read the status, and that was not us.
            None if !alive => Some("process gone; exit status unknown".to_string()),
            _ => None,
        };
        instance.pid = alive.then_some(rec.pid);
        instance.image = rec.image.clone();
        instance
    }

    fn is_reaping(&self, id: &str) -> bool {
        self.reaping
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(id)
    }

    /// Waits (at most `REAP_WAIT`) for the exit of an instance this runtime started to be
    /// recorded, so that `stop` returns with the exit status known, as Docker's does.
    async fn await_reaped(&self, id: &str) {
        let deadline = Instant::now() + REAP_WAIT;
        while self.is_reaping(id) && Instant::now() < deadline {
            tokio::time::sleep(POLL).await;
        }
    }

    /// Signals the group, then waits until the leader is gone or `wait` has passed; true if gone.
    async fn signal_and_wait(&self, rec: &Record, signal: i32, wait: Duration) -> bool {
        signal_group(rec.pid, signal);
        let deadline = Instant::now() + wait;
        loop {
            if !process_alive(rec) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            tokio::time::sleep(POLL.min(deadline - now)).await;
        }
    }
}

#[async_trait]
impl ContainerRuntime for ProcessRuntime {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Process
    }

    async fn list(&self, cluster: &str, node: &str) -> Result<Vec<Instance>> {
        let records = self.records()?;
        let ours: Vec<&Record> = records
            .iter()
            .filter(|r| labels::belongs_to(&r.labels, cluster, node))
            .collect();
        // Every resync lists: the moment to keep each instance's log within its size.
        for r in &ours {
            let path = self.log_path(&r.id);
            match logs::rotate_if_large(&path, self.max_log_bytes, self.kept_logs) {
                Ok(true) => tracing::debug!(id = %r.id, "rotated the instance log"),
                Ok(false) => {}
                Err(e) => tracing::warn!(id = %r.id, error = %e, "cannot rotate the instance log"),
            }
        }
        Ok(ours.into_iter().map(|r| self.observe(r)).collect())
    }

    async fn create_and_start(&self, spec: &InstanceSpec) -> Result<Instance> {
        if spec.command.is_empty() {
            return Err(RuntimeError::invalid(format!(
                "the process runtime needs a command for container {:?} of {}: there is no image entrypoint to fall back on",
                spec.container_name, spec.daemonset
            )));
        }
        let working_dir = PathBuf::from(spec.working_dir.as_deref().unwrap_or("/"));
        if !working_dir.is_dir() {
            return Err(RuntimeError::invalid(format!(
                "workingDir {} is not a directory on this host",
                working_dir.display()
            )));
        }
        let uid_gid =
            user_switch(spec.run_as_user)?.map(|(uid, gid)| (uid, spec.security.run_as_group.unwrap_or(gid)));
        let ignored = ignored_settings(spec);
        if !ignored.is_empty() {
            tracing::debug!(daemonset = %spec.daemonset, ignored = ?ignored, "process runtime ignores these settings");
        }

        let id = instance_name(spec, &random_suffix());
        let log_path = self.log_path(&id);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| RuntimeError::other(format!("opening log {}", log_path.display()), e))?;
        let log_err = log
            .try_clone()
            .map_err(|e| RuntimeError::other("duplicating the log handle", e))?;

        let argv: Vec<String> = spec.command.iter().chain(&spec.args).cloned().collect();
        let mut env = vec![("PATH".to_string(), DEFAULT_PATH.to_string())];
        env.retain(|(k, _)| !spec.env.iter().any(|(sk, _)| sk == k));
        env.extend(
            spec.env
                .iter()
                .filter(|(k, _)| k != INSTANCE_ENV && k != STATE_DIR_ENV)
                .cloned(),
        );
        // Last, so a spec cannot hide a process from `reap_unrecorded`.
        env.push((INSTANCE_ENV.to_string(), id.clone()));
        env.push((STATE_DIR_ENV.to_string(), self.marker.clone()));

        let mut cmd = child_command(&argv, &env, &working_dir, uid_gid);
        cmd.stdin(Stdio::null()).stdout(log).stderr(log_err);
        let mut child = cmd.spawn().map_err(|e| spawn_error(&argv[0], e))?;
        let pid = child
            .id()
            .ok_or_else(|| RuntimeError::other("spawned child has no pid", io::Error::other("no pid")))?;
        // The child cannot be reaped before `wait` below, so its /proc entry is there to read.
        // Without it the process could never be recognised again, and the agent would start
        // duplicates: refuse instead.
        let Some(stat) = read_stat(pid) else {
            signal_group(pid, libc::SIGKILL);
            let _ = child.wait().await;
            return Err(RuntimeError::Unavailable {
                reason: format!("cannot read /proc/{pid}/stat: the process runtime needs Linux procfs"),
                source: None,
            });
        };
        let start_ticks = stat.start_ticks;
        let rec = Record {
            id: id.clone(),
            labels: labels::for_spec(spec),
            pid,
            start_ticks,
            boot_id: boot_id(),
            started_at: SystemTime::now(),
            image: spec.image.clone(),
            argv,
            env,
            working_dir,
            uid_gid,
        };
        if let Err(e) = write_json_atomic(&self.record_path(&id), &rec) {
            // Without a record nothing could ever stop it again: do not leave it running.
            signal_group(pid, libc::SIGKILL);
            let _ = child.wait().await;
            return Err(RuntimeError::Unavailable {
                reason: format!("writing the record of {id}: {e}"),
                source: Some(e.into()),
            });
        }

        // Reap the child and remember how it ended; if the agent exits first this task just dies
        // with it and the process lives on, adopted by the next agent.
        let exit_path = self.exit_path(&id);
        let record_path = self.record_path(&id);
        let reaping = self.reaping.clone();
        reaping
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone());
        let reaped = id.clone();
        tokio::spawn(async move {
            if let Ok(status) = child.wait().await {
                let exit = ExitRecord {
                    code: status
                        .code()
                        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
                    signal: status.signal(),
                    finished_at: SystemTime::now(),
                };
                // Removed meanwhile: nothing to annotate, and no orphan exit file to leave behind.
                if record_path.exists() {
                    if let Err(e) = write_json_atomic(&exit_path, &exit) {
                        tracing::warn!(path = %exit_path.display(), error = %e, "recording an exit status");
                    }
                }
            }
            // Recorded or not, what there is to know is on disk now.
            reaping.lock().unwrap_or_else(|p| p.into_inner()).remove(&reaped);
        });
        tracing::info!(id = %id, pid, "started process instance");
        Ok(self.observe(&rec))
    }

    async fn stop(&self, id: &str, grace: Duration) -> Result<()> {
        let rec = self.read_record(id)?;
        if !process_alive(&rec) {
            return Ok(());
        }
        if self.signal_and_wait(&rec, libc::SIGTERM, grace).await {
            // The leader went on its own; helpers it left in its group go with it, as in a container.
            signal_group(rec.pid, libc::SIGKILL);
            self.await_reaped(id).await;
            return Ok(());
        }
        tracing::info!(id, ?grace, "grace period over, sending SIGKILL");
        if self.signal_and_wait(&rec, libc::SIGKILL, KILL_WAIT).await {
            self.await_reaped(id).await;
            Ok(())
        } else {
            Err(RuntimeError::Other {
                context: format!("process {} of {id} survived SIGKILL for {KILL_WAIT:?}", rec.pid),
                source: None,
            })
        }
    }

    async fn remove(&self, id: &str) -> Result<()> {
        let rec = self.read_record(id)?;
        if process_alive(&rec) && !self.signal_and_wait(&rec, libc::SIGKILL, KILL_WAIT).await {
            return Err(RuntimeError::Other {
                context: format!("process {} of {id} survived SIGKILL for {KILL_WAIT:?}", rec.pid),
                source: None,
            });
        }
        // The record goes last: until it is gone a retry can still find the rest.
        let rotated = (1..=self.kept_logs).map(|n| logs::rotated(&self.log_path(id), n));
        for path in rotated.chain([self.exit_path(id), self.log_path(id), self.record_path(id)]) {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(RuntimeError::other(format!("removing {}", path.display()), e)),
            }
        }
        Ok(())
    }

    async fn inspect(&self, id: &str) -> Result<Instance> {
        let rec = self.read_record(id)?;
        Ok(self.observe(&rec))
    }

    async fn logs(&self, id: &str, tail: Option<usize>) -> Result<String> {
        self.read_record(id)?;
        let path = self.log_path(id);
        let (bytes, _) = logs::read_tail(&path, tail)
            .await
            .map_err(|e| RuntimeError::other(format!("reading {}", path.display()), e))?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    async fn follow_logs(&self, id: &str, tail: Option<usize>) -> Result<super::LogStream> {
        let rec = self.read_record(id)?;
        let path = self.log_path(id);
        let (first, offset) = logs::read_tail(&path, tail)
            .await
            .map_err(|e| RuntimeError::other(format!("reading {}", path.display()), e))?;
        let follow = Follow {
            rec,
            path,
            offset,
            first: Some(first).filter(|f| !f.is_empty()),
            done: false,
        };
        Ok(Box::pin(futures_util::stream::unfold(follow, Follow::next)))
    }

    async fn exec(&self, id: &str, cmd: &[String], timeout: Duration) -> Result<i32> {
        if cmd.is_empty() {
            return Err(RuntimeError::invalid("exec needs a command"));
        }
        let rec = self.read_record(id)?;
        if !process_alive(&rec) {
            return Err(RuntimeError::NotRunning { id: id.to_string() });
        }
        let mut command = child_command(cmd, &rec.env, &rec.working_dir, rec.uid_gid);
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|e| spawn_error(&cmd[0], e))?;
        match tokio::time::timeout(timeout, child.wait()).await {
            Ok(Ok(status)) => Ok(status
                .code()
                .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))),
            Ok(Err(e)) => Err(RuntimeError::other(format!("waiting for exec {cmd:?}"), e)),
            Err(_) => {
                // Its own session, so this reaches anything the probe started too.
                if let Some(pid) = child.id() {
                    signal_group(pid, libc::SIGKILL);
                }
                let _ = child.wait().await;
                Err(RuntimeError::Timeout {
                    what: format!("exec {cmd:?} for {id}"),
                    after: timeout,
                })
            }
        }
    }
}

fn spawn_error(program: &str, e: io::Error) -> RuntimeError {
    match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied => RuntimeError::InvalidSpec {
            reason: format!("cannot run {program:?}: {e}"),
            source: Some(e.into()),
        },
        _ => RuntimeError::other(format!("starting {program:?}"), e),
    }
}

/// Settings of `spec` this runtime cannot honour, for a debug line.
fn ignored_settings(spec: &InstanceSpec) -> Vec<&'static str> {
    let mut ignored = Vec::new();
    if !spec.ports.is_empty() {
        ignored.push("ports");
    }
    if !spec.mounts.is_empty() {
        ignored.push("mounts");
    }
    if spec.cpu_limit_millis.is_some() || spec.memory_limit_bytes.is_some() {
        ignored.push("limits");
    }
    if spec.privileged {
        ignored.push("privileged");
    }
    let sec = &spec.security;
    if !sec.cap_add.is_empty() || !sec.cap_drop.is_empty() {
        ignored.push("capabilities");
    }
    if sec.read_only_root_fs {
        ignored.push("readOnlyRootFilesystem");
    }
    if sec.seccomp.is_some() || sec.no_new_privileges {
        ignored.push("seccompProfile/allowPrivilegeEscalation");
    }
    if sec.host_ipc {
        ignored.push("hostIPC (always the host's)");
    }
    ignored
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::test_support::spec;

    #[test]
    fn an_exit_not_yet_recorded_by_this_runtime_is_terminating_not_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let rt = ProcessRuntime::new(dir.path()).unwrap();
        let me = std::process::id();
        let ticks = read_stat(me).unwrap().start_ticks;
        // A record whose process is gone (another start time) and whose exit is not on disk.
        let gone = records::tests::record_for(me, ticks + 1, labels::for_spec(&spec("ds", "n1")));
        rt.reaping.lock().unwrap().insert(gone.id.clone());
        assert_eq!(
            rt.observe(&gone).state,
            InstanceState::Terminating,
            "its reaper is behind"
        );
        rt.reaping.lock().unwrap().remove(&gone.id);
        assert_eq!(
            rt.observe(&gone).state,
            InstanceState::Exited { code: None },
            "nobody will record it"
        );
    }

    #[test]
    fn ignored_settings_are_named() {
        let mut s = spec("ds", "n1");
        assert!(ignored_settings(&s).is_empty());
        s.privileged = true;
        s.memory_limit_bytes = Some(1);
        assert_eq!(ignored_settings(&s), vec!["limits", "privileged"]);
    }
}
