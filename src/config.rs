//! Node settings: a TOML file, then `EVERYNODE_*` variables, then flags (each wins over the one before), validated into a [`NodeConfig`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};

use crate::error::InputError;
use crate::scheduling::{labels, Taint};

/// Default UDP port for gossip.
pub const DEFAULT_GOSSIP_PORT: u16 = 9494;
/// Default TCP port for the HTTP API.
pub const DEFAULT_API_PORT: u16 = 9495;
/// Default gossip round; 6 rounds join 100 nodes and 8-12 detect a death (see BENCHMARKS.md).
pub const DEFAULT_GOSSIP_INTERVAL_MS: u64 = 200;
/// Default Raft heartbeat: fits round trips (and a follower's fsync) below 100 ms, i.e. nodes in
/// one region; leader failover then takes under a second.
pub const DEFAULT_RAFT_HEARTBEAT_MS: u64 = 100;
/// Default cluster name; nodes only gossip with nodes of the same cluster.
pub const DEFAULT_CLUSTER: &str = "everynode";

/// Which container runtime a node uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeChoice {
    /// Docker when its socket answers, else processes.
    #[default]
    Auto,
    Docker,
    Process,
}

/// How the agent writes its logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The agent's flags as typed by clap; each also reads an `EVERYNODE_*` variable, which clap
/// applies only when the flag is absent, so flags win over the environment.
#[derive(Debug, Clone, Default, Args)]
pub struct AgentFlags {
    /// TOML config file (see config/ for examples); flags and EVERYNODE_* variables override it.
    #[arg(long, env = "EVERYNODE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Stable node name [default: kept in the data dir, else the host name].
    #[arg(long, env = "EVERYNODE_NODE_ID", value_name = "ID")]
    pub node_id: Option<String>,
    /// Where the node keeps its identity and state: the global `--data-dir`, which admin
    /// commands also read their token from, so it is parsed by [`crate::cli::Cli`].
    #[arg(skip)]
    pub data_dir: Option<PathBuf>,
    /// Cluster name; nodes gossip only within one cluster [default: everynode].
    #[arg(long, env = "EVERYNODE_CLUSTER", value_name = "NAME")]
    pub cluster: Option<String>,
    /// UDP address to gossip on [default: 0.0.0.0:9494].
    #[arg(long, env = "EVERYNODE_GOSSIP_ADDR", value_name = "HOST:PORT", value_parser = parse_socket_addr)]
    pub gossip_addr: Option<SocketAddr>,
    /// TCP address of the HTTP API [default: 0.0.0.0:9495].
    #[arg(long, env = "EVERYNODE_API_ADDR", value_name = "HOST:PORT", value_parser = parse_socket_addr)]
    pub api_addr: Option<SocketAddr>,
    /// Address other nodes reach this one at [default: the bind address, else the local address routing to the first seed].
    #[arg(long, env = "EVERYNODE_ADVERTISE_ADDR", value_name = "HOST", value_parser = parse_host)]
    pub advertise_addr: Option<String>,
    /// Gossip address of a node to join through (repeatable, or comma-separated).
    #[arg(long = "seed", env = "EVERYNODE_SEEDS", value_name = "HOST:PORT", value_delimiter = ',', value_parser = parse_seed)]
    pub seeds: Vec<String>,
    /// Node label (repeatable, or comma-separated).
    #[arg(long = "label", env = "EVERYNODE_LABELS", value_name = "KEY=VALUE", value_delimiter = ',', value_parser = labels::parse_label)]
    pub labels: Vec<(String, String)>,
    /// Node taint (repeatable, or comma-separated), e.g. dedicated=gpu:NoSchedule.
    #[arg(long = "taint", env = "EVERYNODE_TAINTS", value_name = "KEY[=VALUE]:EFFECT", value_delimiter = ',', value_parser = parse_taint)]
    pub taints: Vec<Taint>,
    /// Container runtime [default: auto].
    #[arg(long, env = "EVERYNODE_RUNTIME", value_enum)]
    pub runtime: Option<RuntimeChoice>,
    /// Log format on standard error [default: text].
    #[arg(long, env = "EVERYNODE_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Raft voters to aim for: 1, 3, 5 or 7 [default: 3].
    #[arg(long, env = "EVERYNODE_VOTERS", value_name = "N", value_parser = parse_voters)]
    pub voters: Option<usize>,
    /// Members the first seed waits for before forming the cluster [default: 1].
    #[arg(long, env = "EVERYNODE_BOOTSTRAP_EXPECT", value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub bootstrap_expect: Option<u16>,
    /// Seconds a voter may be dead before a live node takes its seat [default: 30].
    #[arg(long, env = "EVERYNODE_DEAD_VOTER_GRACE", value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub dead_voter_grace: Option<u64>,
    /// File with the cluster secret, the same on every node (mode 0600) [default: generated in the data dir when a node without seeds forms a new cluster].
    #[arg(long, env = "EVERYNODE_CLUSTER_SECRET_FILE", value_name = "FILE")]
    pub cluster_secret_file: Option<PathBuf>,
    /// Serve the API over TLS with this PEM certificate (chain); needs --tls-key.
    #[arg(long, env = "EVERYNODE_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "EVERYNODE_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// CA certificate nodes trust for each other's API with TLS: the global `--ca-cert`.
    #[arg(skip)]
    pub ca_cert: Option<PathBuf>,
    /// Refuse DaemonSets that ask for privileged containers on this host.
    #[arg(long, env = "EVERYNODE_DENY_PRIVILEGED")]
    pub deny_privileged: bool,
    /// Refuse DaemonSets that ask for the host's network or process namespace on this host.
    #[arg(long, env = "EVERYNODE_DENY_HOST_NETWORK")]
    pub deny_host_network: bool,
    /// Allow hostPath volumes only under these absolute prefixes (comma-separated) [default: any path].
    #[arg(long, env = "EVERYNODE_ALLOWED_HOST_PATHS", value_name = "PREFIX,...", value_delimiter = ',', num_args = 0..)]
    pub allowed_host_paths: Option<Vec<String>>,
    /// Seconds a dead node still counts as desired (and unavailable) in DaemonSet statuses, and
    /// a rollout that finished without it keeps it on its old revision to update it in waves
    /// when it returns; after that it counts for nothing [default: 300].
    #[arg(long, env = "EVERYNODE_DEAD_NODE_GRACE", value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(0..=31_536_000))]
    pub dead_node_grace: Option<u64>,
    /// Gossip round interval in milliseconds [default: 200].
    #[arg(long, env = "EVERYNODE_GOSSIP_INTERVAL_MS", value_name = "MS", value_parser = clap::value_parser!(u64).range(10..=10_000))]
    pub gossip_interval_ms: Option<u64>,
    /// Raft heartbeat in milliseconds, also the longest a Raft round trip between nodes may take;
    /// elections wait 2.5 to 4 heartbeats. Raise it, the same on every node, when round trips
    /// between nodes can exceed it (nodes in several regions) [default: 100].
    #[arg(long, env = "EVERYNODE_RAFT_HEARTBEAT_MS", value_name = "MS", value_parser = clap::value_parser!(u64).range(20..=5_000))]
    pub raft_heartbeat_ms: Option<u64>,
}

