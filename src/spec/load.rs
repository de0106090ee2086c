//! Reading manifests from a file, a directory or stdin, and cutting them into objects
//! (plain objects and `kind: List` items), each read by its kind; input size is bounded.

use std::io::Read;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::documents::{documents, Failed};
use super::issue::Issue;
use super::manifest::{
    read_config_map, read_daemonset, read_namespace, read_secret, Manifest, Object, Origin, Skipped,
};
use super::tree::{Node, Value};

/// Largest input read from one file or stdin; Kubernetes refuses requests over 3 MiB.
pub const MAX_INPUT_BYTES: usize = 4 * 1024 * 1024;

/// Why a source could not be read at all; problems inside a manifest are [`Issue`]s instead.
#[derive(Debug, Error)]
pub enum LoadError {
    /// The file, directory or stdin could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The input is larger than [`MAX_INPUT_BYTES`].
    #[error("{path} is larger than {limit} bytes; a manifest is never that large: check that this is the right file, or split it")]
    TooLarge { path: String, limit: usize },
    /// A directory held no `*.yaml`, `*.yml` or `*.json` file.
    #[error("{path} contains no *.yaml, *.yml or *.json file")]
    EmptyDirectory { path: String },
}

/// Reads every object from `source`: a file, a directory (its `*.yaml`, `*.yml` and
/// `*.json` files in name order, not recursing) or `-` for stdin.
pub fn load(source: &str) -> Result<Vec<Manifest>, LoadError> {
    if source == "-" {
        let bytes = read_limited(std::io::stdin().lock(), "<stdin>")?;
        return Ok(parse(&bytes, "<stdin>"));
    }
    let path = Path::new(source);
    let read_err = |source| LoadError::Read {
        path: path.display().to_string(),
        source,
    };
    if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(read_err)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && is_manifest_file(p))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(LoadError::EmptyDirectory {
                path: path.display().to_string(),
            });
        }
        let mut all = Vec::new();
        for file in files {
            all.extend(load_file(&file)?);
        }
        return Ok(all);
    }
    load_file(path)
}

fn is_manifest_file(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

fn load_file(path: &Path) -> Result<Vec<Manifest>, LoadError> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| LoadError::Read {
        path: name.clone(),
        source,
    })?;
    let bytes = read_limited(file, &name)?;
    Ok(parse(&bytes, &name))
}

fn read_limited(r: impl Read, name: &str) -> Result<Vec<u8>, LoadError> {
    let mut bytes = Vec::new();
    r.take(MAX_INPUT_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| LoadError::Read {
            path: name.to_string(),
            source,
        })?;
    if bytes.len() > MAX_INPUT_BYTES {
        return Err(LoadError::TooLarge {
            path: name.to_string(),
            limit: MAX_INPUT_BYTES,
        });
    }
    Ok(bytes)
}

/// Reads every object in `bytes` (YAML or JSON); `source` names the input in messages.
/// Never panics: anything wrong becomes an error issue on the returned manifests.
pub fn parse(bytes: &[u8], source: &str) -> Vec<Manifest> {
    let whole = || Origin::whole(source);
    if bytes.len() > MAX_INPUT_BYTES {
        return vec![Manifest::failed(
            whole(),
            Issue::error("", format!("input is larger than {MAX_INPUT_BYTES} bytes")),
        )];
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t.strip_prefix('\u{feff}').unwrap_or(t),
        Err(e) => {
            return vec![Manifest::failed(
                whole(),
                Issue::error(
                    "",
                    format!(
                        "input is not UTF-8 text (invalid byte at offset {})",
                        e.valid_up_to()
                    ),
                )
                .with_hint("a manifest is YAML or JSON text; check that this is the right file"),
            )]
        }
    };
    let documents = match documents(text) {
        Ok(docs) => docs,
        Err(Failed(issue)) => return vec![Manifest::failed(whole(), issue)],
    };
    let mut out = Vec::new();
    for (i, doc) in documents.into_iter().enumerate() {
        let origin = Origin {
            source: source.to_string(),
            document: i + 1,
            line: doc.line,
            item: None,
        };
        match doc.root {
            Ok(root) => out.extend(objects(&root, origin)),
            Err(issue) => out.push(Manifest::failed(origin, issue)),
        }
    }
    if out.is_empty() {
        out.push(Manifest::failed(
            whole(),
            Issue::error("", "no object found: the input is empty")
                .with_hint("write an apps/v1 DaemonSet manifest"),
        ));
    }
    out
}

