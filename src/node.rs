//! One running node: claims its data dir and ports, starts gossip and the API, and stops cleanly on a signal.

use std::collections::BTreeMap;
use std::fs;
use std::future::Future;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tracing::{info, warn};

use actix::Actor;

use crate::agent::{AgentContext, AgentSettings, NodeAgent, RestartBook};
use crate::api;
use crate::config::{validate_node_id, NodeConfig};
use crate::control::controller::{ControlSettings, Controller};
use crate::control::replica::Replica;
use crate::control::store::Store;
use crate::control::types::Raft;
use crate::control::writer::Writer;
use crate::control::{self, distribute};
use crate::error::InputError;
use crate::membership::secure::SecureUdpTransport;
use crate::membership::{keys, GossipStats, Membership, MembershipConfig};
use crate::rollout;
use crate::runtime::docker::DockerRuntime;
use crate::runtime::process::ProcessRuntime;
use crate::runtime::{self, ContainerRuntime, RuntimeKind};
use crate::scheduling::node::{builtin_labels, go_arch, NodeInfo};
use crate::security::node_auth::NodeAuth;
use crate::security::peer::PeerHttp;
use crate::security::secret::{self, ClusterSecret, Origin};
use crate::security::tls;

/// File in the data dir that keeps the node id across restarts.
const NODE_ID_FILE: &str = "node-id";
/// File in the data dir held locked while an agent uses it.
const LOCK_FILE: &str = "agent.lock";
/// File in the data dir that keeps the node's Raft id; a wiped data dir gets a new one.
const RAFT_ID_FILE: &str = "raft-id";
/// Directory in the data dir where the process runtime keeps instance records and logs.
pub const PROCESS_DIR: &str = "process";
/// File in the data dir with the last committed store this node saw.
const STORE_FILE: &str = "store.json";
/// File in the data dir with the agent's restart counts.
const RESTARTS_FILE: &str = "restarts.json";
/// Directory of the data dir holding instances' volume files.
const POD_DIR: &str = "pods";

/// Runs a node until `shutdown` resolves. Bad settings fail before anything is started.
pub async fn run(
    config: NodeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    run_observed(config, shutdown, |_| {}).await
}

/// [`run`], handing the node's Raft handle to `observe` once Raft has started, so that
/// in-process tests can read each node's Raft metrics (leader, term, voters).
pub async fn run_observed(
    config: NodeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
    observe: impl FnOnce(Raft) + Send,
) -> anyhow::Result<()> {
    run_with(config, shutdown, observe, Overrides::default()).await
}

/// Parts an in-process simulation swaps in; the defaults are what a real node uses.
#[derive(Default)]
pub struct Overrides {
    /// Runs the instances instead of the runtime `--runtime` picks (the in-memory fake, so a
    /// hundred nodes fit in one process).
    pub runtime: Option<Arc<dyn ContainerRuntime>>,
}