/// The `--config` file. Every field is optional; unknown fields are errors so typos surface.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub node_id: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub cluster: Option<String>,
    #[serde(default, deserialize_with = "de_opt_socket_addr")]
    pub gossip_addr: Option<SocketAddr>,
    #[serde(default, deserialize_with = "de_opt_socket_addr")]
    pub api_addr: Option<SocketAddr>,
    pub advertise_addr: Option<String>,
    pub seeds: Option<Vec<String>>,
    #[serde(default, deserialize_with = "de_opt_labels")]
    pub labels: Option<BTreeMap<String, String>>,
    pub taints: Option<Vec<Taint>>,
    pub runtime: Option<RuntimeChoice>,
    pub log_format: Option<LogFormat>,
    pub gossip_interval_ms: Option<u64>,
    pub raft_heartbeat_ms: Option<u64>,
    #[serde(default, deserialize_with = "de_opt_voters")]
    pub voters: Option<usize>,
    pub bootstrap_expect: Option<u16>,
    pub dead_voter_grace: Option<u64>,
    pub cluster_secret_file: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub ca_cert: Option<PathBuf>,
    pub deny_privileged: Option<bool>,
    pub deny_host_network: Option<bool>,
    pub allowed_host_paths: Option<Vec<String>>,
    pub dead_node_grace: Option<u64>,
}

