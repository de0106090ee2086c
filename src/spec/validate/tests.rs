//! One case per validation rule: a JSON merge patch on a valid DaemonSet and the exact error
//! paths it must produce.

use serde_json::{json, Value};

use crate::spec::parse;

fn base() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": "monitoring", "labels": {"app": "agent"}},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {
                "metadata": {"labels": {"app": "agent"}},
                "spec": {
                    "containers": [{
                        "name": "agent",
                        "image": "example.com/agent:1.0",
                        "ports": [{"name": "metrics", "containerPort": 9100}],
                        "volumeMounts": [{"name": "proc", "mountPath": "/host/proc", "readOnly": true}]
                    }],
                    "volumes": [{"name": "proc", "hostPath": {"path": "/proc"}}]
                }
            }
        }
    })
}

/// RFC 7386 merge patch: objects merge, null deletes, anything else replaces.
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

/// Patches inside the first container or the pod spec, to keep the table short.
fn container(patch: Value) -> Value {
    let mut c = base()["spec"]["template"]["spec"]["containers"][0].clone();
    merge(&mut c, &patch);
    pod(json!({"containers": [c]}))
}

fn pod(patch: Value) -> Value {
    json!({"spec": {"template": {"spec": patch}}})
}

fn spec(patch: Value) -> Value {
    json!({"spec": patch})
}

/// (paths of errors, messages, paths of warnings) for a patched manifest.
fn check(patch: &Value) -> (Vec<String>, Vec<String>, Vec<String>) {
    let mut doc = base();
    merge(&mut doc, patch);
    let manifests = parse(doc.to_string().as_bytes(), "test.json");
    assert_eq!(manifests.len(), 1);
    let m = &manifests[0];
    (
        m.errors().map(|i| i.path.clone()).collect(),
        m.errors().map(|i| i.message.clone()).collect(),
        m.warnings().map(|i| i.path.clone()).collect(),
    )
}

const C0: &str = "spec.template.spec.containers[0]";
const POD: &str = "spec.template.spec";

#[test]
fn the_base_manifest_is_valid_without_warnings() {
    assert_eq!(check(&json!({})), (vec![], vec![], vec![]));
}

