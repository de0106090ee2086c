//! A log-shipper-shaped bundle on the real Docker engine: ServiceAccount, ConfigMap, Secret and DaemonSet in one file; an init container writes into an emptyDir first; the container sees its mounted config, the secret, `$(NODE_NAME)` and `$(HOST_IP)`; a changed ConfigMap reaches the mounted file without a restart; a missing ConfigMap holds the instance in CreateContainerConfigError until it is applied.
//!
//! With no engine the test prints a loud SKIP, except under `CI=true` where it fails.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::support::docker::{build_image, connect, containers, Cleanup};
use crate::support::{self, wait_until, Cluster, Node};

const IMAGE: &str = "everynode-e2e/docker-bundle:v1";
const LABEL_VALUE: &str = "e2e-docker-bundle";

fn bundle(dir: &Path, level: &str, host_dir: &Path) -> PathBuf {
    let text = format!(
        r#"apiVersion: v1
kind: ServiceAccount
metadata: {{name: shipper, namespace: logging}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: shipper-config, namespace: logging}}
data:
  shipper.conf: "level={level}"
  LEVEL: "{level}"
---
apiVersion: v1
kind: Secret
metadata: {{name: shipper-token, namespace: logging}}
stringData: {{token: hunter2}}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: shipper, namespace: logging}}
spec:
  selector: {{matchLabels: {{app: shipper}}}}
  template:
    metadata: {{labels: {{app: shipper, tier: logs}}}}
    spec:
      serviceAccountName: shipper
      terminationGracePeriodSeconds: 1
      initContainers:
      - name: prepare
        image: {IMAGE}
        imagePullPolicy: Never
        command: ["sh", "-c", "echo prepared-on-$(NODE_NAME) > /scratch/from-init"]
        env:
        - name: NODE_NAME
          valueFrom: {{fieldRef: {{fieldPath: spec.nodeName}}}}
        volumeMounts:
        - {{name: scratch, mountPath: /scratch}}
      containers:
      - name: shipper
        image: {IMAGE}
        imagePullPolicy: Never
        command: ["sh", "-c"]
        args:
        - >-
          echo "start node=$(NODE_NAME) ip=$(HOST_IP) level=$LEVEL token=$SECRET_token file=$(cat /etc/secret/token)";
          echo "labels $(cat /etc/podinfo/labels | tr '\n' ' ')";
          echo "init=$(cat /scratch/from-init)";
          echo scratch > /scratch/x && echo "scratch=$(cat /scratch/x)";
          while true; do echo "conf $(cat /etc/shipper/shipper.conf)"; sleep 1; done
        env:
        - name: NODE_NAME
          valueFrom: {{fieldRef: {{fieldPath: spec.nodeName}}}}
        - name: HOST_IP
          valueFrom: {{fieldRef: {{fieldPath: status.hostIP}}}}
        - name: LEVEL
          valueFrom: {{configMapKeyRef: {{name: shipper-config, key: LEVEL}}}}
        envFrom:
        - secretRef: {{name: shipper-token}}
          prefix: SECRET_
        volumeMounts:
        - {{name: config, mountPath: /etc/shipper}}
        - {{name: token, mountPath: /etc/secret}}
        - {{name: podinfo, mountPath: /etc/podinfo}}
        - {{name: scratch, mountPath: /scratch}}
        - {{name: state, mountPath: /state}}
      volumes:
      - {{name: config, configMap: {{name: shipper-config, items: [{{key: shipper.conf, path: shipper.conf}}]}}}}
      - {{name: token, secret: {{secretName: shipper-token, defaultMode: 0400}}}}
      - name: podinfo
        downwardAPI:
          items: [{{path: labels, fieldRef: {{fieldPath: metadata.labels}}}}]
      - {{name: scratch, emptyDir: {{}}}}
      - {{name: state, hostPath: {{path: {host}, type: DirectoryOrCreate}}}}