/// Everything a node needs to start, validated.
#[derive(Debug, Clone, Serialize)]
pub struct NodeConfig {
    /// Explicit node id; `None` means "kept in the data dir, else the host name".
    pub node_id: Option<String>,
    pub data_dir: PathBuf,
    pub cluster: String,
    pub gossip_addr: SocketAddr,
    pub api_addr: SocketAddr,
    pub advertise_addr: Option<String>,
    pub seeds: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub runtime: RuntimeChoice,
    pub log_format: LogFormat,
    pub gossip_interval: Duration,
    /// Raft's heartbeat, which also bounds one Raft round trip (`--raft-heartbeat-ms`).
    pub raft_heartbeat: Duration,
    pub voters: usize,
    pub bootstrap_expect: usize,
    pub dead_voter_grace: Duration,
    /// `None`: the one this node generated before, or a new one for a lone node.
    pub cluster_secret_file: Option<PathBuf>,
    /// Certificate and key of the API's TLS; `None` serves plain HTTP.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// CA nodes trust for each other's certificates [default: the TLS certificate itself].
    pub ca_cert: Option<PathBuf>,
    /// What this host refuses to run.
    pub policy: crate::agent::policy::NodePolicy,
    /// How long a dead node still counts in DaemonSet statuses and is held back by a finished
    /// rollout (`--dead-node-grace`).
    pub dead_node_grace: Duration,
}

impl NodeConfig {
    /// Layers flags (with their environment variables) over the config file over defaults.
    pub fn resolve(flags: &AgentFlags) -> Result<NodeConfig, InputError> {
        let file = match &flags.config {
            Some(path) => load_file(path)?,
            None => FileConfig::default(),
        };
        let origin = |field: &str| match &flags.config {
            Some(p) => format!("`{field}` in {}", p.display()),
            None => format!("`{field}`"),
        };

        let node_id = flags.node_id.clone().or(file.node_id);
        if let Some(id) = &node_id {
            validate_node_id(id).map_err(|e| InputError::new(format!("--node-id: {e}")))?;
        }
        let cluster = flags
            .cluster
            .clone()
            .or(file.cluster)
            .unwrap_or_else(|| DEFAULT_CLUSTER.to_string());
        labels::validate_label_value(&cluster)
            .map_err(|e| InputError::new(format!("--cluster / {}: {e}", origin("cluster"))))?;
        if let Some(host) = file.advertise_addr.as_deref() {
            parse_host(host).map_err(|e| InputError::new(format!("{}: {e}", origin("advertise_addr"))))?;
        }
        let file_seeds = file.seeds.unwrap_or_default();
        for seed in &file_seeds {
            parse_seed(seed).map_err(|e| InputError::new(format!("{}: {e}", origin("seeds"))))?;
        }
        let gossip_interval_ms = flags
            .gossip_interval_ms
            .or(file.gossip_interval_ms)
            .unwrap_or(DEFAULT_GOSSIP_INTERVAL_MS);
        if !(10..=10_000).contains(&gossip_interval_ms) {
            return Err(InputError::new(format!(
                "{}: {gossip_interval_ms} is out of range; use 10 to 10000 milliseconds",
                origin("gossip_interval_ms")
            )));
        }

        let raft_heartbeat_ms = flags
            .raft_heartbeat_ms
            .or(file.raft_heartbeat_ms)
            .unwrap_or(DEFAULT_RAFT_HEARTBEAT_MS);
        if !(20..=5_000).contains(&raft_heartbeat_ms) {
            return Err(InputError::new(format!(
                "{}: {raft_heartbeat_ms} is out of range; use 20 to 5000 milliseconds (above the longest round trip between nodes)",
                origin("raft_heartbeat_ms")
            )));
        }

        let tls = match (
            flags.tls_cert.clone().or(file.tls_cert),
            flags.tls_key.clone().or(file.tls_key),
        ) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => {
                return Err(InputError::new(format!(
                    "--tls-cert and --tls-key go together (also as {} and {}): give both, or neither for plain HTTP",
                    origin("tls_cert"),
                    origin("tls_key")
                )))
            }
        };
        let allowed_host_paths = match flags.allowed_host_paths.clone().or(file.allowed_host_paths) {
            Some(list) => {
                let list: Vec<String> = list.into_iter().filter(|p| !p.trim().is_empty()).collect();
                if let Some(bad) = list
                    .iter()
                    .find(|p| !p.starts_with('/') || p.split('/').any(|c| c == ".."))
                {
                    return Err(InputError::new(format!(
                        "--allowed-host-paths / {}: `{bad}` is not an absolute path without `..`; give prefixes such as /var/log",
                        origin("allowed_host_paths")
                    )));
                }
                Some(list)
            }
            None => None,
        };
        let policy = crate::agent::policy::NodePolicy {
            deny_privileged: flags.deny_privileged || file.deny_privileged.unwrap_or(false),
            deny_host_network: flags.deny_host_network || file.deny_host_network.unwrap_or(false),
            allowed_host_paths,
        };

