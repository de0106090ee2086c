//! One DaemonSet read from a manifest: where it came from, the object, and its problems.

use std::fmt;

use serde::Serialize;
use thiserror::Error;

use super::daemonset::DaemonSet;
use super::issue::{FieldPath, Issue, Severity};
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

/// The outcome of reading one object of a manifest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Manifest {
    pub origin: Origin,
    /// The object, defaulted as Kubernetes would store it, when it could be built at all
    /// (also when it has errors, so that its name can be shown).
    pub daemonset: Option<DaemonSet>,
    /// Errors and warnings, in document order.
    pub issues: Vec<Issue>,
}

impl Manifest {
    /// A manifest that failed as a whole (not text, not YAML, empty...).
    pub(crate) fn failed(origin: Origin, issue: Issue) -> Self {
        Manifest {
            origin,
            daemonset: None,
            issues: vec![issue],
        }
    }

    /// `metadata.name`, when there is one.
    pub fn name(&self) -> Option<&str> {
        self.daemonset
            .as_ref()
            .map(|d| d.metadata.name.as_str())
            .filter(|n| !n.is_empty())
    }

    pub fn is_valid(&self) -> bool {
        self.daemonset.is_some() && !self.issues.iter().any(Issue::is_error)
    }

    pub fn errors(&self) -> impl Iterator<Item = &Issue> {
        self.issues.iter().filter(|i| i.severity == Severity::Error)
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Issue> {
        self.issues.iter().filter(|i| i.severity == Severity::Warning)
    }

    /// The revision hash of the pod template, when the object could be built.
    pub fn revision(&self) -> Option<String> {
        self.daemonset
            .as_ref()
            .map(|d| revision::revision_hash(&d.spec.template))
    }

    /// The DaemonSet and its warnings if it is valid, else every error at once.
    pub fn into_valid(self) -> Result<Valid, InvalidManifest> {
        match self.daemonset {
            Some(daemonset) if !self.issues.iter().any(Issue::is_error) => Ok(Valid {
                daemonset,
                warnings: self.issues,
            }),
            _ => Err(InvalidManifest {
                origin: self.origin,
                errors: self.issues.into_iter().filter(Issue::is_error).collect(),
            }),
        }
    }
}

/// A DaemonSet that passed validation, with what it does not honour.
#[derive(Debug, Clone, PartialEq)]
pub struct Valid {
    pub daemonset: DaemonSet,
    pub warnings: Vec<Issue>,
}

/// A manifest with errors; the message lists all of them.
#[derive(Debug, Clone, PartialEq, Error)]
pub struct InvalidManifest {
    pub origin: Origin,
    pub errors: Vec<Issue>,
}

impl fmt::Display for InvalidManifest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        write!(
            f,
            "{}: invalid DaemonSet ({n} error{})",
            self.origin,
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
    let mut walk = Walk::default();
    let json = walk.object(node, &fields::DAEMONSET, &FieldPath::root());
    let mut issues = std::mem::take(&mut walk.issues);
    let daemonset = match serde_json::from_value::<DaemonSet>(json) {
        Ok(mut ds) => {
            defaults::apply(&mut ds);
            for issue in validate::validate(&ds) {
                let repeated = walk.refused.iter().any(|r| is_at_or_below(&issue.path, r));
                if !repeated {
                    let loc = walk.location_of(&issue.path);
                    issues.push(issue.at(loc));
                }
            }
            Some(ds)
        }
        Err(e) => {
            // Only reachable after a refused required field; those errors say it already.
            if !issues.iter().any(Issue::is_error) {
                issues.push(Issue::error("", format!("cannot read the DaemonSet: {e}")).at(node.location));
            }
            None
        }
    };
    // Document order reads best; issues without a position keep their relative order.
    issues.sort_by_key(|i| i.location.map_or((u32::MAX, u32::MAX), |l| (l.line, l.column)));
    Manifest {
        origin,
        daemonset,
        issues,
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
