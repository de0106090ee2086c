//! Problems found in a manifest: errors and warnings, each with a field path and a place.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Whether a problem blocks the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The manifest is accepted; something in it is not honoured.
    Warning,
    /// The manifest is refused.
    Error,
}

/// A position in the input text, 1-based, as editors count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Location {
    pub line: u32,
    pub column: u32,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// One problem, phrased like the Kubernetes API server phrases it
/// (`spec.template.spec.containers[0].image: Required value`), plus a hint on what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issue {
    pub severity: Severity,
    /// Field path from the object's root, empty for the document itself.
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// What to do about it, when there is something more useful to say than the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// Where in the input, when the input was text with positions (YAML).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
}

impl Issue {
    pub fn error(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(Severity::Error, path.into(), message.into())
    }

    pub fn warning(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(Severity::Warning, path.into(), message.into())
    }

    fn new(severity: Severity, path: String, message: String) -> Self {
        Issue {
            severity,
            path,
            message,
            hint: None,
            location: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn at(mut self, location: Option<Location>) -> Self {
        self.location = self.location.or(location);
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Adds a hint in place: `issues.required(&path).hint("...")`.
    pub fn hint(&mut self, hint: impl Into<String>) -> &mut Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)?;
        } else {
            write!(f, "{}: {}", self.path, self.message)?;
        }
        if let Some(hint) = &self.hint {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

/// A field path being built while walking an object: `spec.containers[0].ports[1]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct FieldPath(String);

impl FieldPath {
    pub fn root() -> Self {
        FieldPath(String::new())
    }

    /// The path of a named field below this one.
    pub fn child(&self, name: &str) -> Self {
        if self.0.is_empty() {
            FieldPath(name.to_string())
        } else {
            FieldPath(format!("{}.{name}", self.0))
        }
    }

    /// The path of a list element.
    pub fn index(&self, i: usize) -> Self {
        FieldPath(format!("{}[{i}]", self.0))
    }

    /// The path of a map entry, written as Kubernetes writes it (`limits[cpu]`).
    pub fn key(&self, k: &str) -> Self {
        FieldPath(format!("{}[{k}]", self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Collects issues while validating; `err` and `warn` keep call sites short.
#[derive(Debug, Default)]
pub struct Issues(pub Vec<Issue>);

impl Issues {
    pub fn err(&mut self, path: &FieldPath, message: impl Into<String>) -> &mut Issue {
        self.push(Issue::error(path.as_str(), message))
    }

    pub fn warn(&mut self, path: &FieldPath, message: impl Into<String>) -> &mut Issue {
        self.push(Issue::warning(path.as_str(), message))
    }

    /// Kubernetes' "Required value".
    pub fn required(&mut self, path: &FieldPath) -> &mut Issue {
        self.err(path, "Required value")
    }

    /// Kubernetes' "Invalid value: VALUE: DETAIL".
    pub fn invalid(&mut self, path: &FieldPath, value: impl fmt::Debug, detail: &str) -> &mut Issue {
        self.err(path, format!("Invalid value: {value:?}: {detail}"))
    }

    /// Kubernetes' "Unsupported value: VALUE: supported values: ...".
    pub fn unsupported(&mut self, path: &FieldPath, value: &str, supported: &[&str]) -> &mut Issue {
        let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        self.err(
            path,
            format!(
                "Unsupported value: {value:?}: supported values: {}",
                list.join(", ")
            ),
        )
    }

    /// Kubernetes' "Duplicate value: VALUE".
    pub fn duplicate(&mut self, path: &FieldPath, value: impl fmt::Debug) -> &mut Issue {
        self.err(path, format!("Duplicate value: {value:?}"))
    }

    fn push(&mut self, issue: Issue) -> &mut Issue {
        self.0.push(issue);
        self.0.last_mut().expect("just pushed")
    }

    pub fn into_vec(self) -> Vec<Issue> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_read_like_kubernetes_paths() {
        let p = FieldPath::root()
            .child("spec")
            .child("containers")
            .index(0)
            .child("resources")
            .child("limits")
            .key("cpu");
        assert_eq!(p.as_str(), "spec.containers[0].resources.limits[cpu]");
    }

    #[test]
    fn issues_print_path_message_and_hint() {
        let mut issues = Issues::default();
        issues
            .required(&FieldPath::root().child("spec").child("template"))
            .hint("add a pod template");
        issues.unsupported(&FieldPath::root().child("restartPolicy"), "Never", &["Always"]);
        let text: Vec<String> = issues.0.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "spec.template: Required value (add a pod template)",
                "restartPolicy: Unsupported value: \"Never\": supported values: \"Always\""
            ]
        );
    }
}
