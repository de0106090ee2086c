//! What an instance needs on this host before it starts: its pod facts, the ConfigMaps and Secrets of its namespace as the store holds them, its volume files written and swapped atomically, emptyDirs made and hostPath types checked as kubelet checks them.

use std::collections::BTreeSet;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::podfiles::{self, ConfigError, Data, Objects, PodContext};
use super::AgentError;
use crate::control::store::Store;
use crate::security::at_rest::SecretBox;
use crate::spec::downward::{PodFacts, ResourceList};
use crate::spec::pod::{HostPathType, PodTemplateSpec};
use crate::spec::Quantity;

/// The ConfigMaps and Secrets of one namespace, read from this node's store copy.
pub struct StoreObjects<'a> {
    pub store: &'a Store,
    pub namespace: &'a str,
    /// Opens sealed Secret values; without it, no Secret is found.
    pub seal: Option<&'a SecretBox>,
}

impl Objects for StoreObjects<'_> {
    fn config_map(&self, name: &str) -> Option<Data> {
        let key = crate::control::configs::key(self.namespace, name);
        self.store.config_maps.get(&key).map(|r| r.config_map.bytes())
    }

    fn secret(&self, name: &str) -> Option<Data> {
        let key = crate::control::configs::key(self.namespace, name);
        let record = self.store.secrets.get(&key)?;
        match record.secret.open(self.seal?) {
            Ok(secret) => secret.decoded(),
            Err(e) => {
                // Never the value: only which Secret could not be opened.
                tracing::warn!(error = %e, "cannot open a secret of the store");
                None
            }
        }
    }
}

/// The same objects with every value emptied: what an instance's identity is computed over,
/// so a changed ConfigMap value reaches a running container through its files and the next
/// start, but does not replace it (as in Kubernetes).
pub struct Masked<'a>(pub &'a dyn Objects);

impl Objects for Masked<'_> {
    fn config_map(&self, name: &str) -> Option<Data> {
        Some(blank(self.0.config_map(name)?))
    }

    fn secret(&self, name: &str) -> Option<Data> {
        Some(blank(self.0.secret(name)?))
    }
}

fn blank(data: Data) -> Data {
    data.into_keys().map(|k| (k, Vec::new())).collect()
}

/// No ConfigMaps or Secrets at all (tests, and templates that read none).
pub struct NoObjects;

impl Objects for NoObjects {
    fn config_map(&self, _: &str) -> Option<Data> {
        None
    }

    fn secret(&self, _: &str) -> Option<Data> {
        None
    }
}

/// Everything besides the template that an instance is made from on this node.
pub struct PodSetup<'a> {
    pub objects: &'a dyn Objects,
    pub facts: PodFacts,
    pub allocatable: Option<&'a ResourceList>,
    /// The directory of this pod's volumes (see [`pod_dir`]).
    pub dir: PathBuf,
    /// Where `seccompProfile.localhostProfile` files are read from (`DATA_DIR/seccomp`).
    pub seccomp_dir: PathBuf,
}

impl PodSetup<'_> {
    pub fn context<'b>(&'b self, template: &'b PodTemplateSpec) -> PodContext<'b> {
        PodContext {
            facts: &self.facts,
            containers: &template.spec.containers,
            allocatable: self.allocatable,
        }
    }

    /// Where volume `name` lives on the host.
    pub fn volume_dir(&self, name: &str) -> PathBuf {
        self.dir.join("volumes").join(name)
    }
}

/// `ROOT/NAMESPACE_DAEMONSET/REVISION`: one directory per revision, so during a surge the old
/// and the new instance each keep their own files.
pub fn pod_dir(root: &Path, namespace: &str, daemonset: &str, revision: &str) -> PathBuf {
    root.join(format!("{namespace}_{daemonset}")).join(revision)
}

/// Creates the root of the pod directories owner-only, once at start: Secret files live below.
/// A container sees its volume through the bind mount, whatever the permissions above it.
pub fn create_root(root: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(root)?;
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))
}

