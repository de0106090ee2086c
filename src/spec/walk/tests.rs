//! The schema walk on YAML input: unknown fields, ignored fields, types, positions; and a
//! check that the field table and the serde model agree.

use serde_json::{json, Value as J};

use crate::spec::daemonset::DaemonSet;
use crate::spec::fields::DAEMONSET;
use crate::spec::schema::{Kind, Schema};
use crate::spec::{parse, Issue, Severity};

const HEAD: &str = "apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
spec:
  selector:
    matchLabels: {app: agent}
  template:
    metadata:
      labels: {app: agent}
    spec:
";

/// Issues for a manifest whose pod spec (indented 6 spaces) is `pod`.
fn issues(pod: &str) -> Vec<Issue> {
    let text = format!("{HEAD}{pod}");
    let manifests = parse(text.as_bytes(), "t.yaml");
    assert_eq!(manifests.len(), 1, "{text}");
    manifests.into_iter().next().unwrap().issues
}

fn one_error(pod: &str) -> Issue {
    let errors: Vec<Issue> = issues(pod).into_iter().filter(Issue::is_error).collect();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    errors.into_iter().next().unwrap()
}

#[test]
fn typos_get_the_nearest_name() {
    let cases = [
        (
            "      containers:\n      - name: a\n        imag: x:1\n",
            "spec.template.spec.containers[0].imag",
            "`image`",
        ),
        (
            "      containers:\n      - name: a\n        image: x:1\n        Ports: []\n",
            "spec.template.spec.containers[0].Ports",
            "`ports`",
        ),
        (
            "      tolerations: []\n      hostnetwork: true\n      containers: [{name: a, image: x}]\n",
            "spec.template.spec.hostnetwork",
            "`hostNetwork`",
        ),
        (
            "      nodeSelecter: {a: b}\n      containers: [{name: a, image: x}]\n",
            "spec.template.spec.nodeSelecter",
            "`nodeSelector`",
        ),
    ];
    for (pod, path, near) in cases {
        let e = one_error(pod);
        assert_eq!(e.path, path);
        assert_eq!(e.message, format!("unknown field, did you mean {near}?"));
    }
}

#[test]
fn a_typo_high_up_hides_its_consequences() {
    let text = "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: agent}\nspec:\n  selector: {matchLabels: {app: agent}}\n  templat:\n    metadata: {labels: {app: agent}}\n";
    let m = parse(text.as_bytes(), "t.yaml").remove(0);
    let errors: Vec<String> = m.errors().map(ToString::to_string).collect();
    assert_eq!(errors, ["spec.templat: unknown field, did you mean `template`?"]);
    assert_eq!(m.errors().next().unwrap().location.unwrap().line, 6);
}

#[test]
fn unknown_fields_without_a_near_name_list_the_valid_ones() {
    let e = one_error("      containers: [{name: a, image: x, zzz: 1}]\n");
    assert_eq!(e.message, "unknown field");
    assert!(e
        .hint
        .unwrap()
        .starts_with("Container has the fields: name, image, command"));
}

#[test]
fn ignored_kubernetes_fields_warn_with_their_path() {
    // The initContainers line (14) is honoured now, so it gets no warning among the others.
    let found = issues(
        "      serviceAccountName: agent\n      priorityClassName: system-node-critical\n      initContainers: [{name: init, image: busybox}]\n      containers:\n      - name: a\n        image: x:1\n        lifecycle: {preStop: {exec: {command: [sleep, '5']}}}\n        securityContext: {seLinuxOptions: {level: s0}}\n",
    );
    let warnings: Vec<(&str, u32)> = found
        .iter()
        .map(|i| {
            assert_eq!(i.severity, Severity::Warning, "{i}");
            (i.path.as_str(), i.location.unwrap().line)
        })
        .collect();
    assert_eq!(
        warnings,
        [
            ("spec.template.spec.serviceAccountName", 12),
            ("spec.template.spec.priorityClassName", 13),
            ("spec.template.spec.containers[0].lifecycle", 18),
            (
                "spec.template.spec.containers[0].securityContext.seLinuxOptions",
                19
            ),
        ]
    );
    assert!(found[0].message.contains("no service accounts"), "{}", found[0]);
}

#[test]
fn default_values_of_ignored_fields_are_not_worth_a_warning() {
    let found = issues(
        "      dnsPolicy: ClusterFirst\n      schedulerName: default-scheduler\n      securityContext: {}\n      imagePullSecrets: []\n      containers:\n      - name: a\n        image: x:1\n        terminationMessagePath: /dev/termination-log\n        terminationMessagePolicy: File\n        resources: {}\n",
    );
    assert_eq!(found, []);
}

