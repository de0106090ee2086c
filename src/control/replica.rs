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

    /// The Raft group whose log the version counts; versions of two epochs do not compare.
    fn epoch(&self) -> &str {
        ""
    }
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

    /// The epoch of the copy held now.
    pub fn epoch(&self) -> String {
        self.tx.borrow().epoch().to_string()
    }

    /// Takes `store` if it is newer than ours in the same epoch: written to disk first, then
    /// published. Returns whether it was taken.
    pub fn offer(&self, store: S) -> Result<bool, ReplicaError> {
        let ours = self.current();
        // A copy without an epoch yet (a fresh node, or one written before epochs) compares
        // by version alone.
        let same_epoch = store.epoch() == ours.epoch() || ours.epoch().is_empty();
        if !same_epoch || store.version() <= ours.version() {
            return Ok(false);
        }
        self.take(store)
    }

    /// Takes `store` if it belongs to another epoch than ours (the group now in charge), or is
    /// newer in the same one: for the copy of the group this node follows, whatever the version
    /// number of the copy it held.
    pub fn replace(&self, store: S) -> Result<bool, ReplicaError> {
        let (epoch, version) = {
            let current = self.tx.borrow();
            (current.epoch().to_string(), current.version())
        };
        if store.epoch() == epoch && store.version() <= version {
            return Ok(false);
        }
        self.take(store)
    }

    fn take(&self, store: S) -> Result<bool, ReplicaError> {
        write_atomically(
            &self.path,
            &serde_json::to_vec(&store).expect("a store always serializes"),
        )?;
        self.tx.send_if_modified(|current| {
            if store.version() > current.version() || store.epoch() != current.epoch() {
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
        #[serde(default)]
        epoch: String,
    }

    impl Versioned for Doc {
        fn version(&self) -> u64 {
            self.version
        }

        fn epoch(&self) -> &str {
            &self.epoch
        }
    }

    fn doc(epoch: &str, version: u64) -> Doc {
        Doc {
            version,
            body: format!("{epoch}@{version}"),
            epoch: epoch.into(),
        }
    }

    #[test]
    fn a_copy_of_another_epoch_is_never_offered_in_but_replaces_when_its_group_is_in_charge() {
        let dir = tempfile::tempdir().unwrap();
        let replica: Replica<Doc> = Replica::open(&dir.path().join("store.json")).unwrap();
        assert!(
            replica.offer(doc("a", 500)).unwrap(),
            "a fresh copy takes any epoch"
        );
        assert!(
            !replica.offer(doc("b", 3)).unwrap(),
            "a lower number of another group"
        );
        assert!(
            !replica.offer(doc("b", 900)).unwrap(),
            "a higher number of another group"
        );
        assert!(replica.offer(doc("a", 501)).unwrap());
        assert!(
            replica.replace(doc("b", 3)).unwrap(),
            "the group in charge wins at any number"
        );
        assert_eq!(replica.epoch(), "b");
        assert!(
            !replica.replace(doc("b", 3)).unwrap(),
            "the same copy again changes nothing"
        );
        assert!(replica.offer(doc("b", 4)).unwrap());
        let reopened: Replica<Doc> = Replica::open(&dir.path().join("store.json")).unwrap();
        assert_eq!(
            *reopened.current(),
            doc("b", 4),
            "the replaced copy is the one on disk"
        );
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
                body: "three".into(),
                epoch: String::new(),
            })
            .unwrap());
        assert!(rx.has_changed().unwrap());
        assert!(!replica
            .offer(Doc {
                version: 2,
                body: "older".into(),
                epoch: String::new(),
            })
            .unwrap());
        assert!(!replica
            .offer(Doc {
                version: 3,
                body: "same".into(),
                epoch: String::new(),
            })
            .unwrap());
        assert_eq!(replica.current().body, "three");

        let reopened: Replica<Doc> = Replica::open(&path).unwrap();
        assert_eq!(
            *reopened.current(),
            Doc {
                version: 3,
                body: "three".into(),
                epoch: String::new(),
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