/// A pod uid: stable for one instance (same DaemonSet, node, revision and `delete pod`
/// count) and new for its replacement, in the UUID form Kubernetes uses.
pub fn uid(
    cluster: &str,
    namespace: &str,
    daemonset: &str,
    node: &str,
    revision: &str,
    generation: u64,
) -> String {
    let seed = format!("{cluster}/{namespace}/{daemonset}/{node}/{revision}/{generation}");
    let a = crate::runtime::fnv1a(seed.as_bytes());
    let b = crate::runtime::fnv1a(format!("{seed}#").as_bytes());
    let hex = format!("{a:016x}{b:016x}");
    format!(
        "{}-{}-4{}-8{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

/// This host's allocatable CPU and memory, for `resourceFieldRef` without a limit.
pub fn allocatable() -> ResourceList {
    let mut out = ResourceList::new();
    if let Ok(n) = std::thread::available_parallelism() {
        out.insert("cpu".into(), Quantity(n.get().to_string()));
    }
    let total_kib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|text| {
        text.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    });
    if let Some(kib) = total_kib {
        out.insert("memory".into(), Quantity(format!("{kib}Ki")));
    }
    out
}

/// Writes every configMap, secret, downwardAPI and projected volume of `template` (unchanged
/// files are not touched), makes its emptyDirs and checks its hostPath types. An error keeps
/// the instance from starting, with kubelet's words for it.
pub fn prepare(daemonset: &str, template: &PodTemplateSpec, setup: &PodSetup) -> Result<(), AgentError> {
    let ctx = setup.context(template);
    for v in &template.spec.volumes {
        if let Some(hp) = &v.host_path {
            check_host_path(&hp.path, hp.type_).map_err(|reason| AgentError::Volume {
                daemonset: daemonset.to_string(),
                volume: v.name.clone(),
                reason,
            })?;
            continue;
        }
        let dir = setup.volume_dir(&v.name);
        let io = |e: std::io::Error| AgentError::Volume {
            daemonset: daemonset.to_string(),
            volume: v.name.clone(),
            reason: format!("cannot write {}: {e}", dir.display()),
        };
        if let Some(source) = &v.empty_dir {
            let fail = |reason: String| AgentError::Volume {
                daemonset: daemonset.to_string(),
                volume: v.name.clone(),
                reason,
            };
            let kind = podfiles::empty_dir(source, &template.spec.containers, setup.allocatable)
                .map_err(|e| fail(format!("sizeLimit: {e}")))?;
            let fresh = !dir.exists();
            std::fs::create_dir_all(&dir).map_err(io)?;
            if let podfiles::EmptyDir::Tmpfs { size_bytes } = kind {
                if !is_mount_point(&dir) {
                    mount_tmpfs(&dir, size_bytes).map_err(fail)?;
                }
            }
            // World-writable as kubelet makes it: the container may run as any user. Only
            // when made, so what the instance did to it since is left alone.
            if fresh || matches!(kind, podfiles::EmptyDir::Tmpfs { .. }) {
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).map_err(io)?;
            }
            continue;
        }
        let files = podfiles::project(v, &ctx, setup.objects).map_err(|e| config_error(daemonset, e))?;
        if let Some(files) = files {
            std::fs::create_dir_all(&dir).map_err(io)?;
            podfiles::write_atomically(&dir, &files).map_err(io)?;
        }
    }
    Ok(())
}

pub fn config_error(daemonset: &str, e: ConfigError) -> AgentError {
    AgentError::Config {
        daemonset: daemonset.to_string(),
        reason: e.to_string(),
    }
}

