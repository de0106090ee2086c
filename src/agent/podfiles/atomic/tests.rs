//! The atomic writer in a temporary directory: first write, no-op rewrite, updates through the same paths, removals, nesting, modes.

use std::os::unix::fs::MetadataExt;

use super::*;

fn file(path: &str, data: &str, mode: u32) -> File {
    File {
        path: path.into(),
        data: data.as_bytes().to_vec(),
        mode,
    }
}

fn read(dir: &Path, path: &str) -> String {
    fs::read_to_string(dir.join(path)).unwrap()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Names in the volume root, hidden version directories shown as `..<version>`.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .map(|n| {
            if n.starts_with("..2") {
                "..<version>".to_string()
            } else {
                n
            }
        })
        .collect();
    names.sort();
    names
}

#[test]
fn the_first_write_makes_versions_data_link_and_visible_links() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("volumes/config");
    let files = [
        file("fluent-bit.conf", "[INPUT]", 0o644),
        file("conf.d/parsers/parsers.conf", "[PARSER]", 0o600),
    ];
    assert!(write_atomically(&dir, &files).unwrap());
    assert_eq!(
        entries(&dir),
        ["..<version>", "..data", "conf.d", "fluent-bit.conf"]
    );
    let version = fs::read_link(dir.join("..data")).unwrap();
    assert!(version.to_string_lossy().starts_with("..20"), "{version:?}");
    assert_eq!(
        fs::read_link(dir.join("conf.d")).unwrap(),
        Path::new("..data/conf.d")
    );
    assert_eq!(read(&dir, "fluent-bit.conf"), "[INPUT]");
    assert_eq!(read(&dir, "conf.d/parsers/parsers.conf"), "[PARSER]");
    assert_eq!(mode(&dir.join("fluent-bit.conf")), 0o644);
    assert_eq!(mode(&dir.join("conf.d/parsers/parsers.conf")), 0o600);
    assert_eq!(mode(&dir.join("conf.d/parsers")), 0o755);
    assert_eq!(mode(&dir.join("..data")), 0o755);
    assert_eq!(mode(&dir), 0o755);
}

#[test]
fn an_unchanged_payload_touches_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let files = [file("a", "1", 0o644), file("d/b", "2", 0o400)];
    assert!(write_atomically(dir, &files).unwrap());
    let version = fs::read_link(dir.join("..data")).unwrap();
    let inode = fs::metadata(dir.join("..data")).unwrap().ino();
    // Same files in another order are the same payload.
    let reordered = [files[1].clone(), files[0].clone()];
    assert!(!write_atomically(dir, &reordered).unwrap());
    assert_eq!(fs::read_link(dir.join("..data")).unwrap(), version);
    assert_eq!(fs::metadata(dir.join("..data")).unwrap().ino(), inode);
}

#[test]
fn changed_content_shows_through_the_same_path() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    assert!(write_atomically(dir, &[file("app.conf", "level=info", 0o644)]).unwrap());
    let link_inode = fs::symlink_metadata(dir.join("app.conf")).unwrap().ino();
    let old = fs::read_link(dir.join("..data")).unwrap();
    assert!(write_atomically(dir, &[file("app.conf", "level=debug", 0o644)]).unwrap());
    assert_eq!(read(dir, "app.conf"), "level=debug");
    // The visible link is the one made first; only `..data` moved.
    assert_eq!(
        fs::symlink_metadata(dir.join("app.conf")).unwrap().ino(),
        link_inode
    );
    assert_ne!(fs::read_link(dir.join("..data")).unwrap(), old);
    assert!(!dir.join(&old).exists(), "the old version is removed");
    assert_eq!(entries(dir), ["..<version>", "..data", "app.conf"]);
}

#[test]
fn a_changed_mode_is_a_change() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    assert!(write_atomically(dir, &[file("key", "k", 0o644)]).unwrap());
    assert!(write_atomically(dir, &[file("key", "k", 0o400)]).unwrap());
    assert_eq!(mode(&dir.join("key")), 0o400);
}

#[test]
fn removed_keys_disappear_and_other_entries_stay() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let files = [
        file("keep", "1", 0o644),
        file("gone", "2", 0o644),
        file("sub/x", "3", 0o644),
    ];
    assert!(write_atomically(dir, &files).unwrap());
    // Not made by the writer: must survive.
    fs::write(dir.join("mine"), "user file").unwrap();
    assert!(write_atomically(dir, &[file("keep", "1", 0o644)]).unwrap());
    assert_eq!(entries(dir), ["..<version>", "..data", "keep", "mine"]);
    assert!(!dir.join("gone").exists() && fs::symlink_metadata(dir.join("gone")).is_err());
    assert_eq!(read(dir, "mine"), "user file");
}

#[test]
fn an_empty_payload_empties_the_volume() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    assert!(write_atomically(dir, &[file("a", "1", 0o644)]).unwrap());
    assert!(write_atomically(dir, &[]).unwrap());
    assert_eq!(entries(dir), ["..<version>", "..data"]);
    assert!(!write_atomically(dir, &[]).unwrap());
}

#[test]
fn a_deleted_visible_link_is_made_again() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let files = [file("a", "1", 0o644)];
    assert!(write_atomically(dir, &files).unwrap());
    fs::remove_file(dir.join("a")).unwrap();
    assert!(write_atomically(dir, &files).unwrap());
    assert_eq!(read(dir, "a"), "1");
}

#[test]
fn leftovers_of_an_interrupted_write_are_cleaned_up() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    fs::create_dir(dir.join("..2026_01_01_00_00_00.1")).unwrap();
    symlink("nowhere", dir.join("..data_tmp")).unwrap();
    assert!(write_atomically(dir, &[file("a", "1", 0o644)]).unwrap());
    assert_eq!(entries(dir), ["..<version>", "..data", "a"]);
}

#[test]
fn something_in_the_way_of_a_link_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    fs::write(dir.join("a"), "not a link").unwrap();
    let err = write_atomically(dir, &[file("a", "1", 0o644)]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    assert!(err.to_string().contains("is in the way"), "{err}");
}

#[test]
fn paths_leaving_the_volume_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    for bad in ["", "/etc/passwd", "../x", "a/../../x", "..data", "a//b", "./a"] {
        let err = write_atomically(tmp.path(), &[file(bad, "x", 0o644)]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad:?}");
    }
    assert_eq!(
        fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "nothing was written"
    );
}
