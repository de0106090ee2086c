//! Instance records: what the process runtime writes per instance so that a later agent finds, adopts and stops it.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::*;

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
    pub(super) fn record_path(&self, id: &str) -> PathBuf {
        self.state_dir.join("instances").join(format!("{id}.json"))
    }

    pub(super) fn exit_path(&self, id: &str) -> PathBuf {
        self.state_dir.join("instances").join(format!("{id}.exit.json"))
    }

    /// Reads a record; ids become file names, so anything path-like is simply not found.
    pub(super) fn read_record(&self, id: &str) -> Result<Record> {
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

    pub(super) fn read_exit(&self, id: &str) -> Option<ExitRecord> {
        let bytes = fs::read(self.exit_path(id)).ok()?;
        serde_json::from_slice(&bytes).ok()
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
}

/// Writes via a temporary file, fsync and rename, so a crash never leaves half a record.
pub(super) fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
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
pub(crate) mod tests {
    use super::*;
    use crate::runtime::test_support::spec;

    pub(crate) fn record_for(pid: u32, start_ticks: u64, labels: BTreeMap<String, String>) -> Record {
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
}
