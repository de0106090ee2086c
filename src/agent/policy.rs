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
    /// Mounts of `own_dir` (the agent's volume directories: ConfigMaps, Secrets, emptyDirs)
    /// are not host paths the manifest chose, so `--allowed-host-paths` does not apply to them.
    pub fn check(
        &self,
        daemonset: &str,
        specs: &[InstanceSpec],
        own_dir: &std::path::Path,
    ) -> Result<(), String> {
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
            // What amounts to privileged: every capability, the admin one, or no seccomp filter.
            if self.deny_privileged {
                if let Some(cap) = spec
                    .security
                    .cap_add
                    .iter()
                    .find(|c| matches!(c.as_str(), "ALL" | "SYS_ADMIN" | "CAP_SYS_ADMIN"))
                {
                    return refuse(
                        format!("container {c} adds capability {cap}, as good as privileged"),
                        "--deny-privileged",
                    );
                }
                if spec.security.seccomp == Some(crate::runtime::Seccomp::Unconfined) {
                    return refuse(
                        format!("container {c} asks for no seccomp filter (Unconfined)"),
                        "--deny-privileged",
                    );
                }
            }
            if self.deny_host_network && spec.security.host_ipc {
                return refuse(
                    "asks for the host's IPC namespace (hostIPC)".into(),
                    "--deny-host-network",
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
                for m in spec
                    .mounts
                    .iter()
                    .filter(|m| !std::path::Path::new(&m.host_path).starts_with(own_dir))
                {
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

    const OWN_DIR: &str = "/var/lib/everynode/pods";

    #[test]
    fn deny_privileged_also_refuses_what_amounts_to_it() {
        let policy = NodePolicy {
            deny_privileged: true,
            ..NodePolicy::default()
        };
        let own = std::path::Path::new(OWN_DIR);
        let mut s = spec(false, false, &[]);
        s.security.cap_add = vec!["NET_ADMIN".into()];
        assert!(policy.check("ds", std::slice::from_ref(&s), own).is_ok());
        s.security.cap_add = vec!["SYS_ADMIN".into()];
        let why = policy.check("ds", std::slice::from_ref(&s), own).unwrap_err();
        assert!(
            why.contains("adds capability SYS_ADMIN") && why.contains("--deny-privileged"),
            "{why}"
        );
        s.security.cap_add.clear();
        s.security.seccomp = Some(crate::runtime::Seccomp::Unconfined);
        assert!(policy.check("ds", &[s], own).unwrap_err().contains("Unconfined"));
    }

    #[test]
    fn the_agents_own_volume_directories_are_not_host_paths() {
        let policy = NodePolicy {
            allowed_host_paths: Some(vec!["/var/log".into()]),
            ..NodePolicy::default()
        };
        let own = spec(
            false,
            false,
            &["/var/lib/everynode/pods/default_x/r1/volumes/cfg"],
        );
        assert!(policy.check("ds", &[own], std::path::Path::new(OWN_DIR)).is_ok());
        let escape = spec(false, false, &["/var/lib/everynode/podsX"]);
        assert!(policy
            .check("ds", &[escape], std::path::Path::new(OWN_DIR))
            .is_err());
    }
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
                propagation: None,
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
            let got = policy.check("ds", std::slice::from_ref(s), std::path::Path::new(OWN_DIR));
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
            .check(
                "ds",
                &[spec(false, false, &["/tmp"])],
                std::path::Path::new(OWN_DIR)
            )
            .is_err());
        assert!(none_allowed
            .check("ds", &[spec(false, false, &[])], std::path::Path::new(OWN_DIR))
            .is_ok());
    }
}
