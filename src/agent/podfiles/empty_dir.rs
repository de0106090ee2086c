//! What host directory an emptyDir volume needs: a plain directory, or a tmpfs sized as kubelet sizes it.

use crate::spec::container::Container;
use crate::spec::downward::ResourceList;
use crate::spec::quantity::QuantityError;
use crate::spec::volume::{EmptyDirVolumeSource, StorageMedium};

/// The directory the runtime must create for an emptyDir (and remove with the instance).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmptyDir {
    /// A directory on the node's disk. kubelet enforces `sizeLimit` by evicting the pod;
    /// it is passed on so the runtime can do the same or warn.
    Disk { size_limit_bytes: Option<u64> },
    /// A tmpfs (`medium: Memory`); None means the kernel default (half the RAM).
    Tmpfs { size_bytes: Option<u64> },
}

/// The directory `source` needs. As kubelet (`SizeMemoryBackedVolumes`), a tmpfs gets
/// `sizeLimit`, else the node's allocatable memory, capped by the pod's memory limit (the
/// sum of its containers' limits) when one is set.
pub fn empty_dir(
    source: &EmptyDirVolumeSource,
    containers: &[Container],
    allocatable: Option<&ResourceList>,
) -> Result<EmptyDir, QuantityError> {
    let size_limit = source.size_limit.as_ref().map(|q| q.value()).transpose()?;
    let size_limit = size_limit.map(non_negative);
    if source.medium == StorageMedium::Default {
        return Ok(EmptyDir::Disk {
            size_limit_bytes: size_limit,
        });
    }
    let allocatable = allocatable
        .and_then(|a| a.get("memory"))
        .map(|q| q.value())
        .transpose()?
        .map(non_negative);
    let mut pod_limit = 0u64;
    for c in containers {
        if let Some(limit) = c.resources.memory_limit_bytes() {
            pod_limit = pod_limit.saturating_add(non_negative(limit?));
        }
    }
    let size = size_limit.or(allocatable);
    let size = match size {
        Some(s) if pod_limit > 0 => Some(s.min(pod_limit)),
        None if pod_limit > 0 => Some(pod_limit),
        other => other,
    };
    Ok(EmptyDir::Tmpfs { size_bytes: size })
}

/// Validation refuses negative quantities; zero is what one would mean.
fn non_negative(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;
    use crate::spec::quantity::Quantity;

    #[test]
    fn empty_dirs_are_sized_as_kubelet_sizes_them() {
        const MI: u64 = 1 << 20;
        let limited: Vec<Container> = serde_json::from_value(json!([
            {"name": "a", "resources": {"limits": {"memory": "100Mi"}}},
            {"name": "b", "resources": {"limits": {"memory": "28Mi"}}},
            {"name": "c"}
        ]))
        .unwrap();
        let node: ResourceList = BTreeMap::from([("memory".into(), Quantity("1Gi".into()))]);
        let cases: Vec<(serde_json::Value, &[Container], Option<&ResourceList>, EmptyDir)> = vec![
            (
                json!({}),
                &[],
                Some(&node),
                EmptyDir::Disk {
                    size_limit_bytes: None,
                },
            ),
            (
                json!({"sizeLimit": "1Gi"}),
                &limited,
                Some(&node),
                EmptyDir::Disk {
                    size_limit_bytes: Some(1024 * MI),
                },
            ),
            (
                json!({"medium": "Memory", "sizeLimit": "64Mi"}),
                &[],
                Some(&node),
                EmptyDir::Tmpfs {
                    size_bytes: Some(64 * MI),
                },
            ),
            (
                json!({"medium": "Memory"}),
                &[],
                Some(&node),
                EmptyDir::Tmpfs {
                    size_bytes: Some(1024 * MI),
                },
            ),
            (
                json!({"medium": "Memory", "sizeLimit": "512Mi"}),
                &limited,
                Some(&node),
                EmptyDir::Tmpfs {
                    size_bytes: Some(128 * MI),
                },
            ),
            (
                json!({"medium": "Memory"}),
                &limited,
                None,
                EmptyDir::Tmpfs {
                    size_bytes: Some(128 * MI),
                },
            ),
            (
                json!({"medium": "Memory"}),
                &[],
                None,
                EmptyDir::Tmpfs { size_bytes: None },
            ),
        ];
        for (source, containers, node, want) in cases {
            let s: EmptyDirVolumeSource = serde_json::from_value(source.clone()).unwrap();
            assert_eq!(empty_dir(&s, containers, node), Ok(want), "{source}");
        }
    }

    #[test]
    fn a_size_that_is_not_a_quantity_is_an_error() {
        let s = EmptyDirVolumeSource {
            size_limit: Some(Quantity("lots".into())),
            ..EmptyDirVolumeSource::default()
        };
        assert_eq!(empty_dir(&s, &[], None), Err(QuantityError::Syntax));
    }
}