/// [`run_observed`] with some parts swapped (see [`Overrides`]).
pub async fn run_with(
    config: NodeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
    observe: impl FnOnce(Raft) + Send,
    overrides: Overrides,
) -> anyhow::Result<()> {
    let _lock = claim_data_dir(&config.data_dir)?;
    let node_id = resolve_node_id(&config.data_dir, config.node_id.as_deref())?;
    let secret = ClusterSecret::resolve(
        config.cluster_secret_file.as_deref(),
        &config.data_dir,
        !config.seeds.is_empty(),
    )?;
    let keys = secret.keys();
    secret::write_tokens(&config.data_dir, &keys)?;
    let tls_config = match &config.tls {
        Some((cert, key)) => Some(tls::server_config(cert, key)?),
        None => None,
    };
    // With TLS, nodes call each other over https and trust the cluster's CA (by default the
    // certificate itself, when every node shares one).
    let peer_roots = match &config.tls {
        Some((cert, _)) => Some(tls::ca_certificates(
            config.ca_cert.as_deref().unwrap_or(cert),
            "--ca-cert",
        )?),
        None => None,
    };
    let node_auth = Arc::new(NodeAuth::new(&keys.node_http));
    let peer_http = |timeout: Option<Duration>| {
        PeerHttp::new(
            Some(node_auth.clone()),
            peer_roots.as_deref(),
            Duration::from_secs(1),
            timeout,
        )
    };

    let api_listener = tokio::net::TcpListener::bind(config.api_addr).await.map_err(|e| {
        InputError::new(format!(
            "cannot listen for the API on {}/tcp: {e}; is another agent running? choose a free port with --api-addr",
            config.api_addr
        ))
    })?;
    let advertise_ip = advertise_ip(&config).await?;
    let gossip_advertise = SocketAddr::new(advertise_ip, config.gossip_addr.port());
    let api_advertise = SocketAddr::new(
        if config.api_addr.ip().is_unspecified() {
            advertise_ip
        } else {
            config.api_addr.ip()
        },
        api_listener.local_addr()?.port(),
    );
    let runtime = match &overrides.runtime {
        Some(r) => r.kind(),
        None => runtime::select::choose(config.runtime).await?,
    };
    let raft_id = resolve_raft_id(&config.data_dir)?;
    let replica: Replica<Store> = Replica::open(&config.data_dir.join(STORE_FILE))
        .map_err(|e| InputError::new(format!("cannot load the store copy: {e}")))?;
    let (log_store, state_machine) = control::open(&config.data_dir.join("raft")).await.map_err(|e| {
        InputError::new(format!(
            "cannot open the Raft data under {}: {e}",
            config.data_dir.display()
        ))
    })?;
    let applied = state_machine.subscribe();

    let started = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let labels = node_labels(&node_id, &config.labels);
    let initial_keys = vec![
        (keys::API_ADDR.to_string(), api_advertise.to_string()),
        (keys::LABELS.to_string(), keys::encode_labels(&labels)),
        (keys::TAINTS.to_string(), keys::encode_taints(&config.taints)),
        (keys::RUNTIME.to_string(), runtime.as_str().to_string()),
        (keys::STARTED_AT.to_string(), started.as_secs().to_string()),
        (keys::VERSION.to_string(), env!("CARGO_PKG_VERSION").to_string()),
        (keys::RAFT_ID.to_string(), raft_id.to_string()),
        (keys::STORE_VERSION.to_string(), replica.version().to_string()),
        (keys::STORE_EPOCH.to_string(), replica.epoch()),
    ];
    let gossip_stats = Arc::new(GossipStats::default());
    let membership = Membership::start_with_stats(
        MembershipConfig {
            node_id: node_id.clone(),
            generation: started.as_millis() as u64,
            cluster: config.cluster.clone(),
            listen_addr: config.gossip_addr,
            advertise_addr: gossip_advertise,
            seeds: config.seeds.clone(),
            gossip_interval: config.gossip_interval,
            dead_node_grace: Duration::from_secs(24 * 3600),
            initial_keys,
        },
        Box::new(SecureUdpTransport::new(keys.gossip, gossip_stats.clone())),
        gossip_stats,
    )
    .await
    .map_err(|e| {
        InputError::new(format!(
            "cannot listen for gossip on {}/udp: {}; choose a free port with --gossip-addr",
            config.gossip_addr,
            e.root_cause()
        ))
    })?;

    info!(
        node = %node_id,
        cluster = %config.cluster,
        gossip = %gossip_advertise,
        api = %api_advertise,
        runtime = runtime.as_str(),
        data_dir = %config.data_dir.display(),
        seeds = ?config.seeds,
        "node started"
    );
    if let Origin::Generated(path) = &secret.origin {
        info!(secret = %path.display(), "generated a new cluster secret");
        // The how-to goes to stderr as plain text: logs may be JSON or filtered.
        eprintln!(
            "{}",
            secret::generated_notice(path, &config.data_dir, gossip_advertise.port())
        );
    }

    let raft = Raft::new(
        raft_id,
        Arc::new(control::raft_config(config.raft_heartbeat)),
        control::network::HttpNetwork::new(peer_http(None)?),
        log_store,
        state_machine,
    )
    .await
    .context("starting Raft")?;
    observe(raft.clone());
    let writer = Writer::new(
        raft.clone(),
        raft_id,
        membership.clone(),
        peer_http(Some(control::writer::WRITE_WAIT))?,
    );
    let controller = Controller {
        raft: raft.clone(),
        raft_id,
        name: node_id.clone(),
        api_addr: api_advertise.to_string(),
        gossip_addr: gossip_advertise,
        seeds: resolve_seeds(&config.seeds).await,
        membership: membership.clone(),
        settings: ControlSettings {
            voters: config.voters,
            bootstrap_expect: config.bootstrap_expect,
            dead_voter_grace: config.dead_voter_grace,
            // A few gossip rounds suffice to hear an existing cluster's roles.
            discovery_window: (config.gossip_interval * 10).max(Duration::from_secs(1)),
            ..ControlSettings::default()
        },
    };
    tokio::spawn(rollout::driver::run(
        raft.clone(),
        applied.clone(),
        membership.clone(),
        config.dead_node_grace,
    ));
    tokio::spawn(follow_departed(replica.subscribe(), membership.clone()));
    tokio::spawn(controller.run(replica.clone(), applied));
    tokio::spawn(distribute::run(
        replica.clone(),
        membership.clone(),
        config.gossip_interval,
        peer_http(None)?,
    ));

    let container_runtime = match overrides.runtime {
        Some(r) => r,
        None => open_runtime(runtime, &config.data_dir).await?,
    };
    let seal = Arc::new(crate::security::at_rest::SecretBox::new(&keys.at_rest));
    let pod_root = config.data_dir.join(POD_DIR);
    crate::agent::podsetup::create_root(&pod_root)
        .with_context(|| format!("cannot create {}", pod_root.display()))?;
    let agent_ctx = Arc::new(AgentContext::new(
        AgentSettings {
            policy: config.policy.clone(),
            pod_root,
            seccomp_dir: config.data_dir.join("seccomp"),
            host_ip: advertise_ip.to_string(),
            seal: Some(seal.clone()),
            ..AgentSettings::new(&config.cluster, &node_id)
        },
        container_runtime,
        Arc::new(membership.clone()),
        RestartBook::open(&config.data_dir.join(RESTARTS_FILE)),
    ));
    let own = NodeInfo {
        name: node_id.clone(),
        labels: labels.clone(),
        taints: config.taints.clone(),
    };
    // Needs the actix System that `cli::agent` runs this future in.
    let _agent = NodeAgent::new(agent_ctx.clone(), own, replica.subscribe()).start();

    let stop = Arc::new(tokio::sync::Notify::new());
    let app = api::router(api::ApiState {
        auth: Arc::new(api::auth::ApiAuth::new(&keys)),
        secrets: seal,
        shutdown: stop.clone(),
        dead_node_grace: config.dead_node_grace,
        agent: Some(agent_ctx),
        membership: membership.clone(),
        control: Arc::new(api::ControlHandle {
            raft: raft.clone(),
            replica,
            writer,
        }),
    });
    let shutdown = async move {
        tokio::select! {
            _ = shutdown => {}
            _ = stop.notified() => info!("left the cluster"),
        }
    };
    match tls_config {
        Some(tls_config) => axum::serve(tls::TlsListener::new(api_listener, tls_config)?, app)
            .with_graceful_shutdown(shutdown)
            .await
            .context("API server failed")?,
        None => axum::serve(api_listener, app)
            .with_graceful_shutdown(shutdown)
            .await
            .context("API server failed")?,
    }

    info!("shutting down");
    if let Err(e) = raft.shutdown().await {
        warn!(error = %e, "Raft did not shut down cleanly");
    }
    membership.shutdown().await;
    info!("stopped");
    Ok(())
}

