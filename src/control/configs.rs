//! ConfigMaps and Secrets in the store: their records keyed by `namespace/name`, Secrets sealed, and how applying and deleting them changes the store.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::store::{Applied, ApplyOutcome, Response, Store};
use crate::security::at_rest::{OpenError, SecretBox};
use crate::spec::meta::ObjectMeta;
use crate::spec::{ConfigMap, Secret};

/// The store key of a namespaced object.
pub fn key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// A ConfigMap as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigMapRecord {
    pub config_map: ConfigMap,
    /// Bumped on every change, like `metadata.generation`.
    pub generation: u64,
    pub created_at: u64,
    pub updated_at: u64,
}

/// A Secret as it travels through Raft and rests in the store: what `get secrets` may show to
/// anyone (names, type, key sizes) in the clear, the values sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedSecret {
    pub metadata: ObjectMeta,
    #[serde(rename = "type")]
    pub type_: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immutable: Option<bool>,
    /// Bytes of each value, by key.
    pub sizes: BTreeMap<String, usize>,
    /// The JSON of the base64 `data` map, sealed for `namespace/name`.
    pub sealed: String,
}

impl SealedSecret {
    /// Seals a normalised Secret (`stringData` already folded into `data`).
    pub fn seal(secret: &Secret, seal: &SecretBox) -> SealedSecret {
        let sizes = secret
            .decoded()
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.len()))
            .collect();
        let data = serde_json::to_vec(&secret.data).expect("a string map serializes");
        SealedSecret {
            metadata: secret.metadata.clone(),
            type_: secret.type_.clone(),
            immutable: secret.immutable,
            sizes,
            sealed: seal.seal(
                &self::key(&secret.metadata.namespace, &secret.metadata.name),
                &data,
            ),
        }
    }

    /// The Secret with its values, for the admin and for the agent that mounts it.
    pub fn open(&self, seal: &SecretBox) -> Result<Secret, OpenError> {
        let identity = key(&self.metadata.namespace, &self.metadata.name);
        let bytes = seal.open(&identity, &self.sealed)?;
        let data = serde_json::from_slice(&bytes).map_err(|_| OpenError { identity })?;
        Ok(Secret {
            api_version: "v1".into(),
            kind: "Secret".into(),
            metadata: self.metadata.clone(),
            data,
            string_data: BTreeMap::new(),
            type_: self.type_.clone(),
            immutable: self.immutable,
        })
    }
}

/// A Secret as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRecord {
    pub secret: SealedSecret,
    pub generation: u64,
    pub created_at: u64,
    pub updated_at: u64,
}

/// The kinds of configuration object the store keeps beside DaemonSets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfigKind {
    ConfigMap,
    Secret,
}

impl ConfigKind {
    /// The lowercase name kubectl prints (`configmap/x`).
    pub fn as_str(self) -> &'static str {
        match self {
            ConfigKind::ConfigMap => "configmap",
            ConfigKind::Secret => "secret",
        }
    }
}

impl Store {
    /// Why applying these objects would be refused (an immutable object changed), if it would.
    pub(crate) fn config_conflict(
        &self,
        config_maps: &[ConfigMap],
        secrets: &[SealedSecret],
    ) -> Option<String> {
        let immutable = |what: &str, name: &str| {
            format!(
                "{what} {name} is immutable: its data cannot change; delete it and apply it again, or give the new data another name"
            )
        };
        for cm in config_maps {
            let k = key(&cm.metadata.namespace, &cm.metadata.name);
            if let Some(old) = self.config_maps.get(&k) {
                let changed = old.config_map.data != cm.data || old.config_map.binary_data != cm.binary_data;
                if old.config_map.immutable == Some(true) && (changed || cm.immutable != Some(true)) {
                    return Some(immutable("configmap", &k));
                }
            }
        }
        for s in secrets {
            let k = key(&s.metadata.namespace, &s.metadata.name);
            if let Some(old) = self.secrets.get(&k) {
                if old.secret.immutable == Some(true)
                    && (old.secret.sealed != s.sealed || s.immutable != Some(true))
                {
                    return Some(immutable("secret", &k));
                }
            }
        }
        None
    }

    pub(crate) fn apply_config_map(&mut self, cm: &ConfigMap, at: u64) -> Applied {
        let k = key(&cm.metadata.namespace, &cm.metadata.name);
        let outcome = match self.config_maps.get_mut(&k) {
            Some(r) if r.config_map == *cm => ApplyOutcome::Unchanged,
            Some(r) => {
                r.config_map = cm.clone();
                r.generation += 1;
                r.updated_at = at;
                ApplyOutcome::Configured
            }
            None => {
                self.config_maps.insert(
                    k.clone(),
                    ConfigMapRecord {
                        config_map: cm.clone(),
                        generation: 1,
                        created_at: at,
                        updated_at: at,
                    },
                );
                ApplyOutcome::Created
            }
        };
        Applied {
            name: cm.metadata.name.clone(),
            outcome,
            revision: self.config_maps[&k].generation,
            kind: "ConfigMap".into(),
            namespace: cm.metadata.namespace.clone(),
        }
    }

