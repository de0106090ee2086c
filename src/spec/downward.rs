//! The downward API: the pod facts a node knows, the fields that expose them, and container resources, resolved as kubelet resolves them.
//!
//! [`FIELDS`] is the one list of supported field paths: validation checks manifests
//! against it and [`resolve_field`] reads the same paths, so nothing is accepted that is
//! then left unset.

use std::collections::BTreeMap;

use thiserror::Error;

use super::container::{Container, ResourceFieldSelector};
use super::quantity::{Quantity, QuantityError};
use crate::scheduling::labels::validate_label_key;

/// What a node knows about the instance it runs, in Kubernetes' terms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodFacts {
    /// The instance's name (the agent names it after the DaemonSet and the node).
    pub name: String,
    pub namespace: String,
    /// Stable for one instance and new for its replacement, as a pod's uid.
    pub uid: String,
    /// The template's labels (and whatever the agent adds).
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub node_name: String,
    /// No service accounts exist here; Kubernetes' default name is `default`.
    pub service_account_name: String,
    /// The node's primary address; empty when it has none.
    pub host_ip: String,
    /// Every address of the node, primary first.
    pub host_ips: Vec<String>,
    /// With `hostNetwork` the host's addresses, as in Kubernetes.
    pub pod_ip: String,
    pub pod_ips: Vec<String>,
}

/// Where a field reference appears: Kubernetes accepts different fields in each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// `env[].valueFrom.fieldRef`.
    Env,
    /// `downwardAPI` volume items (also inside `projected`).
    Volume,
}

/// A supported field path and where it may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DownwardField {
    pub path: &'static str,
    pub env: bool,
    pub volume: bool,
}

const fn field(path: &'static str, env: bool, volume: bool) -> DownwardField {
    DownwardField { path, env, volume }
}

/// Every field path kubelet resolves, with where the API server accepts it. The whole
/// label and annotation maps are volume-only (they are multi-line); single keys
/// (`metadata.labels['k']`) are accepted everywhere.
pub const FIELDS: &[DownwardField] = &[
    field("metadata.name", true, true),
    field("metadata.namespace", true, true),
    field("metadata.uid", true, true),
    field("metadata.labels", false, true),
    field("metadata.annotations", false, true),
    field("spec.nodeName", true, false),
    field("spec.serviceAccountName", true, false),
    field("status.hostIP", true, false),
    field("status.hostIPs", true, false),
    field("status.podIP", true, false),
    field("status.podIPs", true, false),
];

/// The paths that take a `['key']` subscript.
const SUBSCRIPTED: &[&str] = &["metadata.labels", "metadata.annotations"];

/// Container resources a `resourceFieldRef` may name. Hugepages are left out: nothing
/// here allocates them.
pub const RESOURCES: &[&str] = &[
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
];

/// A resource list (`cpu: 4`, `memory: 16Gi`), as a node's allocatable is given.
pub type ResourceList = BTreeMap<String, Quantity>;

/// Why a field or resource cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DownwardError {
    /// Not one of [`FIELDS`] (or not usable where it was used).
    #[error("unsupported fieldPath: {path}")]
    UnsupportedField { path: String },
    /// `['key']` after a field other than labels and annotations.
    #[error("fieldPath {path:?} does not support subscript")]
    NoSubscript { path: String },
    /// The key in `['key']` is not a valid label or annotation key.
    #[error("invalid key subscript in {path}: {reason}")]
    InvalidSubscript { path: String, reason: String },
    /// Not one of [`RESOURCES`].
    #[error("unsupported container resource: {resource}")]
    UnsupportedResource { resource: String },
    /// A limit, request or divisor that is not a quantity (validation refuses these).
    #[error("{what}: {source}")]
    Quantity {
        what: String,
        #[source]
        source: QuantityError,
    },
    /// No limit is set and the node's allocatable, which kubelet uses instead, is unknown.
    #[error("{resource} is not limited and the node's allocatable {resource} is unknown")]
    NoAllocatable { resource: String },
}

/// A parsed field path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path<'a> {
    Plain(&'a str),
    Subscripted(&'a str, &'a str),
}

/// Splits `metadata.labels['k']` as kubelet's `SplitMaybeSubscriptedPath` does.
fn split(path: &str) -> Path<'_> {
    let split = path
        .strip_suffix("']")
        .and_then(|s| s.split_once("['"))
        .filter(|(base, _)| !base.is_empty());
    match split {
        Some((base, key)) => Path::Subscripted(base, key),
        None => Path::Plain(path),
    }
}

/// Checks that `path` is a field Kubernetes accepts for `usage`.
pub fn check_field(path: &str, usage: Usage) -> Result<(), DownwardError> {
    match split(path) {
        Path::Subscripted(base, key) => check_subscript(path, base, key),
        Path::Plain(p) => {
            let usable = FIELDS.iter().any(|f| {
                f.path == p
                    && match usage {
                        Usage::Env => f.env,
                        Usage::Volume => f.volume,
                    }
            });
            if usable {
                Ok(())
            } else {
                Err(DownwardError::UnsupportedField { path: path.into() })
            }
        }
    }
}

fn check_subscript(path: &str, base: &str, key: &str) -> Result<(), DownwardError> {
    // Annotation keys are checked lowercased, as Kubernetes does (they may hold capitals).
    let key = match base {
        "metadata.labels" => key.to_string(),
        "metadata.annotations" => key.to_ascii_lowercase(),
        _ => return Err(DownwardError::NoSubscript { path: path.into() }),
    };
    validate_label_key(&key).map_err(|reason| DownwardError::InvalidSubscript {
        path: path.into(),
        reason,
    })
}

