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
    // The base mounts volume `proc`; these give it another source.
    let vol = |source: Value| {
        let mut v = json!({"name": "proc"});
        merge(&mut v, &source);
        pod(json!({"volumes": [v]}))
    };
    let mount = |m: Value| {
        let mut v = json!({"name": "proc", "mountPath": "/host/proc"});
        merge(&mut v, &m);
        container(json!({"volumeMounts": [v]}))
    };
    let env = |from: Value| container(json!({"env": [{"name": "V", "valueFrom": from}]}));
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
            "an init container named like a container",
            pod(json!({"initContainers": [plain("agent")]})),
            vec![format!("{POD}.initContainers[0].name")],
            "Duplicate value: \"agent\"",
        ),
        (
            "duplicate init container",
            pod(json!({"initContainers": [plain("i"), plain("i")]})),
            vec![format!("{POD}.initContainers[1].name")],
            "Duplicate value: \"i\"",
        ),
        (
            "init container image missing",
            pod(json!({"initContainers": [{"name": "i"}]})),
            vec![format!("{POD}.initContainers[0].image")],
            "Required value",
        ),
        (
            "init container env like a container's",
            pod(json!({"initContainers": [{"name": "i", "image": "x:1", "env": [{"name": "X=1"}]}]})),
            vec![format!("{POD}.initContainers[0].env[0].name")],
            "printable ASCII characters other than '='",
        ),
        (
            "init container mounts a volume that does not exist",
            pod(
                json!({"initContainers": [{"name": "i", "image": "x:1", "volumeMounts": [{"name": "nope", "mountPath": "/n"}]}]}),
            ),
            vec![format!("{POD}.initContainers[0].volumeMounts[0].name")],
            "Not found",
        ),
        (
            "host ports clash inside one init container",
            pod(json!({"initContainers": [{"name": "i", "image": "x:1", "ports": [
                {"containerPort": 80, "hostPort": 80}, {"containerPort": 81, "hostPort": 80}]}]})),
            vec![format!("{POD}.initContainers[0].ports[1].hostPort")],
            "Duplicate value: \"80/TCP\"",
        ),
        (
            "a sidecar among the app containers",
            container(json!({"restartPolicy": "Always"})),
            vec![format!("{C0}.restartPolicy")],
            "Forbidden: may not be set for non-init containers",
        ),
        (
            "init container restartPolicy other than Always",
            pod(json!({"initContainers": [{"name": "i", "image": "x:1", "restartPolicy": "Never"}]})),
            vec![format!("{POD}.initContainers[0].restartPolicy")],
            "Unsupported value: \"Never\": supported values: \"Always\"",
        ),
        (
            "readiness probe on a regular init container",
            pod(
                json!({"initContainers": [{"name": "i", "image": "x:1", "readinessProbe": {"exec": {"command": ["true"]}}}]}),
            ),
            vec![format!("{POD}.initContainers[0].readinessProbe")],
            "Forbidden: may not be set for init containers without restartPolicy=Always",
        ),
        (
            "liveness and startup probes on a regular init container",
            pod(json!({"initContainers": [{"name": "i", "image": "x:1",
                "livenessProbe": {"exec": {"command": ["true"]}}, "startupProbe": {"exec": {"command": ["true"]}}}]})),
            vec![
                format!("{POD}.initContainers[0].livenessProbe"),
                format!("{POD}.initContainers[0].startupProbe"),
            ],
            "Forbidden: may not be set for init containers without restartPolicy=Always",
        ),
        (
            "a sidecar's probes are checked like a container's",
            pod(
                json!({"initContainers": [{"name": "i", "image": "x:1", "restartPolicy": "Always",
                "livenessProbe": {"exec": {"command": ["true"]}, "successThreshold": 2}}]}),
            ),
            vec![format!("{POD}.initContainers[0].livenessProbe.successThreshold")],
            "must be 1",
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
        (
            "two volume sources",
            vol(json!({"configMap": {"name": "c"}, "secret": {"secretName": "s"}})),
            vec![format!("{POD}.volumes[0]")],
            "more than 1 volume type",
        ),
        (
            "configMap name missing",
            vol(json!({"configMap": {}})),
            vec![format!("{POD}.volumes[0].configMap.name")],
            "Required value",
        ),
        (
            "configMap name syntax",
            vol(json!({"configMap": {"name": "Fluent_Bit"}})),
            vec![format!("{POD}.volumes[0].configMap.name")],
            "RFC 1123 subdomain",
        ),
        (
            "configMap item key missing",
            vol(json!({"configMap": {"name": "c", "items": [{"path": "p"}]}})),
            vec![format!("{POD}.volumes[0].configMap.items[0].key")],
            "Required value",
        ),
        (
            "configMap item key syntax",
            vol(json!({"configMap": {"name": "c", "items": [{"key": "a/b", "path": "p"}]}})),
            vec![format!("{POD}.volumes[0].configMap.items[0].key")],
            "a valid config key",
        ),
        (
            "configMap item key dot-dot",
            vol(json!({"configMap": {"name": "c", "items": [{"key": "..", "path": "p"}]}})),
            vec![format!("{POD}.volumes[0].configMap.items[0].key")],
            "a valid config key",
        ),
        (
            "configMap item path missing",
            vol(json!({"configMap": {"name": "c", "items": [{"key": "k"}]}})),
            vec![format!("{POD}.volumes[0].configMap.items[0].path")],
            "Required value",
        ),
        (
            "configMap item path absolute",
            vol(json!({"configMap": {"name": "c", "items": [{"key": "k", "path": "/etc/k"}]}})),
            vec![format!("{POD}.volumes[0].configMap.items[0].path")],
            "must be a relative path",
        ),
        (
            "configMap item path backsteps",
            vol(json!({"configMap": {"name": "c", "items": [{"key": "k", "path": "a/../../k"}]}})),
            vec![format!("{POD}.volumes[0].configMap.items[0].path")],
            "must not contain '..'",
        ),
        (
            "configMap item path reserved",
            vol(json!({"configMap": {"name": "c", "items": [{"key": "k", "path": "..data"}]}})),
            vec![format!("{POD}.volumes[0].configMap.items[0].path")],
            "must not start with '..'",
        ),
        (
            "configMap defaultMode",
            vol(json!({"configMap": {"name": "c", "defaultMode": 512}})),
            vec![format!("{POD}.volumes[0].configMap.defaultMode")],
            "between 0 and 0777 (octal)",
        ),
        (
            "configMap item mode",
            vol(json!({"configMap": {"name": "c", "items": [{"key": "k", "path": "p", "mode": 644}]}})),
            vec![format!("{POD}.volumes[0].configMap.items[0].mode")],
            "Invalid value: 644",
        ),
        (
            "secret name missing",
            vol(json!({"secret": {}})),
            vec![format!("{POD}.volumes[0].secret.secretName")],
            "Required value",
        ),
        (
            "secret defaultMode negative",
            vol(json!({"secret": {"secretName": "s", "defaultMode": -1}})),
            vec![format!("{POD}.volumes[0].secret.defaultMode")],
            "between 0 and 0777",
        ),
        (
            "downwardAPI env-only field",
            vol(
                json!({"downwardAPI": {"items": [{"path": "n", "fieldRef": {"fieldPath": "spec.nodeName"}}]}}),
            ),
            vec![format!(
                "{POD}.volumes[0].downwardAPI.items[0].fieldRef.fieldPath"
            )],
            "Unsupported value: \"spec.nodeName\"",
        ),
        (
            "downwardAPI item without ref",
            vol(json!({"downwardAPI": {"items": [{"path": "n"}]}})),
            vec![format!("{POD}.volumes[0].downwardAPI.items[0]")],
            "Required value",
        ),
        (
            "downwardAPI item with two refs",
            vol(
                json!({"downwardAPI": {"items": [{"path": "n", "fieldRef": {"fieldPath": "metadata.name"}, "resourceFieldRef": {"containerName": "agent", "resource": "limits.cpu"}}]}}),
            ),
            vec![format!("{POD}.volumes[0].downwardAPI.items[0]")],
            "can not be specified simultaneously",
        ),
        (
            "downwardAPI resource without container",
            vol(
                json!({"downwardAPI": {"items": [{"path": "c", "resourceFieldRef": {"resource": "limits.cpu"}}]}}),
            ),
            vec![format!(
                "{POD}.volumes[0].downwardAPI.items[0].resourceFieldRef.containerName"
            )],
            "Required value",
        ),
        (
            "downwardAPI resource of an unknown container",
            vol(
                json!({"downwardAPI": {"items": [{"path": "c", "resourceFieldRef": {"containerName": "nope", "resource": "limits.cpu"}}]}}),
            ),
            vec![format!(
                "{POD}.volumes[0].downwardAPI.items[0].resourceFieldRef.containerName"
            )],
            "Not found: \"nope\"",
        ),
        (
            "downwardAPI path missing",
            vol(json!({"downwardAPI": {"items": [{"fieldRef": {"fieldPath": "metadata.name"}}]}})),
            vec![format!("{POD}.volumes[0].downwardAPI.items[0].path")],
            "Required value",
        ),
        (
            "projected source empty",
            vol(json!({"projected": {"sources": [{}]}})),
            vec![format!("{POD}.volumes[0].projected.sources[0]")],
            "Required value",
        ),
        (
            "projected source with two types",
            vol(json!({"projected": {"sources": [{"configMap": {"name": "a"}, "secret": {"name": "b"}}]}})),
            vec![format!("{POD}.volumes[0].projected.sources[0]")],
            "more than 1 volume type per source",
        ),
        (
            "projected secret name missing",
            vol(json!({"projected": {"sources": [{"secret": {}}]}})),
            vec![format!("{POD}.volumes[0].projected.sources[0].secret.name")],
            "Required value",
        ),
        (
            "projected duplicate paths",
            vol(json!({"projected": {"sources": [
                {"configMap": {"name": "a", "items": [{"key": "k", "path": "p"}]}},
                {"downwardAPI": {"items": [{"path": "p", "fieldRef": {"fieldPath": "metadata.name"}}]}}
            ]}})),
            vec![format!(
                "{POD}.volumes[0].projected.sources[1].downwardAPI.items[0].path"
            )],
            "conflicting duplicate paths",
        ),
        (
            "projected defaultMode",
            vol(json!({"projected": {"defaultMode": 4096, "sources": []}})),
            vec![format!("{POD}.volumes[0].projected.defaultMode")],
            "between 0 and 0777",
        ),
        (
            "emptyDir medium",
            vol(json!({"emptyDir": {"medium": "HugePages"}})),
            vec![format!("{POD}.volumes[0].emptyDir.medium")],
            "Unsupported value: \"HugePages\"",
        ),
        (
            "emptyDir sizeLimit",
            vol(json!({"emptyDir": {"sizeLimit": "-1Gi"}})),
            vec![format!("{POD}.volumes[0].emptyDir.sizeLimit")],
            "greater than or equal to 0",
        ),
        (
            "subPath absolute",
            mount(json!({"subPath": "/etc"})),
            vec![format!("{C0}.volumeMounts[0].subPath")],
            "must be a relative path",
        ),
        (
            "subPath backsteps",
            mount(json!({"subPath": "a/../.."})),
            vec![format!("{C0}.volumeMounts[0].subPath")],
            "must not contain '..'",
        ),
        (
            "mountPropagation value",
            mount(json!({"mountPropagation": "Shared"})),
            vec![format!("{C0}.volumeMounts[0].mountPropagation")],
            "Unsupported value: \"Shared\"",
        ),
        (
            "Bidirectional without privileged",
            mount(json!({"mountPropagation": "Bidirectional"})),
            vec![format!("{C0}.volumeMounts[0].mountPropagation")],
            "only to privileged containers",
        ),
        (
            "envFrom prefix",
            container(json!({"envFrom": [{"prefix": "A=", "configMapRef": {"name": "c"}}]})),
            vec![format!("{C0}.envFrom[0].prefix")],
            "printable ASCII characters other than '='",
        ),
        (
            "envFrom without source",
            container(json!({"envFrom": [{"prefix": "A_"}]})),
            vec![format!("{C0}.envFrom[0]")],
            "must specify one of: `configMapRef` or `secretRef`",
        ),
        (
            "envFrom with two sources",
            container(json!({"envFrom": [{"configMapRef": {"name": "c"}, "secretRef": {"name": "s"}}]})),
            vec![format!("{C0}.envFrom[0]")],
            "may not have more than one field specified at a time",
        ),
        (
            "envFrom name missing",
            container(json!({"envFrom": [{"secretRef": {}}]})),
            vec![format!("{C0}.envFrom[0].secretRef.name")],
            "Required value",
        ),
        (
            "configMapKeyRef key missing",
            env(json!({"configMapKeyRef": {"name": "c"}})),
            vec![format!("{C0}.env[0].valueFrom.configMapKeyRef.key")],
            "Required value",
        ),
        (
            "configMapKeyRef name syntax",
            env(json!({"configMapKeyRef": {"name": "C", "key": "k"}})),
            vec![format!("{C0}.env[0].valueFrom.configMapKeyRef.name")],
            "RFC 1123 subdomain",
        ),
        (
            "secretKeyRef name missing",
            env(json!({"secretKeyRef": {"key": "k"}})),
            vec![format!("{C0}.env[0].valueFrom.secretKeyRef.name")],
            "Required value",
        ),
        (
            "secretKeyRef key syntax",
            env(json!({"secretKeyRef": {"name": "s", "key": "a b"}})),
            vec![format!("{C0}.env[0].valueFrom.secretKeyRef.key")],
            "a valid config key",
        ),
        (
            "valueFrom with two sources",
            env(
                json!({"fieldRef": {"fieldPath": "metadata.name"}, "configMapKeyRef": {"name": "c", "key": "k"}}),
            ),
            vec![format!("{C0}.env[0].valueFrom")],
            "may not have more than one field specified at a time",
        ),
        (
            "env fieldPath volume-only",
            env(json!({"fieldRef": {"fieldPath": "metadata.labels"}})),
            vec![format!("{C0}.env[0].valueFrom.fieldRef.fieldPath")],
            "Unsupported value: \"metadata.labels\"",
        ),
        (
            "env fieldPath subscript",
            env(json!({"fieldRef": {"fieldPath": "spec.nodeName['x']"}})),
            vec![format!("{C0}.env[0].valueFrom.fieldRef.fieldPath")],
            "does not support subscript",
        ),
        (
            "env label subscript",
            env(json!({"fieldRef": {"fieldPath": "metadata.labels['-x']"}})),
            vec![format!("{C0}.env[0].valueFrom.fieldRef.fieldPath")],
            "Invalid value",
        ),
        (
            "resourceFieldRef resource",
            env(json!({"resourceFieldRef": {"resource": "limits.nvidia.com/gpu"}})),
            vec![format!("{C0}.env[0].valueFrom.resourceFieldRef.resource")],
            "Unsupported value",
        ),
        (
            "resourceFieldRef resource missing",
            env(json!({"resourceFieldRef": {"divisor": "1"}})),
            vec![format!("{C0}.env[0].valueFrom.resourceFieldRef.resource")],
            "Required value",
        ),
        (
            "cpu divisor",
            env(json!({"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1Mi"}})),
            vec![format!("{C0}.env[0].valueFrom.resourceFieldRef.divisor")],
            "only divisor's values 1m and 1 are supported with the cpu resource",
        ),
        (
            "memory divisor",
            env(json!({"resourceFieldRef": {"resource": "limits.memory", "divisor": "3"}})),
            vec![format!("{C0}.env[0].valueFrom.resourceFieldRef.divisor")],
            "supported with the memory resource",
        ),
        (
            "memory divisor below a byte",
            env(json!({"resourceFieldRef": {"resource": "limits.memory", "divisor": "1m"}})),
            vec![format!("{C0}.env[0].valueFrom.resourceFieldRef.divisor")],
            "supported with the memory resource",
        ),
        (
            "resourceFieldRef unknown container",
            env(json!({"resourceFieldRef": {"containerName": "other", "resource": "limits.cpu"}})),
            vec![format!("{C0}.env[0].valueFrom.resourceFieldRef.containerName")],
            "Not found",
        ),
        (
            "request above limit",
            container(json!({"resources": {"limits": {"cpu": "100m"}, "requests": {"cpu": "200m"}}})),
            vec![format!("{C0}.resources.requests[cpu]")],
            "must be less than or equal to cpu limit of 100m",
        ),
        (
            "request not a quantity",
            container(json!({"resources": {"requests": {"memory": "lots"}}})),
            vec![format!("{C0}.resources.requests[memory]")],
            "quantities must match",
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
fn init_containers_and_sidecars_are_accepted_as_kubernetes_accepts_them() {
    let patch = pod(json!({"initContainers": [
        // Init containers run one at a time: the same host port in two of them is no clash.
        {"name": "first", "image": "x:1", "ports": [{"containerPort": 80, "hostPort": 80}]},
        {"name": "second", "image": "x:1", "ports": [{"containerPort": 80, "hostPort": 80}],
         "volumeMounts": [{"name": "proc", "mountPath": "/host/proc"}]},
        {"name": "proxy", "image": "x:1", "restartPolicy": "Always",
         "readinessProbe": {"exec": {"command": ["true"]}},
         "livenessProbe": {"exec": {"command": ["true"]}},
         "startupProbe": {"exec": {"command": ["true"]}}},
    ]}));
    assert_eq!(check(&patch), (vec![], vec![], vec![]));
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
            "env from a file",
            container(
                json!({"env": [{"name": "KEY", "valueFrom": {"fileKeyRef": {"path": "p", "key": "k", "volumeName": "v"}}}]}),
            ),
            "spec.template.spec.containers[0].env[0].valueFrom.fileKeyRef",
        ),
        (
            "service account token",
            pod(
                json!({"volumes": [{"name": "proc", "projected": {"sources": [{"serviceAccountToken": {"path": "t"}}]}}]}),
            ),
            "spec.template.spec.volumes[0].projected.sources[0].serviceAccountToken",
        ),
        (
            "subPathExpr",
            container(
                json!({"volumeMounts": [{"name": "proc", "mountPath": "/p", "subPathExpr": "$(NODE)"}]}),
            ),
            "spec.template.spec.containers[0].volumeMounts[0].subPathExpr",
        ),
        (
            "requests reserve nothing",
            container(json!({"resources": {"requests": {"cpu": "100m"}}})),
            "spec.template.spec.containers[0].resources.requests",
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
fn volumes_of_other_sources_are_accepted_but_not_mounted() {
    let patch = json!({"spec": {"template": {"spec": {
        "volumes": [{"name": "proc", "hostPath": {"path": "/proc"}}, {"name": "share", "nfs": {"server": "nas", "path": "/x"}}],
        "containers": [{"name": "agent", "image": "x:1", "volumeMounts": [{"name": "share", "mountPath": "/mnt"}]}]
    }}}});
    let (errors, messages, warnings) = check(&patch);
    assert!(errors.is_empty(), "{messages:?}");
    assert_eq!(
        warnings,
        [
            "spec.template.spec.volumes[1].nfs",
            "spec.template.spec.containers[0].volumeMounts[0].name"
        ]
    );
}

/// A log shipper as written for Kubernetes: configuration, credentials and pod facts in
/// files and variables.
#[test]
fn a_node_agent_using_config_maps_secrets_and_the_downward_api_is_valid_without_warnings() {
    let patch = json!({"spec": {"template": {"spec": {
        "volumes": [
            {"name": "proc", "hostPath": {"path": "/proc"}},
            {"name": "config", "configMap": {"name": "fluent-bit-config", "defaultMode": 420,
                "items": [{"key": "fluent-bit.conf", "path": "fluent-bit.conf"}, {"key": "parsers.conf", "path": "parsers/parsers.conf", "mode": 256}]}},
            {"name": "creds", "secret": {"secretName": "es-credentials", "optional": true}},
            {"name": "podinfo", "downwardAPI": {"items": [
                {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
                {"path": "tier", "fieldRef": {"fieldPath": "metadata.labels['tier']"}},
                {"path": "mem", "resourceFieldRef": {"containerName": "agent", "resource": "limits.memory", "divisor": "1Mi"}}
            ]}},
            {"name": "all", "projected": {"defaultMode": 256, "sources": [
                {"configMap": {"name": "a", "items": [{"key": "k", "path": "a/k"}]}},
                {"secret": {"name": "b", "items": [{"key": "k", "path": "b/k"}], "optional": true}},
                {"downwardAPI": {"items": [{"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}
            ]}},
            {"name": "buffer", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
            {"name": "scratch", "emptyDir": {}}
        ],
        "containers": [{
            "name": "agent", "image": "x:1",
            "envFrom": [{"configMapRef": {"name": "agent-env"}}, {"prefix": "ES_", "secretRef": {"name": "es-credentials", "optional": true}}],
            "env": [
                {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "agent-env", "key": "log.level"}}},
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "es-credentials", "key": "token", "optional": true}}},
                {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1m"}}},
                {"name": "URL", "value": "http://$(HOST_IP):2020"}
            ],
            "resources": {"limits": {"cpu": "500m", "memory": "200Mi"}},
            "volumeMounts": [
                {"name": "proc", "mountPath": "/host/proc", "readOnly": true, "mountPropagation": "HostToContainer"},
                {"name": "config", "mountPath": "/fluent-bit/etc/fluent-bit.conf", "subPath": "fluent-bit.conf"},
                {"name": "creds", "mountPath": "/creds"},
                {"name": "podinfo", "mountPath": "/etc/podinfo"},
                {"name": "all", "mountPath": "/all"},
                {"name": "buffer", "mountPath": "/buffer"},
                {"name": "scratch", "mountPath": "/tmp"}
            ]
        }]
    }}}});
    assert_eq!(check(&patch), (vec![], vec![], vec![]));
}

/// Validation and the resolver read one list, so nothing is accepted and then left unset.
#[test]
fn every_downward_field_the_resolver_reads_is_accepted_where_kubernetes_accepts_it() {
    use crate::spec::downward::FIELDS;
    for field in FIELDS {
        let env =
            container(json!({"env": [{"name": "V", "valueFrom": {"fieldRef": {"fieldPath": field.path}}}]}));
        let volume = pod(json!({"volumes": [{"name": "proc", "downwardAPI": {"items": [
            {"path": "f", "fieldRef": {"fieldPath": field.path}}
        ]}}]}));
        for (usable, patch, place) in [(field.env, env, "env"), (field.volume, volume, "volume")] {
            let (errors, messages, warnings) = check(&patch);
            assert_eq!(
                errors.is_empty(),
                usable,
                "{} in {place}: {messages:?}",
                field.path
            );
            assert!(warnings.is_empty(), "{} in {place}: {warnings:?}", field.path);
        }
    }
}

#[test]
fn the_security_context_is_honoured_and_checked() {
    let sc = |v: Value| container(json!({"securityContext": v}));
    let full = sc(json!({
        "runAsUser": 1000, "runAsGroup": 1000, "runAsNonRoot": true, "readOnlyRootFilesystem": true,
        "allowPrivilegeEscalation": false, "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"}
    }));
    assert_eq!(
        check(&full),
        (vec![], vec![], vec![]),
        "every field honoured, no warning"
    );
    let host_ipc = pod(json!({"hostIPC": true, "containers": [{"name": "a", "image": "x:1"}]}));
    assert_eq!(check(&host_ipc).0, Vec::<String>::new());
    let sp = format!("{C0}.securityContext");
    for (patch, path) in [
        (sc(json!({"runAsGroup": -1})), format!("{sp}.runAsGroup")),
        (
            sc(json!({"runAsUser": 0, "runAsNonRoot": true})),
            format!("{sp}.runAsNonRoot"),
        ),
        (
            sc(json!({"privileged": true, "allowPrivilegeEscalation": false})),
            format!("{sp}.allowPrivilegeEscalation"),
        ),
        (
            sc(json!({"capabilities": {"add": ["cap_net_admin"]}})),
            format!("{sp}.capabilities.add[0]"),
        ),
        (
            sc(json!({"seccompProfile": {"type": "Localhost"}})),
            format!("{sp}.seccompProfile.localhostProfile"),
        ),
        (
            sc(json!({"seccompProfile": {"type": "Localhost", "localhostProfile": "../x.json"}})),
            format!("{sp}.seccompProfile.localhostProfile"),
        ),
        (
            sc(json!({"seccompProfile": {"type": "Unconfined", "localhostProfile": "x.json"}})),
            format!("{sp}.seccompProfile.localhostProfile"),
        ),
        (
            sc(json!({"seccompProfile": {"type": "Strict"}})),
            format!("{sp}.seccompProfile.type"),
        ),
    ] {
        assert_eq!(check(&patch).0, std::slice::from_ref(&path), "{patch}");
    }
}
