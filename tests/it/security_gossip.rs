//! Bad actors on the gossip port, in process over real UDP on loopback: a node with another key, forged and replayed packets, and a state large enough to need two sealed datagrams per message.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chitchat::transport::{Transport, UdpTransport};
use chitchat::{ChitchatEnvelope, ChitchatMessage, ProtocolVersion};
use everynode::membership::secure::SecureUdpTransport;
use everynode::membership::{keys, GossipStats, MemberState, Membership, MembershipConfig};
use everynode::security::secret::ClusterSecret;

use crate::support;

const GOSSIP_INTERVAL: Duration = Duration::from_millis(100);
const DEADLINE: Duration = Duration::from_secs(20);
/// Long enough for many gossip rounds: a stranger that could join would have joined by then.
const STRANGER_WINDOW: Duration = Duration::from_secs(4);

fn key(secret: &str) -> [u8; 32] {
    ClusterSecret::from_bytes(secret.as_bytes()).keys().gossip
}

fn addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], support::free_port()))
}

/// A node on `listen` sealing with `secret`, joining through `seeds`.
async fn start(name: &str, listen: SocketAddr, seeds: &[SocketAddr], secret: &str) -> Membership {
    let stats = Arc::new(GossipStats::default());
    let config = MembershipConfig {
        node_id: name.into(),
        generation: 1,
        cluster: "sec".into(),
        listen_addr: listen,
        advertise_addr: listen,
        seeds: seeds.iter().map(|s| s.to_string()).collect(),
        gossip_interval: GOSSIP_INTERVAL,
        dead_node_grace: Duration::from_secs(3600),
        initial_keys: vec![(keys::RUNTIME.into(), format!("secret-of-{name}"))],
    };
    let transport = SecureUdpTransport::new(key(secret), stats.clone());
    Membership::start_with_stats(config, Box::new(transport), stats)
        .await
        .expect("starting a gossip node")
}

async fn names(node: &Membership) -> Vec<String> {
    node.members().await.into_iter().map(|m| m.name).collect()
}

