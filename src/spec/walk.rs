//! Checks a document tree against the field table: unknown fields, wrong types, ignored
//! Kubernetes fields. Produces clean JSON for the typed model plus the issues found.

use std::collections::HashMap;

use super::issue::{FieldPath, Issue, Location};
use super::schema::{Field, Kind, Schema};
use super::tree::{Node, Value};

/// What a walk found.
#[derive(Debug, Default)]
pub(crate) struct Walk {
    pub issues: Vec<Issue>,
    /// Position of every field seen, so that later validation errors can point at a line.
    pub locations: HashMap<String, Location>,
    /// Paths whose value was refused; validation errors at or below them would only repeat
    /// the same problem.
    pub refused: Vec<String>,
}

impl Walk {
    /// Walks a document against a schema and returns the JSON the model is read from.
    pub fn object(&mut self, node: &Node, schema: &'static Schema, path: &FieldPath) -> serde_json::Value {
        self.value(node, Kind::Object(schema), path)
            .unwrap_or(serde_json::Value::Object(Default::default()))
    }

    /// The position recorded for a path, or for its nearest ancestor.
    pub fn location_of(&self, path: &str) -> Option<Location> {
        let mut p = path;
        loop {
            if let Some(loc) = self.locations.get(p) {
                return Some(*loc);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }

    fn refuse(&mut self, path: &FieldPath, node: &Node, message: String, hint: Option<String>) {
        let mut issue = Issue::error(path.as_str(), message).at(node.location);
        issue.hint = hint;
        self.issues.push(issue);
        self.refused.push(path.as_str().to_string());
    }

    fn type_error(&mut self, path: &FieldPath, node: &Node, expected: &str) {
        let got = describe(&node.value);
        let hint = match (&node.value, expected) {
            (Value::Int(_) | Value::UInt(_) | Value::Float(_) | Value::Bool(_), "string") => {
                Some("put the value in quotes".to_string())
            }
            (Value::String(_), "list of strings") => {
                Some("write a list: [\"a\", \"b\"] or one `- item` per line".to_string())
            }
            _ => None,
        };
        self.refuse(
            path,
            node,
            format!("Invalid type: expected {expected}, got {got}"),
            hint,
        );
    }

    /// Checks one value; None means "absent" (null, or refused).
    fn value(&mut self, node: &Node, kind: Kind, path: &FieldPath) -> Option<serde_json::Value> {
        use serde_json::Value as J;
        if let Some(loc) = node.location {
            self.locations.entry(path.as_str().to_string()).or_insert(loc);
        }
        if matches!(node.value, Value::Null) {
            return None;
        }
        match kind {
            Kind::Str => match &node.value {
                Value::String(s) => Some(J::String(s.clone())),
                _ => self.mismatch(path, node, "string"),
            },
            Kind::Bool => match node.value {
                Value::Bool(b) => Some(J::Bool(b)),
                _ => self.mismatch(path, node, "boolean (true or false)"),
            },
            Kind::Int32 => match int(&node.value).and_then(|i| i32::try_from(i).ok()) {
                Some(i) => Some(J::from(i)),
                None => self.mismatch(path, node, "32-bit integer"),
            },
            Kind::Int64 => match int(&node.value) {
                Some(i) => Some(J::from(i)),
                None => self.mismatch(path, node, "integer"),
            },
            Kind::IntOrStr => match (&node.value, int(&node.value)) {
                (Value::String(s), _) => Some(J::String(s.clone())),
                (_, Some(i)) if i32::try_from(i).is_ok() => Some(J::from(i)),
                _ => self.mismatch(path, node, "integer or string"),
            },
            Kind::Enum(allowed) => self.enumeration(node, allowed, path),
            Kind::StrList => self.list(node, path, "list of strings", |w, item, p| {
                w.value(item, Kind::Str, p)
            }),
            // A refused element becomes an empty object rather than disappearing, so that the
            // indexes in later validation errors still match the manifest.
            Kind::ObjectList(schema) => self.list(node, path, "list of objects", |w, item, p| {
                Some(
                    w.value(item, Kind::Object(schema), p)
                        .unwrap_or_else(|| J::Object(Default::default())),
                )
            }),
            Kind::StrMap => self.map(node, path, |w, v, p| w.value(v, Kind::Str, p)),
            Kind::Quantity => self.quantity(node, path),
            Kind::QuantityMap => self.map(node, path, |w, v, p| w.quantity(v, p)),
            Kind::Object(schema) => self.fields(node, schema, path),
        }
    }

    fn quantity(&mut self, node: &Node, path: &FieldPath) -> Option<serde_json::Value> {
        use serde_json::Value as J;
        match &node.value {
            Value::String(s) => Some(J::String(s.clone())),
            Value::Int(i) => Some(J::String(i.to_string())),
            Value::UInt(u) => Some(J::String(u.to_string())),
            Value::Float(x) => Some(J::String(x.to_string())),
            _ => self.mismatch(path, node, "quantity such as \"500m\" or \"128Mi\""),
        }
    }

    fn mismatch(&mut self, path: &FieldPath, node: &Node, expected: &str) -> Option<serde_json::Value> {
        self.type_error(path, node, expected);
        None
    }

    fn enumeration(&mut self, node: &Node, allowed: &[&str], path: &FieldPath) -> Option<serde_json::Value> {
        let Value::String(s) = &node.value else {
            return self.mismatch(path, node, "string");
        };
        if allowed.contains(&s.as_str()) {
            return Some(serde_json::Value::String(s.clone()));
        }
        let shown: Vec<String> = allowed
            .iter()
            .filter(|a| !a.is_empty())
            .map(|a| format!("{a:?}"))
            .collect();
        let hint = allowed
            .iter()
            .find(|a| a.eq_ignore_ascii_case(s))
            .map(|a| format!("did you mean {a:?}? values are case-sensitive"));
        self.refuse(
            path,
            node,
            format!("Unsupported value: {s:?}: supported values: {}", shown.join(", ")),
            hint,
        );
        None
    }

    fn list(
        &mut self,
        node: &Node,
        path: &FieldPath,
        expected: &str,
        mut item: impl FnMut(&mut Self, &Node, &FieldPath) -> Option<serde_json::Value>,
    ) -> Option<serde_json::Value> {
        let Value::Seq(items) = &node.value else {
            return self.mismatch(path, node, expected);
        };
        let out = items
            .iter()
            .enumerate()
            .filter_map(|(i, n)| item(self, n, &path.index(i)))
            .collect();
        Some(serde_json::Value::Array(out))
    }

    fn map(
        &mut self,
        node: &Node,
        path: &FieldPath,
        mut value: impl FnMut(&mut Self, &Node, &FieldPath) -> Option<serde_json::Value>,
    ) -> Option<serde_json::Value> {
        let Value::Map(entries) = &node.value else {
            return self.mismatch(path, node, "map of strings to strings");
        };
        let mut out = serde_json::Map::new();
        for (k, v) in entries {
            let Some(key) = self.key(k, path) else {
                continue;
            };
            if matches!(v.value, Value::Null) {
                self.type_error(&path.key(&key), v, "string");
                continue;
            }
            if let Some(v) = value(self, v, &path.key(&key)) {
                out.insert(key, v);
            }
        }
        Some(serde_json::Value::Object(out))
    }

    fn key(&mut self, k: &Node, path: &FieldPath) -> Option<String> {
        match &k.value {
            Value::String(s) => Some(s.clone()),
            other => {
                let text = describe(other);
                self.refuse(
                    path,
                    k,
                    format!("Invalid key: keys must be strings, got {text}"),
                    Some("put the key in quotes".to_string()),
                );
                None
            }
        }
    }

    fn fields(
        &mut self,
        node: &Node,
        schema: &'static Schema,
        path: &FieldPath,
    ) -> Option<serde_json::Value> {
        let Value::Map(entries) = &node.value else {
            return self.mismatch(path, node, &format!("object ({})", schema.name));
        };
        let mut out = serde_json::Map::new();
        for (k, v) in entries {
            let Some(name) = self.key(k, path) else {
                continue;
            };
            let child = path.child(&name);
            if let Some(loc) = k.location {
                self.locations.insert(child.as_str().to_string(), loc);
            }
            match schema.field(&name) {
                Some(Field { kind: Some(kind), .. }) => {
                    if let Some(v) = self.value(v, *kind, &child) {
                        out.insert(name, v);
                    }
                }
                Some(field) => {
                    if !is_unset(v, field.harmless) {
                        let message = match field.note {
                            Some(why) => format!("not honoured by everynode: {why}"),
                            None => "not honoured by everynode; ignored".to_string(),
                        };
                        self.issues
                            .push(Issue::warning(child.as_str(), message).at(k.location));
                    }
                    if schema.keep_ignored {
                        out.insert(name, v.to_json());
                    }
                }
                None => {
                    let (message, hint) = match schema.nearest(&name) {
                        Some(near) => {
                            // What validation would say about the field the user meant
                            // (`image: Required value`) is a consequence of the typo.
                            self.refused.push(path.child(near).as_str().to_string());
                            (format!("unknown field, did you mean `{near}`?"), None)
                        }
                        None => (
                            "unknown field".to_string(),
                            Some(format!(
                                "{} has the fields: {}",
                                schema.name,
                                schema.honoured_names().join(", ")
                            )),
                        ),
                    };
                    self.refuse(&child, k, message, hint);
                }
            }
        }
        for field in schema.fields.iter().filter(|f| f.required) {
            if out.contains_key(field.name) {
                continue;
            }
            let child = path.child(field.name);
            if !self.refused.iter().any(|r| r == child.as_str()) {
                self.refuse(&child, node, "Required value".to_string(), None);
            }
            // The model reads the object with a placeholder; whatever validation would
            // then say about the rest of it would be about the placeholder.
            self.refused.push(path.as_str().to_string());
        }
        Some(serde_json::Value::Object(out))
    }
}

/// Null, empty and the harmless value leave behaviour unchanged, so they are not worth a
/// warning (exported manifests are full of `securityContext: {}` and `dnsPolicy: ClusterFirst`).
fn is_unset(node: &Node, harmless: Option<&str>) -> bool {
    match &node.value {
        Value::Null => true,
        Value::Seq(items) => items.is_empty(),
        Value::Map(entries) => entries.is_empty(),
        Value::String(s) => Some(s.as_str()) == harmless,
        Value::Bool(b) => Some(if *b { "true" } else { "false" }) == harmless,
        _ => false,
    }
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        _ => None,
    }
}

/// A short description of a value for "expected X, got Y" messages.
fn describe(v: &Value) -> String {
    let shown = match v {
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::UInt(u) => u.to_string(),
        Value::Float(x) => x.to_string(),
        Value::String(s) if s.chars().count() <= 40 => format!("{s:?}"),
        Value::String(_) => "a long string".to_string(),
        Value::Seq(_) | Value::Map(_) | Value::Null => return v.type_name().to_string(),
    };
    format!("{} {shown}", v.type_name())
}

#[cfg(test)]
mod tests;
