//! Kubernetes' validation of ConfigMaps, Secrets and Namespaces: names, keys, encodings and the 1 MiB limit.

use super::names::{self, is_config_map_key, is_dns1123_label, is_dns1123_subdomain};
use super::{annotation_syntax, labels};
use crate::spec::config::{decoded_len, is_base64, ConfigMap, Namespace, Secret, MAX_DATA_BYTES};
use crate::spec::issue::{FieldPath, Issue, Issues};
use crate::spec::meta::ObjectMeta;

/// Validates a ConfigMap as the API server would.
pub fn validate_config_map(cm: &ConfigMap) -> Vec<Issue> {
    let mut out = Issues::default();
    let root = FieldPath::root();
    header(&mut out, &cm.api_version, &cm.kind, "ConfigMap");
    meta(&mut out, &cm.metadata, "ConfigMap");
    keys(&mut out, &root.child("data"), cm.data.keys());
    keys(&mut out, &root.child("binaryData"), cm.binary_data.keys());
    for (k, v) in &cm.binary_data {
        if !is_base64(v) {
            out.invalid(
                &root.child("binaryData").key(k),
                "<binary>",
                "must be base64-encoded",
            )
            .hint("encode the value with `base64 -w0`, or put text under data instead");
        }
        if cm.data.contains_key(k) {
            out.invalid(
                &root.child("data").key(k),
                k,
                "duplicate of key present in binaryData",
            )
            .hint("a key may appear in data or in binaryData, not in both");
        }
    }
    too_long(&mut out, cm.size());
    out.into_vec()
}

/// Validates a Secret (before `stringData` is folded into `data`).
pub fn validate_secret(s: &Secret) -> Vec<Issue> {
    let mut out = Issues::default();
    let root = FieldPath::root();
    header(&mut out, &s.api_version, &s.kind, "Secret");
    meta(&mut out, &s.metadata, "Secret");
    keys(&mut out, &root.child("data"), s.data.keys());
    keys(&mut out, &root.child("stringData"), s.string_data.keys());
    let mut size = 0;
    for (k, v) in &s.data {
        if !is_base64(v) {
            // The value is secret: never echo it.
            out.invalid(
                &root.child("data").key(k),
                "<secret value>",
                "must be base64-encoded",
            )
            .hint("encode the value with `base64 -w0`, or give it as plain text under stringData");
        }
        if !s.string_data.contains_key(k) {
            size += decoded_len(v);
        }
    }
    size += s.string_data.values().map(String::len).sum::<usize>();
    too_long(&mut out, size);
    let has = |k: &str| s.data.contains_key(k) || s.string_data.contains_key(k);
    let required: &[&str] = match s.type_.as_str() {
        "kubernetes.io/tls" => &["tls.crt", "tls.key"],
        "kubernetes.io/ssh-auth" => &["ssh-privatekey"],
        "kubernetes.io/dockerconfigjson" => &[".dockerconfigjson"],
        _ => &[],
    };
    for key in required {
        if !has(key) {
            out.required(&root.child("data").key(key))
                .hint(format!("a Secret of type {} must hold the key {key}", s.type_));
        }
    }
    out.into_vec()
}

/// Validates a Namespace: only its name matters, since namespaces exist implicitly.
pub fn validate_namespace(ns: &Namespace) -> Vec<Issue> {
    let mut out = Issues::default();
    let root = FieldPath::root();
    header(&mut out, &ns.api_version, &ns.kind, "Namespace");
    let name = root.child("metadata").child("name");
    if ns.metadata.name.is_empty() {
        out.required(&name);
    } else if !is_dns1123_label(&ns.metadata.name) {
        out.invalid(&name, &ns.metadata.name, names::DNS1123_LABEL);
    }
    labels(
        &mut out,
        &root.child("metadata").child("labels"),
        &ns.metadata.labels,
    );
    out.into_vec()
}

fn header(out: &mut Issues, api_version: &str, kind: &str, expected_kind: &str) {
    let root = FieldPath::root();
    if api_version.is_empty() {
        out.required(&root.child("apiVersion"))
            .hint("add `apiVersion: v1`");
    } else if api_version != "v1" {
        out.unsupported(&root.child("apiVersion"), api_version, &["v1"]);
    }
    if kind != expected_kind {
        out.unsupported(&root.child("kind"), kind, &[expected_kind]);
    }
}

fn meta(out: &mut Issues, meta: &ObjectMeta, what: &str) {
    let path = FieldPath::root().child("metadata");
    if meta.name.is_empty() {
        out.required(&path.child("name"))
            .hint(format!("give the {what} a name: metadata.name"));
    } else if !is_dns1123_subdomain(&meta.name) {
        out.invalid(&path.child("name"), &meta.name, names::DNS1123_SUBDOMAIN);
    }
    if !is_dns1123_label(&meta.namespace) {
        out.invalid(&path.child("namespace"), &meta.namespace, names::DNS1123_LABEL);
    }
    labels(out, &path.child("labels"), &meta.labels);
    annotation_syntax(out, &path.child("annotations"), &meta.annotations);
}

fn keys<'a>(out: &mut Issues, path: &FieldPath, keys: impl Iterator<Item = &'a String>) {
    for k in keys {
        if !is_config_map_key(k) {
            out.invalid(&path.key(k), k, names::CONFIG_MAP_KEY)
                .hint("each key becomes a file name when the object is mounted as a volume");
        }
    }
}

