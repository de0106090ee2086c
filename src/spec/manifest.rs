//! One object read from a manifest (a DaemonSet, ConfigMap, Secret, Namespace, or a kind that is skipped): where it came from, the object, and its problems.

use std::fmt;

use serde::Serialize;
use thiserror::Error;

use super::config::{ConfigMap, Namespace, Secret};
use super::daemonset::DaemonSet;
use super::issue::{FieldPath, Issue, Severity};
use super::schema::Schema;
use super::tree::Node;
use super::walk::Walk;
use super::{defaults, fields, revision, validate};

/// Where an object was read from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Origin {
    /// A file path, or `<stdin>`.
    pub source: String,
    /// 1-based among the non-empty documents of the source; 0 when the source as a whole is
    /// at fault (empty, not text).
    pub document: usize,
    /// First line of the document, for YAML.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// Index in the `items` of a `kind: List` document.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<usize>,
}

impl Origin {
    pub fn whole(source: &str) -> Self {
        Origin {
            source: source.to_string(),
            document: 0,
            line: None,
            item: None,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)?;
        if self.document > 0 {
            write!(f, ", document {}", self.document)?;
        }
        if let Some(line) = self.line {
            write!(f, " (line {line})")?;
        }
        if let Some(item) = self.item {
            write!(f, ", items[{item}]")?;
        }
        Ok(())
    }
}

/// One object of an input, by kind.
/// Serialized as the object itself, which carries its own `kind`.
///
/// A DaemonSet is a few hundred bytes larger than the other kinds; boxing it would buy nothing
/// for a value made once per document and moved a few times, and would put a `Box` in every
/// match on a loaded object.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Object {
    DaemonSet(DaemonSet),
    ConfigMap(ConfigMap),
    /// With `stringData` folded into `data`.
    Secret(Secret),
    /// Accepted and not stored: namespaces exist implicitly.
    Namespace(Namespace),
    /// A kind everynode does not run (ServiceAccount, ClusterRole, Service, CRDs...).
    Skipped(Skipped),
}

/// An object of a kind that is skipped, named for the one line that says so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Skipped {
    pub api_version: String,
    pub kind: String,
    pub name: String,
}

impl Object {
    /// `kind` as Kubernetes writes it.
    pub fn kind(&self) -> &str {
        match self {
            Object::DaemonSet(_) => "DaemonSet",
            Object::ConfigMap(_) => "ConfigMap",
            Object::Secret(_) => "Secret",
            Object::Namespace(_) => "Namespace",
            Object::Skipped(s) => &s.kind,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Object::DaemonSet(d) => &d.metadata.name,
            Object::ConfigMap(c) => &c.metadata.name,
            Object::Secret(s) => &s.metadata.name,
            Object::Namespace(n) => &n.metadata.name,
            Object::Skipped(s) => &s.name,
        }
    }

    /// The namespace of a namespaced object (`default` when omitted).
    pub fn namespace(&self) -> Option<&str> {
        match self {
            Object::DaemonSet(d) => Some(&d.metadata.namespace),
            Object::ConfigMap(c) => Some(&c.metadata.namespace),
            Object::Secret(s) => Some(&s.metadata.namespace),
            Object::Namespace(_) | Object::Skipped(_) => None,
        }
    }

    /// `kind/name` as kubectl prints it (`daemonset.apps/fluentd`, `configmap/conf`).
    pub fn reference(&self) -> String {
        let kind = match self {
            Object::DaemonSet(_) => "daemonset.apps".to_string(),
            other => other.kind().to_ascii_lowercase(),
        };
        format!("{kind}/{}", self.name())
    }

    /// Whether the control plane stores this object.
    pub fn is_stored(&self) -> bool {
        matches!(
            self,
            Object::DaemonSet(_) | Object::ConfigMap(_) | Object::Secret(_)
        )
    }

    /// The line that says why an object is not stored, for skipped kinds and namespaces.
    pub fn skipped_note(&self) -> Option<String> {
        match self {
            Object::Skipped(s) => Some(format!(
                "{} skipped: everynode does not run {} objects",
                self.reference(),
                s.kind
            )),
            Object::Namespace(_) => Some(format!(
                "{} accepted: namespaces exist implicitly, nothing to store",
                self.reference()
            )),
            _ => None,
        }
    }
}

/// The outcome of reading one object of a manifest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Manifest {
    pub origin: Origin,
    /// The object, defaulted as Kubernetes would store it, when it could be built at all
    /// (also when it has errors, so that its name can be shown).
    pub object: Option<Object>,
    /// Errors and warnings, in document order.
    pub issues: Vec<Issue>,
    /// The object as written, every field kept: what a client sends, so the server finds the
    /// same fields not honoured as a local validation does.
    #[serde(skip)]
    pub raw: Option<serde_json::Value>,
}

impl Manifest {
    /// A manifest that failed as a whole (not text, not YAML, empty...).
    pub(crate) fn failed(origin: Origin, issue: Issue) -> Self {
        Manifest {
            origin,
            object: None,
            issues: vec![issue],
            raw: None,
        }
    }

    /// The DaemonSet, when this object is one.
    pub fn daemonset(&self) -> Option<&DaemonSet> {
        match &self.object {
            Some(Object::DaemonSet(d)) => Some(d),
            _ => None,
        }
    }

    /// `metadata.name`, when there is one.
    pub fn name(&self) -> Option<&str> {
        self.object.as_ref().map(Object::name).filter(|n| !n.is_empty())
    }

    pub fn is_valid(&self) -> bool {
        self.object.is_some() && !self.issues.iter().any(Issue::is_error)
    }

