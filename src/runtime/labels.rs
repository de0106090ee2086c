//! Every label key the runtimes put on an instance, so adoption and orphan removal agree on them.

use std::collections::BTreeMap;

use super::InstanceSpec;

/// Which cluster owns the instance; two clusters may share one Docker engine.
pub const CLUSTER: &str = "io.everynode.cluster";
/// Which node's agent owns the instance; simulated nodes may share one engine.
pub const NODE: &str = "io.everynode.node";
/// The DaemonSet the instance belongs to.
pub const DAEMONSET: &str = "io.everynode.daemonset";
/// The revision hash it was created from.
pub const REVISION: &str = "io.everynode.revision";
/// Hash of the whole [`InstanceSpec`], to detect drift inside one revision.
pub const SPEC_HASH: &str = "io.everynode.spec-hash";
/// The container name from the pod template.
pub const CONTAINER: &str = "io.everynode.container";
/// Set on instances of init containers (sidecars included) only: the container's position
/// among them. What tells a completed init instance, kept for adoption, from a crashed app one.
pub const INIT: &str = "io.everynode.init";

/// The labels an instance of `spec` carries: the pod template labels, then everynode's own keys
/// (which win, so a template cannot make an instance look like another DaemonSet's).
pub fn for_spec(spec: &InstanceSpec) -> BTreeMap<String, String> {
    let mut labels = spec.labels.clone();
    for (k, v) in [
        (CLUSTER, spec.cluster.clone()),
        (NODE, spec.node.clone()),
        (DAEMONSET, spec.daemonset.clone()),
        (REVISION, spec.revision.clone()),
        (SPEC_HASH, spec.spec_hash()),
        (CONTAINER, spec.container_name.clone()),
    ] {
        labels.insert(k.to_string(), v);
    }
    match spec.init_index {
        Some(i) => labels.insert(INIT.to_string(), i.to_string()),
        // A template label of that name must not make an app instance pass for an init one.
        None => labels.remove(INIT),
    };
    labels
}

/// The init container position `labels` carry; `None` for an app container's instance.
pub fn init_index(labels: &BTreeMap<String, String>) -> Option<u32> {
    labels.get(INIT).and_then(|v| v.parse().ok())
}

/// Whether `labels` mark an instance of this cluster and node.
pub fn belongs_to(labels: &BTreeMap<String, String>, cluster: &str, node: &str) -> bool {
    labels.get(CLUSTER).map(String::as_str) == Some(cluster)
        && labels.get(NODE).map(String::as_str) == Some(node)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::test_support::spec;

    #[test]
    fn own_keys_override_template_labels() {
        let mut s = spec("ds", "n1");
        s.labels.insert(DAEMONSET.into(), "other".into());
        s.labels.insert("app".into(), "example".into());
        let l = for_spec(&s);
        assert_eq!(l[DAEMONSET], "ds");
        assert_eq!(l["app"], "example");
        assert_eq!(l[SPEC_HASH], s.spec_hash());
        assert!(belongs_to(&l, "c1", "n1"));
        assert!(!belongs_to(&l, "c1", "n2"));
        assert!(!belongs_to(&l, "c2", "n1"));
        assert_eq!(init_index(&l), None);
    }

    #[test]
    fn init_instances_carry_their_position_and_app_instances_never_do() {
        let mut s = spec("ds", "n1");
        s.labels.insert(INIT.into(), "3".into());
        assert_eq!(init_index(&for_spec(&s)), None, "a template cannot fake it");
        s.init_index = Some(1);
        let l = for_spec(&s);
        assert_eq!(l[INIT], "1");
        assert_eq!(init_index(&l), Some(1));
    }
}