/// Keeps the membership's list of departed nodes in step with the committed store, so every
/// listing (API, control loop, agent) shows them as `left`.
async fn follow_departed(mut store: tokio::sync::watch::Receiver<Arc<Store>>, membership: Membership) {
    loop {
        let departed = store.borrow_and_update().departed.clone();
        membership.set_departed(departed);
        if store.changed().await.is_err() {
            return;
        }
    }
}

/// Connects the runtime `choose` picked; the process runtime keeps its state under the data dir.
async fn open_runtime(kind: RuntimeKind, data_dir: &Path) -> Result<Arc<dyn ContainerRuntime>, InputError> {
    match kind {
        RuntimeKind::Docker => Ok(Arc::new(DockerRuntime::connect().await.map_err(|e| {
            InputError::new(format!(
                "cannot use the Docker engine: {e}; start Docker or use --runtime process"
            ))
        })?)),
        RuntimeKind::Process => {
            let runtime = ProcessRuntime::new(data_dir.join(PROCESS_DIR))
                .map_err(|e| InputError::new(format!("{e}; check the --data-dir permissions")))?;
            // Before any create: a previous agent may have died between a spawn and its record.
            let reaped = runtime.reap_unrecorded();
            if !reaped.is_empty() {
                warn!(instances = ?reaped, "removed processes a previous agent started but never recorded");
            }
            Ok(Arc::new(runtime))
        }
        RuntimeKind::Fake => Err(InputError::new("the fake runtime cannot run a real node")),
    }
}