        Ok(NodeConfig {
            cluster_secret_file: flags.cluster_secret_file.clone().or(file.cluster_secret_file),
            tls,
            ca_cert: flags.ca_cert.clone().or(file.ca_cert),
            policy,
            node_id,
            data_dir: flags
                .data_dir
                .clone()
                .or(file.data_dir)
                .unwrap_or_else(default_data_dir),
            cluster,
            gossip_addr: flags
                .gossip_addr
                .or(file.gossip_addr)
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], DEFAULT_GOSSIP_PORT))),
            api_addr: flags
                .api_addr
                .or(file.api_addr)
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], DEFAULT_API_PORT))),
            advertise_addr: flags.advertise_addr.clone().or(file.advertise_addr),
            seeds: if flags.seeds.is_empty() {
                file_seeds
            } else {
                flags.seeds.clone()
            },
            labels: if flags.labels.is_empty() {
                file.labels.unwrap_or_default()
            } else {
                flags.labels.iter().cloned().collect()
            },
            taints: if flags.taints.is_empty() {
                file.taints.unwrap_or_default()
            } else {
                flags.taints.clone()
            },
            runtime: flags.runtime.or(file.runtime).unwrap_or_default(),
            log_format: flags.log_format.or(file.log_format).unwrap_or_default(),
            gossip_interval: Duration::from_millis(gossip_interval_ms),
            raft_heartbeat: Duration::from_millis(raft_heartbeat_ms),
            voters: flags.voters.or(file.voters).unwrap_or(3),
            bootstrap_expect: flags
                .bootstrap_expect
                .or(file.bootstrap_expect)
                .unwrap_or(1)
                .max(1) as usize,
            dead_voter_grace: flags
                .dead_voter_grace
                .or(file.dead_voter_grace)
                .map(Duration::from_secs)
                .unwrap_or(crate::control::controller::DEFAULT_DEAD_VOTER_GRACE),
            dead_node_grace: flags
                .dead_node_grace
                .or(file.dead_node_grace)
                .map(Duration::from_secs)
                .unwrap_or(DEFAULT_DEAD_NODE_GRACE),
        })
    }
}