#[test]
fn wrong_types_are_errors_with_hints() {
    let cases = [
        ("      containers: [{name: a, image: 5}]\n", "spec.template.spec.containers[0].image", "Invalid type: expected string, got integer 5", Some("put the value in quotes")),
        ("      hostNetwork: yes\n      containers: [{name: a, image: x}]\n", "spec.template.spec.hostNetwork", "Invalid type: expected boolean (true or false), got string \"yes\"", None),
        ("      containers: [{name: a, image: x, ports: [{containerPort: \"80\"}]}]\n", "spec.template.spec.containers[0].ports[0].containerPort", "Invalid type: expected 32-bit integer, got string \"80\"", None),
        ("      containers: [{name: a, image: x, command: sleep 5}]\n", "spec.template.spec.containers[0].command", "Invalid type: expected list of strings, got string \"sleep 5\"", Some("write a list")),
        ("      nodeSelector: {gpu: true}\n      containers: [{name: a, image: x}]\n", "spec.template.spec.nodeSelector[gpu]", "Invalid type: expected string, got boolean true", Some("put the value in quotes")),
        ("      containers: [{name: a, image: x, ports: [{containerPort: 80, protocol: tcp}]}]\n", "spec.template.spec.containers[0].ports[0].protocol", "Unsupported value: \"tcp\": supported values: \"TCP\", \"UDP\", \"SCTP\"", Some("did you mean \"TCP\"?")),
        ("      containers: {name: a, image: x}\n", "spec.template.spec.containers", "Invalid type: expected list of objects, got object", None),
        ("      terminationGracePeriodSeconds: 1.5\n      containers: [{name: a, image: x}]\n", "spec.template.spec.terminationGracePeriodSeconds", "Invalid type: expected integer, got number 1.5", None),
        ("      affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: a}]}]}}}\n      containers: [{name: a, image: x}]\n", "spec.template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].operator", "Required value", None),
        ("      nodeSelector: {1: a}\n      containers: [{name: a, image: x}]\n", "spec.template.spec.nodeSelector", "Invalid key: keys must be strings, got integer 1", Some("put the key in quotes")),
        ("      containers: [{name: a, image: x, resources: {limits: {cpu: [1]}}}]\n", "spec.template.spec.containers[0].resources.limits[cpu]", "Invalid type: expected quantity such as \"500m\" or \"128Mi\", got list", None),
    ];
    for (pod, path, message, hint) in cases {
        let e = one_error(pod);
        assert_eq!((e.path.as_str(), e.message.as_str()), (path, message), "{pod}");
        if let Some(hint) = hint {
            assert!(e.hint.as_deref().unwrap_or("").contains(hint), "{e}");
        }
        assert!(e.location.is_some(), "{e}");
    }
}

#[test]
fn empty_enum_strings_are_accepted_where_kubernetes_accepts_them() {
    let found = issues(
        "      tolerations: [{operator: Exists, effect: \"\"}, {key: k, operator: \"\", value: v}]\n      volumes: [{name: v, hostPath: {path: /v, type: \"\"}}]\n      containers: [{name: a, image: x}]\n",
    );
    assert_eq!(found, []);
}

#[test]
fn positions_point_at_the_field() {
    let e = one_error("      containers:\n      - name: a\n        image: x\n        ports:\n        - containerPort: 99999\n");
    assert_eq!(e.path, "spec.template.spec.containers[0].ports[0].containerPort");
    let loc = e.location.unwrap();
    assert_eq!((loc.line, loc.column), (16, 11));
}

/// A value of every honoured field, recursively.
fn sample(kind: Kind) -> J {
    match kind {
        Kind::Str => json!("x"),
        Kind::Int32 | Kind::Int64 | Kind::IntOrStr => json!(1),
        Kind::Bool => json!(true),
        Kind::Enum(values) => json!(values.iter().find(|v| !v.is_empty()).unwrap()),
        Kind::StrList => json!(["x"]),
        Kind::StrMap => json!({"k": "v"}),
        Kind::Quantity => json!("1"),
        Kind::QuantityMap => json!({"cpu": "1"}),
        Kind::Object(schema) => sample_object(schema),
        Kind::ObjectList(schema) => json!([sample_object(schema)]),
    }
}

fn sample_object(schema: &Schema) -> J {
    J::Object(
        schema
            .fields
            .iter()
            .filter_map(|f| Some((f.name.to_string(), sample(f.kind?))))
            .collect(),
    )
}

#[test]
fn field_table_and_model_agree() {
    let every_field = sample_object(&DAEMONSET);
    let ds: DaemonSet = serde_json::from_value(every_field.clone()).unwrap();
    let back = serde_json::to_value(&ds).unwrap();
    assert_eq!(
        back, every_field,
        "a field is in one of the table and the model only"
    );
}

#[test]
fn a_leading_zero_mode_is_octal_as_kubectl_reads_it() {
    // kubectl speaks YAML 1.1, where `0644` is octal: 420, the same as writing 420 or 0o644.
    let pod = |mode: &str| {
        format!("      volumes: [{{name: c, configMap: {{name: c, defaultMode: {mode}}}}}]\n      containers: [{{name: a, image: x, volumeMounts: [{{name: c, mountPath: /c}}]}}]\n")
    };
    let revision = |mode: &str| {
        let text = format!("{HEAD}{}", pod(mode));
        let m = parse(text.as_bytes(), "t.yaml").remove(0);
        assert!(m.errors().next().is_none(), "{mode}: {:?}", m.issues);
        m.revision().unwrap()
    };
    assert_eq!(revision("0644"), revision("420"));
    assert_eq!(revision("0o644"), revision("420"));
    assert_ne!(revision("0600"), revision("420"));
}
