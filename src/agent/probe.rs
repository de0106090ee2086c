//! Startup, liveness and readiness probes: when each is due, what its results mean, and running one (exec, HTTP GET, TCP connect).
//!
//! HTTP and TCP probes dial `127.0.0.1` (or the probe's `host`) on the container port, or on
//! its `hostPort` when it publishes one: that reaches processes and host-network or
//! port-published containers. A Docker container with neither is not reachable from the host
//! by a fixed address; use an exec probe there.

use std::time::Instant;

use crate::runtime::{ContainerRuntime, InstanceSpec};
use crate::spec::container::{Container, Probe};

/// Which of a container's probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Startup,
    Liveness,
    Readiness,
}

/// Consecutive results of one probe.
#[derive(Debug, Clone, Default)]
struct Counter {
    last_run: Option<Instant>,
    successes: u32,
    failures: u32,
}

/// What the actor must do after a probe result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Nothing,
    /// Startup or liveness failed `failureThreshold` times: stop the container (it is then
    /// restarted with back-off, as a crash).
    Restart(String),
}

/// Probe state of one running instance; a new instance starts a new one.
#[derive(Debug, Clone)]
pub struct Probes {
    /// The instance these results are about.
    pub instance: String,
    /// When this agent first saw it running: the initial delays count from here.
    seen_at: Instant,
    startup_passed: bool,
    ready: bool,
    counters: [Counter; 3],
}

impl Probes {
    pub fn new(instance: &str, container: &Container, now: Instant) -> Self {
        Probes {
            instance: instance.to_string(),
            seen_at: now,
            startup_passed: container.startup_probe.is_none(),
            ready: false,
            counters: Default::default(),
        }
    }

    fn probe(container: &Container, kind: Kind) -> Option<&Probe> {
        match kind {
            Kind::Startup => container.startup_probe.as_ref(),
            Kind::Liveness => container.liveness_probe.as_ref(),
            Kind::Readiness => container.readiness_probe.as_ref(),
        }
    }

    /// Ready as Kubernetes means it: started, and the readiness probe passing (or absent).
    pub fn ready(&self, container: &Container) -> bool {
        self.startup_passed && (container.readiness_probe.is_none() || self.ready)
    }

    /// The probes to run now: only the startup probe until it passes, then liveness and
    /// readiness, each after its initial delay and once per period.
    pub fn due(&self, container: &Container, now: Instant) -> Vec<Kind> {
        let kinds: &[Kind] = if self.startup_passed {
            &[Kind::Liveness, Kind::Readiness]
        } else {
            &[Kind::Startup]
        };
        kinds
            .iter()
            .copied()
            .filter(|k| {
                let Some(p) = Self::probe(container, *k) else {
                    return false;
                };
                let counter = &self.counters[*k as usize];
                match counter.last_run {
                    None => now >= self.seen_at + p.initial_delay(),
                    Some(last) => now >= last + p.period(),
                }
            })
            .collect()
    }

    /// Records one result and says what follows from it.
    pub fn record(
        &mut self,
        container: &Container,
        kind: Kind,
        result: Result<(), String>,
        now: Instant,
    ) -> Verdict {
        let Some(p) = Self::probe(container, kind) else {
            return Verdict::Nothing;
        };
        let success_threshold = u32::try_from(p.success_threshold.max(1)).unwrap_or(1);
        let failure_threshold = u32::try_from(p.failure_threshold.max(1)).unwrap_or(1);
        let counter = &mut self.counters[kind as usize];
        counter.last_run = Some(now);
        match result {
            Ok(()) => {
                counter.failures = 0;
                counter.successes = counter.successes.saturating_add(1);
                match kind {
                    Kind::Startup => self.startup_passed = true,
                    Kind::Readiness if counter.successes >= success_threshold => self.ready = true,
                    _ => {}
                }
                Verdict::Nothing
            }
            Err(why) => {
                counter.successes = 0;
                counter.failures = counter.failures.saturating_add(1);
                let failed = counter.failures >= failure_threshold;
                match kind {
                    Kind::Readiness if failed => {
                        self.ready = false;
                        Verdict::Nothing
                    }
                    Kind::Startup | Kind::Liveness if failed => {
                        counter.failures = 0;
                        Verdict::Restart(format!("{kind:?} probe failed {failure_threshold} times: {why}"))
                    }
                    _ => Verdict::Nothing,
                }
            }
        }
    }
}

