//! Bad input to the binary: a one-line error naming the flag, file, line or address, exit code 2, nothing started.

use crate::support;

use std::net::{TcpListener, UdpSocket};
use std::process::Output;
use std::time::Duration;

use support::{everynode, free_port, wait_until, Node};

fn agent(args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let gossip = format!("127.0.0.1:{}", free_port());
    let api = format!("127.0.0.1:{}", free_port());
    let mut cmd = everynode();
    cmd.args(["agent", "--data-dir"]).arg(dir.path());
    if !args.contains(&"--runtime") {
        cmd.args(["--runtime", "process"]);
    }
    if !args.contains(&"--gossip-addr") {
        cmd.args(["--gossip-addr", &gossip]);
    }
    if !args.contains(&"--api-addr") {
        cmd.args(["--api-addr", &api]);
    }
    // A valid agent would run forever; bad input must make it exit at once.
    let mut child = cmd
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("agent {args:?} did not exit on bad input");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn assert_bad_input(out: &Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "expected exit 2, got {:?}; stderr:\n{stderr}",
        out.status
    );
    let first = stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("error:"),
        "first line should be the error: {stderr}"
    );
    for needle in needles {
        assert!(
            first.contains(needle),
            "error line should mention `{needle}`: {first}"
        );
    }
}

#[test]
fn malformed_flags_are_refused_with_exit_code_2() {
    let _machine = crate::support::shared_machine();
    let cases: &[(&[&str], &[&str])] = &[
        (&["--bogus"], &["--bogus"]),
        (&["--taint", "x:Sometimes"], &["--taint", "Sometimes"]),
        (&["--taint", "novalue"], &["--taint", "KEY[=VALUE]:EFFECT"]),
        (&["--label", "bad key=v"], &["--label", "bad key"]),
        (&["--label", "novalue"], &["--label", "KEY=VALUE"]),
        (&["--gossip-addr", "nonsense"], &["--gossip-addr", "nonsense"]),
        (&["--api-addr", "1.2.3.4"], &["--api-addr", "1.2.3.4"]),
        (&["--seed", "10.0.0.1"], &["--seed", "HOST:PORT"]),
        (&["--advertise-addr", "a b"], &["--advertise-addr"]),
        (&["--runtime", "podman"], &["--runtime", "podman"]),
        (&["--node-id", "Not Valid!"], &["--node-id"]),
    ];
    for (args, needles) in cases {
        assert_bad_input(&agent(args), needles);
    }
}

#[test]
fn environment_variables_are_validated_like_flags() {
    let _machine = crate::support::shared_machine();
    let dir = tempfile::tempdir().unwrap();
    let out = everynode()
        .args(["agent", "--data-dir"])
        .arg(dir.path())
        .env("EVERYNODE_TAINTS", "x:Sometimes")
        .output()
        .unwrap();
    assert_bad_input(&out, &["--taint", "Sometimes"]);
}

#[test]
fn config_file_problems_name_the_file_and_line() {
    let _machine = crate::support::shared_machine();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.toml");
    std::fs::write(
        &path,
        "node_id = \"a\"\nseeds = [\"10.0.0.1:9494\"]\ngosip_addr = \"127.0.0.1:1\"\n",
    )
    .unwrap();
    let p = path.to_str().unwrap();
    assert_bad_input(&agent(&["--config", p]), &[p, "line 3", "gosip_addr"]);

    std::fs::write(&path, "taints = [\"ok:NoSchedule\", \"x:Sometimes\"]\n").unwrap();
    assert_bad_input(&agent(&["--config", p]), &[p, "line 1", "Sometimes"]);

    std::fs::write(&path, "node_id = \n").unwrap();
    assert_bad_input(&agent(&["--config", p]), &[p, "line 1"]);

    let missing = dir.path().join("missing.toml");
    assert_bad_input(
        &agent(&["--config", missing.to_str().unwrap()]),
        &["missing.toml", "cannot read"],
    );
}

#[test]
fn ports_in_use_are_refused() {
    let _machine = crate::support::shared_machine();
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let api = tcp.local_addr().unwrap().to_string();
    assert_bad_input(&agent(&["--api-addr", &api]), &[&api, "--api-addr"]);

    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let gossip = udp.local_addr().unwrap().to_string();
    assert_bad_input(&agent(&["--gossip-addr", &gossip]), &[&gossip, "--gossip-addr"]);
}

#[test]
fn cli_without_a_server_says_where_it_looked() {
    let _machine = crate::support::shared_machine();
    let port = free_port();
    let out = everynode()
        .args(["members", "--server", &format!("http://127.0.0.1:{port}")])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    assert!(
        stderr.contains("--server") && stderr.contains("EVERYNODE_SERVER"),
        "{stderr}"
    );

    // The global option is also read from the environment, before or after the subcommand.
    let out = everynode()
        .args(["get", "nodes"])
        .env("EVERYNODE_SERVER", format!("127.0.0.1:{port}"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("127.0.0.1:{port}")));
}

#[test]
fn flags_win_over_environment_which_wins_over_the_file() {
    let _machine = crate::support::shared_machine();
    let root = tempfile::tempdir().unwrap();
    let config = root.path().join("node.toml");
    std::fs::write(
        &config,
        "node_id = \"from-file\"\nlabels = { source = \"file\" }\n",
    )
    .unwrap();
    let mut node = Node::new(
        root.path(),
        "prec",
        vec!["--config".into(), config.to_str().unwrap().into()],
    );

    let name_of = |node: &Node| {
        wait_until("the node to answer", Duration::from_secs(10), || {
            let members = node.members()?;
            Ok::<_, String>((
                members[0]["name"].as_str().unwrap().to_string(),
                members[0]["labels"]["source"].clone(),
            ))
        })
    };
    node.start_with(false);
    assert_eq!(name_of(&node), ("from-file".to_string(), "file".into()));
    node.stop();

    // The data dir now remembers from-file; an explicit setting still wins over it.
    node.extra_args.extend(["--label".into(), "source=flag".into()]);
    node.envs.push(("EVERYNODE_NODE_ID".into(), "from-env".into()));
    node.start_with(false);
    assert_eq!(name_of(&node), ("from-env".to_string(), "flag".into()));
    node.stop();

    // A flag wins over the environment.
    node.start_with(true);
    assert_eq!(name_of(&node).0, "prec");
    node.stop();
}

#[test]
fn a_data_dir_in_use_is_refused() {
    let _machine = crate::support::shared_machine();
    let root = tempfile::tempdir().unwrap();
    let mut node = Node::new(root.path(), "owner", vec![]);
    node.start();
    wait_until("the node to answer", Duration::from_secs(10), || node.members());
    let out = everynode()
        .args(["agent", "--runtime", "process", "--data-dir"])
        .arg(&node.data_dir)
        .args(["--gossip-addr", &format!("127.0.0.1:{}", free_port())])
        .args(["--api-addr", &format!("127.0.0.1:{}", free_port())])
        .output()
        .unwrap();
    assert_bad_input(&out, &["in use", "--data-dir"]);
}
