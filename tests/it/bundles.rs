//! Install bundles as projects publish them: the corpus of real bundles validates and applies unchanged, other kinds are skipped with one line each, ConfigMaps and Secrets are stored, listed and deleted by namespace, and bad ones change nothing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use everynode::spec::{self, Object};
use serde_json::Value;

use crate::support::{self, wait_until, Cluster, Node};

fn corpus() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml" | "json")
            )
        })
        .collect();
    files.sort();
    files
}

/// (kind, namespace, name) of every object a file stores.
fn stored_objects(file: &Path) -> BTreeSet<(String, String, String)> {
    spec::load(file.to_str().unwrap())
        .unwrap()
        .into_iter()
        .filter_map(|m| m.object)
        .filter(Object::is_stored)
        .map(|o| {
            (
                o.kind().to_string(),
                o.namespace().unwrap_or_default().to_string(),
                o.name().to_string(),
            )
        })
        .collect()
}

#[test]
fn every_corpus_bundle_validates_with_its_sources_noted() {
    let files = corpus();
    assert!(files.len() >= 10, "the corpus holds {} bundles", files.len());
    let sources =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/SOURCES.md"))
            .unwrap();
    let (mut config_maps, mut secrets, mut skipped) = (0, 0, 0);
    for file in &files {
        let name = file.file_name().unwrap().to_str().unwrap();
        assert!(
            sources.contains(&format!("| {name} |")),
            "{name} has no row in SOURCES.md"
        );
        let manifests = spec::load(file.to_str().unwrap()).unwrap();
        for m in &manifests {
            let errors: Vec<String> = m.errors().map(ToString::to_string).collect();
            assert!(errors.is_empty(), "{}: {errors:?}", m.origin);
            match m.object.as_ref().unwrap() {
                Object::ConfigMap(_) => config_maps += 1,
                Object::Secret(_) => secrets += 1,
                Object::Skipped(s) => {
                    skipped += 1;
                    assert!(!s.kind.is_empty() && !s.name.is_empty(), "{}: {s:?}", m.origin);
                }
                _ => {}
            }
        }
        assert!(
            manifests.iter().any(|m| m.daemonset().is_some()),
            "{name} holds no DaemonSet"
        );
    }
    // The corpus exercises what it is for: configuration beside the DaemonSets, and kinds to skip.
    assert!(
        config_maps >= 10 && secrets >= 3 && skipped >= 100,
        "{config_maps} configmaps, {secrets} secrets, {skipped} skipped"
    );
}

#[test]
fn a_list_of_other_kinds_and_a_misspelt_kind_are_told_apart() {
    let text = r#"{"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "agent"}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "agent", "namespace": "ops"}, "data": {"a.conf": "x"}},
        {"apiVersion": "v1", "kind": "Configmap", "metadata": {"name": "typo"}}
    ]}"#;
    let manifests = spec::parse(text.as_bytes(), "list.json");
    assert_eq!(manifests.len(), 3);
    assert_eq!(
        manifests[0].object.as_ref().unwrap().skipped_note().unwrap(),
        "serviceaccount/agent skipped: everynode does not run ServiceAccount objects"
    );
    assert!(manifests[1].is_valid());
    assert_eq!(manifests[1].object.as_ref().unwrap().namespace(), Some("ops"));
    let typo: Vec<String> = manifests[2].errors().map(ToString::to_string).collect();
    assert_eq!(typo.len(), 1);
    assert!(typo[0].contains("did you mean \"ConfigMap\""), "{typo:?}");
}

