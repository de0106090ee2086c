//! End to end with the process runtime: real agents converge every node to one instance per DaemonSet, recreate killed ones, adopt across agent restarts and remove deleted ones.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use support::{wait_until, Cluster, Node};

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

fn manifest(dir: &Path, name: &str, out_dir: &Path) -> PathBuf {
    let path = dir.join(format!("{name}.yaml"));
    let yaml = format!(
        "apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: {name}
spec:
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: main
        image: busybox:1
        command: [sh, -c, 'echo hello from $NODE_NAME; echo $NODE_NAME > {out}/$NODE_NAME.txt; exec sleep 3600']
        env:
        - name: NODE_NAME
          valueFrom:
            fieldRef: {{fieldPath: spec.nodeName}}
",
        out = out_dir.display()
    );
    std::fs::write(&path, yaml).unwrap();
    path
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
    let mut cluster = Cluster::start_seeded(3, 1, &[]);
    let out_dir = cluster.root.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let file = manifest(cluster.root.path(), "echo", &out_dir);

    wait_until("apply accepted", Duration::from_secs(60), || {
        let out = cluster.nodes[0].cli(&["apply", "-f", file.to_str().unwrap()]);
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    });
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
    let ds_table = String::from_utf8_lossy(&cluster.nodes[2].cli(&["get", "ds"]).stdout).into_owned();
    let row: Vec<&str> = ds_table.lines().nth(1).unwrap_or("").split_whitespace().collect();
    assert_eq!(&row[..6], ["echo", "3", "3", "3", "3", "3"], "{ds_table}");

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
    let ds_table = String::from_utf8_lossy(&cluster.nodes[2].cli(&["get", "ds"]).stdout).into_owned();
    let row: Vec<&str> = ds_table.lines().nth(1).unwrap_or("").split_whitespace().collect();
    assert_eq!(row[1], "2", "a drained node is not desired: {ds_table}");
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
