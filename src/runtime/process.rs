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
//! Logs (stdout and stderr together) are appended to `logs/<id>.log`, without rotation.
//!
//! State dir layout: `instances/<id>.json` (written once at start), `instances/<id>.exit.json`
//! (written by the agent that started it, when it exits), `logs/<id>.log`.
//!
//! Every instance carries [`INSTANCE_ENV`] and [`STATE_DIR_ENV`] in its environment, so that a
//! process whose record was never written (the agent died between the spawn and the write) can
//! still be recognised as ours and removed: see [`ProcessRuntime::reap_unrecorded`].

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{
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

/// How often `follow_logs` looks for new output; a tenth of a second feels live to a person.
const FOLLOW_POLL: Duration = Duration::from_millis(100);
/// Largest chunk `follow_logs` hands out at once, so a burst of output does not sit in memory.
const FOLLOW_CHUNK: u64 = 64 * 1024;

/// How often `stop` looks whether the process has gone.
const POLL: Duration = Duration::from_millis(20);
/// How long to wait for a SIGKILLed process to disappear before giving up.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// Runs instances as host processes; the state dir is its memory across agent restarts.
#[derive(Debug, Clone)]
pub struct ProcessRuntime {
    /// Root of `instances/` and `logs/`; one per node (its data dir), never shared by two nodes
    /// that could both remove the same record.
    state_dir: PathBuf,
    /// The state dir as an absolute path, as instances carry it in [`STATE_DIR_ENV`].
    marker: String,
}

/// What is persisted per instance: enough to find the process again and to run exec probes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    pub id: String,
    pub labels: BTreeMap<String, String>,
    /// Also the process group id: the process calls `setsid` before exec.
    pub pid: u32,
    /// Field 22 of `/proc/<pid>/stat` (clock ticks after boot): a reused pid has another value.
    pub start_ticks: u64,
    /// `/proc/sys/kernel/random/boot_id`: after a reboot the same pid and ticks mean nothing.
    pub boot_id: String,
    pub started_at: SystemTime,
    pub image: String,
    /// Full argv (command then args) as started.
    pub argv: Vec<String>,
    /// Exactly the env it was started with, reused by exec probes.
    pub env: Vec<(String, String)>,
    pub working_dir: PathBuf,
    /// Set when the agent switched user; exec probes run as the same user.
    pub uid_gid: Option<(u32, u32)>,
}

/// How an instance ended, known only to the agent process that started it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ExitRecord {
    /// Exit code, or 128 + signal number as shells and Docker report a signal death.
    pub code: i32,
    pub signal: Option<i32>,
    pub finished_at: SystemTime,
}

impl ProcessRuntime {
    /// Uses (and creates) `state_dir`; `Unavailable` when it cannot be written.
    pub fn new(state_dir: impl Into<PathBuf>) -> Result<Self> {
        let state_dir = state_dir.into();
        for sub in ["instances", "logs"] {
            let dir = state_dir.join(sub);
            fs::create_dir_all(&dir).map_err(|e| RuntimeError::Unavailable {
                reason: format!("creating the process runtime state dir {}: {e}", dir.display()),
                source: Some(e.into()),
            })?;
        }
        let marker = fs::canonicalize(&state_dir)
            .unwrap_or_else(|_| state_dir.clone())
            .to_string_lossy()
            .into_owned();
        Ok(ProcessRuntime { state_dir, marker })
    }

    /// Kills every process that carries this state dir's mark but whose instance has no record,
    /// and drops its log: the agent died after starting it and before writing the record, so
    /// nothing would ever adopt or stop it. Returns the ids reaped.
    ///
    /// Call it before the first `create_and_start` of an agent: a create in flight has a
    /// process and not yet a record. The data dir lock guarantees no other agent is creating.
    pub fn reap_unrecorded(&self) -> Vec<String> {
        let me = std::process::id();
        let mut reaped = Vec::new();
        for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if pid == me {
                continue;
            }
            // Processes of other users cannot be read; they are not ours anyway.
            let Ok(environ) = fs::read(entry.path().join("environ")) else {
                continue;
            };
            let Some(id) = marked_instance(&environ, &self.marker) else {
                continue;
            };
            if self.record_path(&id).exists() || id.is_empty() || id.contains('/') {
                continue;
            }
            tracing::warn!(pid, id = %id, "killing a process started for an instance whose record was never written");
            // The instance leader leads its own group; helpers it started may have left it.
            signal_group(pid, libc::SIGKILL);
            // SAFETY: kill has no memory-safety preconditions; the pid carries our mark.
            unsafe {
                libc::kill(pid as i32, libc::SIGKILL);
            }
            let _ = fs::remove_file(self.log_path(&id));
            if !reaped.contains(&id) {
                reaped.push(id);
            }
        }
        reaped
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Where an instance's stdout and stderr go, for `everynode logs`.
    pub fn log_path(&self, id: &str) -> PathBuf {
        self.state_dir.join("logs").join(format!("{id}.log"))
    }