fn too_long(out: &mut Issues, size: usize) {
    if size > MAX_DATA_BYTES {
        out.err(
            &FieldPath::root().child("data"),
            format!("Too long: must have at most {MAX_DATA_BYTES} bytes (has {size})"),
        )
        .hint("split the data into several objects, or ship large files another way (a hostPath, the image)");
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn cm(data: &[(&str, &str)]) -> ConfigMap {
        ConfigMap {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            metadata: ObjectMeta {
                name: "conf".into(),
                namespace: "default".into(),
                ..ObjectMeta::default()
            },
            data: data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..ConfigMap::default()
        }
    }

    fn errors(issues: Vec<Issue>) -> Vec<String> {
        issues
            .iter()
            .map(|i| format!("{}: {}", i.path, i.message))
            .collect()
    }

    #[test]
    fn a_plain_config_map_is_valid() {
        assert_eq!(
            errors(validate_config_map(&cm(&[("fluent-bit.conf", "[INPUT]\n")]))),
            Vec::<String>::new()
        );
    }

    #[test]
    fn keys_must_be_file_names() {
        for bad in ["a/b", "..", ".", "..x", "sp ace", ""] {
            let e = errors(validate_config_map(&cm(&[(bad, "v")])));
            assert_eq!(e.len(), 1, "{bad:?}: {e:?}");
            assert!(e[0].starts_with(&format!("data[{bad}]: Invalid value")), "{e:?}");
        }
        for good in [".hidden", "a.b_c-D9", "x..y"] {
            assert!(
                errors(validate_config_map(&cm(&[(good, "v")]))).is_empty(),
                "{good}"
            );
        }
    }

    #[test]
    fn over_one_mebibyte_is_refused() {
        let big = "x".repeat(MAX_DATA_BYTES + 1);
        let e = errors(validate_config_map(&cm(&[("big", &big)])));
        assert_eq!(
            e,
            [format!(
                "data: Too long: must have at most 1048576 bytes (has {})",
                MAX_DATA_BYTES + 1
            )]
        );
        let exact = "x".repeat(MAX_DATA_BYTES);
        assert!(errors(validate_config_map(&cm(&[("big", &exact)]))).is_empty());
    }

    #[test]
    fn binary_data_must_be_base64_and_not_shadow_data() {
        let mut c = cm(&[("k", "v")]);
        c.binary_data.insert("k".into(), "AAEC".into());
        c.binary_data.insert("b".into(), "not base64!".into());
        let e = errors(validate_config_map(&c));
        assert!(
            e.iter()
                .any(|m| m.starts_with("binaryData[b]: Invalid value: \"<binary>\": must be base64")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m.starts_with("data[k]: Invalid value: \"k\": duplicate")),
            "{e:?}"
        );
    }

    #[test]
    fn secret_values_are_checked_without_being_echoed() {
        let s = Secret {
            api_version: "v1".into(),
            kind: "Secret".into(),
            metadata: ObjectMeta {
                name: "creds".into(),
                namespace: "default".into(),
                ..ObjectMeta::default()
            },
            data: BTreeMap::from([("token".into(), "hunter2-not-base64".into())]),
            ..Secret::default()
        };
        let e = errors(validate_secret(&s));
        assert_eq!(
            e,
            ["data[token]: Invalid value: \"<secret value>\": must be base64-encoded"]
        );
        assert!(!format!("{e:?}").contains("hunter2"));
    }

    #[test]
    fn typed_secrets_need_their_keys() {
        let s = Secret {
            api_version: "v1".into(),
            kind: "Secret".into(),
            metadata: ObjectMeta {
                name: "tls".into(),
                namespace: "default".into(),
                ..ObjectMeta::default()
            },
            type_: "kubernetes.io/tls".into(),
            string_data: BTreeMap::from([("tls.crt".into(), "PEM".into())]),
            ..Secret::default()
        };
        assert_eq!(errors(validate_secret(&s)), ["data[tls.key]: Required value"]);
    }

    #[test]
    fn names_and_versions_are_checked() {
        let mut c = cm(&[]);
        c.metadata.name = "Bad_Name".into();
        c.api_version = "apps/v1".into();
        let e = errors(validate_config_map(&c));
        assert!(
            e.iter()
                .any(|m| m.starts_with("apiVersion: Unsupported value: \"apps/v1\"")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m.starts_with("metadata.name: Invalid value: \"Bad_Name\"")),
            "{e:?}"
        );
        let ns = Namespace {
            api_version: "v1".into(),
            kind: "Namespace".into(),
            metadata: ObjectMeta {
                name: "logging".into(),
                ..ObjectMeta::default()
            },
        };
        assert!(validate_namespace(&ns).is_empty());
    }

    #[test]
    fn sizes_count_decoded_secret_bytes() {
        let s = Secret {
            api_version: "v1".into(),
            kind: "Secret".into(),
            metadata: ObjectMeta {
                name: "big".into(),
                namespace: "default".into(),
                ..ObjectMeta::default()
            },
            string_data: BTreeMap::from([("k".into(), "x".repeat(MAX_DATA_BYTES + 1))]),
            ..Secret::default()
        };
        assert_eq!(validate_secret(&s).len(), 1);
    }
}