/// Runs one probe once against instance `id`; `Err` says why it failed.
pub async fn run(
    runtime: &dyn ContainerRuntime,
    id: &str,
    spec: &InstanceSpec,
    container: &Container,
    kind: Kind,
) -> Result<(), String> {
    let Some(probe) = Probes::probe(container, kind) else {
        return Ok(());
    };
    let timeout = probe.timeout();
    if let Some(exec) = &probe.exec {
        return match runtime.exec(id, &exec.command, timeout).await {
            Ok(0) => Ok(()),
            Ok(code) => Err(format!("exec {:?} exited with {code}", exec.command)),
            Err(e) => Err(e.to_string()),
        };
    }
    let (port, host) = if let Some(http) = &probe.http_get {
        (container.resolve_port(&http.port), http.host.clone())
    } else if let Some(tcp) = &probe.tcp_socket {
        (container.resolve_port(&tcp.port), tcp.host.clone())
    } else {
        return Err("the probe has no exec, httpGet or tcpSocket action everynode can run".into());
    };
    let port = port
        .and_then(|p| u16::try_from(p).ok())
        .ok_or("the probe port is not a valid port number or port name")?;
    let port = target_port(spec, port);
    let host = host
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "127.0.0.1".into());
    if let Some(http) = &probe.http_get {
        let scheme = match http.scheme {
            crate::spec::container::Scheme::Http => "http",
            crate::spec::container::Scheme::Https => "https",
        };
        let path = http.path.clone().unwrap_or_else(|| "/".into());
        let url = format!("{scheme}://{host}:{port}{path}");
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| e.to_string())?;
        let mut req = client.get(&url);
        for h in &http.http_headers {
            req = req.header(&h.name, &h.value);
        }
        let resp = req.send().await.map_err(|e| format!("GET {url}: {e}"))?;
        let code = resp.status().as_u16();
        return if (200..400).contains(&code) {
            Ok(())
        } else {
            Err(format!("GET {url}: status {code}"))
        };
    }
    let addr = format!("{host}:{port}");
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&addr)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("connect {addr}: {e}")),
        Err(_) => Err(format!("connect {addr}: no answer within {timeout:?}")),
    }
}

/// The host port a container port is reachable on from the host: its `hostPort` if published,
/// else the port itself (processes and host-network containers).
fn target_port(spec: &InstanceSpec, port: u16) -> u16 {
    spec.ports
        .iter()
        .find(|p| p.container_port == port)
        .and_then(|p| p.host_port)
        .unwrap_or(port)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::container::ExecAction;
    use std::time::Duration;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn container(startup: bool, readiness_failures: i32) -> Container {
        let exec = Some(ExecAction {
            command: vec!["true".into()],
        });
        Container {
            name: "main".into(),
            startup_probe: startup.then(|| Probe {
                exec: exec.clone(),
                period_seconds: 1,
                failure_threshold: 2,
                ..Probe::default()
            }),
            liveness_probe: Some(Probe {
                exec: exec.clone(),
                initial_delay_seconds: 5,
                period_seconds: 10,
                failure_threshold: 3,
                ..Probe::default()
            }),
            readiness_probe: Some(Probe {
                exec,
                period_seconds: 2,
                failure_threshold: readiness_failures,
                ..Probe::default()
            }),
            ..Container::default()
        }
    }

    #[test]
    fn startup_gates_the_others_and_its_failures_restart() {
        let c = container(true, 1);
        let t0 = Instant::now();
        let mut p = Probes::new("i", &c, t0);
        assert_eq!(p.due(&c, t0), vec![Kind::Startup]);
        assert!(!p.ready(&c));
        assert_eq!(
            p.record(&c, Kind::Startup, Err("no".into()), t0),
            Verdict::Nothing
        );
        assert!(p.due(&c, t0).is_empty(), "period not over");
        let v = p.record(&c, Kind::Startup, Err("no".into()), t0 + secs(1));
        assert!(
            matches!(v, Verdict::Restart(ref why) if why.contains("Startup probe failed 2 times: no")),
            "{v:?}"
        );
        p.record(&c, Kind::Startup, Ok(()), t0 + secs(2));
        // Liveness waits for its initial delay; readiness has none.
        assert_eq!(p.due(&c, t0 + secs(2)), vec![Kind::Readiness]);
        assert_eq!(p.due(&c, t0 + secs(5)), vec![Kind::Liveness, Kind::Readiness]);
    }

    #[test]
    fn readiness_decides_ready_and_liveness_restarts_after_its_threshold() {
        let c = container(false, 2);
        let t0 = Instant::now();
        let mut p = Probes::new("i", &c, t0);
        assert!(!p.ready(&c));
        p.record(&c, Kind::Readiness, Ok(()), t0);
        assert!(p.ready(&c));
        p.record(&c, Kind::Readiness, Err("x".into()), t0 + secs(2));
        assert!(p.ready(&c), "one failure is below the threshold of 2");
        p.record(&c, Kind::Readiness, Err("x".into()), t0 + secs(4));
        assert!(!p.ready(&c));
        for i in 0..2 {
            assert_eq!(
                p.record(&c, Kind::Liveness, Err("dead".into()), t0 + secs(i)),
                Verdict::Nothing
            );
        }
        assert!(matches!(
            p.record(&c, Kind::Liveness, Err("dead".into()), t0 + secs(3)),
            Verdict::Restart(_)
        ));
    }

    #[test]
    fn no_readiness_probe_means_ready_once_running() {
        let c = Container::default();
        let p = Probes::new("i", &c, Instant::now());
        assert!(p.ready(&c));
        assert!(p.due(&c, Instant::now()).is_empty());
    }
}