#[test]
fn every_rule_reports_its_path() {
    let two = |a: Value, b: Value| pod(json!({"containers": [a, b]}));
    let plain = |name: &str| json!({"name": name, "image": "x:1"});
    let probe = |p: Value| container(json!({"livenessProbe": p}));
    let tol = |t: Value| pod(json!({"tolerations": [t]}));
    let affinity = |term: Value| {
        pod(
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}}}),
        )
    };
    let expr = |e: Value| affinity(json!({"matchExpressions": [e]}));
    let field = |e: Value| affinity(json!({"matchFields": [e]}));
    let ru = |u: Value, s: Value| {
        spec(json!({"updateStrategy": {"rollingUpdate": {"maxUnavailable": u, "maxSurge": s}}}))
    };
    let na = "spec.template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms";
    let cases: Vec<(&str, Value, Vec<String>, &str)> = vec![
        (
            "apiVersion",
            json!({"apiVersion": "extensions/v1beta1"}),
            vec!["apiVersion".into()],
            "Unsupported value: \"extensions/v1beta1\"",
        ),
        (
            "kind missing",
            json!({"kind": null}),
            vec!["kind".into()],
            "Required value",
        ),
        (
            "name missing",
            json!({"metadata": {"name": null}}),
            vec!["metadata.name".into()],
            "Required value",
        ),
        (
            "name syntax",
            json!({"metadata": {"name": "Agent_1"}}),
            vec!["metadata.name".into()],
            "RFC 1123 subdomain",
        ),
        (
            "namespace syntax",
            json!({"metadata": {"namespace": "a.b"}}),
            vec!["metadata.namespace".into()],
            "RFC 1123 label",
        ),
        (
            "label key",
            json!({"metadata": {"labels": {"bad key": "x"}}}),
            vec!["metadata.labels".into()],
            "Invalid value: \"bad key\"",
        ),
        (
            "label value",
            json!({"metadata": {"labels": {"k": "-x"}}}),
            vec!["metadata.labels[k]".into()],
            "Invalid value: \"-x\"",
        ),
        (
            "annotation key",
            json!({"metadata": {"annotations": {"/x": "y"}}}),
            vec!["metadata.annotations".into()],
            "Invalid value",
        ),
        (
            "annotations size",
            json!({"metadata": {"annotations": {"big": "x".repeat(300 * 1024)}}}),
            vec!["metadata.annotations".into()],
            "Too long",
        ),
        (
            "selector missing",
            spec(json!({"selector": null})),
            vec!["spec.selector".into()],
            "Required value",
        ),
        (
            "selector empty",
            spec(json!({"selector": {"matchLabels": null}})),
            vec!["spec.selector".into()],
            "empty selector is invalid for daemonset",
        ),
        (
            "selector mismatch",
            spec(json!({"selector": {"matchLabels": {"app": "other"}}})),
            vec!["spec.template.metadata.labels".into()],
            "`selector` does not match template `labels`",
        ),
        (
            "selector In without values",
            spec(json!({"selector": {"matchExpressions": [{"key": "app", "operator": "In"}]}})),
            vec!["spec.selector.matchExpressions[0].values".into()],
            "Required value",
        ),
        (
            "selector Exists with values",
            spec(
                json!({"selector": {"matchExpressions": [{"key": "app", "operator": "Exists", "values": ["a"]}]}}),
            ),
            vec!["spec.selector.matchExpressions[0].values".into()],
            "Forbidden",
        ),
        (
            "template label",
            json!({"spec": {"template": {"metadata": {"labels": {"tier": "a b"}}}}}),
            vec!["spec.template.metadata.labels[tier]".into()],
            "Invalid value",
        ),
        (
            "no containers",
            pod(json!({"containers": []})),
            vec![format!("{POD}.containers")],
            "Required value",
        ),
        (
            "duplicate container",
            two(plain("a"), plain("a")),
            vec![format!("{POD}.containers[1].name")],
            "Duplicate value: \"a\"",
        ),
        (
            "container name",
            container(json!({"name": "Agent"})),
            vec![format!("{C0}.name")],
            "RFC 1123 label",
        ),
        (
            "container name missing",
            container(json!({"name": null})),
            vec![format!("{C0}.name")],
            "Required value",
        ),
        (
            "image missing",
            container(json!({"image": null})),
            vec![format!("{C0}.image")],
            "Required value",
        ),
        (
            "image whitespace",
            container(json!({"image": " x:1"})),
            vec![format!("{C0}.image")],
            "whitespace",
        ),
        (
            "containerPort missing",
            container(json!({"ports": [{"name": "m"}]})),
            vec![format!("{C0}.ports[0].containerPort")],
            "Required value",
        ),
        (
            "containerPort range",
            container(json!({"ports": [{"containerPort": 70000}]})),
            vec![format!("{C0}.ports[0].containerPort")],
            "between 1 and 65535",
        ),
        (
            "containerPort negative",
            container(json!({"ports": [{"containerPort": -1}]})),
            vec![format!("{C0}.ports[0].containerPort")],
            "between 1 and 65535",
        ),
        (
            "hostPort range",
            container(json!({"ports": [{"containerPort": 80, "hostPort": 65536}]})),
            vec![format!("{C0}.ports[0].hostPort")],
            "between 1 and 65535",
        ),
        (
            "hostNetwork hostPort",
            json!({"spec": {"template": {"spec": {"hostNetwork": true, "containers": [{"name": "a", "image": "x:1", "ports": [{"containerPort": 80, "hostPort": 8080}]}]}}}}),
            vec![format!("{C0}.ports[0].hostPort")],
            "must match `containerPort`",
        ),
        (
            "host port conflict",
            two(
                json!({"name": "a", "image": "x:1", "ports": [{"containerPort": 80, "hostPort": 80}]}),
                json!({"name": "b", "image": "x:1", "ports": [{"containerPort": 81, "hostPort": 80}]}),
            ),
            vec![format!("{POD}.containers[1].ports[0].hostPort")],
            "Duplicate value: \"80/TCP\"",
        ),
        (
            "port name",
            container(json!({"ports": [{"name": "Metrics", "containerPort": 1}]})),
            vec![format!("{C0}.ports[0].name")],
            "at most 15 characters",
        ),
        (
            "port name duplicate",
            container(
                json!({"ports": [{"name": "m", "containerPort": 1}, {"name": "m", "containerPort": 2}]}),
            ),
            vec![format!("{C0}.ports[1].name")],
            "Duplicate value",
        ),
        (
            "env name",
            container(json!({"env": [{"name": "X=1", "value": "v"}]})),
            vec![format!("{C0}.env[0].name")],
            "printable ASCII characters other than '='",
        ),
        (
            "env value and valueFrom",
            container(
                json!({"env": [{"name": "N", "value": "v", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]}),
            ),
            vec![format!("{C0}.env[0].valueFrom")],
            "may not be specified when `value` is not empty",
        ),
        (
            "env fieldPath",
            container(json!({"env": [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "spec.node"}}}]})),
            vec![format!("{C0}.env[0].valueFrom.fieldRef.fieldPath")],
            "Unsupported value: \"spec.node\"",
        ),
        (
            "env fieldRef apiVersion",
            container(
                json!({"env": [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName", "apiVersion": "v2"}}}]}),
            ),
            vec![format!("{C0}.env[0].valueFrom.fieldRef.apiVersion")],
            "Unsupported value",
        ),
        (
            "env valueFrom empty",
            container(json!({"env": [{"name": "N", "valueFrom": {}}]})),
            vec![format!("{C0}.env[0].valueFrom")],
            "must specify one of",
        ),
        (
            "cpu limit",
            container(json!({"resources": {"limits": {"cpu": "lots"}}})),
            vec![format!("{C0}.resources.limits[cpu]")],
            "quantities must match",
        ),
        (
            "memory limit negative",
            container(json!({"resources": {"limits": {"memory": "-1Gi"}}})),
            vec![format!("{C0}.resources.limits[memory]")],
            "greater than or equal to 0",
        ),
        (
            "mount unknown volume",
            container(json!({"volumeMounts": [{"name": "nope", "mountPath": "/x"}]})),
            vec![format!("{C0}.volumeMounts[0].name")],
            "Not found: \"nope\"",
        ),
        (
            "mount path missing",
            container(json!({"volumeMounts": [{"name": "proc"}]})),
            vec![format!("{C0}.volumeMounts[0].mountPath")],
            "Required value",
        ),
        (
            "mount path duplicate",
            container(
                json!({"volumeMounts": [{"name": "proc", "mountPath": "/a"}, {"name": "proc", "mountPath": "/a"}]}),
            ),
            vec![format!("{C0}.volumeMounts[1].mountPath")],
            "must be unique",
        ),
        (
            "volume without type",
            pod(json!({"volumes": [{"name": "proc"}]})),
            vec![format!("{POD}.volumes[0]")],
            "Required value",
        ),
        (
            "volume name",
            pod(
                json!({"volumes": [{"name": "proc", "hostPath": {"path": "/proc"}}, {"name": "Bad_Name", "hostPath": {"path": "/x"}}]}),
            ),
            vec![format!("{POD}.volumes[1].name")],
            "RFC 1123 label",
        ),
        (
            "volume duplicate",
            pod(
                json!({"volumes": [{"name": "proc", "hostPath": {"path": "/proc"}}, {"name": "proc", "hostPath": {"path": "/x"}}]}),
            ),
            vec![format!("{POD}.volumes[1].name")],
            "Duplicate value",
        ),
        (
            "hostPath path missing",
            pod(json!({"volumes": [{"name": "proc", "hostPath": {}}]})),
            vec![format!("{POD}.volumes[0].hostPath.path")],
            "Required value",
        ),
        (
            "hostPath backsteps",
            pod(json!({"volumes": [{"name": "proc", "hostPath": {"path": "/var/../etc"}}]})),
            vec![format!("{POD}.volumes[0].hostPath.path")],
            "must not contain '..'",
        ),
        (
            "hostPath relative",
            pod(json!({"volumes": [{"name": "proc", "hostPath": {"path": "var/log"}}]})),
            vec![format!("{POD}.volumes[0].hostPath.path")],
            "absolute",
        ),
        (
            "two volume types",
            pod(json!({"volumes": [{"name": "proc", "hostPath": {"path": "/proc"}, "emptyDir": {}}]})),
            vec![format!("{POD}.volumes[0]")],
            "more than 1 volume type",
        ),
        (
            "probe without handler",
            probe(json!({"periodSeconds": 5})),
            vec![format!("{C0}.livenessProbe")],
            "Required value",
        ),
        (
            "probe with two handlers",
            probe(json!({"exec": {"command": ["true"]}, "tcpSocket": {"port": 1}})),
            vec![format!("{C0}.livenessProbe")],
            "more than 1 handler type",
        ),
        (
            "exec without command",
            probe(json!({"exec": {}})),
            vec![format!("{C0}.livenessProbe.exec.command")],
            "Required value",
        ),
        (
            "httpGet port range",
            probe(json!({"httpGet": {"port": 0}})),
            vec![format!("{C0}.livenessProbe.httpGet.port")],
            "between 1 and 65535",
        ),
        (
            "tcpSocket port name",
            probe(json!({"tcpSocket": {"port": "Bad--name"}})),
            vec![format!("{C0}.livenessProbe.tcpSocket.port")],
            "at most 15 characters",
        ),
        (
            "liveness successThreshold",
            probe(json!({"exec": {"command": ["true"]}, "successThreshold": 2})),
            vec![format!("{C0}.livenessProbe.successThreshold")],
            "must be 1",
        ),
        (
            "probe negative period",
            container(json!({"readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": -5}})),
            vec![format!("{C0}.readinessProbe.periodSeconds")],
            "greater than or equal to 0",
        ),
        (
            "runAsUser",
            container(json!({"securityContext": {"runAsUser": -1}})),
            vec![format!("{C0}.securityContext.runAsUser")],
            "between 0 and 2147483647",
        ),
        (
            "restartPolicy",
            pod(json!({"restartPolicy": "Never"})),
            vec![format!("{POD}.restartPolicy")],
            "Unsupported value: \"Never\": supported values: \"Always\"",
        ),
        (
            "grace period",
            pod(json!({"terminationGracePeriodSeconds": -1})),
            vec![format!("{POD}.terminationGracePeriodSeconds")],
            "greater than or equal to 0",
        ),
        (
            "nodeName",
            pod(json!({"nodeName": "Node_1"})),
            vec![format!("{POD}.nodeName")],
            "RFC 1123 subdomain",
        ),
        (
            "nodeSelector value",
            pod(json!({"nodeSelector": {"zone": "a b"}})),
            vec![format!("{POD}.nodeSelector[zone]")],
            "Invalid value",
        ),
        (
            "minReadySeconds",
            spec(json!({"minReadySeconds": -1})),
            vec!["spec.minReadySeconds".into()],
            "greater than or equal to 0",
        ),
        (
            "revisionHistoryLimit",
            spec(json!({"revisionHistoryLimit": -1})),
            vec!["spec.revisionHistoryLimit".into()],
            "greater than or equal to 0",
        ),
        (
            "both budgets zero",
            ru(json!(0), json!("0%")),
            vec!["spec.updateStrategy.rollingUpdate.maxUnavailable".into()],
            "may not be 0 when `maxSurge` is 0",
        ),
        (
            "percent over 100",
            ru(json!("110%"), json!(0)),
            vec!["spec.updateStrategy.rollingUpdate.maxUnavailable".into()],
            "must not be greater than 100%",
        ),
        (
            "percent syntax",
            ru(json!(1), json!("5")),
            vec!["spec.updateStrategy.rollingUpdate.maxSurge".into()],
            "valid percent string",
        ),
        (
            "negative budget",
            ru(json!(-1), json!(1)),
            vec!["spec.updateStrategy.rollingUpdate.maxUnavailable".into()],
            "greater than or equal to 0",
        ),
        (
            "toleration empty key",
            tol(json!({"operator": "Equal", "value": "x"})),
            vec![format!("{POD}.tolerations[0].operator")],
            "operator must be Exists when `key` is empty",
        ),
        (
            "toleration Exists value",
            tol(json!({"key": "k", "operator": "Exists", "value": "x"})),
            vec![format!("{POD}.tolerations[0].operator")],
            "value must be empty when `operator` is 'Exists'",
        ),
        (
            "toleration seconds",
            tol(json!({"key": "k", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 5})),
            vec![format!("{POD}.tolerations[0].effect")],
            "effect must be 'NoExecute'",
        ),
        (
            "toleration seconds without effect",
            tol(json!({"key": "k", "operator": "Exists", "tolerationSeconds": 5})),
            vec![format!("{POD}.tolerations[0].effect")],
            "effect must be 'NoExecute'",
        ),
        (
            "toleration key",
            tol(json!({"key": "bad key", "operator": "Exists"})),
            vec![format!("{POD}.tolerations[0].key")],
            "Invalid value",
        ),
        (
            "toleration value",
            tol(json!({"key": "k", "value": "bad value"})),
            vec![format!("{POD}.tolerations[0].value")],
            "Invalid value",
        ),
        (
            "affinity without terms",
            pod(
                json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}}}),
            ),
            vec![na.into()],
            "Required value",
        ),
        (
            "In without values",
            expr(json!({"key": "zone", "operator": "In"})),
            vec![format!("{na}[0].matchExpressions[0].values")],
            "Required value",
        ),
        (
            "NotIn without values",
            expr(json!({"key": "zone", "operator": "NotIn", "values": []})),
            vec![format!("{na}[0].matchExpressions[0].values")],
            "Required value",
        ),
        (
            "Exists with values",
            expr(json!({"key": "zone", "operator": "Exists", "values": ["a"]})),
            vec![format!("{na}[0].matchExpressions[0].values")],
            "Forbidden",
        ),
        (
            "DoesNotExist with values",
            expr(json!({"key": "zone", "operator": "DoesNotExist", "values": ["a"]})),
            vec![format!("{na}[0].matchExpressions[0].values")],
            "Forbidden",
        ),
        (
            "Gt with two values",
            expr(json!({"key": "cores", "operator": "Gt", "values": ["1", "2"]})),
            vec![format!("{na}[0].matchExpressions[0].values")],
            "Required value",
        ),
        (
            "Lt not an integer",
            expr(json!({"key": "cores", "operator": "Lt", "values": ["many"]})),
            vec![format!("{na}[0].matchExpressions[0].values[0]")],
            "must be an integer",
        ),
        (
            "expression key",
            expr(json!({"key": "-zone", "operator": "Exists"})),
            vec![format!("{na}[0].matchExpressions[0].key")],
            "Invalid value",
        ),
        (
            "matchFields key",
            field(json!({"key": "metadata.labels", "operator": "In", "values": ["a"]})),
            vec![format!("{na}[0].matchFields[0].key")],
            "supported values: \"metadata.name\"",
        ),
        (
            "matchFields operator",
            field(json!({"key": "metadata.name", "operator": "Exists"})),
            vec![format!("{na}[0].matchFields[0].operator")],
            "supported values: \"In\", \"NotIn\"",
        ),
        (
            "matchFields values",
            field(json!({"key": "metadata.name", "operator": "In", "values": ["a", "b"]})),
            vec![format!("{na}[0].matchFields[0].values")],
            "Required value",
        ),
    ];
    for (name, patch, want_paths, fragment) in cases {
        let (paths, messages, _) = check(&patch);
        assert_eq!(paths, want_paths, "{name}: {messages:?}");
        assert!(
            messages.iter().any(|m| m.contains(fragment)),
            "{name}: expected {fragment:?} in {messages:?}"
        );
    }
}

