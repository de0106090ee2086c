//! Gossip membership: a cloneable handle over chitchat that publishes this node's keys and lists every member.

pub mod keys;
pub mod member;
pub mod seal;
pub mod secure;
pub mod transport;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chitchat::transport::Transport;
use chitchat::{spawn_chitchat, Chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig};
use tokio::sync::Mutex;

pub use member::{Member, MemberState};
pub use transport::GossipStats;

/// How failure detection scales with the gossip interval: a node is declared dead once its
/// heartbeat is overdue by this many mean intervals (chitchat's phi is elapsed / mean).
const PHI_THRESHOLD: f64 = 8.0;

/// What membership needs to start; plain data so tests build it directly.
#[derive(Debug, Clone)]
pub struct MembershipConfig {
    pub node_id: String,
    /// Start time of this incarnation (unix millis); a restarted node supersedes its old self.
    pub generation: u64,
    /// Nodes gossip only within the same cluster name.
    pub cluster: String,
    pub listen_addr: SocketAddr,
    pub advertise_addr: SocketAddr,
    pub seeds: Vec<String>,
    pub gossip_interval: Duration,
    /// How long a dead node stays listed (as dead) before it is forgotten.
    pub dead_node_grace: Duration,
    /// Keys published from the first gossip round on.
    pub initial_keys: Vec<(String, String)>,
}

