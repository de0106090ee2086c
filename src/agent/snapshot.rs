//! One runtime listing shared by every actor of a node, so N DaemonSets cost one list per resync instead of N.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::runtime::{ContainerRuntime, Instance, RuntimeError};

/// This node's instances as last listed, reused for `ttl` unless someone changed the runtime.
///
/// Every actor that creates, stops or removes an instance calls [`InstanceCache::invalidate`],
/// so its next look is fresh and it never acts twice on a listing that predates its own action.
pub struct InstanceCache {
    runtime: Arc<dyn ContainerRuntime>,
    cluster: String,
    node: String,
    /// How long a listing answers for everyone; about one resync, so each pass of the node
    /// costs one list whatever the number of DaemonSets.
    ttl: Duration,
    /// Bumped on every change made through the agent: a listing taken under an older value is
    /// never reused.
    generation: AtomicU64,
    /// Held while listing, so actors waking together share one call instead of racing.
    cached: tokio::sync::Mutex<Option<Cached>>,
}

struct Cached {
    /// When the listing started: anything changed after that may be missing from it.
    taken: Instant,
    generation: u64,
    instances: Arc<Vec<Instance>>,
}

impl InstanceCache {
    pub fn new(runtime: Arc<dyn ContainerRuntime>, cluster: &str, node: &str, ttl: Duration) -> Self {
        InstanceCache {
            runtime,
            cluster: cluster.to_string(),
            node: node.to_string(),
            ttl,
            generation: AtomicU64::new(0),
            cached: tokio::sync::Mutex::new(None),
        }
    }

    /// Every instance of this cluster and node, at most `ttl` old and never older than the
    /// last [`invalidate`](Self::invalidate). Errors are not cached: the next call tries again.
    pub async fn list(&self) -> Result<Arc<Vec<Instance>>, RuntimeError> {
        let mut cached = self.cached.lock().await;
        let generation = self.generation.load(Ordering::SeqCst);
        if let Some(c) = cached.as_ref() {
            if c.generation == generation && c.taken.elapsed() < self.ttl {
                return Ok(c.instances.clone());
            }
        }
        let taken = Instant::now();
        let instances = Arc::new(self.runtime.list(&self.cluster, &self.node).await?);
        *cached = Some(Cached {
            taken,
            generation,
            instances: instances.clone(),
        });
        Ok(instances)
    }

    /// The runtime changed (or is about to): the next [`list`](Self::list) asks it again.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::fake::{Call, FakeRuntime};
    use crate::runtime::test_support::spec;

    fn lists(fake: &FakeRuntime) -> usize {
        fake.calls()
            .iter()
            .filter(|c| matches!(c, Call::List { .. }))
            .count()
    }

    #[tokio::test]
    async fn one_listing_serves_everyone_until_it_expires_or_the_runtime_changes() {
        let fake = FakeRuntime::new();
        let cache = InstanceCache::new(Arc::new(fake.clone()), "c1", "n1", Duration::from_secs(3600));
        assert!(cache.list().await.unwrap().is_empty());
        for _ in 0..10 {
            cache.list().await.unwrap();
        }
        assert_eq!(lists(&fake), 1, "ten readers, one runtime call");

        fake.create_and_start(&spec("ds", "n1")).await.unwrap();
        cache.invalidate();
        assert_eq!(cache.list().await.unwrap().len(), 1, "a change is seen at once");
        assert_eq!(lists(&fake), 2);

        let short = InstanceCache::new(Arc::new(fake.clone()), "c1", "n1", Duration::ZERO);
        short.list().await.unwrap();
        short.list().await.unwrap();
        assert_eq!(lists(&fake), 4, "an expired listing is taken again");

        fake.set_unavailable(true);
        assert!(short.list().await.is_err());
        fake.set_unavailable(false);
        assert_eq!(short.list().await.unwrap().len(), 1, "errors are not cached");
    }
}