async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> Result<(), String>) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match check().await {
            Ok(()) => return,
            Err(why) if Instant::now() > deadline => panic!("timed out waiting for {what}: {why}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

fn rejected(node: &Membership, reason: usize) -> u64 {
    node.stats().rejected[reason].load(Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_another_secret_is_never_a_member_and_sees_nothing() {
    let _machine = crate::support::shared_machine();
    let seed = addr();
    let a = start("a", seed, &[], "the-cluster-secret-1234").await;
    let b = start("b", addr(), &[seed], "the-cluster-secret-1234").await;
    let stranger = start("stranger", addr(), &[seed], "another-secret-56789").await;
    wait_for("a and b to see each other", async || {
        let (na, nb) = (names(&a).await, names(&b).await);
        if na == ["a", "b"] && nb == ["a", "b"] {
            Ok(())
        } else {
            Err(format!("a: {na:?}, b: {nb:?}"))
        }
    })
    .await;
    tokio::time::sleep(STRANGER_WINDOW).await;
    assert_eq!(names(&a).await, ["a", "b"], "the stranger must never be listed");
    assert_eq!(names(&b).await, ["a", "b"]);
    // The stranger learns nothing: not the members, not their keys.
    let seen = stranger.members().await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].name, "stranger");
    assert!(seen[0].runtime.contains("stranger"));
    // Its packets were dropped and counted on the seed (1 = unauthentic).
    assert!(rejected(&a, 1) > 0, "the seed counted no unauthentic packet");
    // And the cluster's packets were dropped by the stranger.
    assert!(rejected(&stranger, 1) > 0 || stranger.stats().packets_received.load(Ordering::Relaxed) == 0);
    for n in [&a, &b, &stranger] {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_plaintext_packets_are_dropped_and_counted() {
    let _machine = crate::support::shared_machine();
    let listen = addr();
    let node = start("target", listen, &[], "the-cluster-secret-1234").await;
    // A genuine chitchat Syn in plaintext, as an unmodified chitchat node would send it.
    let mut plain = UdpTransport.open(addr()).await.unwrap();
    let syn = ChitchatEnvelope {
        version: ProtocolVersion::V0,
        message: ChitchatMessage::BadCluster,
    };
    plain.send(listen, syn).await.unwrap();
    // Forgeries in our format: right version byte and layout, made-up tag.
    let raw = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut forged = vec![1u8, 0x01];
    forged.extend([0xAB; 16 + 8 + 8 + 40 + 16]);
    for _ in 0..3 {
        raw.send_to(&forged, listen).await.unwrap();
    }
    raw.send_to(b"junk", listen).await.unwrap();
    wait_for("the drops to be counted", async || {
        let (malformed, unauthentic) = (rejected(&node, 0), rejected(&node, 1));
        if malformed >= 2 && unauthentic >= 3 {
            Ok(())
        } else {
            Err(format!("malformed {malformed}, unauthentic {unauthentic}"))
        }
    })
    .await;
    assert_eq!(names(&node).await, ["target"]);
    assert_eq!(node.stats().packets_received.load(Ordering::Relaxed), 0);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_packet_is_dropped() {
    let _machine = crate::support::shared_machine();
    // A tap poses as a seed: the node sends it sealed Syn packets, which it then replays.
    let tap = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let sender = start(
        "sender",
        addr(),
        &[tap.local_addr().unwrap()],
        "the-cluster-secret-1234",
    )
    .await;
    let mut packet = vec![0u8; 65_536];
    let (n, _) = tokio::time::timeout(DEADLINE, tap.recv_from(&mut packet))
        .await
        .expect("the node gossips to its seed")
        .unwrap();
    packet.truncate(n);

    let victim_addr = addr();
    let victim = start("victim", victim_addr, &[], "the-cluster-secret-1234").await;
    tap.send_to(&packet, victim_addr).await.unwrap();
    wait_for("the first copy to be accepted", async || {
        match victim.stats().packets_received.load(Ordering::Relaxed) {
            0 => Err("nothing received yet".into()),
            _ => Ok(()),
        }
    })
    .await;
    for _ in 0..3 {
        tap.send_to(&packet, victim_addr).await.unwrap();
    }
    wait_for(
        "the replays to be dropped (2 = replayed)",
        async || match rejected(&victim, 2) {
            3 => Ok(()),
            n => Err(format!("{n} replays counted")),
        },
    )
    .await;
    sender.shutdown().await;
    victim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_larger_than_one_datagram_replicates_sealed() {
    let _machine = crate::support::shared_machine();
    let seed = addr();
    let a = start("a", seed, &[], "the-cluster-secret-1234").await;
    // 400 statuses of ~450 bytes: ~180 kB, so chitchat fills whole 65 507-byte messages,
    // which travel as two sealed datagrams each.
    let status = |i: usize| {
        format!(
            "{{\"rev\":\"r{i}\",\"st\":\"Running\",\"rdy\":true,\"rc\":0,\"err\":\"{}\"}}",
            "x".repeat(400)
        )
    };
    for i in 0..400 {
        a.set_local(&keys::ds_status_key(&format!("big-{i:03}")), status(i))
            .await;
    }
    let b = start("b", addr(), &[seed], "the-cluster-secret-1234").await;
    wait_for("b to learn all of a's statuses", async || {
        let members = b.members().await;
        let pods = members
            .iter()
            .find(|m| m.name == "a" && m.state == MemberState::Alive)
            .map(|m| m.pods.len())
            .unwrap_or(0);
        if pods == 400 {
            Ok(())
        } else {
            Err(format!("{pods} of 400 statuses"))
        }
    })
    .await;
    assert_eq!(
        rejected(&b, 0) + rejected(&b, 1) + rejected(&b, 2) + rejected(&b, 3),
        0
    );
    a.shutdown().await;
    b.shutdown().await;
}