/// A cloneable handle on the running gossip instance.
#[derive(Clone)]
pub struct Membership {
    chitchat: Arc<Mutex<Chitchat>>,
    /// Taken on shutdown; the handle owns chitchat's background task.
    handle: Arc<std::sync::Mutex<Option<ChitchatHandle>>>,
    self_id: ChitchatId,
    stats: Arc<GossipStats>,
    /// Nodes seen live at least once: a node not live now is dead if here, joining if not.
    ever_live: Arc<std::sync::Mutex<HashSet<ChitchatId>>>,
    /// When each node was last seen going from live to not live (unix seconds), so that a node
    /// dead for long can stop counting (`--dead-node-grace`).
    dead_since: Arc<std::sync::Mutex<HashMap<ChitchatId, u64>>>,
    /// Nodes the cluster recorded as gone, with the last generation that left: listed as `left`.
    departed: Arc<std::sync::RwLock<BTreeMap<String, u64>>>,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Membership {
    /// Binds the gossip socket through `transport` and starts gossiping.
    pub async fn start(
        config: MembershipConfig,
        transport: Box<dyn Transport>,
    ) -> anyhow::Result<Membership> {
        Membership::start_with_stats(config, transport, Arc::default()).await
    }

    /// [`Membership::start`], counting into `stats`, which a secure transport shares to count
    /// the datagrams it drops.
    pub async fn start_with_stats(
        config: MembershipConfig,
        transport: Box<dyn Transport>,
        stats: Arc<GossipStats>,
    ) -> anyhow::Result<Membership> {
        let self_id = ChitchatId::new(config.node_id.clone(), config.generation, config.advertise_addr);
        let own = config.advertise_addr.to_string();
        let seeds = config.seeds.iter().filter(|s| **s != own).cloned().collect();
        let interval = config.gossip_interval;
        let chitchat_config = ChitchatConfig {
            chitchat_id: self_id.clone(),
            cluster_id: config.cluster.clone(),
            gossip_interval: interval,
            listen_addr: config.listen_addr,
            seed_nodes: seeds,
            failure_detector_config: FailureDetectorConfig {
                phi_threshold: PHI_THRESHOLD,
                sampling_window_size: 1_000,
                // Longer gaps (a paused host) are not learned as the normal heartbeat rhythm.
                max_interval: (interval * 40).max(Duration::from_secs(10)),
                initial_interval: interval,
                dead_node_grace_period: config.dead_node_grace,
            },
            marked_for_deletion_grace_period: Duration::from_secs(3600),
            catchup_callback: None,
            extra_liveness_predicate: None,
            protocol_version: chitchat::ProtocolVersion::V0,
        };
        let counting = transport::CountingTransport {
            inner: transport,
            stats: stats.clone(),
        };
        let handle = spawn_chitchat(chitchat_config, config.initial_keys, &counting).await?;
        let ever_live = Arc::new(std::sync::Mutex::new(HashSet::new()));
        let dead_since = Arc::new(std::sync::Mutex::new(HashMap::new()));
        // Liveness changes between two listings must still count as "was live once", and a
        // node's death is timed from when it left the live set.
        let mut live_watch = handle.chitchat().lock().await.live_nodes_watcher();
        let seen = ever_live.clone();
        let died = dead_since.clone();
        tokio::spawn(async move {
            let mut before: HashSet<ChitchatId> = HashSet::new();
            while live_watch.changed().await.is_ok() {
                let live: HashSet<ChitchatId> = live_watch.borrow_and_update().keys().cloned().collect();
                {
                    let now = unix_now();
                    let mut died = died.lock().expect("dead_since lock poisoned");
                    for id in before.difference(&live) {
                        died.entry(id.clone()).or_insert(now);
                    }
                    for id in &live {
                        died.remove(id);
                    }
                }
                seen.lock()
                    .expect("ever_live lock poisoned")
                    .extend(live.iter().cloned());
                before = live;
            }
        });
        Ok(Membership {
            ever_live,
            dead_since,
            departed: Default::default(),
            chitchat: handle.chitchat(),
            handle: Arc::new(std::sync::Mutex::new(Some(handle))),
            self_id,
            stats,
        })
    }

    pub fn node_id(&self) -> &str {
        &self.self_id.node_id
    }

    pub fn self_id(&self) -> &ChitchatId {
        &self.self_id
    }

    pub fn stats(&self) -> &GossipStats {
        &self.stats
    }

    /// Every known node (newest generation only), alive or dead, sorted by name.
    pub async fn members(&self) -> Vec<Member> {
        let chitchat = self.chitchat.lock().await;
        let live: HashSet<ChitchatId> = chitchat.live_nodes().cloned().collect();
        let mut ever_live = self.ever_live.lock().expect("ever_live lock poisoned");
        ever_live.extend(live.iter().cloned());
        let mut dead_since = self.dead_since.lock().expect("dead_since lock poisoned");
        // A death the watcher has not timed yet is timed from now.
        for id in ever_live.iter().filter(|id| !live.contains(*id)) {
            dead_since.entry(id.clone()).or_insert_with(unix_now);
        }
        let departed = self.departed.read().expect("departed lock poisoned");
        member::members_from_states(chitchat.node_states(), &live, &ever_live, &dead_since, &departed)
    }

    /// The nodes the cluster recorded as gone (node id to the last generation that left), from
    /// the committed store; their members are listed as [`MemberState::Left`].
    pub fn set_departed(&self, departed: BTreeMap<String, u64>) {
        *self.departed.write().expect("departed lock poisoned") = departed;
    }

    /// Publishes (or replaces) one of this node's own keys.
    pub async fn set_local(&self, key: &str, value: impl ToString) {
        self.chitchat.lock().await.self_node_state().set(key, value);
    }

    /// Deletes one of this node's own keys (a tombstone peers learn); absent keys are ignored.
    pub async fn delete_local(&self, key: &str) {
        let mut chitchat = self.chitchat.lock().await;
        let state = chitchat.self_node_state();
        // chitchat logs a warning when deleting an absent key; checking first keeps logs quiet.
        if state.get(key).is_some() {
            state.delete(key);
        }
    }

    /// Stops gossiping; peers will see this node dead after their detection timeout.
    pub async fn shutdown(&self) {
        let handle = self
            .handle
            .lock()
            .expect("membership handle lock poisoned")
            .take();
        if let Some(handle) = handle {
            if let Err(e) = handle.shutdown().await {
                tracing::warn!(error = %e, "gossip did not shut down cleanly");
            }
        }
    }
}
