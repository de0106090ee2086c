//! End to end with the process runtime: init containers run in order before the app container, once per pod (not again after an agent restart, again after `delete pod`), and a failing one is retried with back-off as `get pods` shows.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::support::manifest::Manifest;
use crate::support::rollout::{apply, pods};
use crate::support::{self, wait_until, Cluster, Node};

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The one pod of `ds` as `get pods -o json` shows it.
fn pod(node: &Node, ds: &str) -> Result<Value, String> {
    let mut p = pods(node, ds)?;
    match p.len() {
        1 => Ok(p.remove(0)),
        n => Err(format!("{n} pods of {ds}: {p:?}")),
    }
}

/// The STATE column of `ds`'s row in the `get pods` table.
fn table_state(node: &Node, ds: &str) -> Result<String, String> {
    let out = node.cli(&["get", "pods"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let header: Vec<&str> = text
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let column = header
        .iter()
        .position(|h| *h == "STATE")
        .ok_or(format!("no STATE column: {text}"))?;
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|row| row.first() == Some(&ds))
        .and_then(|row| row.get(column).map(|s| s.to_string()))
        .ok_or(format!("no row for {ds}: {text}"))
}

fn wait_running(node: &Node, ds: &str) -> Value {
    wait_until(
        &format!("{ds} Running and ready"),
        Duration::from_secs(60),
        || {
            let p = pod(node, ds)?;
            (p["state"] == "Running" && p["ready"] == true)
                .then(|| p.clone())
                .ok_or(format!("{p}"))
        },
    )
}

/// This node's generation and its gossiped status of `ds`, as the node itself lists them.
fn generation(node: &Node, ds: &str) -> Result<(u64, Value), String> {
    let members = node.members()?;
    let m = members
        .iter()
        .find(|m| m["name"] == node.name.as_str())
        .ok_or(format!("{} not listed", node.name))?;
    Ok((m["generation"].as_u64().unwrap_or(0), m["pods"][ds].clone()))
}

#[test]
fn init_containers_run_in_order_before_the_app_once_per_pod() {
    let _machine = support::shared_machine();
    let mut cluster = Cluster::start(1);
    let out = cluster.root.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let d = out.display();
    // The process runtime has no volumes: the containers share a host directory instead.
    let file = Manifest::new("ordered")
        // It sleeps so that the table can be seen saying so while it runs.
        .init_script(
            "first",
            &format!("sleep 2; echo one > {d}/first; echo first >> {d}/order"),
        )
        .init_script(
            "second",
            &format!("test -f {d}/first || exit 1; echo two > {d}/second; echo second >> {d}/order"),
        )
        .script(&format!(
            "test -f {d}/first && test -f {d}/second || exit 1; cat {d}/first {d}/second; echo main >> {d}/order; exec sleep 3600"
        ))
        .write(cluster.root.path(), "ordered.yaml");
    let node = &cluster.nodes[0];
    apply(node, &file);
    wait_until("Init:0/2 in the table", Duration::from_secs(30), || {
        let state = table_state(node, "ordered")?;
        (state == "Init:0/2").then_some(()).ok_or(state)
    });
    let running = wait_running(node, "ordered");
    assert_eq!(running["restarts"], 0, "{running}");
    assert_eq!(read(&out.join("order")), "first\nsecond\nmain\n");
    let logs = node.cli(&["logs", "ordered", "--node", "node-0"]);
    assert!(logs.status.success(), "{}", String::from_utf8_lossy(&logs.stderr));
    assert_eq!(
        String::from_utf8_lossy(&logs.stdout).trim(),
        "one\ntwo",
        "the app container's output, not an init container's"
    );
    let before = node.instances();
    assert_eq!(
        before.len(),
        3,
        "the completed init instances are kept: {before:?}"
    );

    // A restarted agent adopts them as done: nothing runs again.
    let (old_generation, _) = generation(node, "ordered").unwrap();
    cluster.nodes[0].stop();
    cluster.nodes[0].start();
    let node = &cluster.nodes[0];
    wait_until(
        "the new agent reports the pod Running",
        Duration::from_secs(30),
        || {
            let (g, status) = generation(node, "ordered")?;
            (g > old_generation && status["st"] == "Running")
                .then_some(())
                .ok_or(format!("generation {g}: {status}"))
        },
    );
    assert_eq!(node.instances(), before, "the same instances, none created");
    assert_eq!(read(&out.join("order")), "first\nsecond\nmain\n");

    // `delete pod` is a new pod: its init containers run again, in order.
    let deleted = node.cli(&["delete", "pod", "ordered", "--node", "node-0"]);
    assert!(
        deleted.status.success(),
        "{}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    wait_until("the init containers ran again", Duration::from_secs(60), || {
        let order = read(&out.join("order"));
        (order == "first\nsecond\nmain\nfirst\nsecond\nmain\n")
            .then_some(())
            .ok_or(order)
    });
    wait_running(node, "ordered");
    wait_until("the old pod's instances removed", Duration::from_secs(30), || {
        let now = node.instances();
        (now.len() == 3 && now.keys().all(|id| !before.contains_key(id)))
            .then_some(())
            .ok_or(format!("{now:?}"))
    });
}

#[test]
fn a_failing_init_container_is_retried_with_back_off_before_the_app_starts() {
    let _machine = support::shared_machine();
    let cluster = Cluster::start(1);
    let out = cluster.root.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let d = out.display();
    // Counts its attempts in a file and succeeds at the third.
    let flaky = format!(
        "n=$(cat {d}/attempts 2>/dev/null || echo 0); n=$((n+1)); echo $n > {d}/attempts; test $n -ge 3"
    );
    let file = Manifest::new("flaky")
        .init_script("flaky", &flaky)
        .script(&format!("cp {d}/attempts {d}/app-saw; exec sleep 3600"))
        .write(cluster.root.path(), "flaky.yaml");
    let node = &cluster.nodes[0];
    apply(node, &file);
    let mut seen = BTreeSet::new();
    let running = wait_until(
        "Running after two failed attempts",
        Duration::from_secs(60),
        || {
            seen.insert(table_state(node, "flaky")?);
            let p = pod(node, "flaky")?;
            seen.insert(p["state"].as_str().unwrap_or_default().to_string());
            (p["state"] == "Running" && p["ready"] == true)
                .then(|| p.clone())
                .ok_or(format!("{p}"))
        },
    );
    assert!(
        seen.contains("Init:Error") || seen.contains("Init:CrashLoopBackOff"),
        "the failures showed in get pods: {seen:?}"
    );
    assert!(
        !seen.contains("CrashLoopBackOff"),
        "the app container never crashed: {seen:?}"
    );
    assert_eq!(read(&out.join("attempts")).trim(), "3");
    assert_eq!(
        read(&out.join("app-saw")).trim(),
        "3",
        "the app started only after the successful attempt"
    );
    assert_eq!(running["restarts"], 2, "both retries counted: {running}");
}
