//! End to end: real agents on loopback join, see a killed node dead, and see it back once restarted.

use crate::support;

use std::time::Duration;

use support::{wait_until, Cluster};

#[test]
fn five_agents_join_see_a_killed_node_dead_and_its_restart_once() {
    let _machine = crate::support::shared_machine();
    let mut cluster = Cluster::start(5);
    let all: Vec<String> = (0..5).map(|i| format!("node-{i}")).collect();

    for node in &cluster.nodes {
        wait_until(
            &format!("{} to list 5 alive members", node.name),
            Duration::from_secs(20),
            || {
                let alive = Cluster::alive_names(node)?;
                if alive == all {
                    Ok(())
                } else {
                    Err(format!("alive: {alive:?}"))
                }
            },
        );
    }

    // Builtin labels and addresses are published by every node.
    let members = cluster.nodes[0].members().unwrap();
    for m in &members {
        let name = m["name"].as_str().unwrap();
        assert_eq!(m["labels"]["kubernetes.io/hostname"], name);
        assert_eq!(m["labels"]["kubernetes.io/os"], "linux");
        assert!(m["labels"]["kubernetes.io/arch"].is_string());
        assert!(m["api_addr"].as_str().unwrap().starts_with("127.0.0.1:"));
        assert!(m["gossip_addr"].as_str().unwrap().starts_with("127.0.0.1:"));
        assert_eq!(m["runtime"], "process");
        assert!(m["taints"].is_array());
    }

    cluster.nodes[3].kill();
    for node in cluster.nodes.iter().filter(|n| n.is_running()) {
        wait_until(
            &format!("{} to list node-3 dead", node.name),
            Duration::from_secs(15),
            || {
                let members = node.members()?;
                let state = members
                    .iter()
                    .find(|m| m["name"] == "node-3")
                    .map(|m| m["state"].clone());
                if state == Some("dead".into()) {
                    Ok(())
                } else {
                    Err(format!("node-3 state: {state:?}"))
                }
            },
        );
    }

    // Restarted without --node-id: the data dir remembers who it is.
    cluster.nodes[3].start_with(false);
    for node in &cluster.nodes {
        wait_until(
            &format!("{} to list node-3 alive exactly once", node.name),
            Duration::from_secs(20),
            || {
                let members = node.members()?;
                let entries: Vec<_> = members.iter().filter(|m| m["name"] == "node-3").collect();
                let alive = Cluster::alive_names(node)?;
                if entries.len() == 1 && alive == all {
                    Ok(())
                } else {
                    Err(format!("node-3 entries: {entries:?}; alive: {alive:?}"))
                }
            },
        );
    }
}

#[test]
fn sigterm_stops_a_node_cleanly_and_metrics_count_members() {
    let _machine = crate::support::shared_machine();
    let mut cluster = Cluster::start(2);
    let node = &cluster.nodes[0];
    wait_until("two members alive", Duration::from_secs(20), || {
        let alive = Cluster::alive_names(node)?;
        if alive.len() == 2 {
            Ok(())
        } else {
            Err(format!("alive: {alive:?}"))
        }
    });
    let metrics = reqwest_get(&format!("{}/metrics", node.server()), Some(&node.admin_token()));
    assert!(
        metrics.contains("everynode_members{state=\"alive\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("everynode_gossip_packets_total{direction=\"sent\"}"),
        "{metrics}"
    );
    assert_eq!(
        reqwest_get(&format!("{}/healthz", node.server()), None).trim(),
        "ok"
    );

    let status = cluster.nodes[1].stop();
    assert!(status.success(), "agent exited with {status}");
    assert!(
        cluster.nodes[1].log_tail(5).contains("stopped"),
        "{}",
        cluster.nodes[1].log_tail(5)
    );
}

fn reqwest_get(url: &str, token: Option<&str>) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut req = reqwest::Client::new().get(url);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.send().await.unwrap().text().await.unwrap()
    })
}
