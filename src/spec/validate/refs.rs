//! Validation of what env variables and volumes refer to: object names and keys, downward API fields, container resources, file modes and relative paths.

use super::is_dns1123_subdomain;
use super::names::{is_config_map_key, CONFIG_MAP_KEY, DNS1123_SUBDOMAIN};
use crate::spec::container::{Container, ObjectFieldSelector, ResourceFieldSelector};
use crate::spec::downward::{self, DownwardError, Usage, RESOURCES};
use crate::spec::issue::{FieldPath, Issues};
use crate::spec::quantity::{Quantity, QuantityError};

const FILE_MODE: &str = "must be a number between 0 and 0777 (octal), both inclusive";

/// The name of a ConfigMap or Secret: required, and a name such objects can have.
pub(crate) fn object_name(out: &mut Issues, p: &FieldPath, name: &str) {
    if name.is_empty() {
        out.required(p);
    } else if !is_dns1123_subdomain(name) {
        out.invalid(p, name, DNS1123_SUBDOMAIN);
    }
}

/// A key of a ConfigMap or Secret: required, and a key such objects can have.
pub(crate) fn object_key(out: &mut Issues, p: &FieldPath, key: &str) {
    if key.is_empty() {
        out.required(p);
    } else if !is_config_map_key(key) {
        out.invalid(p, key, CONFIG_MAP_KEY);
    }
}

/// A file mode of a projected file (`mode`, `defaultMode`).
pub(crate) fn file_mode(out: &mut Issues, p: &FieldPath, mode: i32) {
    if (0..=0o777).contains(&mode) {
        return;
    }
    let issue = out.invalid(p, mode, FILE_MODE);
    // `defaultMode: 644` is an octal mode written as a decimal number.
    let digits = mode.to_string();
    if mode > 0 && digits.len() <= 4 && digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        let octal = i32::from_str_radix(&digits, 8).unwrap_or_default();
        issue.hint(format!(
            "{mode} is decimal; for the octal mode write 0o{digits} or its decimal value {octal}"
        ));
    }
}

/// A path inside a volume (items' `path`): relative, never leaving the volume, and not one
/// of kubelet's own `..` entries.
pub(crate) fn volume_path(out: &mut Issues, p: &FieldPath, path: &str) {
    if path.is_empty() {
        out.required(p);
    } else if descending_path(out, p, path) && path.starts_with("..") {
        out.invalid(p, path, "must not start with '..'");
    }
}

/// A relative path that stays below its root (`subPath`, items' `path`); true when it is one.
pub(crate) fn descending_path(out: &mut Issues, p: &FieldPath, path: &str) -> bool {
    if path.starts_with('/') {
        out.invalid(p, path, "must be a relative path");
        false
    } else if path.split('/').any(|seg| seg == "..") {
        out.invalid(p, path, "must not contain '..'");
        false
    } else {
        true
    }
}

/// `fieldRef`: a field from the one list the resolver reads ([`downward::FIELDS`]).
pub(crate) fn field_ref(out: &mut Issues, p: &FieldPath, r: &ObjectFieldSelector, usage: Usage) {
    let path = p.child("fieldPath");
    if r.field_path.is_empty() {
        out.required(&path);
    } else {
        match downward::check_field(&r.field_path, usage) {
            Ok(()) => {}
            Err(DownwardError::NoSubscript { .. }) => {
                let base = r.field_path.split("['").next().unwrap_or_default();
                out.invalid(&path, base, "does not support subscript");
            }
            Err(DownwardError::InvalidSubscript { reason, .. }) => {
                out.invalid(&path, &r.field_path, &reason);
            }
            Err(_) => {
                let supported = downward::supported(usage);
                let supported: Vec<&str> = supported.iter().map(String::as_str).collect();
                out.unsupported(&path, &r.field_path, &supported);
            }
        }
    }
    if let Some(v) = r.api_version.as_deref().filter(|v| *v != "v1") {
        out.unsupported(&p.child("apiVersion"), v, &["v1"]);
    }
}

/// `resourceFieldRef`: a resource of a container of this pod, with a divisor Kubernetes
/// accepts for it. In volumes the container must be named; in env it defaults to its own.
pub(crate) fn resource_field_ref(
    out: &mut Issues,
    p: &FieldPath,
    r: &ResourceFieldSelector,
    containers: &[Container],
    usage: Usage,
) {
    let name = p.child("containerName");
    if r.container_name.is_empty() {
        if usage == Usage::Volume {
            out.required(&name);
        }
    } else if !containers.iter().any(|c| c.name == r.container_name) {
        out.err(&name, format!("Not found: {:?}", r.container_name))
            .hint("name one of spec.template.spec.containers");
    }
    if r.resource.is_empty() {
        out.required(&p.child("resource"));
        return;
    }
    if !RESOURCES.contains(&r.resource.as_str()) {
        out.unsupported(&p.child("resource"), &r.resource, RESOURCES);
        return;
    }
    if let Some(d) = &r.divisor {
        divisor(out, &p.child("divisor"), &r.resource, d);
    }
}

fn divisor(out: &mut Issues, p: &FieldPath, resource: &str, d: &Quantity) {
    let cpu = resource.ends_with(".cpu");
    let value = if cpu { d.milli_value() } else { d.value() };
    let value = match value {
        Ok(v) => v,
        Err(e) => {
            out.invalid(p, &d.0, &e.to_string());
            return;
        }
    };
    // An integral number of bytes: `1m` of memory rounds up to 1 but is not a divisor.
    let whole =
        matches!(d.milli_value(), Ok(m) if m % 1000 == 0) || d.milli_value() == Err(QuantityError::TooLarge);
    let ok = if cpu {
        matches!(value, 0 | 1 | 1000)
    } else {
        whole && (value == 0 || MEMORY_DIVISORS.contains(&value))
    };
    if !ok {
        let (which, allowed) = if cpu {
            ("cpu", "1m and 1")
        } else {
            (
                "memory",
                "1, 1k, 1M, 1G, 1T, 1P, 1E, 1Ki, 1Mi, 1Gi, 1Ti, 1Pi, 1Ei",
            )
        };
        out.invalid(
            p,
            &d.0,
            &format!("only divisor's values {allowed} are supported with the {which} resource"),
        );
    }
}

const MEMORY_DIVISORS: &[i64] = &[
    1,
    1_000,
    1_000_000,
    1_000_000_000,
    1_000_000_000_000,
    1_000_000_000_000_000,
    1_000_000_000_000_000_000,
    1 << 10,
    1 << 20,
    1 << 30,
    1 << 40,
    1 << 50,
    1 << 60,
];

/// A resource list (`limits`, `requests`): quantities, not negative.
pub(crate) fn quantity(out: &mut Issues, p: &FieldPath, name: &str, q: &Quantity) -> Option<i64> {
    let parsed = if name == "cpu" { q.milli_value() } else { q.value() };
    match parsed {
        Err(e) => {
            out.invalid(p, &q.0, &e.to_string())
                .hint("write e.g. cpu: 500m or memory: 128Mi");
            None
        }
        Ok(v) if v < 0 => {
            out.invalid(p, &q.0, "must be greater than or equal to 0");
            None
        }
        Ok(v) => Some(v),
    }
}
