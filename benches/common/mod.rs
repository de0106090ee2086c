//! What the benchmark programs share: environment knobs, nearest-rank percentiles, verdicts, and the cluster secret with an admin client.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// A whole-number knob from the environment, or its default.
pub fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(raw) => raw
            .parse()
            .unwrap_or_else(|_| panic!("{name}={raw:?} is not a whole number")),
        Err(_) => default,
    }
}

/// Nearest-rank percentile: with 10 samples p99 is the slowest run, never an interpolation
/// that flatters it.
pub fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn verdict(pass: bool) -> &'static str {
    if pass {
        "PASS"
    } else {
        "MISS"
    }
}

/// Writes a cluster secret file (mode 0600) under `root` for every node of a run, and returns
/// it with the keys the nodes derive from it (the admin token among them).
#[allow(dead_code)]
pub fn cluster_secret(root: &Path) -> (PathBuf, everynode::security::secret::ClusterKeys) {
    use std::os::unix::fs::PermissionsExt;
    let file = root.join("cluster-secret");
    let text: String = (0..4u64)
        .map(|i| {
            format!(
                "{:016x}",
                u64::from(std::process::id()) ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15)
            )
        })
        .collect();
    std::fs::write(&file, &text).expect("writing the cluster secret");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
        .expect("making the secret private");
    (
        file,
        everynode::security::secret::ClusterSecret::from_bytes(text.as_bytes()).keys(),
    )
}

/// An HTTP client whose every request carries `token`.
#[allow(dead_code)]
pub fn admin_client(token: &str, timeout: Duration) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}")
            .parse()
            .expect("a token is a valid header value"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .timeout(timeout)
        .build()
        .expect("an HTTP client")
}

/// `everynode agent` with this process's `EVERYNODE_*` settings removed, logging at info: the
/// start of every agent a benchmark runs; the caller adds the node's flags.
#[allow(dead_code)]
pub fn agent_command() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_everynode"));
    for (key, _) in std::env::vars() {
        if key.starts_with("EVERYNODE_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("RUST_LOG", "info").arg("agent");
    cmd
}