/// kubelet's hostPath type check, creating what the `...OrCreate` types create.
pub fn check_host_path(path: &str, type_: Option<HostPathType>) -> Result<(), String> {
    let Some(t) = type_ else {
        return Ok(());
    };
    let p = Path::new(path);
    let meta = std::fs::metadata(p);
    let fail = |what: &str| Err(format!("hostPath type check failed: {path} is not {what}"));
    match t {
        HostPathType::DirectoryOrCreate => match meta {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => fail("a directory"),
            Err(_) => std::fs::create_dir_all(p)
                .and_then(|()| std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)))
                .map_err(|e| format!("cannot create directory {path} for a DirectoryOrCreate hostPath: {e}")),
        },
        HostPathType::FileOrCreate => match meta {
            Ok(m) if m.is_file() => Ok(()),
            Ok(_) => fail("a file"),
            Err(_) => std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .and_then(|f| f.set_permissions(std::fs::Permissions::from_mode(0o644)))
                .map_err(|e| format!("cannot create file {path} for a FileOrCreate hostPath: {e}")),
        },
        HostPathType::Directory => match meta {
            Ok(m) if m.is_dir() => Ok(()),
            _ => fail("a directory"),
        },
        HostPathType::File => match meta {
            Ok(m) if m.is_file() => Ok(()),
            _ => fail("a file"),
        },
        HostPathType::Socket => match meta {
            Ok(m) if m.file_type().is_socket() => Ok(()),
            _ => fail("a socket file"),
        },
        HostPathType::CharDevice => match meta {
            Ok(m) if m.file_type().is_char_device() => Ok(()),
            _ => fail("a character device"),
        },
        HostPathType::BlockDevice => match meta {
            Ok(m) if m.file_type().is_block_device() => Ok(()),
            _ => fail("a block device"),
        },
    }
}

/// Whether `dir` is the root of a mount (a tmpfs emptyDir already mounted): its device differs
/// from its parent's.
fn is_mount_point(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(here), Some(Ok(parent))) = (std::fs::metadata(dir), dir.parent().map(std::fs::metadata)) else {
        return false;
    };
    here.dev() != parent.dev()
}

/// Mounts a tmpfs of `size_bytes` (the kernel's default when `None`) on `dir`.
fn mount_tmpfs(dir: &Path, size_bytes: Option<u64>) -> Result<(), String> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let target =
        CString::new(dir.as_os_str().as_bytes()).map_err(|_| "the path holds a NUL byte".to_string())?;
    let options = match size_bytes {
        Some(n) => format!("mode=0777,size={}", n.max(4096)),
        None => "mode=0777".to_string(),
    };
    let options = CString::new(options).expect("no NUL in mount options");
    let fstype = CString::new("tmpfs").expect("no NUL");
    // SAFETY: every pointer is a valid NUL-terminated string that outlives the call.
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            options.as_ptr().cast(),
        )
    };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        return Err(format!(
            "cannot mount a tmpfs for medium: Memory on {}: {e}; the agent must run as root for memory-backed emptyDirs",
            dir.display()
        ));
    }
    Ok(())
}

/// Unmounts the tmpfs emptyDirs below `pod` (a revision directory), so it can be removed.
fn unmount_below(pod: &Path) {
    let Ok(volumes) = std::fs::read_dir(pod.join("volumes")) else {
        return;
    };
    for v in volumes.flatten() {
        let path = v.path();
        if is_mount_point(&path) {
            if let Ok(c) = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str())) {
                // SAFETY: a valid NUL-terminated path; MNT_DETACH never blocks.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
    }
}

