//! ConfigMaps and Secrets: the `v1` objects a DaemonSet's instances read configuration from, shaped as Kubernetes stores them.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::meta::ObjectMeta;

/// Kubernetes' limit on the data of one ConfigMap or Secret (etcd's request size).
pub const MAX_DATA_BYTES: usize = 1024 * 1024;

/// `type` of a Secret without one, as the API server defaults it.
pub const OPAQUE: &str = "Opaque";

/// A `v1` ConfigMap.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMap {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
    /// Values in base64, as in Kubernetes' JSON.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub binary_data: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immutable: Option<bool>,
}

impl ConfigMap {
    /// Every key with its bytes: `data` as UTF-8, `binaryData` decoded. Validation refuses
    /// undecodable values, so a stored ConfigMap never loses a key here.
    pub fn bytes(&self) -> BTreeMap<String, Vec<u8>> {
        let mut out: BTreeMap<String, Vec<u8>> = self
            .data
            .iter()
            .map(|(k, v)| (k.clone(), v.as_bytes().to_vec()))
            .collect();
        for (k, v) in &self.binary_data {
            if let Ok(bytes) = STANDARD.decode(v) {
                out.insert(k.clone(), bytes);
            }
        }
        out
    }

    /// Bytes of data, counted as Kubernetes counts them against [`MAX_DATA_BYTES`].
    pub fn size(&self) -> usize {
        let text: usize = self.data.values().map(String::len).sum();
        let binary: usize = self.binary_data.values().map(|v| decoded_len(v)).sum();
        text + binary
    }
}

/// A `v1` Secret as read from a manifest; stored sealed (see `security::at_rest`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Secret {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Values in base64.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
    /// Plain values, folded into `data` by [`Secret::normalize`] as the API server does.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub string_data: BTreeMap<String, String>,
    #[serde(default = "opaque", rename = "type")]
    pub type_: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immutable: Option<bool>,
}

fn opaque() -> String {
    OPAQUE.to_string()
}

impl Default for Secret {
    fn default() -> Self {
        Secret {
            api_version: String::new(),
            kind: String::new(),
            metadata: ObjectMeta::default(),
            data: BTreeMap::new(),
            string_data: BTreeMap::new(),
            type_: opaque(),
            immutable: None,
        }
    }
}

impl Secret {
    /// Folds `stringData` into `data` (a key in both takes the `stringData` value, as in
    /// Kubernetes) and defaults an empty `type`.
    pub fn normalize(&mut self) {
        for (k, v) in std::mem::take(&mut self.string_data) {
            self.data.insert(k, STANDARD.encode(v));
        }
        if self.type_.is_empty() {
            self.type_ = opaque();
        }
    }

    /// Every key with its decoded bytes, `stringData` included; `None` for a value that is
    /// not base64 (validation refuses those).
    pub fn decoded(&self) -> Option<BTreeMap<String, Vec<u8>>> {
        let mut out = BTreeMap::new();
        for (k, v) in &self.data {
            out.insert(k.clone(), STANDARD.decode(v).ok()?);
        }
        for (k, v) in &self.string_data {
            out.insert(k.clone(), v.as_bytes().to_vec());
        }
        Some(out)
    }
}

/// Length of a base64 value once decoded (an estimate for invalid input, which validation
/// reports separately).
pub(crate) fn decoded_len(v: &str) -> usize {
    let trimmed = v.trim_end_matches('=');
    trimmed.len() * 3 / 4
}

/// Whether `v` is standard base64 with padding, as Go's `encoding/base64.StdEncoding` reads
/// Secret data.
pub(crate) fn is_base64(v: &str) -> bool {
    STANDARD.decode(v).is_ok()
}

/// A `v1` Namespace: accepted from bundles; namespaces exist implicitly, so it stores nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Namespace {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_data_wins_over_data_and_type_defaults() {
        let mut s = Secret {
            data: BTreeMap::from([
                ("a".into(), STANDARD.encode("old")),
                ("b".into(), STANDARD.encode("keep")),
            ]),
            string_data: BTreeMap::from([("a".into(), "new".into())]),
            type_: String::new(),
            ..Secret::default()
        };
        s.normalize();
        assert!(s.string_data.is_empty());
        assert_eq!(s.type_, OPAQUE);
        let d = s.decoded().unwrap();
        assert_eq!(d["a"], b"new");
        assert_eq!(d["b"], b"keep");
    }

    #[test]
    fn config_map_bytes_merge_text_and_binary() {
        let cm = ConfigMap {
            data: BTreeMap::from([("conf".into(), "x=1\n".into())]),
            binary_data: BTreeMap::from([("bin".into(), STANDARD.encode([0u8, 159, 146, 150]))]),
            ..ConfigMap::default()
        };
        let b = cm.bytes();
        assert_eq!(b["conf"], b"x=1\n");
        assert_eq!(b["bin"], vec![0u8, 159, 146, 150]);
        assert_eq!(cm.size(), 4 + 4);
    }

    #[test]
    fn base64_is_checked_strictly() {
        assert!(is_base64("aGVsbG8="));
        assert!(is_base64(""));
        assert!(!is_base64("hello!"));
        assert!(!is_base64("aGVsbG8"));
        assert_eq!(decoded_len("aGVsbG8="), 5);
    }
}