/// The objects in one document: the object itself, or the items of a `kind: List` (or of a
/// typed list such as `DaemonSetList`).
fn objects(root: &Node, origin: Origin) -> Vec<Manifest> {
    if !matches!(root.value, Value::Map(_)) {
        let issue = Issue::error(
            "",
            format!(
                "expected a Kubernetes object (a map with apiVersion, kind, metadata and spec), got {}",
                root.value.type_name()
            ),
        )
        .at(root.location);
        return vec![Manifest::failed(origin, issue)];
    }
    let kind = root.get("kind").and_then(Node::as_str).unwrap_or_default();
    if kind == "List" || (kind.ends_with("List") && root.get("items").is_some()) {
        let items = match root.get("items").map(|n| &n.value) {
            Some(Value::Seq(items)) => items,
            Some(Value::Null) | None => return Vec::new(),
            Some(other) => {
                let issue = Issue::error(
                    "items",
                    format!(
                        "Invalid type: expected list of objects, got {}",
                        other.type_name()
                    ),
                )
                .at(root.get("items").and_then(|n| n.location));
                return vec![Manifest::failed(origin, issue)];
            }
        };
        return items
            .iter()
            .enumerate()
            .flat_map(|(i, item)| {
                let origin = Origin {
                    item: Some(i),
                    line: item.location.map(|l| l.line).or(origin.line),
                    ..origin.clone()
                };
                // Lists do not nest in Kubernetes; an inner List is reported as a wrong kind.
                single(item, origin)
            })
            .collect();
    }
    single(root, origin)
}

/// The kinds that are read; every other kind is skipped.
const READ_KINDS: [&str; 4] = ["DaemonSet", "ConfigMap", "Secret", "Namespace"];

fn single(node: &Node, origin: Origin) -> Vec<Manifest> {
    let kind_node = node.get("kind");
    let kind = kind_node.and_then(Node::as_str).unwrap_or_default();
    if kind.is_empty() || !matches!(node.value, Value::Map(_)) {
        // Read as a DaemonSet, which reports the missing kind and anything else wrong.
        return vec![read_daemonset(node, origin)];
    }
    if kind == "List" || kind.ends_with("List") {
        let issue = Issue::error("kind", format!("a {kind} cannot be an item of a List"))
            .at(kind_node.and_then(|n| n.location))
            .with_hint("list the objects of the inner List directly in the outer one");
        return vec![Manifest::failed(origin, issue)];
    }
    match kind {
        "DaemonSet" => return vec![read_daemonset(node, origin)],
        "ConfigMap" => return vec![read_config_map(node, origin)],
        "Secret" => return vec![read_secret(node, origin)],
        "Namespace" => return vec![read_namespace(node, origin)],
        _ => {}
    }
    // A misspelt kind everynode reads would otherwise be skipped silently.
    let lower = kind.to_ascii_lowercase();
    if let Some(meant) = READ_KINDS
        .iter()
        .find(|k| strsim::jaro_winkler(&lower, &k.to_ascii_lowercase()) >= 0.9)
    {
        let issue = Issue::error(
            "kind",
            format!("Unsupported value: {kind:?}: did you mean {meant:?}? (kinds are case-sensitive)"),
        )
        .at(kind_node.and_then(|n| n.location))
        .with_hint(format!("write `kind: {meant}`"));
        return vec![Manifest::failed(origin, issue)];
    }
    let text = |key: &str| {
        node.get(key)
            .and_then(Node::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let name = node
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Node::as_str)
        .unwrap_or_default()
        .to_string();
    vec![Manifest {
        origin,
        object: Some(Object::Skipped(Skipped {
            api_version: text("apiVersion"),
            kind: kind.to_string(),
            name,
        })),
        issues: Vec::new(),
        raw: None,
    }]
}
