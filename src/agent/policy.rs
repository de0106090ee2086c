//! Node-local policy: what a host's owner refuses to run on it (privileged containers, host networking, host paths outside given prefixes), whatever the cluster asks.

use std::path::{Component, Path};

use serde::Serialize;

use crate::runtime::InstanceSpec;

/// The state a refused instance reports in `get pods`; its last error says why.
pub const REFUSED_STATE: &str = "PolicyDenied";

/// What this host refuses; the default refuses nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NodePolicy {
    /// `--deny-privileged`: no `securityContext.privileged: true`.
    pub deny_privileged: bool,
    /// `--deny-host-network`: no `hostNetwork: true` (nor `hostPID`, which exposes the host the same way).
    pub deny_host_network: bool,
    /// `--allowed-host-paths`: hostPath volumes only under these absolute prefixes; `None`
    /// allows any path, an empty list none.
    pub allowed_host_paths: Option<Vec<String>>,
}

impl NodePolicy {
    /// Why `daemonset` may not run here, naming the field and the flag; `Ok` when it may.
    pub fn check(&self, daemonset: &str, specs: &[InstanceSpec]) -> Result<(), String> {
        let refuse = |what: String, flag: &str| {
            Err(format!(
                "refused by this node's policy ({flag}): daemonset {daemonset} {what}; the node's owner must change the flag, or the DaemonSet must not select this node"
            ))
        };
        for spec in specs {
            let c = &spec.container_name;
            if self.deny_privileged && spec.privileged {
                return refuse(
                    format!("container {c} asks for a privileged container"),
                    "--deny-privileged",
                );
            }
            if self.deny_host_network && spec.host_network {
                return refuse(
                    "asks for the host's network (hostNetwork)".into(),
                    "--deny-host-network",
                );
            }
            if self.deny_host_network && spec.host_pid {
                return refuse(
                    "asks for the host's process namespace (hostPID)".into(),
                    "--deny-host-network",
                );
            }
            if let Some(allowed) = &self.allowed_host_paths {
                for m in &spec.mounts {
                    if !path_allowed(&m.host_path, allowed) {
                        return refuse(
                            format!(
                                "mounts host path {} into container {c}, outside the allowed prefixes [{}]",
                                m.host_path,
                                allowed.join(", ")
                            ),
                            "--allowed-host-paths",
                        );
                    }
                }
            }
        }
        Ok(())
    }
}

/// Whether `path` lies under one of `prefixes`, by whole path components; a path with `..`
/// or a relative one is never allowed, since it could climb out of a prefix.
pub fn path_allowed(path: &str, prefixes: &[String]) -> bool {
    let p = Path::new(path);
    if !p.is_absolute() || p.components().any(|c| matches!(c, Component::ParentDir)) {
        return false;
    }
    prefixes.iter().any(|prefix| p.starts_with(Path::new(prefix)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::MountSpec;

    fn spec(privileged: bool, host_network: bool, paths: &[&str]) -> InstanceSpec {
        let mut s = crate::runtime::test_support::spec("ds", "n");
        s.privileged = privileged;
        s.host_network = host_network;
        s.mounts = paths
            .iter()
            .map(|p| MountSpec {
                host_path: p.to_string(),
                container_path: "/mnt".into(),
                read_only: true,
            })
            .collect();
        s
    }

    #[test]
    fn policy_table() {
        let strict = NodePolicy {
            deny_privileged: true,
            deny_host_network: true,
            allowed_host_paths: Some(vec!["/var/log".into(), "/srv/data/".into()]),
        };
        let cases: &[(&NodePolicy, InstanceSpec, Option<&str>)] = &[
            (&NodePolicy::default(), spec(true, true, &["/etc"]), None),
            (
                &strict,
                spec(false, false, &["/var/log", "/var/log/nginx", "/srv/data/x"]),
                None,
            ),
            (&strict, spec(true, false, &[]), Some("--deny-privileged")),
            (&strict, spec(false, true, &[]), Some("hostNetwork")),
            (&strict, spec(false, false, &["/var/logs"]), Some("/var/logs")),
            (
                &strict,
                spec(false, false, &["/var/log/../../etc"]),
                Some("--allowed-host-paths"),
            ),
            (&strict, spec(false, false, &["/"]), Some("--allowed-host-paths")),
        ];
        for (policy, s, want) in cases {
            let got = policy.check("ds", std::slice::from_ref(s));
            match want {
                None => assert!(got.is_ok(), "{got:?}"),
                Some(w) => {
                    let e = got.unwrap_err();
                    assert!(e.contains(w) && e.contains("daemonset ds"), "{e}");
                }
            }
        }
        let none_allowed = NodePolicy {
            allowed_host_paths: Some(vec![]),
            ..NodePolicy::default()
        };
        assert!(none_allowed
            .check("ds", &[spec(false, false, &["/tmp"])])
            .is_err());
        assert!(none_allowed.check("ds", &[spec(false, false, &[])]).is_ok());
    }
}