/// The paths accepted for `usage`, for "supported values" messages.
pub fn supported(usage: Usage) -> Vec<String> {
    let plain = FIELDS.iter().filter(|f| match usage {
        Usage::Env => f.env,
        Usage::Volume => f.volume,
    });
    plain
        .map(|f| f.path.to_string())
        .chain(SUBSCRIPTED.iter().map(|p| format!("{p}['<KEY>']")))
        .collect()
}

/// The value of a field path, formatted as kubelet formats it; a missing label or
/// annotation key reads as empty, as in Kubernetes.
pub fn resolve_field(path: &str, facts: &PodFacts) -> Result<String, DownwardError> {
    if let Path::Subscripted(base, key) = split(path) {
        check_subscript(path, base, key)?;
        let map = if base == "metadata.labels" {
            &facts.labels
        } else {
            &facts.annotations
        };
        return Ok(map.get(key).cloned().unwrap_or_default());
    }
    let value = match path {
        "metadata.name" => facts.name.clone(),
        "metadata.namespace" => facts.namespace.clone(),
        "metadata.uid" => facts.uid.clone(),
        "metadata.labels" => format_map(&facts.labels),
        "metadata.annotations" => format_map(&facts.annotations),
        "spec.nodeName" => facts.node_name.clone(),
        "spec.serviceAccountName" => facts.service_account_name.clone(),
        "status.hostIP" => facts.host_ip.clone(),
        "status.hostIPs" => facts.host_ips.join(","),
        "status.podIP" => facts.pod_ip.clone(),
        "status.podIPs" => facts.pod_ips.join(","),
        _ => return Err(DownwardError::UnsupportedField { path: path.into() }),
    };
    Ok(value)
}

/// kubelet's `FormatMap`: `key="value"` lines sorted by key, values quoted as Go's `%q`,
/// no final newline.
pub fn format_map(map: &BTreeMap<String, String>) -> String {
    let lines: Vec<String> = map.iter().map(|(k, v)| format!("{k}={}", go_quote(v))).collect();
    lines.join("\n")
}

/// Go's `strconv.Quote`: printable characters as they are, the usual backslash escapes,
/// other control and format characters as `\x`, `\u` or `\U` escapes.
///
/// Go decides "printable" with Unicode tables this crate does not carry; this treats
/// controls, separators other than the space, format characters (the common ranges) and
/// private-use characters as non-printable. Unassigned code points, which Go escapes, are
/// kept.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if c < ' ' || c == '\u{7f}' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if is_printable(c) => out.push(c),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

fn is_printable(c: char) -> bool {
    let n = c as u32;
    let format = matches!(
        n,
        0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x180E | 0x200B..=0x200F
            | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F | 0xFEFF
            | 0xFFF9..=0xFFFB | 0xE0001 | 0xE0020..=0xE007F
    );
    let private_or_noncharacter = matches!(
        n,
        0xE000..=0xF8FF | 0xF0000..=0x10FFFF | 0xFFFE | 0xFFFF
    );
    c == ' ' || !(c.is_control() || c.is_whitespace() || format || private_or_noncharacter)
}

/// The value of a container resource in units of the selector's divisor, rounded up as
/// kubelet rounds it (250m of cpu with divisor 1 is "1").
///
/// As kubelet does, an unset limit reads as the node's `allocatable` (`cpu`, `memory`,
/// `ephemeral-storage`); an unset request reads as the limit the manifest sets (the API
/// server's defaulting), else 0.
pub fn resolve_resource(
    selector: &ResourceFieldSelector,
    container: &Container,
    allocatable: Option<&ResourceList>,
) -> Result<String, DownwardError> {
    let resource = selector.resource.as_str();
    if !RESOURCES.contains(&resource) {
        return Err(DownwardError::UnsupportedResource {
            resource: resource.into(),
        });
    }
    let (kind, name) = resource.split_once('.').unwrap_or_default();
    let limits = &container.resources.limits;
    let amount = if kind == "limits" {
        let q = limits
            .get(name)
            .or_else(|| allocatable.and_then(|a| a.get(name)))
            .ok_or_else(|| DownwardError::NoAllocatable {
                resource: resource.into(),
            })?;
        Some(q)
    } else {
        container
            .resources
            .requests
            .get(name)
            .or_else(|| limits.get(name))
    };
    let cpu = name == "cpu";
    let read = |q: &Quantity, what: &str| {
        if cpu { q.milli_value() } else { q.value() }.map_err(|source| DownwardError::Quantity {
            what: what.to_string(),
            source,
        })
    };
    let value = match amount {
        Some(q) => read(q, resource)?,
        None => 0,
    };
    // An unset or zero divisor means 1, as Kubernetes compares it with the zero quantity.
    let divisor = match &selector.divisor {
        Some(d) => read(d, "divisor")?,
        None => 0,
    };
    let divisor = match (divisor, cpu) {
        (0, true) => 1000,
        (0, false) => 1,
        (d, _) => d,
    };
    Ok(div_ceil(value, divisor).to_string())
}

/// `ceil(a / b)`, as Go's `math.Ceil(float64(a) / float64(b))` but exact. Validation
/// allows only positive divisors; a negative one counts as 1 rather than flipping the sign.
fn div_ceil(a: i64, b: i64) -> i128 {
    let (a, b) = (i128::from(a), i128::from(b.max(1)));
    if a >= 0 {
        (a + b - 1) / b
    } else {
        a / b
    }
}

#[cfg(test)]
mod tests;