    fn record_path(&self, id: &str) -> PathBuf {
        self.state_dir.join("instances").join(format!("{id}.json"))
    }

    fn exit_path(&self, id: &str) -> PathBuf {
        self.state_dir.join("instances").join(format!("{id}.exit.json"))
    }

    /// Reads a record; ids become file names, so anything path-like is simply not found.
    fn read_record(&self, id: &str) -> Result<Record> {
        if id.is_empty() || id.contains('/') || id.starts_with('.') {
            return Err(RuntimeError::NotFound { id: id.to_string() });
        }
        let path = self.record_path(id);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(RuntimeError::NotFound { id: id.to_string() })
            }
            Err(e) => return Err(RuntimeError::other(format!("reading {}", path.display()), e)),
        };
        serde_json::from_slice(&bytes)
            .map_err(|e| RuntimeError::other(format!("parsing {}", path.display()), e))
    }

    fn read_exit(&self, id: &str) -> Option<ExitRecord> {
        let bytes = fs::read(self.exit_path(id)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// The instance as it is now: Running while the recorded process lives, else Exited.
    pub(crate) fn observe(&self, rec: &Record) -> Instance {
        let alive = process_alive(rec);
        let exit = if alive { None } else { self.read_exit(&rec.id) };
        let state = if alive {
            InstanceState::Running
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

    /// Every record in the state dir; a corrupt one is logged and skipped, not fatal, so one bad
    /// file cannot stop a node from converging.
    pub(crate) fn records(&self) -> Result<Vec<Record>> {
        let dir = self.state_dir.join("instances");
        let entries = fs::read_dir(&dir).map_err(|e| RuntimeError::Unavailable {
            reason: format!("reading {}: {e}", dir.display()),
            source: Some(e.into()),
        })?;
        let mut records = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(id) = name.strip_suffix(".json") else {
                continue;
            };
            if id.ends_with(".exit") {
                continue;
            }
            match self.read_record(id) {
                Ok(rec) => records.push(rec),
                Err(RuntimeError::NotFound { .. }) => {}
                Err(e) => {
                    tracing::warn!(file = %entry.path().display(), error = %e, "skipping unreadable instance record")
                }
            }
        }
        records.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(records)
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
        Ok(self
            .records()?
            .iter()
            .filter(|r| labels::belongs_to(&r.labels, cluster, node))
            .map(|r| self.observe(r))
            .collect())
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
        let uid_gid = user_switch(spec.run_as_user)?;
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
        tokio::spawn(async move {
            let Ok(status) = child.wait().await else { return };
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
            return Ok(());
        }
        tracing::info!(id, ?grace, "grace period over, sending SIGKILL");
        if self.signal_and_wait(&rec, libc::SIGKILL, KILL_WAIT).await {
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
        for path in [self.exit_path(id), self.log_path(id), self.record_path(id)] {
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
        match tokio::fs::read(&path).await {
            Ok(bytes) => Ok(super::tail_lines(&String::from_utf8_lossy(&bytes), tail)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(RuntimeError::other(format!("reading {}", path.display()), e)),
        }
    }

    async fn follow_logs(&self, id: &str, tail: Option<usize>) -> Result<super::LogStream> {
        let rec = self.read_record(id)?;
        let path = self.log_path(id);
        let start = match tokio::fs::read(&path).await {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(RuntimeError::other(format!("reading {}", path.display()), e)),
        };
        let offset = start.len() as u64;
        let first = super::tail_lines(&String::from_utf8_lossy(&start), tail).into_bytes();
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

/// Where `follow_logs` is in one instance's log file.
struct Follow {
    rec: Record,
    path: PathBuf,
    /// Bytes of the file already handed out.
    offset: u64,
    /// The tail read at the start, handed out first.
    first: Option<Vec<u8>>,
    /// An error was handed out: the stream ends.
    done: bool,
}

impl Follow {
    async fn next(mut self) -> Option<(Result<Vec<u8>>, Follow)> {
        if let Some(first) = self.first.take() {
            return Some((Ok(first), self));
        }
        while !self.done {
            // Liveness first: whatever the process wrote before it died is in the file by now,
            // so one more read drains it.
            let alive = process_alive(&self.rec);
            match read_from(&self.path, self.offset).await {
                Ok(Some(chunk)) if !chunk.is_empty() => {
                    self.offset += chunk.len() as u64;
                    return Some((Ok(chunk), self));
                }
                Ok(Some(_)) if alive => tokio::time::sleep(FOLLOW_POLL).await,
                Ok(Some(_)) => return None,
                // Removed: nothing more will come.
                Ok(None) => return None,
                Err(e) => {
                    self.done = true;
                    let err = RuntimeError::other(format!("following {}", self.path.display()), e);
                    return Some((Err(err), self));
                }
            }
            // A file cut shorter than what was read (by hand) is followed from its start again.
            if tokio::fs::metadata(&self.path)
                .await
                .is_ok_and(|m| m.len() < self.offset)
            {
                self.offset = 0;
            }
        }
        None
    }
}

/// Up to [`FOLLOW_CHUNK`] bytes of `path` from `offset`; `None` when the file is gone.
async fn read_from(path: &Path, offset: u64) -> io::Result<Option<Vec<u8>>> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut file = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    file.seek(io::SeekFrom::Start(offset)).await?;
    let mut chunk = Vec::new();
    file.take(FOLLOW_CHUNK).read_to_end(&mut chunk).await?;
    Ok(Some(chunk))
}

/// A command in a new session (so the whole group can be signalled and it outlives the agent),
/// with exactly `env`, in `dir`, as `uid_gid` when set.
fn child_command(
    argv: &[String],
    env: &[(String, String)],
    dir: &Path,
    uid_gid: Option<(u32, u32)>,
) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(dir)
        .kill_on_drop(false);
    if let Some((uid, gid)) = uid_gid {
        cmd.gid(gid).uid(uid);
    }
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(io::Error::last_os_error());
            }
            // Descriptors the agent inherited without close-on-exec (a lock a supervisor
            // holds, a socket) must not leak into workloads that outlive the agent, where they
            // would keep that lock or socket alive. Marking them close-on-exec rather than
            // closing them keeps std's exec-error pipe working.
            if libc::close_range(3, libc::c_uint::MAX, libc::CLOSE_RANGE_CLOEXEC as libc::c_int) == -1 {
                for fd in 3..1024 {
                    libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
                }
            }
            Ok(())
        });
    }
    cmd
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

/// The uid and gid to switch to, if any. As Docker does, the gid is the user's primary group from
/// the host's passwd, else 0.
fn user_switch(run_as_user: Option<u32>) -> Result<Option<(u32, u32)>> {
    let Some(uid) = run_as_user else { return Ok(None) };
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if euid == uid {
        return Ok(None);
    }
    if euid != 0 {
        return Err(RuntimeError::invalid(format!(
            "runAsUser {uid}: the agent runs as uid {euid} and cannot switch users; run it as root or drop runAsUser"
        )));
    }
    Ok(Some((uid, primary_gid(uid).unwrap_or(0))))
}

fn primary_gid(uid: u32) -> Option<u32> {
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: passwd is plain old data; getpwuid_r writes only into `pwd` and `buf`, whose
    // lengths are passed, and `result` is read only when it is set.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut result = std::ptr::null_mut();
        let rc = libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result);
        (rc == 0 && !result.is_null()).then_some(pwd.pw_gid)
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
    ignored
}

/// The instance id in a `/proc/<pid>/environ` (NUL-separated `KEY=VALUE`), if the process
/// carries the mark of the runtime whose state dir is `marker`.
pub(crate) fn marked_instance(environ: &[u8], marker: &str) -> Option<String> {
    let mut id = None;
    let mut ours = false;
    for var in environ.split(|b| *b == 0) {
        let var = String::from_utf8_lossy(var);
        if let Some(v) = var.strip_prefix(INSTANCE_ENV).and_then(|r| r.strip_prefix('=')) {
            id = Some(v.to_string());
        } else if let Some(v) = var.strip_prefix(STATE_DIR_ENV).and_then(|r| r.strip_prefix('=')) {
            ours = v == marker;
        }
    }
    id.filter(|_| ours)
}

/// Sends `signal` to the process group led by `pgid`; a group already gone is fine.
fn signal_group(pgid: u32, signal: i32) {
    let Ok(pgid) = i32::try_from(pgid) else { return };
    // pid 0 or 1 would signal our own group or everything: never valid for an instance.
    if pgid <= 1 {
        return;
    }
    // SAFETY: kill has no memory-safety preconditions.
    unsafe {
        libc::kill(-pgid, signal);
    }
}

/// The fields of `/proc/<pid>/stat` this module needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stat {
    pub state: char,
    pub start_ticks: u64,
}

pub(crate) fn read_stat(pid: u32) -> Option<Stat> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Parses `pid (comm) state ... starttime ...`; `comm` may hold spaces and `)`, so fields are
/// counted from the last `)`.
pub(crate) fn parse_stat(line: &str) -> Option<Stat> {
    let after = &line[line.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // fields[0] is field 3 (state), so field 22 (starttime) is fields[19].
    Some(Stat {
        state: fields.first()?.chars().next()?,
        start_ticks: fields.get(19)?.parse().ok()?,
    })
}

/// Whether the recorded process still runs: same boot, same pid, same start time, not a zombie.
pub(crate) fn process_alive(rec: &Record) -> bool {
    if !rec.boot_id.is_empty() && rec.boot_id != boot_id() {
        return false;
    }
    match read_stat(rec.pid) {
        Some(stat) => stat.start_ticks == rec.start_ticks && !matches!(stat.state, 'Z' | 'X' | 'x'),
        None => false,
    }
}

fn boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Writes via a temporary file, fsync and rename, so a crash never leaves half a record.
fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let tmp = path.with_extension(format!("tmp.{}", random_suffix()));
    let result = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(&serde_json::to_vec_pretty(value)?)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::test_support::spec;

    fn record_for(pid: u32, start_ticks: u64, labels: BTreeMap<String, String>) -> Record {
        Record {
            id: format!("everynode_ds_n1_rev1_{pid:08x}"),
            labels,
            pid,
            start_ticks,
            boot_id: boot_id(),
            started_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            image: "ignored:v1".into(),
            argv: vec!["sleep".into(), "60".into()],
            env: vec![("PATH".into(), DEFAULT_PATH.into())],
            working_dir: "/".into(),
            uid_gid: None,
        }
    }

    #[test]
    fn stat_parsing_survives_odd_process_names() {
        let line =
            "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                state: 'S',
                start_ticks: 987_654
            })
        );
        assert_eq!(parse_stat("1234 (short) S 1"), None);
        assert_eq!(parse_stat("garbage"), None);
        let me = read_stat(std::process::id()).unwrap();
        assert!(me.start_ticks > 0);
    }

    #[test]
    fn a_live_pid_with_another_start_time_is_not_ours() {
        let me = std::process::id();
        let ticks = read_stat(me).unwrap().start_ticks;
        assert!(process_alive(&record_for(me, ticks, BTreeMap::new())));
        assert!(!process_alive(&record_for(me, ticks + 1, BTreeMap::new())));
        let mut other_boot = record_for(me, ticks, BTreeMap::new());
        other_boot.boot_id = "another-boot".into();
        assert!(!process_alive(&other_boot));
        assert!(!process_alive(&record_for(u32::MAX - 1, ticks, BTreeMap::new())));
    }

    #[test]
    fn records_round_trip_and_drive_list_state() {
        let dir = tempfile::tempdir().unwrap();
        let rt = ProcessRuntime::new(dir.path()).unwrap();
        let me = std::process::id();
        let ticks = read_stat(me).unwrap().start_ticks;
        let labels = labels::for_spec(&spec("ds", "n1"));

        let running = record_for(me, ticks, labels.clone());
        write_json_atomic(&rt.record_path(&running.id), &running).unwrap();
        assert_eq!(rt.read_record(&running.id).unwrap(), running);

        let mut gone = record_for(me, ticks + 1, labels.clone());
        gone.id = "everynode_ds_n1_rev1_gone".into();
        write_json_atomic(&rt.record_path(&gone.id), &gone).unwrap();

        let mut exited = record_for(me, ticks + 2, labels.clone());
        exited.id = "everynode_ds_n1_rev1_exited".into();
        write_json_atomic(&rt.record_path(&exited.id), &exited).unwrap();
        let exit = ExitRecord {
            code: 143,
            signal: Some(15),
            finished_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_100),
        };
        write_json_atomic(&rt.exit_path(&exited.id), &exit).unwrap();

        let mut other_node = record_for(me, ticks, labels::for_spec(&spec("ds", "n2")));
        other_node.id = "everynode_ds_n2_rev1_x".into();
        write_json_atomic(&rt.record_path(&other_node.id), &other_node).unwrap();
        fs::write(rt.record_path("corrupt"), b"{not json").unwrap();

        let rt2 = rt.clone();
        let list = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(async move { rt2.list("c1", "n1").await })
            .unwrap();
        let by_id: BTreeMap<_, _> = list.iter().map(|i| (i.id.as_str(), i)).collect();
        assert_eq!(
            by_id.len(),
            3,
            "other node and corrupt records are not listed: {list:?}"
        );
        let r = by_id[running.id.as_str()];
        assert_eq!(r.state, InstanceState::Running);
        assert_eq!(r.pid, Some(me));
        assert_eq!((r.daemonset.as_str(), r.revision.as_str()), ("ds", "rev1"));
        assert_eq!(r.started_at, Some(running.started_at));
        let g = by_id[gone.id.as_str()];
        assert_eq!(g.state, InstanceState::Exited { code: None });
        assert_eq!(g.pid, None);
        let e = by_id[exited.id.as_str()];
        assert_eq!(e.state, InstanceState::Exited { code: Some(143) });
        assert_eq!(e.finished_at, Some(exit.finished_at));
        assert_eq!(e.reason.as_deref(), Some("killed by signal 15"));
    }

    #[test]
    fn only_processes_marked_with_this_state_dir_are_ours() {
        let env = |vars: &[&str]| vars.join("\0").into_bytes();
        let mine = env(&[
            "PATH=/bin",
            "EVERYNODE_INSTANCE=everynode_a_n1_r_1",
            "EVERYNODE_STATE_DIR=/d/n1/process",
        ]);
        assert_eq!(
            marked_instance(&mine, "/d/n1/process").as_deref(),
            Some("everynode_a_n1_r_1")
        );
        assert_eq!(marked_instance(&mine, "/d/n2/process"), None, "another node's");
        let unmarked = env(&["PATH=/bin", "EVERYNODE_INSTANCE_X=1"]);
        assert_eq!(marked_instance(&unmarked, "/d/n1/process"), None);
        assert_eq!(marked_instance(b"", "/d/n1/process"), None);
    }

    #[test]
    fn path_like_ids_are_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let rt = ProcessRuntime::new(dir.path()).unwrap();
        for id in ["", "../x", ".hidden", "a/b", "missing"] {
            assert!(
                matches!(rt.read_record(id), Err(RuntimeError::NotFound { .. })),
                "{id:?}"
            );
        }
    }

    #[test]
    fn ignored_settings_are_named() {
        let mut s = spec("ds", "n1");
        assert!(ignored_settings(&s).is_empty());
        s.privileged = true;
        s.memory_limit_bytes = Some(1);
        assert_eq!(ignored_settings(&s), vec!["limits", "privileged"]);
    }

    #[test]
    fn switching_to_our_own_user_needs_no_privilege() {
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        assert_eq!(user_switch(Some(me)).unwrap(), None);
        assert_eq!(user_switch(None).unwrap(), None);
        if me == 0 {
            assert_eq!(user_switch(Some(0)).unwrap(), None);
            let (uid, _gid) = user_switch(Some(65534)).unwrap().unwrap();
            assert_eq!(uid, 65534);
        } else {
            assert!(matches!(
                user_switch(Some(0)),
                Err(RuntimeError::InvalidSpec { .. })
            ));
        }
    }
}
