//! End to end: real agents form one Raft cluster, accept writes on any node, spread the store to every node, and refuse writes without a majority.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use support::manifest::Manifest;
use support::{wait_until, Cluster, Node};

fn manifest(dir: &Path, name: &str, image: &str) -> PathBuf {
    Manifest::new(name)
        .image(image)
        .change_cause(&format!("deploy {image}"))
        .write(dir, &format!("{name}-{}.yaml", image.replace([':', '/'], "-")))
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn roles(node: &Node) -> Result<Vec<(String, String)>, String> {
    Ok(node
        .members()?
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap_or("").to_string(),
                m["role"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect())
}

/// Waits until every running node sees one leader and `voters` voters among alive members.
fn wait_for_cluster(cluster: &Cluster, voters: usize) -> String {
    let mut leader = String::new();
    for node in cluster.nodes.iter().filter(|n| n.is_running()) {
        leader = wait_until(
            &format!("{} to see 1 leader and {} voters", node.name, voters - 1),
            Duration::from_secs(40),
            || {
                let members = node.members()?;
                let alive: Vec<&Value> = members.iter().filter(|m| m["state"] == "alive").collect();
                let leaders: Vec<&str> = alive
                    .iter()
                    .filter(|m| m["role"] == "leader")
                    .map(|m| m["name"].as_str().unwrap())
                    .collect();
                let voter_count = alive.iter().filter(|m| m["role"] == "voter").count();
                if leaders.len() == 1 && voter_count == voters - 1 {
                    Ok(leaders[0].to_string())
                } else {
                    Err(format!("roles: {:?}", roles(node)?))
                }
            },
        );
    }
    leader
}

fn ds_names(node: &Node) -> Result<Vec<String>, String> {
    let out = node.cli(&["get", "ds", "-o", "json"]);
    if !out.status.success() {
        return Err(stderr(&out));
    }
    let list: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    let mut names: Vec<String> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    Ok(names)
}

fn wait_for_ds(cluster: &Cluster, want: &[&str]) {
    for node in cluster.nodes.iter().filter(|n| n.is_running()) {
        wait_until(
            &format!("{} to list daemonsets {want:?}", node.name),
            Duration::from_secs(20),
            || {
                let names = ds_names(node)?;
                if names == want {
                    Ok(())
                } else {
                    Err(format!("has {names:?}"))
                }
            },
        );
    }
}

#[test]
fn a_lone_node_forms_its_own_cluster_and_leads_it() {
    let _machine = crate::support::shared_machine();
    let root = tempfile::tempdir().unwrap();
    let mut node = Node::new(
        root.path(),
        "solo",
        vec!["--gossip-interval-ms".into(), "100".into()],
    );
    node.start();
    wait_until("solo to lead", Duration::from_secs(20), || {
        let r = roles(&node)?;
        if r == vec![("solo".to_string(), "leader".to_string())] {
            Ok(())
        } else {
            Err(format!("{r:?}"))
        }
    });
    let file = manifest(root.path(), "agent", "agent:1");
    let out = node.cli(&["apply", "-f", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "daemonset.apps/agent created");
}

#[test]
fn nodes_started_together_form_one_cluster_and_any_node_takes_writes() {
    let _machine = crate::support::shared_machine();
    let mut cluster = Cluster::start_seeded(5, 3, &[]);
    let leader = wait_for_cluster(&cluster, 3);
    let dir = cluster.root.path().to_path_buf();

    // Writes on a node that is not a voter are forwarded to the leader.
    let plain = cluster
        .nodes
        .iter()
        .find(|n| {
            roles(n)
                .unwrap()
                .iter()
                .any(|(name, role)| name == &n.name && role == "non-voter")
        })
        .expect("with 5 nodes and 3 voters, two are plain members");
    let v1 = manifest(&dir, "agent", "agent:1");
    let out = plain.cli(&["apply", "-f", v1.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "daemonset.apps/agent created");
    wait_for_ds(&cluster, &["agent"]);

    let out = cluster.nodes[0].cli(&["apply", "-f", v1.to_str().unwrap()]);
    assert_eq!(
        stdout(&out).trim(),
        "daemonset.apps/agent unchanged",
        "{}",
        stderr(&out)
    );
    let v2 = manifest(&dir, "agent", "agent:2");
    let out = cluster.nodes[1].cli(&["apply", "-f", v2.to_str().unwrap()]);
    assert_eq!(
        stdout(&out).trim(),
        "daemonset.apps/agent configured",
        "{}",
        stderr(&out)
    );

    // Every node learns the new revision.
    for node in &cluster.nodes {
        wait_until(
            &format!("{} to see revision 2", node.name),
            Duration::from_secs(20),
            || {
                let out = node.cli(&["get", "ds", "agent", "-o", "json"]);
                let ds: Value =
                    serde_json::from_slice(&out.stdout).map_err(|e| format!("{e}: {}", stderr(&out)))?;
                let image = ds["spec"]["template"]["spec"]["containers"][0]["image"].clone();
                if image == "agent:2" {
                    Ok(())
                } else {
                    Err(format!("image {image}"))
                }
            },
        );
    }
    let out = cluster.nodes[4].cli(&["describe", "ds", "agent"]);
    let text = stdout(&out);
    assert!(
        text.contains("deploy agent:2") && text.contains("deploy agent:1"),
        "{text}"
    );
    assert!(text.contains("runs here"), "{text}");
    assert!(
        text.contains("TemplateChanged") && text.contains("new revision 2 (agent:2)"),
        "{text}"
    );

    // Invalid input is refused whole: nothing stored.
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        format!("{}---\napiVersion: apps/v1\nkind: DaemonSet\nmetadata: {{name: broken}}\nspec: {{templat: {{}}}}\n", std::fs::read_to_string(manifest(&dir, "other", "other:1")).unwrap()),
    )
    .unwrap();
    let out = cluster.nodes[2].cli(&["apply", "-f", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("templat"), "{}", stderr(&out));
    assert_eq!(ds_names(&cluster.nodes[2]).unwrap(), vec!["agent"]);

    // Node overrides act on placement.
    let target = cluster.nodes[3].name.clone();
    let out = cluster.nodes[0].cli(&["taint", "node", &target, "dedicated=db:NoSchedule"]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_until("describe to show the taint", Duration::from_secs(20), || {
        let text = stdout(&cluster.nodes[0].cli(&["describe", "ds", "agent"]));
        if text.contains("dedicated=db:NoSchedule") {
            Ok(())
        } else {
            Err(text)
        }
    });
    let out = cluster.nodes[0].cli(&["taint", "node", &target, "dedicated:NoSchedule-"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // The leader dies: a new one is elected and takes writes.
    let leader_idx = cluster.nodes.iter().position(|n| n.name == leader).unwrap();
    cluster.nodes[leader_idx].kill();
    let other = cluster.nodes.iter().find(|n| n.is_running()).unwrap();
    let v3 = manifest(&dir, "agent", "agent:3");
    wait_until("a write after the leader died", Duration::from_secs(30), || {
        let out = other.cli(&["apply", "-f", v3.to_str().unwrap()]);
        if out.status.success() {
            Ok(())
        } else {
            Err(stderr(&out))
        }
    });

    let out = cluster.nodes[(leader_idx + 1) % 5].cli(&["delete", "ds", "agent"]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for_ds(&cluster, &[]);
}

#[test]
fn a_minority_refuses_writes_but_serves_reads_and_a_restart_keeps_the_store() {
    let _machine = crate::support::shared_machine();
    let mut cluster = Cluster::start_seeded(5, 3, &["--voters", "5"]);
    wait_for_cluster(&cluster, 5);
    let dir = cluster.root.path().to_path_buf();
    let v1 = manifest(&dir, "agent", "agent:1");
    let out = cluster.nodes[0].cli(&["apply", "-f", v1.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for_ds(&cluster, &["agent"]);

    // 3 of 5 nodes die: the 2 left are a minority; they refuse writes and still answer reads.
    for i in [0, 2, 4] {
        cluster.nodes[i].kill();
    }
    // A user sees the dead in `members` first; the refusal then names the missing majority.
    for i in [1, 3] {
        wait_until(
            &format!("{} to see 3 nodes gone", cluster.nodes[i].name),
            Duration::from_secs(30),
            || {
                let members = cluster.nodes[i].members()?;
                let alive = members.iter().filter(|m| m["state"] == "alive").count();
                if alive == 2 {
                    Ok(())
                } else {
                    Err(format!("{alive} alive: {members:?}"))
                }
            },
        );
    }
    let v2 = manifest(&dir, "agent", "agent:2");
    for i in [1, 3] {
        let out = cluster.nodes[i].cli(&["apply", "-f", v2.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
        let err = stderr(&out);
        assert!(
            err.contains("2 of 5 voters reachable") && err.contains("nothing was changed"),
            "{err}"
        );
        assert_eq!(
            ds_names(&cluster.nodes[i]).unwrap(),
            vec!["agent"],
            "reads still work"
        );
    }

    // Everyone restarts: the store is intact and writes work again.
    for i in [1, 3] {
        cluster.nodes[i].kill();
    }
    for node in &mut cluster.nodes {
        node.start();
    }
    wait_for_cluster(&cluster, 5);
    wait_for_ds(&cluster, &["agent"]);
    wait_until("a write after the restart", Duration::from_secs(30), || {
        let out = cluster.nodes[2].cli(&["apply", "-f", v2.to_str().unwrap()]);
        if out.status.success() {
            Ok(stdout(&out))
        } else {
            Err(stderr(&out))
        }
    });
}

fn cluster_view(node: &Node) -> Result<Value, String> {
    let out = node.cli(&["cluster", "-o", "json"]);
    if !out.status.success() {
        return Err(stderr(&out));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

#[test]
fn a_dead_voter_is_replaced_after_the_grace_period_and_a_wiped_node_rejoins() {
    let _machine = crate::support::shared_machine();
    let mut cluster = Cluster::start_seeded(4, 1, &["--dead-voter-grace", "2"]);
    let leader = wait_for_cluster(&cluster, 3);
    let view = cluster_view(&cluster.nodes[0]).unwrap();
    assert_eq!(view["leader"], leader.as_str());
    assert_eq!(view["voters"].as_array().unwrap().len(), 3);
    assert!(view["term"].as_u64().unwrap() >= 1, "{view}");

    let victim = view["voters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .find(|v| *v != leader)
        .unwrap();
    let idx = cluster.nodes.iter().position(|n| n.name == victim).unwrap();
    cluster.nodes[idx].kill();
    let survivor = cluster.nodes.iter().find(|n| n.is_running()).unwrap();
    wait_until(
        &format!("{victim} to be replaced as a voter"),
        Duration::from_secs(40),
        || {
            let view = cluster_view(survivor)?;
            let voters: Vec<&str> = view["voters"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            if voters.len() == 3 && !voters.contains(&victim.as_str()) {
                Ok(())
            } else {
                Err(format!("voters {voters:?}"))
            }
        },
    );

    // The replaced node comes back with a wiped data dir: a new member identity, same name.
    cluster.nodes[idx].kill_instances();
    std::fs::remove_dir_all(&cluster.nodes[idx].data_dir).unwrap();
    cluster.nodes[idx].start();
    let node = &cluster.nodes[idx];
    wait_until(&format!("{victim} to rejoin"), Duration::from_secs(30), || {
        let members = node.members()?;
        let alive = members.iter().filter(|m| m["state"] == "alive").count();
        let me: Vec<&Value> = members.iter().filter(|m| m["name"] == victim.as_str()).collect();
        let view = cluster_view(node)?;
        if alive == 4
            && me.len() == 1
            && view["leader"].is_string()
            && view["voters"].as_array().unwrap().len() == 3
        {
            Ok(())
        } else {
            Err(format!("alive {alive}, entries {}, view {view}", me.len()))
        }
    });
    let file = manifest(cluster.root.path(), "after", "after:1");
    let out = node.cli(&["apply", "-f", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// A wiped host used to come back at its old address before its old seat was replaced and
/// answer the Raft messages meant for that seat with its new, empty log: the leader saw a
/// member's log shrink and its Raft core stopped for good (found by fault scenario 7).
#[test]
fn a_wiped_node_back_at_its_address_is_not_taken_for_the_member_it_replaced() {
    let _machine = crate::support::shared_machine();
    let mut cluster = Cluster::start_seeded(3, 1, &["--dead-voter-grace", "3"]);
    let leader = wait_for_cluster(&cluster, 3);
    let dir = cluster.root.path().to_path_buf();
    let v1 = manifest(&dir, "agent", "agent:1");
    let out = cluster.nodes[0].cli(&["apply", "-f", v1.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for_ds(&cluster, &["agent"]);

    // A follower's host is re-imaged and back at once, well within the dead-voter grace.
    let idx = cluster.nodes.iter().position(|n| n.name != leader).unwrap();
    cluster.nodes[idx].kill();
    cluster.nodes[idx].kill_instances();
    std::fs::remove_dir_all(&cluster.nodes[idx].data_dir).unwrap();
    cluster.nodes[idx].start();

    // Every node keeps taking writes, the new member gets the store, and takes the old seat.
    for (k, i) in [0, 1, 2, 0].into_iter().enumerate() {
        let file = manifest(&dir, "agent", &format!("agent:{}", k + 2));
        wait_until("a write after the wipe", Duration::from_secs(30), || {
            let out = cluster.nodes[i].cli(&["apply", "-f", file.to_str().unwrap()]);
            if out.status.success() {
                Ok(())
            } else {
                Err(stderr(&out))
            }
        });
    }
    wait_for_cluster(&cluster, 3);
    wait_for_ds(&cluster, &["agent"]);
    for node in &cluster.nodes {
        let log = std::fs::read_to_string(&node.log).unwrap();
        assert!(
            !log.contains("panicked"),
            "{} panicked:\n{}",
            node.name,
            log.lines()
                .filter(|l| l.contains("panicked"))
                .take(3)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

#[test]
fn a_group_formed_anew_on_wiped_voters_wins_over_the_older_copy_non_voters_hold() {
    let _machine = crate::support::shared_machine();
    let mut cluster = Cluster::start_seeded(5, 1, &[]);
    wait_for_cluster(&cluster, 3);
    let dir = cluster.root.path().to_path_buf();
    // The old group's store goes well past the version the new group will start from (rollout
    // waves add writes of their own).
    for k in 1..=12 {
        let file = manifest(&dir, "agent", &format!("agent:{k}"));
        let out = cluster.nodes[0].cli(&["apply", "-f", file.to_str().unwrap()]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let view = cluster_view(&cluster.nodes[0]).unwrap();
    let old_epoch = view["store_epoch"].as_str().unwrap().to_string();
    let old_version = view["store_version"].as_u64().unwrap();
    assert!(!old_epoch.is_empty() && old_version >= 12, "{view}");
    let voters: Vec<String> = view["voters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let (voter_idx, others): (Vec<usize>, Vec<usize>) =
        (0..cluster.nodes.len()).partition(|i| voters.contains(&cluster.nodes[*i].name));
    for &i in &others {
        wait_until(
            &format!("{} to hold the old copy", cluster.nodes[i].name),
            Duration::from_secs(20),
            || {
                let v = cluster_view(&cluster.nodes[i])?;
                (v["store_version"].as_u64() >= Some(old_version) && v["store_epoch"] == old_epoch.as_str())
                    .then_some(())
                    .ok_or(format!("{v}"))
            },
        );
    }

    // Every voter loses its data at once; the non-voters stay up with the old copy.
    for &i in &voter_idx {
        cluster.nodes[i].kill_instances();
        cluster.nodes[i].kill();
        std::fs::remove_dir_all(&cluster.nodes[i].data_dir).unwrap();
    }
    for &i in &voter_idx {
        cluster.nodes[i].start();
    }
    let former = &cluster.nodes[voter_idx[0]];
    let new_epoch = wait_until("a group formed anew", Duration::from_secs(60), || {
        let v = cluster_view(former)?;
        match v["store_epoch"].as_str() {
            Some(e) if !e.is_empty() && e != old_epoch && v["leader"].is_string() => Ok(e.to_string()),
            _ => Err(format!("{v}")),
        }
    });
    let file = manifest(&dir, "fresh", "fresh:1");
    wait_until("a write in the new group", Duration::from_secs(30), || {
        let out = former.cli(&["apply", "-f", file.to_str().unwrap()]);
        out.status.success().then_some(()).ok_or_else(|| stderr(&out))
    });
    let new_version = cluster_view(former).unwrap()["store_version"].as_u64().unwrap();
    assert!(
        new_version < old_version,
        "the new group counts from 1 again: {new_version}"
    );
    // Before epochs, the non-voters kept serving their higher-numbered copy for good.
    for &i in &others {
        let node = &cluster.nodes[i];
        wait_until(
            &format!("{} to take the new group's copy", node.name),
            Duration::from_secs(30),
            || {
                let v = cluster_view(node)?;
                let out = node.cli(&["get", "ds", "fresh"]);
                if v["store_epoch"] == new_epoch.as_str() && out.status.success() {
                    Ok(())
                } else {
                    Err(format!("{v} / {}", stderr(&out)))
                }
            },
        );
    }
}