/// Removes the pod directories of revisions that neither run nor are wanted any more.
/// `keep` holds `(NAMESPACE_DAEMONSET, REVISION)` pairs.
pub fn cleanup(root: &Path, keep: &BTreeSet<(String, String)>) {
    let Ok(pods) = std::fs::read_dir(root) else {
        return;
    };
    for pod in pods.flatten() {
        let ds = pod.file_name().to_string_lossy().into_owned();
        let Ok(revisions) = std::fs::read_dir(pod.path()) else {
            continue;
        };
        let mut left = 0;
        for rev in revisions.flatten() {
            let r = rev.file_name().to_string_lossy().into_owned();
            if keep.contains(&(ds.clone(), r)) {
                left += 1;
                continue;
            }
            // Never delete into a mounted tmpfs through the tree: unmount it first.
            unmount_below(&rev.path());
            if let Err(e) = std::fs::remove_dir_all(rev.path()) {
                tracing::warn!(dir = %rev.path().display(), error = %e, "cannot remove an old pod directory");
                left += 1;
            }
        }
        if left == 0 {
            let _ = std::fs::remove_dir(pod.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_path_types_are_checked_and_created_as_kubelet_does() {
        let dir = tempfile::tempdir().unwrap();
        let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
        let made = p("made/deep");
        check_host_path(&made, Some(HostPathType::DirectoryOrCreate)).unwrap();
        assert!(Path::new(&made).is_dir());
        check_host_path(&made, Some(HostPathType::Directory)).unwrap();
        let e = check_host_path(&made, Some(HostPathType::File)).unwrap_err();
        assert_eq!(e, format!("hostPath type check failed: {made} is not a file"));
        let file = p("lock");
        check_host_path(&file, Some(HostPathType::FileOrCreate)).unwrap();
        assert!(Path::new(&file).is_file());
        assert!(check_host_path(&file, Some(HostPathType::DirectoryOrCreate)).is_err());
        assert!(check_host_path(&p("missing"), Some(HostPathType::Directory)).is_err());
        assert!(check_host_path(&file, Some(HostPathType::Socket)).is_err());
        assert!(check_host_path("/dev/null", Some(HostPathType::CharDevice)).is_ok());
        assert!(check_host_path("/dev/null", Some(HostPathType::BlockDevice)).is_err());
        assert!(check_host_path(&p("anything"), None).is_ok(), "no type: no check");
    }

    #[test]
    fn uids_are_stable_per_instance_and_new_for_a_replacement() {
        let a = uid("c", "default", "ds", "n1", "abc", 0);
        assert_eq!(a, uid("c", "default", "ds", "n1", "abc", 0));
        assert_ne!(a, uid("c", "default", "ds", "n1", "abc", 1));
        assert_ne!(a, uid("c", "default", "ds", "n2", "abc", 0));
        assert_eq!(a.len(), 36);
        assert_eq!(a.split('-').map(str::len).collect::<Vec<_>>(), [8, 4, 4, 4, 12]);
    }

    #[test]
    fn cleanup_keeps_only_the_named_revisions() {
        let root = tempfile::tempdir().unwrap();
        for (ds, rev) in [("default_a", "r1"), ("default_a", "r2"), ("default_b", "r1")] {
            std::fs::create_dir_all(root.path().join(ds).join(rev).join("volumes/x")).unwrap();
        }
        let keep = BTreeSet::from([("default_a".to_string(), "r2".to_string())]);
        cleanup(root.path(), &keep);
        assert!(root.path().join("default_a/r2/volumes/x").is_dir());
        assert!(!root.path().join("default_a/r1").exists());
        assert!(!root.path().join("default_b").exists());
    }

    #[test]
    fn a_memory_empty_dir_is_a_tmpfs_of_its_size_limit_and_goes_with_its_revision() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            assert!(
                std::env::var("CI").is_err(),
                "a tmpfs emptyDir needs root, and CI runs as root"
            );
            eprintln!("SKIP a_memory_empty_dir_is_a_tmpfs...: not root, cannot mount a tmpfs");
            return;
        }
        let root = tempfile::tempdir().unwrap();
        let template: PodTemplateSpec = serde_json::from_value(serde_json::json!({
            "spec": {
                "containers": [{"name": "a", "image": "x"}],
                "volumes": [{"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}],
            }
        }))
        .unwrap();
        let setup = PodSetup {
            objects: &NoObjects,
            facts: PodFacts::default(),
            allocatable: None,
            dir: pod_dir(root.path(), "default", "ds", "r1"),
            seccomp_dir: root.path().join("seccomp"),
        };
        prepare("ds", &template, &setup).unwrap();
        let dir = setup.volume_dir("cache");
        assert!(is_mount_point(&dir));
        let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
        let c = std::ffi::CString::new(dir.to_str().unwrap()).unwrap();
        // SAFETY: a valid path and a zeroed out-struct of the right type.
        assert_eq!(unsafe { libc::statfs(c.as_ptr(), &mut stat) }, 0);
        assert_eq!(stat.f_type, libc::TMPFS_MAGIC);
        assert_eq!(stat.f_blocks as u64 * stat.f_bsize as u64, 1 << 20);
        // Prepared again, it is not mounted twice.
        prepare("ds", &template, &setup).unwrap();
        cleanup(root.path(), &BTreeSet::new());
        assert!(!root.path().join("default_ds").exists(), "unmounted and removed");
    }

    #[test]
    fn allocatable_names_cpu_and_memory() {
        let a = allocatable();
        assert!(a["cpu"].value().unwrap() >= 1);
        assert!(a["memory"].value().unwrap() > 1 << 20);
    }
}
