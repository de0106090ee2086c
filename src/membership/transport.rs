//! A gossip transport wrapper that counts packets and bytes for `/metrics`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chitchat::transport::{RecvOutcome, SendOutcome, Socket, Transport};
use chitchat::ChitchatEnvelope;

use super::seal::Reject;

/// Every rejection reason, in the order of [`GossipStats::rejected`].
const REJECT_REASONS: [Reject; 4] = [
    Reject::Malformed,
    Reject::Unauthentic,
    Reject::Replayed,
    Reject::Stale,
];

/// Gossip traffic counters, shared between the socket and the metrics endpoint.
#[derive(Debug, Default)]
pub struct GossipStats {
    pub packets_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub packets_received: AtomicU64,
    pub bytes_received: AtomicU64,
    /// Datagrams dropped by the secure transport, by [`Reject`] reason (in its order).
    pub rejected: [AtomicU64; 4],
}

impl GossipStats {
    /// Counts one dropped datagram.
    pub fn reject(&self, why: Reject) {
        self.rejected[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Dropped datagrams by reason name, for `/metrics`.
    pub fn rejected_snapshot(&self) -> Vec<(&'static str, u64)> {
        REJECT_REASONS
            .iter()
            .map(|r| (r.as_str(), self.rejected[*r as usize].load(Ordering::Relaxed)))
            .collect()
    }

    pub fn snapshot(&self) -> [u64; 4] {
        [
            self.packets_sent.load(Ordering::Relaxed),
            self.bytes_sent.load(Ordering::Relaxed),
            self.packets_received.load(Ordering::Relaxed),
            self.bytes_received.load(Ordering::Relaxed),
        ]
    }
}

/// Wraps the real transport (UDP in production, channels in simulations).
pub struct CountingTransport {
    pub inner: Box<dyn Transport>,
    pub stats: Arc<GossipStats>,
}

#[async_trait::async_trait]
impl Transport for CountingTransport {
    async fn open(&self, listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let inner = self.inner.open(listen_addr).await?;
        Ok(Box::new(CountingSocket {
            inner,
            stats: self.stats.clone(),
        }))
    }
}

struct CountingSocket {
    inner: Box<dyn Socket>,
    stats: Arc<GossipStats>,
}

#[async_trait::async_trait]
impl Socket for CountingSocket {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.inner.local_addr()
    }

    async fn send(&mut self, to: SocketAddr, envelope: ChitchatEnvelope) -> anyhow::Result<SendOutcome> {
        let outcome = self.inner.send(to, envelope).await?;
        self.stats.packets_sent.fetch_add(1, Ordering::Relaxed);
        self.stats
            .bytes_sent
            .fetch_add(outcome.num_bytes_sent as u64, Ordering::Relaxed);
        Ok(outcome)
    }

    async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
        let outcome = self.inner.recv().await?;
        self.stats.packets_received.fetch_add(1, Ordering::Relaxed);
        self.stats
            .bytes_received
            .fetch_add(outcome.num_bytes_received as u64, Ordering::Relaxed);
        Ok(outcome)
    }
}