/// Default for `--dead-node-grace`: a reboot or a short outage keeps a node in the counts (as
/// unavailable), a node gone for good stops counting after five minutes.
pub const DEFAULT_DEAD_NODE_GRACE: Duration = Duration::from_secs(300);

/// The documented default data dir: system-wide for root, per-user otherwise.
pub fn default_data_dir() -> PathBuf {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/var/lib/everynode");
    }
    match std::env::var_os("XDG_DATA_HOME")
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/share").into_os_string()))
    {
        Some(base) => Path::new(&base).join("everynode"),
        None => PathBuf::from("everynode-data"),
    }
}

/// Reads and parses a config file; errors name the file and the line.
pub fn load_file(path: &Path) -> Result<FileConfig, InputError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        InputError::new(format!(
            "cannot read config file {}: {e} (check --config / EVERYNODE_CONFIG)",
            path.display()
        ))
    })?;
    toml::from_str(&text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
            .map(|l| format!(" line {l}"))
            .unwrap_or_default();
        let msg = e.message().replace('\n', " ");
        InputError::new(format!(
            "invalid config file {}{line}: {}",
            path.display(),
            msg.trim()
        ))
    })
}

/// A node id becomes the `kubernetes.io/hostname` label, so it follows label-value rules.
pub fn validate_node_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("node id must not be empty".into());
    }
    labels::validate_label_value(id).map_err(|e| format!("node id {e}"))
}

fn parse_socket_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| format!("`{s}` is not an IP:PORT address, e.g. 0.0.0.0:{DEFAULT_GOSSIP_PORT} or [::]:{DEFAULT_GOSSIP_PORT}"))
}

fn parse_voters(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n @ (1 | 3 | 5 | 7)) => Ok(n),
        _ => Err(format!(
            "`{s}` voters: use 1, 3, 5 or 7 (an odd count keeps a majority after a loss)"
        )),
    }
}

fn de_opt_voters<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    let n: Option<u64> = Option::deserialize(d)?;
    n.map(|n| parse_voters(&n.to_string()).map_err(serde::de::Error::custom))
        .transpose()
}

fn parse_taint(s: &str) -> Result<Taint, String> {
    s.parse()
}

/// An advertise host is an IP address or a DNS name, without a port.
fn parse_host(s: &str) -> Result<String, String> {
    if s.parse::<std::net::IpAddr>().is_ok() {
        return Ok(s.to_string());
    }
    let valid_dns = !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|p| {
            !p.is_empty()
                && p.len() <= 63
                && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !p.starts_with('-')
        });
    if valid_dns {
        Ok(s.to_string())
    } else {
        Err(format!(
            "`{s}` is not an IP address or host name (give the host only, without a port)"
        ))
    }
}

/// A seed is `HOST:PORT` where HOST is an IP (IPv6 in brackets) or a DNS name.
fn parse_seed(s: &str) -> Result<String, String> {
    let bad = || format!("seed `{s}` must be HOST:PORT, e.g. 10.0.0.1:{DEFAULT_GOSSIP_PORT}");
    if s.parse::<SocketAddr>().is_ok() {
        return Ok(s.to_string());
    }
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    port.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(bad)?;
    parse_host(host).map_err(|_| bad())?;
    Ok(s.to_string())
}

fn de_opt_socket_addr<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let s: Option<String> = Option::deserialize(d)?;
    s.map(|s| parse_socket_addr(&s).map_err(serde::de::Error::custom))
        .transpose()
}

