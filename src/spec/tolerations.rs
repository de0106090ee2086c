//! The tolerations every DaemonSet instance gets, added as the Kubernetes DaemonSet
//! controller adds them (`AddOrUpdateDaemonPodTolerations`).

use super::pod::{PodSpec, Toleration, TolerationOperator};
use crate::scheduling::taint::TaintEffect;

/// Taint keys the Kubernetes node lifecycle uses; membership may set them on nodes too.
pub mod keys {
    pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
    pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
    pub const DISK_PRESSURE: &str = "node.kubernetes.io/disk-pressure";
    pub const MEMORY_PRESSURE: &str = "node.kubernetes.io/memory-pressure";
    pub const PID_PRESSURE: &str = "node.kubernetes.io/pid-pressure";
    pub const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
    pub const NETWORK_UNAVAILABLE: &str = "node.kubernetes.io/network-unavailable";
}

fn exists(key: &str, effect: TaintEffect) -> Toleration {
    Toleration {
        key: key.to_string(),
        operator: TolerationOperator::Exists,
        value: String::new(),
        effect: Some(effect),
        toleration_seconds: None,
    }
}

/// The tolerations Kubernetes adds to every DaemonSet pod: a node that is not ready or
/// unreachable keeps its instance forever (no seconds), and node conditions or a cordon never
/// keep an instance off. `network-unavailable` is tolerated only with the host network,
/// because only then can the instance work without the pod network.
pub fn daemon_tolerations(host_network: bool) -> Vec<Toleration> {
    use keys::*;
    let mut list = vec![
        exists(NOT_READY, TaintEffect::NoExecute),
        exists(UNREACHABLE, TaintEffect::NoExecute),
        exists(DISK_PRESSURE, TaintEffect::NoSchedule),
        exists(MEMORY_PRESSURE, TaintEffect::NoSchedule),
        exists(PID_PRESSURE, TaintEffect::NoSchedule),
        exists(UNSCHEDULABLE, TaintEffect::NoSchedule),
    ];
    if host_network {
        list.push(exists(NETWORK_UNAVAILABLE, TaintEffect::NoSchedule));
    }
    list
}

impl PodSpec {
    /// The template's tolerations plus the DaemonSet ones. As in Kubernetes
    /// (`AddOrUpdateTolerationInPodSpec`), a user toleration with the same key, operator,
    /// value and effect is replaced in place, so for example a `tolerationSeconds` on the
    /// `not-ready` toleration is dropped: DaemonSet instances are never evicted for that.
    pub fn effective_tolerations(&self) -> Vec<Toleration> {
        let mut list = self.tolerations.clone();
        for added in daemon_tolerations(self.host_network) {
            let same = list.iter_mut().find(|t| {
                t.key == added.key
                    && t.operator == added.operator
                    && t.value == added.value
                    && t.effect == added.effect
            });
            match same {
                Some(t) => *t = added,
                None => list.push(added),
            }
        }
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemon_tolerations_are_added_after_the_users() {
        let mut spec = PodSpec {
            tolerations: vec![Toleration {
                key: "dedicated".into(),
                operator: TolerationOperator::Equal,
                value: "gpu".into(),
                effect: Some(TaintEffect::NoSchedule),
                toleration_seconds: None,
            }],
            ..PodSpec::default()
        };
        let keys = |spec: &PodSpec| -> Vec<String> {
            spec.effective_tolerations().into_iter().map(|t| t.key).collect()
        };
        assert_eq!(
            keys(&spec),
            [
                "dedicated",
                keys::NOT_READY,
                keys::UNREACHABLE,
                keys::DISK_PRESSURE,
                keys::MEMORY_PRESSURE,
                keys::PID_PRESSURE,
                keys::UNSCHEDULABLE
            ]
        );
        spec.host_network = true;
        assert_eq!(keys(&spec).last().unwrap(), keys::NETWORK_UNAVAILABLE);
    }

    #[test]
    fn user_seconds_on_not_ready_are_replaced_by_forever() {
        let mut mine = exists(keys::NOT_READY, TaintEffect::NoExecute);
        mine.toleration_seconds = Some(300);
        let spec = PodSpec {
            tolerations: vec![mine],
            ..PodSpec::default()
        };
        let effective = spec.effective_tolerations();
        assert_eq!(effective[0].key, keys::NOT_READY);
        assert_eq!(effective[0].toleration_seconds, None);
        assert_eq!(effective.iter().filter(|t| t.key == keys::NOT_READY).count(), 1);
    }
}
