//! Bad actors against real agents: no token, a wrong token, a read-only token writing, forged and replayed node requests, oversized and malicious manifests, a node with another secret, bad secret files; then the cluster is shown unchanged. Also the node-local policy and TLS.

use crate::support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use everynode::security::node_auth::{NodeAuth, REQUEST_HEADER};
use everynode::security::secret::ClusterSecret;
use serde_json::Value;
use support::{everynode, free_port, wait_until, Cluster, Node};

const SETTLE: Duration = Duration::from_secs(30);

/// One HTTP request with optional bearer token and extra header: (status, body).
fn http(
    method: &str,
    url: &str,
    token: Option<&str>,
    header: Option<(&str, String)>,
    body: Option<Vec<u8>>,
) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut req = reqwest::Client::new().request(method.parse().unwrap(), url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some((k, v)) = header {
            req = req.header(k, v);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let resp = req.send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    })
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(out: &Output) -> Value {
    assert!(out.status.success(), "{}", stderr(out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Waits for `n` alive members and a leader, as `node` sees them.
fn wait_formed(node: &Node, n: usize) {
    wait_until("the cluster to form", SETTLE, || {
        let members = node.members()?;
        let alive = members.iter().filter(|m| m["state"] == "alive").count();
        let leader = members.iter().any(|m| m["role"] == "leader");
        if alive == n && leader {
            Ok(())
        } else {
            Err(format!("{alive} alive, leader: {leader}"))
        }
    });
}

/// The store version and DaemonSet names a node serves: what must not change.
fn snapshot(node: &Node) -> (u64, Vec<String>) {
    let cluster = json(&node.cli(&["cluster", "-o", "json"]));
    let ds = json(&node.cli(&["get", "ds", "-o", "json"]));
    let names = ds["items"]
        .as_array()
        .expect("a List of DaemonSets")
        .iter()
        .map(|d| d["metadata"]["name"].as_str().unwrap_or_default().to_string())
        .collect();
    (cluster["store_version"].as_u64().unwrap(), names)
}

fn write_manifest(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

const PRIVILEGED: &str = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: priv}
spec:
  selector: {matchLabels: {app: priv}}
  template:
    metadata: {labels: {app: priv}}
    spec:
      containers:
      - name: priv
        image: busybox
        command: [sleep, "3600"]
        securityContext: {privileged: true}
"#;

#[test]
fn bad_actors_are_refused_and_change_nothing() {
    let _machine = crate::support::shared_machine();
    // node-1's owner refuses privileged containers; node-0's does not.
    let cluster = Cluster::start_seeded_with(2, 1, |i| {
        if i == 1 {
            vec![
                "--deny-privileged".into(),
                "--allowed-host-paths".into(),
                "/var/log".into(),
            ]
        } else {
            vec![]
        }
    });
    let (n0, n1) = (&cluster.nodes[0], &cluster.nodes[1]);
    wait_formed(n0, 2);
    let dir = cluster.root.path();
    let manifest = write_manifest(dir, "priv.yaml", PRIVILEGED);
    let out = n0.cli(&["apply", "-f", &manifest]);
    assert!(out.status.success(), "{}", stderr(&out));

    // The policy: refused on node-1 with the reason, running on node-0.
    wait_until("priv to run on node-0 and be refused on node-1", SETTLE, || {
        let pods = json(&n1.cli(&["get", "pods", "-o", "json"]));
        let state = |node: &str| {
            pods.as_array()
                .unwrap()
                .iter()
                .find(|p| p["node"] == node && p["daemonset"] == "priv")
                .map(|p| {
                    (
                        p["state"].as_str().unwrap_or("").to_string(),
                        p["last_error"].clone(),
                    )
                })
        };
        match (state("node-0"), state("node-1")) {
            (Some((s0, _)), Some((s1, err))) if s0 == "Running" && s1 == "PolicyDenied" => {
                let err = err.as_str().unwrap_or_default().to_string();
                assert!(err.contains("--deny-privileged") && err.contains("priv"), "{err}");
                Ok(())
            }
            other => Err(format!("{other:?}")),
        }
    });
    // node-0 hears of node-1's refusal by gossip, after node-1 itself lists it.
    wait_until("node-0 lists the refusal", SETTLE, || {
        let out = n0.cli(&["get", "pods"]);
        let table = String::from_utf8_lossy(&out.stdout).into_owned();
        table
            .contains("PolicyDenied")
            .then_some(())
            .ok_or(format!("{table}{}", stderr(&out)))
    });

    // A host path the policy refuses is not even created: the policy goes before the volumes.
    let never = dir.join("never-made");
    let host_path = format!(
        "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {{name: hostdir}}\nspec:\n  selector: {{matchLabels: {{app: hostdir}}}}\n  template:\n    metadata: {{labels: {{app: hostdir}}}}\n    spec:\n      nodeName: node-1\n      containers:\n      - {{name: h, image: busybox, command: [sleep, '3600'], volumeMounts: [{{name: d, mountPath: /d}}]}}\n      volumes: [{{name: d, hostPath: {{path: {}, type: DirectoryOrCreate}}}}]\n",
        never.display()
    );
    let manifest = write_manifest(dir, "hostdir.yaml", &host_path);
    let out = n0.cli(&["apply", "-f", &manifest]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_until("hostdir refused on node-1", SETTLE, || {
        let pods = json(&n1.cli(&["get", "pods", "-o", "json"]));
        let p = pods
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["daemonset"] == "hostdir")
            .cloned();
        match p {
            Some(p) if p["state"] == "PolicyDenied" => Ok(p),
            other => Err(format!("{other:?}")),
        }
    });
    assert!(
        !never.exists(),
        "a refused DirectoryOrCreate host path was created"
    );
    let out = n0.cli(&["delete", "ds", "hostdir"]);
    assert!(out.status.success(), "{}", stderr(&out));

    let before = snapshot(n0);
    let url = |path: &str| format!("{}{path}", n0.server());
    let admin = n0.admin_token();
    let readonly = std::fs::read_to_string(n0.data_dir.join("readonly-token")).unwrap();
    let readonly = readonly.trim();

    // No token, wrong token: 401 with the reason; health stays open.
    let (code, body) = http("GET", &url("/v1/daemonsets"), None, None, None);
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("no API token"), "{body}");
    let (code, body) = http("GET", &url("/metrics"), Some("wrong"), None, None);
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("wrong API token"), "{body}");
    assert_eq!(http("GET", &url("/healthz"), None, None, None).0, 200);

    // The CLI says what was wrong, where it looked, and what to do.
    let empty = tempfile::tempdir().unwrap();
    let out = everynode()
        .args(["--server", &n0.server(), "--data-dir"])
        .arg(empty.path())
        .args(["get", "ds"])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("needs a token") && err.contains("admin-token") && err.contains("--token"),
        "{err}"
    );
    let out = everynode()
        .args([
            "--server",
            &n0.server(),
            "--token",
            "wrong",
            "apply",
            "-f",
            &manifest,
        ])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(
        err.contains("refused the token from --token") && err.contains("wrong API token"),
        "{err}"
    );

    // A read-only token reads but cannot write.
    let out = everynode()
        .args(["--server", &n0.server(), "--token", readonly, "get", "ds"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = everynode()
        .args([
            "--server",
            &n0.server(),
            "--token",
            readonly,
            "delete",
            "ds",
            "priv",
        ])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(!out.status.success() && err.contains("read-only"), "{err}");
    let (code, _) = http(
        "POST",
        &url("/v1/apply"),
        Some(readonly),
        None,
        Some(b"{\"objects\":[]}".to_vec()),
    );
    assert_eq!(code, 403);

    // Node-to-node routes: the admin token is not enough, a stranger's signature neither, and
    // a genuine signature works once.
    let write = serde_json::to_vec(&serde_json::json!({"command": {"Delete": {"name": "priv"}}})).unwrap();
    let (code, body) = http(
        "POST",
        &url("/v1/internal/write"),
        Some(&admin),
        None,
        Some(write.clone()),
    );
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("no node signature"), "{body}");
    let stranger = NodeAuth::new(
        &ClusterSecret::from_bytes(b"some-other-secret-0123")
            .keys()
            .node_http,
    );
    let forged = stranger.sign_request(
        "POST",
        "/v1/internal/write",
        &write,
        everynode::security::unix_millis(),
    );
    let (code, body) = http(
        "POST",
        &url("/v1/internal/write"),
        None,
        Some((REQUEST_HEADER, forged.header)),
        Some(write),
    );
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("bad node signature"), "{body}");
    let secret = std::fs::read_to_string(support::cluster_secret(dir)).unwrap();
    let ours = NodeAuth::new(
        &ClusterSecret::from_bytes(secret.trim().as_bytes())
            .keys()
            .node_http,
    );
    let signed = ours.sign_request(
        "GET",
        "/v1/internal/store",
        b"",
        everynode::security::unix_millis(),
    );
    let store = url("/v1/internal/store");
    assert_eq!(
        http(
            "GET",
            &store,
            None,
            Some((REQUEST_HEADER, signed.header.clone())),
            None
        )
        .0,
        200
    );
    let (code, body) = http("GET", &store, None, Some((REQUEST_HEADER, signed.header)), None);
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("replayed"), "{body}");

    // Oversized and malicious input.
    let huge = format!("{{\"objects\":[\"{}\"]}}", "a".repeat(9 * 1024 * 1024));
    let (code, _) = http(
        "POST",
        &url("/v1/apply"),
        Some(&admin),
        None,
        Some(huge.into_bytes()),
    );
    assert_eq!(code, 413);
    let deep = format!("{{\"objects\":[{}{}]}}", "[".repeat(100_000), "]".repeat(100_000));
    let (code, body) = http(
        "POST",
        &url("/v1/apply"),
        Some(&admin),
        None,
        Some(deep.into_bytes()),
    );
    assert!((400..500).contains(&code), "{code} {body}");
    let laughs = (1..10).fold(
        "a0: &a0 [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n".to_string(),
        |doc, i| {
            let prev = format!("*a{}", i - 1);
            format!("{doc}a{i}: &a{i} [{}]\n", [prev.as_str(); 9].join(","))
        },
    );
    let laughs = write_manifest(dir, "laughs.yaml", &laughs);
    let out = n0.cli(&["apply", "-f", &laughs]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("alias") || err.contains("budget") || err.contains("limit"),
        "{err}"
    );
    let big = write_manifest(dir, "big.yaml", &format!("# {}\n", "x".repeat(5 * 1024 * 1024)));
    let out = n0.cli(&["apply", "-f", &big]);
    let err = stderr(&out);
    assert!(!out.status.success() && err.contains("is larger than"), "{err}");

    // Nothing changed, and the node still serves.
    assert_eq!(snapshot(n0), before);
    assert_eq!(snapshot(n1), before);
    assert_eq!(http("GET", &url("/healthz"), None, None, None).0, 200);
    let (_, metrics) = http("GET", &url("/metrics"), Some(readonly), None, None);
    for reason in ["no_token", "wrong_token", "read_only", "node_signature"] {
        let line = format!("everynode_api_refused_total{{reason=\"{reason}\"}} 0");
        assert!(!metrics.contains(&line), "{reason} not counted:\n{metrics}");
    }
}

