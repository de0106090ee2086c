//! The ConfigMap and Secret keys a pod template names (volume items, key refs), with their field paths, so an apply can refuse a key that the named object does not have.

use crate::spec::container::Container;
use crate::spec::issue::FieldPath;
use crate::spec::pod::PodTemplateSpec;
use crate::spec::volume::KeyToPath;

/// Which kind of object a reference names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RefKind {
    ConfigMap,
    Secret,
}

impl RefKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RefKind::ConfigMap => "configmap",
            RefKind::Secret => "secret",
        }
    }
}

/// One key a template reads from a ConfigMap or Secret without `optional: true`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRef {
    pub kind: RefKind,
    pub name: String,
    pub key: String,
    /// Where the key is named, e.g. `spec.template.spec.volumes[0].configMap.items[1].key`.
    pub path: String,
}

/// Every required key reference of `template`, in template order.
pub fn key_refs(template: &PodTemplateSpec) -> Vec<KeyRef> {
    let mut out = Vec::new();
    let spec = FieldPath::root().child("spec").child("template").child("spec");
    let items =
        |out: &mut Vec<KeyRef>, kind, name: &str, items: &[KeyToPath], optional: bool, path: FieldPath| {
            if optional {
                return;
            }
            for (i, item) in items.iter().enumerate() {
                out.push(KeyRef {
                    kind,
                    name: name.to_string(),
                    key: item.key.clone(),
                    path: path.child("items").index(i).child("key").to_string(),
                });
            }
        };
    for (i, v) in template.spec.volumes.iter().enumerate() {
        let p = spec.child("volumes").index(i);
        if let Some(cm) = &v.config_map {
            items(
                &mut out,
                RefKind::ConfigMap,
                &cm.name,
                &cm.items,
                cm.optional,
                p.child("configMap"),
            );
        }
        if let Some(s) = &v.secret {
            items(
                &mut out,
                RefKind::Secret,
                &s.secret_name,
                &s.items,
                s.optional,
                p.child("secret"),
            );
        }
        if let Some(proj) = &v.projected {
            for (j, source) in proj.sources.iter().enumerate() {
                let sp = p.child("projected").child("sources").index(j);
                if let Some(cm) = &source.config_map {
                    items(
                        &mut out,
                        RefKind::ConfigMap,
                        &cm.name,
                        &cm.items,
                        cm.optional,
                        sp.child("configMap"),
                    );
                }
                if let Some(s) = &source.secret {
                    items(
                        &mut out,
                        RefKind::Secret,
                        &s.name,
                        &s.items,
                        s.optional,
                        sp.child("secret"),
                    );
                }
            }
        }
    }
    for (i, c) in template.spec.containers.iter().enumerate() {
        env_refs(&mut out, c, spec.child("containers").index(i));
    }
    out
}

fn env_refs(out: &mut Vec<KeyRef>, c: &Container, path: FieldPath) {
    for (i, e) in c.env.iter().enumerate() {
        let Some(from) = &e.value_from else { continue };
        let p = path.child("env").index(i).child("valueFrom");
        if let Some(r) = from.config_map_key_ref.as_ref().filter(|r| !r.optional) {
            out.push(KeyRef {
                kind: RefKind::ConfigMap,
                name: r.name.clone(),
                key: r.key.clone(),
                path: p.child("configMapKeyRef").child("key").to_string(),
            });
        }
        if let Some(r) = from.secret_key_ref.as_ref().filter(|r| !r.optional) {
            out.push(KeyRef {
                kind: RefKind::Secret,
                name: r.name.clone(),
                key: r.key.clone(),
                path: p.child("secretKeyRef").child("key").to_string(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_keys_are_listed_with_their_paths_and_optional_ones_are_not() {
        let t: PodTemplateSpec = serde_json::from_value(serde_json::json!({
            "spec": {
                "containers": [{"name": "a", "image": "x", "env": [
                    {"name": "L", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "level"}}},
                    {"name": "T", "valueFrom": {"secretKeyRef": {"name": "tok", "key": "token", "optional": true}}},
                ]}],
                "volumes": [
                    {"name": "c", "configMap": {"name": "cfg", "items": [{"key": "a.conf", "path": "a"}]}},
                    {"name": "o", "configMap": {"name": "cfg", "optional": true, "items": [{"key": "b", "path": "b"}]}},
                    {"name": "p", "projected": {"sources": [{"secret": {"name": "tok", "items": [{"key": "ca", "path": "ca"}]}}]}},
                ],
            }
        }))
        .unwrap();
        let owned: Vec<(RefKind, String, String, String)> = key_refs(&t)
            .into_iter()
            .map(|r| (r.kind, r.name, r.key, r.path))
            .collect();
        assert_eq!(
            owned,
            [
                (
                    RefKind::ConfigMap,
                    "cfg".into(),
                    "a.conf".into(),
                    "spec.template.spec.volumes[0].configMap.items[0].key".into()
                ),
                (
                    RefKind::Secret,
                    "tok".into(),
                    "ca".into(),
                    "spec.template.spec.volumes[2].projected.sources[0].secret.items[0].key".into()
                ),
                (
                    RefKind::ConfigMap,
                    "cfg".into(),
                    "level".into(),
                    "spec.template.spec.containers[0].env[0].valueFrom.configMapKeyRef.key".into()
                ),
            ]
        );
    }
}
