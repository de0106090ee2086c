//! The kernel under the process runtime: `/proc` reading, signals, sessions and user switching; all of its `unsafe` is here.

use std::fs;
use std::io;
use std::path::Path;

use super::*;

impl ProcessRuntime {
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
}

/// A command in a new session (so the whole group can be signalled and it outlives the agent),
/// with exactly `env`, in `dir`, as `uid_gid` when set.
pub(super) fn child_command(
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

/// The uid and gid to switch to, if any. As Docker does, the gid is the user's primary group from
/// the host's passwd, else 0.
pub(super) fn user_switch(run_as_user: Option<u32>) -> Result<Option<(u32, u32)>> {
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

pub(super) fn primary_gid(uid: u32) -> Option<u32> {
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
pub(super) fn signal_group(pgid: u32, signal: i32) {
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

pub(super) fn boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::process::records::tests::record_for;
    use std::collections::BTreeMap;

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