fn de_opt_labels<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<BTreeMap<String, String>>, D::Error> {
    let m: Option<BTreeMap<String, String>> = Option::deserialize(d)?;
    if let Some(m) = &m {
        for (k, v) in m {
            labels::validate_label_key(k).map_err(serde::de::Error::custom)?;
            labels::validate_label_value(v).map_err(serde::de::Error::custom)?;
        }
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn flags_win_over_file() {
        let f = write("node_id = \"from-file\"\nseeds = [\"10.0.0.1:9494\"]\nlabels = { zone = \"a\" }\n");
        let flags = AgentFlags {
            config: Some(f.path().into()),
            node_id: Some("from-flag".into()),
            ..Default::default()
        };
        let cfg = NodeConfig::resolve(&flags).unwrap();
        assert_eq!(cfg.node_id.as_deref(), Some("from-flag"));
        assert_eq!(cfg.seeds, vec!["10.0.0.1:9494".to_string()]);
        assert_eq!(cfg.labels.get("zone").map(String::as_str), Some("a"));
        assert_eq!(cfg.gossip_addr.port(), DEFAULT_GOSSIP_PORT);
    }

    #[test]
    fn file_errors_name_file_and_line() {
        let f = write("node_id = \"a\"\n\ngosip_addr = \"1.2.3.4:5\"\n");
        let err = load_file(f.path()).unwrap_err().to_string();
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("gosip_addr"), "{err}");
        let f = write("taints = [\"x:Sometimes\"]\n");
        let err = load_file(f.path()).unwrap_err().to_string();
        assert!(err.contains("line 1") && err.contains("Sometimes"), "{err}");
        let err = load_file(Path::new("/nonexistent/everynode.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/everynode.toml"), "{err}");
    }

    #[test]
    fn security_settings_from_file_and_flags() {
        let f = write(
            "cluster_secret_file = \"/etc/everynode/secret\"\ndeny_privileged = true\nallowed_host_paths = [\"/var/log\"]\ntls_cert = \"/c.pem\"\ntls_key = \"/k.pem\"\n",
        );
        let flags = AgentFlags {
            config: Some(f.path().into()),
            deny_host_network: true,
            ..Default::default()
        };
        let cfg = NodeConfig::resolve(&flags).unwrap();
        assert_eq!(
            cfg.cluster_secret_file.as_deref(),
            Some(Path::new("/etc/everynode/secret"))
        );
        assert!(cfg.policy.deny_privileged && cfg.policy.deny_host_network);
        assert_eq!(cfg.policy.allowed_host_paths, Some(vec!["/var/log".to_string()]));
        assert!(cfg.tls.is_some());

        let half = write("tls_cert = \"/c.pem\"\n");
        let err = NodeConfig::resolve(&AgentFlags {
            config: Some(half.path().into()),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("--tls-key"), "{err}");
        let err = NodeConfig::resolve(&AgentFlags {
            allowed_host_paths: Some(vec!["var/log".into()]),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("`var/log`"), "{err}");
    }

    #[test]
    fn raft_heartbeat_scales_every_raft_timing() {
        let cfg = NodeConfig::resolve(&AgentFlags::default()).unwrap();
        assert_eq!(
            cfg.raft_heartbeat,
            Duration::from_millis(DEFAULT_RAFT_HEARTBEAT_MS)
        );
        let f = write("raft_heartbeat_ms = 400\n");
        let cfg = NodeConfig::resolve(&AgentFlags {
            config: Some(f.path().into()),
            ..Default::default()
        })
        .unwrap();
        let raft = crate::control::raft_config(cfg.raft_heartbeat);
        assert_eq!(raft.heartbeat_interval, 400);
        assert_eq!(
            (raft.election_timeout_min, raft.election_timeout_max),
            (1_000, 1_600)
        );

        let f = write("raft_heartbeat_ms = 5\n");
        let err = NodeConfig::resolve(&AgentFlags {
            config: Some(f.path().into()),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("raft_heartbeat_ms") && err.contains("20 to 5000"),
            "{err}"
        );
    }

    #[test]
    fn seeds_and_hosts() {
        assert!(parse_seed("10.0.0.1:9494").is_ok());
        assert!(parse_seed("node-1.example.com:9494").is_ok());
        assert!(parse_seed("[::1]:9494").is_ok());
        assert!(parse_seed("10.0.0.1").is_err());
        assert!(parse_seed("host:0").is_err());
        assert!(parse_seed("ho st:1").is_err());
        assert!(parse_host("10.0.0.1:80").is_err());
    }
}