fn json(node: &Node, args: &[&str]) -> Value {
    let out = node.cli(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// (kind, namespace, name) of everything the cluster stores.
fn cluster_objects(node: &Node) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for (kind, args) in [
        ("DaemonSet", vec!["get", "ds", "-o", "json"]),
        ("ConfigMap", vec!["get", "cm", "-A", "-o", "json"]),
        ("Secret", vec!["get", "secrets", "-A", "-o", "json"]),
    ] {
        for item in json(node, &args)["items"].as_array().unwrap() {
            out.insert((
                kind.to_string(),
                item["metadata"]["namespace"].as_str().unwrap().to_string(),
                item["metadata"]["name"].as_str().unwrap().to_string(),
            ));
        }
    }
    out
}

fn start_drained_node() -> Cluster {
    let cluster = Cluster::start(1);
    let node = &cluster.nodes[0];
    // Drained, the node runs nothing: the corpus' agents need hosts this test is not.
    wait_until("the node drained", Duration::from_secs(60), || {
        let out = node.cli(&["drain", &node.name]);
        out.status
            .success()
            .then_some(())
            .ok_or_else(|| String::from_utf8_lossy(&out.stderr).into_owned())
    });
    cluster
}

#[test]
fn every_corpus_bundle_applies_and_its_daemonsets_configmaps_and_secrets_are_stored() {
    let _machine = support::shared_machine();
    let cluster = start_drained_node();
    let node = &cluster.nodes[0];
    for file in corpus() {
        let out = node.cli(&["apply", "-f", file.to_str().unwrap()]);
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(out.status.success(), "{}: {stderr}", file.display());
        let expected = stored_objects(&file);
        for (kind, _, name) in &expected {
            let reference = match kind.as_str() {
                "DaemonSet" => format!("daemonset.apps/{name} "),
                other => format!("{}/{name} ", other.to_lowercase()),
            };
            assert!(
                stdout.contains(&reference),
                "{}: no line for {reference}in {stdout}",
                file.display()
            );
        }
        let loaded = spec::load(file.to_str().unwrap()).unwrap();
        let skipped = loaded
            .iter()
            .filter(|m| matches!(m.object, Some(Object::Skipped(_))))
            .count();
        // apply prints every warning validate prints: the server reads the objects as written.
        let warnings: usize = loaded.iter().map(|m| m.warnings().count()).sum();
        assert_eq!(
            stderr.matches("Warning: ").count(),
            warnings,
            "{}: {stderr}",
            file.display()
        );
        assert_eq!(
            stderr.matches(" skipped: everynode does not run ").count(),
            skipped,
            "{}: {stderr}",
            file.display()
        );
        let stored = cluster_objects(node);
        let missing: Vec<_> = expected.difference(&stored).collect();
        assert!(missing.is_empty(), "{}: not stored: {missing:?}", file.display());
    }
    // Applying a bundle again changes nothing; deleting it by file removes what it stored.
    let flannel = corpus()
        .into_iter()
        .find(|f| f.ends_with("flannel.yaml"))
        .unwrap();
    let again = node.cli(&["apply", "-f", flannel.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&again.stdout);
    assert!(
        text.contains("daemonset.apps/kube-flannel-ds unchanged")
            && text.contains("configmap/kube-flannel-cfg unchanged"),
        "{text}"
    );
    let deleted = node.cli(&["delete", "-f", flannel.to_str().unwrap()]);
    assert!(
        deleted.status.success(),
        "{}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    let stored = cluster_objects(node);
    for object in stored_objects(&flannel) {
        assert!(
            !stored.contains(&object),
            "{object:?} is still stored after delete -f"
        );
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn config_objects_by_namespace_secret_values_for_the_admin_only_and_bad_input_changes_nothing() {
    let _machine = support::shared_machine();
    let cluster = start_drained_node();
    let node = &cluster.nodes[0];
    let dir = cluster.root.path();
    let bundle = write(
        dir,
        "bundle.yaml",
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: shipper, namespace: logging}\n---\n\
         apiVersion: v1\nkind: Namespace\nmetadata: {name: logging}\n---\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata: {name: shipper, namespace: logging}\ndata: {shipper.conf: \"level=info\\n\"}\n---\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata: {name: shipper}\ndata: {shipper.conf: \"level=debug\\n\", extra: x}\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata: {name: token, namespace: logging}\nstringData: {token: hunter2}\n",
    );
    support::rollout::apply(node, &bundle);
    let cms = json(node, &["get", "cm", "-A", "-o", "json"]);
    let namespaces: BTreeSet<&str> = cms["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["namespace"].as_str().unwrap())
        .collect();
    assert_eq!(namespaces, BTreeSet::from(["default", "logging"]), "{cms}");
    let logging = json(node, &["get", "cm", "shipper", "-n", "logging", "-o", "json"]);
    assert_eq!(logging["data"]["shipper.conf"], "level=info\n");
    let table = String::from_utf8_lossy(&node.cli(&["get", "cm", "-A"]).stdout).into_owned();
    assert!(
        table.starts_with("NAMESPACE") && table.contains("logging"),
        "{table}"
    );

    // The admin token sees the value; the read-only token keys and sizes only, and nothing prints it in a table.
    let secret = json(node, &["get", "secret", "token", "-n", "logging", "-o", "json"]);
    assert_eq!(secret["data"]["token"], "aHVudGVyMg==", "{secret}");
    let readonly = std::fs::read_to_string(node.data_dir.join("readonly-token")).unwrap();
    let out = node.cli(&[
        "--token",
        readonly.trim(),
        "get",
        "secret",
        "token",
        "-n",
        "logging",
        "-o",
        "json",
    ]);
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        shown.get("data").is_none() && shown["dataSizes"]["token"] == 7,
        "{shown}"
    );
    let described =
        String::from_utf8_lossy(&node.cli(&["describe", "secret", "token", "-n", "logging"]).stdout)
            .into_owned();
    assert!(
        described.contains("token:  7 bytes") && !described.contains("hunter2"),
        "{described}"
    );
    assert!(
        !node.log_tail(10_000).contains("hunter2"),
        "a secret value reached the log"
    );

    // Bad input: each refused with the object and the field, and nothing of it stored.
    let before = cluster_objects(node);
    let big = "x".repeat(1024 * 1024 + 1);
    let cases = [
        (
            "big.yaml",
            format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: big}}\ndata: {{k: {big}}}\n"),
            "data: Too long: must have at most 1048576 bytes",
        ),
        (
            "b64.yaml",
            "apiVersion: v1\nkind: Secret\nmetadata: {name: bad}\ndata: {token: \"not base64!\"}\n"
                .to_string(),
            "data[token]: Invalid value: \"<secret value>\": must be base64-encoded",
        ),
        (
            "key.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bad}\ndata: {\"a/b\": x}\n".to_string(),
            "data[a/b]: Invalid value: \"a/b\": a valid config key",
        ),
        (
            "only-rbac.yaml",
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: sa}\n".to_string(),
            "nothing everynode can apply: 1 object skipped",
        ),
    ];
    for (file, text, expected) in cases {
        // A valid ConfigMap beside the bad object: refused with it.
        let text = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: innocent}}\ndata: {{a: b}}\n---\n{text}"
        );
        let path = write(
            dir,
            file,
            if file == "only-rbac.yaml" {
                text.split("---\n").nth(1).unwrap()
            } else {
                &text
            },
        );
        let out = node.cli(&["apply", "-f", path.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Invalid input exits 2 as every bad input does; a bundle with nothing to store exits 1.
        let code = if file == "only-rbac.yaml" { 1 } else { 2 };
        assert_eq!(out.status.code(), Some(code), "{file}: {stderr}");
        assert!(stderr.contains(expected), "{file}: {stderr}");
        assert!(
            !stderr.contains("not base64!"),
            "{file}: the refused secret value was echoed: {stderr}"
        );
        assert_eq!(cluster_objects(node), before, "{file} changed the store");
    }

    // A volume naming a key its ConfigMap (in the same input) does not have: refused by the
    // server with the field, and nothing of the input stored or started.
    let bad_key = write(
        dir,
        "bad-key.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {a.conf: x}\n---\n\
         apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: keyed}\nspec:\n  selector: {matchLabels: {app: keyed}}\n  template:\n    metadata: {labels: {app: keyed}}\n    spec:\n      containers: [{name: a, image: 'x:1', volumeMounts: [{name: c, mountPath: /c}]}]\n      volumes: [{name: c, configMap: {name: cfg, items: [{key: b.conf, path: b.conf}]}}]\n",
    );
    let out = node.cli(&["apply", "-f", bad_key.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("daemonset keyed: spec.template.spec.volumes[0].configMap.items[0].key: Not found: \"b.conf\": configmap default/cfg has no key \"b.conf\""),
        "{stderr}"
    );
    assert_eq!(
        cluster_objects(node),
        before,
        "the refused input stored something"
    );

    let out = node.cli(&["delete", "cm", "shipper", "-n", "logging"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "configmap \"shipper\" deleted\n"
    );
    let gone = node.cli(&["get", "cm", "shipper", "-n", "logging"]);
    assert!(
        !gone.status.success()
            && String::from_utf8_lossy(&gone.stderr)
                .contains("configmap shipper not found in namespace logging")
    );
    assert!(
        json(node, &["get", "cm", "shipper", "-o", "json"])["data"]["extra"] == "x",
        "the default namespace's one stays"
    );
}

#[test]
fn the_process_runtime_resolves_config_maps_secrets_expansion_and_the_downward_api() {
    let _machine = support::shared_machine();
    let cluster = Cluster::start(1);
    let node = &cluster.nodes[0];
    let dir = cluster.root.path();
    let out_file = dir.join("seen.txt");
    let bundle = write(
        dir,
        "process.yaml",
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: agent-config}}\ndata: {{LEVEL: warn, region: eu}}\n---\n\
             apiVersion: v1\nkind: Secret\nmetadata: {{name: agent-token}}\nstringData: {{TOKEN: s3cret}}\n---\n\
             apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {{name: reader}}\nspec:\n  selector: {{matchLabels: {{app: reader}}}}\n  template:\n    metadata: {{labels: {{app: reader}}}}\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: r\n        image: unused\n        command: [sh, -c]\n        args: ['echo \"node=$(NODE_NAME) ip=$(HOST_IP) pod=$(POD_IP) level=$(LEVEL) token=$TOKEN region=$CFG_region uid=$(UID) literal=$LIT unknown=$UNK\" > {out}; exec sleep 3600']\n        env:\n        - {{name: NODE_NAME, valueFrom: {{fieldRef: {{fieldPath: spec.nodeName}}}}}}\n        - {{name: HOST_IP, valueFrom: {{fieldRef: {{fieldPath: status.hostIP}}}}}}\n        - {{name: POD_IP, valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}}}\n        - {{name: UID, valueFrom: {{fieldRef: {{fieldPath: metadata.uid}}}}}}\n        - {{name: LEVEL, valueFrom: {{configMapKeyRef: {{name: agent-config, key: LEVEL}}}}}}\n        - {{name: LIT, value: \"$$(LEVEL)\"}}\n        - {{name: UNK, value: \"$(NOPE)-$(LEVEL)\"}}\n        envFrom:\n        - {{secretRef: {{name: agent-token}}}}\n        - {{configMapRef: {{name: agent-config}}, prefix: CFG_}}\n",
            out = out_file.display()
        ),
    );
    support::rollout::apply(node, &bundle);
    let seen = wait_until(
        "the process wrote what it was given",
        Duration::from_secs(60),
        || std::fs::read_to_string(&out_file).map_err(|e| e.to_string()),
    );
    let seen = seen.trim();
    let (head, uid) = seen.split_once(" uid=").unwrap();
    assert_eq!(
        head, "node=node-0 ip=127.0.0.1 pod=127.0.0.1 level=warn token=s3cret region=eu",
        "{seen}"
    );
    let (uid, rest) = uid.split_once(' ').unwrap();
    assert_eq!(uid.len(), 36, "{seen}");
    // `$$` escapes; an undefined variable stays as written; env values expand too.
    assert_eq!(rest, "literal=$(LEVEL) unknown=$(NOPE)-warn", "{seen}");
}