"#,
        host = host_dir.display()
    );
    let path = dir.join(format!("bundle-{level}.yaml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn logs(node: &Node) -> Result<String, String> {
    let out = node.cli(&["logs", "shipper", "--node", &node.name]);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn pod(node: &Node, ds: &str) -> Result<Value, String> {
    let out = node.cli(&["get", "pods", "-o", "json"]);
    let pods: Vec<Value> = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    pods.into_iter()
        .find(|p| p["daemonset"] == ds)
        .ok_or_else(|| format!("no pod of {ds}"))
}

#[test]
fn a_log_shipper_bundle_runs_as_written_and_follows_its_config_map() {
    let _machine = support::shared_machine();
    let Some((rt, docker)) = connect("e2e_docker_bundle") else {
        return;
    };
    let cluster_name = format!("everynode-bundle-{}", std::process::id());
    let _cleanup = Cleanup {
        cluster: cluster_name.clone(),
        label_value: LABEL_VALUE,
    };
    rt.block_on(build_image(&docker, IMAGE, "v1", LABEL_VALUE));
    let cluster = Cluster::start_seeded(1, 1, &["--runtime", "docker", "--cluster", &cluster_name]);
    let node = &cluster.nodes[0];
    let dir = cluster.root.path();
    let host_dir = dir.join("host-state");

    let file = bundle(dir, "info", &host_dir);
    let out = wait_until("the bundle applied", Duration::from_secs(60), || {
        let out = node.cli(&["apply", "-f", file.to_str().unwrap()]);
        out.status
            .success()
            .then_some(out.clone())
            .ok_or_else(|| String::from_utf8_lossy(&out.stderr).into_owned())
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("serviceaccount/shipper skipped: everynode does not run ServiceAccount objects"),
        "{stderr}"
    );
    for line in [
        "configmap/shipper-config created",
        "secret/shipper-token created",
        "daemonset.apps/shipper created",
    ] {
        assert!(stdout.contains(line), "{stdout}");
    }

    let text = wait_until(
        "the shipper printed its start line",
        Duration::from_secs(60),
        || {
            let l = logs(node)?;
            (l.contains("start ") && l.contains("conf "))
                .then_some(l.clone())
                .ok_or(l)
        },
    );
    assert!(
        text.contains("start node=node-0 ip=127.0.0.1 level=info token=hunter2 file=hunter2"),
        "{text}"
    );
    assert!(
        text.contains("app=\"shipper\"") && text.contains("tier=\"logs\""),
        "downward labels: {text}"
    );
    assert!(text.contains("scratch=scratch"), "{text}");
    assert!(
        text.contains("init=prepared-on-node-0"),
        "the init container wrote into the emptyDir first: {text}"
    );
    assert!(text.contains("conf level=info"), "{text}");
    assert!(host_dir.is_dir(), "DirectoryOrCreate made the host path");
    // The app container; the completed init container is kept beside it, as Kubernetes does.
    let first = rt
        .block_on(containers(&docker, &cluster_name))
        .into_iter()
        .filter(|c| c.2.contains("running"))
        .collect::<Vec<_>>();
    assert_eq!(first.len(), 1, "{first:?}");
    assert!(
        first[0].3.contains(&"SECRET_token=hunter2".to_string()),
        "{:?}",
        first[0].3
    );

    // A changed ConfigMap reaches the mounted file of the running container: no restart.
    support::rollout::apply(node, &bundle(dir, "debug", &host_dir));
    wait_until(
        "the new config in the mounted file",
        Duration::from_secs(60),
        || {
            let l = logs(node)?;
            l.contains("conf level=debug").then_some(()).ok_or(l)
        },
    );
    let now: Vec<_> = rt
        .block_on(containers(&docker, &cluster_name))
        .into_iter()
        .filter(|c| c.2.contains("running"))
        .collect();
    assert_eq!(now.len(), 1, "{now:?}");
    assert_eq!(
        now[0].0, first[0].0,
        "the container was replaced for a ConfigMap change"
    );
    assert!(
        now[0].3.contains(&"LEVEL=info".to_string()),
        "variables keep the value read at start: {:?}",
        now[0].3
    );
    let p = pod(node, "shipper").unwrap();
    assert_eq!(p["restarts"], 0, "{p}");

    // A DaemonSet whose ConfigMap does not exist yet waits in CreateContainerConfigError, and
    // starts once it is applied.
    let waiting = dir.join("waiting.yaml");
    std::fs::write(
        &waiting,
        format!(
            "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {{name: waiting}}\nspec:\n  selector: {{matchLabels: {{app: waiting}}}}\n  template:\n    metadata: {{labels: {{app: waiting}}}}\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: w\n        image: {IMAGE}\n        imagePullPolicy: Never\n        command: [sh, -c, 'cat /cfg/k; exec sleep 3600']\n        volumeMounts: [{{name: cfg, mountPath: /cfg}}]\n      volumes: [{{name: cfg, configMap: {{name: later}}}}]\n"
        ),
    )
    .unwrap();
    support::rollout::apply(node, &waiting);
    let p = wait_until(
        "CreateContainerConfigError naming the ConfigMap",
        Duration::from_secs(30),
        || {
            let p = pod(node, "waiting")?;
            (p["state"] == "CreateContainerConfigError")
                .then_some(p.clone())
                .ok_or(p.to_string())
        },
    );
    assert!(
        p["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("configmap \"later\" not found"),
        "{p}"
    );
    let later = dir.join("later.yaml");
    std::fs::write(
        &later,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: later}\ndata: {k: v}\n",
    )
    .unwrap();
    support::rollout::apply(node, &later);
    wait_until(
        "waiting Running once its ConfigMap exists",
        Duration::from_secs(60),
        || {
            let p = pod(node, "waiting")?;
            (p["state"] == "Running").then_some(()).ok_or(p.to_string())
        },
    );
}
