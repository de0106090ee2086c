//! The gossip socket of a real node: chitchat's messages sealed with the cluster's gossip key over UDP; what does not authenticate is dropped and counted.
//!
//! chitchat 0.13 keeps its message codec private: the only public code that turns a
//! `ChitchatEnvelope` into bytes and back is its own `UdpSocket`. So each secure socket keeps
//! two small codecs, each a chitchat `UdpSocket` and a plain socket bound to 127.0.0.1 that
//! pass one message at a time: outgoing envelopes are serialized by chitchat into our socket,
//! sealed, and sent; incoming datagrams are opened, and only then handed to chitchat to
//! decode. Only authenticated bytes ever reach chitchat's decoder, and a codec accepts
//! datagrams only from its own partner socket, so another local process cannot inject
//! plaintext either (their ports are held by this process).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use chitchat::transport::{RecvOutcome, SendOutcome, Socket, Transport};
use chitchat::{ChitchatEnvelope, ChitchatMessage, ProtocolVersion};
use tokio::sync::mpsc;
use tracing::warn;

use super::seal::{GossipKey, Opener, Reject, Sealer, MAX_DATAGRAM};
use super::transport::GossipStats;
use crate::security::unix_millis;

/// A message between the two sockets of a codec takes microseconds; longer means it was
/// dropped (chitchat silently skips bytes it cannot decode).
const CODEC_TIMEOUT: Duration = Duration::from_millis(500);
/// Decoded messages waiting for chitchat; beyond this, datagrams are dropped as UDP would.
const QUEUE: usize = 256;
/// At most one warning per reason in this interval, so a flood cannot flood the logs too.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Gossip over UDP, sealed with the cluster's gossip key.
pub struct SecureUdpTransport {
    key: [u8; 32],
    stats: Arc<GossipStats>,
}

impl SecureUdpTransport {
    /// `stats` receives the rejection counters shown in `/metrics`.
    pub fn new(key: [u8; 32], stats: Arc<GossipStats>) -> SecureUdpTransport {
        SecureUdpTransport { key, stats }
    }
}

#[async_trait::async_trait]
impl Transport for SecureUdpTransport {
    async fn open(&self, listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let wire = Arc::new(
            tokio::net::UdpSocket::bind(listen_addr)
                .await
                .with_context(|| format!("failed to bind to {listen_addr}/UDP for gossip"))?,
        );
        let local_addr = wire.local_addr()?;
        let mut encoder = Codec::open().await?;
        let mut decoder = Codec::open().await?;
        // A host whose loopback interface is down cannot run the codec: say so at start.
        let probe = ChitchatEnvelope {
            version: ProtocolVersion::V0,
            message: ChitchatMessage::BadCluster,
        };
        let round_trip = match encoder.encode(probe).await {
            Ok(bytes) => decoder.decode(&bytes).await.map(|_| ()),
            Err(e) => Err(e),
        };
        round_trip.context("the gossip codec needs the loopback interface (127.0.0.1) up")?;

        let (tx, rx) = mpsc::channel(QUEUE);
        let receiver = tokio::spawn(receive(
            wire.clone(),
            Opener::new(GossipKey::new(&self.key)),
            decoder,
            tx,
            self.stats.clone(),
        ));
        Ok(Box::new(SecureSocket {
            wire,
            local_addr,
            sealer: Sealer::new(&GossipKey::new(&self.key)),
            encoder,
            rx,
            receiver,
        }))
    }
}

struct SecureSocket {
    wire: Arc<tokio::net::UdpSocket>,
    local_addr: SocketAddr,
    sealer: Sealer,
    encoder: Codec,
    /// Messages the receive task opened and decoded; reading a channel is cancel-safe, as
    /// chitchat needs (it drops `recv` on every gossip tick).
    rx: mpsc::Receiver<RecvOutcome>,
    receiver: tokio::task::JoinHandle<()>,
}

impl Drop for SecureSocket {
    fn drop(&mut self) {
        self.receiver.abort();
    }
}

#[async_trait::async_trait]
impl Socket for SecureSocket {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.local_addr)
    }

    async fn send(&mut self, to: SocketAddr, envelope: ChitchatEnvelope) -> anyhow::Result<SendOutcome> {
        let plain = self.encoder.encode(envelope).await?;
        let mut num_bytes_sent = 0;
        for datagram in self.sealer.seal(&plain, unix_millis()) {
            match self.wire.send_to(&datagram, to).await {
                Ok(n) => num_bytes_sent += n,
                // The network refused the datagram (no route, a firewall, a host gone): to
                // gossip that is a lost packet, which its failure detector is built for. As an
                // error, chitchat would log it at every round, with a whole backtrace when
                // RUST_BACKTRACE is set.
                Err(e) if is_lost_packet(&e) => {
                    tracing::debug!(%to, error = %e, "gossip datagram not sent");
                    return Ok(SendOutcome { num_bytes_sent });
                }
                Err(e) => {
                    return Err(anyhow::Error::new(e).context("failed to send a gossip message to a peer"))
                }
            }
        }
        Ok(SendOutcome { num_bytes_sent })
    }

    async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
        self.rx
            .recv()
            .await
            .ok_or_else(|| anyhow!("the gossip socket on {} stopped receiving", self.local_addr))
    }
}