#[test]
fn all_problems_are_reported_at_once() {
    let patch = json!({
        "metadata": {"name": null},
        "spec": {"minReadySeconds": -1, "template": {"spec": {"restartPolicy": "OnFailure", "containers": [{"name": "a"}]}}}
    });
    let (paths, _, _) = check(&patch);
    assert_eq!(
        paths,
        [
            "metadata.name",
            "spec.template.spec.containers[0].image",
            "spec.template.spec.restartPolicy",
            "spec.minReadySeconds"
        ]
    );
}

#[test]
fn partially_honoured_fields_are_warnings() {
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "env from another field",
            container(
                json!({"env": [{"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}}]}),
            ),
            "spec.template.spec.containers[0].env[0].valueFrom.fieldRef.fieldPath",
        ),
        (
            "env from a secret",
            container(
                json!({"env": [{"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}),
            ),
            "spec.template.spec.containers[0].env[0].valueFrom.secretKeyRef",
        ),
        (
            "gpu limit",
            container(json!({"resources": {"limits": {"nvidia.com/gpu": 1}}})),
            "spec.template.spec.containers[0].resources.limits[nvidia.com/gpu]",
        ),
        (
            "probe on a missing port name",
            container(json!({"readinessProbe": {"httpGet": {"port": "http"}}})),
            "spec.template.spec.containers[0].readinessProbe.httpGet.port",
        ),
        (
            "rollingUpdate with OnDelete",
            spec(json!({"updateStrategy": {"type": "OnDelete", "rollingUpdate": {"maxUnavailable": 2}}})),
            "spec.updateStrategy.rollingUpdate",
        ),
    ];
    for (name, patch, want) in cases {
        let (errors, messages, warnings) = check(&patch);
        assert!(errors.is_empty(), "{name}: {messages:?}");
        assert_eq!(warnings, [want], "{name}");
    }
}

#[test]
fn config_map_volumes_are_accepted_but_not_mounted() {
    let patch = json!({"spec": {"template": {"spec": {
        "volumes": [{"name": "proc", "hostPath": {"path": "/proc"}}, {"name": "config", "configMap": {"name": "agent"}}],
        "containers": [{"name": "agent", "image": "x:1", "volumeMounts": [{"name": "config", "mountPath": "/etc/agent"}]}]
    }}}});
    let (errors, messages, warnings) = check(&patch);
    assert!(errors.is_empty(), "{messages:?}");
    assert_eq!(
        warnings,
        [
            "spec.template.spec.volumes[1].configMap",
            "spec.template.spec.containers[0].volumeMounts[0].name"
        ]
    );
}