#[test]
fn a_node_with_another_secret_stays_outside() {
    let _machine = crate::support::shared_machine();
    let cluster = Cluster::start_seeded(1, 1, &[]);
    let n0 = &cluster.nodes[0];
    wait_formed(n0, 1);
    let other = tempfile::tempdir().unwrap();
    let mut stranger = Node::new(
        other.path(),
        "stranger",
        vec!["--seed".into(), n0.gossip.to_string()],
    );
    stranger.start();
    wait_until("the stranger to serve its API", SETTLE, || stranger.members());
    let names = |node: &Node| -> Result<Vec<String>, String> {
        Ok(node
            .members()?
            .iter()
            .map(|m| m["name"].as_str().unwrap().to_string())
            .collect())
    };
    support::holds_for(
        "each side listing only itself",
        Duration::from_secs(4),
        "twenty gossip rounds of 200 ms: the stranger has sent n0 many packets",
        || match (names(n0)?, names(&stranger)?) {
            (a, b) if a == ["node-0"] && b == ["stranger"] => Ok(()),
            (a, b) => Err(format!("n0 lists {a:?}, the stranger {b:?}")),
        },
    );
    // It cannot read the cluster's API with its own token either.
    let (code, _) = http(
        "GET",
        &format!("{}/v1/daemonsets", n0.server()),
        Some(&stranger.admin_token()),
        None,
        None,
    );
    assert_eq!(code, 401);
    let (_, metrics) = http(
        "GET",
        &format!("{}/metrics", n0.server()),
        Some(&n0.admin_token()),
        None,
        None,
    );
    let unauthentic = metrics
        .lines()
        .find(|l| l.starts_with("everynode_gossip_rejected_total{reason=\"unauthentic\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(unauthentic > 0, "{metrics}");
}

#[test]
fn bad_secret_files_stop_the_agent_with_exit_code_2() {
    let _machine = crate::support::shared_machine();
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    for (content, mode, needle) in [
        ("", 0o600, "is empty"),
        ("0123456789abcdef0123", 0o644, "chmod 600"),
        ("short", 0o600, "at least 16"),
    ] {
        std::fs::write(&secret, content).unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(mode)).unwrap();
        let out = everynode()
            .args(["agent", "--runtime", "process", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--gossip-addr", &format!("127.0.0.1:{}", free_port())])
            .args(["--api-addr", &format!("127.0.0.1:{}", free_port())])
            .arg("--cluster-secret-file")
            .arg(&secret)
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.starts_with("error: ") && err.contains(secret.to_str().unwrap()) && err.contains(needle),
            "{err}"
        );
    }
    // A joining node without any secret is told where to get one.
    let out = everynode()
        .args(["agent", "--runtime", "process", "--data-dir"])
        .arg(dir.path().join("joiner"))
        .args(["--gossip-addr", &format!("127.0.0.1:{}", free_port())])
        .args(["--api-addr", &format!("127.0.0.1:{}", free_port())])
        .args(["--seed", "127.0.0.1:1"])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--cluster-secret-file"), "{err}");
}

#[test]
fn a_lone_agent_makes_its_secret_and_the_cli_finds_the_token() {
    let _machine = crate::support::shared_machine();
    let root = tempfile::tempdir().unwrap();
    let mut node = Node::new(root.path(), "solo", vec![]);
    node.secret = None;
    node.start();
    wait_formed(&node, 1);
    let secret = node.data_dir.join("cluster-secret");
    assert_eq!(
        std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777,
        0o600
    );
    for token in ["admin-token", "readonly-token"] {
        let mode = std::fs::metadata(node.data_dir.join(token))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{token}");
    }
    assert!(
        node.log_tail(50).contains("--cluster-secret-file"),
        "{}",
        node.log_tail(50)
    );
    // The CLI reads the token from the data dir given by flag, as by EVERYNODE_DATA_DIR.
    let out = everynode()
        .args(["--server", &node.server(), "--data-dir"])
        .arg(&node.data_dir)
        .args(["get", "nodes"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("solo"));
}

/// A CA and a server certificate for 127.0.0.1 signed by it, made with openssl.
fn make_certs(dir: &Path) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl is needed for the TLS test (Debian package openssl)");
        assert!(out.status.success(), "openssl {args:?}: {}", stderr(&out));
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=everynode test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "node.key",
        "-out",
        "node.csr",
        "-subj",
        "/CN=everynode node",
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "node.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "node.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
}

#[test]
fn with_tls_the_cluster_forms_over_https_and_the_cli_needs_the_ca() {
    let _machine = crate::support::shared_machine();
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    let path = |name: &str| certs.path().join(name).to_str().unwrap().to_string();
    let cluster = Cluster::start_seeded(
        2,
        1,
        &[
            "--tls-cert",
            &path("node.pem"),
            "--tls-key",
            &path("node.key"),
            "--ca-cert",
            &path("ca.pem"),
        ],
    );
    let n1 = &cluster.nodes[1];
    let https = format!("https://{}", n1.api);
    let cli = |args: &[&str]| {
        everynode()
            .args(["--server", &https, "--ca-cert", &path("ca.pem")])
            .env("EVERYNODE_DATA_DIR", &n1.data_dir)
            .args(args)
            .output()
            .unwrap()
    };
    wait_until("two members and a leader, read over https", SETTLE, || {
        let out = cli(&["members", "-o", "json"]);
        if !out.status.success() {
            return Err(stderr(&out));
        }
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let members = v.as_array().cloned().unwrap_or_default();
        let alive = members.iter().filter(|m| m["state"] == "alive").count();
        let leader = members.iter().any(|m| m["role"] == "leader");
        if alive == 2 && leader {
            Ok(())
        } else {
            Err(format!("{alive} alive, leader: {leader}"))
        }
    });
    // node-1 is no voter: its write is forwarded to the leader, and the committed store comes
    // back as a copy fetched from a peer, both node-to-node over https.
    let manifest = write_manifest(
        cluster.root.path(),
        "hello.yaml",
        &PRIVILEGED
            .replace("priv}", "tls-hello}")
            .replace("name: priv", "name: tls-hello"),
    );
    let out = cli(&["apply", "-f", &manifest]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_until(
        "node-1 to serve the new DaemonSet from its store copy",
        SETTLE,
        || {
            let out = cli(&["get", "ds", "tls-hello"]);
            if out.status.success() {
                Ok(())
            } else {
                Err(stderr(&out))
            }
        },
    );
    // Without the CA the CLI says what to pass.
    let out = everynode()
        .args(["--server", &https, "get", "ds"])
        .env("EVERYNODE_DATA_DIR", &n1.data_dir)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(!out.status.success() && err.contains("--ca-cert"), "{err}");
    // Plain http to a TLS port gets nothing.
    let out = everynode()
        .args(["--server", &format!("http://{}", n1.api), "get", "ds"])
        .env("EVERYNODE_DATA_DIR", &n1.data_dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
}
