//! Restart counts per DaemonSet and container, kept in the data dir so `get pods` still shows them after an agent restart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use tracing::warn;

type Counts = BTreeMap<String, BTreeMap<String, u32>>;

/// Restart counts by DaemonSet, then container. Cheap to clone; every actor of a node shares one.
///
/// The counts are informational (the back-off lives in actor memory and starts afresh after a
/// restart, as kubelet's does), so a file that cannot be read or written is logged, never fatal.
#[derive(Clone, Default)]
pub struct RestartBook {
    /// `None` keeps the counts in memory only (tests, benchmarks).
    path: Option<PathBuf>,
    counts: Arc<Mutex<Counts>>,
}

impl RestartBook {
    /// Counts that live as long as the process.
    pub fn in_memory() -> Self {
        RestartBook::default()
    }

    /// Counts kept in `path`, loaded now; a missing file is an empty book.
    pub fn open(path: &Path) -> Self {
        let counts = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                warn!(path = %path.display(), error = %e, "restart counts unreadable; starting from zero");
                Counts::new()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Counts::new(),
            Err(e) => {
                warn!(path = %path.display(), error = %e, "restart counts unreadable; starting from zero");
                Counts::new()
            }
        };
        RestartBook {
            path: Some(path.to_path_buf()),
            counts: Arc::new(Mutex::new(counts)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The counts of one DaemonSet's containers on this node.
    pub fn get(&self, daemonset: &str) -> BTreeMap<String, u32> {
        self.lock().get(daemonset).cloned().unwrap_or_default()
    }

    /// Records `restarts` for one container; written through at once when it changed.
    pub fn set(&self, daemonset: &str, container: &str, restarts: u32) {
        let mut counts = self.lock();
        let entry = counts.entry(daemonset.to_string()).or_default();
        if entry.get(container) == Some(&restarts) {
            return;
        }
        entry.insert(container.to_string(), restarts);
        self.save(&counts);
    }

    /// Forgets a DaemonSet that no longer runs here: a later instance starts from zero.
    pub fn forget(&self, daemonset: &str) {
        let mut counts = self.lock();
        if counts.remove(daemonset).is_some() {
            self.save(&counts);
        }
    }

    fn save(&self, counts: &Counts) {
        let Some(path) = &self.path else { return };
        let tmp = path.with_extension("tmp");
        // Renamed into place so a crash never leaves half a file behind.
        let result = serde_json::to_vec(counts)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&tmp, bytes))
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = result {
            warn!(path = %path.display(), error = %e, "cannot save restart counts; they restart from zero with the agent");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_survive_reopening_and_forgetting_clears_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("restarts.json");
        let book = RestartBook::open(&path);
        assert!(book.get("logs").is_empty());
        book.set("logs", "main", 3);
        book.set("logs", "sidecar", 1);
        book.set("metrics", "main", 7);

        let again = RestartBook::open(&path);
        assert_eq!(
            again.get("logs"),
            BTreeMap::from([("main".into(), 3), ("sidecar".into(), 1)])
        );
        again.forget("logs");
        let third = RestartBook::open(&path);
        assert!(third.get("logs").is_empty());
        assert_eq!(third.get("metrics")["main"], 7);

        std::fs::write(&path, b"{not json").unwrap();
        assert!(
            RestartBook::open(&path).get("metrics").is_empty(),
            "a bad file is not fatal"
        );
    }
}
