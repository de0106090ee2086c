//! A DaemonSet manifest builder: the one YAML shape the end-to-end tests apply, with only what a test changes spelled out.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// An `apps/v1` DaemonSet selecting `app: NAME`, one container `main` running `command`.
///
/// Defaults: image `busybox:1` (the process runtime ignores it), `terminationGracePeriodSeconds:
/// 1` so tests never wait out Kubernetes' 30 s, and no strategy (Kubernetes' defaults).
#[derive(Clone, Debug)]
pub struct Manifest {
    name: String,
    image: String,
    pull_policy: Option<&'static str>,
    /// The container's `command` as a YAML flow sequence.
    command: String,
    env: Vec<String>,
    annotations: Vec<(String, String)>,
    min_ready: Option<u64>,
    history_limit: Option<u32>,
    /// The `updateStrategy` body, indented for its place under `spec`.
    strategy: Option<String>,
    grace: u64,
    node_selector: Vec<(String, String)>,
    /// Init containers as (name, `command` as a YAML flow sequence), in order.
    init: Vec<(String, String)>,
}

impl Manifest {
    pub fn new(name: &str) -> Self {
        Manifest {
            name: name.to_string(),
            image: "busybox:1".to_string(),
            pull_policy: None,
            command: "[sleep, '3600']".to_string(),
            env: Vec::new(),
            annotations: Vec::new(),
            min_ready: None,
            history_limit: None,
            strategy: None,
            grace: 1,
            node_selector: Vec::new(),
            init: Vec::new(),
        }
    }

    /// A local image, never pulled (no registry is reachable from the tests).
    pub fn local_image(mut self, image: &str) -> Self {
        self.image = image.to_string();
        self.pull_policy = Some("IfNotPresent");
        self
    }

    pub fn image(mut self, image: &str) -> Self {
        self.image = image.to_string();
        self
    }

    /// `sh -c SCRIPT`; the script must not contain a single quote.
    pub fn script(mut self, script: &str) -> Self {
        assert!(!script.contains('\''), "scripts are single-quoted YAML: {script}");
        self.command = format!("[sh, -c, '{script}']");
        self
    }

    /// An init container `name` running `sh -c SCRIPT`, after those added before; the script
    /// must not contain a single quote.
    pub fn init_script(mut self, name: &str, script: &str) -> Self {
        assert!(!script.contains('\''), "scripts are single-quoted YAML: {script}");
        self.init
            .push((name.to_string(), format!("[sh, -c, '{script}']")));
        self
    }

    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push(format!("{{name: {name}, value: {value}}}"));
        self
    }

    /// `NAME` from the downward API's `spec.nodeName`.
    pub fn node_name_env(mut self, name: &str) -> Self {
        self.env.push(format!(
            "{{name: {name}, valueFrom: {{fieldRef: {{fieldPath: spec.nodeName}}}}}}"
        ));
        self
    }

    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.annotations.push((key.to_string(), value.to_string()));
        self
    }

    pub fn change_cause(self, cause: &str) -> Self {
        self.annotation("kubernetes.io/change-cause", cause)
    }

    pub fn min_ready(mut self, seconds: u64) -> Self {
        self.min_ready = Some(seconds);
        self
    }

    pub fn history_limit(mut self, limit: u32) -> Self {
        self.history_limit = Some(limit);
        self
    }

    /// `RollingUpdate` with this `maxUnavailable` (a number or a percent).
    pub fn max_unavailable(self, value: &str) -> Self {
        self.strategy(&format!(
            "type: RollingUpdate\nrollingUpdate: {{maxUnavailable: {value}}}"
        ))
    }

    /// The `updateStrategy` body, one field per line, unindented.
    pub fn strategy(mut self, body: &str) -> Self {
        self.strategy = Some(body.lines().map(|l| format!("    {l}\n")).collect());
        self
    }

    pub fn grace(mut self, seconds: u64) -> Self {
        self.grace = seconds;
        self
    }

    pub fn node_selector(mut self, key: &str, value: &str) -> Self {
        self.node_selector.push((key.to_string(), value.to_string()));
        self
    }

    pub fn yaml(&self) -> String {
        let name = &self.name;
        let mut y = format!("apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: {name}\n");
        if !self.annotations.is_empty() {
            y.push_str("  annotations:\n");
            for (k, v) in &self.annotations {
                let _ = writeln!(y, "    {k}: {}", quoted(v));
            }
        }
        let _ = writeln!(y, "spec:\n  selector:\n    matchLabels: {{app: {name}}}");
        if let Some(s) = self.min_ready {
            let _ = writeln!(y, "  minReadySeconds: {s}");
        }
        if let Some(l) = self.history_limit {
            let _ = writeln!(y, "  revisionHistoryLimit: {l}");
        }
        if let Some(body) = &self.strategy {
            let _ = write!(y, "  updateStrategy:\n{body}");
        }
        let _ = writeln!(
            y,
            "  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      terminationGracePeriodSeconds: {}",
            self.grace
        );
        if !self.node_selector.is_empty() {
            y.push_str("      nodeSelector:\n");
            for (k, v) in &self.node_selector {
                let _ = writeln!(y, "        {k}: {}", quoted(v));
            }
        }
        if !self.init.is_empty() {
            y.push_str("      initContainers:\n");
            for (name, command) in &self.init {
                let _ = writeln!(
                    y,
                    "      - name: {name}\n        image: {}\n        command: {command}",
                    self.image
                );
            }
        }
        let _ = writeln!(
            y,
            "      containers:\n      - name: main\n        image: {}",
            self.image
        );
        if let Some(p) = self.pull_policy {
            let _ = writeln!(y, "        imagePullPolicy: {p}");
        }
        let _ = writeln!(y, "        command: {}", self.command);
        if !self.env.is_empty() {
            y.push_str("        env:\n");
            for e in &self.env {
                let _ = writeln!(y, "        - {e}");
            }
        }
        y
    }

    /// Writes the manifest to `dir/FILE` and returns its path.
    pub fn write(&self, dir: &Path, file: &str) -> PathBuf {
        let path = dir.join(file);
        std::fs::write(&path, self.yaml()).unwrap();
        path
    }
}

/// A YAML double-quoted scalar, so values like `"8"` or `true` stay strings.
fn quoted(v: &str) -> String {
    serde_json::to_string(v).unwrap()
}

#[test]
fn the_built_manifest_is_a_valid_daemonset_with_what_was_asked() {
    let yaml = Manifest::new("web")
        .local_image("img:v1")
        .script("echo hi; exec sleep 3600")
        .env("VERSION", "v1")
        .node_name_env("NODE_NAME")
        .change_cause("deploy v1")
        .annotation("everynode.io/progress-deadline-seconds", "8")
        .min_ready(2)
        .history_limit(100)
        .max_unavailable("1")
        .node_selector("kubernetes.io/hostname", "n1")
        .init_script("setup", "echo set up")
        .yaml();
    let docs = everynode::spec::parse(yaml.as_bytes(), "built");
    assert_eq!(docs.len(), 1, "{yaml}");
    let issues: Vec<String> = docs[0]
        .errors()
        .chain(docs[0].warnings())
        .map(|i| i.to_string())
        .collect();
    assert!(docs[0].is_valid() && issues.is_empty(), "{issues:?}\n{yaml}");
    let ds = docs[0].daemonset().expect("a DaemonSet");
    assert_eq!(
        ds.spec.template.spec.init_containers[0].command,
        ["sh", "-c", "echo set up"]
    );
}