/// Resolves when SIGINT or SIGTERM arrives.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => info!("received SIGINT"),
        _ = term.recv() => info!("received SIGTERM"),
    }
}

/// User labels plus the builtin ones Kubernetes sets on every node; builtins win so that
/// placement on `kubernetes.io/hostname` always means this node.
pub fn node_labels(node_id: &str, user: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let builtin = builtin_labels(node_id, std::env::consts::OS, go_arch(std::env::consts::ARCH));
    for key in builtin.keys().filter(|k| user.contains_key(*k)) {
        warn!(label = %key, "ignoring a user label that overrides a builtin label");
    }
    let mut labels = user.clone();
    labels.extend(builtin);
    labels
}

/// Creates the data dir and holds an exclusive lock on it for the life of the node, so two
/// agents never share one identity.
fn claim_data_dir(dir: &Path) -> Result<fs::File, InputError> {
    fs::create_dir_all(dir).map_err(|e| {
        InputError::new(format!(
            "cannot create data dir {}: {e}; choose another with --data-dir",
            dir.display()
        ))
    })?;
    let path = dir.join(LOCK_FILE);
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| {
            InputError::new(format!(
                "cannot open {}: {e}; check the --data-dir permissions",
                path.display()
            ))
        })?;
    // SAFETY: flock on a valid, owned descriptor.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(InputError::new(format!(
            "data dir {} is in use by another everynode agent; give each agent its own --data-dir",
            dir.display()
        )));
    }
    Ok(file)
}