/// Send errors that only say this datagram did not leave or will not arrive.
fn is_lost_packet(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::EPERM
                | libc::ENETUNREACH
                | libc::EHOSTUNREACH
                | libc::EHOSTDOWN
                | libc::ECONNREFUSED
                | libc::ENETDOWN
        )
    )
}

/// Reads the wire, opens and decodes, and queues what passes; ends when the socket fails
/// or its owner is gone.
async fn receive(
    wire: Arc<tokio::net::UdpSocket>,
    mut opener: Opener,
    mut decoder: Codec,
    tx: mpsc::Sender<RecvOutcome>,
    stats: Arc<GossipStats>,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut last_warned: [Option<Instant>; 5] = [None; 5];
    let mut warn_once = |slot: usize, from: SocketAddr, why: &str| {
        let due = last_warned[slot].is_none_or(|t| t.elapsed() >= WARN_EVERY);
        if due {
            last_warned[slot] = Some(Instant::now());
            warn!(%from, "dropped a gossip packet: {why} (repeats are only counted, in everynode_gossip_rejected_total)");
        }
    };
    loop {
        let (n, from) = match wire.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionRefused
                        | std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::OutOfMemory
                ) =>
            {
                continue
            }
            Err(e) => {
                warn!(error = %e, "gossip socket failed; gossip stops");
                return;
            }
        };
        let plain = match opener.open(&buf[..n], unix_millis()) {
            Ok(Some(plain)) => plain,
            Ok(None) => continue,
            Err(reject) => {
                stats.reject(reject);
                let (slot, why) = match reject {
                    Reject::Malformed => (0, "not an everynode gossip packet"),
                    Reject::Unauthentic => (1, "not sealed with this cluster's key (a node with another or no --cluster-secret-file?)"),
                    Reject::Replayed => (2, "a replay of a packet already received"),
                    Reject::Stale => (3, "its time stamp is more than 60 s from this host's clock (check NTP on both hosts)"),
                };
                warn_once(slot, from, why);
                continue;
            }
        };
        let envelope = match decoder.decode(&plain).await {
            Ok(e) => e,
            Err(_) => {
                stats.reject(Reject::Malformed);
                warn_once(
                    4,
                    from,
                    "authentic but not a chitchat message (a different everynode version?)",
                );
                continue;
            }
        };
        let outcome = RecvOutcome {
            from_addr: from,
            envelope,
            num_bytes_received: n,
        };
        match tx.try_send(outcome) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {}
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        }
    }
}

/// chitchat's own UDP socket as a codec: one of our sockets talks to it over loopback.
struct Codec {
    chitchat: chitchat::transport::UdpSocket,
    chitchat_addr: SocketAddr,
    raw: tokio::net::UdpSocket,
    raw_addr: SocketAddr,
    buf: Vec<u8>,
}

impl Codec {
    async fn open() -> anyhow::Result<Codec> {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let chitchat = chitchat::transport::UdpSocket::open(loopback).await?;
        let raw = tokio::net::UdpSocket::bind(loopback).await?;
        Ok(Codec {
            chitchat_addr: chitchat.local_addr()?,
            raw_addr: raw.local_addr()?,
            chitchat,
            raw,
            buf: vec![0u8; MAX_DATAGRAM],
        })
    }

    /// chitchat's wire bytes of `envelope`.
    async fn encode(&mut self, envelope: ChitchatEnvelope) -> anyhow::Result<Vec<u8>> {
        // Anything left from an earlier, interrupted call must not be taken for this answer.
        while self.raw.try_recv_from(&mut self.buf).is_ok() {}
        self.chitchat.send(self.raw_addr, envelope).await?;
        let deadline = tokio::time::Instant::now() + CODEC_TIMEOUT;
        loop {
            let (n, from) = tokio::time::timeout_at(deadline, self.raw.recv_from(&mut self.buf))
                .await
                .map_err(|_| anyhow!("the gossip encoder did not answer over loopback"))??;
            if from == self.chitchat_addr {
                return Ok(self.buf[..n].to_vec());
            }
        }
    }

    /// The envelope in `bytes`, decoded by chitchat.
    async fn decode(&mut self, bytes: &[u8]) -> anyhow::Result<ChitchatEnvelope> {
        self.raw.send_to(bytes, self.chitchat_addr).await?;
        let deadline = tokio::time::Instant::now() + CODEC_TIMEOUT;
        loop {
            let out = tokio::time::timeout_at(deadline, self.chitchat.recv())
                .await
                .map_err(|_| anyhow!("chitchat could not decode the message"))??;
            if out.from_addr == self.raw_addr {
                return Ok(out.envelope);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_datagrams_are_lost_packets_and_other_send_errors_are_errors() {
        for code in [
            libc::EPERM,
            libc::ENETUNREACH,
            libc::EHOSTUNREACH,
            libc::ECONNREFUSED,
        ] {
            assert!(is_lost_packet(&std::io::Error::from_raw_os_error(code)), "{code}");
        }
        for code in [libc::EMSGSIZE, libc::EBADF, libc::ENOBUFS] {
            assert!(
                !is_lost_packet(&std::io::Error::from_raw_os_error(code)),
                "{code}"
            );
        }
    }
}
