//! End to end with the process runtime: real agents converge every node to one instance per DaemonSet, recreate killed ones, adopt across agent restarts and remove deleted ones.

use crate::support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use support::manifest::Manifest;
use support::{wait_until, Cluster, Node};

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

fn manifest(dir: &Path, name: &str, out_dir: &Path) -> PathBuf {
    let script = format!(
        "echo hello from $NODE_NAME; echo $NODE_NAME > {}/$NODE_NAME.txt; exec sleep 3600",
        out_dir.display()
    );
    Manifest::new(name)
        .grace(2)
        .script(&script)
        .node_name_env("NODE_NAME")
        .write(dir, &format!("{name}.yaml"))
}

fn pods(node: &Node) -> Result<Vec<Value>, String> {
    let out = node.cli(&["get", "pods", "-o", "json"]);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

/// Waits until `node` sees every one of `names` Running and ready for DaemonSet `ds`.
fn wait_running(node: &Node, ds: &str, names: &[&str]) -> Vec<Value> {
    wait_until(
        &format!("{ds} Running on {names:?}"),
        Duration::from_secs(40),
        || {
            let pods: Vec<Value> = pods(node)?.into_iter().filter(|p| p["daemonset"] == ds).collect();
            let running: Vec<&str> = pods
                .iter()
                .filter(|p| p["state"] == "Running" && p["ready"] == true)
                .map(|p| p["node"].as_str().unwrap_or(""))
                .collect();
            if names.iter().all(|n| running.contains(n)) && pods.len() == names.len() {
                Ok(pods.clone())
            } else {
                Err(format!("pods: {pods:?}"))
            }
        },
    )
}

#[test]
fn process_runtime_converges_recreates_adopts_and_removes() {
    let _machine = crate::support::shared_machine();
    let mut cluster = Cluster::start_seeded(3, 1, &[]);
    let out_dir = cluster.root.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let file = manifest(cluster.root.path(), "echo", &out_dir);

    crate::support::rollout::apply(&cluster.nodes[0], &file);
    let names = ["node-0", "node-1", "node-2"];
    wait_running(&cluster.nodes[1], "echo", &names);
    for n in names {
        let text = wait_until(&format!("{n} wrote its name"), Duration::from_secs(10), || {
            std::fs::read_to_string(out_dir.join(format!("{n}.txt"))).map_err(|e| e.to_string())
        });
        assert_eq!(text.trim(), n, "the env holds the node name");
    }
    for node in &cluster.nodes {
        assert_eq!(node.instances().len(), 1, "{}: exactly one instance", node.name);
    }
    // Logs of node-2's instance, read through node-0's API.
    let out = cluster.nodes[0].cli(&["logs", "echo", "--node", "node-2", "--tail", "5"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "hello from node-2");
    // node-2 learns the statuses by gossip: its row catches up with node-1's view.
    wait_until("node-2 counts 3 everywhere", Duration::from_secs(10), || {
        let row = ds_row(&cluster.nodes[2], "echo")?;
        (row.len() >= 6 && row[..6] == ["echo", "3", "3", "3", "3", "3"])
            .then_some(())
            .ok_or(format!("{row:?}"))
    });

    // A process killed by hand is recreated, counted as a restart.
    let (old_id, pid) = cluster.nodes[0].instances().into_iter().next().unwrap();
    // SAFETY: killing the instance's process group.
    unsafe { libc::kill(-pid, libc::SIGKILL) };
    wait_until("the killed instance is replaced", Duration::from_secs(20), || {
        let now = cluster.nodes[0].instances();
        let fresh = now
            .iter()
            .filter(|(id, pid)| **id != old_id && alive(**pid))
            .count();
        if fresh == 1 && now.len() == 1 {
            Ok(())
        } else {
            Err(format!("{now:?}"))
        }
    });
    wait_until("restart counted", Duration::from_secs(20), || {
        let p = pods(&cluster.nodes[0])?;
        let mine = p.iter().find(|p| p["node"] == "node-0").ok_or("no pod")?;
        if mine["restarts"] == 1 && mine["state"] == "Running" {
            Ok(())
        } else {
            Err(format!("{mine}"))
        }
    });

    // The restart count outlives the agent: a new generation of node-0 still reports it.
    let generation = |node: &Node| -> Result<(u64, Value), String> {
        let members = node.members()?;
        let m = members
            .iter()
            .find(|m| m["name"] == "node-0")
            .ok_or("node-0 not listed")?;
        Ok((m["generation"].as_u64().unwrap_or(0), m["pods"]["echo"].clone()))
    };
    let (old_generation, _) = generation(&cluster.nodes[1]).unwrap();
    cluster.nodes[0].stop();
    cluster.nodes[0].start();
    let status = wait_until(
        "node-0's new agent reports its instance",
        Duration::from_secs(30),
        || {
            let (g, status) = generation(&cluster.nodes[1])?;
            if g > old_generation && status["st"] == "Running" {
                Ok(status)
            } else {
                Err(format!("generation {g}: {status}"))
            }
        },
    );
    assert_eq!(
        status["rc"], 1,
        "the restart count survived the agent restart: {status}"
    );

    // An agent restart adopts its instance: same id, same process.
    let before = cluster.nodes[1].instances();
    cluster.nodes[1].stop();
    cluster.nodes[1].start();
    wait_running(&cluster.nodes[1], "echo", &names);
    let after = cluster.nodes[1].instances();
    assert_eq!(before, after, "the restarted agent kept its instance");
    assert!(after.values().all(|pid| alive(*pid)));

    // Drain stops node-0's instance and keeps it off; uncordon brings it back.
    let out = cluster.nodes[1].cli(&["drain", "node-0"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        cluster.nodes[0].instances().is_empty(),
        "drain waits until the instance is gone"
    );
    // node-2 serves its own copy of the store, which the drain reaches a moment later.
    wait_until(
        "a drained node is not desired (node-2's view)",
        Duration::from_secs(10),
        || {
            let row = ds_row(&cluster.nodes[2], "echo")?;
            (row.get(1).map(String::as_str) == Some("2"))
                .then_some(())
                .ok_or(format!("{row:?}"))
        },
    );
    let out = cluster.nodes[1].cli(&["uncordon", "node-0"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_running(&cluster.nodes[0], "echo", &names);

    // Delete removes every instance.
    let out = cluster.nodes[2].cli(&["delete", "ds", "echo"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_until("every instance removed", Duration::from_secs(30), || {
        let left: Vec<_> = cluster
            .nodes
            .iter()
            .map(Node::instances)
            .filter(|i| !i.is_empty())
            .collect();
        let pods = pods(&cluster.nodes[0])?;
        if left.is_empty() && pods.is_empty() {
            Ok(())
        } else {
            Err(format!("instances {left:?}, pods {pods:?}"))
        }
    });
}

/// `get ds NAME` as a table row: [name, desired, current, ready, up-to-date, available, ...].
fn ds_row(node: &Node, ds: &str) -> Result<Vec<String>, String> {
    let out = node.cli(&["get", "ds", ds]);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    Ok(table
        .lines()
        .nth(1)
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_string)
        .collect())
}

/// `logs --follow` of node-3's instance, through node-0: new lines keep arriving until the
/// command is killed (as Ctrl-C would).
fn follow_logs_through_another_node(cluster: &Cluster) {
    use std::io::BufRead;
    let path = Manifest::new("ticker")
        .script("i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done")
        .write(cluster.root.path(), "ticker.yaml");
    let out = cluster.nodes[0].cli(&["apply", "-f", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_running(
        &cluster.nodes[0],
        "ticker",
        &["node-0", "node-1", "node-2", "node-3"],
    );

    let mut follow = support::everynode()
        .args(["--server", &cluster.nodes[0].server()])
        .env("EVERYNODE_TOKEN", cluster.nodes[0].admin_token())
        .args(["logs", "ticker", "--node", "node-3", "--tail", "1", "--follow"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut ticks: Vec<u64> = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while ticks.len() < 6 && std::time::Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
            let n = line.strip_prefix("tick ").and_then(|n| n.parse().ok());
            ticks.push(n.unwrap_or_else(|| panic!("unexpected line {line:?}")));
        }
    }
    let _ = follow.kill();
    let status = follow.wait().unwrap();
    let _ = reader.join();
    assert!(
        ticks.len() >= 6,
        "follow printed {ticks:?} within 15 s (exit {status:?}: {})",
        {
            let mut err = String::new();
            let _ = std::io::Read::read_to_string(&mut follow.stderr.take().unwrap(), &mut err);
            err
        }
    );
    assert!(
        ticks.windows(2).all(|w| w[1] == w[0] + 1),
        "one tail line, then every new line in order: {ticks:?}"
    );
    let out = cluster.nodes[1].cli(&["delete", "ds", "ticker"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn cluster_view(node: &Node) -> Result<Value, String> {
    let out = node.cli(&["cluster", "-o", "json"]);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

fn member_state(node: &Node, name: &str) -> Result<String, String> {
    let members = node.members()?;
    let m = members
        .iter()
        .find(|m| m["name"] == name)
        .ok_or(format!("{name} not listed"))?;
    Ok(m["state"].as_str().unwrap_or("").to_string())
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

#[test]
fn leave_hands_over_the_seat_and_dead_nodes_stop_counting_then_are_removed() {
    let _machine = crate::support::shared_machine();
    let mut cluster = Cluster::start_seeded(4, 1, &["--dead-node-grace", "8"]);
    let out_dir = cluster.root.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let file = manifest(cluster.root.path(), "echo", &out_dir);
    wait_until("apply accepted", Duration::from_secs(60), || {
        let out = cluster.nodes[0].cli(&["apply", "-f", file.to_str().unwrap()]);
        out.status
            .success()
            .then_some(())
            .ok_or_else(|| String::from_utf8_lossy(&out.stderr).into_owned())
    });
    let all = ["node-0", "node-1", "node-2", "node-3"];
    wait_running(&cluster.nodes[0], "echo", &all);
    follow_logs_through_another_node(&cluster);
    let (leader, voters) = wait_until("three voters", Duration::from_secs(30), || {
        let v = cluster_view(&cluster.nodes[0])?;
        let voters = names(&v["voters"]);
        match v["leader"].as_str() {
            Some(l) if voters.len() == 3 => Ok((l.to_string(), voters)),
            _ => Err(format!("{v}")),
        }
    });

    // The leader itself leaves (the hardest seat to hand over; a plain voter was tested the
    // same way): its instance stops, its seat goes to the fourth node, another node leads.
    let leaving = voters.iter().find(|v| **v == leader).unwrap().clone();
    let li = all.iter().position(|n| *n == leaving).unwrap();
    let out = cluster.nodes[li].cli(&["leave"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&format!("node/{leaving} left the cluster")),
        "{said}"
    );
    let status = cluster.nodes[li].wait_exit(Duration::from_secs(15));
    assert!(
        status.is_some_and(|s| s.success()),
        "the agent exits 0 after leaving: {status:?}"
    );
    assert!(
        cluster.nodes[li].instances().is_empty(),
        "its instance was stopped"
    );
    let observer = if li == 0 { 1 } else { 0 };
    let stayed: Vec<&str> = all.iter().copied().filter(|n| *n != leaving).collect();
    wait_until("voters back to three without it", Duration::from_secs(30), || {
        let v = cluster_view(&cluster.nodes[observer])?;
        let now = names(&v["voters"]);
        if now.len() == 3 && !now.contains(&leaving) && !names(&v["learners"]).contains(&leaving) {
            Ok(())
        } else {
            Err(format!("{v}"))
        }
    });
    // "left" comes from the observer's copy of the store, which may trail the seat change.
    wait_until("the observer lists it as left", Duration::from_secs(10), || {
        let state = member_state(&cluster.nodes[observer], &leaving)?;
        (state == "left").then_some(()).ok_or(state)
    });
    let row = wait_until("desired drops to 3", Duration::from_secs(10), || {
        let row = ds_row(&cluster.nodes[observer], "echo")?;
        (row.get(1).map(String::as_str) == Some("3"))
            .then_some(row.clone())
            .ok_or(format!("{row:?}"))
    });
    assert_eq!(&row[1..6], ["3", "3", "3", "3", "3"], "{row:?}");

    // A running node cannot be removed: the message says what to do instead.
    let out = cluster.nodes[observer].cli(&["remove", "node", stayed[0]]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("everynode leave"), "{err}");

    // A node that dies counts as desired and unavailable for its grace, then for nothing.
    let current = cluster_view(&cluster.nodes[observer]).unwrap();
    let leader = current["leader"].as_str().unwrap().to_string();
    let victim = stayed
        .iter()
        .copied()
        .find(|n| *n != leader && all[observer] != *n)
        .unwrap();
    let vi = all.iter().position(|n| *n == victim).unwrap();
    cluster.nodes[vi].kill();
    wait_until("the killed node seen dead", Duration::from_secs(20), || {
        let state = member_state(&cluster.nodes[observer], victim)?;
        (state == "dead").then_some(()).ok_or(format!("{victim} {state}"))
    });
    // Within its 8 s grace, counted from when the observer saw it die.
    wait_until(
        "the dead node still desired, unavailable",
        Duration::from_secs(5),
        || {
            let state = member_state(&cluster.nodes[observer], victim)?;
            let row = ds_row(&cluster.nodes[observer], "echo")?;
            if state == "dead" && row.len() >= 6 && row[1] == "3" && row[5] == "2" {
                Ok(())
            } else {
                Err(format!("{victim} {state}: {row:?}"))
            }
        },
    );
    wait_until(
        "the dead node no longer desired after its grace",
        Duration::from_secs(20),
        || {
            let row = ds_row(&cluster.nodes[observer], "echo")?;
            (row[1] == "2" && row[5] == "2")
                .then_some(())
                .ok_or(format!("{row:?}"))
        },
    );
    cluster.nodes[vi].kill_instances();

    let out = cluster.nodes[observer].cli(&["remove", "node", victim]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("node/{victim} removed")
    );
    // `remove node` waited for the seat to go (the leader's next controller tick, two
    // membership steps), but the observer's store copy, which says "left" and drops the
    // node's pods, may trail that.
    wait_until(
        "the removed node left, without a seat or pods",
        Duration::from_secs(20),
        || {
            let state = member_state(&cluster.nodes[observer], victim)?;
            if state != "left" {
                return Err(format!("{victim} {state}"));
            }
            let v = cluster_view(&cluster.nodes[observer])?;
            if names(&v["voters"]).contains(&victim.to_string()) {
                return Err(format!("{v}"));
            }
            let listed = pods(&cluster.nodes[observer])?;
            if listed.iter().any(|p| p["node"] == victim) {
                return Err(format!(
                    "a removed node's last statuses are not listed as pods: {listed:?}"
                ));
            }
            Ok(())
        },
    );
}