/// The node id: the explicit one (remembered), else the remembered one, else the host name.
fn resolve_node_id(dir: &Path, explicit: Option<&str>) -> Result<String, InputError> {
    let path: PathBuf = dir.join(NODE_ID_FILE);
    let stored = fs::read_to_string(&path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    let id = match (explicit, stored) {
        (Some(id), Some(old)) if id != old => {
            warn!(old = %old, new = %id, "node id changed by configuration; the node joins as a new member");
            id.to_string()
        }
        (Some(id), _) => id.to_string(),
        (None, Some(old)) => {
            validate_node_id(&old).map_err(|e| {
                InputError::new(format!("{}: {e}; fix the file or set --node-id", path.display()))
            })?;
            return Ok(old);
        }
        (None, None) => {
            let host = hostname().to_lowercase();
            validate_node_id(&host).map_err(|e| {
                InputError::new(format!("the host name cannot be a node id ({e}); set --node-id"))
            })?;
            host
        }
    };
    let mut f = fs::File::create(&path).map_err(|e| {
        InputError::new(format!(
            "cannot write {}: {e}; check the --data-dir permissions",
            path.display()
        ))
    })?;
    writeln!(f, "{id}").map_err(|e| InputError::new(format!("cannot write {}: {e}", path.display())))?;
    Ok(id)
}

/// The Raft id kept in the data dir, or a fresh random one for a new (or wiped) node.
fn resolve_raft_id(dir: &Path) -> Result<u64, InputError> {
    use std::hash::{BuildHasher, Hasher};
    let path = dir.join(RAFT_ID_FILE);
    if let Ok(text) = fs::read_to_string(&path) {
        return text.trim().parse().map_err(|_| {
            InputError::new(format!(
                "{} does not hold a Raft id; remove the data dir to rejoin as a new node",
                path.display()
            ))
        });
    }
    // RandomState is seeded from the OS per process; mixing in the time and pid makes
    // collisions between nodes negligible without another dependency.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.write_u32(std::process::id());
    let id = h.finish() >> 1;
    fs::write(&path, format!("{id}\n")).map_err(|e| {
        InputError::new(format!(
            "cannot write {}: {e}; check the --data-dir permissions",
            path.display()
        ))
    })?;
    Ok(id)
}

/// Seeds as addresses, for the bootstrap rule; `None` when one does not resolve, since
/// that one might be the bootstrap node.
async fn resolve_seeds(seeds: &[String]) -> Option<Vec<SocketAddr>> {
    let mut out = Vec::new();
    for seed in seeds {
        match tokio::net::lookup_host(seed.as_str()).await {
            Ok(addrs) => out.extend(addrs),
            Err(e) => {
                warn!(seed = %seed, error = %e, "cannot resolve seed; this node will only join, never form a cluster");
                return None;
            }
        }
    }
    Some(out)
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// The IP other nodes reach this one at: `--advertise-addr` (resolved), else the gossip bind
/// IP, else the local address the kernel would route from towards the first seed.
async fn advertise_ip(config: &NodeConfig) -> Result<IpAddr, InputError> {
    if let Some(host) = &config.advertise_addr {
        let mut addrs = tokio::net::lookup_host((host.as_str(), 0))
            .await
            .map_err(|e| InputError::new(format!("--advertise-addr {host}: cannot resolve: {e}")))?;
        return addrs
            .next()
            .map(|a| a.ip())
            .ok_or_else(|| InputError::new(format!("--advertise-addr {host}: resolves to no address")));
    }
    if !config.gossip_addr.ip().is_unspecified() {
        return Ok(config.gossip_addr.ip());
    }
    // Connecting a UDP socket only asks the routing table; nothing is sent.
    let mut targets: Vec<SocketAddr> = Vec::new();
    for seed in &config.seeds {
        if let Ok(mut addrs) = tokio::net::lookup_host(seed.as_str()).await {
            targets.extend(addrs.next());
        }
    }
    // TEST-NET-1: never routed, only used to find the default outgoing interface.
    targets.push(SocketAddr::from(([192, 0, 2, 1], 9)));
    for target in targets {
        let Ok(sock) = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)) else {
            continue;
        };
        if sock.connect(target).is_ok() {
            if let Ok(local) = sock.local_addr() {
                if !local.ip().is_unspecified() {
                    return Ok(local.ip());
                }
            }
        }
    }
    warn!("no route to find an advertise address; advertising 127.0.0.1 (set --advertise-addr)");
    Ok(IpAddr::V4(Ipv4Addr::LOCALHOST))
}