    pub fn errors(&self) -> impl Iterator<Item = &Issue> {
        self.issues.iter().filter(|i| i.severity == Severity::Error)
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Issue> {
        self.issues.iter().filter(|i| i.severity == Severity::Warning)
    }

    /// The revision hash of the pod template, for a DaemonSet that could be built.
    pub fn revision(&self) -> Option<String> {
        self.daemonset()
            .map(|d| revision::revision_hash(&d.spec.template))
    }

    /// The object and its warnings if it is valid, else every error at once.
    pub fn into_valid(self) -> Result<Valid, InvalidManifest> {
        match self.object {
            Some(object) if !self.issues.iter().any(Issue::is_error) => Ok(Valid {
                raw: self
                    .raw
                    .unwrap_or_else(|| serde_json::to_value(&object).unwrap_or_default()),
                object,
                warnings: self.issues,
            }),
            object => Err(InvalidManifest {
                kind: object.as_ref().map_or("object", Object::kind).to_string(),
                origin: self.origin,
                errors: self.issues.into_iter().filter(Issue::is_error).collect(),
            }),
        }
    }
}

/// An object that passed validation, with what it does not honour.
#[derive(Debug, Clone, PartialEq)]
pub struct Valid {
    pub object: Object,
    pub warnings: Vec<Issue>,
    /// The object as written (see [`Manifest::raw`]).
    pub raw: serde_json::Value,
}

impl Valid {
    /// The DaemonSet, when the object is one.
    pub fn into_daemonset(self) -> Option<DaemonSet> {
        match self.object {
            Object::DaemonSet(d) => Some(d),
            _ => None,
        }
    }
}

/// A manifest with errors; the message lists all of them.
#[derive(Debug, Clone, PartialEq, Error)]
pub struct InvalidManifest {
    /// The kind the object was read as (`object` when not even that is known).
    pub kind: String,
    pub origin: Origin,
    pub errors: Vec<Issue>,
}

impl fmt::Display for InvalidManifest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        write!(
            f,
            "{}: invalid {} ({n} error{})",
            self.origin,
            self.kind,
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.errors {
            match e.location {
                Some(loc) => write!(f, "\n  line {}: {e}", loc.line)?,
                None => write!(f, "\n  {e}")?,
            }
        }
        Ok(())
    }
}

/// Reads one DaemonSet object: schema walk, typed model, Kubernetes defaults, validation.
pub(crate) fn read_daemonset(node: &Node, origin: Origin) -> Manifest {
    read(
        node,
        origin,
        &fields::DAEMONSET,
        "DaemonSet",
        |mut ds: DaemonSet| {
            defaults::apply(&mut ds);
            let issues = validate::validate(&ds);
            (Object::DaemonSet(ds), issues)
        },
    )
}

pub(crate) fn read_config_map(node: &Node, origin: Origin) -> Manifest {
    read(node, origin, &fields::CONFIG_MAP, "ConfigMap", |cm: ConfigMap| {
        let issues = validate::validate_config_map(&cm);
        (Object::ConfigMap(cm), issues)
    })
}

pub(crate) fn read_secret(node: &Node, origin: Origin) -> Manifest {
    read(node, origin, &fields::SECRET, "Secret", |mut s: Secret| {
        let issues = validate::validate_secret(&s);
        s.normalize();
        (Object::Secret(s), issues)
    })
}

pub(crate) fn read_namespace(node: &Node, origin: Origin) -> Manifest {
    read(node, origin, &fields::NAMESPACE, "Namespace", |ns: Namespace| {
        let issues = validate::validate_namespace(&ns);
        (Object::Namespace(ns), issues)
    })
}

/// Schema walk, typed model, then the kind's own checks; issues below a field the walk already
/// refused are not repeated.
fn read<T: serde::de::DeserializeOwned>(
    node: &Node,
    origin: Origin,
    schema: &'static Schema,
    kind: &str,
    check: impl FnOnce(T) -> (Object, Vec<Issue>),
) -> Manifest {
    let mut walk = Walk::default();
    let json = walk.object(node, schema, &FieldPath::root());
    let mut issues = std::mem::take(&mut walk.issues);
    let object = match serde_json::from_value::<T>(json) {
        Ok(typed) => {
            let (object, found) = check(typed);
            for issue in found {
                let repeated = walk.refused.iter().any(|r| is_at_or_below(&issue.path, r));
                if !repeated {
                    let loc = walk.location_of(&issue.path);
                    issues.push(issue.at(loc));
                }
            }
            Some(object)
        }
        Err(e) => {
            // Only reachable after a refused required field; those errors say it already.
            if !issues.iter().any(Issue::is_error) {
                issues.push(Issue::error("", format!("cannot read the {kind}: {e}")).at(node.location));
            }
            None
        }
    };
    // Document order reads best; issues without a position keep their relative order.
    issues.sort_by_key(|i| i.location.map_or((u32::MAX, u32::MAX), |l| (l.line, l.column)));
    Manifest {
        origin,
        object,
        issues,
        raw: Some(node.to_json()),
    }
}

/// `spec.a[0].b` is below `spec.a[0]` and `spec.a`, but not below `spec.ab`.
fn is_at_or_below(path: &str, ancestor: &str) -> bool {
    path == ancestor
        || path
            .strip_prefix(ancestor)
            .is_some_and(|rest| rest.starts_with(['.', '[']))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_below_a_refused_one_are_recognised() {
        assert!(is_at_or_below("spec.a[0].b", "spec.a"));
        assert!(is_at_or_below("spec.a", "spec.a"));
        assert!(!is_at_or_below("spec.ab", "spec.a"));
        assert!(!is_at_or_below("spec", "spec.a"));
    }
}
