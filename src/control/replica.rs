//! This node's copy of the committed store: kept on disk so a restarted node runs what it ran, and published to the rest of the node on change.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::watch;

/// A store snapshot that knows which committed state it is: the Raft index it was applied up
/// to. One index names exactly one state, so a higher version is always newer.
pub trait Versioned: Serialize + DeserializeOwned + Clone + Default + Send + Sync + 'static {
    fn version(&self) -> u64;
}

/// Errors reading or writing the on-disk copy.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file exists but is not a store; the node refuses to guess what it should run.
    #[error("{path} is not a valid store copy ({source}); move it away to start from the cluster's copy")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// The local copy; cloneable, shared by the API (reads), the sync loop and the agent.
#[derive(Clone)]
pub struct Replica<S: Versioned> {
    tx: Arc<watch::Sender<Arc<S>>>,
    path: PathBuf,
    /// Why this copy is behind a newer one that peers hold, while it is (shown in `/metrics`).
    stale: Arc<std::sync::Mutex<Option<String>>>,
}

impl<S: Versioned> Replica<S> {
    /// Loads the last copy from `path`, or starts empty when there is none.
    pub fn open(path: &Path) -> Result<Self, ReplicaError> {
        let store = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| ReplicaError::Corrupt {
                path: path.to_path_buf(),
                source,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => S::default(),
            Err(source) => {
                return Err(ReplicaError::Io {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        let (tx, _) = watch::channel(Arc::new(store));
        Ok(Replica {
            tx: Arc::new(tx),
            path: path.to_path_buf(),
            stale: Arc::default(),
        })
    }

    pub fn current(&self) -> Arc<S> {
        self.tx.borrow().clone()
    }

    pub fn version(&self) -> u64 {
        self.tx.borrow().version()
    }

    /// Why this copy is stale (a newer one could not be fetched or saved), or `None` when it is
    /// as new as any peer's.
    pub fn stale(&self) -> Option<String> {
        self.stale.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set_stale(&self, why: Option<String>) {
        *self.stale.lock().unwrap_or_else(|e| e.into_inner()) = why;
    }

    /// Changes are seen by every subscriber; the current value is there from the start.
    pub fn subscribe(&self) -> watch::Receiver<Arc<S>> {
        self.tx.subscribe()
    }

    /// Takes `store` if it is newer than ours: written to disk first, then published.
    /// Returns whether it was taken.
    pub fn offer(&self, store: S) -> Result<bool, ReplicaError> {
        if store.version() <= self.version() {
            return Ok(false);
        }
        write_atomically(
            &self.path,
            &serde_json::to_vec(&store).expect("a store always serializes"),
        )?;
        self.tx.send_if_modified(|current| {
            if store.version() > current.version() {
                *current = Arc::new(store);
                true
            } else {
                false
            }
        });
        Ok(true)
    }
}

/// Write-to-temp, fsync, rename: a crash leaves either the old copy or the new one.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ReplicaError> {
    let io = |source| ReplicaError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
    struct Doc {
        version: u64,
        body: String,
    }

    impl Versioned for Doc {
        fn version(&self) -> u64 {
            self.version
        }
    }

    #[test]
    fn only_newer_copies_are_taken_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.json");
        let replica: Replica<Doc> = Replica::open(&path).unwrap();
        assert_eq!(replica.version(), 0);
        let rx = replica.subscribe();
        assert!(replica
            .offer(Doc {
                version: 3,
                body: "three".into()
            })
            .unwrap());
        assert!(rx.has_changed().unwrap());
        assert!(!replica
            .offer(Doc {
                version: 2,
                body: "older".into()
            })
            .unwrap());
        assert!(!replica
            .offer(Doc {
                version: 3,
                body: "same".into()
            })
            .unwrap());
        assert_eq!(replica.current().body, "three");

        let reopened: Replica<Doc> = Replica::open(&path).unwrap();
        assert_eq!(
            *reopened.current(),
            Doc {
                version: 3,
                body: "three".into()
            }
        );
    }

    #[test]
    fn a_corrupt_copy_is_reported_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.json");
        std::fs::write(&path, b"{not json").unwrap();
        let err = Replica::<Doc>::open(&path).err().unwrap().to_string();
        assert!(
            err.contains("store.json") && err.contains("move it away"),
            "{err}"
        );
    }
}
