//! kubelet's AtomicWriter: a volume's files are replaced all at once, so a container reading them never sees half an update.
//!
//! Layout inside the volume directory, as kubelet makes it:
//! ```text
//! ..2026_12_04_18_30_00.123456789/   the files of one version (modes as given, dirs 0755)
//! ..data -> ..2026_12_04_18_30_00.123456789
//! fluent-bit.conf -> ..data/fluent-bit.conf   one link per top-level entry
//! conf.d -> ..data/conf.d
//! ```
//! A new version is written into a fresh hidden directory, then `..data` is switched to it
//! by renaming a temporary symlink over it, which is atomic; the top-level links never
//! change, so a path the container opens shows either the old or the new content.
//!
//! One writer per directory at a time (the instance's actor), as with kubelet.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, ErrorKind};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::project::File;

const DATA_DIR: &str = "..data";
const DATA_DIR_TMP: &str = "..data_tmp";
const DIR_MODE: u32 = 0o755;

/// Writes `files` into `dir` as one atomic update; false (touching nothing) when `dir`
/// already holds exactly these files with these modes.
///
/// Unlike kubelet, which compares only contents, a changed mode also counts as a change.
pub fn write_atomically(dir: &Path, files: &[File]) -> io::Result<bool> {
    let payload = validate(files)?;
    create_dir(dir)?;
    let old = current_version(dir)?;
    if let Some(old) = &old {
        if read_tree(&dir.join(old))? == Some(payload.clone()) && links_in_place(dir, &payload)? {
            return Ok(false);
        }
    }
    let new = new_version_dir(dir)?;
    write_tree(&dir.join(&new), &payload)?;
    swap_data_link(dir, &new)?;
    let visible = top_level(payload.keys().map(String::as_str));
    for name in &visible {
        visible_link(dir, name)?;
    }
    if let Some(old) = &old {
        remove_stale_links(dir, old, &visible)?;
    }
    remove_old_versions(dir, &new)?;
    Ok(true)
}

/// Files by path, checked: relative, clean, inside the volume, not kubelet's own names.
type Payload = BTreeMap<String, (Vec<u8>, u32)>;

fn validate(files: &[File]) -> io::Result<Payload> {
    let mut payload = Payload::new();
    for f in files {
        let bad = f.path.is_empty()
            || f.path.starts_with('/')
            || f.path.starts_with("..")
            || f.path.split('/').any(|s| s.is_empty() || s == "." || s == "..");
        if bad {
            return Err(io::Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "volume file path {:?} must be relative, clean and not start with '..'",
                    f.path
                ),
            ));
        }
        payload.insert(f.path.clone(), (f.data.clone(), f.mode & 0o777));
    }
    Ok(payload)
}

fn create_dir(dir: &Path) -> io::Result<()> {
    match fs::create_dir(dir) {
        Ok(()) => fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE)),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            fs::create_dir_all(dir.parent().unwrap_or(dir))?;
            create_dir(dir)
        }
        Err(e) => Err(e),
    }
}

/// The directory `..data` points to, if any.
fn current_version(dir: &Path) -> io::Result<Option<PathBuf>> {
    match fs::read_link(dir.join(DATA_DIR)) {
        Ok(target) => Ok(Some(target)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Every regular file below `root` with its content and mode; None when `root` is gone.
fn read_tree(root: &Path) -> io::Result<Option<Payload>> {
    let mut out = Payload::new();
    let mut pending = vec![String::new()];
    while let Some(rel) = pending.pop() {
        let entries = match fs::read_dir(root.join(&rel)) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound && rel.is_empty() => return Ok(None),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let meta = entry.metadata()?;
            if meta.is_dir() {
                pending.push(path);
            } else {
                let mode = meta.permissions().mode() & 0o777;
                out.insert(path, (fs::read(entry.path())?, mode));
            }
        }
    }
    Ok(Some(out))
}

/// The first path element of each file: what the volume root shows.
fn top_level<'a>(paths: impl Iterator<Item = &'a str>) -> BTreeSet<String> {
    paths
        .map(|p| p.split('/').next().unwrap_or(p).to_string())
        .collect()
}

fn link_target(name: &str) -> PathBuf {
    Path::new(DATA_DIR).join(name)
}

/// Whether every top-level link exists, so an unchanged payload really is visible.
fn links_in_place(dir: &Path, payload: &Payload) -> io::Result<bool> {
    for name in top_level(payload.keys().map(String::as_str)) {
        match fs::read_link(dir.join(&name)) {
            Ok(target) if target == link_target(&name) => {}
            Ok(_) => return Ok(false),
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::InvalidInput) => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// A fresh `..<UTC timestamp>.<nanoseconds><n>` directory, named as kubelet names them.
fn new_version_dir(dir: &Path) -> io::Result<String> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = chrono::DateTime::<chrono::Utc>::from(std::time::SystemTime::now());
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!(
            "..{}.{:09}{n}",
            now.format("%Y_%m_%d_%H_%M_%S"),
            now.timestamp_subsec_nanos()
        );
        match fs::create_dir(dir.join(&name)) {
            Ok(()) => {
                // Set explicitly: the process umask must not decide what a container reads.
                fs::set_permissions(dir.join(&name), fs::Permissions::from_mode(DIR_MODE))?;
                return Ok(name);
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

fn write_tree(root: &Path, payload: &Payload) -> io::Result<()> {
    for (path, (data, mode)) in payload {
        let target = root.join(path);
        let mut missing = Vec::new();
        let mut parent = target.parent();
        while let Some(p) = parent.filter(|p| *p != root && !p.exists()) {
            missing.push(p.to_path_buf());
            parent = p.parent();
        }
        for d in missing.iter().rev() {
            fs::create_dir(d)?;
            fs::set_permissions(d, fs::Permissions::from_mode(DIR_MODE))?;
        }
        fs::write(&target, data)?;
        fs::set_permissions(&target, fs::Permissions::from_mode(*mode))?;
    }
    Ok(())
}

/// Points `..data` at `version` with one rename, the only atomic way to replace a symlink.
fn swap_data_link(dir: &Path, version: &str) -> io::Result<()> {
    let tmp = dir.join(DATA_DIR_TMP);
    // Left over by a write that died between the two steps.
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    symlink(version, &tmp)?;
    fs::rename(&tmp, dir.join(DATA_DIR))
}

/// The `name -> ..data/name` link, made once; anything else in its place is an error.
fn visible_link(dir: &Path, name: &str) -> io::Result<()> {
    let path = dir.join(name);
    match fs::read_link(&path) {
        Ok(target) if target == link_target(name) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => symlink(link_target(name), &path),
        _ => Err(io::Error::new(
            ErrorKind::AlreadyExists,
            format!(
                "{} is in the way of the volume's link to {DATA_DIR}/{name}",
                path.display()
            ),
        )),
    }
}

/// Links of the previous version's entries that the new one no longer has. Only those:
/// anything else in `dir` was not made here.
fn remove_stale_links(dir: &Path, old: &Path, visible: &BTreeSet<String>) -> io::Result<()> {
    let entries = match fs::read_dir(dir.join(old)) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if visible.contains(&name) {
            continue;
        }
        let path = dir.join(&name);
        if fs::read_link(&path).is_ok_and(|t| t == link_target(&name)) {
            fs::remove_file(path)?;
        }
    }
    Ok(())
}

/// Version directories other than `keep`: the previous one, and any a failed write left.
fn remove_old_versions(dir: &Path, keep: &str) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let version = name.starts_with("..") && name != DATA_DIR && name != keep;
        if version && entry.file_type()?.is_dir() {
            fs::remove_dir_all(entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
