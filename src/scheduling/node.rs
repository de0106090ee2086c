//! What placement knows about a node: its name, labels (with the builtin ones) and taints.

use std::collections::BTreeMap;

use super::taint::Taint;

pub const LABEL_HOSTNAME: &str = "kubernetes.io/hostname";
pub const LABEL_OS: &str = "kubernetes.io/os";
pub const LABEL_ARCH: &str = "kubernetes.io/arch";

/// A node as placement sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeInfo {
    /// The node id; `matchFields` on `metadata.name` and `nodeName` compare against it.
    pub name: String,
    /// All labels, the builtin `kubernetes.io/*` ones included.
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
}

impl NodeInfo {
    /// A node with only the builtin labels of the machine this code runs on.
    pub fn local(name: &str) -> Self {
        NodeInfo {
            name: name.to_string(),
            labels: builtin_labels(name, std::env::consts::OS, go_arch(std::env::consts::ARCH)),
            taints: Vec::new(),
        }
    }

    pub fn with_label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_string(), value.to_string());
        self
    }

    pub fn with_taint(mut self, taint: Taint) -> Self {
        self.taints.push(taint);
        self
    }
}

/// The labels the kubelet puts on every node; manifests select on them
/// (`nodeSelector: {kubernetes.io/os: linux}` is in nearly every DaemonSet).
pub fn builtin_labels(hostname: &str, os: &str, arch: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_HOSTNAME.to_string(), hostname.to_string()),
        (LABEL_OS.to_string(), os.to_string()),
        (LABEL_ARCH.to_string(), arch.to_string()),
    ])
}

/// Rust's architecture names in Go's spelling, which Kubernetes labels use.
pub fn go_arch(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64",
        "loongarch64" => "loong64",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn architectures_use_go_names() {
        assert_eq!(go_arch("x86_64"), "amd64");
        assert_eq!(go_arch("aarch64"), "arm64");
        assert_eq!(go_arch("s390x"), "s390x");
        assert_eq!(go_arch("riscv64"), "riscv64");
    }

    #[test]
    fn local_node_has_builtin_labels() {
        let n = NodeInfo::local("host-1");
        assert_eq!(n.labels[LABEL_HOSTNAME], "host-1");
        assert_eq!(n.labels[LABEL_OS], std::env::consts::OS);
        assert!(n.labels.contains_key(LABEL_ARCH));
    }
}