    pub(crate) fn apply_secret(&mut self, s: &SealedSecret, at: u64) -> Applied {
        let k = key(&s.metadata.namespace, &s.metadata.name);
        let outcome = match self.secrets.get_mut(&k) {
            Some(r) if r.secret == *s => ApplyOutcome::Unchanged,
            Some(r) => {
                r.secret = s.clone();
                r.generation += 1;
                r.updated_at = at;
                ApplyOutcome::Configured
            }
            None => {
                self.secrets.insert(
                    k.clone(),
                    SecretRecord {
                        secret: s.clone(),
                        generation: 1,
                        created_at: at,
                        updated_at: at,
                    },
                );
                ApplyOutcome::Created
            }
        };
        Applied {
            name: s.metadata.name.clone(),
            outcome,
            revision: self.secrets[&k].generation,
            kind: "Secret".into(),
            namespace: s.metadata.namespace.clone(),
        }
    }

    pub(crate) fn delete_config(&mut self, kind: ConfigKind, namespace: &str, name: &str) -> Response {
        let k = key(namespace, name);
        let found = match kind {
            ConfigKind::ConfigMap => self.config_maps.remove(&k).is_some(),
            ConfigKind::Secret => self.secrets.remove(&k).is_some(),
        };
        if found {
            Response::Ok
        } else {
            Response::NotFound { name: k }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::store::Command;

    fn cm(name: &str, value: &str) -> ConfigMap {
        ConfigMap {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            metadata: ObjectMeta {
                name: name.into(),
                namespace: "logging".into(),
                ..ObjectMeta::default()
            },
            data: BTreeMap::from([("conf".into(), value.into())]),
            ..ConfigMap::default()
        }
    }

    fn secret(value: &str) -> Secret {
        let mut s = Secret {
            api_version: "v1".into(),
            kind: "Secret".into(),
            metadata: ObjectMeta {
                name: "creds".into(),
                namespace: "logging".into(),
                ..ObjectMeta::default()
            },
            string_data: BTreeMap::from([("token".into(), value.into())]),
            ..Secret::default()
        };
        s.normalize();
        s
    }

    fn apply(store: &mut Store, config_maps: Vec<ConfigMap>, secrets: Vec<SealedSecret>) -> Response {
        store.apply(&Command::Apply {
            daemonsets: vec![],
            config_maps,
            secrets,
            warnings: Default::default(),
            at: 10,
        })
    }

    fn outcomes(r: Response) -> Vec<(String, ApplyOutcome)> {
        match r {
            Response::Applied { results } => results.into_iter().map(|a| (a.kind, a.outcome)).collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn config_maps_are_created_configured_and_unchanged_by_namespace_and_name() {
        let mut store = Store::default();
        assert_eq!(
            outcomes(apply(&mut store, vec![cm("conf", "a")], vec![])),
            [("ConfigMap".into(), ApplyOutcome::Created)]
        );
        assert_eq!(
            outcomes(apply(&mut store, vec![cm("conf", "a")], vec![])),
            [("ConfigMap".into(), ApplyOutcome::Unchanged)]
        );
        assert_eq!(
            outcomes(apply(&mut store, vec![cm("conf", "b")], vec![])),
            [("ConfigMap".into(), ApplyOutcome::Configured)]
        );
        let mut other = cm("conf", "z");
        other.metadata.namespace = "default".into();
        assert_eq!(
            outcomes(apply(&mut store, vec![other], vec![])),
            [("ConfigMap".into(), ApplyOutcome::Created)]
        );
        assert_eq!(store.config_maps.len(), 2);
        assert_eq!(store.config_maps["logging/conf"].generation, 2);
        assert_eq!(
            store.delete_config(ConfigKind::ConfigMap, "logging", "conf"),
            Response::Ok
        );
        assert!(matches!(
            store.delete_config(ConfigKind::ConfigMap, "logging", "conf"),
            Response::NotFound { .. }
        ));
    }

    #[test]
    fn secrets_rest_sealed_and_reapplying_the_same_data_is_unchanged() {
        let seal = SecretBox::new(&[3; 32]);
        let mut store = Store::default();
        let sealed = SealedSecret::seal(&secret("hunter2"), &seal);
        assert_eq!(sealed.sizes["token"], 7);
        assert_eq!(
            outcomes(apply(&mut store, vec![], vec![sealed.clone()])),
            [("Secret".into(), ApplyOutcome::Created)]
        );
        let again = SealedSecret::seal(&secret("hunter2"), &seal);
        assert_eq!(
            outcomes(apply(&mut store, vec![], vec![again])),
            [("Secret".into(), ApplyOutcome::Unchanged)]
        );
        let json = serde_json::to_string(&store).unwrap();
        assert!(
            !json.contains("hunter2") && !json.contains("aHVudGVyMg"),
            "{json}"
        );
        let opened = store.secrets["logging/creds"].secret.open(&seal).unwrap();
        assert_eq!(opened.decoded().unwrap()["token"], b"hunter2");
        assert!(store.secrets["logging/creds"]
            .secret
            .open(&SecretBox::new(&[4; 32]))
            .is_err());
    }

    #[test]
    fn an_immutable_object_refuses_new_data_and_the_whole_apply() {
        let mut store = Store::default();
        let mut frozen = cm("frozen", "a");
        frozen.immutable = Some(true);
        apply(&mut store, vec![frozen.clone()], vec![]);
        let mut changed = frozen.clone();
        changed.data.insert("conf".into(), "b".into());
        let r = apply(&mut store, vec![cm("fresh", "x"), changed], vec![]);
        assert!(
            matches!(&r, Response::Conflict { message } if message.contains("logging/frozen is immutable")),
            "{r:?}"
        );
        assert!(
            !store.config_maps.contains_key("logging/fresh"),
            "nothing of a refused apply is stored"
        );
        assert_eq!(
            outcomes(apply(&mut store, vec![frozen], vec![])),
            [("ConfigMap".into(), ApplyOutcome::Unchanged)]
        );
    }
}
