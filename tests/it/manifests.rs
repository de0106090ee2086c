//! The manifest corpus: real-world-shaped agents must be accepted with exactly the warnings
//! their files declare; broken manifests must fail with exactly the errors theirs declare.
//!
//! Expectations live in the manifests as comments, one per line:
//! `# expect-warning: PATH` and `# expect-error: PATH | MESSAGE FRAGMENT`, where PATH is
//! prefixed with `items[N].` for an item of a `kind: List`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use everynode::spec::{self, DaemonSet, Manifest};

fn corpus(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/manifests")
        .join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no files in {}", dir.display());
    files
}

fn expectations(path: &Path, tag: &str) -> BTreeSet<(String, String)> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix(&format!("# expect-{tag}:")))
        .map(|rest| {
            let (p, fragment) = rest.split_once(" | ").unwrap_or((rest, ""));
            (p.trim().to_string(), fragment.trim().to_string())
        })
        .collect()
}

/// The path of an issue as the expectations write it.
fn full_path(m: &Manifest, path: &str) -> String {
    match m.origin.item {
        Some(i) => format!("items[{i}].{path}"),
        None => path.to_string(),
    }
}

#[test]
fn real_world_agents_are_accepted() {
    for file in corpus("valid") {
        let manifests = spec::load(file.to_str().unwrap()).unwrap();
        let mut warnings = BTreeSet::new();
        for m in &manifests {
            let errors: Vec<String> = m.errors().map(ToString::to_string).collect();
            assert!(m.is_valid(), "{}: {errors:#?}", m.origin);
            warnings.extend(m.warnings().map(|w| (full_path(m, &w.path), String::new())));
            assert_eq!(m.revision().unwrap().len(), 10);
        }
        assert_eq!(warnings, expectations(&file, "warning"), "{}", file.display());
    }
}

#[test]
fn the_whole_directory_loads_in_name_order() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/manifests/valid");
    let manifests = spec::load(dir.to_str().unwrap()).unwrap();
    let names: Vec<&str> = manifests.iter().map(|m| m.name().unwrap()).collect();
    assert_eq!(
        names,
        [
            "datadog-agent",
            "fluent-bit",
            "kube-proxy",
            "node-problem-detector",
            "cadvisor",
            "node-exporter",
            "envoy",
            "security-agent"
        ]
    );
    let lines: Vec<Option<u32>> = manifests.iter().map(|m| m.origin.line).collect();
    assert_eq!(
        lines[3],
        Some(3),
        "multi-doc: first document starts after the comment"
    );
}

#[test]
fn accepted_manifests_round_trip_through_json() {
    for file in corpus("valid") {
        for m in spec::load(file.to_str().unwrap()).unwrap() {
            let valid = m.into_valid().unwrap();
            let warnings = valid.warnings.clone();
            let daemonset = valid.into_daemonset().unwrap();
            let json = serde_json::to_vec(&daemonset).unwrap();
            let (again, again_warnings) = DaemonSet::from_json(&json).unwrap();
            assert_eq!(again, daemonset, "{}", file.display());
            assert_eq!(again.revision(), daemonset.revision());
            // Ignored fields that validation needs (volume, env and probe sources) are kept
            // in the model, so their warnings survive; the others were dropped with the field.
            for w in &again_warnings {
                assert!(
                    warnings
                        .iter()
                        .any(|v| v.path == w.path && v.message == w.message),
                    "{}: new warning after the round trip: {w}",
                    file.display()
                );
            }
        }
    }
}

#[test]
fn broken_manifests_fail_with_their_paths() {
    for file in corpus("invalid") {
        let manifests = spec::load(file.to_str().unwrap()).unwrap();
        let mut errors = BTreeSet::new();
        let mut warnings = BTreeSet::new();
        for m in &manifests {
            assert!(!m.is_valid() || m.errors().next().is_none());
            for e in m.errors() {
                errors.insert((full_path(m, &e.path), e.message.clone()));
            }
            warnings.extend(m.warnings().map(|w| (full_path(m, &w.path), String::new())));
        }
        let want = expectations(&file, "error");
        assert!(!want.is_empty(), "{} declares no expected error", file.display());
        let got_paths: BTreeSet<&String> = errors.iter().map(|(p, _)| p).collect();
        let want_paths: BTreeSet<&String> = want.iter().map(|(p, _)| p).collect();
        assert_eq!(got_paths, want_paths, "{}: {errors:#?}", file.display());
        for (path, fragment) in &want {
            assert!(
                errors
                    .iter()
                    .any(|(p, m)| p == path && m.contains(fragment.as_str())),
                "{}: no error at {path:?} containing {fragment:?} in {errors:#?}",
                file.display()
            );
        }
        assert_eq!(warnings, expectations(&file, "warning"), "{}", file.display());
    }
}

#[test]
fn errors_say_where_they_are() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/manifests/invalid/malformed.yaml");
    let m = spec::load(file.to_str().unwrap()).unwrap().remove(0);
    let e = m.errors().next().unwrap();
    assert!(e.location.unwrap().line >= 6, "{e:?}");
    assert!(
        m.origin.to_string().contains("malformed.yaml, document 1"),
        "{}",
        m.origin
    );
}

#[test]
fn garbage_is_an_error_never_a_panic() {
    let inputs: Vec<&[u8]> = vec![
        b"",
        b"   \n\n",
        b"\xff\xfe\x00binary",
        b"\x00\x01\x02",
        b"{\"apiVersion\": ",
        b"[1, 2, 3]",
        b"null",
        b"42",
        b"- a\n- b\n",
        b"---\n---\n---\n",
        b"key: [unclosed",
        b"apiVersion: apps/v1\nkind: DaemonSet\n",
        b"{\"kind\": \"List\", \"items\": 5}",
        b"kind: List\nitems: [1, two, {kind: List, items: []}]\n",
        b"\t\t: :",
        b"!!binary aGVsbG8=",
        b"a: !!int not-a-number\n",
    ];
    for input in inputs {
        let manifests = spec::parse(input, "garbage");
        assert!(!manifests.is_empty(), "{input:?}");
        assert!(
            manifests.iter().all(|m| !m.is_valid()),
            "{:?} was accepted",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn oversized_input_is_refused() {
    let big = vec![b'#'; spec::MAX_INPUT_BYTES + 1];
    let m = spec::parse(&big, "big.yaml").remove(0);
    assert!(m.errors().next().unwrap().message.contains("larger than"));
    let path = std::env::temp_dir().join(format!("everynode-big-{}.yaml", std::process::id()));
    std::fs::write(&path, &big).unwrap();
    let err = spec::load(path.to_str().unwrap()).unwrap_err();
    assert!(err.to_string().contains("is larger than"), "{err}");
    std::fs::remove_file(path).unwrap();
}

#[test]
fn a_directory_without_manifests_is_an_error() {
    let dir = std::env::temp_dir().join(format!("everynode-empty-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("README.md"), "not a manifest").unwrap();
    let err = spec::load(dir.to_str().unwrap()).unwrap_err();
    assert!(
        err.to_string()
            .contains("contains no *.yaml, *.yml or *.json file"),
        "{err}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
